// The hosts of the cross-host cells, made of network namespaces the suite creates itself: middle,
// down1, down2 and kdc, each joined by a veth pair to a bridge in a switch namespace, with
// addresses from 198.18.0.0/24 (RFC 2544's benchmarking range) that exist only inside those
// namespaces: no route out, nothing in the root namespace. A cloak-topology supervisor owns them
// and removes them when we stop it, when we exit and when we are killed (docs/remote.md,
// docs/design.md §2).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cloak/process.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cloak {

struct topology_host {
  std::string name;     // middle, down1, down2, kdc
  std::string netns;    // cloak-<supervisor pid>-<name>
  std::string address;  // 198.18.0.N
};

struct topology_config {
  std::string program;  // path of cloak-topology; empty: the one built with this harness
  std::chrono::milliseconds ready_timeout{10000};
  std::chrono::milliseconds stop_timeout{8000};
};

class topology {
 public:
  static constexpr std::string_view subnet = "198.18.0.0/24";
  // The hosts in order, and their addresses' last byte: middle .1, down1 .2, down2 .3, kdc .4.
  static const std::vector<std::string>& host_names();

  // Empty when this process can make the topology (CAP_NET_ADMIN and CAP_SYS_ADMIN, and `ip` from
  // iproute2); otherwise why not, in words a result file can carry.
  static std::optional<std::string> unavailable_reason();

  // Starts the supervisor and waits (bounded) until every namespace, link and address exists.
  // Throws std::runtime_error with the supervisor's message.
  explicit topology(topology_config config = {});
  ~topology();  // stop()
  topology(const topology&) = delete;
  topology& operator=(const topology&) = delete;

  const std::string& prefix() const noexcept { return prefix_; }  // cloak-<pid>
  const std::vector<topology_host>& hosts() const noexcept { return hosts_; }
  // The host called `name`; throws std::invalid_argument.
  const topology_host& host(std::string_view name) const;
  // From the supervisor's start to every link up (measured by the supervisor).
  double setup_seconds() const noexcept { return setup_seconds_; }
  pid_t supervisor_pid() const noexcept { return supervisor_.pid(); }

  // Asks the supervisor to remove everything and waits for it (bounded); then removes by name
  // whatever it could not. Processes still running inside the namespaces are ended first
  // (SIGTERM, a bounded wait, SIGKILL): start and stop them before and after the topology.
  void stop() noexcept;

  static std::string default_program();

 private:
  topology_config config_;
  os::child_process supervisor_;
  std::string prefix_;
  std::vector<topology_host> hosts_;
  double setup_seconds_ = 0;
};

}  // namespace cloak
