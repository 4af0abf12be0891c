// The kerberos package's accepted context, which the server side makes and delegation reads.
#pragma once

#include "gss_exchange.hpp"

namespace cloak::detail {

// gss_server_state::name is the authenticated principal; `delegated` a forwarded TGT (delegate
// level).
class kerberos_server_state final : public gss_server_state {};

}  // namespace cloak::detail
