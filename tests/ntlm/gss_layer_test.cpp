// The shared GSSAPI layer (harness/auth/gss_*.hpp) on its own, over NTLM contexts made in one
// process: the initiator's legs against the acceptor's, sealing both ways with conf_state checked,
// and MICs; every tampered token refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cloak/ntlm.hpp>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "gss_exchange.hpp"
#include "gss_protect.hpp"
#include "idmap.hpp"

namespace cloak::detail {
namespace {

gss_OID_desc ntlmssp{10, const_cast<char*>("\x2b\x06\x01\x04\x01\x82\x37\x02\x02\x0a")};

class test_state final : public gss_server_state {};

std::vector<std::byte> bytes(std::string_view text) {
  std::vector<std::byte> out(text.size());
  std::memcpy(out.data(), text.data(), text.size());
  return out;
}

bool contains(const token_buffer& haystack, const std::vector<std::byte>& needle) {
  return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end()) !=
         haystack.end();
}

// Each leg straight into the acceptor, as the connection would carry it.
class direct_legs final : public establish_legs {
 public:
  explicit direct_legs(const acceptor& a) : acceptor_(a) {}
  call_error leg(std::span<const std::byte> token, leg_reply& out) noexcept override {
    last = accept_leg<test_state>(acceptor_, std::move(state), token, reply_);
    state = std::move(last.state);
    out.more = last.result == accept_outcome::kind::more;
    out.token = reply_;
    return last.result == accept_outcome::kind::refused ? call_error::refused : call_error::ok;
  }
  accept_outcome last;
  std::unique_ptr<server_context_state> state;

 private:
  const acceptor& acceptor_;
  token_buffer reply_;
};

// One established context pair: the initiator's, and the accepted state holding the acceptor's.
struct context_pair {
  gss_context client;
  std::unique_ptr<server_context_state> server;
  gss_ctx_id_t server_ctx() const { return context_of<test_state>(server.get()); }
};

class gss_layer_test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (ntlm_mechanism_path().empty()) return;
    ntlm_config config;
    config.clients = client_range{62000, 62000, 1};
    config.process = identity::of(::geteuid(), ::getegid());
    domain_ = new ntlm_domain(config);
    domain_->export_environment();
    const ntlm_info& info = domain_->info();
    names_ = new idmap(idmap::load(info.idmap, "user"));
    std::ifstream keys(info.client_keys);
    ntlm_account who;
    keys >> who.uid >> who.user >> who.nt_hash;  // the first line: P
    user_ = who.user;
    gss_status s;
    gss_key_value_element_desc initiate[] = {{"ntlmssp_domain", info.domain.c_str()},
                                             {"ntlmssp_nthash", who.nt_hash.c_str()}};
    initiator_ = new gss_cred(acquire_cred_from(import_name(who.user, GSS_C_NT_USER_NAME, &ntlmssp),
                                                &ntlmssp, GSS_C_INITIATE, initiate, s));
    gss_key_value_element_desc accept[] = {{"ntlmssp_keyfile", info.keyfile.c_str()}};
    acceptor_cred_ = new gss_cred(
        acquire_cred_from(import_name(info.service, GSS_C_NT_HOSTBASED_SERVICE, &ntlmssp), &ntlmssp,
                          GSS_C_ACCEPT, accept, s));
    target_ = new gss_name(import_name(info.service, GSS_C_NT_HOSTBASED_SERVICE, &ntlmssp));
  }
  static void TearDownTestSuite() {
    delete target_;
    delete acceptor_cred_;
    delete initiator_;
    delete names_;
    delete domain_;
  }
  void SetUp() override {
    if (ntlm_mechanism_path().empty())
      GTEST_SKIP() << "gssntlmssp.so is not installed (Debian package gss-ntlmssp)";
    ASSERT_TRUE(*initiator_) << "initiator credentials";
    ASSERT_TRUE(*acceptor_cred_) << "acceptor credentials";
  }

  static context_pair establish() {
    acceptor a{acceptor_cred_->get(), &ntlmssp, names_, nullptr};
    direct_legs legs(a);
    context_pair pair;
    gss_status failed;
    std::string detail;
    leg_rules rules{4, true, "no CHALLENGE"};
    call_error e =
        initiate({initiator_->get(), target_->get(), &ntlmssp, GSS_C_INTEG_FLAG | GSS_C_CONF_FLAG},
                 rules, pair.client, legs, failed, detail);
    EXPECT_EQ(e, call_error::ok) << detail << gss_message(failed, &ntlmssp) << legs.last.detail;
    EXPECT_EQ(legs.last.result, accept_outcome::kind::done);
    pair.server = std::move(legs.state);
    return pair;
  }

  static inline ntlm_domain* domain_ = nullptr;
  static inline idmap* names_ = nullptr;
  static inline gss_cred* initiator_ = nullptr;
  static inline gss_cred* acceptor_cred_ = nullptr;
  static inline gss_name* target_ = nullptr;
  static inline std::string user_;
};

TEST_F(gss_layer_test, legs_establish_and_the_acceptor_maps_the_name) {
  context_pair pair = establish();
  ASSERT_NE(pair.server_ctx(), GSS_C_NO_CONTEXT);
  auto* st = dynamic_cast<test_state*>(pair.server.get());
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(st->name, user_) << "no trailing NUL from gss-ntlmssp";
  const identity* who = names_->find(st->name);
  ASSERT_NE(who, nullptr);
  EXPECT_EQ(who->uid, ::geteuid());
}

TEST_F(gss_layer_test, sealed_request_and_reply_unwrap_to_the_message_and_are_confidential) {
  context_pair pair = establish();
  auto request = bytes("a request the caller seals at packet privacy");
  token_buffer sealed, opened;
  ASSERT_EQ(wrap_private(pair.client.get(), request, sealed), seal_result::ok);
  EXPECT_FALSE(contains(sealed, request)) << "the request travels encrypted";
  ASSERT_EQ(unwrap_private(pair.server_ctx(), sealed, opened), seal_result::ok);
  EXPECT_EQ(opened, token_buffer(request.begin(), request.end()));

  auto reply = bytes("and the server's sealed reply");
  ASSERT_EQ(wrap_private(pair.server_ctx(), reply, sealed), seal_result::ok);
  EXPECT_FALSE(contains(sealed, reply));
  ASSERT_EQ(unwrap_private(pair.client.get(), sealed, opened), seal_result::ok);
  EXPECT_EQ(opened, token_buffer(reply.begin(), reply.end()));
}

TEST_F(gss_layer_test, tampered_sealed_message_is_refused) {
  context_pair pair = establish();
  token_buffer sealed, opened;
  ASSERT_EQ(wrap_private(pair.client.get(), bytes("pay 10 to alice"), sealed), seal_result::ok);
  sealed[sealed.size() - 1] ^= std::byte{0x01};
  EXPECT_EQ(unwrap_private(pair.server_ctx(), sealed, opened), seal_result::failed);
}

TEST_F(gss_layer_test, a_mic_is_not_a_sealed_message_and_no_context_seals_nothing) {
  context_pair pair = establish();
  token_buffer mic, opened, sealed;
  std::size_t mic_length = 0;
  ASSERT_TRUE(sign_mic(mic_form::plain, pair.client.get(), bytes("m"), mic, mic_length));
  EXPECT_EQ(unwrap_private(pair.server_ctx(), mic, opened), seal_result::failed);
  EXPECT_EQ(wrap_private(GSS_C_NO_CONTEXT, bytes("m"), sealed), seal_result::failed);
  EXPECT_EQ(unwrap_private(GSS_C_NO_CONTEXT, mic, opened), seal_result::failed);
}

TEST_F(gss_layer_test, mic_verifies_and_a_tampered_message_does_not) {
  context_pair pair = establish();
  auto message = bytes("a call at packet integrity");
  token_buffer mic;
  std::size_t mic_length = 0;
  ASSERT_TRUE(sign_mic(mic_form::plain, pair.client.get(), message, mic, mic_length));
  EXPECT_EQ(mic.size(), 16u);
  EXPECT_TRUE(verify_mic(mic_form::plain, pair.server_ctx(), message, mic));
  ASSERT_TRUE(sign_mic(mic_form::plain, pair.client.get(), message, mic, mic_length));
  message[0] ^= std::byte{0x01};
  EXPECT_FALSE(verify_mic(mic_form::plain, pair.server_ctx(), message, mic));
}

}  // namespace
}  // namespace cloak::detail
