// Where cloak-downstream listens: only in a directory its own user may enter, never over a dead
// server's socket's head or a live one's, and never on a network address.
#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "support.hpp"

namespace cloak::robustness {
namespace {

using socket_directory = kernel_test;

command_result run_downstream(const std::string& socket_path) {
  return run_command(
      {downstream_process::default_program(), "--socket", socket_path, "--clients",
       fmt::format("{}:{}:{}", clients().first_uid, clients().first_gid, clients().count)});
}

TEST_F(socket_directory, a_directory_others_may_enter_is_refused) {
  for (mode_t mode : {0755, 0750, 0701, 0710, 0770, 0777}) {
    SCOPED_TRACE(fmt::format("mode {:o}", mode));
    temp_dir dir;
    ASSERT_EQ(::chmod(dir.path().c_str(), mode), 0);
    command_result r = run_downstream(dir.path() + "/downstream.sock");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("must be private (mode 0700"), std::string::npos) << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir.path() + "/downstream.sock"));
    EXPECT_FALSE(std::filesystem::exists(dir.path() + "/access"))
        << "it changed the directory before refusing";

    downstream_config c = config();
    c.run_dir = dir.path();
    EXPECT_THROW(downstream_process server(c), std::runtime_error);
  }
}

TEST_F(socket_directory, a_private_directory_of_another_user_is_refused) {
  temp_dir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 0700), 0);
  ASSERT_EQ(::chown(dir.path().c_str(), clients().first_uid, clients().first_gid), 0);
  command_result r = run_downstream(dir.path() + "/downstream.sock");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(fmt::format("owned by uid {}", ::geteuid())), std::string::npos)
      << r.output;
}

TEST_F(socket_directory, the_socket_and_its_directory_admit_only_the_harness_user) {
  downstream_process server(config());
  struct stat st {};
  ASSERT_EQ(::stat(server.run_dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(st.st_uid, ::geteuid());
  ASSERT_EQ(::lstat(server.socket_path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // A client thread cannot reach the socket by itself: the proxy connects as P.
  impersonation as_c1(kernel(), client_token(0));
  EXPECT_THROW(raw_client(server.socket_path()), std::system_error);
}

TEST_F(socket_directory, a_stale_socket_left_by_a_dead_server_is_replaced) {
  temp_dir dir;
  std::string path = dir.path() + "/downstream.sock";
  {
    os::unique_fd dead = os::listen_unix(path, 1);
  }  // closed without unlink: what a killed server leaves
  ASSERT_TRUE(std::filesystem::exists(path));
  downstream_config c = config();
  c.run_dir = dir.path();
  downstream_process server(c);
  EXPECT_EQ(server.socket_path(), path);
  EXPECT_TRUE(serves_correctly(kernel(), server));

  // The same after a SIGKILL of the real server: start() comes up again on the same path.
  server.kill(SIGKILL);
  ASSERT_TRUE(std::filesystem::exists(path));
  server.start();
  EXPECT_TRUE(serves_correctly(kernel(), server));
}

TEST_F(socket_directory, a_live_server_at_the_path_is_a_clear_error_and_keeps_running) {
  downstream_process first(config());
  command_result r = run_downstream(first.socket_path());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("another server is already listening on " + first.socket_path()),
            std::string::npos)
      << r.output;
  // The first server's socket and probe files are untouched: it still acts as its callers.
  EXPECT_TRUE(serves_correctly(kernel(), first));

  downstream_config c = config();
  c.run_dir = first.run_dir();
  try {
    downstream_process second(c);
    ADD_FAILURE() << "a second server started on a live server's socket";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("exited before it was ready"), std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(serves_correctly(kernel(), first));
}

TEST_F(socket_directory, something_else_at_the_socket_path_is_never_replaced) {
  temp_dir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 0700), 0);
  std::string path = dir.path() + "/downstream.sock";
  { std::ofstream(path) << "precious"; }
  command_result r = run_downstream(path);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("exists and is not a socket"), std::string::npos) << r.output;
  std::ifstream in(path);
  std::string text;
  in >> text;
  EXPECT_EQ(text, "precious");
}

// Inodes of every socket `pid` holds open.
std::set<std::string> socket_inodes(pid_t pid) {
  std::set<std::string> out;
  for (const auto& fd : std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid))) {
    std::error_code ec;
    std::string target = std::filesystem::read_symlink(fd.path(), ec).string();
    if (!ec && target.starts_with("socket:[")) out.insert(target.substr(8, target.size() - 9));
  }
  return out;
}

// The inode column of a /proc/net table (`column` counts from 0 after splitting on whitespace).
std::set<std::string> table_inodes(const std::string& path, std::size_t column) {
  std::set<std::string> out;
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::vector<std::string> w{std::istream_iterator<std::string>(words), {}};
    if (w.size() > column) out.insert(w[column]);
  }
  return out;
}

TEST_F(socket_directory, the_downstream_listens_on_no_network_address) {
  downstream_process server(config());
  raw_client held(server.socket_path());  // a served connection is open too
  ASSERT_TRUE(held.establish());
  std::set<std::string> mine = socket_inodes(server.pid());
  ASSERT_GE(mine.size(), 2u) << "expected the listener and one connection";
  // Its own network namespace's tables (the same as the harness's: no namespace of its own).
  for (const char* table : {"tcp", "tcp6", "udp", "udp6", "raw", "raw6", "udplite", "udplite6"}) {
    std::string path = fmt::format("/proc/{}/net/{}", server.pid(), table);
    if (!std::filesystem::exists(path)) continue;
    for (const std::string& inode : table_inodes(path, 9)) {
      EXPECT_FALSE(mine.contains(inode))
          << "cloak-downstream has a socket in " << path << " (inode " << inode << ")";
    }
  }
  // The check can see a socket at all: its listener is in the Unix table, under its path.
  std::ifstream unix_table(fmt::format("/proc/{}/net/unix", server.pid()));
  bool listener_found = false;
  for (std::string line; std::getline(unix_table, line);) {
    std::istringstream words(line);
    std::vector<std::string> w{std::istream_iterator<std::string>(words), {}};
    if (w.size() >= 8 && w[7] == server.socket_path() && mine.contains(w[6])) listener_found = true;
  }
  EXPECT_TRUE(listener_found) << "the listener's inode is not in /proc/net/unix";
}

TEST_F(socket_directory, the_private_directory_is_removed_when_the_harness_stops_the_server) {
  std::string dir;
  {
    downstream_process server(config());
    dir = server.run_dir();
    ASSERT_TRUE(std::filesystem::exists(dir));
  }
  EXPECT_FALSE(std::filesystem::exists(dir));
}

}  // namespace
}  // namespace cloak::robustness
