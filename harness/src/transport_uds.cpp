// The Unix-socket transport to cloak-downstream: one connection, bounded I/O, no allocation per call.
#include <cloak/transport.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

namespace cloak {

using namespace protocol;

std::string_view to_string(call_error e) noexcept {
  switch (e) {
    case call_error::ok: return "ok";
    case call_error::bad_impersonation_level: return "bad impersonation level";
    case call_error::downstream_unavailable: return "downstream unavailable";
    case call_error::timeout: return "downstream timed out";
    case call_error::protocol: return "protocol error";
    case call_error::refused: return "refused by downstream";
    case call_error::identity_switch_failed: return "identity switch failed";
    case call_error::payload_too_large: return "payload too large";
  }
  return "unknown error";
}

namespace {

void read_view(const std::byte* body, downstream_view& out) noexcept {
  out.server_status = static_cast<status>(get<std::uint16_t>(body));
  out.level = static_cast<impersonation_level>(get<std::uint8_t>(body + 2));
  out.anonymous = get<std::uint8_t>(body + 3) != 0;
  out.context = get<std::uint64_t>(body + 8);
  // uid and gid only, set in place: building a whole identity (32 groups) costs more than the rest.
  out.seen.uid = get<std::uint32_t>(body + 16);
  out.seen.gid = get<std::uint32_t>(body + 20);
  out.seen.group_count = 0;
}

class uds_transport final : public transport {
 public:
  explicit uds_transport(uds_options options)
      : options_(std::move(options)), send_(header_size + max_payload), recv_(header_size + max_payload + reply_fixed) {}

  call_error connect() noexcept override {
    disconnect();
    os::unique_fd fd = os::connect_unix(options_.socket_path, options_.io_timeout);
    if (!fd) return call_error::downstream_unavailable;
    fd_ = std::move(fd);
    ++epoch_;
    return call_error::ok;
  }

  bool connected() const noexcept override { return static_cast<bool>(fd_); }
  void disconnect() noexcept override { fd_.reset(); }

  call_error establish(impersonation_level level, std::uint64_t release,
                       downstream_view& out) noexcept override {
    std::byte* body = begin(msg_type::establish, establish_body);
    put<std::uint8_t>(body, static_cast<std::uint8_t>(level));
    put<std::uint64_t>(body + 8, release);
    const std::byte* reply = nullptr;
    std::size_t length = 0;
    if (auto e = exchange(establish_body, msg_type::established, reply, length, out); e != call_error::ok) return e;
    if (length != established_body) return fail(call_error::protocol);
    read_view(reply, out);
    return call_error::ok;
  }

  call_error call(std::uint64_t context, impersonation_level level, std::span<const std::byte> payload,
                  downstream_view& out) noexcept override {
    // The reply echoes the payload behind a longer fixed part; both frames must fit max_payload.
    if (payload.size() > max_payload - reply_fixed) return call_error::payload_too_large;
    std::byte* body = begin(msg_type::call, call_fixed + payload.size());
    put<std::uint64_t>(body, context);
    put<std::uint8_t>(body + 8, static_cast<std::uint8_t>(level));
    if (!payload.empty()) std::memcpy(body + call_fixed, payload.data(), payload.size());
    const std::byte* reply = nullptr;
    std::size_t length = 0;
    if (auto e = exchange(call_fixed + payload.size(), msg_type::reply, reply, length, out); e != call_error::ok) return e;
    if (length != reply_fixed + payload.size()) return fail(call_error::protocol);
    read_view(reply, out);
    return call_error::ok;
  }

  call_error release(std::uint64_t context) noexcept override {
    std::byte* body = begin(msg_type::release, release_body);
    put<std::uint64_t>(body, context);
    const std::byte* reply = nullptr;
    std::size_t length = 0;
    downstream_view ignored;
    return exchange(release_body, msg_type::released, reply, length, ignored);
  }

  call_error access_check(std::uint64_t context, std::uint32_t target_uid,
                          access_outcome& out) noexcept override {
    std::byte* body = begin(msg_type::access_check, access_check_body);
    put<std::uint64_t>(body, context);
    put<std::uint32_t>(body + 8, target_uid);
    const std::byte* reply = nullptr;
    std::size_t length = 0;
    if (auto e = exchange(access_check_body, msg_type::access_result, reply, length, out.view); e != call_error::ok) return e;
    if (length != access_result_body) return fail(call_error::protocol);
    out.view.server_status = static_cast<status>(get<std::uint16_t>(reply));
    out.granted = get<std::uint8_t>(reply + 2) != 0;
    out.error_number = get<std::int32_t>(reply + 4);
    out.view.seen = identity::of(get<std::uint32_t>(reply + 8), get<std::uint32_t>(reply + 12));
    out.view.level = static_cast<impersonation_level>(get<std::uint8_t>(reply + 16));
    out.view.context = context;
    out.view.anonymous = out.view.level == impersonation_level::anonymous;
    return call_error::ok;
  }

 private:
  std::byte* begin(msg_type type, std::size_t body) noexcept {
    encode_header(header{magic, version, type, 0, ++request_id_, static_cast<std::uint32_t>(body)}, send_.data());
    return send_.data() + header_size;
  }

  call_error fail(call_error e) noexcept {
    disconnect();  // a connection in an unknown state is never reused
    return e;
  }

  // Sends the frame built by begin() and receives exactly one reply frame.
  call_error exchange(std::size_t body, msg_type expected, const std::byte*& reply, std::size_t& length,
                      downstream_view& out) noexcept {
    if (!fd_) return call_error::downstream_unavailable;
    std::size_t total = header_size + body, sent = 0;
    while (sent < total) {
      ssize_t n = ::send(fd_.get(), send_.data() + sent, total - sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return fail(errno == EAGAIN ? call_error::timeout : call_error::downstream_unavailable);
      sent += static_cast<std::size_t>(n);
    }
    std::size_t have = 0, need = header_size;
    header h;
    while (have < need) {
      ssize_t n = ::recv(fd_.get(), recv_.data() + have, recv_.size() - have, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return fail(errno == EAGAIN ? call_error::timeout : call_error::downstream_unavailable);
      if (n == 0) return fail(call_error::downstream_unavailable);
      have += static_cast<std::size_t>(n);
      if (need == header_size && have >= header_size) {
        if (decode_header({recv_.data(), have}, h) != parse_error::ok) return fail(call_error::protocol);
        need = header_size + h.length;
        if (need > recv_.size()) return fail(call_error::protocol);
      }
    }
    // A connection-level refusal (busy) answers no particular request: its request id is 0.
    bool connection_refusal = h.type == msg_type::error && h.request_id == 0;
    if (have != need || (h.request_id != request_id_ && !connection_refusal)) return fail(call_error::protocol);
    reply = recv_.data() + header_size;
    length = h.length;
    if (h.type == msg_type::error) {
      if (length < error_fixed) return fail(call_error::protocol);
      out.server_status = static_cast<status>(get<std::uint16_t>(reply));
      if (get<std::uint8_t>(reply + 2) != 0) disconnect();  // fatal: the server closes
      return call_error::refused;
    }
    if (h.type != expected) return fail(call_error::protocol);
    return call_error::ok;
  }

  uds_options options_;
  os::unique_fd fd_;
  std::uint32_t request_id_ = 0;
  std::vector<std::byte> send_;
  std::vector<std::byte> recv_;
};

}  // namespace

std::unique_ptr<transport> make_uds_transport(uds_options options) {
  return std::make_unique<uds_transport>(std::move(options));
}

}  // namespace cloak
