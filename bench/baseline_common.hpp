// What every baseline cell does first and last (baseline_cells.cpp, package_cells.cpp): pin the
// thread, look at the interruption flag, and end with the leak check a matrix cell ends with.
#pragma once

#include <fmt/format.h>

#include "suite.hpp"

namespace cloak::bench::detail {

// Every baseline ends like a matrix cell: no thread may be left with a client's credentials.
inline void check_no_leak(cell_failure& failure) {
  environment& env = environment::instance();
  try {
    if (env.kernel()) env.kernel()->check_no_leak();
    env.model().check_no_leak();
  } catch (const std::exception& e) {
    failure.fail(e.what());
  }
}

inline bool begin(benchmark::State& state, cell_failure& failure, placement where) {
  environment& env = environment::instance();
  if (env.interrupted()) {
    failure.interrupt();
    failure.drain();
    return false;
  }
  try {
    env.cpus().pin_client(where);
  } catch (const std::exception& e) {
    failure.fail(fmt::format("setup: {}", e.what()));
    failure.drain();
    return false;
  }
  (void)state;
  return true;
}

#define CLOAK_INTERRUPT_POINT(i, failure)                                                         \
  if (((i)&interrupt_check_mask) == 0 && ::cloak::bench::environment::instance().interrupted()) { \
    (failure).interrupt();                                                                        \
    continue;                                                                                     \
  }

}  // namespace cloak::bench::detail
