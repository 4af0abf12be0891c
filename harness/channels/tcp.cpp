// The TCP channel to a cloak-downstream on another host: the uds framing over a byte stream, and no
// kernel credentials (the package says who the caller is). One request out and one whole reply
// back, every send and receive bounded by the socket's timeouts, no allocation per frame.
#include <sys/socket.h>

#include <cloak/connection.hpp>
#include <cloak/net.hpp>
#include <cloak/os.hpp>
#include <vector>

namespace cloak {

namespace {

using namespace protocol;

class tcp_channel final : public channel {
 public:
  // The receive buffer holds the largest reply: a header and max_payload body bytes.
  explicit tcp_channel(tcp_options options)
      : options_(std::move(options)),
        send_(header_size + max_payload),
        recv_(header_size + max_payload) {
    // Checked once here, not on every connect: a bad address is a configuration error.
    endpoint_ = os::parse_tcp_endpoint(fmt::format("tcp:{}:{}", options_.host, options_.port));
  }

  call_error connect() noexcept override {
    disconnect();
    os::unique_fd fd = os::connect_tcp(endpoint_, options_.io_timeout);
    if (!fd) return errno == ETIMEDOUT ? call_error::timeout : call_error::downstream_unavailable;
    fd_ = std::move(fd);
    ++epoch_;
    return call_error::ok;
  }
  bool connected() const noexcept override { return static_cast<bool>(fd_); }
  void disconnect() noexcept override { fd_.reset(); }
  bool carries_kernel_credentials() const noexcept override { return false; }
  std::span<std::byte> request_buffer() noexcept override { return send_; }
  call_error exchange(std::size_t size, std::span<const std::byte>& reply) noexcept override;

 private:
  call_error fail(call_error e) noexcept {
    disconnect();  // a connection in an unknown state is never reused
    return e;
  }

  tcp_options options_;
  os::tcp_endpoint endpoint_;
  os::unique_fd fd_;
  std::vector<std::byte> send_;
  std::vector<std::byte> recv_;
};

call_error tcp_channel::exchange(std::size_t size, std::span<const std::byte>& reply) noexcept {
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

}  // namespace

std::unique_ptr<channel> make_tcp_channel(tcp_options options) {
  return std::make_unique<tcp_channel>(std::move(options));
}

}  // namespace cloak
