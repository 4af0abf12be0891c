// The downstream server D: per-connection security contexts (shared by cloak-downstream and the model)
// and the handle that starts, watches and stops a cloak-downstream process.
#pragma once

#include <cloak/identity.hpp>
#include <cloak/os.hpp>
#include <cloak/protocol.hpp>

#include <sys/types.h>

#include <chrono>
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

struct context_record {
  identity who;
  impersonation_level level = impersonation_level::impersonate;
};

struct session_limits {
  std::size_t max_contexts = 1024;
};

// The state of one connection: the contexts it established. A context id is random, assigned here,
// and means nothing on any other connection.
class downstream_session {
 public:
  explicit downstream_session(access_checker& checker, session_limits limits = {});

  struct view {
    protocol::status result = protocol::status::ok;
    identity seen;
    bool anonymous = false;
    impersonation_level level = impersonation_level::impersonate;
    std::uint64_t context = 0;
  };

  // `creds` is what the kernel (or model) says about the sender of this message.
  view establish(const identity* creds, std::uint8_t level, std::uint64_t release);
  view call(const identity* creds, std::uint64_t context, std::uint8_t level) const;
  protocol::status release(std::uint64_t context);
  struct access_view {
    view who;
    bool granted = false;
    int error_number = 0;
  };
  access_view access_check(std::uint64_t context, std::uint32_t target_uid);

  // Frame-level entry point used by the socket server and the fuzzer: handles one complete frame and
  // appends the reply frame to `out`. Returns false when the connection must be closed.
  bool handle_frame(const protocol::header& h, std::span<const std::byte> body, const identity* creds,
                    std::vector<std::byte>& out);

  std::size_t context_count() const noexcept { return contexts_.size(); }

 private:
  view describe(const context_record& record, std::uint64_t id) const;
  access_checker& checker_;
  session_limits limits_;
  std::unordered_map<std::uint64_t, context_record> contexts_;
  std::mt19937_64 ids_;
};

// Appends an error frame: status, fatal flag, and a human-readable reason.
void append_error_frame(std::vector<std::byte>& out, std::uint32_t request_id, protocol::status s,
                        bool fatal, std::string_view text);

// The model's downstream: in-process, same session logic; it "acts as the caller" by comparing uids.
class model_downstream {
 public:
  model_downstream();
  downstream_session& new_session();  // one per in-process "connection"
  void drop_sessions() noexcept;      // the analogue of a restart: every context is gone
  std::uint64_t restarts() const noexcept { return restarts_; }

 private:
  class model_checker : public access_checker {
   public:
    int open_as(const identity& caller, std::uint32_t target_uid) noexcept override;
  };
  model_checker checker_;
  std::vector<std::unique_ptr<downstream_session>> sessions_;
  std::uint64_t restarts_ = 0;
};

struct downstream_config {
  std::string program;            // path of cloak-downstream; empty: the one built with this harness
  client_range clients;           // probe files are made for these uids (and the process uid)
  int cpu = -1;                   // pin the server to this CPU (-1: unpinned)
  std::chrono::milliseconds ready_timeout{5000};
  std::chrono::milliseconds stop_timeout{2000};
  std::size_t max_connections = 256;
  std::chrono::milliseconds send_timeout{5000};  // the server drops a client that does not read replies
  std::string run_dir;            // empty: a fresh private directory under $TMPDIR (or /tmp)
};

// A running cloak-downstream. Readiness is learned from an inherited pipe; every wait is bounded;
// the destructor always stops and reaps the child and removes its private directory.
class downstream_process {
 public:
  explicit downstream_process(downstream_config config);  // throws std::system_error / runtime_error
  ~downstream_process();
  downstream_process(const downstream_process&) = delete;
  downstream_process& operator=(const downstream_process&) = delete;

  const std::string& socket_path() const noexcept { return socket_path_; }
  const std::string& run_dir() const noexcept { return run_dir_; }
  pid_t pid() const noexcept { return pid_; }
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
  bool own_dir_ = false;
  pid_t pid_ = -1;
};

}  // namespace cloak
