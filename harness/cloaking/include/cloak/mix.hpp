// splitmix64's finaliser, the suite's one integer hash: the context cache's key of an identity, the
// shared proxy's lane of a uid (consecutive uids, the fake-client range, spread evenly), and the
// open-loop generator's seed drawn apart from the workers' (bench/load_loop.cpp).
#pragma once

#include <cstdint>

namespace cloak::detail {

inline std::uint64_t mix(std::uint64_t x) noexcept {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace cloak::detail
