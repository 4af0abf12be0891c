// The cloaking matrix on this machine: each cell connects to the downstream of its placement (or
// the in-process model) with its package, and runs the one cell loop (cell_loop.hpp) on it.
#include <fmt/format.h>

#include <cloak/connection.hpp>
#include <cloak/kerberos.hpp>
#include <cloak/negotiate.hpp>
#include <cloak/ntlm.hpp>
#include <cloak/os.hpp>
#include <optional>
#include <stdexcept>

#include "cell_loop.hpp"
#include "environment.hpp"
#include "suite.hpp"

namespace cloak::bench {

namespace {

// How a call to this machine's downstream failed: only a broken or silent downstream is restarted;
// a refusal or a failed authentication (a KDC that does not answer, say) says nothing against it.
std::string describe_failure(environment& env, const matrix_cell& cell, std::uint64_t i,
                             const call_result& r, const std::string& detail) {
  bool downstream_fault = r.error == call_error::downstream_unavailable ||
                          r.error == call_error::timeout || r.error == call_error::protocol;
  std::string state = env.servers().downstream_state(cell.place);
  if (r.error == call_error::timeout)
    state = "no reply within the 2 s bound; " + state + " but not answering";
  if (r.error == call_error::refused)
    state = fmt::format("status {}", protocol::to_string(r.view.server_status));
  if (!detail.empty()) state = downstream_fault ? detail + "; " + state : detail;
  if (downstream_fault) env.servers().mark_suspect(cell.place);
  return fmt::format("call {}: {} ({}){}", i, to_string(r.error), state,
                     downstream_fault && cell.backend == backend_kind::kernel
                         ? "; cloak-downstream is restarted before the next cell"
                         : "");
}

void run_matrix_cell(benchmark::State& state, const matrix_cell& cell) {
  environment& env = environment::instance();
  cell_failure failure(state);
  if (env.interrupted()) {
    failure.interrupt();
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
  std::unique_ptr<connection> conn;
  try {
    env.cpus().pin_client(cell.place);
    if (cell.groups > 0) check_extra_groups(env.config().clients, cell.groups);
    // Each client thread has its own clients, connection and proxy.
    std::uint32_t first = static_cast<std::uint32_t>(state.thread_index()) * clients_per_thread;
    for (std::size_t k = 0; k < clients_per_thread; ++k) {
      tokens[k] = make_token(
          env.config().clients.client(first + static_cast<std::uint32_t>(k), cell.groups));
    }
    if (cell.backend == backend_kind::kernel) {
      conn =
          connect_downstream(env, cell.place, cell.package, cell.per_call, cell.tickets, cell.mech);
    } else {
      model = std::make_unique<model_downstream>();
      conn = make_inproc_connection(*model, *backend);
    }
  } catch (const std::exception& e) {
    failure.fail(fmt::format("setup: {}", e.what()));
    failure.drain();
    return;
  }
  const identity& process = backend->process_identity();
  call_site site;
  site.process = &process;
  site.failed = [&](std::uint64_t i, int, const call_result& r, const std::string& detail) {
    return describe_failure(env, cell, i, r, detail);
  };
  site.label = [&](const identity& who) {
    return who.same_principal(process) ? fmt::format("{} (P)", to_string(who)) : to_string(who);
  };
  site.inject_fault =
      cell.backend == backend_kind::kernel && state.thread_index() == 0 && env.fault_pending();
  site.fault = [&] { env.inject_fault(cell.place); };
  run_cell_loop(state, cell, failure, *backend, *conn, tokens, site);
}

}  // namespace

std::unique_ptr<connection> connect_downstream(environment& env, placement place,
                                               package_id package, protection per_call,
                                               ticket_state tickets, negotiate_mech mech) {
  uds_options to{env.servers().downstream_socket(place), std::chrono::milliseconds(2000)};
  switch (package) {
    case package_id::kerberos: {
      kerberos_credentials* credentials = env.kerberos().credentials();
      if (!credentials) throw std::runtime_error(env.kerberos().unavailable_reason());
      kerberos_client_options k;
      k.tickets = tickets;
      k.per_call = per_call;
      return make_connection(make_uds_channel(to), make_kerberos_client(*credentials, k));
    }
    case package_id::ntlm: {
      ntlm_credentials* credentials = env.ntlm().credentials();
      if (!credentials) throw std::runtime_error(env.ntlm().unavailable_reason());
      ntlm_client_options n;
      n.per_call = per_call;
      return make_connection(make_uds_channel(to), make_ntlm_client(*credentials, n));
    }
    case package_id::negotiate: {
      negotiate_world& w = env.negotiate();
      if (std::string why = w.unavailable_reason(mech); !why.empty()) throw std::runtime_error(why);
      negotiate_client_options o;
      o.mech = mech;
      o.per_call = per_call;
      return make_connection(make_uds_channel(to), make_negotiate_client(*w.credentials(), o));
    }
    default:
      return make_uds_connection(to);
  }
}

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
    e.package = cell.package;
    e.full_only = cell.full_only;
    entries.push_back(std::move(e));
  }
  return entries;
}

}  // namespace cloak::bench
