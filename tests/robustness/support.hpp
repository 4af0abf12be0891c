// What only the robustness tests share: a kernel fixture, a watchdog that turns a hang into a
// failure, a check that a server still serves, and a way to run the programs. The clients, the leak
// check and the raw protocol client are tests/support's.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cloak/backend.hpp>
#include <cloak/connection.hpp>
#include <cloak/downstream.hpp>
#include <cloak/identity.hpp>
#include <cloak/protocol.hpp>
#include <cloak/proxy.hpp>
#include <cloak/test/raw_client.hpp>
#include <cloak/test/support.hpp>
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

namespace cloak::robustness {

using namespace std::chrono_literals;

// From tests/support, by name: a using-directive would make them collide with the protocol
// constants of the same names (establish_body and the rest) in files that use cloak::protocol.
using test::access_check_body;
using test::blanket_of;
using test::call_body;
using test::client;
using test::client_downstream_config;
using test::client_token;
using test::clients;
using test::connect_to;
using test::establish_body;
using test::frame;
using test::frame_bytes;
using test::header_bytes;
using test::leak_checked_test;
using test::raw_client;
using test::read_result;
using test::release_body;

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

// Far above any I/O bound of these tests: a call still running after it is a hang.
inline constexpr auto watchdog = 20s;

// Needs the kernel backend (skips with the reason when it cannot run here).
class kernel_test : public leak_checked_test {
 protected:
  void SetUp() override;
  identity_backend& kernel() { return test::backend(backend_kind::kernel); }
  identity process() const { return test::backend(backend_kind::kernel).process_identity(); }
  static downstream_config config() { return client_downstream_config(); }

  // Runs `body(server, p)` under the watchdog: `server` a fresh cloak-downstream, `p` a proxy (no
  // cloaking yet) on a connection to it whose every send and receive is bounded by `io_timeout`.
  template <class F>
  void with_proxy_to_fresh_server(std::chrono::milliseconds io_timeout, F&& body) {
    downstream_process server(config());
    auto t = connect_to(server, io_timeout);
    within(watchdog, [&] {
      proxy p(kernel(), *t);
      body(server, p);
    });
  }
};

// A fresh proxy on `server` gets the right answer: P with no cloaking, C1 with dynamic cloaking
// under C1, and an access check as C1 on C1's probe file. Runs on the calling thread.
::testing::AssertionResult serves_correctly(identity_backend& kernel,
                                            const downstream_process& server);

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
