// cloak-realm's realm: made in its directory (configs, database, principals, keytabs, idmap), its
// krb5kdc run and restarted as a child that dies with the supervisor.
#pragma once

#include <chrono>
#include <cloak/identity.hpp>
#include <cloak/os.hpp>
#include <cloak/process.hpp>
#include <cloak/realm.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace cloak::detail {

struct realm_options {
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

class realm_builder {
 public:
  // Checks the options and finds krb5kdc; nothing is written yet. Throws std::invalid_argument or
  // std::runtime_error naming what is wrong or missing.
  realm_builder(const realm_options& opt, std::string dir);

  realm_info& info() { return info_; }
  pid_t kdc() const { return kdc_.pid(); }

  // Writes the configs, creates the database and every principal and keytab, and starts krb5kdc,
  // all by `until`. Throws std::runtime_error with the tools' own output.
  void create(const os::deadline& until);
  // Stops krb5kdc (SIGTERM, then SIGKILL; bounded).
  void stop_kdc() noexcept;
  // Kills krb5kdc and starts a new one on the same port: "kdc PID" or "error MESSAGE".
  std::string restart_kdc(int ready_timeout_ms);
  void write_json();

 private:
  bool start_kdc(const os::deadline& until, bool& port_taken, std::string& error);
  std::uint16_t pick_kdc_port();
  nlohmann::json hosts_json() const;
  void write_configs();
  void write_idmap(const std::string& middle);

  const realm_options& opt_;
  std::string dir_;
  client_range clients_;
  identity process_;
  realm_info info_;
  std::vector<std::string> hosts_;
  std::string krb5kdc_;
  os::child_process kdc_;
};

}  // namespace cloak::detail
