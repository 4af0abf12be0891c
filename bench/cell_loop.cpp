// The matrix cells' one loop and one checked call (cell_loop.hpp).
#include "cell_loop.hpp"

#include <fmt/format.h>

#include <optional>

#include "environment.hpp"
#include "inject.hpp"
#include "latency_histogram.hpp"
#include "token_loop.hpp"

namespace cloak::bench {

namespace {

struct loop_context {
  const matrix_cell& cell;
  environment& env;
  cell_failure& failure;
  proxy& px;
  transport& channel;
  held_token& held;
  const std::array<token, clients_per_thread>& tokens;
  const call_site& site;
  bool inject_fault;
  std::span<const std::byte> payload;
  const identity* captured = nullptr;  // what the middle's static cloaking captured (nullptr: P)
  identity down1_captured{};           // hops:2: what D1's static proxy captured at its first call
  std::uint64_t hop2_contexts = 0;
  forward_outcome forwarded{};  // hops:2: what D1 reports of its own call (one, not one per call)
  const injected_delay& delay =
      injected_delay::instance();  // CLOAK_INJECT_NS, calibrated at startup
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

bool mismatch(loop_context& c, std::uint64_t i, const char* at, const std::string& seen_by,
              const identity& want, const downstream_view& seen) {
  if (seen.seen.same_principal(want) && !seen.anonymous) [[likely]]
    return false;
  c.failure.fail(fmt::format("call {}: identity mismatch{}: {} cloaking expected {}, {} saw {}", i,
                             at, to_string(c.cell.mode), c.site.label(want), seen_by,
                             seen.anonymous ? std::string("anonymous") : c.site.label(seen.seen)));
  return true;
}

// One call (or, at hops:2, one forwarded call), checked at every hop against docs/design.md §1.
// Returns false after failing the cell.
bool checked_call(loop_context& c, std::uint64_t i) {
  const identity& want =
      expected_identity(c.cell.mode, c.captured, c.held.current(), *c.site.process);
  forward_outcome& out = c.forwarded;
  if (c.cell.hops == 2) out = forward_outcome{};  // what this call's D1 reports, nothing older
  std::uint64_t t0 = now_ns();
  if (c.delay.active()) [[unlikely]]
    c.delay.spin();
  call_result r =
      c.cell.hops == 2
          ? c.px.forward(next_hop{c.cell.mode, impersonation_level::impersonate}, c.payload, out)
          : c.px.call(c.payload);
  std::uint64_t ns = now_ns() - t0;
  c.all->record(ns);
  if (after_change(c.cell.pattern, i)) c.after_change->record(ns);
  if (!r.ok()) [[unlikely]] {
    c.failure.fail(c.site.failed(i, 1, r, c.channel.last_establish().detail));
    return false;
  }
  if (c.cell.hops == 2) {
    if (out.next_error != call_error::ok) [[unlikely]] {
      // D1's own call failed: its account of why travels in the reply.
      call_result next{out.next_error, out.next};
      c.failure.fail(c.site.failed(i, 2, next, std::string(out.detail)));
      return false;
    }
    c.hop2_contexts += out.next_contexts;
    // D1 cloaks as the middle does: none presents D1 itself; static what its proxy captured at
    // its first call on this connection; dynamic whom it acts as now.
    const identity& want2 = c.cell.mode == cloaking::none      ? *c.site.down1
                            : c.cell.mode == cloaking::static_ ? c.down1_captured
                                                               : want;
    if (mismatch(c, i, " at D2", "D2", want2, out.next)) return false;
  }
  return !mismatch(c, i, c.site.at.c_str(), c.site.seen_by, want, r.view);
}

}  // namespace

void run_cell_loop(benchmark::State& state, const matrix_cell& cell, cell_failure& failure,
                   identity_backend& backend, transport& channel,
                   const std::array<token, clients_per_thread>& tokens, const call_site& site) {
  environment& env = environment::instance();
  std::vector<std::byte> payload(cell.bytes, std::byte{0x5a});
  {
    held_token held(backend);
    proxy px(backend, channel, security_defaults{},
             dynamic_options{cell.probe, cell.cache, cell.auth, cell.tracking});
    loop_context c{cell, env, failure, px, channel, held, tokens, site, site.inject_fault, payload};
    if (!held.hold(tokens[0])) {
      failure.fail(fmt::format("setup: cannot impersonate {}", to_string(tokens[0].who)));
    } else {
      // The CoSetProxyBlanket analogue, under the thread's first client: static cloaking captures
      // it.
      px.set_blanket(blanket{cell.mode, site.level, std::nullopt});
      if (cell.mode == cloaking::static_) c.captured = &tokens[0].who;
      // D1's static proxy captures whom D1 acts as at its first call: this one.
      c.down1_captured = expected_identity(cell.mode, c.captured, held.current(), *site.process);
      // One verified call outside the timed loop: connection and first contexts are setup, not
      // cost.
      if (checked_call(c, 0)) {
        px.reset_counters();
        c.hop2_contexts = 0;
        c.all->reset();
        c.after_change->reset();
      }
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
            Counter(static_cast<double>(c.hop2_contexts), Counter::kAvgIterations);
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
