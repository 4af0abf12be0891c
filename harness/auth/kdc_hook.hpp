// Every request the kerberos package sends to the KDC goes through its own send hook, bounded in
// total: MIT 1.20 has no bound on a KDC that accepted the TCP connection and never answers (a
// SIGSTOPped krb5kdc holds each pass ~10 s; request_timeout is new in 1.22).
#pragma once

#include <krb5/krb5.h>

#include <chrono>
#include <cloak/net.hpp>
#include <cloak/realm.hpp>
#include <string>

namespace cloak::detail {

// Where the hook sends, and within how long the whole exchange (connect, request, reply) ends.
struct kdc_target {
  os::tcp_endpoint endpoint;
  std::string where;  // host:port, for messages
  std::chrono::milliseconds timeout{5000};
  std::string last_error;  // why the last exchange failed, for the package's message
};

// A krb5 context whose KDC traffic goes through the bounded hook (owned by one thread at a time).
struct kdc_context {
  krb5_context ctx = nullptr;
  kdc_target target;

  // Throws std::invalid_argument when the realm's KDC host is not an IPv4 address,
  // std::runtime_error when no krb5 context can be made.
  kdc_context(const realm_info& realm, std::chrono::milliseconds timeout);
  ~kdc_context();
  kdc_context(const kdc_context&) = delete;
  kdc_context& operator=(const kdc_context&) = delete;
};

}  // namespace cloak::detail
