// Transports: how a proxy reaches its downstream (Unix socket to cloak-downstream, or in-process model).
#pragma once

#include <cloak/identity.hpp>
#include <cloak/os.hpp>
#include <cloak/protocol.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace cloak {

// Every way a call can fail. Values are stable: they appear in results and verify output.
enum class call_error : std::uint8_t {
  ok = 0,
  bad_impersonation_level,  // cloaking under a thread token below impersonate level
  downstream_unavailable,   // cannot connect, or the connection broke
  timeout,                  // the downstream did not answer within the bound
  protocol,                 // the downstream sent something that is not a valid reply
  refused,                  // the downstream answered with an error status (see server_status)
  identity_switch_failed,   // could not present the identity the blanket requires
  payload_too_large,
};
std::string_view to_string(call_error e) noexcept;

// What the downstream says it saw: the identity it took from the kernel for this call.
struct downstream_view {
  identity seen;  // uid and gid only (the kernel tells a peer nothing more)
  bool anonymous = false;
  impersonation_level level = impersonation_level::impersonate;
  std::uint64_t context = 0;
  protocol::status server_status = protocol::status::ok;
};

struct access_outcome {
  downstream_view view;
  bool granted = false;
  int error_number = 0;  // errno the downstream got opening the file as the caller
};

// One connection to one downstream. Not thread-safe: each client thread owns its transports.
class transport {
 public:
  virtual ~transport() = default;

  // (Re)connects; returns ok or downstream_unavailable. Each successful connect starts a new
  // epoch: contexts from an earlier epoch are gone.
  virtual call_error connect() noexcept = 0;
  virtual bool connected() const noexcept = 0;
  virtual void disconnect() noexcept = 0;
  std::uint64_t epoch() const noexcept { return epoch_; }

  // Establishes a security context from the calling thread's current identity (the downstream
  // reads it from the kernel, or the model's thread token). `release` is a context to forget in
  // the same round trip (0 = none).
  virtual call_error establish(impersonation_level level, std::uint64_t release,
                               downstream_view& out) noexcept = 0;
  // A call under `context`; context 0 means per-message authentication (this message's credentials).
  virtual call_error call(std::uint64_t context, impersonation_level level,
                          std::span<const std::byte> payload, downstream_view& out) noexcept = 0;
  virtual call_error release(std::uint64_t context) noexcept = 0;
  virtual call_error access_check(std::uint64_t context, std::uint32_t target_uid,
                                  access_outcome& out) noexcept = 0;

 protected:
  std::uint64_t epoch_ = 0;
};

struct uds_options {
  std::string socket_path;
  std::chrono::milliseconds io_timeout{2000};  // every send and receive is bounded by this
};

// Unix-socket transport to cloak-downstream. Identity travels only as kernel credentials.
std::unique_ptr<transport> make_uds_transport(uds_options options);

class identity_backend;
class model_downstream;
// In-process transport for the model backend: the model downstream reads the caller's identity
// from the model backend's thread token, as the real one reads the kernel's.
std::unique_ptr<transport> make_inproc_transport(model_downstream& downstream,
                                                 const identity_backend& model);

}  // namespace cloak
