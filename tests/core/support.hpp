// What only the core tests share: one downstream per backend kind, the kernel's view of the thread,
// and the fixture parameterised over the backend. The rest is tests/support's.
#pragma once

#include <gtest/gtest.h>

#include <cloak/test/support.hpp>
#include <memory>
#include <string>

namespace cloak::test {

// A real cloak-downstream, started on first use (readiness from its pipe) and stopped at exit.
downstream_process& kernel_downstream();

// A fresh connection, not yet connected, to the downstream of `kind`: the Unix socket to
// cloak-downstream for the kernel backend, the in-process model downstream for the model.
std::unique_ptr<connection> connect(backend_kind kind);

// The kernel's view of the calling thread, read with the plain syscalls (not the backend).
struct kernel_credentials {
  std::uint32_t ruid, euid, suid, rgid, egid, sgid;
};
kernel_credentials read_kernel_credentials();

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
