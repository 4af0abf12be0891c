// The authentication seam: a third package (a test double with a two-leg handshake and a per-call
// check) plugs into the proxy, the connection and the session without a change to any of them.
#include <cloak/auth.hpp>
#include <cloak/connection.hpp>
#include <cloak/downstream.hpp>
#include <cloak/proxy.hpp>
#include <cstring>
#include <map>
#include <string>

#include "support.hpp"

namespace cloak::test {
namespace {

std::span<const std::byte> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
std::string as_text(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// Leg 1: "hello" -> the server answers "more" with a nonce. Leg 2: "uid=U nonce=N" -> done as the
// identity the server's directory has for U. The client never becomes anyone: it says who it is.
// Per call: the "MIC" is the payload size and the nonce, which the server checks.
struct nonce_state final : client_context_state {
  std::string nonce;
};

class double_client final : public client_package {
 public:
  bool tamper_next_mic = false;
  package_id id() const noexcept override { return package_id::test; }
  bool needs_kernel_credentials() const noexcept override { return false; }
  protection per_call() const noexcept override { return protection::integrity; }

  establish_outcome establish(const presentation& p, establish_legs& legs) noexcept override {
    establish_outcome out;
    leg_reply reply;
    if ((out.error = legs.leg(as_bytes("hello"), reply)) != call_error::ok) return out;
    if (!reply.more) {
      out.error = call_error::protocol;
      return out;
    }
    auto state = std::make_unique<nonce_state>();
    state->nonce = as_text(reply.token);
    std::uint32_t uid = p.who ? p.who->who.uid : p.backend.process_identity().uid;
    std::string second = "uid=" + std::to_string(uid) + " nonce=" + state->nonce;
    if ((out.error = legs.leg(as_bytes(second), reply)) != call_error::ok) return out;
    if (reply.more) {
      out.error = call_error::protocol;
      return out;
    }
    out.state = std::move(state);
    return out;
  }

  bool sign(client_context_state* state, std::span<const std::byte> message,
            token_buffer& mic) noexcept override {
    auto* s = static_cast<nonce_state*>(state);
    if (!s) return false;
    std::string m = std::to_string(message.size()) + ":" + s->nonce +
                    (std::exchange(tamper_next_mic, false) ? "x" : "");
    auto b = as_bytes(m);
    mic.assign(b.begin(), b.end());
    return true;
  }
};

struct server_nonce final : server_context_state {
  std::string nonce;
};

class double_server final : public server_package {
 public:
  explicit double_server(std::map<std::uint32_t, identity> directory)
      : directory_(std::move(directory)) {}
  package_id id() const noexcept override { return package_id::test; }
  int legs_seen = 0;

  accept_outcome accept(const peer_info&, std::span<const std::byte> token,
                        std::unique_ptr<server_context_state> state, token_buffer& reply) override {
    ++legs_seen;
    accept_outcome a;
    std::string t = as_text(token);
    if (!state) {
      if (t != "hello") {
        a.detail = "expected hello";
        return a;
      }
      auto s = std::make_unique<server_nonce>();
      s->nonce = std::to_string(++nonces_);
      auto b = as_bytes(s->nonce);
      reply.assign(b.begin(), b.end());
      a.result = accept_outcome::kind::more;
      a.state = std::move(s);
      return a;
    }
    auto* s = static_cast<server_nonce*>(state.get());
    unsigned uid = 0;
    char nonce[32]{};
    if (std::sscanf(t.c_str(), "uid=%u nonce=%31s", &uid, nonce) != 2 || s->nonce != nonce) {
      {
        a.detail = "bad second leg";
        return a;
      }
    }
    auto it = directory_.find(uid);
    if (it == directory_.end()) {
      a.refusal = protocol::status::unknown_principal;
      return a;
    }
    a.result = accept_outcome::kind::done;
    a.who = it->second;
    a.state = std::move(state);
    return a;
  }

  bool verify(server_context_state* state, std::span<const std::byte> message,
              std::span<const std::byte> mic) noexcept override {
    auto* s = static_cast<server_nonce*>(state);
    return s && as_text(mic) == std::to_string(message.size()) + ":" + s->nonce;
  }

 private:
  std::map<std::uint32_t, identity> directory_;
  int nonces_ = 0;
};

class package_seam : public leak_checked_test {
 protected:
  identity_backend& be() { return backend(backend_kind::model); }
  double_server server_{
      {{client(0).uid, client(0)}, {client(1).uid, client(1)}, {0, identity::of(0, 0)}}};
  model_downstream downstream_;
  double_client* client_ = nullptr;

  std::unique_ptr<connection> connect_double() {
    downstream_.add_package(server_);
    auto c = std::make_unique<double_client>();
    client_ = c.get();
    return make_connection(make_inproc_channel(downstream_, be()), std::move(c));
  }
};

const std::byte payload[16]{};

TEST_F(package_seam, a_third_package_authenticates_dynamic_cloaking_in_two_legs) {
  auto t = connect_double();
  proxy p(be(), *t, {}, dynamic_options{identity_probe::kernel, context_cache_policy::lru(4)});
  p.set_blanket(blanket{cloaking::dynamic, impersonation_level::impersonate, std::nullopt});
  {
    impersonation as_c1(be(), client_token(0));
    call_result r = p.call(payload);
    ASSERT_TRUE(r.ok()) << to_string(r.error) << " " << t->last_establish().detail;
    EXPECT_TRUE(r.view.seen.same_principal(client(0)));
    impersonation as_c2(be(), client_token(1));
    r = p.call(payload);
    ASSERT_TRUE(r.ok()) << to_string(r.error);
    EXPECT_TRUE(r.view.seen.same_principal(client(1)));
  }
  call_result r = p.call(payload);
  ASSERT_TRUE(r.ok()) << to_string(r.error);
  EXPECT_TRUE(r.view.seen.same_principal(be().process_identity()));
  EXPECT_EQ(p.counters().contexts_established, 3u);
  EXPECT_EQ(server_.legs_seen, 6) << "every establish took both legs";
}

TEST_F(package_seam, a_call_whose_per_call_check_fails_is_refused_with_bad_mic) {
  auto t = connect_double();
  proxy p(be(), *t);
  ASSERT_TRUE(p.call(payload).ok());
  client_->tamper_next_mic = true;
  call_result r = p.call(payload);
  EXPECT_EQ(r.error, call_error::refused);
  EXPECT_EQ(r.view.server_status, protocol::status::bad_mic);
  EXPECT_TRUE(p.call(payload).ok()) << "the connection and the context survive a refused call";
}

TEST_F(package_seam, an_identity_the_package_cannot_map_is_refused_by_name) {
  auto t = connect_double();
  proxy p(be(), *t, {}, dynamic_options{});
  p.set_blanket(blanket{cloaking::dynamic, impersonation_level::impersonate, std::nullopt});
  impersonation as_c3(be(), client_token(2));  // not in the server's directory
  call_result r = p.call(payload);
  EXPECT_EQ(r.error, call_error::refused);
  EXPECT_EQ(r.view.server_status, protocol::status::unknown_principal);
}

TEST_F(package_seam, a_server_that_does_not_run_the_package_says_which_it_runs) {
  model_downstream plain;  // local only
  auto t = make_connection(make_inproc_channel(plain, be()), std::make_unique<double_client>());
  proxy p(be(), *t);
  call_result r = p.call(payload);
  EXPECT_EQ(r.error, call_error::refused);
  EXPECT_EQ(r.view.server_status, protocol::status::unknown_package);
  EXPECT_NE(t->last_establish().detail.find("local"), std::string::npos)
      << t->last_establish().detail;
}

}  // namespace
}  // namespace cloak::test
