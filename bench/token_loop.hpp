// The timed loop every matrix cell shares (uds and tcp): the token pattern between calls, one
// checked call, the interruption check and a fault injected once, at call 200 (or half-way through
// a shorter run, so the first cell that runs long enough for it gets it however loaded the
// machine).
#pragma once

#include <fmt/format.h>

#include <algorithm>

#include "suite.hpp"

namespace cloak::bench {

// `c` holds failure, held, tokens, cell, env and inject_fault. `call(i)` makes and checks call i
// (false: it failed the cell); `fault()` injects the cell's fault.
template <pattern_kind K, class Context, class Call, class Fault>
void token_pattern_loop(benchmark::State& state, Context& c, Call& call, Fault& fault) {
  std::uint64_t i = 0;
  std::size_t client = 0;
  // Google Benchmark's first runs of a cell are short (1, then 10 iterations): a slow machine may
  // never reach call 200 in this cell, and the fault would land in a later one.
  const std::uint64_t fault_at = std::min<std::uint64_t>(200, state.max_iterations / 2);
  auto hold = [&](std::size_t k) {
    if (c.held.hold(c.tokens[k])) [[likely]]
      return true;
    c.failure.fail(fmt::format("call {}: cannot impersonate {}", i, to_string(c.tokens[k].who)));
    return false;
  };
  for (auto _ : state) {
    if (c.failure.failed()) [[unlikely]]
      continue;  // stay in step with the other threads
    if constexpr (K == pattern_kind::switch_) {
      client = (client + 1) % clients_per_thread;
      if (!hold(client)) [[unlikely]]
        continue;
    } else if constexpr (K == pattern_kind::every) {
      if (i % static_cast<std::uint64_t>(c.cell.pattern.every) == 0) {
        client = (client + 1) % clients_per_thread;
        if (!hold(client)) [[unlikely]]
          continue;
      }
    } else if constexpr (K == pattern_kind::reimpersonate) {
      c.held.drop();
      if (!hold(0)) [[unlikely]]
        continue;
    }
    if (!call(i)) [[unlikely]]
      continue;
    ++i;
    if ((i & interrupt_check_mask) == 0 && c.env.interrupted()) [[unlikely]] {
      c.failure.interrupt();
      continue;
    }
    if (c.inject_fault && i == fault_at) [[unlikely]]
      fault();
  }
}

// The loop for the cell's own pattern.
template <class Context, class Call, class Fault>
void run_token_pattern(benchmark::State& state, Context& c, Call call, Fault fault) {
  switch (c.cell.pattern.kind) {
    case pattern_kind::steady:
      return token_pattern_loop<pattern_kind::steady>(state, c, call, fault);
    case pattern_kind::switch_:
      return token_pattern_loop<pattern_kind::switch_>(state, c, call, fault);
    case pattern_kind::every:
      return token_pattern_loop<pattern_kind::every>(state, c, call, fault);
    case pattern_kind::reimpersonate:
      return token_pattern_loop<pattern_kind::reimpersonate>(state, c, call, fault);
  }
}

}  // namespace cloak::bench
