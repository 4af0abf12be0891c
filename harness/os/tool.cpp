// A tool run to completion within a deadline: its input fed and its output read through one poll
// (neither side can fill a pipe and stall the other), killed and reaped at the deadline.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cloak/process.hpp>
#include <ctime>
#include <tuple>

namespace cloak::os {

namespace {

// A write to a pipe whose reader has gone raises SIGPIPE, which would end us: blocked for the write
// (it is sent to the writing thread) and consumed if the write raised it, so a tool that exits
// before reading all its input fails as itself.
ssize_t write_without_sigpipe(int fd, const char* data, std::size_t n) noexcept {
  sigset_t pipe_only, old, pending;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  sigpending(&pending);
  bool was_pending = sigismember(&pending, SIGPIPE) == 1;
  ::pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  ssize_t r = retry_eintr([&] { return ::write(fd, data, n); });
  int error = errno;
  if (r < 0 && error == EPIPE && !was_pending) {
    timespec none{0, 0};
    retry_eintr([&] { return ::sigtimedwait(&pipe_only, nullptr, &none); });
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = error;
  return r;
}

}  // namespace

tool_result run_tool(const tool_options& options, const deadline& until) {
  const std::string program = options.argv.empty() ? std::string() : options.argv[0];
  int in[2], out[2], err[2];
  check([&] { return ::pipe2(in, O_CLOEXEC); }, "cannot create a pipe for {}", program);
  unique_fd in_read = unique_fd(in[0]), in_write = unique_fd(in[1]);
  check([&] { return ::pipe2(out, O_CLOEXEC); }, "cannot create a pipe for {}", program);
  unique_fd out_read = unique_fd(out[0]), out_write = unique_fd(out[1]);
  check([&] { return ::pipe2(err, O_CLOEXEC); }, "cannot create a pipe for {}", program);
  unique_fd err_read = unique_fd(err[0]), err_write = unique_fd(err[1]);

  spawn_options spawn;
  spawn.argv = options.argv;
  spawn.stdin_fd = in_read.get();
  spawn.stdout_fd = out_write.get();
  spawn.stderr_fd = err_write.get();
  spawn.die_with_parent = options.die_with_parent;
  child_process child(spawn);
  in_read.reset();
  out_write.reset();
  err_write.reset();
  check([&] { return ::fcntl(in_write.get(), F_SETFL, O_NONBLOCK); },
        "cannot make {}'s input non-blocking", program);

  tool_result result;
  std::size_t fed = 0;
  if (options.input.empty()) in_write.reset();
  while (in_write || out_read || err_read) {
    // poll ignores a negative descriptor: a closed one stops being watched.
    pollfd fds[3] = {
        {in_write.get(), POLLOUT, 0}, {out_read.get(), POLLIN, 0}, {err_read.get(), POLLIN, 0}};
    int n = poll_until(fds, 3, until);
    if (n < 0) throw_errno(errno, fmt::format("cannot wait for {}", program));
    if (n == 0) {
      result.timed_out = true;
      break;
    }
    if (fds[0].revents != 0) {
      ssize_t w = write_without_sigpipe(in_write.get(), options.input.data() + fed,
                                        options.input.size() - fed);
      if (w > 0) fed += static_cast<std::size_t>(w);
      // A tool that stops reading (EPIPE) gets no more: how it exits says the rest.
      if ((w < 0 && errno != EAGAIN) || fed == options.input.size()) in_write.reset();
    }
    for (auto [i, fd, text] :
         {std::tuple{1, &out_read, &result.out}, std::tuple{2, &err_read, &result.err}}) {
      if (fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t r = retry_eintr([&] { return ::read(fd->get(), buf, sizeof buf); });
      if (r > 0) {
        text->append(buf, static_cast<std::size_t>(r));
      } else {
        fd->reset();  // closed: the tool is exiting
      }
    }
  }
  if (!result.timed_out && !child.wait(until)) result.timed_out = true;
  if (result.timed_out) child.stop(std::chrono::milliseconds(2000), SIGKILL);
  result.status = child.status();
  return result;
}

}  // namespace cloak::os
