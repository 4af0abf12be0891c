// A throwaway MIT Kerberos realm the suite starts itself: a KDC on loopback, principals for P, the
// downstream service and every fake client, keytabs, and the uid <-> principal map (docs/design.md
// §2).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cloak/environment.hpp>
#include <cloak/identity.hpp>
#include <cloak/process.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cloak {

// A downstream host of a realm made for hosts (realm_config::hosts): its service principal, which
// is also what it presents when it calls a next hop as itself, its keytab, and its identity in the
// idmap.
struct realm_host {
  std::string name;       // down1
  std::string principal;  // cloak/down1@REALM
  std::string keytab;     // <dir>/down1.keytab (0600, owner P)
  identity who;           // what the idmap maps the principal to: a host uid past the clients
};

// Everything a package or cloak-downstream needs to find the realm. All paths are inside `dir`.
struct realm_info {
  std::string dir;   // the realm's private temp directory (mode 0755, removed on every exit)
  std::string name;  // realm name, e.g. CLOAKBENCH.TEST
  std::string kdc_host = "127.0.0.1";
  std::uint16_t kdc_port = 0;
  std::string krb5_conf;       // <dir>/krb5.conf   (what KRB5_CONFIG must point to; 0644)
  std::string kdc_conf;        // <dir>/kdc.conf    (KRB5_KDC_PROFILE of the KDC)
  std::string client_keytab;   // <dir>/clients.keytab: P and every client (0600, owner P)
  std::string service_keytab;  // <dir>/service.keytab: the downstream service (0600, owner P)
  std::string idmap;           // <dir>/idmap: "principal uid gid group..." per line (0644)
  std::string service;         // the downstream's principal, e.g. cloak/downstream@CLOAKBENCH.TEST
  std::string kdc_log;         // <dir>/kdc.log: krb5kdc's own log (one line per AS-REQ / TGS-REQ)
  std::string control_socket;  // <dir>/control.sock: cloak-realm's "restart" requests (0600)
  long kdc_pid = 0;  // krb5kdc when realm.json was written (realm::kdc_pid() follows restarts)
  long supervisor_pid = 0;        // the cloak-realm process that owns the realm
  double setup_seconds = 0;       // from mkdtemp to a KDC answering (measured, recorded in results)
  std::string netns;              // the network namespace the KDC runs in (empty: this one)
  std::vector<realm_host> hosts;  // downstream hosts (empty unless the realm was made for hosts)
  // How a downstream of this realm sees P: the idmap's identity for P's principal (cloak-middle).
  // With hosts this is a host uid of its own, not P's kernel uid: another host knows P only by its
  // principal.
  identity middle;

  // The host called `name`; throws std::invalid_argument naming the hosts there are.
  const realm_host& host(const std::string& name) const;

  // Reads <dir>/realm.json written by cloak-realm. Throws std::runtime_error naming what is wrong.
  static realm_info load(const std::string& dir);
};

// The documented map (docs/design.md §2): P is "cloak-middle", a fake client with uid U is
// "client-U".
std::string principal_for(std::uint32_t uid, const identity& process, const std::string& realm);

struct realm_config {
  std::string program;   // path of cloak-realm; empty: the one built with this harness
  client_range clients;  // one principal per client
  identity process = identity::of(0, 0);  // P
  std::string name = "CLOAKBENCH.TEST";
  std::chrono::milliseconds ready_timeout{20000};
  std::chrono::milliseconds stop_timeout{3000};
  // For fault tests: the KDC's maximum clock skew (seconds, kdc.conf / krb5.conf clockskew).
  int clockskew_seconds = 300;
  // Across hosts: a principal and keytab per downstream host ("down1", "down2"); P's principal then
  // maps to a host identity of its own (the uid after the clients), each host to the uids after it.
  std::vector<std::string> hosts;
  std::string netns;                         // run krb5kdc in this network namespace (empty: ours)
  std::string listen_address = "127.0.0.1";  // where krb5kdc listens and what krb5.conf names
};

// A running realm, owned by a `cloak-realm` supervisor process: the supervisor creates the realm,
// runs krb5kdc as its child, tells us it is ready over an inherited pipe, and removes everything
// (KDC stopped, directory deleted) when we stop it, when we exit, or when we crash (it watches our
// pid through a pidfd). The destructor stops and reaps it, bounded.
class realm {
 public:
  explicit realm(realm_config config);  // throws std::runtime_error with the supervisor's message
  ~realm();
  realm(const realm&) = delete;
  realm& operator=(const realm&) = delete;

  const realm_info& info() const noexcept { return info_; }
  pid_t supervisor_pid() const noexcept { return supervisor_.pid(); }
  pid_t kdc_pid() const noexcept { return kdc_pid_; }

  // For fault tests: sends `signal` to the KDC (SIGSTOP, SIGCONT, ...). After SIGKILL the
  // supervisor starts a new krb5kdc on the same port and kdc_pid() names it; false if that failed
  // (said on stderr).
  bool kill_kdc(int signal) noexcept;
  void stop() noexcept;

  // Points this process's KRB5_CONFIG at the realm (call before any GSSAPI use and before starting
  // threads: setenv is not thread-safe). The previous value comes back on destruction. With
  // `alongside`, the realm's krb5.conf is added to the files KRB5_CONFIG already names (a run with
  // two realms); the first file's [libdefaults] win, so both realms use the same ones.
  void export_environment(bool alongside = false);

  static std::string default_program();

 private:
  realm_config config_;
  realm_info info_;
  os::child_process supervisor_;
  pid_t kdc_pid_ = -1;                    // the supervisor's child, not ours
  os::environment_override environment_;  // what export_environment replaced, restored by ~realm
};

}  // namespace cloak
