// The ntlm package end to end: a proxy with dynamic cloaking, a real cloak-downstream that inherits
// GSS_MECH_CONFIG, and the downstream's access check running as the uid the NTLM user maps to.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cloak/backend.hpp>
#include <cloak/connection.hpp>
#include <cloak/downstream.hpp>
#include <cloak/ntlm.hpp>
#include <cloak/proxy.hpp>
#include <cstdlib>
#include <memory>
#include <string>

namespace cloak {
namespace {

client_range test_clients() { return client_range{61000, 61000, 3}; }

class ntlm_downstream_test : public ::testing::Test {
 protected:
  void SetUp() override {
    if (ntlm_mechanism_path().empty())
      GTEST_SKIP() << "gssntlmssp.so is not installed (Debian package gss-ntlmssp)";
    if (::geteuid() != 0) GTEST_SKIP() << "the ntlm tests run as root";
    backend_ = make_kernel_backend();
    ntlm_config config;
    config.clients = test_clients();
    config.process = backend_->process_identity();
    domain_ = std::make_unique<ntlm_domain>(config);
    domain_->export_environment();
    credentials_ = std::make_unique<ntlm_credentials>(domain_->info());
  }
  void TearDown() override {
    if (backend_) backend_->check_no_leak();
  }

  std::unique_ptr<downstream_process> start_downstream() {
    downstream_config config;
    config.clients = test_clients();
    config.ntlm_dir = domain_->info().dir;
    return std::make_unique<downstream_process>(config);
  }

  std::unique_ptr<identity_backend> backend_;
  std::unique_ptr<ntlm_domain> domain_;
  std::unique_ptr<ntlm_credentials> credentials_;
};

TEST_F(ntlm_downstream_test, dynamic_cloaking_presents_each_client_and_d_acts_as_its_uid) {
  auto server = start_downstream();
  auto t =
      make_connection(make_uds_channel({server->socket_path()}), make_ntlm_client(*credentials_));
  proxy p(*backend_, *t);
  blanket b;
  b.mode = cloaking::dynamic;
  p.set_blanket(b);
  static const std::byte payload[64]{};
  for (std::uint32_t i = 0; i < test_clients().count; ++i) {
    impersonation as(*backend_, make_token(test_clients().client(i)));
    call_result res = p.call(payload);
    ASSERT_TRUE(res.ok()) << to_string(res.error) << ": " << t->last_establish().detail;
    EXPECT_EQ(res.view.seen.uid, test_clients().client(i).uid);
    access_outcome own;
    ASSERT_TRUE(p.access_check(test_clients().client(i).uid, own).ok());
    EXPECT_TRUE(own.granted) << "D opened the file only uid " << test_clients().client(i).uid
                             << " may read";
    access_outcome other;
    std::uint32_t next = test_clients().client((i + 1) % test_clients().count).uid;
    ASSERT_TRUE(p.access_check(next, other).ok());
    EXPECT_FALSE(other.granted) << "D acted as the caller, not as itself";
  }
  EXPECT_EQ(p.counters().contexts_established, test_clients().count);
  call_result as_p = p.call(payload);
  ASSERT_TRUE(as_p.ok());
  EXPECT_EQ(as_p.view.seen.uid, backend_->process_identity().uid);
}

TEST_F(ntlm_downstream_test, integrity_protected_calls_verify_at_the_downstream) {
  auto server = start_downstream();
  ntlm_client_options options;
  options.per_call = protection::integrity;
  auto t = make_connection(make_uds_channel({server->socket_path()}),
                           make_ntlm_client(*credentials_, options));
  proxy p(*backend_, *t);
  impersonation as(*backend_, make_token(test_clients().client(1)));
  blanket b;
  b.mode = cloaking::dynamic;
  p.set_blanket(b);
  static const std::byte payload[64]{};
  for (int i = 0; i < 5; ++i) {
    call_result res = p.call(payload);
    ASSERT_TRUE(res.ok()) << to_string(res.error);
    EXPECT_EQ(res.view.seen.uid, test_clients().client(1).uid);
  }
  EXPECT_EQ(p.counters().contexts_established, 1u);
}

TEST_F(ntlm_downstream_test, downstream_without_the_private_mechanism_file_refuses_to_start) {
  std::string saved = std::getenv("GSS_MECH_CONFIG");
  ::unsetenv("GSS_MECH_CONFIG");
  try {
    auto server = start_downstream();
    ADD_FAILURE() << "cloak-downstream --ntlm started without GSS_MECH_CONFIG";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("GSS_MECH_CONFIG"), std::string::npos) << e.what();
  }
  ::setenv("GSS_MECH_CONFIG", saved.c_str(), 1);
}

}  // namespace
}  // namespace cloak
