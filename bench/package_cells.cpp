// Each GSSAPI package's own terms, measured beside its cells in the same run: the exchange in one
// process (GSSAPI alone), the exchange across the socket (what a cell's new-context term should
// cost), a MIC pair (prot:integrity's per-call term) and a seal/unseal pair (prot:privacy's).
// Kerberos, NTLM and Negotiate (over each mechanism) share every function; only how a client and a
// server package are made differs.
#include <fmt/format.h>

#include <cloak/connection.hpp>
#include <cloak/kerberos.hpp>
#include <cloak/negotiate.hpp>
#include <cloak/ntlm.hpp>
#include <cloak/protocol.hpp>
#include <optional>
#include <stdexcept>

#include "baseline_common.hpp"
#include "cell_loop.hpp"
#include "suite.hpp"

namespace cloak::bench {

namespace {

using detail::begin;
using detail::check_no_leak;

// Hands each establish token straight to a server package in this process: an exchange with no
// wire, so its cost is GSSAPI's alone.
class inproc_legs final : public establish_legs {
 public:
  explicit inproc_legs(server_package& server) : server_(server) {}
  call_error leg(std::span<const std::byte> token, leg_reply& out) noexcept override {
    try {
      reply_.clear();
      accept_outcome a = server_.accept(peer_info{nullptr, false}, token, std::move(state), reply_);
      if (a.result == accept_outcome::kind::refused) {
        out.view.server_status = a.refusal;
        detail = a.detail;
        return call_error::refused;
      }
      out.more = a.result == accept_outcome::kind::more;
      out.token = reply_;
      state = std::move(a.state);
      who = a.who;
      ++legs;
      return call_error::ok;
    } catch (const std::exception& e) {
      detail = e.what();
      return call_error::authentication_failed;
    }
  }
  std::unique_ptr<server_context_state> state;
  identity who;
  std::string detail;
  int legs = 0;

 private:
  server_package& server_;
  token_buffer reply_;
};

// A GSSAPI package, and for negotiate the mechanism SPNEGO negotiates.
struct gss_choice {
  package_id package = package_id::kerberos;
  negotiate_mech mech = negotiate_mech::krb5;  // negotiate only
};

// The baseline's name: baseline/<package>[/mech:<m>]/<rest>.
std::string baseline_name(gss_choice g, std::string_view rest) {
  if (g.package == package_id::negotiate)
    return fmt::format("baseline/negotiate/mech:{}/{}", to_string(g.mech), rest);
  return fmt::format("baseline/{}/{}", to_string(g.package), rest);
}

// The package's world, or the cell fails saying why it is missing.
bool world_or_fail(gss_choice g, cell_failure& failure) {
  package_id package = g.package;
  environment& env = environment::instance();
  if (!env.kernel()) {
    failure.fail("the kernel backend is unavailable: " + env.kernel_unavailable_reason());
  } else if (package == package_id::kerberos && !env.kerberos().credentials()) {
    failure.fail(env.kerberos().unavailable_reason());
  } else if (package == package_id::ntlm && !env.ntlm().credentials()) {
    failure.fail(env.ntlm().unavailable_reason());
  } else if (package == package_id::negotiate) {
    if (std::string why = env.negotiate().unavailable_reason(g.mech); !why.empty())
      failure.fail(why);
  }
  if (failure.failed()) {
    failure.drain();
    return false;
  }
  return true;
}

std::unique_ptr<client_package> make_client(gss_choice g, protection per_call,
                                            ticket_state tickets) {
  environment& env = environment::instance();
  package_id package = g.package;
  if (package == package_id::negotiate) {
    negotiate_client_options o;
    o.mech = g.mech;
    o.per_call = per_call;
    return make_negotiate_client(*env.negotiate().credentials(), o);
  }
  if (package == package_id::ntlm) {
    ntlm_client_options n;
    n.per_call = per_call;
    return make_ntlm_client(*env.ntlm().credentials(), n);
  }
  kerberos_client_options k;
  k.per_call = per_call;
  k.tickets = tickets;
  return make_kerberos_client(*env.kerberos().credentials(), k);
}

// The in-process server the baselines accept with: the downstream's own settings (kerberos: its
// keytab and replay cache setting, with an rcache file of its own; ntlm: the domain's user file;
// negotiate: one SPNEGO acceptor over both, as the downstream's).
std::unique_ptr<server_package> make_server(gss_choice g) {
  environment& env = environment::instance();
  if (g.package == package_id::ntlm) return make_ntlm_server(*env.ntlm().info());
  auto kerberos_options = [&](const realm_info& r, std::string_view file) {
    kerberos_server_options o;
    o.rcache = env.config().rcache == "none" ? "none" : fmt::format("file2:{}/{}", r.dir, file);
    return o;
  };
  if (g.package == package_id::negotiate) {
    const realm_info* r = env.kerberos().info();
    const ntlm_info* n = env.ntlm().credentials() ? env.ntlm().info() : nullptr;
    return make_negotiate_server(
        r, n, r ? kerberos_options(*r, "bench-rcache2-negotiate") : kerberos_server_options{});
  }
  const realm_info& r = *env.kerberos().info();
  return make_kerberos_server(r, kerberos_options(r, "bench-rcache2"));
}

// An exchange as P in one process (gss_init_sec_context, accept, ...), every accepted identity
// checked; legs per context as a counter.
void bm_establish_inproc(benchmark::State& state, gss_choice package, ticket_state tickets) {
  cell_failure failure(state);
  if (!begin(state, failure, placement::same) || !world_or_fail(package, failure)) return;
  environment& env = environment::instance();
  std::unique_ptr<server_package> server;
  std::unique_ptr<client_package> client;
  try {
    server = make_server(package);
    client = make_client(package, protection::none, tickets);
  } catch (const std::exception& e) {
    failure.fail(fmt::format("setup: {}", e.what()));
    failure.drain();
    return;
  }
  identity_backend& kernel = *env.kernel();
  const identity& process = kernel.process_identity();
  std::uint64_t i = 0, legs = 0;
  for (auto _ : state) {
    if (failure.failed()) continue;
    inproc_legs exchange(*server);
    establish_outcome out = client->establish(
        presentation{kernel, nullptr, impersonation_level::impersonate}, exchange);
    if (out.error != call_error::ok || !exchange.who.same_principal(process)) [[unlikely]] {
      failure.fail(fmt::format("establish {}: {} {} {}", i, to_string(out.error), out.detail,
                               exchange.detail));
      continue;
    }
    legs += static_cast<std::uint64_t>(exchange.legs);
    ++i;
    CLOAK_INTERRUPT_POINT(i, failure)
  }
  state.counters["contexts_per_call"] = benchmark::Counter(1);
  state.counters["legs_per_context"] =
      benchmark::Counter(static_cast<double>(legs), benchmark::Counter::kAvgIterations);
  check_no_leak(failure);
}

// A new context across the socket: the establish frames, the previous context released in the same
// round trip; what a cell's new-context term should cost.
void bm_establish_uds(benchmark::State& state, gss_choice package, placement where) {
  cell_failure failure(state);
  if (!begin(state, failure, where) || !world_or_fail(package, failure)) return;
  environment& env = environment::instance();
  std::unique_ptr<connection> conn;
  try {
    conn = connect_downstream(env, where, package.package, protection::none, ticket_state::warm,
                              package.mech);
  } catch (const std::exception& e) {
    failure.fail(fmt::format("setup: {}", e.what()));
    failure.drain();
    return;
  }
  identity_backend& kernel = *env.kernel();
  const identity& process = kernel.process_identity();
  if (conn->connect() != call_error::ok) failure.fail("cannot connect to cloak-downstream");
  std::uint64_t previous = 0, i = 0;
  for (auto _ : state) {
    if (failure.failed()) continue;
    downstream_view v;
    call_error e = conn->establish(presentation{kernel, nullptr, impersonation_level::impersonate},
                                   previous, v);
    if (e != call_error::ok || !v.seen.same_principal(process)) [[unlikely]] {
      env.servers().mark_suspect(where);
      failure.fail(
          fmt::format("establish {}: {} ({})", i, to_string(e), conn->last_establish().detail));
      continue;
    }
    previous = v.context;
    ++i;
    CLOAK_INTERRUPT_POINT(i, failure)
  }
  state.counters["contexts_per_call"] = benchmark::Counter(1);
  // What one context puts on the wire (the closing figures of docs/reading.md): tokens, the
  // client's frames, and their bytes, per context this connection established.
  const establish_totals& sum = conn->totals();
  if (sum.contexts > 0) {
    double n = static_cast<double>(sum.contexts);
    state.counters["legs_per_context"] = static_cast<double>(sum.legs) / n;
    state.counters["round_trips_per_context"] = static_cast<double>(sum.round_trips) / n;
    state.counters["token_bytes_per_context"] = static_cast<double>(sum.token_bytes) / n;
  }
  check_no_leak(failure);
}

// One context as P between a client and a server package of this process, for the per-call terms
// (MIC, seal): what bm_mic and bm_wrap share.
struct inproc_context {
  std::unique_ptr<server_package> server;
  std::unique_ptr<client_package> client;
  std::optional<inproc_legs> legs;
  establish_outcome context;

  inproc_context(gss_choice package, protection per_call) {
    try {
      server = make_server(package);
      client = make_client(package, per_call, ticket_state::warm);
      legs.emplace(*server);
      context = client->establish(presentation{*environment::instance().kernel(), nullptr,
                                               impersonation_level::impersonate},
                                  *legs);
    } catch (const std::exception& e) {
      context.error = call_error::authentication_failed;
      context.detail = e.what();
    }
  }
  // False after failing the cell (and draining it) when the context could not be made.
  bool established(cell_failure& failure) {
    if (context.error == call_error::ok) return true;
    failure.fail(fmt::format("setup: {} {}", to_string(context.error), context.detail));
    failure.drain();
    return false;
  }
};

// The MIC on the client and its check on the server, 64 bytes: prot:integrity's per-call term.
void bm_mic(benchmark::State& state, gss_choice package) {
  cell_failure failure(state);
  if (!begin(state, failure, placement::same) || !world_or_fail(package, failure)) return;
  inproc_context c(package, protection::integrity);
  if (!c.established(failure)) return;
  client_package* client = c.client.get();
  server_package* server = c.server.get();
  std::array<std::byte, 64> message{};
  token_buffer mic;
  mic.reserve(protocol::max_mic);
  std::uint64_t i = 0;
  for (auto _ : state) {
    if (failure.failed()) continue;
    if (!client->sign(c.context.state.get(), message, mic) ||
        !server->verify(c.legs->state.get(), message, mic)) [[unlikely]] {
      failure.fail(fmt::format("MIC {} did not verify", i));
      continue;
    }
    ++i;
    CLOAK_INTERRUPT_POINT(i, failure)
  }
  check_no_leak(failure);
}

// prot:privacy's per-call term: the client seals `bytes` of payload (gss_wrap, confidentiality
// asked for and checked) and the server opens it (gss_unwrap), every opened payload compared with
// what was sealed. A call at privacy pays two such pairs: the request and the reply.
void bm_wrap(benchmark::State& state, gss_choice package, std::size_t bytes) {
  cell_failure failure(state);
  if (!begin(state, failure, placement::same) || !world_or_fail(package, failure)) return;
  inproc_context c(package, protection::privacy);
  if (!c.established(failure)) return;
  client_package* client = c.client.get();
  server_package* server = c.server.get();
  std::vector<std::byte> message(bytes, std::byte{0x5a});
  token_buffer sealed, opened;
  sealed.reserve(bytes + 256);
  opened.reserve(bytes + 256);
  std::uint64_t i = 0;
  for (auto _ : state) {
    if (failure.failed()) continue;
    if (!client->seal(c.context.state.get(), message, sealed) ||
        !server->unseal(c.legs->state.get(), sealed, opened) || opened.size() != bytes ||
        opened[0] != message[0] || opened[bytes - 1] != message[bytes - 1]) [[unlikely]] {
      failure.fail(fmt::format("sealed message {} did not open to what was sealed", i));
      continue;
    }
    ++i;
    CLOAK_INTERRUPT_POINT(i, failure)
  }
  state.counters["bytes"] = benchmark::Counter(static_cast<double>(bytes));
  state.counters["sealed_bytes"] = benchmark::Counter(static_cast<double>(sealed.size()));
  check_no_leak(failure);
}

}  // namespace

std::vector<cell_entry> package_entries() {
  std::vector<cell_entry> entries;
  auto add = [&](gss_choice g, std::string name, std::function<void(benchmark::State&)> run) {
    cell_entry e;
    e.name = std::move(name);
    e.quick = g.package == package_id::kerberos;
    e.backend = "kernel";
    e.run = std::move(run);
    e.package = g.package;
    entries.push_back(std::move(e));
  };
  // kerberos: with warm and cold tickets in one process (cold - warm: the TGS-REQ term).
  for (ticket_state t : {ticket_state::warm, ticket_state::cold}) {
    gss_choice k{package_id::kerberos};
    add(k, fmt::format("baseline/kerberos/establish/inproc/tickets:{}", to_string(t)),
        [k, t](benchmark::State& s) { bm_establish_inproc(s, k, t); });
  }
  const gss_choice others[] = {{package_id::ntlm},
                               {package_id::negotiate, negotiate_mech::krb5},
                               {package_id::negotiate, negotiate_mech::ntlm}};
  for (gss_choice g : others) {
    add(g, baseline_name(g, "establish/inproc"),
        [g](benchmark::State& s) { bm_establish_inproc(s, g, ticket_state::warm); });
  }
  const gss_choice every[] = {{package_id::kerberos}, others[0], others[1], others[2]};
  for (gss_choice g : every) {
    add(g, baseline_name(g, "establish/place:same"),
        [g](benchmark::State& s) { bm_establish_uds(s, g, placement::same); });
    add(g, baseline_name(g, "mic/bytes:64"), [g](benchmark::State& s) { bm_mic(s, g); });
    // prot:privacy (behind --matrix=full with its cells)
    for (std::size_t bytes : {std::size_t{64}, std::size_t{4096}}) {
      add(g, baseline_name(g, fmt::format("wrap/bytes:{}", bytes)),
          [g, bytes](benchmark::State& s) { bm_wrap(s, g, bytes); });
      entries.back().full_only = true;
    }
  }
  return entries;
}

}  // namespace cloak::bench
