// The Unix-socket channel to cloak-downstream: the kernel attaches the sender's credentials to
// every frame (the local package's source of truth).
#include <cloak/transport.hpp>

#include "stream_channel.hpp"

namespace cloak {

namespace {

class uds_channel final : public detail::stream_channel {
 public:
  explicit uds_channel(uds_options options) : options_(std::move(options)) {}
  bool carries_kernel_credentials() const noexcept override { return true; }

 private:
  os::unique_fd open(call_error& error) noexcept override {
    os::unique_fd fd = os::connect_unix(options_.socket_path, options_.io_timeout);
    if (!fd) error = call_error::downstream_unavailable;
    return fd;
  }

  uds_options options_;
};

}  // namespace

std::unique_ptr<channel> make_uds_channel(uds_options options) {
  return std::make_unique<uds_channel>(std::move(options));
}

std::unique_ptr<transport> make_uds_transport(uds_options options) {
  return make_connection(make_uds_channel(std::move(options)), make_local_client());
}

}  // namespace cloak
