// The same-run baselines every cell is read against: syscall, probes, token switch, raw socket,
// model floor, and the paired harness check. The packages' own terms are in package_cells.cpp.
#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cloak/connection.hpp>
#include <cloak/kerberos.hpp>
#include <cloak/os.hpp>
#include <cloak/proxy.hpp>
#include <cstring>
#include <memory>
#include <optional>

#include "baseline_common.hpp"
#include "inject.hpp"
#include "suite.hpp"

namespace cloak::bench {

namespace {

using detail::begin;
using detail::check_no_leak;

constexpr std::size_t connect_bytes = 64;
constexpr std::size_t model_bytes = 64;

// The first message of a connection, carrying the sender's credentials explicitly
// (SCM_CREDENTIALS).
bool send_with_credentials(int fd, const std::byte* data, std::size_t n) {
  ucred cred{::getpid(), ::getuid(), ::getgid()};
  return os::send_with_credentials(fd, data, n, cred) == static_cast<ssize_t>(n);
}

void bm_syscall(benchmark::State& state) {
  cell_failure failure(state);
  if (!begin(state, failure, placement::same)) return;
  std::uint64_t i = 0;
  for (auto _ : state) {
    if (failure.failed()) continue;
    benchmark::DoNotOptimize(::syscall(SYS_getppid));
    ++i;
    CLOAK_INTERRUPT_POINT(i, failure)
  }
  check_no_leak(failure);
}

// The first client's token with `groups` extra groups (groups:N), or the cell fails saying why (a
// reserved gid that belongs to a real group).
bool fat_token_or_fail(std::uint32_t groups, token& t, cell_failure& failure) {
  const client_range& clients = environment::instance().config().clients;
  try {
    check_extra_groups(clients, groups);
    t = make_token(clients.client(0, groups));
    return true;
  } catch (const std::exception& e) {
    failure.fail(fmt::format("setup: {}", e.what()));
    failure.drain();
    return false;
  }
}

void bm_probe_kernel(benchmark::State& state, std::uint32_t groups) {
  cell_failure failure(state);
  if (!begin(state, failure, placement::same)) return;
  environment& env = environment::instance();
  identity_backend& backend = *env.kernel();
  // groups:N reads a fat token's identity: the thread impersonates a client with N extra groups.
  std::optional<held_token> held;
  token t;
  if (!fat_token_or_fail(groups, t, failure)) return;
  if (groups > 0) {
    held.emplace(backend);
    if (!held->hold(t)) failure.fail(fmt::format("cannot impersonate {}", to_string(t.who)));
  }
  std::uint64_t i = 0;
  for (auto _ : state) {
    if (failure.failed()) continue;
    identity who = backend.read_thread_identity();
    benchmark::DoNotOptimize(who);
    if (groups > 0 && who.group_count != t.who.group_count) [[unlikely]] {
      failure.fail(fmt::format("probe {}: read {} groups, the token has {}", i, who.group_count,
                               t.who.group_count));
      continue;
    }
    ++i;
    CLOAK_INTERRUPT_POINT(i, failure)
  }
  held.reset();
  check_no_leak(failure);
}

// What the generation probe of a dynamic proxy does on each call: compare the thread's counter.
void bm_probe_generation(benchmark::State& state) {
  cell_failure failure(state);
  if (!begin(state, failure, placement::same)) return;
  environment& env = environment::instance();
  identity_backend& backend = env.kernel() ? *env.kernel() : env.model();
  std::uint64_t last = backend.thread_generation();
  std::uint64_t i = 0;
  for (auto _ : state) {
    if (failure.failed()) continue;
    const token* now = backend.thread_token();
    benchmark::DoNotOptimize(now);
    std::uint64_t g = backend.thread_generation();
    bool changed = g != last;
    last = g;
    benchmark::DoNotOptimize(changed);
    ++i;
    CLOAK_INTERRUPT_POINT(i, failure)
  }
  check_no_leak(failure);
}

void bm_switch(benchmark::State& state, std::uint32_t groups) {
  cell_failure failure(state);
  if (!begin(state, failure, placement::same)) return;
  environment& env = environment::instance();
  identity_backend& backend = *env.kernel();
  token t;
  if (!fat_token_or_fail(groups, t, failure)) return;
  std::uint64_t i = 0;
  for (auto _ : state) {
    if (failure.failed()) continue;
    if (backend.impersonate(t) != switch_error::ok) {
      failure.fail(fmt::format("cannot impersonate {}", to_string(t.who)));
      continue;
    }
    backend.revert();
    ++i;
    CLOAK_INTERRUPT_POINT(i, failure)
  }
  backend.revert();
  check_no_leak(failure);
}

// One message out and its echo back on a seqpacket socket: one send and one recv, nothing else.
bool round_trip(int fd, const std::vector<std::byte>& out, std::vector<std::byte>& in) noexcept {
  auto n = static_cast<ssize_t>(out.size());
  return ::send(fd, out.data(), out.size(), MSG_NOSIGNAL) == n &&
         ::recv(fd, in.data(), in.size(), MSG_TRUNC) == n;
}

// The raw round trip (the echo peer reads every message's credentials, as cloak-downstream does)
// or, `minimal`, the plain ping-pong under it: the floor of any call on this machine.
void bm_roundtrip(benchmark::State& state, placement where, std::size_t bytes, bool minimal) {
  cell_failure failure(state);
  if (!begin(state, failure, where)) return;
  environment& env = environment::instance();
  os::unique_fd fd;
  try {
    std::string path =
        minimal ? env.servers().minimal_echo_socket(where) : env.servers().echo_socket(where);
    fd = os::connect_unix(path, std::chrono::milliseconds(2000), os::unix_kind::seqpacket);
    if (!fd)
      throw std::runtime_error(
          fmt::format("cannot connect to the echo peer: {}", std::strerror(errno)));
  } catch (const std::exception& e) {
    failure.fail(fmt::format("setup: {}", e.what()));
    failure.drain();
    return;
  }
  std::vector<std::byte> out(bytes, std::byte{0x5a}), in(bytes);
  if (!round_trip(fd.get(), out, in) || in != out) {
    failure.fail(fmt::format("first round trip to the echo peer failed: {}",
                             errno ? std::strerror(errno) : "not an echo"));
  }
  std::uint64_t i = 0;
  for (auto _ : state) {
    if (failure.failed()) continue;
    if (!round_trip(fd.get(), out, in)) {
      failure.fail(fmt::format("round trip {} to the echo peer failed: {}", i,
                               errno ? std::strerror(errno) : "connection closed"));
      continue;
    }
    ++i;
    CLOAK_INTERRUPT_POINT(i, failure)
  }
  state.counters["bytes"] = benchmark::Counter(static_cast<double>(bytes));
  check_no_leak(failure);
}

void bm_connect(benchmark::State& state, placement where) {
  cell_failure failure(state);
  if (!begin(state, failure, where)) return;
  environment& env = environment::instance();
  std::string path;
  try {
    path = env.servers().echo_socket(where);
  } catch (const std::exception& e) {
    failure.fail(fmt::format("setup: {}", e.what()));
    failure.drain();
    return;
  }
  std::array<std::byte, connect_bytes> out{}, in{};
  std::uint64_t i = 0;
  for (auto _ : state) {
    if (failure.failed()) continue;
    os::unique_fd fd =
        os::connect_unix(path, std::chrono::milliseconds(2000), os::unix_kind::seqpacket);
    if (!fd || !send_with_credentials(fd.get(), out.data(), out.size()) ||
        ::recv(fd.get(), in.data(), in.size(), 0) != static_cast<ssize_t>(in.size())) {
      failure.fail(fmt::format("connection {} to the echo peer failed: {}", i,
                               errno ? std::strerror(errno) : "connection closed"));
      continue;
    }
    ++i;
    CLOAK_INTERRUPT_POINT(i, failure)
  }
  state.counters["bytes"] = benchmark::Counter(static_cast<double>(connect_bytes));
  check_no_leak(failure);
}

// The model transport's floor: one call under an established context, no proxy.
void bm_model_inproc(benchmark::State& state) {
  cell_failure failure(state);
  if (!begin(state, failure, placement::same)) return;
  environment& env = environment::instance();
  model_downstream downstream;
  auto conn = make_inproc_connection(downstream, env.model());
  downstream_view view;
  std::uint64_t context = 0;
  if (conn->connect() != call_error::ok ||
      conn->establish(presentation{env.model(), nullptr, impersonation_level::impersonate}, 0,
                      view) != call_error::ok) {
    failure.fail("cannot establish a context with the model downstream");
  }
  context = view.context;
  std::array<std::byte, model_bytes> payload{};
  std::uint64_t i = 0;
  for (auto _ : state) {
    if (failure.failed()) continue;
    if (call_error e = conn->call(context, impersonation_level::impersonate, payload, view);
        e != call_error::ok) {
      failure.fail(fmt::format("call {}: {}", i, to_string(e)));
      continue;
    }
    benchmark::DoNotOptimize(view);
    ++i;
    CLOAK_INTERRUPT_POINT(i, failure)
  }
  state.counters["bytes"] = benchmark::Counter(static_cast<double>(model_bytes));
  check_no_leak(failure);
}

// The harness-cost checks measured paired: every iteration makes one raw round trip and one call
// through each proxy (none, static, dynamic with either probe), each timed on its own, in a random
// order per iteration. All five kinds then see the same moments of the machine, so a burst
// of interference or a slow vCPU wake-up falls on all of them alike and cancels in their ratios;
// separately timed cells on this VM differ by more than the 2% the checks must resolve.
void bm_paired(benchmark::State& state, placement where) {
  using clock = std::chrono::steady_clock;
  cell_failure failure(state);
  if (!begin(state, failure, where)) return;
  environment& env = environment::instance();
  identity_backend* kernel = env.kernel();
  if (!kernel) {
    failure.fail("the kernel backend is unavailable: " + env.kernel_unavailable_reason());
    failure.drain();
    return;
  }
  constexpr std::size_t bytes = 64;
  // raw, none, static, dynamic/probe:kernel, dynamic/probe:generation, the minimal ping-pong
  constexpr int kinds = 6;
  constexpr int proxies_count = 4;
  os::unique_fd echo, minimal;
  std::unique_ptr<connection> conns[proxies_count];
  try {
    echo = os::connect_unix(env.servers().echo_socket(where), std::chrono::milliseconds(2000),
                            os::unix_kind::seqpacket);
    minimal = os::connect_unix(env.servers().minimal_echo_socket(where),
                               std::chrono::milliseconds(2000), os::unix_kind::seqpacket);
    if (!echo || !minimal)
      throw std::runtime_error(
          fmt::format("cannot connect to the echo peer: {}", std::strerror(errno)));
    for (auto& c : conns) {
      c = make_uds_connection(
          uds_options{env.servers().downstream_socket(where), std::chrono::milliseconds(2000)});
    }
  } catch (const std::exception& e) {
    failure.fail(fmt::format("setup: {}", e.what()));
    failure.drain();
    return;
  }
  const identity c1 = env.config().clients.client(0);
  const identity& process = kernel->process_identity();
  std::vector<std::byte> out(bytes, std::byte{0x5a}), in(bytes);
  double total[kinds] = {};
  {
    held_token held(*kernel);
    proxy none(*kernel, *conns[0]);
    proxy fixed(*kernel, *conns[1]);
    proxy probing(*kernel, *conns[2], {}, dynamic_options{identity_probe::kernel});
    proxy counting(*kernel, *conns[3], {}, dynamic_options{identity_probe::generation});
    const token as_c1 = make_token(c1);
    if (!held.hold(as_c1)) failure.fail(fmt::format("setup: cannot impersonate {}", to_string(c1)));
    none.set_blanket(blanket{cloaking::none, impersonation_level::impersonate, std::nullopt});
    fixed.set_blanket(blanket{cloaking::static_, impersonation_level::impersonate, std::nullopt});
    probing.set_blanket(blanket{cloaking::dynamic, impersonation_level::impersonate, std::nullopt});
    counting.set_blanket(
        blanket{cloaking::dynamic, impersonation_level::impersonate, std::nullopt});
    proxy* proxies[proxies_count] = {&none, &fixed, &probing, &counting};
    const identity* expected[proxies_count] = {&process, &c1, &c1, &c1};
    const injected_delay& delay = injected_delay::instance();
    // One verified call each outside the timed loop: connections and contexts are setup.
    auto call = [&](int k, std::uint64_t i) {
      if (k == 0 || k == kinds - 1) {
        if (!round_trip(k == 0 ? echo.get() : minimal.get(), out, in)) {
          failure.fail(fmt::format("round trip {} to the echo peer failed", i));
        }
        return;
      }
      if (delay.active()) [[unlikely]]
        delay.spin();  // CLOAK_INJECT_NS: proxy calls only, not the raw trip
      call_result r = proxies[k - 1]->call(out);
      if (!r.ok()) {
        env.servers().mark_suspect(where);
        failure.fail(fmt::format("call {}: {} ({})", i, to_string(r.error),
                                 env.servers().downstream_state(where)));
      } else if (!r.view.seen.same_principal(*expected[k - 1]) || r.view.anonymous) {
        failure.fail(fmt::format("call {}: identity mismatch: expected {}, the downstream saw {}",
                                 i, to_string(*expected[k - 1]), to_string(r.view.seen)));
      }
    };
    for (int k = 0; k < kinds && !failure.failed(); ++k) call(k, 0);
    std::uint64_t i = 0;
    std::uint64_t rng = 0x9E3779B97F4A7C15ull;
    int order[kinds] = {0, 1, 2, 3, 4, 5};
    for (auto _ : state) {
      if (failure.failed()) continue;
      // A fresh random order each iteration: no kind always follows the same other kind.
      for (int j = kinds - 1; j > 0; --j) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        std::swap(order[j], order[rng % static_cast<std::uint64_t>(j + 1)]);
      }
      for (int k : order) {
        auto t0 = clock::now();
        call(k, i);
        total[k] += std::chrono::duration<double, std::nano>(clock::now() - t0).count();
      }
      ++i;
      CLOAK_INTERRUPT_POINT(i, failure)
    }
  }
  const char* names[kinds] = {
      "raw_ns", "none_ns", "static_ns", "dynamic_kernel_ns", "dynamic_generation_ns", "minimal_ns"};
  for (int k = 0; k < kinds; ++k) {
    state.counters[names[k]] = benchmark::Counter(total[k], benchmark::Counter::kAvgIterations);
  }
  state.counters["bytes"] = benchmark::Counter(static_cast<double>(bytes));
  check_no_leak(failure);
}

}  // namespace

std::vector<cell_entry> baseline_entries() {
  std::vector<cell_entry> entries;
  auto add = [&](std::string name, bool quick, std::string backend,
                 std::function<void(benchmark::State&)> run) {
    entries.push_back(
        cell_entry{std::move(name), quick, false, std::move(backend), 1, std::move(run)});
  };
  add("baseline/syscall", true, "", bm_syscall);
  add("baseline/probe:kernel", true, "kernel", [](benchmark::State& s) { bm_probe_kernel(s, 0); });
  add("baseline/probe:generation", true, "", bm_probe_generation);
  add("baseline/switch", true, "kernel", [](benchmark::State& s) { bm_switch(s, 0); });
  // A fat token (groups:N extra supplementary groups): setgroups and the probe's getgroups grow.
  for (std::uint32_t groups : {16u, 64u}) {
    add(fmt::format("baseline/probe:kernel/groups:{}", groups), false, "kernel",
        [groups](benchmark::State& s) { bm_probe_kernel(s, groups); });
    add(fmt::format("baseline/switch/groups:{}", groups), false, "kernel",
        [groups](benchmark::State& s) { bm_switch(s, groups); });
  }
  for (placement p : {placement::same, placement::cross, placement::unpinned}) {
    for (std::size_t bytes : {std::size_t{64}, std::size_t{4096}}) {
      add(fmt::format("baseline/roundtrip/place:{}/bytes:{}", to_string(p), bytes),
          p == placement::same && bytes == 64, "",
          [p, bytes](benchmark::State& s) { bm_roundtrip(s, p, bytes, false); });
      add(fmt::format("baseline/roundtrip/minimal/place:{}/bytes:{}", to_string(p), bytes),
          p == placement::same && bytes == 64, "",
          [p, bytes](benchmark::State& s) { bm_roundtrip(s, p, bytes, true); });
    }
    add(fmt::format("baseline/connect/place:{}", to_string(p)), p == placement::same, "",
        [p](benchmark::State& s) { bm_connect(s, p); });
  }
  add("baseline/model/inproc", true, "model", bm_model_inproc);
  for (placement p : {placement::same, placement::cross}) {
    add(fmt::format("check/paired/place:{}/bytes:64", to_string(p)), p == placement::same, "kernel",
        [p](benchmark::State& s) { bm_paired(s, p); });
  }
  for (auto& e : package_entries()) entries.push_back(std::move(e));
  return entries;
}

}  // namespace cloak::bench
