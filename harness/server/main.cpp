// cloak-downstream: the downstream server D. It learns who calls only from an authentication
// package: the kernel's credentials (local), a Kerberos ticket (kerberos), an NTLM exchange
// (ntlm) or SPNEGO over either (negotiate). On a Unix socket (--socket) or, across hosts, on TCP
// (--listen, tcp_server.cpp), where only a GSSAPI package can say who calls.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cloak/backend.hpp>
#include <cloak/downstream.hpp>
#include <cloak/forwarder.hpp>
#include <cloak/identity.hpp>
#include <cloak/inject.hpp>
#include <cloak/kerberos.hpp>
#include <cloak/negotiate.hpp>
#include <cloak/ntlm.hpp>
#include <cloak/os.hpp>
#include <cloak/protocol.hpp>
#include <cloak/server_lifetime.hpp>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <thread>

#include "frame_loop.hpp"
#include "tcp_server.hpp"

namespace {

using namespace cloak;
using namespace cloak::protocol;

struct options {
  std::string socket_path;
  int ready_fd = -1;
  std::string clients = "61000:61000:16";
  int cpu = -1;
  std::size_t max_connections = 256;
  std::size_t max_contexts = default_max_contexts;
  int send_timeout_ms = 5000;
  long parent_pid = 0;
  bool remove_dir_when_orphaned = false;
  bool verbose = false;
  std::string realm_dir;  // kerberos: the realm cloak-realm made (empty: local only)
  std::string ntlm_dir;   // ntlm: the domain ntlm_domain made (empty: no ntlm)
  std::string rcache = "file2";
  // Across hosts (tcp_server.cpp): where to listen, the namespace to run in, the private directory
  // (replay cache, probe files), the acceptor's principal and keytab, and the next hop.
  std::string listen;
  std::string netns;
  std::string run_dir;
  std::string service;
  std::string keytab;
  std::string forward;
  std::string forward_service;
};

int run_tcp(const options& opt);

std::atomic<std::size_t> open_connections{0};

// Room for a burst of connections before the accept loop takes them (the kernel caps it at
// net.core.somaxconn, 4096 on Debian 12): beyond --max-connections each is accepted and told
// `busy`, never left to time out. A client that finds even this full waits in connect, bounded by
// its own timeout (docs/protocol.md, Transport).
constexpr int listen_backlog = 4096;

// Acts as the caller on this connection's thread: per-thread credentials, then open the probe file.
class kernel_checker final : public access_checker {
 public:
  kernel_checker(identity_backend& backend, int access_dir) : backend_(backend), dir_(access_dir) {}
  int open_as(const identity& caller, std::uint32_t target_uid) noexcept override {
    char name[32];
    std::snprintf(name, sizeof name, "owner-%u", target_uid);
    bool as_self = caller.same_principal(backend_.process_identity());
    if (!as_self) {
      token t{identity::of(caller.uid, caller.gid, {caller.gid}), impersonation_level::impersonate,
              0};
      if (backend_.impersonate(t) != switch_error::ok) return EPERM;
    }
    int fd = ::openat(dir_, name, O_RDONLY | O_CLOEXEC);
    int error = fd < 0 ? errno : 0;
    if (fd >= 0) ::close(fd);
    if (!as_self) backend_.revert();
    return error;
  }

 private:
  identity_backend& backend_;
  int dir_;
};

void serve(os::unique_fd fd, identity_backend& backend, int access_dir,
           const server_packages& packages, const options& opt) {
  kernel_checker checker(backend, access_dir);
  downstream_session session(checker, packages, session_limits{opt.max_contexts});
  os::receive_credentials(fd.get());
  os::set_send_timeout(fd.get(), std::chrono::milliseconds(opt.send_timeout_ms));
  if (opt.verbose) {
    ucred peer{};
    socklen_t len = sizeof peer;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &len) == 0) {
      std::fprintf(stderr, "cloak-downstream: connection from pid %d uid %u gid %u\n", peer.pid,
                   peer.uid, peer.gid);
    }
  }

  detail::serve_messages(fd.get(), session);
  if (backend.thread_has_token()) backend.revert();
  --open_connections;
}

void refuse_busy(os::unique_fd fd) {
  std::vector<std::byte> out;
  append_error_frame(out, 0, status::busy, true, "too many connections");
  os::set_send_timeout(fd.get(), std::chrono::milliseconds(200));
  os::send_all(fd.get(), out.data(), out.size());
}

// Creates <dir>/access (0711) with one probe file per client uid that only that uid may read.
os::unique_fd make_access_dir(const std::string& dir, const client_range& clients,
                              const identity& self) {
  std::string path = dir + "/access";
  std::error_code ignored;
  std::filesystem::remove_all(path, ignored);
  os::ensure_dir(path, 0711);
  os::change_mode(path, 0711);
  auto make = [&](std::uint32_t uid, std::uint32_t gid) {
    std::string file = fmt::format("{}/owner-{}", path, uid);
    os::unique_fd f = os::open_file(file, O_CREAT | O_EXCL | O_WRONLY, 0400);
    os::check([&] { return ::fchown(f.get(), uid, gid); }, "cannot chown {}", file);
    os::check([&] { return ::fchmod(f.get(), 0400); }, "cannot chmod {}", file);
  };
  make(self.uid, self.gid);
  for (std::uint32_t i = 0; i < clients.count; ++i)
    make(clients.first_uid + i, clients.first_gid + i);
  return os::open_file(path, O_PATH | O_DIRECTORY);
}

// A socket file left by a dead server is removed; a live one is an error.
void remove_stale_socket(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  if (!S_ISSOCK(st.st_mode)) {
    throw std::runtime_error(
        fmt::format("{} exists and is not a socket; refusing to replace it", path));
  }
  if (os::connect_unix(path, std::chrono::milliseconds(0), os::unix_kind::seqpacket)) {
    throw std::runtime_error(fmt::format("another server is already listening on {}", path));
  }
  ::unlink(path.c_str());
}

// The ntlm acceptor of the domain --ntlm names. GSS_MECH_CONFIG comes from the harness that started
// us (ntlm_domain::export_environment); the package refuses to start without it.
std::unique_ptr<server_package> ntlm_package(const options& opt) {
  if (opt.ntlm_dir.empty()) return nullptr;
  return make_ntlm_server(ntlm_info::load(opt.ntlm_dir));
}

// The negotiate acceptor: SPNEGO over whichever of krb5 (a realm) and NTLM (a domain) this server
// runs, one credential for both. None when it runs neither.
std::unique_ptr<server_package> negotiate_package(const options& opt, const realm_info* realm,
                                                  const kerberos_server_options& k) {
  std::optional<ntlm_info> ntlm;
  if (!opt.ntlm_dir.empty()) ntlm = ntlm_info::load(opt.ntlm_dir);
  if (!realm && !ntlm) return nullptr;
  return make_negotiate_server(realm, ntlm ? &*ntlm : nullptr, k);
}

int run(const options& opt) {
  if (!opt.listen.empty()) return run_tcp(opt);
  server_lifetime lifetime(opt.parent_pid);  // threads started from here on inherit its signal mask
  if (lifetime.orphaned()) return 1;         // the harness is already gone
  if (opt.cpu >= 0) os::pin_this_thread(opt.cpu);
  // CLOAK_INJECT_NS/CLOAK_INJECT_PATH, inherited from the bench: only `accept` spins here,
  // calibrated where this server runs. A bad value throws std::invalid_argument: exit 2, said to
  // the harness.
  process_injection(inject_role::downstream);
  client_range clients = parse_client_range(opt.clients);
  check_client_range(clients);
  auto backend = make_kernel_backend();
  // The packages every connection may use: local always, kerberos when a realm is given, ntlm
  // when a domain is, negotiate when either is.
  std::unique_ptr<server_package> local = make_local_server();
  std::unique_ptr<server_package> kerberos;
  server_packages packages;
  packages.add(*local);
  std::unique_ptr<server_package> ntlm = ntlm_package(opt);
  if (ntlm) packages.add(*ntlm);
  std::optional<realm_info> realm;
  kerberos_server_options k;
  if (!opt.realm_dir.empty()) {
    realm = realm_info::load(opt.realm_dir);
    if (opt.rcache == "file2") {
      k.rcache = fmt::format("file2:{}/rcache2",
                             std::filesystem::path(opt.socket_path).parent_path().string());
    } else if (opt.rcache != "none") {
      throw std::invalid_argument(
          fmt::format("--rcache must be file2 or none, got '{}'", opt.rcache));
    }
    kerberos = make_kerberos_server(*realm, k);
    packages.add(*kerberos);
  }
  std::unique_ptr<server_package> negotiate = negotiate_package(opt, realm ? &*realm : nullptr, k);
  if (negotiate) packages.add(*negotiate);

  sockaddr_un addr{};
  if (opt.socket_path.size() >= sizeof addr.sun_path) {
    throw std::invalid_argument(
        fmt::format("socket path longer than {} bytes", sizeof addr.sun_path - 1));
  }
  std::string dir = std::filesystem::path(opt.socket_path).parent_path().string();
  if (dir.empty()) dir = ".";
  struct stat dst = os::stat_path(dir);
  if (!os::is_private_dir(dst)) {
    throw std::runtime_error(
        fmt::format("{} is mode {:o}, owner uid {}: the socket's directory must be private (mode "
                    "0700, owned by uid {})",
                    dir, dst.st_mode & 0777, dst.st_uid, ::geteuid()));
  }
  // Before anything in the directory changes: a live server there keeps its socket and probe files.
  remove_stale_socket(opt.socket_path);
  os::unique_fd access_dir = make_access_dir(dir, clients, backend->process_identity());

  // Nobody can connect before readiness is signalled below, and every accepted connection turns
  // SO_PASSCRED on before its first read.
  os::unique_fd listener =
      os::listen_unix(opt.socket_path, listen_backlog, os::unix_kind::seqpacket);
  os::receive_credentials(listener.get());
  os::change_mode(opt.socket_path, 0600);

  server_lifetime::signal_ready(opt.ready_fd);
  auto stopped = lifetime.accept_until_stopped(listener.get(), [&](os::unique_fd conn) {
    if (open_connections.load() >= opt.max_connections) {
      refuse_busy(std::move(conn));
      return;
    }
    ++open_connections;
    try {
      std::thread(serve, std::move(conn), std::ref(*backend), access_dir.get(), std::cref(packages),
                  std::cref(opt))
          .detach();
    } catch (const std::system_error&
                 e) {  // no thread for it: the connection is closed, the server lives on
      --open_connections;
      std::fprintf(stderr, "cloak-downstream: cannot serve a connection: %s\n", e.what());
    }
  });
  // Nothing of ours outlives us: the socket and the probe files (a restart makes them again), and,
  // when the harness died without stopping us, the private directory it made for us.
  ::unlink(opt.socket_path.c_str());
  std::error_code ignored;
  std::filesystem::remove_all(dir + "/access", ignored);
  ::unlink((dir + "/rcache2").c_str());
  if (opt.remove_dir_when_orphaned &&
      (stopped == server_lifetime::stop::orphaned || lifetime.orphaned())) {
    ::rmdir(dir.c_str());  // only if empty: never anything we did not make
  }
  std::fflush(stderr);
  ::_exit(0);  // connection threads are detached; the process ends with them
}

// The private directory of a TCP server: the one given (mode 0700, ours), or a fresh one removed at
// exit.
std::string tcp_run_dir(const options& opt, bool& made) {
  if (!opt.run_dir.empty()) {
    if (!os::is_private_dir(os::stat_path(opt.run_dir))) {
      throw std::runtime_error(
          fmt::format("--run-dir {} must be a directory owned by uid {} with mode 0700",
                      opt.run_dir, ::geteuid()));
    }
    return opt.run_dir;
  }
  std::string dir = os::make_temp_dir("cloak-downstream");
  made = true;
  return dir;
}

int run_tcp(const options& opt) {
  // The whole process moves before any thread exists: every connection thread is created there.
  if (!opt.netns.empty()) os::enter_netns(opt.netns);
  os::tcp_endpoint at = os::parse_tcp_endpoint(opt.listen);
  server_lifetime lifetime(opt.parent_pid);
  if (lifetime.orphaned()) return 1;
  if (opt.cpu >= 0) os::pin_this_thread(opt.cpu);
  process_injection(inject_role::downstream);  // as run() does
  client_range clients = parse_client_range(opt.clients);
  check_client_range(clients);
  auto backend = make_kernel_backend();
  bool made_dir = false;
  std::string dir = tcp_run_dir(opt, made_dir);
  std::unique_ptr<server_package> local =
      make_local_server();  // refuses: no kernel credentials on TCP
  std::unique_ptr<server_package> kerberos;
  std::unique_ptr<detail::forwarding_host> forwarding;
  server_packages packages;
  packages.add(*local);
  std::unique_ptr<server_package> ntlm = ntlm_package(opt);
  if (ntlm) packages.add(*ntlm);
  std::unique_ptr<server_package> negotiate;
  if (!opt.realm_dir.empty()) {
    realm_info realm = realm_info::load(opt.realm_dir);
    kerberos_server_options k;
    k.service = opt.service;
    k.keytab = opt.keytab;
    k.rcache = opt.rcache == "file2" ? fmt::format("file2:{}/rcache2", dir) : "none";
    kerberos = make_kerberos_server(realm, k);
    packages.add(*kerberos);
    negotiate = negotiate_package(opt, &realm, k);
    if (!opt.forward.empty()) {
      detail::forwarding_config f;
      f.realm = realm;
      f.next = os::parse_tcp_endpoint(opt.forward);
      f.next_service = opt.forward_service;
      f.own_principal = opt.service.empty() ? realm.service : opt.service;
      f.own_keytab = opt.keytab.empty() ? realm.service_keytab : opt.keytab;
      if (f.next_service.empty())
        throw std::invalid_argument("--forward needs --forward-service (the next hop's principal)");
      forwarding = std::make_unique<detail::forwarding_host>(std::move(f));
    }
  } else if (!opt.forward.empty()) {
    throw std::invalid_argument(
        "--forward needs --realm: the next hop is called with the kerberos package");
  } else {
    negotiate = negotiate_package(opt, nullptr, {});
  }
  if (negotiate) packages.add(*negotiate);
  os::unique_fd access_dir = make_access_dir(dir, clients, backend->process_identity());
  os::unique_fd listener = os::listen_tcp(at);
  std::string where = os::local_endpoint(listener.get()).to_string();
  if (opt.ready_fd >= 0) {
    server_lifetime::tell(opt.ready_fd, "listening " + where + "\n");
  } else {
    std::printf("cloak-downstream: listening on %s\n", where.c_str());
    std::fflush(stdout);
  }
  server_lifetime::signal_ready(opt.ready_fd);
  detail::forwarder_factory forwarders;
  if (forwarding) forwarders = [&] { return forwarding->new_connection(); };
  kernel_checker checker(*backend, access_dir.get());
  detail::tcp_server_config config{opt.max_connections, opt.max_contexts, opt.send_timeout_ms,
                                   opt.verbose};
  auto stopped = detail::serve_tcp(lifetime, listener.get(), checker, packages, forwarders, config);
  std::error_code ignored;
  std::filesystem::remove_all(dir + "/access", ignored);
  ::unlink((dir + "/rcache2").c_str());
  if (made_dir || (opt.remove_dir_when_orphaned &&
                   (stopped == server_lifetime::stop::orphaned || lifetime.orphaned()))) {
    ::rmdir(dir.c_str());  // only if empty: never anything we did not make
  }
  std::fflush(stderr);
  ::_exit(0);  // connection threads are detached; the process ends with them
}

// The harness that waits for readiness learns why we did not get there ("error MESSAGE" on one
// line).
void tell_harness(int ready_fd, std::string message) noexcept {
  if (ready_fd < 0) return;
  for (char& c : message) {
    if (c == '\n') c = ' ';
  }
  server_lifetime::tell(ready_fd, "error " + message + "\n");
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  CLI::App app{
      "cloak-downstream: the downstream server of cloakbench (identity from the kernel only)"};
  auto* socket = app.add_option("--socket", opt.socket_path,
                                "Unix socket path (its directory must be mode 0700)");
  auto* listen =
      app.add_option("--listen", opt.listen,
                     "listen on TCP instead, tcp:ADDR:PORT (port 0: any; docs/remote.md); only the "
                     "kerberos package works there");
  socket->excludes(listen);
  app.add_option("--netns", opt.netns,
                 "with --listen: run in this named network namespace (ip netns)");
  app.add_option("--run-dir", opt.run_dir,
                 "with --listen: the private directory (mode 0700) for the replay cache and "
                 "probe files (default: a fresh one, removed at exit)");
  app.add_option("--service", opt.service,
                 "with --realm: the acceptor's principal (default: the realm's service)");
  app.add_option("--keytab", opt.keytab,
                 "with --realm: the acceptor's keytab (default: the realm's service keytab)");
  app.add_option("--forward", opt.forward,
                 "with --listen and --realm: the next hop's cloak-downstream, tcp:ADDR:PORT "
                 "(forward_call calls it through a proxy of this server's own)");
  app.add_option("--forward-service", opt.forward_service, "the next hop's principal");
  app.add_option("--ready-fd", opt.ready_fd,
                 "write \"ready\\n\" to this inherited descriptor, then close it");
  app.add_option("--clients", opt.clients,
                 "fake client range UID:GID:COUNT or FIRST:COUNT (probe files are made for these)")
      ->check([](const std::string& text) -> std::string {
        try {
          check_client_range(parse_client_range(text));
        } catch (const std::invalid_argument& e) {
          return e.what();
        }
        return {};
      });
  app.add_option("--cpu", opt.cpu, "pin the server to this CPU")->check(CLI::Range(0, 4095));
  app.add_option("--max-connections", opt.max_connections, "connections served at once")
      ->check(CLI::Range(1, 65536));
  app.add_option("--max-contexts", opt.max_contexts, "security contexts per connection")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--send-timeout-ms", opt.send_timeout_ms,
                 "drop a client that does not read its replies for this long")
      ->check(CLI::Range(1, 600000));
  app.add_option("--parent-pid", opt.parent_pid, "exit when this process (the harness) exits");
  app.add_flag("--remove-dir-when-orphaned", opt.remove_dir_when_orphaned,
               "when the harness exits without stopping us, also remove the socket's (then empty) "
               "directory");
  app.add_flag("--verbose", opt.verbose, "log connections");
  app.add_option("--realm", opt.realm_dir,
                 "run the kerberos package with the realm cloak-realm made in this directory");
  app.add_option("--ntlm", opt.ntlm_dir,
                 "run the ntlm package with the domain made in this directory (GSS_MECH_CONFIG "
                 "must name its mechanism file)");
  app.add_option(
         "--rcache", opt.rcache,
         "the kerberos acceptor's replay cache: file2 (in the socket's or run directory) or none")
      ->check(CLI::IsMember({"file2", "none"}));
  try {
    app.parse(argc, argv);
    // One of the two: the Unix socket, or TCP across hosts (--listen, said in the usage below).
    if (opt.socket_path.empty() && opt.listen.empty()) throw CLI::RequiredError("--socket");
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "cloak-downstream: error: " << e.what() << "\n\n" << app.help();
    return 2;
  }
  try {
    return run(opt);
  } catch (const std::invalid_argument& e) {  // a bad command line that parsing could not see
    tell_harness(opt.ready_fd, e.what());
    std::cerr << "cloak-downstream: error: " << e.what() << "\n\n" << app.help();
    return 2;
  } catch (const std::exception& e) {
    tell_harness(opt.ready_fd, e.what());
    std::cerr << "cloak-downstream: error: " << e.what() << "\n";
    return 1;
  }
}
