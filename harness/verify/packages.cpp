// The client packages verify's scenarios present (packages.hpp).
#include "packages.hpp"

#include <stdexcept>
#include <string>
#include <utility>

#include "runner.hpp"
#include "world.hpp"

namespace cloak::verify {

class tap_package::tap_legs final : public establish_legs {
 public:
  tap_legs(tap_package& tap, establish_legs& inner) : tap_(tap), inner_(inner) {}
  call_error leg(std::span<const std::byte> token, leg_reply& out) noexcept override {
    std::size_t index = next_++;
    try {
      tap_.tokens.emplace_back(token.begin(), token.end());
      if (index == tap_.spec_.alter_leg && tap_.spec_.alter) {
        altered_.assign(token.begin(), token.end());
        tap_.spec_.alter(altered_);
        return inner_.leg(altered_, out);
      }
    } catch (...) {
      return call_error::protocol;
    }
    return inner_.leg(token, out);
  }

 private:
  tap_package& tap_;
  establish_legs& inner_;
  std::size_t next_ = 0;
  std::vector<std::byte> altered_;
};

establish_outcome tap_package::establish(const presentation& p, establish_legs& legs) noexcept {
  tokens.clear();
  tap_legs tapped(*this, legs);
  return inner_->establish(p, tapped);
}

namespace {

// What an attacker on the wire does to a MIC or a sealed message: flips bits in its middle, once.
bool spoiled_once(bool ok, bool& asked, token_buffer& out, std::byte mask) noexcept {
  if (ok && std::exchange(asked, false) && !out.empty()) out[out.size() / 2] ^= mask;
  return ok;
}

}  // namespace

bool tap_package::sign(client_context_state* state, std::span<const std::byte> message,
                       token_buffer& mic) noexcept {
  return spoiled_once(inner_->sign(state, message, mic), spoil_next_mic, mic, std::byte{0x5a});
}

bool tap_package::seal(client_context_state* state, std::span<const std::byte> message,
                       token_buffer& sealed) noexcept {
  return spoiled_once(inner_->seal(state, message, sealed), spoil_next_seal, sealed,
                      std::byte{0x01});
}

namespace {

class replay_package final : public client_package {
 public:
  replay_package(std::vector<std::vector<std::byte>> tokens, package_id id)
      : tokens_(std::move(tokens)), id_(id) {}
  package_id id() const noexcept override { return id_; }
  bool needs_kernel_credentials() const noexcept override { return false; }
  establish_outcome establish(const presentation&, establish_legs& legs) noexcept override {
    establish_outcome out;
    for (const auto& token : tokens_) {
      leg_reply reply;
      out.error = legs.leg(token, reply);
      if (out.error != call_error::ok || !reply.more) break;
    }
    return out;
  }

 private:
  std::vector<std::vector<std::byte>> tokens_;
  package_id id_;
};

class claims_local_package final : public client_package {
 public:
  package_id id() const noexcept override { return package_id::local; }
  bool needs_kernel_credentials() const noexcept override { return false; }
  establish_outcome establish(const presentation&, establish_legs& legs) noexcept override {
    establish_outcome out;
    leg_reply reply;
    out.error = legs.leg({}, reply);
    return out;
  }
};

const std::string stranger_user = "CB\\stranger";
const std::string stranger_password = "the stranger's password";

}  // namespace

package_maker kerberos_package(kerberos_client_options options) {
  return [options](world& w, session&) { return make_kerberos_client(w.kerberos(), options); };
}

package_maker ntlm_package(ntlm_client_options options) {
  return [options](world& w, session&) { return make_ntlm_client(w.ntlm(), options); };
}

package_maker negotiate_package(protection per_call) {
  return [per_call](world& w, session&) {
    negotiate_client_options o;
    o.mech = w.mech();
    o.per_call = per_call;
    return make_negotiate_client(w.negotiate(), o);
  };
}

package_maker replay_of_tap() {
  return [](world&, session& s) -> std::unique_ptr<client_package> {
    if (!s.tap) throw std::logic_error("a replay needs a tapped connection before it");
    // Kerberos establishes in one leg (the AP-REQ); NTLM's two client legs are replayed together.
    if (s.tap->id() == package_id::kerberos)
      return std::make_unique<replay_package>(
          std::vector<std::vector<std::byte>>{s.tap->tokens.at(0)}, package_id::kerberos);
    return std::make_unique<replay_package>(s.tap->tokens, s.tap->id());
  };
}

package_maker ntlm_as_the_stranger() {
  return [](world& w, session& s) {
    std::uint32_t stranger = w.resolve(verify::stranger).uid;
    auto credentials = std::make_shared<ntlm_credentials>(
        w.ntlm_domain(), std::vector<ntlm_account>{ntlm_account{stranger, stranger_user,
                                                                nt_hash_hex(stranger_password)}});
    s.keep(credentials);
    return make_ntlm_client(*credentials);
  };
}

package_maker ntlm_with_a_wrong_hash() {
  return [](world& w, session& s) {
    identity c1 = w.clients().client(0);
    auto credentials = std::make_shared<ntlm_credentials>(
        w.ntlm_domain(),
        std::vector<ntlm_account>{ntlm_account{
            c1.uid, ntlm_user_for(c1.uid, w.backend().process_identity(), w.ntlm_domain().domain),
            nt_hash_hex("not C1's password")}});
    s.keep(credentials);
    return make_ntlm_client(*credentials);
  };
}

package_maker local_package() {
  return [](world&, session&) { return make_local_client(); };
}

package_maker claims_local() {
  return [](world&, session&) { return std::make_unique<claims_local_package>(); };
}

ntlm_account the_ntlm_stranger(std::uint32_t uid) {
  return ntlm_account{uid, stranger_user, nt_hash_hex(stranger_password)};
}

}  // namespace cloak::verify
