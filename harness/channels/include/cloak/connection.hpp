// How a proxy reaches its downstream: a channel carries frames (uds to cloak-downstream, tcp to one
// on another host, inproc to the model), an authentication package says who is presented, and the
// connection joins them with the codec.
#pragma once

#include <chrono>
#include <cloak/auth.hpp>
#include <cloak/call.hpp>
#include <cloak/identity.hpp>
#include <cloak/os.hpp>
#include <cloak/protocol.hpp>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace cloak {

// Frames and nothing else: one request frame out, exactly one reply frame back, every wait bounded.
class channel {
 public:
  virtual ~channel() = default;

  // (Re)connects; each successful connect starts a new epoch.
  virtual call_error connect() noexcept = 0;
  virtual bool connected() const noexcept = 0;
  virtual void disconnect() noexcept = 0;
  std::uint64_t epoch() const noexcept { return epoch_; }

  // Whether the downstream learns each frame's sender from the kernel (the local package needs it).
  virtual bool carries_kernel_credentials() const noexcept = 0;
  // Where the next request frame is built: header_size + max_payload bytes.
  virtual std::span<std::byte> request_buffer() noexcept = 0;
  // Sends the first `size` bytes of request_buffer() and receives one whole reply frame (header and
  // body, header already checked), valid until the next exchange. A broken or timed-out channel is
  // disconnected.
  virtual call_error exchange(std::size_t size, std::span<const std::byte>& reply) noexcept = 0;

 protected:
  std::uint64_t epoch_ = 0;
};

struct uds_options {
  std::string socket_path;
  std::chrono::milliseconds io_timeout{2000};  // every send and receive is bounded by this
};

// Unix-socket channel to cloak-downstream; the kernel attaches the sender's credentials.
std::unique_ptr<channel> make_uds_channel(uds_options options);

struct tcp_options {
  std::string host;  // a dotted IPv4 address: nothing here resolves names
  std::uint16_t port = 0;
  std::chrono::milliseconds io_timeout{2000};  // the connect, every send and every receive
};

// TCP channel to a cloak-downstream on another host (or network namespace). The same frames as uds;
// no kernel credentials cross it, so only a package that authenticates by itself (kerberos) runs on
// it.
std::unique_ptr<channel> make_tcp_channel(tcp_options options);

class identity_backend;
class model_downstream;
// In-process channel for the model backend: frames go straight to a model session, the sender's
// "kernel credentials" being the model backend's thread token.
std::unique_ptr<channel> make_inproc_channel(model_downstream& downstream,
                                             const identity_backend& model);

// What the last establish did beside its result (for counters and error messages).
struct establish_report {
  bool switched_identity = false;
  std::string detail;  // the package's explanation of a failure
  // The exchange on the wire (a connection's count, whatever the package): `legs` counts the
  // tokens either side sent that were not empty (NTLM: NEGOTIATE, CHALLENGE, AUTHENTICATE = 3;
  // krb5 with mutual authentication: AP-REQ, AP-REP = 2), `token_bytes` their bytes, and
  // `round_trips` the establish and continue frames the client sent.
  std::uint32_t legs = 0;
  std::uint32_t round_trips = 0;
  std::uint64_t token_bytes = 0;
};

// The same summed over every establish that succeeded on a connection, for the per-context
// figures (legs / contexts, token_bytes / contexts).
struct establish_totals {
  std::uint64_t contexts = 0;
  std::uint64_t legs = 0;
  std::uint64_t round_trips = 0;
  std::uint64_t token_bytes = 0;
};

// One connection to one downstream, as a proxy uses it. Not thread-safe: each client thread owns
// its connections.
class connection {
 public:
  virtual ~connection() = default;

  // (Re)connects; returns ok or downstream_unavailable. Each successful connect starts a new
  // epoch: contexts from an earlier epoch are gone.
  virtual call_error connect() noexcept = 0;
  virtual bool connected() const noexcept = 0;
  virtual void disconnect() noexcept = 0;
  virtual std::uint64_t epoch() const noexcept = 0;

  // Establishes a security context presenting `p` through the package. `release` is a context to
  // forget in the same round trip (0 = none); it is released only when the establish succeeds.
  virtual call_error establish(const presentation& p, std::uint64_t release,
                               downstream_view& out) noexcept = 0;
  const establish_report& last_establish() const noexcept { return report_; }
  const establish_totals& totals() const noexcept { return totals_; }
  // A call under `context`; context 0 means per-message authentication (this message's
  // credentials).
  virtual call_error call(std::uint64_t context, impersonation_level level,
                          std::span<const std::byte> payload, downstream_view& out) noexcept = 0;
  virtual call_error release(std::uint64_t context) noexcept = 0;
  virtual call_error access_check(std::uint64_t context, std::uint32_t target_uid,
                                  access_outcome& out) noexcept = 0;
  // Asks the downstream to act as the caller of `context` and call its own next hop through a proxy
  // with `hop`'s cloaking and level (forward_call). `out.detail` is valid until the next exchange.
  // A connection that cannot carry it answers refused / no_next_hop.
  virtual call_error forward(std::uint64_t context, const next_hop& hop,
                             std::span<const std::byte> payload, forward_outcome& out) noexcept;

 protected:
  establish_report report_;
  establish_totals totals_;
};

// A connection over `channel` authenticating with `package`.
std::unique_ptr<connection> make_connection(std::unique_ptr<channel> channel,
                                            std::unique_ptr<client_package> package);

// The local package over a Unix socket to cloak-downstream.
std::unique_ptr<connection> make_uds_connection(uds_options options);
// The local package over the in-process channel to the model downstream.
std::unique_ptr<connection> make_inproc_connection(model_downstream& downstream,
                                                   const identity_backend& model);

}  // namespace cloak
