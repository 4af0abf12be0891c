// Hostile clients of cloak-downstream: claimed identities, foreign, stale and guessed contexts, bad
// frames, clients that never read, floods of connections. After each, it still serves others right.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "support.hpp"

namespace cloak::robustness {
namespace {

using namespace protocol;

class hostile_input : public kernel_test {
 protected:
  void SetUp() override {
    kernel_test::SetUp();
    if (IsSkipped()) return;
    downstream_config c = config();
    c.send_timeout = 200ms;
    server_ = std::make_unique<downstream_process>(c);
  }
  void TearDown() override {
    if (server_) {
      EXPECT_TRUE(server_->running()) << "cloak-downstream died";
      EXPECT_TRUE(serves_correctly(kernel(), *server_))
          << "after the hostile client, another client";
    }
    server_.reset();
    kernel_test::TearDown();
  }
  downstream_process& server() { return *server_; }
  raw_client open(std::chrono::milliseconds timeout = 2000ms) {
    return raw_client(server().socket_path(), timeout);
  }

  // `f` answers request `id` with a non-fatal refusal carrying `why`.
  static ::testing::AssertionResult refused(const std::optional<frame>& f, std::uint32_t id,
                                            status why) {
    if (!f) return ::testing::AssertionFailure() << "no reply";
    if (f->head.type != msg_type::error)
      return ::testing::AssertionFailure() << "reply type " << to_string(f->head.type);
    if (f->head.request_id != id)
      return ::testing::AssertionFailure() << "reply to request " << f->head.request_id;
    if (f->error_status() != why)
      return ::testing::AssertionFailure() << "status " << to_string(f->error_status());
    if (f->error_fatal()) return ::testing::AssertionFailure() << "refusal marked fatal";
    return ::testing::AssertionSuccess();
  }

 private:
  std::unique_ptr<downstream_process> server_;
};

TEST_F(hostile_input, an_identity_claimed_inside_a_message_is_ignored) {
  raw_client c = open();  // connects as P: the socket directory is P's only
  impersonation as_c1(kernel(), client_token(0));
  // establish: its padding is set and its flags are all set; the kernel says C1.
  std::vector<std::byte> body = establish_body(impersonation_level::impersonate);
  put<std::uint8_t>(body.data() + 3, 0xFF);
  ASSERT_TRUE(c.send_frame(msg_type::establish, body, 1, 0xFFFF));
  auto f = c.read_frame();
  ASSERT_TRUE(f && f->head.type == msg_type::established);
  EXPECT_EQ(f->seen_uid(), clients().first_uid);
  EXPECT_EQ(f->seen_gid(), clients().first_gid);

  // A per-message call (context 0) whose payload looks like a reply naming C2.
  std::vector<std::byte> fake_reply(reply_fixed);
  put<std::uint32_t>(fake_reply.data() + 16, clients().first_uid + 1);
  put<std::uint32_t>(fake_reply.data() + 20, clients().first_gid + 1);
  std::vector<std::byte> call = call_body(0, impersonation_level::impersonate, fake_reply);
  put<std::uint32_t>(call.data() + 12, clients().first_uid + 1);  // padding claims C2 as well
  ASSERT_TRUE(c.send_frame(msg_type::call, call, 2, 0xFFFF));
  f = c.read_frame();
  ASSERT_TRUE(f && f->head.type == msg_type::reply);
  EXPECT_EQ(f->seen_uid(), clients().first_uid);
  EXPECT_TRUE(std::equal(fake_reply.begin(), fake_reply.end(), f->body.begin() + reply_fixed))
      << "payload not echoed verbatim";

  // Server-to-client frames sent to the server claim nothing: they are unknown requests.
  std::vector<std::byte> established(established_fixed);
  put<std::uint32_t>(established.data() + 16, clients().first_uid + 1);
  ASSERT_TRUE(c.send_frame(msg_type::established, established, 3));
  EXPECT_TRUE(refused(c.read_frame(), 3, status::unknown_type));
  ASSERT_TRUE(c.send_frame(msg_type::reply, established, 4));
  EXPECT_TRUE(refused(c.read_frame(), 4, status::unknown_type));
}

TEST_F(hostile_input, credentials_claimed_in_scm_credentials_are_checked_by_the_kernel) {
  raw_client c = open();
  impersonation as_c1(kernel(), client_token(0));
  std::vector<std::byte> whole = frame_bytes(header{magic, version, msg_type::establish, 0, 7, 0},
                                             establish_body(impersonation_level::impersonate));
  ucred claim{::getpid(), clients().first_uid + 1,
              clients().first_gid + 1};  // C2, while running as C1
  ssize_t sent = os::send_with_credentials(c.fd(), whole.data(), whole.size(), claim);
  int error = errno;
  EXPECT_EQ(sent, -1) << "the kernel let C1 claim to be C2";
  EXPECT_EQ(error, EPERM) << std::strerror(error);
  // Nothing was sent; the connection still works and D sees C1.
  auto context = c.establish();
  ASSERT_TRUE(context);
  ASSERT_TRUE(
      c.send_frame(msg_type::call, call_body(*context, impersonation_level::impersonate), 8));
  auto f = c.read_frame();
  ASSERT_TRUE(f && f->head.type == msg_type::reply);
  EXPECT_EQ(f->seen_uid(), clients().first_uid);
}

// The kernel also accepts, without any capability, an explicit uid (gid) that is one of the
// sender's real, effective or saved ids. An impersonating thread keeps saved = P so that it can go
// back to P, so it can claim P: docs/protocol.md, "Identity", says so, and this pins it.
TEST_F(hostile_input, an_impersonating_thread_may_claim_its_saved_ids_which_are_p) {
  raw_client c = open();
  impersonation as_c1(kernel(), client_token(0));
  uid_t real = 0, effective = 0, saved = 0;
  ASSERT_EQ(::getresuid(&real, &effective, &saved), 0);
  ASSERT_EQ(effective, clients().first_uid);
  ASSERT_EQ(saved, process().uid) << "the kernel backend no longer keeps P as the saved uid";
  std::vector<std::byte> whole = frame_bytes(header{magic, version, msg_type::establish, 0, 7, 0},
                                             establish_body(impersonation_level::impersonate));
  ucred claim{::getpid(), process().uid, process().gid};
  ASSERT_EQ(os::send_with_credentials(c.fd(), whole.data(), whole.size(), claim),
            static_cast<ssize_t>(whole.size()))
      << std::strerror(errno);
  auto f = c.read_frame();
  ASSERT_TRUE(f && f->head.type == msg_type::established);
  EXPECT_EQ(f->seen_uid(), process().uid) << "D should see the claimed P, as the doc warns";
  EXPECT_EQ(f->seen_gid(), process().gid);
}

TEST_F(hostile_input, a_context_from_another_connection_is_rejected) {
  raw_client a = open(), b = open();
  auto mine = a.establish();
  ASSERT_TRUE(mine);
  ASSERT_TRUE(b.send_frame(msg_type::call, call_body(*mine, impersonation_level::impersonate), 1));
  EXPECT_TRUE(refused(b.read_frame(), 1, status::unknown_context));
  ASSERT_TRUE(b.send_frame(msg_type::access_check, access_check_body(*mine, process().uid), 2));
  EXPECT_TRUE(refused(b.read_frame(), 2, status::unknown_context));
  ASSERT_TRUE(b.send_frame(msg_type::release, release_body(*mine), 3));
  EXPECT_TRUE(refused(b.read_frame(), 3, status::unknown_context));
  ASSERT_TRUE(b.send_frame(msg_type::establish,
                           establish_body(impersonation_level::impersonate, *mine), 4));
  EXPECT_TRUE(refused(b.read_frame(), 4, status::unknown_context));
  // B's attempts changed nothing on A, and B itself is still usable.
  ASSERT_TRUE(a.send_frame(msg_type::call, call_body(*mine, impersonation_level::impersonate), 5));
  auto f = a.read_frame();
  ASSERT_TRUE(f && f->head.type == msg_type::reply) << "A's context was disturbed by B";
  EXPECT_EQ(f->context(), *mine);
  EXPECT_TRUE(b.establish());
}

TEST_F(hostile_input, a_released_context_is_rejected) {
  raw_client c = open();
  auto context = c.establish();
  ASSERT_TRUE(context);
  ASSERT_TRUE(c.send_frame(msg_type::release, release_body(*context), 1));
  auto f = c.read_frame();
  ASSERT_TRUE(f && f->head.type == msg_type::released);
  ASSERT_TRUE(
      c.send_frame(msg_type::call, call_body(*context, impersonation_level::impersonate), 2));
  EXPECT_TRUE(refused(c.read_frame(), 2, status::unknown_context));
  ASSERT_TRUE(c.send_frame(msg_type::access_check, access_check_body(*context, process().uid), 3));
  EXPECT_TRUE(refused(c.read_frame(), 3, status::unknown_context));
  ASSERT_TRUE(c.send_frame(msg_type::release, release_body(*context), 4));
  EXPECT_TRUE(refused(c.read_frame(), 4, status::unknown_context));
  // Released as part of an establish, it is gone too.
  auto second = c.establish();
  ASSERT_TRUE(second);
  auto third = c.establish(impersonation_level::impersonate, *second);
  ASSERT_TRUE(third);
  ASSERT_TRUE(
      c.send_frame(msg_type::call, call_body(*second, impersonation_level::impersonate), 5));
  EXPECT_TRUE(refused(c.read_frame(), 5, status::unknown_context));
}

TEST_F(hostile_input, guessed_context_ids_are_rejected) {
  raw_client c = open();
  std::vector<std::uint64_t> issued;
  for (int i = 0; i < 8; ++i) {
    auto id = c.establish();
    ASSERT_TRUE(id);
    issued.push_back(*id);
  }
  // Not a counter: no two issued ids are near each other.
  for (std::size_t i = 0; i < issued.size(); ++i) {
    for (std::size_t j = i + 1; j < issued.size(); ++j) {
      std::uint64_t gap = issued[i] > issued[j] ? issued[i] - issued[j] : issued[j] - issued[i];
      EXPECT_GT(gap, std::uint64_t{1} << 20) << "context ids look sequential";
    }
  }
  std::vector<std::uint64_t> guesses{1, 2, 3, 1024, ~std::uint64_t{0}};
  for (std::uint64_t id : issued) {
    for (std::uint64_t g : {id + 1, id - 1, id ^ 1, ~id, id << 1, id >> 1}) guesses.push_back(g);
  }
  std::mt19937_64 random(20240601);
  for (int i = 0; i < 500; ++i) guesses.push_back(random());
  std::uint32_t request = 100;
  int accepted = 0;
  for (std::uint64_t g : guesses) {
    if (g == 0 || std::find(issued.begin(), issued.end(), g) != issued.end()) continue;
    ASSERT_TRUE(
        c.send_frame(msg_type::call, call_body(g, impersonation_level::impersonate), ++request));
    auto f = c.read_frame();
    ASSERT_TRUE(f);
    if (!refused(f, request, status::unknown_context)) ++accepted;
  }
  EXPECT_EQ(accepted, 0) << "guessed context ids were accepted";
}

TEST_F(hostile_input, oversized_frames_are_refused_and_close_the_connection) {
  for (std::uint32_t length :
       {static_cast<std::uint32_t>(max_payload + 1), 0x7FFFFFFFu, 0xFFFFFFFFu}) {
    SCOPED_TRACE(length);
    raw_client c = open();
    ASSERT_TRUE(c.send_bytes(header_bytes(header{magic, version, msg_type::call, 0, 9, length})));
    auto f = c.read_frame();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->head.type, msg_type::error);
    EXPECT_EQ(f->error_status(), status::too_large);
    EXPECT_TRUE(f->error_fatal());
    EXPECT_TRUE(c.closed_by_server());
  }
  // A call that fits but whose echo would not is refused, and the connection lives on.
  raw_client c = open();
  std::vector<std::byte> big(max_payload - call_fixed);
  ASSERT_TRUE(
      c.send_frame(msg_type::call, call_body(0, impersonation_level::impersonate, big), 10));
  auto f = c.read_frame();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->head.type, msg_type::error);
  EXPECT_EQ(f->error_status(), status::too_large);
  EXPECT_TRUE(c.establish());
}

TEST_F(hostile_input, malformed_headers_are_refused_and_close_the_connection) {
  struct bad {
    const char* what;
    header h;
  } cases[] = {
      {"bad magic", header{0xDEADBEEF, version, msg_type::call, 0, 1, 0}},
      {"bad version", header{magic, 99, msg_type::call, 0, 1, 0}},
      {"version 0", header{magic, 0, msg_type::establish, 0, 1, 16}},
  };
  for (const auto& b : cases) {
    SCOPED_TRACE(b.what);
    raw_client c = open();
    ASSERT_TRUE(c.send_bytes(header_bytes(b.h)));
    auto f = c.read_frame();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->error_status(), status::bad_frame);
    EXPECT_TRUE(f->error_fatal());
    EXPECT_TRUE(c.closed_by_server());
  }
}

TEST_F(hostile_input, bodies_of_the_wrong_size_and_unknown_types_are_refused_without_closing) {
  raw_client c = open();
  std::vector<std::byte> four(4);
  struct bad {
    msg_type type;
    std::size_t size;
    status why;
  } cases[] = {
      {msg_type::establish, 4, status::bad_body},
      {msg_type::establish, 17, status::bad_body},
      {msg_type::call, 15, status::bad_body},
      {msg_type::release, 0, status::bad_body},
      {msg_type::access_check, 8, status::bad_body},
      {static_cast<msg_type>(0), 4, status::unknown_type},
      {static_cast<msg_type>(200), 0, status::unknown_type},
      {msg_type::error, 8, status::unknown_type},
  };
  std::uint32_t id = 0;
  for (const auto& b : cases) {
    SCOPED_TRACE(fmt::format("type {} body {}", static_cast<int>(b.type), b.size));
    std::vector<std::byte> body(b.size, std::byte{0x41});
    ASSERT_TRUE(c.send_frame(b.type, body, ++id));
    EXPECT_TRUE(refused(c.read_frame(), id, b.why));
  }
  // A bad level byte is refused too.
  std::vector<std::byte> body = establish_body(impersonation_level::impersonate);
  body[0] = std::byte{9};
  ASSERT_TRUE(c.send_frame(msg_type::establish, body, ++id));
  EXPECT_TRUE(refused(c.read_frame(), id, status::bad_level));
  EXPECT_TRUE(c.establish()) << "the connection did not survive its refusals";
}

TEST_F(hostile_input, a_message_that_is_not_exactly_one_frame_is_refused_and_closes) {
  auto establish = establish_body(impersonation_level::impersonate);
  std::vector<std::byte> whole =
      frame_bytes(header{magic, version, msg_type::establish, 0, 1, 0}, establish);
  std::vector<std::byte> two = whole;
  two.insert(two.end(), whole.begin(), whole.end());
  std::vector<std::byte> longer = whole;
  longer.push_back(std::byte{0});
  struct bad {
    const char* what;
    std::span<const std::byte> bytes;
  } cases[] = {
      {"1 byte", {whole.data(), 1}},
      {"half a header", {whole.data(), 8}},
      {"a header but 1 byte", {whole.data(), header_size - 1}},
      {"a header without its body", {whole.data(), header_size}},
      {"a body cut short", {whole.data(), header_size + 10}},
      {"one byte more than the frame", longer},
      {"two frames in one message", two},
  };
  for (const auto& b : cases) {
    SCOPED_TRACE(b.what);
    raw_client c = open();
    ASSERT_TRUE(c.send_bytes(b.bytes));
    auto f = c.read_frame();
    ASSERT_TRUE(f) << "no answer to a message that is not one frame";
    EXPECT_EQ(f->head.type, msg_type::error);
    EXPECT_EQ(f->error_status(), status::bad_frame);
    EXPECT_TRUE(f->error_fatal());
    EXPECT_TRUE(c.closed_by_server());
  }
  // An empty message is not a frame either (a zero-length read is also how EOF looks: the server
  // closes without an answer).
  raw_client c = open();
  ASSERT_TRUE(c.send_bytes({}));
  frame f;
  EXPECT_EQ(c.read(f), read_result::closed);
}

// Every message longer than 16 + 65536 bytes, from one byte more on, whatever its header's length.
TEST_F(hostile_input, a_message_longer_than_any_frame_is_refused_as_too_large) {
  for (std::size_t extra : {1, 2, 100}) {
    for (std::uint32_t length : {0u, static_cast<std::uint32_t>(max_payload)}) {
      SCOPED_TRACE(
          fmt::format("{} bytes more than the largest frame, length field {}", extra, length));
      raw_client c = open();
      std::vector<std::byte> bytes(header_size + max_payload + extra);
      std::vector<std::byte> head =
          header_bytes(header{magic, version, msg_type::call, 0, 4, length});
      std::copy(head.begin(), head.end(), bytes.begin());
      ASSERT_TRUE(c.send_bytes(bytes));
      auto f = c.read_frame();
      ASSERT_TRUE(f);
      EXPECT_EQ(f->error_status(), status::too_large);
      EXPECT_EQ(f->head.request_id, 4u) << "the header is a trusted one";
      EXPECT_TRUE(f->error_fatal());
      EXPECT_TRUE(c.closed_by_server());
    }
  }
  // Too long with a bad magic: still too_large, but its request id cannot be trusted.
  raw_client c = open();
  std::vector<std::byte> bytes(header_size + max_payload + 1);
  std::vector<std::byte> head = header_bytes(header{0xDEADBEEF, version, msg_type::call, 0, 4, 0});
  std::copy(head.begin(), head.end(), bytes.begin());
  ASSERT_TRUE(c.send_bytes(bytes));
  auto f = c.read_frame();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->error_status(), status::too_large);
  EXPECT_EQ(f->head.request_id, 0u);
  EXPECT_TRUE(f->error_fatal());
  EXPECT_TRUE(c.closed_by_server());
}

// The number of descriptors process `pid` has open.
std::size_t open_descriptors(pid_t pid) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry :
       std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid))) {
    ++n;
  }
  return n;
}

TEST_F(hostile_input, descriptors_sent_with_a_frame_are_closed_and_the_frame_refused) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  os::unique_fd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  // Counted once the server has served a connection (it opens some files on first use), with that
  // connection still open.
  raw_client warm = open();
  ASSERT_TRUE(warm.establish());
  std::size_t before = open_descriptors(server().pid());
  struct sent {
    int descriptors;  // 8: more than the server's control buffer has room for
    std::uint32_t magic;
    std::uint32_t answered_request;  // 0 when the header cannot be trusted (docs/protocol.md)
  } cases[] = {{1, magic, 5}, {8, magic, 5}, {1, 0xDEADBEEF, 0}, {8, 0xDEADBEEF, 0}};
  for (const sent& k : cases) {
    int count = k.descriptors;
    SCOPED_TRACE(fmt::format("{} descriptors, magic {:#x}", count, k.magic));
    raw_client c = open();
    std::vector<std::byte> bytes =
        frame_bytes(header{k.magic, version, msg_type::establish, 0, 5, 0},
                    establish_body(impersonation_level::impersonate));
    std::vector<int> fds(static_cast<std::size_t>(count), write_end.get());
    iovec iov{bytes.data(), bytes.size()};
    std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
    ASSERT_EQ(::sendmsg(c.fd(), &msg, MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
    auto f = c.read_frame();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->error_status(), status::bad_frame);
    EXPECT_EQ(f->head.request_id, k.answered_request);
    EXPECT_TRUE(f->error_fatal());
    EXPECT_TRUE(c.closed_by_server());
  }
  // None was kept: the pipe's write end is ours alone again, so closing it ends the pipe.
  EXPECT_EQ(open_descriptors(server().pid()), before);
  write_end.reset();
  char byte;
  EXPECT_EQ(::read(read_end.get(), &byte, 1), 0) << "the server still holds the write end";
}

TEST_F(hostile_input, out_of_band_bytes_cannot_be_sent_and_the_connection_goes_on) {
  raw_client c = open();
  const char urgent = '!';
  EXPECT_EQ(::send(c.fd(), &urgent, 1, MSG_OOB | MSG_NOSIGNAL), -1);
  EXPECT_EQ(errno, EOPNOTSUPP) << "a seqpacket socket has no out-of-band data";
  EXPECT_TRUE(c.establish());
}

TEST_F(hostile_input, a_client_that_never_reads_its_replies_is_dropped) {
  // Server send timeout 200 ms (SetUp). The client sends large calls and never reads: the server's
  // replies fill the socket, its send times out, and it drops the connection.
  bool dropped = within(watchdog, [&] {
    raw_client c = open(100ms);
    std::vector<std::byte> body = call_body(0, impersonation_level::impersonate,
                                            std::vector<std::byte>(max_payload - reply_fixed));
    std::vector<std::byte> whole =
        frame_bytes(header{magic, version, msg_type::call, 0, 1, 0}, body);
    bool checked_others = false;
    auto deadline = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < deadline) {
      std::size_t sent = 0;
      while (sent < whole.size()) {
        ssize_t n = ::send(c.fd(), whole.data() + sent, whole.size() - sent, MSG_NOSIGNAL);
        if (n > 0) {
          sent += static_cast<std::size_t>(n);
          continue;
        }
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) return true;
        if (!checked_others) {  // our writes block: the server is stuck sending to us
          EXPECT_TRUE(serves_correctly(kernel(), server())) << "while one client does not read";
          checked_others = true;
        }
        if (std::chrono::steady_clock::now() >= deadline) break;
      }
    }
    return false;
  });
  EXPECT_TRUE(dropped) << "the server kept a client that never reads for 15 s";
}

TEST_F(hostile_input, two_hundred_connections_at_once_are_all_served) {
  constexpr int n = 200;
  std::vector<raw_client> conns;
  conns.reserve(n);
  for (int i = 0; i < n; ++i) conns.emplace_back(server().socket_path(), 5000ms);
  // Every connection has a request in flight before any reply is read.
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(conns[static_cast<std::size_t>(i)].send_frame(
        msg_type::establish, establish_body(impersonation_level::impersonate),
        static_cast<std::uint32_t>(i + 1)));
  }
  std::vector<std::uint64_t> contexts;
  for (int i = 0; i < n; ++i) {
    auto f = conns[static_cast<std::size_t>(i)].read_frame();
    ASSERT_TRUE(f) << "connection " << i << " got no reply";
    ASSERT_EQ(f->head.type, msg_type::established)
        << "connection " << i << ": " << to_string(f->error_status());
    EXPECT_EQ(f->head.request_id, static_cast<std::uint32_t>(i + 1));
    EXPECT_EQ(f->seen_uid(), process().uid);
    contexts.push_back(f->context());
  }
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(conns[static_cast<std::size_t>(i)].send_frame(
        msg_type::call,
        call_body(contexts[static_cast<std::size_t>(i)], impersonation_level::impersonate), 1000));
  }
  for (int i = 0; i < n; ++i) {
    auto f = conns[static_cast<std::size_t>(i)].read_frame();
    ASSERT_TRUE(f && f->head.type == msg_type::reply) << "connection " << i;
    EXPECT_EQ(f->context(), contexts[static_cast<std::size_t>(i)]);
  }
  // Meanwhile, proxies on other threads under different clients each see their own identity.
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (std::uint32_t t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto conn = connect_to(server());
      proxy p(kernel(), *conn);
      p.set_blanket(blanket_of(cloaking::dynamic));
      impersonation as_client(kernel(), client_token(t));
      static const std::byte payload[16]{};
      for (int i = 0; i < 50; ++i) {
        call_result r = p.call(payload);
        if (!r.ok() || !r.view.seen.same_principal(client(t))) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(hostile_input, random_bytes_never_take_the_server_down) {
  std::mt19937_64 random(7);
  for (int round = 0; round < 100; ++round) {
    raw_client c = open(500ms);
    std::vector<std::byte> bytes(random() % 256);
    for (auto& b : bytes) b = static_cast<std::byte>(random());
    if (round % 2 == 0 && bytes.size() >= header_size) {  // a valid header in front of garbage
      encode_header(header{magic, version, static_cast<msg_type>(random() % 10), 0, 1,
                           static_cast<std::uint32_t>(bytes.size() - header_size)},
                    bytes.data());
    }
    c.send_bytes(bytes);
    c.shutdown_writes();
    frame f;
    while (c.read(f) == read_result::frame) {
      ASSERT_LE(f.head.length, max_payload);
    }
  }
  EXPECT_TRUE(server().running());
}

// The TCP server sends each reply with os::send_all_within: a reader that keeps taking a little
// (so that no single send ever waits a whole timeout) still gets one deadline for the whole reply.
TEST(reply_deadline, a_reader_that_drips_gets_one_deadline_for_the_whole_reply_not_one_per_send) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  os::unique_fd writer(sv[0]), reader(sv[1]);
  int small = 4096;
  ::setsockopt(writer.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  ::setsockopt(reader.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  std::vector<std::byte> reply(4 << 20);  // at the drip below, over 40 s to read
  std::atomic<bool> stop{false};
  std::atomic<std::size_t> taken{0};
  std::thread drip([&] {
    std::vector<std::byte> chunk(1024);
    while (!stop) {
      ssize_t n = ::recv(reader.get(), chunk.data(), chunk.size(), MSG_DONTWAIT);
      if (n > 0) taken += static_cast<std::size_t>(n);
      std::this_thread::sleep_for(10ms);  // the slow reader under test, not a wait for a server
    }
  });
  bool sent = os::send_all_within(writer.get(), reply.data(), reply.size(), 200ms);
  int error = errno;
  stop = true;
  drip.join();
  EXPECT_FALSE(sent) << "the whole reply went out to a reader that took " << taken.load()
                     << " bytes";
  EXPECT_EQ(error, ETIMEDOUT);
  EXPECT_LT(taken.load(), reply.size());
}

// A server that allows few connections refuses the next one with "busy" and recovers when they go.
class connection_limit : public kernel_test {};

TEST_F(connection_limit, connections_beyond_max_connections_are_refused_busy) {
  downstream_config c = config();
  c.max_connections = 8;
  downstream_process server(c);
  {
    std::vector<raw_client> held;
    for (int i = 0; i < 8; ++i) {
      held.emplace_back(server.socket_path(), 2000ms);
      ASSERT_TRUE(held.back().establish()) << "connection " << i;  // accepted and being served
    }
    raw_client extra(server.socket_path(), 2000ms);
    auto f = extra.read_frame();
    ASSERT_TRUE(f) << "no busy reply";
    EXPECT_EQ(f->head.type, msg_type::error);
    EXPECT_EQ(f->error_status(), status::busy);
    EXPECT_TRUE(f->error_fatal());
    EXPECT_TRUE(extra.closed_by_server());
    // The held connections are unaffected.
    EXPECT_TRUE(held.front().establish());
  }
  // Their threads notice the close on their own; until then a new client may still hear "busy".
  bool served = within(watchdog, [&] {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto t = connect_to(server);
      proxy p(kernel(), *t);
      static const std::byte payload[8]{};
      call_result r = p.call(payload);
      if (r.ok()) return true;
      // Busy: either the refusal was read, or the server closed before our request went out.
      bool busy = (r.error == call_error::refused && r.view.server_status == status::busy) ||
                  r.error == call_error::downstream_unavailable;
      if (!busy) {
        ADD_FAILURE() << "unexpected failure " << to_string(r.error);
        return false;
      }
      std::this_thread::yield();
    }
    return false;
  });
  EXPECT_TRUE(served);
  EXPECT_TRUE(serves_correctly(kernel(), server));
}

TEST_F(connection_limit, a_burst_larger_than_the_old_backlog_waits_in_the_backlog_and_hears_busy) {
  downstream_config c = config();
  c.max_connections = 4;
  downstream_process server(c);
  std::vector<raw_client> held;
  for (int i = 0; i < 4; ++i) {
    held.emplace_back(server.socket_path(), 2000ms);
    ASSERT_TRUE(held.back().establish()) << "connection " << i;
  }
  // While the server accepts nothing, 300 connections (more than a backlog of 128 holds) arrive.
  ASSERT_EQ(::kill(server.pid(), SIGSTOP), 0);
  std::vector<raw_client> burst;
  burst.reserve(300);
  std::string failed;
  for (int i = 0; i < 300 && failed.empty(); ++i) {
    try {
      burst.emplace_back(server.socket_path(), 1000ms);  // connect waits at most this long
    } catch (const std::system_error& e) {
      failed = fmt::format("connection {}: {}", i, e.what());
    }
  }
  ASSERT_EQ(::kill(server.pid(), SIGCONT), 0);
  ASSERT_TRUE(failed.empty()) << failed;
  // Each is then accepted and told it is one too many, not left to time out.
  for (std::size_t i = 0; i < burst.size(); ++i) {
    auto f = burst[i].read_frame();
    ASSERT_TRUE(f) << "connection " << i << " of the burst heard nothing";
    EXPECT_EQ(f->error_status(), status::busy) << "connection " << i;
  }
  EXPECT_TRUE(held.front().establish());
}

}  // namespace
}  // namespace cloak::robustness
