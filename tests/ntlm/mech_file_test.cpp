// The ntlm package's mechanism comes from the file the suite writes (GSS_MECH_CONFIG), never from
// /etc/gss: with a private file that lists no NTLM, MIT's mechglue offers none, even where Debian's
// package put one in /etc/gss/mech.d. Each check runs in a fresh child: the mechglue reads its
// configuration once per process.
#include <gssapi/gssapi.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cloak/ntlm.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace cloak {
namespace {

gss_OID_desc ntlmssp{10, const_cast<char*>("\x2b\x06\x01\x04\x01\x82\x37\x02\x02\x0a")};

// Runs in a child: 1 when the mechglue offers NTLMSSP, 0 when not, 2 on error.
int child_sees_ntlm(const std::string& mech_config) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("GSS_MECH_CONFIG", mech_config.c_str(), 1);
    OM_uint32 minor = 0;
    gss_OID_set mechs = GSS_C_NO_OID_SET;
    if (GSS_ERROR(gss_indicate_mechs(&minor, &mechs))) ::_exit(2);
    int present = 0;
    if (GSS_ERROR(gss_test_oid_set_member(&minor, &ntlmssp, mechs, &present))) ::_exit(2);
    ::_exit(present ? 1 : 0);
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return 2;
  return WEXITSTATUS(status);
}

TEST(ntlm_mech_file, mechanism_comes_from_the_private_file_not_etc_gss) {
  if (ntlm_mechanism_path().empty())
    GTEST_SKIP() << "gssntlmssp.so is not installed (Debian package gss-ntlmssp)";
  ntlm_config config;
  config.clients = client_range{61000, 61000, 2};
  config.process = identity::of(::geteuid(), ::getegid());
  ntlm_domain domain(config);
  EXPECT_EQ(domain.info().mech_config.find("/etc/gss"), std::string::npos);
  std::ifstream in(domain.info().mech_config);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("gssntlmssp_v1 1.3.6.1.4.1.311.2.2.10 " + ntlm_mechanism_path()),
            std::string::npos)
      << text;
  EXPECT_EQ(child_sees_ntlm(domain.info().mech_config), 1) << "the private file loads it";

  std::string empty = domain.info().dir + "/no-mechanisms.conf";
  std::ofstream(empty) << "# no mechanism here\n";
  EXPECT_EQ(child_sees_ntlm(empty), 0)
      << "a private file without NTLM: the mechglue did not read /etc/gss/mech.d";
}

TEST(ntlm_mech_file, export_environment_points_at_the_private_file_and_restores) {
  if (ntlm_mechanism_path().empty())
    GTEST_SKIP() << "gssntlmssp.so is not installed (Debian package gss-ntlmssp)";
  ::setenv("GSS_MECH_CONFIG", "/before", 1);
  std::string dir;
  {
    ntlm_config config;
    config.clients = client_range{61000, 61000, 1};
    ntlm_domain domain(config);
    dir = domain.info().dir;
    domain.export_environment();
    EXPECT_EQ(std::string(std::getenv("GSS_MECH_CONFIG")), domain.info().mech_config);
  }
  EXPECT_EQ(std::string(std::getenv("GSS_MECH_CONFIG")), "/before");
  EXPECT_FALSE(std::filesystem::exists(dir)) << "the domain's directory is removed";
  ::unsetenv("GSS_MECH_CONFIG");
}

}  // namespace
}  // namespace cloak
