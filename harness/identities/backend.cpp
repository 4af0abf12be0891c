// Identity backends: per-thread kernel credentials through raw syscalls, and the user-space model.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cloak/backend.hpp>
#include <cloak/enum_names.hpp>
#include <cloak/inject.hpp>
#include <cloak/os.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace cloak {

namespace {

constexpr auto backend_names = make_enum_names<backend_kind>(
    "backend", {{backend_kind::kernel, "kernel"}, {backend_kind::model, "model"}});

}  // namespace

std::string_view to_string(backend_kind kind) noexcept { return backend_names.to_string(kind); }
backend_kind parse_backend_kind(std::string_view text) { return backend_names.parse(text); }

identity_backend::thread_state& identity_backend::state() const noexcept {
  // One bookkeeping slot per backend kind, so a thread may use both backends independently.
  thread_local thread_state states[2];
  return states[static_cast<int>(kind_)];
}

const token* identity_backend::thread_token() const noexcept {
  auto& s = state();
  return s.has_token ? &s.current : nullptr;
}

std::uint64_t identity_backend::thread_generation() const noexcept { return state().generation; }

void identity_backend::check_no_leak() const {
  identity now = read_thread_identity();
  bool steady = true;
  if (kind_ == backend_kind::kernel) {
    // The probe reads real ids; a leak may hide in the effective or saved ones.
    std::uint32_t r = 0, e = 0, s = 0, rg = 0, eg = 0, sg = 0;
    steady = syscall(SYS_getresuid, &r, &e, &s) == 0 &&
             syscall(SYS_getresgid, &rg, &eg, &sg) == 0 && r == process_.uid && e == process_.uid &&
             s == process_.uid && rg == process_.gid && eg == process_.gid && sg == process_.gid;
  }
  if (thread_has_token() || !steady || !(now == process_)) {
    throw std::runtime_error(
        fmt::format("identity leak: thread is {} ({} token) but the process identity is {}",
                    to_string(now), thread_has_token() ? "has a" : "no", to_string(process_)));
  }
}

namespace {

// The numbers after "<key>:" in a /proc/<pid>/task/<tid>/status line.
std::vector<std::uint32_t> status_numbers(const std::string& text, std::string_view key) {
  std::vector<std::uint32_t> out;
  auto at = text.find(fmt::format("\n{}:", key));
  if (at == std::string::npos) return out;
  std::istringstream line(
      text.substr(at + key.size() + 2, text.find('\n', at + 1) - at - key.size() - 2));
  for (std::uint32_t v = 0; line >> v;) out.push_back(v);
  return out;
}

}  // namespace

void check_no_thread_leak(const identity& process) {
  std::vector<std::uint32_t> want_groups(process.groups.begin(),
                                         process.groups.begin() + process.group_count);
  std::sort(want_groups.begin(), want_groups.end());
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream in(task.path() / "status");
    if (!in) continue;  // the thread exited meanwhile
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto uids = status_numbers(text, "Uid");  // real, effective, saved, filesystem
    auto gids = status_numbers(text, "Gid");
    auto groups = status_numbers(text, "Groups");
    std::sort(groups.begin(), groups.end());
    auto all = [](const std::vector<std::uint32_t>& v, std::uint32_t id) {
      return v.size() == 4 &&
             std::all_of(v.begin(), v.end(), [id](std::uint32_t x) { return x == id; });
    };
    if (!all(uids, process.uid) || !all(gids, process.gid) || groups != want_groups) {
      throw std::runtime_error(fmt::format(
          "identity leak: thread {} has uid {} gid {} groups {} but the process identity is {}",
          task.path().filename().string(), fmt::join(uids, "/"), fmt::join(gids, "/"),
          fmt::join(groups, ","), to_string(process)));
    }
  }
  if (ec) os::throw_errno(ec.value(), "cannot list /proc/self/task");
}

namespace {

// The raw syscalls change only the calling thread; glibc's wrappers would change every thread.
long raw_setresuid(std::uint32_t r, std::uint32_t e) {
  return syscall(SYS_setresuid, r, e, static_cast<std::uint32_t>(-1));
}
long raw_setresgid(std::uint32_t r, std::uint32_t e) {
  return syscall(SYS_setresgid, r, e, static_cast<std::uint32_t>(-1));
}
long raw_setgroups(const identity& who) {
  return syscall(SYS_setgroups, static_cast<std::size_t>(who.group_count), who.groups.data());
}

identity read_kernel_identity() noexcept {
  identity who;
  who.uid = static_cast<std::uint32_t>(syscall(SYS_getuid));
  who.gid = static_cast<std::uint32_t>(syscall(SYS_getgid));
  long n = syscall(SYS_getgroups, static_cast<int>(max_groups), who.groups.data());
  who.group_count = n < 0 ? 0 : static_cast<std::uint32_t>(n);
  return who;
}

class kernel_backend final : public identity_backend {
 public:
  explicit kernel_backend(identity process) : identity_backend(backend_kind::kernel, process) {}

  switch_error impersonate(const token& t) noexcept override {
    if (t.who.uid == 0 || t.who.gid == 0) return switch_error::refused_root;
    inject_at(inject_path::switch_);  // CLOAK_INJECT_PATH=switch: once per impersonate
    auto& s = state();
    // A thread running as C1 cannot become C2 directly (its saved uid is P's): go back to P first,
    // as Samba's set_sec_ctx does.
    if (s.has_token) revert();
    // Order matters: groups and gid need CAP_SETGID, which is lost once the euid is not 0.
    if (raw_setgroups(t.who) != 0 || raw_setresgid(t.who.gid, t.who.gid) != 0 ||
        raw_setresuid(t.who.uid, t.who.uid) != 0) {
      int error = errno;
      restore_process_credentials();
      errno = error;
      return switch_error::os_error;
    }
    s.has_token = true;
    s.current = t;
    ++s.generation;
    return switch_error::ok;
  }

  void revert() noexcept override {
    auto& s = state();
    if (!s.has_token) return;
    restore_process_credentials();
    s.has_token = false;
    ++s.generation;
  }

  identity read_thread_identity() const noexcept override { return read_kernel_identity(); }

 private:
  void restore_process_credentials() noexcept {
    const identity& p = process_identity();
    if (raw_setresuid(p.uid, p.uid) != 0 || raw_setresgid(p.gid, p.gid) != 0 ||
        raw_setgroups(p) != 0) {
      std::fprintf(stderr,
                   "cloakbench: fatal: cannot revert thread credentials to the process identity "
                   "(%s): aborting rather than running as a client\n",
                   std::strerror(errno));
      std::abort();
    }
  }
};

class model_backend final : public identity_backend {
 public:
  explicit model_backend(identity process) : identity_backend(backend_kind::model, process) {}

  switch_error impersonate(const token& t) noexcept override {
    if (t.who.uid == 0 || t.who.gid == 0) return switch_error::refused_root;
    inject_at(inject_path::switch_);  // CLOAK_INJECT_PATH=switch: once per impersonate
    auto& s = state();
    s.has_token = true;
    s.current = t;
    ++s.generation;
    return switch_error::ok;
  }

  void revert() noexcept override {
    auto& s = state();
    if (!s.has_token) return;
    s.has_token = false;
    ++s.generation;
  }

  identity read_thread_identity() const noexcept override {
    const token* t = thread_token();
    return t ? t->who : process_identity();
  }
};

bool has_effective_capability(int cap) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  return (data[cap / 32].effective & (1u << (cap % 32))) != 0;
}

}  // namespace

std::optional<std::string> kernel_backend_unavailable_reason() {
  std::string missing;
  if (!has_effective_capability(CAP_SETUID)) missing += " CAP_SETUID";
  if (!has_effective_capability(CAP_SETGID)) missing += " CAP_SETGID";
  if (missing.empty()) return std::nullopt;
  return fmt::format(
      "the kernel backend needs{} (run as root, or in a user namespace with "
      "subordinate ids: Debian package uidmap)",
      missing);
}

std::unique_ptr<identity_backend> make_kernel_backend() {
  if (auto why = kernel_backend_unavailable_reason()) throw std::runtime_error(*why);
  std::uint32_t r = 0, e = 0, s = 0, rg = 0, eg = 0, sg = 0;
  if (syscall(SYS_getresuid, &r, &e, &s) != 0 || syscall(SYS_getresgid, &rg, &eg, &sg) != 0) {
    os::throw_errno(errno, "cannot read the process credentials");
  }
  if (r != e || e != s || rg != eg || eg != sg) {
    throw std::runtime_error(fmt::format(
        "the kernel backend must start from steady credentials (uid {}/{}/{}, gid {}/{}/{})", r, e,
        s, rg, eg, sg));
  }
  long n = syscall(SYS_getgroups, 0, nullptr);
  if (n < 0) os::throw_errno(errno, "cannot read the process groups");
  if (static_cast<std::size_t>(n) > max_groups) {
    throw std::runtime_error(fmt::format(
        "the process has {} supplementary groups; at most {} supported", n, max_groups));
  }
  return std::make_unique<kernel_backend>(read_kernel_identity());
}

std::unique_ptr<identity_backend> make_model_backend(identity process) {
  return std::make_unique<model_backend>(process);
}

std::unique_ptr<identity_backend> make_backend(backend_kind kind) {
  return kind == backend_kind::kernel ? make_kernel_backend() : make_model_backend();
}

impersonation::impersonation(identity_backend& backend, const token& t) : backend_(backend) {
  if (const token* now = backend.thread_token()) previous_ = *now;
  switch (backend.impersonate(t)) {
    case switch_error::ok:
      return;
    case switch_error::refused_root:
      throw std::invalid_argument(
          fmt::format("refusing to impersonate {}: uid/gid 0 is never a client", to_string(t.who)));
    case switch_error::os_error:
      // The failed switch left the thread with no token; give it back the one it had.
      int error = errno;
      if (previous_) backend.impersonate(*previous_);
      os::throw_errno(error, fmt::format("cannot impersonate {}", to_string(t.who)));
  }
}

impersonation::~impersonation() {
  if (!previous_) {
    backend_.revert();
    return;
  }
  if (backend_.impersonate(*previous_) != switch_error::ok) {
    backend_.revert();
    std::fprintf(stderr, "cloakbench: fatal: cannot restore the previous thread token\n");
    std::abort();
  }
}

temporary_identity::temporary_identity(identity_backend& backend, const token* who) noexcept
    : backend_(backend) {
  const token* now = backend.thread_token();
  const identity& target = who ? who->who : backend.process_identity();
  const identity& current = now ? now->who : backend.process_identity();
  if (target == current) return;
  if (now) previous_ = *now;
  switched_ = true;
  if (!who || target == backend.process_identity()) {
    backend.revert();
  } else {
    error_ = backend.impersonate(*who);
  }
}

temporary_identity::~temporary_identity() {
  if (!switched_) return;
  if (!previous_) {
    backend_.revert();
  } else if (backend_.impersonate(*previous_) != switch_error::ok) {
    backend_.revert();
    std::fprintf(stderr, "cloakbench: fatal: cannot restore the thread token after a switch\n");
    std::abort();
  }
}

}  // namespace cloak
