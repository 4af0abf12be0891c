// The world a verify scenario runs in: where the downstream lives and how its identities are
// shown. One runner runs every scenario in any of them (runner.hpp).
#pragma once

#include <cloak/backend.hpp>
#include <cloak/connection.hpp>
#include <cloak/identity.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "scenario.hpp"

namespace cloak {
class client_package;
class kerberos_credentials;
class ntlm_credentials;
class negotiate_credentials;
struct ntlm_info;
enum class negotiate_mech : std::uint8_t;
}  // namespace cloak

namespace cloak::verify {

class world {
 public:
  world(identity_backend& backend, client_range clients) : backend_(backend), clients_(clients) {}
  virtual ~world() = default;
  world(const world&) = delete;
  world& operator=(const world&) = delete;

  virtual world_kind kind() const noexcept = 0;
  identity_backend& backend() const noexcept { return backend_; }
  const client_range& clients() const noexcept { return clients_; }

  // A connection to D (across hosts: D1) with the world's own package.
  virtual std::unique_ptr<connection> connect() = 0;
  // A connection with `package`, to D or to the address `tcp` names.
  virtual std::unique_ptr<connection> connect(std::unique_ptr<client_package> package,
                                              const std::optional<tcp_options>& tcp);

  // The identity a role names here (P is the process identity locally, a host principal's uid
  // across hosts).
  virtual identity resolve(const who& w) const;
  // An identity as the records show it: {"uid", "gid"} (or {"anonymous": true}); across hosts
  // also "as", its name.
  virtual nlohmann::json show(const identity& who) const;
  // Across hosts a record keys what it expects and sees by host and omits the thread.
  virtual bool across_hosts() const noexcept { return false; }

  // What the attack and fault scenarios need; a world without it throws std::logic_error.
  virtual kerberos_credentials& kerberos();
  virtual ntlm_credentials& ntlm();
  virtual const ntlm_info& ntlm_domain();
  virtual negotiate_credentials& negotiate();
  // negotiate: the mechanism SPNEGO negotiates now (the world's kind follows it), and the prefix
  // of the scenarios' names it runs ("mech:krb5/"; "" in every other world).
  virtual negotiate_mech mech() const;
  virtual void use_mech(negotiate_mech m);
  virtual std::string scenario_prefix() const { return ""; }
  virtual void inject(fault what);
  // Starts a D1 given down2's keytab; returns what stopped it ("started" if nothing did).
  virtual std::string start_misconfigured_d1();

  // The top-level JSON fields that describe this world; the table's first line.
  virtual nlohmann::json describe() const = 0;
  virtual std::string headline() const = 0;

 private:
  identity_backend& backend_;
  client_range clients_;
};

// Local, kerberos, ntlm or negotiate against a downstream on this host (world_packages.cpp).
struct package_world_options {
  std::string backend;  // "" (kernel when privileged), "kernel" or "model"
  std::string clients;  // a client range as --clients takes it
  std::string auth = "local";
};
std::unique_ptr<world> make_package_world(const package_world_options& options);

// Across hosts: the topology, a realm in its kdc namespace, D1 and D2 (world_hosts.cpp). The
// reason when this machine cannot make network namespaces.
std::optional<std::string> hosts_unavailable_reason();
std::unique_ptr<world> make_hosts_world(client_range clients);

}  // namespace cloak::verify
