// The load cells (issue 19, docs/results.md "Load cells"): one middle-tier thread serving K client
// identities drawn from a seeded population (Zipf or uniform), through an lru:N context cache, with
// the hit rate and the memory a cached context costs on each side measured beside the time.
#include <fmt/format.h>

#include <cloak/memory_use.hpp>
#include <cloak/population.hpp>
#include <cloak/transport.hpp>
#include <stdexcept>
#include <vector>

#include "cell_loop.hpp"
#include "environment.hpp"
#include "latency_histogram.hpp"
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

std::string describe_failure(environment& env, std::uint64_t i, const call_result& r,
                             const std::string& detail) {
  bool downstream_fault = r.error == call_error::downstream_unavailable ||
                          r.error == call_error::timeout || r.error == call_error::protocol;
  std::string state = env.servers().downstream_state(load_place);
  if (r.error == call_error::refused)
    state = fmt::format("status {}", protocol::to_string(r.view.server_status));
  if (!detail.empty()) state = detail + "; " + state;
  if (downstream_fault) env.servers().mark_suspect(load_place);
  return fmt::format("call {}: {} ({})", i, to_string(r.error), state);
}

std::size_t downstream_rss(environment& env) {
  pid_t pid = env.servers().downstream_pid(load_place);
  return pid > 0 ? resident_anonymous_bytes(pid) : 0;
}

// What one repetition keeps while it runs.
struct load_state {
  const load_cell& cell;
  environment& env;
  cell_failure& failure;
  identity_backend& backend;
  proxy& px;
  transport& channel;
  held_token& held;
  const std::vector<token>& tokens;
  population_sampler& who;
  std::span<const std::byte> payload;
  const identity* captured = nullptr;  // static: whom set_blanket captured
  std::uint32_t last = 0;              // the previous call's client
  std::uint64_t changes = 0;           // calls whose client differed from the previous call's
  latency_histogram* latencies = nullptr;
};

// Draws the next client, makes its token the thread's (the switch is part of the call, as in a
// switch cell), calls, and checks the identity the downstream saw. False: the cell failed.
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
  call_result r = s.px.call(s.payload);
  if (s.latencies) s.latencies->record(now_ns() - t0);
  if (!r.ok()) [[unlikely]] {
    s.failure.fail(describe_failure(s.env, i, r, s.channel.last_establish().detail));
    return false;
  }
  const identity& process = s.backend.process_identity();
  const identity& want = expected_identity(s.cell.mode, s.captured, s.held.current(), process);
  if (!r.view.seen.same_principal(want) || r.view.anonymous) [[unlikely]] {
    s.failure.fail(
        fmt::format("call {}: identity mismatch: {} cloaking expected {}, the downstream "
                    "saw {}",
                    i, to_string(s.cell.mode), to_string(want),
                    r.view.anonymous ? std::string("anonymous") : to_string(r.view.seen)));
    return false;
  }
  return true;
}

void run_load_cell(benchmark::State& state, const load_cell& cell) {
  environment& env = environment::instance();
  cell_failure failure(state);
  if (env.interrupted()) {
    failure.interrupt();
    failure.drain();
    return;
  }
  identity_backend* backend = env.kernel();
  if (!backend) {
    failure.fail("the kernel backend is unavailable: " + env.kernel_unavailable_reason());
    failure.drain();
    return;
  }
  const client_range& range = env.config().clients;
  if (range.count < cell.clients) {
    failure.fail(
        fmt::format("the run's client range has {} clients, the cell needs {} (cloak-matrix "
                    "--load --load-clients FIRST:{})",
                    range.count, cell.clients, cell.clients));
    failure.drain();
    return;
  }
  std::vector<token> tokens;
  std::unique_ptr<transport> channel;
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
    channel = connect_downstream(env, load_place, cell.package);
  } catch (const std::exception& e) {
    failure.fail(fmt::format("setup: {}", e.what()));
    failure.drain();
    return;
  }
  std::vector<std::byte> payload(load_bytes, std::byte{0x5a});
  latency_histogram latencies;
  {
    held_token held(*backend);
    proxy px(*backend, *channel, security_defaults{},
             dynamic_options{identity_probe::kernel, cell.cache, dynamic_authentication::context,
                             identity_tracking::identity});
    load_state s{cell, env, failure, *backend, px, *channel, held, tokens, *who, payload};
    double middle_bytes = 0, downstream_bytes = 0, cached = 0;
    try {
      // The first client draws the blanket (static captures it) and makes the first call: the
      // connection and its first context are setup.
      s.last = who->next();
      if (!held.hold(tokens[s.last]))
        throw std::runtime_error("cannot impersonate " + to_string(tokens[s.last].who));
      px.set_blanket(blanket{cell.mode, impersonation_level::impersonate, std::nullopt});
      if (cell.mode == cloaking::static_) s.captured = &tokens[s.last].who;
      if (!next_call(s, 0)) throw std::runtime_error(failure.message());
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
  return entries;
}

}  // namespace cloak::bench
