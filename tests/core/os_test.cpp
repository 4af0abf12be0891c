// The process API of os/ (cloak/process.hpp) and its deadlines: what every supervisor and tool
// runner relies on. Outcomes (ready, killed, timed out), never times; a bound is checked only as
// "ended before it + generous slack", where the bug would be never ending at all.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cloak/environment.hpp>
#include <cloak/process.hpp>
#include <string>
#include <system_error>

namespace cloak::os {
namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

// Far more than any bound below: what separates "ended late" from "never ended".
constexpr auto slack = 10s;

spawn_options shell(const std::string& script, bool readiness = true) {
  spawn_options o;
  o.argv = {"/bin/sh", "-c", script};
  o.readiness = readiness;
  return o;
}

bool is_ready(std::string_view line) { return line == "ready"; }

TEST(child_process, readiness_comes_from_the_inherited_pipe_with_every_line_before_it) {
  child_process child(shell("echo 'listening tcp:127.0.0.1:1' >&3; echo ready >&3; exec sleep 60"));
  readiness r = child.await_ready(deadline(10s), is_ready);
  EXPECT_EQ(r.how, readiness::end::last_line);
  ASSERT_EQ(r.lines.size(), 2u);
  EXPECT_EQ(r.after("listening "), "tcp:127.0.0.1:1");
  EXPECT_TRUE(child.running());
  EXPECT_TRUE(child.stop(2s));
  EXPECT_EQ(child.status().signal, SIGTERM);
  EXPECT_EQ(child.pid(), -1);
}

TEST(child_process, a_child_that_exits_before_it_is_ready_closes_the_pipe_and_says_why) {
  child_process child(shell("echo 'error no realm' >&3; exit 4"));
  readiness r = child.await_ready(deadline(10s), is_ready);
  EXPECT_EQ(r.how, readiness::end::closed);
  EXPECT_EQ(r.after("error "), "no realm");
  ASSERT_TRUE(child.wait(deadline(10s)));
  EXPECT_EQ(child.status().code, 4);
  EXPECT_EQ(child.status().to_string(), "exit 4");
}

TEST(child_process, a_child_that_never_becomes_ready_times_out_and_is_reaped_within_the_bound) {
  child_process child(shell("exec sleep 60"));  // holds the pipe open, never writes
  auto started = clock_type::now();
  readiness r = child.await_ready(deadline(200ms), is_ready);
  EXPECT_EQ(r.how, readiness::end::timed_out);
  EXPECT_TRUE(r.lines.empty());
  EXPECT_TRUE(child.stop(2s));
  EXPECT_FALSE(child.running());
  EXPECT_EQ(child.status().signal, SIGTERM);
  EXPECT_LT(clock_type::now() - started, 200ms + 2s + slack);
}

TEST(child_process, stop_escalates_to_sigkill_for_a_child_that_ignores_sigterm) {
  // An ignored signal stays ignored across exec: sleep itself ignores SIGTERM.
  child_process child(shell("trap '' TERM; echo ready >&3; exec sleep 60"));
  ASSERT_EQ(child.await_ready(deadline(10s), is_ready).how, readiness::end::last_line);
  EXPECT_TRUE(child.stop(300ms));
  EXPECT_EQ(child.status().signal, SIGKILL);
}

TEST(child_process, wait_reports_a_child_still_running_at_the_deadline) {
  child_process child(shell("exec sleep 60", false));
  EXPECT_FALSE(child.wait(deadline(50ms)));
  EXPECT_TRUE(child.running());
  EXPECT_TRUE(child.stop(2s, SIGKILL));
  EXPECT_EQ(child.status().signal, SIGKILL);
}

TEST(child_process, the_destructor_stops_and_reaps_the_child) {
  pid_t pid = -1;
  {
    child_process child(shell("exec sleep 60", false));
    pid = child.pid();
    ASSERT_GT(pid, 0);
  }
  errno = 0;
  EXPECT_EQ(::kill(pid, 0), -1) << "pid " << pid << " survived its child_process";
  EXPECT_EQ(errno, ESRCH);
}

TEST(child_process, a_program_that_does_not_exist_fails_at_spawn_naming_it) {
  spawn_options o;
  o.argv = {"/nonexistent/cloak-tool"};
  try {
    child_process child(o);
    FAIL() << "spawned a program that does not exist";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ENOENT);
    EXPECT_NE(std::string(e.what()).find("cannot spawn /nonexistent/cloak-tool"), std::string::npos)
        << e.what();
  }
}

TEST(run_tool, captures_stdout_stderr_and_the_exit_status) {
  tool_options o;
  o.argv = {"/bin/sh", "-c", "cat; echo problem >&2; exit 3"};
  o.input = "batch of commands\n";
  tool_result r = run_tool(o, deadline(10s));
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.out, "batch of commands\n");
  EXPECT_EQ(r.err, "problem\n");
  EXPECT_EQ(r.status.code, 3);
  EXPECT_FALSE(r.success());
}

TEST(run_tool, kills_a_tool_still_running_at_its_deadline) {
  tool_options o;
  o.argv = {"/bin/sh", "-c", "echo started; exec sleep 60"};
  tool_result r = run_tool(o, deadline(200ms));
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.status.signal, SIGKILL);
  EXPECT_EQ(r.out, "started\n");
  EXPECT_FALSE(r.success());
}

TEST(run_tool, a_tool_that_exits_without_reading_its_input_fails_as_itself) {
  tool_options o;
  o.argv = {"/bin/sh", "-c", "exit 0"};
  o.input.assign(1 << 20, 'x');  // more than a pipe holds: the write meets EPIPE, not SIGPIPE
  tool_result r = run_tool(o, deadline(10s));
  EXPECT_TRUE(r.success()) << r.status.to_string();
}

TEST(write_all, reports_a_reader_that_has_gone) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  unique_fd read_end(fds[0]), write_end(fds[1]);
  read_end.reset();
  struct sigaction ignore {
  }, old{};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &old);
  errno = 0;
  EXPECT_FALSE(write_all(write_end.get(), "ready\n"));
  EXPECT_EQ(errno, EPIPE);
  ::sigaction(SIGPIPE, &old, nullptr);
  EXPECT_FALSE(write_all(-1, "ready\n"));
  EXPECT_EQ(errno, EBADF);
}

// A timer signal every 2 ms interrupts every wait (no SA_RESTART): a wait that started its whole
// timeout again after each one would never end.
class signals_arriving : public ::testing::Test {
 protected:
  void SetUp() override {
    struct sigaction on_alarm {};
    on_alarm.sa_handler = [](int) { interruptions = interruptions + 1; };
    sigemptyset(&on_alarm.sa_mask);
    ASSERT_EQ(::sigaction(SIGALRM, &on_alarm, &old_action_), 0);
    itimerval every{{0, 2000}, {0, 2000}};
    ASSERT_EQ(::setitimer(ITIMER_REAL, &every, nullptr), 0);
  }
  void TearDown() override {
    itimerval off{};
    ::setitimer(ITIMER_REAL, &off, nullptr);
    ::sigaction(SIGALRM, &old_action_, nullptr);
  }
  static inline volatile sig_atomic_t interruptions = 0;

 private:
  struct sigaction old_action_ {};
};

TEST_F(signals_arriving, poll_until_still_ends_at_its_deadline) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  unique_fd read_end(fds[0]), write_end(fds[1]);  // never written: never readable
  pollfd p{read_end.get(), POLLIN, 0};
  interruptions = 0;
  auto started = clock_type::now();
  EXPECT_EQ(poll_until(&p, 1, deadline(300ms)), 0);
  EXPECT_LT(clock_type::now() - started, 300ms + slack);
  EXPECT_GT(interruptions, 0) << "no signal arrived during the wait: the test proves nothing";
}

TEST_F(signals_arriving, waiting_for_a_child_still_ends_at_its_deadline) {
  child_process child(shell("exec sleep 60"));
  auto started = clock_type::now();
  EXPECT_EQ(child.await_ready(deadline(200ms), is_ready).how, readiness::end::timed_out);
  EXPECT_FALSE(child.wait(deadline(200ms)));
  EXPECT_LT(clock_type::now() - started, 400ms + slack);
  EXPECT_TRUE(child.stop(2s));
}

TEST_F(signals_arriving, a_tool_past_its_deadline_is_still_killed) {
  tool_options o;
  o.argv = {"/bin/sh", "-c", "exec sleep 60"};
  tool_result r = run_tool(o, deadline(200ms));
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.status.signal, SIGKILL);
}

TEST(environment_override, puts_back_every_variable_as_it_was_before_the_first_change) {
  ::setenv("CLOAK_TEST_SET", "before", 1);
  ::unsetenv("CLOAK_TEST_UNSET");
  {
    environment_override env;
    env.set("CLOAK_TEST_SET", "during");
    env.set("CLOAK_TEST_SET", "later");  // the value to restore is the one before the first change
    env.set("CLOAK_TEST_UNSET", "during");
    EXPECT_EQ(get_env("CLOAK_TEST_SET"), "later");
    EXPECT_EQ(get_env("CLOAK_TEST_UNSET"), "during");
  }
  EXPECT_EQ(get_env("CLOAK_TEST_SET"), "before");
  EXPECT_EQ(get_env("CLOAK_TEST_UNSET"), std::nullopt);

  environment_override env;
  env.unset("CLOAK_TEST_SET");
  EXPECT_EQ(get_env("CLOAK_TEST_SET"), std::nullopt);
  env.restore();
  EXPECT_EQ(get_env("CLOAK_TEST_SET"), "before");
  ::unsetenv("CLOAK_TEST_SET");
}

}  // namespace
}  // namespace cloak::os
