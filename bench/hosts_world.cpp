// The cross-host world of the chan:tcp cells (environment.hpp): the topology this process makes in
// network namespaces (--hosts), or a remote downstream and the realm it shares (--downstream,
// docs/remote.md), and the middle's credentials for D1.
#include <fmt/format.h>

#include <chrono>
#include <cloak/net.hpp>
#include <cstdlib>
#include <optional>
#include <stdexcept>

#include "environment.hpp"

namespace cloak::bench {

void hosts_world::start(const bench_config& config, const identity& process) {
  if (setup_) return;
  bool remote = !config.downstream.empty();
  try {
    auto h = std::make_unique<hosts_setup>();
    if (remote) {
      // docs/remote.md: the realm the remote downstream shares, and its address; this process is
      // the middle host, in the namespace it runs in.
      if (config.realm_dir.empty())
        throw std::invalid_argument("--downstream needs --realm-dir (the realm D1 uses)");
      h->realm = realm_info::load(config.realm_dir);
      h->down1 = os::parse_tcp_endpoint(config.downstream);
      const char* previous = std::getenv("KRB5_CONFIG");
      std::string conf = previous && *previous ? std::string(previous) + ":" + h->realm.krb5_conf
                                               : h->realm.krb5_conf;
      ::setenv("KRB5_CONFIG", conf.c_str(), 1);
    } else {
      if (auto why = topology::unavailable_reason())
        throw std::runtime_error(*why);  // select_cells left the cells out already
      cross_hosts_config hc;
      hc.clients = config.clients;
      hc.process = process;
      hc.rcache = config.rcache;
      const char* echo = std::getenv("CLOAK_ECHO_PEER");
#ifdef CLOAK_ECHO_PEER_PATH
      hc.echo_program = echo && *echo ? echo : CLOAK_ECHO_PEER_PATH;
#else
      hc.echo_program = echo && *echo ? echo : "cloak-echo-peer";
#endif
      // Fault test: D1 gets down2's keytab and cannot acquire its acceptor credentials: the setup
      // fails with cloak-downstream's own message, and so does every cross-host cell.
      hc.down1_wrong_keytab = config.fault == "wrong-keytab";
      h->world = std::make_unique<cross_hosts>(hc);
      h->realm = h->world->realm_description();
      h->down1 = h->world->down1_address();
      h->middle_netns = h->world->middle_netns();
      h->raw_peers = true;
    }
    auto acquiring = std::chrono::steady_clock::now();
    {
      // The KDC answers inside the topology only.
      std::optional<os::netns_scope> scope;
      if (!h->middle_netns.empty()) scope.emplace(h->middle_netns);
      h->credentials = std::make_unique<kerberos_credentials>(h->realm, config.clients, process,
                                                              std::chrono::milliseconds(5000),
                                                              h->realm.host("down1").principal);
    }
    h->credentials_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - acquiring).count();
    std::lock_guard lock(mutex_);
    setup_ = std::move(h);
    why_.clear();
  } catch (const std::exception& e) {
    why_ = fmt::format("cannot set up the cross-host cells: {}", e.what());
  }
}

os::tcp_endpoint hosts_world::down1_endpoint() {
  std::lock_guard lock(mutex_);
  if (!setup_) throw std::runtime_error(why_);
  if (setup_->world && (setup_->down1_suspect || !setup_->world->down1().running())) {
    setup_->world->restart_down1();
    restarts_.fetch_add(1);
    std::fprintf(stderr,
                 "cloak-matrix: restarted D1 (cloak-downstream in down1) after a failed cell\n");
  }
  setup_->down1_suspect = false;
  return setup_->down1;
}

void hosts_world::mark_down1_suspect() noexcept {
  std::lock_guard lock(mutex_);
  if (setup_) setup_->down1_suspect = true;
}

pid_t hosts_world::down1_pid() {
  std::lock_guard lock(mutex_);
  return setup_ && setup_->world ? setup_->world->down1().pid() : 0;
}

void hosts_world::shutdown() noexcept {
  std::lock_guard lock(mutex_);
  setup_.reset();  // D1, D2, the peers, the hosts' realm, then the namespaces
}

}  // namespace cloak::bench
