// The topology the cross-host cells run in: it is made and removed (ip netns list as before), its
// hosts have one address each and no route out, they reach each other over the bridge, processes
// left inside are ended, and a SIGKILL of the process that made the whole world (namespaces, realm,
// D1, D2) leaves no namespace, veth, process or directory behind.
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cloak/hosts.hpp>
#include <cloak/net.hpp>
#include <cloak/topology.hpp>
#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>
#include <thread>

#include "../kerberos/kerberos_test_support.hpp"

namespace cloak {
namespace {

using namespace std::chrono_literals;

#define CLOAK_SKIP_UNLESS_NET_ADMIN()                                             \
  do {                                                                            \
    if (auto why = ::cloak::topology::unavailable_reason()) GTEST_SKIP() << *why; \
  } while (0)

// What `ip ARGS` prints (iproute2 is there: unavailable_reason() checked).
std::string ip(const std::string& args) {
  std::string out;
  FILE* p = ::popen(("ip " + args + " 2>&1").c_str(), "r");
  if (!p) return out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  ::pclose(p);
  return out;
}

std::set<std::string> namespaces() {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/run/netns", ec))
    out.insert(e.path().filename());
  return out;
}

// What is here now and was not before, but for the namespaces of other topologies still alive (a
// test running beside this one): what a run left behind.
std::set<std::string> left_behind(const std::set<std::string>& before) {
  std::set<std::string> out;
  for (const auto& n : namespaces()) {
    if (before.count(n)) continue;
    long pid = 0;
    if (std::sscanf(n.c_str(), "cloak-%ld-", &pid) == 1 && pid > 0 &&
        ::kill(static_cast<pid_t>(pid), 0) == 0)
      continue;
    out.insert(n);
  }
  return out;
}

std::set<std::string> with_prefix(const std::string& prefix) {
  std::set<std::string> out;
  for (const auto& n : namespaces()) {
    if (n.rfind(prefix + "-", 0) == 0) out.insert(n);
  }
  return out;
}

TEST(topology, setup_and_teardown_leave_ip_netns_list_as_before) {
  CLOAK_SKIP_UNLESS_NET_ADMIN();
  auto before = namespaces();
  std::string prefix;
  {
    topology t;
    prefix = t.prefix();
    std::printf("topology %s: set up in %.3f s\n", prefix.c_str(), t.setup_seconds());
    EXPECT_GT(t.setup_seconds(), 0.0);
    EXPECT_LT(t.setup_seconds(), 5.0);
    EXPECT_EQ(with_prefix(prefix),
              (std::set<std::string>{prefix + "-switch", prefix + "-middle", prefix + "-down1",
                                     prefix + "-down2", prefix + "-kdc"}));
    EXPECT_EQ(t.host("down2").address, "198.18.0.3");
  }
  EXPECT_EQ(left_behind(before), std::set<std::string>{});
  EXPECT_TRUE(with_prefix(prefix).empty());
}

TEST(topology, each_host_has_its_one_address_and_no_route_out_and_the_root_namespace_none) {
  CLOAK_SKIP_UNLESS_NET_ADMIN();
  topology t;
  for (const auto& h : t.hosts()) {
    std::string addr = ip("-n " + h.netns + " -4 -o addr show");
    EXPECT_NE(addr.find("inet " + h.address + "/24"), std::string::npos) << h.name << ":\n" << addr;
    std::string routes = ip("-n " + h.netns + " -4 route show");
    EXPECT_EQ(routes,
              fmt::format("198.18.0.0/24 dev eth0 proto kernel scope link src {} \n", h.address))
        << h.name << " must have the subnet's route and no other (no default route)";
  }
  EXPECT_EQ(ip("-4 -o addr show").find("198.18."), std::string::npos)
      << "nothing of the topology in the root namespace";
  EXPECT_EQ(ip("-o link show").find("v-middle"), std::string::npos);
}

TEST(topology, a_host_reaches_another_over_the_bridge_and_a_thread_goes_back_to_its_namespace) {
  CLOAK_SKIP_UNLESS_NET_ADMIN();
  topology t;
  os::unique_fd listener;
  {
    os::netns_scope in_down1(t.host("down1").netns);
    listener = os::listen_tcp(os::tcp_endpoint{t.host("down1").address, 0});
  }
  std::uint16_t port = os::local_endpoint(listener.get()).port;
  {
    os::netns_scope in_middle(t.host("middle").netns);
    os::unique_fd c = os::connect_tcp(os::tcp_endpoint{t.host("down1").address, port}, 2000ms);
    ASSERT_TRUE(c) << std::strerror(errno);
    os::unique_fd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(accepted);
    const char ping[] = "ping";
    char got[4] = {};
    ASSERT_TRUE(os::send_all(c.get(), ping, 4));
    ASSERT_TRUE(os::recv_all(accepted.get(), got, 4));
    EXPECT_EQ(std::string(got, 4), "ping");
  }
  // Back in the root namespace, the topology's addresses do not exist: the listener cannot be
  // reached from here (the bind would fail: the address is not ours).
  EXPECT_THROW(os::listen_tcp(os::tcp_endpoint{t.host("down1").address, 0}), std::system_error);
}

TEST(topology, stop_ends_a_process_left_inside_a_namespace) {
  CLOAK_SKIP_UNLESS_NET_ADMIN();
  topology t;
  std::string ns = t.host("down1").netns;
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    try {
      os::enter_netns(ns);
    } catch (...) {
      ::_exit(3);
    }
    (void)!::write(ready[1], "x", 1);
    for (;;) ::pause();  // what a forgotten server would do
  }
  ::close(ready[1]);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  t.stop();
  int status = 0;
  EXPECT_EQ(::waitpid(child, &status, WNOHANG), child) << "the process inside was not ended";
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_TRUE(namespaces().count(ns) == 0);
}

// The world as a bench makes it, then the bench SIGKILLed: the supervisors (topology and realm) and
// the downstreams watch it through pidfds and remove everything.
TEST(topology,
     sigkill_of_the_process_that_made_the_world_leaves_no_namespace_veth_process_or_directory) {
  CLOAK_SKIP_UNLESS_NET_ADMIN();
  CLOAK_SKIP_UNLESS_KRB5();
  auto before = namespaces();
  int report[2];
  ASSERT_EQ(::pipe(report), 0);
  pid_t owner = ::fork();
  ASSERT_GE(owner, 0);
  if (owner == 0) {
    ::close(report[0]);
    try {
      cross_hosts_config c;
      c.clients = test::test_clients();
      cross_hosts world(c);
      std::string line =
          fmt::format("{} {} {} {} {} {}\n", world.net().prefix(), world.net().supervisor_pid(),
                      world.kdc().supervisor_pid(), world.kdc().kdc_pid(), world.down1().pid(),
                      world.down2().pid()) +
          world.realm_description().dir + "\n" + world.down1().run_dir() + "\n";
      (void)!::write(report[1], line.data(), line.size());
      for (;;) ::pause();  // with the world up, until the SIGKILL
    } catch (const std::exception& e) {
      std::string line = std::string("error ") + e.what() + "\n";
      (void)!::write(report[1], line.data(), line.size());
    }
    for (;;) ::pause();
  }
  ::close(report[1]);
  std::string text;
  char buf[1024];
  for (ssize_t n; (n = ::read(report[0], buf, sizeof buf)) > 0;) {
    text.append(buf, static_cast<std::size_t>(n));
    if (std::count(text.begin(), text.end(), '\n') >= 3 || text.rfind("error", 0) == 0) break;
  }
  ::close(report[0]);
  ::kill(owner, SIGKILL);
  int status = 0;
  ::waitpid(owner, &status, 0);
  ASSERT_NE(text.rfind("error", 0), 0u) << text;
  std::istringstream in(text);
  std::string prefix, realm_dir, run_dir;
  long topology_pid = 0, realm_pid = 0, kdc_pid = 0, d1 = 0, d2 = 0;
  in >> prefix >> topology_pid >> realm_pid >> kdc_pid >> d1 >> d2 >> realm_dir >> run_dir;
  ASSERT_FALSE(prefix.empty());
  for (long pid : {d1, d2, kdc_pid, realm_pid, topology_pid}) {
    EXPECT_TRUE(test::exits_within(pid, 15s))
        << "pid " << pid << " (" << test::cmdline_of(pid) << ") outlived its owner";
  }
  EXPECT_TRUE(with_prefix(prefix).empty());
  EXPECT_EQ(left_behind(before), std::set<std::string>{});
  EXPECT_EQ(ip("-o link show").find("v-down1"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(realm_dir)) << realm_dir;
  EXPECT_FALSE(std::filesystem::exists(run_dir)) << run_dir;
  EXPECT_TRUE(test::krb5kdc_processes_for(realm_dir).empty());
}

}  // namespace
}  // namespace cloak
