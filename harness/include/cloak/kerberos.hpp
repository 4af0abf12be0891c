// The `kerberos` authentication package: GSSAPI with the krb5 mechanism (not SPNEGO), MIT krb5,
// against the realm the suite starts (cloak/realm.hpp). One process acts for many clients: each
// identity has its own initiator credentials (a MEMORY ccache from the client keytab).
#pragma once

#include <cloak/auth.hpp>
#include <cloak/identity.hpp>
#include <cloak/realm.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace cloak {

// Whether each new context finds its service ticket cached (warm) or first asks the KDC (cold).
enum class ticket_state : std::uint8_t { warm, cold };
std::string_view to_string(ticket_state t) noexcept;
ticket_state parse_ticket_state(std::string_view text);  // "warm" or "cold"

// Initiator credentials for P and every fake client, acquired once while the thread is P (the
// client keytab is P's and mode 0600: after a thread switched its euid it could not read it).
// Shared by every client package of the process; safe to use from several threads.
class kerberos_credentials {
 public:
  // Acquires and warms (TGT plus a service ticket for realm.service) for P and every client.
  // Throws std::runtime_error with the GSS message (a KDC that is down fails within its bound:
  // each KDC request gives up after `kdc_timeout`). KRB5_CONFIG must name realm.krb5_conf
  // (realm::export_environment), or it throws saying so.
  kerberos_credentials(const realm_info& realm, const client_range& clients,
                       const identity& process,
                       std::chrono::milliseconds kdc_timeout = std::chrono::milliseconds(5000));
  ~kerberos_credentials();
  kerberos_credentials(const kerberos_credentials&) = delete;
  kerberos_credentials& operator=(const kerberos_credentials&) = delete;

  const realm_info& realm() const noexcept;
  // Whether `uid`'s principal has credentials here (P and every client of the range).
  bool has_credentials(std::uint32_t uid) const noexcept;
  struct impl;
  impl& internals() noexcept { return *impl_; }

 private:
  std::unique_ptr<impl> impl_;
};

struct kerberos_client_options {
  bool mutual = true;                  // GSS_C_MUTUAL_FLAG: the server answers with an AP-REP
  bool delegate = false;               // GSS_C_DELEG_FLAG: forward the TGT (delegate level)
  ticket_state tickets = ticket_state::warm;
  protection per_call = protection::none;
  // tickets:cold fetches each service ticket itself, bounded by this: MIT 1.20 has no client-side
  // KDC timeout (a stopped KDC holds a request ~27 s; request_timeout is new in 1.22).
  std::chrono::milliseconds kdc_timeout{3000};
};

// The client side: selects the credentials by the presenting thread's kernel identity (the uid
// the identity backend reads, mapped by principal_for), runs gss_init_sec_context over the legs.
std::unique_ptr<client_package> make_kerberos_client(kerberos_credentials& credentials,
                                                     kerberos_client_options options = {});

struct kerberos_server_options {
  std::string keytab;   // empty: realm.service_keytab
  std::string rcache = "none";  // "none" or "file2:<path>": the acceptor's replay cache (recorded)
};

// The server side: accepts with the service keytab; maps the authenticated principal back to an
// identity through the realm's idmap; a principal not in the map is refused (unknown_principal).
std::unique_ptr<server_package> make_kerberos_server(const realm_info& realm,
                                                     kerberos_server_options options = {});

// What an accepted kerberos server state holds (false / empty for another package's state): whether
// the client forwarded its TGT (GSS_C_DELEG_FLAG; kept for delegate-level calls), and the
// authenticated principal as gss_display_name spells it.
bool holds_delegated_credentials(const server_context_state* state) noexcept;
std::string authenticated_principal(const server_context_state* state);

}  // namespace cloak
