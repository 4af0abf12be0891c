// What every part of the kerberos package shares: the krb5 mechanism as the GSS layer sees it, the
// check that KRB5_CONFIG names the realm, and krb5 names and messages.
#pragma once

#include <krb5/krb5.h>

#include <cloak/auth.hpp>
#include <cloak/realm.hpp>
#include <string>

#include "gss.hpp"
#include "gss_exchange.hpp"

namespace cloak::detail {

// krb5 through GSSAPI (not SPNEGO); MICs in the iov form.
gss_mechanism krb5_mechanism() noexcept;

// "GSS major message: krb5 message".
std::string krb5_gss_message(const gss_status& status);

// Throws std::runtime_error unless KRB5_CONFIG names realm.krb5_conf.
void check_environment(const realm_info& realm);

// A principal name for GSS (GSS_KRB5_NT_PRINCIPAL_NAME); throws std::runtime_error.
gss_name import_principal(const std::string& principal);

std::string krb5_message(krb5_context ctx, krb5_error_code code);
// Throws std::runtime_error "cannot parse <text>: <krb5 message>".
krb5_principal parse_principal(krb5_context ctx, const std::string& text);

// A failed accept whose authenticator's time is off by more than the server's clockskew is
// refused as clock_skew, by name; any other as auth_failed.
protocol::status krb5_refusal(const gss_status& status) noexcept;
bool is_clock_skew(const gss_status& status) noexcept;

}  // namespace cloak::detail
