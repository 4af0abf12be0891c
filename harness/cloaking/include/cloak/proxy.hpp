// The proxy a middle server calls D through, and its blanket: where cloaking decides who D sees.
#pragma once

#include <cloak/backend.hpp>
#include <cloak/call.hpp>
#include <cloak/connection.hpp>
#include <cloak/context_cache.hpp>
#include <cloak/identity.hpp>
#include <cloak/protocol.hpp>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace cloak {

// enum class cloaking is in call.hpp: a forward_call names one too.
std::string_view to_string(cloaking mode) noexcept;
cloaking parse_cloaking(std::string_view text);  // "none", "static", "dynamic"

// How dynamic cloaking notices that the thread's identity changed.
enum class identity_probe : std::uint8_t {
  kernel,      // read the thread's credentials (three syscalls on the kernel backend)
  generation,  // compare the thread's token generation counter (no syscall)
};
std::string_view to_string(identity_probe probe) noexcept;
identity_probe parse_identity_probe(std::string_view text);

// When a dynamic proxy makes a new context: when the identity differs (`identity`), or whenever the
// thread's token changed, even back to the same identity (`token`: Windows RPC revises the context
// whenever the token's ModifiedId changes; here the thread's token generation).
enum class identity_tracking : std::uint8_t { identity, token };
std::string_view to_string(identity_tracking tracking) noexcept;

// How a dynamic proxy authenticates to D: once per identity change (a security context, found by
// probing the thread), or on every message (D reads each call's kernel credentials; no probe, no
// context: docs/design.md §2's per-message strategy).
enum class dynamic_authentication : std::uint8_t { context, per_message };

// The largest lru:N: the downstream's contexts per connection (MS-RPCE's 2,000). A dynamic proxy
// holds at most its cache on the connection (it releases what it evicts), so it never exceeds a
// downstream's default limit; lru:N above it is refused rather than capped.
inline constexpr std::size_t max_cached_contexts = protocol::default_max_contexts;

// Whether an earlier security context is reused when an earlier identity comes back.
struct context_cache_policy {
  std::size_t lru_capacity = 0;  // 0: none (always a new context on change)
  static context_cache_policy none() noexcept { return {}; }
  // Throws std::invalid_argument unless 1..max_cached_contexts.
  static context_cache_policy lru(std::size_t n);
};
std::string to_string(const context_cache_policy& policy);
context_cache_policy parse_context_cache_policy(std::string_view text);  // "none" or "lru:N"

// The CoSetProxyBlanket analogue.
struct blanket {
  cloaking mode = cloaking::none;
  impersonation_level level = impersonation_level::impersonate;  // what D may do with the identity
  std::optional<identity> explicit_identity;  // COAUTHIDENTITY; invalid together with cloaking
};

// The CoInitializeSecurity analogue: what a proxy uses until set_blanket is called on it.
struct security_defaults {
  cloaking mode = cloaking::none;
  impersonation_level level = impersonation_level::impersonate;
};

struct dynamic_options {
  identity_probe probe = identity_probe::kernel;
  context_cache_policy cache = context_cache_policy::none();
  dynamic_authentication authentication = dynamic_authentication::context;
  identity_tracking tracking = identity_tracking::identity;
};

struct call_result {
  call_error error = call_error::ok;
  downstream_view view;  // valid when error == ok (and for `refused`, the server's status)
  bool ok() const noexcept { return error == call_error::ok; }
};

struct proxy_counters {
  std::uint64_t calls = 0;
  std::uint64_t contexts_established = 0;
  std::uint64_t probes = 0;
  std::uint64_t cache_hits = 0;         // an identity change found its context in the lru cache
  std::uint64_t cache_misses = 0;       // an identity change with an lru cache that had none for it
  std::uint64_t cache_evictions = 0;    // a miss on a full cache: the least recent context released
  std::uint64_t identity_switches = 0;  // temporary switches to present a non-current identity
  std::uint64_t reconnects = 0;

  // Field by field: several proxies' counters summed (a shared proxy's lanes, a tier's workers).
  proxy_counters& operator+=(const proxy_counters& o) noexcept {
    calls += o.calls;
    contexts_established += o.contexts_established;
    probes += o.probes;
    cache_hits += o.cache_hits;
    cache_misses += o.cache_misses;
    cache_evictions += o.cache_evictions;
    identity_switches += o.identity_switches;
    reconnects += o.reconnects;
    return *this;
  }
};

// One proxy per client thread. A proxy is bound to one connection; it is not thread-safe.
class proxy {
 public:
  proxy(identity_backend& backend, connection& conn, security_defaults defaults = {},
        dynamic_options dynamic = {});
  ~proxy();
  proxy(const proxy&) = delete;
  proxy& operator=(const proxy&) = delete;

  // Sets the blanket explicitly. With static cloaking, captures the calling thread's token now (or
  // P); every later call re-captures. Throws std::invalid_argument for an explicit identity with
  // static or dynamic cloaking.
  void set_blanket(const blanket& b);
  const blanket& current_blanket() const noexcept { return blanket_; }

  // The hot path: no allocation, no exception.
  call_result call(std::span<const std::byte> payload) noexcept;
  // Asks D to act as the identity it sees on this proxy and open the probe file of `target_uid`.
  // D acts only under a security context: with per-message authentication D refuses it.
  call_result access_check(std::uint32_t target_uid, access_outcome& out) noexcept;
  // Asks D to act as the identity it sees on this proxy and call its own next hop through a proxy
  // with `hop`'s cloaking and level (forward_call): the cross-host rules of docs/design.md §1. The
  // result is this hop's; `out` also says how D's own call ended and whom the next hop saw.
  call_result forward(const next_hop& hop, std::span<const std::byte> payload,
                      forward_outcome& out) noexcept;

  const proxy_counters& counters() const noexcept { return counters_; }
  void reset_counters() noexcept { counters_ = {}; }

 private:
  call_error prepare(std::uint64_t& context, impersonation_level& level) noexcept;
  call_error ensure_connected() noexcept;
  call_error fixed_context(std::uint64_t& context) noexcept;
  call_error dynamic_context(std::uint64_t& context) noexcept;
  call_error establish_as(const token* who, std::uint64_t release, std::uint64_t& context) noexcept;
  void forget_contexts() noexcept;
  void release_all_but(std::uint64_t keep) noexcept;

  identity_backend& backend_;
  connection& conn_;
  dynamic_options dynamic_;
  blanket blanket_;
  bool blanket_set_ = false;

  // Fixed-identity modes (none, static, explicit): whom to present, and the context for it.
  bool presented_known_ = false;
  bool presented_is_process_ = true;
  token presented_;
  std::uint64_t fixed_context_ = 0;
  std::uint64_t pending_release_ =
      0;  // a context of an earlier blanket, released on next establish

  // Dynamic: the last identity seen on this thread and the context cache.
  bool dynamic_known_ = false;
  identity last_identity_;
  std::uint64_t last_generation_ = 0;
  std::uint64_t current_context_ = 0;
  context_cache cache_;  // keyed by identity, and by token generation with identity_tracking::token

  std::uint64_t epoch_ = ~std::uint64_t{0};
  proxy_counters counters_;
  downstream_view establish_view_;   // what D answered to this call's establish, if it needed one
  bool establish_answered_ = false;  // this call made an establish (establish_view_ is its answer)
  downstream_view failure_view() const noexcept {
    return establish_answered_ ? establish_view_ : downstream_view{};
  }
};

}  // namespace cloak
