// cloak_echo_peer: the trivial peer of the raw socket baselines. It echoes bytes and does nothing
// else, so a round trip to it is the floor a cloak-downstream call is read against.
//
// It takes cloak-downstream's command line (so the harness's downstream_process can start, watch
// and stop it); of those options it uses --socket, --ready-fd, --cpu, --parent-pid and
// --remove-dir-when-orphaned, and across hosts --listen tcp:ADDR:PORT, --netns and --forward (a
// relay: each message goes on to that echo and its answer comes back: the two-hop raw round trip);
// it ignores the rest.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cloak/net.hpp>
#include <cloak/os.hpp>
#include <cloak/server_lifetime.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
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

[[noreturn]] void usage_error(const std::string& why) {
  std::fprintf(stderr,
               "cloak_echo_peer: error: %s\n\n"
               "usage: cloak_echo_peer --socket PATH | --listen tcp:ADDR:PORT [--netns NAME] "
               "[--forward tcp:ADDR:PORT]\n"
               "                       [--ready-fd N] [--cpu N] [--parent-pid PID]\n"
               "       (cloak-downstream's other options are accepted and ignored)\n",
               why.c_str());
  std::exit(2);
}

long number(std::string_view option, const char* text) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < -1) {
    usage_error(std::string(option) + " needs a number, got '" + text + "'");
  }
  return v;
}

options parse(int argc, char** argv) {
  options opt;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.size() < 3 || arg.substr(0, 2) != "--")
      usage_error("unexpected argument '" + std::string(arg) + "'");
    std::string value_text;
    if (auto eq = arg.find('='); eq != std::string_view::npos) {
      value_text = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (i + 1 < argc && std::string_view(argv[i + 1]).substr(0, 2) != "--") {
      value_text = argv[++i];
    } else {  // a flag
      if (arg == "--remove-dir-when-orphaned") opt.remove_dir_when_orphaned = true;
      continue;
    }
    const char* value = value_text.c_str();
    if (arg == "--socket") {
      opt.socket_path = value;
    } else if (arg == "--ready-fd") {
      opt.ready_fd = static_cast<int>(number(arg, value));
    } else if (arg == "--cpu") {
      opt.cpu = static_cast<int>(number(arg, value));
    } else if (arg == "--parent-pid") {
      opt.parent_pid = number(arg, value);
    } else if (arg == "--listen") {
      opt.listen = value;
    } else if (arg == "--netns") {
      opt.netns = value;
    } else if (arg == "--forward") {
      opt.forward = value;
    } else if (arg == "--run-dir") {
      opt.run_dir = value;
    }  // --clients, --max-connections, --send-timeout-ms, ...: not needed by an echo
  }
  if (opt.socket_path.empty() && opt.listen.empty())
    usage_error("--socket or --listen is required");
  return opt;
}

// Echoes whatever arrives, received as cloak-downstream receives it: SO_PEERCRED read at accept and
// SO_PASSCRED on, so the kernel attaches the sender's credentials (SCM_CREDENTIALS) to every
// message. That is the transport DESIGN §2 prescribes; what the echo does not do is everything
// cloakbench adds on top (framing, sessions, contexts, the proxy).
void serve(int raw_fd) {
  os::unique_fd fd(raw_fd);
  ucred peer{};
  socklen_t len = sizeof peer;
  ::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &len);
  int on = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
  std::vector<char> buf(128 * 1024);
  for (;;) {
    ucred cred{};
    bool has_creds = false;
    ssize_t n = os::recv_with_credentials(fd.get(), buf.data(), buf.size(), cred, has_creds);
    if (n <= 0) return;
    if (!os::send_all(fd.get(), buf.data(), static_cast<std::size_t>(n))) return;
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
  if (opt.ready_fd >= 0)
    os::retry_eintr([&] { return ::write(opt.ready_fd, line.data(), line.size()); });
  server_lifetime::signal_ready(opt.ready_fd);
  auto stopped = lifetime.accept_until_stopped(listener.get(), [&](os::unique_fd conn) {
    try {
      std::thread(serve_tcp, conn.get(), next ? &*next : nullptr).detach();
      conn.release();
    } catch (const std::system_error&) {
    }
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
  if (opt.socket_path.size() >= sizeof addr.sun_path) usage_error("socket path too long");

  ::unlink(opt.socket_path.c_str());
  os::unique_fd listener = os::listen_unix(opt.socket_path);
  server_lifetime::signal_ready(opt.ready_fd);
  auto stopped = lifetime.accept_until_stopped(listener.get(), [](os::unique_fd conn) {
    try {
      std::thread(serve, conn.get()).detach();
      conn.release();  // serve owns it now
    } catch (const std::system_error&) {
    }
  });
  ::unlink(opt.socket_path.c_str());
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
    std::fprintf(stderr, "cloak_echo_peer: error: %s\n", e.what());
    return 1;
  }
}
