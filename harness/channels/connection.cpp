// The client connection: a channel for the frames, the codec for their bytes, a package for who is
// presented. It keeps each context's package state (a GSS context, say) beside the server's id.
#include <algorithm>
#include <cloak/connection.hpp>
#include <cloak/inject.hpp>
#include <utility>

namespace cloak {

using namespace protocol;

namespace {

void copy_view(const context_view& v, downstream_view& out) noexcept {
  out.server_status = v.result;
  out.level = static_cast<impersonation_level>(v.level);
  out.anonymous = v.anonymous;
  out.context = v.context;
  // uid and gid only, set in place: building a whole identity (32 groups) costs more than the rest.
  out.seen.uid = v.uid;
  out.seen.gid = v.gid;
  out.seen.group_count = 0;
}

class channel_connection final : public connection {
 public:
  channel_connection(std::unique_ptr<channel> ch, std::unique_ptr<client_package> package)
      : channel_(std::move(ch)), package_(std::move(package)) {
    mic_.reserve(max_mic);
    sealed_.reserve(max_payload);
    opened_.reserve(max_payload);
  }

  call_error connect() noexcept override {
    states_.clear();  // the server forgot every context with the old connection
    return channel_->connect();
  }
  bool connected() const noexcept override { return channel_->connected(); }
  void disconnect() noexcept override {
    channel_->disconnect();
    states_.clear();
  }
  std::uint64_t epoch() const noexcept override { return channel_->epoch(); }

  call_error establish(const presentation& p, std::uint64_t release,
                       downstream_view& out) noexcept override {
    report_ = {};
    if (package_->needs_kernel_credentials() && !channel_->carries_kernel_credentials()) {
      report_.detail =
          "the local package needs kernel peer credentials, which this channel cannot carry";
      return call_error::package_unavailable;
    }
    legs legs(*this, p.level, release);
    // CLOAK_INJECT_PATH=establish: once per new context, before the package's first leg, whatever
    // the package.
    inject_at(inject_path::establish);
    establish_outcome outcome;
    try {
      outcome = package_->establish(p, legs);
    } catch (...) {
      outcome.error = call_error::authentication_failed;
      outcome.detail = "the authentication package failed unexpectedly";
    }
    report_.switched_identity = outcome.switched_identity;
    // The package's account first, then what the server said (its error frame's text), if anything.
    if (!outcome.detail.empty()) {
      report_.detail = report_.detail.empty() ? std::move(outcome.detail)
                                              : outcome.detail + ": " + report_.detail;
    }
    out = legs.last;
    if (outcome.error == call_error::ok && !legs.done) outcome.error = call_error::protocol;
    if (outcome.error != call_error::ok) {
      // The server may hold a context the client could not complete (a bad AP-REP): let it go.
      if (legs.done && channel_->connected()) this->release(legs.last.context);
      return outcome.error;
    }
    if (release != 0) forget_state(release);
    try {
      states_.push_back({out.context, std::move(outcome.state)});
    } catch (...) {
      return call_error::authentication_failed;
    }
    ++totals_.contexts;
    totals_.legs += report_.legs;
    totals_.round_trips += report_.round_trips;
    totals_.token_bytes += report_.token_bytes;
    return call_error::ok;
  }

  call_error call(std::uint64_t context, impersonation_level level,
                  std::span<const std::byte> payload, downstream_view& out) noexcept override {
    // The reply echoes the payload behind a longer fixed part; both frames must fit max_payload.
    if (payload.size() > max_payload - reply_fixed) return call_error::payload_too_large;
    call_request m{context, static_cast<std::uint8_t>(level), {}, payload};
    protection per_call = context != 0 ? package_->per_call() : protection::none;
    if (auto e = protect(context, per_call, "a call", reply_fixed, m.payload, m.mic);
        e != call_error::ok) {
      return e;
    }
    std::span<const std::byte> body;
    if (auto e = exchange(m, msg_type::reply, body, out); e != call_error::ok) return e;
    call_reply r;
    if (!decode_body(body, r)) return fail(call_error::protocol);
    if (auto e = open_reply(context, per_call, r.payload, payload.size()); e != call_error::ok)
      return e;
    copy_view(r.view, out);
    return call_error::ok;
  }

  call_error release(std::uint64_t context) noexcept override {
    forget_state(context);
    std::span<const std::byte> body;
    downstream_view ignored;
    if (auto e = exchange(release_request{context}, msg_type::released, body, ignored);
        e != call_error::ok)
      return e;
    released_reply r;
    return decode_body(body, r) ? call_error::ok : fail(call_error::protocol);
  }

  call_error access_check(std::uint64_t context, std::uint32_t target_uid,
                          access_outcome& out) noexcept override {
    std::span<const std::byte> body;
    if (auto e = exchange(access_check_request{context, target_uid}, msg_type::access_result, body,
                          out.view);
        e != call_error::ok) {
      return e;
    }
    access_result_reply r;
    if (!decode_body(body, r)) return fail(call_error::protocol);
    out.view.server_status = r.result;
    out.granted = r.granted;
    out.error_number = r.error_number;
    out.view.seen = identity::of(r.uid, r.gid);
    out.view.level = static_cast<impersonation_level>(r.level);
    out.view.context = context;
    out.view.anonymous = out.view.level == impersonation_level::anonymous;
    return call_error::ok;
  }

  call_error forward(std::uint64_t context, const next_hop& hop, std::span<const std::byte> payload,
                     forward_outcome& out) noexcept override {
    out = forward_outcome{};
    if (payload.size() > max_payload - forwarded_fixed - max_error_text)
      return call_error::payload_too_large;
    forward_request m{context,
                      static_cast<std::uint8_t>(hop.level),
                      static_cast<std::uint8_t>(hop.mode),
                      {},
                      payload};
    protection per_call = context != 0 ? package_->per_call() : protection::none;
    if (auto e = protect(context, per_call, "a forward_call", forwarded_fixed + max_error_text,
                         m.payload, m.mic);
        e != call_error::ok) {
      return e;
    }
    std::span<const std::byte> body;
    if (auto e = exchange(m, msg_type::forwarded, body, out.view); e != call_error::ok) return e;
    forwarded_reply r;
    if (!decode_body(body, r) || r.next_error > static_cast<std::uint8_t>(call_error::clock_skew)) {
      return fail(call_error::protocol);
    }
    if (auto e = open_reply(context, per_call, r.payload, payload.size()); e != call_error::ok)
      return e;
    copy_view(r.view, out.view);
    out.next_error = static_cast<call_error>(r.next_error);
    out.next.server_status = r.next_status;
    out.next.level = static_cast<impersonation_level>(r.next_level);
    out.next.anonymous = r.next_anonymous;
    out.next.seen.uid = r.next_uid;
    out.next.seen.gid = r.next_gid;
    out.next.seen.group_count = 0;
    out.next_contexts = r.next_contexts;
    out.detail = r.detail;
    return call_error::ok;
  }

 private:
  // The package's view of the wire during one establish: the first leg is an establish frame, every
  // later one a continue naming the server's pending establish.
  class legs final : public establish_legs {
   public:
    legs(channel_connection& c, impersonation_level level, std::uint64_t release)
        : c_(c), level_(level), release_(release) {}
    call_error leg(std::span<const std::byte> token, leg_reply& out) noexcept override {
      if (token.size() > max_token) return call_error::payload_too_large;
      count(token);
      ++c_.report_.round_trips;
      std::span<const std::byte> body;
      call_error e;
      if (!started_) {
        started_ = true;
        establish_request m{static_cast<std::uint8_t>(level_),
                            static_cast<std::uint8_t>(c_.package_->id()),
                            static_cast<std::uint8_t>(c_.package_->per_call()), release_, token};
        e = c_.exchange(m, msg_type::established, body, last);
      } else {
        if (done) return call_error::protocol;  // the server already finished
        e = c_.exchange(continue_request{pending_, token}, msg_type::established, body, last);
      }
      out.view = last;
      if (e != call_error::ok) return e;
      established_reply r;
      if (!decode_body(body, r)) return c_.fail(call_error::protocol);
      copy_view(r.view, last);
      out.view = last;
      out.more = r.more;
      out.token = r.token;
      count(r.token);
      if (r.more) {
        pending_ = r.view.context;
      } else {
        done = true;
      }
      return call_error::ok;
    }
    downstream_view last;
    bool done = false;

   private:
    void count(std::span<const std::byte> token) noexcept {
      if (token.empty()) return;
      ++c_.report_.legs;
      c_.report_.token_bytes += token.size();
    }

    channel_connection& c_;
    impersonation_level level_;
    std::uint64_t release_;
    bool started_ = false;
    std::uint64_t pending_ = 0;
  };

  struct context_state {
    std::uint64_t id = 0;
    std::unique_ptr<client_context_state> state;
  };

  // The per-call protection of a request payload: its MIC into `mic` (integrity), or `payload`
  // sealed and replaced by the sealed message (privacy), which must leave room for `fixed`.
  call_error protect(std::uint64_t context, protection per_call, std::string_view what,
                     std::size_t fixed, std::span<const std::byte>& payload,
                     std::span<const std::byte>& mic) noexcept {
    switch (per_call) {
      case protection::none:
        return call_error::ok;
      case protection::integrity:
        if (!package_->sign(state_of(context), payload, mic_) || mic_.size() > max_mic) {
          report_.detail = "cannot compute the MIC of ";
          report_.detail += what;
          return call_error::authentication_failed;
        }
        mic = mic_;
        return call_error::ok;
      case protection::privacy:
        if (!package_->seal(state_of(context), payload, sealed_)) {
          report_.detail = "cannot seal ";
          report_.detail += what;
          return call_error::authentication_failed;
        }
        if (sealed_.size() > max_payload - fixed) return call_error::payload_too_large;
        payload = sealed_;
        return call_error::ok;
    }
    return call_error::protocol;
  }

  // The reply's echo: under privacy a message sealed by the server, opened here. Either way it must
  // be as long as what was sent.
  call_error open_reply(std::uint64_t context, protection per_call,
                        std::span<const std::byte> echoed, std::size_t sent) noexcept {
    if (per_call == protection::privacy) {
      if (!package_->unseal(state_of(context), echoed, opened_)) {
        report_.detail = "the reply is not a message sealed under this context";
        return fail(call_error::protocol);
      }
      echoed = opened_;
    }
    return echoed.size() == sent ? call_error::ok : fail(call_error::protocol);
  }

  client_context_state* state_of(std::uint64_t id) noexcept {
    // Most calls run under the newest context.
    for (auto it = states_.rbegin(); it != states_.rend(); ++it) {
      if (it->id == id) return it->state.get();
    }
    return nullptr;
  }

  void forget_state(std::uint64_t id) noexcept {
    auto it = std::find_if(states_.begin(), states_.end(),
                           [&](const context_state& s) { return s.id == id; });
    if (it != states_.end()) states_.erase(it);
  }

  call_error fail(call_error e) noexcept {
    disconnect();  // a connection in an unknown state is never reused
    return e;
  }

  // Encodes `m`, exchanges it, and checks the reply frame: its request id, and either the expected
  // type (body returned) or an error frame (refused, with the server's status in `view`).
  template <class M>
  call_error exchange(const M& m, msg_type expected, std::span<const std::byte>& body,
                      downstream_view& view) noexcept {
    if (!channel_->connected()) return call_error::downstream_unavailable;
    std::uint32_t id = ++request_id_;
    std::size_t size = encode_frame(id, m, channel_->request_buffer());
    if (size == 0) return call_error::payload_too_large;
    std::span<const std::byte> reply;
    if (auto e = channel_->exchange(size, reply); e != call_error::ok) {
      if (!channel_->connected()) states_.clear();
      return e;
    }
    header h;
    if (decode_header(reply, h) != parse_error::ok || reply.size() != header_size + h.length) {
      return fail(call_error::protocol);
    }
    // A connection-level refusal (busy) answers no particular request: its request id is 0.
    bool connection_refusal = h.type == msg_type::error && h.request_id == 0;
    if (h.request_id != id && !connection_refusal) return fail(call_error::protocol);
    body = reply.subspan(header_size);
    if (h.type == msg_type::error) {
      error_reply r;
      if (!decode_body(body, r)) return fail(call_error::protocol);
      view.server_status = r.result;
      report_.detail.assign(r.text.begin(), r.text.end());
      if (r.fatal) disconnect();  // fatal: the server closes
      return call_error::refused;
    }
    if (h.type != expected) return fail(call_error::protocol);
    return call_error::ok;
  }

  std::unique_ptr<channel> channel_;
  std::unique_ptr<client_package> package_;
  std::vector<context_state> states_;
  token_buffer mic_;
  token_buffer sealed_;  // prot:privacy: the sealed request payload
  token_buffer opened_;  // and the opened reply payload
  std::uint32_t request_id_ = 0;
};

}  // namespace

call_error connection::forward(std::uint64_t, const next_hop&, std::span<const std::byte>,
                               forward_outcome& out) noexcept {
  out = forward_outcome{};
  out.view.server_status = status::no_next_hop;
  return call_error::refused;
}

std::unique_ptr<connection> make_connection(std::unique_ptr<channel> channel,
                                            std::unique_ptr<client_package> package) {
  return std::make_unique<channel_connection>(std::move(channel), std::move(package));
}

}  // namespace cloak
