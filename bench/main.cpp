// cloak-matrix: the cloaking matrix of docs/design.md §4 and its same-run baselines under Google
// Benchmark, with our own flags, cell names exactly as docs/results.md says, and the result context
// cloakbench adds.
#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <cloak/machine.hpp>
#include <cloak/net.hpp>
#include <cloak/os.hpp>
#include <cloak/topology.hpp>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "build_info.hpp"
#include "inject.hpp"
#include "suite.hpp"

namespace {

using namespace cloak;
using namespace cloak::bench;
using json = nlohmann::json;

constexpr const char* program = "cloak-matrix";
constexpr int usage_exit = 2;
// The help, also for the usage errors found after parsing (a filter that matches no cell).
std::string usage;

[[noreturn]] void usage_error(const std::string& why) {
  std::fprintf(stderr, "%s: error: %s\n\n%s", program, why.c_str(), usage.c_str());
  std::fflush(stderr);
  std::exit(usage_exit);
}

struct arguments {
  bench_config config;
  bool quick = false;
  std::string kerberos_matrix = "headline";
  bool list = false;
  std::string filter;
  std::string display_format = "console";
  std::string out_format = "json";
  bool has_out = false;
  std::string color = "auto";
  bool tabular = false;
  std::int64_t block_rounds = 0;
  std::optional<std::uint64_t> block_seed;
  std::string blocks_out;
};

bool is_benchmark_option(std::string_view arg) {
  std::string_view name = arg.substr(0, arg.find('='));
  return name.starts_with("--benchmark_") || name == "--v";
}

// A CLI11 check made from one of our parsers: what it throws is the message.
template <class Parse>
auto accepted_by(Parse parse) {
  return [parse](const std::string& text) -> std::string {
    try {
      parse(text);
      return {};
    } catch (const std::exception& e) {
      return e.what();
    }
  };
}

// CLI11 reads our options and checks the Google Benchmark values 1.7.1 would misread or answer
// with exit status 0; Google Benchmark still gets its options as written, in order.
arguments parse_arguments(int argc, char** argv) {
  arguments a;
  a.config.clients = client_range{61000, 61000, 16};
  CLI::App app{
      "Runs the cloaking matrix of docs/design.md §4 and its same-run baselines (cell names and\n"
      "result context: docs/results.md); `scripts/cloakbench run` is the usual way.",
      program};
  app.get_formatter()->label("Usage", "usage");
  // A repeated option: the last one counts, as in Google Benchmark (and this program before CLI11).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.allow_extras();  // Google Benchmark's other options; any other extra is refused below
  app.add_flag("--quick", a.quick,
               "only every cloaking x pattern on the kernel transport at place:same,\n"
               "64 bytes, 1 thread, and the baselines there (no kernel: the model cells)");
  app.add_option("--cpu-client", a.config.cpu_client, "CPU of the client thread(s) (default 0)")
      ->check(CLI::Range(0, 4095));
  app.add_option("--cpu-other", a.config.cpu_other, "CPU of the place:cross downstream (default 1)")
      ->check(CLI::Range(0, 4095));
  app.add_option_function<std::string>(
         "--clients", [&](const std::string& text) { a.config.clients = parse_client_range(text); },
         "fake clients FIRST:COUNT or UID:GID:COUNT, at least 8, owned by no\n"
         "real user (default 61000:16)")
      ->type_name("RANGE")
      ->check(accepted_by([](const std::string& text) {
        client_range r = parse_client_range(text);
        check_client_range(r);
        if (r.count < 2 * clients_per_thread) {
          throw std::invalid_argument(
              fmt::format("the matrix needs at least {} clients ({} per client thread)",
                          2 * clients_per_thread, clients_per_thread));
        }
      }));
  app.add_option("--fault", a.config.fault,
                 "once: kill or stall the downstream in the first kernel-transport cell,\n"
                 "SIGSTOP the KDC once the realm is up; across hosts: kill D1, D1 at an\n"
                 "address no host has, wrong realm, the middle's clock 3600 s ahead,\n"
                 "D1 with a wrong keytab")
      ->check(CLI::IsMember({"kill-downstream", "stall-downstream", "stop-kdc", "unreachable",
                             "wrong-realm", "clock-skew", "wrong-keytab"}));
  app.add_option("--matrix,--kerberos-matrix", a.kerberos_matrix,
                 "headline (default): each package's cells of the headline question;\n"
                 "full: every cell of every package (kerberos: prot x tickets x track x\n"
                 "pattern; ntlm and negotiate: integrity, privacy, every:8)")
      ->check(CLI::IsMember({"headline", "full"}));
  app.add_option("--rcache", a.config.rcache, "cloak-downstream's replay cache (default file2)")
      ->check(CLI::IsMember({"file2", "none"}));
  app.add_flag("--hosts", a.config.hosts,
               "also the cross-host cells and their baselines, in network namespaces\n"
               "this run makes (without CAP_NET_ADMIN: skipped, and why recorded)");
  auto* downstream = app.add_option("--downstream", a.config.downstream,
                                    "the hops:1 cells against a cloak-downstream on another\n"
                                    "machine (docs/remote.md)")
                         ->type_name("tcp:HOST:PORT")
                         ->check(accepted_by(os::parse_tcp_endpoint));
  auto* realm_dir = app.add_option("--realm-dir", a.config.realm_dir,
                                   "the realm that downstream uses (its realm.json)")
                        ->type_name("DIR");
  downstream->needs(realm_dir);
  realm_dir->needs(downstream);
  app.add_flag("--load", a.config.load,
               "also the load cells (docs/results.md \"Load cells\"); the run's fake clients\n"
               "are then --load-clients");
  client_range load_clients{100000, 100000, 10000};
  app.add_option_function<std::string>(
         "--load-clients",
         [&](const std::string& text) { load_clients = parse_client_range(text); },
         "with --load: the fake clients, at least as many as a load cell's\n"
         "clients:K (default 100000:10000; cloak::max_clients at most)")
      ->type_name("RANGE")
      ->check(accepted_by([](const std::string& text) {
        client_range r = parse_client_range(text);
        check_client_range(r);
        if (r.count < 2 * clients_per_thread)
          throw std::invalid_argument(fmt::format("at least {} clients", 2 * clients_per_thread));
      }));
  app.add_option("--load-seed", a.config.load_seed,
                 "with --load: the seed of every load cell's caller sequence (default 1,\n"
                 "recorded as cloak_load_seed)")
      ->type_name("N");
  app.add_option("--load-seconds", a.config.load_seconds,
                 "with --load: each threaded load cell's timed run in seconds (default 1,\n"
                 "0.25 for the quick cells; the warm calls and an open loop's grace scale with it)")
      ->type_name("S")
      ->check(CLI::Range(0.001, 60.0));
  app.add_option("--block-rounds", a.block_rounds,
                 "rounds of every paired block (default: each block's own, 300-1500)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{10000000}));
  app.add_option_function<std::uint64_t>(
         "--block-seed", [&](std::uint64_t seed) { a.block_seed = seed; },
         "seed of the blocks' random round orders (default: a random one, recorded)")
      ->type_name("N");
  app.add_option("--blocks-out", a.blocks_out,
                 "write every block's per-round times, histograms and counters, and\n"
                 "every matrix cell's latency histograms here (JSON, docs/results.md\n"
                 "\"Blocks and histograms\"); `cloakbench run` reads it")
      ->type_name("FILE");

  app.option_defaults()->group(
      "Google Benchmark 1.7.1 options, as --name=VALUE (every --benchmark_* one is passed on)");
  app.add_option("--benchmark_filter", a.filter,
                 "cells whose documented name matches (POSIX extended regex, searched;\n"
                 "a leading '-' selects the cells that do not match)")
      ->type_name("REGEX");
  app.add_flag("--benchmark_list_tests", a.list, "print the selected cell names and exit");
  app.add_option("--benchmark_min_time", "a plain number: 1.7.1 takes no unit suffix")
      ->type_name("SECONDS")
      ->check([](const std::string& text) -> std::string {
        double s = -1;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), s);
        if (ec == std::errc{} && end == text.data() + text.size() && s >= 0) return {};
        return "Google Benchmark 1.7.1 takes a plain number of seconds, e.g. 0.1";
      });
  app.add_option("--benchmark_repetitions",
                 "odd only: 1.7.1 gets the median of an even count wrong")
      ->type_name("N")
      ->check(CLI::Range(1, 1000000))
      ->check([](const std::string& n) -> std::string {
        return std::stoi(n) % 2 ? ""
                                : "use an odd count (1.7.1 gets the median of an even one wrong)";
      });
  app.add_option("--benchmark_format", a.display_format)
      ->check(CLI::IsMember({"console", "json"}));  // csv is deprecated in 1.7.1
  app.add_option("--benchmark_out", "also write the results to this file")->type_name("FILE");
  app.add_option("--benchmark_out_format", a.out_format)->check(CLI::IsMember({"console", "json"}));
  app.add_option("--benchmark_time_unit")->check(CLI::IsMember({"ns", "us", "ms", "s"}));
  app.add_option("--benchmark_color", a.color)
      ->check(CLI::IsMember({"auto", "true", "false", "yes", "no", "1", "0"}));
  app.add_flag("--benchmark_counters_tabular", a.tabular);
  app.footer(
      "Also notably: --benchmark_enable_random_interleaving=true, "
      "--benchmark_report_aggregates_only=false");
  usage = app.help();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    std::exit(app.exit(e));
  } catch (const CLI::ParseError& e) {
    usage_error(e.what());
  }

  std::vector<char*> gb_argv{argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i], name = arg.substr(0, arg.find('='));
    if (!is_benchmark_option(arg) || name == "--benchmark_filter" ||
        name == "--benchmark_list_tests")
      continue;  // the cells are ours: selected and listed by their documented names
    if (name == arg && i + 1 < argc && !std::string_view(argv[i + 1]).starts_with("--"))
      usage_error(fmt::format("write {}=VALUE (Google Benchmark reads no separate value)", name));
    gb_argv.push_back(argv[i]);
  }
  for (const auto& extra : app.remaining()) {
    if (!is_benchmark_option(extra)) usage_error(fmt::format("unknown option '{}'", extra));
  }
  a.has_out = app.count("--benchmark_out") > 0;
  if (a.config.load) {
    // One range serves every cell of a load launch: the realm holds its K principals (made in one
    // pass), the downstream a probe file each, on tmpfs where there is one.
    a.config.clients = load_clients;
    std::error_code ec;
    if (std::filesystem::is_directory("/dev/shm", ec)) a.config.run_root = "/dev/shm";
  } else if (app.count("--load-clients") || app.count("--load-seed") ||
             app.count("--load-seconds")) {
    usage_error("--load-clients, --load-seed and --load-seconds go with --load");
  }
  int gb_argc = static_cast<int>(gb_argv.size());
  gb_argv.push_back(nullptr);
  // Here, before any setup and before a listing: a flag Google Benchmark does not know is refused
  // at once. 1.7.1 leaves such a flag in argv without a word; it says it below, its message
  // starting as ours do (`cloakbench run` strips "cloak-matrix: error: ").
  benchmark::Initialize(&gb_argc, gb_argv.data());
  gb_argv[0] = const_cast<char*>(program);
  if (benchmark::ReportUnrecognizedArguments(gb_argc, gb_argv.data()))
    usage_error(
        fmt::format("Google Benchmark did not accept '{}' (its message is above)", gb_argv[1]));

  int cpus = os::online_cpus();
  if (a.config.cpu_client >= cpus || a.config.cpu_other >= cpus) {
    usage_error(fmt::format("--cpu-client={} / --cpu-other={}: this machine has CPUs 0..{}",
                            a.config.cpu_client, a.config.cpu_other, cpus - 1));
  }
  if (cpus > 1 && a.config.cpu_client == a.config.cpu_other) {
    usage_error(fmt::format("--cpu-client and --cpu-other are both {}: place:cross needs two CPUs",
                            a.config.cpu_client));
  }
  return a;
}

// Google Benchmark appends "/real_time" (UseRealTime) and "/threads:N" (Threads) to a name; our
// names already say how they are measured, so reporters print exactly the documented name.
template <class Base>
class documented_names final : public Base {
 public:
  using Base::Base;
  void ReportRuns(const std::vector<benchmark::BenchmarkReporter::Run>& runs) override {
    std::vector<benchmark::BenchmarkReporter::Run> renamed = runs;
    for (auto& run : renamed) {
      run.run_name.time_type.clear();
      run.run_name.threads.clear();
      run.run_name.iterations.clear();  // a block's fixed rounds
      run.run_name.repetitions.clear();
    }
    Base::ReportRuns(renamed);
  }
};

std::unique_ptr<benchmark::BenchmarkReporter> make_reporter(const std::string& format, bool color,
                                                            bool tabular) {
  if (format == "json") return std::make_unique<documented_names<benchmark::JSONReporter>>();
  int options = benchmark::ConsoleReporter::OO_None;
  if (color) options |= benchmark::ConsoleReporter::OO_Color;
  if (tabular) options |= benchmark::ConsoleReporter::OO_Tabular;
  return std::make_unique<documented_names<benchmark::ConsoleReporter>>(
      static_cast<benchmark::ConsoleReporter::OutputOptions>(options));
}

// The cells this launch runs. `hosts_skipped` says why the cross-host cells were left out, when
// they were asked for and this machine cannot make them (no CAP_NET_ADMIN).
std::vector<cell_entry> select_cells(const arguments& a, environment& env,
                                     std::vector<std::string>& warnings,
                                     std::optional<std::string>& hosts_skipped) {
  std::vector<cell_entry> all = baseline_entries();
  for (auto& e : matrix_entries()) all.push_back(std::move(e));
  for (auto& e : block_entries()) all.push_back(std::move(e));
  if (a.config.load) {
    for (auto& e : load_entries()) all.push_back(std::move(e));
  }
  // Across hosts: only when asked for; a remote downstream gives one hop and no raw peers; without
  // CAP_NET_ADMIN the cells are left out, and the file and stderr say why.
  bool remote = !a.config.downstream.empty();
  std::optional<std::string> no_hosts;
  if (a.config.hosts && !remote) no_hosts = topology::unavailable_reason();
  bool dropped_hosts = false;
  for (auto& e : hosts_entries()) {
    if (!a.config.hosts && !remote) continue;
    if (remote && e.topology_only) continue;
    if (no_hosts) {
      dropped_hosts = true;
      continue;
    }
    all.push_back(std::move(e));
  }
  if (dropped_hosts) {
    hosts_skipped = fmt::format("cross-host cells skipped: {}", *no_hosts);
    warnings.push_back(*hosts_skipped);
  }
  std::optional<std::regex> re;
  bool negate = false;
  std::string spec = a.filter;
  if (spec.starts_with("-")) {
    negate = true;
    spec = spec.substr(1);
  }
  if (!spec.empty() && spec != "all") {
    try {
      re.emplace(spec, std::regex::extended | std::regex::nosubs);
    } catch (const std::regex_error& e) {
      usage_error(fmt::format("--benchmark_filter={}: not a valid regular expression ({})",
                              a.filter, e.what()));
    }
  }
  bool one_cpu = os::online_cpus() < 2;
  bool dropped_kernel = false, dropped_cross = false;
  std::vector<cell_entry> chosen;
  for (auto& e : all) {
    if (a.quick && !e.quick && !(e.quick_without_kernel && !env.kernel())) continue;
    if (e.full_only && a.kerberos_matrix != "full") continue;
    if (re && std::regex_search(e.name, *re) == negate) continue;
    if (e.backend == "kernel" && !env.kernel()) {
      dropped_kernel = true;
      continue;
    }
    if (one_cpu && e.name.find("/place:cross") != std::string::npos) {
      dropped_cross = true;
      continue;
    }
    chosen.push_back(std::move(e));
  }
  if (!env.kernel()) {
    warnings.push_back(fmt::format(
        "the kernel backend is unavailable ({}): its cells{} are left out; only the "
        "model backend and the unprivileged baselines run",
        env.kernel_unavailable_reason(), dropped_kernel ? "" : " and the kernel baselines"));
  }
  if (dropped_cross)
    warnings.push_back("only one CPU is online: the place:cross cells were left out");
  return chosen;
}

std::string privilege_mode(const environment& env) {
  if (!const_cast<environment&>(env).kernel()) return "model-fallback";
  std::ifstream in("/proc/self/uid_map");
  std::string inside, outside, count;
  in >> inside >> outside >> count;
  return inside == "0" && outside == "0" && count == "4294967295" ? "root" : "userns";
}

std::vector<std::string> machine_warnings(const machine_fingerprint& m) {
  std::vector<std::string> w;
  std::string_view type = build_info::build_type;
  bool optimized = type == "Release" || type == "RelWithDebInfo" || type == "MinSizeRel";
#ifndef NDEBUG
  optimized = false;
#endif
  if (!optimized) {
    w.push_back(
        fmt::format("debug build (build type {}): times are not representative; measure with "
                    "cmake --preset release",
                    type));
  }
  if (m.governor == "unknown") {
    w.push_back(
        "cpufreq governor unknown (no cpufreq on this machine): the clock may change under the "
        "benchmark");
  } else if (m.governor != "performance") {
    w.push_back(fmt::format(
        "cpufreq governor is {}, not performance: the clock may change under the benchmark",
        m.governor));
  }
  if (m.virtualization != "none") {
    w.push_back(fmt::format(
        "virtualized ({}): timings include hypervisor scheduling; compare same-run ratios "
        "across machines, not absolute times",
        m.virtualization));
  }
  if (m.container != "none") w.push_back(fmt::format("running in a container ({})", m.container));
  return w;
}

// What CLOAK_INJECT_PATH slowed, for the warning a slowed run carries.
std::string_view slowed_on_path(inject_path p) noexcept {
  switch (p) {
    case inject_path::call:
      return "every proxy call";
    case inject_path::probe:
      return "every identity probe of a dynamic proxy";
    case inject_path::switch_:
      return "every token switch (the identity backend's impersonate)";
    case inject_path::establish:
      return "every new security context (the calling side, before its first leg)";
    case inject_path::accept:
      return "every security context the downstream accepted";
  }
  return "a path";
}

// cloak_hosts (docs/results.md): where the cross-host cells ran, what making it cost, the levels of
// each hop; or why they did not run. null when none was asked for.
json hosts_context(const arguments& a, environment& env, const std::vector<cell_entry>& cells) {
  if (!a.config.hosts && a.config.downstream.empty()) return nullptr;
  bool any = false;
  for (const auto& c : cells) any = any || c.hosts;
  if (!any) {
    // Left out for want of privileges (select_cells said so), or none selected in this launch.
    auto why = a.config.downstream.empty() ? topology::unavailable_reason() : std::nullopt;
    return why ? json{{"skipped", *why}} : json(nullptr);
  }
  hosts_setup* h = env.hosts().setup();
  if (!h) return json{{"unavailable", env.hosts().unavailable_reason()}};
  json out{{"levels", {{"middle", "delegate"}, {"down1", "impersonate"}}},
           {"realm",
            {{"name", h->realm.name},
             {"kdc", fmt::format("{}:{}", h->realm.kdc_host, h->realm.kdc_port)},
             {"kdc_netns", h->realm.netns},
             {"setup_seconds", h->realm.setup_seconds}}},
           {"down1", h->down1.to_string()},
           {"credentials_seconds", h->credentials_seconds},
           {"mechanism", "krb5 (GSSAPI), mutual; delegate level = GSS_C_DELEG_FLAG"}};
  if (h->world) {
    const topology& t = h->world->net();
    json hosts = json::array();
    for (const auto& host : t.hosts()) {
      hosts.push_back({{"name", host.name}, {"netns", host.netns}, {"address", host.address}});
    }
    out["mode"] = "namespaces";
    out["topology"] = {
        {"subnet", std::string(topology::subnet)},
        {"prefix", t.prefix()},
        {"setup_seconds", t.setup_seconds()},
        {"hosts", hosts},
        {"links", "one veth pair per host to a bridge in " + t.prefix() + "-switch"}};
    out["down2"] = h->world->down2_address().to_string();
    out["world_setup_seconds"] = h->world->setup_seconds();
  } else {
    out["mode"] = "remote";
  }
  return out;
}

void add_context(const arguments& a, environment& env, const std::vector<cell_entry>& cells,
                 std::vector<std::string> warnings) {
  machine_fingerprint m = read_machine_fingerprint();
  for (auto& w : machine_warnings(m)) warnings.push_back(std::move(w));
  std::string hash = machine_hash(m);
  bool kernel = false, model = false;
  for (const auto& c : cells) {
    kernel = kernel || c.backend == "kernel";
    model = model || c.backend == "model";
  }
  std::string backend = kernel && model ? "kernel+model"
                        : kernel        ? "kernel"
                        : model         ? "model"
                                        : "none";
  const auto& cfg = a.config;
  benchmark::AddCustomContext("cloak_schema_version", "1");
  benchmark::AddCustomContext("cloak_suite_version", build_info::suite_version);
  benchmark::AddCustomContext("cloak_backend", backend);
  benchmark::AddCustomContext("cloak_privilege_mode", privilege_mode(env));
  benchmark::AddCustomContext(
      "cloak_placement",
      fmt::format(
          "client thread(s) pinned to cpu {0}; downstream and echo peer on cpu {0} (place:same) or "
          "cpu {1} (place:cross); place:unpinned pins nothing; with 2 client threads both share "
          "cpu {0}",
          cfg.cpu_client, cfg.cpu_other));
  benchmark::AddCustomContext("cloak_cpus", json{{"client", cfg.cpu_client},
                                                 {"downstream_same", cfg.cpu_client},
                                                 {"downstream_other", cfg.cpu_other}}
                                                .dump());
  benchmark::AddCustomContext("cloak_compiler", build_info::compiler);
  benchmark::AddCustomContext("cloak_cxx_flags", build_info::cxx_flags);
  benchmark::AddCustomContext("cloak_build_type", build_info::build_type);
  benchmark::AddCustomContext("cloak_unity_build", build_info::unity_build);
  benchmark::AddCustomContext("cloak_benchmark_version", build_info::benchmark_version);
  benchmark::AddCustomContext("cloak_machine", to_json(m));
  benchmark::AddCustomContext("cloak_machine_hash", hash);
  benchmark::AddCustomContext("cloak_machine_id", machine_id(host_name(), hash));
  auto uses = [&](package_id p) {
    return std::any_of(cells.begin(), cells.end(),
                       [p](const cell_entry& c) { return c.package == p; });
  };
  json kerberos = nullptr;
  if (uses(package_id::kerberos)) {
    kerberos_world& k = env.kerberos();
    if (const realm_info* r = k.credentials() ? k.info() : nullptr) {
      kerberos = json{{"realm", r->name},
                      {"kdc", fmt::format("{}:{}", r->kdc_host, r->kdc_port)},
                      {"kdc_cpu", cfg.cpu_client},
                      {"setup_seconds", k.realm_seconds()},
                      {"credentials_seconds", k.credentials_seconds()},
                      {"mechanism", "krb5 (GSSAPI, not SPNEGO)"},
                      {"mutual", true},
                      {"rcache", cfg.rcache},
                      {"matrix", a.kerberos_matrix}};
    } else {
      kerberos = json{{"unavailable", k.unavailable_reason()}};
      warnings.push_back(fmt::format("the auth:kerberos cells fail: {}", k.unavailable_reason()));
    }
  }
  json ntlm = nullptr;
  if (uses(package_id::ntlm)) {
    ntlm_world& n = env.ntlm();
    if (const ntlm_info* i = n.credentials() ? n.info() : nullptr) {
      ntlm = json{{"domain", i->domain},
                  {"service", i->service},
                  {"mechanism",
                   fmt::format("NTLMSSP 1.3.6.1.4.1.311.2.2.10 (gss-ntlmssp: {})", i->mechanism)},
                  {"setup_seconds", n.setup_seconds()}};
    } else {
      ntlm = json{{"unavailable", n.unavailable_reason()}};
      warnings.push_back(fmt::format("the auth:ntlm cells fail: {}", n.unavailable_reason()));
    }
  }
  json negotiate = nullptr;
  if (uses(package_id::negotiate)) {
    negotiate_world& w = env.negotiate();
    json mechs = json::object();
    for (negotiate_mech m : {negotiate_mech::krb5, negotiate_mech::ntlm}) {
      std::string why = w.unavailable_reason(m);
      mechs[std::string(to_string(m))] = why.empty() ? json("offered") : json{{"unavailable", why}};
      if (!why.empty())
        warnings.push_back(
            fmt::format("the auth:negotiate/mech:{} cells fail: {}", to_string(m), why));
    }
    negotiate = json{{"mechanism", "SPNEGO 1.3.6.1.5.5.2 (MIT krb5)"},
                     {"mechs", std::move(mechs)},
                     {"setup_seconds", w.setup_seconds()}};
  }
  benchmark::AddCustomContext("cloak_ntlm", ntlm.dump());
  benchmark::AddCustomContext("cloak_negotiate", negotiate.dump());
  benchmark::AddCustomContext("cloak_kerberos", kerberos.dump());
  benchmark::AddCustomContext("cloak_hosts", hosts_context(a, env, cells).dump());
  if (cfg.load) {
    // The load cells' callers replay from this seed (population_sampler).
    benchmark::AddCustomContext("cloak_load_seed", std::to_string(cfg.load_seed));
    benchmark::AddCustomContext(
        "cloak_load", json{{"seed", cfg.load_seed},
                           {"clients", fmt::format("{}:{}:{}", cfg.clients.first_uid,
                                                   cfg.clients.first_gid, cfg.clients.count)},
                           {"downstream_run_root", cfg.run_root.empty() ? "private" : cfg.run_root},
                           {"warm", "one pass of K draws before the timed calls"},
                           // The threaded cells (shape:, loop:): what serves them, and where.
                           {"downstream_threading",
                            "cloak-downstream: one thread per connection, each acting as its "
                            "callers with per-thread kernel credentials"},
                           {"thread_placement",
                            "place:unpinned: the middle's workers and the downstream's threads "
                            "free on every CPU"},
                           {"cpus", static_cast<std::int64_t>(std::thread::hardware_concurrency())},
                           {"thread_seconds", cfg.load_seconds},
                           {"arrivals",
                            "Poisson at a rate given as a percentage of the same "
                            "cell's closed-loop throughput, seeded with arrival_seed(seed) "
                            "(splitmix64 of seed ^ 0x6f70656e6c6f6f70)"},
                           {"worker_seeds", "worker w draws its callers from seed + w"}}
                          .dump());
  }
  const injected_delay& delay = injected_delay::instance();
  benchmark::AddCustomContext("cloak_injected_ns", std::to_string(delay.ns()));
  benchmark::AddCustomContext("cloak_injected_path", std::string(to_string(delay.path())));
  if (delay.ns() > 0) {
    warnings.push_back(fmt::format(
        "{}={} {}={}: {} was slowed by a {} ns busy spin on purpose (a gate calibration); these "
        "times do not measure the code",
        injected_delay::variable, delay.ns(), injection::path_variable, to_string(delay.path()),
        slowed_on_path(delay.path()), delay.ns()));
  }
  benchmark::AddCustomContext("cloak_warnings", json(warnings).dump());
  for (const auto& w : warnings) std::fprintf(stderr, "%s: warning: %s\n", program, w.c_str());
}

environment* interrupted_env = nullptr;

extern "C" void on_signal(int signal) {
  if (interrupted_env) interrupted_env->interrupt(signal);
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;  // a second signal ends the process at once
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  arguments args = parse_arguments(argc, argv);
  try {
    injection::from_environment();  // a bad CLOAK_INJECT_NS/CLOAK_INJECT_PATH before anything runs
  } catch (const std::invalid_argument& e) {
    usage_error(e.what());
  }
  set_block_options(args.block_rounds, args.block_seed);
  environment& env = environment::instance();
  try {
    env.configure(args.config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    return 1;
  }
  std::vector<std::string> warnings;
  std::optional<std::string> hosts_skipped;
  std::vector<cell_entry> cells = select_cells(args, env, warnings, hosts_skipped);
  // Cross-host cells left out for want of CAP_NET_ADMIN are said even when listing, and a run that
  // asked for nothing else has nothing to do: that is a skip, not a bad command line.
  if (hosts_skipped && (args.list || cells.empty()))
    std::fprintf(stderr, "%s: %s\n", program, hosts_skipped->c_str());
  if (args.list) {
    for (const auto& c : cells) std::printf("%s\n", c.name.c_str());
    return 0;
  }
  if (cells.empty() && hosts_skipped) return 0;
  if (cells.empty()) usage_error(fmt::format("no cell matches --benchmark_filter={}", args.filter));
  try {
    injected_delay::instance();  // calibrates and arms the injected spin now, before any cell
                                 // is timed
  } catch (const std::invalid_argument& e) {
    usage_error(e.what());
  }
  // The realm and every credential are set up before any cell runs and while this process has one
  // thread (it sets KRB5_CONFIG); what that cost is recorded, not hidden in the first cell.
  for (const auto& c : cells) {
    if (c.package == package_id::kerberos) {
      env.start_kerberos();
      if (args.config.fault == "stop-kdc" && env.kerberos().credentials()) {
        std::fprintf(stderr, "%s: fault injection: SIGSTOP to the KDC\n", program);
        env.kerberos().stop_kdc_for_fault();
      }
      break;
    }
  }
  // The NTLM domain likewise (it sets GSS_MECH_CONFIG, which the downstreams inherit), and the
  // negotiate credentials over both (starting whichever of the two is not yet).
  for (const auto& c : cells) {
    if (c.package == package_id::ntlm) {
      env.start_ntlm();
      break;
    }
  }
  for (const auto& c : cells) {
    if (c.package == package_id::negotiate) {
      env.start_negotiate();
      break;
    }
  }
  // The same for the cross-host world (after the loopback realm: its krb5.conf joins KRB5_CONFIG).
  for (const auto& c : cells) {
    if (c.hosts) {
      env.start_hosts();
      if (!env.hosts().setup())
        std::fprintf(stderr, "%s: %s\n", program, env.hosts().unavailable_reason().c_str());
      break;
    }
  }

  for (const auto& c : cells) {
    auto* b = benchmark::RegisterBenchmark(
        c.name.c_str(),
        [name = c.name, run = c.run](benchmark::State& state) { run_cell(state, name, run); });
    b->UseRealTime();
    if (c.threads > 1) b->Threads(c.threads);
    if (c.iterations > 0) b->Iterations(c.iterations);
    if (c.repetitions > 0) b->Repetitions(c.repetitions);
  }
  add_context(args, env, cells, warnings);

  bool color = args.color == "auto"
                   ? ::isatty(STDOUT_FILENO) != 0
                   : (args.color == "true" || args.color == "yes" || args.color == "1");
  auto display = make_reporter(args.display_format, color, args.tabular);
  std::unique_ptr<benchmark::BenchmarkReporter> file;
  if (args.has_out) file = make_reporter(args.out_format, false, args.tabular);

  interrupted_env = &env;
  install_signal_handlers();
  benchmark::RunSpecifiedBenchmarks(display.get(), file.get());
  benchmark::Shutdown();
  env.shutdown();
  if (!args.blocks_out.empty()) {
    try {
      write_block_records(args.blocks_out);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: error: %s\n", program, e.what());
      return 1;
    }
  }
  if (int signal = env.interrupted()) {
    std::fprintf(stderr,
                 "%s: interrupted by signal %d; the cells that finished are in the output\n",
                 program, signal);
    return 128 + signal;
  }
  return 0;
}
