// The POSIX seam for what crosses hosts: TCP endpoints, bounded TCP connects, and network
// namespaces (a thread's sockets belong to the namespace the thread is in when it creates them).
#pragma once

#include <chrono>
#include <cloak/os.hpp>
#include <cstdint>
#include <string>
#include <string_view>

namespace cloak::os {

// "tcp:ADDR:PORT" with a dotted IPv4 address (no names: nothing here resolves a host).
struct tcp_endpoint {
  std::string address;
  std::uint16_t port = 0;
  std::string to_string() const;  // "tcp:ADDR:PORT"
};
// Throws std::invalid_argument naming the expected form.
tcp_endpoint parse_tcp_endpoint(std::string_view text);

// A connected TCP socket (close-on-exec, TCP_NODELAY) to `to`: the connect itself and every later
// send and receive are bounded by `timeout`. Empty on failure with errno set (ETIMEDOUT when the
// connect did not finish in time, EHOSTUNREACH/ECONNREFUSED as the kernel said).
unique_fd connect_tcp(const tcp_endpoint& to, std::chrono::milliseconds timeout) noexcept;

// A listening TCP socket (close-on-exec, SO_REUSEADDR) bound at `at` (port 0: the kernel picks).
// Throws std::system_error.
unique_fd listen_tcp(const tcp_endpoint& at, int backlog = 128);
// The address a bound socket got (its port when bound to port 0). Throws std::system_error.
tcp_endpoint local_endpoint(int fd);

// A port free on `address` (dotted IPv4) for both UDP and TCP right now (a KDC listens on both);
// whoever binds it later may still lose it to a race. Throws std::invalid_argument for a bad
// address, std::system_error or std::runtime_error when no port is found.
std::uint16_t free_port(const std::string& address);

// TCP_NODELAY and, when timeout > 0, SO_SNDTIMEO/SO_RCVTIMEO on an accepted or connected socket.
void tune_tcp(int fd, std::chrono::milliseconds timeout) noexcept;

// Receives exactly `n` bytes on a stream socket (a connect_tcp one, say) within one `timeout` for
// the whole (zero: unbounded), signals included: each wait is for what is left. False with errno
// set: ETIMEDOUT when time ran out, 0 when the peer closed first.
bool recv_all_within(int fd, void* data, std::size_t n, std::chrono::milliseconds timeout) noexcept;

// The file `ip netns` keeps for a named network namespace.
std::string netns_path(std::string_view name);

// Moves the whole process into the named network namespace. Call before the process starts any
// thread (a thread started later is created in the namespace of the thread that starts it).
// Throws std::system_error naming the namespace.
void enter_netns(std::string_view name);

// Moves the calling thread into the named network namespace for the guard's lifetime, then back to
// the one it was in: sockets the thread creates meanwhile belong to that namespace. setns(2) with
// CLONE_NEWNET is allowed in a multi-threaded process and changes only the calling thread. Needs
// CAP_SYS_ADMIN. Throws std::system_error; the destructor aborts if it cannot switch back (a thread
// left in a test namespace would send where it must not).
class netns_scope {
 public:
  explicit netns_scope(std::string_view name);
  ~netns_scope();
  netns_scope(const netns_scope&) = delete;
  netns_scope& operator=(const netns_scope&) = delete;

 private:
  unique_fd previous_;
};

}  // namespace cloak::os
