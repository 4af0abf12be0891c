// The one seam through which cloakbench talks to POSIX: owned descriptors and errors that say what
// failed.
#pragma once

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace cloak::os {

// Throws std::system_error carrying errno and what was attempted.
[[noreturn]] void throw_errno(int error, const std::string& what);

// Runs f until it does not fail with EINTR. Never use for close().
template <class F>
auto retry_eintr(F&& f) {
  for (;;) {
    auto rc = f();
    if (rc != -1 || errno != EINTR) return rc;
  }
}

// Calls f (EINTR retried); throws std::system_error "<what>: <strerror>" if it returns -1.
template <class F, class... Args>
auto check(F&& f, fmt::format_string<Args...> what, Args&&... args) {
  auto rc = retry_eintr(std::forward<F>(f));
  if (rc == -1) throw_errno(errno, fmt::format(what, std::forward<Args>(args)...));
  return rc;
}

// A point in time every wait of one operation shares: a poll retried on EINTR waits for what is
// left, so signals arriving cannot stretch the wait past it (fmt's os.cc keeps its deadline too).
class deadline {
 public:
  using clock = std::chrono::steady_clock;
  explicit deadline(std::chrono::milliseconds from_now) noexcept : at_(clock::now() + from_now) {}
  explicit deadline(clock::time_point at) noexcept : at_(at) {}
  static deadline never() noexcept { return deadline(clock::time_point::max()); }

  bool passed() const noexcept { return at_ != clock::time_point::max() && clock::now() >= at_; }
  // What is left, zero once passed (and a very long time for never()).
  std::chrono::milliseconds left() const noexcept;
  // poll's timeout for what is left: rounded up, 0 once passed, -1 for never().
  int poll_timeout() const noexcept;
  clock::time_point at() const noexcept { return at_; }

 private:
  clock::time_point at_;
};

// poll until one of `fds` is ready or `until` passes; EINTR is retried with the time left, never
// with the whole timeout again. Returns poll's count (0: the deadline passed first), -1 with errno
// set on an error.
int poll_until(pollfd* fds, std::size_t count, const deadline& until) noexcept;

// Writes all of `text` to `fd` (a pipe or a file; EINTR retried). False with errno set when a write
// fails (EPIPE: the reader is gone; EBADF for fd < 0).
[[nodiscard]] bool write_all(int fd, std::string_view text) noexcept;

class unique_fd {
 public:
  unique_fd() noexcept = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// What a Unix socket carries: a byte stream (the realm's control socket) or framed messages
// (SOCK_SEQPACKET, the downstream's socket: one send and one receive per message, credentials per
// message).
enum class unix_kind { stream, seqpacket };

// A connected AF_UNIX socket (close-on-exec) whose every send and receive is bounded by
// `io_timeout` (zero: unbounded); so is a connect that waits for room in a full backlog. Empty on
// failure, with errno set (ENAMETOOLONG for a path that does not fit sockaddr_un). EINTR is
// retried.
unique_fd connect_unix(const std::string& path, std::chrono::milliseconds io_timeout,
                       unix_kind kind = unix_kind::stream) noexcept;

// A listening AF_UNIX socket (close-on-exec) bound at `path`. Throws std::system_error.
unique_fd listen_unix(const std::string& path, int backlog = 128,
                      unix_kind kind = unix_kind::stream);

// Sends or receives exactly `n` bytes (EINTR retried). False on an error, a timeout (errno set)
// or, for recv_all, the peer closing first (errno 0). Each send and receive waits at most the
// socket's own timeout.
bool send_all(int fd, const void* data, std::size_t n) noexcept;
bool recv_all(int fd, void* data, std::size_t n) noexcept;

// Sends all `n` bytes on a stream socket within one `timeout` for the whole (zero: unbounded): a
// partly written reply to a peer that stops reading is abandoned when the time is up, not after
// one timeout per send(). The first send is non-blocking and usually all there is: no clock is read
// and no poll made unless the socket is full. False with errno set (ETIMEDOUT when time ran out).
bool send_all_within(int fd, const void* data, std::size_t n,
                     std::chrono::milliseconds timeout) noexcept;

// Sends `n` bytes in one sendmsg carrying an explicit SCM_CREDENTIALS `claim` (the kernel refuses a
// claim that is not one of the sender's own ids, EPERM). EINTR is retried; returns sendmsg's
// result.
ssize_t send_with_credentials(int fd, const void* data, std::size_t n, const ucred& claim) noexcept;

// What one recvmsg brought.
struct received {
  // recvmsg's result (-1 with errno set, 0 at end of stream). On a seqpacket socket it is the whole
  // message's length even when that is more than the buffer held (then `truncated`).
  ssize_t size = -1;
  bool truncated = false;
  bool has_creds = false;  // the kernel attached SCM_CREDENTIALS (the receiver has SO_PASSCRED)
  ucred creds{};
  // SCM_RIGHTS descriptors came with it. None is ever kept: those received are closed here, and
  // the kernel discards any that did not fit the control buffer.
  bool had_descriptors = false;
};

// One recvmsg into `buf` (EINTR retried), credentials and descriptors handled as `received` says.
received recv_message(int fd, void* buf, std::size_t n) noexcept;

// Files and directories the harness and its helper servers set up (not the measured path).
// A fresh directory $TMPDIR/<name>.XXXXXX (/tmp without TMPDIR), mode 0700. Throws
// std::system_error.
std::string make_temp_dir(std::string_view name);
// Creates the directory with `mode` unless it exists. Throws std::system_error.
void ensure_dir(const std::string& path, mode_t mode);
// stat(2) (lstat(2) with follow_links false). Throws std::system_error "cannot stat PATH".
struct stat stat_path(const std::string& path, bool follow_links = true);
// A directory owned by this process's effective uid that group and others cannot enter.
bool is_private_dir(const struct stat& st) noexcept;
// Writes `text` to a temporary file renamed over `path`, mode `mode` whatever the umask. Throws
// std::system_error.
void write_file(const std::string& path, std::string_view text, mode_t mode);
// Opens `path` (O_CLOEXEC added). Throws std::system_error "cannot open PATH".
unique_fd open_file(const std::string& path, int flags, mode_t mode = 0);
// chmod(2), not subject to the umask. Throws std::system_error.
void change_mode(const std::string& path, mode_t mode);

// Socket options of setup (accepting a connection, not each call). Zero: no timeout.
void set_send_timeout(int fd, std::chrono::milliseconds timeout) noexcept;
void set_receive_timeout(int fd, std::chrono::milliseconds timeout) noexcept;
// SO_PASSCRED: every message received carries its sender's credentials.
void receive_credentials(int fd) noexcept;

// Pins the calling thread to one CPU (cpu < 0: all CPUs). Throws std::system_error.
void pin_this_thread(int cpu);
int online_cpus() noexcept;

}  // namespace cloak::os
