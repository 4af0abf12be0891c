// MICs and sealing under an established GSS context, for every GSSAPI package.
#include "gss_protect.hpp"

namespace cloak::detail {

namespace {

// Copies what GSS allocated into the reused buffer.
bool copy_into(const gss_buffer& from, token_buffer& to) noexcept {
  try {
    to.assign(from.bytes().begin(), from.bytes().end());
  } catch (...) {
    return false;
  }
  return true;
}

// What a wrap or an unwrap that GSS completed gives: packet privacy takes only what was encrypted.
seal_result sealed_into(int conf_state, const gss_buffer& from, token_buffer& to) noexcept {
  if (!conf_state) return seal_result::not_confidential;
  return copy_into(from, to) ? seal_result::ok : seal_result::failed;
}

// The iov form writes the MIC into our reused buffer: GSS allocates nothing either.
bool sign_mic_iov(gss_ctx_id_t ctx, std::span<const std::byte> message, token_buffer& mic,
                  std::size_t& mic_length) noexcept {
  gss_iov_buffer_desc iov[2];
  iov[0].type = GSS_IOV_BUFFER_TYPE_DATA;
  iov[0].buffer = buffer_of(message);
  iov[1].type = GSS_IOV_BUFFER_TYPE_MIC_TOKEN;
  iov[1].buffer = {0, nullptr};
  OM_uint32 minor = 0;
  if (mic_length == 0) {
    if (GSS_ERROR(gss_get_mic_iov_length(&minor, ctx, GSS_C_QOP_DEFAULT, iov, 2))) return false;
    mic_length = iov[1].buffer.length;
  }
  if (mic.capacity() < mic_length) {
    try {
      mic.reserve(mic_length);
    } catch (...) {
      return false;
    }
  }
  mic.resize(mic_length);
  iov[1].buffer = {mic.size(), mic.data()};
  return !GSS_ERROR(gss_get_mic_iov(&minor, ctx, GSS_C_QOP_DEFAULT, iov, 2));
}

// gss-ntlmssp has no iov MIC: GSS allocates each MIC (16 bytes), copied into the reused buffer.
bool sign_mic_plain(gss_ctx_id_t ctx, std::span<const std::byte> message,
                    token_buffer& mic) noexcept {
  gss_buffer_desc in = buffer_of(message);
  gss_buffer out;
  OM_uint32 minor = 0;
  if (GSS_ERROR(gss_get_mic(&minor, ctx, GSS_C_QOP_DEFAULT, &in, out.out()))) return false;
  return copy_into(out, mic);
}

}  // namespace

bool sign_mic(mic_form form, gss_ctx_id_t ctx, std::span<const std::byte> message,
              token_buffer& mic, std::size_t& mic_length) noexcept {
  if (ctx == GSS_C_NO_CONTEXT) return false;
  return form == mic_form::iov ? sign_mic_iov(ctx, message, mic, mic_length)
                               : sign_mic_plain(ctx, message, mic);
}

bool verify_mic(mic_form form, gss_ctx_id_t ctx, std::span<const std::byte> message,
                std::span<const std::byte> mic) noexcept {
  if (ctx == GSS_C_NO_CONTEXT) return false;
  OM_uint32 minor = 0;
  if (form == mic_form::plain) {
    gss_buffer_desc msg = buffer_of(message);
    gss_buffer_desc token = buffer_of(mic);
    return gss_verify_mic(&minor, ctx, &msg, &token, nullptr) == GSS_S_COMPLETE;
  }
  gss_iov_buffer_desc iov[2];
  iov[0].type = GSS_IOV_BUFFER_TYPE_DATA;
  iov[0].buffer = buffer_of(message);
  iov[1].type = GSS_IOV_BUFFER_TYPE_MIC_TOKEN;
  iov[1].buffer = buffer_of(mic);
  return gss_verify_mic_iov(&minor, ctx, nullptr, iov, 2) == GSS_S_COMPLETE;
}

seal_result wrap_private(gss_ctx_id_t ctx, std::span<const std::byte> message,
                         token_buffer& sealed) noexcept {
  if (ctx == GSS_C_NO_CONTEXT) return seal_result::failed;
  gss_buffer_desc in = buffer_of(message);
  gss_buffer out;
  int conf_state = 0;
  OM_uint32 minor = 0;
  if (GSS_ERROR(gss_wrap(&minor, ctx, 1, GSS_C_QOP_DEFAULT, &in, &conf_state, out.out())))
    return seal_result::failed;
  return sealed_into(conf_state, out, sealed);
}

seal_result unwrap_private(gss_ctx_id_t ctx, std::span<const std::byte> sealed,
                           token_buffer& message) noexcept {
  if (ctx == GSS_C_NO_CONTEXT) return seal_result::failed;
  gss_buffer_desc in = buffer_of(sealed);
  gss_buffer out;
  int conf_state = 0;
  OM_uint32 minor = 0;
  if (gss_unwrap(&minor, ctx, &in, out.out(), &conf_state, nullptr) != GSS_S_COMPLETE)
    return seal_result::failed;
  return sealed_into(conf_state, out, message);
}

}  // namespace cloak::detail
