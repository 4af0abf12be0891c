// The krb5 mechanism, the KRB5_CONFIG check, and krb5 names and messages for the kerberos package.
#include "kerberos_common.hpp"

#include <fmt/format.h>
#include <gssapi/gssapi_krb5.h>

#include <cstdlib>
#include <stdexcept>
#include <string_view>

namespace cloak::detail {

namespace {

// KRB5_CONFIG may list several files (MIT reads a colon-separated list): a run with two realms
// (one on loopback, one among the hosts' namespaces) names both.
bool names_file(const char* list, const std::string& file) {
  std::string_view rest(list);
  while (true) {
    auto colon = rest.find(':');
    if (rest.substr(0, colon) == file) return true;
    if (colon == std::string_view::npos) return false;
    rest.remove_prefix(colon + 1);
  }
}

}  // namespace

gss_mechanism krb5_mechanism() noexcept {
  return {const_cast<gss_OID>(gss_mech_krb5), mic_form::iov};
}

std::string krb5_gss_message(const gss_status& status) {
  return gss_message(status, krb5_mechanism().oid);
}

// GSSAPI and krb5 read their configuration from KRB5_CONFIG in every call; a process that did not
// point it at the realm would silently use /etc/krb5.conf.
void check_environment(const realm_info& realm) {
  const char* conf = std::getenv("KRB5_CONFIG");
  if (!conf || !names_file(conf, realm.krb5_conf)) {
    throw std::runtime_error(
        fmt::format("KRB5_CONFIG is {} but the realm's is {}: call realm::export_environment() (or "
                    "set it) before "
                    "using the kerberos package",
                    conf ? conf : "unset", realm.krb5_conf));
  }
}

gss_name import_principal(const std::string& principal) {
  return import_name(principal, const_cast<gss_OID>(GSS_KRB5_NT_PRINCIPAL_NAME),
                     krb5_mechanism().oid);
}

std::string krb5_message(krb5_context ctx, krb5_error_code code) {
  const char* text = krb5_get_error_message(ctx, code);
  std::string out = text ? text : fmt::format("krb5 error {}", code);
  krb5_free_error_message(ctx, text);
  return out;
}

krb5_principal parse_principal(krb5_context ctx, const std::string& text) {
  krb5_principal p = nullptr;
  if (krb5_error_code rc = krb5_parse_name(ctx, text.c_str(), &p)) {
    throw std::runtime_error(fmt::format("cannot parse {}: {}", text, krb5_message(ctx, rc)));
  }
  return p;
}

bool is_clock_skew(const gss_status& status) noexcept {
  return static_cast<krb5_error_code>(status.minor) == KRB5KRB_AP_ERR_SKEW;
}

protocol::status krb5_refusal(const gss_status& status) noexcept {
  return is_clock_skew(status) ? protocol::status::clock_skew : protocol::status::auth_failed;
}

}  // namespace cloak::detail
