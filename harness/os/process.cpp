// Child processes: spawn with a readiness pipe, bounded waits and reaping, stop (TERM, then KILL),
// and tools run to completion within a deadline with their output captured.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cloak/process.hpp>
#include <stdexcept>

extern char** environ;

namespace cloak::os {

std::string exit_status::to_string() const {
  if (signal != 0) return fmt::format("signal {}", signal);
  return fmt::format("exit {}", code);
}

std::string readiness::after(std::string_view prefix) const {
  for (const auto& line : lines) {
    if (line.starts_with(prefix)) return line.substr(prefix.size());
  }
  return {};
}

namespace {

struct pipe_pair {
  unique_fd read, write;
};

pipe_pair make_pipe(const std::string& program) {
  int fds[2];
  check([&] { return ::pipe2(fds, O_CLOEXEC); }, "cannot create a pipe for {}", program);
  return {unique_fd(fds[0]), unique_fd(fds[1])};
}

// In the child: tells the parent why (errno on the exec-error pipe) and exits.
[[noreturn]] void child_failed(int error_fd) noexcept {
  int error = errno;
  ssize_t ignored = ::write(error_fd, &error, sizeof error);
  (void)ignored;
  ::_exit(127);
}

// Between fork and exec only async-signal-safe calls: the parent may have other threads, whose
// locks (malloc's among them) the child inherits held.
[[noreturn]] void exec_child(char* const* argv, const int (&to)[4], int error_fd, pid_t parent,
                             bool die_with_parent) noexcept {
  auto fail = [error_fd] { child_failed(error_fd); };
  if (die_with_parent) {
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail();
    if (::getppid() != parent) ::_exit(127);  // the parent is already gone
  }
  // Every source first moves above the targets, so no dup2 can overwrite a source still to come.
  int high[4];
  for (int i = 0; i < 4; ++i) {
    high[i] = to[i] < 0 ? -1 : ::fcntl(to[i], F_DUPFD_CLOEXEC, 10);
    if (to[i] >= 0 && high[i] < 0) fail();
  }
  for (int i = 0; i < 4; ++i) {
    if (high[i] >= 0 && ::dup2(high[i], i) < 0) fail();  // dup2 clears close-on-exec
  }
  // Handlers are the parent's code: back to the default before the mask opens (ignored signals
  // stay ignored, as exec keeps them).
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler != SIG_IGN &&
        old.sa_handler != SIG_DFL) {
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      ::sigaction(sig, &dfl, nullptr);
    }
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(argv[0], argv, environ);
  child_failed(error_fd);
}

}  // namespace

child_process::child_process(const spawn_options& options)
    : program_(options.argv.empty() ? std::string() : options.argv[0]),
      stop_timeout_(options.stop_timeout) {
  if (options.argv.empty()) throw std::invalid_argument("cannot spawn a process without argv[0]");
  std::vector<char*> argv;
  for (const auto& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pipe_pair ready;
  if (options.readiness) ready = make_pipe(program_);
  // exec's failure comes back on a close-on-exec pipe; its closing says exec succeeded.
  pipe_pair exec_error = make_pipe(program_);
  int to[4] = {options.stdin_fd, options.stdout_fd, options.stderr_fd,
               options.readiness ? ready.write.get() : -1};
  pid_t parent = ::getpid();
  // No handler of ours may run in the child: every signal is blocked across fork.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = ::fork();
  if (pid == 0)
    exec_child(argv.data(), to, exec_error.write.get(), parent, options.die_with_parent);
  int fork_error = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) throw_errno(fork_error, fmt::format("cannot spawn {}", program_));
  pid_ = pid;
  pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  exec_error.write.reset();
  ready.write.reset();
  int error = 0;
  ssize_t n = retry_eintr([&] { return ::read(exec_error.read.get(), &error, sizeof error); });
  if (n == static_cast<ssize_t>(sizeof error)) {
    int status = 0;
    retry_eintr([&] { return ::waitpid(pid, &status, 0); });  // it is in _exit already
    pid_ = -1;
    throw_errno(error, fmt::format("cannot spawn {}", program_));
  }
  ready_ = std::move(ready.read);
}

child_process::~child_process() {
  if (pid_ > 0) stop(stop_timeout_);
}

child_process::child_process(child_process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      ready_(std::move(other.ready_)),
      program_(std::move(other.program_)),
      status_(other.status_),
      stop_timeout_(other.stop_timeout_) {}

child_process& child_process::operator=(child_process&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0) stop(stop_timeout_);
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    ready_ = std::move(other.ready_);
    program_ = std::move(other.program_);
    status_ = other.status_;
    stop_timeout_ = other.stop_timeout_;
  }
  return *this;
}

void child_process::reaped(int wait_status) noexcept {
  status_ = exit_status{};
  if (WIFEXITED(wait_status)) status_.code = WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) status_.signal = WTERMSIG(wait_status);
  pid_ = -1;
  pidfd_.reset();
}

readiness child_process::await_ready(const deadline& until,
                                     const std::function<bool(std::string_view)>& is_last) {
  readiness out;
  std::string buffer;
  auto finish = [&](readiness::end how) {
    out.how = how;
    ready_.reset();
    return out;
  };
  auto take_lines = [&] {
    for (auto nl = buffer.find('\n'); nl != std::string::npos; nl = buffer.find('\n')) {
      out.lines.push_back(buffer.substr(0, nl));
      buffer.erase(0, nl + 1);
      if (is_last(out.lines.back())) return true;
    }
    return false;
  };
  if (!ready_) return finish(readiness::end::closed);
  for (;;) {
    if (take_lines()) return finish(readiness::end::last_line);
    pollfd p{ready_.get(), POLLIN, 0};
    int n = poll_until(&p, 1, until);
    if (n == 0) return finish(readiness::end::timed_out);
    char buf[512];
    ssize_t r = n < 0 ? -1 : retry_eintr([&] { return ::read(ready_.get(), buf, sizeof buf); });
    if (r <= 0) {  // the child closed it (exited, or gave up) or the pipe failed
      if (!buffer.empty()) buffer += '\n';  // an unfinished last line still counts
      if (take_lines()) return finish(readiness::end::last_line);
      return finish(readiness::end::closed);
    }
    buffer.append(buf, static_cast<std::size_t>(r));
  }
}

bool child_process::wait(const deadline& until) noexcept {
  for (;;) {
    if (!running()) return true;
    if (until.passed()) return false;
    pollfd p{pidfd_.get(), POLLIN, 0};
    if (!pidfd_ || poll_until(&p, 1, until) < 0) {
      // No pidfd (kernels before 5.3): look again in a few ms.
      auto nap = std::min<std::chrono::milliseconds>(until.left(), std::chrono::milliseconds(5));
      timespec ts{0, static_cast<long>(nap.count()) * 1000000L};
      ::nanosleep(&ts, nullptr);
    }
  }
}

bool child_process::running() noexcept {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = retry_eintr([&] { return ::waitpid(pid_, &status, WNOHANG); });
  if (r == pid_) {
    reaped(status);
    return false;
  }
  if (r < 0 && errno == ECHILD) {  // reaped elsewhere (SIGCHLD ignored): how it ended is lost
    reaped(0);
    status_ = exit_status{};
    return false;
  }
  return true;
}

bool child_process::signal(int sig) noexcept {
  if (pid_ <= 0) {
    errno = ESRCH;
    return false;
  }
  // Unreaped, the pid cannot have been reused: it is still this child.
  return ::kill(pid_, sig) == 0;
}

bool child_process::stop(std::chrono::milliseconds bound, int first) noexcept {
  if (!running()) return true;
  if (!signal(first) && errno == EPERM) return false;
  if (first != SIGKILL) signal(SIGCONT);  // a stopped child acts on `first` only once it runs
  if (wait(deadline(bound))) return true;
  signal(SIGKILL);
  if (wait(deadline(bound))) return true;
  errno = ETIMEDOUT;
  return false;
}

void require_process_identity(std::string_view program) {
  std::uint32_t ruid = 0, euid = 0, suid = 0;
  if (::syscall(SYS_getresuid, &ruid, &euid, &suid) == 0 && (ruid != suid || euid != suid)) {
    throw std::logic_error(fmt::format(
        "cannot start {} from a thread that impersonates uid {}: revert first", program, euid));
  }
}

bool signal_process(pid_t pid, int sig) noexcept { return pid > 0 && ::kill(pid, sig) == 0; }

bool wait_gone(pid_t pid, const deadline& until) noexcept {
  unique_fd fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!fd) return true;  // already gone (or no pidfd to watch it by, as before 5.3)
  pollfd p{fd.get(), POLLIN, 0};
  return poll_until(&p, 1, until) > 0;
}

}  // namespace cloak::os
