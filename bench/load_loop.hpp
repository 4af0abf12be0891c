// How a middle tier of T worker threads is driven (docs/results.md, "Load cells: threads"): closed
// loop (each worker calls as fast as it can) or open loop (requests arrive at a set rate, Poisson,
// from a generator on its own thread; latency counts from when a request was due, so a stall is
// charged to every request that waited behind it: no coordinated omission).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "latency_histogram.hpp"

namespace cloak::bench {

// What the workers do. Both run on the worker's own thread.
struct load_work {
  // Serves request `i` on worker `w` (0..workers-1); false: the cell failed, every worker stops.
  std::function<bool(int w, std::uint64_t i)> serve;
  // Called once on each worker's thread after its last request (drop the thread's token there).
  std::function<void(int w)> finish;
};

struct closed_loop_options {
  int workers = 1;
  std::uint64_t max_calls = 0;  // all workers together; 0: until the duration ends
  std::chrono::nanoseconds duration{std::chrono::milliseconds(500)};
  // Each worker makes at least this many calls, past the duration or max_calls if need be (a warm
  // run in which every worker must have made its first call).
  std::uint64_t min_calls_per_worker = 0;
};

struct open_loop_options {
  int workers = 1;
  double rate = 1000;  // requests a second, the Poisson process's mean
  std::uint64_t seed = 1;
  std::chrono::nanoseconds duration{std::chrono::milliseconds(500)};  // of arrivals
  // After the last arrival, how long the workers may take to drain the queue; requests still queued
  // then are `unserved`, recorded with their wait so far (a lower bound of their latency).
  std::chrono::nanoseconds grace{std::chrono::milliseconds(500)};
};

struct load_outcome {
  std::uint64_t served = 0;
  std::uint64_t unserved = 0;           // open loop: queued when the grace ended
  std::uint64_t arrivals = 0;           // open loop: requests the generator made
  double seconds = 0;                   // from the workers' start to the last one's end
  double offered = 0;                   // open loop: arrivals / the arrival window's seconds
  std::uint64_t late_generator_ns = 0;  // open loop: the most the generator was behind a due time
  int generator_nice = 0;  // open loop: the generator thread's nice value (-10 when allowed)
  bool failed = false;     // a serve returned false
  // Each request's latency: its own call (closed), or from its due time to its end (open).
  std::unique_ptr<latency_histogram> latencies = std::make_unique<latency_histogram>();
  double throughput() const noexcept {
    return seconds > 0 ? static_cast<double>(served) / seconds : 0;
  }
};

load_outcome run_closed_loop(const closed_loop_options& options, const load_work& work);
// Throws std::invalid_argument when options.rate is not a finite number above 0.
load_outcome run_open_loop(const open_loop_options& options, const load_work& work);

// The seed of the open loop's arrival generator, from the launch's (open_loop_options::seed): its
// own stream, apart from worker 0's callers (seeded with the launch's seed itself).
std::uint64_t arrival_seed(std::uint64_t seed) noexcept;

// The gap before the next Poisson arrival at `rate` a second, in ns, from one 64-bit draw (the
// exponential's inverse CDF: no std distribution, so a seed gives the same arrivals everywhere).
// `rate` > 0 (run_open_loop checks it).
std::uint64_t poisson_gap_ns(std::uint64_t draw, double rate) noexcept;

}  // namespace cloak::bench
