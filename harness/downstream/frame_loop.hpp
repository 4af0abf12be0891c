// What cloak-downstream's two servers share: frames reassembled from a byte stream (uds, tcp), each
// handed to the session with what the channel knows of its sender, each reply sent as it is made.
#pragma once

#include <cloak/downstream.hpp>
#include <cloak/os.hpp>
#include <cloak/protocol.hpp>
#include <cstring>
#include <exception>
#include <vector>

namespace cloak::detail {

// What one read from the stream says about its sender.
struct stream_sender {
  bool has_kernel = false;
  identity kernel;
  bool local_channel = true;
};

// Serves `fd` until the peer closes, a fatal error or a failed send (the send timeout drops a
// client that never reads its replies). `read(buffer, size, sender)` is one recv: it returns recv's
// result and says who sent those bytes. A frame's sender is the one of the read holding its first
// byte: the kernel never merges bytes sent under different credentials into one read.
template <class Read>
void serve_frames(int fd, downstream_session& session, Read&& read) {
  using namespace protocol;
  std::vector<std::byte> in(header_size + max_payload);
  std::vector<std::byte> out;
  out.reserve(header_size + max_payload + forwarded_fixed);
  std::size_t have = 0;
  stream_sender chunk, frame;
  for (bool open = true; open;) {
    ssize_t n = read(in.data() + have, in.size() - have, chunk);
    if (n <= 0) break;
    if (have == 0) frame = chunk;  // a frame starts at the beginning of this read
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
      if (have < need) break;
      try {
        open = session.handle_frame(
            h, {in.data() + header_size, h.length},
            peer_info{frame.has_kernel ? &frame.kernel : nullptr, frame.local_channel}, out);
      } catch (const std::exception& e) {  // this connection fails; the server and the others go on
        out.clear();
        append_error_frame(out, h.request_id, status::internal, true, e.what());
        open = false;
      }
      std::memmove(in.data(), in.data() + need, have - need);
      have -= need;
      frame = chunk;  // what is left began inside the latest read
      if (!os::send_all(fd, out.data(), out.size())) open = false;
      out.clear();
    }
    if (!out.empty()) os::send_all(fd, out.data(), out.size());
    out.clear();
  }
}

}  // namespace cloak::detail
