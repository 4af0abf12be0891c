// The proxy: decides which identity D sees (docs/design.md §1) and keeps the security contexts for
// it.
#include <fmt/format.h>

#include <charconv>
#include <cloak/enum_names.hpp>
#include <cloak/inject.hpp>
#include <cloak/proxy.hpp>
#include <stdexcept>
#include <utility>

namespace cloak {

namespace {

constexpr auto cloaking_names = make_enum_names<cloaking>(
    "cloaking",
    {{cloaking::none, "none"}, {cloaking::static_, "static"}, {cloaking::dynamic, "dynamic"}});
constexpr auto probe_names = make_enum_names<identity_probe>(
    "identity probe",
    {{identity_probe::kernel, "kernel"}, {identity_probe::generation, "generation"}});
constexpr auto tracking_names = make_enum_names<identity_tracking>(
    "identity tracking",
    {{identity_tracking::identity, "identity"}, {identity_tracking::token, "token"}});

}  // namespace

std::string_view to_string(cloaking mode) noexcept { return cloaking_names.to_string(mode); }
cloaking parse_cloaking(std::string_view text) { return cloaking_names.parse(text); }

std::string_view to_string(identity_probe probe) noexcept { return probe_names.to_string(probe); }
identity_probe parse_identity_probe(std::string_view text) { return probe_names.parse(text); }

std::string_view to_string(identity_tracking tracking) noexcept {
  return tracking_names.to_string(tracking);
}

context_cache_policy context_cache_policy::lru(std::size_t n) {
  if (n < 1 || n > max_cached_contexts) {
    throw std::invalid_argument(
        fmt::format("context cache lru:{}: capacity must be 1..{} (the downstream's security "
                    "contexts per connection, MS-RPCE's bound)",
                    n, max_cached_contexts));
  }
  return context_cache_policy{n};
}

std::string to_string(const context_cache_policy& policy) {
  return policy.lru_capacity == 0 ? "none" : fmt::format("lru:{}", policy.lru_capacity);
}

context_cache_policy parse_context_cache_policy(std::string_view text) {
  if (text == "none") return context_cache_policy::none();
  if (text.starts_with("lru:")) {
    std::size_t n = 0;
    auto digits = text.substr(4);
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (ec == std::errc{} && p == digits.data() + digits.size())
      return context_cache_policy::lru(n);
  }
  throw std::invalid_argument(
      fmt::format("unknown context cache policy '{}' (expected none or lru:N)", text));
}

proxy::proxy(identity_backend& backend, connection& conn, security_defaults defaults,
             dynamic_options dynamic)
    : backend_(backend), conn_(conn), dynamic_(dynamic), cache_(dynamic.cache.lru_capacity) {
  blanket_.mode = defaults.mode;
  blanket_.level = defaults.level;
}

proxy::~proxy() = default;

void proxy::set_blanket(const blanket& b) {
  if (b.explicit_identity && b.mode != cloaking::none) {
    throw std::invalid_argument(
        fmt::format("invalid blanket: an explicit identity cannot be combined with {} cloaking",
                    to_string(b.mode)));
  }
  if (b.explicit_identity && (b.explicit_identity->uid == 0 || b.explicit_identity->gid == 0) &&
      !(*b.explicit_identity == backend_.process_identity())) {
    throw std::invalid_argument("invalid blanket: uid/gid 0 is never a client identity");
  }
  // The context made for the old blanket is released with the next establish; any others a dynamic
  // proxy cached are released now, so the connection never holds more than the cache.
  std::uint64_t old = fixed_context_ != 0 ? fixed_context_ : current_context_;
  if (old == 0) old = pending_release_;
  release_all_but(old);
  forget_contexts();
  pending_release_ = old;
  blanket_ = b;
  blanket_set_ = true;
  presented_known_ = true;
  presented_is_process_ = true;
  if (b.explicit_identity) {
    presented_is_process_ = *b.explicit_identity == backend_.process_identity();
    presented_ = make_token(*b.explicit_identity, impersonation_level::impersonate);
  } else if (b.mode == cloaking::static_) {
    // CoSetProxyBlanket with static cloaking: the thread token now, or P when there is none.
    if (const token* now = backend_.thread_token()) {
      presented_ = *now;
      presented_is_process_ = false;
    }
  }
}

void proxy::release_all_but(std::uint64_t keep) noexcept {
  if (!conn_.connected() || conn_.epoch() != epoch_) return;  // they went with the connection
  auto drop = [&](std::uint64_t context) noexcept {
    if (context != 0 && context != keep) conn_.release(context);
  };
  cache_.clear(drop);
  drop(pending_release_);
}

void proxy::forget_contexts() noexcept {
  fixed_context_ = 0;
  current_context_ = 0;
  cache_.clear();
  dynamic_known_ = false;
  pending_release_ = 0;
}

call_error proxy::ensure_connected() noexcept {
  if (!conn_.connected()) {
    // The socket lives in a directory only P may enter: connect as P.
    temporary_identity as_process(backend_, nullptr);
    if (as_process.switched()) ++counters_.identity_switches;
    if (auto e = conn_.connect(); e != call_error::ok) return e;
    if (epoch_ != ~std::uint64_t{0}) ++counters_.reconnects;
  }
  if (conn_.epoch() != epoch_) {
    // Contexts are valid only on the connection that made them. What a static proxy captured is
    // not a context: it survives, and the next establish presents it again.
    forget_contexts();
    epoch_ = conn_.epoch();
  }
  return call_error::ok;
}

call_error proxy::establish_as(const token* who, std::uint64_t release,
                               std::uint64_t& context) noexcept {
  // The package decides how `who` is presented (the local one becomes it for the establish frame,
  // kerberos selects its credentials); the rules here only decide whom.
  downstream_view& v = establish_view_;
  v = {};
  call_error e = conn_.establish(presentation{backend_, who, blanket_.level}, release, v);
  establish_answered_ = true;
  if (conn_.last_establish().switched_identity) ++counters_.identity_switches;
  if (e != call_error::ok) return e;
  context = v.context;
  ++counters_.contexts_established;
  return call_error::ok;
}

call_error proxy::fixed_context(std::uint64_t& context) noexcept {
  if (!presented_known_) {
    presented_known_ = true;
    presented_is_process_ = true;
    // Static cloaking from the process default: the thread token at the first call, fixed after.
    if (blanket_.mode == cloaking::static_) {
      if (const token* now = backend_.thread_token()) {
        presented_ = *now;
        presented_is_process_ = false;
      }
    }
  }
  if (blanket_.mode == cloaking::static_ && !presented_is_process_ &&
      !allows_cloaking(presented_.level)) {
    return call_error::bad_impersonation_level;
  }
  if (fixed_context_ == 0) {
    call_error e = establish_as(presented_is_process_ ? nullptr : &presented_, pending_release_,
                                fixed_context_);
    if (e != call_error::ok) return e;
    pending_release_ = 0;
  }
  context = fixed_context_;
  return call_error::ok;
}

call_error proxy::dynamic_context(std::uint64_t& context) noexcept {
  const token* now = backend_.thread_token();
  if (now && !allows_cloaking(now->level)) return call_error::bad_impersonation_level;
  if (dynamic_.authentication == dynamic_authentication::per_message) {
    context = 0;  // D takes this very message's kernel credentials: nothing to probe or keep
    return call_error::ok;
  }
  ++counters_.probes;
  inject_at(inject_path::probe);  // CLOAK_INJECT_PATH=probe: once per probe, whichever kind
  identity who;
  bool changed = !dynamic_known_ || current_context_ == 0;
  if (dynamic_.probe == identity_probe::kernel) {
    who = backend_.read_thread_identity();
    changed = changed || !(who == last_identity_);
  } else {
    // A new generation says the token may have changed; only a different identity is a change
    // (re-impersonating the same client keeps its context, as the kernel probe does).
    std::uint64_t generation = backend_.thread_generation();
    if (changed || generation != last_generation_) {
      who = now ? now->who : backend_.process_identity();
      changed = changed || !(who == last_identity_);
    }
  }
  std::uint64_t generation = last_generation_;
  if (dynamic_.tracking == identity_tracking::token) {
    // Windows RPC: the context is revised whenever the token's ModifiedId changes, even back to the
    // same identity. The cache is keyed by token too, so an earlier token never comes back.
    generation = backend_.thread_generation();
    changed = changed || generation != last_generation_;
  } else if (dynamic_.probe == identity_probe::generation) {
    generation = backend_.thread_generation();
  }
  last_generation_ = generation;
  const std::size_t capacity = cache_.capacity();
  if (!changed) {
    // The current context is already the cache's most recent: only a change reorders it.
    context = current_context_;
    return call_error::ok;
  }
  std::uint64_t release = 0;
  const std::uint64_t key =
      dynamic_.tracking == identity_tracking::token ? generation : std::uint64_t{0};
  if (capacity != 0) {
    if (std::uint64_t hit = cache_.find(who, key); hit != 0) {
      ++counters_.cache_hits;
      current_context_ = hit;
      last_identity_ = who;
      dynamic_known_ = true;
      context = hit;
      return call_error::ok;
    }
    ++counters_.cache_misses;
    release = cache_.victim();  // evicted, and released on D, only if the establish succeeds
  } else {
    release = current_context_;  // policy none: the previous context is never reused
  }
  if (release == 0) release = std::exchange(pending_release_, 0);
  std::uint64_t fresh = 0;
  // The thread presents its own current token: no switch is needed to present it.
  if (call_error e = establish_as(now, release, fresh); e != call_error::ok) {
    if (e != call_error::refused && capacity == 0) current_context_ = 0;
    // The change was seen but not acted on: the next call must see it again (the generation probe
    // would not, and would call under the earlier identity's context).
    dynamic_known_ = false;
    return e;
  }
  if (capacity != 0 && cache_.insert(who, key, fresh) != 0) ++counters_.cache_evictions;
  current_context_ = fresh;
  last_identity_ = who;
  dynamic_known_ = true;
  context = fresh;
  return call_error::ok;
}

call_error proxy::prepare(std::uint64_t& context, impersonation_level& level) noexcept {
  // Not a reset of the whole view (an identity with 32 groups) on every call: a flag says whether
  // this call's view of a refused establish is worth reporting.
  establish_answered_ = false;
  if (call_error e = ensure_connected(); e != call_error::ok) return e;
  level = blanket_.level;
  return blanket_.mode == cloaking::dynamic ? dynamic_context(context) : fixed_context(context);
}

call_result proxy::call(std::span<const std::byte> payload) noexcept {
  call_result r;
  ++counters_.calls;
  std::uint64_t context = 0;
  impersonation_level level{};
  r.error = prepare(context, level);
  if (r.error == call_error::ok) {
    r.error = conn_.call(context, level, payload, r.view);
  } else {
    r.view = failure_view();  // a refused establish: the server's status says why
  }
  if (r.error != call_error::ok && !conn_.connected()) forget_contexts();
  return r;
}

call_result proxy::access_check(std::uint32_t target_uid, access_outcome& out) noexcept {
  call_result r;
  std::uint64_t context = 0;
  impersonation_level level{};
  r.error = prepare(context, level);
  if (r.error == call_error::ok) {
    r.error = conn_.access_check(context, target_uid, out);
  } else {
    out.view = failure_view();
  }
  r.view = out.view;
  if (r.error != call_error::ok && !conn_.connected()) forget_contexts();
  return r;
}

call_result proxy::forward(const next_hop& hop, std::span<const std::byte> payload,
                           forward_outcome& out) noexcept {
  call_result r;
  ++counters_.calls;
  std::uint64_t context = 0;
  impersonation_level level{};
  r.error = prepare(context, level);
  if (r.error == call_error::ok) {
    r.error = conn_.forward(context, hop, payload, out);
  } else {
    out = forward_outcome{};
    out.view = failure_view();
  }
  r.view = out.view;
  if (r.error != call_error::ok && !conn_.connected()) forget_contexts();
  return r;
}

}  // namespace cloak
