// The table, part 2: what the kerberos, ntlm and negotiate acceptors must refuse (a missing
// principal or user, a context from another connection, a replayed or tampered establish, a spoiled
// MIC or sealed message, a KDC that does not answer).
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "packages.hpp"
#include "scenario.hpp"

namespace cloak::verify {

namespace {

// A context established on connection A, presented on connection B. Both connect as P (the
// socket's directory admits only P).
std::vector<step> context_from_another_connection() {
  return {open{},
          open{.connect_now = true, .raw = true},
          set_blanket{cloaking::dynamic},
          impersonate{client(0)},
          note{"impersonate C1; call on connection A"},
          establish{},
          reuse_context{"call on connection B under A's context", 1,
                        protocol::status::unknown_context}};
}

// The thread impersonates a uid the package has no credentials for (`what` says which it lacks).
std::vector<step> identity_without_credentials(const std::string& what) {
  return {open{}, set_blanket{cloaking::dynamic}, impersonate{stranger},
          note{"impersonate uid {stranger} (" + what + ")"},
          call{"call", fails(call_error::no_credentials)}};
}

// C1's establish with one token altered on the wire (`said` names which), refused.
std::vector<step> tampered_establish(package_maker package, tap_spec tap, const std::string& said) {
  return {open{.package = std::move(package), .tap = std::move(tap)},
          set_blanket{cloaking::dynamic}, impersonate{client(0)}, note{"impersonate C1; " + said},
          call{"call", refused(protocol::status::auth_failed)}};
}

// NTLM's two client legs recorded on connection A and sent again on connection B, whose CHALLENGE
// differs: refused. The notes say what was recorded in the package's own words.
std::vector<step> replayed_authenticate(package_maker package, const std::string& recording,
                                        const std::string& recorded, const std::string& replay) {
  return {open{.package = std::move(package), .tap = tap_spec{}},
          set_blanket{cloaking::dynamic},
          impersonate{client(0)},
          note{"impersonate C1; establish on connection A (" + recording + ")"},
          call{"call", sees(client(0))},
          expect_recorded_legs{2},
          note{recorded},
          open{.package = replay_of_tap()},
          call{replay, refused(protocol::status::auth_failed)}};
}

// prot:integrity; the MIC of one call spoiled on the wire, the next one good again.
std::vector<step> tampered_mic(package_maker with_integrity) {
  return {open{.package = std::move(with_integrity), .tap = tap_spec{}},
          set_blanket{cloaking::dynamic},
          impersonate{client(0)},
          note{"impersonate C1; prot:integrity"},
          call{"call with a good MIC", sees(client(0))},
          spoil_next_mic{},
          call{"call with a spoiled MIC", refused(protocol::status::bad_mic)},
          call{"the next call, good MIC again", sees(client(0))}};
}

// Flips one bit of the establish token at `leg`: in its middle, or 8 bytes before its end.
tap_spec flip_one_bit(std::size_t leg, bool from_the_middle) {
  return tap_spec{leg, [from_the_middle](std::vector<std::byte>& token) {
                    if (token.empty()) return;
                    // kerberos: inside the authenticator; ntlm: inside the AUTHENTICATE
                    token[from_the_middle ? token.size() / 2 : token.size() - 8] ^= std::byte{0x01};
                  }};
}

}  // namespace

void add_attack_scenarios(std::vector<scenario>& t) {
  const worlds kerberos = only(world_kind::kerberos), ntlm = only(world_kind::ntlm);
  // ---- kerberos: what the ticket, the replay cache and the KDC must refuse
  t.push_back({.name = "kerberos/identity_without_a_principal_fails_with_no_credentials",
               .runs_in = kerberos,
               .cloaking = "dynamic",
               .steps = identity_without_credentials("no principal")});
  t.push_back({.name = "kerberos/context_from_another_connection_is_rejected",
               .runs_in = kerberos,
               .cloaking = "dynamic",
               .steps = context_from_another_connection()});
  t.push_back(
      {.name = "kerberos/ap_req_replayed_on_a_second_connection_is_rejected",
       .runs_in = kerberos,
       .cloaking = "dynamic",
       .steps = {open{.package = kerberos_package(), .tap = tap_spec{}},
                 set_blanket{cloaking::dynamic}, impersonate{client(0)},
                 note{"impersonate C1; establish on connection A (its AP-REQ recorded)"},
                 call{"call", sees(client(0))}, note{"recorded an AP-REQ of {token0} bytes"},
                 open{.package = replay_of_tap()},
                 call{"the same AP-REQ on connection B (replay cache on)",
                      refused(protocol::status::auth_failed)}}});
  t.push_back({.name = "kerberos/tampered_ap_req_is_rejected",
               .runs_in = kerberos,
               .cloaking = "dynamic",
               .steps = tampered_establish(kerberos_package(), flip_one_bit(0, false),
                                           "one bit of the AP-REQ flipped")});
  kerberos_client_options integrity;
  integrity.per_call = protection::integrity;
  t.push_back({.name = "kerberos/tampered_mic_is_rejected",
               .runs_in = kerberos,
               .cloaking = "dynamic",
               .steps = tampered_mic(kerberos_package(integrity))});
  kerberos_client_options cold;
  cold.tickets = ticket_state::cold;  // every new context asks the KDC for a service ticket
  cold.kdc_timeout = std::chrono::milliseconds(2000);
  t.push_back(
      {.name = "kerberos/kdc_down_gives_a_bounded_named_error",
       .runs_in = kerberos,
       .cloaking = "dynamic",
       .steps = {open{.package = kerberos_package(cold)}, set_blanket{cloaking::dynamic},
                 inject{fault::stop_kdc}, note{"KDC stopped (SIGSTOP); tickets:cold"},
                 start_clock{}, impersonate{client(0)},
                 call{"call (needs a service ticket)", fails(call_error::authentication_failed)},
                 revert{}, inject{fault::continue_kdc},
                 note{"the call failed after {waited:.2f} s (bound 2 s); KDC continued (SIGCONT)"},
                 impersonate{client(1)},
                 call{"call once the KDC answers again", sees(client(1))}}});

  // ---- ntlm: what the NTLM acceptor must refuse
  t.push_back({.name = "ntlm/identity_without_a_user_fails_with_no_credentials",
               .runs_in = ntlm,
               .cloaking = "dynamic",
               .steps = identity_without_credentials("no NTLM user")});
  t.push_back({.name = "ntlm/user_without_an_identity_is_refused_as_unknown",
               .runs_in = ntlm,
               .cloaking = "dynamic",
               .steps = {open{.package = ntlm_as_the_stranger()}, set_blanket{cloaking::dynamic},
                         impersonate{stranger},
                         note{"impersonate uid {stranger}, presenting CB\\stranger (in the user "
                              "file, not in the idmap)"},
                         call{"call", refused(protocol::status::unknown_principal)}}});
  t.push_back({.name = "ntlm/wrong_nt_hash_is_rejected",
               .runs_in = ntlm,
               .cloaking = "dynamic",
               .steps = {open{.package = ntlm_with_a_wrong_hash()}, set_blanket{cloaking::dynamic},
                         impersonate{client(0)},
                         note{"impersonate C1, whose credentials carry a wrong NT hash"},
                         call{"call", refused(protocol::status::auth_failed)}}});
  t.push_back({.name = "ntlm/context_from_another_connection_is_rejected",
               .runs_in = ntlm,
               .cloaking = "dynamic",
               .steps = context_from_another_connection()});
  t.push_back({.name = "ntlm/authenticate_replayed_on_a_second_connection_is_rejected",
               .runs_in = ntlm,
               .cloaking = "dynamic",
               .steps = replayed_authenticate(
                   ntlm_package(), "NEGOTIATE and AUTHENTICATE recorded",
                   "recorded a NEGOTIATE of {token0} bytes and an AUTHENTICATE of {token1}",
                   "the same messages on connection B (a new CHALLENGE)")});
  t.push_back({.name = "ntlm/tampered_authenticate_is_rejected",
               .runs_in = ntlm,
               .cloaking = "dynamic",
               .steps = tampered_establish(ntlm_package(), flip_one_bit(1, true),
                                           "one bit of the AUTHENTICATE flipped")});
  ntlm_client_options ntlm_integrity;
  ntlm_integrity.per_call = protection::integrity;
  t.push_back({.name = "ntlm/tampered_mic_is_rejected",
               .runs_in = ntlm,
               .cloaking = "dynamic",
               .steps = tampered_mic(ntlm_package(ntlm_integrity))});

  // ---- negotiate: what the SPNEGO acceptor must refuse, over each mechanism (named mech:M/...)
  const worlds over_krb5 = only(world_kind::negotiate_krb5),
               over_ntlm = only(world_kind::negotiate_ntlm);
  t.push_back({.name = "negotiate/identity_without_a_user_fails_with_no_credentials",
               .runs_in = negotiate_mechs,
               .cloaking = "dynamic",
               .steps = identity_without_credentials("no principal, no NTLM user")});
  t.push_back({.name = "negotiate/context_from_another_connection_is_rejected",
               .runs_in = negotiate_mechs,
               .cloaking = "dynamic",
               .steps = context_from_another_connection()});
  // The token that authenticates: over krb5 the NegTokenInit carrying the AP-REQ (the first leg),
  // over NTLM the NegTokenResp carrying the AUTHENTICATE and the mechListMIC (the second).
  t.push_back({.name = "negotiate/tampered_token_is_rejected",
               .runs_in = over_krb5,
               .cloaking = "dynamic",
               .steps = tampered_establish(negotiate_package(), flip_one_bit(0, true),
                                           "one bit of the NegTokenInit (its AP-REQ) flipped")});
  t.push_back(
      {.name = "negotiate/tampered_token_is_rejected",
       .runs_in = over_ntlm,
       .cloaking = "dynamic",
       .steps = tampered_establish(negotiate_package(), flip_one_bit(1, true),
                                   "one bit of the NegTokenResp (its AUTHENTICATE) flipped")});
  t.push_back({.name = "negotiate/authenticate_replayed_on_a_second_connection_is_rejected",
               .runs_in = over_ntlm,
               .cloaking = "dynamic",
               .steps = replayed_authenticate(
                   negotiate_package(),
                   "NegTokenInit with the NEGOTIATE, NegTokenResp with the AUTHENTICATE, recorded",
                   "recorded a NegTokenInit of {token0} bytes and a NegTokenResp of {token1}",
                   "the same tokens on connection B (a new CHALLENGE)")});
  t.push_back({.name = "negotiate/tampered_mic_is_rejected",
               .runs_in = negotiate_mechs,
               .cloaking = "dynamic",
               .steps = tampered_mic(negotiate_package(protection::integrity))});
  t.push_back({.name = "negotiate/tampered_sealed_message_is_rejected",
               .runs_in = negotiate_mechs,
               .cloaking = "dynamic",
               .steps = {open{.package = negotiate_package(protection::privacy), .tap = tap_spec{}},
                         set_blanket{cloaking::dynamic}, impersonate{client(0)},
                         note{"impersonate C1; prot:privacy (every request and reply sealed)"},
                         call{"sealed call", sees(client(0))}, spoil_next_seal{},
                         call{"a call whose sealed request was spoiled on the wire",
                              refused(protocol::status::not_sealed)},
                         call{"the next call, sealed intact again", sees(client(0))}}});
}

}  // namespace cloak::verify
