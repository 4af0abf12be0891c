// The cross-host world the suite builds itself: the topology's namespaces, a realm whose KDC runs
// in the kdc namespace, D2 in down2 and D1 in down1 (D1 forwards to D2), and, for the baselines,
// raw TCP echo peers. Everything is started in order and stopped in reverse, on every path.
#pragma once

#include <chrono>
#include <cloak/downstream.hpp>
#include <cloak/identity.hpp>
#include <cloak/net.hpp>
#include <cloak/realm.hpp>
#include <cloak/topology.hpp>
#include <memory>
#include <string>

namespace cloak {

struct cross_hosts_config {
  client_range clients;
  identity process = identity::of(0, 0);  // P, the middle's kernel identity
  std::string realm_name = "HOSTS.CLOAKBENCH.TEST";
  std::string rcache = "file2";
  // The raw TCP baselines' peers (cloak-echo-peer): an echo in down2 and a relay in down1 that
  // passes each message on to it. Empty: none.
  std::string echo_program;
  // Fault tests: D1 is given down2's keytab instead of its own (it cannot start), and the KDC's
  // maximum clock skew.
  bool down1_wrong_keytab = false;
  int clockskew_seconds = 300;
  std::chrono::milliseconds ready_timeout{10000};
};

class cross_hosts {
 public:
  // Throws std::runtime_error naming the step that failed (what was started is stopped again).
  // Call before the process starts threads: the realm's krb5.conf is added to KRB5_CONFIG.
  explicit cross_hosts(cross_hosts_config config);
  ~cross_hosts();
  cross_hosts(const cross_hosts&) = delete;
  cross_hosts& operator=(const cross_hosts&) = delete;

  const topology& net() const noexcept { return *net_; }
  realm& kdc() noexcept { return *realm_; }
  const realm_info& realm_description() const noexcept { return realm_->info(); }
  downstream_process& down1() noexcept { return *down1_; }
  downstream_process& down2() noexcept { return *down2_; }
  os::tcp_endpoint down1_address() const { return os::parse_tcp_endpoint(down1_->address()); }
  os::tcp_endpoint down2_address() const { return os::parse_tcp_endpoint(down2_->address()); }
  // The raw peers (throws std::logic_error when no echo_program was given).
  os::tcp_endpoint echo_address() const;   // in down2
  os::tcp_endpoint relay_address() const;  // in down1, relaying to the echo
  const std::string& middle_netns() const { return net_->host("middle").netns; }
  double setup_seconds() const noexcept { return setup_seconds_; }  // everything, measured here

  // Restarts D1 if it died or is suspect (same port).
  void restart_down1();

  void stop() noexcept;

 private:
  cross_hosts_config config_;
  std::unique_ptr<topology> net_;
  std::unique_ptr<realm> realm_;
  std::unique_ptr<downstream_process> down2_;
  std::unique_ptr<downstream_process> down1_;
  std::unique_ptr<downstream_process> echo_;
  std::unique_ptr<downstream_process> relay_;
  double setup_seconds_ = 0;
};

}  // namespace cloak
