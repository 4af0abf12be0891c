// The tcp channel and cloak-downstream's TCP server, on loopback (no namespace needed): the
// kerberos package authenticates across it, the local package is refused on both sides, a port
// nobody listens on fails at once, forward_call without a next hop is refused by name, and the
// codec's forward bodies keep every field.
#include <fmt/format.h>
#include <sys/socket.h>

#include <array>
#include <chrono>
#include <cloak/backend.hpp>
#include <cloak/connection.hpp>
#include <cloak/downstream.hpp>
#include <cloak/kerberos.hpp>
#include <cloak/net.hpp>
#include <cloak/protocol.hpp>
#include <cloak/proxy.hpp>
#include <cloak/realm.hpp>
#include <cloak/test/support.hpp>

#include "../kerberos/kerberos_test_support.hpp"

namespace cloak {
namespace {

using namespace std::chrono_literals;

// A realm on loopback and a cloak-downstream listening on tcp:127.0.0.1:<any> with its kerberos
// package, started per test.
class tcp_downstream_test : public test::leak_checked_test {
 protected:
  void SetUp() override {
    CLOAK_SKIP_UNLESS_KRB5();
    test::leak_checked_test::SetUp();
    realm_config rc;
    rc.clients = test::clients();
    rc.process = test::process_at_start();
    kdc_ = std::make_unique<realm>(rc);
    kdc_->export_environment();
    downstream_config dc = test::client_downstream_config();
    dc.realm_dir = kdc_->info().dir;
    dc.listen = "tcp:127.0.0.1:0";
    server_ = std::make_unique<downstream_process>(dc);
    address_ = os::parse_tcp_endpoint(server_->address());
    credentials_ = std::make_unique<kerberos_credentials>(kdc_->info(), test::clients(),
                                                          test::process_at_start());
  }
  void TearDown() override {
    credentials_.reset();
    server_.reset();
    kdc_.reset();
    if (!IsSkipped()) test::leak_checked_test::TearDown();
  }
  std::unique_ptr<channel> tcp() {
    return make_tcp_channel(tcp_options{address_.address, address_.port, 2000ms});
  }
  identity_backend& kernel() { return test::backend(backend_kind::kernel); }

  std::unique_ptr<realm> kdc_;
  std::unique_ptr<downstream_process> server_;
  std::unique_ptr<kerberos_credentials> credentials_;
  os::tcp_endpoint address_;
};

TEST_F(tcp_downstream_test,
       kerberos_over_tcp_shows_each_client_and_the_channel_carries_no_kernel_credentials) {
  auto ch = tcp();
  EXPECT_FALSE(ch->carries_kernel_credentials());
  auto t = make_connection(std::move(ch), make_kerberos_client(*credentials_));
  proxy p(kernel(), *t);
  p.set_blanket(test::blanket_of(cloaking::dynamic));
  static const std::byte payload[64]{};
  for (std::uint32_t i : {0u, 1u, 0u}) {
    impersonation as(kernel(), test::client_token(i));
    call_result r = p.call(payload);
    ASSERT_TRUE(r.ok()) << to_string(r.error) << ": " << t->last_establish().detail;
    EXPECT_TRUE(r.view.seen.same_principal(test::client(i)));
  }
  EXPECT_EQ(p.counters().contexts_established, 3u);
}

TEST_F(tcp_downstream_test, local_package_over_tcp_is_refused_by_the_client_and_by_the_server) {
  auto t = make_connection(tcp(), make_local_client());
  ASSERT_EQ(t->connect(), call_error::ok);
  downstream_view v;
  EXPECT_EQ(t->establish(presentation{kernel(), nullptr, impersonation_level::impersonate}, 0, v),
            call_error::package_unavailable);
  EXPECT_NE(t->last_establish().detail.find("kernel peer credentials"), std::string::npos);
  // A client that sends a local establish anyway: the server refuses it by name, never falling
  // back.
  struct claims_local final : client_package {
    package_id id() const noexcept override { return package_id::local; }
    bool needs_kernel_credentials() const noexcept override { return false; }
    establish_outcome establish(const presentation&, establish_legs& legs) noexcept override {
      establish_outcome out;
      leg_reply reply;
      out.error = legs.leg({}, reply);
      return out;
    }
  };
  auto raw = make_connection(tcp(), std::make_unique<claims_local>());
  ASSERT_EQ(raw->connect(), call_error::ok);
  EXPECT_EQ(raw->establish(presentation{kernel(), nullptr, impersonation_level::impersonate}, 0, v),
            call_error::refused);
  EXPECT_EQ(v.server_status, protocol::status::package_unavailable);
}

TEST_F(tcp_downstream_test, forward_call_without_a_next_hop_is_refused_with_no_next_hop) {
  auto t = make_connection(tcp(), make_kerberos_client(*credentials_));
  proxy p(kernel(), *t);
  impersonation as(kernel(), test::client_token(0));
  p.set_blanket(test::blanket_of(cloaking::dynamic));
  static const std::byte payload[64]{};
  forward_outcome out;
  call_result r =
      p.forward(next_hop{cloaking::dynamic, impersonation_level::impersonate}, payload, out);
  EXPECT_EQ(r.error, call_error::refused);
  EXPECT_EQ(r.view.server_status, protocol::status::no_next_hop);
  EXPECT_TRUE(p.call(payload).ok()) << "the connection stays usable after the refusal";
}

TEST_F(tcp_downstream_test, a_frame_sent_byte_by_byte_is_answered_once_whole) {
  // The TCP server reassembles frames from a byte stream: a release of an unknown context, one byte
  // per send, is answered with exactly one error frame.
  os::unique_fd fd = os::connect_tcp(address_, 2000ms);
  ASSERT_TRUE(fd) << std::strerror(errno);
  std::array<std::byte, protocol::header_size + protocol::release_body> frame{};
  ASSERT_EQ(protocol::encode_frame(7, protocol::release_request{42}, frame), frame.size());
  for (std::byte b : frame) ASSERT_TRUE(os::send_all(fd.get(), &b, 1));
  std::array<std::byte, protocol::header_size> head{};
  ASSERT_TRUE(os::recv_all(fd.get(), head.data(), head.size()));
  protocol::header h;
  ASSERT_EQ(protocol::decode_header(head, h), protocol::parse_error::ok);
  EXPECT_EQ(h.type, protocol::msg_type::error);
  EXPECT_EQ(h.request_id, 7u);
}

TEST(tcp_channel, connecting_to_a_port_nobody_listens_on_fails_at_once_as_downstream_unavailable) {
  // A port bound and closed again: nothing listens there now.
  std::uint16_t port = 0;
  {
    os::unique_fd l = os::listen_tcp(os::tcp_endpoint{"127.0.0.1", 0});
    port = os::local_endpoint(l.get()).port;
  }
  auto ch = make_tcp_channel(tcp_options{"127.0.0.1", port, 2000ms});
  auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(ch->connect(), call_error::downstream_unavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1s);
  EXPECT_FALSE(ch->connected());
}

TEST(tcp_channel, an_address_that_is_not_ipv4_is_a_configuration_error) {
  EXPECT_THROW(make_tcp_channel(tcp_options{"downstream.example", 7, 2000ms}),
               std::invalid_argument);
  EXPECT_THROW(os::parse_tcp_endpoint("tcp:127.0.0.1"), std::invalid_argument);
  EXPECT_THROW(os::parse_tcp_endpoint("udp:127.0.0.1:7"), std::invalid_argument);
  EXPECT_EQ(os::parse_tcp_endpoint("tcp:198.18.0.2:7400").to_string(), "tcp:198.18.0.2:7400");
}

TEST(forward_codec, forward_call_and_forwarded_keep_every_field) {
  std::array<std::byte, 8> payload{std::byte{1}, std::byte{2}};
  std::array<std::byte, 3> mic{std::byte{9}, std::byte{8}, std::byte{7}};
  protocol::forward_request m{0x1122334455667788ull, 4, 2, mic, payload};
  std::array<std::byte, 128> frame{};
  std::size_t n = protocol::encode_frame(3, m, frame);
  ASSERT_EQ(n, protocol::header_size + protocol::forward_fixed + mic.size() + payload.size());
  protocol::header h;
  ASSERT_EQ(protocol::decode_header({frame.data(), n}, h), protocol::parse_error::ok);
  EXPECT_EQ(h.type, protocol::msg_type::forward_call);
  protocol::forward_request back;
  ASSERT_TRUE(protocol::decode_body({frame.data() + protocol::header_size, h.length}, back));
  EXPECT_EQ(back.context, m.context);
  EXPECT_EQ(back.level, 4);
  EXPECT_EQ(back.cloaking, 2);
  EXPECT_EQ(back.mic.size(), 3u);
  EXPECT_EQ(back.payload.size(), payload.size());

  protocol::forwarded_reply r;
  r.view.context = 5;
  r.view.uid = 61000;
  r.view.gid = 61000;
  r.view.level = 4;
  r.next_error = static_cast<std::uint8_t>(call_error::no_credentials);
  r.next_level = 3;
  r.next_contexts = 1;
  r.next_status = protocol::status::auth_failed;
  r.next_uid = 61017;
  r.next_gid = 61017;
  r.detail = "no TGT";
  r.payload = payload;
  std::vector<std::byte> out;
  protocol::append_frame(out, 3, r);
  ASSERT_EQ(protocol::decode_header(out, h), protocol::parse_error::ok);
  protocol::forwarded_reply rb;
  ASSERT_TRUE(protocol::decode_body({out.data() + protocol::header_size, h.length}, rb));
  EXPECT_EQ(rb.view.uid, 61000u);
  EXPECT_EQ(rb.view.context, 5u);
  EXPECT_EQ(rb.next_error, r.next_error);
  EXPECT_EQ(rb.next_level, 3);
  EXPECT_EQ(rb.next_contexts, 1);
  EXPECT_EQ(rb.next_status, protocol::status::auth_failed);
  EXPECT_EQ(rb.next_uid, 61017u);
  EXPECT_EQ(rb.detail, "no TGT");
  EXPECT_EQ(rb.payload.size(), payload.size());
  // A detail length that points past the body is refused.
  protocol::put<std::uint16_t>(out.data() + protocol::header_size + 30, 200);
  EXPECT_FALSE(protocol::decode_body({out.data() + protocol::header_size, h.length}, rb));
}

}  // namespace
}  // namespace cloak
