// The names of call errors, as results and verify output print them.
#include <cloak/call.hpp>

namespace cloak {

std::string_view to_string(call_error e) noexcept {
  switch (e) {
    case call_error::ok:
      return "ok";
    case call_error::bad_impersonation_level:
      return "bad impersonation level";
    case call_error::downstream_unavailable:
      return "downstream unavailable";
    case call_error::timeout:
      return "downstream timed out";
    case call_error::protocol:
      return "protocol error";
    case call_error::refused:
      return "refused by downstream";
    case call_error::identity_switch_failed:
      return "identity switch failed";
    case call_error::payload_too_large:
      return "payload too large";
    case call_error::no_credentials:
      return "no credentials for the identity";
    case call_error::authentication_failed:
      return "authentication failed";
    case call_error::package_unavailable:
      return "authentication package unavailable on this channel";
    case call_error::clock_skew:
      return "clock skew beyond the limit";
  }
  return "unknown error";
}

}  // namespace cloak
