// CLOAK_INJECT_NS and CLOAK_INJECT_PATH: a known slowdown placed on one path of a call, so a gate
// can be shown to catch a regression where it happens (docs/reading.md, "Slowing the candidate on
// purpose"). Off unless CLOAK_INJECT_NS is set; each path's site is one not-taken branch otherwise.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace cloak {

// Where the spin goes. Values are stable (the sites compare them).
enum class inject_path : std::uint8_t {
  call,       // before the whole proxy call (the bench's cells), the default
  probe,      // dynamic cloaking's identity probe, in the proxy
  switch_,    // the token switch: the identity backend's impersonate
  establish,  // once per new security context on the initiating side, before its first leg
  accept,     // once per context on the downstream's side, before the package accepts
};
inline constexpr std::size_t inject_path_count = 5;
std::string_view to_string(inject_path p) noexcept;
// Throws std::invalid_argument naming the accepted names.
inject_path parse_inject_path(std::string_view text);

// Which sites a process has: the middle (the bench, with its in-process model downstream) has every
// path; cloak-downstream only `accept` (its own proxies to a next hop are not the side the call
// started from).
enum class inject_role : std::uint8_t { middle, downstream };

// What the environment asks for.
struct injection {
  static constexpr std::string_view ns_variable = "CLOAK_INJECT_NS";
  static constexpr std::string_view path_variable = "CLOAK_INJECT_PATH";
  static constexpr std::int64_t max_ns = 100'000'000;  // 0.1 s per spin: anything above is a typo

  std::int64_t ns = 0;  // 0: nothing is slowed
  inject_path path = inject_path::call;

  // The two variables' values (nullptr or empty: unset). Throws std::invalid_argument naming the
  // variable, its value and what it takes, so a bad value is a usage error before anything runs.
  static injection parse(const char* ns_text, const char* path_text);
  static injection from_environment();
};

// Calibrates the spin for `what` (a counted loop timed against steady_clock, the fastest of several
// ~10 ms runs) and arms its path's site in this process when `role` has that site and what.ns > 0;
// replaces whatever was armed. Call it before the sites run (at startup, or in a test).
void arm_injection(const injection& what, inject_role role);
void disarm_injection() noexcept;

// The process's injection from its environment, armed for `role` on the first call; every later
// call returns the first one's. Throws std::invalid_argument as injection::parse does.
const injection& process_injection(inject_role role = inject_role::middle);

// Whether `p`'s site spins in this process now.
bool injection_armed(inject_path p) noexcept;

// The calling thread's spins taken at `p` since it started (per thread, so each thread of a
// multi-threaded cell reads its own; a downstream's spins are in its own process).
std::uint64_t injected_spins(inject_path p) noexcept;
// The calling thread's spins at every path (only one path is ever armed).
std::uint64_t injected_spins() noexcept;

namespace detail {
// 0: nothing armed; otherwise the armed path's value + 1. Written by arm_injection only.
extern std::atomic<std::uint8_t> armed_injection;
void spin_armed(inject_path p) noexcept;
}  // namespace detail

// A path's site: a relaxed load and a branch not taken unless `p` is the armed path.
inline void inject_at(inject_path p) noexcept {
  if (detail::armed_injection.load(std::memory_order_relaxed) ==
      static_cast<std::uint8_t>(static_cast<std::uint8_t>(p) + 1)) [[unlikely]]
    detail::spin_armed(p);
}

}  // namespace cloak
