// cloak-downstream over TCP: one thread per connection, the codec's framing over a byte stream,
// every reply sent within one send timeout.
#include "tcp_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>

#include "frame_loop.hpp"

namespace cloak::detail {

using namespace protocol;

namespace {

std::atomic<std::size_t> open_connections{0};

void refuse_busy(int fd) {
  std::vector<std::byte> out;
  append_error_frame(out, 0, status::busy, true, "too many connections");
  os::send_all_within(fd, out.data(), out.size(), std::chrono::milliseconds(200));
}

void serve_connection(os::unique_fd fd, access_checker& checker, const server_packages& packages,
                      std::unique_ptr<forward_handler> forwarder, const tcp_server_config& config) {
  downstream_session session(checker, packages, session_limits{config.max_contexts});
  session.set_forwarder(forwarder.get());
  // No receive timeout: a client may keep an idle connection. A client that stops reading its
  // replies is dropped when one reply is not sent within the send timeout.
  os::tune_tcp(fd.get(), std::chrono::milliseconds(0));
  if (config.verbose) {
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    char text[INET_ADDRSTRLEN] = "?";
    if (::getpeername(fd.get(), reinterpret_cast<sockaddr*>(&peer), &len) == 0) {
      ::inet_ntop(AF_INET, &peer.sin_addr, text, sizeof text);
    }
    std::fprintf(stderr, "cloak-downstream: tcp connection from %s:%u\n", text,
                 ntohs(peer.sin_port));
  }
  serve_frames(fd.get(), session, std::chrono::milliseconds(config.send_timeout_ms));
  --open_connections;
}

}  // namespace

server_lifetime::stop serve_tcp(server_lifetime& lifetime, int listener, access_checker& checker,
                                const server_packages& packages,
                                const forwarder_factory& forwarders,
                                const tcp_server_config& config) {
  return lifetime.accept_until_stopped(listener, [&](os::unique_fd conn) {
    if (open_connections.load() >= config.max_connections) {
      refuse_busy(conn.get());
      return;
    }
    ++open_connections;
    try {
      std::unique_ptr<forward_handler> forwarder = forwarders ? forwarders() : nullptr;
      std::thread(serve_connection, std::move(conn), std::ref(checker), std::cref(packages),
                  std::move(forwarder), std::cref(config))
          .detach();
    } catch (
        const std::exception& e) {  // no thread or no forwarder for it: this connection only fails
      --open_connections;
      std::fprintf(stderr, "cloak-downstream: cannot serve a tcp connection: %s\n", e.what());
    }
  });
}

}  // namespace cloak::detail
