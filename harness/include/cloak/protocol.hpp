// The wire protocol between a middle server's proxy and cloak-downstream (docs/protocol.md is its spec).
#pragma once

#include <cloak/identity.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>

namespace cloak::protocol {

inline constexpr std::uint32_t magic = 0x314B4C43;  // "CLK1" as little-endian bytes
inline constexpr std::uint8_t version = 1;
inline constexpr std::size_t header_size = 16;
inline constexpr std::size_t max_payload = 64 * 1024;  // body bytes after the header
inline constexpr std::uint32_t anonymous_id = 0xFFFFFFFFu;

enum class msg_type : std::uint8_t {
  establish = 1,      // C->S: make a security context from this message's kernel credentials
  established = 2,    // S->C
  call = 3,           // C->S: a call under a context (or per-message credentials: context 0)
  reply = 4,          // S->C
  release = 5,        // C->S: forget a context
  released = 6,       // S->C
  access_check = 7,   // C->S: act as the caller and try to open the caller-owned probe file
  access_result = 8,  // S->C
  error = 15,         // S->C: request refused; the connection stays usable unless fatal
};

enum class status : std::uint16_t {
  ok = 0,
  bad_frame = 1,          // bad magic/version/length: fatal, the server closes the connection
  unknown_type = 2,
  no_credentials = 3,     // no SCM_CREDENTIALS on a message that needs them
  unknown_context = 4,    // never issued on this connection, released, or guessed
  too_many_contexts = 5,
  bad_level = 6,          // level byte out of range
  identify_only = 7,      // access_check under an identify-level context: the server will not act as the caller
  anonymous_only = 8,     // access_check under an anonymous context: the server does not know the caller
  too_large = 9,          // length above max_payload: fatal
  busy = 10,              // too many connections: fatal
  internal = 11,
  bad_body = 12,          // body shorter than the message type requires
};

std::string_view to_string(status s) noexcept;
std::string_view to_string(msg_type t) noexcept;

struct header {
  std::uint32_t magic = protocol::magic;
  std::uint8_t version = protocol::version;
  msg_type type{};
  std::uint16_t flags = 0;
  std::uint32_t request_id = 0;
  std::uint32_t length = 0;  // body bytes that follow
};

// Body layouts (all integers little-endian, fixed offsets; see docs/protocol.md).
inline constexpr std::size_t establish_body = 16;  // level u8, pad[7], release u64
inline constexpr std::size_t established_body = 24;  // status u16, level u8, anon u8, pad u32, context u64, uid u32, gid u32
inline constexpr std::size_t call_fixed = 16;      // context u64, level u8, pad[7], then payload
inline constexpr std::size_t reply_fixed = 24;     // status u16, level u8, anon u8, pad u32, context u64, uid u32, gid u32, then payload echo
inline constexpr std::size_t release_body = 8;     // context u64
inline constexpr std::size_t released_body = 8;    // status u16, pad[6]
inline constexpr std::size_t access_check_body = 16;  // context u64, target_uid u32, pad u32
inline constexpr std::size_t access_result_body = 24;  // status u16, granted u8, pad u8, errno i32, uid u32, gid u32, pad[8]
inline constexpr std::size_t error_fixed = 8;       // status u16, fatal u8, pad[5], then UTF-8 text

// Little-endian field access at fixed offsets.
template <class T>
inline T get(const std::byte* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;  // x86-64 and aarch64 are little-endian; checked by a static_assert in protocol.cpp
}
template <class T>
inline void put(std::byte* p, T v) noexcept {
  std::memcpy(p, &v, sizeof v);
}

void encode_header(const header& h, std::byte* out) noexcept;

enum class parse_error : std::uint8_t { ok, need_more, bad_magic, bad_version, too_large };
// Parses a header from the first bytes of `in` (needs header_size bytes).
parse_error decode_header(std::span<const std::byte> in, header& out) noexcept;

bool valid_level(std::uint8_t level) noexcept;

}  // namespace cloak::protocol
