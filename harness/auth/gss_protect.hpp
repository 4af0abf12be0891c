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

// The flags a context asks for to carry `p`: integrity GSS_C_INTEG_FLAG, privacy also
// GSS_C_CONF_FLAG (gss-ntlmssp negotiates sealing only when asked).
inline OM_uint32 protection_flags(protection p) noexcept {
  switch (p) {
    case protection::none:
      return 0;
    case protection::integrity:
      return GSS_C_INTEG_FLAG;
    case protection::privacy:
      return GSS_C_INTEG_FLAG | GSS_C_CONF_FLAG;
  }
  return 0;
}

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

// The same under `form`: iov writes the token into `sealed` and opens it in place in `message`
// (gss_wrap_iov / gss_unwrap_iov: GSS allocates nothing once the buffers have their capacity);
// plain is wrap_private / unwrap_private above (GSS allocates each token, as its MIC).
seal_result wrap_private(mic_form form, gss_ctx_id_t ctx, std::span<const std::byte> message,
                         token_buffer& sealed, seal_layout& layout) noexcept;
seal_result unwrap_private(mic_form form, gss_ctx_id_t ctx, std::span<const std::byte> sealed,
                           token_buffer& message, seal_layout& layout) noexcept;

}  // namespace cloak::detail
