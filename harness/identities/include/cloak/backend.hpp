// Identity backends: where a thread token lives (kernel credentials or user-space model) and how it
// changes.
#pragma once

#include <cloak/identity.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace cloak {

enum class backend_kind : std::uint8_t { kernel = 0, model = 1 };
std::string_view to_string(backend_kind kind) noexcept;
backend_kind parse_backend_kind(std::string_view text);  // throws std::invalid_argument

// Why a token change failed; the hot path returns this instead of throwing.
enum class switch_error : std::uint8_t {
  ok,
  refused_root,  // the kernel backend never impersonates uid/gid 0 as a client
  os_error,      // a credential syscall failed (errno is left as the syscall set it)
};

// One backend per process and kind. Thread tokens are per thread, as in COM: impersonate() changes
// only the calling thread, and each thread's token is independent of every other's.
class identity_backend {
 public:
  virtual ~identity_backend() = default;
  identity_backend(const identity_backend&) = delete;
  identity_backend& operator=(const identity_backend&) = delete;

  backend_kind kind() const noexcept { return kind_; }
  // The process identity P: what a thread is when it has no token.
  const identity& process_identity() const noexcept { return process_; }

  // Gives the calling thread `t` as its token (replacing any token it had). Use the
  // `impersonation` guard rather than calling this directly.
  virtual switch_error impersonate(const token& t) noexcept = 0;
  // Drops the calling thread's token. Cannot fail: if the OS refuses, the process aborts, because a
  // thread left running as a client is worse than no result.
  virtual void revert() noexcept = 0;

  // The calling thread's token, or nullptr when it has none (bookkeeping, no syscall).
  const token* thread_token() const noexcept;
  bool thread_has_token() const noexcept { return thread_token() != nullptr; }
  // Bumped on every impersonate/revert of the calling thread (the analogue of a token's
  // ModifiedId).
  std::uint64_t thread_generation() const noexcept;

  // The identity probe: what the thread is right now, read from the source of truth (the kernel's
  // per-thread credentials for the kernel backend, the thread-local token for the model).
  virtual identity read_thread_identity() const noexcept = 0;

  // Throws std::runtime_error naming both identities unless the calling thread has no token and its
  // credentials equal the process identity.
  void check_no_leak() const;

 protected:
  identity_backend(backend_kind kind, identity process) : kind_(kind), process_(process) {}
  struct thread_state {
    bool has_token = false;
    token current;
    std::uint64_t generation = 0;
  };
  thread_state& state() const noexcept;

 private:
  backend_kind kind_;
  identity process_;
};

// Throws std::runtime_error naming the thread unless every thread of this process has exactly the
// kernel credentials of `process` (uid, gid, groups): a leak anywhere, not only on the calling
// thread.
void check_no_thread_leak(const identity& process);

// Empty when the kernel backend can run here (CAP_SETUID and CAP_SETGID); otherwise why not.
std::optional<std::string> kernel_backend_unavailable_reason();

// Throws std::system_error / std::runtime_error when unavailable; see
// kernel_backend_unavailable_reason.
std::unique_ptr<identity_backend> make_kernel_backend();
std::unique_ptr<identity_backend> make_model_backend(identity process = identity::of(0, 0));
std::unique_ptr<identity_backend> make_backend(backend_kind kind);

// RAII impersonation: the thread carries `t` for the guard's lifetime; on every exit path
// (exceptions included) it gets back exactly the token it had before, or none.
class impersonation {
 public:
  // Throws std::system_error (or std::invalid_argument for uid 0) if the switch fails; the thread's
  // token is then unchanged.
  impersonation(identity_backend& backend, const token& t);
  ~impersonation();
  impersonation(const impersonation&) = delete;
  impersonation& operator=(const impersonation&) = delete;

 private:
  identity_backend& backend_;
  std::optional<token> previous_;
};

// Presents `who` for the guard's lifetime only when the thread is not already that identity; used
// by proxies that must establish a context as an identity other than the thread's current one.
class temporary_identity {
 public:
  temporary_identity(identity_backend& backend, const token* who) noexcept;
  ~temporary_identity();
  temporary_identity(const temporary_identity&) = delete;
  temporary_identity& operator=(const temporary_identity&) = delete;
  switch_error error() const noexcept { return error_; }
  bool switched() const noexcept { return switched_; }

 private:
  identity_backend& backend_;
  std::optional<token> previous_;
  bool switched_ = false;
  switch_error error_ = switch_error::ok;
};

}  // namespace cloak
