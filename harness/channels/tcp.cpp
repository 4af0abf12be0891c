// The TCP channel to a cloak-downstream on another host: the uds framing over a byte stream, and no
// kernel credentials (the package says who the caller is).
#include <cloak/net.hpp>
#include <cloak/transport.hpp>

#include "stream_channel.hpp"

namespace cloak {

namespace {

class tcp_channel final : public detail::stream_channel {
 public:
  explicit tcp_channel(tcp_options options) : options_(std::move(options)) {
    // Checked once here, not on every connect: a bad address is a configuration error.
    endpoint_ = os::parse_tcp_endpoint(fmt::format("tcp:{}:{}", options_.host, options_.port));
  }
  bool carries_kernel_credentials() const noexcept override { return false; }

 private:
  os::unique_fd open(call_error& error) noexcept override {
    os::unique_fd fd = os::connect_tcp(endpoint_, options_.io_timeout);
    if (!fd) error = errno == ETIMEDOUT ? call_error::timeout : call_error::downstream_unavailable;
    return fd;
  }

  tcp_options options_;
  os::tcp_endpoint endpoint_;
};

}  // namespace

std::unique_ptr<channel> make_tcp_channel(tcp_options options) {
  return std::make_unique<tcp_channel>(std::move(options));
}

}  // namespace cloak
