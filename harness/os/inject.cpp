// The injected spin of CLOAK_INJECT_NS at the site CLOAK_INJECT_PATH names: parsing, calibration,
// arming and the per-thread counts of spins taken.
#include <fmt/format.h>

#include <array>
#include <chrono>
#include <cloak/enum_names.hpp>
#include <cloak/inject.hpp>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace cloak {

namespace {

constexpr auto path_names =
    make_enum_names<inject_path>("injection path", {
                                                       {inject_path::call, "call"},
                                                       {inject_path::probe, "probe"},
                                                       {inject_path::switch_, "switch"},
                                                       {inject_path::establish, "establish"},
                                                       {inject_path::accept, "accept"},
                                                   });
static_assert(path_names.entries().size() == inject_path_count);

// The spin is a counted loop, not a clock-polling one: a clock read costs tens of ns on a VM and
// would be part of what is added.
void spin_for(std::uint64_t n) noexcept {
  for (std::uint64_t i = 0; i < n; ++i) {
    asm volatile("" : "+r"(i));  // keeps the loop: the compiler cannot see through i
  }
}

// The fastest of several ~10 ms runs: interference only ever makes a run slower, so the minimum is
// the loop's own speed.
double calibrate() {
  using clock = std::chrono::steady_clock;
  std::uint64_t n = 1 << 16;
  for (;;) {  // grow until one run takes at least 10 ms
    auto t0 = clock::now();
    spin_for(n);
    auto took = std::chrono::duration<double, std::nano>(clock::now() - t0).count();
    if (took >= 1e7 || n >= (std::uint64_t{1} << 40)) break;
    n *= 2;
  }
  double best = 0;
  for (int run = 0; run < 5; ++run) {
    auto t0 = clock::now();
    spin_for(n);
    double took = std::chrono::duration<double, std::nano>(clock::now() - t0).count();
    if (took > 0 && (best == 0 || took < best)) best = took;
  }
  return static_cast<double>(n) / best;
}

std::atomic<std::uint64_t> armed_iterations{0};
thread_local std::array<std::uint64_t, inject_path_count> spins_taken{};

bool has_site(inject_role role, inject_path p) noexcept {
  return role == inject_role::middle || p == inject_path::accept;
}

}  // namespace

namespace detail {

std::atomic<std::uint8_t> armed_injection{0};

void spin_armed(inject_path p) noexcept {
  spin_for(armed_iterations.load(std::memory_order_acquire));
  ++spins_taken[static_cast<std::size_t>(p)];
}

}  // namespace detail

std::string_view to_string(inject_path p) noexcept { return path_names.to_string(p); }

inject_path parse_inject_path(std::string_view text) {
  if (auto p = path_names.find(text)) return *p;
  throw std::invalid_argument(fmt::format("{}={}: names where the spin goes, one of {}",
                                          injection::path_variable, text,
                                          path_names.choices(", ")));
}

injection injection::parse(const char* ns_text, const char* path_text) {
  injection out;
  if (ns_text != nullptr && *ns_text != '\0') {
    std::string_view s(ns_text);
    std::int64_t v = 0;
    for (char ch : s) {
      if (ch < '0' || ch > '9' || v > max_ns) {
        throw std::invalid_argument(
            fmt::format("{}={}: needs a whole number of ns from 0 to {}", ns_variable, s, max_ns));
      }
      v = v * 10 + (ch - '0');
    }
    if (v > max_ns)
      throw std::invalid_argument(fmt::format("{}={}: at most {} ns", ns_variable, s, max_ns));
    out.ns = v;
  }
  // Checked even when nothing is slowed: a typo must not pass unnoticed until the day it matters.
  if (path_text != nullptr && *path_text != '\0') out.path = parse_inject_path(path_text);
  return out;
}

injection injection::from_environment() {
  return parse(std::getenv(ns_variable.data()), std::getenv(path_variable.data()));
}

void arm_injection(const injection& what, inject_role role) {
  disarm_injection();
  if (what.ns == 0 || !has_site(role, what.path)) return;
  double per_ns = calibrate();
  auto n = static_cast<std::uint64_t>(static_cast<double>(what.ns) * per_ns + 0.5);
  armed_iterations.store(n == 0 ? 1 : n, std::memory_order_release);
  detail::armed_injection.store(static_cast<std::uint8_t>(static_cast<std::uint8_t>(what.path) + 1),
                                std::memory_order_release);
}

void disarm_injection() noexcept { detail::armed_injection.store(0, std::memory_order_release); }

const injection& process_injection(inject_role role) {
  static const injection from_env = [role] {
    injection what = injection::from_environment();
    arm_injection(what, role);
    return what;
  }();
  return from_env;
}

bool injection_armed(inject_path p) noexcept {
  return detail::armed_injection.load(std::memory_order_relaxed) ==
         static_cast<std::uint8_t>(p) + 1;
}

std::uint64_t injected_spins(inject_path p) noexcept {
  return spins_taken[static_cast<std::size_t>(p)];
}

std::uint64_t injected_spins() noexcept {
  std::uint64_t total = 0;
  for (std::uint64_t n : spins_taken) total += n;
  return total;
}

}  // namespace cloak
