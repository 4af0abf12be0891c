// The core tests' own downstreams and fixture (see support.hpp).
#include "support.hpp"

#include <sys/syscall.h>
#include <unistd.h>

namespace cloak::test {

downstream_process& kernel_downstream() {
  static std::unique_ptr<downstream_process> server;
  if (!server) server = std::make_unique<downstream_process>(client_downstream_config());
  return *server;
}

std::unique_ptr<connection> connect(backend_kind kind) {
  if (kind == backend_kind::kernel) return connect_to(kernel_downstream());
  static model_downstream model;
  return make_inproc_connection(model, backend(backend_kind::model));
}

kernel_credentials read_kernel_credentials() {
  kernel_credentials c{};
  syscall(SYS_getresuid, &c.ruid, &c.euid, &c.suid);
  syscall(SYS_getresgid, &c.rgid, &c.egid, &c.sgid);
  return c;
}

void backend_test::SetUp() {
  if (GetParam() == backend_kind::kernel) {
    if (const auto& why = kernel_unavailable()) GTEST_SKIP() << *why;
  }
  leak_checked_test::SetUp();
}

std::string backend_name(const ::testing::TestParamInfo<backend_kind>& info) {
  return std::string(to_string(info.param));
}

}  // namespace cloak::test
