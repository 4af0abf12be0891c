// The hosts world (world.hpp): downstreams on other "hosts", network namespaces this run makes
// (docs/verify.md, --hosts). The middle's client side is this thread, moved into the middle
// namespace, and every identity is a Kerberos principal of the topology's realm.
#include <fmt/format.h>

#include <chrono>
#include <cloak/downstream.hpp>
#include <cloak/hosts.hpp>
#include <cloak/kerberos.hpp>
#include <cloak/net.hpp>
#include <cloak/topology.hpp>
#include <csignal>
#include <map>
#include <stdexcept>

#include "world.hpp"

namespace cloak::verify {

namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

cross_hosts_config hosts_config(client_range clients, const identity_backend& backend) {
  cross_hosts_config hc;
  hc.clients = clients;
  hc.process = backend.process_identity();
  return hc;
}

class hosts_world final : public world {
 public:
  hosts_world(std::unique_ptr<identity_backend> backend, client_range clients)
      : world(*backend, clients),
        backend_(std::move(backend)),
        hosts_(hosts_config(clients, *backend_)),
        // The middle's client side runs in the middle namespace: this thread's sockets (to D1 and
        // to the KDC) are created there. Processes it starts still enter their own namespaces.
        in_middle_(hosts_.middle_netns()),
        acquiring_(clock_type::now()),
        credentials_(hosts_.realm_description(), clients, backend_->process_identity(),
                     std::chrono::milliseconds(5000),
                     hosts_.realm_description().host("down1").principal),
        credentials_seconds_(
            std::chrono::duration<double>(clock_type::now() - acquiring_).count()) {
    const realm_info& realm = hosts_.realm_description();
    names_[realm.middle.uid] = fmt::format("P (cloak-middle@{})", realm.name);
    for (const auto& h : realm.hosts)
      names_[h.who.uid] = fmt::format("{} ({})", h.name == "down1" ? "D1" : "D2", h.principal);
    for (std::uint32_t i = 0; i < clients.count; ++i) {
      names_[clients.client(i).uid] =
          fmt::format("C{} (client-{}@{})", i + 1, clients.client(i).uid, realm.name);
    }
  }

  world_kind kind() const noexcept override { return world_kind::hosts; }
  bool across_hosts() const noexcept override { return true; }

  std::unique_ptr<connection> connect() override {
    return connect(make_kerberos_client(credentials_), std::nullopt);
  }
  std::unique_ptr<connection> connect(std::unique_ptr<client_package> package,
                                      const std::optional<tcp_options>& tcp) override {
    os::tcp_endpoint d1 = hosts_.down1_address();
    if (!package) package = make_kerberos_client(credentials_);
    return make_connection(make_tcp_channel(tcp ? *tcp : tcp_options{d1.address, d1.port}),
                           std::move(package));
  }

  identity resolve(const who& w) const override {
    if (w.is == who::role::middle) return hosts_.realm_description().middle;  // P as hosts know it
    if (w.is == who::role::d1) return hosts_.realm_description().host("down1").who;
    return world::resolve(w);
  }
  json show(const identity& who) const override {
    auto it = names_.find(who.uid);
    std::string as = it == names_.end() ? fmt::format("uid {}", who.uid) : it->second;
    return json{{"uid", who.uid}, {"gid", who.gid}, {"as", as}};
  }

  kerberos_credentials& kerberos() override { return credentials_; }

  void inject(fault what) override {
    if (what != fault::kill_d1 && what != fault::restart_d1) world::inject(what);
    temporary_identity as_p(backend(), nullptr);  // P started D1: only P may signal it
    if (what == fault::kill_d1) hosts_.down1().kill(SIGKILL);
    if (what == fault::restart_d1) hosts_.restart_down1();
  }

  std::string start_misconfigured_d1() override {
    downstream_config dc;
    dc.clients = clients();
    dc.realm_dir = hosts_.realm_description().dir;
    dc.netns = hosts_.net().host("down1").netns;
    dc.listen = fmt::format("tcp:{}:0", hosts_.net().host("down1").address);
    dc.service = hosts_.realm_description().host("down1").principal;
    dc.keytab = hosts_.realm_description().host("down2").keytab;  // another host's keys
    try {
      downstream_process wrong(dc);
      return "started";
    } catch (const std::exception& e) {
      return e.what();
    }
  }

  json describe() const override {
    const realm_info& realm = hosts_.realm_description();
    json out;
    out["hosts_run"] = true;
    out["auth"] = "kerberos";
    out["backend"] = "kernel";
    out["identity_source"] =
        "kerberos over tcp: the principal of the AP-REQ's ticket, mapped by the realm's idmap";
    json topo = json::array();
    for (const auto& h : hosts_.net().hosts())
      topo.push_back({{"name", h.name}, {"netns", h.netns}, {"address", h.address}});
    out["topology"] = {{"subnet", std::string(topology::subnet)},
                       {"prefix", hosts_.net().prefix()},
                       {"setup_seconds", hosts_.net().setup_seconds()},
                       {"hosts", topo},
                       {"down1", hosts_.down1_address().to_string()},
                       {"down2", hosts_.down2_address().to_string()}};
    out["realm"] = {{"name", realm.name},
                    {"kdc", fmt::format("{}:{}", realm.kdc_host, realm.kdc_port)},
                    {"kdc_netns", realm.netns},
                    {"setup_seconds", realm.setup_seconds},
                    {"credentials_seconds", credentials_seconds_}};
    out["world_setup_seconds"] = hosts_.setup_seconds();
    out["identities"] = json::object();
    for (const auto& [uid, name] : names_) {
      if (clients().contains_uid(uid) && uid >= clients().first_uid + 2)
        continue;  // C1, C2 are the ones used
      out["identities"][name] = uid;
    }
    return out;
  }
  std::string headline() const override {
    const realm_info& realm = hosts_.realm_description();
    return fmt::format(
        "across hosts (namespaces {}-*, {}), kerberos realm {} with its KDC in {}\n\n",
        hosts_.net().prefix(), topology::subnet, realm.name, realm.netns);
  }

 private:
  std::unique_ptr<identity_backend> backend_;
  cross_hosts hosts_;
  os::netns_scope in_middle_;
  clock_type::time_point acquiring_;
  kerberos_credentials credentials_;
  double credentials_seconds_;
  std::map<std::uint32_t, std::string> names_;  // uid -> "C1 (client-61000@R)", for the output
};

}  // namespace

std::optional<std::string> hosts_unavailable_reason() { return topology::unavailable_reason(); }

std::unique_ptr<world> make_hosts_world(client_range clients) {
  if (auto why = kernel_backend_unavailable_reason()) {
    throw std::invalid_argument(
        "--hosts needs the kernel backend (the thread's identity selects the principal): " + *why);
  }
  return std::make_unique<hosts_world>(make_kernel_backend(), clients);
}

}  // namespace cloak::verify
