// The kerberos package against a realm this suite starts: who the server sees, and every refusal.
#include <fmt/format.h>
#include <signal.h>

#include <atomic>
#include <cloak/backend.hpp>
#include <cloak/kerberos.hpp>
#include <cloak/net.hpp>
#include <cloak/realm.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include "kerberos_test_support.hpp"

namespace cloak {
namespace {

using namespace std::chrono_literals;
using test::test_clients;

// The connection, without a wire: every leg goes straight to the server package. Records each
// token it carried; `tamper` flips the last byte of the first token, `drop_reply_token` hides the
// server's answer token (a server that says "done" without the AP-REP). The server runs as P, as
// cloak-downstream would: MIT's acceptor opens the 0600 service keytab on every accept, which a
// thread switched to a client cannot.
class direct_legs final : public establish_legs {
 public:
  direct_legs(server_package& server, identity_backend& backend)
      : server_(server), backend_(backend) {}

  call_error leg(std::span<const std::byte> token, leg_reply& out) noexcept override {
    try {
      sent.emplace_back(token.begin(), token.end());
      std::vector<std::byte> carried = sent.back();
      if (tamper && sent.size() == 1) carried.back() ^= std::byte{0x01};
      {
        temporary_identity as_server(backend_, nullptr);
        last = server_.accept(peer_info{}, carried, std::move(state), reply_);
      }
      out.more = last.result == accept_outcome::kind::more;
      out.token =
          drop_reply_token ? std::span<const std::byte>() : std::span<const std::byte>(reply_);
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

  bool tamper = false;
  bool drop_reply_token = false;
  std::vector<std::vector<std::byte>> sent;
  accept_outcome last;
  std::unique_ptr<server_context_state> state;  // the accepted context once done
  bool done = false;
  identity seen;

 private:
  server_package& server_;
  identity_backend& backend_;
  token_buffer reply_;
};

// The TGS-REQs the KDC issued a ticket for the downstream service, as its log counts them.
std::size_t service_tickets_issued(const realm_info& info) {
  std::ifstream log(info.kdc_log);
  std::size_t n = 0;
  std::string needle = " for " + info.service;
  for (std::string line; std::getline(log, line);) {
    if (line.find("TGS_REQ") != std::string::npos && line.find("ISSUE") != std::string::npos &&
        line.find(needle) != std::string::npos) {
      ++n;
    }
  }
  return n;
}

class kerberos_package_test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::krb5_programs_installed() || ::geteuid() != 0) return;
    backend_ = make_kernel_backend().release();
    realm_config config;
    config.clients = test_clients();
    config.process = backend_->process_identity();
    realm_ = new realm(config);
    realm_->export_environment();
    auto started = std::chrono::steady_clock::now();
    credentials_ =
        new kerberos_credentials(realm_->info(), test_clients(), backend_->process_identity());
    std::printf("realm setup %.3f s, credentials for %u identities %.3f s\n",
                realm_->info().setup_seconds, test_clients().count + 1,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  static void TearDownTestSuite() {
    delete credentials_;
    delete realm_;
    delete backend_;
    credentials_ = nullptr;
    realm_ = nullptr;
    backend_ = nullptr;
  }

  void SetUp() override {
    CLOAK_SKIP_UNLESS_KRB5();
    ASSERT_NE(credentials_, nullptr);
  }
  void TearDown() override {
    if (backend_) backend_->check_no_leak();
  }

  static const realm_info& info() { return realm_->info(); }
  static std::unique_ptr<server_package> server(std::string rcache = "none") {
    return make_kerberos_server(info(), kerberos_server_options{"", std::move(rcache), ""});
  }
  static establish_outcome establish(client_package& client, direct_legs& legs, const token* who) {
    return client.establish(presentation{*backend_, who}, legs);
  }

  static inline identity_backend* backend_ = nullptr;
  static inline realm* realm_ = nullptr;
  static inline kerberos_credentials* credentials_ = nullptr;
};

TEST_F(kerberos_package_test, client_context_authenticates_as_its_own_uid) {
  auto srv = server();
  auto client = make_kerberos_client(*credentials_);
  token t = make_token(test_clients().client(1));
  direct_legs legs(*srv, *backend_);
  establish_outcome out = establish(*client, legs, &t);
  ASSERT_EQ(out.error, call_error::ok) << out.detail;
  EXPECT_TRUE(out.switched_identity);
  EXPECT_NE(out.state, nullptr);
  ASSERT_TRUE(legs.done);
  EXPECT_EQ(legs.seen, test_clients().client(1)) << "uid, gid and groups from the idmap";
  EXPECT_EQ(authenticated_principal(legs.state.get()), fmt::format("client-61001@{}", info().name));
  EXPECT_EQ(legs.sent.size(), 1u) << "one AP-REQ; the AP-REP comes back with the server's answer";
  EXPECT_EQ(client->id(), package_id::kerberos);
  EXPECT_FALSE(client->needs_kernel_credentials());
}

TEST_F(kerberos_package_test, process_identity_authenticates_as_p) {
  auto srv = server();
  auto client = make_kerberos_client(*credentials_);
  direct_legs legs(*srv, *backend_);
  establish_outcome out = establish(*client, legs, nullptr);
  ASSERT_EQ(out.error, call_error::ok) << out.detail;
  EXPECT_FALSE(out.switched_identity);
  EXPECT_EQ(legs.seen, backend_->process_identity());
  EXPECT_EQ(authenticated_principal(legs.state.get()), "cloak-middle@" + info().name);
}

TEST_F(kerberos_package_test, thread_kernel_identity_selects_the_principal) {
  auto srv = server();
  auto client = make_kerberos_client(*credentials_);
  token t = make_token(test_clients().client(2));
  impersonation as(*backend_, t);  // the thread already is client 2: establish switches nothing
  direct_legs legs(*srv, *backend_);
  establish_outcome out = establish(*client, legs, &t);
  ASSERT_EQ(out.error, call_error::ok) << out.detail;
  EXPECT_FALSE(out.switched_identity);
  EXPECT_EQ(legs.seen.uid, test_clients().client(2).uid);

  direct_legs as_p(
      *srv, *backend_);  // presenting P from a thread that is client 2 switches to P and back
  establish_outcome p = establish(*client, as_p, nullptr);
  ASSERT_EQ(p.error, call_error::ok) << p.detail;
  EXPECT_TRUE(p.switched_identity);
  EXPECT_EQ(as_p.seen.uid, backend_->process_identity().uid);
  EXPECT_EQ(backend_->read_thread_identity().uid, test_clients().client(2).uid)
      << "the token came back";
}

TEST_F(kerberos_package_test, identity_without_a_principal_fails_with_no_credentials) {
  auto srv = server();
  auto client = make_kerberos_client(*credentials_);
  identity stranger = identity::of(61000 + 10, 61000 + 10, {61000 + 10});  // outside the 4 clients
  token t = make_token(stranger);
  direct_legs legs(*srv, *backend_);
  establish_outcome out = establish(*client, legs, &t);
  EXPECT_EQ(out.error, call_error::no_credentials);
  EXPECT_NE(out.detail.find("61010"), std::string::npos) << out.detail;
  EXPECT_TRUE(legs.sent.empty()) << "nothing reached the server";
  EXPECT_FALSE(credentials_->has_credentials(61010));
  EXPECT_TRUE(credentials_->has_credentials(61003));
}

TEST_F(kerberos_package_test, tampered_ap_req_is_refused) {
  auto srv = server();
  auto client = make_kerberos_client(*credentials_);
  token t = make_token(test_clients().client(0));
  direct_legs legs(*srv, *backend_);
  legs.tamper = true;
  establish_outcome out = establish(*client, legs, &t);
  EXPECT_EQ(out.error, call_error::refused);
  EXPECT_EQ(legs.last.result, accept_outcome::kind::refused);
  EXPECT_EQ(legs.last.refusal, protocol::status::auth_failed);
  EXPECT_FALSE(legs.last.detail.empty());
  std::printf("tampered: %s\n", legs.last.detail.c_str());
}

TEST_F(kerberos_package_test, replayed_ap_req_is_refused_with_a_file2_replay_cache) {
  std::string rcache = info().dir + "/replay-test.rcache";
  auto srv = server("file2:" + rcache);
  auto client = make_kerberos_client(*credentials_);
  token t = make_token(test_clients().client(3));
  direct_legs legs(*srv, *backend_);
  ASSERT_EQ(establish(*client, legs, &t).error, call_error::ok);
  token_buffer reply;
  accept_outcome again = srv->accept(peer_info{}, legs.sent.front(), nullptr, reply);
  EXPECT_EQ(again.result, accept_outcome::kind::refused);
  EXPECT_EQ(again.refusal, protocol::status::auth_failed);
  std::printf("replayed: %s\n", again.detail.c_str());
  EXPECT_TRUE(std::filesystem::exists(rcache));
}

TEST_F(kerberos_package_test, replayed_ap_req_is_accepted_without_a_replay_cache) {
  auto srv = server("none");
  auto client = make_kerberos_client(*credentials_);
  token t = make_token(test_clients().client(3));
  direct_legs legs(*srv, *backend_);
  ASSERT_EQ(establish(*client, legs, &t).error, call_error::ok);
  token_buffer reply;
  accept_outcome again = srv->accept(peer_info{}, legs.sent.front(), nullptr, reply);
  EXPECT_EQ(again.result, accept_outcome::kind::done) << again.detail;
  EXPECT_EQ(again.who.uid, test_clients().client(3).uid);
}

TEST_F(kerberos_package_test, unknown_replay_cache_spelling_is_rejected) {
  EXPECT_THROW(server("memory"), std::invalid_argument);
  EXPECT_NO_THROW(server("none:"));
}

TEST_F(kerberos_package_test, mic_verifies_and_a_tampered_mic_or_message_fails) {
  auto srv = server();
  kerberos_client_options options;
  options.per_call = protection::integrity;
  auto client = make_kerberos_client(*credentials_, options);
  EXPECT_EQ(client->per_call(), protection::integrity);
  token t = make_token(test_clients().client(1));
  direct_legs legs(*srv, *backend_);
  establish_outcome out = establish(*client, legs, &t);
  ASSERT_EQ(out.error, call_error::ok) << out.detail;
  std::vector<std::byte> message(64, std::byte{0x5a});
  token_buffer mic;
  ASSERT_TRUE(client->sign(out.state.get(), message, mic));
  EXPECT_FALSE(mic.empty());
  EXPECT_TRUE(srv->verify(legs.state.get(), message, mic));
  const std::byte* storage = mic.data();
  ASSERT_TRUE(client->sign(out.state.get(), message, mic));
  EXPECT_EQ(mic.data(), storage) << "the MIC buffer is reused";
  token_buffer bad = mic;
  bad.back() ^= std::byte{0x01};
  EXPECT_FALSE(srv->verify(legs.state.get(), message, bad));
  std::vector<std::byte> other = message;
  other[3] ^= std::byte{0x01};
  EXPECT_FALSE(srv->verify(legs.state.get(), other, mic));
  EXPECT_FALSE(srv->verify(nullptr, message, mic));
}

TEST_F(kerberos_package_test, cold_tickets_ask_the_kdc_for_a_service_ticket_per_context) {
  auto srv = server();
  auto warm = make_kerberos_client(*credentials_);
  kerberos_client_options cold_options;
  cold_options.tickets = ticket_state::cold;
  auto cold = make_kerberos_client(*credentials_, cold_options);
  token t = make_token(test_clients().client(0));
  std::size_t before = service_tickets_issued(info());
  for (int i = 0; i < 3; ++i) {
    direct_legs legs(*srv, *backend_);
    ASSERT_EQ(establish(*warm, legs, &t).error, call_error::ok);
  }
  EXPECT_EQ(service_tickets_issued(info()), before) << "warm contexts use the cached ticket";
  for (int i = 0; i < 3; ++i) {
    direct_legs legs(*srv, *backend_);
    establish_outcome out = establish(*cold, legs, &t);
    ASSERT_EQ(out.error, call_error::ok) << out.detail;
    EXPECT_EQ(legs.seen.uid, t.who.uid);
  }
  EXPECT_EQ(service_tickets_issued(info()), before + 3) << "one TGS-REQ per cold context";
}

// Resumes the KDC on every exit path so a failing test cannot leave it stopped for the others.
struct resume_kdc {
  realm& r;
  ~resume_kdc() { r.kill_kdc(SIGCONT); }
};

TEST_F(kerberos_package_test, stopped_kdc_gives_a_bounded_named_error_and_works_after_sigcont) {
  auto srv = server();
  kerberos_client_options cold_options;
  cold_options.tickets = ticket_state::cold;
  cold_options.kdc_timeout = 1000ms;
  auto cold = make_kerberos_client(*credentials_, cold_options);
  auto warm = make_kerberos_client(*credentials_);
  token t = make_token(test_clients().client(2));
  {
    ASSERT_TRUE(realm_->kill_kdc(SIGSTOP));
    resume_kdc guard{*realm_};
    auto started = std::chrono::steady_clock::now();
    direct_legs legs(*srv, *backend_);
    establish_outcome out = establish(*cold, legs, &t);
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::printf("cold establish with the KDC stopped: %.2f s: %s\n", took, out.detail.c_str());
    EXPECT_EQ(out.error, call_error::authentication_failed);
    EXPECT_NE(out.detail.find("no answer within 1000 ms"), std::string::npos) << out.detail;
    EXPECT_TRUE(legs.sent.empty());
    direct_legs warm_legs(*srv, *backend_);
    EXPECT_EQ(establish(*warm, warm_legs, &t).error, call_error::ok)
        << "a cached ticket needs no KDC";
  }
  direct_legs legs(*srv, *backend_);
  establish_outcome out = establish(*cold, legs, &t);
  EXPECT_EQ(out.error, call_error::ok) << out.detail;
}

// A KDC that takes the request and then answers `reply` (nothing, or part of a reply) and closes
// the connection or holds it open until the test ends.
class broken_kdc {
 public:
  broken_kdc(std::string reply, bool hold)
      : listener_(os::listen_tcp({"127.0.0.1", 0})), reply_(std::move(reply)), hold_(hold) {
    port_ = os::local_endpoint(listener_.get()).port;
    timeval bound{10, 0};  // a client that never comes does not hold the test forever
    ::setsockopt(listener_.get(), SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
    thread_ = std::thread([this] {
      os::unique_fd peer(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      char request[4096];
      (void)::recv(peer.get(), request, sizeof request, 0);
      (void)os::send_all(peer.get(), reply_.data(), reply_.size());
      if (hold_) (void)::recv(peer.get(), request, sizeof request, 0);  // until the client goes
    });
  }
  ~broken_kdc() { thread_.join(); }
  std::uint16_t port() const { return port_; }

 private:
  os::unique_fd listener_;
  std::string reply_;
  bool hold_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

std::string credentials_error(const realm_info& realm, const identity& process,
                              std::chrono::milliseconds timeout) {
  try {
    std::uint32_t uid = test_clients().client(0).uid;
    kerberos_credentials c(realm, {{uid, principal_for(uid, process, realm.name)}},
                           realm.client_keytab, "", timeout);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "no error";
}

TEST_F(kerberos_package_test, kdc_that_closes_or_stalls_mid_reply_fails_within_the_bound) {
  realm_info closing = info();
  broken_kdc closes("", false);
  closing.kdc_port = closes.port();
  std::string why = credentials_error(closing, backend_->process_identity(), 2000ms);
  EXPECT_NE(why.find("cannot get a TGT"), std::string::npos) << why;
  EXPECT_NE(why.find("closed the connection before it answered"), std::string::npos) << why;

  realm_info stalling = info();
  broken_kdc stalls(std::string("\0\0", 2), true);  // half of the reply's length, then nothing
  stalling.kdc_port = stalls.port();
  auto started = std::chrono::steady_clock::now();
  why = credentials_error(stalling, backend_->process_identity(), 300ms);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_NE(why.find("no answer within 300 ms"), std::string::npos) << why;
  EXPECT_LT(took, 5.0) << "each KDC request gives up within its 300 ms: " << why;
  std::printf("a stalled KDC: %.2f s: %s\n", took, why.c_str());
}

TEST_F(kerberos_package_test, server_answering_done_without_the_ap_rep_fails_authentication) {
  auto srv = server();
  auto client = make_kerberos_client(*credentials_);  // mutual by default
  token t = make_token(test_clients().client(1));
  direct_legs legs(*srv, *backend_);
  legs.drop_reply_token = true;
  establish_outcome out = establish(*client, legs, &t);
  EXPECT_EQ(out.error, call_error::authentication_failed);
  EXPECT_NE(out.detail.find("AP-REP"), std::string::npos) << out.detail;
  EXPECT_EQ(out.state, nullptr);
}

TEST_F(kerberos_package_test, without_mutual_authentication_the_server_sends_no_token) {
  auto srv = server();
  kerberos_client_options options;
  options.mutual = false;
  auto client = make_kerberos_client(*credentials_, options);
  token t = make_token(test_clients().client(1));
  direct_legs legs(*srv, *backend_);
  legs.drop_reply_token = true;
  establish_outcome out = establish(*client, legs, &t);
  EXPECT_EQ(out.error, call_error::ok) << out.detail;
  EXPECT_EQ(legs.seen.uid, t.who.uid);
}

TEST_F(kerberos_package_test, principal_missing_from_the_idmap_is_refused_as_unknown) {
  realm_info partial = info();
  partial.idmap = info().dir + "/idmap-without-61001";
  {
    std::ifstream in(info().idmap);
    std::ofstream out(partial.idmap);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("client-61001@", 0) != 0) out << line << "\n";
    }
  }
  auto srv = make_kerberos_server(partial);
  auto client = make_kerberos_client(*credentials_);
  token t = make_token(test_clients().client(1));
  direct_legs legs(*srv, *backend_);
  EXPECT_EQ(establish(*client, legs, &t).error, call_error::refused);
  EXPECT_EQ(legs.last.refusal, protocol::status::unknown_principal);
  EXPECT_NE(legs.last.detail.find("client-61001@"), std::string::npos) << legs.last.detail;
}

TEST_F(kerberos_package_test, delegate_level_forwards_a_tgt_the_server_keeps) {
  auto srv = server();
  kerberos_client_options options;
  options.delegate = true;
  auto delegating = make_kerberos_client(*credentials_, options);
  auto plain = make_kerberos_client(*credentials_);
  token t = make_token(test_clients().client(0));
  direct_legs with(*srv, *backend_);
  ASSERT_EQ(establish(*delegating, with, &t).error, call_error::ok);
  EXPECT_TRUE(holds_delegated_credentials(with.state.get()));
  direct_legs without(*srv, *backend_);
  ASSERT_EQ(establish(*plain, without, &t).error, call_error::ok);
  EXPECT_FALSE(holds_delegated_credentials(without.state.get()));
}

TEST_F(kerberos_package_test, threads_presenting_distinct_clients_each_authenticate_as_their_own) {
  auto srv = server();
  constexpr int threads = 4, rounds = 25;
  std::atomic<int> mismatches{0}, failures{0};
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      auto client = make_kerberos_client(*credentials_);  // one per thread, as the proxy has them
      token mine = make_token(test_clients().client(static_cast<std::uint32_t>(i)));
      for (int r = 0; r < rounds; ++r) {
        direct_legs legs(*srv, *backend_);
        // Every other round presents P: all threads share P's credentials.
        const token* who = r % 2 ? nullptr : &mine;
        establish_outcome out = establish(*client, legs, who);
        if (out.error != call_error::ok) {
          ++failures;
          continue;
        }
        std::uint32_t want = who ? mine.who.uid : backend_->process_identity().uid;
        if (legs.seen.uid != want) ++mismatches;
      }
      try {
        backend_->check_no_leak();
      } catch (const std::exception&) {
        ++mismatches;
      }
    });
  }
  for (auto& t : pool) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace cloak
