// The robustness tests' shared fixtures and tools (see support.hpp).
#include "support.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

extern char** environ;

namespace cloak::robustness {

using namespace protocol;

const client_range& clients() {
  static const client_range range = [] {
    client_range r;  // 61000:61000:16
    check_client_range(r);
    return r;
  }();
  return range;
}

identity client(std::uint32_t index) { return clients().client(index); }

token client_token(std::uint32_t index, impersonation_level level) {
  return make_token(client(index), level);
}

namespace {

// The process identity, read before any test runs (static initialisation precedes main).
identity read_process_identity() {
  identity who;
  who.uid = static_cast<std::uint32_t>(::getuid());
  who.gid = static_cast<std::uint32_t>(::getgid());
  int n = ::getgroups(static_cast<int>(max_groups), reinterpret_cast<gid_t*>(who.groups.data()));
  who.group_count = n < 0 ? 0 : static_cast<std::uint32_t>(n);
  return who;
}
const identity process_at_start = read_process_identity();

}  // namespace

void leak_checked_test::TearDown() {
  try {
    check_no_thread_leak(process_at_start);
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what();
  }
}

void kernel_test::SetUp() {
  if (auto why = kernel_backend_unavailable_reason()) GTEST_SKIP() << *why;
  kernel_ = make_kernel_backend();
  clients();
}

void kernel_test::TearDown() {
  if (kernel_ && kernel_->thread_has_token()) {
    ADD_FAILURE() << "the test thread still carries the token of "
                  << to_string(kernel_->thread_token()->who);
    kernel_->revert();
  }
  leak_checked_test::TearDown();
}

downstream_config kernel_test::config() {
  downstream_config c;
  c.clients = clients();
  return c;
}

std::unique_ptr<transport> kernel_test::connect_to(const downstream_process& server,
                                                   std::chrono::milliseconds io_timeout) {
  return make_uds_transport({server.socket_path(), io_timeout});
}

::testing::AssertionResult serves_correctly(identity_backend& kernel,
                                            const downstream_process& server) {
  static const std::byte payload[48]{};
  {
    auto t = make_uds_transport({server.socket_path(), 2000ms});
    proxy p(kernel, *t);
    call_result r = p.call(payload);
    if (!r.ok())
      return ::testing::AssertionFailure() << "no-cloaking call failed: " << to_string(r.error);
    if (!r.view.seen.same_principal(kernel.process_identity())) {
      return ::testing::AssertionFailure() << "no-cloaking call: D saw " << to_string(r.view.seen);
    }
  }
  auto t = make_uds_transport({server.socket_path(), 2000ms});
  proxy p(kernel, *t);
  blanket b;
  b.mode = cloaking::dynamic;
  p.set_blanket(b);
  impersonation as_c1(kernel, client_token(0));
  call_result r = p.call(payload);
  if (!r.ok())
    return ::testing::AssertionFailure() << "dynamic call as C1 failed: " << to_string(r.error);
  if (!r.view.seen.same_principal(client(0))) {
    return ::testing::AssertionFailure() << "dynamic call as C1: D saw " << to_string(r.view.seen);
  }
  access_outcome out;
  r = p.access_check(clients().first_uid, out);
  if (!r.ok() || !out.granted) {
    return ::testing::AssertionFailure()
           << "access check as C1 on C1's probe file: " << to_string(r.error)
           << " granted=" << out.granted << " errno=" << out.error_number;
  }
  return ::testing::AssertionSuccess();
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
  os::unique_fd fd(os::check([] { return ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0); },
                             "cannot open socket"));
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  os::check([&] { return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr); },
            "cannot connect to {}", socket_path);
  fd_ = std::move(fd);
}

bool raw_client::send_bytes(std::span<const std::byte> bytes) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd_.get(), bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      last_errno_ = errno;
      return false;
    }
    sent += static_cast<std::size_t>(n);
  }
  return true;
}

bool raw_client::send_frame(msg_type type, std::span<const std::byte> body,
                            std::uint32_t request_id, std::uint16_t flags) {
  std::vector<std::byte> bytes = header_bytes(
      header{magic, version, type, flags, request_id, static_cast<std::uint32_t>(body.size())});
  bytes.insert(bytes.end(), body.begin(), body.end());
  return send_bytes(bytes);
}

bool raw_client::recv_exact(std::byte* p, std::size_t n, read_result& why) {
  std::size_t have = 0;
  while (have < n) {
    ssize_t r = ::recv(fd_.get(), p + have, n - have, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      last_errno_ = errno;
      why = errno == EAGAIN ? read_result::timeout : read_result::closed;  // ECONNRESET: closed
      return false;
    }
    if (r == 0) {
      why = read_result::closed;
      return false;
    }
    have += static_cast<std::size_t>(r);
  }
  return true;
}

read_result raw_client::read(frame& out) {
  std::byte head[header_size];
  read_result why = read_result::frame;
  if (!recv_exact(head, header_size, why)) return why;
  if (decode_header({head, header_size}, out.head) != parse_error::ok) {
    ADD_FAILURE() << "the server sent a frame header that does not parse";
    return read_result::closed;
  }
  out.body.resize(out.head.length);
  if (!recv_exact(out.body.data(), out.body.size(), why)) return why;
  return read_result::frame;
}

std::optional<frame> raw_client::read_frame() {
  frame f;
  if (read(f) != read_result::frame) return std::nullopt;
  return f;
}

bool raw_client::closed_by_server() {
  std::byte sink[4096];
  for (;;) {
    ssize_t r = ::recv(fd_.get(), sink, sizeof sink, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) return true;
    if (r < 0) return errno == ECONNRESET;  // EAGAIN: still open after the receive timeout
  }
}

void raw_client::shutdown_writes() { ::shutdown(fd_.get(), SHUT_WR); }

std::optional<std::uint64_t> raw_client::establish(impersonation_level level,
                                                   std::uint64_t release) {
  std::uint32_t id = ++next_request_;
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

std::vector<std::byte> establish_body(impersonation_level level, std::uint64_t release) {
  std::vector<std::byte> b(protocol::establish_body);
  put<std::uint8_t>(b.data(), static_cast<std::uint8_t>(level));
  put<std::uint64_t>(b.data() + 8, release);
  return b;
}

std::vector<std::byte> call_body(std::uint64_t context, impersonation_level level,
                                 std::span<const std::byte> payload) {
  std::vector<std::byte> b(call_fixed + payload.size());
  put<std::uint64_t>(b.data(), context);
  put<std::uint8_t>(b.data() + 8, static_cast<std::uint8_t>(level));
  if (!payload.empty()) std::memcpy(b.data() + call_fixed, payload.data(), payload.size());
  return b;
}

std::vector<std::byte> release_body(std::uint64_t context) {
  std::vector<std::byte> b(protocol::release_body);
  put<std::uint64_t>(b.data(), context);
  return b;
}

std::vector<std::byte> access_check_body(std::uint64_t context, std::uint32_t target_uid) {
  std::vector<std::byte> b(protocol::access_check_body);
  put<std::uint64_t>(b.data(), context);
  put<std::uint32_t>(b.data() + 8, target_uid);
  return b;
}

command_result run_command(const std::vector<std::string>& argv) {
  int fds[2];
  os::check([&] { return ::pipe2(fds, O_CLOEXEC); }, "cannot create a pipe");
  os::unique_fd read_end(fds[0]), write_end(fds[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 2);
  std::vector<char*> args;
  std::vector<std::string> copy = argv;
  for (auto& a : copy) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, copy[0].c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) os::throw_errno(rc, fmt::format("cannot run {}", argv[0]));
  write_end.reset();
  command_result result;
  char buf[4096];
  // Bounded: a program that never exits is a hang, reported as one.
  auto deadline = std::chrono::steady_clock::now() + 30s;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{read_end.get(), POLLIN, 0};
    if (left.count() <= 0 ||
        os::retry_eintr([&] { return ::poll(&p, 1, static_cast<int>(left.count())); }) <= 0) {
      ::kill(pid, SIGKILL);
      ADD_FAILURE() << argv[0] << " did not finish within 30 s";
      break;
    }
    ssize_t n = os::retry_eintr([&] { return ::read(read_end.get(), buf, sizeof buf); });
    if (n <= 0) break;
    result.output.append(buf, static_cast<std::size_t>(n));
  }
  int status = 0;
  os::retry_eintr([&] { return ::waitpid(pid, &status, 0); });
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

temp_dir::temp_dir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = fmt::format("{}/cloak-robustness.XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!::mkdtemp(pattern.data())) os::throw_errno(errno, fmt::format("cannot create {}", pattern));
  path_ = pattern;
}

temp_dir::~temp_dir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace cloak::robustness
