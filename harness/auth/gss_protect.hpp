// Per-call protection under an established GSS context: a MIC on every call (prot:integrity) and
// sealing with gss_wrap/gss_unwrap (prot:privacy, DCOM's packet privacy). Called on the call path:
// no exception, and the iov MIC allocates nothing once `mic` has its capacity.
#pragma once

#include <cloak/auth.hpp>
#include <cstddef>
#include <cstdint>
#include <span>

#include "gss_exchange.hpp"

namespace cloak::detail {

// Writes the MIC of `message` into `mic`. `mic_length` caches the iov form's fixed MIC length per
// context (0 until the first sign). False on failure.
bool sign_mic(mic_form form, gss_ctx_id_t ctx, std::span<const std::byte> message,
              token_buffer& mic, std::size_t& mic_length) noexcept;
bool verify_mic(mic_form form, gss_ctx_id_t ctx, std::span<const std::byte> message,
                std::span<const std::byte> mic) noexcept;

enum class seal_result : std::uint8_t {
  ok,
  failed,            // GSS refused (a tampered or replayed token, no context, no memory)
  not_confidential,  // the mechanism did not encrypt (conf_state 0): packet privacy refuses it
};

// gss_wrap of `message` into `sealed` with confidentiality asked for; ok only when conf_state says
// the mechanism encrypted it.
seal_result wrap_private(gss_ctx_id_t ctx, std::span<const std::byte> message,
                         token_buffer& sealed) noexcept;
// gss_unwrap of `sealed` into `message`; ok only when the token verified and was encrypted.
seal_result unwrap_private(gss_ctx_id_t ctx, std::span<const std::byte> sealed,
                           token_buffer& message) noexcept;

}  // namespace cloak::detail
