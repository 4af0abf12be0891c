// Starting, watching and stopping a cloak-topology supervisor: inherited-pipe readiness, bounded
// waits, and a last removal by name when the supervisor itself could not.
#include <fmt/format.h>
#include <unistd.h>

#include <cloak/os.hpp>
#include <cloak/topology.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

#include "namespaces.hpp"

namespace cloak {

namespace {

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
  os::spawn_options spawn;
  spawn.argv = {config_.program,
                "--ready-fd",
                "3",
                "--parent-pid",
                std::to_string(::getpid()),
                "--stop-timeout-ms",
                std::to_string(config_.stop_timeout.count() * 3 / 4)};
  spawn.readiness = true;
  spawn.stop_timeout = config_.stop_timeout;
  supervisor_ = os::child_process(spawn);

  // "prefix NAME" first, then "ready SECONDS" or "error MESSAGE".
  os::readiness r =
      supervisor_.await_ready(os::deadline(config_.ready_timeout), [](std::string_view line) {
        return line.starts_with("ready ") || line.starts_with("error ");
      });
  prefix_ = r.after("prefix ");
  std::string failure;
  if (std::string error = r.after("error "); !error.empty()) {
    failure = fmt::format("{} could not make the topology: {}", config_.program, error);
  } else if (r.how == os::readiness::end::closed) {
    failure = fmt::format("{} exited before the topology was ready (its own message is above)",
                          config_.program);
  } else if (r.how == os::readiness::end::timed_out) {
    failure = fmt::format("{} did not report the topology ready within {} ms", config_.program,
                          config_.ready_timeout.count());
  } else {
    setup_seconds_ = std::atof(r.after("ready ").c_str());
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
  // SIGTERM: the supervisor removes everything; SIGKILL if it has not within stop_timeout.
  if (supervisor_.pid() > 0 && !supervisor_.stop(config_.stop_timeout) && errno == ETIMEDOUT) {
    std::fprintf(stderr, "cloakbench: topology supervisor %d did not exit after SIGKILL\n",
                 static_cast<int>(supervisor_.pid()));
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
