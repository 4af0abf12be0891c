// The topology's namespaces through iproute2: one `ip -batch` per namespace, every run bounded.
#include "namespaces.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cloak/net.hpp>
#include <cloak/os.hpp>
#include <cloak/process.hpp>
#include <cloak/topology.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <stdexcept>

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
  os::tool_options ip;
  ip.argv = {ip_program()};
  ip.argv.insert(ip.argv.end(), args.begin(), args.end());
  ip.input = input;
  os::tool_result r = os::run_tool(ip, os::deadline(timeout));
  if (r.timed_out) {
    throw std::runtime_error(fmt::format("ip {} did not finish within {} ms",
                                         args.empty() ? "" : args[0], timeout.count()));
  }
  if (!r.success()) {
    std::string what;
    for (const auto& a : args) what += a + " ";
    std::string text = r.err + r.out;
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
std::vector<pid_t> wait_gone(const std::vector<pid_t>& pids, const os::deadline& until) {
  std::vector<pid_t> alive;
  for (pid_t pid : pids) {
    if (!os::wait_gone(pid, until)) alive.push_back(pid);
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
    pids = wait_gone(pids, os::deadline(timeout / 2));
    for (pid_t p : pids) os::signal_process(p, SIGTERM);
    pids = wait_gone(pids, os::deadline(timeout / 4));
    for (pid_t p : pids) os::signal_process(p, SIGKILL);
    pids = wait_gone(pids, os::deadline(timeout / 4));
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
