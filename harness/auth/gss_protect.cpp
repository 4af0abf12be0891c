// MICs and sealing under an established GSS context, for every GSSAPI package.
#include "gss_protect.hpp"

#include <cstring>

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

// Makes `b` hold `n` bytes without allocating when its capacity allows.
bool sized(token_buffer& b, std::size_t n) noexcept {
  try {
    b.resize(n);
  } catch (...) {
    return false;
  }
  return true;
}

// Header and trailer lengths of a sealed message under `ctx` (gss_wrap_iov_length). False when GSS
// cannot say; `layout.padded` when the mechanism pads (the plain form is used instead).
bool learn_layout(gss_ctx_id_t ctx, seal_layout& layout) noexcept {
  gss_iov_buffer_desc iov[4];
  iov[0].type = GSS_IOV_BUFFER_TYPE_HEADER;
  iov[1].type = GSS_IOV_BUFFER_TYPE_DATA;
  iov[2].type = GSS_IOV_BUFFER_TYPE_PADDING;
  iov[3].type = GSS_IOV_BUFFER_TYPE_TRAILER;
  for (auto& b : iov) b.buffer = {0, nullptr};
  static std::byte probe[64];
  iov[1].buffer = {sizeof probe, probe};
  OM_uint32 minor = 0;
  int conf_state = 0;
  if (GSS_ERROR(gss_wrap_iov_length(&minor, ctx, 1, GSS_C_QOP_DEFAULT, &conf_state, iov, 4)))
    return false;
  layout.header = iov[0].buffer.length;
  layout.trailer = iov[3].buffer.length;
  layout.padded = iov[2].buffer.length != 0;
  layout.known = true;
  return true;
}

// HEADER | DATA | TRAILER in `sealed`, the data copied in and encrypted in place.
seal_result wrap_iov(gss_ctx_id_t ctx, std::span<const std::byte> message, token_buffer& sealed,
                     const seal_layout& layout) noexcept {
  if (!sized(sealed, layout.header + message.size() + layout.trailer)) return seal_result::failed;
  if (!message.empty()) std::memcpy(sealed.data() + layout.header, message.data(), message.size());
  gss_iov_buffer_desc iov[4];
  iov[0] = {GSS_IOV_BUFFER_TYPE_HEADER, {layout.header, sealed.data()}};
  iov[1] = {GSS_IOV_BUFFER_TYPE_DATA, {message.size(), sealed.data() + layout.header}};
  iov[2] = {GSS_IOV_BUFFER_TYPE_PADDING, {0, nullptr}};
  iov[3] = {GSS_IOV_BUFFER_TYPE_TRAILER,
            {layout.trailer, sealed.data() + layout.header + message.size()}};
  OM_uint32 minor = 0;
  int conf_state = 0;
  if (GSS_ERROR(gss_wrap_iov(&minor, ctx, 1, GSS_C_QOP_DEFAULT, &conf_state, iov, 4)) ||
      iov[0].buffer.length != layout.header || iov[3].buffer.length != layout.trailer ||
      iov[2].buffer.length != 0) {
    return seal_result::failed;
  }
  return conf_state ? seal_result::ok : seal_result::not_confidential;
}

// `sealed` copied into `message`, opened in place, the data moved to the front.
seal_result unwrap_iov(gss_ctx_id_t ctx, std::span<const std::byte> sealed, token_buffer& message,
                       const seal_layout& layout) noexcept {
  if (sealed.size() < layout.header + layout.trailer) return seal_result::failed;
  if (!sized(message, sealed.size())) return seal_result::failed;
  std::memcpy(message.data(), sealed.data(), sealed.size());
  std::size_t n = sealed.size() - layout.header - layout.trailer;
  gss_iov_buffer_desc iov[4];
  iov[0] = {GSS_IOV_BUFFER_TYPE_HEADER, {layout.header, message.data()}};
  iov[1] = {GSS_IOV_BUFFER_TYPE_DATA, {n, message.data() + layout.header}};
  iov[2] = {GSS_IOV_BUFFER_TYPE_PADDING, {0, nullptr}};
  iov[3] = {GSS_IOV_BUFFER_TYPE_TRAILER, {layout.trailer, message.data() + layout.header + n}};
  OM_uint32 minor = 0;
  int conf_state = 0;
  if (gss_unwrap_iov(&minor, ctx, &conf_state, nullptr, iov, 4) != GSS_S_COMPLETE)
    return seal_result::failed;
  if (!conf_state) return seal_result::not_confidential;
  std::memmove(message.data(), message.data() + layout.header, n);
  message.resize(n);
  return seal_result::ok;
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

seal_result wrap_private(mic_form form, gss_ctx_id_t ctx, std::span<const std::byte> message,
                         token_buffer& sealed, seal_layout& layout) noexcept {
  if (ctx == GSS_C_NO_CONTEXT) return seal_result::failed;
  if (form == mic_form::iov && !layout.known && !learn_layout(ctx, layout))
    return seal_result::failed;
  if (form == mic_form::plain || layout.padded) return wrap_private(ctx, message, sealed);
  return wrap_iov(ctx, message, sealed, layout);
}

seal_result unwrap_private(mic_form form, gss_ctx_id_t ctx, std::span<const std::byte> sealed,
                           token_buffer& message, seal_layout& layout) noexcept {
  if (ctx == GSS_C_NO_CONTEXT) return seal_result::failed;
  if (form == mic_form::iov && !layout.known && !learn_layout(ctx, layout))
    return seal_result::failed;
  if (form == mic_form::plain || layout.padded) return unwrap_private(ctx, sealed, message);
  return unwrap_iov(ctx, sealed, message, layout);
}

}  // namespace cloak::detail
