// The world every test folder shares: the fake clients, one backend per kind, the leak check that
// ends every test, and the downstreams the tests start.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cloak/backend.hpp>
#include <cloak/connection.hpp>
#include <cloak/downstream.hpp>
#include <cloak/identity.hpp>
#include <cloak/proxy.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>

namespace cloak {
// Lets GoogleTest print identities and backend kinds in failure messages.
inline void PrintTo(const identity& who, std::ostream* os) {
  *os << to_string(who) << " groups=" << who.group_count;
}
inline void PrintTo(backend_kind kind, std::ostream* os) { *os << to_string(kind); }
}  // namespace cloak

namespace cloak::test {

// The default fake-client range (61000:61000:16, as cloak-verify uses), checked to belong to
// nobody.
const client_range& clients();
identity client(std::uint32_t index);
token client_token(std::uint32_t index,
                   impersonation_level level = impersonation_level::impersonate);

// A blanket as set_blanket takes it.
blanket blanket_of(cloaking mode, impersonation_level level = impersonation_level::impersonate,
                   std::optional<identity> who = std::nullopt);

// Why the kernel backend cannot run here (empty: it can), decided once, on the first call, while
// the thread still has its process credentials: a thread that leaked a client identity has lost its
// capabilities and would otherwise look like an unprivileged one.
const std::optional<std::string>& kernel_unavailable();

// The process-wide backend of a kind. The kernel one must first be made while the thread has its
// process credentials: leak_checked_test::SetUp does that.
identity_backend& backend(backend_kind kind);

// The process identity P as the kernel gave it, read before any test ran.
const identity& process_at_start();

// Every test ends with no thread of the process as anyone but P: no token left in either
// process-wide backend (identity_backend::check_no_leak) and every thread's kernel credentials
// equal to P (cloak::check_no_thread_leak). A leak is a failure, and is repaired on the test thread
// so the next test in the same process starts clean.
class leak_checked_test : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
};

// A downstream config serving the default fake clients; the rest as downstream_config defaults it.
downstream_config client_downstream_config();

// A fresh connection, not yet connected, to `server` whose every send and receive is bounded by
// `io_timeout`.
std::unique_ptr<connection> connect_to(
    const downstream_process& server,
    std::chrono::milliseconds io_timeout = uds_options{}.io_timeout);

}  // namespace cloak::test
