// TCP endpoints, bounded connects and network namespaces: the part of the POSIX seam that crosses
// hosts.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <cloak/net.hpp>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace cloak::os {

std::string tcp_endpoint::to_string() const { return fmt::format("tcp:{}:{}", address, port); }

tcp_endpoint parse_tcp_endpoint(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return std::invalid_argument(
        fmt::format("'{}' is not tcp:ADDR:PORT ({}; ADDR is a dotted IPv4 address)", text, why));
  };
  if (!text.starts_with("tcp:")) throw bad("it must start with tcp:");
  std::string_view rest = text.substr(4);
  auto colon = rest.rfind(':');
  if (colon == std::string_view::npos) throw bad("no port");
  tcp_endpoint e;
  e.address = std::string(rest.substr(0, colon));
  in_addr probe{};
  if (::inet_pton(AF_INET, e.address.c_str(), &probe) != 1) throw bad("the address is not IPv4");
  std::string_view port = rest.substr(colon + 1);
  unsigned v = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
  if (ec != std::errc{} || p != port.data() + port.size() || v > 65535)
    throw bad("the port must be 0..65535");
  e.port = static_cast<std::uint16_t>(v);
  return e;
}

namespace {

bool to_sockaddr(const tcp_endpoint& e, sockaddr_in& out) noexcept {
  out = sockaddr_in{};
  out.sin_family = AF_INET;
  out.sin_port = htons(e.port);
  if (::inet_pton(AF_INET, e.address.c_str(), &out.sin_addr) != 1) {
    errno = EINVAL;
    return false;
  }
  return true;
}

}  // namespace

void tune_tcp(int fd, std::chrono::milliseconds timeout) noexcept {
  int on = 1;
  // One request frame, one reply frame: Nagle would hold the second segment of a frame for an ACK.
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  if (timeout.count() > 0) {
    set_send_timeout(fd, timeout);
    set_receive_timeout(fd, timeout);
  }
}

unique_fd connect_tcp(const tcp_endpoint& to, std::chrono::milliseconds timeout) noexcept {
  sockaddr_in addr;
  if (!to_sockaddr(to, addr)) return {};
  // Non-blocking for the connect only: a host that does not answer ARP or SYN would otherwise hold
  // the caller for the kernel's own retry schedule (seconds to minutes).
  unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return fd;
  auto fail = [&](int error) {
    fd.reset();
    errno = error;
    return unique_fd{};
  };
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS) return fail(errno);
    pollfd p{fd.get(), POLLOUT, 0};
    int n = poll_until(&p, 1, deadline(timeout));
    if (n < 0) return fail(errno);
    if (n == 0) return fail(ETIMEDOUT);
    int error = 0;
    socklen_t len = sizeof error;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &len);
    if (error != 0) return fail(error);
  }
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) return fail(errno);
  tune_tcp(fd.get(), timeout);
  return fd;
}

unique_fd listen_tcp(const tcp_endpoint& at, int backlog) {
  sockaddr_in addr;
  if (!to_sockaddr(at, addr)) throw_errno(EINVAL, fmt::format("cannot use {}", at.to_string()));
  unique_fd fd(check([] { return ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); },
                     "cannot open a TCP socket for {}", at.to_string()));
  int on = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  check([&] { return ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr); },
        "cannot bind {}", at.to_string());
  check([&] { return ::listen(fd.get(), backlog); }, "cannot listen on {}", at.to_string());
  return fd;
}

tcp_endpoint local_endpoint(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  check([&] { return ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len); },
        "cannot read a socket's address");
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &addr.sin_addr, text, sizeof text);
  return tcp_endpoint{text, ntohs(addr.sin_port)};
}

bool recv_all_within(int fd, void* data, std::size_t n,
                     std::chrono::milliseconds timeout) noexcept {
  auto* p = static_cast<char*>(data);
  // The one bound every wait below shares; EINTR keeps it (poll_until).
  const deadline until = timeout.count() > 0 ? deadline(timeout) : deadline::never();
  for (std::size_t have = 0; have < n;) {
    ssize_t r = retry_eintr([&] { return ::recv(fd, p + have, n - have, MSG_DONTWAIT); });
    if (r > 0) {
      have += static_cast<std::size_t>(r);
      continue;
    }
    if (r == 0) errno = 0;  // the peer closed first
    if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return false;
    if (until.passed()) {
      errno = ETIMEDOUT;
      return false;
    }
    pollfd ready{fd, POLLIN, 0};
    if (poll_until(&ready, 1, until) < 0) return false;
  }
  return true;
}

std::uint16_t free_port(const std::string& address) {
  in_addr listen{};
  if (::inet_pton(AF_INET, address.c_str(), &listen) != 1) {
    throw std::invalid_argument(
        fmt::format("cannot find a free port on {}: not a dotted IPv4 address", address));
  }
  for (int attempt = 0; attempt < 50; ++attempt) {
    unique_fd tcp(check([] { return ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); },
                        "cannot create a TCP socket"));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr = listen;
    addr.sin_port = 0;
    check([&] { return ::bind(tcp.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr); },
          "cannot bind a TCP socket on {}", address);
    socklen_t len = sizeof addr;
    check([&] { return ::getsockname(tcp.get(), reinterpret_cast<sockaddr*>(&addr), &len); },
          "getsockname");
    unique_fd udp(check([] { return ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0); },
                        "cannot create a UDP socket"));
    if (::bind(udp.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0)
      return ntohs(addr.sin_port);
  }
  throw std::runtime_error(
      fmt::format("cannot find a port free for both UDP and TCP on {}", address));
}

std::string netns_path(std::string_view name) { return fmt::format("/run/netns/{}", name); }

namespace {

unique_fd open_netns(std::string_view name) {
  std::string path = netns_path(name);
  return unique_fd(check([&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); },
                         "cannot open network namespace {} ({})", name, path));
}

}  // namespace

void enter_netns(std::string_view name) {
  unique_fd ns = open_netns(name);
  check([&] { return ::setns(ns.get(), CLONE_NEWNET); }, "cannot enter network namespace {}", name);
}

netns_scope::netns_scope(std::string_view name) {
  previous_.reset(check([] { return ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC); },
                        "cannot open this thread's network namespace"));
  unique_fd ns = open_netns(name);
  check([&] { return ::setns(ns.get(), CLONE_NEWNET); }, "cannot enter network namespace {}", name);
}

netns_scope::~netns_scope() {
  if (::setns(previous_.get(), CLONE_NEWNET) != 0) {
    std::perror("cloakbench: cannot return a thread to its network namespace");
    std::abort();
  }
}

}  // namespace cloak::os
