// The shared run environment (environment.hpp): the local servers, the package worlds, the failure
// log and the fault tests. The cross-host world is in hosts_world.cpp.
#include "environment.hpp"

#include <fmt/format.h>
#include <sched.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cloak/enum_names.hpp>
#include <cloak/os.hpp>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <system_error>

#ifndef CLOAK_ECHO_PEER_PATH
#define CLOAK_ECHO_PEER_PATH "cloak-echo-peer"
#endif

namespace cloak::bench {

namespace {

constexpr auto placement_names = make_enum_names<placement>("placement",
                                                            {
                                                                {placement::same, "same"},
                                                                {placement::cross, "cross"},
                                                                {placement::unpinned, "unpinned"},
                                                                {placement::na, "na"},
                                                            },
                                                            "invalid");

}  // namespace

std::string_view to_string(placement p) noexcept { return placement_names.to_string(p); }

// ---- cpu_plan
// ------------------------------------------------------------------------------------

int cpu_plan::client_cpu(placement p) const noexcept {
  return p == placement::unpinned ? -1 : client;
}

int cpu_plan::server_cpu(placement p) const noexcept {
  switch (p) {
    case placement::same:
      return client;
    case placement::cross:
      return other;
    default:
      return -1;
  }
}

void cpu_plan::pin_client(placement p) const { os::pin_this_thread(client_cpu(p)); }

// ---- local_servers
// -------------------------------------------------------------------------------

void local_servers::serve_kerberos(std::string realm_dir, std::string rcache) {
  std::lock_guard lock(mutex_);
  realm_dir_ = std::move(realm_dir);
  rcache_ = std::move(rcache);
}

void local_servers::serve_ntlm(std::string ntlm_dir) {
  std::lock_guard lock(mutex_);
  ntlm_dir_ = std::move(ntlm_dir);
}

std::string local_servers::ensure(std::array<server, 3>& servers, placement p,
                                  const std::string& program, const char* what) {
  if (p == placement::na) throw std::logic_error("no server for placement na");
  std::lock_guard lock(mutex_);
  server& s = servers[static_cast<std::size_t>(p)];
  // Whichever client thread of a cell comes first (re)starts what is needed, under the lock; the
  // servers watch this process, not the thread that started them, so any thread may.
  try {
    if (!s.process) {
      downstream_config dc;
      dc.program = program;
      dc.clients = clients_;
      dc.cpu = cpus_.server_cpu(p);
      // Thousands of clients: each has its uid checked and a probe file made before readiness.
      dc.ready_timeout = std::chrono::milliseconds(clients_.count > 256 ? 60000 : 5000);
      if (!run_root_.empty()) {
        std::string pattern = run_root_ + "/cloak-load-XXXXXX";
        if (!::mkdtemp(pattern.data()))
          throw std::system_error(errno, std::generic_category(),
                                  fmt::format("cannot make a run directory under {}", run_root_));
        dc.run_dir = pattern;
        run_dirs_.push_back(pattern);
      }
      if (&servers == &downstreams_) {  // the same downstream serves every package
        dc.realm_dir = realm_dir_;
        if (!realm_dir_.empty()) dc.rcache = rcache_;
        dc.ntlm_dir = ntlm_dir_;
      }
      s.process = std::make_unique<downstream_process>(dc);
    } else if (s.suspect || !s.process->running()) {
      // A stalled server may hold the old socket's connections; SIGKILL works even on a stopped
      // one.
      s.process->kill(SIGKILL);
      s.process->start();
      restarts_.fetch_add(1);
      std::fprintf(stderr, "cloak-matrix: restarted %s (place:%s) after a failed cell\n", what,
                   std::string(to_string(p)).c_str());
    }
  } catch (const std::exception& e) {
    s.process.reset();
    throw std::runtime_error(
        fmt::format("cannot start {} for place:{}: {}", what, to_string(p), e.what()));
  }
  s.suspect = false;
  return s.process->socket_path();
}

std::string local_servers::downstream_socket(placement p) {
  return ensure(downstreams_, p, "", "cloak-downstream");
}

std::string local_servers::echo_socket(placement p) {
  const char* env = std::getenv("CLOAK_ECHO_PEER");
  return ensure(echoes_, p, env && *env ? env : CLOAK_ECHO_PEER_PATH, "cloak-echo-peer");
}

void local_servers::mark_suspect(placement p) noexcept {
  if (p == placement::na) return;
  std::lock_guard lock(mutex_);
  downstreams_[static_cast<std::size_t>(p)].suspect = true;
}

void local_servers::fresh_downstream(placement p) {
  if (p == placement::na) return;
  {
    std::lock_guard lock(mutex_);
    server& s = downstreams_[static_cast<std::size_t>(p)];
    if (s.process) {
      s.process->stop();
      s.process->start();
      s.suspect = false;
      return;
    }
  }
  downstream_socket(p);  // the first start
}

std::string local_servers::downstream_state(placement p) {
  if (p == placement::na) return "in-process";
  std::lock_guard lock(mutex_);
  server& s = downstreams_[static_cast<std::size_t>(p)];
  if (!s.process) return "not started";
  return s.process->running() ? fmt::format("pid {} still running", s.process->pid())
                              : "cloak-downstream exited";
}

pid_t local_servers::downstream_pid(placement p) {
  if (p == placement::na) return 0;
  std::lock_guard lock(mutex_);
  server& s = downstreams_[static_cast<std::size_t>(p)];
  return s.process ? s.process->pid() : 0;
}

void local_servers::shutdown() noexcept {
  std::lock_guard lock(mutex_);
  for (auto* servers : {&downstreams_, &echoes_}) {
    for (server& s : *servers) s.process.reset();  // the destructor stops, reaps and cleans up
  }
  for (const auto& dir : run_dirs_) {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  run_dirs_.clear();
}

// ---- the package worlds
// --------------------------------------------------------------------------

void kerberos_world::start(const bench_config& config, const identity& process) {
  if (credentials_) return;
  try {
    realm_config rc;
    rc.clients = config.clients;
    rc.process = process;
    // Thousands of principals (the load cells): made in one pass, but not within the default bound
    // on a busy 2-vCPU machine.
    rc.ready_timeout =
        std::max(rc.ready_timeout, std::chrono::milliseconds(20000 + 12 * config.clients.count));
    kdc_ = std::make_unique<realm>(rc);
    realm_seconds_ = kdc_->info().setup_seconds;
    kdc_->export_environment();
    // The KDC answers the cold-ticket cells: it runs where the client does, as the downstream of
    // place:same does, so a TGS-REQ costs no cross-CPU wake-up.
    if (pid_t kdc = kdc_->kdc_pid(); kdc > 0 && config.cpu_client >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(config.cpu_client, &set);
      ::sched_setaffinity(kdc, sizeof set, &set);
    }
    auto acquiring = std::chrono::steady_clock::now();
    credentials_ = std::make_unique<kerberos_credentials>(kdc_->info(), config.clients, process);
    credentials_seconds_ =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - acquiring).count();
    why_.clear();
  } catch (const std::exception& e) {
    credentials_.reset();
    kdc_.reset();
    why_ = fmt::format("cannot start the Kerberos realm: {}", e.what());
  }
}

void kerberos_world::shutdown() noexcept {
  credentials_.reset();
  kdc_.reset();  // stops the KDC and removes the realm
}

void ntlm_world::start(const bench_config& config, const identity& process) {
  if (credentials_) return;
  try {
    auto starting = std::chrono::steady_clock::now();
    ntlm_config nc;
    nc.clients = config.clients;
    nc.process = process;
    domain_ = std::make_unique<ntlm_domain>(nc);
    domain_->export_environment();  // before any GSSAPI use, and inherited by cloak-downstream
    credentials_ = std::make_unique<ntlm_credentials>(domain_->info());
    setup_seconds_ =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - starting).count();
    why_.clear();
  } catch (const std::exception& e) {
    credentials_.reset();
    domain_.reset();
    why_ = fmt::format("cannot make the NTLM domain: {}", e.what());
  }
}

void ntlm_world::shutdown() noexcept {
  credentials_.reset();
  domain_.reset();  // removes the domain's directory
}

void negotiate_world::start(kerberos_world& kerberos, ntlm_world& ntlm, const bench_config& config,
                            const identity& process) {
  if (credentials_) return;
  krb5_why_ = kerberos.credentials() ? "" : kerberos.unavailable_reason();
  ntlm_why_ = ntlm.credentials() ? "" : ntlm.unavailable_reason();
  try {
    auto starting = std::chrono::steady_clock::now();
    credentials_ = std::make_unique<negotiate_credentials>(
        kerberos.credentials(), ntlm.credentials() ? ntlm.info() : nullptr, config.clients,
        process);
    setup_seconds_ =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - starting).count();
    why_.clear();
  } catch (const std::exception& e) {
    credentials_.reset();
    why_ = fmt::format("cannot acquire the negotiate credentials: {}", e.what());
  }
}

std::string negotiate_world::unavailable_reason(negotiate_mech mech) const {
  const std::string& world = mech == negotiate_mech::krb5 ? krb5_why_ : ntlm_why_;
  if (!world.empty()) return world;
  if (!credentials_) return why_;
  if (!credentials_->offers(mech))
    return fmt::format("the negotiate credentials do not offer {}", to_string(mech));
  return "";
}

// ---- failure_log
// ---------------------------------------------------------------------------------

void failure_log::record(const std::string& cell, const std::string& message, bool interrupted) {
  std::lock_guard lock(mutex_);
  failures_.emplace(cell, entry{message, interrupted});  // keeps the first
}

std::optional<std::string> failure_log::earlier(const std::string& cell) {
  std::lock_guard lock(mutex_);
  auto it = failures_.find(cell);
  if (it == failures_.end()) return std::nullopt;
  const entry& e = it->second;
  return e.interrupted ? e.message : "an earlier repetition failed: " + e.message;
}

// ---- environment
// ---------------------------------------------------------------------------------

environment& environment::instance() {
  static environment env;
  return env;
}

void environment::configure(const bench_config& config) {
  config_ = config;
  cpus_ = cpu_plan{config.cpu_client, config.cpu_other};
  servers_.configure(config.clients, cpus_, config.run_root);
  if (auto why = kernel_backend_unavailable_reason()) {
    kernel_why_ = *why;
  } else {
    try {
      kernel_ = make_kernel_backend();
    } catch (const std::exception& e) {
      kernel_why_ = e.what();
    }
  }
  model_ = make_model_backend();
}

void environment::start_kerberos() {
  if (!kernel_) return;
  kerberos_.start(config_, kernel_->process_identity());
  if (const realm_info* r = kerberos_.info()) servers_.serve_kerberos(r->dir, config_.rcache);
}

void environment::start_ntlm() {
  if (!kernel_) return;
  ntlm_.start(config_, kernel_->process_identity());
  if (const ntlm_info* n = ntlm_.info()) servers_.serve_ntlm(n->dir);
}

void environment::start_negotiate() {
  if (!kernel_) return;
  start_kerberos();
  start_ntlm();
  negotiate_.start(kerberos_, ntlm_, config_, kernel_->process_identity());
}

void environment::start_hosts() {
  if (!kernel_) return hosts_.refuse("the kernel backend is unavailable: " + kernel_why_);
  hosts_.start(config_, kernel_->process_identity());
}

void environment::signal_as_process(pid_t pid, int signal, const char* what) noexcept {
  if (pid <= 0) return;
  std::optional<temporary_identity> as_process;
  if (kernel_) as_process.emplace(*kernel_, nullptr);
  std::fprintf(stderr, "cloak-matrix: fault injection: %s to %s pid %d\n",
               signal == SIGKILL ? "SIGKILL" : "SIGSTOP", what, pid);
  ::kill(pid, signal);
}

void environment::inject_fault(placement p) noexcept {
  if (p == placement::na || fault_done_.exchange(true)) return;
  if (config_.fault == "kill-downstream") {
    signal_as_process(servers_.downstream_pid(p), SIGKILL, "cloak-downstream");
  } else if (config_.fault == "stall-downstream") {
    signal_as_process(servers_.downstream_pid(p), SIGSTOP, "cloak-downstream");
  }
}

void environment::inject_down1_fault() noexcept {
  if (fault_done_.exchange(true)) return;
  signal_as_process(hosts_.down1_pid(), SIGKILL, "D1");
}

void environment::shutdown() noexcept {
  hosts_.shutdown();  // D1, D2, the peers, the hosts' realm, then the namespaces
  servers_.shutdown();
  negotiate_.shutdown();  // its krb5 credentials live in the kerberos world's ccaches
  kerberos_.shutdown();
  ntlm_.shutdown();
}

}  // namespace cloak::bench
