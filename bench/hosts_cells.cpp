// The cross-host cells (chan:tcp): the middle, in its own network namespace, calls D1 over TCP with
// the kerberos package at delegate level; at hops:2 D1 acts as whom it authenticated and calls D2
// through its own proxy with the same cloaking. Beside them the same-run floors: a raw TCP round
// trip across the veth (one hop, and two through a relay), and an AP exchange across TCP with and
// without a forwarded TGT. Every call is checked against docs/design.md §1, at both hops.
#include <fmt/format.h>
#include <signal.h>

#include <cloak/connection.hpp>
#include <cloak/inject.hpp>
#include <cloak/kerberos.hpp>
#include <cloak/net.hpp>
#include <cloak/proxy.hpp>
#include <optional>
#include <stdexcept>

#include "cell_loop.hpp"
#include "suite.hpp"
#include "token_loop.hpp"

namespace cloak::bench {

namespace {

// The middle's blanket asks for delegate (a forwarded TGT); D1's own proxy asks D2 for impersonate
// (D2 is the last hop: it needs no TGT; cell_loop.cpp).
constexpr impersonation_level middle_level = impersonation_level::delegate;
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
std::unique_ptr<connection> connect_down1(environment& env, hosts_setup& h, std::string& where,
                                          kerberos_client_options k = {}) {
  const std::string& fault = env.config().fault;
  os::tcp_endpoint to = env.hosts().down1_endpoint();
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

// Fails the cell before its loop when the world is not there.
hosts_setup* hosts_or_fail(environment& env, cell_failure& failure) {
  if (env.interrupted()) {
    failure.interrupt();
  } else if (!env.kernel()) {
    failure.fail("the kernel backend is unavailable: " + env.kernel_unavailable_reason());
  } else if (!env.hosts().setup()) {
    failure.fail(env.hosts().unavailable_reason());
  }
  if (failure.failed()) {
    failure.drain();
    return nullptr;
  }
  return env.hosts().setup();
}

void run_tcp_cell(benchmark::State& state, const matrix_cell& cell) {
  environment& env = environment::instance();
  cell_failure failure(state);
  hosts_setup* hosts = hosts_or_fail(env, failure);
  if (!hosts) return;
  identity_backend& backend = *env.kernel();
  std::array<token, clients_per_thread> tokens;
  std::unique_ptr<connection> conn;
  std::optional<in_middle> middle;
  std::string where;
  try {
    os::pin_this_thread(env.config().cpu_client);
    for (std::size_t k = 0; k < clients_per_thread; ++k) {
      tokens[k] = make_token(env.config().clients.client(static_cast<std::uint32_t>(k)));
    }
    conn = connect_down1(env, *hosts, where);
    middle.emplace(*hosts);
  } catch (const std::exception& e) {
    failure.fail(fmt::format("setup: {}", e.what()));
    failure.drain();
    return;
  }
  call_site site;
  site.process = &hosts->realm.middle;  // P as D1 knows it: by its principal
  site.level = middle_level;
  site.seen_by = "D1";
  site.at = " at D1";
  site.down1 = &hosts->realm.host("down1").who;
  site.failed = [&](std::uint64_t i, int hop, const call_result& r, const std::string& detail) {
    std::string why = detail;
    if (r.error == call_error::refused)
      why = fmt::format("status {}{}{}", protocol::to_string(r.view.server_status),
                        why.empty() ? "" : ": ", why);
    bool fault = downstream_fault(r.error);
    if (fault) env.hosts().mark_down1_suspect();
    return fmt::format("call {}: {}: {}{}{}", i, hop == 1 ? "middle -> D1 at " + where : "D1 -> D2",
                       to_string(r.error), why.empty() ? "" : " (" + why + ")",
                       fault ? "; D1 is restarted before the next cell" : "");
  };
  site.label = [&](const identity& who) { return label(who, *hosts); };
  site.inject_fault =
      state.thread_index() == 0 && env.config().fault == "kill-downstream" && env.fault_pending();
  site.fault = [&] { env.inject_down1_fault(); };
  run_cell_loop(state, cell, failure, backend, *conn, tokens, site);
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
    if ((i & interrupt_check_mask) == 0 && env.interrupted()) failure.interrupt();
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
  std::unique_ptr<connection> conn;
  std::optional<in_middle> middle;
  std::string where;
  try {
    os::pin_this_thread(env.config().cpu_client);
    conn = connect_down1(env, *h, where);
    middle.emplace(*h);
    if (call_error e = conn->connect(); e != call_error::ok) {
      if (downstream_fault(e)) env.hosts().mark_down1_suspect();
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
    call_error e = conn->establish(presentation{kernel, nullptr, level}, previous, v);
    if (e != call_error::ok || !v.seen.same_principal(h->realm.middle)) [[unlikely]] {
      if (downstream_fault(e)) env.hosts().mark_down1_suspect();
      failure.fail(
          fmt::format("establish {}: {} ({})", i, to_string(e), conn->last_establish().detail));
      continue;
    }
    previous = v.context;
    ++i;
    if ((i & interrupt_check_mask) == 0 && env.interrupted()) failure.interrupt();
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
      }
    }
  }
  return entries;
}

}  // namespace cloak::bench
