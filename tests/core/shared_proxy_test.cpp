// The shared proxy (issue 19, item 4) on both backends: T threads switching identities through one
// proxy over a pool of connections, every call checked against docs/design.md §1, and the policy
// (identity affinity under dynamic cloaking) visible in the contexts it makes.
#include <fmt/format.h>

#include <atomic>
#include <cloak/shared_proxy.hpp>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

namespace cloak::test {
namespace {

const std::byte payload[32]{};
constexpr std::uint32_t identities = 8;  // shared by all threads, so lanes are contended
constexpr int threads = 4;
constexpr int calls_per_thread = 150;

using shared_proxy_rules = backend_test;

std::vector<std::unique_ptr<connection>> connected(backend_kind kind, std::size_t n) {
  std::vector<std::unique_ptr<connection>> out;
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(connect(kind));
    // Connected here, on one thread, as P: the model's connect is not thread-safe.
    EXPECT_EQ(out.back()->connect(), call_error::ok);
  }
  return out;
}

// Runs `threads` threads; thread t calls as client (t + i) % identities on call i (each call under
// a new impersonation), and checks that D saw `expected(who)`. The failures, if any, in `errors`.
template <class Expected>
std::vector<std::string> run_threads(identity_backend& be, shared_proxy& px, Expected expected) {
  std::mutex mutex;
  std::vector<std::string> errors;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < calls_per_thread; ++i) {
        std::uint32_t k = static_cast<std::uint32_t>(t + i) % identities;
        impersonation as(be, client_token(k));
        std::string detail;
        call_result r = px.call(payload, &detail);
        std::string error;
        if (!r.ok()) {
          error = fmt::format("thread {} call {} as {}: {} ({})", t, i, to_string(client(k)),
                              to_string(r.error), detail);
        } else if (r.view.anonymous || !r.view.seen.same_principal(expected(client(k)))) {
          error = fmt::format("thread {} call {} as {}: D saw {}, expected {}", t, i,
                              to_string(client(k)), to_string(r.view.seen),
                              to_string(expected(client(k))));
        }
        if (!error.empty()) {
          std::lock_guard lock(mutex);
          errors.push_back(std::move(error));
          return;
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  return errors;
}

TEST_P(shared_proxy_rules, dynamic_threads_switching_identities_each_see_their_own_client) {
  shared_proxy px(be(), connected(kind(), 2), {},
                  {identity_probe::kernel, context_cache_policy::lru(identities)});
  px.set_blanket(blanket_of(cloaking::dynamic));
  auto errors = run_threads(be(), px, [](const identity& who) { return who; });
  ASSERT_TRUE(errors.empty()) << errors.size() << " failed calls; first: " << errors.front();
  EXPECT_EQ(px.pool_counters().calls, static_cast<std::uint64_t>(threads * calls_per_thread));
  // Identity affinity: an identity's context lives on one lane, and each lane's cache holds all of
  // its share, so every identity needed exactly one context, whichever threads acted for it.
  EXPECT_EQ(px.counters().contexts_established, identities);
}

TEST_P(shared_proxy_rules, an_identity_always_takes_the_same_lane) {
  constexpr std::size_t lanes = 3;
  shared_proxy px(be(), connected(kind(), lanes), {}, {});
  px.set_blanket(blanket_of(cloaking::dynamic));
  // Each identity calls twice, from two threads: both calls go over its lane (lane_of), and no
  // other lane carries either.
  for (std::uint32_t k = 0; k < identities; ++k) {
    const std::size_t lane = px.lane_of(client(k));
    ASSERT_LT(lane, lanes);
    std::vector<std::uint64_t> before;
    for (std::size_t l = 0; l < lanes; ++l) before.push_back(px.lane_counters(l).calls);
    for (int t = 0; t < 2; ++t) {
      call_result r;
      std::thread([&] {
        impersonation as(be(), client_token(k));
        r = px.call(payload);
      }).join();
      ASSERT_TRUE(r.ok()) << "client " << k << ": " << to_string(r.error);
    }
    for (std::size_t l = 0; l < lanes; ++l) {
      EXPECT_EQ(px.lane_counters(l).calls - before[l], l == lane ? 2u : 0u)
          << "client " << k << " (lane " << lane << "), lane " << l;
    }
  }
  EXPECT_THROW(px.lane_counters(lanes), std::out_of_range);
}

TEST_P(shared_proxy_rules, static_threads_all_present_the_identity_captured_at_set_blanket) {
  shared_proxy px(be(), connected(kind(), 2), {}, {});
  {
    impersonation as(be(), client_token(identities + 1));
    px.set_blanket(blanket_of(cloaking::static_));
  }
  identity captured = client(identities + 1);
  auto errors = run_threads(be(), px, [&](const identity&) { return captured; });
  ASSERT_TRUE(errors.empty()) << errors.size() << " failed calls; first: " << errors.front();
}

TEST_P(shared_proxy_rules, no_cloaking_threads_all_present_the_process) {
  shared_proxy px(be(), connected(kind(), 2), {}, {});
  px.set_blanket(blanket_of(cloaking::none));
  identity p = process();
  auto errors = run_threads(be(), px, [&](const identity&) { return p; });
  ASSERT_TRUE(errors.empty()) << errors.size() << " failed calls; first: " << errors.front();
  // One identity: one context per lane at most.
  EXPECT_LE(px.counters().contexts_established, 2u);
}

TEST(shared_proxy, refuses_an_empty_pool) {
  EXPECT_THROW(shared_proxy(backend(backend_kind::model), {}), std::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(backends, shared_proxy_rules,
                         ::testing::Values(backend_kind::kernel, backend_kind::model),
                         backend_name);

}  // namespace
}  // namespace cloak::test
