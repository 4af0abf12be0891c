// What the ntlm and negotiate packages share of NTLMSSP: its OID, the mechanism as the GSS layer
// sees it, its messages, and the check that GSS_MECH_CONFIG names the domain's mechanism file.
#pragma once

#include <cloak/ntlm.hpp>
#include <string>

#include "gss.hpp"
#include "gss_exchange.hpp"

namespace cloak::detail {

extern gss_OID_desc ntlmssp_oid;  // 1.3.6.1.4.1.311.2.2.10

// NTLMSSP through GSSAPI; gss-ntlmssp has no iov MIC.
gss_mechanism ntlm_mechanism() noexcept;

// "GSS major message: NTLMSSP message".
std::string ntlm_message(const gss_status& status);

// Throws std::runtime_error unless GSS_MECH_CONFIG names info.mech_config.
void check_environment(const ntlm_info& info);

}  // namespace cloak::detail
