// The `negotiate` authentication package (DCOM's RPC_C_AUTHN_GSS_NEGOTIATE): SPNEGO (MIT krb5's,
// OID 1.3.6.1.5.5.2) over krb5 (the optimistic AP-REQ in the NegTokenInit) or over NTLM
// (gss-ntlmssp, NEGOTIATE in the NegTokenInit, then CHALLENGE, AUTHENTICATE with the mechListMIC,
// and the acceptor's mechListMIC back). The initiator's negotiable mechanisms are set to the one
// asked for with gss_set_neg_mechs on a SPNEGO credential acquired once per identity (without one,
// SPNEGO would acquire default credentials on every context). One acceptor credential covers both.
#pragma once

#include <cloak/auth.hpp>
#include <cloak/identity.hpp>
#include <cloak/kerberos.hpp>
#include <cloak/ntlm.hpp>
#include <cloak/realm.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace cloak {

// The mechanism SPNEGO negotiates: the cell segment mech:krb5 or mech:ntlm.
enum class negotiate_mech : std::uint8_t { krb5, ntlm };
std::string_view to_string(negotiate_mech m) noexcept;
negotiate_mech parse_negotiate_mech(std::string_view text);  // "krb5" or "ntlm"; invalid_argument

// SPNEGO initiator credentials for P and every client, acquired once while the thread is P, each
// with its negotiable mechanisms set to one mechanism:
// - krb5 (when `kerberos` is given): over the MEMORY ccache `kerberos` already holds for each uid
//   (its TGT and warmed service ticket), target `kerberos->service()`;
// - NTLM (when `ntlm` is given): every account of ntlm->client_keys (NT hashes), target
//   ntlm->service; GSS_MECH_CONFIG must name the domain's mechanism file.
// Shared by every client package of the process; lookups from several threads need no lock.
class negotiate_credentials {
 public:
  // Throws std::runtime_error with the GSS message (or when neither is given).
  negotiate_credentials(kerberos_credentials* kerberos, const ntlm_info* ntlm,
                        const client_range& clients, const identity& process);
  ~negotiate_credentials();
  negotiate_credentials(const negotiate_credentials&) = delete;
  negotiate_credentials& operator=(const negotiate_credentials&) = delete;

  bool offers(negotiate_mech mech) const noexcept;
  // The service a client of `mech` calls (a krb5 principal, or NTLM's host-based service name).
  const std::string& service(negotiate_mech mech) const noexcept;
  // The credentials to present as `uid` over `mech`; false with the reason when there are none.
  bool find(negotiate_mech mech, std::uint32_t uid, gss_cred_id_struct*& cred,
            std::string_view& name, std::string& why) const noexcept;

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

struct negotiate_client_options {
  negotiate_mech mech = negotiate_mech::krb5;
  // integrity: a MIC on every call; privacy: every request and reply payload sealed (gss_wrap).
  protection per_call = protection::none;
  bool mutual = true;  // GSS_C_MUTUAL_FLAG (krb5: the AP-REP comes back)
};

// The client side: selects the credentials by the presenting thread's kernel uid and runs
// gss_init_sec_context with the SPNEGO mechanism over the legs (krb5: 2 tokens; NTLM: 4).
std::unique_ptr<client_package> make_negotiate_client(const negotiate_credentials& credentials,
                                                      negotiate_client_options options = {});

// The server side: one SPNEGO acceptor credential over the krb5 service keytab (when `realm` is
// given; `kerberos` as for make_kerberos_server) and the NTLM user file (when `ntlm` is given);
// the authenticated name maps back through the realm's idmap or the domain's. Throws
// std::runtime_error when neither is given or the acceptor cannot be acquired.
std::unique_ptr<server_package> make_negotiate_server(const realm_info* realm,
                                                      const ntlm_info* ntlm,
                                                      kerberos_server_options kerberos = {});

// The name an accepted negotiate server state authenticated (a principal or DOMAIN\user) and the
// mechanism SPNEGO negotiated; empty / false for another package's state.
std::string negotiate_authenticated_name(const server_context_state* state);
bool negotiated_mech(const server_context_state* state, negotiate_mech& out) noexcept;

}  // namespace cloak
