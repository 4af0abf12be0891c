// What the robustness tests share: a leak-checked kernel fixture, a raw protocol client that can
// send anything, a watchdog that turns a hang into a failure, and a way to run the programs.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cloak/backend.hpp>
#include <cloak/downstream.hpp>
#include <cloak/identity.hpp>
#include <cloak/protocol.hpp>
#include <cloak/proxy.hpp>
#include <cloak/transport.hpp>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace cloak {
inline void PrintTo(const identity& who, std::ostream* os) { *os << to_string(who); }
}  // namespace cloak

namespace cloak::robustness {

using namespace std::chrono_literals;

// The default fake clients (61000:61000:16).
const client_range& clients();
identity client(std::uint32_t index);
token client_token(std::uint32_t index,
                   impersonation_level level = impersonation_level::impersonate);

// Every robustness test ends with every thread of the process at its process identity (kernel
// credentials, read from /proc for each thread) and no token on the test thread.
class leak_checked_test : public ::testing::Test {
 protected:
  void TearDown() override;
};

// Needs the kernel backend (skips with the reason when it cannot run here) and a downstream config.
class kernel_test : public leak_checked_test {
 protected:
  void SetUp() override;
  void TearDown() override;
  identity_backend& kernel() { return *kernel_; }
  identity process() const { return kernel_->process_identity(); }
  static downstream_config config();
  // A fresh transport to `server` whose every send and receive is bounded by `io_timeout`.
  static std::unique_ptr<transport> connect_to(const downstream_process& server,
                                               std::chrono::milliseconds io_timeout = 2000ms);

 private:
  std::unique_ptr<identity_backend> kernel_;
};

// Runs `f` on its own thread and returns what it returns. A call that has not returned within
// `bound` is a hang: the test process reports it and exits (it cannot be unwound safely).
template <class F>
auto within(std::chrono::seconds bound, F&& f) -> std::invoke_result_t<F&> {
  using result = std::invoke_result_t<F&>;
  std::packaged_task<result()> task(std::forward<F>(f));
  auto done = task.get_future();
  std::thread worker(std::move(task));
  if (done.wait_for(bound) != std::future_status::ready) {
    std::fprintf(stderr, "FAIL: %s did not return within %lld s (a hang); exiting\n",
                 ::testing::UnitTest::GetInstance()->current_test_info()->name(),
                 static_cast<long long>(bound.count()));
    std::fflush(stderr);
    std::_Exit(1);
  }
  worker.join();
  return done.get();
}

// A fresh proxy on `server` gets the right answer: P with no cloaking, C1 with dynamic cloaking
// under C1, and an access check as C1 on C1's probe file. Runs on the calling thread.
::testing::AssertionResult serves_correctly(identity_backend& kernel,
                                            const downstream_process& server);

// One frame as read off the wire.
struct frame {
  protocol::header head;
  std::vector<std::byte> body;
  protocol::status error_status() const;  // for an error frame
  bool error_fatal() const;
  std::uint64_t context() const;  // for established/reply frames
  std::uint32_t seen_uid() const;
  std::uint32_t seen_gid() const;
};

enum class read_result { frame, closed, timeout };

// Speaks the wire protocol with no help and no checks: it sends whatever the test builds.
class raw_client {
 public:
  // Connects (as the calling thread) or throws std::system_error. Every send/receive is bounded.
  explicit raw_client(const std::string& socket_path, std::chrono::milliseconds timeout = 5000ms);

  bool send_bytes(std::span<const std::byte> bytes);
  bool send_frame(protocol::msg_type type, std::span<const std::byte> body,
                  std::uint32_t request_id, std::uint16_t flags = 0);
  // Reads exactly one frame, or says the server closed or did not answer in time.
  read_result read(frame& out);
  std::optional<frame> read_frame();
  // Reads (and discards) until the server closes the connection; false if it did not in time.
  bool closed_by_server();
  void shutdown_writes();
  int fd() const { return fd_.get(); }
  int last_errno() const { return last_errno_; }

  // Round trips that must succeed (else the test fails and nullopt is returned).
  std::optional<std::uint64_t> establish(
      impersonation_level level = impersonation_level::impersonate, std::uint64_t release = 0);

 private:
  bool recv_exact(std::byte* p, std::size_t n, read_result& why);
  os::unique_fd fd_;
  int last_errno_ = 0;
  std::uint32_t next_request_ = 1000;
};

// Bodies, laid out as docs/protocol.md says.
std::vector<std::byte> establish_body(impersonation_level level, std::uint64_t release = 0);
std::vector<std::byte> call_body(std::uint64_t context, impersonation_level level,
                                 std::span<const std::byte> payload = {});
std::vector<std::byte> release_body(std::uint64_t context);
std::vector<std::byte> access_check_body(std::uint64_t context, std::uint32_t target_uid);
std::vector<std::byte> header_bytes(const protocol::header& h);

// Runs a program with the given arguments, its stderr merged into the captured output.
struct command_result {
  int exit_code = -1;
  std::string output;
};
command_result run_command(const std::vector<std::string>& argv);

// A directory made for one test and removed with everything in it at scope end.
class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace cloak::robustness
