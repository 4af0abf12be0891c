// The client packages verify's scenarios present: the world's own with options, the attacker's
// (a tap on the wire, a replay of what it recorded) and the impostors (a wrong key, a local
// establish across hosts).
#pragma once

#include <cloak/auth.hpp>
#include <cloak/kerberos.hpp>
#include <cloak/negotiate.hpp>
#include <cloak/ntlm.hpp>
#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "scenario.hpp"

namespace cloak::verify {

// Wraps a client package to see or change what goes on the wire: every establish token of the last
// establish is recorded (the first: kerberos's AP-REQ, ntlm's NEGOTIATE), and the one at
// `alter_leg` (0: the first) may be altered; the MIC or the sealed payload of the next call may be
// spoiled.
class tap_package final : public client_package {
 public:
  tap_package(std::unique_ptr<client_package> inner, tap_spec spec)
      : inner_(std::move(inner)), spec_(std::move(spec)) {}
  std::vector<std::vector<std::byte>> tokens;
  bool spoil_next_mic = false;
  bool spoil_next_seal = false;

  package_id id() const noexcept override { return inner_->id(); }
  bool needs_kernel_credentials() const noexcept override {
    return inner_->needs_kernel_credentials();
  }
  protection per_call() const noexcept override { return inner_->per_call(); }
  establish_outcome establish(const presentation& p, establish_legs& legs) noexcept override;
  bool sign(client_context_state* state, std::span<const std::byte> message,
            token_buffer& mic) noexcept override;
  bool seal(client_context_state* state, std::span<const std::byte> message,
            token_buffer& sealed) noexcept override;
  bool unseal(client_context_state* state, std::span<const std::byte> sealed,
              token_buffer& message) noexcept override {
    return inner_->unseal(state, sealed, message);
  }

 private:
  class tap_legs;
  std::unique_ptr<client_package> inner_;
  tap_spec spec_;
};

// The world's own package, with options.
package_maker kerberos_package(kerberos_client_options options = {});
package_maker ntlm_package(ntlm_client_options options = {});
// negotiate over the mechanism the world runs now (world::mech), with that protection.
package_maker negotiate_package(protection per_call = protection::none);
// Sends the establish tokens the scenario's tap recorded as its own legs, whatever the server
// answers: what an attacker who copied them off the wire could do (kerberos: the AP-REQ; ntlm:
// NEGOTIATE, then the AUTHENTICATE that answered another connection's CHALLENGE).
package_maker replay_of_tap();
// NTLM as CB\stranger: a user the acceptor's file knows (the world made it) whom the idmap maps to
// nobody.
package_maker ntlm_as_the_stranger();
// NTLM as C1 with a wrong NT hash.
package_maker ntlm_with_a_wrong_hash();
// The local package (kernel credentials), and one that sends a local establish whatever the
// channel: what a client that ignores the rules would do across hosts.
package_maker local_package();
// The stranger's account, for the domain the ntlm world makes.
ntlm_account the_ntlm_stranger(std::uint32_t uid);
package_maker claims_local();

}  // namespace cloak::verify
