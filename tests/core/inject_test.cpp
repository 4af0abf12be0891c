// CLOAK_INJECT_PATH: the spin goes where the path says, as often as the design makes that path run.
// Counts of spins taken, never times (docs/reading.md, "Slowing the candidate on purpose").
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cloak/inject.hpp>
#include <cloak/proxy.hpp>
#include <stdexcept>
#include <string>

#include "support.hpp"

namespace cloak::test {
namespace {

const std::byte payload[32]{};
constexpr int calls = 10;

// 1 ns: the calibrated spin is a handful of iterations, so the tests count without waiting.
void arm(inject_path p, inject_role role = inject_role::middle) {
  arm_injection(injection{1, p}, role);
}

TEST(injection_settings, the_path_defaults_to_the_whole_call) {
  injection unset = injection::parse(nullptr, nullptr);
  EXPECT_EQ(unset.ns, 0);
  EXPECT_EQ(unset.path, inject_path::call);
  injection slowed = injection::parse("500", "");
  EXPECT_EQ(slowed.ns, 500);
  EXPECT_EQ(slowed.path, inject_path::call);
}

TEST(injection_settings, every_path_reads_back_by_its_name) {
  for (inject_path p : {inject_path::call, inject_path::probe, inject_path::switch_,
                        inject_path::establish, inject_path::accept}) {
    EXPECT_EQ(parse_inject_path(to_string(p)), p);
  }
  EXPECT_EQ(to_string(inject_path::switch_), "switch");
}

TEST(injection_settings, a_bad_path_is_refused_naming_the_variable_and_its_choices) {
  try {
    injection::parse("500", "establishment");
    FAIL() << "CLOAK_INJECT_PATH=establishment was accepted";
  } catch (const std::invalid_argument& e) {
    std::string why = e.what();
    EXPECT_NE(why.find("CLOAK_INJECT_PATH=establishment"), std::string::npos) << why;
    EXPECT_NE(why.find("call, probe, switch, establish, accept"), std::string::npos) << why;
  }
  // Checked even when nothing is slowed: the typo would otherwise surface only on the day it
  // counts.
  EXPECT_THROW(injection::parse(nullptr, "Probe"), std::invalid_argument);
}

TEST(injection_settings, a_bad_ns_is_refused) {
  EXPECT_THROW(injection::parse("5x", nullptr), std::invalid_argument);
  EXPECT_THROW(injection::parse("100000001", nullptr), std::invalid_argument);
}

TEST(injection_settings, a_downstream_arms_only_accept) {
  arm(inject_path::probe, inject_role::downstream);
  EXPECT_FALSE(injection_armed(inject_path::probe));
  arm(inject_path::accept, inject_role::downstream);
  EXPECT_TRUE(injection_armed(inject_path::accept));
  arm(inject_path::accept, inject_role::middle);
  EXPECT_TRUE(injection_armed(inject_path::accept));
  arm_injection(injection{0, inject_path::probe}, inject_role::middle);  // 0 ns: nothing slowed
  EXPECT_FALSE(injection_armed(inject_path::probe));
  disarm_injection();
  EXPECT_FALSE(injection_armed(inject_path::accept));
}

class injected_paths : public backend_test {
 protected:
  void TearDown() override {
    disarm_injection();
    backend_test::TearDown();
  }
  // `calls` calls through `p`, the thread switching between two clients before each when
  // `switching` (the first to client 1: a change from client 0 or P); the spins at `path` they
  // took.
  std::uint64_t spins_over_calls(proxy& p, inject_path path, bool switching) {
    std::uint64_t before = injected_spins(path);
    for (int i = 0; i < calls; ++i) {
      if (switching) {
        EXPECT_EQ(be().impersonate(client_token(static_cast<std::uint32_t>((i + 1) % 2))),
                  switch_error::ok);
      }
      call_result r = p.call(payload);
      EXPECT_TRUE(r.ok()) << to_string(r.error);
    }
    return injected_spins(path) - before;
  }
};

TEST_P(injected_paths, nothing_spins_when_nothing_is_armed) {
  disarm_injection();
  auto t = connect(kind());
  proxy p(be(), *t, {}, dynamic_options{});
  p.set_blanket(blanket_of(cloaking::dynamic));
  ASSERT_TRUE(p.call(payload).ok());
  EXPECT_EQ(spins_over_calls(p, inject_path::establish, true), 0u);
  be().revert();
}

TEST_P(injected_paths, probe_spins_once_per_call_of_a_dynamic_proxy_and_never_without_cloaking) {
  arm(inject_path::probe);
  // Connected first: the first connection starts cloak-downstream, which no impersonating thread
  // may do (a test run alone under ctest starts its own).
  auto t1 = connect(kind()), t2 = connect(kind());
  ASSERT_EQ(be().impersonate(client_token(0)), switch_error::ok);
  proxy dynamic(be(), *t1, {}, dynamic_options{});
  dynamic.set_blanket(blanket_of(cloaking::dynamic));
  proxy none(be(), *t2);
  none.set_blanket(blanket_of(cloaking::none));
  ASSERT_TRUE(dynamic.call(payload).ok());
  ASSERT_TRUE(none.call(payload).ok());
  EXPECT_EQ(spins_over_calls(dynamic, inject_path::probe, false),
            static_cast<std::uint64_t>(calls));
  EXPECT_EQ(spins_over_calls(none, inject_path::probe, false), 0u);
  be().revert();
}

TEST_P(injected_paths, establish_spins_once_per_new_context_and_never_on_a_steady_static_proxy) {
  arm(inject_path::establish);
  // Connected first: the first connection starts cloak-downstream, which no impersonating thread
  // may do (a test run alone under ctest starts its own).
  auto t1 = connect(kind()), t2 = connect(kind());
  ASSERT_EQ(be().impersonate(client_token(0)), switch_error::ok);
  proxy fixed(be(), *t1);
  fixed.set_blanket(blanket_of(cloaking::static_));
  std::uint64_t before = injected_spins(inject_path::establish);
  ASSERT_TRUE(fixed.call(payload).ok());  // its one context
  EXPECT_EQ(injected_spins(inject_path::establish) - before, 1u);
  EXPECT_EQ(spins_over_calls(fixed, inject_path::establish, false), 0u);
  // Dynamic, no cache, a different client before every call: a new context every call.
  proxy dynamic(be(), *t2, {}, dynamic_options{});
  dynamic.set_blanket(blanket_of(cloaking::dynamic));
  ASSERT_TRUE(dynamic.call(payload).ok());
  dynamic.reset_counters();
  EXPECT_EQ(spins_over_calls(dynamic, inject_path::establish, true),
            static_cast<std::uint64_t>(calls));
  EXPECT_EQ(dynamic.counters().contexts_established, static_cast<std::uint64_t>(calls));
  be().revert();
}

TEST_P(injected_paths, switch_spins_once_per_impersonate_and_a_dynamic_proxy_adds_none) {
  arm(inject_path::switch_);
  auto t = connect(kind());
  proxy dynamic(be(), *t, {}, dynamic_options{});
  dynamic.set_blanket(blanket_of(cloaking::dynamic));
  ASSERT_TRUE(dynamic.call(payload).ok());
  // The pattern's one impersonate per call; the proxy presents the token the thread has, so it
  // switches nothing itself, even when it establishes a new context.
  EXPECT_EQ(spins_over_calls(dynamic, inject_path::switch_, true),
            static_cast<std::uint64_t>(calls));
  std::uint64_t before = injected_spins(inject_path::switch_);
  be().revert();  // reverting is not an impersonate
  EXPECT_EQ(injected_spins(inject_path::switch_) - before, 0u);
}

TEST_P(injected_paths, accept_spins_once_per_context_on_the_downstreams_side) {
  arm(inject_path::accept);
  auto t = connect(kind());
  proxy dynamic(be(), *t, {}, dynamic_options{});
  dynamic.set_blanket(blanket_of(cloaking::dynamic));
  ASSERT_TRUE(dynamic.call(payload).ok());
  // The model's downstream accepts on this thread; cloak-downstream in its own process, which arms
  // accept from its own environment (a_downstream_refuses_a_bad_path_in_its_environment): here it
  // was started without one, and the caller's side takes none.
  std::uint64_t want = kind() == backend_kind::model ? calls : 0;
  EXPECT_EQ(spins_over_calls(dynamic, inject_path::accept, true), want);
  be().revert();
}

INSTANTIATE_TEST_SUITE_P(backends, injected_paths,
                         ::testing::Values(backend_kind::kernel, backend_kind::model),
                         backend_name);

// cloak-downstream reads CLOAK_INJECT_NS and CLOAK_INJECT_PATH from the environment it inherits,
// and a bad value stops it before it serves anything, with the reason.
TEST(injection_downstream, a_downstream_refuses_a_bad_path_in_its_environment) {
  ASSERT_EQ(::setenv("CLOAK_INJECT_PATH", "nowhere", 1), 0);
  std::string why;
  try {
    downstream_process server(client_downstream_config());
  } catch (const std::exception& e) {
    why = e.what();
  }
  ::unsetenv("CLOAK_INJECT_PATH");
  EXPECT_NE(why.find("CLOAK_INJECT_PATH=nowhere"), std::string::npos) << "started, or: " << why;
}

}  // namespace
}  // namespace cloak::test
