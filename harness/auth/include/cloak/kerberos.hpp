// The `kerberos` authentication package: GSSAPI with the krb5 mechanism (not SPNEGO), MIT krb5,
// against the realm the suite starts (cloak/realm.hpp). One process acts for many clients: each
// identity has its own initiator credentials (a MEMORY ccache from the client keytab).
#pragma once

#include <chrono>
#include <cloak/auth.hpp>
#include <cloak/identity.hpp>
#include <cloak/realm.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

// MIT's gss_cred_id_t is a pointer to this; named here so the header needs no GSSAPI include.
struct gss_cred_id_struct;

namespace cloak {

// Whether each new context finds its service ticket cached (warm) or first asks the KDC (cold).
enum class ticket_state : std::uint8_t { warm, cold };
std::string_view to_string(ticket_state t) noexcept;

// Initiator credentials a kerberos client presents for one identity, owned by a credential source.
struct kerberos_initiator {
  gss_cred_id_struct* cred = nullptr;  // valid while the source lives and does not replace it
  std::string_view principal;
  std::string_view ccache;  // a MEMORY ccache holding the TGT (tickets:cold copies the TGT from it)
};

// The client package's seam for where credentials come from: a process's own, from a keytab
// (kerberos_credentials), or, on a server that calls a next hop, what its caller delegated
// (kerberos_delegated_credentials). The package asks by the uid of the identity it presents.
class kerberos_credential_source {
 public:
  virtual ~kerberos_credential_source() = default;
  virtual const realm_info& realm() const noexcept = 0;
  // The service principal a client of this source calls unless its options name another.
  virtual const std::string& service() const noexcept = 0;
  // The credentials to present as `uid`; false with the reason when there are none (the establish
  // then fails with no_credentials). Called on the establishing thread only.
  virtual bool find(std::uint32_t uid, kerberos_initiator& out, std::string& why) noexcept = 0;
};

// One principal a kerberos_credentials holds, and the uid that presents it.
struct kerberos_principal {
  std::uint32_t uid = 0;
  std::string principal;
};

// Initiator credentials for P and every fake client, acquired once while the thread is P (the
// client keytab is P's and mode 0600: after a thread switched its euid it could not read it).
// Shared by every client package of the process; safe to use from several threads.
class kerberos_credentials final : public kerberos_credential_source {
 public:
  // Acquires and warms (TGT plus a service ticket for `service`, empty: realm.service) for P and
  // every client. Throws std::runtime_error with the GSS message (a KDC that is down fails within
  // its bound: each KDC request gives up after `kdc_timeout`). KRB5_CONFIG must name
  // realm.krb5_conf (realm::export_environment), or it throws saying so.
  kerberos_credentials(const realm_info& realm, const client_range& clients,
                       const identity& process,
                       std::chrono::milliseconds kdc_timeout = std::chrono::milliseconds(5000),
                       std::string service = {});
  // The same for an explicit list of principals from `keytab` (a downstream host's own principal
  // from its keytab, say).
  kerberos_credentials(const realm_info& realm, std::vector<kerberos_principal> principals,
                       std::string keytab, std::string service,
                       std::chrono::milliseconds kdc_timeout = std::chrono::milliseconds(5000));
  ~kerberos_credentials() override;
  kerberos_credentials(const kerberos_credentials&) = delete;
  kerberos_credentials& operator=(const kerberos_credentials&) = delete;

  const realm_info& realm() const noexcept override;
  const std::string& service() const noexcept override;
  bool find(std::uint32_t uid, kerberos_initiator& out, std::string& why) noexcept override;
  // Whether `uid`'s principal has credentials here (P and every client of the range).
  bool has_credentials(std::uint32_t uid) const noexcept;
  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

// A downstream's credentials for calling its next hop: its own (for its own identity, from
// `own`), and, for the caller of the context it is serving, what that caller delegated with
// GSS_C_DELEG_FLAG — nothing else. A caller whose blanket asked for impersonate, not delegate,
// forwarded no TGT, so a cloaked call on its behalf fails with no_credentials. One per connection
// (not thread-safe).
class kerberos_delegated_credentials final : public kerberos_credential_source {
 public:
  // `next_service`: the next hop's principal; its service ticket is fetched (bounded by
  // `kdc_timeout`) when a delegated credential is first served.
  kerberos_delegated_credentials(
      kerberos_credentials& own, std::string next_service,
      std::chrono::milliseconds kdc_timeout = std::chrono::milliseconds(3000));
  ~kerberos_delegated_credentials() override;
  kerberos_delegated_credentials(const kerberos_delegated_credentials&) = delete;
  kerberos_delegated_credentials& operator=(const kerberos_delegated_credentials&) = delete;

  // From now on find() answers for `who.uid` with what the context `context` (accepted by the
  // kerberos server package, `state`) delegated, if anything. The delegated TGT is copied into a
  // MEMORY ccache once per context. Returns ok, or why that failed (a KDC that refuses or does not
  // answer, clock skew).
  call_error serve(std::uint64_t context, const identity& who, const server_context_state* state,
                   std::string& why) noexcept;

  const realm_info& realm() const noexcept override;
  const std::string& service() const noexcept override;
  bool find(std::uint32_t uid, kerberos_initiator& out, std::string& why) noexcept override;

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

struct kerberos_client_options {
  bool mutual = true;  // GSS_C_MUTUAL_FLAG: the server answers with an AP-REP
  // GSS_C_DELEG_FLAG (forward the TGT) on every context; without it, on the contexts presented at
  // delegate level (the blanket's level) only.
  bool delegate = false;
  ticket_state tickets = ticket_state::warm;
  protection per_call = protection::none;
  // tickets:cold fetches each service ticket itself, bounded by this: MIT 1.20 has no client-side
  // KDC timeout (a stopped KDC holds a request ~27 s; request_timeout is new in 1.22).
  std::chrono::milliseconds kdc_timeout{3000};
  // For fault tests: this client's clock runs ahead by this many seconds (its own KDC requests,
  // tickets:cold, carry the shifted time; a KDC whose limit is smaller refuses: clock_skew).
  int clock_offset_seconds = 0;
  std::string service;  // the service to call; empty: the credential source's
};

// The client side: selects the credentials by the presenting thread's identity (the uid the
// identity backend reads, looked up in `credentials`), runs gss_init_sec_context over the legs.
std::unique_ptr<client_package> make_kerberos_client(kerberos_credential_source& credentials,
                                                     kerberos_client_options options = {});

struct kerberos_server_options {
  std::string keytab;           // empty: realm.service_keytab
  std::string rcache = "none";  // "none" or "file2:<path>": the acceptor's replay cache (recorded)
  std::string service;          // the acceptor's principal; empty: realm.service
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

// The identity the realm's idmap gives `principal`, if any. Throws std::runtime_error when the
// idmap cannot be read.
std::optional<identity> idmap_identity(const realm_info& realm, std::string_view principal);

}  // namespace cloak
