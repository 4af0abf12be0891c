// cloak-downstream's TCP server (across hosts): its own accept loop and connection loop, apart from
// the Unix-socket one, since no kernel credentials cross TCP.
#pragma once

#include <cloak/downstream.hpp>
#include <cloak/net.hpp>
#include <cloak/server_lifetime.hpp>
#include <cstddef>
#include <functional>
#include <memory>

namespace cloak::detail {

struct tcp_server_config {
  std::size_t max_connections = 256;
  std::size_t max_contexts = protocol::default_max_contexts;
  int send_timeout_ms = 5000;
  bool verbose = false;
};

// Makes the forward handler of one new connection (empty function: forward_call has no next hop).
using forwarder_factory = std::function<std::unique_ptr<forward_handler>()>;

// Accepts on `listener` until `lifetime` says stop; every connection gets its own thread, session
// and forward handler. Frames carry no kernel credentials: each gets peer_info{nullptr, false}, so
// the local package refuses with package_unavailable and only kerberos authenticates.
server_lifetime::stop serve_tcp(server_lifetime& lifetime, int listener, access_checker& checker,
                                const server_packages& packages,
                                const forwarder_factory& forwarders,
                                const tcp_server_config& config);

}  // namespace cloak::detail
