// libFuzzer target: arbitrary bytes through cloak-downstream's framing (protocol::decode_header)
// and session logic (downstream_session::handle_frame), split into frames as the TCP server splits
// its byte stream (on the Unix socket each message is one frame: a subset of these inputs).
//
// Input layout: byte 0 chooses the kernel credentials the frames arrive with (bit 0 set: none;
// bits 1-4: which fake client); the rest is the byte stream of one connection.
//
// Invariants checked on every frame (a violation aborts, which libFuzzer reports as a crash):
//  - every reply is one well-formed frame answering this request, never longer than the protocol
//  allows;
//  - the identity in any reply is the kernel's (the credentials byte 0 chose) or anonymous: nothing
//  a
//    frame says changes who the server thinks the caller is;
//  - the server acts as a caller (access_checker) only with a kernel identity, never an anonymous
//  one;
//  - a connection never holds more contexts than its limit.
#include <cerrno>
#include <cloak/auth.hpp>
#include <cloak/downstream.hpp>
#include <cloak/protocol.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

namespace {

using namespace cloak;
using namespace cloak::protocol;

constexpr std::size_t context_limit = 32;

[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "frame_fuzzer: invariant violated: %s\n", what);
  std::abort();
}

class fake_checker final : public access_checker {
 public:
  explicit fake_checker(const std::optional<identity>& kernel) : kernel_(kernel) {}
  int open_as(const identity& caller, std::uint32_t target_uid) noexcept override {
    if (!kernel_ || !caller.same_principal(*kernel_))
      violated("acted as a caller the kernel never reported");
    return caller.uid == target_uid ? 0 : EACCES;
  }

 private:
  const std::optional<identity>& kernel_;
};

// Checks the replies `handle_frame` appended for request `h`; records contexts it issued or
// released.
void check_replies(const std::vector<std::byte>& out, const header& request,
                   const std::optional<identity>& kernel, std::vector<std::uint64_t>& issued) {
  std::size_t at = 0, frames = 0;
  while (at < out.size()) {
    header h;
    if (decode_header({out.data() + at, out.size() - at}, h) != parse_error::ok)
      violated("reply header does not parse");
    if (out.size() - at < header_size + h.length) violated("reply shorter than its header says");
    if (h.request_id != request.request_id) violated("reply to another request");
    const std::byte* body = out.data() + at + header_size;
    auto seen_ok = [&](std::uint32_t uid, std::uint32_t gid) {
      bool anonymous = uid == anonymous_id && gid == anonymous_id;
      return anonymous || (kernel && uid == kernel->uid && gid == kernel->gid);
    };
    switch (h.type) {
      case msg_type::established: {
        established_reply r;
        if (!decode_body({body, h.length}, r)) violated("established body does not decode");
        if (!r.token.empty()) violated("established: the local package answers no token");
        if (r.more) violated("established: the local package takes one leg");
        if (!seen_ok(r.view.uid, r.view.gid)) violated("established: identity not from the kernel");
        issued.push_back(r.view.context);
        if (request.type != msg_type::establish) violated("established answers a non-establish");
        break;
      }
      case msg_type::reply:
        if (h.length < reply_fixed) violated("reply body size");
        if (!seen_ok(get<std::uint32_t>(body + 16), get<std::uint32_t>(body + 20)))
          violated("reply: identity not from the kernel");
        if (request.type != msg_type::call) violated("reply answers a non-call");
        break;
      case msg_type::released:
        if (h.length != released_body) violated("released body size");
        if (request.type != msg_type::release) violated("released answers a non-release");
        break;
      case msg_type::access_result:
        if (h.length != access_result_body) violated("access_result body size");
        if (!seen_ok(get<std::uint32_t>(body + 8), get<std::uint32_t>(body + 12)))
          violated("access_result: identity not from the kernel");
        if (request.type != msg_type::access_check)
          violated("access_result answers a non-access_check");
        break;
      case msg_type::error:
        if (h.length < error_fixed) violated("error body size");
        break;
      default:
        violated("reply of a request type");
    }
    at += header_size + h.length;
    ++frames;
  }
  if (frames != 1) violated("not exactly one reply per request");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::optional<identity> kernel;
  if (!(data[0] & 1)) {
    std::uint32_t id = 61000 + ((data[0] >> 1) & 15);
    kernel = identity::of(id, id);
  }
  fake_checker checker(kernel);
  std::unique_ptr<server_package> local = make_local_server();
  server_packages packages;
  packages.add(*local);
  downstream_session session(checker, packages, session_limits{context_limit});
  std::vector<std::byte> stream(size - 1);
  if (size > 1) std::memcpy(stream.data(), data + 1, size - 1);

  std::vector<std::uint64_t> issued;
  std::vector<std::byte> out, body;
  std::size_t at = 0;
  // As cloak-downstream's serve(): a header, then its body once all of it has arrived; a header
  // that does not parse ends the connection (after a fatal error frame); a partial frame waits
  // forever.
  while (stream.size() - at >= header_size) {
    header h;
    parse_error e = decode_header({stream.data() + at, stream.size() - at}, h);
    if (e != parse_error::ok) {
      if (e == parse_error::need_more) violated("need_more with a whole header");
      if (e == parse_error::too_large && h.length <= max_payload)
        violated("too_large for a small frame");
      break;
    }
    if (h.length > max_payload) violated("decode_header accepted a frame above max_payload");
    if (stream.size() - at - header_size < h.length) break;
    body.assign(stream.begin() + static_cast<std::ptrdiff_t>(at + header_size),
                stream.begin() + static_cast<std::ptrdiff_t>(at + header_size + h.length));
    // A fuzzer cannot guess 64-bit context ids; flag 0x8000 lets it name one the session issued
    // (the byte at the context's offset picks which), so the paths behind a valid context are
    // reached.
    if ((h.flags & 0x8000) && !issued.empty()) {
      std::size_t offset = h.type == msg_type::establish ? 8 : 0;
      if (body.size() >= offset + 8) {
        std::uint64_t pick = issued[std::to_integer<std::size_t>(body[offset]) % issued.size()];
        put<std::uint64_t>(body.data() + offset, pick);
      }
    }
    // Flag 0x4000: this frame arrived without credentials (a read without SCM_CREDENTIALS).
    const identity* creds = (kernel && !(h.flags & 0x4000)) ? &*kernel : nullptr;
    out.clear();
    bool open = session.handle_frame(h, body, peer_info{creds, true}, out);
    check_replies(out, h, kernel, issued);
    if (session.context_count() > context_limit) violated("more contexts than the limit");
    if (!open) break;
    at += header_size + h.length;
  }
  return 0;
}
