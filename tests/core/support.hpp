// What every core test shares: one backend (and downstream) per kind, the fake clients, and the
// fixture that fails any test which leaves its thread running as someone other than P.
#pragma once

#include <cloak/backend.hpp>
#include <cloak/downstream.hpp>
#include <cloak/identity.hpp>
#include <cloak/transport.hpp>

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <ostream>
#include <string>

namespace cloak {
// Lets GoogleTest print identities in failure messages.
inline void PrintTo(const identity& who, std::ostream* os) {
  *os << to_string(who) << " groups=" << who.group_count;
}
inline void PrintTo(backend_kind kind, std::ostream* os) { *os << to_string(kind); }
}  // namespace cloak

namespace cloak::test {

// The default fake-client range (61000:61000:16), checked to belong to nobody.
const client_range& clients();
identity client(std::uint32_t index);
token client_token(std::uint32_t index,
                   impersonation_level level = impersonation_level::impersonate);

// Why the kernel backend cannot run here (empty: it can), decided once, on the first call, while
// the thread still has its process credentials: a thread that leaked a client identity has lost its
// capabilities and would otherwise look like an unprivileged one.
const std::optional<std::string>& kernel_unavailable();

// The process-wide backend of a kind. The kernel one must first be made while the thread has its
// process credentials: leak_checked_test::SetUp does that.
identity_backend& backend(backend_kind kind);

// A real cloak-downstream, started on first use (readiness from its pipe) and stopped at exit.
downstream_process& kernel_downstream();

// A fresh, not yet connected transport to the downstream of `kind`: the Unix socket to
// cloak-downstream for the kernel backend, the in-process model downstream for the model.
std::unique_ptr<transport> connect(backend_kind kind);

// The kernel's view of the calling thread, read with the plain syscalls (not the backend).
struct kernel_credentials {
  std::uint32_t ruid, euid, suid, rgid, egid, sgid;
};
kernel_credentials read_kernel_credentials();

// Every test ends with the thread's credentials equal to the process identity; a leak is a failure
// (and is repaired, so the next test in the same process starts clean).
class leak_checked_test : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
};

// Parameterised over the backend; kernel cases skip with the reason when the kernel backend cannot
// run here.
class backend_test : public leak_checked_test, public ::testing::WithParamInterface<backend_kind> {
 protected:
  void SetUp() override;
  backend_kind kind() const { return GetParam(); }
  identity_backend& be() const { return backend(GetParam()); }
  identity process() const { return be().process_identity(); }
};

std::string backend_name(const ::testing::TestParamInfo<backend_kind>& info);

}  // namespace cloak::test
