// The parts of a client and a server package that are the same for every GSSAPI mechanism: a
// package derives from these, acquires its credentials and runs its legs; signing, verifying and
// accepting come from here.
#pragma once

#include <cloak/auth.hpp>
#include <memory>
#include <span>

#include "gss_exchange.hpp"
#include "gss_protect.hpp"
#include "idmap.hpp"

namespace cloak::detail {

// A client package whose contexts are `State` (derived from gss_client_state).
template <class State>
class gss_client_package : public client_package {
 public:
  bool needs_kernel_credentials() const noexcept override { return false; }

  bool sign(client_context_state* state, std::span<const std::byte> message,
            token_buffer& mic) noexcept override {
    auto* st = dynamic_cast<State*>(state);
    if (!st) return false;
    return sign_mic(mech_.mic, st->ctx.get(), message, mic, st->mic_length);
  }

  bool seal(client_context_state* state, std::span<const std::byte> message,
            token_buffer& sealed) noexcept override {
    auto* st = dynamic_cast<State*>(state);
    return st &&
           wrap_private(mech_.mic, st->ctx.get(), message, sealed, st->layout) == seal_result::ok;
  }

  bool unseal(client_context_state* state, std::span<const std::byte> sealed,
              token_buffer& message) noexcept override {
    auto* st = dynamic_cast<State*>(state);
    return st &&
           unwrap_private(mech_.mic, st->ctx.get(), sealed, message, st->layout) == seal_result::ok;
  }

 protected:
  explicit gss_client_package(gss_mechanism mech) noexcept : mech_(mech) {}

 private:
  gss_mechanism mech_;
};

// A server package whose contexts are `State` (derived from gss_server_state): one acceptor
// credential and one name map for every connection, both set by the derived constructor and
// read-only afterwards (accept and verify run on many connection threads at once).
template <class State>
class gss_server_package : public server_package {
 public:
  accept_outcome accept(const peer_info& /*peer*/, std::span<const std::byte> token,
                        std::unique_ptr<server_context_state> state, token_buffer& reply) override {
    acceptor a{cred_.get(), mech_.oid, &names_, refusal_, mech_.mic, form_of_};
    return accept_leg<State>(a, std::move(state), token, reply);
  }

  bool verify(server_context_state* state, std::span<const std::byte> message,
              std::span<const std::byte> mic) noexcept override {
    auto* st = dynamic_cast<State*>(state);
    return st && verify_mic(st->form, st->ctx.get(), message, mic);
  }

  bool unseal(server_context_state* state, std::span<const std::byte> sealed,
              token_buffer& message) noexcept override {
    auto* st = dynamic_cast<State*>(state);
    return st &&
           unwrap_private(st->form, st->ctx.get(), sealed, message, st->layout) == seal_result::ok;
  }

  bool seal(server_context_state* state, std::span<const std::byte> message,
            token_buffer& sealed) noexcept override {
    auto* st = dynamic_cast<State*>(state);
    return st &&
           wrap_private(st->form, st->ctx.get(), message, sealed, st->layout) == seal_result::ok;
  }

 protected:
  explicit gss_server_package(gss_mechanism mech,
                              protocol::status (*refusal)(const gss_status&) noexcept = nullptr)
      : mech_(mech), refusal_(refusal) {}

  gss_cred cred_;
  idmap names_;
  mic_form (*form_of_)(gss_OID negotiated) noexcept = nullptr;  // SPNEGO: by the inner mechanism

 private:
  gss_mechanism mech_;
  protocol::status (*refusal_)(const gss_status&) noexcept;
};

}  // namespace cloak::detail
