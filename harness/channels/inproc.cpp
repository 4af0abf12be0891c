// The model's in-process channel: the same frames and session logic as cloak-downstream, with the
// sender's identity read from the model backend's thread token instead of the kernel.
#include <cloak/backend.hpp>
#include <cloak/connection.hpp>
#include <cloak/downstream.hpp>

namespace cloak {

using namespace protocol;

namespace {

class inproc_channel final : public channel {
 public:
  inproc_channel(model_downstream& downstream, const identity_backend& model)
      : downstream_(downstream), model_(model), request_(header_size + max_payload) {
    reply_.reserve(header_size + max_payload);
  }

  call_error connect() noexcept override {
    session_ = &downstream_.new_session();
    restarts_ = downstream_.restarts();
    ++epoch_;
    return call_error::ok;
  }
  bool connected() const noexcept override {
    return session_ != nullptr && downstream_.restarts() == restarts_;
  }
  void disconnect() noexcept override { session_ = nullptr; }
  bool carries_kernel_credentials() const noexcept override { return true; }
  std::span<std::byte> request_buffer() noexcept override { return request_; }

  call_error exchange(std::size_t size, std::span<const std::byte>& reply) noexcept override {
    if (!connected()) {
      session_ = nullptr;
      return call_error::downstream_unavailable;
    }
    header h;
    if (decode_header({request_.data(), size}, h) != parse_error::ok ||
        size != header_size + h.length) {
      return call_error::protocol;
    }
    identity creds = model_.read_thread_identity();
    reply_.clear();
    try {
      if (!session_->handle_frame(h, {request_.data() + header_size, h.length},
                                  peer_info{&creds, true}, reply_)) {
        session_ = nullptr;
      }
    } catch (...) {  // the model's server failing is a broken connection, as a real one crashing is
      session_ = nullptr;
      return call_error::downstream_unavailable;
    }
    reply = reply_;
    return call_error::ok;
  }

 private:
  model_downstream& downstream_;
  const identity_backend& model_;
  downstream_session* session_ = nullptr;
  std::uint64_t restarts_ = 0;
  std::vector<std::byte> request_;
  std::vector<std::byte> reply_;
};

}  // namespace

std::unique_ptr<channel> make_inproc_channel(model_downstream& downstream,
                                             const identity_backend& model) {
  return std::make_unique<inproc_channel>(downstream, model);
}

std::unique_ptr<connection> make_inproc_connection(model_downstream& downstream,
                                                   const identity_backend& model) {
  return make_connection(make_inproc_channel(downstream, model), make_local_client());
}

}  // namespace cloak
