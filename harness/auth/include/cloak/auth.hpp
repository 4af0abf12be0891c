// Authentication packages (the SSPI term): how "present identity X at level L" becomes establish
// tokens on the client and an identity (or a refusal) on the server. The proxy's cloaking rules
// never see which package runs; a channel only carries the frames (docs/design.md §2).
#pragma once

#include <cloak/call.hpp>
#include <cloak/identity.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cloak {

class identity_backend;

// The package byte of an establish frame (docs/protocol.md). Values are stable.
enum class package_id : std::uint8_t {
  local = 1,      // the kernel says who the caller is (SCM_CREDENTIALS / the model's thread token)
  kerberos = 2,   // GSSAPI, krb5 mechanism
  ntlm = 3,       // GSSAPI, NTLMSSP mechanism (gss-ntlmssp)
  negotiate = 4,  // GSSAPI, SPNEGO (MIT krb5's) over krb5 or NTLMSSP
  test = 200,     // reserved for test doubles
};
std::string_view to_string(package_id id) noexcept;

// DCOM's authentication levels as per-call protection: context only (RPC_C_AUTHN_LEVEL_CONNECT), a
// MIC on every call (PKT_INTEGRITY), or every request and reply payload sealed (PKT_PRIVACY).
enum class protection : std::uint8_t { none = 0, integrity = 1, privacy = 2 };
std::string_view to_string(protection p) noexcept;
protection parse_protection(
    std::string_view text);  // "none", "integrity" or "privacy"; throws invalid_argument

// Whom a proxy presents: the identity backend that owns the thread token, the token to present
// (nullptr: the process identity P) and the level the blanket asks for.
struct presentation {
  identity_backend& backend;
  const token* who = nullptr;
  impersonation_level level = impersonation_level::impersonate;
};

// One reply leg as the connection decoded it. `token` points into the channel's receive buffer and
// is valid until the next leg.
struct leg_reply {
  bool more = false;  // the server needs another leg (a continue), `view.context` names it
  std::span<const std::byte> token;
  downstream_view view;
};

// What a package's establish talks to: the connection, which frames each leg.
class establish_legs {
 public:
  virtual ~establish_legs() = default;
  // The first leg: an establish frame carrying `token`; then every further leg: a continue frame.
  // Returns ok with the server's answer, or the error that ended the exchange.
  virtual call_error leg(std::span<const std::byte> token, leg_reply& out) noexcept = 0;
};

// Package-owned state of one client-side security context (a GSS context handle, say).
class client_context_state {
 public:
  virtual ~client_context_state() = default;
};

// Where a package writes tokens and MICs: reused buffers, so steady-state calls do not allocate.
using token_buffer = std::vector<std::byte>;

struct establish_outcome {
  call_error error = call_error::ok;
  bool switched_identity = false;  // the thread's identity was switched to present `who`
  std::unique_ptr<client_context_state> state;  // may stay empty (the local package keeps none)
  std::string detail;  // why, when error != ok (a GSS message, say); empty otherwise
};

// The client side of a package: one instance per client thread (not thread-safe).
class client_package {
 public:
  virtual ~client_package() = default;
  virtual package_id id() const noexcept = 0;
  // Whether a channel without kernel peer credentials (tcp) can carry this package.
  virtual bool needs_kernel_credentials() const noexcept = 0;
  // What every call under this package's contexts carries (the establish frame says it too).
  virtual protection per_call() const noexcept { return protection::none; }
  // Runs every leg of one establish for `p` over `legs`. Must leave the calling thread's token as
  // it found it. Not on the steady-state path: it may allocate.
  virtual establish_outcome establish(const presentation& p, establish_legs& legs) noexcept = 0;
  // Writes the MIC of `message` under `state` into `mic` (prot:integrity). False on failure.
  virtual bool sign(client_context_state* state, std::span<const std::byte> message,
                    token_buffer& mic) noexcept;
  // prot:privacy: seals `message` under `state` into `sealed` (gss_wrap with confidentiality), and
  // opens the server's sealed reply into `message`. False on failure, or when the mechanism did not
  // encrypt. Called per call: no allocation once the buffers have their capacity (a package whose
  // mechanism has only the allocating forms allocates what its MICs allocate).
  virtual bool seal(client_context_state* state, std::span<const std::byte> message,
                    token_buffer& sealed) noexcept;
  virtual bool unseal(client_context_state* state, std::span<const std::byte> sealed,
                      token_buffer& message) noexcept;
};

// What a channel knows of the sender of one frame: kernel credentials on a local channel, nothing
// across hosts.
struct peer_info {
  const identity* kernel = nullptr;  // SCM_CREDENTIALS of this frame (or the model's thread token)
  bool local_channel = true;         // false across hosts: no kernel credentials can exist
};

// Package-owned state of one server-side context (an accepted GSS context, delegated credentials).
class server_context_state {
 public:
  virtual ~server_context_state() = default;
};

// One leg's outcome on the server.
struct accept_outcome {
  enum class kind : std::uint8_t { done, more, refused } result = kind::refused;
  identity who;                                              // when done: the authenticated caller
  protocol::status refusal = protocol::status::auth_failed;  // when refused
  std::string detail;  // when refused: why, for the error frame's text
  std::unique_ptr<server_context_state> state;
};

// The server side of a package. One instance serves every connection of a downstream, so accept
// and verify must be safe to call from several connection threads at once.
class server_package {
 public:
  virtual ~server_package() = default;
  virtual package_id id() const noexcept = 0;
  // One establish leg. `state` is empty on the first leg and holds what an earlier leg of the same
  // establish returned otherwise; the package may replace or keep it. Writes the reply token.
  virtual accept_outcome accept(const peer_info& peer, std::span<const std::byte> token,
                                std::unique_ptr<server_context_state> state,
                                token_buffer& reply) = 0;
  // Checks the MIC of `message` under an accepted context (prot:integrity).
  virtual bool verify(server_context_state* state, std::span<const std::byte> message,
                      std::span<const std::byte> mic) noexcept;
  // prot:privacy: opens a sealed request into `message` (false: not sealed under this context,
  // tampered, replayed, or not encrypted) and seals the reply's payload into `sealed`.
  virtual bool unseal(server_context_state* state, std::span<const std::byte> sealed,
                      token_buffer& message) noexcept;
  virtual bool seal(server_context_state* state, std::span<const std::byte> message,
                    token_buffer& sealed) noexcept;
};

// `local`: the kernel attaches the presenting thread's credentials to the establish frame. The
// client switches the thread to the identity to present for the duration of the frame.
std::unique_ptr<client_package> make_local_client();
std::unique_ptr<server_package> make_local_server();

}  // namespace cloak
