// Frame headers: encoding, validation, and the names of types and statuses.
#include <cloak/protocol.hpp>

#include <bit>

namespace cloak::protocol {

static_assert(std::endian::native == std::endian::little,
              "the wire format is little-endian; add byte swaps for this target");

std::string_view to_string(status s) noexcept {
  switch (s) {
    case status::ok: return "ok";
    case status::bad_frame: return "bad_frame";
    case status::unknown_type: return "unknown_type";
    case status::no_credentials: return "no_credentials";
    case status::unknown_context: return "unknown_context";
    case status::too_many_contexts: return "too_many_contexts";
    case status::bad_level: return "bad_level";
    case status::identify_only: return "identify_only";
    case status::anonymous_only: return "anonymous_only";
    case status::too_large: return "too_large";
    case status::busy: return "busy";
    case status::internal: return "internal";
    case status::bad_body: return "bad_body";
  }
  return "unknown_status";
}

std::string_view to_string(msg_type t) noexcept {
  switch (t) {
    case msg_type::establish: return "establish";
    case msg_type::established: return "established";
    case msg_type::call: return "call";
    case msg_type::reply: return "reply";
    case msg_type::release: return "release";
    case msg_type::released: return "released";
    case msg_type::access_check: return "access_check";
    case msg_type::access_result: return "access_result";
    case msg_type::error: return "error";
  }
  return "unknown_type";
}

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

}  // namespace cloak::protocol
