// cloak-echo-peer: the trivial peer of the raw socket baselines. It echoes messages and does
// nothing else, so a round trip to it is the floor a cloak-downstream call is read against.
//
// It takes cloak-downstream's command line (so the harness's downstream_process can start, watch
// and stop it); of those options it uses --socket, --ready-fd, --cpu, --parent-pid and
// --remove-dir-when-orphaned, and across hosts --listen tcp:ADDR:PORT, --netns and --forward (a
// relay: each message goes on to that echo and its answer comes back: the two-hop raw round trip);
// it ignores the rest. Beside --socket PATH it listens on PATH-minimal: the plain ping-pong
// (baseline/roundtrip/minimal), which reads no credentials.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cloak/net.hpp>
#include <cloak/os.hpp>
#include <cloak/server_lifetime.hpp>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace cloak;

struct options {
  std::string socket_path;
  int ready_fd = -1;
  int cpu = -1;
  long parent_pid = 0;
  bool remove_dir_when_orphaned = false;
  std::string listen;  // tcp:ADDR:PORT instead of the socket
  std::string netns;
  std::string forward;  // relay to this echo (tcp)
  std::string run_dir;
};

// The harness's downstream_process passes cloak-downstream's whole command line; what an echo does
// not need (--clients, --max-connections, --realm, ...) is accepted and ignored.
options parse(int argc, char** argv) {
  options opt;
  CLI::App app{"cloak-echo-peer: the echo peer of the raw socket baselines (bench/echo_peer.cpp)"};
  app.allow_extras();
  auto* socket = app.add_option("--socket", opt.socket_path, "the seqpacket socket to listen on");
  auto* listen = app.add_option("--listen", opt.listen, "listen on TCP instead, tcp:ADDR:PORT");
  socket->excludes(listen);
  app.add_option("--ready-fd", opt.ready_fd, "closed (after a line, for TCP) once listening");
  app.add_option("--cpu", opt.cpu, "pin to this CPU")->check(CLI::Range(0, 4095));
  app.add_option("--parent-pid", opt.parent_pid, "exit when this process exits");
  app.add_flag("--remove-dir-when-orphaned", opt.remove_dir_when_orphaned,
               "remove the socket's directory when the parent died first");
  app.add_option("--netns", opt.netns, "with --listen: the network namespace to run in");
  app.add_option("--forward", opt.forward, "with --listen: relay to this echo, tcp:ADDR:PORT");
  app.add_option("--run-dir", opt.run_dir, "with --listen: the private directory");
  try {
    app.parse(argc, argv);
    if (opt.socket_path.empty() && opt.listen.empty())
      throw CLI::RequiredError("--socket or --listen");
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e));
  }
  return opt;
}

std::string minimal_path(const std::string& socket_path) { return socket_path + "-minimal"; }

// Echoes whatever arrives, received as cloak-downstream receives it: SO_PEERCRED read at accept and
// SO_PASSCRED on, so the kernel attaches the sender's credentials (SCM_CREDENTIALS) to every
// message. That is the transport docs/design.md §2 prescribes; what the echo does not do is
// everything cloakbench adds on top (framing, sessions, contexts, the proxy).
void serve(int raw_fd) {
  os::unique_fd fd(raw_fd);
  ucred peer{};
  socklen_t len = sizeof peer;
  ::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &len);
  int on = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
  std::vector<char> buf(128 * 1024);
  for (;;) {
    os::received r = os::recv_message(fd.get(), buf.data(), buf.size());
    if (r.size <= 0 || r.truncated) return;
    if (!os::send_all(fd.get(), buf.data(), static_cast<std::size_t>(r.size))) return;
  }
}

// The floor: one recv and one send per message, nothing else (no credentials asked for).
void serve_minimal(int raw_fd) {
  os::unique_fd fd(raw_fd);
  std::vector<char> buf(128 * 1024);
  for (;;) {
    ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), 0);
    if (n <= 0 || ::send(fd.get(), buf.data(), static_cast<std::size_t>(n), MSG_NOSIGNAL) != n)
      return;
  }
}

// Each accepted connection gets a thread running `serve`.
template <class Serve>
void serve_in_thread(os::unique_fd conn, Serve serve) {
  try {
    std::thread(serve, conn.get()).detach();
    conn.release();  // serve owns it now
  } catch (const std::system_error&) {
  }
}

// Across hosts: echo over TCP, or relay each message to the next echo and its answer back.
void serve_tcp(int raw_fd, const os::tcp_endpoint* next) {
  os::unique_fd fd(raw_fd);
  os::tune_tcp(fd.get(), std::chrono::milliseconds(0));
  os::unique_fd onward;
  if (next) {
    onward = os::connect_tcp(*next, std::chrono::milliseconds(2000));
    if (!onward) return;
  }
  std::vector<char> buf(128 * 1024);
  for (;;) {
    ssize_t n = os::retry_eintr([&] { return ::recv(fd.get(), buf.data(), buf.size(), 0); });
    if (n <= 0) return;
    std::size_t size = static_cast<std::size_t>(n);
    if (onward && (!os::send_all(onward.get(), buf.data(), size) ||
                   !os::recv_all(onward.get(), buf.data(), size))) {
      return;
    }
    if (!os::send_all(fd.get(), buf.data(), size)) return;
  }
}

int run_tcp(const options& opt) {
  if (!opt.netns.empty())
    os::enter_netns(opt.netns);  // before any thread: every one is created there
  os::tcp_endpoint at = os::parse_tcp_endpoint(opt.listen);
  std::optional<os::tcp_endpoint> next;
  if (!opt.forward.empty()) next = os::parse_tcp_endpoint(opt.forward);
  server_lifetime lifetime(opt.parent_pid);
  if (lifetime.orphaned()) return 1;
  if (opt.cpu >= 0) os::pin_this_thread(opt.cpu);
  os::unique_fd listener = os::listen_tcp(at);
  std::string line = "listening " + os::local_endpoint(listener.get()).to_string() + "\n";
  server_lifetime::tell(opt.ready_fd, line);
  server_lifetime::signal_ready(opt.ready_fd);
  auto stopped = lifetime.accept_until_stopped(listener.get(), [&](os::unique_fd conn) {
    serve_in_thread(std::move(conn), [to = next ? &*next : nullptr](int fd) { serve_tcp(fd, to); });
  });
  if (!opt.run_dir.empty() && opt.remove_dir_when_orphaned &&
      (stopped == server_lifetime::stop::orphaned || lifetime.orphaned())) {
    ::rmdir(opt.run_dir.c_str());
  }
  ::_exit(0);
}

int run(const options& opt) {
  if (!opt.listen.empty()) return run_tcp(opt);
  server_lifetime lifetime(opt.parent_pid);
  if (lifetime.orphaned()) return 1;
  if (opt.cpu >= 0) os::pin_this_thread(opt.cpu);
  sockaddr_un addr{};
  std::string minimal = minimal_path(opt.socket_path);
  if (minimal.size() >= sizeof addr.sun_path)
    throw std::invalid_argument(fmt::format("socket path {} too long", minimal));

  ::unlink(opt.socket_path.c_str());
  ::unlink(minimal.c_str());
  os::unique_fd listener = os::listen_unix(opt.socket_path, 128, os::unix_kind::seqpacket);
  os::unique_fd minimal_listener = os::listen_unix(minimal, 128, os::unix_kind::seqpacket);
  // The minimal listener has its own accept thread; the lifetime's loop owns the main one.
  std::thread([fd = minimal_listener.get()] {
    for (;;) {
      os::unique_fd conn(::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC));
      if (conn) {
        serve_in_thread(std::move(conn), serve_minimal);
      } else if (errno != EINTR && errno != ECONNABORTED) {
        return;
      }
    }
  }).detach();
  server_lifetime::signal_ready(opt.ready_fd);
  auto stopped = lifetime.accept_until_stopped(
      listener.get(), [](os::unique_fd conn) { serve_in_thread(std::move(conn), serve); });
  ::unlink(opt.socket_path.c_str());
  ::unlink(minimal.c_str());
  if (opt.remove_dir_when_orphaned &&
      (stopped == server_lifetime::stop::orphaned || lifetime.orphaned())) {
    // The harness died without cleaning up: its private directory (empty now) would be left behind.
    ::rmdir(std::filesystem::path(opt.socket_path).parent_path().c_str());
  }
  ::_exit(0);  // connection threads are detached
}

}  // namespace

int main(int argc, char** argv) {
  options opt = parse(argc, argv);
  try {
    return run(opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cloak-echo-peer: error: %s\n", e.what());
    return 1;
  }
}
