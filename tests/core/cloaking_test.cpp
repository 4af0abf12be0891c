// docs/design.md §1 on both backends: which identity D sees for each cloaking mode, blanket and
// level.
#include <fmt/format.h>

#include <cerrno>
#include <cloak/proxy.hpp>
#include <optional>
#include <tuple>
#include <utility>

#include "support.hpp"

namespace cloak::test {
namespace {

using ::testing::AssertionFailure;
using ::testing::AssertionResult;
using ::testing::AssertionSuccess;

const std::byte payload[32]{};

std::string describe_failure(const call_result& r) {
  return fmt::format("call failed: {} (server status {})", to_string(r.error),
                     protocol::to_string(r.view.server_status));
}

// D saw `expected` by name (uid and gid: all the kernel tells a peer), not anonymously.
AssertionResult sees(proxy& p, const identity& expected) {
  call_result r = p.call(payload);
  if (!r.ok()) return AssertionFailure() << describe_failure(r);
  if (r.view.anonymous) return AssertionFailure() << "D saw an anonymous caller";
  if (!r.view.seen.same_principal(expected)) {
    return AssertionFailure() << "D saw " << to_string(r.view.seen) << ", expected "
                              << to_string(expected);
  }
  return AssertionSuccess();
}

AssertionResult fails_with(proxy& p, call_error expected) {
  call_result r = p.call(payload);
  if (r.ok()) return AssertionFailure() << "call succeeded: D saw " << to_string(r.view.seen);
  if (r.error != expected) {
    return AssertionFailure() << "call failed with '" << to_string(r.error) << "', expected '"
                              << to_string(expected) << "'";
  }
  return AssertionSuccess();
}

using cloaking_rules = backend_test;

// --- none ---------------------------------------------------------------------------------------

TEST_P(cloaking_rules, no_cloaking_presents_process_identity_without_token) {
  auto conn = connect(kind());
  proxy p(be(), *conn);
  EXPECT_TRUE(sees(p, process()));
}

TEST_P(cloaking_rules, no_cloaking_presents_process_identity_whatever_the_thread_token) {
  auto conn = connect(kind());
  proxy p(be(), *conn);
  impersonation as_c1(be(), client_token(0));
  EXPECT_TRUE(sees(p, process()));
  p.set_blanket(blanket_of(cloaking::none));
  EXPECT_TRUE(sees(p, process()));
  impersonation as_c2(be(), client_token(1));
  EXPECT_TRUE(sees(p, process()));
}

TEST_P(cloaking_rules, no_cloaking_under_identify_level_token_still_presents_process_identity) {
  auto conn = connect(kind());
  proxy p(be(), *conn);
  impersonation as_c1(be(), client_token(0, impersonation_level::identify));
  EXPECT_TRUE(sees(p, process()));
}

// --- static, set_blanket ------------------------------------------------------------------------

TEST_P(cloaking_rules, static_cloaking_ignores_later_token_change) {
  auto conn = connect(kind());
  proxy p(be(), *conn);
  {
    impersonation as_c1(be(), client_token(0));
    p.set_blanket(blanket_of(cloaking::static_));
    EXPECT_TRUE(sees(p, client(0)));
    impersonation as_c2(be(), client_token(1));
    EXPECT_TRUE(sees(p, client(0)));
  }
  EXPECT_TRUE(sees(p, client(0))) << "after revert";
  EXPECT_EQ(p.counters().contexts_established, 1u);
}

TEST_P(cloaking_rules, static_cloaking_captures_token_at_set_blanket_not_at_first_call) {
  auto conn = connect(kind());
  proxy p(be(), *conn);
  impersonation as_c1(be(), client_token(0));
  p.set_blanket(blanket_of(cloaking::static_));
  impersonation as_c2(be(), client_token(1));
  EXPECT_TRUE(sees(p, client(0)));
}

TEST_P(cloaking_rules,
       static_cloaking_set_without_token_presents_process_identity_while_impersonating) {
  auto conn = connect(kind());
  proxy p(be(), *conn);
  p.set_blanket(blanket_of(cloaking::static_));
  impersonation as_c1(be(), client_token(0));
  EXPECT_TRUE(sees(p, process()));
  impersonation as_c2(be(), client_token(1));
  EXPECT_TRUE(sees(p, process()));
}

TEST_P(cloaking_rules, static_set_blanket_again_recaptures_the_current_token) {
  auto conn = connect(kind());
  proxy p(be(), *conn);
  {
    impersonation as_c1(be(), client_token(0));
    p.set_blanket(blanket_of(cloaking::static_));
    EXPECT_TRUE(sees(p, client(0)));
    impersonation as_c2(be(), client_token(1));
    EXPECT_TRUE(sees(p, client(0)));
    p.set_blanket(blanket_of(cloaking::static_));
    EXPECT_TRUE(sees(p, client(1)));
  }
  EXPECT_TRUE(sees(p, client(1))) << "after revert";
  p.set_blanket(blanket_of(cloaking::static_));
  EXPECT_TRUE(sees(p, process())) << "re-captured with no token";
  EXPECT_EQ(p.counters().contexts_established, 3u);
}

// --- static, process default --------------------------------------------------------------------

TEST_P(cloaking_rules, static_cloaking_from_process_default_captures_token_at_first_call) {
  auto conn = connect(kind());
  proxy p(be(), *conn, security_defaults{cloaking::static_});
  {
    impersonation as_c1(be(), client_token(0));
    EXPECT_TRUE(sees(p, client(0))) << "first call";
    impersonation as_c2(be(), client_token(1));
    EXPECT_TRUE(sees(p, client(0)));
  }
  EXPECT_TRUE(sees(p, client(0))) << "after revert";
  EXPECT_EQ(p.counters().contexts_established, 1u);
}

TEST_P(cloaking_rules,
       static_cloaking_from_process_default_first_called_without_token_stays_process) {
  auto conn = connect(kind());
  proxy p(be(), *conn, security_defaults{cloaking::static_});
  EXPECT_TRUE(sees(p, process())) << "first call";
  impersonation as_c1(be(), client_token(0));
  EXPECT_TRUE(sees(p, process()));
}

// --- dynamic ------------------------------------------------------------------------------------

TEST_P(cloaking_rules, dynamic_cloaking_from_process_default_follows_the_token) {
  auto conn = connect(kind());
  proxy p(be(), *conn, security_defaults{cloaking::dynamic});
  EXPECT_TRUE(sees(p, process()));
  impersonation as_c1(be(), client_token(0));
  EXPECT_TRUE(sees(p, client(0)));
}

TEST_P(cloaking_rules, dynamic_cloaking_reuses_the_context_while_the_identity_is_unchanged) {
  auto conn = connect(kind());
  proxy p(be(), *conn);
  p.set_blanket(blanket_of(cloaking::dynamic));
  impersonation as_c1(be(), client_token(0));
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(sees(p, client(0)));
  // Impersonating the same client again is a new token but the same identity.
  impersonation again(be(), client_token(0));
  EXPECT_TRUE(sees(p, client(0)));
  EXPECT_EQ(p.counters().contexts_established, 1u);
  EXPECT_EQ(p.counters().probes, 6u);
}

// --- explicit identity --------------------------------------------------------------------------

TEST_P(cloaking_rules, explicit_identity_is_presented_whatever_the_thread_token) {
  auto conn = connect(kind());
  proxy p(be(), *conn);
  p.set_blanket(blanket_of(cloaking::none, impersonation_level::impersonate, client(2)));
  EXPECT_TRUE(sees(p, client(2)));
  impersonation as_c1(be(), client_token(0));
  EXPECT_TRUE(sees(p, client(2)));
  impersonation as_c2(be(), client_token(1));
  EXPECT_TRUE(sees(p, client(2)));
  EXPECT_EQ(p.counters().contexts_established, 1u);
}

TEST_P(cloaking_rules, explicit_identity_with_static_or_dynamic_cloaking_is_invalid_argument) {
  auto conn = connect(kind());
  proxy p(be(), *conn);
  impersonation as_c1(be(), client_token(0));
  for (auto mode : {cloaking::static_, cloaking::dynamic}) {
    EXPECT_THROW(p.set_blanket(blanket_of(mode, impersonation_level::impersonate, client(2))),
                 std::invalid_argument)
        << to_string(mode);
  }
  // A refused blanket leaves the proxy as it was: no cloaking, D sees P.
  EXPECT_EQ(p.current_blanket().mode, cloaking::none);
  EXPECT_FALSE(p.current_blanket().explicit_identity);
  EXPECT_TRUE(sees(p, process()));
}

// --- impersonation levels -----------------------------------------------------------------------

TEST_P(cloaking_rules,
       identify_level_token_with_static_cloaking_fails_with_bad_impersonation_level) {
  auto conn = connect(kind());
  proxy p(be(), *conn);
  impersonation as_c1(be(), client_token(0, impersonation_level::identify));
  p.set_blanket(blanket_of(cloaking::static_));
  EXPECT_TRUE(fails_with(p, call_error::bad_impersonation_level));
  EXPECT_TRUE(fails_with(p, call_error::bad_impersonation_level)) << "every later call too";
  EXPECT_EQ(p.counters().contexts_established, 0u) << "never silently with another identity";
}

TEST_P(cloaking_rules,
       identify_level_token_captured_by_static_process_default_fails_with_bad_impersonation_level) {
  auto conn = connect(kind());
  proxy p(be(), *conn, security_defaults{cloaking::static_});
  impersonation as_c1(be(), client_token(0, impersonation_level::identify));
  EXPECT_TRUE(fails_with(p, call_error::bad_impersonation_level));
  EXPECT_EQ(p.counters().contexts_established, 0u);
}

TEST_P(cloaking_rules,
       identify_level_token_with_dynamic_cloaking_fails_with_bad_impersonation_level) {
  auto conn = connect(kind());
  proxy p(be(), *conn);
  p.set_blanket(blanket_of(cloaking::dynamic));
  {
    impersonation as_c1(be(), client_token(0, impersonation_level::identify));
    EXPECT_TRUE(fails_with(p, call_error::bad_impersonation_level));
    EXPECT_EQ(p.counters().contexts_established, 0u) << "never silently with another identity";
  }
  EXPECT_TRUE(sees(p, process())) << "after revert the proxy works again";
  impersonation as_c1(be(), client_token(0));
  EXPECT_TRUE(sees(p, client(0))) << "and at impersonate level it cloaks";
}

TEST_P(cloaking_rules,
       access_check_at_impersonate_level_grants_own_file_and_denies_another_clients) {
  auto conn = connect(kind());
  proxy p(be(), *conn);
  p.set_blanket(blanket_of(cloaking::dynamic, impersonation_level::impersonate));
  impersonation as_c1(be(), client_token(0));

  access_outcome own;
  call_result r = p.access_check(client(0).uid, own);
  ASSERT_TRUE(r.ok()) << describe_failure(r);
  EXPECT_EQ(own.view.server_status, protocol::status::ok);
  EXPECT_TRUE(own.granted);
  EXPECT_EQ(own.error_number, 0);
  EXPECT_TRUE(own.view.seen.same_principal(client(0))) << to_string(own.view.seen);

  access_outcome other;
  r = p.access_check(client(1).uid, other);
  ASSERT_TRUE(r.ok()) << describe_failure(r);
  EXPECT_EQ(other.view.server_status, protocol::status::ok);
  EXPECT_FALSE(other.granted);
  EXPECT_EQ(other.error_number, EACCES);
}

TEST_P(cloaking_rules, access_check_at_identify_level_is_refused_though_d_learns_who) {
  auto conn = connect(kind());
  proxy p(be(), *conn);
  p.set_blanket(blanket_of(cloaking::dynamic, impersonation_level::identify));
  impersonation as_c1(be(), client_token(0));
  EXPECT_TRUE(sees(p, client(0)));
  access_outcome out;
  call_result r = p.access_check(client(0).uid, out);
  ASSERT_TRUE(r.ok()) << describe_failure(r);
  EXPECT_EQ(out.view.server_status, protocol::status::identify_only);
  EXPECT_FALSE(out.granted);
}

TEST_P(cloaking_rules, anonymous_level_hides_the_caller) {
  auto conn = connect(kind());
  proxy p(be(), *conn);
  p.set_blanket(blanket_of(cloaking::dynamic, impersonation_level::anonymous));
  impersonation as_c1(be(), client_token(0));
  call_result r = p.call(payload);
  ASSERT_TRUE(r.ok()) << describe_failure(r);
  EXPECT_TRUE(r.view.anonymous);
  EXPECT_EQ(r.view.seen.uid, protocol::anonymous_id);
  EXPECT_EQ(r.view.seen.gid, protocol::anonymous_id);
  EXPECT_EQ(r.view.level, impersonation_level::anonymous);

  access_outcome out;
  r = p.access_check(client(0).uid, out);
  ASSERT_TRUE(r.ok()) << describe_failure(r);
  EXPECT_EQ(out.view.server_status, protocol::status::anonymous_only);
  EXPECT_FALSE(out.granted);
  EXPECT_EQ(out.view.seen.uid, protocol::anonymous_id);
}

TEST_P(cloaking_rules, delegate_level_acts_as_the_caller_like_impersonate_locally) {
  auto conn = connect(kind());
  proxy p(be(), *conn);
  p.set_blanket(blanket_of(cloaking::dynamic, impersonation_level::delegate));
  impersonation as_c1(be(), client_token(0, impersonation_level::delegate));
  call_result r = p.call(payload);
  ASSERT_TRUE(r.ok()) << describe_failure(r);
  EXPECT_TRUE(r.view.seen.same_principal(client(0))) << to_string(r.view.seen);
  EXPECT_EQ(r.view.level, impersonation_level::delegate);

  access_outcome own, other;
  ASSERT_TRUE(p.access_check(client(0).uid, own).ok());
  EXPECT_TRUE(own.granted);
  ASSERT_TRUE(p.access_check(client(1).uid, other).ok());
  EXPECT_FALSE(other.granted);
  EXPECT_EQ(other.error_number, EACCES);
}

INSTANTIATE_TEST_SUITE_P(backends, cloaking_rules,
                         ::testing::Values(backend_kind::kernel, backend_kind::model),
                         backend_name);

// --- dynamic: C1 -> C2 -> revert -> C1 for each probe and cache policy ---------------------------

using dynamic_case =
    std::tuple<backend_kind, identity_probe, std::size_t /* lru capacity, 0: none */>;

class dynamic_cloaking : public leak_checked_test,
                         public ::testing::WithParamInterface<dynamic_case> {
 protected:
  void SetUp() override {
    if (kind() == backend_kind::kernel) {
      if (const auto& why = kernel_unavailable()) GTEST_SKIP() << *why;
    }
    leak_checked_test::SetUp();
  }
  backend_kind kind() const { return std::get<0>(GetParam()); }
  identity_backend& be() const { return backend(kind()); }
  dynamic_options options() const {
    std::size_t lru = std::get<2>(GetParam());
    return {std::get<1>(GetParam()),
            lru == 0 ? context_cache_policy::none() : context_cache_policy::lru(lru)};
  }
  bool caches() const { return std::get<2>(GetParam()) != 0; }
};

TEST_P(dynamic_cloaking, presents_the_current_token_on_every_call_c1_c2_revert_c1) {
  auto conn = connect(kind());
  proxy p(be(), *conn, {}, options());
  p.set_blanket(blanket_of(cloaking::dynamic));
  {
    impersonation as_c1(be(), client_token(0));
    EXPECT_TRUE(sees(p, client(0)));
    impersonation as_c2(be(), client_token(1));
    EXPECT_TRUE(sees(p, client(1)));
  }
  EXPECT_TRUE(sees(p, be().process_identity())) << "after revert";
  {
    impersonation as_c1(be(), client_token(0));
    EXPECT_TRUE(sees(p, client(0))) << "C1 again";
  }
  EXPECT_TRUE(sees(p, be().process_identity())) << "after a plain revert of C1";
}

TEST_P(dynamic_cloaking, establishes_a_context_per_change_and_reuses_one_only_with_lru) {
  auto conn = connect(kind());
  proxy p(be(), *conn, {}, options());
  p.set_blanket(blanket_of(cloaking::dynamic));
  std::uint64_t first_c1 = 0, second_c1 = 0;
  {
    impersonation as_c1(be(), client_token(0));
    call_result r = p.call(payload);
    ASSERT_TRUE(r.ok()) << describe_failure(r);
    first_c1 = r.view.context;
    impersonation as_c2(be(), client_token(1));
    ASSERT_TRUE(p.call(payload).ok());
  }
  ASSERT_TRUE(p.call(payload).ok());
  {
    impersonation as_c1(be(), client_token(0));
    call_result r = p.call(payload);
    ASSERT_TRUE(r.ok()) << describe_failure(r);
    second_c1 = r.view.context;
  }
  // none: C1, C2, P, C1 each need a new context. lru:4: C1 comes back from the cache.
  EXPECT_EQ(p.counters().contexts_established, caches() ? 3u : 4u);
  EXPECT_EQ(p.counters().cache_hits, caches() ? 1u : 0u);
  EXPECT_EQ(p.counters().probes, 4u);
  if (caches()) {
    EXPECT_EQ(second_c1, first_c1) << "lru reuses C1's first context";
  } else {
    EXPECT_NE(second_c1, first_c1) << "none never reuses a context";
  }
}

TEST_P(dynamic_cloaking, re_impersonating_the_same_client_keeps_its_context) {
  auto conn = connect(kind());
  proxy p(be(), *conn, {}, options());
  p.set_blanket(blanket_of(cloaking::dynamic));
  std::uint64_t first = 0;
  {
    impersonation as_c1(be(), client_token(0));
    call_result r = p.call(payload);
    ASSERT_TRUE(r.ok()) << describe_failure(r);
    first = r.view.context;
  }
  // A new token for the same client bumps the generation but is no change of identity.
  impersonation again(be(), client_token(0));
  call_result r = p.call(payload);
  ASSERT_TRUE(r.ok()) << describe_failure(r);
  EXPECT_TRUE(r.view.seen.same_principal(client(0)));
  EXPECT_EQ(r.view.context, first);
  EXPECT_EQ(p.counters().contexts_established, 1u);
}

TEST_P(dynamic_cloaking,
       token_tracking_makes_a_new_context_when_the_same_client_is_impersonated_again) {
  auto conn = connect(kind());
  dynamic_options o = options();
  o.tracking = identity_tracking::token;
  proxy p(be(), *conn, {}, o);
  p.set_blanket(blanket_of(cloaking::dynamic));
  std::uint64_t first = 0;
  {
    impersonation as_c1(be(), client_token(0));
    call_result r = p.call(payload);
    ASSERT_TRUE(r.ok()) << describe_failure(r);
    first = r.view.context;
    r = p.call(payload);  // the same token: nothing changed
    ASSERT_TRUE(r.ok()) << describe_failure(r);
    EXPECT_EQ(r.view.context, first);
  }
  // Windows RPC revises the context whenever the token's ModifiedId changes, even back to the same
  // identity: a cached context of the same client is not reused either.
  impersonation again(be(), client_token(0));
  call_result r = p.call(payload);
  ASSERT_TRUE(r.ok()) << describe_failure(r);
  EXPECT_TRUE(r.view.seen.same_principal(client(0)));
  EXPECT_NE(r.view.context, first);
  EXPECT_EQ(p.counters().contexts_established, 2u);
  EXPECT_EQ(p.counters().cache_hits, 0u);
}

TEST_P(cloaking_rules,
       per_message_dynamic_cloaking_presents_each_call_s_credentials_without_contexts) {
  auto conn = connect(kind());
  dynamic_options per_message;
  per_message.authentication = dynamic_authentication::per_message;
  proxy p(be(), *conn, {}, per_message);
  p.set_blanket(blanket_of(cloaking::dynamic));
  {
    impersonation as_c1(be(), client_token(0));
    EXPECT_TRUE(sees(p, client(0)));
    impersonation as_c2(be(), client_token(1));
    EXPECT_TRUE(sees(p, client(1)));
  }
  EXPECT_TRUE(sees(p, be().process_identity())) << "after revert";
  EXPECT_EQ(p.counters().contexts_established, 0u);
  EXPECT_EQ(p.counters().probes, 0u);
  impersonation identify_only(be(), client_token(0, impersonation_level::identify));
  EXPECT_EQ(p.call(payload).error, call_error::bad_impersonation_level);
}

// Delegates to a real connection, but refuses the next establish when told to, as a downstream that
// has reached its context limit does.
class refusing_connection final : public connection {
 public:
  explicit refusing_connection(std::unique_ptr<connection> inner) : inner_(std::move(inner)) {}
  bool refuse_next_establish = false;

  call_error connect() noexcept override { return inner_->connect(); }
  bool connected() const noexcept override { return inner_->connected(); }
  void disconnect() noexcept override { inner_->disconnect(); }
  std::uint64_t epoch() const noexcept override { return inner_->epoch(); }
  call_error establish(const presentation& who, std::uint64_t release,
                       downstream_view& out) noexcept override {
    if (std::exchange(refuse_next_establish, false)) {
      out.server_status = protocol::status::too_many_contexts;
      return call_error::refused;
    }
    call_error e = inner_->establish(who, release, out);
    report_ = inner_->last_establish();
    return e;
  }
  call_error call(std::uint64_t context, impersonation_level level, std::span<const std::byte> data,
                  downstream_view& out) noexcept override {
    return inner_->call(context, level, data, out);
  }
  call_error release(std::uint64_t context) noexcept override { return inner_->release(context); }
  call_error access_check(std::uint64_t context, std::uint32_t target_uid,
                          access_outcome& out) noexcept override {
    return inner_->access_check(context, target_uid, out);
  }

 private:
  std::unique_ptr<connection> inner_;
};

TEST_P(dynamic_cloaking, never_presents_an_earlier_identity_after_a_refused_establish) {
  refusing_connection conn(connect(kind()));
  proxy p(be(), conn, {}, options());
  p.set_blanket(blanket_of(cloaking::dynamic));
  impersonation as_c1(be(), client_token(0));
  EXPECT_TRUE(sees(p, client(0)));
  impersonation as_c2(be(), client_token(1));
  conn.refuse_next_establish = true;
  EXPECT_TRUE(fails_with(p, call_error::refused));
  // The identity changed and no context was made for it: the next call must establish one, not
  // fall back on C1's.
  EXPECT_TRUE(sees(p, client(1)));
}

std::string dynamic_case_name(const ::testing::TestParamInfo<dynamic_case>& info) {
  auto [kind, probe, lru] = info.param;
  return fmt::format("{}_probe_{}_cache_{}", to_string(kind), to_string(probe),
                     lru == 0 ? std::string("none") : fmt::format("lru{}", lru));
}

INSTANTIATE_TEST_SUITE_P(
    backends, dynamic_cloaking,
    ::testing::Combine(::testing::Values(backend_kind::kernel, backend_kind::model),
                       ::testing::Values(identity_probe::kernel, identity_probe::generation),
                       ::testing::Values(std::size_t{0}, std::size_t{4})),
    dynamic_case_name);

}  // namespace
}  // namespace cloak::test
