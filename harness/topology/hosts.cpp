// The cross-host world in order: topology, realm (KDC in kdc), D2 (down2), D1 (down1, forwarding to
// D2), the raw peers; stopped in reverse.
#include <fmt/format.h>
#include <signal.h>

#include <cloak/hosts.hpp>
#include <stdexcept>

namespace cloak {

cross_hosts::cross_hosts(cross_hosts_config config) : config_(std::move(config)) {
  auto started = std::chrono::steady_clock::now();
  auto step = [&](const char* what, auto&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      stop();
      throw std::runtime_error(fmt::format("cross-host setup: {}: {}", what, e.what()));
    }
  };
  step("topology", [&] { net_ = std::make_unique<topology>(); });
  step("realm", [&] {
    realm_config rc;
    rc.clients = config_.clients;
    rc.process = config_.process;
    rc.name = config_.realm_name;
    rc.hosts = {"down1", "down2"};
    rc.netns = net_->host("kdc").netns;
    rc.listen_address = net_->host("kdc").address;
    rc.clockskew_seconds = config_.clockskew_seconds;
    realm_ = std::make_unique<realm>(rc);
    realm_->export_environment(true);
  });
  auto downstream = [&](const std::string& host, const std::string& forward,
                        const std::string& forward_service, const std::string& keytab) {
    const realm_host& h = realm_->info().host(host);
    downstream_config dc;
    dc.clients = config_.clients;
    dc.ready_timeout = config_.ready_timeout;
    dc.realm_dir = realm_->info().dir;
    dc.rcache = config_.rcache;
    dc.netns = net_->host(host).netns;
    dc.listen = fmt::format("tcp:{}:0", net_->host(host).address);
    dc.service = h.principal;
    dc.keytab = keytab.empty() ? h.keytab : keytab;
    dc.forward = forward;
    dc.forward_service = forward_service;
    return std::make_unique<downstream_process>(dc);
  };
  step("D2 (cloak-downstream in down2)", [&] { down2_ = downstream("down2", "", "", ""); });
  step("D1 (cloak-downstream in down1, forwarding to D2)", [&] {
    down1_ = downstream("down1", down2_->address(), realm_->info().host("down2").principal,
                        config_.down1_wrong_keytab ? realm_->info().host("down2").keytab : "");
  });
  if (!config_.echo_program.empty()) {
    auto peer = [&](const std::string& host, const std::string& forward) {
      downstream_config dc;
      dc.program = config_.echo_program;
      dc.clients = config_.clients;
      dc.ready_timeout = config_.ready_timeout;
      dc.netns = net_->host(host).netns;
      dc.listen = fmt::format("tcp:{}:0", net_->host(host).address);
      dc.forward = forward;
      return std::make_unique<downstream_process>(dc);
    };
    step("echo peer in down2", [&] { echo_ = peer("down2", ""); });
    step("relay in down1", [&] { relay_ = peer("down1", echo_->address()); });
  }
  setup_seconds_ =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
}

cross_hosts::~cross_hosts() { stop(); }

os::tcp_endpoint cross_hosts::echo_address() const {
  if (!echo_) throw std::logic_error("no echo peer was started (cross_hosts_config::echo_program)");
  return os::parse_tcp_endpoint(echo_->address());
}

os::tcp_endpoint cross_hosts::relay_address() const {
  if (!relay_) throw std::logic_error("no relay was started (cross_hosts_config::echo_program)");
  return os::parse_tcp_endpoint(relay_->address());
}

void cross_hosts::restart_down1() {
  if (down1_->running()) down1_->kill(SIGKILL);
  down1_->start();
}

void cross_hosts::stop() noexcept {
  // Reverse order: what runs inside the namespaces first, then the KDC, then the namespaces.
  relay_.reset();
  echo_.reset();
  down1_.reset();
  down2_.reset();
  realm_.reset();
  net_.reset();
}

}  // namespace cloak
