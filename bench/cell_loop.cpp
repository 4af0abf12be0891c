// The matrix cells' one loop and one checked call (cell_loop.hpp).
#include "cell_loop.hpp"

#include <fmt/format.h>

#include <optional>

#include "environment.hpp"
#include "token_loop.hpp"

namespace cloak::bench {

namespace {

struct loop_context {
  const matrix_cell& cell;
  environment& env;
  cell_failure& failure;
  held_token& held;
  const std::array<token, clients_per_thread>& tokens;
  bool inject_fault;
  checked_calls<own_proxy, cell_failure>& checked;
  // Every timed call's latency; the calls right after the token pattern changed the thread's
  // token also on their own (a switch cell's are all of them; every:N's one in N).
  std::unique_ptr<latency_histogram> all = std::make_unique<latency_histogram>();
  std::unique_ptr<latency_histogram> after_change = std::make_unique<latency_histogram>();
};

// Whether call i of the cell's pattern comes right after the pattern changed the thread's token.
bool after_change(const token_pattern& p, std::uint64_t i) noexcept {
  switch (p.kind) {
    case pattern_kind::switch_:
    case pattern_kind::reimpersonate:
      return true;
    case pattern_kind::every:
      return i % static_cast<std::uint64_t>(p.every) == 0;
    default:
      return false;
  }
}

// One checked call (checked_calls), its time in the cell's histograms.
bool checked_call(loop_context& c, std::uint64_t i) {
  std::uint64_t ns = 0;
  bool ok = c.checked.check(i, ns);
  c.all->record(ns);
  if (after_change(c.cell.pattern, i)) c.after_change->record(ns);
  return ok;
}

}  // namespace

void run_cell_loop(benchmark::State& state, const matrix_cell& cell, cell_failure& failure,
                   identity_backend& backend, connection& conn,
                   const std::array<token, clients_per_thread>& tokens, const call_site& site) {
  environment& env = environment::instance();
  std::vector<std::byte> payload(cell.bytes, std::byte{0x5a});
  {
    held_token held(backend);
    proxy px(backend, conn, security_defaults{},
             dynamic_options{cell.probe, cell.cache, cell.auth, cell.tracking});
    own_proxy calls{px, conn};
    checked_calls<own_proxy, cell_failure> checked(calls, cell.mode, cell.hops, site, failure,
                                                   held);
    checked.set_payload(payload);
    loop_context c{cell, env, failure, held, tokens, site.inject_fault, checked};
    if (checked.begin(tokens[0])) {
      px.reset_counters();
      checked.reset_hop2_contexts();
    }
    const std::uint64_t spins_before = injected_spins();  // the timed calls' own, setup's left out
    run_token_pattern(
        state, c, [&](std::uint64_t i) { return checked_call(c, i); },
        [&] {
          if (site.fault) site.fault();
        });
    if (!failure.failed()) {
      const proxy_counters& n = px.counters();
      using benchmark::Counter;
      state.counters["contexts_per_call"] =
          Counter(static_cast<double>(n.contexts_established), Counter::kAvgIterations);
      state.counters["probes_per_call"] =
          Counter(static_cast<double>(n.probes), Counter::kAvgIterations);
      state.counters["cache_hits_per_call"] =
          Counter(static_cast<double>(n.cache_hits), Counter::kAvgIterations);
      state.counters["spins_per_call"] =
          Counter(static_cast<double>(injected_spins() - spins_before), Counter::kAvgIterations);
      if (cell.hops == 2) {
        state.counters["hop2_contexts_per_call"] =
            Counter(static_cast<double>(checked.hop2_contexts()), Counter::kAvgIterations);
      }
      state.counters["mismatches"] = Counter(0);
      state.counters["bytes"] = Counter(static_cast<double>(cell.bytes), Counter::kAvgThreads);
      state.counters["p99_ns"] =
          Counter(static_cast<double>(c.all->percentile(0.99)), Counter::kAvgThreads);
      keep_cell_histograms(cell_name(cell), *c.all, *c.after_change);
    }
  }  // the thread's token is dropped here, before the leak check
  try {
    backend.check_no_leak();
  } catch (const std::exception& e) {
    failure.fail(e.what());
  }
}

}  // namespace cloak::bench
