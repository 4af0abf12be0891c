// The life of a helper server: stop signals, the harness watched through a pidfd, readiness,
// accepting.
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cloak/server_lifetime.hpp>
#include <cstdio>
#include <cstring>

namespace cloak {

server_lifetime::server_lifetime(long parent_pid) : parent_pid_(parent_pid) {
  if (parent_pid > 0) {
    parent_.reset(static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(parent_pid), 0)));
    if (!parent_) ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // kernels before 5.3
  }
  sigset_t stops;
  sigemptyset(&stops);
  sigaddset(&stops, SIGTERM);
  sigaddset(&stops, SIGINT);
  sigaddset(&stops, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stops, nullptr);
  signals_.reset(
      os::check([&] { return ::signalfd(-1, &stops, SFD_CLOEXEC); }, "cannot create signalfd"));
}

bool server_lifetime::orphaned() const noexcept {
  return parent_pid_ > 0 && ::getppid() != parent_pid_;
}

void server_lifetime::signal_ready(int fd) noexcept {
  if (fd < 0) return;
  tell(fd, "ready\n");
  os::unique_fd closed(fd);
}

bool server_lifetime::tell(int fd, std::string_view line) noexcept {
  if (fd < 0 || os::write_all(fd, line)) return true;
  std::fprintf(stderr, "cloakbench: cannot write to the harness's readiness descriptor: %s\n",
               std::strerror(errno));
  return false;
}

server_lifetime::stop server_lifetime::accept_until_stopped(
    int listener, const std::function<void(os::unique_fd)>& on_connection) {
  // poll ignores a negative descriptor: without a pidfd the third entry never fires.
  pollfd fds[3] = {{listener, POLLIN, 0}, {signals_.get(), POLLIN, 0}, {parent_.get(), POLLIN, 0}};
  for (;;) {
    if (os::retry_eintr([&] { return ::poll(fds, 3, -1); }) < 0) return stop::signal;
    if (fds[1].revents) return stop::signal;
    if (fds[2].revents) return stop::orphaned;
    if (!(fds[0].revents & POLLIN)) continue;
    os::unique_fd conn(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
    if (conn) on_connection(std::move(conn));
  }
}

}  // namespace cloak
