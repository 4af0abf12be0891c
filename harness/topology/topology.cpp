// Starting, watching and stopping a cloak-topology supervisor: inherited-pipe readiness, bounded
// waits, and a last removal by name when the supervisor itself could not.
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cloak/os.hpp>
#include <cloak/topology.hpp>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

#include "namespaces.hpp"

extern char** environ;

namespace cloak {

namespace {

bool reap_within(pid_t pid, std::chrono::milliseconds timeout) noexcept {
  os::unique_fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (pidfd) {
    pollfd p{pidfd.get(), POLLIN, 0};
    os::retry_eintr([&] { return ::poll(&p, 1, static_cast<int>(timeout.count())); });
  }
  int status = 0;
  return os::retry_eintr([&] { return ::waitpid(pid, &status, WNOHANG); }) == pid;
}

// Whether the effective capability set holds capability number `cap` (/proc/self/status CapEff).
bool has_capability(int cap) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("CapEff:", 0) == 0) {
      unsigned long long bits = std::strtoull(line.c_str() + 7, nullptr, 16);
      return (bits >> cap) & 1u;
    }
  }
  return false;
}

}  // namespace

const std::vector<std::string>& topology::host_names() {
  static const std::vector<std::string> names{"middle", "down1", "down2", "kdc"};
  return names;
}

std::optional<std::string> topology::unavailable_reason() {
  constexpr int cap_net_admin = 12, cap_sys_admin = 21;
  if (!has_capability(cap_net_admin)) {
    return std::string(
        "no CAP_NET_ADMIN: cannot create the network namespaces of the cross-host cells (run as "
        "root)");
  }
  if (!has_capability(cap_sys_admin)) {
    return std::string(
        "no CAP_SYS_ADMIN: cannot enter the network namespaces of the cross-host cells (run as "
        "root)");
  }
  // Capabilities inside a user namespace are not enough: `ip netns` bind-mounts /run/netns in a
  // mount namespace such a process does not own (EPERM). Only the initial user namespace maps all
  // ids onto themselves.
  std::ifstream map("/proc/self/uid_map");
  std::string inside, outside, count;
  if (map >> inside >> outside >> count &&
      !(inside == "0" && outside == "0" && count == "4294967295")) {
    return fmt::format(
        "in a user namespace (uid map {} {} {}): ip netns cannot mount /run/netns here, so the "
        "cross-host cells need real root",
        inside, outside, count);
  }
  try {
    detail::ip_program();
  } catch (const std::exception& e) {
    return std::string(e.what());
  }
  return std::nullopt;
}

std::string topology::default_program() {
  if (const char* env = std::getenv("CLOAK_TOPOLOGY"); env && *env) return env;
#ifdef CLOAK_TOPOLOGY_PATH
  return CLOAK_TOPOLOGY_PATH;
#else
  return "cloak-topology";
#endif
}

topology::topology(topology_config config) : config_(std::move(config)) {
  if (config_.program.empty()) config_.program = default_program();
  if (auto why = unavailable_reason()) throw std::runtime_error(*why);
  int fds[2];
  os::check([&] { return ::pipe2(fds, O_CLOEXEC); }, "cannot create the readiness pipe");
  os::unique_fd ready_read(fds[0]), ready_write(fds[1]);
  std::vector<std::string> args{config_.program,
                                "--ready-fd",
                                "3",
                                "--parent-pid",
                                std::to_string(::getpid()),
                                "--stop-timeout-ms",
                                std::to_string(config_.stop_timeout.count() * 3 / 4)};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, ready_write.get(), 3);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, config_.program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) os::throw_errno(rc, fmt::format("cannot start {}", config_.program));
  pid_ = pid;
  ready_write.reset();

  std::string buffer, failure;
  bool ready = false;
  auto deadline = std::chrono::steady_clock::now() + config_.ready_timeout;
  while (!ready && failure.empty()) {
    for (auto nl = buffer.find('\n'); nl != std::string::npos && !ready && failure.empty();
         nl = buffer.find('\n')) {
      std::string line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      if (line.rfind("prefix ", 0) == 0) {
        prefix_ = line.substr(7);
      } else if (line.rfind("ready ", 0) == 0) {
        setup_seconds_ = std::atof(line.c_str() + 6);
        ready = true;
      } else if (line.rfind("error ", 0) == 0) {
        failure =
            fmt::format("{} could not make the topology: {}", config_.program, line.substr(6));
      }
    }
    if (ready || !failure.empty()) break;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      failure = fmt::format("{} did not report the topology ready within {} ms", config_.program,
                            config_.ready_timeout.count());
      break;
    }
    pollfd p{ready_read.get(), POLLIN, 0};
    if (os::retry_eintr([&] { return ::poll(&p, 1, static_cast<int>(left.count())); }) <= 0)
      continue;
    char buf[512];
    ssize_t n = os::retry_eintr([&] { return ::read(ready_read.get(), buf, sizeof buf); });
    if (n <= 0) {
      failure = fmt::format("{} exited before the topology was ready (its own message is above)",
                            config_.program);
      break;
    }
    buffer.append(buf, static_cast<std::size_t>(n));
  }
  if (!failure.empty()) {
    stop();
    throw std::runtime_error(failure);
  }
  const auto& names = host_names();
  for (std::size_t i = 0; i < names.size(); ++i) {
    hosts_.push_back(
        topology_host{names[i], prefix_ + "-" + names[i], fmt::format("198.18.0.{}", i + 1)});
  }
}

topology::~topology() { stop(); }

const topology_host& topology::host(std::string_view name) const {
  for (const auto& h : hosts_) {
    if (h.name == name) return h;
  }
  throw std::invalid_argument(
      fmt::format("the topology has no host {} (middle, down1, down2, kdc)", name));
}

void topology::stop() noexcept {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    if (!reap_within(pid_, config_.stop_timeout)) {
      ::kill(pid_, SIGKILL);
      reap_within(pid_, std::chrono::milliseconds(1000));
    }
    pid_ = -1;
  }
  if (!prefix_.empty()) {
    // Normally nothing is left; a supervisor that was killed leaves it to us.
    std::string left = detail::remove_topology(prefix_, ::getpid(), config_.stop_timeout);
    if (!left.empty())
      std::fprintf(stderr, "cloakbench: topology %s: %s\n", prefix_.c_str(), left.c_str());
    prefix_.clear();
  }
  hosts_.clear();
}

}  // namespace cloak
