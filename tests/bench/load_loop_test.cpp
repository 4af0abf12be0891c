// The load cells' loops (bench/load_loop.hpp): the open loop charges a stall to every request that
// was due during it (latency from the due time, no coordinated omission), the closed loop only to
// the stalled call; Poisson arrivals have the rate asked for and replay from their seed. Only lower
// bounds that the synthetic stall guarantees are asserted, never the machine's own times.
#include "load_loop.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

namespace cloak::bench {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t stall_ns = 60'000'000;  // the server stalls once, for 60 ms
constexpr std::uint64_t stall_at = 50;          // on this request

// A server that answers at once, except request `stall_at`, which takes stall_ns.
load_work stalling_server(std::atomic<int>& finished) {
  load_work work;
  work.serve = [](int, std::uint64_t i) {
    if (i == stall_at) std::this_thread::sleep_for(std::chrono::nanoseconds(stall_ns));
    return true;
  };
  work.finish = [&finished](int) { ++finished; };
  return work;
}

// Requests with a latency of at least `ns` (to the histogram's bucket: < 1%).
std::uint64_t at_least(const latency_histogram& h, std::uint64_t ns) { return h.count_from(ns); }

TEST(open_loop, a_stall_is_charged_to_every_request_due_during_it) {
  std::atomic<int> finished{0};
  open_loop_options o;
  o.workers = 1;
  o.rate = 2000;  // one every 0.5 ms: about 120 due during the stall
  o.seed = 7;
  o.duration = 300ms;
  o.grace = 2s;
  load_outcome out = run_open_loop(o, stalling_server(finished));
  ASSERT_FALSE(out.failed);
  EXPECT_EQ(finished.load(), 1);
  EXPECT_EQ(out.unserved, 0u);
  EXPECT_EQ(out.served, out.arrivals);
  EXPECT_EQ(out.latencies->count(), out.arrivals);
  // The requests due in the stall's first half waited at least half of it, from their due time;
  // at 2,000 a second about 60 of them. A loop that timed each call from when it started would
  // show one slow call and the rest near 0.
  const std::uint64_t half = stall_ns / 2;
  EXPECT_GE(out.latencies->max(), stall_ns * 9 / 10);
  EXPECT_GE(at_least(*out.latencies, half), 30u)
      << "p50 " << out.latencies->percentile(0.5) << " ns, p99 " << out.latencies->percentile(0.99)
      << " ns of " << out.latencies->count();
}

TEST(closed_loop, times_each_call_from_its_own_start) {
  std::atomic<int> finished{0};
  closed_loop_options o;
  o.workers = 2;
  o.max_calls = 400;
  o.duration = 10s;
  load_outcome out = run_closed_loop(o, stalling_server(finished));
  ASSERT_FALSE(out.failed);
  EXPECT_EQ(finished.load(), 2);
  EXPECT_EQ(out.served, 400u);
  EXPECT_EQ(out.latencies->count(), 400u);
  EXPECT_GE(out.latencies->max(), stall_ns * 9 / 10) << "the stalled call itself";
  // Only the stalled call is slow: the closed loop waits for it (coordinated omission), which is
  // why the open loop exists.
  EXPECT_LT(at_least(*out.latencies, stall_ns / 2), 10u);
}

TEST(closed_loop, a_failed_request_stops_every_worker) {
  std::atomic<int> finished{0};
  load_work work;
  work.serve = [](int, std::uint64_t i) { return i < 20; };
  work.finish = [&](int) { ++finished; };
  closed_loop_options o;
  o.workers = 3;
  o.duration = 10s;
  load_outcome out = run_closed_loop(o, work);
  EXPECT_TRUE(out.failed);
  EXPECT_EQ(finished.load(), 3);
  EXPECT_LE(out.served, 22u);
}

TEST(closed_loop, every_worker_makes_its_owed_calls_even_past_the_deadline) {
  std::atomic<int> finished{0};
  std::mutex mutex;
  std::vector<int> calls(4, 0);
  load_work work;
  work.serve = [&](int w, std::uint64_t) {
    std::lock_guard lock(mutex);
    ++calls[static_cast<std::size_t>(w)];
    return true;
  };
  work.finish = [&](int) { ++finished; };
  closed_loop_options o;
  o.workers = 4;
  o.duration = 0ns;  // over before any worker starts
  o.min_calls_per_worker = 2;
  load_outcome out = run_closed_loop(o, work);
  EXPECT_EQ(out.served, 8u);
  EXPECT_EQ(calls, (std::vector<int>{2, 2, 2, 2}));
}

TEST(open_loop, arrivals_follow_the_rate_and_replay_from_the_seed) {
  // The gaps alone (no clock): their mean is 1 / rate, and one seed gives one sequence.
  std::mt19937_64 a(42), b(42);
  double sum = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    std::uint64_t g = poisson_gap_ns(a(), 5000);
    EXPECT_EQ(g, poisson_gap_ns(b(), 5000));
    sum += static_cast<double>(g);
  }
  EXPECT_NEAR(sum / n, 200000.0, 200000.0 * 0.01);  // 200 µs, within 1% (sd of the mean 0.2%)
}

TEST(open_loop, refuses_a_rate_that_is_not_above_zero) {
  load_work work;
  work.serve = [](int, std::uint64_t) { return true; };
  for (double rate : {0.0, -5.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    open_loop_options o;
    o.rate = rate;
    o.duration = 10ms;
    EXPECT_THROW(run_open_loop(o, work), std::invalid_argument) << "rate " << rate;
  }
}

TEST(open_loop, the_generator_draws_from_a_stream_of_its_own) {
  // Worker 0's callers are seeded with the launch's seed itself: the arrivals are not.
  for (std::uint64_t seed : {0ull, 1ull, 19ull, 42ull}) {
    EXPECT_NE(arrival_seed(seed), seed);
    std::mt19937_64 callers(seed), arrivals(arrival_seed(seed));
    EXPECT_NE(callers(), arrivals());
  }
  EXPECT_EQ(arrival_seed(19), arrival_seed(19));
  EXPECT_NE(arrival_seed(19), arrival_seed(20));
}

}  // namespace
}  // namespace cloak::bench
