// The POSIX seam: errno to std::system_error, descriptor ownership, deadlines that signals cannot
// stretch, whole writes, Unix sockets and CPU pinning.
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cloak/os.hpp>
#include <cstring>
#include <limits>
#include <optional>

namespace cloak::os {

void throw_errno(int error, const std::string& what) {
  throw std::system_error(error, std::generic_category(), what);
}

std::chrono::milliseconds deadline::left() const noexcept {
  auto now = clock::now();
  if (now >= at_) return std::chrono::milliseconds(0);
  return std::chrono::duration_cast<std::chrono::milliseconds>(at_ - now);
}

int deadline::poll_timeout() const noexcept {
  if (at_ == clock::time_point::max()) return -1;
  auto now = clock::now();
  if (now >= at_) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(at_ - now).count();
  return ms > std::numeric_limits<int>::max() ? std::numeric_limits<int>::max()
                                              : static_cast<int>(ms);
}

int poll_until(pollfd* fds, std::size_t count, const deadline& until) noexcept {
  for (;;) {
    int n = ::poll(fds, static_cast<nfds_t>(count), until.poll_timeout());
    if (n >= 0 || errno != EINTR) return n;
  }
}

bool write_all(int fd, std::string_view text) noexcept {
  if (fd < 0) {
    errno = EBADF;
    return false;
  }
  for (std::size_t done = 0; done < text.size();) {
    ssize_t n = retry_eintr([&] { return ::write(fd, text.data() + done, text.size() - done); });
    if (n < 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

void unique_fd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);  // never retried: the descriptor is gone whatever close returns
  fd_ = fd;
}

namespace {

bool unix_address(const std::string& path, sockaddr_un& addr) noexcept {
  addr = sockaddr_un{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    errno = ENAMETOOLONG;
    return false;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return true;
}

int socket_type(unix_kind kind) noexcept {
  return kind == unix_kind::seqpacket ? SOCK_SEQPACKET : SOCK_STREAM;
}

}  // namespace

unique_fd connect_unix(const std::string& path, std::chrono::milliseconds io_timeout,
                       unix_kind kind) noexcept {
  sockaddr_un addr;
  if (!unix_address(path, addr)) return {};
  unique_fd fd(::socket(AF_UNIX, socket_type(kind) | SOCK_CLOEXEC, 0));
  if (!fd) return fd;
  if (io_timeout.count() > 0) {
    timeval tv{static_cast<time_t>(io_timeout.count() / 1000),
               static_cast<suseconds_t>((io_timeout.count() % 1000) * 1000)};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  if (retry_eintr([&] {
        return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
      }) != 0) {
    int error = errno;
    fd.reset();
    errno = error;
  }
  return fd;
}

unique_fd listen_unix(const std::string& path, int backlog, unix_kind kind) {
  sockaddr_un addr;
  if (!unix_address(path, addr)) throw_errno(errno, fmt::format("cannot use socket path {}", path));
  unique_fd fd(check([&] { return ::socket(AF_UNIX, socket_type(kind) | SOCK_CLOEXEC, 0); },
                     "cannot open socket {}", path));
  check([&] { return ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr); },
        "cannot bind {}", path);
  check([&] { return ::listen(fd.get(), backlog); }, "cannot listen on {}", path);
  return fd;
}

bool send_all(int fd, const void* data, std::size_t n) noexcept {
  auto* p = static_cast<const char*>(data);
  for (std::size_t sent = 0; sent < n;) {
    ssize_t r = retry_eintr([&] { return ::send(fd, p + sent, n - sent, MSG_NOSIGNAL); });
    if (r <= 0) return false;
    sent += static_cast<std::size_t>(r);
  }
  return true;
}

bool send_all_within(int fd, const void* data, std::size_t n,
                     std::chrono::milliseconds timeout) noexcept {
  auto* p = static_cast<const char*>(data);
  std::optional<deadline> until;  // set at the first time the socket is full
  for (std::size_t sent = 0; sent < n;) {
    ssize_t r =
        retry_eintr([&] { return ::send(fd, p + sent, n - sent, MSG_NOSIGNAL | MSG_DONTWAIT); });
    if (r > 0) {
      sent += static_cast<std::size_t>(r);
      continue;
    }
    if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return false;
    if (!until) until = timeout.count() > 0 ? deadline(timeout) : deadline::never();
    if (until->passed()) {
      errno = ETIMEDOUT;
      return false;
    }
    pollfd pf{fd, POLLOUT, 0};
    if (poll_until(&pf, 1, *until) < 0) return false;
  }
  return true;
}

bool recv_all(int fd, void* data, std::size_t n) noexcept {
  auto* p = static_cast<char*>(data);
  for (std::size_t have = 0; have < n;) {
    ssize_t r = retry_eintr([&] { return ::recv(fd, p + have, n - have, 0); });
    if (r == 0) errno = 0;
    if (r <= 0) return false;
    have += static_cast<std::size_t>(r);
  }
  return true;
}

ssize_t send_with_credentials(int fd, const void* data, std::size_t n,
                              const ucred& claim) noexcept {
  iovec iov{const_cast<void*>(data), n};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))]{};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_CREDENTIALS;
  c->cmsg_len = CMSG_LEN(sizeof(ucred));
  std::memcpy(CMSG_DATA(c), &claim, sizeof claim);
  return retry_eintr([&] { return ::sendmsg(fd, &msg, MSG_NOSIGNAL); });
}

received recv_message(int fd, void* buf, std::size_t n) noexcept {
  iovec iov{buf, n};
  // Room for the credentials and a few descriptors: enough to see that descriptors came, and the
  // kernel drops (never installs) whatever does not fit.
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(4 * sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  received r;
  r.size = retry_eintr([&] { return ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_TRUNC); });
  if (r.size < 0) return r;
  r.truncated = (msg.msg_flags & MSG_TRUNC) != 0;
  r.had_descriptors = (msg.msg_flags & MSG_CTRUNC) != 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET) continue;
    if (c->cmsg_type == SCM_CREDENTIALS) {
      std::memcpy(&r.creds, CMSG_DATA(c), sizeof r.creds);
      r.has_creds = true;
    } else if (c->cmsg_type == SCM_RIGHTS) {
      r.had_descriptors = true;
      std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int received_fd;
        std::memcpy(&received_fd, CMSG_DATA(c) + i * sizeof(int), sizeof received_fd);
        ::close(received_fd);
      }
    }
  }
  return r;
}

void pin_this_thread(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (cpu < 0) {
    for (int i = 0; i < online_cpus(); ++i) CPU_SET(i, &set);
  } else {
    CPU_SET(cpu, &set);
  }
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    throw_errno(errno, fmt::format("cannot pin thread to cpu {}", cpu));
  }
}

int online_cpus() noexcept {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

}  // namespace cloak::os
