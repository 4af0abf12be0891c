// The cross-host cells (chan:tcp): the middle, in its own network namespace, calls D1 over TCP with
// the kerberos package at delegate level; at hops:2 D1 acts as whom it authenticated and calls D2
// through its own proxy with the same cloaking. Beside them the same-run floors: a raw TCP round
// trip across the veth (one hop, and two through a relay), and an AP exchange across TCP with and
// without a forwarded TGT. Every call is checked against docs/design.md §1, at both hops.
#include <fmt/format.h>
#include <signal.h>

#include <cloak/inject.hpp>
#include <cloak/kerberos.hpp>
#include <cloak/net.hpp>
#include <cloak/proxy.hpp>
#include <cloak/transport.hpp>
#include <optional>
#include <stdexcept>

#include "suite.hpp"
#include "token_loop.hpp"

namespace cloak::bench {

namespace {

// The middle's blanket asks for delegate (a forwarded TGT); D1's own proxy asks D2 for impersonate
// (D2 is the last hop: it needs no TGT).
constexpr impersonation_level middle_level = impersonation_level::delegate;
constexpr impersonation_level down1_level = impersonation_level::impersonate;
constexpr std::size_t tcp_bytes = 64;
constexpr std::chrono::milliseconds io_bound{2000};

// The calling thread's sockets are the middle's while this lives (nothing to do for a remote
// downstream: this process is the middle host).
struct in_middle {
  explicit in_middle(const hosts_setup& h) {
    if (!h.middle_netns.empty()) scope.emplace(h.middle_netns);
  }
  std::optional<os::netns_scope> scope;
};

// A connection to D1 as the cells make it, with the faults of the fault tests applied.
std::unique_ptr<transport> connect_down1(environment& env, hosts_setup& h, std::string& where,
                                         kerberos_client_options k = {}) {
  const std::string& fault = env.config().fault;
  os::tcp_endpoint to = env.down1_endpoint();
  if (fault == "unreachable")
    to = os::tcp_endpoint{"198.18.0.99", 7};  // in the subnet, no such host
  where = to.to_string();
  if (fault == "wrong-realm") {
    k.tickets = ticket_state::cold;  // the ticket for a realm the KDC does not serve is asked for
                                     // per context
    k.service = "cloak/down1@NO-SUCH.REALM";
  }
  if (fault == "clock-skew") {
    k.tickets = ticket_state::cold;
    k.clock_offset_seconds = 3600;  // the KDC allows 300 s
  }
  return make_connection(make_tcp_channel(tcp_options{to.address, to.port, io_bound}),
                         make_kerberos_client(*h.credentials, k));
}

bool downstream_fault(call_error e) {
  return e == call_error::downstream_unavailable || e == call_error::timeout ||
         e == call_error::protocol;
}

std::string label(const identity& who, const hosts_setup& h) {
  if (who.same_principal(h.realm.middle)) return fmt::format("{} (P)", to_string(who));
  for (const auto& host : h.realm.hosts) {
    if (who.same_principal(host.who)) return fmt::format("{} ({})", to_string(who), host.name);
  }
  return to_string(who);
}

struct tcp_loop {
  const matrix_cell& cell;
  environment& env;
  hosts_setup& hosts;
  cell_failure& failure;
  identity_backend& backend;
  proxy& px;
  transport& channel;
  held_token& held;
  const std::array<token, clients_per_thread>& tokens;
  const identity* captured;  // what the middle's static cloaking captured (nullptr: P)
  identity down1_captured;   // what D1's static proxy captured at its first call
  std::span<const std::byte> payload;
  bool inject_fault;
  std::string where;  // D1's address, for the messages
  std::uint64_t hop2_contexts = 0;
};

// One call (hops:1) or forward_call (hops:2), both hops checked. False after failing the cell.
bool checked_call(tcp_loop& c, std::uint64_t i) {
  const identity& p = c.hosts.realm.middle;  // P as D1 knows it: by its principal
  const identity& want1 = expected_identity(c.cell.mode, c.captured, c.held.current(), p);
  auto fail_call = [&](call_error e, protocol::status s, const std::string& detail,
                       const char* where) {
    std::string why = detail;
    if (e == call_error::refused)
      why = fmt::format("status {}{}{}", protocol::to_string(s), why.empty() ? "" : ": ", why);
    if (downstream_fault(e)) c.env.mark_down1_suspect();
    c.failure.fail(fmt::format(
        "call {}: {}: {}{}{}", i, where, to_string(e), why.empty() ? "" : " (" + why + ")",
        downstream_fault(e) ? "; D1 is restarted before the next cell" : ""));
  };
  downstream_view seen1;
  inject_at(inject_path::call);  // CLOAK_INJECT_PATH=call (the default): before the whole call
  if (c.cell.hops == 1) {
    call_result r = c.px.call(c.payload);
    if (!r.ok()) [[unlikely]] {
      fail_call(r.error, r.view.server_status, c.channel.last_establish().detail,
                ("middle -> D1 at " + c.where).c_str());
      return false;
    }
    seen1 = r.view;
  } else {
    forward_outcome out;
    call_result r = c.px.forward(next_hop{c.cell.mode, down1_level}, c.payload, out);
    if (!r.ok()) [[unlikely]] {
      fail_call(r.error, r.view.server_status, c.channel.last_establish().detail,
                ("middle -> D1 at " + c.where).c_str());
      return false;
    }
    seen1 = r.view;
    if (out.next_error != call_error::ok) [[unlikely]] {
      // D1's own call failed: its account of why travels in the reply.
      fail_call(out.next_error, out.next.server_status, std::string(out.detail), "D1 -> D2");
      return false;
    }
    c.hop2_contexts += out.next_contexts;
    // D1 cloaks as the middle does: none presents D1 itself; static what its proxy captured at its
    // first call on this connection; dynamic whom it acts as now.
    const identity& want2 = c.cell.mode == cloaking::none      ? c.hosts.realm.host("down1").who
                            : c.cell.mode == cloaking::static_ ? c.down1_captured
                                                               : want1;
    if (!out.next.seen.same_principal(want2) || out.next.anonymous) [[unlikely]] {
      c.failure.fail(fmt::format(
          "call {}: identity mismatch at D2: {} cloaking at D1 expected {}, D2 saw {}", i,
          to_string(c.cell.mode), label(want2, c.hosts), label(out.next.seen, c.hosts)));
      return false;
    }
  }
  if (!seen1.seen.same_principal(want1) || seen1.anonymous) [[unlikely]] {
    c.failure.fail(
        fmt::format("call {}: identity mismatch at D1: {} cloaking expected {}, D1 saw {}", i,
                    to_string(c.cell.mode), label(want1, c.hosts), label(seen1.seen, c.hosts)));
    return false;
  }
  return true;
}

// Fails the cell before its loop when the world is not there.
hosts_setup* hosts_or_fail(environment& env, cell_failure& failure) {
  if (env.interrupted()) {
    failure.fail("interrupted");
  } else if (!env.kernel()) {
    failure.fail("the kernel backend is unavailable: " + env.kernel_unavailable_reason());
  } else if (!env.hosts()) {
    failure.fail(env.hosts_unavailable_reason());
  }
  if (failure.failed()) {
    failure.drain();
    return nullptr;
  }
  return env.hosts();
}

void run_tcp_cell(benchmark::State& state, const matrix_cell& cell) {
  environment& env = environment::instance();
  cell_failure failure(state);
  hosts_setup* hosts = hosts_or_fail(env, failure);
  if (!hosts) return;
  identity_backend& backend = *env.kernel();
  std::array<token, clients_per_thread> tokens;
  std::unique_ptr<transport> channel;
  std::vector<std::byte> payload(cell.bytes, std::byte{0x5a});
  std::optional<in_middle> middle;
  std::string where;
  try {
    os::pin_this_thread(env.config().cpu_client);
    for (std::size_t k = 0; k < clients_per_thread; ++k) {
      tokens[k] = make_token(env.config().clients.client(static_cast<std::uint32_t>(k)));
    }
    channel = connect_down1(env, *hosts, where);
    middle.emplace(*hosts);
  } catch (const std::exception& e) {
    failure.fail(fmt::format("setup: {}", e.what()));
    failure.drain();
    return;
  }
  {
    held_token held(backend);
    proxy px(backend, *channel, security_defaults{},
             dynamic_options{cell.probe, cell.cache, cell.auth, cell.tracking});
    tcp_loop c{
        cell,
        env,
        *hosts,
        failure,
        backend,
        px,
        *channel,
        held,
        tokens,
        nullptr,
        {},
        payload,
        state.thread_index() == 0 && env.config().fault == "kill-downstream" && env.fault_pending(),
        where};
    if (!held.hold(tokens[0])) {
      failure.fail(fmt::format("setup: cannot impersonate {}", to_string(tokens[0].who)));
    } else {
      px.set_blanket(blanket{cell.mode, middle_level, std::nullopt});
      if (cell.mode == cloaking::static_) c.captured = &tokens[0].who;
      // D1's static proxy captures whom D1 acts as at its first call: this one.
      c.down1_captured =
          expected_identity(cell.mode, c.captured, held.current(), hosts->realm.middle);
      // One verified call outside the timed loop: connection and first contexts are setup, not
      // cost.
      if (checked_call(c, 0)) {
        px.reset_counters();
        c.hop2_contexts = 0;
      }
    }
    const std::uint64_t spins_before = injected_spins();  // the timed calls' own, setup's left out
    run_token_pattern(
        state, c, [&](std::uint64_t i) { return checked_call(c, i); },
        [&] { c.env.inject_down1_fault(); });
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
      state.counters["bytes"] = Counter(static_cast<double>(cell.bytes));
    }
  }
  try {
    backend.check_no_leak();
  } catch (const std::exception& e) {
    failure.fail(e.what());
  }
}

// ---- baselines
// ------------------------------------------------------------------------------------

// 64 bytes there and back across the veth: to the echo in down2 (hops:1), or through the relay in
// down1 to it (hops:2). No framing, no package: the floor of a cell's transport term.
void bm_tcp_roundtrip(benchmark::State& state, int hops) {
  environment& env = environment::instance();
  cell_failure failure(state);
  hosts_setup* h = hosts_or_fail(env, failure);
  if (!h) return;
  os::unique_fd fd;
  std::optional<in_middle> middle;
  try {
    if (!h->world || !h->raw_peers)
      throw std::runtime_error("no raw TCP peers (they run in the topology --hosts makes)");
    os::pin_this_thread(env.config().cpu_client);
    middle.emplace(*h);
    os::tcp_endpoint to = hops == 1 ? h->world->echo_address() : h->world->relay_address();
    fd = os::connect_tcp(to, io_bound);
    if (!fd)
      throw std::runtime_error(
          fmt::format("cannot connect to {}: {}", to.to_string(), std::strerror(errno)));
  } catch (const std::exception& e) {
    failure.fail(fmt::format("setup: {}", e.what()));
    failure.drain();
    return;
  }
  std::vector<std::byte> out(tcp_bytes, std::byte{0x5a}), in(tcp_bytes);
  if (!os::send_all(fd.get(), out.data(), tcp_bytes) ||
      !os::recv_all(fd.get(), in.data(), tcp_bytes)) {
    failure.fail(fmt::format("first round trip failed: {}", std::strerror(errno)));
  }
  std::uint64_t i = 0;
  for (auto _ : state) {
    if (failure.failed()) continue;
    if (!os::send_all(fd.get(), out.data(), tcp_bytes) ||
        !os::recv_all(fd.get(), in.data(), tcp_bytes)) {
      failure.fail(fmt::format("round trip {} failed: {}", i,
                               errno ? std::strerror(errno) : "connection closed"));
      continue;
    }
    ++i;
    if ((i & interrupt_check_mask) == 0 && env.interrupted()) failure.fail("interrupted");
  }
  state.counters["bytes"] = benchmark::Counter(static_cast<double>(tcp_bytes));
}

// A new context with D1 across TCP as P (the AP-REQ, the AP-REP back, the previous context released
// in the same round trip), at impersonate level or at delegate level (a forwarded TGT: GSSAPI asks
// the KDC for it first): what a cell's new context on the first hop costs.
void bm_tcp_establish(benchmark::State& state, impersonation_level level) {
  environment& env = environment::instance();
  cell_failure failure(state);
  hosts_setup* h = hosts_or_fail(env, failure);
  if (!h) return;
  std::unique_ptr<transport> t;
  std::optional<in_middle> middle;
  std::string where;
  try {
    os::pin_this_thread(env.config().cpu_client);
    t = connect_down1(env, *h, where);
    middle.emplace(*h);
    if (call_error e = t->connect(); e != call_error::ok) {
      if (downstream_fault(e)) env.mark_down1_suspect();
      throw std::runtime_error(fmt::format("cannot connect to D1 at {}: {}", where, to_string(e)));
    }
  } catch (const std::exception& e) {
    failure.fail(fmt::format("setup: {}", e.what()));
    failure.drain();
    return;
  }
  identity_backend& kernel = *env.kernel();
  std::uint64_t previous = 0, i = 0;
  for (auto _ : state) {
    if (failure.failed()) continue;
    downstream_view v;
    call_error e = t->establish(presentation{kernel, nullptr, level}, previous, v);
    if (e != call_error::ok || !v.seen.same_principal(h->realm.middle)) [[unlikely]] {
      if (downstream_fault(e)) env.mark_down1_suspect();
      failure.fail(
          fmt::format("establish {}: {} ({})", i, to_string(e), t->last_establish().detail));
      continue;
    }
    previous = v.context;
    ++i;
    if ((i & interrupt_check_mask) == 0 && env.interrupted()) failure.fail("interrupted");
  }
  state.counters["contexts_per_call"] = benchmark::Counter(1);
  try {
    kernel.check_no_leak();
  } catch (const std::exception& e) {
    failure.fail(e.what());
  }
}

}  // namespace

std::vector<cell_entry> hosts_entries() {
  std::vector<cell_entry> entries;
  auto add = [&](std::string name, bool topology_only, std::function<void(benchmark::State&)> run) {
    cell_entry e;
    e.name = std::move(name);
    e.backend = "kernel";
    e.run = std::move(run);
    e.hosts = true;
    e.topology_only = topology_only;
    entries.push_back(std::move(e));
  };
  add("baseline/tcp/roundtrip/hops:1/bytes:64", true,
      [](benchmark::State& s) { bm_tcp_roundtrip(s, 1); });
  add("baseline/tcp/roundtrip/hops:2/bytes:64", true,
      [](benchmark::State& s) { bm_tcp_roundtrip(s, 2); });
  for (impersonation_level level :
       {impersonation_level::impersonate, impersonation_level::delegate}) {
    add(fmt::format("baseline/kerberos/establish/tcp/level:{}", to_string(level)), false,
        [level](benchmark::State& s) { bm_tcp_establish(s, level); });
  }
  struct variant {
    cloaking mode;
    context_cache_policy cache;
  };
  const variant variants[] = {{cloaking::none, context_cache_policy::none()},
                              {cloaking::static_, context_cache_policy::none()},
                              {cloaking::dynamic, context_cache_policy::none()},
                              {cloaking::dynamic, context_cache_policy::lru(clients_per_thread)}};
  const token_pattern patterns[] = {{pattern_kind::steady, 0},
                                    {pattern_kind::switch_, 0},
                                    {pattern_kind::every, every_n},
                                    {pattern_kind::reimpersonate, 0}};
  for (int hops : {1, 2}) {
    for (const variant& v : variants) {
      for (const token_pattern& pattern : patterns) {
        matrix_cell c;
        c.backend = backend_kind::kernel;
        c.package = package_id::kerberos;
        c.mode = v.mode;
        c.cache = v.cache;
        c.pattern = pattern;
        c.place = placement::na;
        c.bytes = tcp_bytes;
        c.hops = hops;
        add(cell_name(c), hops == 2, [c](benchmark::State& s) { run_tcp_cell(s, c); });
        entries.back().kerberos = false;  // the hosts' realm, not the loopback one
      }
    }
  }
  return entries;
}

// ---- the environment's cross-host part
// -------------------------------------------------------------

void environment::start_hosts() {
  if (hosts_ || !kernel_) {
    if (!kernel_) hosts_why_ = "the kernel backend is unavailable: " + kernel_why_;
    return;
  }
  bool remote = !config_.downstream.empty();
  if (!remote) {
    if (auto why = topology::unavailable_reason()) {
      hosts_why_ = "cross-host cells skipped: " + *why;
      hosts_skipped_ = true;
      return;
    }
  }
  try {
    auto h = std::make_unique<hosts_setup>();
    if (remote) {
      // docs/remote.md: the realm the remote downstream shares, and its address; this process is
      // the middle host, in the namespace it runs in.
      if (config_.realm_dir.empty())
        throw std::invalid_argument("--downstream needs --realm-dir (the realm D1 uses)");
      h->realm = realm_info::load(config_.realm_dir);
      h->down1 = os::parse_tcp_endpoint(config_.downstream);
      const char* previous = std::getenv("KRB5_CONFIG");
      std::string conf = previous && *previous ? std::string(previous) + ":" + h->realm.krb5_conf
                                               : h->realm.krb5_conf;
      ::setenv("KRB5_CONFIG", conf.c_str(), 1);
    } else {
      cross_hosts_config hc;
      hc.clients = config_.clients;
      hc.process = kernel_->process_identity();
      hc.rcache = config_.rcache;
      const char* echo = std::getenv("CLOAK_ECHO_PEER");
#ifdef CLOAK_ECHO_PEER_PATH
      hc.echo_program = echo && *echo ? echo : CLOAK_ECHO_PEER_PATH;
#else
      hc.echo_program = echo && *echo ? echo : "cloak_echo_peer";
#endif
      // Fault test: D1 gets down2's keytab and cannot acquire its acceptor credentials: the setup
      // fails with cloak-downstream's own message, and so does every cross-host cell.
      hc.down1_wrong_keytab = config_.fault == "wrong-keytab";
      h->world = std::make_unique<cross_hosts>(hc);
      h->realm = h->world->realm_description();
      h->down1 = h->world->down1_address();
      h->middle_netns = h->world->middle_netns();
      h->raw_peers = true;
    }
    auto acquiring = std::chrono::steady_clock::now();
    {
      in_middle scope(*h);  // the KDC answers inside the topology only
      h->credentials = std::make_unique<kerberos_credentials>(
          h->realm, config_.clients, kernel_->process_identity(), std::chrono::milliseconds(5000),
          h->realm.host("down1").principal);
    }
    h->credentials_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - acquiring).count();
    hosts_ = std::move(h);
    hosts_why_.clear();
  } catch (const std::exception& e) {
    hosts_why_ = fmt::format("cannot set up the cross-host cells: {}", e.what());
  }
}

os::tcp_endpoint environment::down1_endpoint() {
  std::lock_guard lock(mutex_);
  if (!hosts_) throw std::runtime_error(hosts_why_);
  if (hosts_->world && (hosts_->down1_suspect || !hosts_->world->down1().running())) {
    hosts_->world->restart_down1();
    restarts_.fetch_add(1);
    std::fprintf(stderr,
                 "cloak_matrix: restarted D1 (cloak-downstream in down1) after a failed cell\n");
  }
  hosts_->down1_suspect = false;
  return hosts_->down1;
}

void environment::mark_down1_suspect() noexcept {
  std::lock_guard lock(mutex_);
  if (hosts_) hosts_->down1_suspect = true;
}

void environment::inject_down1_fault() noexcept {
  if (fault_done_.exchange(true)) return;
  std::lock_guard lock(mutex_);
  if (!hosts_ || !hosts_->world) return;
  // The calling thread impersonates a client, who may not signal the harness's children.
  std::optional<temporary_identity> as_process;
  if (kernel_) as_process.emplace(*kernel_, nullptr);
  std::fprintf(stderr, "cloak_matrix: fault injection: SIGKILL to D1 pid %d\n",
               hosts_->world->down1().pid());
  ::kill(hosts_->world->down1().pid(), SIGKILL);
}

}  // namespace cloak::bench
