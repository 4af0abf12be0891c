// The kerberos package's accepted context, which the server side makes and delegation reads.
#pragma once

#include <cloak/realm.hpp>
#include <string>

#include "gss_exchange.hpp"
#include "idmap.hpp"

namespace cloak::detail {

// gss_server_state::name is the authenticated principal; `delegated` a forwarded TGT (delegate
// level).
class kerberos_server_state final : public gss_server_state {};

// The acceptor's replay cache as MIT names it, from the option "none" or "file2:<path>"; throws
// std::invalid_argument.
std::string rcache_name(const std::string& option);
// The realm's principal -> identity map; throws std::runtime_error.
idmap load_realm_idmap(const realm_info& realm);

}  // namespace cloak::detail
