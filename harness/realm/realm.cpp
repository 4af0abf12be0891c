// Starting, watching and stopping a cloak-realm supervisor: inherited-pipe readiness, bounded
// waits, cleanup.
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

extern char** environ;

namespace cloak {

namespace {

// Waits for the child to exit for at most `timeout`; true if it was reaped.
bool reap_within(pid_t pid, std::chrono::milliseconds timeout) noexcept {
  os::unique_fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (pidfd) {
    pollfd p{pidfd.get(), POLLIN, 0};
    os::retry_eintr([&] { return ::poll(&p, 1, static_cast<int>(timeout.count())); });
  }
  int status = 0;
  return os::retry_eintr([&] { return ::waitpid(pid, &status, WNOHANG); }) == pid;
}

std::optional<std::string> get_env(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return std::nullopt;
  return std::string(v);
}

void put_env(const char* name, const std::optional<std::string>& value) noexcept {
  if (value) {
    ::setenv(name, value->c_str(), 1);
  } else {
    ::unsetenv(name);
  }
}

std::string format_identity_arg(const identity& who) {
  std::string s = fmt::format("{}:{}", who.uid, who.gid);
  for (std::uint32_t i = 0; i < who.group_count; ++i)
    s += fmt::format("{}{}", i ? "," : ":", who.groups[i]);
  return s;
}

// Reads lines from the supervisor's readiness pipe until "ready", an "error ..." line or EOF, each
// wait bounded by the deadline. "dir PATH" comes first so a failure after mkdtemp can still clean
// up.
struct ready_result {
  bool ready = false;
  bool eof = false;
  std::string dir;
  std::string error;
};

ready_result read_readiness(int fd, std::chrono::steady_clock::time_point deadline) {
  ready_result out;
  std::string buffer;
  for (;;) {
    for (auto nl = buffer.find('\n'); nl != std::string::npos; nl = buffer.find('\n')) {
      std::string line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      if (line.rfind("dir ", 0) == 0)
        out.dir = line.substr(4);
      else if (line.rfind("error ", 0) == 0)
        out.error = line.substr(6);
      else if (line == "ready")
        out.ready = true;
      if (out.ready || !out.error.empty()) return out;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return out;
    pollfd p{fd, POLLIN, 0};
    if (os::retry_eintr([&] { return ::poll(&p, 1, static_cast<int>(left.count())); }) <= 0)
      continue;
    char buf[512];
    ssize_t r = os::retry_eintr([&] { return ::read(fd, buf, sizeof buf); });
    if (r <= 0) {  // the supervisor exited
      out.eof = true;
      return out;
    }
    buffer.append(buf, static_cast<std::size_t>(r));
  }
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
  // The supervisor inherits the calling thread's credentials; started from an impersonating thread
  // it would run as the client and could not write a root-owned keytab.
  std::uint32_t ruid = 0, euid = 0, suid = 0;
  if (::syscall(SYS_getresuid, &ruid, &euid, &suid) == 0 && (ruid != suid || euid != suid)) {
    throw std::logic_error(
        fmt::format("cannot start {} from a thread that impersonates uid {}: revert first",
                    config_.program, euid));
  }
  int pipe_fds[2];
  os::check([&] { return ::pipe2(pipe_fds, O_CLOEXEC); }, "cannot create the readiness pipe");
  os::unique_fd ready_read(pipe_fds[0]), ready_write(pipe_fds[1]);

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
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, ready_write.get(), 3);  // dup2 clears close-on-exec
  pid_t pid = -1;
  int rc = posix_spawn(&pid, config_.program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0)
    os::throw_errno(rc, fmt::format("cannot start the realm supervisor {}", config_.program));
  pid_ = pid;
  ready_write.reset();

  ready_result r =
      read_readiness(ready_read.get(), std::chrono::steady_clock::now() + config_.ready_timeout);
  info_.dir = r.dir;
  std::string failure;
  if (!r.ready) {
    if (!r.error.empty()) {
      failure = fmt::format("{} could not start the realm: {}", config_.program, r.error);
    } else if (r.eof) {
      failure = fmt::format("{} exited before the realm was ready (its own message is above)",
                            config_.program);
    } else {
      failure = fmt::format("{} did not report the realm ready within {} ms", config_.program,
                            config_.ready_timeout.count());
    }
  } else {
    try {
      info_ = realm_info::load(r.dir);
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
  restore_environment();
}

void realm::stop() noexcept {
  if (pid_ > 0) {
    // The supervisor stops and reaps krb5kdc and removes the directory before it exits.
    ::kill(pid_, SIGTERM);
    if (!reap_within(pid_, config_.stop_timeout)) {
      ::kill(pid_, SIGKILL);  // krb5kdc dies with it (PR_SET_PDEATHSIG)
      if (!reap_within(pid_, config_.stop_timeout)) {
        std::fprintf(stderr, "cloakbench: realm supervisor %d did not exit after SIGKILL\n",
                     static_cast<int>(pid_));
      }
    }
    pid_ = -1;
  }
  if (kdc_pid_ > 0) {
    // Normally gone with the supervisor; a supervisor that was SIGKILLed leaves it to PDEATHSIG.
    if (::kill(kdc_pid_, 0) == 0) {
      std::fprintf(stderr, "cloakbench: krb5kdc %d outlived its supervisor; killing it\n",
                   static_cast<int>(kdc_pid_));
      ::kill(kdc_pid_, SIGKILL);
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
  if (::kill(kdc_pid_, signal) != 0) {
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
  std::optional<std::string> others = get_env("KRB5_CONFIG");
  if (!exported_) {
    previous_krb5_config_ = get_env("KRB5_CONFIG");
    previous_krb5ccname_ = get_env("KRB5CCNAME");
    previous_client_ktname_ = get_env("KRB5_CLIENT_KTNAME");
    previous_ktname_ = get_env("KRB5_KTNAME");
    exported_ = true;
  }
  std::string value = info_.krb5_conf;
  if (alongside && others && !others->empty() && *others != info_.krb5_conf)
    value = *others + ":" + value;
  ::setenv("KRB5_CONFIG", value.c_str(), 1);
  // Every credential the packages use comes from an explicit cred store; defaults from the
  // environment would only hide a missing one.
  ::unsetenv("KRB5CCNAME");
  ::unsetenv("KRB5_CLIENT_KTNAME");
  ::unsetenv("KRB5_KTNAME");
}

void realm::restore_environment() noexcept {
  if (!exported_) return;
  put_env("KRB5_CONFIG", previous_krb5_config_);
  put_env("KRB5CCNAME", previous_krb5ccname_);
  put_env("KRB5_CLIENT_KTNAME", previous_client_ktname_);
  put_env("KRB5_KTNAME", previous_ktname_);
  exported_ = false;
}

}  // namespace cloak
