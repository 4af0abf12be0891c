// The shared test world (see cloak/test/support.hpp).
#include <sys/syscall.h>
#include <unistd.h>

#include <cloak/test/support.hpp>
#include <exception>
#include <string_view>

namespace cloak::test {

const client_range& clients() {
  static const client_range range = [] {
    client_range r;  // the default 61000:61000:16
    check_client_range(r);
    return r;
  }();
  return range;
}

identity client(std::uint32_t index) { return clients().client(index); }

token client_token(std::uint32_t index, impersonation_level level) {
  return make_token(client(index), level);
}

blanket blanket_of(cloaking mode, impersonation_level level, std::optional<identity> who) {
  blanket b;
  b.mode = mode;
  b.level = level;
  b.explicit_identity = who;
  return b;
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

namespace {

identity read_process_identity() {
  identity who;
  who.uid = static_cast<std::uint32_t>(::getuid());
  who.gid = static_cast<std::uint32_t>(::getgid());
  int n = ::getgroups(static_cast<int>(max_groups), reinterpret_cast<gid_t*>(who.groups.data()));
  who.group_count = n < 0 ? 0 : static_cast<std::uint32_t>(n);
  return who;
}

// Static initialisation precedes main, so no test has impersonated anyone yet.
const identity process_identity_at_start = read_process_identity();

// Adds a failure naming the leak and returns false when `check` throws.
template <class F>
bool expect_no_leak(std::string_view what, F&& check) {
  try {
    check();
    return true;
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": " << e.what();
    return false;
  }
}

// Puts the calling thread back to P with the raw syscalls, which change only this thread.
void restore_kernel_credentials(const identity& p) {
  syscall(SYS_setresuid, p.uid, p.uid, p.uid);
  syscall(SYS_setresgid, p.gid, p.gid, p.gid);
  syscall(SYS_setgroups, static_cast<std::size_t>(p.group_count), p.groups.data());
}

}  // namespace

const identity& process_at_start() { return process_identity_at_start; }

void leak_checked_test::SetUp() {
  // Made here, while this thread surely has its process credentials: the kernel backend records
  // them as P.
  if (!kernel_unavailable()) backend(backend_kind::kernel);
  backend(backend_kind::model);
}

void leak_checked_test::TearDown() {
  bool kernel_leaked = false;
  for (auto kind : {backend_kind::kernel, backend_kind::model}) {
    if (kind == backend_kind::kernel && kernel_unavailable()) continue;
    identity_backend& b = backend(kind);
    if (!expect_no_leak(std::string(to_string(kind)) + " backend", [&] { b.check_no_leak(); })) {
      b.revert();
      if (kind == backend_kind::kernel) kernel_leaked = true;
    }
  }
  if (!expect_no_leak("kernel credentials", [] { check_no_thread_leak(process_at_start()); }))
    kernel_leaked = true;
  if (kernel_leaked && !kernel_unavailable()) restore_kernel_credentials(process_at_start());
}

downstream_config client_downstream_config() {
  downstream_config config;
  config.clients = clients();
  return config;
}

std::unique_ptr<connection> connect_to(const downstream_process& server,
                                       std::chrono::milliseconds io_timeout) {
  return make_uds_connection({server.socket_path(), io_timeout});
}

}  // namespace cloak::test
