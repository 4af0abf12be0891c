// No identity leaks: a proxy that fails while presenting another identity gives the thread back
// exactly what it had; the leak check sees every thread; uid 0 and real accounts are never clients.
#include <pwd.h>
#include <signal.h>

#include <barrier>
#include <latch>

#include "support.hpp"

namespace cloak::robustness {
namespace {

const std::byte payload[32]{};
constexpr auto io_bound = 300ms;

// The thread is exactly `who` by the backend's bookkeeping and by the kernel.
::testing::AssertionResult thread_is(identity_backend& kernel, const identity& who,
                                     bool has_token) {
  identity now = kernel.read_thread_identity();
  if (!(now == who)) return ::testing::AssertionFailure() << "the thread is " << to_string(now);
  if (kernel.thread_has_token() != has_token) {
    return ::testing::AssertionFailure()
           << "token bookkeeping: has_token=" << kernel.thread_has_token();
  }
  return ::testing::AssertionSuccess();
}

using error_path = kernel_test;

// Static capture of C1, then the thread reverts: establishing must present C1 on a temporary
// switch.
TEST_F(error_path, establish_timing_out_while_presenting_a_captured_identity_restores_the_thread) {
  with_proxy_to_fresh_server(io_bound, [&](downstream_process& server, proxy& p) {
    {
      impersonation as_c1(kernel(), client_token(0));
      p.set_blanket(blanket_of(cloaking::static_));
    }
    server.kill(SIGSTOP);
    call_result r = p.call(payload);  // connects as P, then establishes as C1: no answer
    EXPECT_EQ(r.error, call_error::timeout) << to_string(r.error);
    EXPECT_EQ(p.counters().identity_switches, 1u) << "the establish did not run under a switch";
    EXPECT_TRUE(thread_is(kernel(), process(), false));
    EXPECT_NO_THROW(kernel().check_no_leak());

    // The same with the thread running as C2: it is C2 again afterwards, not C1 and not P.
    impersonation as_c2(kernel(), client_token(1));
    r = p.call(payload);
    EXPECT_NE(r.error, call_error::ok);
    EXPECT_TRUE(thread_is(kernel(), client(1), true));
    server.kill(SIGCONT);
  });
}

TEST_F(
    error_path,
    establish_failing_on_a_killed_downstream_while_presenting_another_identity_restores_the_thread) {
  with_proxy_to_fresh_server(io_bound, [&](downstream_process& server, proxy& p) {
    {
      impersonation as_c1(kernel(), client_token(0));
      p.set_blanket(blanket_of(cloaking::static_));
      ASSERT_TRUE(p.call(payload).ok());  // connected, context for C1
      p.set_blanket(
          blanket_of(cloaking::static_));  // re-captures C1: the next call establishes again
    }
    server.kill(SIGKILL);  // the connection is still open on our side
    std::uint64_t switches = p.counters().identity_switches;
    call_result r = p.call(payload);
    EXPECT_EQ(r.error, call_error::downstream_unavailable) << to_string(r.error);
    EXPECT_EQ(p.counters().identity_switches, switches + 1)
        << "the establish did not run under a switch";
    EXPECT_TRUE(thread_is(kernel(), process(), false));
  });
}

TEST_F(error_path, explicit_identity_establish_failing_restores_the_thread) {
  with_proxy_to_fresh_server(io_bound, [&](downstream_process& server, proxy& p) {
    ASSERT_TRUE(p.call(payload).ok());
    server.kill(SIGKILL);
    impersonation as_c2(kernel(), client_token(1));
    p.set_blanket(blanket_of(cloaking::none, impersonation_level::impersonate,
                             client(2)));  // present C3 explicitly
    call_result r = p.call(payload);
    EXPECT_EQ(r.error, call_error::downstream_unavailable) << to_string(r.error);
    EXPECT_TRUE(thread_is(kernel(), client(1), true));
  });
}

TEST_F(error_path, reconnecting_as_the_process_to_a_dead_downstream_restores_the_thread) {
  with_proxy_to_fresh_server(io_bound, [&](downstream_process& server, proxy& p) {
    server.kill(SIGKILL);
    p.set_blanket(blanket_of(cloaking::dynamic));
    impersonation as_c1(kernel(), client_token(0));
    call_result r = p.call(payload);  // connect runs as P (the socket directory is P's only)
    EXPECT_EQ(r.error, call_error::downstream_unavailable) << to_string(r.error);
    EXPECT_TRUE(thread_is(kernel(), client(0), true));
  });
}

TEST_F(error_path, failures_on_many_threads_leave_no_thread_as_a_client) {
  downstream_process server(config());
  constexpr int threads = 4;
  std::barrier ready(threads + 1);
  std::latch checked(1);
  std::vector<std::thread> workers;
  std::atomic<int> failures{0};
  server.kill(SIGSTOP);
  for (int i = 0; i < threads; ++i) {
    workers.emplace_back([&, i] {
      auto t = connect_to(server, io_bound);
      proxy p(kernel(), *t);
      {
        impersonation as_client(kernel(), client_token(static_cast<std::uint32_t>(i)));
        p.set_blanket(blanket_of(i % 2 ? cloaking::dynamic : cloaking::static_));
        if (!p.call(payload).ok()) ++failures;
      }
      ready.arrive_and_wait();  // alive, reverted, while the main thread checks every thread
      checked.wait();
    });
  }
  within(watchdog, [&] { ready.arrive_and_wait(); });
  EXPECT_EQ(failures.load(), threads);
  EXPECT_NO_THROW(check_no_thread_leak(process()));
  checked.count_down();
  for (auto& w : workers) w.join();
  server.kill(SIGCONT);
}

using leak_check = kernel_test;

TEST_F(leak_check, names_another_thread_still_running_as_a_client) {
  std::latch impersonating(1), checked(1);
  std::thread other([&] {
    impersonation as_c1(kernel(), client_token(0));
    impersonating.count_down();
    checked.wait();
  });
  impersonating.wait();
  try {
    check_no_thread_leak(process());
    ADD_FAILURE() << "a thread running as C1 was not reported";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("61000"), std::string::npos) << e.what();
  }
  checked.count_down();
  other.join();
  EXPECT_NO_THROW(check_no_thread_leak(process()));
}

// --- who may never be a client -------------------------------------------------------------------

using root_client = kernel_test;

TEST_F(root_client, kernel_backend_refuses_to_impersonate_uid_or_gid_0) {
  for (const identity& who : {identity::of(0, 61000, {61000}), identity::of(61000, 0, {0})}) {
    SCOPED_TRACE(to_string(who));
    EXPECT_EQ(kernel().impersonate(make_token(who)), switch_error::refused_root);
    EXPECT_TRUE(thread_is(kernel(), process(), false));
    EXPECT_THROW(impersonation(kernel(), make_token(who)), std::invalid_argument);
    EXPECT_TRUE(thread_is(kernel(), process(), false));
    {
      impersonation as_c1(kernel(), client_token(0));
      EXPECT_EQ(kernel().impersonate(make_token(who)), switch_error::refused_root);
      EXPECT_TRUE(thread_is(kernel(), client(0), true)) << "a refused switch changed the thread";
      token t = make_token(who);
      temporary_identity presenting(kernel(), &t);
      EXPECT_EQ(presenting.error(), switch_error::refused_root);
    }
    EXPECT_TRUE(thread_is(kernel(), process(), false));
  }
}

TEST_F(root_client, an_explicit_blanket_identity_of_uid_0_is_refused_unless_it_is_the_process) {
  downstream_process server(config());
  auto t = connect_to(server, io_bound);
  proxy p(kernel(), *t);
  if (process().uid != 0) {
    EXPECT_THROW(p.set_blanket(blanket_of(cloaking::none, impersonation_level::impersonate,
                                          identity::of(0, 0))),
                 std::invalid_argument);
  } else {
    EXPECT_THROW(p.set_blanket(blanket_of(cloaking::none, impersonation_level::impersonate,
                                          identity::of(0, 61000))),
                 std::invalid_argument);
  }
}

using client_range_config = leak_checked_test;

// The uid of a real account (not root), or nullopt when the passwd database has none.
std::optional<std::uint32_t> existing_user_uid() {
  setpwent();
  std::optional<std::uint32_t> found;
  while (passwd* pw = getpwent()) {
    if (pw->pw_uid != 0) {
      found = pw->pw_uid;
      break;
    }
  }
  endpwent();
  return found;
}

TEST_F(client_range_config, a_range_holding_a_real_users_uid_is_refused_by_the_programs) {
  auto uid = existing_user_uid();
  ASSERT_TRUE(uid) << "every Debian system has non-root accounts (daemon, nobody)";
  // gid 61000.. is free (checked by clients()), so only the uid can be the reason.
  std::string range = fmt::format("{}:{}:1", *uid, clients().first_gid);
  EXPECT_THROW(check_client_range(parse_client_range(range)), std::invalid_argument);
  for (const std::string& program :
       {std::string(CLOAK_VERIFY_PATH), downstream_process::default_program()}) {
    SCOPED_TRACE(program);
    std::vector<std::string> argv{program, "--clients", range};
    if (program != CLOAK_VERIFY_PATH) argv.insert(argv.end(), {"--socket", "/nonexistent/s.sock"});
    command_result r = run_command(argv);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find(fmt::format("uid {} belongs to an existing user", *uid)),
              std::string::npos)
        << r.output;
  }
}

}  // namespace
}  // namespace cloak::robustness
