// Frames over one connected stream socket (the tcp channel; uds carries one frame per seqpacket
// message, uds.cpp): one request out and one whole reply back, every send and receive bounded by
// the socket's timeouts, no allocation per frame. A subclass says only how to connect and whether
// the kernel vouches for the sender.
#pragma once

#include <cloak/os.hpp>
#include <cloak/transport.hpp>
#include <vector>

namespace cloak::detail {

class stream_channel : public channel {
 public:
  call_error connect() noexcept final {
    disconnect();
    call_error e = call_error::ok;
    os::unique_fd fd = open(e);
    if (!fd) return e;
    fd_ = std::move(fd);
    ++epoch_;
    return call_error::ok;
  }
  bool connected() const noexcept final { return static_cast<bool>(fd_); }
  void disconnect() noexcept final { fd_.reset(); }
  std::span<std::byte> request_buffer() noexcept final { return send_; }
  call_error exchange(std::size_t size, std::span<const std::byte>& reply) noexcept final;

 protected:
  // The receive buffer holds the largest reply: a header and max_payload body bytes.
  stream_channel()
      : send_(protocol::header_size + protocol::max_payload),
        recv_(protocol::header_size + protocol::max_payload) {}
  // A new connected socket with its send/receive timeouts set, or empty with `error` set.
  virtual os::unique_fd open(call_error& error) noexcept = 0;

 private:
  call_error fail(call_error e) noexcept {
    disconnect();  // a connection in an unknown state is never reused
    return e;
  }

  os::unique_fd fd_;
  std::vector<std::byte> send_;
  std::vector<std::byte> recv_;
};

}  // namespace cloak::detail
