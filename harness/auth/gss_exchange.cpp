// The initiator's legs and the acceptor's leg, as every GSSAPI package runs them.
#include "gss_exchange.hpp"

namespace cloak::detail {

call_error initiate(const initiator& who, const leg_rules& rules, gss_context& ctx,
                    establish_legs& legs, gss_status& failed, std::string& detail) {
  gss_buffer_desc input{0, nullptr};
  bool have_input = false;
  for (int leg = 0;; ++leg) {
    gss_buffer output;
    gss_status s;
    s.major =
        gss_init_sec_context(&s.minor, who.cred, ctx.out(), who.target, who.mech, who.flags, 0,
                             GSS_C_NO_CHANNEL_BINDINGS, have_input ? &input : GSS_C_NO_BUFFER,
                             nullptr, output.out(), nullptr, nullptr);
    if (s.failed()) {
      failed = s;
      return call_error::authentication_failed;
    }
    bool complete = s.major == GSS_S_COMPLETE;
    if (output.size() == 0) {
      if (complete) return call_error::ok;
      detail = "gss_init_sec_context wants another token but produced none to send";
      return call_error::authentication_failed;
    }
    if (leg >= rules.max_legs) {
      detail = fmt::format("more than {} establish legs", rules.max_legs);
      return call_error::authentication_failed;
    }
    leg_reply reply;
    if (call_error err = legs.leg(output.bytes(), reply); err != call_error::ok) {
      detail = fmt::format("establish leg {} failed", leg + 1);
      return err;
    }
    if (complete) {
      if (reply.more) {
        detail = "the server asked for another leg after the client's context was complete";
        return call_error::authentication_failed;
      }
      return call_error::ok;
    }
    if ((rules.reply_must_continue && !reply.more) || reply.token.empty()) {
      detail = std::string(rules.missing_reply);
      return call_error::authentication_failed;
    }
    input = buffer_of(reply.token);
    have_input = true;
  }
}

accept_outcome accept_into(const acceptor& a, std::unique_ptr<gss_server_state> st,
                           std::span<const std::byte> token, token_buffer& reply) {
  accept_outcome out;
  gss_buffer_desc input = buffer_of(token);
  gss_buffer output;
  gss_name source;
  gss_cred delegated;
  gss_OID negotiated = GSS_C_NO_OID;
  gss_status s;
  s.major = gss_accept_sec_context(&s.minor, st->ctx.out(), a.cred, &input,
                                   GSS_C_NO_CHANNEL_BINDINGS, source.out(), &negotiated,
                                   output.out(), nullptr, nullptr, delegated.out());
  if (output.size()) reply.assign(output.bytes().begin(), output.bytes().end());
  if (delegated) st->delegated = std::move(delegated);
  if (s.failed()) {
    out.refusal = a.refusal ? a.refusal(s) : protocol::status::auth_failed;
    out.detail = gss_message(s, a.mech);
    return out;
  }
  if (s.major & GSS_S_CONTINUE_NEEDED) {
    out.result = accept_outcome::kind::more;
    out.state = std::move(st);
    return out;
  }
  st->form = a.form_of ? a.form_of(negotiated) : a.form;
  if (!display_name(source.get(), a.mech, st->name, out.detail)) return out;
  const identity* who = a.names->find(st->name);
  if (!who) {
    out.refusal = protocol::status::unknown_principal;
    out.detail = fmt::format("{} authenticated but maps to no identity", st->name);
    return out;
  }
  out.result = accept_outcome::kind::done;
  out.who = *who;
  out.state = std::move(st);
  return out;
}

}  // namespace cloak::detail
