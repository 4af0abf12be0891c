// The cloaking matrix: each cell drives a proxy through one token pattern and checks every call's
// identity.
#include <fmt/format.h>

#include <cloak/kerberos.hpp>
#include <cloak/os.hpp>
#include <cloak/transport.hpp>
#include <optional>
#include <stdexcept>

#include "inject.hpp"
#include "latency_histogram.hpp"
#include "suite.hpp"
#include "token_loop.hpp"

namespace cloak::bench {

namespace {

struct loop_context {
  const matrix_cell& cell;
  environment& env;
  cell_failure& failure;
  identity_backend& backend;
  proxy& px;
  transport& channel;
  held_token& held;
  const std::array<token, clients_per_thread>& tokens;
  const identity* captured;  // what static cloaking captured (nullptr: P)
  std::span<const std::byte> payload;
  bool inject_fault;
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

std::string describe(const identity& who, const identity& process) {
  return who.same_principal(process) ? fmt::format("{} (P)", to_string(who)) : to_string(who);
}

// One call, checked against docs/design.md §1. Returns false after failing the cell.
inline bool checked_call(loop_context& c, std::uint64_t i) {
  const identity& process = c.backend.process_identity();
  const identity& want = expected_identity(c.cell.mode, c.captured, c.held.current(), process);
  std::uint64_t t0 = now_ns();
  if (c.delay.active()) [[unlikely]]
    c.delay.spin();
  call_result r = c.px.call(c.payload);
  std::uint64_t ns = now_ns() - t0;
  c.all->record(ns);
  if (after_change(c.cell.pattern, i)) c.after_change->record(ns);
  if (!r.ok()) [[unlikely]] {
    // Only a broken or silent downstream is restarted; a refusal or a failed authentication (a KDC
    // that does not answer, say) says nothing against it.
    bool downstream_fault = r.error == call_error::downstream_unavailable ||
                            r.error == call_error::timeout || r.error == call_error::protocol;
    std::string state = c.env.downstream_state(c.cell.place);
    if (r.error == call_error::timeout)
      state = "no reply within the 2 s bound; " + state + " but not answering";
    if (r.error == call_error::refused)
      state = fmt::format("status {}", protocol::to_string(r.view.server_status));
    std::string detail = c.channel.last_establish().detail;
    if (!detail.empty()) state = downstream_fault ? detail + "; " + state : detail;
    if (downstream_fault) c.env.mark_suspect(c.cell.place);
    c.failure.fail(fmt::format("call {}: {} ({}){}", i, to_string(r.error), state,
                               downstream_fault && c.cell.backend == backend_kind::kernel
                                   ? "; cloak-downstream is restarted before the next cell"
                                   : ""));
    return false;
  }
  if (!r.view.seen.same_principal(want) || r.view.anonymous) [[unlikely]] {
    c.failure.fail(
        fmt::format("call {}: identity mismatch: {} cloaking expected {}, the downstream saw {}", i,
                    to_string(c.cell.mode), describe(want, process),
                    r.view.anonymous ? std::string("anonymous") : describe(r.view.seen, process)));
    return false;
  }
  return true;
}

void run_matrix_cell(benchmark::State& state, const matrix_cell& cell) {
  environment& env = environment::instance();
  cell_failure failure(state);
  if (env.interrupted()) {
    failure.fail("interrupted");
    failure.drain();
    return;
  }
  identity_backend* backend = cell.backend == backend_kind::kernel ? env.kernel() : &env.model();
  if (!backend) {
    failure.fail("the kernel backend is unavailable: " + env.kernel_unavailable_reason());
    failure.drain();
    return;
  }
  std::array<token, clients_per_thread> tokens;
  std::unique_ptr<model_downstream> model;
  std::unique_ptr<transport> channel;
  std::vector<std::byte> payload(cell.bytes, std::byte{0x5a});
  try {
    env.pin_client(cell.place);
    // Each client thread has its own clients, transport and proxy.
    std::uint32_t first = static_cast<std::uint32_t>(state.thread_index()) * clients_per_thread;
    for (std::size_t k = 0; k < clients_per_thread; ++k) {
      tokens[k] = make_token(env.config().clients.client(first + static_cast<std::uint32_t>(k)));
    }
    if (cell.package == package_id::kerberos) {
      kerberos_credentials* credentials = env.kerberos();
      if (!credentials) throw std::runtime_error(env.kerberos_unavailable_reason());
      kerberos_client_options k;
      k.tickets = cell.tickets;
      k.per_call = cell.per_call;
      channel = make_connection(make_uds_channel(uds_options{env.downstream_socket(cell.place),
                                                             std::chrono::milliseconds(2000)}),
                                make_kerberos_client(*credentials, k));
    } else if (cell.backend == backend_kind::kernel) {
      channel = make_uds_transport(
          uds_options{env.downstream_socket(cell.place), std::chrono::milliseconds(2000)});
    } else {
      model = std::make_unique<model_downstream>();
      channel = make_inproc_transport(*model, *backend);
    }
  } catch (const std::exception& e) {
    failure.fail(fmt::format("setup: {}", e.what()));
    failure.drain();
    return;
  }

  {
    held_token held(*backend);
    proxy px(*backend, *channel, security_defaults{},
             dynamic_options{cell.probe, cell.cache, cell.auth, cell.tracking});
    loop_context c{
        cell,
        env,
        failure,
        *backend,
        px,
        *channel,
        held,
        tokens,
        nullptr,
        payload,
        cell.backend == backend_kind::kernel && state.thread_index() == 0 && env.fault_pending()};
    if (!held.hold(tokens[0])) {
      failure.fail(fmt::format("setup: cannot impersonate {}", to_string(tokens[0].who)));
    } else {
      // The CoSetProxyBlanket analogue, under the thread's first client: static cloaking captures
      // it.
      px.set_blanket(blanket{cell.mode, impersonation_level::impersonate, std::nullopt});
      if (cell.mode == cloaking::static_) c.captured = &tokens[0].who;
      // One verified call outside the timed loop: connection and first context are setup, not cost.
      if (checked_call(c, 0)) {
        px.reset_counters();
        c.all->reset();
        c.after_change->reset();
      }
    }
    const std::uint64_t spins_before = injected_spins();  // the timed calls' own, setup's left out
    run_token_pattern(
        state, c, [&](std::uint64_t i) { return checked_call(c, i); },
        [&] { c.env.inject_fault(c.cell.place); });
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
      state.counters["mismatches"] = Counter(0);
      state.counters["bytes"] = Counter(static_cast<double>(cell.bytes), Counter::kAvgThreads);
      state.counters["p99_ns"] =
          Counter(static_cast<double>(c.all->percentile(0.99)), Counter::kAvgThreads);
      keep_cell_histograms(cell_name(cell), *c.all, *c.after_change);
    }
  }  // the thread's token is dropped here, before the leak check
  try {
    backend->check_no_leak();
  } catch (const std::exception& e) {
    failure.fail(e.what());
  }
}

}  // namespace

std::vector<cell_entry> matrix_entries() {
  std::vector<cell_entry> entries;
  for (const matrix_cell& cell : matrix_table()) {
    cell_entry e;
    e.name = cell_name(cell);
    e.quick = cell.quick;
    e.quick_without_kernel =
        cell.backend == backend_kind::model && cell.bytes == 64 && cell.threads == 1;
    e.backend = std::string(to_string(cell.backend));
    e.threads = cell.threads;
    e.run = [cell](benchmark::State& state) { run_matrix_cell(state, cell); };
    e.kerberos = cell.package == package_id::kerberos;
    e.full_only = cell.full_only;
    entries.push_back(std::move(e));
  }
  return entries;
}

}  // namespace cloak::bench
