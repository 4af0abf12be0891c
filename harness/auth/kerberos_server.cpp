// The kerberos package's server side: accepts with the service keytab and maps the authenticated
// principal back to an identity through the realm's idmap.
#include "kerberos_server.hpp"

#include <fmt/format.h>

#include <cloak/kerberos.hpp>
#include <stdexcept>

#include "gss_package.hpp"
#include "kerberos_common.hpp"

namespace cloak {

namespace detail {

// MIT's rcache names are TYPE:RESIDUAL; "none" alone does not parse (KRB5_RC_PARSE).
std::string rcache_name(const std::string& option) {
  if (option == "none" || option == "none:") return "none:";
  if (option.rfind("file2:", 0) == 0 && option.size() > 6) return option;
  throw std::invalid_argument(fmt::format("rcache \"{}\": use none or file2:<path>", option));
}

idmap load_realm_idmap(const realm_info& realm) { return idmap::load(realm.idmap, "principal"); }

namespace {

class kerberos_server final : public gss_server_package<kerberos_server_state> {
 public:
  kerberos_server(const realm_info& realm, kerberos_server_options options)
      : gss_server_package(krb5_mechanism(), krb5_refusal) {
    check_environment(realm);
    std::string keytab = options.keytab.empty() ? realm.service_keytab : options.keytab;
    std::string principal = options.service.empty() ? realm.service : options.service;
    std::string rcache = rcache_name(options.rcache);
    names_ = load_realm_idmap(realm);
    gss_name service = import_principal(principal);
    gss_key_value_element_desc store[] = {{"keytab", keytab.c_str()}, {"rcache", rcache.c_str()}};
    gss_status status;
    // One acceptor handle for every connection: MIT holds its lock for each accept_sec_context, so
    // concurrent accepts serialize on it; each accept has its own context.
    cred_ = acquire_cred_from(service, krb5_mechanism().oid, GSS_C_ACCEPT, store, status);
    if (status.failed()) {
      throw std::runtime_error(
          fmt::format("cannot acquire acceptor credentials for {} from {} (rcache {}): {}",
                      principal, keytab, rcache, krb5_gss_message(status)));
    }
  }

  package_id id() const noexcept override { return package_id::kerberos; }
};

}  // namespace
}  // namespace detail

std::unique_ptr<server_package> make_kerberos_server(const realm_info& realm,
                                                     kerberos_server_options options) {
  return std::make_unique<detail::kerberos_server>(realm, std::move(options));
}

bool holds_delegated_credentials(const server_context_state* state) noexcept {
  auto* st = dynamic_cast<const detail::kerberos_server_state*>(state);
  return st && st->delegated;
}

std::string authenticated_principal(const server_context_state* state) {
  auto* st = dynamic_cast<const detail::kerberos_server_state*>(state);
  return st ? st->name : std::string();
}

std::optional<identity> idmap_identity(const realm_info& realm, std::string_view principal) {
  detail::idmap map = detail::load_realm_idmap(realm);
  const identity* who = map.find(std::string(principal));
  if (!who) return std::nullopt;
  return *who;
}

}  // namespace cloak
