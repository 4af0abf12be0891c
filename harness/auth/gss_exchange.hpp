// The token exchange every GSSAPI package runs: the initiator's legs (gss_init_sec_context until
// the context is complete), the acceptor's leg (gss_accept_sec_context, then the name mapped to an
// identity), and the per-context states both keep. A package supplies its mechanism, credentials
// and wording; a negotiate package (SPNEGO) is one more mechanism over the same legs.
#pragma once

#include <fmt/format.h>

#include <cloak/auth.hpp>
#include <cloak/backend.hpp>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <string_view>

#include "gss.hpp"
#include "gss_protect_layout.hpp"
#include "idmap.hpp"

namespace cloak::detail {

// What the shared layer needs to know of one mechanism.
struct gss_mechanism {
  gss_OID oid;   // the contexts' mechanism; it also decodes minor status codes
  mic_form mic;  // how sign and verify run under it
};

// A client-side context. Each package derives a final type of its own, so a state handed to the
// wrong package is refused, as before.
class gss_client_state : public client_context_state {
 public:
  gss_context ctx;
  std::size_t mic_length = 0;  // fixed per context: learned on the first iov sign
  seal_layout layout;          // prot:privacy's token layout, learned on the first seal
};

// A server-side context: what the acceptor authenticated and what the initiator delegated.
class gss_server_state : public server_context_state {
 public:
  gss_context ctx;
  gss_cred delegated;               // a forwarded credential (GSS_C_DELEG_FLAG), if any
  std::string name;                 // the authenticated name as gss_display_name spells it
  mic_form form = mic_form::plain;  // how MICs and seals run under it (the negotiated mechanism's)
  seal_layout layout;               // prot:privacy's token layout, learned on the first open
};

// Runs `body(uid, out)` for one establish with the calling thread presenting `p.who` (P when none)
// and left as it was found afterwards: `uid` is the thread's kernel identity, which selects the
// credentials (not the token handed in). An exception becomes authentication_failed.
template <class Body>
establish_outcome establish_as(const presentation& p, Body&& body) noexcept {
  establish_outcome out;
  try {
    temporary_identity as(p.backend, p.who);
    out.switched_identity = as.switched();
    if (as.error() != switch_error::ok) {
      out.error = call_error::identity_switch_failed;
      out.detail =
          fmt::format("cannot switch the thread to {}: {}",
                      p.who ? to_string(p.who->who) : std::string("P"), std::strerror(errno));
      return out;
    }
    body(p.backend.read_thread_identity().uid, out);
  } catch (const std::exception& ex) {
    out.error = call_error::authentication_failed;
    out.detail = ex.what();
  }
  return out;
}

// One initiator's exchange: whom it presents and to what.
struct initiator {
  gss_cred_id_t cred = GSS_C_NO_CREDENTIAL;
  gss_name_t target = GSS_C_NO_NAME;
  gss_OID mech = GSS_C_NO_OID;
  OM_uint32 flags = 0;
};

// What a mechanism's legs look like to the initiator.
struct leg_rules {
  int max_legs = 8;  // sending more tokens than this fails the establish
  // Whether the server must answer each token the context still continues after with a continue
  // (NTLM's CHALLENGE), or may answer done with a token (krb5's AP-REP).
  bool reply_must_continue = false;
  std::string_view missing_reply;  // said when such a reply lacks what the rule needs
};

// Runs gss_init_sec_context over `legs` until the context in `ctx` is complete. When
// gss_init_sec_context itself fails, returns authentication_failed with `failed` set and `detail`
// empty: the package words it (and may map it, clock skew say). Otherwise ok, or the error that
// ended the exchange with `detail`.
call_error initiate(const initiator& who, const leg_rules& rules, gss_context& ctx,
                    establish_legs& legs, gss_status& failed, std::string& detail);

// One package's acceptor: its credential, the mechanism and the map from names to identities.
struct acceptor {
  gss_cred_id_t cred = GSS_C_NO_CREDENTIAL;
  gss_OID mech = GSS_C_NO_OID;
  const idmap* names = nullptr;
  // The status a failed gss_accept_sec_context is refused with (auth_failed unless the mechanism
  // can say more, as krb5 does for clock skew).
  protocol::status (*refusal)(const gss_status&) noexcept = nullptr;
  mic_form form = mic_form::plain;  // the contexts' form
  // When set (SPNEGO), the form comes from the mechanism the context negotiated instead.
  mic_form (*form_of)(gss_OID negotiated) noexcept = nullptr;
};

// One leg on an adopted state: the reply token into `reply`; when the context completes, the
// authenticated name (in st->name) mapped to an identity, or refused as unknown_principal.
accept_outcome accept_into(const acceptor& a, std::unique_ptr<gss_server_state> st,
                           std::span<const std::byte> token, token_buffer& reply);

// server_package::accept for a package whose states are `State` (derived from gss_server_state):
// the first leg makes one, a later leg adopts the one an earlier leg returned.
template <class State>
accept_outcome accept_leg(const acceptor& a, std::unique_ptr<server_context_state> state,
                          std::span<const std::byte> token, token_buffer& reply) {
  reply.clear();
  std::unique_ptr<gss_server_state> st;
  if (state) {
    auto* mine = dynamic_cast<State*>(state.get());
    if (!mine) {
      accept_outcome out;
      out.detail = "the establish state belongs to another package";
      return out;
    }
    state.release();
    st.reset(mine);
  } else {
    st = std::make_unique<State>();
  }
  return accept_into(a, std::move(st), token, reply);
}

// The established context of a state of type `State`, or none (another package's state, or one
// not established).
template <class State, class Base>
gss_ctx_id_t context_of(Base* state) noexcept {
  auto* st = dynamic_cast<State*>(state);
  return st ? st->ctx.get() : GSS_C_NO_CONTEXT;
}

}  // namespace cloak::detail
