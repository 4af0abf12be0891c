// The Unix-socket channel to cloak-downstream: framed datagrams (SOCK_SEQPACKET), one send and one
// receive per call, and the kernel attaches the sender's credentials to every message (the local
// package's source of truth).
#include <sys/socket.h>

#include <cloak/connection.hpp>
#include <cloak/os.hpp>
#include <vector>

namespace cloak {

namespace {

using namespace protocol;

class uds_channel final : public channel {
 public:
  explicit uds_channel(uds_options options)
      : options_(std::move(options)),
        send_(header_size + max_payload),
        recv_(header_size + max_payload) {}

  call_error connect() noexcept override {
    disconnect();
    os::unique_fd fd =
        os::connect_unix(options_.socket_path, options_.io_timeout, os::unix_kind::seqpacket);
    if (!fd) return call_error::downstream_unavailable;
    fd_ = std::move(fd);
    ++epoch_;
    return call_error::ok;
  }
  bool connected() const noexcept override { return static_cast<bool>(fd_); }
  void disconnect() noexcept override { fd_.reset(); }
  bool carries_kernel_credentials() const noexcept override { return true; }
  std::span<std::byte> request_buffer() noexcept override { return send_; }

  // One message out, one back: a message is a whole frame, so there is nothing to reassemble, and
  // the socket's timeouts bound each of the two waits once.
  call_error exchange(std::size_t size, std::span<const std::byte>& reply) noexcept override {
    if (!fd_) return call_error::downstream_unavailable;
    ssize_t n =
        os::retry_eintr([&] { return ::send(fd_.get(), send_.data(), size, MSG_NOSIGNAL); });
    if (n != static_cast<ssize_t>(size)) return fail(n < 0 && errno == EAGAIN);
    // MSG_TRUNC: the length of the whole message, so a reply longer than any frame is seen as such.
    n = os::retry_eintr([&] { return ::recv(fd_.get(), recv_.data(), recv_.size(), MSG_TRUNC); });
    if (n <= 0) return fail(n < 0 && errno == EAGAIN);
    std::size_t got = static_cast<std::size_t>(n);
    header h;
    if (got > recv_.size() || decode_header({recv_.data(), got}, h) != parse_error::ok ||
        got != header_size + h.length) {
      disconnect();  // not one whole frame: nothing on this connection can be trusted
      return call_error::protocol;
    }
    reply = {recv_.data(), got};
    return call_error::ok;
  }

 private:
  call_error fail(bool timed_out) noexcept {
    disconnect();  // a connection in an unknown state is never reused
    return timed_out ? call_error::timeout : call_error::downstream_unavailable;
  }

  uds_options options_;
  os::unique_fd fd_;
  std::vector<std::byte> send_;
  std::vector<std::byte> recv_;
};

}  // namespace

std::unique_ptr<channel> make_uds_channel(uds_options options) {
  return std::make_unique<uds_channel>(std::move(options));
}

std::unique_ptr<connection> make_uds_connection(uds_options options) {
  return make_connection(make_uds_channel(std::move(options)), make_local_client());
}

}  // namespace cloak
