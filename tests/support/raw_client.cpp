// The raw protocol client (see cloak/test/raw_client.hpp).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cloak/test/raw_client.hpp>
#include <cstring>

namespace cloak::test {

using namespace protocol;

std::vector<std::byte> frame::raw() const {
  std::vector<std::byte> out(raw_head.begin(), raw_head.end());
  out.insert(out.end(), body.begin(), body.end());
  return out;
}
status frame::error_status() const {
  return body.size() >= 2 ? static_cast<status>(get<std::uint16_t>(body.data())) : status::internal;
}
bool frame::error_fatal() const {
  return body.size() >= 3 && get<std::uint8_t>(body.data() + 2) != 0;
}
std::uint64_t frame::context() const {
  return body.size() >= 16 ? get<std::uint64_t>(body.data() + 8) : 0;
}
std::uint32_t frame::seen_uid() const {
  return body.size() >= 24 ? get<std::uint32_t>(body.data() + 16) : 0;
}
std::uint32_t frame::seen_gid() const {
  return body.size() >= 24 ? get<std::uint32_t>(body.data() + 20) : 0;
}

raw_client::raw_client(const std::string& socket_path, std::chrono::milliseconds timeout) {
  os::unique_fd fd = os::connect_unix(socket_path, timeout, os::unix_kind::seqpacket);
  if (!fd) os::throw_errno(errno, fmt::format("cannot connect to {}", socket_path));
  fd_ = std::move(fd);
}

bool raw_client::send_bytes(std::span<const std::byte> bytes) {
  ssize_t n =
      os::retry_eintr([&] { return ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL); });
  if (n == static_cast<ssize_t>(bytes.size())) return true;
  last_errno_ = errno;
  return false;
}

bool raw_client::send_frame(msg_type type, std::span<const std::byte> body,
                            std::uint32_t request_id, std::uint16_t flags) {
  return send_bytes(frame_bytes(header{magic, version, type, flags, request_id, 0}, body));
}

read_result raw_client::read(frame& out) {
  std::vector<std::byte> message(header_size + max_payload + 1);
  ssize_t n =
      os::retry_eintr([&] { return ::recv(fd_.get(), message.data(), message.size(), MSG_TRUNC); });
  if (n <= 0) {
    last_errno_ = n == 0 ? 0 : errno;  // 0 when the server closed first
    return n < 0 && errno == EAGAIN ? read_result::timeout : read_result::closed;  // ECONNRESET
  }
  std::size_t size = static_cast<std::size_t>(n);
  if (size < header_size || size > message.size() ||
      decode_header({message.data(), size}, out.head) != parse_error::ok ||
      size != header_size + out.head.length) {
    ADD_FAILURE() << "the server sent a message of " << size << " bytes that is not one frame";
    return read_result::closed;
  }
  std::memcpy(out.raw_head.data(), message.data(), header_size);
  out.body.assign(message.begin() + header_size, message.begin() + static_cast<long>(size));
  return read_result::frame;
}

std::optional<frame> raw_client::read_frame() {
  frame f;
  if (read(f) != read_result::frame) return std::nullopt;
  return f;
}

bool raw_client::closed_by_server() {
  std::byte b;
  ssize_t n = os::retry_eintr([&] { return ::recv(fd_.get(), &b, 1, 0); });
  if (n < 0) last_errno_ = errno;
  return n == 0 || (n < 0 && errno == ECONNRESET);  // EAGAIN: still open after the timeout
}

void raw_client::shutdown_writes() { ::shutdown(fd_.get(), SHUT_WR); }

std::optional<std::uint64_t> raw_client::establish(impersonation_level level,
                                                   std::uint64_t release) {
  std::uint32_t id = next_request_id();
  if (!send_frame(msg_type::establish, establish_body(level, release), id)) {
    ADD_FAILURE() << "cannot send establish: " << std::strerror(last_errno_);
    return std::nullopt;
  }
  frame f;
  if (read(f) != read_result::frame) {
    ADD_FAILURE() << "no reply to establish";
    return std::nullopt;
  }
  if (f.head.type != msg_type::established || f.head.request_id != id ||
      get<std::uint16_t>(f.body.data()) != 0) {
    ADD_FAILURE() << "establish refused: type " << to_string(f.head.type) << " status "
                  << to_string(f.error_status());
    return std::nullopt;
  }
  return f.context();
}

std::vector<std::byte> header_bytes(const header& h) {
  std::vector<std::byte> out(header_size);
  encode_header(h, out.data());
  return out;
}

std::vector<std::byte> frame_bytes(header head, std::span<const std::byte> body) {
  head.length = static_cast<std::uint32_t>(body.size());
  std::vector<std::byte> out = header_bytes(head);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

std::vector<std::byte> establish_body(impersonation_level level, std::uint64_t release,
                                      std::uint8_t package, std::span<const std::byte> token) {
  std::vector<std::byte> b(16 + token.size());
  put<std::uint8_t>(b.data(), static_cast<std::uint8_t>(level));
  put<std::uint8_t>(b.data() + 1, package);
  put<std::uint32_t>(b.data() + 4, static_cast<std::uint32_t>(token.size()));
  put<std::uint64_t>(b.data() + 8, release);
  if (!token.empty()) std::memcpy(b.data() + 16, token.data(), token.size());
  return b;
}

std::vector<std::byte> call_body(std::uint64_t context, impersonation_level level,
                                 std::span<const std::byte> payload) {
  std::vector<std::byte> b(16 + payload.size());  // no MIC: mic_length (offset 10) stays 0
  put<std::uint64_t>(b.data(), context);
  put<std::uint8_t>(b.data() + 8, static_cast<std::uint8_t>(level));
  if (!payload.empty()) std::memcpy(b.data() + 16, payload.data(), payload.size());
  return b;
}

std::vector<std::byte> release_body(std::uint64_t context) {
  std::vector<std::byte> b(8);
  put<std::uint64_t>(b.data(), context);
  return b;
}

std::vector<std::byte> access_check_body(std::uint64_t context, std::uint32_t target_uid) {
  std::vector<std::byte> b(16);
  put<std::uint64_t>(b.data(), context);
  put<std::uint32_t>(b.data() + 8, target_uid);
  return b;
}

}  // namespace cloak::test
