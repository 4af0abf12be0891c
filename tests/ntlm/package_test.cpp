// The ntlm package against a domain this suite makes: three legs, who the server sees, integrity,
// and every refusal.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cloak/backend.hpp>
#include <cloak/ntlm.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

namespace cloak {
namespace {

client_range test_clients() { return client_range{61000, 61000, 4}; }

#define CLOAK_SKIP_UNLESS_NTLM()                                                     \
  do {                                                                               \
    if (ntlm_mechanism_path().empty())                                               \
      GTEST_SKIP() << "gssntlmssp.so is not installed (Debian package gss-ntlmssp)"; \
    if (::geteuid() != 0) GTEST_SKIP() << "the ntlm tests run as root";              \
  } while (0)

// The connection, without a wire: every leg goes straight to the server package, which runs as P
// (as cloak-downstream does). Records each token; `tamper_leg` (1-based) flips one byte of it.
class direct_legs final : public establish_legs {
 public:
  direct_legs(server_package& server, identity_backend& backend)
      : server_(server), backend_(backend) {}

  call_error leg(std::span<const std::byte> token, leg_reply& out) noexcept override {
    try {
      sent.emplace_back(token.begin(), token.end());
      std::vector<std::byte> carried = sent.back();
      if (tamper_leg == sent.size() && !carried.empty())
        carried[carried.size() / 2] ^= std::byte{0x01};
      {
        temporary_identity as_server(backend_, nullptr);
        last = server_.accept(peer_info{}, carried, std::move(state), reply_);
      }
      replies.emplace_back(reply_.begin(), reply_.end());
      out.more = last.result == accept_outcome::kind::more;
      out.token = reply_;
      state = std::move(last.state);
      if (last.result == accept_outcome::kind::refused) {
        out.view.server_status = last.refusal;
        return call_error::refused;
      }
      if (last.result == accept_outcome::kind::done) {
        done = true;
        seen = last.who;
        out.view.seen = last.who;
      }
      return call_error::ok;
    } catch (...) {
      return call_error::protocol;
    }
  }

  std::size_t tamper_leg = 0;
  std::vector<std::vector<std::byte>> sent;
  std::vector<std::vector<std::byte>> replies;
  accept_outcome last;
  std::unique_ptr<server_context_state> state;
  bool done = false;
  identity seen;

 private:
  server_package& server_;
  identity_backend& backend_;
  token_buffer reply_;
};

// An NTLM message starts with "NTLMSSP\0" and its type (1 NEGOTIATE, 2 CHALLENGE, 3 AUTHENTICATE).
int ntlm_message_type(const std::vector<std::byte>& m) {
  static const char signature[] = "NTLMSSP";
  if (m.size() < 12 || std::memcmp(m.data(), signature, 8) != 0) return -1;
  return static_cast<int>(m[8]);
}

// The account the acceptor knows but the idmap does not.
ntlm_account stranger() {
  return ntlm_account{61000 + 10, "CB\\stranger", nt_hash_hex("stranger's password")};
}

class ntlm_package_test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (ntlm_mechanism_path().empty() || ::geteuid() != 0) return;
    backend_ = make_kernel_backend().release();
    ntlm_config config;
    config.clients = test_clients();
    config.process = backend_->process_identity();
    config.unmapped.push_back(stranger());
    auto started = std::chrono::steady_clock::now();
    domain_ = new ntlm_domain(config);
    domain_->export_environment();
    credentials_ = new ntlm_credentials(domain_->info());
    server_ = make_ntlm_server(domain_->info()).release();
    std::printf("domain and credentials for %u identities %.3f s\n", test_clients().count + 1,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  static void TearDownTestSuite() {
    delete server_;
    delete credentials_;
    delete domain_;
    delete backend_;
    server_ = nullptr;
    credentials_ = nullptr;
    domain_ = nullptr;
    backend_ = nullptr;
  }

  void SetUp() override {
    CLOAK_SKIP_UNLESS_NTLM();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    if (backend_) backend_->check_no_leak();
  }

  static const ntlm_info& info() { return domain_->info(); }
  static establish_outcome establish(client_package& client, direct_legs& legs, const token* who) {
    return client.establish(presentation{*backend_, who}, legs);
  }

  static inline identity_backend* backend_ = nullptr;
  static inline ntlm_domain* domain_ = nullptr;
  static inline ntlm_credentials* credentials_ = nullptr;
  static inline server_package* server_ = nullptr;
};

TEST(nt_hash, is_md4_of_the_utf16le_password) {
  // The well-known NT hash of "password" (MS-NLMP NTOWFv1).
  EXPECT_EQ(nt_hash_hex("password"), "8846f7eaee8fb117ad06bdd830b7586c");
  EXPECT_EQ(nt_hash_hex(""), "31d6cfe0d16ae931b73c59d7e0c089c0");
  EXPECT_THROW(nt_hash_hex("caf\xc3\xa9"), std::invalid_argument);
}

TEST_F(ntlm_package_test, context_takes_three_legs_and_the_acceptor_names_the_user) {
  auto client = make_ntlm_client(*credentials_);
  token t = make_token(test_clients().client(1));
  direct_legs legs(*server_, *backend_);
  establish_outcome out = establish(*client, legs, &t);
  ASSERT_EQ(out.error, call_error::ok) << out.detail << ": " << legs.last.detail;
  EXPECT_TRUE(out.switched_identity);
  EXPECT_NE(out.state, nullptr);
  ASSERT_TRUE(legs.done);
  EXPECT_EQ(legs.seen, test_clients().client(1)) << "uid, gid and groups from the idmap";
  EXPECT_EQ(ntlm_authenticated_user(legs.state.get()), "CB\\client-61001");
  ASSERT_EQ(legs.sent.size(), 2u) << "NEGOTIATE, AUTHENTICATE; the CHALLENGE is the reply";
  EXPECT_EQ(ntlm_message_type(legs.sent[0]), 1);
  EXPECT_EQ(ntlm_message_type(legs.replies[0]), 2);
  EXPECT_EQ(ntlm_message_type(legs.sent[1]), 3);
  EXPECT_TRUE(legs.replies[1].empty()) << "NTLM has no fourth message";
  std::size_t bytes = 0;
  for (auto& m : legs.sent) bytes += m.size();
  for (auto& m : legs.replies) bytes += m.size();
  std::printf("one context: 3 messages, %zu bytes\n", bytes);
  EXPECT_EQ(client->id(), package_id::ntlm);
  EXPECT_EQ(to_string(client->id()), "ntlm");
  EXPECT_FALSE(client->needs_kernel_credentials());
}

TEST_F(ntlm_package_test, process_identity_authenticates_as_p) {
  auto client = make_ntlm_client(*credentials_);
  direct_legs legs(*server_, *backend_);
  establish_outcome out = establish(*client, legs, nullptr);
  ASSERT_EQ(out.error, call_error::ok) << out.detail;
  EXPECT_FALSE(out.switched_identity);
  EXPECT_EQ(legs.seen, backend_->process_identity());
  EXPECT_EQ(ntlm_authenticated_user(legs.state.get()), "CB\\cloak-middle");
}

TEST_F(ntlm_package_test, thread_kernel_identity_selects_the_user) {
  auto client = make_ntlm_client(*credentials_);
  token t = make_token(test_clients().client(2));
  impersonation as(*backend_, t);
  direct_legs legs(*server_, *backend_);
  establish_outcome out = establish(*client, legs, &t);
  ASSERT_EQ(out.error, call_error::ok) << out.detail;
  EXPECT_FALSE(out.switched_identity);
  EXPECT_EQ(legs.seen.uid, test_clients().client(2).uid);
  EXPECT_EQ(backend_->read_thread_identity().uid, test_clients().client(2).uid);
}

TEST_F(ntlm_package_test, identity_without_a_user_fails_with_no_credentials) {
  auto client = make_ntlm_client(*credentials_);
  token t = make_token(identity::of(61000 + 11, 61000 + 11, {61000 + 11}));
  direct_legs legs(*server_, *backend_);
  establish_outcome out = establish(*client, legs, &t);
  EXPECT_EQ(out.error, call_error::no_credentials);
  EXPECT_NE(out.detail.find("61011"), std::string::npos) << out.detail;
  EXPECT_TRUE(legs.sent.empty()) << "nothing reached the server";
}

TEST_F(ntlm_package_test, wrong_nt_hash_is_refused) {
  identity c0 = test_clients().client(0);
  ntlm_credentials wrong(
      info(), {ntlm_account{c0.uid, ntlm_user_for(c0.uid, backend_->process_identity(), "CB"),
                            nt_hash_hex("not the password")}});
  auto client = make_ntlm_client(wrong);
  token t = make_token(c0);
  direct_legs legs(*server_, *backend_);
  establish_outcome out = establish(*client, legs, &t);
  EXPECT_EQ(out.error, call_error::refused);
  EXPECT_EQ(legs.sent.size(), 2u) << "refused on the AUTHENTICATE";
  EXPECT_EQ(legs.last.refusal, protocol::status::auth_failed);
  std::printf("wrong hash: %s\n", legs.last.detail.c_str());
}

TEST_F(ntlm_package_test, tampered_authenticate_is_refused) {
  auto client = make_ntlm_client(*credentials_);
  token t = make_token(test_clients().client(0));
  direct_legs legs(*server_, *backend_);
  legs.tamper_leg = 2;
  establish_outcome out = establish(*client, legs, &t);
  EXPECT_EQ(out.error, call_error::refused);
  EXPECT_EQ(legs.last.refusal, protocol::status::auth_failed);
  std::printf("tampered: %s\n", legs.last.detail.c_str());
}

TEST_F(ntlm_package_test, authenticate_replayed_against_a_new_challenge_is_refused) {
  auto client = make_ntlm_client(*credentials_);
  token t = make_token(test_clients().client(3));
  direct_legs first(*server_, *backend_);
  ASSERT_EQ(establish(*client, first, &t).error, call_error::ok);
  // The recorded NEGOTIATE gets a fresh CHALLENGE; the recorded AUTHENTICATE answered the old one.
  token_buffer reply;
  accept_outcome challenge = server_->accept(peer_info{}, first.sent[0], nullptr, reply);
  ASSERT_EQ(challenge.result, accept_outcome::kind::more) << challenge.detail;
  EXPECT_NE(std::vector<std::byte>(reply.begin(), reply.end()), first.replies[0]);
  accept_outcome again =
      server_->accept(peer_info{}, first.sent[1], std::move(challenge.state), reply);
  EXPECT_EQ(again.result, accept_outcome::kind::refused);
  EXPECT_EQ(again.refusal, protocol::status::auth_failed);
  std::printf("replayed: %s\n", again.detail.c_str());
}

TEST_F(ntlm_package_test, user_missing_from_the_idmap_is_refused_as_unknown) {
  ntlm_credentials as_stranger(info(), {stranger()});
  auto client = make_ntlm_client(as_stranger);
  token t = make_token(identity::of(stranger().uid, stranger().uid, {stranger().uid}));
  direct_legs legs(*server_, *backend_);
  establish_outcome out = establish(*client, legs, &t);
  EXPECT_EQ(out.error, call_error::refused);
  EXPECT_EQ(legs.last.refusal, protocol::status::unknown_principal);
  EXPECT_NE(legs.last.detail.find("CB\\stranger"), std::string::npos) << legs.last.detail;
}

TEST_F(ntlm_package_test, mic_verifies_and_a_tampered_mic_or_message_fails) {
  ntlm_client_options options;
  options.per_call = protection::integrity;
  auto client = make_ntlm_client(*credentials_, options);
  EXPECT_EQ(client->per_call(), protection::integrity);
  token t = make_token(test_clients().client(1));
  direct_legs legs(*server_, *backend_);
  establish_outcome out = establish(*client, legs, &t);
  ASSERT_EQ(out.error, call_error::ok) << out.detail;
  std::vector<std::byte> message(64, std::byte{0x5a});
  token_buffer mic;
  ASSERT_TRUE(client->sign(out.state.get(), message, mic));
  EXPECT_EQ(mic.size(), 16u);
  EXPECT_TRUE(server_->verify(legs.state.get(), message, mic));
  ASSERT_TRUE(client->sign(out.state.get(), message, mic));
  token_buffer bad = mic;
  bad.back() ^= std::byte{0x01};
  EXPECT_FALSE(server_->verify(legs.state.get(), message, bad));
  std::vector<std::byte> other = message;
  other[3] ^= std::byte{0x01};
  EXPECT_FALSE(server_->verify(legs.state.get(), other, mic));
  EXPECT_FALSE(server_->verify(nullptr, message, mic));
}

TEST_F(ntlm_package_test, threads_presenting_distinct_clients_each_authenticate_as_their_own) {
  std::vector<std::thread> threads;
  std::vector<identity> seen(test_clients().count);
  std::vector<call_error> errors(test_clients().count, call_error::protocol);
  for (std::uint32_t i = 0; i < test_clients().count; ++i) {
    threads.emplace_back([&, i] {
      auto client = make_ntlm_client(*credentials_);
      token t = make_token(test_clients().client(i));
      for (int round = 0; round < 5; ++round) {
        direct_legs legs(*server_, *backend_);
        errors[i] = establish(*client, legs, &t).error;
        if (errors[i] != call_error::ok) return;
        seen[i] = legs.seen;
      }
    });
  }
  for (auto& th : threads) th.join();
  for (std::uint32_t i = 0; i < test_clients().count; ++i) {
    EXPECT_EQ(errors[i], call_error::ok) << i;
    EXPECT_EQ(seen[i].uid, test_clients().client(i).uid);
  }
}

// Every client thread of a middle server presents P with the one credential handle acquired for it.
TEST_F(ntlm_package_test, threads_sharing_ps_credential_each_authenticate_as_p) {
  constexpr int thread_count = 4;
  std::vector<std::thread> threads;
  std::vector<int> ok(thread_count, 0);
  for (int i = 0; i < thread_count; ++i) {
    threads.emplace_back([&, i] {
      auto client = make_ntlm_client(*credentials_);
      for (int round = 0; round < 20; ++round) {
        direct_legs legs(*server_, *backend_);
        if (establish(*client, legs, nullptr).error != call_error::ok) return;
        if (legs.seen.uid != backend_->process_identity().uid) return;
        ++ok[i];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int i = 0; i < thread_count; ++i) EXPECT_EQ(ok[i], 20) << "thread " << i;
}

TEST_F(ntlm_package_test, domain_files_are_private_and_hold_hashes_not_passwords) {
  namespace fs = std::filesystem;
  EXPECT_EQ(fs::status(info().keyfile).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(fs::status(info().client_keys).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(std::getenv("GSS_MECH_CONFIG"), info().mech_config);
  EXPECT_EQ(info().mech_config.rfind(info().dir + "/", 0), 0u);
  EXPECT_EQ(info().mech_config.find("/etc/gss"), std::string::npos);
  // Every user file line is smbpasswd's NAME:UID:LMHASH:NTHASH:FLAGS:LCT with a 32-hex NT hash.
  std::ifstream users(info().keyfile);
  int lines = 0;
  for (std::string line; std::getline(users, line); ++lines) {
    std::vector<std::string> fields;
    for (std::size_t at = 0;;) {
      auto colon = line.find(':', at);
      fields.push_back(line.substr(at, colon - at));
      if (colon == std::string::npos) break;
      at = colon + 1;
    }
    ASSERT_EQ(fields.size(), 6u) << line;
    EXPECT_EQ(fields[3].size(), 32u) << line;
    EXPECT_EQ(fields[3].find_first_not_of("0123456789abcdef"), std::string::npos) << line;
  }
  EXPECT_EQ(lines, static_cast<int>(test_clients().count) + 2) << "P, the clients, the stranger";
  ntlm_info loaded = ntlm_info::load(info().dir);
  EXPECT_EQ(loaded.domain, "CB");
  EXPECT_EQ(loaded.service, info().service);
  EXPECT_EQ(loaded.keyfile, info().keyfile);
}

TEST_F(ntlm_package_test, server_refuses_to_start_without_the_private_mechanism_file) {
  std::string saved = std::getenv("GSS_MECH_CONFIG");
  ::setenv("GSS_MECH_CONFIG", "/etc/gss/mech", 1);
  EXPECT_THROW(make_ntlm_server(info()), std::runtime_error);
  ::setenv("GSS_MECH_CONFIG", saved.c_str(), 1);
}

}  // namespace
}  // namespace cloak
