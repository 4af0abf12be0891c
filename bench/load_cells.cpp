// The load cells (issue 19, docs/results.md "Load cells"): a middle tier serving K client
// identities drawn from a seeded population (Zipf or uniform). One thread through an lru:N context
// cache, with the hit rate and the memory a cached context costs on each side measured beside the
// time; or T worker threads, a proxy each or one shared proxy, driven closed loop (throughput) or
// open loop (latency at a set arrival rate). Every call goes through the bench's one checked call
// (cell_loop.hpp).
#include <fmt/format.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cloak/connection.hpp>
#include <cloak/memory_use.hpp>
#include <cloak/population.hpp>
#include <cloak/shared_proxy.hpp>
#include <map>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "cell_loop.hpp"
#include "environment.hpp"
#include "latency_histogram.hpp"
#include "load_loop.hpp"
#include "suite.hpp"

namespace cloak::bench {

namespace {

// One cell of the load table: a fixed place (same), payload (64 B) and thread count (1).
struct load_cell {
  package_id package = package_id::local;
  cloaking mode = cloaking::dynamic;
  std::uint32_t clients = 0;  // K
  popularity pop = popularity::zipf(1.0);
  context_cache_policy cache = context_cache_policy::none();  // dynamic only
  bool quick = false;
};

constexpr placement load_place = placement::same;
constexpr std::size_t load_bytes = 64;

std::string load_cell_name(const load_cell& c) {
  bool dynamic = c.mode == cloaking::dynamic;
  return fmt::format(
      "load/kernel/uds/auth:{}/{}/clients:{}/pop:{}/cache:{}/place:{}/bytes:{}/threads:1",
      to_string(c.package), to_string(c.mode), c.clients, to_string(c.pop),
      dynamic ? to_string(c.cache) : "na", to_string(load_place), load_bytes);
}

// The full table (K = 10,000, Zipf(1.0): lru 16, 256, 2,000, the no-cache end, none and static for
// comparison) and the quick one (K = 1,000: lru 16 and 256, none and static), local and Kerberos.
std::vector<load_cell> load_table() {
  std::vector<load_cell> cells;
  for (package_id package : {package_id::local, package_id::kerberos}) {
    for (bool quick : {true, false}) {
      std::uint32_t k = quick ? 1000 : 10000;
      auto add = [&](cloaking mode, context_cache_policy cache) {
        load_cell c;
        c.package = package;
        c.mode = mode;
        c.clients = k;
        c.cache = cache;
        c.quick = quick;
        cells.push_back(c);
      };
      add(cloaking::none, context_cache_policy::none());
      add(cloaking::static_, context_cache_policy::none());
      if (!quick) add(cloaking::dynamic, context_cache_policy::none());
      for (std::size_t n :
           quick ? std::vector<std::size_t>{16, 256} : std::vector<std::size_t>{16, 256, 2000}) {
        add(cloaking::dynamic, context_cache_policy::lru(n));
      }
    }
  }
  return cells;
}

std::string describe_failure(environment& env, placement place, std::uint64_t i,
                             const call_result& r, const std::string& detail) {
  bool downstream_fault = r.error == call_error::downstream_unavailable ||
                          r.error == call_error::timeout || r.error == call_error::protocol;
  std::string state = env.servers().downstream_state(place);
  if (r.error == call_error::refused)
    state = fmt::format("status {}", protocol::to_string(r.view.server_status));
  if (!detail.empty()) state = detail + "; " + state;
  if (downstream_fault) env.servers().mark_suspect(place);
  return fmt::format("call {}: {} ({})", i, to_string(r.error), state);
}

// The call site of every load cell: this machine's downstream of `place`, P as the process.
call_site load_site(environment& env, placement place, const identity& process) {
  call_site site;
  site.process = &process;
  site.failed = [&env, place](std::uint64_t i, int, const call_result& r,
                              const std::string& detail) {
    return describe_failure(env, place, i, r, detail);
  };
  site.label = [](const identity& who) { return to_string(who); };
  return site;
}

std::size_t downstream_rss(environment& env) {
  pid_t pid = env.servers().downstream_pid(load_place);
  return pid > 0 ? resident_anonymous_bytes(pid) : 0;
}

// Every load cell's start: the kernel backend, and a client range that holds the cell's K. nullptr
// after failing the cell (or reporting the run's interruption).
identity_backend* load_backend(environment& env, cell_failure& failure, std::uint32_t clients) {
  identity_backend* backend = nullptr;
  if (env.interrupted()) {
    failure.interrupt();
  } else if (backend = env.kernel(); !backend) {
    failure.fail("the kernel backend is unavailable: " + env.kernel_unavailable_reason());
  } else if (const client_range& range = env.config().clients; range.count < clients) {
    failure.fail(
        fmt::format("the run's client range has {} clients, the cell needs {} "
                    "(cloak-matrix --load --load-clients FIRST:{})",
                    range.count, clients, clients));
    backend = nullptr;
  }
  if (!backend) failure.drain();
  return backend;
}

// What one repetition keeps while it runs.
struct load_state {
  held_token& held;
  const std::vector<token>& tokens;
  population_sampler& who;
  checked_calls<own_proxy, cell_failure>& checked;
  cell_failure& failure;
  std::uint32_t last = 0;     // the previous call's client
  std::uint64_t changes = 0;  // calls whose client differed from the previous call's
  latency_histogram* latencies = nullptr;
};

// Draws the next client, makes its token the thread's (the switch is part of the call, as in a
// switch cell), and makes the checked call. False: the cell failed.
bool next_call(load_state& s, std::uint64_t i) {
  std::uint32_t k = s.who.next();
  std::uint64_t t0 = now_ns();
  if (k != s.last) {
    ++s.changes;
    s.last = k;
    if (!s.held.hold(s.tokens[k])) [[unlikely]] {
      s.failure.fail(fmt::format("call {}: cannot impersonate {}", i, to_string(s.tokens[k].who)));
      return false;
    }
  }
  std::uint64_t ns = 0;
  bool ok = s.checked.check(i, ns);
  if (s.latencies) s.latencies->record(now_ns() - t0);
  return ok;
}

void run_load_cell(benchmark::State& state, const load_cell& cell) {
  environment& env = environment::instance();
  cell_failure failure(state);
  identity_backend* backend = load_backend(env, failure, cell.clients);
  if (!backend) return;
  const client_range& range = env.config().clients;
  std::vector<token> tokens;
  std::unique_ptr<connection> conn;
  std::optional<population_sampler> who;
  try {
    env.cpus().pin_client(load_place);
    tokens.reserve(cell.clients);
    for (std::uint32_t k = 0; k < cell.clients; ++k) tokens.push_back(make_token(range.client(k)));
    who.emplace(cell.clients, cell.pop, env.config().load_seed);
    // A cell that measures the downstream's memory gets a downstream no earlier cell used: glibc
    // keeps what a closed connection's contexts freed, and would hand it to this cell's contexts
    // without RssAnon growing.
    if (cell.cache.lru_capacity > 0) env.servers().fresh_downstream(load_place);
    conn = connect_downstream(env, load_place, cell.package);
  } catch (const std::exception& e) {
    failure.fail(fmt::format("setup: {}", e.what()));
    failure.drain();
    return;
  }
  std::vector<std::byte> payload(load_bytes, std::byte{0x5a});
  latency_histogram latencies;
  const identity& process = backend->process_identity();
  call_site site = load_site(env, load_place, process);
  {
    held_token held(*backend);
    proxy px(*backend, *conn, security_defaults{},
             dynamic_options{identity_probe::kernel, cell.cache, dynamic_authentication::context,
                             identity_tracking::identity});
    own_proxy calls{px, *conn};
    checked_calls<own_proxy, cell_failure> checked(calls, cell.mode, 0, site, failure, held);
    checked.set_payload(payload);
    load_state s{held, tokens, *who, checked, failure};
    double middle_bytes = 0, downstream_bytes = 0, cached = 0;
    try {
      // The first client draws the blanket (static captures it) and makes the first call: the
      // connection and its first context are setup.
      s.last = who->next();
      if (!checked.begin(tokens[s.last])) throw std::runtime_error(failure.message());
      // The warm pass (K draws) fills the cache outside the timed region; what it adds to either
      // side's memory, over the contexts it added, is what a cached context costs.
      std::uint64_t held_before =
          px.counters().contexts_established - px.counters().cache_evictions;
      std::size_t heap_before = heap_bytes_in_use();
      std::size_t rss_before = downstream_rss(env);
      for (std::uint32_t i = 0; i < cell.clients && !failure.failed(); ++i) next_call(s, i + 1);
      if (failure.failed()) throw std::runtime_error(failure.message());
      std::size_t heap_after = heap_bytes_in_use();
      std::size_t rss_after = downstream_rss(env);
      std::uint64_t held_after = px.counters().contexts_established - px.counters().cache_evictions;
      if (cell.cache.lru_capacity > 0 && held_after > held_before) {
        cached = static_cast<double>(held_after);
        double added = static_cast<double>(held_after - held_before);
        middle_bytes = (static_cast<double>(heap_after) - static_cast<double>(heap_before)) / added;
        downstream_bytes =
            (static_cast<double>(rss_after) - static_cast<double>(rss_before)) / added;
      }
    } catch (const std::exception& e) {
      failure.fail(fmt::format("setup: {}", e.what()));
    }
    px.reset_counters();
    s.changes = 0;
    s.latencies = &latencies;
    std::uint64_t i = 0;
    for (auto _ : state) {
      if (failure.failed()) [[unlikely]]
        continue;
      if (!next_call(s, ++i)) [[unlikely]]
        continue;
      if ((i & interrupt_check_mask) == 0 && env.interrupted()) [[unlikely]]
        failure.interrupt();
    }
    if (!failure.failed()) {
      const proxy_counters& n = px.counters();
      using benchmark::Counter;
      auto per_call = [](std::uint64_t v) {
        return Counter(static_cast<double>(v), Counter::kAvgIterations);
      };
      std::uint64_t lookups = n.cache_hits + n.cache_misses;
      state.counters["hit_rate"] =
          Counter(lookups ? static_cast<double>(n.cache_hits) / static_cast<double>(lookups) : 0.0);
      state.counters["contexts_per_call"] = per_call(n.contexts_established);
      state.counters["cache_hits_per_call"] = per_call(n.cache_hits);
      state.counters["evictions_per_call"] = per_call(n.cache_evictions);
      state.counters["changes_per_call"] = per_call(s.changes);
      state.counters["mismatches"] = Counter(0);
      state.counters["bytes"] = Counter(static_cast<double>(load_bytes));
      state.counters["p99_ns"] = Counter(static_cast<double>(latencies.percentile(0.99)));
      if (cached > 0) {
        state.counters["contexts_cached"] = Counter(cached);
        state.counters["bytes_per_context_middle"] = Counter(middle_bytes);
        state.counters["bytes_per_context_downstream"] = Counter(downstream_bytes);
      }
    }
  }  // the thread's token is dropped here, before the leak check
  try {
    backend->check_no_leak();
  } catch (const std::exception& e) {
    failure.fail(e.what());
  }
}

// ---- T worker threads (issue 19, items 4 and 5) ------------------------------------------------

// How the workers reach the downstream: a proxy and connection each (COM's apartments), or one
// thread-safe proxy over a connection per worker (the MTA; shared_proxy.hpp says which connection
// serves which identity).
enum class proxy_shape : std::uint8_t { apartment, shared };
std::string_view to_string(proxy_shape s) noexcept {
  return s == proxy_shape::apartment ? "apartment" : "shared";
}

// A threaded load cell: K clients, Zipf(1.0), lru:N per connection (dynamic), 64 B, both sides
// unpinned (T workers and the downstream's threads spread over the machine's CPUs).
struct thread_cell {
  package_id package = package_id::local;
  cloaking mode = cloaking::dynamic;
  proxy_shape shape = proxy_shape::apartment;
  int threads = 1;
  int open_percent = 0;  // 0: closed loop; else the arrival rate, % of the closed loop's throughput
  std::uint32_t clients = 0;
  context_cache_policy cache = context_cache_policy::none();  // dynamic only
  bool quick = false;
};

constexpr placement thread_place = placement::unpinned;
// Per thread-cell times (full / quick): the warm calls before timing, the closed loop's timed run,
// the open loop's arrivals and the grace after them; scaled by --load-seconds when set.
constexpr double warm_seconds[2] = {0.3, 0.1};
constexpr double run_seconds[2] = {1.0, 0.25};
constexpr double grace_seconds[2] = {1.0, 0.5};

std::string thread_cell_name(const thread_cell& c) {
  bool dynamic = c.mode == cloaking::dynamic;
  std::string loop = c.open_percent == 0 ? "closed" : fmt::format("open:{}", c.open_percent);
  return fmt::format(
      "load/kernel/uds/auth:{}/{}/clients:{}/pop:zipf:1/cache:{}/shape:{}/loop:{}/place:{}/"
      "bytes:{}/threads:{}",
      to_string(c.package), to_string(c.mode), c.clients, dynamic ? to_string(c.cache) : "na",
      to_string(c.shape), loop, to_string(thread_place), load_bytes, c.threads);
}

// The closed-loop cell an open-loop cell takes its rate from: the same cell at loop:closed.
std::string closed_twin(thread_cell c) {
  c.open_percent = 0;
  return thread_cell_name(c);
}

// Full: T = 1, 2, 4, 8 closed, and the open-loop sweep at T = 4 (25, 50, 80, 95% of the closed
// loop's throughput); quick: T = 1, 2 closed, the sweep at T = 2 (50, 80%). Each package, each
// cloaking mode, each shape; a closed cell is listed before the open cells that read it.
std::vector<thread_cell> thread_table() {
  std::vector<thread_cell> cells;
  for (package_id package : {package_id::local, package_id::kerberos}) {
    for (bool quick : {true, false}) {
      for (cloaking mode : {cloaking::none, cloaking::static_, cloaking::dynamic}) {
        for (proxy_shape shape : {proxy_shape::apartment, proxy_shape::shared}) {
          thread_cell c;
          c.package = package;
          c.mode = mode;
          c.shape = shape;
          c.quick = quick;
          c.clients = quick ? 1000 : 10000;
          if (mode == cloaking::dynamic) c.cache = context_cache_policy::lru(256);
          const int sweep_at = quick ? 2 : 4;
          for (int t : quick ? std::vector<int>{1, 2} : std::vector<int>{1, 2, 4, 8}) {
            c.threads = t;
            c.open_percent = 0;
            cells.push_back(c);
            if (t != sweep_at) continue;
            for (int pct : quick ? std::vector<int>{50, 80} : std::vector<int>{25, 50, 80, 95}) {
              c.open_percent = pct;
              cells.push_back(c);
            }
          }
        }
      }
    }
  }
  return cells;
}

// Closed-loop throughputs measured in this launch, by cell name, for the open-loop cells after.
std::mutex closed_mutex;
std::map<std::string, double> closed_throughput;

// A worker thread's failure: the first one is kept, reported by the cell's thread after the join.
struct worker_failure {
  void fail(const std::string& message) {
    std::lock_guard lock(mutex);
    if (failed_.exchange(true)) return;
    message_ = message;
  }
  bool failed() const noexcept { return failed_.load(std::memory_order_relaxed); }
  std::string message() const {
    std::lock_guard lock(mutex);
    return message_;
  }
  std::atomic<bool> interrupted{false};

 private:
  mutable std::mutex mutex;
  std::atomic<bool> failed_{false};
  std::string message_;
};

// How a worker reaches the shared proxy: its call carries the lane's account of a failure back.
struct pooled_proxy {
  shared_proxy& px;
  std::string failed_detail;
  call_result call(std::span<const std::byte> payload) noexcept {
    return px.call(payload, &failed_detail);
  }
  call_result forward(const next_hop&, std::span<const std::byte>, forward_outcome& out) noexcept {
    out = forward_outcome{};
    return call_result{call_error::refused, {}};  // not a hops:2 cell
  }
  void set_blanket(const blanket&) {}  // set once for every thread (run_thread_cell)
  std::string detail() const { return failed_detail; }
};

constexpr std::uint32_t no_client = ~std::uint32_t{0};

// One worker's own state: its token, its callers (seeded by its index), and its way to call.
struct worker {
  worker(identity_backend& backend, std::uint32_t clients, std::uint64_t seed)
      : held(backend), who(clients, popularity::zipf(1.0), seed) {}
  held_token held;
  population_sampler who;
  std::unique_ptr<connection> conn;  // apartment
  std::unique_ptr<proxy> px;         // apartment
  std::optional<own_proxy> own;
  std::optional<pooled_proxy> pooled;
  std::optional<checked_calls<own_proxy, worker_failure>> own_checked;
  std::optional<checked_calls<pooled_proxy, worker_failure>> pooled_checked;
  bool started = false;
  std::uint32_t last = 0;
  std::uint64_t changes = 0;
};

std::size_t usable_cpus() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
  return static_cast<std::size_t>(CPU_COUNT(&set));
}

// The middle tier of one threaded cell: K client tokens, T workers and how they reach the
// downstream (a proxy and connection each, or one shared proxy over T connections).
struct middle_tier {
  std::vector<token> tokens;
  std::vector<std::unique_ptr<worker>> workers;
  std::unique_ptr<shared_proxy> shared;
  std::uint32_t first = 0;  // shared: the client whose token the blanket was set under

  // Every worker's counters summed (what the cell reports), or reset after the warm calls.
  proxy_counters counters() const {
    if (shared) return shared->counters();
    proxy_counters sum;
    for (const auto& k : workers) sum += k->px->counters();
    return sum;
  }
  std::uint64_t changes() const {
    std::uint64_t n = 0;
    for (const auto& k : workers) n += k->changes;
    return n;
  }
  void reset_counters() {
    if (shared) shared->reset_counters();
    for (auto& k : workers) {
      if (k->px) k->px->reset_counters();
      k->changes = 0;
    }
  }
};

// Builds the cell's tier: tokens, connections, proxies (the shared one's blanket set here, under
// the first client's token: static cloaking captures it for every thread), each worker's checked
// calls. Throws on a setup failure.
void build_tier(middle_tier& tier, const thread_cell& cell, environment& env,
                identity_backend& backend, const call_site& site, worker_failure& failed,
                std::span<const std::byte> payload) {
  const client_range& range = env.config().clients;
  const std::uint64_t seed = env.config().load_seed;
  const dynamic_options dynamic{identity_probe::kernel, cell.cache, dynamic_authentication::context,
                                identity_tracking::identity};
  tier.tokens.reserve(cell.clients);
  for (std::uint32_t k = 0; k < cell.clients; ++k)
    tier.tokens.push_back(make_token(range.client(k)));
  std::vector<std::unique_ptr<connection>> lanes;
  for (int w = 0; w < cell.threads; ++w) {
    // Worker w's callers replay from seed + w (the launch's seed is recorded).
    tier.workers.push_back(
        std::make_unique<worker>(backend, cell.clients, seed + static_cast<std::uint64_t>(w)));
    auto conn = connect_downstream(env, thread_place, cell.package);
    if (cell.shape == proxy_shape::apartment) {
      worker& k = *tier.workers.back();
      k.conn = std::move(conn);
      k.px = std::make_unique<proxy>(backend, *k.conn, security_defaults{}, dynamic);
    } else {
      lanes.push_back(std::move(conn));
    }
  }
  if (cell.shape == proxy_shape::shared) {
    tier.shared =
        std::make_unique<shared_proxy>(backend, std::move(lanes), security_defaults{}, dynamic);
    tier.first = population_sampler(cell.clients, popularity::zipf(1.0), seed).next();
    held_token held(backend);
    if (!held.hold(tier.tokens[tier.first]))
      throw std::runtime_error("cannot impersonate " + to_string(tier.tokens[tier.first].who));
    tier.shared->set_blanket(blanket{cell.mode, impersonation_level::impersonate, std::nullopt});
  }  // this thread's token is dropped here
  for (auto& k : tier.workers) {
    if (k->px) {
      k->own.emplace(own_proxy{*k->px, *k->conn});
      k->own_checked.emplace(*k->own, cell.mode, 0, site, failed, k->held);
      k->own_checked->set_payload(payload);
    } else {
      k->pooled.emplace(pooled_proxy{*tier.shared, {}});
      k->pooled_checked.emplace(*k->pooled, cell.mode, 0, site, failed, k->held);
      k->pooled_checked->set_payload(payload);
    }
  }
}

// What the workers do with each request: the next client of the worker's population, its token
// made the thread's, the checked call. A worker's first request sets its blanket (apartment) or
// learns what the shared one captured, as a matrix cell's first call does.
load_work tier_work(middle_tier& tier, const thread_cell& cell, environment& env,
                    worker_failure& failed) {
  load_work work;
  work.serve = [&tier, &cell, &env, &failed](int w, std::uint64_t i) {
    worker& k = *tier.workers[static_cast<std::size_t>(w)];
    const std::vector<token>& tokens = tier.tokens;
    if ((i & interrupt_check_mask) == 0 && env.interrupted()) [[unlikely]] {
      failed.interrupted = true;
      failed.fail("interrupted");
      return false;
    }
    if (!k.started) [[unlikely]] {
      k.started = true;
      k.last = k.who.next();
      if (k.own_checked) return k.own_checked->begin(tokens[k.last]);
      if (!k.held.hold(tokens[k.last])) {
        failed.fail(fmt::format("setup: cannot impersonate {}", to_string(tokens[k.last].who)));
        return false;
      }
      k.pooled_checked->captured_by_blanket(cell.mode == cloaking::static_ ? &tokens[tier.first].who
                                                                           : nullptr);
      std::uint64_t ns0 = 0;
      return k.pooled_checked->check(0, ns0);
    }
    std::uint32_t c = k.who.next();
    if (c != k.last) {
      if (k.last != no_client) ++k.changes;
      k.last = c;
      if (!k.held.hold(tokens[c])) [[unlikely]] {
        failed.fail(fmt::format("call {}: cannot impersonate {}", i, to_string(tokens[c].who)));
        return false;
      }
    }
    std::uint64_t call_ns = 0;
    return k.own_checked ? k.own_checked->check(i, call_ns) : k.pooled_checked->check(i, call_ns);
  };
  // The thread ends: its token goes with it, and the next loop's thread for this worker (a new one)
  // takes its client's token again.
  work.finish = [&tier](int w) {
    worker& k = *tier.workers[static_cast<std::size_t>(w)];
    k.held.drop();
    k.last = no_client;
  };
  return work;
}

// An open-loop cell's reference: the closed loop's throughput it takes its rate from.
struct open_reference {
  double closed_rate = 0;
  bool from_closed_cell = false;  // the closed-loop cell ran earlier in this launch
};

void report_thread_cell(benchmark::State& state, const thread_cell& cell, const middle_tier& tier,
                        const load_outcome& out, const open_reference& reference) {
  using benchmark::Counter;
  const proxy_counters n = tier.counters();
  const double calls = static_cast<double>(std::max<std::uint64_t>(out.served, 1));
  const latency_histogram& h = *out.latencies;
  auto set = [&state](const char* key, double value) { state.counters[key] = Counter(value); };
  set("calls_per_s", out.throughput());
  set("served", static_cast<double>(out.served));
  set("p50_ns", static_cast<double>(h.percentile(0.50)));
  set("p90_ns", static_cast<double>(h.percentile(0.90)));
  set("p99_ns", static_cast<double>(h.percentile(0.99)));
  set("p999_ns", static_cast<double>(h.percentile(0.999)));
  set("max_ns", static_cast<double>(h.max()));
  set("mean_ns", h.mean());
  const std::uint64_t lookups = n.cache_hits + n.cache_misses;
  set("hit_rate", lookups ? static_cast<double>(n.cache_hits) / static_cast<double>(lookups) : 0.0);
  set("contexts_per_call", static_cast<double>(n.contexts_established) / calls);
  set("changes_per_call", static_cast<double>(tier.changes()) / calls);
  set("workers", cell.threads);
  set("connections", cell.threads);
  set("cpus", static_cast<double>(usable_cpus()));
  set("mismatches", 0);
  set("bytes", static_cast<double>(load_bytes));
  if (tier.shared)
    set("waits_per_call", static_cast<double>(tier.shared->pool_counters().waits) / calls);
  if (cell.open_percent > 0) {
    set("target_per_s", reference.closed_rate * cell.open_percent / 100.0);
    set("closed_per_s", reference.closed_rate);
    set("rate_from_closed_cell", reference.from_closed_cell ? 1 : 0);
    set("offered_per_s", out.offered);
    set("load_fraction", cell.open_percent / 100.0);
    set("unserved", static_cast<double>(out.unserved));
    set("generator_late_ns", static_cast<double>(out.late_generator_ns));
    set("generator_nice", out.generator_nice);
  }
  auto none = std::make_unique<latency_histogram>();  // no "after a change" split here
  keep_cell_histograms(thread_cell_name(cell), h, *none);
}

void run_thread_cell(benchmark::State& state, const thread_cell& cell) {
  environment& env = environment::instance();
  cell_failure failure(state);
  identity_backend* backend = load_backend(env, failure, cell.clients);
  if (!backend) return;
  const int q = cell.quick ? 1 : 0;
  const double scale =
      env.config().load_seconds > 0 ? env.config().load_seconds / run_seconds[q] : 1.0;
  auto ns = [scale](double seconds) {
    return std::chrono::nanoseconds(static_cast<std::int64_t>(seconds * scale * 1e9));
  };
  // An open-loop cell's reference: its closed-loop cell's throughput when that ran earlier in this
  // launch (run interleaves cells at random), else a closed loop it runs itself after its warm-up.
  open_reference reference;
  if (cell.open_percent > 0) {
    std::lock_guard lock(closed_mutex);
    if (auto it = closed_throughput.find(closed_twin(cell)); it != closed_throughput.end())
      reference = {it->second, true};
  }
  const identity& process = backend->process_identity();
  call_site site = load_site(env, thread_place, process);
  std::vector<std::byte> payload(load_bytes, std::byte{0x5a});
  worker_failure failed;
  middle_tier tier;
  try {
    // The cell's placement for this thread, before it starts any: the workers and the generator
    // inherit it, and an earlier cell of the launch (a matrix or single-thread load cell) may have
    // pinned this thread to one CPU.
    env.cpus().pin_client(thread_place);
    build_tier(tier, cell, env, *backend, site, failed, payload);
  } catch (const std::exception& e) {
    failure.fail(fmt::format("setup: {}", e.what()));
    failure.drain();
    return;
  }
  const load_work work = tier_work(tier, cell, env, failed);
  // A worker's failure (or the run's interruption) as the cell's.
  auto fail_cell = [&](const char* otherwise) {
    if (failed.interrupted) {
      failure.interrupt();
    } else {
      failure.fail(failed.failed() ? failed.message() : std::string(otherwise));
    }
  };
  // A loop that throws (a thread that cannot be started) fails the cell.
  auto closed_for = [&](double seconds, std::uint64_t owed) {
    closed_loop_options o;
    o.workers = cell.threads;
    o.duration = ns(seconds);
    o.min_calls_per_worker = owed;
    return run_closed_loop(o, work);
  };

  load_outcome out;
  try {
    // Warm: every worker's first request and one more, then the caches fill (bounded, not timed).
    if (load_outcome warmed = closed_for(warm_seconds[q], 2); warmed.failed || failed.failed()) {
      fail_cell("the warm calls failed");
      failure.drain();
      return;
    }
    if (cell.open_percent > 0 && !reference.from_closed_cell) {
      load_outcome own = closed_for(run_seconds[q], 0);
      if (own.failed || failed.failed() || own.throughput() <= 0) {
        fail_cell("the reference closed loop served nothing");
        failure.drain();
        return;
      }
      reference.closed_rate = own.throughput();
    }
  } catch (const std::exception& e) {
    failure.fail(fmt::format("warm calls: {}", e.what()));
    failure.drain();
    return;
  }
  tier.reset_counters();
  std::string thrown;
  for (auto _ : state) {
    try {
      if (cell.open_percent == 0) {
        out = closed_for(run_seconds[q], 0);
      } else {
        open_loop_options o;
        o.workers = cell.threads;
        o.rate = reference.closed_rate * cell.open_percent / 100.0;
        o.seed = env.config().load_seed;
        o.duration = ns(run_seconds[q]);
        o.grace = ns(grace_seconds[q]);
        out = run_open_loop(o, work);
      }
    } catch (const std::exception& e) {
      thrown = e.what();
    }
  }
  if (!thrown.empty()) {
    failure.fail(fmt::format("load loop: {}", thrown));
  } else if (out.failed || failed.failed()) {
    fail_cell("a worker failed");
  } else {
    report_thread_cell(state, cell, tier, out, reference);
    if (cell.open_percent == 0) {
      std::lock_guard lock(closed_mutex);
      closed_throughput[thread_cell_name(cell)] = out.throughput();
    }
  }
  try {
    backend->check_no_leak();
  } catch (const std::exception& e) {
    failure.fail(e.what());
  }
}

}  // namespace

std::vector<cell_entry> load_entries() {
  std::vector<cell_entry> entries;
  for (const load_cell& cell : load_table()) {
    cell_entry e;
    e.name = load_cell_name(cell);
    e.quick = cell.quick;
    e.backend = "kernel";
    e.package = cell.package;
    // Fixed iterations bound each repetition's time (and run the warm pass once per repetition,
    // not once per Google Benchmark's search for an iteration count): a Kerberos miss is a new
    // context, hundreds of times a local call.
    bool kerberos = cell.package == package_id::kerberos;
    e.iterations = cell.quick ? (kerberos ? 1000 : 5000) : (kerberos ? 3000 : 20000);
    e.run = [cell](benchmark::State& state) { run_load_cell(state, cell); };
    entries.push_back(std::move(e));
  }
  for (const thread_cell& cell : thread_table()) {
    cell_entry e;
    e.name = thread_cell_name(cell);
    e.quick = cell.quick;
    e.backend = "kernel";
    e.package = cell.package;
    // One timed run per repetition, bounded in time (the warm calls, the run, an open loop's
    // grace); one repetition: the open-loop cells' rates come from it.
    e.iterations = 1;
    e.repetitions = 1;
    e.run = [cell](benchmark::State& state) { run_thread_cell(state, cell); };
    entries.push_back(std::move(e));
  }
  return entries;
}

}  // namespace cloak::bench
