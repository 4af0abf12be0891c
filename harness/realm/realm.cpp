// Starting, watching and stopping a cloak-realm supervisor: inherited-pipe readiness, bounded
// waits, cleanup.
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <cloak/os.hpp>
#include <cloak/realm.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <vector>

namespace cloak {

namespace {

std::string format_identity_arg(const identity& who) {
  std::string s = fmt::format("{}:{}", who.uid, who.gid);
  for (std::uint32_t i = 0; i < who.group_count; ++i)
    s += fmt::format("{}{}", i ? "," : ":", who.groups[i]);
  return s;
}

}  // namespace

realm_info realm_info::load(const std::string& dir) {
  std::string path = dir + "/realm.json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error(fmt::format("cannot read {}: the realm is not running", path));
  try {
    nlohmann::json j = nlohmann::json::parse(in);
    realm_info r;
    r.dir = j.at("dir").get<std::string>();
    r.name = j.at("name").get<std::string>();
    r.kdc_host = j.at("kdc_host").get<std::string>();
    r.kdc_port = j.at("kdc_port").get<std::uint16_t>();
    r.krb5_conf = j.at("krb5_conf").get<std::string>();
    r.kdc_conf = j.at("kdc_conf").get<std::string>();
    r.client_keytab = j.at("client_keytab").get<std::string>();
    r.service_keytab = j.at("service_keytab").get<std::string>();
    r.idmap = j.at("idmap").get<std::string>();
    r.service = j.at("service").get<std::string>();
    r.kdc_log = j.at("kdc_log").get<std::string>();
    r.control_socket = j.at("control_socket").get<std::string>();
    r.kdc_pid = j.at("kdc_pid").get<long>();
    r.supervisor_pid = j.at("supervisor_pid").get<long>();
    r.setup_seconds = j.at("setup_seconds").get<double>();
    r.netns = j.value("netns", std::string());
    auto read_identity = [](const nlohmann::json& w) {
      return identity::of(w.at("uid").get<std::uint32_t>(), w.at("gid").get<std::uint32_t>());
    };
    if (j.contains("hosts")) {
      for (const auto& h : j.at("hosts")) {
        r.hosts.push_back(realm_host{h.at("name").get<std::string>(),
                                     h.at("principal").get<std::string>(),
                                     h.at("keytab").get<std::string>(), read_identity(h)});
      }
    }
    if (j.contains("middle")) r.middle = read_identity(j.at("middle"));
    // A copy of the directory on another machine (docs/remote.md) is read where it is: the paths
    // inside the realm's directory are taken relative to the copy.
    std::string loaded = std::filesystem::absolute(dir).lexically_normal().string();
    while (loaded.size() > 1 && loaded.back() == '/') loaded.pop_back();
    if (loaded != r.dir) {
      auto rebase = [&](std::string& path) {
        if (path.rfind(r.dir + "/", 0) == 0) path = loaded + path.substr(r.dir.size());
      };
      for (std::string* path : {&r.krb5_conf, &r.kdc_conf, &r.client_keytab, &r.service_keytab,
                                &r.idmap, &r.kdc_log, &r.control_socket}) {
        rebase(*path);
      }
      for (auto& h : r.hosts) rebase(h.keytab);
      r.dir = loaded;
    }
    return r;
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(fmt::format("{} is not a realm description: {}", path, e.what()));
  }
}

const realm_host& realm_info::host(const std::string& host_name) const {
  std::string known;
  for (const auto& h : hosts) {
    if (h.name == host_name) return h;
    known += (known.empty() ? "" : ", ") + h.name;
  }
  throw std::invalid_argument(fmt::format("the realm {} has no host {} (it has: {})", name,
                                          host_name,
                                          known.empty() ? "none; start it with hosts" : known));
}

std::string principal_for(std::uint32_t uid, const identity& process, const std::string& realm) {
  if (uid == process.uid) return fmt::format("cloak-middle@{}", realm);
  return fmt::format("client-{}@{}", uid, realm);
}

std::string realm::default_program() {
  if (const char* env = std::getenv("CLOAK_REALM"); env && *env) return env;
#ifdef CLOAK_REALM_PATH
  return CLOAK_REALM_PATH;
#else
  return "cloak-realm";
#endif
}

realm::realm(realm_config config) : config_(std::move(config)) {
  if (config_.program.empty()) config_.program = default_program();
  // Started from an impersonating thread the supervisor would run as the client and could not
  // write a root-owned keytab.
  os::require_process_identity(config_.program);
  const client_range& c = config_.clients;
  std::vector<std::string> args{config_.program,
                                "--ready-fd",
                                "3",
                                "--parent-pid",
                                std::to_string(::getpid()),
                                "--name",
                                config_.name,
                                "--clients",
                                fmt::format("{}:{}:{}", c.first_uid, c.first_gid, c.count),
                                "--process",
                                format_identity_arg(config_.process),
                                "--clockskew",
                                std::to_string(config_.clockskew_seconds),
                                "--ready-timeout-ms",
                                std::to_string(config_.ready_timeout.count()),
                                "--listen",
                                config_.listen_address};
  if (!config_.netns.empty()) args.insert(args.end(), {"--netns", config_.netns});
  if (!config_.hosts.empty()) {
    std::string list;
    for (const auto& h : config_.hosts) list += (list.empty() ? "" : ",") + h;
    args.insert(args.end(), {"--hosts", list});
  }
  os::spawn_options spawn;
  spawn.argv = std::move(args);
  spawn.readiness = true;
  spawn.stop_timeout = config_.stop_timeout;
  supervisor_ = os::child_process(spawn);

  // "dir PATH" comes first, so a failure after mkdtemp can still clean up; then "ready" or "error
  // MESSAGE".
  os::readiness r = supervisor_.await_ready(
      os::deadline(config_.ready_timeout),
      [](std::string_view line) { return line == "ready" || line.starts_with("error "); });
  bool ready = r.how == os::readiness::end::last_line && r.after("error ").empty();
  std::string error = r.after("error ");
  info_.dir = r.after("dir ");
  std::string failure;
  if (!ready) {
    if (!error.empty()) {
      failure = fmt::format("{} could not start the realm: {}", config_.program, error);
    } else if (r.how == os::readiness::end::closed) {
      failure = fmt::format("{} exited before the realm was ready (its own message is above)",
                            config_.program);
    } else {
      failure = fmt::format("{} did not report the realm ready within {} ms", config_.program,
                            config_.ready_timeout.count());
    }
  } else {
    try {
      info_ = realm_info::load(info_.dir);
      kdc_pid_ = static_cast<pid_t>(info_.kdc_pid);
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  if (!failure.empty()) {
    stop();
    throw std::runtime_error(failure);
  }
}

realm::~realm() {
  stop();
  environment_.restore();
}

void realm::stop() noexcept {
  // The supervisor stops and reaps krb5kdc and removes the directory before it exits; SIGKILLed,
  // it leaves krb5kdc to PR_SET_PDEATHSIG.
  if (supervisor_.pid() > 0 && !supervisor_.stop(config_.stop_timeout)) {
    std::fprintf(stderr, "cloakbench: realm supervisor %d did not exit after SIGKILL\n",
                 static_cast<int>(supervisor_.pid()));
  }
  if (kdc_pid_ > 0) {
    // Normally gone with the supervisor; a supervisor that was SIGKILLed leaves it to PDEATHSIG.
    if (os::signal_process(kdc_pid_, 0)) {
      std::fprintf(stderr, "cloakbench: krb5kdc %d outlived its supervisor; killing it\n",
                   static_cast<int>(kdc_pid_));
      os::signal_process(kdc_pid_, SIGKILL);
    }
    kdc_pid_ = -1;
  }
  if (!info_.dir.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(info_.dir, ignored);
  }
}

bool realm::kill_kdc(int signal) noexcept {
  if (kdc_pid_ <= 0) return false;
  if (!os::signal_process(kdc_pid_, signal)) {
    std::fprintf(stderr, "cloakbench: cannot signal krb5kdc %d: %s\n", static_cast<int>(kdc_pid_),
                 std::strerror(errno));
    return false;
  }
  if (signal != SIGKILL) return true;
  // Ask the supervisor for a new KDC on the same port; it reaps the old one first.
  os::unique_fd conn = os::connect_unix(info_.control_socket, config_.ready_timeout);
  static const char request[] = "restart\n";
  std::string reply;
  if (conn && os::send_all(conn.get(), request, sizeof request - 1)) {
    char c = 0;
    while (reply.size() < 4096 && os::recv_all(conn.get(), &c, 1) && c != '\n') reply.push_back(c);
  }
  if (reply.rfind("kdc ", 0) != 0) {
    std::fprintf(stderr, "cloakbench: cloak-realm could not restart krb5kdc: %s\n",
                 reply.empty() ? std::strerror(errno) : reply.c_str());
    kdc_pid_ = -1;
    return false;
  }
  kdc_pid_ = static_cast<pid_t>(std::atol(reply.c_str() + 4));
  return true;
}

void realm::export_environment(bool alongside) {
  std::optional<std::string> others = os::get_env("KRB5_CONFIG");
  std::string value = info_.krb5_conf;
  if (alongside && others && !others->empty() && *others != info_.krb5_conf)
    value = *others + ":" + value;
  environment_.set("KRB5_CONFIG", value);
  // Every credential the packages use comes from an explicit cred store; defaults from the
  // environment would only hide a missing one.
  environment_.unset("KRB5CCNAME");
  environment_.unset("KRB5_CLIENT_KTNAME");
  environment_.unset("KRB5_KTNAME");
}

}  // namespace cloak
