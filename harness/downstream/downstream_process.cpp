// Starting, watching and stopping cloak-downstream: inherited-pipe readiness, bounded waits, one
// cleanup path.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cloak/downstream.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

extern char** environ;

namespace cloak {

namespace {

// Waits for the child to exit for at most `timeout`; true if it was reaped.
bool reap_within(pid_t pid, std::chrono::milliseconds timeout) {
  os::unique_fd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (pidfd) {
    pollfd p{pidfd.get(), POLLIN, 0};
    os::retry_eintr([&] { return ::poll(&p, 1, static_cast<int>(timeout.count())); });
  }
  int status = 0;
  return os::retry_eintr([&] { return ::waitpid(pid, &status, WNOHANG); }) == pid;
}

}  // namespace

std::string downstream_process::default_program() {
  if (const char* env = std::getenv("CLOAK_DOWNSTREAM"); env && *env) return env;
#ifdef CLOAK_DOWNSTREAM_PATH
  return CLOAK_DOWNSTREAM_PATH;
#else
  return "cloak-downstream";
#endif
}

downstream_process::downstream_process(downstream_config config) : config_(std::move(config)) {
  if (config_.program.empty()) config_.program = default_program();
  if (config_.run_dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = fmt::format("{}/cloakbench.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(pattern.data())) os::throw_errno(errno, fmt::format("cannot create {}", pattern));
    run_dir_ = pattern;  // mkdtemp makes it 0700: only the harness's user may enter
    own_dir_ = true;
  } else {
    run_dir_ = config_.run_dir;
    ::mkdir(run_dir_.c_str(), 0700);
    struct stat st {};
    if (::stat(run_dir_.c_str(), &st) != 0)
      os::throw_errno(errno, fmt::format("cannot use {}", run_dir_));
    if (!S_ISDIR(st.st_mode) || (st.st_mode & 077) != 0 || st.st_uid != ::geteuid()) {
      throw std::runtime_error(fmt::format("{} must be a directory owned by uid {} with mode 0700",
                                           run_dir_, ::geteuid()));
    }
  }
  socket_path_ = run_dir_ + "/downstream.sock";
  try {
    start();
  } catch (...) {
    if (own_dir_) {
      std::error_code ignored;
      std::filesystem::remove_all(run_dir_, ignored);
    }
    throw;
  }
}

downstream_process::~downstream_process() {
  stop();
  if (own_dir_) {
    std::error_code ignored;
    std::filesystem::remove_all(run_dir_, ignored);
  }
}

void downstream_process::start() {
  // The child inherits the calling thread's credentials: started from a thread that impersonates a
  // client, the server would run as that client (saved uid != real uid only while impersonating).
  std::uint32_t ruid = 0, euid = 0, suid = 0;
  if (syscall(SYS_getresuid, &ruid, &euid, &suid) == 0 && (ruid != suid || euid != suid)) {
    throw std::logic_error(
        fmt::format("cannot start {} from a thread that impersonates uid {}: revert first",
                    config_.program, euid));
  }
  stop();
  int pipe_fds[2];
  os::check([&] { return ::pipe2(pipe_fds, O_CLOEXEC); }, "cannot create the readiness pipe");
  os::unique_fd ready_read(pipe_fds[0]), ready_write(pipe_fds[1]);

  const client_range& c = config_.clients;
  bool tcp = !config_.listen.empty();
  // A restarted TCP server keeps the port it got first: clients hold the address.
  std::string listen = address_.empty() ? config_.listen : address_;
  std::vector<std::string> args{config_.program,
                                tcp ? "--listen" : "--socket",
                                tcp ? listen : socket_path_,
                                "--ready-fd",
                                "3",
                                "--clients",
                                fmt::format("{}:{}:{}", c.first_uid, c.first_gid, c.count),
                                "--max-connections",
                                std::to_string(config_.max_connections),
                                "--send-timeout-ms",
                                std::to_string(config_.send_timeout.count()),
                                "--parent-pid",
                                std::to_string(::getpid())};
  if (own_dir_) args.push_back("--remove-dir-when-orphaned");
  if (tcp) args.insert(args.end(), {"--run-dir", run_dir_});
  auto add = [&](const char* option, const std::string& value) {
    if (!value.empty()) args.insert(args.end(), {option, value});
  };
  add("--netns", config_.netns);
  add("--service", config_.service);
  add("--keytab", config_.keytab);
  add("--forward", config_.forward);
  add("--forward-service", config_.forward_service);
  add("--ntlm", config_.ntlm_dir);
  if (!config_.realm_dir.empty()) {
    args.insert(args.end(), {"--realm", config_.realm_dir, "--rcache", config_.rcache});
  }
  if (config_.cpu >= 0) {
    args.push_back("--cpu");
    args.push_back(std::to_string(config_.cpu));
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, ready_write.get(), 3);  // dup2 clears close-on-exec
  pid_t pid = -1;
  int rc = posix_spawn(&pid, config_.program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) os::throw_errno(rc, fmt::format("cannot start {}", config_.program));
  pid_ = pid;
  ready_write.reset();

  // Ready when the child writes "ready\n"; EOF without it means it died first.
  std::string got;
  auto deadline = std::chrono::steady_clock::now() + config_.ready_timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      kill(SIGKILL);
      throw std::runtime_error(fmt::format("{} did not become ready within {} ms", config_.program,
                                           config_.ready_timeout.count()));
    }
    pollfd p{ready_read.get(), POLLIN, 0};
    int n = os::retry_eintr([&] { return ::poll(&p, 1, static_cast<int>(left.count())); });
    if (n <= 0) continue;
    char buf[64];
    ssize_t r = os::retry_eintr([&] { return ::read(ready_read.get(), buf, sizeof buf); });
    if (r > 0) {
      got.append(buf, static_cast<std::size_t>(r));
      if (got.find("ready\n") != std::string::npos) {
        // A TCP server says where it listens first: "listening tcp:ADDR:PORT".
        if (auto at = got.find("listening "); at != std::string::npos) {
          address_ = got.substr(at + 10, got.find('\n', at) - at - 10);
        }
        return;
      }
      continue;
    }
    kill(SIGKILL);  // reaps it (bounded)
    // It says why on the pipe too ("error MESSAGE"), so the caller's exception can carry it.
    if (auto at = got.find("error "); at != std::string::npos) {
      std::string why = got.substr(at + 6, got.find('\n', at) - at - 6);
      throw std::runtime_error(
          fmt::format("{} exited before it was ready: {}", config_.program, why));
    }
    throw std::runtime_error(
        fmt::format("{} exited before it was ready (its own message is above)", config_.program));
  }
}

bool downstream_process::running() noexcept {
  if (pid_ <= 0) return false;
  int status = 0;
  if (os::retry_eintr([&] { return ::waitpid(pid_, &status, WNOHANG); }) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

void downstream_process::kill(int signal) noexcept {
  if (pid_ <= 0) return;
  if (::kill(pid_, signal) != 0 && errno == EPERM) {
    // A thread running as a client may not signal P's child; say so rather than wait for nothing.
    std::fprintf(
        stderr,
        "cloakbench: cannot signal %s (pid %d): the calling thread is not the process identity\n",
        config_.program.c_str(), static_cast<int>(pid_));
    return;
  }
  if (signal == SIGKILL || signal == SIGTERM || signal == SIGINT) {
    // A stalled (SIGSTOPped) server acts on SIGTERM only once it runs again.
    if (signal != SIGKILL) ::kill(pid_, SIGCONT);
    if (!reap_within(pid_, config_.stop_timeout)) {
      ::kill(pid_, SIGKILL);
      if (!reap_within(pid_, config_.stop_timeout))
        return;  // still ours: the next stop() tries again
    }
    pid_ = -1;
  }
}

void downstream_process::stop() noexcept { kill(SIGTERM); }

}  // namespace cloak
