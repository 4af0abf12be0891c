// The robustness tests' shared fixtures and tools (see support.hpp).
#include "support.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

extern char** environ;

namespace cloak::robustness {

void kernel_test::SetUp() {
  if (const auto& why = test::kernel_unavailable()) GTEST_SKIP() << *why;
  leak_checked_test::SetUp();
}

::testing::AssertionResult serves_correctly(identity_backend& kernel,
                                            const downstream_process& server) {
  static const std::byte payload[48]{};
  {
    auto t = connect_to(server);
    proxy p(kernel, *t);
    call_result r = p.call(payload);
    if (!r.ok())
      return ::testing::AssertionFailure() << "no-cloaking call failed: " << to_string(r.error);
    if (!r.view.seen.same_principal(kernel.process_identity())) {
      return ::testing::AssertionFailure() << "no-cloaking call: D saw " << to_string(r.view.seen);
    }
  }
  auto t = connect_to(server);
  proxy p(kernel, *t);
  p.set_blanket(blanket_of(cloaking::dynamic));
  impersonation as_c1(kernel, client_token(0));
  call_result r = p.call(payload);
  if (!r.ok())
    return ::testing::AssertionFailure() << "dynamic call as C1 failed: " << to_string(r.error);
  if (!r.view.seen.same_principal(client(0))) {
    return ::testing::AssertionFailure() << "dynamic call as C1: D saw " << to_string(r.view.seen);
  }
  access_outcome out;
  r = p.access_check(clients().first_uid, out);
  if (!r.ok() || !out.granted) {
    return ::testing::AssertionFailure()
           << "access check as C1 on C1's probe file: " << to_string(r.error)
           << " granted=" << out.granted << " errno=" << out.error_number;
  }
  return ::testing::AssertionSuccess();
}

command_result run_command(const std::vector<std::string>& argv) {
  int fds[2];
  os::check([&] { return ::pipe2(fds, O_CLOEXEC); }, "cannot create a pipe");
  os::unique_fd read_end(fds[0]), write_end(fds[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 2);
  std::vector<char*> args;
  std::vector<std::string> copy = argv;
  for (auto& a : copy) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, copy[0].c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) os::throw_errno(rc, fmt::format("cannot run {}", argv[0]));
  write_end.reset();
  command_result result;
  char buf[4096];
  // Bounded: a program that never exits is a hang, reported as one.
  auto deadline = std::chrono::steady_clock::now() + 30s;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{read_end.get(), POLLIN, 0};
    if (left.count() <= 0 ||
        os::retry_eintr([&] { return ::poll(&p, 1, static_cast<int>(left.count())); }) <= 0) {
      ::kill(pid, SIGKILL);
      ADD_FAILURE() << argv[0] << " did not finish within 30 s";
      break;
    }
    ssize_t n = os::retry_eintr([&] { return ::read(read_end.get(), buf, sizeof buf); });
    if (n <= 0) break;
    result.output.append(buf, static_cast<std::size_t>(n));
  }
  int status = 0;
  os::retry_eintr([&] { return ::waitpid(pid, &status, 0); });
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

temp_dir::temp_dir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = fmt::format("{}/cloak-robustness.XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!::mkdtemp(pattern.data())) os::throw_errno(errno, fmt::format("cannot create {}", pattern));
  path_ = pattern;
}

temp_dir::~temp_dir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace cloak::robustness
