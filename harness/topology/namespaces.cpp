// The topology's namespaces through iproute2: one `ip -batch` per namespace, every run bounded.
#include "namespaces.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cloak/net.hpp>
#include <cloak/os.hpp>
#include <cloak/topology.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <stdexcept>

extern char** environ;

namespace cloak::detail {

std::vector<std::string> topology_namespaces(const std::string& prefix) {
  std::vector<std::string> out{prefix + "-switch"};
  for (const auto& h : topology::host_names()) out.push_back(prefix + "-" + h);
  return out;
}

std::string ip_program() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  throw std::runtime_error("cannot find ip (Debian package iproute2)");
}

namespace {

// Runs ip with `args` and `input` on its stdin; throws with ip's own message when it fails or
// outlives `timeout`.
void run_ip(const std::vector<std::string>& args, const std::string& input,
            std::chrono::milliseconds timeout) {
  std::vector<std::string> argv{ip_program()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  int in[2], err[2];
  os::check([&] { return ::pipe2(in, O_CLOEXEC); }, "cannot create a pipe for ip");
  os::unique_fd in_read(in[0]), in_write(in[1]);
  os::check([&] { return ::pipe2(err, O_CLOEXEC); }, "cannot create a pipe for ip");
  os::unique_fd err_read(err[0]), err_write(err[1]);
  pid_t pid = ::fork();
  if (pid < 0) os::throw_errno(errno, "cannot fork for ip");
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(in_read.get(), 0);
    ::dup2(err_write.get(), 1);
    ::dup2(err_write.get(), 2);
    ::execve(cargv[0], cargv.data(), environ);
    ::_exit(127);
  }
  in_read.reset();
  err_write.reset();
  // ip reads a few hundred bytes of commands: they fit the pipe, so this cannot block on it.
  if (!input.empty()) {
    std::size_t done = 0;
    while (done < input.size()) {
      ssize_t n = os::retry_eintr(
          [&] { return ::write(in_write.get(), input.data() + done, input.size() - done); });
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
  }
  in_write.reset();
  std::string text;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{err_read.get(), POLLIN, 0};
    if (os::retry_eintr([&] { return ::poll(&p, 1, static_cast<int>(left.count())); }) <= 0) break;
    char buf[512];
    ssize_t n = os::retry_eintr([&] { return ::read(err_read.get(), buf, sizeof buf); });
    if (n <= 0) break;  // ip closed its output: it is exiting
    text.append(buf, static_cast<std::size_t>(n));
  }
  int status = 0;
  pid_t done = 0;
  os::unique_fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (pidfd) {
    pollfd p{pidfd.get(), POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    os::retry_eintr(
        [&] { return ::poll(&p, 1, static_cast<int>(std::max<long>(left.count(), 0))); });
  }
  done = os::retry_eintr([&] { return ::waitpid(pid, &status, WNOHANG); });
  if (done != pid) {
    ::kill(pid, SIGKILL);
    os::retry_eintr([&] { return ::waitpid(pid, &status, 0); });
    throw std::runtime_error(fmt::format("ip {} did not finish within {} ms",
                                         args.empty() ? "" : args[0], timeout.count()));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string what;
    for (const auto& a : args) what += a + " ";
    while (!text.empty() && text.back() == '\n') text.pop_back();
    throw std::runtime_error(fmt::format("ip {}failed: {}{}", what, text,
                                         input.empty() ? "" : " (batch: " + input + ")"));
  }
}

constexpr std::chrono::milliseconds ip_timeout{5000};

bool exists(const std::string& netns) {
  struct stat st {};
  return ::lstat(os::netns_path(netns).c_str(), &st) == 0;
}

// The processes whose (main thread's) network namespace is the one named: found through /proc, as
// `ip netns pids` does, so it also sees what nobody recorded.
std::vector<pid_t> processes_in(const std::string& netns) {
  std::vector<pid_t> out;
  struct stat ns {};
  if (::stat(os::netns_path(netns).c_str(), &ns) != 0) return out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    struct stat st {};
    if (::stat((entry.path() / "ns" / "net").c_str(), &st) != 0) continue;
    if (st.st_ino == ns.st_ino && st.st_dev == ns.st_dev)
      out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return out;
}

// Waits until every pid of `pids` has exited or the deadline passed; returns those still alive.
std::vector<pid_t> wait_gone(const std::vector<pid_t>& pids,
                             std::chrono::steady_clock::time_point deadline) {
  std::vector<pid_t> alive;
  for (pid_t pid : pids) {
    os::unique_fd fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!fd) continue;  // already gone
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd.get(), POLLIN, 0};
    if (os::retry_eintr([&] {
          return ::poll(&p, 1, static_cast<int>(std::max<long>(left.count(), 0)));
        }) <= 0) {
      alive.push_back(pid);
    }
  }
  return alive;
}

}  // namespace

void create_topology(const std::string& prefix) {
  std::vector<std::string> names = topology_namespaces(prefix);
  std::string add;
  for (const auto& n : names) add += "netns add " + n + "\n";
  run_ip({"-batch", "-"}, add, ip_timeout);
  // The switch: a bridge and one veth end per host; the other end is the host's eth0.
  const std::string& sw = names[0];
  std::string bridge = "link set lo up\nlink add name br0 type bridge\nlink set br0 up\n";
  const auto& hosts = topology::host_names();
  for (const auto& h : hosts) {
    bridge +=
        fmt::format("link add name v-{0} type veth peer name eth0 netns {1}-{0}\n", h, prefix);
    bridge += fmt::format("link set v-{} master br0\nlink set v-{} up\n", h, h);
  }
  run_ip({"-n", sw, "-batch", "-"}, bridge, ip_timeout);
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    // One connected /24 and no default route: nothing a host sends can leave the topology.
    std::string host =
        fmt::format("link set lo up\naddr add 198.18.0.{}/24 dev eth0\nlink set eth0 up\n", i + 1);
    run_ip({"-n", prefix + "-" + hosts[i], "-batch", "-"}, host, ip_timeout);
  }
}

std::string remove_topology(const std::string& prefix, pid_t spare,
                            std::chrono::milliseconds timeout) noexcept {
  std::string left;
  try {
    std::vector<std::string> names = topology_namespaces(prefix);
    // Whatever still runs inside watches the same harness and is on its way out: a bounded wait
    // first (so it can remove its own files), then SIGTERM, then SIGKILL.
    std::vector<pid_t> pids;
    for (const auto& n : names) {
      for (pid_t p : processes_in(n)) {
        if (p != spare && p != ::getpid()) pids.push_back(p);
      }
    }
    auto deadline = std::chrono::steady_clock::now() + timeout / 2;
    pids = wait_gone(pids, deadline);
    for (pid_t p : pids) ::kill(p, SIGTERM);
    pids = wait_gone(pids, std::chrono::steady_clock::now() + timeout / 4);
    for (pid_t p : pids) ::kill(p, SIGKILL);
    pids = wait_gone(pids, std::chrono::steady_clock::now() + timeout / 4);
    for (pid_t p : pids) left += fmt::format("pid {} survived SIGKILL; ", p);
    std::string del;
    for (const auto& n : names) {
      if (exists(n)) del += "netns del " + n + "\n";
    }
    if (!del.empty()) {
      try {
        run_ip({"-force", "-batch", "-"}, del, ip_timeout);
      } catch (const std::exception& e) {
        left += e.what();
      }
    }
    for (const auto& n : names) {
      if (exists(n)) left += fmt::format("{} still exists; ", n);
    }
  } catch (const std::exception& e) {
    left += e.what();
  }
  return left;
}

}  // namespace cloak::detail
