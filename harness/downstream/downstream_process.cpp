// Starting, watching and stopping cloak-downstream: inherited-pipe readiness, bounded waits, one
// cleanup path.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cloak/downstream.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace cloak {

std::string downstream_process::default_program() {
  if (const char* env = std::getenv("CLOAK_DOWNSTREAM"); env && *env) return env;
#ifdef CLOAK_DOWNSTREAM_PATH
  return CLOAK_DOWNSTREAM_PATH;
#else
  return "cloak-downstream";
#endif
}

downstream_process::downstream_process(downstream_config config) : config_(std::move(config)) {
  if (config_.program.empty()) config_.program = default_program();
  if (config_.run_dir.empty()) {
    run_dir_ = os::make_temp_dir("cloakbench");  // mode 0700: only the harness's user may enter
    own_dir_ = true;
  } else {
    run_dir_ = config_.run_dir;
    os::ensure_dir(run_dir_, 0700);
    if (!os::is_private_dir(os::stat_path(run_dir_))) {
      throw std::runtime_error(fmt::format("{} must be a directory owned by uid {} with mode 0700",
                                           run_dir_, ::geteuid()));
    }
  }
  socket_path_ = run_dir_ + "/downstream.sock";
  try {
    start();
  } catch (...) {
    if (own_dir_) {
      std::error_code ignored;
      std::filesystem::remove_all(run_dir_, ignored);
    }
    throw;
  }
}

downstream_process::~downstream_process() {
  stop();
  if (own_dir_) {
    std::error_code ignored;
    std::filesystem::remove_all(run_dir_, ignored);
  }
}

void downstream_process::start() {
  os::require_process_identity(config_.program);
  stop();

  const client_range& c = config_.clients;
  bool tcp = !config_.listen.empty();
  // A restarted TCP server keeps the port it got first: clients hold the address.
  std::string listen = address_.empty() ? config_.listen : address_;
  std::vector<std::string> args{config_.program,
                                tcp ? "--listen" : "--socket",
                                tcp ? listen : socket_path_,
                                "--ready-fd",
                                "3",
                                "--clients",
                                fmt::format("{}:{}:{}", c.first_uid, c.first_gid, c.count),
                                "--max-connections",
                                std::to_string(config_.max_connections),
                                "--send-timeout-ms",
                                std::to_string(config_.send_timeout.count()),
                                "--parent-pid",
                                std::to_string(::getpid())};
  if (own_dir_) args.push_back("--remove-dir-when-orphaned");
  if (tcp) args.insert(args.end(), {"--run-dir", run_dir_});
  auto add = [&](const char* option, const std::string& value) {
    if (!value.empty()) args.insert(args.end(), {option, value});
  };
  add("--netns", config_.netns);
  add("--service", config_.service);
  add("--keytab", config_.keytab);
  add("--forward", config_.forward);
  add("--forward-service", config_.forward_service);
  add("--ntlm", config_.ntlm_dir);
  if (!config_.realm_dir.empty()) {
    args.insert(args.end(), {"--realm", config_.realm_dir, "--rcache", config_.rcache});
  }
  if (config_.cpu >= 0) {
    args.push_back("--cpu");
    args.push_back(std::to_string(config_.cpu));
  }
  os::spawn_options spawn;
  spawn.argv = std::move(args);
  spawn.readiness = true;
  spawn.stop_timeout = config_.stop_timeout;
  child_ = os::child_process(spawn);

  // Ready when the child writes "ready"; the pipe's closing without it means it died first.
  os::readiness r = child_.await_ready(os::deadline(config_.ready_timeout),
                                       [](std::string_view line) { return line == "ready"; });
  if (r.how == os::readiness::end::last_line) {
    // A TCP server says where it listens first: "listening tcp:ADDR:PORT".
    if (std::string at = r.after("listening "); !at.empty()) address_ = at;
    return;
  }
  kill(SIGKILL);  // reaps it (bounded)
  if (r.how == os::readiness::end::timed_out) {
    throw std::runtime_error(fmt::format("{} did not become ready within {} ms", config_.program,
                                         config_.ready_timeout.count()));
  }
  // It says why on the pipe too ("error MESSAGE"), so the caller's exception can carry it.
  if (std::string why = r.after("error "); !why.empty()) {
    throw std::runtime_error(
        fmt::format("{} exited before it was ready: {}", config_.program, why));
  }
  throw std::runtime_error(
      fmt::format("{} exited before it was ready (its own message is above)", config_.program));
}

bool downstream_process::running() noexcept { return child_.running(); }

void downstream_process::kill(int signal) noexcept {
  if (child_.pid() <= 0) return;
  bool stopping = signal == SIGKILL || signal == SIGTERM || signal == SIGINT;
  // Stopping reaps it (bounded); a child not reaped even after SIGKILL stays ours: the next stop()
  // tries again.
  if (stopping ? child_.stop(config_.stop_timeout, signal) : child_.signal(signal)) return;
  if (errno != EPERM) return;
  // A thread running as a client may not signal P's child; say so rather than wait for nothing.
  std::fprintf(
      stderr,
      "cloakbench: cannot signal %s (pid %d): the calling thread is not the process identity\n",
      config_.program.c_str(), static_cast<int>(child_.pid()));
}

void downstream_process::stop() noexcept { kill(SIGTERM); }

}  // namespace cloak
