// The throwaway realm: it answers, it records its setup time, and nothing of it survives any exit.
#include <fmt/format.h>
#include <krb5/krb5.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cloak/realm.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "kerberos_test_support.hpp"

namespace cloak {
namespace {

using namespace std::chrono_literals;
using test::test_clients;

realm_config test_config() {
  realm_config c;
  c.clients = test_clients();
  return c;
}

// An AS exchange for `principal` from the client keytab, with this process's KRB5_CONFIG.
std::string get_ticket(const realm_info& info, const std::string& principal) {
  krb5_context ctx = nullptr;
  if (krb5_init_context(&ctx) != 0) return "cannot create a krb5 context";
  std::string error;
  krb5_principal client = nullptr;
  krb5_keytab kt = nullptr;
  krb5_creds creds{};
  std::string kt_name = "FILE:" + info.client_keytab;
  krb5_error_code rc = krb5_parse_name(ctx, principal.c_str(), &client);
  if (rc == 0) rc = krb5_kt_resolve(ctx, kt_name.c_str(), &kt);
  if (rc == 0) rc = krb5_get_init_creds_keytab(ctx, &creds, client, kt, 0, nullptr, nullptr);
  if (rc != 0) {
    const char* m = krb5_get_error_message(ctx, rc);
    error = m;
    krb5_free_error_message(ctx, m);
  } else {
    krb5_free_cred_contents(ctx, &creds);
  }
  if (kt) krb5_kt_close(ctx, kt);
  if (client) krb5_free_principal(ctx, client);
  krb5_free_context(ctx);
  return error;
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

class realm_test : public ::testing::Test {
 protected:
  void SetUp() override { CLOAK_SKIP_UNLESS_KRB5(); }
};

TEST_F(realm_test, starts_and_a_client_principal_gets_a_ticket) {
  realm r(test_config());
  r.export_environment();
  const realm_info& info = r.info();
  std::printf("realm %s on %s:%u, setup %.3f s\n", info.name.c_str(), info.kdc_host.c_str(),
              info.kdc_port, info.setup_seconds);
  EXPECT_GT(info.setup_seconds, 0.0);
  EXPECT_NE(info.kdc_port, 0);
  EXPECT_EQ(std::getenv("KRB5_CONFIG"), info.krb5_conf);
  EXPECT_EQ(get_ticket(info, principal_for(61002, identity::of(0, 0), info.name)), "");
  EXPECT_EQ(get_ticket(info, "cloak-middle@" + info.name), "");
  EXPECT_NE(get_ticket(info, "client-99999@" + info.name), "")
      << "a principal the realm never made";
}

TEST_F(realm_test, files_are_readable_by_clients_and_keys_only_by_the_owner) {
  realm r(test_config());
  const realm_info& info = r.info();
  EXPECT_EQ(mode_of(info.dir), 0755);
  EXPECT_EQ(mode_of(info.krb5_conf), 0644);
  EXPECT_EQ(mode_of(info.kdc_conf), 0644);
  EXPECT_EQ(mode_of(info.idmap), 0644);
  EXPECT_EQ(mode_of(info.client_keytab), 0600);
  EXPECT_EQ(mode_of(info.service_keytab), 0600);
  EXPECT_EQ(mode_of(info.dir + "/principal"), 0600);
  std::ifstream conf(info.krb5_conf);
  std::stringstream text;
  text << conf.rdbuf();
  for (const char* knob : {"rdns = false", "dns_canonicalize_hostname = false",
                           "dns_lookup_kdc = false", "udp_preference_limit = 1"}) {
    EXPECT_NE(text.str().find(knob), std::string::npos) << knob;
  }
}

TEST_F(realm_test, idmap_maps_each_principal_to_its_identity) {
  realm_config c = test_config();
  c.process = identity::of(0, 0, {0});
  realm r(c);
  std::ifstream in(r.info().idmap);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("cloak-middle@CLOAKBENCH.TEST 0 0 0\n"), std::string::npos) << text;
  identity c2 = test_clients().client(2);
  EXPECT_NE(text.find(fmt::format("client-{0}@CLOAKBENCH.TEST {0} {1} {1}\n", c2.uid, c2.gid)),
            std::string::npos)
      << text;
  EXPECT_EQ(principal_for(c2.uid, c.process, "R"), fmt::format("client-{}@R", c2.uid));
  EXPECT_EQ(principal_for(0, c.process, "R"), "cloak-middle@R");
}

TEST_F(realm_test, realm_json_describes_the_running_realm) {
  realm r(test_config());
  realm_info loaded = realm_info::load(r.info().dir);
  EXPECT_EQ(loaded.kdc_port, r.info().kdc_port);
  EXPECT_EQ(loaded.kdc_pid, r.kdc_pid());
  EXPECT_EQ(loaded.supervisor_pid, r.supervisor_pid());
  EXPECT_EQ(loaded.service, "cloak/downstream@CLOAKBENCH.TEST");
  EXPECT_EQ(test::krb5kdc_processes_for(r.info().dir), std::vector<long>{r.kdc_pid()});
}

TEST_F(realm_test, destructor_removes_the_directory_and_stops_the_kdc) {
  std::string dir;
  long kdc = 0;
  {
    realm r(test_config());
    dir = r.info().dir;
    kdc = r.kdc_pid();
    ASSERT_TRUE(std::filesystem::exists(dir));
  }
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_TRUE(test::exits_within(kdc, 0ms));
  EXPECT_TRUE(test::krb5kdc_processes_for(dir).empty());
}

TEST_F(realm_test, destructor_cleans_up_a_stopped_kdc) {
  std::string dir;
  long kdc = 0;
  {
    realm r(test_config());
    dir = r.info().dir;
    kdc = r.kdc_pid();
    ASSERT_TRUE(r.kill_kdc(SIGSTOP));
  }
  EXPECT_TRUE(test::exits_within(kdc, 0ms));
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST_F(realm_test, sigint_to_the_supervisor_stops_the_kdc_and_removes_the_directory) {
  realm r(test_config());
  std::string dir = r.info().dir;
  long kdc = r.kdc_pid();
  ASSERT_EQ(::kill(r.supervisor_pid(), SIGINT), 0);
  ASSERT_TRUE(test::exits_within(r.supervisor_pid(), 10s));
  EXPECT_TRUE(test::exits_within(kdc, 0ms));
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_TRUE(test::krb5kdc_processes_for(dir).empty());
}

TEST_F(realm_test, nothing_survives_a_parent_killed_with_sigkill) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(fds[0]);
    try {
      realm r(test_config());
      std::string line = fmt::format("{} {} {}\n", r.info().dir, r.kdc_pid(), r.supervisor_pid());
      (void)!::write(fds[1], line.data(), line.size());
      for (;;) ::pause();  // until SIGKILLed: no destructor runs
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
    }
    ::_exit(1);
  }
  ::close(fds[1]);
  std::string text;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) {
    text.append(buf, static_cast<std::size_t>(n));
    if (text.find('\n') != std::string::npos) break;
  }
  ::close(fds[0]);
  std::istringstream fields(text);
  std::string dir;
  long kdc = 0, supervisor = 0;
  fields >> dir >> kdc >> supervisor;
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_FALSE(dir.empty()) << "the child could not start a realm";
  ASSERT_TRUE(std::filesystem::exists(dir) || test::exits_within(supervisor, 0ms));
  // The supervisor sees its parent's pidfd fire, stops krb5kdc and removes the directory.
  EXPECT_TRUE(test::exits_within(supervisor, 10s)) << "cloak-realm outlived its parent";
  EXPECT_TRUE(test::exits_within(kdc, 5s)) << "krb5kdc " << kdc << " outlived its supervisor";
  EXPECT_TRUE(test::krb5kdc_processes_for(dir).empty());
  EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
}

TEST_F(realm_test, nonexistent_program_gives_an_error_naming_it) {
  realm_config c = test_config();
  c.program = "/nonexistent/cloak-realm";
  try {
    realm r(c);
    FAIL() << "a realm started from a program that does not exist";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/cloak-realm"), std::string::npos)
        << e.what();
  }
}

TEST_F(realm_test, bad_realm_name_gives_the_supervisors_error_and_leaves_nothing) {
  // A private TMPDIR: the supervisor makes its realm directory there, so "nothing left" is
  // checkable.
  char tmp[] = "/tmp/cloak-realm-test.XXXXXX";
  ASSERT_NE(::mkdtemp(tmp), nullptr);
  std::optional<std::string> previous;
  if (const char* v = std::getenv("TMPDIR")) previous = v;
  ::setenv("TMPDIR", tmp, 1);
  realm_config c = test_config();
  c.name = "BAD NAME";
  std::string error;
  try {
    realm r(c);
  } catch (const std::runtime_error& e) {
    error = e.what();
  }
  if (previous)
    ::setenv("TMPDIR", previous->c_str(), 1);
  else
    ::unsetenv("TMPDIR");
  EXPECT_NE(error.find("could not start the realm"), std::string::npos) << error;
  EXPECT_NE(error.find("kdb5_util"), std::string::npos) << "names the tool that failed: " << error;
  EXPECT_TRUE(std::filesystem::is_empty(tmp)) << "a failed realm left its directory in " << tmp;
  std::filesystem::remove_all(tmp);
}

TEST_F(realm_test, killed_kdc_restarts_on_the_same_port) {
  realm r(test_config());
  r.export_environment();
  long before = r.kdc_pid();
  ASSERT_TRUE(r.kill_kdc(SIGKILL));
  EXPECT_NE(r.kdc_pid(), before);
  EXPECT_TRUE(test::exits_within(before, 5s));
  EXPECT_EQ(get_ticket(r.info(), "cloak-middle@" + r.info().name), "");
  EXPECT_EQ(realm_info::load(r.info().dir).kdc_pid, r.kdc_pid());
}

}  // namespace
}  // namespace cloak
