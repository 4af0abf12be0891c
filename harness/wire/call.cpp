// The names of call errors, as results and verify output print them.
#include <cloak/call.hpp>
#include <cloak/enum_names.hpp>

namespace cloak {

namespace {

constexpr auto error_names = make_enum_names<call_error>(
    "call error",
    {
        {call_error::ok, "ok"},
        {call_error::bad_impersonation_level, "bad impersonation level"},
        {call_error::downstream_unavailable, "downstream unavailable"},
        {call_error::timeout, "downstream timed out"},
        {call_error::protocol, "protocol error"},
        {call_error::refused, "refused by downstream"},
        {call_error::identity_switch_failed, "identity switch failed"},
        {call_error::payload_too_large, "payload too large"},
        {call_error::no_credentials, "no credentials for the identity"},
        {call_error::authentication_failed, "authentication failed"},
        {call_error::package_unavailable, "authentication package unavailable on this channel"},
        {call_error::clock_skew, "clock skew beyond the limit"},
    },
    "unknown error");

}  // namespace

std::string_view to_string(call_error e) noexcept { return error_names.to_string(e); }

}  // namespace cloak
