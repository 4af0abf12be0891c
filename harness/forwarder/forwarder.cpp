// D1 of the two-hop rules: act as the caller, then call the next hop through a proxy of our own
// whose cloaking decides whom the next hop sees (the caller, with what it delegated; or this host).
#include <array>
#include <cloak/connection.hpp>
#include <cloak/forwarder.hpp>
#include <cloak/proxy.hpp>

namespace cloak::detail {

namespace {

class connection_forwarder final : public forward_handler {
 public:
  explicit connection_forwarder(forwarding_host& host)
      : host_(host),
        credentials_(host.own(), host.config().next_service, host.config().io_timeout) {}

  void forward(const caller& c, const next_hop& hop, std::span<const std::byte> payload,
               forward_outcome& out, std::string& detail) noexcept override {
    // What the caller delegated (if anything) is what a cloaked call can present as the caller.
    if (call_error e = credentials_.serve(c.context, c.who, c.state, detail); e != call_error::ok) {
      out.next_error = e;
      return;
    }
    route* r = route_for(hop, detail);
    if (!r) {
      out.next_error = call_error::protocol;
      return;
    }
    const token as_caller = make_token(c.who, c.level);
    identity_backend& tokens = host_.tokens();
    if (tokens.impersonate(as_caller) != switch_error::ok) {
      out.next_error = call_error::identity_switch_failed;
      detail = "cannot act as the caller (uid 0 is never impersonated)";
      return;
    }
    std::uint64_t before = r->p->counters().contexts_established;
    call_result res = r->p->call(payload);
    tokens.revert();
    out.next_error = res.error;
    out.next = res.view;
    out.next_contexts = static_cast<std::uint32_t>(r->p->counters().contexts_established - before);
    if (!res.ok()) {
      const std::string& why = r->conn->last_establish().detail;
      if (!why.empty()) detail = why;
    }
  }

 private:
  struct route {
    std::unique_ptr<connection> conn;
    std::unique_ptr<proxy> p;
  };

  // One proxy per cloaking and level, made at its first use and kept with the connection: static
  // cloaking captures at the first call of its proxy, as the process default does (docs/design.md
  // §1).
  route* route_for(const next_hop& hop, std::string& detail) noexcept {
    std::size_t mode = static_cast<std::size_t>(hop.mode);
    std::size_t level = static_cast<std::size_t>(hop.level) - 1;
    if (mode > 2 || level > 3) return nullptr;
    route& r = routes_[mode * 4 + level];
    if (!r.p) {
      try {
        const forwarding_config& cfg = host_.config();
        kerberos_client_options k;
        k.service = cfg.next_service;
        r.conn = make_connection(
            make_tcp_channel(tcp_options{cfg.next.address, cfg.next.port, cfg.io_timeout}),
            make_kerberos_client(credentials_, k));
        r.p = std::make_unique<proxy>(host_.tokens(), *r.conn,
                                      security_defaults{hop.mode, hop.level});
      } catch (const std::exception& e) {
        detail = e.what();
        r = route{};
        return nullptr;
      }
    }
    return &r;
  }

  forwarding_host& host_;
  kerberos_delegated_credentials credentials_;
  std::array<route, 12> routes_;
};

}  // namespace

forwarding_host::forwarding_host(forwarding_config config) : config_(std::move(config)) {
  std::optional<identity> self = idmap_identity(config_.realm, config_.own_principal);
  if (!self) {
    throw std::runtime_error(
        fmt::format("{} is not in the realm's idmap {}: this host would have no identity",
                    config_.own_principal, config_.realm.idmap));
  }
  tokens_ = make_model_backend(*self);
  own_ = std::make_unique<kerberos_credentials>(
      config_.realm, std::vector<kerberos_principal>{{self->uid, config_.own_principal}},
      config_.own_keytab, config_.next_service, config_.io_timeout);
}

forwarding_host::~forwarding_host() = default;

std::unique_ptr<forward_handler> forwarding_host::new_connection() {
  return std::make_unique<connection_forwarder>(*this);
}

}  // namespace cloak::detail
