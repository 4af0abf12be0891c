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
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <krb5/krb5.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <chrono>
#include <cloak/identity.hpp>
#include <cloak/net.hpp>
#include <cloak/os.hpp>
#include <cloak/realm.hpp>
#include <cloak/server_lifetime.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace {

using namespace cloak;
using clock_type = std::chrono::steady_clock;

struct options {
  int ready_fd = -1;
  long parent_pid = 0;
  std::string name = "CLOAKBENCH.TEST";
  std::string clients = "61000:61000:16";
  std::string process = "0:0";
  int clockskew = 300;
  int ready_timeout_ms = 20000;
  std::string listen = "127.0.0.1";  // krb5kdc's address, as krb5.conf names it
  std::string netns;                 // krb5kdc's network namespace (empty: ours)
  std::string hosts;                 // "down1,down2": a service principal and keytab per host
};

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// While it lives, the (single-threaded) supervisor is in the KDC's network namespace: what it binds
// and what it forks meanwhile belong there.
struct in_kdc_namespace {
  explicit in_kdc_namespace(const options& opt) {
    if (!opt.netns.empty()) scope.emplace(opt.netns);
  }
  std::optional<os::netns_scope> scope;
};

void write_all(int fd, const std::string& text) noexcept {
  std::size_t done = 0;
  while (fd >= 0 && done < text.size()) {
    ssize_t n =
        os::retry_eintr([&] { return ::write(fd, text.data() + done, text.size() - done); });
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

identity parse_identity(const std::string& text) {
  // "UID:GID" or "UID:GID:G1,G2,..."
  std::uint32_t uid = 0, gid = 0;
  std::istringstream in(text);
  std::string field;
  std::vector<std::string> fields;
  while (std::getline(in, field, ':')) fields.push_back(field);
  if (fields.size() < 2 || fields.size() > 3)
    throw std::invalid_argument("--process must be UID:GID[:G1,G2...]");
  auto number = [](const std::string& s) {
    std::uint32_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size())
      throw std::invalid_argument("not a number: " + s);
    return v;
  };
  uid = number(fields[0]);
  gid = number(fields[1]);
  identity who = identity::of(uid, gid);
  if (fields.size() == 3) {
    std::istringstream groups(fields[2]);
    while (std::getline(groups, field, ',') && who.group_count < max_groups) {
      who.groups[who.group_count++] = number(field);
    }
  }
  return who;
}

std::string random_password() {
  unsigned char bytes[24];
  if (::getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes)) {
    os::throw_errno(errno, "cannot read random bytes for the master key");
  }
  std::string hex;
  for (unsigned char b : bytes) hex += fmt::format("{:02x}", b);
  return hex;
}

std::string find_program(const std::string& name) {
  std::string path = std::getenv("PATH") ? std::getenv("PATH") : "";
  path += ":/usr/sbin:/sbin:/usr/bin:/bin";
  std::istringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  throw std::runtime_error(
      fmt::format("cannot find {} (Debian packages krb5-kdc and krb5-admin-server provide krb5kdc, "
                  "kdb5_util and kadmin.local)",
                  name));
}

void write_file(const std::string& path, const std::string& text, mode_t mode) {
  std::string tmp = path + ".tmp";
  os::unique_fd fd(
      os::check([&] { return ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode); },
                "cannot create {}", tmp));
  ::fchmod(fd.get(), mode);  // not subject to the umask
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = os::check([&] { return ::write(fd.get(), text.data() + done, text.size() - done); },
                          "cannot write {}", tmp);
    done += static_cast<std::size_t>(n);
  }
  fd.reset();
  os::check([&] { return ::rename(tmp.c_str(), path.c_str()); }, "cannot rename {}", tmp);
}

std::string read_file(const std::string& path, std::size_t from = 0) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(static_cast<std::streamoff>(from));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::size_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::size_t>(st.st_size) : 0;
}

// A port free on `address` for both UDP and TCP right now; krb5kdc may still lose it to a race,
// which start_kdc reports so the caller can pick another.
std::uint16_t pick_port(const std::string& address) {
  in_addr listen{};
  if (::inet_pton(AF_INET, address.c_str(), &listen) != 1) {
    throw std::invalid_argument(fmt::format("--listen {}: not a dotted IPv4 address", address));
  }
  for (int attempt = 0; attempt < 50; ++attempt) {
    os::unique_fd tcp(os::check([] { return ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); },
                                "cannot create a TCP socket"));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr = listen;
    addr.sin_port = 0;
    os::check([&] { return ::bind(tcp.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr); },
              "cannot bind a TCP socket on {}", address);
    socklen_t len = sizeof addr;
    os::check([&] { return ::getsockname(tcp.get(), reinterpret_cast<sockaddr*>(&addr), &len); },
              "getsockname");
    os::unique_fd udp(os::check([] { return ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0); },
                                "cannot create a UDP socket"));
    if (::bind(udp.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0)
      return ntohs(addr.sin_port);
  }
  throw std::runtime_error(
      fmt::format("cannot find a port free for both UDP and TCP on {}", address));
}

// Forks and execs `argv` with the supervisor's environment (KRB5_CONFIG and KRB5_KDC_PROFILE set).
// The child gets the signals server_lifetime blocked back, and dies with the supervisor.
pid_t spawn(const std::vector<std::string>& argv, int stdin_fd, int out_fd) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) os::throw_errno(errno, fmt::format("cannot fork for {}", argv[0]));
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the supervisor is single threaded: this is its lifetime
    if (::getppid() != parent) ::_exit(127);
    if (stdin_fd >= 0) ::dup2(stdin_fd, 0);
    if (out_fd >= 0) {
      ::dup2(out_fd, 1);
      ::dup2(out_fd, 2);
    }
    ::execve(args[0], args.data(), environ);
    std::fprintf(stderr, "cloak-realm: cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  if (os::retry_eintr([&] { return ::waitpid(pid, &status, 0); }) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Runs a setup tool to completion with `input` on its stdin and its output in `log`.
void run_tool(const std::vector<std::string>& argv, const std::string& input,
              const std::string& log) {
  os::unique_fd out(os::check(
      [&] { return ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600); },
      "cannot create {}", log));
  int fds[2];
  os::check([&] { return ::pipe2(fds, O_CLOEXEC); }, "cannot create a pipe for {}", argv[0]);
  os::unique_fd in_read(fds[0]), in_write(fds[1]);
  pid_t pid = spawn(argv, in_read.get(), out.get());
  in_read.reset();
  // The tool's output goes to a file, so it never blocks on us while we write its input.
  write_all(in_write.get(), input);
  in_write.reset();
  int rc = wait_exit(pid);
  if (rc != 0) {
    throw std::runtime_error(fmt::format("{} failed (exit {}): {}", argv[0], rc, read_file(log)));
  }
}

std::set<std::string> keytab_principals(const std::string& path) {
  std::set<std::string> out;
  krb5_context ctx = nullptr;
  if (krb5_init_context(&ctx) != 0) return out;
  krb5_keytab kt = nullptr;
  std::string name = "FILE:" + path;
  if (krb5_kt_resolve(ctx, name.c_str(), &kt) == 0) {
    krb5_kt_cursor cursor;
    if (krb5_kt_start_seq_get(ctx, kt, &cursor) == 0) {
      krb5_keytab_entry entry;
      while (krb5_kt_next_entry(ctx, kt, &entry, &cursor) == 0) {
        char* text = nullptr;
        if (krb5_unparse_name(ctx, entry.principal, &text) == 0) {
          out.insert(text);
          krb5_free_unparsed_name(ctx, text);
        }
        krb5_free_keytab_entry_contents(ctx, &entry);
      }
      krb5_kt_end_seq_get(ctx, kt, &cursor);
    }
    krb5_kt_close(ctx, kt);
  }
  krb5_free_context(ctx);
  return out;
}

class realm_builder {
 public:
  realm_builder(const options& opt, std::string dir) : opt_(opt), dir_(std::move(dir)) {
    clients_ = parse_client_range(opt.clients);
    process_ = parse_identity(opt.process);
    info_.dir = dir_;
    info_.name = opt.name;
    info_.krb5_conf = dir_ + "/krb5.conf";
    info_.kdc_conf = dir_ + "/kdc.conf";
    info_.client_keytab = dir_ + "/clients.keytab";
    info_.service_keytab = dir_ + "/service.keytab";
    info_.idmap = dir_ + "/idmap";
    info_.service = "cloak/downstream@" + opt.name;
    info_.kdc_host = opt.listen;
    info_.netns = opt.netns;
    hosts_ = split_list(opt.hosts);
    // Host identities follow the clients: P's principal first (how another host knows P), then each
    // downstream host. They must be as unowned as the clients' uids.
    client_range with_hosts{clients_.first_uid, clients_.first_gid,
                            clients_.count + static_cast<std::uint32_t>(hosts_.size()) + 1};
    if (!hosts_.empty()) check_client_range(with_hosts);
    info_.middle = hosts_.empty() ? process_ : with_hosts.client(clients_.count);
    for (std::size_t i = 0; i < hosts_.size(); ++i) {
      const std::string& h = hosts_[i];
      if (h.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos) {
        throw std::invalid_argument(
            fmt::format("--hosts: '{}' is not a host name (a-z, 0-9, -)", h));
      }
      info_.hosts.push_back(realm_host{
          h, fmt::format("cloak/{}@{}", h, opt.name), fmt::format("{}/{}.keytab", dir_, h),
          with_hosts.client(clients_.count + 1 + static_cast<std::uint32_t>(i))});
    }
    info_.kdc_log = dir_ + "/kdc.log";
    info_.control_socket = dir_ + "/control.sock";
    info_.supervisor_pid = ::getpid();
    krb5kdc_ = find_program("krb5kdc");
  }

  realm_info& info() { return info_; }
  pid_t kdc() const { return kdc_; }

  void create(clock_type::time_point deadline) {
    // The directory is the realm's only place: a thread switched to a client must still read
    // krb5.conf (0755 dir, 0644 file); keytabs and the database stay root's (0600).
    os::check([&] { return ::chmod(dir_.c_str(), 0755); }, "cannot chmod {}", dir_);
    info_.kdc_port = pick_kdc_port();
    write_configs();
    ::setenv("KRB5_CONFIG", info_.krb5_conf.c_str(), 1);
    ::setenv("KRB5_KDC_PROFILE", info_.kdc_conf.c_str(), 1);
    for (const char* v :
         {"KRB5CCNAME", "KRB5_KTNAME", "KRB5_CLIENT_KTNAME", "KRB5RCACHENAME", "KRB5RCACHETYPE"}) {
      ::unsetenv(v);
    }
    std::string setup_log = dir_ + "/setup.log";
    run_tool({find_program("kdb5_util"), "create", "-s", "-r", opt_.name, "-P", random_password()},
             "", setup_log);

    // kadmin.local takes one -q per run; its stdin takes any number of commands, so one run adds
    // every principal. It exits 0 even when a command fails: the keytabs are checked below.
    std::string middle = principal_for(process_.uid, process_, opt_.name);
    std::vector<std::string> client_names{middle};
    for (std::uint32_t i = 0; i < clients_.count; ++i) {
      client_names.push_back(principal_for(clients_.client(i).uid, process_, opt_.name));
    }
    std::string commands;
    for (const auto& p : client_names) commands += "addprinc -randkey " + p + "\n";
    commands += "addprinc -randkey " + info_.service + "\n";
    for (const auto& h : info_.hosts) commands += "addprinc -randkey " + h.principal + "\n";
    for (std::size_t i = 0; i < client_names.size();
         i += 32) {  // short lines for kadmin's line buffer
      commands += "ktadd -k " + info_.client_keytab + " -norandkey";
      for (std::size_t j = i; j < client_names.size() && j < i + 32; ++j)
        commands += " " + client_names[j];
      commands += "\n";
    }
    commands += "ktadd -k " + info_.service_keytab + " -norandkey " + info_.service + "\n";
    for (const auto& h : info_.hosts)
      commands += "ktadd -k " + h.keytab + " -norandkey " + h.principal + "\n";
    run_tool({find_program("kadmin.local"), "-r", opt_.name}, commands, setup_log);
    auto have_clients = keytab_principals(info_.client_keytab);
    for (const auto& p : client_names) {
      if (!have_clients.count(p)) {
        throw std::runtime_error(fmt::format("kadmin.local did not put {} into {}: {}", p,
                                             info_.client_keytab, read_file(setup_log)));
      }
    }
    if (!keytab_principals(info_.service_keytab).count(info_.service)) {
      throw std::runtime_error(fmt::format("kadmin.local did not put {} into {}: {}", info_.service,
                                           info_.service_keytab, read_file(setup_log)));
    }
    for (const auto& h : info_.hosts) {
      if (!keytab_principals(h.keytab).count(h.principal)) {
        throw std::runtime_error(fmt::format("kadmin.local did not put {} into {}: {}", h.principal,
                                             h.keytab, read_file(setup_log)));
      }
      ::chmod(h.keytab.c_str(), 0600);
    }
    ::chmod(info_.client_keytab.c_str(), 0600);
    ::chmod(info_.service_keytab.c_str(), 0600);
    write_idmap(middle);

    // A port taken between pick_port and krb5kdc's bind: pick another and rewrite the configs.
    for (int attempt = 0;; ++attempt) {
      bool port_taken = false;
      std::string error;
      if (start_kdc(deadline, port_taken, error)) break;
      if (!port_taken || attempt == 4) throw std::runtime_error(error);
      info_.kdc_port = pick_kdc_port();
      write_configs();
    }
  }

  // The KDC: a child that dies with the supervisor. Ready when its log says "commencing
  // operation" (after it bound and listens), learned through inotify on the directory.
  bool start_kdc(clock_type::time_point deadline, bool& port_taken, std::string& error) {
    std::string err_path = dir_ + "/kdc.stderr";
    std::size_t log_from = file_size(info_.kdc_log);
    std::size_t err_from = file_size(err_path);
    os::unique_fd notify(os::check([] { return ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK); },
                                   "cannot create inotify"));
    os::check(
        [&] {
          return ::inotify_add_watch(notify.get(), dir_.c_str(),
                                     IN_MODIFY | IN_CREATE | IN_CLOSE_WRITE);
        },
        "cannot watch {}", dir_);
    os::unique_fd err(os::check(
        [&] { return ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644); },
        "cannot create {}", err_path));
    os::unique_fd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    pid_t pid = -1;
    {
      in_kdc_namespace scope(opt_);  // the fork inherits the namespace; we leave it again
      pid = spawn({krb5kdc_, "-n", "-r", opt_.name}, null.get(), err.get());
    }
    os::unique_fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    auto failure_text = [&] {
      std::string text = read_file(err_path, err_from);
      std::istringstream log(read_file(info_.kdc_log, log_from));
      for (std::string line; std::getline(log, line);) {
        if (line.find("spake") != std::string::npos)
          continue;  // harmless: no SPAKE groups configured
        if (line.find("(Error)") != std::string::npos || line.find("Cannot") != std::string::npos)
          text += line + "\n";
      }
      return text;
    };
    for (;;) {
      if (read_file(info_.kdc_log, log_from).find("commencing operation") != std::string::npos) {
        kdc_ = pid;
        return true;
      }
      auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
      if (left.count() <= 0) {
        ::kill(pid, SIGKILL);
        wait_exit(pid);
        error = fmt::format("krb5kdc did not start within the ready timeout: {}", failure_text());
        return false;
      }
      pollfd fds[2] = {{notify.get(), POLLIN, 0}, {pidfd.get(), POLLIN, 0}};
      os::retry_eintr([&] { return ::poll(fds, 2, static_cast<int>(left.count())); });
      if (fds[0].revents & POLLIN) {
        char events[4096];
        // Only a wake-up: the loop reads the log itself.
        while (::read(notify.get(), events, sizeof events) > 0) continue;
      }
      if (fds[1].revents & POLLIN) {
        if (read_file(info_.kdc_log, log_from).find("commencing operation") != std::string::npos)
          continue;
        int rc = wait_exit(pid);
        std::string text = failure_text();
        port_taken = text.find("Address already in use") != std::string::npos;
        error = fmt::format("krb5kdc exited with status {} before it was ready: {}", rc, text);
        return false;
      }
    }
  }

  void stop_kdc() noexcept {
    if (kdc_ <= 0) return;
    os::unique_fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, kdc_, 0)));
    ::kill(kdc_, SIGTERM);
    ::kill(kdc_, SIGCONT);  // a stopped KDC acts on SIGTERM only once it runs again
    pollfd p{pidfd.get(), POLLIN, 0};
    if (!pidfd || os::retry_eintr([&] { return ::poll(&p, 1, 2000); }) <= 0) ::kill(kdc_, SIGKILL);
    wait_exit(kdc_);
    kdc_ = -1;
  }

  std::string restart_kdc(int ready_timeout_ms) {
    if (kdc_ > 0) {
      ::kill(kdc_, SIGKILL);
      wait_exit(kdc_);
      kdc_ = -1;
    }
    bool port_taken = false;
    std::string error;
    if (!start_kdc(clock_type::now() + std::chrono::milliseconds(ready_timeout_ms), port_taken,
                   error)) {
      return "error " + error;
    }
    write_json();
    return fmt::format("kdc {}", kdc_);
  }

  void write_json() {
    nlohmann::json j{{"dir", info_.dir},
                     {"name", info_.name},
                     {"kdc_host", info_.kdc_host},
                     {"kdc_port", info_.kdc_port},
                     {"krb5_conf", info_.krb5_conf},
                     {"kdc_conf", info_.kdc_conf},
                     {"client_keytab", info_.client_keytab},
                     {"service_keytab", info_.service_keytab},
                     {"idmap", info_.idmap},
                     {"service", info_.service},
                     {"kdc_log", info_.kdc_log},
                     {"control_socket", info_.control_socket},
                     {"kdc_pid", static_cast<long>(kdc_)},
                     {"supervisor_pid", info_.supervisor_pid},
                     {"setup_seconds", info_.setup_seconds},
                     {"netns", info_.netns},
                     {"middle",
                      {{"principal", principal_for(process_.uid, process_, opt_.name)},
                       {"uid", info_.middle.uid},
                       {"gid", info_.middle.gid}}},
                     {"hosts", hosts_json()},
                     {"clients",
                      {{"first_uid", clients_.first_uid},
                       {"first_gid", clients_.first_gid},
                       {"count", clients_.count}}}};
    write_file(dir_ + "/realm.json", j.dump(2) + "\n", 0644);
  }

 private:
  std::uint16_t pick_kdc_port() {
    in_kdc_namespace scope(opt_);
    return pick_port(opt_.listen);
  }

  nlohmann::json hosts_json() const {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& h : info_.hosts) {
      out.push_back({{"name", h.name},
                     {"principal", h.principal},
                     {"keytab", h.keytab},
                     {"uid", h.who.uid},
                     {"gid", h.who.gid}});
    }
    return out;
  }

  void write_configs() {
    std::string port = std::to_string(info_.kdc_port);
    // No DNS anywhere; TCP to the KDC (udp_preference_limit = 1), so a killed KDC fails at once
    // with ECONNREFUSED. MIT 1.20 has no client timeout knob (request_timeout is new in 1.22): a
    // stopped KDC holds a TCP request for about 10 s per pass; the kerberos package bounds its own
    // requests.
    std::string krb5 = fmt::format(
        "[libdefaults]\n"
        " default_realm = {0}\n"
        " dns_lookup_kdc = false\n"
        " dns_lookup_realm = false\n"
        " dns_canonicalize_hostname = false\n"
        " rdns = false\n"
        " udp_preference_limit = 1\n"
        " clockskew = {2}\n"
        " forwardable = true\n"
        " ticket_lifetime = 1d\n"
        " permitted_enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96\n"
        "\n[realms]\n"
        " {0} = {{\n"
        "  kdc = {3}:{1}\n"
        " }}\n",
        opt_.name, port, opt_.clockskew, opt_.listen);
    std::string kdc = fmt::format(
        "[kdcdefaults]\n"
        " kdc_listen = {4}:{1}\n"
        " kdc_tcp_listen = {4}:{1}\n"
        "\n[realms]\n"
        " {0} = {{\n"
        "  database_name = {2}/principal\n"
        "  key_stash_file = {2}/stash\n"
        "  acl_file = {2}/kadm5.acl\n"
        "  max_life = 1d\n"
        "  master_key_type = aes256-cts-hmac-sha1-96\n"
        "  supported_enctypes = aes256-cts-hmac-sha1-96:normal\n"
        " }}\n"
        "\n[logging]\n"
        " kdc = FILE:{3}\n"
        " admin_server = FILE:{2}/kadmin.log\n"
        " default = FILE:{2}/kadmin.log\n",
        opt_.name, port, dir_, info_.kdc_log, opt_.listen);
    write_file(info_.krb5_conf, krb5, 0644);
    write_file(info_.kdc_conf, kdc, 0644);
  }

  void write_idmap(const std::string& middle) {
    auto line = [](const std::string& principal, const identity& who) {
      std::string s = fmt::format("{} {} {}", principal, who.uid, who.gid);
      for (std::uint32_t i = 0; i < who.group_count; ++i) s += fmt::format(" {}", who.groups[i]);
      return s + "\n";
    };
    std::string text =
        "# principal uid gid group... (docs/design.md §2)\n" + line(middle, info_.middle);
    for (const auto& h : info_.hosts) text += line(h.principal, h.who);
    for (std::uint32_t i = 0; i < clients_.count; ++i) {
      identity c = clients_.client(i);
      text += line(principal_for(c.uid, process_, opt_.name), c);
    }
    write_file(info_.idmap, text, 0644);
  }

  const options& opt_;
  std::string dir_;
  client_range clients_;
  identity process_;
  realm_info info_;
  std::vector<std::string> hosts_;
  std::string krb5kdc_;
  pid_t kdc_ = -1;
};

std::string read_request(int fd) {
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  std::string line;
  char c = 0;
  while (line.size() < 64 && os::recv_all(fd, &c, 1) && c != '\n') line.push_back(c);
  return line;
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
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
    write_all(opt.ready_fd, fmt::format("error {}\n", e.what()));
    return 1;
  }

  auto started = clock_type::now();
  auto deadline = started + std::chrono::milliseconds(opt.ready_timeout_ms);
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = fmt::format("{}/cloak-realm.XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!::mkdtemp(dir.data())) {
    std::string msg = fmt::format("cannot create {}: {}", dir, std::strerror(errno));
    write_all(opt.ready_fd, "error " + msg + "\n");
    return 1;
  }
  write_all(opt.ready_fd, "dir " + dir + "\n");

  int rc = 0;
  std::unique_ptr<realm_builder> builder;
  try {
    builder = std::make_unique<realm_builder>(opt, dir);
    builder->create(deadline);
    builder->info().setup_seconds =
        std::chrono::duration<double>(clock_type::now() - started).count();
    os::unique_fd control = os::listen_unix(builder->info().control_socket, 4);
    ::chmod(builder->info().control_socket.c_str(), 0600);
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
    write_all(opt.ready_fd, "error " + msg + "\n");
    rc = 1;
  }
  if (builder) builder->stop_kdc();
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  return rc;
}
