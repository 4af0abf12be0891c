// The closed and open loops of the threaded load cells (load_loop.hpp).
#include "load_loop.hpp"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cloak/mix.hpp>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace cloak::bench {

namespace {

constexpr int generator_nice = -10;

void sleep_until_ns(std::uint64_t due) noexcept {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(due / 1'000'000'000u);
  ts.tv_nsec = static_cast<long>(due % 1'000'000'000u);
  // EINTR: sleep again to the same absolute time (the deadline is kept, not restarted).
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

// Starts `workers` threads running `body(w, histogram)`, each with its own histogram (merged into
// the outcome's), and times them from their common start to the last one's end. When a thread
// cannot be started, `halt()` tells the ones already running to end, they are joined, and the
// error is thrown on.
template <class Body, class Halt>
void run_workers(int workers, load_outcome& out, Body body, Halt halt) {
  std::vector<std::unique_ptr<latency_histogram>> own;
  for (int w = 0; w < workers; ++w) own.push_back(std::make_unique<latency_histogram>());
  std::vector<std::jthread> pool;  // joined on every way out
  pool.reserve(static_cast<std::size_t>(workers));
  const std::uint64_t start = now_ns();
  try {
    for (int w = 0; w < workers; ++w) pool.emplace_back([&, w] { body(w, *own[w]); });
  } catch (...) {
    halt();
    throw;
  }
  for (auto& t : pool) t.join();
  out.seconds = static_cast<double>(now_ns() - start) / 1e9;
  for (auto& h : own) out.latencies->merge(*h);
}

}  // namespace

std::uint64_t arrival_seed(std::uint64_t seed) noexcept {
  // splitmix64 (its increment and finaliser) of the seed moved by a constant of its own.
  return cloak::detail::mix((seed ^ 0x6f70656e6c6f6f70ull) + 0x9E3779B97F4A7C15ull);  // "openloop"
}

std::uint64_t poisson_gap_ns(std::uint64_t draw, double rate) noexcept {
  // u in (0, 1]: the top 53 bits, plus one, over 2^53.
  const double u = (static_cast<double>(draw >> 11) + 1.0) * 0x1.0p-53;
  return static_cast<std::uint64_t>(-std::log(u) / rate * 1e9);
}

load_outcome run_closed_loop(const closed_loop_options& options, const load_work& work) {
  load_outcome out;
  std::atomic<std::uint64_t> next{0};
  std::atomic<bool> stop{false};
  const std::uint64_t deadline = now_ns() + static_cast<std::uint64_t>(options.duration.count());
  std::atomic<std::uint64_t> served{0};
  auto serve = [&](int w, latency_histogram& h) {
    std::uint64_t mine = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const std::uint64_t i = next.fetch_add(1, std::memory_order_relaxed);
      const bool owed = mine < options.min_calls_per_worker;
      if (options.max_calls != 0 && i >= options.max_calls && !owed) break;
      const std::uint64_t t0 = now_ns();
      if (t0 >= deadline && !owed) break;
      if (!work.serve(w, i)) [[unlikely]] {
        stop = true;
        break;
      }
      h.record(now_ns() - t0);
      ++mine;
    }
    served += mine;
    if (work.finish) work.finish(w);
  };
  run_workers(options.workers, out, serve, [&stop] { stop = true; });
  out.served = served;
  out.failed = stop;
  return out;
}

load_outcome run_open_loop(const open_loop_options& options, const load_work& work) {
  if (!(options.rate > 0) || !std::isfinite(options.rate))
    throw std::invalid_argument(
        "open loop: the arrival rate must be a finite number above 0, not " +
        std::to_string(options.rate));
  load_outcome out;
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<std::pair<std::uint64_t, std::uint64_t>> queue;  // (request, due ns)
  bool closed = false;                                        // the generator made its last
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> served{0};
  std::uint64_t arrivals = 0, late = 0;
  int generator_priority = 0;
  const std::uint64_t start = now_ns() + 1'000'000;  // the workers are waiting by then
  const std::uint64_t end = start + static_cast<std::uint64_t>(options.duration.count());
  const std::uint64_t hard_end = end + static_cast<std::uint64_t>(options.grace.count());

  // Sets stop under the mutex (a worker between its predicate check and its wait cannot miss it)
  // and wakes every waiter.
  auto halt = [&] {
    {
      std::lock_guard lock(mutex);
      stop = true;
    }
    ready.notify_all();
  };

  std::jthread generator([&] {
    // The kernel may wake a sleeper up to its timer slack late (50 µs by default), which would be
    // charged to every request as latency: the generator asks for none.
    ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    // Arrivals come from outside a real server and do not wait for its CPUs; here the generator
    // shares them with the workers and the downstream, so it asks the scheduler to run it first
    // (needs CAP_SYS_NICE; without it the generator stays at the workers' priority, and its
    // lateness, charged to the requests, is in late_generator_ns).
    const auto tid = static_cast<id_t>(::gettid());
    ::setpriority(PRIO_PROCESS, tid, generator_nice);
    errno = 0;
    const int nice = ::getpriority(PRIO_PROCESS, tid);
    generator_priority = errno == 0 ? nice : 0;
    std::mt19937_64 engine(arrival_seed(options.seed));
    std::uint64_t due = start + poisson_gap_ns(engine(), options.rate);
    std::uint64_t i = 0;
    while (due < end && !stop.load(std::memory_order_relaxed)) {
      std::uint64_t now = now_ns();
      if (due > now) {
        sleep_until_ns(due);
        now = now_ns();
      }
      late = std::max(late, now - due);
      // Every request already due goes in at once (one lock, one wake-up): a generator that fell
      // behind catches up instead of paying a sleep and a wake-up per request.
      std::uint64_t made = 0;
      {
        std::lock_guard lock(mutex);
        do {
          queue.emplace_back(i++, due);
          ++made;
          due += poisson_gap_ns(engine(), options.rate);
        } while (due <= now && due < end);
      }
      arrivals += made;
      if (made == 1) {
        ready.notify_one();
      } else {
        ready.notify_all();
      }
    }
    {
      std::lock_guard lock(mutex);
      closed = true;
    }
    ready.notify_all();
  });

  auto serve = [&](int w, latency_histogram& h) {
    std::uint64_t mine = 0;
    for (;;) {
      std::pair<std::uint64_t, std::uint64_t> request;
      {
        std::unique_lock lock(mutex);
        ready.wait(lock, [&] { return !queue.empty() || closed || stop.load(); });
        if (stop.load() || queue.empty() || now_ns() >= hard_end) break;
        request = queue.front();
        queue.pop_front();
      }
      if (!work.serve(w, request.first)) [[unlikely]] {
        halt();
        break;
      }
      h.record(now_ns() - request.second);  // from when it was due, not when it was taken
      ++mine;
    }
    served += mine;
    if (work.finish) work.finish(w);
  };
  try {
    run_workers(options.workers, out, serve, halt);
  } catch (...) {
    halt();  // the generator ends at its next arrival; its jthread joins it
    throw;
  }
  generator.join();
  out.served = served;
  out.failed = stop;
  // What the grace left queued: each one waited at least until now.
  const std::uint64_t now = now_ns();
  out.unserved = queue.size();
  for (const auto& [i, due] : queue) out.latencies->record(now - due);
  out.arrivals = arrivals;
  out.offered = static_cast<double>(arrivals) / (static_cast<double>(end - start) / 1e9);
  out.late_generator_ns = late;
  out.generator_nice = generator_priority;
  return out;
}

}  // namespace cloak::bench
