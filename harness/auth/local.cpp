// The `local` package: the kernel says who the caller is. The client presents an identity by being
// it while the establish frame is sent (the kernel attaches SCM_CREDENTIALS, or the model channel
// reads the model's thread token); the server takes the identity from those credentials alone.
#include <cloak/auth.hpp>
#include <cloak/backend.hpp>

namespace cloak {

namespace {

class local_client final : public client_package {
 public:
  package_id id() const noexcept override { return package_id::local; }
  bool needs_kernel_credentials() const noexcept override { return true; }

  establish_outcome establish(const presentation& p, establish_legs& legs) noexcept override {
    establish_outcome out;
    temporary_identity presenting(p.backend, p.who);
    if (presenting.error() != switch_error::ok) {
      out.error = call_error::identity_switch_failed;
      return out;
    }
    out.switched_identity = presenting.switched();
    leg_reply reply;
    out.error = legs.leg({}, reply);
    if (out.error == call_error::ok && reply.more)
      out.error = call_error::protocol;  // one leg only
    return out;
  }
};

class local_server final : public server_package {
 public:
  package_id id() const noexcept override { return package_id::local; }

  accept_outcome accept(const peer_info& peer, std::span<const std::byte> token,
                        std::unique_ptr<server_context_state>, token_buffer&) override {
    accept_outcome a;
    if (!peer.local_channel) {
      a.refusal = protocol::status::package_unavailable;
      a.detail =
          "establish: the local package needs kernel peer credentials, which this channel cannot "
          "carry";
    } else if (!peer.kernel) {
      a.refusal = protocol::status::no_credentials;
      a.detail = "establish: no kernel credentials on this frame";
    } else if (!token.empty()) {
      a.refusal = protocol::status::bad_body;
      a.detail = "establish: the local package takes no token";
    } else {
      a.result = accept_outcome::kind::done;
      a.who = *peer.kernel;
    }
    return a;
  }
};

}  // namespace

std::unique_ptr<client_package> make_local_client() { return std::make_unique<local_client>(); }
std::unique_ptr<server_package> make_local_server() { return std::make_unique<local_server>(); }

}  // namespace cloak
