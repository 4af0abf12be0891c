// What the cells of one benchmark process share, split by what it holds: the identity backends and
// where threads run, the servers on this machine, each package's world (the loopback realm, the
// NTLM domain), the cross-host world, the failures cells recorded, and the run's own state
// (interruption, the fault tests).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cloak/backend.hpp>
#include <cloak/downstream.hpp>
#include <cloak/hosts.hpp>
#include <cloak/identity.hpp>
#include <cloak/kerberos.hpp>
#include <cloak/negotiate.hpp>
#include <cloak/ntlm.hpp>
#include <cloak/realm.hpp>
#include <csignal>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace cloak::bench {

// Where the client thread(s) and the downstream run (docs/design.md §2: part of what a result is).
enum class placement : std::uint8_t { same, cross, unpinned, na };
std::string_view to_string(placement p) noexcept;

struct bench_config {
  int cpu_client = 0;
  int cpu_other = 1;
  client_range clients;
  std::string fault;  // "", "kill-downstream" or "stall-downstream" (for the fault tests)
  std::string rcache = "file2";  // the kerberos acceptor's replay cache: file2 or none
  // Across hosts (hosts_cells.cpp): the topology this run makes (--hosts), or a downstream on
  // another machine (--downstream tcp:HOST:PORT with the realm it shares, --realm-dir;
  // docs/remote.md).
  bool hosts = false;
  std::string downstream;
  std::string realm_dir;
  // The load cells (--load): the run's clients are the load range (K up to cloak::max_clients),
  // every cell draws its callers from a sampler seeded with load_seed, and the downstreams' run
  // directories (a probe file per client) go under run_root (tmpfs) when it is set.
  bool load = false;
  std::uint64_t load_seed = 1;
  double load_seconds = 0;  // the threaded load cells' timed run (0: each cell's own)
  std::string run_root;
};

// Which CPU each side of a placement runs on.
struct cpu_plan {
  int client = 0;
  int other = 1;
  int client_cpu(placement p) const noexcept;  // -1: unpinned
  int server_cpu(placement p) const noexcept;
  void pin_client(placement p) const;  // pins the calling thread; throws std::system_error
};

// One cloak-downstream and one echo peer per placement, started on first use, reused by later
// cells, restarted when dead or marked suspect. Thread-safe.
class local_servers {
 public:
  // `run_root`: make each downstream's run directory under it (and remove it at shutdown); empty:
  // the downstream's own private directory.
  void configure(const client_range& clients, cpu_plan cpus, std::string run_root = {}) {
    clients_ = clients;
    cpus_ = cpus;
    run_root_ = std::move(run_root);
  }
  // The packages the downstreams serve beside local; set before the first cell starts one.
  void serve_kerberos(std::string realm_dir, std::string rcache);
  void serve_ntlm(std::string ntlm_dir);

  // The downstream for `p`, running. Throws (naming the placement) when it cannot be started.
  std::string downstream_socket(placement p);
  std::string echo_socket(placement p);
  // The echo peer's plain ping-pong socket (no credentials read): baseline/roundtrip/minimal.
  std::string minimal_echo_socket(placement p) { return echo_socket(p) + "-minimal"; }
  // A cell saw the downstream fail (died, timed out): restart it before the next cell.
  void mark_suspect(placement p) noexcept;
  // Stops the downstream of `p` (if running) and starts it again: a process whose memory no
  // earlier cell has touched, for a cell that measures it (not counted as a restart).
  void fresh_downstream(placement p);
  // Why a call to the downstream of `p` may have failed, for error messages ("exited", "running").
  std::string downstream_state(placement p);
  // The downstream's pid for the fault tests (0: not running).
  pid_t downstream_pid(placement p);
  int restarts() const noexcept { return restarts_.load(); }
  void shutdown() noexcept;

 private:
  struct server {
    std::unique_ptr<downstream_process> process;
    bool suspect = false;
  };
  std::string ensure(std::array<server, 3>& servers, placement p, const std::string& program,
                     const char* what);

  client_range clients_;
  cpu_plan cpus_;
  std::string realm_dir_, rcache_, ntlm_dir_;
  std::string run_root_;
  std::vector<std::string> run_dirs_;  // made under run_root_, removed at shutdown
  std::mutex mutex_;
  std::array<server, 3> downstreams_;
  std::array<server, 3> echoes_;
  std::atomic<int> restarts_{0};
};

// The kerberos cells' world: the realm this process started, the initiator credentials of P and
// every client, and what setting them up cost (recorded in the results).
class kerberos_world {
 public:
  // Starts the realm and acquires every credential (once; before any cell runs, while the process
  // has one thread: it sets KRB5_CONFIG). Records why when it cannot; credentials() is then null.
  void start(const bench_config& config, const identity& process);
  kerberos_credentials* credentials() noexcept { return credentials_.get(); }
  const realm_info* info() const noexcept { return kdc_ ? &kdc_->info() : nullptr; }
  const std::string& unavailable_reason() const noexcept { return why_; }
  double realm_seconds() const noexcept { return realm_seconds_; }
  double credentials_seconds() const noexcept { return credentials_seconds_; }
  // For the fault tests: the KDC stops answering (SIGSTOP); the realm's supervisor continues and
  // stops it at shutdown.
  void stop_kdc_for_fault() noexcept {
    if (kdc_) kdc_->kill_kdc(SIGSTOP);
  }
  void shutdown() noexcept;

 private:
  std::unique_ptr<realm> kdc_;
  std::unique_ptr<kerberos_credentials> credentials_;
  std::string why_ = "the realm was not started";
  double realm_seconds_ = 0;        // cloak-realm: mkdtemp to a KDC answering
  double credentials_seconds_ = 0;  // TGT and a service ticket for P and every client
};

// The ntlm cells' world: the run's private NTLM domain (GSS_MECH_CONFIG exported before any GSSAPI
// use) and the initiator credentials of P and every client.
class ntlm_world {
 public:
  // Once, before any cell runs and while the process has one thread (it sets GSS_MECH_CONFIG).
  void start(const bench_config& config, const identity& process);
  ntlm_credentials* credentials() noexcept { return credentials_.get(); }
  const ntlm_info* info() const noexcept { return domain_ ? &domain_->info() : nullptr; }
  const std::string& unavailable_reason() const noexcept { return why_; }
  double setup_seconds() const noexcept { return setup_seconds_; }
  void shutdown() noexcept;

 private:
  std::unique_ptr<ntlm_domain> domain_;
  std::unique_ptr<ntlm_credentials> credentials_;
  std::string why_ = "the NTLM domain was not made";
  double setup_seconds_ = 0;  // the domain's files and every client's credentials
};

// The negotiate cells' world: SPNEGO initiator credentials over the kerberos world's ccaches (mech
// krb5) and the NTLM domain's NT hashes (mech ntlm), so it starts after both; the downstream's one
// SPNEGO acceptor covers both mechanisms.
class negotiate_world {
 public:
  // Once, before any cell runs, after the kerberos and ntlm worlds (either may have failed: its
  // mechanism's cells then fail with that world's reason).
  void start(kerberos_world& kerberos, ntlm_world& ntlm, const bench_config& config,
             const identity& process);
  negotiate_credentials* credentials() noexcept { return credentials_.get(); }
  // Why `mech`'s cells cannot run (empty when they can).
  std::string unavailable_reason(negotiate_mech mech) const;
  double setup_seconds() const noexcept { return setup_seconds_; }
  void shutdown() noexcept { credentials_.reset(); }

 private:
  std::unique_ptr<negotiate_credentials> credentials_;
  std::string why_ = "the negotiate credentials were not acquired";
  std::string krb5_why_, ntlm_why_;  // the worlds' reasons, when one failed
  double setup_seconds_ = 0;         // acquiring the SPNEGO credentials of P and every client
};

// What the cross-host cells share: the world this process made (or the remote downstream and its
// realm), the middle's credentials for D1, and where everything listens.
struct hosts_setup {
  std::unique_ptr<cross_hosts> world;  // --hosts; empty for a remote downstream
  realm_info realm;
  std::unique_ptr<kerberos_credentials> credentials;  // P and every client, for D1's service
  std::string middle_netns;  // where the middle's client threads run (empty: this namespace)
  os::tcp_endpoint down1;
  bool raw_peers = false;  // the TCP echo (down2) and relay (down1) of the baselines
  double credentials_seconds = 0;
  bool down1_suspect = false;
};

// The cross-host world (hosts_world.cpp). Thread-safe after start().
class hosts_world {
 public:
  // Builds the topology, realm and downstreams, or connects the remote ones, and acquires the
  // middle's credentials (once; before any cell runs, one thread). setup() is null when that failed
  // (unavailable_reason() says why).
  void start(const bench_config& config, const identity& process);
  void refuse(std::string why) { why_ = std::move(why); }  // this process cannot make it
  hosts_setup* setup() noexcept { return setup_.get(); }
  const std::string& unavailable_reason() const noexcept { return why_; }
  // D1's address, after restarting it when a cell saw it fail; throws naming why it cannot.
  os::tcp_endpoint down1_endpoint();
  void mark_down1_suspect() noexcept;
  pid_t down1_pid();  // for the fault tests (0: none of ours)
  int restarts() const noexcept { return restarts_.load(); }
  void shutdown() noexcept;

 private:
  std::mutex mutex_;
  std::unique_ptr<hosts_setup> setup_;
  std::string why_ = "the cross-host world was not started";
  std::atomic<int> restarts_{0};
};

// A cell that failed in one repetition fails in every later one: Google Benchmark 1.7.1 crashes
// computing the statistics of a cell whose first repetition failed and later ones did not.
class failure_log {
 public:
  void record(const std::string& cell, const std::string& message, bool interrupted);
  // What a later repetition of `cell` reports, if an earlier one failed.
  std::optional<std::string> earlier(const std::string& cell);

 private:
  struct entry {
    std::string message;
    bool interrupted = false;
  };
  std::mutex mutex_;
  std::map<std::string, entry> failures_;  // the first failure of each cell
};

class environment {
 public:
  static environment& instance();
  void configure(const bench_config& config);
  const bench_config& config() const noexcept { return config_; }

  // nullptr when this process cannot use the kernel backend (see kernel_unavailable_reason()).
  identity_backend* kernel() noexcept { return kernel_.get(); }
  const std::string& kernel_unavailable_reason() const noexcept { return kernel_why_; }
  identity_backend& model() noexcept { return *model_; }
  const cpu_plan& cpus() const noexcept { return cpus_; }

  local_servers& servers() noexcept { return servers_; }
  kerberos_world& kerberos() noexcept { return kerberos_; }
  ntlm_world& ntlm() noexcept { return ntlm_; }
  negotiate_world& negotiate() noexcept { return negotiate_; }
  hosts_world& hosts() noexcept { return hosts_; }
  failure_log& failures() noexcept { return failures_; }

  // Each world once, before any cell runs, with one thread; the local downstreams then serve the
  // package too.
  void start_kerberos();
  void start_ntlm();
  void start_negotiate();  // starts the kerberos and ntlm worlds first
  void start_hosts();

  void interrupt(int signal) noexcept { interrupted_.store(signal, std::memory_order_relaxed); }
  int interrupted() const noexcept { return interrupted_.load(std::memory_order_relaxed); }
  int restarts() const noexcept { return servers_.restarts() + hosts_.restarts(); }

  // The fault tests: one fault per process, at the first cell that reaches it.
  bool fault_pending() const noexcept { return !config_.fault.empty() && !fault_done_.load(); }
  // Kills or stops the downstream of `p` (as the config's fault says).
  void inject_fault(placement p) noexcept;
  void inject_down1_fault() noexcept;  // SIGKILL to D1

  void shutdown() noexcept;  // stops every child process

 private:
  environment() = default;
  // Sends `signal` to `pid` as P: the calling thread may impersonate a client, who may not signal
  // the harness's children.
  void signal_as_process(pid_t pid, int signal, const char* what) noexcept;

  bench_config config_;
  cpu_plan cpus_;
  std::unique_ptr<identity_backend> kernel_;
  std::string kernel_why_;
  std::unique_ptr<identity_backend> model_;
  local_servers servers_;
  kerberos_world kerberos_;
  ntlm_world ntlm_;
  negotiate_world negotiate_;
  hosts_world hosts_;
  failure_log failures_;
  std::atomic<int> interrupted_{0};
  std::atomic<bool> fault_done_{false};
};

}  // namespace cloak::bench
