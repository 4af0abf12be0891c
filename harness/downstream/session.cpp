// Server-side security contexts: what D knows about each connection, shared by the socket server,
// the in-process model and the fuzzer. Who the caller is comes from an authentication package only.
#include <fmt/format.h>
#include <sys/random.h>

#include <algorithm>
#include <cloak/downstream.hpp>
#include <cloak/inject.hpp>

namespace cloak {

using namespace protocol;

namespace {

std::uint64_t random_seed() noexcept {
  std::uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = 0x9E3779B97F4A7C15ull;
  return seed;
}

bool valid_protection(std::uint8_t p) noexcept {
  return p <= static_cast<std::uint8_t>(protection::privacy);
}

}  // namespace

void server_packages::add(server_package& package) {
  for (server_package*& p : packages_) {
    if (p->id() == package.id()) {
      p = &package;
      return;
    }
  }
  packages_.push_back(&package);
}

server_package* server_packages::find(std::uint8_t id) const noexcept {
  for (server_package* p : packages_) {
    if (static_cast<std::uint8_t>(p->id()) == id) return p;
  }
  return nullptr;
}

std::string server_packages::names() const {
  std::string out;
  for (server_package* p : packages_)
    out += (out.empty() ? "" : ", ") + std::string(to_string(p->id()));
  return out;
}

void append_error_frame(std::vector<std::byte>& out, std::uint32_t request_id, status s, bool fatal,
                        std::string_view text) {
  append_frame(out, request_id, error_reply{s, fatal, text});
}

downstream_session::downstream_session(access_checker& checker, const server_packages& packages,
                                       session_limits limits)
    : checker_(checker), packages_(packages), limits_(limits), ids_(random_seed()) {
  opened_.reserve(max_payload);
  sealed_.reserve(max_payload);
}

bool downstream_session::protect(const context_record& record, std::span<const std::byte> payload,
                                 std::span<const std::byte> mic, std::string_view what,
                                 std::span<const std::byte>& opened, status& refusal,
                                 std::string& why) {
  opened = payload;
  switch (record.per_call) {
    case protection::none:
      return true;
    case protection::integrity:
      if (!mic.empty() && record.package->verify(record.state.get(), payload, mic)) return true;
      refusal = status::bad_mic;
      why = fmt::format("{}: the MIC does not verify under this context", what);
      return false;
    case protection::privacy:
      if (record.package->unseal(record.state.get(), payload, opened_)) {
        opened = opened_;
        return true;
      }
      refusal = status::not_sealed;
      why = fmt::format(
          "{}: the payload is not a message sealed under this context (packet privacy)", what);
      return false;
  }
  return false;
}

bool downstream_session::seal_reply(const context_record& record,
                                    std::span<const std::byte>& payload) noexcept {
  if (record.per_call != protection::privacy) return true;
  if (!record.package->seal(record.state.get(), payload, sealed_)) return false;
  payload = sealed_;
  return true;
}

downstream_session::~downstream_session() = default;

std::uint64_t downstream_session::fresh_id() {
  std::uint64_t id = 0;
  do {
    id = ids_();
  } while (id == 0 || contexts_.contains(id) || pending_.contains(id));
  return id;
}

context_view downstream_session::describe(const context_record& record, std::uint64_t id) const {
  context_view v;
  v.context = id;
  v.level = static_cast<std::uint8_t>(record.level);
  v.anonymous = record.level == impersonation_level::anonymous;
  v.uid = v.anonymous ? anonymous_id : record.who.uid;
  v.gid = v.anonymous ? anonymous_id : record.who.gid;
  return v;
}

void downstream_session::accept_leg(std::uint32_t request_id, server_package& package,
                                    const peer_info& peer, std::span<const std::byte> token,
                                    pending_establish pending, std::vector<std::byte>& out) {
  reply_token_.clear();
  accept_outcome a = package.accept(peer, token, std::move(pending.state), reply_token_);
  switch (a.result) {
    case accept_outcome::kind::refused:
      append_error_frame(out, request_id, a.refusal, false,
                         a.detail.empty() ? std::string(to_string(a.refusal)) : a.detail);
      return;
    case accept_outcome::kind::more: {
      std::uint64_t id = fresh_id();
      pending.state = std::move(a.state);
      pending_.emplace(id, std::move(pending));
      established_reply r;
      r.view.context = id;
      r.view.level = static_cast<std::uint8_t>(pending_[id].level);
      r.more = true;
      r.protection = static_cast<std::uint8_t>(pending_[id].per_call);
      r.token = reply_token_;
      append_frame(out, request_id, r);
      return;
    }
    case accept_outcome::kind::done:
      break;
  }
  // The release rides on a successful establish only: a refused one leaves the old context usable.
  if (pending.release != 0) contexts_.erase(pending.release);
  context_record record{a.who, pending.level, pending.per_call, &package, std::move(a.state)};
  // At anonymous level D learns nothing: the identity is not even kept.
  if (record.level == impersonation_level::anonymous)
    record.who = identity::of(anonymous_id, anonymous_id);
  std::uint64_t id = fresh_id();
  established_reply r;
  r.view = describe(record, id);
  r.protection = static_cast<std::uint8_t>(record.per_call);
  r.token = reply_token_;
  contexts_.emplace(id, std::move(record));
  append_frame(out, request_id, r);
}

bool downstream_session::handle_frame(const header& h, std::span<const std::byte> body,
                                      const peer_info& peer, std::vector<std::byte>& out) {
  auto refuse = [&](status s, std::string_view why) {
    append_error_frame(out, h.request_id, s, false, why);
    return true;
  };
  switch (h.type) {
    case msg_type::establish: {
      establish_request m;
      if (!decode_body(body, m))
        return refuse(status::bad_body, "establish: body must be 16 bytes plus its token");
      if (!valid_level(m.level)) return refuse(status::bad_level, "establish: level must be 1..4");
      if (!valid_protection(m.protection))
        return refuse(status::bad_body, "establish: protection must be 0, 1 or 2");
      server_package* package = packages_.find(m.package);
      if (!package) {
        return refuse(status::unknown_package,
                      fmt::format("establish: package {} is not run here (this server runs: {})",
                                  m.package, packages_.names()));
      }
      if (m.release != 0 && !contexts_.contains(m.release))
        return refuse(status::unknown_context, "establish: unknown context to release");
      if (context_count() >= limits_.max_contexts + (m.release != 0 ? 1 : 0)) {
        return refuse(status::too_many_contexts, "establish: too many contexts on this connection");
      }
      pending_establish p{package, static_cast<impersonation_level>(m.level),
                          static_cast<protection>(m.protection), m.release, nullptr};
      // CLOAK_INJECT_PATH=accept: once per context (its first leg; a continue is the same context).
      inject_at(inject_path::accept);
      accept_leg(h.request_id, *package, peer, m.token, std::move(p), out);
      return true;
    }
    case msg_type::establish_continue: {
      continue_request m;
      if (!decode_body(body, m))
        return refuse(status::bad_body, "establish_continue: body must be 16 bytes plus its token");
      auto it = pending_.find(m.context);
      if (it == pending_.end())
        return refuse(status::unknown_context, "establish_continue: no such pending establish");
      pending_establish p = std::move(it->second);
      pending_.erase(it);
      if (p.release != 0 && !contexts_.contains(p.release)) p.release = 0;
      server_package& package = *p.package;
      accept_leg(h.request_id, package, peer, m.token, std::move(p), out);
      return true;
    }
    case msg_type::call: {
      call_request m;
      if (!decode_body(body, m))
        return refuse(status::bad_body, "call: body shorter than 16 bytes plus its MIC");
      // The reply echoes the payload behind a longer fixed part; it must still fit max_payload.
      if (m.payload.size() > max_payload - reply_fixed)
        return refuse(status::too_large, "call: payload too large to echo");
      call_reply r;
      if (m.context == 0) {  // per-message authentication: this message's kernel credentials
        if (!peer.kernel)
          return refuse(status::no_credentials,
                        "call: no kernel credentials on a per-message call");
        if (!valid_level(m.level)) return refuse(status::bad_level, "call: level must be 1..4");
        context_record record{*peer.kernel, static_cast<impersonation_level>(m.level),
                              protection::none, nullptr, nullptr};
        r.view = describe(record, 0);
      } else {
        auto it = contexts_.find(m.context);
        if (it == contexts_.end())
          return refuse(status::unknown_context, "call refused: unknown context");
        const context_record& record = it->second;
        std::span<const std::byte> opened;
        status refusal = status::ok;
        if (!protect(record, m.payload, m.mic, "call", opened, refusal, protect_detail_))
          return refuse(refusal, protect_detail_);
        r.view = describe(record, m.context);
        r.payload = opened;
        if (!seal_reply(record, r.payload))
          return refuse(status::internal, "call: cannot seal the reply");
        append_frame(out, h.request_id, r);
        return true;
      }
      r.payload = m.payload;
      append_frame(out, h.request_id, r);
      return true;
    }
    case msg_type::release: {
      release_request m;
      if (!decode_body(body, m)) return refuse(status::bad_body, "release: body must be 8 bytes");
      if (contexts_.erase(m.context) != 1 && pending_.erase(m.context) != 1) {
        return refuse(status::unknown_context, "release: unknown context");
      }
      append_frame(out, h.request_id, released_reply{status::ok});
      return true;
    }
    case msg_type::access_check: {
      access_check_request m;
      if (!decode_body(body, m))
        return refuse(status::bad_body, "access_check: body must be 16 bytes");
      auto it = contexts_.find(m.context);
      if (it == contexts_.end())
        return refuse(status::unknown_context, "access_check: unknown context");
      const context_record& record = it->second;
      context_view v = describe(record, m.context);
      access_result_reply r{status::ok, false, 0, v.uid, v.gid, v.level};
      switch (record.level) {
        case impersonation_level::anonymous:
          r.result = status::anonymous_only;
          break;
        case impersonation_level::identify:
          r.result = status::identify_only;
          break;
        case impersonation_level::impersonate:
        case impersonation_level::delegate:
          r.error_number = checker_.open_as(record.who, m.target_uid);
          r.granted = r.error_number == 0;
          break;
      }
      append_frame(out, h.request_id, r);
      return true;
    }
    case msg_type::forward_call: {
      forward_request m;
      if (!decode_body(body, m))
        return refuse(status::bad_body, "forward_call: body shorter than 16 bytes plus its MIC");
      if (!valid_level(m.level))
        return refuse(status::bad_level, "forward_call: level must be 1..4");
      if (m.cloaking > static_cast<std::uint8_t>(cloaking::dynamic)) {
        return refuse(status::bad_body,
                      "forward_call: cloaking must be 0 (none), 1 (static) or 2 (dynamic)");
      }
      if (m.payload.size() > max_payload - forwarded_fixed - max_error_text) {
        return refuse(status::too_large, "forward_call: payload too large to echo");
      }
      auto it = contexts_.find(m.context);
      if (it == contexts_.end())
        return refuse(status::unknown_context, "forward_call: unknown context");
      const context_record& record = it->second;
      std::span<const std::byte> opened;
      status refusal = status::ok;
      if (!protect(record, m.payload, m.mic, "forward_call", opened, refusal, protect_detail_))
        return refuse(refusal, protect_detail_);
      // Acting as the caller needs what access_check needs: an impersonate or delegate context.
      if (record.level == impersonation_level::anonymous) {
        return refuse(status::anonymous_only,
                      "forward_call: the server does not know an anonymous caller");
      }
      if (record.level == impersonation_level::identify) {
        return refuse(status::identify_only,
                      "forward_call: an identify-level context lets the server check, not act");
      }
      if (!forwarder_)
        return refuse(status::no_next_hop, "forward_call: this server has no next hop");
      forward_outcome outcome;
      forward_detail_.clear();
      forwarder_->forward(
          forward_handler::caller{m.context, record.who, record.level, record.state.get()},
          next_hop{static_cast<cloaking>(m.cloaking), static_cast<impersonation_level>(m.level)},
          opened, outcome, forward_detail_);
      forwarded_reply r;
      r.view = describe(record, m.context);
      r.next_error = static_cast<std::uint8_t>(outcome.next_error);
      r.next_level = static_cast<std::uint8_t>(outcome.next.level);
      r.next_anonymous = outcome.next.anonymous;
      r.next_contexts =
          static_cast<std::uint8_t>(std::min<std::uint32_t>(outcome.next_contexts, 255));
      r.next_status = outcome.next.server_status;
      r.next_uid = outcome.next.seen.uid;
      r.next_gid = outcome.next.seen.gid;
      r.detail = forward_detail_;
      r.payload = opened;
      if (!seal_reply(record, r.payload))
        return refuse(status::internal, "forward_call: cannot seal the reply");
      append_frame(out, h.request_id, r);
      return true;
    }
    default:
      return refuse(status::unknown_type, "unknown message type");
  }
}

model_downstream::model_downstream() : local_(make_local_server()) { packages_.add(*local_); }

model_downstream::~model_downstream() = default;

downstream_session& model_downstream::new_session() {
  sessions_.push_back(std::make_unique<downstream_session>(checker_, packages_));
  return *sessions_.back();
}

void model_downstream::drop_sessions() noexcept {
  sessions_.clear();
  ++restarts_;
}

int model_downstream::model_checker::open_as(const identity& caller,
                                             std::uint32_t target_uid) noexcept {
  return caller.uid == target_uid ? 0 : EACCES;
}

}  // namespace cloak
