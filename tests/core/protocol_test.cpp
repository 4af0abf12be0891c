// The wire protocol of docs/protocol.md, spoken byte by byte to a real cloak-downstream: framing
// errors, per-connection contexts, and identity taken from the kernel, never from message bytes.
#include <fmt/format.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cloak/os.hpp>
#include <cloak/protocol.hpp>
#include <cloak/test/raw_client.hpp>
#include <cstring>
#include <random>
#include <span>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <vector>

#include "support.hpp"

namespace cloak::test {
namespace {

using namespace cloak::protocol;
using bytes = std::vector<std::byte>;

bytes hex(std::string_view text) {
  bytes out;
  auto nibble = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == ' ' || text[i] == '\n') continue;
    out.push_back(static_cast<std::byte>(nibble(text[i]) << 4 | nibble(text[i + 1])));
    ++i;
  }
  return out;
}

template <class T>
void append(bytes& out, T v) {
  out.resize(out.size() + sizeof v);
  put<T>(out.data() + out.size() - sizeof v, v);
}

bytes text_bytes(std::string_view text) {
  return bytes(reinterpret_cast<const std::byte*>(text.data()),
               reinterpret_cast<const std::byte*>(text.data() + text.size()));
}

constexpr auto impersonate = impersonation_level::impersonate;

// The fixed part of established and reply bodies.
struct view_body {
  status result;
  std::uint8_t level;
  std::uint8_t anonymous;
  std::uint64_t context;
  std::uint32_t uid, gid;
};

view_body read_view(const frame& f) {
  if (f.body.size() < 24) throw std::runtime_error("reply body shorter than 24 bytes");
  const std::byte* b = f.body.data();
  return {static_cast<status>(get<std::uint16_t>(b)),
          get<std::uint8_t>(b + 2),
          get<std::uint8_t>(b + 3),
          get<std::uint64_t>(b + 8),
          get<std::uint32_t>(b + 16),
          get<std::uint32_t>(b + 20)};
}

struct error_body {
  status result;
  bool fatal;
  std::string text;
};

error_body read_error(const frame& f) {
  if (f.head.type != msg_type::error) {
    throw std::runtime_error(
        fmt::format("expected an error frame, got {}", to_string(f.head.type)));
  }
  if (f.body.size() < error_fixed) throw std::runtime_error("error body shorter than 8 bytes");
  return {static_cast<status>(get<std::uint16_t>(f.body.data())),
          get<std::uint8_t>(f.body.data() + 2) != 0,
          std::string(reinterpret_cast<const char*>(f.body.data() + error_fixed),
                      f.body.size() - error_fixed)};
}

// The shared raw client with every failure thrown, so each case reads as plain protocol: a request,
// its reply. Every send and receive is bounded by 2 s, so a server that does not answer fails the
// test instead of hanging it.
class wire_client : public raw_client {
 public:
  // Connects as the calling thread, which must be P: the socket's directory is P's alone.
  explicit wire_client(const std::string& path) : raw_client(path, std::chrono::seconds(2)) {}

  // Sends one request and returns its reply, checking the request id is echoed.
  frame exchange(msg_type type, std::span<const std::byte> body) {
    std::uint32_t id = next_request_id();
    if (!send_frame(type, body, id)) os::throw_errno(last_errno(), "send");
    auto f = read_frame();
    if (!f) {
      throw std::runtime_error(
          fmt::format("server closed the connection after {}", to_string(type)));
    }
    if (f->head.request_id != id) {
      throw std::runtime_error(
          fmt::format("reply request id {} for request {}", f->head.request_id, id));
    }
    return *f;
  }

  std::uint64_t establish_context(impersonation_level level = impersonate) {
    frame f = exchange(msg_type::establish, establish_body(level));
    if (f.head.type != msg_type::established) {
      throw std::runtime_error(
          fmt::format("establish refused: {}", to_string(read_error(f).result)));
    }
    return read_view(f).context;
  }
};

class wire_protocol : public leak_checked_test {
 protected:
  void SetUp() override {
    if (const auto& why = kernel_unavailable()) GTEST_SKIP() << *why;
    leak_checked_test::SetUp();
    path_ = kernel_downstream().socket_path();
  }

  // After every case, negative ones included, the server still serves a fresh connection.
  void TearDown() override {
    if (!IsSkipped()) {
      try {
        wire_client fresh(path_);
        std::uint64_t context = fresh.establish_context();
        frame f = fresh.exchange(msg_type::call,
                                 call_body(context, impersonate, text_bytes("still here")));
        EXPECT_EQ(f.head.type, msg_type::reply) << "a fresh connection is served";
        if (f.head.type == msg_type::reply) {
          EXPECT_EQ(read_view(f).uid, process().uid);
          EXPECT_EQ(read_view(f).context, context);
        }
        EXPECT_EQ(fresh.exchange(msg_type::release, release_body(context)).head.type,
                  msg_type::released);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "the server no longer serves a fresh connection: " << e.what();
      }
    }
    leak_checked_test::TearDown();
  }

  identity_backend& be() const { return backend(backend_kind::kernel); }
  identity process() const { return be().process_identity(); }
  std::string path_;
};

// --- framing ------------------------------------------------------------------------------------

TEST_F(wire_protocol, bad_magic_gets_fatal_bad_frame_then_the_server_closes) {
  wire_client c(path_);
  ASSERT_TRUE(c.send_bytes(frame_bytes(header{0x314B4C44, version, msg_type::establish, 0, 7, 0},
                                       establish_body(impersonate))));
  auto f = c.read_frame();
  ASSERT_TRUE(f);
  error_body e = read_error(*f);
  EXPECT_EQ(e.result, status::bad_frame);
  EXPECT_TRUE(e.fatal);
  EXPECT_EQ(f->head.request_id, 0u) << "a header that is not ours has no request id to echo";
  EXPECT_TRUE(c.closed_by_server());
}

TEST_F(wire_protocol, bad_version_gets_fatal_bad_frame_then_the_server_closes) {
  wire_client c(path_);
  ASSERT_TRUE(c.send_bytes(
      frame_bytes(header{magic, 3, msg_type::establish, 0, 7, 0}, establish_body(impersonate))));
  auto f = c.read_frame();
  ASSERT_TRUE(f);
  EXPECT_EQ(read_error(*f).result, status::bad_frame);
  EXPECT_TRUE(read_error(*f).fatal);
  EXPECT_TRUE(c.closed_by_server());
}

TEST_F(wire_protocol, length_above_max_payload_gets_fatal_too_large_then_the_server_closes) {
  wire_client c(path_);
  // The header alone: the declared length is judged before the message's own length.
  ASSERT_TRUE(c.send_bytes(header_bytes(
      header{magic, version, msg_type::call, 0, 9, static_cast<std::uint32_t>(max_payload + 1)})));
  auto f = c.read_frame();
  ASSERT_TRUE(f);
  error_body e = read_error(*f);
  EXPECT_EQ(e.result, status::too_large);
  EXPECT_TRUE(e.fatal);
  EXPECT_EQ(f->head.request_id, 9u);
  EXPECT_TRUE(c.closed_by_server());
}

TEST_F(wire_protocol, largest_echoable_call_is_answered_and_a_larger_one_is_refused_as_too_large) {
  wire_client c(path_);
  std::uint64_t context = c.establish_context();
  // The largest call whose reply (24-byte fixed part + echo) still fits in one frame.
  bytes payload(max_payload - reply_fixed, std::byte{0x5A});
  frame f = c.exchange(msg_type::call, call_body(context, impersonate, payload));
  ASSERT_EQ(f.head.type, msg_type::reply);
  EXPECT_EQ(f.head.length, max_payload);
  EXPECT_TRUE(std::equal(payload.begin(), payload.end(), f.body.begin() + reply_fixed));
  // One byte more, and a body of exactly max_payload: valid frames whose echo would not fit.
  for (std::size_t size : {max_payload - reply_fixed + 1, max_payload - call_fixed}) {
    error_body e =
        read_error(c.exchange(msg_type::call, call_body(context, impersonate, bytes(size))));
    EXPECT_EQ(e.result, status::too_large) << size;
    EXPECT_FALSE(e.fatal) << size;
  }
  EXPECT_EQ(c.exchange(msg_type::call, call_body(context, impersonate)).head.type, msg_type::reply);
}

TEST_F(wire_protocol, truncated_body_gets_bad_body_and_the_connection_stays_usable) {
  wire_client c(path_);
  frame f = c.exchange(msg_type::establish, bytes(3));
  error_body e = read_error(f);
  EXPECT_EQ(e.result, status::bad_body);
  EXPECT_FALSE(e.fatal);
  EXPECT_EQ(read_error(c.exchange(msg_type::call, bytes(15))).result, status::bad_body);
  EXPECT_EQ(read_error(c.exchange(msg_type::release, bytes(7))).result, status::bad_body);
  EXPECT_EQ(read_error(c.exchange(msg_type::access_check, bytes(17))).result, status::bad_body);
  EXPECT_EQ(read_error(c.exchange(msg_type::establish, bytes(17))).result, status::bad_body)
      << "too long is as wrong as too short for a fixed-size body";
  std::uint64_t context = c.establish_context();
  EXPECT_EQ(c.exchange(msg_type::call, call_body(context, impersonate)).head.type, msg_type::reply);
}

TEST_F(wire_protocol, unknown_type_gets_unknown_type_and_the_connection_stays_usable) {
  wire_client c(path_);
  // 0 and 99 are no type at all; 2 and 4 are types only the server sends.
  for (std::uint8_t type : {0, 99, 2, 4}) {
    frame f = c.exchange(static_cast<msg_type>(type), bytes(16));
    error_body e = read_error(f);
    EXPECT_EQ(e.result, status::unknown_type) << "type " << int{type};
    EXPECT_FALSE(e.fatal);
  }
  frame f = c.exchange(msg_type::call, call_body(0, impersonate));
  ASSERT_EQ(f.head.type, msg_type::reply);
  EXPECT_EQ(read_view(f).uid, process().uid);
}

TEST_F(wire_protocol, level_out_of_range_gets_bad_level_and_the_connection_stays_usable) {
  wire_client c(path_);
  for (std::uint8_t level : {0, 5, 255}) {
    auto bad = static_cast<impersonation_level>(level);
    error_body e = read_error(c.exchange(msg_type::establish, establish_body(bad)));
    EXPECT_EQ(e.result, status::bad_level) << "level " << int{level};
    EXPECT_FALSE(e.fatal);
    EXPECT_EQ(read_error(c.exchange(msg_type::call, call_body(0, bad))).result, status::bad_level);
  }
  EXPECT_NE(c.establish_context(), 0u);
}

TEST_F(wire_protocol, pipelined_requests_are_answered_in_order_one_message_each) {
  wire_client c(path_);
  ASSERT_TRUE(c.send_bytes(
      frame_bytes(header{magic, version, msg_type::call, 0, 41, 0}, call_body(0, impersonate))));
  ASSERT_TRUE(c.send_bytes(frame_bytes(header{magic, version, msg_type::establish, 0, 42, 0},
                                       establish_body(impersonate))));
  auto first_reply = c.read_frame();
  auto second_reply = c.read_frame();
  ASSERT_TRUE(first_reply && second_reply);
  EXPECT_EQ(first_reply->head.type, msg_type::reply);
  EXPECT_EQ(first_reply->head.request_id, 41u);
  EXPECT_EQ(second_reply->head.type, msg_type::established);
  EXPECT_EQ(second_reply->head.request_id, 42u);
}

TEST_F(wire_protocol, two_frames_in_one_message_get_fatal_bad_frame) {
  wire_client c(path_);
  bytes both =
      frame_bytes(header{magic, version, msg_type::call, 0, 41, 0}, call_body(0, impersonate));
  bytes second = frame_bytes(header{magic, version, msg_type::establish, 0, 42, 0},
                             establish_body(impersonate));
  both.insert(both.end(), second.begin(), second.end());
  ASSERT_TRUE(c.send_bytes(both));
  auto f = c.read_frame();
  ASSERT_TRUE(f);
  EXPECT_EQ(read_error(*f).result, status::bad_frame);
  EXPECT_TRUE(read_error(*f).fatal);
  EXPECT_EQ(f->head.request_id, 41u);
  EXPECT_TRUE(c.closed_by_server());
}

// --- security contexts --------------------------------------------------------------------------

TEST_F(wire_protocol, context_from_another_connection_is_unknown_context) {
  wire_client a(path_), b(path_);
  std::uint64_t context = a.establish_context();
  EXPECT_EQ(read_error(b.exchange(msg_type::call, call_body(context, impersonate))).result,
            status::unknown_context);
  EXPECT_EQ(
      read_error(b.exchange(msg_type::access_check, access_check_body(context, process().uid)))
          .result,
      status::unknown_context);
  EXPECT_EQ(read_error(b.exchange(msg_type::release, release_body(context))).result,
            status::unknown_context);
  EXPECT_EQ(
      read_error(b.exchange(msg_type::establish, establish_body(impersonate, context))).result,
      status::unknown_context);
  // B's attempts changed nothing on A.
  frame f = a.exchange(msg_type::call, call_body(context, impersonate));
  ASSERT_EQ(f.head.type, msg_type::reply);
  EXPECT_EQ(read_view(f).context, context);
  // And the other way round; ids are random, so B's first id is not A's first id either.
  std::uint64_t b_context = b.establish_context();
  EXPECT_NE(b_context, context);
  EXPECT_EQ(read_error(a.exchange(msg_type::call, call_body(b_context, impersonate))).result,
            status::unknown_context);
}

TEST_F(wire_protocol, released_context_is_unknown_context) {
  wire_client c(path_);
  std::uint64_t context = c.establish_context();
  frame r = c.exchange(msg_type::release, release_body(context));
  ASSERT_EQ(r.head.type, msg_type::released);
  ASSERT_EQ(r.body.size(), released_body);
  EXPECT_EQ(get<std::uint16_t>(r.body.data()), static_cast<std::uint16_t>(status::ok));
  EXPECT_EQ(read_error(c.exchange(msg_type::call, call_body(context, impersonate))).result,
            status::unknown_context);
  EXPECT_EQ(read_error(c.exchange(msg_type::release, release_body(context))).result,
            status::unknown_context);
}

TEST_F(wire_protocol, establish_release_field_forgets_the_old_context_in_the_same_round_trip) {
  wire_client c(path_);
  std::uint64_t old_context = c.establish_context();
  frame f = c.exchange(msg_type::establish, establish_body(impersonate, old_context));
  ASSERT_EQ(f.head.type, msg_type::established);
  std::uint64_t new_context = read_view(f).context;
  EXPECT_NE(new_context, old_context);
  EXPECT_EQ(read_error(c.exchange(msg_type::call, call_body(old_context, impersonate))).result,
            status::unknown_context);
  EXPECT_EQ(c.exchange(msg_type::call, call_body(new_context, impersonate)).head.type,
            msg_type::reply);
  // Releasing something unknown refuses the whole establish: no context is made.
  EXPECT_EQ(
      read_error(c.exchange(msg_type::establish, establish_body(impersonate, old_context))).result,
      status::unknown_context);
}

TEST_F(wire_protocol, guessed_context_ids_are_unknown_context) {
  wire_client c(path_);
  std::uint64_t real = c.establish_context();
  std::mt19937_64 guesses(std::random_device{}());
  std::vector<std::uint64_t> ids{1, 2, real + 1, real - 1, real ^ 1, ~std::uint64_t{0}};
  for (int i = 0; i < 200; ++i) ids.push_back(guesses());
  for (std::uint64_t id : ids) {
    if (id == real || id == 0) continue;
    EXPECT_EQ(read_error(c.exchange(msg_type::call, call_body(id, impersonate))).result,
              status::unknown_context)
        << std::hex << id;
  }
  // Context 0 is per-message authentication for a call, but never a context to check access under.
  EXPECT_EQ(
      read_error(c.exchange(msg_type::access_check, access_check_body(0, process().uid))).result,
      status::unknown_context);
}

TEST_F(wire_protocol, establish_beyond_max_contexts_gets_too_many_contexts) {
  wire_client c(path_);
  std::uint64_t first = 0;
  // cloak-downstream's default --max-contexts: MS-RPCE's 2,000; context 2,001 is refused.
  for (std::size_t i = 0; i < protocol::default_max_contexts; ++i) {
    std::uint64_t id = c.establish_context();
    if (i == 0) first = id;
  }
  error_body e = read_error(c.exchange(msg_type::establish, establish_body(impersonate)));
  EXPECT_EQ(e.result, status::too_many_contexts);
  EXPECT_FALSE(e.fatal);
  // Releasing one in the same establish makes room.
  EXPECT_EQ(c.exchange(msg_type::establish, establish_body(impersonate, first)).head.type,
            msg_type::established);
}

TEST_F(wire_protocol, connection_beyond_max_connections_gets_fatal_busy) {
  downstream_config config = client_downstream_config();
  config.max_connections = 1;
  downstream_process small(config);
  wire_client a(small.socket_path());
  a.establish_context();  // A is accepted and served before B connects
  wire_client b(small.socket_path());
  auto f = b.read_frame();
  ASSERT_TRUE(f);
  error_body e = read_error(*f);
  EXPECT_EQ(e.result, status::busy);
  EXPECT_TRUE(e.fatal);
  EXPECT_TRUE(b.closed_by_server());
  EXPECT_EQ(a.exchange(msg_type::call, call_body(0, impersonate)).head.type, msg_type::reply)
      << "A still served";
}

// --- identity comes from the kernel -------------------------------------------------------------

TEST_F(wire_protocol, identity_claimed_inside_a_message_is_ignored) {
  wire_client c(path_);  // connected as P: SO_PEERCRED says P
  impersonation as_c1(be(), client_token(0));
  // Every byte the protocol does not define claims to be root or C2.
  bytes claim;
  for (std::uint32_t id : {0u, 0u, client(1).uid, client(1).gid}) append<std::uint32_t>(claim, id);
  bytes body = establish_body(impersonate);
  put<std::uint8_t>(body.data() + 3, 0xFF);  // the one padding byte of an establish
  frame f = c.exchange(msg_type::establish, body);
  ASSERT_EQ(f.head.type, msg_type::established);
  view_body v = read_view(f);
  EXPECT_EQ(v.uid, client(0).uid);
  EXPECT_EQ(v.gid, client(0).gid);

  bytes per_message = call_body(0, impersonate, claim);
  put<std::uint32_t>(per_message.data() + 12, client(1).uid);  // the padding after the level
  frame r = c.exchange(msg_type::call, per_message);
  ASSERT_EQ(r.head.type, msg_type::reply);
  EXPECT_EQ(read_view(r).uid, client(0).uid);
  EXPECT_EQ(read_view(r).gid, client(0).gid);
  EXPECT_TRUE(std::equal(claim.begin(), claim.end(), r.body.begin() + reply_fixed))
      << "payload echoed";

  frame under_context = c.exchange(msg_type::call, call_body(v.context, impersonate, claim));
  ASSERT_EQ(under_context.head.type, msg_type::reply);
  EXPECT_EQ(read_view(under_context).uid, client(0).uid);
}

TEST_F(wire_protocol, per_message_call_reports_the_sending_threads_credentials) {
  wire_client c(path_);
  auto seen = [&] {
    frame f = c.exchange(msg_type::call, call_body(0, impersonate));
    if (f.head.type != msg_type::reply) throw std::runtime_error("per-message call refused");
    view_body v = read_view(f);
    EXPECT_EQ(v.context, 0u);
    return identity::of(v.uid, v.gid);
  };
  EXPECT_TRUE(seen().same_principal(process()));
  {
    impersonation as_c1(be(), client_token(0));
    EXPECT_TRUE(seen().same_principal(client(0)));
    impersonation as_c2(be(), client_token(1));
    EXPECT_TRUE(seen().same_principal(client(1)));
  }
  EXPECT_TRUE(seen().same_principal(process()));
  // At anonymous level a per-message call hides the sender too.
  frame f = c.exchange(msg_type::call, call_body(0, impersonation_level::anonymous));
  ASSERT_EQ(f.head.type, msg_type::reply);
  EXPECT_EQ(read_view(f).anonymous, 1);
  EXPECT_EQ(read_view(f).uid, anonymous_id);
}

TEST_F(wire_protocol, context_keeps_the_identity_of_the_message_that_established_it) {
  wire_client c(path_);
  std::uint64_t as_c1_context = 0;
  {
    impersonation as_c1(be(), client_token(0));
    as_c1_context = c.establish_context();
  }
  impersonation as_c2(be(), client_token(1));
  frame f = c.exchange(msg_type::call, call_body(as_c1_context, impersonate));
  ASSERT_EQ(f.head.type, msg_type::reply);
  EXPECT_EQ(read_view(f).uid, client(0).uid) << "the context, not the sender of this call";
}

TEST_F(wire_protocol, access_result_reports_outcome_identity_and_level_at_fixed_offsets) {
  wire_client c(path_);
  impersonation as_c1(be(), client_token(0));
  std::uint64_t context = c.establish_context();
  frame own = c.exchange(msg_type::access_check, access_check_body(context, client(0).uid));
  ASSERT_EQ(own.head.type, msg_type::access_result);
  ASSERT_EQ(own.body.size(), access_result_body);
  const std::byte* b = own.body.data();
  EXPECT_EQ(get<std::uint16_t>(b), static_cast<std::uint16_t>(status::ok));
  EXPECT_EQ(get<std::uint8_t>(b + 2), 1) << "granted";
  EXPECT_EQ(get<std::int32_t>(b + 4), 0) << "errno";
  EXPECT_EQ(get<std::uint32_t>(b + 8), client(0).uid);
  EXPECT_EQ(get<std::uint32_t>(b + 12), client(0).gid);
  EXPECT_EQ(get<std::uint8_t>(b + 16), static_cast<std::uint8_t>(impersonate)) << "level";

  frame other = c.exchange(msg_type::access_check, access_check_body(context, client(1).uid));
  ASSERT_EQ(other.head.type, msg_type::access_result);
  EXPECT_EQ(get<std::uint8_t>(other.body.data() + 2), 0);
  EXPECT_EQ(get<std::int32_t>(other.body.data() + 4), EACCES);

  // A uid with no probe file: the open fails, the result says why.
  frame none = c.exchange(msg_type::access_check, access_check_body(context, 12345));
  ASSERT_EQ(none.head.type, msg_type::access_result);
  EXPECT_EQ(get<std::int32_t>(none.body.data() + 4), ENOENT);

  std::uint64_t identify = c.establish_context(impersonation_level::identify);
  frame refused = c.exchange(msg_type::access_check, access_check_body(identify, client(0).uid));
  ASSERT_EQ(refused.head.type, msg_type::access_result)
      << "a refusal by level is a result, not an error frame";
  EXPECT_EQ(get<std::uint16_t>(refused.body.data()),
            static_cast<std::uint16_t>(status::identify_only));
  EXPECT_EQ(get<std::uint8_t>(refused.body.data() + 2), 0);
  EXPECT_EQ(get<std::uint32_t>(refused.body.data() + 8), client(0).uid);
  EXPECT_EQ(get<std::uint8_t>(refused.body.data() + 16),
            static_cast<std::uint8_t>(impersonation_level::identify));

  std::uint64_t anonymous = c.establish_context(impersonation_level::anonymous);
  frame hidden = c.exchange(msg_type::access_check, access_check_body(anonymous, client(0).uid));
  ASSERT_EQ(hidden.head.type, msg_type::access_result);
  EXPECT_EQ(get<std::uint16_t>(hidden.body.data()),
            static_cast<std::uint16_t>(status::anonymous_only));
  EXPECT_EQ(get<std::uint32_t>(hidden.body.data() + 8), anonymous_id);
}

TEST_F(wire_protocol, access_check_as_a_root_user_or_root_group_identity_other_than_p_gets_eperm) {
  // The downstream never becomes uid 0 or gid 0 for a caller that is not P itself: the kernel
  // backend refuses such a token, and the result says EPERM. The presenting thread takes those ids
  // with raw per-thread syscalls (the harness's own backend refuses them too), keeping saved id 0
  // so it can come back; it runs on a thread of its own, so nothing else is ever affected.
  if (process().uid != 0 || process().gid != 0) GTEST_SKIP() << "P is not root here";
  wire_client c(path_);  // connected as P
  struct as_ids {
    std::uint32_t uid, gid;
  } cases[] = {{client(0).uid, 0}, {0, client(0).gid}};
  for (const as_ids& ids : cases) {
    SCOPED_TRACE(fmt::format("uid {} gid {}", ids.uid, ids.gid));
    std::uint64_t context = 0;
    frame result;
    std::thread([&] {
      // gid first: it needs privilege the uid change gives up.
      if (::syscall(SYS_setresgid, ids.gid, ids.gid, 0) != 0 ||
          ::syscall(SYS_setresuid, ids.uid, ids.uid, 0) != 0) {
        ADD_FAILURE() << "cannot take the ids: " << std::strerror(errno);
        return;
      }
      context = c.establish_context();
      // Back to P before anything else runs on this thread (saved ids are 0).
      if (::syscall(SYS_setresuid, 0, 0, 0) != 0 || ::syscall(SYS_setresgid, 0, 0, 0) != 0)
        std::abort();  // a thread that cannot become P again must not go on
    }).join();
    ASSERT_NE(context, 0u);
    result = c.exchange(msg_type::access_check, access_check_body(context, client(0).uid));
    ASSERT_EQ(result.head.type, msg_type::access_result);
    EXPECT_EQ(get<std::uint16_t>(result.body.data()), static_cast<std::uint16_t>(status::ok));
    EXPECT_EQ(get<std::uint8_t>(result.body.data() + 2), 0) << "granted";
    EXPECT_EQ(get<std::int32_t>(result.body.data() + 4), EPERM);
    EXPECT_EQ(get<std::uint32_t>(result.body.data() + 8), ids.uid);
    EXPECT_EQ(get<std::uint32_t>(result.body.data() + 12), ids.gid);
  }
}

// --- the worked example of docs/protocol.md, byte for byte --------------------------------------

TEST_F(wire_protocol, worked_example_of_the_protocol_doc_holds) {
  wire_client c(path_);
  impersonation as_c1(be(), client_token(0));  // uid 61000 = 0xEE48, gid 61000

  ASSERT_TRUE(c.send_bytes(
      hex("434C4B31 02 01 0000 01000000 10000000  03 01 00 00 00000000 0000000000000000")));
  auto established = c.read_frame();
  ASSERT_TRUE(established);
  bytes want =
      hex("434C4B31 02 02 0000 01000000 20000000  0000 03 00 00 00 0000 CCCCCCCCCCCCCCCC 48EE0000 "
          "48EE0000 00000000 00000000");
  std::uint64_t context = read_view(*established).context;
  put<std::uint64_t>(want.data() + header_size + 8,
                     context);  // the one field the server picks at random
  EXPECT_EQ(established->raw(), want);

  bytes call_frame =
      hex("434C4B31 02 03 0000 02000000 14000000  CCCCCCCCCCCCCCCC 03 00 0000 00000000 70696E67");
  put<std::uint64_t>(call_frame.data() + header_size, context);
  ASSERT_TRUE(c.send_bytes(call_frame));
  auto reply = c.read_frame();
  ASSERT_TRUE(reply);
  want =
      hex("434C4B31 02 04 0000 02000000 1C000000  0000 03 00 00000000 CCCCCCCCCCCCCCCC 48EE0000 "
          "48EE0000 70696E67");
  put<std::uint64_t>(want.data() + header_size + 8, context);
  EXPECT_EQ(reply->raw(), want);

  bytes release_frame = hex("434C4B31 02 05 0000 03000000 08000000  CCCCCCCCCCCCCCCC");
  put<std::uint64_t>(release_frame.data() + header_size, context);
  ASSERT_TRUE(c.send_bytes(release_frame));
  auto released = c.read_frame();
  ASSERT_TRUE(released);
  EXPECT_EQ(released->raw(), hex("434C4B31 02 06 0000 03000000 08000000  0000 000000000000"));

  put<std::uint32_t>(release_frame.data() + 8, 4);  // the same release again, as request 4
  ASSERT_TRUE(c.send_bytes(release_frame));
  auto error = c.read_frame();
  ASSERT_TRUE(error);
  bytes text = text_bytes("release: unknown context");
  want = hex("434C4B31 02 0F 0000 04000000 20000000  0400 00 0000000000");
  want.insert(want.end(), text.begin(), text.end());
  EXPECT_EQ(error->raw(), want);
}

}  // namespace
}  // namespace cloak::test
