// cloak-topology: creates the cross-host topology's network namespaces and removes them on every
// exit. Started by cloak::topology (or by hand: then its lines go to stdout).
//
// Protocol on --ready-fd: "prefix NAME\n" first, then "ready SECONDS\n" (every namespace, link and
// address exists) or "error MESSAGE\n". It then waits for SIGTERM/SIGINT/SIGHUP or the parent's
// death (server_lifetime, a pidfd: SIGKILL of the harness included) and removes everything: the
// processes still inside the namespaces, then the namespaces, whose veths and bridge go with them.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cloak/os.hpp>
#include <cloak/server_lifetime.hpp>
#include <cstdio>
#include <string>

#include "namespaces.hpp"

namespace {

using namespace cloak;
using clock_type = std::chrono::steady_clock;

std::string one_line(std::string text) {
  for (char& c : text) {
    if (c == '\n') c = ' ';
  }
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  int ready_fd = -1;
  long parent_pid = 0;
  int stop_timeout_ms = 6000;
  CLI::App app{
      "cloak-topology: the network namespaces of cloakbench's cross-host cells, removed on every "
      "exit"};
  app.add_option("--ready-fd", ready_fd,
                 "descriptor for \"prefix NAME\", then \"ready SECONDS\" or \"error MESSAGE\"");
  app.add_option("--parent-pid", parent_pid, "remove everything when this process is gone");
  app.add_option("--stop-timeout-ms", stop_timeout_ms,
                 "bound on ending what still runs inside the namespaces");
  CLI11_PARSE(app, argc, argv);
  if (ready_fd < 0) ready_fd = STDOUT_FILENO;

  auto started = clock_type::now();
  std::unique_ptr<server_lifetime> life;
  try {
    life =
        std::make_unique<server_lifetime>(parent_pid);  // before any child: they inherit the mask
  } catch (const std::exception& e) {
    server_lifetime::tell(ready_fd, fmt::format("error {}\n", one_line(e.what())));
    return 1;
  }
  // Our pid makes the names unique among live processes: a namespace already called so was left by
  // a dead process that had our pid, and is removed first.
  std::string prefix = fmt::format("cloak-{}", ::getpid());
  auto timeout = std::chrono::milliseconds(stop_timeout_ms);
  detail::remove_topology(prefix, static_cast<pid_t>(parent_pid), timeout);
  server_lifetime::tell(ready_fd, "prefix " + prefix + "\n");
  int rc = 0;
  try {
    detail::create_topology(prefix);
    double seconds = std::chrono::duration<double>(clock_type::now() - started).count();
    server_lifetime::tell(ready_fd, fmt::format("ready {:.6f}\n", seconds));
    if (ready_fd != STDOUT_FILENO) os::unique_fd closed(ready_fd);
    ready_fd = -1;
    // Nothing to accept: a pipe whose write end we hold never becomes readable, so this waits for
    // a stop signal or the parent's exit only.
    int idle[2];
    os::check([&] { return ::pipe2(idle, O_CLOEXEC); }, "cannot create a pipe");
    os::unique_fd idle_read(idle[0]), idle_write(idle[1]);
    life->accept_until_stopped(idle_read.get(), [](os::unique_fd) {});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cloak-topology: %s\n", e.what());
    server_lifetime::tell(ready_fd, fmt::format("error {}\n", one_line(e.what())));
    rc = 1;
  }
  std::string left = detail::remove_topology(prefix, static_cast<pid_t>(parent_pid), timeout);
  if (!left.empty()) {
    std::fprintf(stderr, "cloak-topology: could not remove everything of %s: %s\n", prefix.c_str(),
                 left.c_str());
    rc = 1;
  }
  return rc;
}
