// The downstream server D: per-connection security contexts (shared by cloak-downstream, the model
// and the fuzzer) and the handle that starts, watches and stops a cloak-downstream process.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cloak/auth.hpp>
#include <cloak/identity.hpp>
#include <cloak/os.hpp>
#include <cloak/process.hpp>
#include <cloak/protocol.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace cloak {

// Acts as a caller: tries to open the probe file owned by `target_uid` with the caller's identity.
// Returns 0 on success or the errno of the failed open.
class access_checker {
 public:
  virtual ~access_checker() = default;
  virtual int open_as(const identity& caller, std::uint32_t target_uid) noexcept = 0;
};

struct session_limits {
  // Established and pending together, per connection (MS-RPCE's 2,000 unless told otherwise).
  std::size_t max_contexts = protocol::default_max_contexts;
};

// The server packages a downstream runs, by package id (not owned; shared by every connection).
class server_packages {
 public:
  void add(server_package& package);
  server_package* find(std::uint8_t id) const noexcept;
  std::string names() const;  // "local, kerberos"

 private:
  std::vector<server_package*> packages_;
};

// What a downstream with a next hop does for forward_call: it acts as its caller (the identity the
// package authenticated, at the context's level) and calls its next hop through a proxy of its own
// with the cloaking and level the message names. One per connection, so the proxies it keeps (and
// what static cloaking captured in them) last as long as the connection; called on its thread.
class forward_handler {
 public:
  virtual ~forward_handler() = default;
  struct caller {
    std::uint64_t context = 0;
    identity who;
    impersonation_level level = impersonation_level::impersonate;
    const server_context_state* state = nullptr;  // the package's (what the caller delegated, say)
  };
  // Fills `out.next_error`, `out.next`, `out.next_contexts` and `detail` (why a failed call
  // failed).
  virtual void forward(const caller& c, const next_hop& hop, std::span<const std::byte> payload,
                       forward_outcome& out, std::string& detail) noexcept = 0;
};

// The state of one connection: the contexts it established. A context id is random, assigned here,
// and means nothing on any other connection. Every frame is decoded and every reply encoded by the
// codec (cloak/protocol.hpp); who the caller is comes only from an authentication package.
class downstream_session {
 public:
  downstream_session(access_checker& checker, const server_packages& packages,
                     session_limits limits = {});
  ~downstream_session();

  // Handles one complete frame (used by the socket server, the in-process channel and the fuzzer)
  // and appends exactly one reply frame to `out`. `peer` is what the channel knows of this frame's
  // sender. Returns false when the connection must be closed.
  bool handle_frame(const protocol::header& h, std::span<const std::byte> body,
                    const peer_info& peer, std::vector<std::byte>& out);

  std::size_t context_count() const noexcept { return contexts_.size() + pending_.size(); }
  // forward_call is answered with no_next_hop unless a handler is set (not owned).
  void set_forwarder(forward_handler* handler) noexcept { forwarder_ = handler; }

 private:
  struct context_record {
    identity who;
    impersonation_level level = impersonation_level::impersonate;
    protection per_call = protection::none;
    server_package* package = nullptr;
    std::unique_ptr<server_context_state> state;
  };
  struct pending_establish {
    server_package* package = nullptr;
    impersonation_level level = impersonation_level::impersonate;
    protection per_call = protection::none;
    std::uint64_t release = 0;
    std::unique_ptr<server_context_state> state;
  };
  std::uint64_t fresh_id();
  void accept_leg(std::uint32_t request_id, server_package& package, const peer_info& peer,
                  std::span<const std::byte> token, pending_establish pending,
                  std::vector<std::byte>& out);
  protocol::context_view describe(const context_record& record, std::uint64_t id) const;
  // The context's per-call check of a request payload: its MIC (integrity) or its seal (privacy,
  // `opened` then points into opened_). False with the refusal and why.
  bool protect(const context_record& record, std::span<const std::byte> payload,
               std::span<const std::byte> mic, std::string_view what,
               std::span<const std::byte>& opened, protocol::status& refusal, std::string& why);
  // Under privacy, seals the reply's payload into sealed_ and points `payload` at it.
  bool seal_reply(const context_record& record, std::span<const std::byte>& payload) noexcept;

  access_checker& checker_;
  const server_packages& packages_;
  session_limits limits_;
  std::unordered_map<std::uint64_t, context_record> contexts_;
  std::unordered_map<std::uint64_t, pending_establish> pending_;
  std::mt19937_64 ids_;
  token_buffer reply_token_;
  // prot:privacy: the opened request and the sealed reply payload (capacity reserved up front).
  token_buffer opened_;
  token_buffer sealed_;
  forward_handler* forwarder_ = nullptr;
  std::string forward_detail_;
  std::string protect_detail_;
};

// Appends an error frame: status, fatal flag, and a human-readable reason.
void append_error_frame(std::vector<std::byte>& out, std::uint32_t request_id, protocol::status s,
                        bool fatal, std::string_view text);

// The model's downstream: in-process, same session logic; it "acts as the caller" by comparing
// uids. It runs the local package, and any other a test registers.
class model_downstream {
 public:
  model_downstream();
  ~model_downstream();
  downstream_session& new_session();  // one per in-process "connection"
  void drop_sessions() noexcept;      // the analogue of a restart: every context is gone
  std::uint64_t restarts() const noexcept { return restarts_; }
  void add_package(server_package& package) { packages_.add(package); }

 private:
  class model_checker : public access_checker {
   public:
    int open_as(const identity& caller, std::uint32_t target_uid) noexcept override;
  };
  model_checker checker_;
  std::unique_ptr<server_package> local_;
  server_packages packages_;
  std::vector<std::unique_ptr<downstream_session>> sessions_;
  std::uint64_t restarts_ = 0;
};

struct downstream_config {
  std::string program;   // path of cloak-downstream; empty: the one built with this harness
  client_range clients;  // probe files are made for these uids (and the process uid)
  int cpu = -1;          // pin the server to this CPU (-1: unpinned)
  std::chrono::milliseconds ready_timeout{5000};
  std::chrono::milliseconds stop_timeout{2000};
  std::size_t max_connections = 256;
  std::chrono::milliseconds send_timeout{
      5000};            // the server drops a client that does not read replies
  std::string run_dir;  // empty: a fresh private directory under $TMPDIR (or /tmp)
  // The kerberos package: the realm's directory (empty: local only) and the acceptor's replay
  // cache ("file2": a file2 rcache in the run directory, or "none").
  std::string realm_dir;
  std::string rcache = "file2";
  // The ntlm package: the domain's directory (ntlm_domain; empty: no ntlm). The child inherits
  // GSS_MECH_CONFIG from this process.
  std::string ntlm_dir;
  // Across hosts: listen on TCP ("tcp:ADDR:PORT", port 0: any) instead of the Unix socket, inside
  // this named network namespace (empty: ours).
  std::string listen;
  std::string netns;
  // The kerberos acceptor's principal and keytab (empty: the realm's service and service keytab);
  // a downstream host uses its own (realm_host).
  std::string service;
  std::string keytab;
  // A next hop for forward_call ("tcp:ADDR:PORT") and its service principal.
  std::string forward;
  std::string forward_service;
};

// A running cloak-downstream. Readiness is learned from an inherited pipe; every wait is bounded;
// the destructor always stops and reaps the child and removes its private directory.
class downstream_process {
 public:
  explicit downstream_process(
      downstream_config config);  // throws std::system_error / runtime_error
  ~downstream_process();
  downstream_process(const downstream_process&) = delete;
  downstream_process& operator=(const downstream_process&) = delete;

  const std::string& socket_path() const noexcept { return socket_path_; }
  // Where a TCP server listens ("tcp:ADDR:PORT", the port it got when asked for 0); empty for uds.
  const std::string& address() const noexcept { return address_; }
  const std::string& run_dir() const noexcept { return run_dir_; }
  pid_t pid() const noexcept { return child_.pid(); }
  bool running() noexcept;

  void kill(int signal) noexcept;  // for fault tests: sends the signal and reaps the child
  void stop() noexcept;            // SIGTERM, bounded wait, then SIGKILL
  void start();                    // (re)starts in the same directory, on the same socket path
  // Path of the cloak-downstream built with this harness (CLOAK_DOWNSTREAM overrides).
  static std::string default_program();

 private:
  downstream_config config_;
  std::string run_dir_;
  std::string socket_path_;
  std::string address_;
  bool own_dir_ = false;
  os::child_process child_;
};

}  // namespace cloak
