// The benchmark suite's shared vocabulary: cells, token patterns, the expectation rule, how a cell
// fails. What the cells share at run time is in environment.hpp.
#pragma once

#include <benchmark/benchmark.h>

#include <array>
#include <atomic>
#include <cloak/auth.hpp>
#include <cloak/backend.hpp>
#include <cloak/downstream.hpp>
#include <cloak/hosts.hpp>
#include <cloak/identity.hpp>
#include <cloak/kerberos.hpp>
#include <cloak/negotiate.hpp>
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

#include "environment.hpp"

namespace cloak::bench {

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
  package_id package = package_id::local;      // kernel backend: any package; model: local
  protection per_call = protection::none;      // the GSSAPI packages only
  ticket_state tickets = ticket_state::warm;   // kerberos only
  negotiate_mech mech = negotiate_mech::krb5;  // negotiate only: what SPNEGO negotiates
  placement place = placement::same;
  std::size_t bytes = 64;
  int threads = 1;
  bool quick = false;      // part of the --quick subset
  bool full_only = false;  // only with --matrix=full
  // local only: extra supplementary groups on every client's token (a fat token: what setgroups
  // and the identity probe cost for a user in many groups; the downstream never sees groups).
  std::uint32_t groups = 0;
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
  // The package whose world must exist before any cell runs (environment::start_kerberos,
  // start_ntlm); local needs none.
  package_id package = package_id::local;
  bool full_only = false;  // only with --matrix=full
  bool hosts = false;  // across hosts: only with --hosts or --downstream (environment::start_hosts)
  bool topology_only =
      false;  // needs what only --hosts makes (D2, the raw peers): not with --downstream
  std::int64_t iterations = 0;  // fixed (a block's rounds); 0: Google Benchmark decides
  int repetitions = 0;          // fixed (a block: 1, its samples are launches); 0: the flag's
};

std::vector<cell_entry> matrix_entries();
std::vector<cell_entry> baseline_entries();
// Each GSSAPI package's own terms (package_cells.cpp): its exchange in one process and across the
// socket, and its MIC; part of baseline_entries().
std::vector<cell_entry> package_entries();
std::vector<cell_entry> hosts_entries();  // chan:tcp cells and their baselines (hosts_cells.cpp)
// The load cells (load_cells.cpp, docs/results.md "Load cells"): only with cloak-matrix --load.
std::vector<cell_entry> load_entries();
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
  // The run was asked to stop: the cell reports "interrupted", and its later repetitions too.
  void interrupt();
  // An earlier repetition's failure, reported again (and not recorded twice).
  void repeat(const std::string& earlier) { fail(earlier, true, false); }
  bool failed() const noexcept { return failed_; }
  const std::string& message() const noexcept { return message_; }  // the first failure's
  // Runs the remaining iterations empty; call when setup failed before the timed loop.
  void drain();

 private:
  void fail(const std::string& message, bool repeated, bool interrupted);

  benchmark::State& state_;
  bool failed_ = false;
  std::string message_;
};

// How often timed loops look at the interruption flag (a power of two, in iterations).
inline constexpr std::uint64_t interrupt_check_mask = 255;

}  // namespace cloak::bench
