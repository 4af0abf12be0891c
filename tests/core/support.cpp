// The shared core-test world and the leak check that ends every test.
#include "support.hpp"

#include <sys/syscall.h>
#include <unistd.h>

namespace cloak::test {

const client_range& clients() {
  static const client_range range = [] {
    client_range r;  // the default 61000:61000:16, as cloak-verify uses
    check_client_range(r);
    return r;
  }();
  return range;
}

identity client(std::uint32_t index) { return clients().client(index); }

token client_token(std::uint32_t index, impersonation_level level) {
  return make_token(client(index), level);
}

const std::optional<std::string>& kernel_unavailable() {
  static const std::optional<std::string> why = kernel_backend_unavailable_reason();
  return why;
}

identity_backend& backend(backend_kind kind) {
  static std::unique_ptr<identity_backend> kernel;
  static std::unique_ptr<identity_backend> model;
  auto& slot = kind == backend_kind::kernel ? kernel : model;
  if (!slot) slot = make_backend(kind);
  return *slot;
}

downstream_process& kernel_downstream() {
  static std::unique_ptr<downstream_process> server;
  if (!server) {
    downstream_config config;
    config.clients = clients();
    server = std::make_unique<downstream_process>(config);
  }
  return *server;
}

std::unique_ptr<transport> connect(backend_kind kind) {
  if (kind == backend_kind::kernel) return make_uds_transport({kernel_downstream().socket_path()});
  static model_downstream model;
  return make_inproc_transport(model, backend(backend_kind::model));
}

kernel_credentials read_kernel_credentials() {
  kernel_credentials c{};
  syscall(SYS_getresuid, &c.ruid, &c.euid, &c.suid);
  syscall(SYS_getresgid, &c.rgid, &c.egid, &c.sgid);
  return c;
}

void leak_checked_test::SetUp() {
  // Made here, while this thread surely has its process credentials: the kernel backend records
  // them as P.
  if (!kernel_unavailable()) backend(backend_kind::kernel);
  backend(backend_kind::model);
}

void leak_checked_test::TearDown() {
  for (auto kind : {backend_kind::kernel, backend_kind::model}) {
    if (kind == backend_kind::kernel && kernel_unavailable()) continue;
    identity_backend& b = backend(kind);
    bool leaked = false;
    try {
      b.check_no_leak();
    } catch (const std::exception& e) {
      ADD_FAILURE() << to_string(kind) << " backend: " << e.what();
      leaked = true;
    }
    if (kind == backend_kind::kernel) {
      // Beside the backend's own probe: every id the kernel keeps for this thread is P's.
      const identity& p = b.process_identity();
      kernel_credentials c = read_kernel_credentials();
      if (c.ruid != p.uid || c.euid != p.uid || c.suid != p.uid || c.rgid != p.gid ||
          c.egid != p.gid || c.sgid != p.gid || ::getuid() != p.uid || ::geteuid() != p.uid ||
          ::getgid() != p.gid || ::getegid() != p.gid) {
        ADD_FAILURE() << "identity leak: the thread's kernel credentials are uid " << c.ruid << "/"
                      << c.euid << "/" << c.suid << " gid " << c.rgid << "/" << c.egid << "/"
                      << c.sgid << " but the process identity is " << to_string(p);
        leaked = true;
      }
    }
    if (leaked) {
      // Put the thread back to P so later tests in this process start clean.
      b.revert();
      if (kind == backend_kind::kernel) {
        const identity& p = b.process_identity();
        syscall(SYS_setresuid, p.uid, p.uid, p.uid);
        syscall(SYS_setresgid, p.gid, p.gid, p.gid);
        syscall(SYS_setgroups, static_cast<std::size_t>(p.group_count), p.groups.data());
      }
    }
  }
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
