// cloak-realm: creates a throwaway MIT Kerberos realm, runs its krb5kdc, and removes both on every
// exit.
//
// Started by cloak::realm. Protocol on the inherited --ready-fd (stdout when there is none, for a
// realm started by hand: docs/remote.md): "dir PATH\n" as soon as the directory exists, then
// "ready\n" (realm.json is written) or "error MESSAGE\n". It then waits for SIGTERM/SIGINT/SIGHUP
// or the parent's death (server_lifetime), serving "restart\n" requests on <dir>/control.sock
// meanwhile, and finally stops krb5kdc and deletes the directory. With --netns, krb5kdc runs in
// that network namespace (the supervisor itself stays where it was started, so its cleanup never
// depends on the namespace).
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cloak/os.hpp>
#include <cloak/server_lifetime.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "builder.hpp"

namespace {

using namespace cloak;
using clock_type = std::chrono::steady_clock;

std::string read_request(int fd) {
  os::set_receive_timeout(fd, std::chrono::seconds(2));
  os::set_send_timeout(fd, std::chrono::seconds(2));
  std::string line;
  char c = 0;
  while (line.size() < 64 && os::recv_all(fd, &c, 1) && c != '\n') line.push_back(c);
  return line;
}

}  // namespace

int main(int argc, char** argv) {
  detail::realm_options opt;
  CLI::App app{"cloak-realm: a throwaway MIT Kerberos realm and its KDC, removed on every exit"};
  app.add_option("--ready-fd", opt.ready_fd,
                 "descriptor for \"dir PATH\", then \"ready\" or \"error MESSAGE\"");
  app.add_option("--parent-pid", opt.parent_pid, "exit and clean up when this process is gone");
  app.add_option("--name", opt.name, "realm name");
  app.add_option("--clients", opt.clients, "fake clients FIRST_UID:FIRST_GID:COUNT");
  app.add_option("--process", opt.process, "the middle server's identity P, UID:GID[:G1,G2...]");
  app.add_option("--clockskew", opt.clockskew, "maximum clock skew (seconds)");
  app.add_option("--ready-timeout-ms", opt.ready_timeout_ms, "bound on starting krb5kdc");
  app.add_option("--listen", opt.listen,
                 "the IPv4 address krb5kdc listens on (and krb5.conf names)");
  app.add_option("--netns", opt.netns, "run krb5kdc in this named network namespace (ip netns)");
  app.add_option(
      "--hosts", opt.hosts,
      "downstream hosts, comma-separated (down1,down2): a principal cloak/HOST@REALM and "
      "<dir>/HOST.keytab each; P's principal then maps to a host uid of its own");
  CLI11_PARSE(app, argc, argv);
  // Started by hand (docs/remote.md) there is no readiness pipe: the same lines go to stdout.
  if (opt.ready_fd < 0) opt.ready_fd = STDOUT_FILENO;

  ::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<server_lifetime> life;
  try {
    life = std::make_unique<server_lifetime>(
        opt.parent_pid);  // before any child: they inherit the mask
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cloak-realm: %s\n", e.what());
    server_lifetime::tell(opt.ready_fd, fmt::format("error {}\n", e.what()));
    return 1;
  }

  auto started = clock_type::now();
  auto deadline = started + std::chrono::milliseconds(opt.ready_timeout_ms);
  std::string dir;
  try {
    dir = os::make_temp_dir("cloak-realm");
  } catch (const std::system_error& e) {
    server_lifetime::tell(opt.ready_fd, fmt::format("error {}\n", e.what()));
    return 1;
  }
  server_lifetime::tell(opt.ready_fd, "dir " + dir + "\n");

  int rc = 0;
  std::unique_ptr<detail::realm_builder> builder;
  try {
    builder = std::make_unique<detail::realm_builder>(opt, dir);
    builder->create(os::deadline(deadline));
    builder->info().setup_seconds =
        std::chrono::duration<double>(clock_type::now() - started).count();
    os::unique_fd control = os::listen_unix(builder->info().control_socket, 4);
    os::change_mode(builder->info().control_socket, 0600);
    builder->write_json();
    server_lifetime::signal_ready(opt.ready_fd);
    opt.ready_fd = -1;
    life->accept_until_stopped(control.get(), [&](os::unique_fd conn) {
      std::string request = read_request(conn.get());
      std::string reply = request == "restart" ? builder->restart_kdc(opt.ready_timeout_ms)
                                               : "error unknown request \"" + request + "\"";
      reply += "\n";
      os::send_all(conn.get(), reply.data(), reply.size());
    });
  } catch (const std::exception& e) {
    std::string msg = e.what();
    for (char& c : msg)
      if (c == '\n') c = ' ';
    while (!msg.empty() && msg.back() == ' ') msg.pop_back();
    std::fprintf(stderr, "cloak-realm: %s\n", e.what());
    server_lifetime::tell(opt.ready_fd, "error " + msg + "\n");
    rc = 1;
  }
  if (builder) builder->stop_kdc();
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  return rc;
}
