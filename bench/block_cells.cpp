// Paired blocks (docs/reading.md, "Blocks"): every headline variant and every decomposition term of
// one question timed in the same rounds, so a drift of the machine falls on all of them alike and
// cancels in their ratios; separately timed cells on a VM drift apart by more than cloaking costs.
#include <fmt/format.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cloak/connection.hpp>
#include <cloak/kerberos.hpp>
#include <cloak/os.hpp>
#include <cloak/proxy.hpp>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <stdexcept>

#include "cell_loop.hpp"
#include "inject.hpp"
#include "latency_histogram.hpp"
#include "suite.hpp"

namespace cloak::bench {

namespace {

using json = nlohmann::json;

// A block answers one question: package x placement x token pattern (64 B, one client thread).
struct block_spec {
  package_id package = package_id::local;
  placement place = placement::same;
  pattern_kind pattern = pattern_kind::steady;
  std::int64_t rounds = 0;  // the default; --block-rounds overrides
  bool quick = false;
  negotiate_mech mech = negotiate_mech::krb5;  // negotiate only: what SPNEGO negotiates
};

constexpr std::size_t block_bytes = 64;

// A negotiate block names its mechanism after the package, as its cells do.
std::string block_name(const block_spec& b) {
  std::string mech = b.package == package_id::negotiate ? fmt::format("mech:{}/", to_string(b.mech))
                                                        : std::string();
  return fmt::format("block/kernel/uds/auth:{}/{}{}/place:{}/bytes:{}", to_string(b.package), mech,
                     to_string(token_pattern{b.pattern, 0}), to_string(b.place), block_bytes);
}

// Rounds per launch: enough that the median of the paired log-ratios within a launch is far
// steadier than the launch-to-launch spread the interval is made of (docs/reading.md).
std::vector<block_spec> block_table() {
  std::vector<block_spec> t;
  for (pattern_kind k :
       {pattern_kind::steady, pattern_kind::switch_, pattern_kind::reimpersonate}) {
    t.push_back({package_id::local, placement::same, k, 1500, true});
    t.push_back({package_id::local, placement::cross, k, 400, false});
    t.push_back({package_id::kerberos, placement::same, k, 300, false});
    t.push_back({package_id::ntlm, placement::same, k, 300, false});
    for (negotiate_mech m : {negotiate_mech::krb5, negotiate_mech::ntlm})
      t.push_back({package_id::negotiate, placement::same, k, 300, false, m});
  }
  return t;
}

// What a variant does in a round. `timed` runs between the two timestamps; `prepare`, untimed,
// puts the thread where this variant's own token sequence left it (another variant of the round
// may have moved it), so each variant sees exactly the identity sequence its lone cell would.
enum class variant_kind : std::uint8_t {
  proxy_call,
  roundtrip,
  probe,
  switch_only,
  new_context,
  clock
};

struct variant {
  std::string name;
  variant_kind kind = variant_kind::proxy_call;
  cloaking mode = cloaking::none;
  context_cache_policy cache = context_cache_policy::none();
  std::unique_ptr<connection> conn;
  std::unique_ptr<proxy> px;
  const identity* captured = nullptr;  // static: what set_blanket captured
  std::size_t client = 0;              // this variant's own place in the client cycle
  std::uint64_t previous_context = 0;  // new_context: released by the next establish
  std::vector<std::uint32_t> times;    // ns per round, in round order
  latency_histogram all, after_change;
};

// Everything one block's rounds share.
struct block_run {
  const block_spec& spec;
  environment& env;
  cell_failure& failure;
  identity_backend& backend;
  held_token& held;
  const std::array<token, clients_per_thread>& tokens;
  os::unique_fd echo;
  std::vector<std::byte> out = std::vector<std::byte>(block_bytes, std::byte{0x5a});
  std::vector<std::byte> in = std::vector<std::byte>(block_bytes);
  const injected_delay& delay = injected_delay::instance();

  bool hold(std::size_t k, std::uint64_t round) {
    if (held.hold(tokens[k])) [[likely]]
      return true;
    failure.fail(fmt::format("round {}: cannot impersonate {}", round, to_string(tokens[k].who)));
    return false;
  }
  // Untimed: the token this variant's sequence holds before its next pattern step.
  bool prepare(variant& v, std::uint64_t round) {
    if (v.kind != variant_kind::proxy_call && v.kind != variant_kind::switch_only &&
        v.kind != variant_kind::new_context)
      return true;
    std::size_t k = spec.pattern == pattern_kind::switch_ ? v.client : 0;
    if (held.current() == &tokens[k].who) return true;
    return hold(k, round);
  }
  // The token pattern's step before a call; true when it changed the thread's token.
  bool step(variant& v, std::uint64_t round, bool& ok) {
    switch (spec.pattern) {
      case pattern_kind::switch_:
        v.client = (v.client + 1) % clients_per_thread;
        ok = hold(v.client, round);
        return true;
      case pattern_kind::reimpersonate:
        held.drop();
        ok = hold(0, round);
        return true;
      default:
        ok = true;
        return false;
    }
  }
  bool checked(const call_result& r, const identity& want, const variant& v, std::uint64_t round) {
    if (!r.ok()) [[unlikely]] {
      bool downstream_fault = r.error == call_error::downstream_unavailable ||
                              r.error == call_error::timeout || r.error == call_error::protocol;
      if (downstream_fault) env.servers().mark_suspect(spec.place);
      std::string detail = v.conn ? v.conn->last_establish().detail : "";
      failure.fail(fmt::format("round {}: {}: {} ({}){}", round, v.name, to_string(r.error),
                               env.servers().downstream_state(spec.place),
                               detail.empty() ? "" : "; " + detail));
      return false;
    }
    if (!r.view.seen.same_principal(want) || r.view.anonymous) [[unlikely]] {
      failure.fail(fmt::format(
          "round {}: {}: identity mismatch: expected {}, the downstream saw {}", round, v.name,
          to_string(want), r.view.anonymous ? std::string("anonymous") : to_string(r.view.seen)));
      return false;
    }
    return true;
  }
  // One timed step of `v`; false after failing the block.
  bool run(variant& v, std::uint64_t round) {
    if (!prepare(v, round)) return false;
    bool ok = true, changed = false;
    std::uint64_t t0 = 0, t1 = 0;
    switch (v.kind) {
      case variant_kind::proxy_call: {
        t0 = now_ns();
        changed = step(v, round, ok);
        if (!ok) return false;
        if (delay.active()) [[unlikely]]
          delay.spin();
        call_result r = v.px->call(out);
        t1 = now_ns();
        const identity& want =
            expected_identity(v.mode, v.captured, held.current(), backend.process_identity());
        if (!checked(r, want, v, round)) return false;
        break;
      }
      case variant_kind::roundtrip: {
        auto n = static_cast<ssize_t>(out.size());
        errno = 0;  // a peer that closed sets none: say so, not an older errno
        t0 = now_ns();
        bool sent = ::send(echo.get(), out.data(), out.size(), MSG_NOSIGNAL) == n &&
                    ::recv(echo.get(), in.data(), in.size(), MSG_TRUNC) == n;
        t1 = now_ns();
        if (!sent) [[unlikely]] {
          failure.fail(fmt::format("round {}: round trip to the echo peer failed: {}", round,
                                   errno ? std::strerror(errno) : "connection closed"));
          return false;
        }
        break;
      }
      case variant_kind::probe: {
        t0 = now_ns();
        identity who = backend.read_thread_identity();
        t1 = now_ns();
        benchmark::DoNotOptimize(who);
        break;
      }
      case variant_kind::switch_only:
        t0 = now_ns();
        changed = step(v, round, ok);
        t1 = now_ns();
        if (!ok) return false;
        break;
      case variant_kind::new_context: {
        // The package's own establish across the same channel, presenting what a dynamic proxy
        // would present after this step: the term a new context adds to a call.
        bool stepped = true;
        changed = step(v, round, stepped);
        if (!stepped) return false;
        const token* who = &tokens[spec.pattern == pattern_kind::switch_ ? v.client : 0];
        downstream_view view;
        t0 = now_ns();
        call_error e = v.conn->establish(
            presentation{backend, who, impersonation_level::impersonate}, v.previous_context, view);
        t1 = now_ns();
        call_result r{e, view};
        if (!checked(r, who->who, v, round)) return false;
        v.previous_context = view.context;
        break;
      }
      case variant_kind::clock:
        t0 = now_ns();
        t1 = now_ns();
        break;
    }
    std::uint64_t ns = t1 - t0;
    v.times.push_back(static_cast<std::uint32_t>(std::min<std::uint64_t>(ns, UINT32_MAX)));
    v.all.record(ns);
    if (changed) v.after_change.record(ns);
    return true;
  }
};

std::mutex records_mutex;
json records = json::array();
json cell_records = json::array();
std::int64_t rounds_override = 0;
std::uint64_t seed_override = 0;
bool seed_given = false;

std::vector<variant> make_variants(environment& env, const block_spec& spec) {
  std::vector<variant> vs;
  auto proxied = [&](std::string name, cloaking mode, context_cache_policy cache) {
    variant v;
    v.name = std::move(name);
    v.mode = mode;
    v.cache = cache;
    v.conn = connect_downstream(env, spec.place, spec.package, protection::none, ticket_state::warm,
                                spec.mech);
    vs.push_back(std::move(v));
  };
  proxied("none", cloaking::none, context_cache_policy::none());
  proxied("none_aa", cloaking::none, context_cache_policy::none());
  proxied("static", cloaking::static_, context_cache_policy::none());
  proxied("dynamic", cloaking::dynamic, context_cache_policy::none());
  proxied("dynamic_lru", cloaking::dynamic, context_cache_policy::lru(clients_per_thread));
  auto raw = [&](std::string name, variant_kind kind) {
    variant v;
    v.name = std::move(name);
    v.kind = kind;
    vs.push_back(std::move(v));
  };
  raw("roundtrip", variant_kind::roundtrip);
  raw("probe", variant_kind::probe);
  if (spec.pattern != pattern_kind::steady) raw("switch", variant_kind::switch_only);
  raw("new_context", variant_kind::new_context);
  vs.back().conn = connect_downstream(env, spec.place, spec.package, protection::none,
                                      ticket_state::warm, spec.mech);
  if (vs.back().conn->connect() != call_error::ok)
    throw std::runtime_error("cannot connect to cloak-downstream: " +
                             env.servers().downstream_state(spec.place));
  raw("clock", variant_kind::clock);
  return vs;
}

json variant_counters(const variant& v, std::uint64_t rounds) {
  if (!v.px) return nullptr;
  const proxy_counters& n = v.px->counters();
  return json{{"calls", rounds},
              {"contexts", n.contexts_established},
              {"probes", n.probes},
              {"cache_hits", n.cache_hits}};
}

double median_of(std::vector<std::uint32_t> xs) {
  if (xs.empty()) return 0;
  auto mid = xs.begin() + static_cast<std::ptrdiff_t>(xs.size() / 2);
  std::nth_element(xs.begin(), mid, xs.end());
  return *mid;
}

void run_block(benchmark::State& state, const block_spec& spec) {
  environment& env = environment::instance();
  cell_failure failure(state);
  std::string name = block_name(spec);
  json record{
      {"name", name},
      {"package", std::string(to_string(spec.package))},
      {"mech", spec.package == package_id::negotiate ? json(std::string(to_string(spec.mech)))
                                                     : json(nullptr)},
      {"place", std::string(to_string(spec.place))},
      {"pattern", to_string(token_pattern{spec.pattern, 0})},
      {"bytes", block_bytes},
      {"failed", nullptr}};
  auto keep = [&] {
    std::lock_guard lock(records_mutex);
    records.push_back(std::move(record));
  };
  identity_backend* backend = env.kernel();
  if (env.interrupted() || !backend) {
    if (backend)
      failure.interrupt();
    else
      failure.fail("the kernel backend is unavailable: " + env.kernel_unavailable_reason());
    record["failed"] = backend ? "interrupted" : "no kernel backend";
    keep();
    failure.drain();
    return;
  }
  std::array<token, clients_per_thread> tokens;
  for (std::size_t k = 0; k < clients_per_thread; ++k)
    tokens[k] = make_token(env.config().clients.client(static_cast<std::uint32_t>(k)));
  std::vector<variant> vs;
  os::unique_fd echo;
  try {
    env.cpus().pin_client(spec.place);
    vs = make_variants(env, spec);
    echo = os::connect_unix(env.servers().echo_socket(spec.place), std::chrono::milliseconds(2000),
                            os::unix_kind::seqpacket);
    if (!echo)
      throw std::runtime_error(
          fmt::format("cannot connect to the echo peer: {}", std::strerror(errno)));
  } catch (const std::exception& e) {
    failure.fail(fmt::format("setup: {}", e.what()));
    record["failed"] = fmt::format("setup: {}", e.what());
    keep();
    failure.drain();
    return;
  }
  std::uint64_t seed = seed_given ? seed_override : std::random_device{}();
  std::uint64_t rounds = static_cast<std::uint64_t>(state.max_iterations);
  {
    held_token held(*backend);
    block_run run{spec, env, failure, *backend, held, tokens, std::move(echo)};
    if (held.hold(tokens[0])) {
      for (auto& v : vs) {
        if (v.kind != variant_kind::proxy_call) continue;
        v.px = std::make_unique<proxy>(*backend, *v.conn, security_defaults{},
                                       dynamic_options{identity_probe::kernel, v.cache});
        // Under the first client: static cloaking captures it.
        v.px->set_blanket(blanket{v.mode, impersonation_level::impersonate, std::nullopt});
        if (v.mode == cloaking::static_) v.captured = &tokens[0].who;
      }
      // Untimed passes through every variant, one more than the clients of the cycle (so the lru
      // cache holds every client): connections, first contexts and cold caches are setup, not cost.
      for (int warm = 0; warm < static_cast<int>(clients_per_thread) + 1 && !failure.failed();
           ++warm) {
        for (auto& v : vs) {
          if (!run.run(v, 0)) break;  // a failure while warming up is reported as round 0
        }
      }
      for (auto& v : vs) {
        v.times.clear();
        v.times.reserve(rounds);
        v.all.reset();
        v.after_change.reset();
        if (v.px) v.px->reset_counters();
      }
    } else {
      failure.fail(fmt::format("setup: cannot impersonate {}", to_string(tokens[0].who)));
    }
    std::mt19937_64 rng(seed);
    std::vector<std::size_t> order(vs.size());
    std::iota(order.begin(), order.end(), 0);
    std::uint64_t round = 0;
    for (auto _ : state) {
      if (failure.failed()) [[unlikely]]
        continue;
      std::shuffle(order.begin(), order.end(), rng);  // a fresh random order every round
      for (std::size_t k : order) {
        if (!run.run(vs[k], round)) break;
      }
      ++round;
      if ((round & 63) == 0 && env.interrupted()) [[unlikely]]
        failure.interrupt();
    }
    rounds = round;
  }  // the thread's token is dropped here, before the leak check
  try {
    backend->check_no_leak();
  } catch (const std::exception& e) {
    failure.fail(e.what());
  }
  record["seed"] = seed;
  record["rounds"] = rounds;
  json names = json::array(), times = json::object(), counters = json::object(),
       histograms = json::object();
  for (const auto& v : vs) {
    names.push_back(v.name);
    times[v.name] = v.times;
    if (v.px) counters[v.name] = variant_counters(v, rounds);
    histograms[v.name] = {{"all", v.all.to_json()}, {"after_change", v.after_change.to_json()}};
  }
  record["variants"] = names;
  record["times_ns"] = std::move(times);
  record["counters"] = std::move(counters);
  record["histograms"] = std::move(histograms);
  if (failure.failed()) {
    record["failed"] = failure.message();
  } else {
    // The launch's own medians on the console and in the Google Benchmark file; the paired
    // estimates and their intervals across launches are `cloakbench run`'s (cloakpy/blocks.py).
    for (const auto& v : vs) state.counters[v.name + "_ns"] = median_of(v.times);
    state.counters["rounds"] = static_cast<double>(rounds);
  }
  keep();
}

}  // namespace

void set_block_options(std::int64_t rounds, std::optional<std::uint64_t> seed) {
  rounds_override = rounds;
  seed_given = seed.has_value();
  seed_override = seed.value_or(0);
}

void keep_cell_histograms(const std::string& cell, const latency_histogram& all,
                          const latency_histogram& after_change) {
  json record{{"name", cell}, {"all", all.to_json()}, {"after_change", after_change.to_json()}};
  std::lock_guard lock(records_mutex);
  cell_records.push_back(std::move(record));
}

void write_block_records(const std::string& path) {
  std::lock_guard lock(records_mutex);
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f) throw std::runtime_error(fmt::format("cannot write {}: {}", tmp, std::strerror(errno)));
    f << json{{"blocks", records}, {"cells", cell_records}}.dump() << '\n';
    if (!f) throw std::runtime_error(fmt::format("cannot write {}", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw std::runtime_error(
        fmt::format("cannot rename {} to {}: {}", tmp, path, std::strerror(errno)));
}

std::vector<cell_entry> block_entries() {
  std::vector<cell_entry> entries;
  for (const block_spec& spec : block_table()) {
    cell_entry e;
    e.name = block_name(spec);
    e.quick = spec.quick;
    e.backend = "kernel";
    e.package = spec.package;
    e.iterations = rounds_override > 0 ? rounds_override : spec.rounds;
    e.repetitions = 1;
    e.run = [spec](benchmark::State& state) { run_block(state, spec); };
    entries.push_back(std::move(e));
  }
  return entries;
}

}  // namespace cloak::bench
