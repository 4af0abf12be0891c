// The shared proxy (shared_proxy.hpp): lanes of one connection and one proxy each, chosen by
// identity affinity under dynamic cloaking and by whichever is free otherwise.
#include <atomic>
#include <cloak/mix.hpp>
#include <cloak/shared_proxy.hpp>
#include <stdexcept>

namespace cloak {

namespace {

// A thread's own starting lane for the fixed modes: threads spread over the lanes in the order they
// first call, so T threads over T lanes start on different ones.
std::size_t home_of_this_thread() noexcept {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t home = next.fetch_add(1, std::memory_order_relaxed);
  return home;
}

using detail::mix;

}  // namespace

shared_proxy::shared_proxy(identity_backend& backend,
                           std::vector<std::unique_ptr<connection>> connections,
                           security_defaults defaults, dynamic_options dynamic)
    : backend_(backend), dynamic_(defaults.mode == cloaking::dynamic) {
  if (connections.empty())
    throw std::invalid_argument("a shared proxy needs at least one connection");
  for (auto& c : connections) {
    if (!c) throw std::invalid_argument("a shared proxy's connection is null");
    auto l = std::make_unique<lane>();
    l->conn = std::move(c);
    l->px = std::make_unique<proxy>(backend, *l->conn, defaults, dynamic);
    lanes_.push_back(std::move(l));
  }
}

shared_proxy::~shared_proxy() = default;

void shared_proxy::set_blanket(const blanket& b) {
  for (auto& l : lanes_) {
    std::lock_guard lock(l->mutex);
    l->px->set_blanket(b);
  }
  dynamic_ = b.mode == cloaking::dynamic && !b.explicit_identity;
}

std::size_t shared_proxy::lane_of(const identity& who) const noexcept {
  if (!dynamic_) return home_of_this_thread() % lanes_.size();
  return static_cast<std::size_t>(mix(who.uid) % lanes_.size());
}

call_result shared_proxy::call_on(lane& l, std::span<const std::byte> payload, std::string* detail,
                                  bool waited) noexcept {
  ++l.calls;
  if (waited) ++l.waits;
  call_result r = l.px->call(payload);
  if (!r.ok() && detail) {
    try {
      *detail = l.conn->last_establish().detail;
    } catch (...) {
      detail->clear();  // no memory for the account: the error itself still says what failed
    }
  }
  return r;
}

call_result shared_proxy::call(std::span<const std::byte> payload, std::string* detail) noexcept {
  const std::size_t n = lanes_.size();
  if (dynamic_) {
    // The identity the lane's proxy will present is the thread's own: its context is on one lane.
    const token* now = backend_.thread_token();
    lane& l = *lanes_[lane_of(now ? now->who : backend_.process_identity())];
    std::unique_lock lock(l.mutex, std::try_to_lock);
    bool waited = !lock.owns_lock();
    if (waited) lock.lock();
    return call_on(l, payload, detail, waited);
  }
  const std::size_t home = home_of_this_thread() % n;
  for (std::size_t k = 0; k < n; ++k) {
    lane& l = *lanes_[(home + k) % n];
    std::unique_lock lock(l.mutex, std::try_to_lock);
    if (lock.owns_lock()) return call_on(l, payload, detail, false);
  }
  lane& l = *lanes_[home];
  std::lock_guard lock(l.mutex);
  return call_on(l, payload, detail, true);
}

proxy_counters shared_proxy::counters() const {
  proxy_counters sum;
  for (const auto& l : lanes_) {
    std::lock_guard lock(l->mutex);
    sum += l->px->counters();
  }
  return sum;
}

shared_proxy_counters shared_proxy::pool_counters() const {
  shared_proxy_counters sum;
  for (const auto& l : lanes_) {
    std::lock_guard lock(l->mutex);
    sum.calls += l->calls;
    sum.waits += l->waits;
  }
  return sum;
}

shared_proxy_counters shared_proxy::lane_counters(std::size_t lane) const {
  const auto& l = *lanes_.at(lane);
  std::lock_guard lock(l.mutex);
  return {l.calls, l.waits};
}

void shared_proxy::reset_counters() {
  for (auto& l : lanes_) {
    std::lock_guard lock(l->mutex);
    l->px->reset_counters();
    l->calls = 0;
    l->waits = 0;
  }
}

}  // namespace cloak
