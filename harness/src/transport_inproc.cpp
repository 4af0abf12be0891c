// The model's in-process transport: the same session logic as cloak-downstream, with the caller's
// identity read from the model backend's thread token instead of the kernel.
#include <cloak/backend.hpp>
#include <cloak/downstream.hpp>
#include <cloak/transport.hpp>

#include <cstring>

namespace cloak {

namespace {

void copy_view(const downstream_session::view& v, downstream_view& out) noexcept {
  out.server_status = v.result;
  out.seen = v.seen;
  out.anonymous = v.anonymous;
  out.level = v.level;
  out.context = v.context;
}

class inproc_transport final : public transport {
 public:
  inproc_transport(model_downstream& downstream, const identity_backend& model)
      : downstream_(downstream), model_(model), echo_(protocol::max_payload) {}

  call_error connect() noexcept override {
    session_ = &downstream_.new_session();
    restarts_ = downstream_.restarts();
    ++epoch_;
    return call_error::ok;
  }
  bool connected() const noexcept override { return session_ != nullptr && alive(); }
  void disconnect() noexcept override { session_ = nullptr; }

  call_error establish(impersonation_level level, std::uint64_t release,
                       downstream_view& out) noexcept override {
    if (!connected()) return broken();
    identity creds = model_.read_thread_identity();
    auto v = session_->establish(&creds, static_cast<std::uint8_t>(level), release);
    copy_view(v, out);
    return v.result == protocol::status::ok ? call_error::ok : call_error::refused;
  }

  call_error call(std::uint64_t context, impersonation_level level, std::span<const std::byte> payload,
                  downstream_view& out) noexcept override {
    if (!connected()) return broken();
    if (payload.size() > echo_.size()) return call_error::payload_too_large;
    identity creds;
    if (context == 0) creds = model_.read_thread_identity();
    auto v = session_->call(context == 0 ? &creds : nullptr, context, static_cast<std::uint8_t>(level));
    copy_view(v, out);
    if (!payload.empty()) std::memcpy(echo_.data(), payload.data(), payload.size());
    return v.result == protocol::status::ok ? call_error::ok : call_error::refused;
  }

  call_error release(std::uint64_t context) noexcept override {
    if (!connected()) return broken();
    return session_->release(context) == protocol::status::ok ? call_error::ok : call_error::refused;
  }

  call_error access_check(std::uint64_t context, std::uint32_t target_uid,
                          access_outcome& out) noexcept override {
    if (!connected()) return broken();
    auto a = session_->access_check(context, target_uid);
    copy_view(a.who, out.view);
    out.granted = a.granted;
    out.error_number = a.error_number;
    return a.who.result == protocol::status::unknown_context ? call_error::refused : call_error::ok;
  }

 private:
  bool alive() const noexcept { return downstream_.restarts() == restarts_; }
  call_error broken() noexcept {
    session_ = nullptr;
    return call_error::downstream_unavailable;
  }

  model_downstream& downstream_;
  const identity_backend& model_;
  downstream_session* session_ = nullptr;
  std::uint64_t restarts_ = 0;
  std::vector<std::byte> echo_;
};

}  // namespace

std::unique_ptr<transport> make_inproc_transport(model_downstream& downstream,
                                                 const identity_backend& model) {
  return std::make_unique<inproc_transport>(downstream, model);
}

}  // namespace cloak
