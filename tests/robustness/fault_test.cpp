// A downstream that dies or stalls during calls: the call fails with a clear error within the I/O
// bound, nothing hangs, and after a restart each proxy presents the identity its cloaking rule
// says.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cloak/process.hpp>
#include <filesystem>
#include <semaphore>

#include "support.hpp"

namespace cloak::robustness {
namespace {

const std::byte payload[64]{};
constexpr auto io_bound = 500ms;  // the connections' io_timeout in these tests

// Calls through `p` as C1 until one fails; `midway` is released after some calls succeed so another
// thread can break the downstream while calls are in flight.
call_result call_until_failure(identity_backend& kernel, proxy& p, std::binary_semaphore& midway) {
  impersonation as_c1(kernel, client_token(0));
  for (int i = 0; i < 1'000'000; ++i) {
    call_result r = p.call(payload);
    if (!r.ok()) return r;
    if (i == 50) midway.release();
  }
  ADD_FAILURE() << "a million calls succeeded on a downstream that was broken after 50";
  return {};
}

using downstream_faults = kernel_test;

TEST_F(downstream_faults, killed_during_calls_fails_with_downstream_unavailable) {
  downstream_process server(config());
  auto t = connect_to(server, io_bound);
  proxy p(kernel(), *t);
  p.set_blanket(blanket_of(cloaking::dynamic));
  std::binary_semaphore midway(0);
  std::thread killer([&] {
    midway.acquire();
    server.kill(SIGKILL);
  });
  call_result r = within(watchdog, [&] { return call_until_failure(kernel(), p, midway); });
  killer.join();
  EXPECT_EQ(r.error, call_error::downstream_unavailable) << to_string(r.error);

  // Later calls fail the same way at once (nothing listens), and never as a hang.
  r = within(watchdog, [&] {
    impersonation as_c1(kernel(), client_token(0));
    return p.call(payload);
  });
  EXPECT_EQ(r.error, call_error::downstream_unavailable) << to_string(r.error);
}

TEST_F(downstream_faults, stalled_during_calls_times_out_within_the_io_bound) {
  downstream_process server(config());
  auto t = connect_to(server, io_bound);
  proxy p(kernel(), *t);
  p.set_blanket(blanket_of(cloaking::dynamic));
  std::binary_semaphore midway(0);
  std::thread stopper([&] {
    midway.acquire();
    server.kill(SIGSTOP);
  });
  call_result r = within(watchdog, [&] { return call_until_failure(kernel(), p, midway); });
  stopper.join();
  EXPECT_EQ(r.error, call_error::timeout) << to_string(r.error);

  // A new connection to the stalled server is accepted by the kernel but never answered.
  auto fresh = connect_to(server, io_bound);
  proxy q(kernel(), *fresh);
  r = within(watchdog, [&] { return q.call(payload); });
  EXPECT_EQ(r.error, call_error::timeout) << to_string(r.error);

  // Once it runs again, the same proxy reconnects (the timed-out connection was dropped) and works.
  server.kill(SIGCONT);
  r = within(watchdog, [&] {
    impersonation as_c1(kernel(), client_token(0));
    return p.call(payload);
  });
  ASSERT_TRUE(r.ok()) << to_string(r.error);
  EXPECT_TRUE(r.view.seen.same_principal(client(0))) << to_string(r.view.seen);
  EXPECT_GE(p.counters().reconnects, 1u);
}

TEST_F(downstream_faults, a_call_on_a_connection_the_server_closed_fails_and_the_next_reconnects) {
  downstream_process server(config());
  auto t = connect_to(server, io_bound);
  proxy p(kernel(), *t);
  ASSERT_TRUE(p.call(payload).ok());
  server.kill(SIGKILL);
  server.start();
  // The first call still goes out on the dead connection: it fails, clearly, and drops it.
  call_result r = within(watchdog, [&] { return p.call(payload); });
  EXPECT_EQ(r.error, call_error::downstream_unavailable) << to_string(r.error);
  r = within(watchdog, [&] { return p.call(payload); });
  ASSERT_TRUE(r.ok()) << to_string(r.error);
  EXPECT_TRUE(r.view.seen.same_principal(process()));
}

TEST_F(downstream_faults, starting_the_downstream_from_a_thread_running_as_a_client_is_refused) {
  downstream_process server(config());
  server.kill(SIGKILL);
  {
    impersonation as_c1(kernel(), client_token(0));
    EXPECT_THROW(server.start(), std::logic_error) << "the server would have run as C1";
  }
  server.start();
  EXPECT_TRUE(serves_correctly(kernel(), server));
}

TEST_F(downstream_faults, a_harness_killed_without_stopping_its_server_leaves_nothing_behind) {
  // A stand-in harness (a shell) starts cloak-downstream in a private directory, as
  // downstream_process does, and is then SIGKILLed: it never stops its server.
  temp_dir parent;
  std::string dir = parent.path() + "/run";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  // The shell hands its readiness descriptor (3) on to the server and says the server's pid there.
  std::string script =
      "\"$0\" --socket \"$1\" --parent-pid $$ --ready-fd 3 --remove-dir-when-orphaned "
      "--clients \"$2\" & echo \"pid $!\" >&3; wait";
  std::string clients_arg =
      fmt::format("{}:{}:{}", clients().first_uid, clients().first_gid, clients().count);
  os::spawn_options shell;
  shell.argv = {
      "/bin/sh",  "-c", script, downstream_process::default_program(), dir + "/downstream.sock",
      clients_arg};
  shell.readiness = true;
  os::child_process harness(shell);

  // "pid N" and "ready" (in either order), bounded.
  bool saw_pid = false, saw_ready = false;
  os::readiness r =
      harness.await_ready(os::deadline(std::chrono::seconds(10)), [&](std::string_view line) {
        saw_pid = saw_pid || line.starts_with("pid ");
        saw_ready = saw_ready || line == "ready";
        return saw_pid && saw_ready;
      });
  harness.stop(std::chrono::seconds(2), SIGKILL);
  std::string got;
  for (const auto& line : r.lines) got += line + "\n";
  ASSERT_EQ(r.how, os::readiness::end::last_line) << "the server did not start: " << got;
  pid_t server = static_cast<pid_t>(std::stol(r.after("pid ")));

  // It notices its harness is gone and exits (not our child: watched through a pidfd).
  EXPECT_TRUE(os::wait_gone(server, os::deadline(std::chrono::seconds(10))))
      << "cloak-downstream outlived its harness by 10 s";
  EXPECT_FALSE(std::filesystem::exists(dir)) << "its private directory was left behind";
  if (std::filesystem::exists(dir)) os::signal_process(server, SIGKILL);
}

TEST_F(downstream_faults, the_server_outlives_the_thread_that_started_it) {
  std::unique_ptr<downstream_process> server;
  std::thread([&] { server = std::make_unique<downstream_process>(config()); }).join();
  // The starting thread is gone; the harness process is not: the server keeps serving.
  EXPECT_TRUE(
      within(watchdog, [&] { return static_cast<bool>(serves_correctly(kernel(), *server)); }));
  EXPECT_TRUE(server->running());
}

// --- restart: which identity a proxy re-establishes its context under --------------------------

using downstream_restart = kernel_test;

TEST_F(downstream_restart, static_proxy_reestablishes_under_the_identity_it_captured) {
  with_proxy_to_fresh_server(io_bound, [&](downstream_process& server, proxy& p) {
    {
      impersonation as_c1(kernel(), client_token(0));
      p.set_blanket(blanket_of(cloaking::static_));  // captures C1
      call_result r = p.call(payload);
      ASSERT_TRUE(r.ok()) << to_string(r.error);
      EXPECT_TRUE(r.view.seen.same_principal(client(0)));
    }
    server.kill(SIGKILL);  // signalling and starting P's child happen as P
    {
      impersonation as_c2(kernel(), client_token(1));
      EXPECT_EQ(p.call(payload).error, call_error::downstream_unavailable);
    }
    server.start();
    impersonation as_c2(kernel(), client_token(1));
    call_result r = p.call(payload);
    ASSERT_TRUE(r.ok()) << to_string(r.error);
    EXPECT_TRUE(r.view.seen.same_principal(client(0)))
        << "after the restart D saw " << to_string(r.view.seen)
        << "; the blanket captured C1 (the thread is C2)";
    EXPECT_EQ(p.counters().contexts_established, 2u);
    EXPECT_EQ(p.counters().reconnects, 1u);
    // The captured identity was presented on a temporary switch; the thread is still C2.
    EXPECT_EQ(kernel().read_thread_identity(), client(1));
  });
}

TEST_F(downstream_restart, static_proxy_from_the_process_default_keeps_the_first_call_identity) {
  downstream_process server(config());
  auto t = connect_to(server, io_bound);
  within(watchdog, [&] {
    proxy p(kernel(), *t, security_defaults{cloaking::static_});
    {
      impersonation as_c1(kernel(), client_token(0));
      ASSERT_TRUE(p.call(payload).ok());  // the first call captures C1
    }
    server.kill(SIGKILL);
    EXPECT_EQ(p.call(payload).error, call_error::downstream_unavailable);
    server.start();
    impersonation as_c3(kernel(), client_token(2));
    call_result r = p.call(payload);
    ASSERT_TRUE(r.ok()) << to_string(r.error);
    EXPECT_TRUE(r.view.seen.same_principal(client(0)))
        << "after the restart D saw " << to_string(r.view.seen);
  });
}

TEST_F(downstream_restart, dynamic_proxy_reestablishes_under_the_current_identity) {
  with_proxy_to_fresh_server(io_bound, [&](downstream_process& server, proxy& p) {
    p.set_blanket(blanket_of(cloaking::dynamic));
    {
      impersonation as_c1(kernel(), client_token(0));
      call_result r = p.call(payload);
      ASSERT_TRUE(r.ok()) << to_string(r.error);
      EXPECT_TRUE(r.view.seen.same_principal(client(0)));
    }
    server.kill(SIGKILL);
    {
      impersonation as_c1(kernel(), client_token(0));
      EXPECT_EQ(p.call(payload).error, call_error::downstream_unavailable);
    }
    server.start();
    {
      impersonation as_c2(kernel(), client_token(1));
      call_result r = p.call(payload);
      ASSERT_TRUE(r.ok()) << to_string(r.error);
      EXPECT_TRUE(r.view.seen.same_principal(client(1)))
          << "after the restart D saw " << to_string(r.view.seen);
    }
    call_result r = p.call(payload);
    ASSERT_TRUE(r.ok()) << to_string(r.error);
    EXPECT_TRUE(r.view.seen.same_principal(process()))
        << "reverted: D saw " << to_string(r.view.seen);
  });
}

// The model's restart (drop_sessions) is noticed before the call: the next call reconnects at once.
class model_restart : public leak_checked_test {
 protected:
  std::unique_ptr<identity_backend> model_ = make_model_backend(identity::of(4242, 4242));
  model_downstream downstream_;
  identity_backend& model() { return *model_; }
};

TEST_F(model_restart, static_proxy_reestablishes_under_the_identity_it_captured) {
  auto t = make_inproc_connection(downstream_, model());
  proxy p(model(), *t);
  {
    impersonation as_c1(model(), client_token(0));
    p.set_blanket(blanket_of(cloaking::static_));
    ASSERT_TRUE(p.call(payload).ok());
  }
  impersonation as_c2(model(), client_token(1));
  downstream_.drop_sessions();
  call_result r = p.call(payload);
  ASSERT_TRUE(r.ok()) << to_string(r.error);
  EXPECT_TRUE(r.view.seen.same_principal(client(0)))
      << "after the restart D saw " << to_string(r.view.seen);
  EXPECT_EQ(p.counters().reconnects, 1u);
  EXPECT_EQ(p.counters().contexts_established, 2u);
  EXPECT_EQ(model().read_thread_identity(), client(1));
}

TEST_F(model_restart, dynamic_proxy_reestablishes_under_the_current_identity) {
  auto t = make_inproc_connection(downstream_, model());
  proxy p(model(), *t);
  p.set_blanket(blanket_of(cloaking::dynamic));
  {
    impersonation as_c1(model(), client_token(0));
    ASSERT_TRUE(p.call(payload).ok());
    downstream_.drop_sessions();
  }
  impersonation as_c2(model(), client_token(1));
  call_result r = p.call(payload);
  ASSERT_TRUE(r.ok()) << to_string(r.error);
  EXPECT_TRUE(r.view.seen.same_principal(client(1)))
      << "after the restart D saw " << to_string(r.view.seen);
  EXPECT_EQ(p.counters().reconnects, 1u);
}

TEST_F(model_restart, a_context_from_before_the_restart_is_unknown_to_the_new_session) {
  auto t = make_inproc_connection(downstream_, model());
  downstream_view v;
  ASSERT_EQ(t->connect(), call_error::ok);
  ASSERT_EQ(t->establish(presentation{model(), nullptr, impersonation_level::impersonate}, 0, v),
            call_error::ok);
  std::uint64_t old = v.context;
  downstream_.drop_sessions();
  EXPECT_EQ(t->call(old, impersonation_level::impersonate, payload, v),
            call_error::downstream_unavailable);
  ASSERT_EQ(t->connect(), call_error::ok);
  EXPECT_EQ(t->call(old, impersonation_level::impersonate, payload, v), call_error::refused);
  EXPECT_EQ(v.server_status, protocol::status::unknown_context);
}

}  // namespace
}  // namespace cloak::robustness
