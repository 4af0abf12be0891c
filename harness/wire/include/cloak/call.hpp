// What a call to a downstream can end as, and what the downstream says it saw: shared by the
// proxy, the authentication packages and the channels.
#pragma once

#include <cloak/identity.hpp>
#include <cloak/protocol.hpp>
#include <cstdint>
#include <string_view>

namespace cloak {

// Every way a call can fail. Values are stable: they appear in results and verify output.
enum class call_error : std::uint8_t {
  ok = 0,
  bad_impersonation_level,  // cloaking under a thread token below impersonate level
  downstream_unavailable,   // cannot connect, or the connection broke
  timeout,                  // the downstream did not answer within the bound
  protocol,                 // the downstream sent something that is not a valid reply
  refused,                  // the downstream answered with an error status (see server_status)
  identity_switch_failed,   // could not present the identity the blanket requires
  payload_too_large,
  no_credentials,         // the package holds no credentials for the identity to present
  authentication_failed,  // the package could not make or check a token (its message says why)
  package_unavailable,    // the package cannot run on this channel (local across hosts)
  clock_skew,  // the KDC or the server refused: this clock is off by more than their limit
};
std::string_view to_string(call_error e) noexcept;

// What the downstream says it saw: the identity its authentication package gave it for this call.
struct downstream_view {
  identity seen;  // uid and gid only
  bool anonymous = false;
  impersonation_level level = impersonation_level::impersonate;
  std::uint64_t context = 0;
  protocol::status server_status = protocol::status::ok;
};

// How a proxy decides whom it presents (docs/design.md §1); the proxy's blanket carries it, and a
// forward_call names the one the downstream's own proxy uses for its next hop.
enum class cloaking : std::uint8_t { none, static_, dynamic };

// What a downstream's own proxy to its next hop uses: its cloaking (the CoInitializeSecurity
// default of that proxy: static captures at its first call) and the level it asks of the next hop.
struct next_hop {
  cloaking mode = cloaking::none;
  impersonation_level level = impersonation_level::impersonate;
};

// What a forward_call ends as: whom the first hop saw, and how its own call to the next hop ended.
struct forward_outcome {
  downstream_view view;                    // the caller as the first hop saw it
  call_error next_error = call_error::ok;  // the first hop's call to the next hop
  downstream_view next;  // whom the next hop saw (server_status when next_error is refused)
  std::uint32_t next_contexts = 0;  // contexts the first hop's proxy established for this call
  std::string_view
      detail;  // the first hop's account of a failed next call; valid until the next exchange
};

struct access_outcome {
  downstream_view view;
  bool granted = false;
  int error_number = 0;  // errno the downstream got opening the file as the caller
};

}  // namespace cloak
