// Child processes, the one way: every supervisor (downstream, realm, topology) and tool runner
// starts, awaits, stops and reaps its children here (the model is libuv's test runner:
// process_start, process_wait with a timeout, process_terminate, process_reap, one cleanup path).
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <cloak/os.hpp>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace cloak::os {

// How a child ended.
struct exit_status {
  int code = -1;   // its exit code, or -1 when a signal ended it
  int signal = 0;  // the signal that ended it, or 0
  bool success() const noexcept { return code == 0; }
  std::string to_string() const;  // "exit 1", "signal 9"
};

struct spawn_options {
  std::vector<std::string> argv;  // argv[0] is the program's path (no PATH search)
  // Descriptor 3 of the child is the write end of a readiness pipe (it is told --ready-fd 3); the
  // read end stays here (await_ready). The child writes lines on it and closes it.
  bool readiness = false;
  int stdin_fd = -1;  // what the child gets as 0, 1 and 2 (-1: ours)
  int stdout_fd = -1;
  int stderr_fd = -1;
  // SIGKILL the child when the thread that spawned it exits (PR_SET_PDEATHSIG): for a single-
  // threaded supervisor's children, whose lifetime is the supervisor's.
  bool die_with_parent = false;
  // The destructor's bound (stop()): SIGTERM, this long, SIGKILL, this long again.
  std::chrono::milliseconds stop_timeout{2000};
};

// What the readiness pipe said before it closed, the deadline passed or a last line came.
struct readiness {
  enum class end { last_line, closed, timed_out };
  end how = end::timed_out;
  std::vector<std::string> lines;  // every complete line, without its '\n'
  // The rest of the first line that starts with `prefix` ("error " -> the message); empty if none.
  std::string after(std::string_view prefix) const;
};

// One child process of ours. The child starts with no signal blocked and every descriptor of ours
// but 0-2 (and 3, with readiness) closed on exec. Reaping is always bounded, and the destructor
// (noexcept) stops and reaps whatever still runs.
class child_process {
 public:
  child_process() noexcept = default;
  // Starts the child (process_start). Throws std::system_error "cannot spawn PROGRAM" with the
  // errno of fork or of exec (a program that does not exist fails here, not later).
  explicit child_process(const spawn_options& options);
  ~child_process();
  child_process(child_process&& other) noexcept;
  child_process& operator=(child_process&& other) noexcept;
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const noexcept { return pid_; }  // -1 once reaped (or never started)
  // Readable once the child has exited (a pidfd; -1 on kernels before 5.3): to poll beside others.
  int exit_descriptor() const noexcept { return pidfd_.get(); }
  const exit_status& status() const noexcept { return status_; }  // once reaped

  // Reads the readiness pipe until `is_last(line)`, the pipe's closing (the child exited or gave
  // up) or `until`. No sleeps: readiness is learned from the pipe only.
  readiness await_ready(const deadline& until,
                        const std::function<bool(std::string_view)>& is_last);

  // Waits for the child to exit until `until` and reaps it (process_wait, process_reap). True once
  // reaped (status() says how), false when it still runs at the deadline.
  bool wait(const deadline& until) noexcept;
  // Reaps the child if it has exited; true while it runs.
  bool running() noexcept;
  // Sends `sig`; false with errno set (EPERM: the calling thread may not signal it; ESRCH: none).
  bool signal(int sig) noexcept;
  // Ends the child (process_terminate, process_cleanup): `first` (and SIGCONT after it, so a
  // stopped child acts on it), SIGKILL when it has not exited within `bound`, reaped within another
  // `bound`. True once reaped or when nothing runs; false with errno set otherwise (EPERM from the
  // first signal; ETIMEDOUT: not even SIGKILL ended it in time: it stays ours, to stop again).
  bool stop(std::chrono::milliseconds bound, int first = SIGTERM) noexcept;
  bool stop() noexcept { return stop(stop_timeout_); }

 private:
  void reaped(int wait_status) noexcept;

  pid_t pid_ = -1;
  unique_fd pidfd_;
  unique_fd ready_;
  std::string program_;
  exit_status status_;
  std::chrono::milliseconds stop_timeout_{2000};
};

struct tool_options {
  std::vector<std::string> argv;  // argv[0] is the program's path
  std::string input;              // written to its stdin, which is then closed
  bool die_with_parent = false;   // as spawn_options::die_with_parent
};

struct tool_result {
  exit_status status;
  bool timed_out = false;  // it was killed at the deadline (status then says signal 9)
  std::string out;         // its stdout
  std::string err;         // its stderr
  bool success() const noexcept { return !timed_out && status.success(); }
};

// Runs a tool to completion within `until`, feeding `input` and capturing its output; a tool still
// running at the deadline is killed and reaped. Throws std::system_error only when it cannot be
// started or its pipes fail.
tool_result run_tool(const tool_options& options, const deadline& until);

// A child inherits the calling thread's credentials: started from a thread that impersonates a
// client (its real or effective uid differs from its saved uid), it would run as that client.
// Throws std::logic_error "cannot start PROGRAM from a thread that impersonates uid U: revert
// first".
void require_process_identity(std::string_view program);

// Sends `sig` to a process that is not a child of ours (a supervisor's child, a process inside a
// namespace); false with errno set (ESRCH: it is gone).
bool signal_process(pid_t pid, int sig) noexcept;

// Waits until the process `pid` (any process, not only a child of ours) has exited or `until`
// passes; true when it is gone.
bool wait_gone(pid_t pid, const deadline& until) noexcept;

}  // namespace cloak::os
