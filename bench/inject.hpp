// The `call` path's site in the bench's cells: with CLOAK_INJECT_PATH=call (the default) the
// harness's injected spin (cloak/inject.hpp) runs before every proxy call of a matrix cell, of the
// paired cell and of a block's proxy variants (docs/reading.md, "Slowing the candidate on
// purpose"). The other paths' sites are in the harness, where those paths run.
#pragma once

#include <cloak/inject.hpp>
#include <cstdint>
#include <string_view>

namespace cloak::bench {

class injected_delay {
 public:
  static constexpr std::string_view variable = injection::ns_variable;

  // The process's injection: read from the environment, calibrated and armed on the first call
  // (main makes it before any cell runs). Throws std::invalid_argument for a bad value.
  static const injected_delay& instance() {
    static const injected_delay delay(process_injection(inject_role::middle));
    return delay;
  }

  std::int64_t ns() const noexcept { return what_.ns; }
  inject_path path() const noexcept { return what_.path; }
  // Whether the whole proxy call is the path slowed (a not-taken branch otherwise).
  bool active() const noexcept { return injection_armed(inject_path::call); }
  void spin() const noexcept { inject_at(inject_path::call); }  // counted on this thread

 private:
  explicit injected_delay(const injection& what) : what_(what) {}
  injection what_;
};

}  // namespace cloak::bench
