// What a cloak-downstream with a next hop (--forward) does for forward_call: D1 of the two-hop
// rules.
#pragma once

#include <chrono>
#include <cloak/backend.hpp>
#include <cloak/downstream.hpp>
#include <cloak/kerberos.hpp>
#include <cloak/net.hpp>
#include <cloak/realm.hpp>
#include <memory>
#include <string>

namespace cloak::detail {

struct forwarding_config {
  realm_info realm;
  os::tcp_endpoint next;      // the next hop's cloak-downstream
  std::string next_service;   // its principal
  std::string own_principal;  // this host's principal (its acceptor's), presented when not cloaking
  std::string own_keytab;
  std::chrono::milliseconds io_timeout{2000};
};

// The process-wide part: this host's own identity and credentials. Its identities are its own token
// space (the model backend): its process identity is what the realm's idmap says its principal is,
// and "acting as the caller" sets a thread token for the identity the package authenticated. The
// kernel credentials of the connection thread never change for it.
class forwarding_host {
 public:
  // Acquires this host's own credentials (TGT and a ticket for the next hop). Throws
  // std::runtime_error naming what is missing (its principal in the idmap, its key in the keytab).
  explicit forwarding_host(forwarding_config config);
  ~forwarding_host();
  // The forward handler of one new connection: its proxies to the next hop, per cloaking and level.
  std::unique_ptr<forward_handler> new_connection();

  const forwarding_config& config() const noexcept { return config_; }
  identity_backend& tokens() noexcept { return *tokens_; }
  kerberos_credentials& own() noexcept { return *own_; }

 private:
  forwarding_config config_;
  std::unique_ptr<identity_backend> tokens_;
  std::unique_ptr<kerberos_credentials> own_;
};

}  // namespace cloak::detail
