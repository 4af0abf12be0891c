// Server-side security contexts: what D knows about each connection, shared by the socket server,
// the in-process model and the fuzzer.
#include <cloak/downstream.hpp>

#include <sys/random.h>

#include <algorithm>

namespace cloak {

using namespace protocol;

namespace {

std::uint64_t random_seed() noexcept {
  std::uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = 0x9E3779B97F4A7C15ull;
  return seed;
}

std::byte* grow(std::vector<std::byte>& out, std::size_t n) {
  std::size_t at = out.size();
  out.resize(at + n);
  return out.data() + at;
}

// Appends a header announcing `body` bytes and the first `fixed` of them, zeroed (resize zeroes them);
// a caller that passes fixed < body appends the rest itself, so an echoed payload is copied once.
std::byte* append_header(std::vector<std::byte>& out, msg_type type, std::uint32_t request_id,
                         std::size_t body, std::size_t fixed) {
  std::byte* p = grow(out, header_size + fixed);
  encode_header(header{magic, version, type, 0, request_id, static_cast<std::uint32_t>(body)}, p);
  return p + header_size;
}

std::byte* append_header(std::vector<std::byte>& out, msg_type type, std::uint32_t request_id,
                         std::size_t body) {
  return append_header(out, type, request_id, body, body);
}

void put_view(std::byte* body, const downstream_session::view& v) {
  put<std::uint16_t>(body, static_cast<std::uint16_t>(v.result));
  put<std::uint8_t>(body + 2, static_cast<std::uint8_t>(v.level));
  put<std::uint8_t>(body + 3, v.anonymous ? 1 : 0);
  put<std::uint64_t>(body + 8, v.context);
  put<std::uint32_t>(body + 16, v.seen.uid);
  put<std::uint32_t>(body + 20, v.seen.gid);
}

}  // namespace

void append_error_frame(std::vector<std::byte>& out, std::uint32_t request_id, status s, bool fatal,
                        std::string_view text) {
  text = text.substr(0, 256);
  std::byte* body = append_header(out, msg_type::error, request_id, error_fixed + text.size());
  put<std::uint16_t>(body, static_cast<std::uint16_t>(s));
  put<std::uint8_t>(body + 2, fatal ? 1 : 0);
  std::copy_n(reinterpret_cast<const std::byte*>(text.data()), text.size(), body + error_fixed);
}

downstream_session::downstream_session(access_checker& checker, session_limits limits)
    : checker_(checker), limits_(limits), ids_(random_seed()) {}

downstream_session::view downstream_session::describe(const context_record& record,
                                                      std::uint64_t id) const {
  view v;
  v.context = id;
  v.level = record.level;
  v.anonymous = record.level == impersonation_level::anonymous;
  v.seen = v.anonymous ? identity::of(anonymous_id, anonymous_id) : record.who;
  return v;
}

downstream_session::view downstream_session::establish(const identity* creds, std::uint8_t level,
                                                       std::uint64_t release) {
  view v;
  if (!creds) return v.result = status::no_credentials, v;
  if (!valid_level(level)) return v.result = status::bad_level, v;
  if (release != 0 && !contexts_.contains(release)) return v.result = status::unknown_context, v;
  if (release != 0) contexts_.erase(release);
  if (contexts_.size() >= limits_.max_contexts) return v.result = status::too_many_contexts, v;
  std::uint64_t id = 0;
  do {
    id = ids_();
  } while (id == 0 || contexts_.contains(id));
  context_record record{*creds, static_cast<impersonation_level>(level)};
  // At anonymous level D learns nothing: the identity is not even kept.
  if (record.level == impersonation_level::anonymous) {
    record.who = identity::of(anonymous_id, anonymous_id);
  }
  contexts_.emplace(id, record);
  return describe(record, id);
}

downstream_session::view downstream_session::call(const identity* creds, std::uint64_t context,
                                                  std::uint8_t level) const {
  view v;
  if (context == 0) {  // per-message authentication: this message's kernel credentials
    if (!creds) return v.result = status::no_credentials, v;
    if (!valid_level(level)) return v.result = status::bad_level, v;
    context_record record{*creds, static_cast<impersonation_level>(level)};
    return describe(record, 0);
  }
  auto it = contexts_.find(context);
  if (it == contexts_.end()) return v.result = status::unknown_context, v;
  return describe(it->second, context);
}

status downstream_session::release(std::uint64_t context) {
  return contexts_.erase(context) == 1 ? status::ok : status::unknown_context;
}

downstream_session::access_view downstream_session::access_check(std::uint64_t context,
                                                                 std::uint32_t target_uid) {
  access_view a;
  auto it = contexts_.find(context);
  if (it == contexts_.end()) return a.who.result = status::unknown_context, a;
  a.who = describe(it->second, context);
  switch (it->second.level) {
    case impersonation_level::anonymous:
      a.who.result = status::anonymous_only;
      return a;
    case impersonation_level::identify:
      a.who.result = status::identify_only;
      return a;
    case impersonation_level::impersonate:
    case impersonation_level::delegate:
      break;
  }
  a.error_number = checker_.open_as(it->second.who, target_uid);
  a.granted = a.error_number == 0;
  return a;
}

bool downstream_session::handle_frame(const header& h, std::span<const std::byte> body,
                                      const identity* creds, std::vector<std::byte>& out) {
  auto refuse = [&](status s, std::string_view why) {
    append_error_frame(out, h.request_id, s, false, why);
    return true;
  };
  const std::byte* b = body.data();
  switch (h.type) {
    case msg_type::establish: {
      if (body.size() != establish_body) return refuse(status::bad_body, "establish: body must be 16 bytes");
      view v = establish(creds, get<std::uint8_t>(b), get<std::uint64_t>(b + 8));
      if (v.result != status::ok) return refuse(v.result, "establish refused");
      put_view(append_header(out, msg_type::established, h.request_id, established_body), v);
      return true;
    }
    case msg_type::call: {
      if (body.size() < call_fixed) return refuse(status::bad_body, "call: body shorter than 16 bytes");
      // The reply echoes the payload behind a longer fixed part; it must still fit max_payload.
      if (body.size() - call_fixed > max_payload - reply_fixed) return refuse(status::too_large, "call: payload too large to echo");
      view v = call(creds, get<std::uint64_t>(b), get<std::uint8_t>(b + 8));
      if (v.result != status::ok) return refuse(v.result, "call refused");
      std::size_t payload = body.size() - call_fixed;
      put_view(append_header(out, msg_type::reply, h.request_id, reply_fixed + payload, reply_fixed), v);
      out.insert(out.end(), b + call_fixed, b + call_fixed + payload);
      return true;
    }
    case msg_type::release: {
      if (body.size() != release_body) return refuse(status::bad_body, "release: body must be 8 bytes");
      status s = release(get<std::uint64_t>(b));
      if (s != status::ok) return refuse(s, "release: unknown context");
      put<std::uint16_t>(append_header(out, msg_type::released, h.request_id, released_body),
                         static_cast<std::uint16_t>(s));
      return true;
    }
    case msg_type::access_check: {
      if (body.size() != access_check_body) return refuse(status::bad_body, "access_check: body must be 16 bytes");
      access_view a = access_check(get<std::uint64_t>(b), get<std::uint32_t>(b + 8));
      if (a.who.result == status::unknown_context) return refuse(a.who.result, "access_check: unknown context");
      std::byte* r = append_header(out, msg_type::access_result, h.request_id, access_result_body);
      put<std::uint16_t>(r, static_cast<std::uint16_t>(a.who.result));
      put<std::uint8_t>(r + 2, a.granted ? 1 : 0);
      put<std::int32_t>(r + 4, a.error_number);
      put<std::uint32_t>(r + 8, a.who.seen.uid);
      put<std::uint32_t>(r + 12, a.who.seen.gid);
      put<std::uint8_t>(r + 16, static_cast<std::uint8_t>(a.who.level));
      return true;
    }
    default:
      return refuse(status::unknown_type, "unknown message type");
  }
}

model_downstream::model_downstream() = default;

downstream_session& model_downstream::new_session() {
  sessions_.push_back(std::make_unique<downstream_session>(checker_));
  return *sessions_.back();
}

void model_downstream::drop_sessions() noexcept {
  sessions_.clear();
  ++restarts_;
}

int model_downstream::model_checker::open_as(const identity& caller, std::uint32_t target_uid) noexcept {
  return caller.uid == target_uid ? 0 : EACCES;
}

}  // namespace cloak
