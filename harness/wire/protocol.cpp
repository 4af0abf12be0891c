// The codec: every frame header and body of docs/protocol.md, encoded and decoded in one place.
#include <algorithm>
#include <bit>
#include <cloak/enum_names.hpp>
#include <cloak/protocol.hpp>

namespace cloak::protocol {

static_assert(std::endian::native == std::endian::little,
              "the wire format is little-endian; add byte swaps for this target");

namespace {

constexpr auto status_names =
    make_enum_names<status>("status",
                            {
                                {status::ok, "ok"},
                                {status::bad_frame, "bad_frame"},
                                {status::unknown_type, "unknown_type"},
                                {status::no_credentials, "no_credentials"},
                                {status::unknown_context, "unknown_context"},
                                {status::too_many_contexts, "too_many_contexts"},
                                {status::bad_level, "bad_level"},
                                {status::identify_only, "identify_only"},
                                {status::anonymous_only, "anonymous_only"},
                                {status::too_large, "too_large"},
                                {status::busy, "busy"},
                                {status::internal, "internal"},
                                {status::bad_body, "bad_body"},
                                {status::unknown_package, "unknown_package"},
                                {status::package_unavailable, "package_unavailable"},
                                {status::auth_failed, "auth_failed"},
                                {status::unknown_principal, "unknown_principal"},
                                {status::bad_mic, "bad_mic"},
                                {status::no_next_hop, "no_next_hop"},
                                {status::clock_skew, "clock_skew"},
                                {status::not_sealed, "not_sealed"},
                            },
                            "unknown_status");

constexpr auto type_names =
    make_enum_names<msg_type>("message type",
                              {
                                  {msg_type::establish, "establish"},
                                  {msg_type::established, "established"},
                                  {msg_type::call, "call"},
                                  {msg_type::reply, "reply"},
                                  {msg_type::release, "release"},
                                  {msg_type::released, "released"},
                                  {msg_type::access_check, "access_check"},
                                  {msg_type::access_result, "access_result"},
                                  {msg_type::establish_continue, "establish_continue"},
                                  {msg_type::forward_call, "forward_call"},
                                  {msg_type::forwarded, "forwarded"},
                                  {msg_type::error, "error"},
                              },
                              "unknown_type");

}  // namespace

std::string_view to_string(status s) noexcept { return status_names.to_string(s); }
std::string_view to_string(msg_type t) noexcept { return type_names.to_string(t); }

void encode_header(const header& h, std::byte* out) noexcept {
  put<std::uint32_t>(out, h.magic);
  put<std::uint8_t>(out + 4, h.version);
  put<std::uint8_t>(out + 5, static_cast<std::uint8_t>(h.type));
  put<std::uint16_t>(out + 6, h.flags);
  put<std::uint32_t>(out + 8, h.request_id);
  put<std::uint32_t>(out + 12, h.length);
}

parse_error decode_header(std::span<const std::byte> in, header& out) noexcept {
  if (in.size() < header_size) return parse_error::need_more;
  const std::byte* p = in.data();
  out.magic = get<std::uint32_t>(p);
  out.version = get<std::uint8_t>(p + 4);
  out.type = static_cast<msg_type>(get<std::uint8_t>(p + 5));
  out.flags = get<std::uint16_t>(p + 6);
  out.request_id = get<std::uint32_t>(p + 8);
  out.length = get<std::uint32_t>(p + 12);
  if (out.magic != magic) return parse_error::bad_magic;
  if (out.version != version) return parse_error::bad_version;
  if (out.length > max_payload) return parse_error::too_large;
  return parse_error::ok;
}

bool valid_level(std::uint8_t level) noexcept {
  return level >= static_cast<std::uint8_t>(impersonation_level::anonymous) &&
         level <= static_cast<std::uint8_t>(impersonation_level::delegate);
}

// ---- bodies
// ----------------------------------------------------------------------------------------

namespace {

std::span<const std::byte> bytes_at(std::span<const std::byte> body, std::size_t at,
                                    std::size_t n) {
  return body.subspan(at, n);
}

void put_bytes(std::byte* out, std::span<const std::byte> bytes) noexcept {
  if (!bytes.empty()) std::memcpy(out, bytes.data(), bytes.size());
}

// established and reply share their first 24 bytes: status u16, level u8, anon u8, then
// (established only) more u8, protection u8, pad u16; context u64, uid u32, gid u32.
void put_view(std::byte* out, const context_view& v) noexcept {
  put<std::uint16_t>(out, static_cast<std::uint16_t>(v.result));
  put<std::uint8_t>(out + 2, v.level);
  put<std::uint8_t>(out + 3, v.anonymous ? 1 : 0);
  put<std::uint64_t>(out + 8, v.context);
  put<std::uint32_t>(out + 16, v.uid);
  put<std::uint32_t>(out + 20, v.gid);
}

context_view get_view(const std::byte* in) noexcept {
  context_view v;
  v.result = static_cast<status>(get<std::uint16_t>(in));
  v.level = get<std::uint8_t>(in + 2);
  v.anonymous = get<std::uint8_t>(in + 3) != 0;
  v.context = get<std::uint64_t>(in + 8);
  v.uid = get<std::uint32_t>(in + 16);
  v.gid = get<std::uint32_t>(in + 20);
  return v;
}

}  // namespace

std::size_t body_size(const establish_request& m) noexcept {
  return establish_fixed + m.token.size();
}
std::size_t body_size(const continue_request& m) noexcept {
  return continue_fixed + m.token.size();
}
std::size_t body_size(const established_reply& m) noexcept {
  return established_fixed + m.token.size();
}
std::size_t body_size(const call_request& m) noexcept {
  return call_fixed + m.mic.size() + m.payload.size();
}
std::size_t body_size(const call_reply& m) noexcept { return reply_fixed + m.payload.size(); }
std::size_t body_size(const release_request&) noexcept { return release_body; }
std::size_t body_size(const released_reply&) noexcept { return released_body; }
std::size_t body_size(const access_check_request&) noexcept { return access_check_body; }
std::size_t body_size(const access_result_reply&) noexcept { return access_result_body; }
std::size_t body_size(const forward_request& m) noexcept {
  return forward_fixed + m.mic.size() + m.payload.size();
}
std::size_t body_size(const forwarded_reply& m) noexcept {
  return forwarded_fixed + std::min(m.detail.size(), max_error_text) + m.payload.size();
}
std::size_t body_size(const error_reply& m) noexcept {
  return error_fixed + std::min(m.text.size(), max_error_text);
}

void encode_body(const establish_request& m, std::byte* out) noexcept {
  std::memset(out, 0, establish_fixed);
  put<std::uint8_t>(out, m.level);
  put<std::uint8_t>(out + 1, m.package);
  put<std::uint8_t>(out + 2, m.protection);
  put<std::uint32_t>(out + 4, static_cast<std::uint32_t>(m.token.size()));
  put<std::uint64_t>(out + 8, m.release);
  put_bytes(out + establish_fixed, m.token);
}

void encode_body(const continue_request& m, std::byte* out) noexcept {
  std::memset(out, 0, continue_fixed);
  put<std::uint64_t>(out, m.context);
  put<std::uint32_t>(out + 8, static_cast<std::uint32_t>(m.token.size()));
  put_bytes(out + continue_fixed, m.token);
}

void encode_body(const established_reply& m, std::byte* out) noexcept {
  std::memset(out, 0, established_fixed);
  put_view(out, m.view);
  put<std::uint8_t>(out + 4, m.more ? 1 : 0);
  put<std::uint8_t>(out + 5, m.protection);
  put<std::uint32_t>(out + 24, static_cast<std::uint32_t>(m.token.size()));
  put_bytes(out + established_fixed, m.token);
}

void encode_body(const call_request& m, std::byte* out) noexcept {
  std::memset(out, 0, call_fixed);
  put<std::uint64_t>(out, m.context);
  put<std::uint8_t>(out + 8, m.level);
  put<std::uint16_t>(out + 10, static_cast<std::uint16_t>(m.mic.size()));
  put_bytes(out + call_fixed, m.mic);
  put_bytes(out + call_fixed + m.mic.size(), m.payload);
}

void encode_body(const call_reply& m, std::byte* out) noexcept {
  std::memset(out, 0, reply_fixed);
  put_view(out, m.view);
  put_bytes(out + reply_fixed, m.payload);
}

void encode_body(const release_request& m, std::byte* out) noexcept {
  put<std::uint64_t>(out, m.context);
}

void encode_body(const released_reply& m, std::byte* out) noexcept {
  std::memset(out, 0, released_body);
  put<std::uint16_t>(out, static_cast<std::uint16_t>(m.result));
}

void encode_body(const access_check_request& m, std::byte* out) noexcept {
  std::memset(out, 0, access_check_body);
  put<std::uint64_t>(out, m.context);
  put<std::uint32_t>(out + 8, m.target_uid);
}

void encode_body(const access_result_reply& m, std::byte* out) noexcept {
  std::memset(out, 0, access_result_body);
  put<std::uint16_t>(out, static_cast<std::uint16_t>(m.result));
  put<std::uint8_t>(out + 2, m.granted ? 1 : 0);
  put<std::int32_t>(out + 4, m.error_number);
  put<std::uint32_t>(out + 8, m.uid);
  put<std::uint32_t>(out + 12, m.gid);
  put<std::uint8_t>(out + 16, m.level);
}

void encode_body(const forward_request& m, std::byte* out) noexcept {
  std::memset(out, 0, forward_fixed);
  put<std::uint64_t>(out, m.context);
  put<std::uint8_t>(out + 8, m.level);
  put<std::uint8_t>(out + 9, m.cloaking);
  put<std::uint16_t>(out + 10, static_cast<std::uint16_t>(m.mic.size()));
  put_bytes(out + forward_fixed, m.mic);
  put_bytes(out + forward_fixed + m.mic.size(), m.payload);
}

// The first 24 bytes are the view, as in `reply`; then what the next hop saw, the detail, the echo.
void encode_body(const forwarded_reply& m, std::byte* out) noexcept {
  std::memset(out, 0, forwarded_fixed);
  put_view(out, m.view);
  std::size_t detail = std::min(m.detail.size(), max_error_text);
  put<std::uint8_t>(out + 24, m.next_error);
  put<std::uint8_t>(out + 25, m.next_level);
  put<std::uint8_t>(out + 26, m.next_anonymous ? 1 : 0);
  put<std::uint8_t>(out + 27, m.next_contexts);
  put<std::uint16_t>(out + 28, static_cast<std::uint16_t>(m.next_status));
  put<std::uint16_t>(out + 30, static_cast<std::uint16_t>(detail));
  put<std::uint32_t>(out + 32, m.next_uid);
  put<std::uint32_t>(out + 36, m.next_gid);
  if (detail) std::memcpy(out + forwarded_fixed, m.detail.data(), detail);
  put_bytes(out + forwarded_fixed + detail, m.payload);
}

void encode_body(const error_reply& m, std::byte* out) noexcept {
  std::memset(out, 0, error_fixed);
  put<std::uint16_t>(out, static_cast<std::uint16_t>(m.result));
  put<std::uint8_t>(out + 2, m.fatal ? 1 : 0);
  std::size_t n = std::min(m.text.size(), max_error_text);
  if (n) std::memcpy(out + error_fixed, m.text.data(), n);
}

bool decode_body(std::span<const std::byte> body, establish_request& m) noexcept {
  if (body.size() < establish_fixed) return false;
  const std::byte* b = body.data();
  std::uint32_t token = get<std::uint32_t>(b + 4);
  if (token > max_token || body.size() != establish_fixed + token) return false;
  m.level = get<std::uint8_t>(b);
  m.package = get<std::uint8_t>(b + 1);
  m.protection = get<std::uint8_t>(b + 2);
  m.release = get<std::uint64_t>(b + 8);
  m.token = bytes_at(body, establish_fixed, token);
  return true;
}

bool decode_body(std::span<const std::byte> body, continue_request& m) noexcept {
  if (body.size() < continue_fixed) return false;
  const std::byte* b = body.data();
  std::uint32_t token = get<std::uint32_t>(b + 8);
  if (token > max_token || body.size() != continue_fixed + token) return false;
  m.context = get<std::uint64_t>(b);
  m.token = bytes_at(body, continue_fixed, token);
  return true;
}

bool decode_body(std::span<const std::byte> body, established_reply& m) noexcept {
  if (body.size() < established_fixed) return false;
  const std::byte* b = body.data();
  std::uint32_t token = get<std::uint32_t>(b + 24);
  if (token > max_token || body.size() != established_fixed + token) return false;
  m.view = get_view(b);
  m.more = get<std::uint8_t>(b + 4) != 0;
  m.protection = get<std::uint8_t>(b + 5);
  m.token = bytes_at(body, established_fixed, token);
  return true;
}

bool decode_body(std::span<const std::byte> body, call_request& m) noexcept {
  if (body.size() < call_fixed) return false;
  const std::byte* b = body.data();
  std::uint16_t mic = get<std::uint16_t>(b + 10);
  if (mic > max_mic || body.size() < call_fixed + mic) return false;
  m.context = get<std::uint64_t>(b);
  m.level = get<std::uint8_t>(b + 8);
  m.mic = bytes_at(body, call_fixed, mic);
  m.payload = body.subspan(call_fixed + mic);
  return true;
}

bool decode_body(std::span<const std::byte> body, call_reply& m) noexcept {
  if (body.size() < reply_fixed) return false;
  m.view = get_view(body.data());
  m.payload = body.subspan(reply_fixed);
  return true;
}

bool decode_body(std::span<const std::byte> body, release_request& m) noexcept {
  if (body.size() != release_body) return false;
  m.context = get<std::uint64_t>(body.data());
  return true;
}

bool decode_body(std::span<const std::byte> body, released_reply& m) noexcept {
  if (body.size() != released_body) return false;
  m.result = static_cast<status>(get<std::uint16_t>(body.data()));
  return true;
}

bool decode_body(std::span<const std::byte> body, access_check_request& m) noexcept {
  if (body.size() != access_check_body) return false;
  m.context = get<std::uint64_t>(body.data());
  m.target_uid = get<std::uint32_t>(body.data() + 8);
  return true;
}

bool decode_body(std::span<const std::byte> body, access_result_reply& m) noexcept {
  if (body.size() != access_result_body) return false;
  const std::byte* b = body.data();
  m.result = static_cast<status>(get<std::uint16_t>(b));
  m.granted = get<std::uint8_t>(b + 2) != 0;
  m.error_number = get<std::int32_t>(b + 4);
  m.uid = get<std::uint32_t>(b + 8);
  m.gid = get<std::uint32_t>(b + 12);
  m.level = get<std::uint8_t>(b + 16);
  return true;
}

bool decode_body(std::span<const std::byte> body, forward_request& m) noexcept {
  if (body.size() < forward_fixed) return false;
  const std::byte* b = body.data();
  std::uint16_t mic = get<std::uint16_t>(b + 10);
  if (mic > max_mic || body.size() < forward_fixed + mic) return false;
  m.context = get<std::uint64_t>(b);
  m.level = get<std::uint8_t>(b + 8);
  m.cloaking = get<std::uint8_t>(b + 9);
  m.mic = bytes_at(body, forward_fixed, mic);
  m.payload = body.subspan(forward_fixed + mic);
  return true;
}

bool decode_body(std::span<const std::byte> body, forwarded_reply& m) noexcept {
  if (body.size() < forwarded_fixed) return false;
  const std::byte* b = body.data();
  std::uint16_t detail = get<std::uint16_t>(b + 30);
  if (detail > max_error_text || body.size() < forwarded_fixed + detail) return false;
  m.view = get_view(b);
  m.next_error = get<std::uint8_t>(b + 24);
  m.next_level = get<std::uint8_t>(b + 25);
  m.next_anonymous = get<std::uint8_t>(b + 26) != 0;
  m.next_contexts = get<std::uint8_t>(b + 27);
  m.next_status = static_cast<status>(get<std::uint16_t>(b + 28));
  m.next_uid = get<std::uint32_t>(b + 32);
  m.next_gid = get<std::uint32_t>(b + 36);
  m.detail = std::string_view(reinterpret_cast<const char*>(b + forwarded_fixed), detail);
  m.payload = body.subspan(forwarded_fixed + detail);
  return true;
}

bool decode_body(std::span<const std::byte> body, error_reply& m) noexcept {
  if (body.size() < error_fixed || body.size() > error_fixed + max_error_text) return false;
  const std::byte* b = body.data();
  m.result = static_cast<status>(get<std::uint16_t>(b));
  m.fatal = get<std::uint8_t>(b + 2) != 0;
  m.text =
      std::string_view(reinterpret_cast<const char*>(b + error_fixed), body.size() - error_fixed);
  return true;
}

}  // namespace cloak::protocol
