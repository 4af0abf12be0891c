// What cloak-downstream's two servers share: each whole frame handed to the session with what the
// channel knows of its sender, each reply sent as it is made. On the Unix socket a frame is one
// message (SOCK_SEQPACKET); over TCP frames are reassembled from a byte stream.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cloak/downstream.hpp>
#include <cloak/os.hpp>
#include <cloak/protocol.hpp>
#include <cstring>
#include <exception>
#include <vector>

namespace cloak::detail {

// Appends the session's answer to one whole frame to `out`; false when the connection must close.
// A frame that throws fails its connection only; the server and the others go on.
inline bool answer_frame(downstream_session& session, const protocol::header& h,
                         std::span<const std::byte> body, const peer_info& peer,
                         std::vector<std::byte>& out) {
  try {
    return session.handle_frame(h, body, peer, out);
  } catch (const std::exception& e) {
    out.clear();
    append_error_frame(out, h.request_id, protocol::status::internal, true, e.what());
    return false;
  }
}

// Sends every frame in `out` as its own message, each bounded once by the socket's send timeout (a
// seqpacket send is all or nothing). False when one cannot be sent.
inline bool send_messages(int fd, const std::vector<std::byte>& out) noexcept {
  using namespace protocol;
  for (std::size_t at = 0; at + header_size <= out.size();) {
    header h;
    if (decode_header({out.data() + at, out.size() - at}, h) != parse_error::ok) return false;
    std::size_t size = header_size + h.length;
    ssize_t n = os::retry_eintr([&] { return ::send(fd, out.data() + at, size, MSG_NOSIGNAL); });
    if (n != static_cast<ssize_t>(size)) return false;
    at += size;
  }
  return true;
}

// Serves a seqpacket connection until the peer closes, a fatal error or a failed send (the send
// timeout drops a client that never reads its replies). Every message must be exactly one frame;
// its sender is what the kernel attached to it. A message with descriptors is refused: none is
// ever kept (os::recv_message closed them). The refusals are docs/protocol.md's rules of "Framing".
inline void serve_messages(int fd, downstream_session& session) {
  using namespace protocol;
  // One byte more than the largest frame, so that a message of exactly one byte too many is seen
  // whole (and anything longer as truncated, MSG_TRUNC): both are longer than any frame.
  constexpr std::size_t largest_frame = header_size + max_payload;
  std::vector<std::byte> in(largest_frame + 1);
  std::vector<std::byte> out;
  out.reserve(largest_frame);
  for (bool open = true; open;) {
    os::received r = os::recv_message(fd, in.data(), in.size());
    if (r.size <= 0) break;
    std::size_t size = static_cast<std::size_t>(r.size);
    header h;
    parse_error e = decode_header({in.data(), std::min(size, in.size())}, h);
    // A header is trusted only when its magic and version are right; an answer to anything else
    // carries request 0, whichever rule refuses it (descriptors are judged first).
    bool trusted = e == parse_error::ok || e == parse_error::too_large;
    std::uint32_t request = trusted ? h.request_id : 0;
    if (r.had_descriptors) {
      append_error_frame(out, request, status::bad_frame, true,
                         "descriptors (SCM_RIGHTS) are not accepted");
      open = false;
    } else if (e == parse_error::too_large || r.truncated || size > largest_frame) {
      append_error_frame(out, request, status::too_large, true, "frame longer than 65536 bytes");
      open = false;
    } else if (e != parse_error::ok) {
      append_error_frame(
          out, 0, status::bad_frame, true,
          size < header_size ? "message shorter than a frame header" : "bad magic or version");
      open = false;
    } else if (size != header_size + h.length) {
      append_error_frame(out, h.request_id, status::bad_frame, true,
                         "message length differs from the frame's length field");
      open = false;
    } else {
      identity kernel = r.has_creds ? identity::of(r.creds.uid, r.creds.gid) : identity{};
      open = answer_frame(session, h, {in.data() + header_size, h.length},
                          peer_info{r.has_creds ? &kernel : nullptr, true}, out);
    }
    if (!send_messages(fd, out)) open = false;
    out.clear();
  }
}

// Serves a TCP stream `fd` until the peer closes, a fatal error or a reply not sent within
// `send_timeout` (one deadline for the whole reply, however many sends it takes). No kernel
// credentials cross TCP: the package says who the caller is.
inline void serve_frames(int fd, downstream_session& session,
                         std::chrono::milliseconds send_timeout) {
  using namespace protocol;
  std::vector<std::byte> in(header_size + max_payload);
  std::vector<std::byte> out;
  out.reserve(header_size + max_payload + forwarded_fixed);
  const peer_info peer{nullptr, false};
  std::size_t have = 0;
  for (bool open = true; open;) {
    ssize_t n = os::retry_eintr([&] { return ::recv(fd, in.data() + have, in.size() - have, 0); });
    if (n <= 0) break;
    have += static_cast<std::size_t>(n);
    while (open && have >= header_size) {
      header h;
      switch (decode_header({in.data(), have}, h)) {
        case parse_error::ok:
          break;
        case parse_error::too_large:
          append_error_frame(out, h.request_id, status::too_large, true,
                             "frame longer than 65536 bytes");
          open = false;
          break;
        default:
          append_error_frame(out, 0, status::bad_frame, true, "bad magic or version");
          open = false;
          break;
      }
      if (!open) break;
      std::size_t need = header_size + h.length;
      if (have < need) break;  // a frame is judged whole: errors in its body wait for all of it
      open = answer_frame(session, h, {in.data() + header_size, h.length}, peer, out);
      std::memmove(in.data(), in.data() + need, have - need);
      have -= need;
      if (!os::send_all_within(fd, out.data(), out.size(), send_timeout)) open = false;
      out.clear();
    }
    if (!out.empty()) os::send_all_within(fd, out.data(), out.size(), send_timeout);
    out.clear();
  }
}

}  // namespace cloak::detail
