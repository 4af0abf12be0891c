// The realm cloak-realm makes and keeps: its files, its principals and keytabs (kdb5_util and
// kadmin.local, run as tools within the ready timeout) and its krb5kdc (a child of the supervisor).
#include "builder.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <krb5/krb5.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <cloak/net.hpp>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>

namespace cloak::detail {

namespace {

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
  explicit in_kdc_namespace(const realm_options& opt) {
    if (!opt.netns.empty()) scope.emplace(opt.netns);
  }
  std::optional<os::netns_scope> scope;
};

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

// Runs a setup tool to completion by `until` with `input` on its stdin; its output goes to `log`.
void run_tool(const std::vector<std::string>& argv, const std::string& input,
              const std::string& log, const os::deadline& until) {
  os::tool_options tool;
  tool.argv = argv;
  tool.input = input;
  tool.die_with_parent = true;  // the supervisor is single threaded: this is its lifetime
  os::tool_result r = os::run_tool(tool, until);
  os::unique_fd out = os::open_file(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (!os::write_all(out.get(), r.out + r.err))
    os::throw_errno(errno, fmt::format("cannot write {}", log));
  if (r.timed_out) {
    throw std::runtime_error(
        fmt::format("{} did not finish within the ready timeout: {}", argv[0], read_file(log)));
  }
  if (!r.success()) {
    throw std::runtime_error(
        fmt::format("{} failed ({}): {}", argv[0], r.status.to_string(), read_file(log)));
  }
}

// How a shell would say it: the exit code, or 128 + the signal.
int shell_status(const os::exit_status& s) { return s.signal != 0 ? 128 + s.signal : s.code; }

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

}  // namespace

realm_builder::realm_builder(const realm_options& opt, std::string dir)
    : opt_(opt), dir_(std::move(dir)) {
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
      throw std::invalid_argument(fmt::format("--hosts: '{}' is not a host name (a-z, 0-9, -)", h));
    }
    info_.hosts.push_back(
        realm_host{h, fmt::format("cloak/{}@{}", h, opt.name), fmt::format("{}/{}.keytab", dir_, h),
                   with_hosts.client(clients_.count + 1 + static_cast<std::uint32_t>(i))});
  }
  info_.kdc_log = dir_ + "/kdc.log";
  info_.control_socket = dir_ + "/control.sock";
  info_.supervisor_pid = ::getpid();
  krb5kdc_ = find_program("krb5kdc");
}

void realm_builder::create(const os::deadline& until) {
  // The directory is the realm's only place: a thread switched to a client must still read
  // krb5.conf (0755 dir, 0644 file); keytabs and the database stay root's (0600).
  os::change_mode(dir_, 0755);
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
           "", setup_log, until);

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
  run_tool({find_program("kadmin.local"), "-r", opt_.name}, commands, setup_log, until);
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
    os::change_mode(h.keytab, 0600);
  }
  os::change_mode(info_.client_keytab, 0600);
  os::change_mode(info_.service_keytab, 0600);
  write_idmap(middle);

  // A port taken between os::free_port and krb5kdc's bind: pick another and rewrite the configs.
  for (int attempt = 0;; ++attempt) {
    bool port_taken = false;
    std::string error;
    if (start_kdc(until, port_taken, error)) break;
    if (!port_taken || attempt == 4) throw std::runtime_error(error);
    info_.kdc_port = pick_kdc_port();
    write_configs();
  }
}

// The KDC: a child that dies with the supervisor. Ready when its log says "commencing
// operation" (after it bound and listens), learned through inotify on the directory.
bool realm_builder::start_kdc(const os::deadline& until, bool& port_taken, std::string& error) {
  std::string err_path = dir_ + "/kdc.stderr";
  std::size_t log_from = file_size(info_.kdc_log);
  std::size_t err_from = file_size(err_path);
  os::unique_fd notify(
      os::check([] { return ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK); }, "cannot create inotify"));
  os::check(
      [&] {
        return ::inotify_add_watch(notify.get(), dir_.c_str(),
                                   IN_MODIFY | IN_CREATE | IN_CLOSE_WRITE);
      },
      "cannot watch {}", dir_);
  os::unique_fd err = os::open_file(err_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  os::unique_fd null = os::open_file("/dev/null", O_RDONLY);
  os::spawn_options spawn;
  spawn.argv = {krb5kdc_, "-n", "-r", opt_.name};
  spawn.stdin_fd = null.get();
  spawn.stdout_fd = err.get();
  spawn.stderr_fd = err.get();
  spawn.die_with_parent = true;  // the supervisor is single threaded: this is its lifetime
  os::child_process kdc;
  {
    in_kdc_namespace scope(opt_);  // the fork inherits the namespace; we leave it again
    kdc = os::child_process(spawn);
  }
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
      kdc_ = std::move(kdc);
      return true;
    }
    if (until.passed()) {
      kdc.stop(std::chrono::milliseconds(2000), SIGKILL);
      error = fmt::format("krb5kdc did not start within the ready timeout: {}", failure_text());
      return false;
    }
    // Woken by the log growing (inotify) or krb5kdc exiting (its pidfd).
    pollfd fds[2] = {{notify.get(), POLLIN, 0}, {kdc.exit_descriptor(), POLLIN, 0}};
    os::poll_until(fds, 2, until);
    if (fds[0].revents & POLLIN) {
      char events[4096];
      // Only a wake-up: the loop reads the log itself.
      while (::read(notify.get(), events, sizeof events) > 0) continue;
    }
    if (fds[1].revents & POLLIN) {
      if (read_file(info_.kdc_log, log_from).find("commencing operation") != std::string::npos)
        continue;
      kdc.wait(until);
      std::string text = failure_text();
      port_taken = text.find("Address already in use") != std::string::npos;
      error = fmt::format("krb5kdc exited with status {} before it was ready: {}",
                          shell_status(kdc.status()), text);
      return false;
    }
  }
}

// A stopped KDC acts on SIGTERM only once it runs again: stop() sends SIGCONT after it.
void realm_builder::stop_kdc() noexcept { kdc_.stop(std::chrono::milliseconds(2000)); }

std::string realm_builder::restart_kdc(int ready_timeout_ms) {
  kdc_.stop(std::chrono::milliseconds(2000), SIGKILL);
  bool port_taken = false;
  std::string error;
  if (!start_kdc(os::deadline(std::chrono::milliseconds(ready_timeout_ms)), port_taken, error))
    return "error " + error;
  write_json();
  return fmt::format("kdc {}", kdc_.pid());
}

void realm_builder::write_json() {
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
                   {"kdc_pid", static_cast<long>(kdc_.pid())},
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
  os::write_file(dir_ + "/realm.json", j.dump(2) + "\n", 0644);
}

std::uint16_t realm_builder::pick_kdc_port() {
  in_kdc_namespace scope(opt_);
  return os::free_port(opt_.listen);
}

nlohmann::json realm_builder::hosts_json() const {
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

void realm_builder::write_configs() {
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
  os::write_file(info_.krb5_conf, krb5, 0644);
  os::write_file(info_.kdc_conf, kdc, 0644);
}

void realm_builder::write_idmap(const std::string& middle) {
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
  os::write_file(info_.idmap, text, 0644);
}

}  // namespace cloak::detail
