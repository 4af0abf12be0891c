// One request frame out and one whole reply frame back over a stream socket (tcp).
#include "stream_channel.hpp"

#include <sys/socket.h>

namespace cloak::detail {

using namespace protocol;

call_error stream_channel::exchange(std::size_t size, std::span<const std::byte>& reply) noexcept {
  if (!fd_) return call_error::downstream_unavailable;
  std::size_t sent = 0;
  while (sent < size) {
    ssize_t n = ::send(fd_.get(), send_.data() + sent, size - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return fail(errno == EAGAIN ? call_error::timeout : call_error::downstream_unavailable);
    sent += static_cast<std::size_t>(n);
  }
  std::size_t have = 0, need = header_size;
  while (have < need) {
    // One reply is outstanding, so everything that arrives belongs to it: read all there is.
    ssize_t n = ::recv(fd_.get(), recv_.data() + have, recv_.size() - have, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return fail(errno == EAGAIN ? call_error::timeout : call_error::downstream_unavailable);
    if (n == 0) return fail(call_error::downstream_unavailable);
    have += static_cast<std::size_t>(n);
    if (need == header_size && have >= header_size) {
      header h;
      if (decode_header({recv_.data(), have}, h) != parse_error::ok)
        return fail(call_error::protocol);
      need = header_size + h.length;
    }
  }
  if (have != need) return fail(call_error::protocol);  // more than one frame: not an answer to us
  reply = {recv_.data(), need};
  return call_error::ok;
}

}  // namespace cloak::detail
