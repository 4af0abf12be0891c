// The benchmark suite's shared vocabulary: cells, placements, the run environment, the expectation
// rule.
#pragma once

#include <benchmark/benchmark.h>

#include <array>
#include <atomic>
#include <cloak/backend.hpp>
#include <cloak/downstream.hpp>
#include <cloak/hosts.hpp>
#include <cloak/identity.hpp>
#include <cloak/kerberos.hpp>
#include <cloak/proxy.hpp>
#include <cloak/realm.hpp>
#include <csignal>
#include <cstddef>
#include <functional>
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

// What the middle server's thread does to its token between calls (docs/design.md §4).
enum class pattern_kind : std::uint8_t { steady, switch_, every, reimpersonate };
struct token_pattern {
  pattern_kind kind = pattern_kind::steady;
  int every = 0;  // for pattern_kind::every: switch to the next client every `every` calls
};
std::string to_string(const token_pattern& p);

// Clients one client thread cycles through in the switch and every:N patterns.
inline constexpr std::size_t clients_per_thread = 4;
// The every:N pattern the matrix measures.
inline constexpr int every_n = 8;

// One cell of the cloaking matrix (docs/results.md, "Cell names").
struct matrix_cell {
  backend_kind backend =
      backend_kind::kernel;  // kernel: Unix socket to cloak-downstream; model: in-process
  cloaking mode = cloaking::none;
  token_pattern pattern;
  identity_probe probe = identity_probe::kernel;                  // dynamic only
  context_cache_policy cache = context_cache_policy::none();      // dynamic only
  dynamic_authentication auth = dynamic_authentication::context;  // dynamic only
  identity_tracking tracking = identity_tracking::identity;       // dynamic (context) only
  package_id package = package_id::local;     // kernel backend: local or kerberos
  protection per_call = protection::none;     // kerberos only
  ticket_state tickets = ticket_state::warm;  // kerberos only
  placement place = placement::same;
  std::size_t bytes = 64;
  int threads = 1;
  bool quick = false;      // part of the --quick subset
  bool full_only = false;  // only with --kerberos-matrix=full
  int hops =
      0;  // across hosts (chan:tcp, hosts_cells.cpp): 1 (middle -> D1) or 2 (-> D1 -> D2); 0: not
};
std::string cell_name(const matrix_cell& cell);
// Every matrix cell, in a fixed order.
std::vector<matrix_cell> matrix_table();

// docs/design.md §1, computed by the bench on its own from what it did to the thread (never from
// the proxy): the identity D must report for a call. `captured` is what static cloaking captured
// at set_blanket (nullptr: the thread had no token, so P); `current` is the thread's token now
// (nullptr: none).
const identity& expected_identity(cloaking mode, const identity* captured, const identity* current,
                                  const identity& process) noexcept;

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

// What the kerberos cells share: the realm this process started, the initiator credentials of P
// and every client, and what setting them up cost (recorded in the results).
struct kerberos_setup {
  std::unique_ptr<realm> kdc;
  std::unique_ptr<kerberos_credentials> credentials;
  double realm_seconds = 0;        // cloak-realm: mkdtemp to a KDC answering
  double credentials_seconds = 0;  // TGT and a service ticket for P and every client
};

// Everything cells share inside one process: the backends, one cloak-downstream and one echo peer
// per placement (started on first use, reused by later cells, restarted when dead or stalled), and
// the interruption flag.
class environment {
 public:
  static environment& instance();
  void configure(const bench_config& config);
  const bench_config& config() const noexcept { return config_; }

  // nullptr when this process cannot use the kernel backend (see kernel_unavailable_reason()).
  identity_backend* kernel() noexcept { return kernel_.get(); }
  const std::string& kernel_unavailable_reason() const noexcept { return kernel_why_; }
  identity_backend& model() noexcept { return *model_; }

  // Starts the realm and acquires every credential (once; before any cell runs, while the process
  // has one thread: it sets KRB5_CONFIG). Records why when it cannot; kerberos() is then nullptr.
  void start_kerberos();
  kerberos_credentials* kerberos() noexcept { return kerberos_.credentials.get(); }
  const kerberos_setup& kerberos_state() const noexcept { return kerberos_; }
  const std::string& kerberos_unavailable_reason() const noexcept { return kerberos_why_; }
  // For the fault tests: the KDC stops answering (SIGSTOP); the realm's supervisor continues and
  // stops it at shutdown.
  void stop_kdc_for_fault() noexcept {
    if (kerberos_.kdc) kerberos_.kdc->kill_kdc(SIGSTOP);
  }

  int client_cpu(placement p) const noexcept;  // -1: unpinned
  int server_cpu(placement p) const noexcept;
  void pin_client(placement p) const;  // pins the calling thread; throws std::system_error

  // The downstream for `p`, running. Restarts it when it died or a cell marked it suspect.
  // Throws (with a message naming the placement) when it cannot be started.
  std::string downstream_socket(placement p);
  std::string echo_socket(placement p);
  // The echo peer's plain ping-pong socket (no credentials read): baseline/roundtrip/minimal.
  std::string minimal_echo_socket(placement p) { return echo_socket(p) + "-minimal"; }
  // A cell saw the downstream fail (died, timed out): restart it before the next cell.
  void mark_suspect(placement p) noexcept;
  // Why a call to the downstream of `p` may have failed, for error messages ("exited", "running").
  std::string downstream_state(placement p);
  // For the fault tests: kill or stop the downstream of `p` once per process.
  void inject_fault(placement p) noexcept;
  bool fault_pending() const noexcept { return !config_.fault.empty() && !fault_done_.load(); }

  void interrupt(int signal) noexcept { interrupted_.store(signal, std::memory_order_relaxed); }
  int interrupted() const noexcept { return interrupted_.load(std::memory_order_relaxed); }
  int restarts() const noexcept { return restarts_.load(); }

  // Across hosts (hosts_cells.cpp): builds the topology, realm and downstreams, or connects the
  // remote ones, and acquires the middle's credentials (once; before any cell runs, one thread).
  // hosts() is nullptr when that failed or this machine cannot (hosts_unavailable_reason() says
  // why; hosts_skipped(): no CAP_NET_ADMIN, the cells are left out rather than failed).
  void start_hosts();
  hosts_setup* hosts() noexcept { return hosts_.get(); }
  const std::string& hosts_unavailable_reason() const noexcept { return hosts_why_; }
  bool hosts_skipped() const noexcept { return hosts_skipped_; }
  // D1's address, after restarting it when a cell saw it fail; throws naming why it cannot.
  os::tcp_endpoint down1_endpoint();
  void mark_down1_suspect() noexcept;
  // For the fault tests: SIGKILL to D1 once per process.
  void inject_down1_fault() noexcept;

  void shutdown() noexcept;  // stops every child process

  // A cell that failed in one repetition fails in every later one: Google Benchmark 1.7.1 crashes
  // computing the statistics of a cell whose first repetition failed and later ones did not.
  void record_failure(const std::string& cell, const std::string& message);
  std::optional<std::string> earlier_failure(const std::string& cell);

 private:
  environment() = default;
  struct server {
    std::unique_ptr<downstream_process> process;
    bool suspect = false;
  };
  std::string ensure(std::array<server, 3>& servers, placement p, const std::string& program,
                     const char* what);

  bench_config config_;
  std::unique_ptr<identity_backend> kernel_;
  std::string kernel_why_;
  std::unique_ptr<identity_backend> model_;
  kerberos_setup kerberos_;
  std::string kerberos_why_ = "the realm was not started";
  std::unique_ptr<hosts_setup> hosts_;
  std::string hosts_why_ = "the cross-host world was not started";
  bool hosts_skipped_ = false;
  std::mutex mutex_;
  std::array<server, 3> downstreams_;
  std::array<server, 3> echoes_;
  std::atomic<int> interrupted_{0};
  std::atomic<bool> fault_done_{false};
  std::atomic<int> restarts_{0};
  std::mutex failures_mutex_;
  std::map<std::string, std::string> failures_;
};

// Runs `run` as the cell `name`: fails at once when an earlier repetition failed, and lets
// cell_failure know which cell it reports for.
void run_cell(benchmark::State& state, const std::string& name,
              const std::function<void(benchmark::State&)>& run);

// A benchmark the program can register: its documented name and how to run it.
struct cell_entry {
  std::string name;
  bool quick = false;
  bool quick_without_kernel =
      false;            // stands in for the quick kernel cells when the kernel backend cannot run
  std::string backend;  // "kernel", "model" or "" (uses neither backend)
  int threads = 1;
  std::function<void(benchmark::State&)> run;
  bool kerberos = false;   // needs the realm (environment::start_kerberos)
  bool full_only = false;  // only with --kerberos-matrix=full
  bool hosts = false;  // across hosts: only with --hosts or --downstream (environment::start_hosts)
  bool topology_only =
      false;  // needs what only --hosts makes (D2, the raw peers): not with --downstream
  std::int64_t iterations = 0;  // fixed (a block's rounds); 0: Google Benchmark decides
  int repetitions = 0;          // fixed (a block: 1, its samples are launches); 0: the flag's
};

std::vector<cell_entry> matrix_entries();
std::vector<cell_entry> baseline_entries();
std::vector<cell_entry> hosts_entries();  // chan:tcp cells and their baselines (hosts_cells.cpp)
// Paired blocks (block_cells.cpp): `rounds` > 0 overrides every block's rounds; a seed makes the
// rounds' orders reproducible (default: a random one, recorded).
void set_block_options(std::int64_t rounds, std::optional<std::uint64_t> seed);
std::vector<cell_entry> block_entries();
// Writes what every block of this process measured (per-round times, histograms, counters) and
// every matrix cell repetition's latency histograms to `path` atomically:
// {"blocks": [...], "cells": [...]} (docs/results.md, "Blocks and histograms").
void write_block_records(const std::string& path);
class latency_histogram;
// One repetition of a matrix cell's call latencies, written with the blocks (thread-safe).
void keep_cell_histograms(const std::string& cell, const latency_histogram& all,
                          const latency_histogram& after_change);

// Helper for failures inside a benchmark: reports once, and keeps the thread in step with the
// others (a multi-threaded cell must still pass Google Benchmark's start/stop barriers).
// The calling thread's token as the bench itself set it: the expectation never asks the harness.
class held_token {
 public:
  explicit held_token(identity_backend& backend) : backend_(backend) {}
  ~held_token() { drop(); }
  held_token(const held_token&) = delete;
  held_token& operator=(const held_token&) = delete;

  bool hold(const token& t) noexcept {
    if (backend_.impersonate(t) != switch_error::ok) {
      current_ = nullptr;  // a failed switch leaves the thread with no token
      return false;
    }
    current_ = &t.who;
    return true;
  }
  void drop() noexcept {
    backend_.revert();
    current_ = nullptr;
  }
  const identity* current() const noexcept { return current_; }

 private:
  identity_backend& backend_;
  const identity* current_ = nullptr;
};

class cell_failure {
 public:
  explicit cell_failure(benchmark::State& state) : state_(state) {}
  void fail(const std::string& message);
  bool failed() const noexcept { return failed_; }
  const std::string& message() const noexcept { return message_; }  // the first failure's
  // Runs the remaining iterations empty; call when setup failed before the timed loop.
  void drain();

 private:
  benchmark::State& state_;
  bool failed_ = false;
  std::string message_;
};

// How often timed loops look at the interruption flag (a power of two, in iterations).
inline constexpr std::uint64_t interrupt_check_mask = 255;

}  // namespace cloak::bench
