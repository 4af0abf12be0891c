// A client of the wire protocol (docs/protocol.md) with no help and no checks: it sends whatever a
// test builds, byte for byte, one seqpacket message per send, and reads frames back (one message
// each) with every wait bounded.
#pragma once

#include <array>
#include <chrono>
#include <cloak/identity.hpp>
#include <cloak/os.hpp>
#include <cloak/protocol.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace cloak::test {

// One frame as read off the wire.
struct frame {
  protocol::header head;
  std::vector<std::byte> body;
  std::array<std::byte, protocol::header_size> raw_head{};  // the header's bytes as they came

  std::vector<std::byte> raw() const;     // header and body as they came off the socket
  protocol::status error_status() const;  // for an error frame
  bool error_fatal() const;
  std::uint64_t context() const;  // for established/reply frames
  std::uint32_t seen_uid() const;
  std::uint32_t seen_gid() const;
};

enum class read_result { frame, closed, timeout };

class raw_client {
 public:
  // Connects (as the calling thread) or throws std::system_error. Every send and receive is bounded
  // by `timeout`, so a server that does not answer fails the test instead of hanging it.
  explicit raw_client(const std::string& socket_path,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

  // One message holding exactly `bytes` (a frame, part of one, or several: whatever the test
  // built).
  bool send_bytes(std::span<const std::byte> bytes);
  bool send_frame(protocol::msg_type type, std::span<const std::byte> body,
                  std::uint32_t request_id, std::uint16_t flags = 0);
  // Reads one message, which must be exactly one frame, or says the server closed or did not
  // answer in time.
  read_result read(frame& out);
  std::optional<frame> read_frame();
  // True when the next thing the server does is close its end (EOF, or a reset because it left our
  // bytes unread); false when it sends more or does not close in time.
  bool closed_by_server();
  void shutdown_writes();
  int fd() const { return fd_.get(); }
  int last_errno() const { return last_errno_; }
  // A request id this client has not used yet.
  std::uint32_t next_request_id() { return ++next_request_; }

  // A round trip that must succeed (else the test fails and nullopt is returned).
  std::optional<std::uint64_t> establish(
      impersonation_level level = impersonation_level::impersonate, std::uint64_t release = 0);

 private:
  os::unique_fd fd_;
  int last_errno_ = 0;
  std::uint32_t next_request_ = 1000;
};

// Bodies, laid out as docs/protocol.md says. Any level byte may be sent, valid or not.
// establish: the local package (1) with no token unless told otherwise.
std::vector<std::byte> establish_body(impersonation_level level, std::uint64_t release = 0,
                                      std::uint8_t package = 1,
                                      std::span<const std::byte> token = {});
std::vector<std::byte> call_body(std::uint64_t context, impersonation_level level,
                                 std::span<const std::byte> payload = {});
std::vector<std::byte> release_body(std::uint64_t context);
std::vector<std::byte> access_check_body(std::uint64_t context, std::uint32_t target_uid);
std::vector<std::byte> header_bytes(const protocol::header& h);
// A whole frame: `head` (its length set to the body's size), then `body`.
std::vector<std::byte> frame_bytes(protocol::header head, std::span<const std::byte> body = {});

}  // namespace cloak::test
