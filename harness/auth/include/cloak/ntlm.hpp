// The `ntlm` authentication package (DCOM's RPC_C_AUTHN_WINNT): GSSAPI with the NTLMSSP mechanism
// (gss-ntlmssp, OID 1.3.6.1.4.1.311.2.2.10), three legs, no KDC. The suite makes a private NTLM
// "domain" per run: a directory with the mechanism file GSS_MECH_CONFIG names (never /etc/gss), the
// acceptor's user file of NT hashes, the user <-> identity map and the clients' own NT hashes.
#pragma once

#include <cloak/auth.hpp>
#include <cloak/environment.hpp>
#include <cloak/identity.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

// MIT's gss_cred_id_t is a pointer to this; named here so the header needs no GSSAPI include.
struct gss_cred_id_struct;

namespace cloak {

// The NT hash of `password`: MD4 of its UTF-16LE encoding, 32 lowercase hex digits. Computed once
// per user at setup (OpenSSL's legacy provider); the timed path only ever sees the hash. Throws
// std::invalid_argument for a password that is not printable ASCII.
std::string nt_hash_hex(std::string_view password);

// Debian's gss-ntlmssp mechanism module (CLOAK_NTLM_MECHANISM overrides); empty when it is not
// installed.
std::string ntlm_mechanism_path();

// Everything a package or cloak-downstream needs to find the domain. All paths are inside `dir`.
struct ntlm_info {
  std::string dir;          // the private directory (0755, removed by the owning ntlm_domain)
  std::string domain;       // the NetBIOS domain of every user, e.g. CB
  std::string service;      // the acceptor's host-based service name, e.g. cloak@downstream
  std::string mechanism;    // the gssntlmssp.so the mechanism file names
  std::string mech_config;  // <dir>/gss-mech.conf: what GSS_MECH_CONFIG must name (0644)
  std::string keyfile;      // <dir>/ntlm-users: smbpasswd lines with NT hashes (0600, owner P)
  std::string idmap;        // <dir>/idmap: "DOMAIN\user uid gid group..." per line (0644)
  std::string client_keys;  // <dir>/client-keys: "uid DOMAIN\user nthash" per line (0600)

  // Reads <dir>/ntlm.conf written by ntlm_domain. Throws std::runtime_error naming what is wrong.
  static ntlm_info load(const std::string& dir);
};

// The documented map: P is DOMAIN\cloak-middle, a fake client with uid U is DOMAIN\client-U.
std::string ntlm_user_for(std::uint32_t uid, const identity& process, std::string_view domain);

// One user an initiator can present: the uid that presents it, DOMAIN\user and its NT hash (hex).
struct ntlm_account {
  std::uint32_t uid = 0;
  std::string user;
  std::string nt_hash;
};

// Every account of info.client_keys (0600: read it as P). Throws std::runtime_error.
std::vector<ntlm_account> ntlm_client_accounts(const ntlm_info& info);

struct ntlm_config {
  client_range clients;                   // one user per client
  identity process = identity::of(0, 0);  // P
  std::string domain = "CB";
  std::string service = "cloak@downstream";
  std::string mechanism;  // empty: ntlm_mechanism_path()
  std::string parent;     // where the private directory goes; empty: $TMPDIR or /tmp
  // For tests: users the acceptor knows (in the user file) that map to no identity.
  std::vector<ntlm_account> unmapped;
};

// A domain for one run: makes the directory and its files (a random password per user, hashed
// once here), and removes them on destruction.
class ntlm_domain {
 public:
  explicit ntlm_domain(ntlm_config config);  // throws std::runtime_error / std::system_error
  ~ntlm_domain();
  ntlm_domain(const ntlm_domain&) = delete;
  ntlm_domain& operator=(const ntlm_domain&) = delete;

  const ntlm_info& info() const noexcept { return info_; }

  // Points this process's GSS_MECH_CONFIG at the domain's mechanism file (call before any GSSAPI
  // use and before starting threads: setenv is not thread-safe; a cloak-downstream started later
  // inherits it). NTLM_USER_FILE and NTLMUSER are unset: every credential comes from a cred store.
  // The previous values come back on destruction.
  void export_environment();

 private:
  ntlm_info info_;
  os::environment_override environment_;  // what export_environment replaced
};

// Initiator credentials for P and every client, acquired once while the thread is P
// (gss_acquire_cred_from with ntlmssp_domain and ntlmssp_nthash; the key file is 0600). Shared by
// every client package of the process; lookups from several threads need no lock.
class ntlm_credentials {
 public:
  explicit ntlm_credentials(const ntlm_info& info);  // every account of info.client_keys
  // An explicit list (a test's wrong NT hash, say). Throws std::runtime_error with the GSS message.
  ntlm_credentials(const ntlm_info& info, std::vector<ntlm_account> accounts);
  ~ntlm_credentials();
  ntlm_credentials(const ntlm_credentials&) = delete;
  ntlm_credentials& operator=(const ntlm_credentials&) = delete;

  const ntlm_info& info() const noexcept;
  // The credentials to present as `uid`; false with the reason when there are none.
  bool find(std::uint32_t uid, gss_cred_id_struct*& cred, std::string_view& user,
            std::string& why) const noexcept;
  bool has_credentials(std::uint32_t uid) const noexcept;

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

struct ntlm_client_options {
  // integrity: a MIC (gss_get_mic) on every call; privacy: every payload sealed (gss_wrap)
  protection per_call = protection::none;
};

// The client side: selects the credentials by the presenting thread's kernel uid and runs
// gss_init_sec_context over the legs (NEGOTIATE, then AUTHENTICATE after the server's CHALLENGE).
std::unique_ptr<client_package> make_ntlm_client(const ntlm_credentials& credentials,
                                                 ntlm_client_options options = {});

// The server side: accepts with the domain's user file (cred store ntlmssp_keyfile) under its
// service name; maps the authenticated user back to an identity through the domain's idmap; a user
// not in the map is refused (unknown_principal). Throws std::runtime_error when GSS_MECH_CONFIG
// does not name the domain's mechanism file or the acceptor cannot be acquired.
std::unique_ptr<server_package> make_ntlm_server(const ntlm_info& info);

// The user an accepted ntlm server state authenticated, as gss_display_name spells it
// (DOMAIN\user); empty for another package's state.
std::string ntlm_authenticated_user(const server_context_state* state);

}  // namespace cloak
