// Thread tokens: the impersonation guard, per-thread credentials, the identity probes, and the
// checks that keep fake clients away from real accounts.
#include <fmt/format.h>
#include <grp.h>
#include <pwd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cloak/auth.hpp>
#include <cloak/enum_names.hpp>
#include <cloak/proxy.hpp>
#include <fstream>
#include <optional>
#include <semaphore>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support.hpp"

namespace cloak::test {
namespace {

const std::byte payload[16]{};

// What the kernel says about the calling thread, through the plain libc calls (each one syscall).
identity libc_identity() {
  identity who;
  who.uid = ::getuid();
  who.gid = ::getgid();
  int n = ::getgroups(static_cast<int>(max_groups), reinterpret_cast<gid_t*>(who.groups.data()));
  who.group_count = n < 0 ? 0 : static_cast<std::uint32_t>(n);
  return who;
}

// The thread is `who`, by the backend's probe and (kernel backend) by every id the kernel keeps.
void expect_thread_is(identity_backend& b, const identity& who, const char* where) {
  SCOPED_TRACE(where);
  EXPECT_EQ(b.read_thread_identity(), who);
  if (b.kind() != backend_kind::kernel) return;
  EXPECT_EQ(libc_identity(), who);
  EXPECT_EQ(::geteuid(), who.uid);
  EXPECT_EQ(::getegid(), who.gid);
}

using impersonation_guard = backend_test;

TEST_P(impersonation_guard, gives_the_thread_the_token_and_reverts_at_scope_end) {
  EXPECT_FALSE(be().thread_has_token());
  {
    impersonation as_c1(be(), client_token(0));
    ASSERT_TRUE(be().thread_has_token());
    EXPECT_EQ(be().thread_token()->who, client(0));
    expect_thread_is(be(), client(0), "inside the guard");
  }
  EXPECT_FALSE(be().thread_has_token());
  expect_thread_is(be(), process(), "after the guard");
}

TEST_P(impersonation_guard, reverts_when_the_scope_throws) {
  bool caught = false;
  try {
    impersonation as_c1(be(), client_token(0));
    expect_thread_is(be(), client(0), "before the throw");
    throw std::runtime_error("thrown while impersonating");
  } catch (const std::runtime_error&) {
    caught = true;
  }
  ASSERT_TRUE(caught);
  EXPECT_FALSE(be().thread_has_token());
  expect_thread_is(be(), process(), "after the exception");
}

TEST_P(impersonation_guard, nested_guards_restore_the_previous_token) {
  token c1 = client_token(0, impersonation_level::identify);
  {
    impersonation as_c1(be(), c1);
    {
      impersonation as_c2(be(), client_token(1));
      expect_thread_is(be(), client(1), "inner guard");
      try {
        impersonation as_c3(be(), client_token(2));
        expect_thread_is(be(), client(2), "innermost guard");
        throw std::runtime_error("thrown three guards deep");
      } catch (const std::runtime_error&) {
      }
      expect_thread_is(be(), client(1), "after the innermost guard threw");
    }
    // Exactly the token it had: same identity, same level, same token object id.
    ASSERT_TRUE(be().thread_has_token());
    EXPECT_EQ(be().thread_token()->who, c1.who);
    EXPECT_EQ(be().thread_token()->level, impersonation_level::identify);
    EXPECT_EQ(be().thread_token()->id, c1.id);
    expect_thread_is(be(), client(0), "after the inner guard");
  }
  EXPECT_FALSE(be().thread_has_token());
  expect_thread_is(be(), process(), "after both guards");
}

TEST_P(impersonation_guard, every_impersonate_and_revert_bumps_the_thread_generation) {
  std::uint64_t g0 = be().thread_generation(), inside = 0;
  {
    impersonation as_c1(be(), client_token(0));
    inside = be().thread_generation();
    EXPECT_GT(inside, g0);
  }
  std::uint64_t g1 = be().thread_generation();
  EXPECT_GT(g1, inside) << "revert counts as a change";
  be().revert();  // reverting with no token changes nothing
  EXPECT_EQ(be().thread_generation(), g1);
}

TEST_P(impersonation_guard, impersonating_uid_or_gid_0_is_refused) {
  identity root_uid = identity::of(0, client(0).gid, {client(0).gid});
  identity root_gid = identity::of(client(0).uid, 0, {0});
  for (const identity& who : {root_uid, root_gid}) {
    EXPECT_THROW({ impersonation bad(be(), make_token(who)); }, std::invalid_argument)
        << to_string(who);
    EXPECT_FALSE(be().thread_has_token());
    expect_thread_is(be(), process(), "refused with no token");
  }
  impersonation as_c1(be(), client_token(0));
  for (const identity& who : {root_uid, root_gid}) {
    EXPECT_THROW({ impersonation bad(be(), make_token(who)); }, std::invalid_argument)
        << to_string(who);
    ASSERT_TRUE(be().thread_has_token());
    EXPECT_EQ(be().thread_token()->who, client(0));
    expect_thread_is(be(), client(0), "refused while impersonating C1: still C1");
  }
  EXPECT_EQ(be().impersonate(make_token(root_uid)), switch_error::refused_root);
  expect_thread_is(be(), client(0), "refused by the backend directly");
}

TEST_P(impersonation_guard, impersonation_changes_only_the_calling_thread) {
  // The second thread starts before the first impersonates: a thread created while impersonating
  // would inherit the creator's kernel credentials (clone copies them).
  std::binary_semaphore first_is_c1{0};
  const pid_t main_tid = static_cast<pid_t>(syscall(SYS_gettid));

  identity other_before, other_during, other_after;
  bool other_had_token = true;
  kernel_credentials other_kernel{};
  std::string main_status;
  std::thread other([&] {
    try {
      if (!first_is_c1.try_acquire_for(std::chrono::seconds(10))) {
        ADD_FAILURE() << "the first thread never impersonated";
        return;
      }
      other_had_token = be().thread_has_token();
      other_before = be().read_thread_identity();
      other_kernel = read_kernel_credentials();
      if (kind() == backend_kind::kernel) {
        // The kernel's own record of the first thread, read while it impersonates C1.
        std::ifstream status(fmt::format("/proc/self/task/{}/status", main_tid));
        for (std::string line; std::getline(status, line);) {
          if (line.starts_with("Uid:") || line.starts_with("Gid:")) main_status += line + "\n";
        }
      }
      {
        impersonation as_c2(be(), client_token(1));
        other_during = be().read_thread_identity();
      }
      other_after = be().read_thread_identity();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "second thread: " << e.what();
    }
  });
  std::optional<impersonation> as_c1;
  try {
    as_c1.emplace(be(), client_token(0));
  } catch (...) {
    first_is_c1.release();
    other.join();
    throw;
  }
  first_is_c1.release();
  other.join();

  EXPECT_FALSE(other_had_token);
  EXPECT_EQ(other_before, process()) << "a second thread stays P while the first impersonates C1";
  EXPECT_EQ(other_during, client(1));
  EXPECT_EQ(other_after, process());
  if (kind() == backend_kind::kernel) {
    const identity& p = process();
    EXPECT_EQ(other_kernel.ruid, p.uid);
    EXPECT_EQ(other_kernel.euid, p.uid);
    EXPECT_EQ(other_kernel.rgid, p.gid);
    EXPECT_EQ(other_kernel.egid, p.gid);
    // /proc lists real, effective, saved and filesystem ids; impersonation keeps the saved one P.
    EXPECT_EQ(main_status, fmt::format("Uid:\t{0}\t{0}\t{1}\t{0}\nGid:\t{2}\t{2}\t{3}\t{2}\n",
                                       client(0).uid, p.uid, client(0).gid, p.gid));
  }
  // The second thread impersonating C2 did not touch this one.
  ASSERT_TRUE(be().thread_has_token());
  EXPECT_EQ(be().thread_token()->who, client(0));
  expect_thread_is(be(), client(0), "first thread after the second one's impersonation");
}

INSTANTIATE_TEST_SUITE_P(backends, impersonation_guard,
                         ::testing::Values(backend_kind::kernel, backend_kind::model),
                         backend_name);

// --- the identity probe -------------------------------------------------------------------------

class kernel_probe : public leak_checked_test {
 protected:
  void SetUp() override {
    if (const auto& why = kernel_unavailable()) GTEST_SKIP() << *why;
    leak_checked_test::SetUp();
  }
  identity_backend& be() const { return backend(backend_kind::kernel); }
};

TEST_F(kernel_probe, reads_the_calling_threads_credentials_from_the_kernel) {
  EXPECT_EQ(be().read_thread_identity(), libc_identity());
  EXPECT_EQ(be().process_identity(), libc_identity());
  impersonation as_c1(be(), client_token(0));
  EXPECT_EQ(be().read_thread_identity(), libc_identity());
  EXPECT_EQ(libc_identity(), client(0));
  impersonation as_c2(be(), client_token(1));
  EXPECT_EQ(be().read_thread_identity(), libc_identity());
  EXPECT_EQ(libc_identity(), client(1));
}

// Changes the calling thread's real and effective ids behind the backend's back (the saved uid
// stays P, so the thread can change back), and changes them back at scope end.
class raw_credentials {
 public:
  raw_credentials(const identity& to, const identity& process) : process_(process) {
    ok_ = syscall(SYS_setresgid, to.gid, to.gid, -1) == 0 &&
          syscall(SYS_setresuid, to.uid, to.uid, -1) == 0;
  }
  ~raw_credentials() {
    syscall(SYS_setresuid, process_.uid, process_.uid, -1);
    syscall(SYS_setresgid, process_.gid, process_.gid, -1);
  }
  raw_credentials(const raw_credentials&) = delete;
  raw_credentials& operator=(const raw_credentials&) = delete;
  bool ok() const { return ok_; }

 private:
  identity process_;
  bool ok_ = false;
};

TEST_F(kernel_probe, sees_credentials_changed_behind_the_backend) {
  auto t = connect(backend_kind::kernel);
  proxy p(be(), *t, security_defaults{cloaking::dynamic}, dynamic_options{identity_probe::kernel});
  // In a thread of its own, so a failure here can never leave the test's thread as someone else.
  std::thread([&] {
    call_result before = p.call(payload);
    ASSERT_TRUE(before.ok()) << to_string(before.error);
    EXPECT_TRUE(before.view.seen.same_principal(be().process_identity()));
    raw_credentials as_c1(client(0), be().process_identity());
    ASSERT_TRUE(as_c1.ok());
    EXPECT_FALSE(be().thread_has_token()) << "the backend's bookkeeping knows nothing of it";
    EXPECT_EQ(be().read_thread_identity().uid, client(0).uid);
    call_result after = p.call(payload);
    ASSERT_TRUE(after.ok()) << to_string(after.error);
    EXPECT_TRUE(after.view.seen.same_principal(client(0))) << to_string(after.view.seen);
  }).join();
  EXPECT_EQ(p.counters().contexts_established, 2u);
}

TEST_F(kernel_probe, generation_probe_trusts_the_bookkeeping_and_misses_changes_behind_it) {
  auto t = connect(backend_kind::kernel);
  proxy p(be(), *t, security_defaults{cloaking::dynamic},
          dynamic_options{identity_probe::generation});
  std::thread([&] {
    ASSERT_TRUE(p.call(payload).ok());
    raw_credentials as_c1(client(0), be().process_identity());
    ASSERT_TRUE(as_c1.ok());
    call_result after = p.call(payload);
    ASSERT_TRUE(after.ok()) << to_string(after.error);
    // The cheaper probe is only as good as the impersonate/revert calls it counts.
    EXPECT_TRUE(after.view.seen.same_principal(be().process_identity()))
        << to_string(after.view.seen);
  }).join();
  EXPECT_EQ(p.counters().contexts_established, 1u);
}

TEST_F(kernel_probe, thread_started_while_impersonating_inherits_the_kernel_credentials) {
  // A pitfall for code that spawns threads: clone copies the creator's credentials, while the
  // backend's bookkeeping is per thread and starts empty. check_no_leak is what notices.
  impersonation as_c1(be(), client_token(0));
  std::thread([&] {
    const identity& p = be().process_identity();
    EXPECT_FALSE(be().thread_has_token());
    EXPECT_EQ(be().read_thread_identity(), client(0));
    EXPECT_THROW(be().check_no_leak(), std::runtime_error);
    // revert() only undoes what this thread's bookkeeping knows of: the thread must reset itself.
    syscall(SYS_setresuid, p.uid, p.uid, -1);
    syscall(SYS_setresgid, p.gid, p.gid, -1);
    syscall(SYS_setgroups, static_cast<std::size_t>(p.group_count), p.groups.data());
    EXPECT_NO_THROW(be().check_no_leak());
  }).join();
  EXPECT_EQ(be().read_thread_identity(), client(0)) << "the creator is untouched";
}

using model_probe = leak_checked_test;

TEST_F(model_probe, reads_the_model_thread_token) {
  auto b = make_model_backend(identity::of(4242, 4242));
  EXPECT_EQ(b->read_thread_identity(), identity::of(4242, 4242));
  EXPECT_EQ(b->impersonate(make_token(identity::of(61000, 61000))), switch_error::ok);
  EXPECT_EQ(b->read_thread_identity(), identity::of(61000, 61000));
  b->revert();
  EXPECT_EQ(b->read_thread_identity(), identity::of(4242, 4242));
  EXPECT_NO_THROW(b->check_no_leak());
}

TEST_F(model_probe, check_no_leak_names_both_identities_when_a_token_is_left) {
  auto b = make_model_backend(identity::of(4242, 4242));
  ASSERT_EQ(b->impersonate(make_token(identity::of(61000, 61000))), switch_error::ok);
  try {
    b->check_no_leak();
    ADD_FAILURE() << "no leak reported";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("uid=61000"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("uid=4242"), std::string::npos) << e.what();
  }
  b->revert();
}

// --- the fake-client range ----------------------------------------------------------------------

// A uid that belongs to a real account here: nobody's, else the first non-root user.
std::optional<std::uint32_t> existing_uid() {
  if (const passwd* pw = ::getpwnam("nobody")) return pw->pw_uid;
  std::optional<std::uint32_t> found;
  ::setpwent();
  while (const passwd* pw = ::getpwent()) {
    if (pw->pw_uid != 0) {
      found = pw->pw_uid;
      break;
    }
  }
  ::endpwent();
  return found;
}

std::optional<std::uint32_t> existing_gid() {
  if (const group* gr = ::getgrnam("nogroup")) return gr->gr_gid;
  std::optional<std::uint32_t> found;
  ::setgrent();
  while (const group* gr = ::getgrent()) {
    if (gr->gr_gid != 0) {
      found = gr->gr_gid;
      break;
    }
  }
  ::endgrent();
  return found;
}

// The message of the std::invalid_argument that check_client_range throws, or "" when it accepts.
std::string rejection(const client_range& range) {
  try {
    check_client_range(range);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

using client_range_check = leak_checked_test;

TEST_F(client_range_check, accepts_the_default_range) { EXPECT_EQ(rejection(client_range{}), ""); }

TEST_F(client_range_check, rejects_uid_or_gid_0) {
  EXPECT_NE(rejection(client_range{0, 61000, 4}).find("root"), std::string::npos);
  EXPECT_NE(rejection(client_range{61000, 0, 4}).find("root"), std::string::npos);
}

TEST_F(client_range_check, rejects_a_range_containing_an_existing_user) {
  auto uid = existing_uid();
  if (!uid) GTEST_SKIP() << "no non-root user in the passwd database";
  std::string why = rejection(client_range{*uid - 1, 61000, 3});
  EXPECT_NE(why.find(fmt::format("uid {}", *uid)), std::string::npos) << why;
  EXPECT_NE(why.find("--clients"), std::string::npos) << "says how to fix it: " << why;
}

TEST_F(client_range_check, rejects_a_range_containing_an_existing_group) {
  auto gid = existing_gid();
  if (!gid) GTEST_SKIP() << "no non-root group in the group database";
  std::string why = rejection(client_range{61000, *gid - 1, 3});
  EXPECT_NE(why.find(fmt::format("gid {}", *gid)), std::string::npos) << why;
  // Root's own group can never be in a range: gid 0 is refused before any lookup.
  EXPECT_NE(rejection(client_range{61000, 0, 1}), "");
}

TEST_F(client_range_check, rejects_empty_oversized_and_wrapping_ranges) {
  EXPECT_NE(rejection(client_range{61000, 61000, 0}), "");
  EXPECT_NE(rejection(client_range{100000, 100000, max_clients + 1}).find("at most"),
            std::string::npos);
  EXPECT_NE(rejection(client_range{0xFFFFFFF0u, 61000, 32}).find("wraps"), std::string::npos);
  EXPECT_NE(rejection(client_range{61000, 0xFFFFFFFEu, 1}).find("wraps"), std::string::npos);
}

TEST_F(client_range_check, accepts_a_population_of_ten_thousand_clients) {
  ASSERT_GE(max_clients, 10000u);
  // Its size passes: the check goes on to the lookups (each id's passwd and group entry; seconds
  // for ten thousand, so a range starting at an existing user stops it at the first).
  auto uid = existing_uid();
  if (!uid) GTEST_SKIP() << "no non-root user in the passwd database";
  std::string why = rejection(client_range{*uid, 100000, 10000});
  EXPECT_NE(why.find(fmt::format("uid {}", *uid)), std::string::npos) << why;
  EXPECT_EQ(why.find("at most"), std::string::npos) << why;
  EXPECT_EQ(client_range({100000, 100000, 10000}).client(9999),
            identity::of(109999, 109999, {109999}));
}

TEST_F(client_range_check, a_large_range_names_an_existing_user_or_group_at_its_far_end) {
  // Ranges of more than 256 are checked by one pass over the databases where that is complete.
  auto uid = existing_uid();
  if (!uid || *uid < 10000) GTEST_SKIP() << "no non-root user with a uid of 10000 or more";
  std::string why = rejection(client_range{*uid - 9999, 100000, 10000});
  EXPECT_NE(why.find(fmt::format("uid {}", *uid)), std::string::npos) << why;
  auto gid = existing_gid();
  if (!gid || *gid < 10000) GTEST_SKIP() << "no non-root group with a gid of 10000 or more";
  why = rejection(client_range{100000, *gid - 9999, 10000});
  EXPECT_NE(why.find(fmt::format("gid {}", *gid)), std::string::npos) << why;
}

TEST_F(client_range_check, client_outside_the_range_throws_out_of_range) {
  client_range range{61000, 62000, 2};
  EXPECT_EQ(range.client(1), identity::of(61001, 62001, {62001}));
  EXPECT_THROW(range.client(2), std::out_of_range);
  EXPECT_TRUE(range.contains_uid(61001));
  EXPECT_FALSE(range.contains_uid(61002));
  EXPECT_FALSE(range.contains_uid(60999));
}

TEST_F(client_range_check, parses_first_count_and_uid_gid_count) {
  client_range a = parse_client_range("61000:16");
  EXPECT_EQ(a.first_uid, 61000u);
  EXPECT_EQ(a.first_gid, 61000u);
  EXPECT_EQ(a.count, 16u);
  client_range b = parse_client_range("61000:62000:4");
  EXPECT_EQ(b.first_uid, 61000u);
  EXPECT_EQ(b.first_gid, 62000u);
  EXPECT_EQ(b.count, 4u);
}

TEST_F(client_range_check, parse_errors_are_invalid_argument) {
  for (const char* text : {"", "61000", "61000:", ":16", "abc:16", "61000:16x", "61000:-1",
                           "1:2:3:4", "99999999999:1", "61000 :16"}) {
    EXPECT_THROW(parse_client_range(text), std::invalid_argument) << "'" << text << "'";
  }
}

using option_parsing = leak_checked_test;

TEST_F(option_parsing, unknown_names_are_invalid_argument_naming_the_accepted_values) {
  EXPECT_EQ(parse_backend_kind("model"), backend_kind::model);
  EXPECT_EQ(parse_cloaking("static"), cloaking::static_);
  EXPECT_EQ(parse_identity_probe("generation"), identity_probe::generation);
  EXPECT_EQ(parse_impersonation_level("delegate"), impersonation_level::delegate);
  EXPECT_EQ(parse_context_cache_policy("lru:64").lru_capacity, 64u);
  EXPECT_EQ(parse_context_cache_policy("none").lru_capacity, 0u);
  EXPECT_THROW(parse_backend_kind("kern"), std::invalid_argument);
  EXPECT_THROW(parse_cloaking("Static"), std::invalid_argument);
  EXPECT_THROW(parse_identity_probe(""), std::invalid_argument);
  EXPECT_THROW(parse_impersonation_level("impersonation"), std::invalid_argument);
  for (const char* text : {"lru:0", "lru:2001", "lru:", "lru:x", "lru", "lru:4 "}) {
    EXPECT_THROW(parse_context_cache_policy(text), std::invalid_argument) << text;
  }
  try {
    parse_cloaking("sometimes");
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("none, static or dynamic"), std::string::npos) << e.what();
  }
}

TEST_F(option_parsing, every_name_parses_back_to_its_value) {
  for (auto v : {backend_kind::kernel, backend_kind::model})
    EXPECT_EQ(parse_backend_kind(to_string(v)), v);
  for (auto v : {cloaking::none, cloaking::static_, cloaking::dynamic})
    EXPECT_EQ(parse_cloaking(to_string(v)), v);
  for (auto v : {identity_probe::kernel, identity_probe::generation})
    EXPECT_EQ(parse_identity_probe(to_string(v)), v);
  for (auto v : {impersonation_level::anonymous, impersonation_level::identify,
                 impersonation_level::impersonate, impersonation_level::delegate})
    EXPECT_EQ(parse_impersonation_level(to_string(v)), v);
  EXPECT_EQ(to_string(cloaking::static_), "static");
  EXPECT_EQ(to_string(static_cast<cloaking>(7)), "invalid");
}

TEST_F(option_parsing, an_enum_table_names_its_values_and_refuses_others) {
  enum class colour { red, green, blue };
  constexpr auto names = make_enum_names<colour>(
      "colour", {{colour::red, "red"}, {colour::green, "green"}, {colour::blue, "blue"}}, "none");
  static_assert(names.to_string(colour::green) == "green");
  static_assert(names.to_string(static_cast<colour>(9)) == "none");
  static_assert(names.find("blue") == colour::blue);
  static_assert(!names.find("Blue"));
  EXPECT_EQ(names.choices(), "red, green or blue");
  EXPECT_EQ(names.choices(", "), "red, green, blue");
  EXPECT_EQ(names.parse("red"), colour::red);
  try {
    names.parse("mauve");
    ADD_FAILURE() << "parse accepted mauve";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "unknown colour 'mauve' (expected red, green or blue)");
  }
}

TEST_F(option_parsing, packages_and_protection_levels_are_named_by_their_tables) {
  for (auto p : {protection::none, protection::integrity, protection::privacy})
    EXPECT_EQ(parse_protection(to_string(p)), p);
  EXPECT_EQ(to_string(static_cast<protection>(9)), "unknown");
  try {
    parse_protection("sealed");
    ADD_FAILURE() << "parse_protection accepted sealed";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "unknown protection 'sealed' (expected none, integrity or privacy)");
  }
  EXPECT_EQ(to_string(package_id::local), "local");
  EXPECT_EQ(to_string(package_id::kerberos), "kerberos");
  EXPECT_EQ(to_string(package_id::ntlm), "ntlm");
  EXPECT_EQ(to_string(package_id::negotiate), "negotiate");
  EXPECT_EQ(to_string(package_id::test), "test");
  EXPECT_EQ(to_string(static_cast<package_id>(9)), "unknown");
}

TEST_F(option_parsing, every_call_error_and_wire_code_has_a_name) {
  for (int e = 0; e <= static_cast<int>(call_error::clock_skew); ++e)
    EXPECT_NE(to_string(static_cast<call_error>(e)), "unknown error") << e;
  for (int s = 0; s <= static_cast<int>(protocol::status::not_sealed); ++s)
    EXPECT_NE(protocol::to_string(static_cast<protocol::status>(s)), "unknown_status") << s;
  for (int t : {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 15})
    EXPECT_NE(protocol::to_string(static_cast<protocol::msg_type>(t)), "unknown_type") << t;
  EXPECT_EQ(to_string(call_error::timeout), "downstream timed out");
  EXPECT_EQ(protocol::to_string(protocol::status::bad_mic), "bad_mic");
}

}  // namespace
}  // namespace cloak::test
