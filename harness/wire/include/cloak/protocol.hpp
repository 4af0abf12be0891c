// The wire codec between a middle server's proxy and cloak-downstream: every frame and body is
// encoded and decoded here and nowhere else (docs/protocol.md is its spec).
#pragma once

#include <cloak/identity.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

namespace cloak::protocol {

inline constexpr std::uint32_t magic = 0x314B4C43;  // "CLK1" as little-endian bytes
inline constexpr std::uint8_t version = 2;
inline constexpr std::size_t header_size = 16;
inline constexpr std::size_t max_payload = 64 * 1024;  // body bytes after the header
inline constexpr std::size_t max_token =
    16 * 1024;  // an establish token (an AP-REQ with a forwarded TGT fits)
inline constexpr std::size_t max_mic = 1024;
inline constexpr std::uint32_t anonymous_id = 0xFFFFFFFFu;
// Security contexts per connection unless the server is told otherwise: MS-RPCE's bound ("a client
// MUST NOT build more than 2,000 security contexts per connection"). A proxy's lru:N stays within
// it.
inline constexpr std::size_t default_max_contexts = 2000;

enum class msg_type : std::uint8_t {
  establish = 1,           // C->S: the first leg of a security context: package, level, token
  established = 2,         // S->C: the context, or "more" with the server's token
  call = 3,                // C->S: a call under a context (or per-message credentials: context 0)
  reply = 4,               // S->C
  release = 5,             // C->S: forget a context
  released = 6,            // S->C
  access_check = 7,        // C->S: act as the caller and try to open the caller-owned probe file
  access_result = 8,       // S->C
  establish_continue = 9,  // C->S: a further leg of an establish the server answered with "more"
  forward_call =
      10,          // C->S: act as the caller and call the server's own next hop through its proxy
  forwarded = 11,  // S->C: what this server saw, and what its next hop saw
  error = 15,      // S->C: request refused; the connection stays usable unless fatal
};

enum class status : std::uint16_t {
  ok = 0,
  bad_frame = 1,  // bad magic/version/length: fatal, the server closes the connection
  unknown_type = 2,
  no_credentials = 3,   // no SCM_CREDENTIALS on a message that needs them
  unknown_context = 4,  // never issued on this connection, released, or guessed
  too_many_contexts = 5,
  bad_level = 6,  // level byte out of range
  identify_only =
      7,  // access_check under an identify-level context: the server will not act as the caller
  anonymous_only =
      8,          // access_check under an anonymous context: the server does not know the caller
  too_large = 9,  // length above max_payload: fatal
  busy = 10,      // too many connections: fatal
  internal = 11,
  bad_body = 12,         // body shorter or longer than the message type requires
  unknown_package = 13,  // the establish names a package this server does not run
  package_unavailable =
      14,            // the package cannot run on this channel (local without kernel credentials)
  auth_failed = 15,  // the package rejected the token (tampered, replayed, expired, wrong key)
  unknown_principal = 16,  // authenticated, but the principal maps to no identity
  bad_mic = 17,            // a call under an integrity context without a valid MIC
  no_next_hop = 18,        // forward_call on a server that has no next hop to call
  clock_skew =
      19,  // the package rejected the token: the client's clock is off by more than the limit
  not_sealed = 20,  // a call under a privacy context whose payload is not a message sealed under it
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

// Little-endian field access at fixed offsets: protocol.cpp's own primitives, public so tests can
// write a frame byte by byte the way docs/protocol.md describes it.
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

// ---- bodies
// -------------------------------------------------------------------------------------- Spans in
// decoded bodies point into the frame they came from.

// What the server says about a context (established, reply).
struct context_view {
  status result = status::ok;
  std::uint8_t level = 0;
  bool anonymous = false;
  std::uint64_t context = 0;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
};

struct establish_request {
  std::uint8_t level = 0;
  std::uint8_t package = 0;
  std::uint8_t protection = 0;
  std::uint64_t release = 0;  // a context to forget in the same round trip, or 0
  std::span<const std::byte> token;
};
inline constexpr std::size_t establish_fixed =
    16;  // level u8, package u8, protection u8, pad u8, token_length u32, release u64

struct continue_request {
  std::uint64_t context = 0;  // the pending establish, as the server's "more" named it
  std::span<const std::byte> token;
};
inline constexpr std::size_t continue_fixed = 16;  // context u64, token_length u32, pad u32

struct established_reply {
  context_view view;
  bool more = false;  // another leg is needed; view.context names the pending establish
  std::uint8_t protection = 0;
  std::span<const std::byte> token;
};
inline constexpr std::size_t established_fixed =
    32;  // view (24 incl. more/protection), token_length u32, pad u32

struct call_request {
  std::uint64_t context = 0;
  std::uint8_t level = 0;
  std::span<const std::byte> mic;
  std::span<const std::byte> payload;
};
inline constexpr std::size_t call_fixed =
    16;  // context u64, level u8, pad u8, mic_length u16, pad u32

struct call_reply {
  context_view view;
  std::span<const std::byte> payload;  // the echo
};
inline constexpr std::size_t reply_fixed = 24;

struct release_request {
  std::uint64_t context = 0;
};
inline constexpr std::size_t release_body = 8;

struct released_reply {
  status result = status::ok;
};
inline constexpr std::size_t released_body = 8;

struct access_check_request {
  std::uint64_t context = 0;
  std::uint32_t target_uid = 0;
};
inline constexpr std::size_t access_check_body = 16;

struct access_result_reply {
  status result = status::ok;
  bool granted = false;
  std::int32_t error_number = 0;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint8_t level = 0;
};
inline constexpr std::size_t access_result_body = 24;

// forward_call: under `context`, the server acts as its caller and calls its own next hop through a
// proxy whose cloaking and level are these (docs/protocol.md).
struct forward_request {
  std::uint64_t context = 0;
  std::uint8_t level = 0;     // the level the server's proxy asks of the next hop, 1..4
  std::uint8_t cloaking = 0;  // the server's cloaking for that proxy: 0 none, 1 static, 2 dynamic
  std::span<const std::byte> mic;
  std::span<const std::byte> payload;
};
inline constexpr std::size_t forward_fixed =
    16;  // context u64, level u8, cloaking u8, mic_length u16, pad u32

struct forwarded_reply {
  context_view view;            // the caller as this server saw it
  std::uint8_t next_error = 0;  // how the server's own call ended (a call_error value; 0 ok)
  std::uint8_t next_level = 0;
  bool next_anonymous = false;
  std::uint8_t next_contexts = 0;  // security contexts the server's proxy established for this call
  status next_status = status::ok;  // the next hop's status when next_error is `refused`
  std::uint32_t next_uid = 0;       // whom the next hop saw
  std::uint32_t next_gid = 0;
  std::string_view detail;             // why the server's own call failed; empty when it did not
  std::span<const std::byte> payload;  // what the next hop echoed
};
inline constexpr std::size_t forwarded_fixed = 40;

struct error_reply {
  status result = status::ok;
  bool fatal = false;
  std::string_view text;  // UTF-8, at most max_error_text bytes
};
inline constexpr std::size_t error_fixed = 8;
inline constexpr std::size_t max_error_text = 256;

// The message type each body travels as.
constexpr msg_type type_of(const establish_request&) noexcept { return msg_type::establish; }
constexpr msg_type type_of(const continue_request&) noexcept {
  return msg_type::establish_continue;
}
constexpr msg_type type_of(const established_reply&) noexcept { return msg_type::established; }
constexpr msg_type type_of(const call_request&) noexcept { return msg_type::call; }
constexpr msg_type type_of(const call_reply&) noexcept { return msg_type::reply; }
constexpr msg_type type_of(const release_request&) noexcept { return msg_type::release; }
constexpr msg_type type_of(const released_reply&) noexcept { return msg_type::released; }
constexpr msg_type type_of(const access_check_request&) noexcept { return msg_type::access_check; }
constexpr msg_type type_of(const access_result_reply&) noexcept { return msg_type::access_result; }
constexpr msg_type type_of(const forward_request&) noexcept { return msg_type::forward_call; }
constexpr msg_type type_of(const forwarded_reply&) noexcept { return msg_type::forwarded; }
constexpr msg_type type_of(const error_reply&) noexcept { return msg_type::error; }

// Body sizes as encoded.
std::size_t body_size(const establish_request& m) noexcept;
std::size_t body_size(const continue_request& m) noexcept;
std::size_t body_size(const established_reply& m) noexcept;
std::size_t body_size(const call_request& m) noexcept;
std::size_t body_size(const call_reply& m) noexcept;
std::size_t body_size(const release_request& m) noexcept;
std::size_t body_size(const released_reply& m) noexcept;
std::size_t body_size(const access_check_request& m) noexcept;
std::size_t body_size(const access_result_reply& m) noexcept;
std::size_t body_size(const forward_request& m) noexcept;
std::size_t body_size(const forwarded_reply& m) noexcept;
std::size_t body_size(const error_reply& m) noexcept;

// Writes the body (exactly body_size(m) bytes) at `out`.
void encode_body(const establish_request& m, std::byte* out) noexcept;
void encode_body(const continue_request& m, std::byte* out) noexcept;
void encode_body(const established_reply& m, std::byte* out) noexcept;
void encode_body(const call_request& m, std::byte* out) noexcept;
void encode_body(const call_reply& m, std::byte* out) noexcept;
void encode_body(const release_request& m, std::byte* out) noexcept;
void encode_body(const released_reply& m, std::byte* out) noexcept;
void encode_body(const access_check_request& m, std::byte* out) noexcept;
void encode_body(const access_result_reply& m, std::byte* out) noexcept;
void encode_body(const forward_request& m, std::byte* out) noexcept;
void encode_body(const forwarded_reply& m, std::byte* out) noexcept;
void encode_body(const error_reply& m, std::byte* out) noexcept;

// Reads a body; false when its size is wrong for the type (bad_body) or a length field points past
// the end.
bool decode_body(std::span<const std::byte> body, establish_request& m) noexcept;
bool decode_body(std::span<const std::byte> body, continue_request& m) noexcept;
bool decode_body(std::span<const std::byte> body, established_reply& m) noexcept;
bool decode_body(std::span<const std::byte> body, call_request& m) noexcept;
bool decode_body(std::span<const std::byte> body, call_reply& m) noexcept;
bool decode_body(std::span<const std::byte> body, release_request& m) noexcept;
bool decode_body(std::span<const std::byte> body, released_reply& m) noexcept;
bool decode_body(std::span<const std::byte> body, access_check_request& m) noexcept;
bool decode_body(std::span<const std::byte> body, access_result_reply& m) noexcept;
bool decode_body(std::span<const std::byte> body, forward_request& m) noexcept;
bool decode_body(std::span<const std::byte> body, forwarded_reply& m) noexcept;
bool decode_body(std::span<const std::byte> body, error_reply& m) noexcept;

// A whole frame (header + body) into `out`; returns its size, or 0 when it does not fit in `out` or
// the body exceeds max_payload. No allocation: the client's hot path uses this.
template <class M>
std::size_t encode_frame(std::uint32_t request_id, const M& m, std::span<std::byte> out) noexcept {
  std::size_t body = body_size(m);
  if (body > max_payload || out.size() < header_size + body) return 0;
  encode_header(header{magic, version, type_of(m), 0, request_id, static_cast<std::uint32_t>(body)},
                out.data());
  encode_body(m, out.data() + header_size);
  return header_size + body;
}

// Appends a whole frame to `out` (the server's reply buffer).
template <class M>
void append_frame(std::vector<std::byte>& out, std::uint32_t request_id, const M& m) {
  std::size_t body = body_size(m);
  std::size_t at = out.size();
  out.resize(at + header_size + body);
  encode_header(header{magic, version, type_of(m), 0, request_id, static_cast<std::uint32_t>(body)},
                out.data() + at);
  encode_body(m, out.data() + at + header_size);
}

}  // namespace cloak::protocol
