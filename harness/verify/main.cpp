// cloak-verify: runs every scenario of docs/design.md §1 against a real downstream and shows what
// it saw, with the local package (kernel credentials), kerberos (a realm it starts itself) or ntlm
// (a private NTLM domain it makes itself).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cloak/backend.hpp>
#include <cloak/downstream.hpp>
#include <cloak/kerberos.hpp>
#include <cloak/ntlm.hpp>
#include <cloak/proxy.hpp>
#include <cloak/realm.hpp>
#include <cloak/transport.hpp>
#include <csignal>
#include <cstring>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "hosts.hpp"

namespace {

using namespace cloak;
using json = nlohmann::json;

json to_json(const identity& who) {
  if (who.uid == protocol::anonymous_id) return json{{"anonymous", true}};
  return json{{"uid", who.uid}, {"gid", who.gid}};
}

// The world a scenario runs in: one backend, a way to open fresh connections, the fake clients.
struct world {
  identity_backend& backend;
  std::function<std::unique_ptr<transport>()> connect;
  client_range clients;
  std::string auth = "local";
  // kerberos only: the realm, every credential, the downstream, and a connection whose client
  // package is wrapped (to capture or tamper with what goes on the wire).
  realm* kdc = nullptr;
  kerberos_credentials* credentials = nullptr;
  downstream_process* server = nullptr;
  // ntlm only: the domain and every client's credentials.
  ntlm_domain* domain = nullptr;
  ntlm_credentials* ntlm = nullptr;
  token client(std::uint32_t i,
               impersonation_level level = impersonation_level::impersonate) const {
    return make_token(clients.client(i), level);
  }
  identity process() const { return backend.process_identity(); }
};

struct scenario_record {
  std::string name;
  std::string cloaking;
  json steps = json::array();
  json expected;
  json seen;
  std::uint64_t contexts = 0;
  bool ok = true;
};

// Records steps; each call step is checked against what DESIGN §1 says D must see.
class recorder {
 public:
  recorder(world& w, scenario_record& r) : w_(w), r_(r) {}

  void note(const std::string& action) {
    r_.steps.push_back(
        {{"action", action}, {"thread", to_json(w_.backend.read_thread_identity())}});
  }

  void expect_call(proxy& p, const std::string& action, const identity& expected) {
    static const std::byte payload[64]{};
    call_result res = p.call(payload);
    json seen =
        res.ok() ? to_json(res.view.seen) : json{{"error", std::string(to_string(res.error))}};
    bool ok = res.ok() && res.view.seen.same_principal(expected) && !res.view.anonymous;
    finish(action, to_json(expected), seen, ok);
  }

  void expect_anonymous(proxy& p, const std::string& action) {
    static const std::byte payload[64]{};
    call_result res = p.call(payload);
    json seen =
        res.ok() ? to_json(res.view.seen) : json{{"error", std::string(to_string(res.error))}};
    finish(action, json{{"anonymous", true}}, seen, res.ok() && res.view.anonymous);
  }

  void expect_error(proxy& p, const std::string& action, call_error expected,
                    const transport* t = nullptr) {
    static const std::byte payload[64]{};
    call_result res = p.call(payload);
    json seen =
        res.ok() ? to_json(res.view.seen) : json{{"error", std::string(to_string(res.error))}};
    if (!res.ok() && t && !t->last_establish().detail.empty())
      seen["detail"] = t->last_establish().detail;
    finish(action, json{{"error", std::string(to_string(expected))}}, seen, res.error == expected);
  }

  // The call is refused by D with status `why` (what its authentication package decided).
  void expect_call_refused(proxy& p, const std::string& action, protocol::status why,
                           const transport& t) {
    static const std::byte payload[64]{};
    call_result res = p.call(payload);
    json seen =
        res.ok() ? to_json(res.view.seen) : json{{"error", std::string(to_string(res.error))}};
    if (res.error == call_error::refused)
      seen = {{"refused", std::string(protocol::to_string(res.view.server_status))}};
    if (!t.last_establish().detail.empty()) seen["detail"] = t.last_establish().detail;
    finish(action, json{{"refused", std::string(protocol::to_string(why))}}, seen,
           res.error == call_error::refused && res.view.server_status == why);
  }

  // A raw call on transport `t` under `context`, which D must refuse with `why`.
  void expect_transport_refusal(transport& t, std::uint64_t context, const std::string& action,
                                protocol::status why) {
    static const std::byte payload[64]{};
    downstream_view v;
    call_error e = t.call(context, impersonation_level::impersonate, payload, v);
    json seen = e == call_error::ok ? to_json(v.seen)
                : e == call_error::refused
                    ? json{{"refused", std::string(protocol::to_string(v.server_status))}}
                    : json{{"error", std::string(to_string(e))}};
    finish(action, json{{"refused", std::string(protocol::to_string(why))}}, seen,
           e == call_error::refused && v.server_status == why);
  }

  void expect_access(proxy& p, const std::string& action, std::uint32_t target, bool granted) {
    access_outcome out;
    call_result res = p.access_check(target, out);
    json seen;
    bool ok = false;
    if (!res.ok()) {
      seen = {{"error", std::string(to_string(res.error))}};
    } else if (out.view.server_status != protocol::status::ok) {
      seen = {{"refused", std::string(protocol::to_string(out.view.server_status))}};
    } else {
      seen = to_json(out.view.seen);
      seen["access"] = out.granted ? "granted" : "denied";
      if (!out.granted) seen["errno"] = std::strerror(out.error_number);
      ok = out.granted == granted;
    }
    finish(action, json{{"access", granted ? "granted" : "denied"}, {"target_uid", target}}, seen,
           ok);
  }

  void expect_refusal(proxy& p, const std::string& action, std::uint32_t target,
                      protocol::status why) {
    access_outcome out;
    call_result res = p.access_check(target, out);
    json seen = !res.ok()
                    ? json{{"error", std::string(to_string(res.error))}}
                    : json{{"refused", std::string(protocol::to_string(out.view.server_status))}};
    finish(action, json{{"refused", std::string(protocol::to_string(why))}}, seen,
           res.ok() && out.view.server_status == why);
  }

  void expect_invalid_blanket(proxy& p, const std::string& action, const blanket& b) {
    json seen;
    bool ok = false;
    try {
      p.set_blanket(b);
      seen = {{"accepted", true}};
    } catch (const std::invalid_argument& e) {
      seen = {{"error", "invalid argument"}, {"message", e.what()}};
      ok = true;
    }
    finish(action, json{{"error", "invalid argument"}}, seen, ok);
  }

 private:
  void finish(const std::string& action, json expected, json seen, bool ok) {
    r_.steps.push_back({{"action", action},
                        {"thread", to_json(w_.backend.read_thread_identity())},
                        {"expected", expected},
                        {"seen", seen},
                        {"ok", ok}});
    r_.expected = std::move(expected);
    r_.seen = std::move(seen);
    r_.ok = r_.ok && ok;
  }
  world& w_;
  scenario_record& r_;
};

struct scenario {
  using body = std::function<void(world&, recorder&, scenario_record&)>;
  scenario(std::string n, std::string c, body r, std::string only = {})
      : name(std::move(n)), cloaking(std::move(c)), run(std::move(r)), only_auth(std::move(only)) {}
  std::string name;
  std::string cloaking;
  body run;
  std::string only_auth;  // "" for every package, else the one package it is about
};

blanket blanket_of(cloaking mode, impersonation_level level = impersonation_level::impersonate,
                   std::optional<identity> explicit_identity = std::nullopt) {
  blanket b;
  b.mode = mode;
  b.level = level;
  b.explicit_identity = explicit_identity;
  return b;
}

// ---- kerberos: what the ticket, the replay cache and the KDC must refuse
// -------------------------

// Wraps a client package to see or change what goes on the wire: every establish token of the last
// establish is recorded (the first: kerberos's AP-REQ, ntlm's NEGOTIATE), and the one at
// `alter_leg` (0: the first) may be altered; the MIC of the next call may be spoiled.
class tap_package final : public client_package {
 public:
  explicit tap_package(std::unique_ptr<client_package> inner) : inner_(std::move(inner)) {}
  std::function<void(std::vector<std::byte>&)> alter_first_token;  // applied to leg `alter_leg`
  std::size_t alter_leg = 0;
  std::vector<std::byte> first_token;
  std::vector<std::vector<std::byte>> tokens;
  bool spoil_next_mic = false;

  package_id id() const noexcept override { return inner_->id(); }
  bool needs_kernel_credentials() const noexcept override {
    return inner_->needs_kernel_credentials();
  }
  protection per_call() const noexcept override { return inner_->per_call(); }
  establish_outcome establish(const presentation& p, establish_legs& legs) noexcept override {
    tokens.clear();
    tap_legs tapped(*this, legs);
    return inner_->establish(p, tapped);
  }
  bool sign(client_context_state* state, std::span<const std::byte> message,
            token_buffer& mic) noexcept override {
    bool ok = inner_->sign(state, message, mic);
    if (ok && std::exchange(spoil_next_mic, false) && !mic.empty())
      mic[mic.size() / 2] ^= std::byte{0x5a};
    return ok;
  }

 private:
  class tap_legs final : public establish_legs {
   public:
    tap_legs(tap_package& tap, establish_legs& inner) : tap_(tap), inner_(inner) {}
    call_error leg(std::span<const std::byte> token, leg_reply& out) noexcept override {
      std::size_t index = next_++;
      try {
        tap_.tokens.emplace_back(token.begin(), token.end());
        if (index == 0) tap_.first_token.assign(token.begin(), token.end());
        if (index == tap_.alter_leg && tap_.alter_first_token) {
          altered_.assign(token.begin(), token.end());
          tap_.alter_first_token(altered_);
          return inner_.leg(altered_, out);
        }
      } catch (...) {
        return call_error::protocol;
      }
      return inner_.leg(token, out);
    }

   private:
    tap_package& tap_;
    establish_legs& inner_;
    std::size_t next_ = 0;
    std::vector<std::byte> altered_;
  };
  std::unique_ptr<client_package> inner_;
};

// Sends recorded establish tokens as its own legs, whatever the server answers: what an attacker
// who copied them off the wire could do (kerberos: the AP-REQ; ntlm: NEGOTIATE, then the
// AUTHENTICATE that answered another connection's CHALLENGE).
class replay_package final : public client_package {
 public:
  explicit replay_package(std::vector<std::byte> token, package_id id = package_id::kerberos)
      : tokens_{std::move(token)}, id_(id) {}
  replay_package(std::vector<std::vector<std::byte>> tokens, package_id id)
      : tokens_(std::move(tokens)), id_(id) {}
  package_id id() const noexcept override { return id_; }
  bool needs_kernel_credentials() const noexcept override { return false; }
  establish_outcome establish(const presentation&, establish_legs& legs) noexcept override {
    establish_outcome out;
    for (const auto& token : tokens_) {
      leg_reply reply;
      out.error = legs.leg(token, reply);
      if (out.error != call_error::ok || !reply.more) break;
    }
    return out;
  }

 private:
  std::vector<std::vector<std::byte>> tokens_;
  package_id id_;
};

std::unique_ptr<transport> kerberos_connection(world& w, std::unique_ptr<client_package> package) {
  return make_connection(make_uds_channel({w.server->socket_path()}), std::move(package));
}

void add_kerberos_scenarios(std::vector<scenario>& s) {
  s.push_back({"kerberos/identity_without_a_principal_fails_with_no_credentials", "dynamic",
               [](world& w, recorder& r, scenario_record&) {
                 auto t = w.connect();
                 proxy p(w.backend, *t);
                 p.set_blanket(blanket_of(cloaking::dynamic));
                 // The uid just past the fake clients: no principal maps to it (and no account owns
                 // it).
                 std::uint32_t stranger = w.clients.first_uid + w.clients.count;
                 check_client_range(client_range{stranger, stranger, 1});
                 impersonation as_stranger(w.backend, make_token(identity::of(stranger, stranger)));
                 r.note(fmt::format("impersonate uid {} (no principal)", stranger));
                 r.expect_error(p, "call", call_error::no_credentials, t.get());
               },
               "kerberos"});
  s.push_back({"kerberos/context_from_another_connection_is_rejected", "dynamic",
               [](world& w, recorder& r, scenario_record& rec) {
                 auto a = w.connect();
                 auto b = w.connect();
                 // Both connect as P: the socket's directory admits only P.
                 if (b->connect() != call_error::ok)
                   throw std::runtime_error("cannot open connection B");
                 proxy p(w.backend, *a);
                 p.set_blanket(blanket_of(cloaking::dynamic));
                 impersonation as_c1(w.backend, w.client(0));
                 r.note("impersonate C1; call on connection A");
                 static const std::byte payload[64]{};
                 call_result first = p.call(payload);
                 rec.contexts = p.counters().contexts_established;
                 if (!first.ok())
                   throw std::runtime_error(
                       fmt::format("the call on connection A failed: {}", to_string(first.error)));
                 r.expect_transport_refusal(*b, first.view.context,
                                            "call on connection B under A's context",
                                            protocol::status::unknown_context);
               },
               "kerberos"});
  s.push_back(
      {"kerberos/ap_req_replayed_on_a_second_connection_is_rejected", "dynamic",
       [](world& w, recorder& r, scenario_record& rec) {
         auto tap = std::make_unique<tap_package>(make_kerberos_client(*w.credentials));
         tap_package& tapped = *tap;
         auto a = kerberos_connection(w, std::move(tap));
         proxy p(w.backend, *a);
         p.set_blanket(blanket_of(cloaking::dynamic));
         impersonation as_c1(w.backend, w.client(0));
         r.note("impersonate C1; establish on connection A (its AP-REQ recorded)");
         r.expect_call(p, "call", w.clients.client(0));
         rec.contexts = p.counters().contexts_established;
         r.note(fmt::format("recorded an AP-REQ of {} bytes", tapped.first_token.size()));
         auto b = kerberos_connection(w, std::make_unique<replay_package>(tapped.first_token));
         proxy replayed(w.backend, *b);
         r.expect_call_refused(replayed, "the same AP-REQ on connection B (replay cache on)",
                               protocol::status::auth_failed, *b);
       },
       "kerberos"});
  s.push_back({"kerberos/tampered_ap_req_is_rejected", "dynamic",
               [](world& w, recorder& r, scenario_record&) {
                 auto tap = std::make_unique<tap_package>(make_kerberos_client(*w.credentials));
                 tap->alter_first_token = [](std::vector<std::byte>& token) {
                   if (!token.empty())
                     token[token.size() - 8] ^= std::byte{0x01};  // inside the authenticator
                 };
                 auto t = kerberos_connection(w, std::move(tap));
                 proxy p(w.backend, *t);
                 p.set_blanket(blanket_of(cloaking::dynamic));
                 impersonation as_c1(w.backend, w.client(0));
                 r.note("impersonate C1; one bit of the AP-REQ flipped");
                 r.expect_call_refused(p, "call", protocol::status::auth_failed, *t);
               },
               "kerberos"});
  s.push_back({"kerberos/tampered_mic_is_rejected", "dynamic",
               [](world& w, recorder& r, scenario_record& rec) {
                 kerberos_client_options o;
                 o.per_call = protection::integrity;
                 auto tap = std::make_unique<tap_package>(make_kerberos_client(*w.credentials, o));
                 tap_package& tapped = *tap;
                 auto t = kerberos_connection(w, std::move(tap));
                 proxy p(w.backend, *t);
                 p.set_blanket(blanket_of(cloaking::dynamic));
                 impersonation as_c1(w.backend, w.client(0));
                 r.note("impersonate C1; prot:integrity");
                 r.expect_call(p, "call with a good MIC", w.clients.client(0));
                 tapped.spoil_next_mic = true;
                 r.expect_call_refused(p, "call with a spoiled MIC", protocol::status::bad_mic, *t);
                 r.expect_call(p, "the next call, good MIC again", w.clients.client(0));
                 rec.contexts = p.counters().contexts_established;
               },
               "kerberos"});
  s.push_back(
      {"kerberos/kdc_down_gives_a_bounded_named_error", "dynamic",
       [](world& w, recorder& r, scenario_record&) {
         kerberos_client_options o;
         o.tickets = ticket_state::cold;  // every new context asks the KDC for a service ticket
         o.kdc_timeout = std::chrono::milliseconds(2000);
         auto t = kerberos_connection(w, make_kerberos_client(*w.credentials, o));
         proxy p(w.backend, *t);
         p.set_blanket(blanket_of(cloaking::dynamic));
         if (!w.kdc->kill_kdc(SIGSTOP)) throw std::runtime_error("cannot stop the KDC");
         r.note("KDC stopped (SIGSTOP); tickets:cold");
         auto started = std::chrono::steady_clock::now();
         {
           impersonation as_c1(w.backend, w.client(0));
           r.expect_error(p, "call (needs a service ticket)", call_error::authentication_failed,
                          t.get());
         }
         double waited =
             std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
         w.kdc->kill_kdc(SIGCONT);
         r.note(fmt::format("the call failed after {:.2f} s (bound 2 s); KDC continued (SIGCONT)",
                            waited));
         impersonation as_c2(w.backend, w.client(1));
         r.expect_call(p, "call once the KDC answers again", w.clients.client(1));
       },
       "kerberos"});
}

// ---- ntlm: what the NTLM acceptor must refuse
// -------------------------------------------------------

std::unique_ptr<transport> ntlm_connection(world& w, std::unique_ptr<client_package> package) {
  return make_connection(make_uds_channel({w.server->socket_path()}), std::move(package));
}

void add_ntlm_scenarios(std::vector<scenario>& s) {
  s.push_back({"ntlm/identity_without_a_user_fails_with_no_credentials", "dynamic",
               [](world& w, recorder& r, scenario_record&) {
                 auto t = w.connect();
                 proxy p(w.backend, *t);
                 p.set_blanket(blanket_of(cloaking::dynamic));
                 // The uid just past the fake clients: the domain has no user for it.
                 std::uint32_t stranger = w.clients.first_uid + w.clients.count;
                 check_client_range(client_range{stranger, stranger, 1});
                 impersonation as_stranger(w.backend, make_token(identity::of(stranger, stranger)));
                 r.note(fmt::format("impersonate uid {} (no NTLM user)", stranger));
                 r.expect_error(p, "call", call_error::no_credentials, t.get());
               },
               "ntlm"});
  s.push_back(
      {"ntlm/user_without_an_identity_is_refused_as_unknown", "dynamic",
       [](world& w, recorder& r, scenario_record&) {
         // A user the acceptor's file knows (verify made it) whom the idmap maps to nobody.
         std::uint32_t stranger = w.clients.first_uid + w.clients.count;
         ntlm_credentials as_stranger(
             w.domain->info(),
             {ntlm_account{stranger, "CB\\stranger", nt_hash_hex("the stranger's password")}});
         auto t = ntlm_connection(w, make_ntlm_client(as_stranger));
         proxy p(w.backend, *t);
         p.set_blanket(blanket_of(cloaking::dynamic));
         impersonation as_stranger_uid(w.backend, make_token(identity::of(stranger, stranger)));
         r.note(
             fmt::format("impersonate uid {}, presenting CB\\stranger (in the user file, "
                         "not in the idmap)",
                         stranger));
         r.expect_call_refused(p, "call", protocol::status::unknown_principal, *t);
       },
       "ntlm"});
  s.push_back(
      {"ntlm/wrong_nt_hash_is_rejected", "dynamic",
       [](world& w, recorder& r, scenario_record&) {
         identity c1 = w.clients.client(0);
         ntlm_credentials wrong(
             w.domain->info(),
             {ntlm_account{c1.uid, ntlm_user_for(c1.uid, w.process(), w.domain->info().domain),
                           nt_hash_hex("not C1's password")}});
         auto t = ntlm_connection(w, make_ntlm_client(wrong));
         proxy p(w.backend, *t);
         p.set_blanket(blanket_of(cloaking::dynamic));
         impersonation as_c1(w.backend, w.client(0));
         r.note("impersonate C1, whose credentials carry a wrong NT hash");
         r.expect_call_refused(p, "call", protocol::status::auth_failed, *t);
       },
       "ntlm"});
  s.push_back({"ntlm/context_from_another_connection_is_rejected", "dynamic",
               [](world& w, recorder& r, scenario_record& rec) {
                 auto a = w.connect();
                 auto b = w.connect();
                 if (b->connect() != call_error::ok)
                   throw std::runtime_error("cannot open connection B");
                 proxy p(w.backend, *a);
                 p.set_blanket(blanket_of(cloaking::dynamic));
                 impersonation as_c1(w.backend, w.client(0));
                 r.note("impersonate C1; call on connection A");
                 static const std::byte payload[64]{};
                 call_result first = p.call(payload);
                 rec.contexts = p.counters().contexts_established;
                 if (!first.ok())
                   throw std::runtime_error(
                       fmt::format("the call on connection A failed: {}", to_string(first.error)));
                 r.expect_transport_refusal(*b, first.view.context,
                                            "call on connection B under A's context",
                                            protocol::status::unknown_context);
               },
               "ntlm"});
  s.push_back({"ntlm/authenticate_replayed_on_a_second_connection_is_rejected", "dynamic",
               [](world& w, recorder& r, scenario_record& rec) {
                 auto tap = std::make_unique<tap_package>(make_ntlm_client(*w.ntlm));
                 tap_package& tapped = *tap;
                 auto a = ntlm_connection(w, std::move(tap));
                 proxy p(w.backend, *a);
                 p.set_blanket(blanket_of(cloaking::dynamic));
                 impersonation as_c1(w.backend, w.client(0));
                 r.note(
                     "impersonate C1; establish on connection A (NEGOTIATE and AUTHENTICATE "
                     "recorded)");
                 r.expect_call(p, "call", w.clients.client(0));
                 rec.contexts = p.counters().contexts_established;
                 if (tapped.tokens.size() != 2)
                   throw std::runtime_error(
                       fmt::format("expected 2 client legs, saw {}", tapped.tokens.size()));
                 r.note(fmt::format("recorded a NEGOTIATE of {} bytes and an AUTHENTICATE of {}",
                                    tapped.tokens[0].size(), tapped.tokens[1].size()));
                 auto b = ntlm_connection(
                     w, std::make_unique<replay_package>(tapped.tokens, package_id::ntlm));
                 proxy replayed(w.backend, *b);
                 r.expect_call_refused(replayed,
                                       "the same messages on connection B (a new CHALLENGE)",
                                       protocol::status::auth_failed, *b);
               },
               "ntlm"});
  s.push_back({"ntlm/tampered_authenticate_is_rejected", "dynamic",
               [](world& w, recorder& r, scenario_record&) {
                 auto tap = std::make_unique<tap_package>(make_ntlm_client(*w.ntlm));
                 tap->alter_leg = 1;  // the AUTHENTICATE
                 tap->alter_first_token = [](std::vector<std::byte>& token) {
                   if (!token.empty()) token[token.size() / 2] ^= std::byte{0x01};
                 };
                 auto t = ntlm_connection(w, std::move(tap));
                 proxy p(w.backend, *t);
                 p.set_blanket(blanket_of(cloaking::dynamic));
                 impersonation as_c1(w.backend, w.client(0));
                 r.note("impersonate C1; one bit of the AUTHENTICATE flipped");
                 r.expect_call_refused(p, "call", protocol::status::auth_failed, *t);
               },
               "ntlm"});
  s.push_back({"ntlm/tampered_mic_is_rejected", "dynamic",
               [](world& w, recorder& r, scenario_record& rec) {
                 ntlm_client_options o;
                 o.per_call = protection::integrity;
                 auto tap = std::make_unique<tap_package>(make_ntlm_client(*w.ntlm, o));
                 tap_package& tapped = *tap;
                 auto t = ntlm_connection(w, std::move(tap));
                 proxy p(w.backend, *t);
                 p.set_blanket(blanket_of(cloaking::dynamic));
                 impersonation as_c1(w.backend, w.client(0));
                 r.note("impersonate C1; prot:integrity");
                 r.expect_call(p, "call with a good MIC", w.clients.client(0));
                 tapped.spoil_next_mic = true;
                 r.expect_call_refused(p, "call with a spoiled MIC", protocol::status::bad_mic, *t);
                 r.expect_call(p, "the next call, good MIC again", w.clients.client(0));
                 rec.contexts = p.counters().contexts_established;
               },
               "ntlm"});
}

std::vector<scenario> all_scenarios() {
  std::vector<scenario> s;
  s.push_back({"none_without_token", "none", [](world& w, recorder& r, scenario_record& rec) {
                 auto t = w.connect();
                 proxy p(w.backend, *t);
                 r.note("no thread token");
                 r.expect_call(p, "call", w.process());
                 rec.contexts = p.counters().contexts_established;
               }});
  s.push_back({"none_with_token", "none", [](world& w, recorder& r, scenario_record& rec) {
                 auto t = w.connect();
                 proxy p(w.backend, *t);
                 impersonation as_c1(w.backend, w.client(0));
                 r.note("impersonate C1");
                 r.expect_call(p, "call", w.process());
                 rec.contexts = p.counters().contexts_established;
               }});
  s.push_back({"static_set_blanket_then_token_change_then_revert", "static",
               [](world& w, recorder& r, scenario_record& rec) {
                 auto t = w.connect();
                 proxy p(w.backend, *t);
                 {
                   impersonation as_c1(w.backend, w.client(0));
                   r.note("impersonate C1");
                   p.set_blanket(blanket_of(cloaking::static_));
                   r.note("set_blanket(static)");
                   r.expect_call(p, "call", w.clients.client(0));
                   impersonation as_c2(w.backend, w.client(1));
                   r.note("impersonate C2");
                   r.expect_call(p, "call", w.clients.client(0));
                 }
                 r.note("revert");
                 r.expect_call(p, "call", w.clients.client(0));
                 rec.contexts = p.counters().contexts_established;
               }});
  s.push_back({"static_set_without_token_called_while_impersonating", "static",
               [](world& w, recorder& r, scenario_record& rec) {
                 auto t = w.connect();
                 proxy p(w.backend, *t);
                 r.note("no thread token");
                 p.set_blanket(blanket_of(cloaking::static_));
                 r.note("set_blanket(static)");
                 impersonation as_c1(w.backend, w.client(0));
                 r.note("impersonate C1");
                 r.expect_call(p, "call", w.process());
                 rec.contexts = p.counters().contexts_established;
               }});
  s.push_back({"static_set_blanket_again_recaptures", "static",
               [](world& w, recorder& r, scenario_record& rec) {
                 auto t = w.connect();
                 proxy p(w.backend, *t);
                 impersonation as_c1(w.backend, w.client(0));
                 r.note("impersonate C1");
                 p.set_blanket(blanket_of(cloaking::static_));
                 r.note("set_blanket(static)");
                 r.expect_call(p, "call", w.clients.client(0));
                 impersonation as_c2(w.backend, w.client(1));
                 r.note("impersonate C2");
                 p.set_blanket(blanket_of(cloaking::static_));
                 r.note("set_blanket(static) again");
                 r.expect_call(p, "call", w.clients.client(1));
                 rec.contexts = p.counters().contexts_established;
               }});
  s.push_back({"static_process_default_captures_at_first_call", "static",
               [](world& w, recorder& r, scenario_record& rec) {
                 auto t = w.connect();
                 proxy p(w.backend, *t, security_defaults{cloaking::static_});
                 r.note("proxy created with process default static, no thread token");
                 {
                   impersonation as_c1(w.backend, w.client(0));
                   r.note("impersonate C1");
                   r.expect_call(p, "first call", w.clients.client(0));
                   impersonation as_c2(w.backend, w.client(1));
                   r.note("impersonate C2");
                   r.expect_call(p, "call", w.clients.client(0));
                 }
                 r.note("revert");
                 r.expect_call(p, "call", w.clients.client(0));
                 rec.contexts = p.counters().contexts_established;
               }});
  // C1 -> C2 -> revert -> C1 under a dynamic proxy: D must see each, and the proxy must establish
  // exactly `want` contexts (the policy decides whether C1's comes back).
  auto c1_c2_revert_c1 = [](dynamic_options options, std::uint64_t want, std::string policy) {
    return [options, want, policy](world& w, recorder& r, scenario_record& rec) {
      auto t = w.connect();
      proxy p(w.backend, *t, {}, options);
      p.set_blanket(blanket_of(cloaking::dynamic));
      {
        impersonation as_c1(w.backend, w.client(0));
        r.note("impersonate C1");
        r.expect_call(p, "call", w.clients.client(0));
        impersonation as_c2(w.backend, w.client(1));
        r.note("impersonate C2");
        r.expect_call(p, "call", w.clients.client(1));
      }
      r.note("revert");
      r.expect_call(p, "call", w.process());
      impersonation as_c1(w.backend, w.client(0));
      r.note("impersonate C1 again");
      r.expect_call(p, "call", w.clients.client(0));
      rec.contexts = p.counters().contexts_established;
      r.note(fmt::format("contexts established {} ({} expects {})", rec.contexts, policy, want));
      rec.ok = rec.ok && rec.contexts == want;
    };
  };
  for (auto probe : {identity_probe::kernel, identity_probe::generation}) {
    for (auto cache : {context_cache_policy::none(), context_cache_policy::lru(4)}) {
      std::uint64_t want = cache.lru_capacity == 0 ? 4 : 3;  // C1 comes back: reused only by lru
      s.push_back({fmt::format("dynamic_c1_c2_revert_c1/probe:{}/cache:{}", to_string(probe),
                               to_string(cache)),
                   "dynamic",
                   c1_c2_revert_c1(dynamic_options{probe, cache}, want,
                                   fmt::format("policy {}", to_string(cache)))});
    }
  }
  dynamic_options per_message;
  per_message.authentication = dynamic_authentication::per_message;
  // D reads each call's kernel credentials: a strategy of the local package only.
  s.push_back({"dynamic_c1_c2_revert_c1/per-message", "dynamic",
               c1_c2_revert_c1(per_message, 0, "per-message authentication"), "local"});
  dynamic_options by_token;
  by_token.tracking = identity_tracking::token;
  s.push_back({"dynamic_c1_reimpersonate_c1/track:token", "dynamic",
               [by_token](world& w, recorder& r, scenario_record& rec) {
                 auto t = w.connect();
                 proxy p(w.backend, *t, {}, by_token);
                 p.set_blanket(blanket_of(cloaking::dynamic));
                 {
                   impersonation as_c1(w.backend, w.client(0));
                   r.note("impersonate C1");
                   r.expect_call(p, "call", w.clients.client(0));
                 }
                 impersonation again(w.backend, w.client(0));
                 r.note("revert, impersonate C1 again (a new token for the same client)");
                 r.expect_call(p, "call", w.clients.client(0));
                 rec.contexts = p.counters().contexts_established;
                 r.note(
                     fmt::format("contexts established {} (track:token expects 2)", rec.contexts));
                 rec.ok = rec.ok && rec.contexts == 2;
               }});
  s.push_back({"explicit_identity", "none", [](world& w, recorder& r, scenario_record& rec) {
                 auto t = w.connect();
                 proxy p(w.backend, *t);
                 impersonation as_c1(w.backend, w.client(0));
                 r.note("impersonate C1");
                 p.set_blanket(blanket_of(cloaking::none, impersonation_level::impersonate,
                                          w.clients.client(2)));
                 r.note("set_blanket(explicit identity C3)");
                 r.expect_call(p, "call", w.clients.client(2));
                 rec.contexts = p.counters().contexts_established;
               }});
  for (auto mode : {cloaking::static_, cloaking::dynamic}) {
    s.push_back({fmt::format("explicit_identity_with_{}_cloaking_is_invalid", to_string(mode)),
                 std::string(to_string(mode)), [mode](world& w, recorder& r, scenario_record&) {
                   auto t = w.connect();
                   proxy p(w.backend, *t);
                   r.expect_invalid_blanket(
                       p, "set_blanket(explicit identity C3 + cloaking)",
                       blanket_of(mode, impersonation_level::impersonate, w.clients.client(2)));
                 }});
    s.push_back({fmt::format("identify_level_token_with_{}_cloaking_fails", to_string(mode)),
                 std::string(to_string(mode)), [mode](world& w, recorder& r, scenario_record&) {
                   auto t = w.connect();
                   proxy p(w.backend, *t);
                   impersonation as_c1(w.backend, w.client(0, impersonation_level::identify));
                   r.note("impersonate C1 with an identify-level token");
                   p.set_blanket(blanket_of(mode));
                   r.note(fmt::format("set_blanket({})", to_string(mode)));
                   r.expect_error(p, "call", call_error::bad_impersonation_level);
                 }});
  }
  s.push_back(
      {"access_check_at_impersonate_level_acts_as_caller", "dynamic",
       [](world& w, recorder& r, scenario_record& rec) {
         auto t = w.connect();
         proxy p(w.backend, *t);
         p.set_blanket(blanket_of(cloaking::dynamic, impersonation_level::impersonate));
         impersonation as_c1(w.backend, w.client(0));
         r.note("impersonate C1; set_blanket(dynamic, impersonate)");
         r.expect_access(p, "access_check(file only C1 may read)", w.clients.first_uid, true);
         r.expect_access(p, "access_check(file only C2 may read)", w.clients.first_uid + 1, false);
         rec.contexts = p.counters().contexts_established;
       }});
  s.push_back({"access_check_at_identify_level_is_refused", "dynamic",
               [](world& w, recorder& r, scenario_record& rec) {
                 auto t = w.connect();
                 proxy p(w.backend, *t);
                 p.set_blanket(blanket_of(cloaking::dynamic, impersonation_level::identify));
                 impersonation as_c1(w.backend, w.client(0));
                 r.note("impersonate C1; set_blanket(dynamic, identify)");
                 r.expect_call(p, "call (D may still learn who)", w.clients.client(0));
                 r.expect_refusal(p, "access_check(file only C1 may read)", w.clients.first_uid,
                                  protocol::status::identify_only);
                 rec.contexts = p.counters().contexts_established;
               }});
  s.push_back({"anonymous_level_hides_the_caller", "dynamic",
               [](world& w, recorder& r, scenario_record& rec) {
                 auto t = w.connect();
                 proxy p(w.backend, *t);
                 p.set_blanket(blanket_of(cloaking::dynamic, impersonation_level::anonymous));
                 impersonation as_c1(w.backend, w.client(0));
                 r.note("impersonate C1; set_blanket(dynamic, anonymous)");
                 r.expect_anonymous(p, "call");
                 rec.contexts = p.counters().contexts_established;
               }});
  add_kerberos_scenarios(s);
  add_ntlm_scenarios(s);
  return s;
}

struct options {
  bool as_json = false;
  std::string backend;
  std::string clients = "61000:61000:16";
  std::string filter;
  std::string auth = "local";
  bool hosts = false;
};

int run(const options& opt) {
  if (opt.hosts)
    return verify::run_hosts(verify::hosts_options{opt.as_json, opt.clients, opt.filter});
  std::string privilege_mode = "root";
  backend_kind kind = backend_kind::kernel;
  if (!opt.backend.empty()) {
    kind = parse_backend_kind(opt.backend);
  } else if (auto why = kernel_backend_unavailable_reason()) {
    std::cerr << "cloak-verify: " << *why << "; falling back to the model backend\n";
    kind = backend_kind::model;
    privilege_mode = "model-fallback";
  }
  if (kind == backend_kind::kernel && ::getuid() != 0) privilege_mode = "capabilities";
  // The dispatcher says when it re-ran us in a user namespace; an explicitly chosen model backend
  // needs no privilege at all, whoever runs it.
  if (!opt.backend.empty() && kind == backend_kind::model) privilege_mode = "model (requested)";
  if (const char* mode = std::getenv("CLOAK_PRIVILEGE_MODE"); mode && *mode) privilege_mode = mode;
  client_range clients = parse_client_range(opt.clients);
  check_client_range(clients);

  auto backend = make_backend(kind);
  std::unique_ptr<realm> kdc;
  std::unique_ptr<kerberos_credentials> credentials;
  std::unique_ptr<ntlm_domain> domain;
  std::unique_ptr<ntlm_credentials> ntlm;
  std::unique_ptr<downstream_process> server;
  model_downstream model;
  std::function<std::unique_ptr<transport>()> connect;
  std::string source;
  json realm_json = nullptr;
  if (opt.auth == "kerberos") {
    if (kind != backend_kind::kernel) {
      throw std::invalid_argument(
          "--auth kerberos needs the kernel backend (the thread's kernel identity selects the "
          "principal)");
    }
    realm_config rc;
    rc.clients = clients;
    rc.process = backend->process_identity();
    kdc = std::make_unique<realm>(rc);
    kdc->export_environment();
    credentials =
        std::make_unique<kerberos_credentials>(kdc->info(), clients, backend->process_identity());
    downstream_config config;
    config.clients = clients;
    config.realm_dir = kdc->info().dir;
    config.rcache = "file2";
    server = std::make_unique<downstream_process>(config);
    connect = [&] {
      return make_connection(make_uds_channel({server->socket_path()}),
                             make_kerberos_client(*credentials));
    };
    source =
        "kerberos: the principal of the AP-REQ's ticket, mapped to an identity by the realm's "
        "idmap";
    realm_json = {{"name", kdc->info().name},
                  {"setup_seconds", kdc->info().setup_seconds},
                  {"rcache", "file2"}};
  } else if (opt.auth == "ntlm") {
    if (kind != backend_kind::kernel) {
      throw std::invalid_argument(
          "--auth ntlm needs the kernel backend (the thread's kernel identity selects the user)");
    }
    ntlm_config nc;
    nc.clients = clients;
    nc.process = backend->process_identity();
    // A user the acceptor knows whom the idmap maps to nobody (the unknown-user scenario).
    std::uint32_t stranger = clients.first_uid + clients.count;
    nc.unmapped.push_back(
        ntlm_account{stranger, "CB\\stranger", nt_hash_hex("the stranger's password")});
    domain = std::make_unique<ntlm_domain>(nc);
    domain->export_environment();  // before any GSSAPI call; cloak-downstream inherits it
    ntlm = std::make_unique<ntlm_credentials>(domain->info());
    downstream_config config;
    config.clients = clients;
    config.ntlm_dir = domain->info().dir;
    server = std::make_unique<downstream_process>(config);
    connect = [&] {
      return make_connection(make_uds_channel({server->socket_path()}), make_ntlm_client(*ntlm));
    };
    source =
        "ntlm: the user of the NTLM AUTHENTICATE (gss-ntlmssp), checked against the domain's NT "
        "hashes and mapped to an identity by its idmap";
    realm_json = {{"domain", domain->info().domain},
                  {"service", domain->info().service},
                  {"mechanism", domain->info().mechanism}};
  } else if (kind == backend_kind::kernel) {
    downstream_config config;
    config.clients = clients;
    server = std::make_unique<downstream_process>(config);
    connect = [&] { return make_uds_transport({server->socket_path()}); };
    source = "kernel: SCM_CREDENTIALS on each establishing message, read by cloak-downstream";
  } else {
    connect = [&] { return make_inproc_transport(model, *backend); };
    source = "model: the in-process downstream reads the model thread token";
  }
  world w{*backend,          connect,      clients,      opt.auth,  kdc.get(),
          credentials.get(), server.get(), domain.get(), ntlm.get()};

  json out;
  out["backend"] = std::string(to_string(kind));
  out["privilege_mode"] = privilege_mode;
  out["identity_source"] = source;
  out["auth"] = opt.auth;
  if (!realm_json.is_null()) out[opt.auth == "ntlm" ? "ntlm" : "realm"] = realm_json;
  out["process_identity"] = to_json(backend->process_identity());
  out["clients"] = {
      {"first_uid", clients.first_uid}, {"first_gid", clients.first_gid}, {"count", clients.count}};
  out["scenarios"] = json::array();
  bool all_ok = true;
  for (auto& sc : all_scenarios()) {
    if (!opt.filter.empty() && sc.name.find(opt.filter) == std::string::npos) continue;
    if (!sc.only_auth.empty() && sc.only_auth != opt.auth) continue;
    scenario_record rec;
    rec.name = sc.name;
    rec.cloaking = sc.cloaking;
    recorder r(w, rec);
    try {
      sc.run(w, r, rec);
    } catch (const std::exception& e) {
      rec.ok = false;
      rec.seen = {{"error", e.what()}};
    }
    try {
      backend->check_no_leak();
    } catch (const std::exception& e) {
      rec.ok = false;
      rec.seen = {{"error", e.what()}};
    }
    all_ok = all_ok && rec.ok;
    out["scenarios"].push_back({{"name", rec.name},
                                {"backend", std::string(to_string(kind))},
                                {"auth", opt.auth},
                                {"cloaking", rec.cloaking},
                                {"steps", rec.steps},
                                {"expected", rec.expected},
                                {"seen", rec.seen},
                                {"contexts_established", rec.contexts},
                                {"ok", rec.ok}});
  }
  out["ok"] = all_ok;
  if (opt.as_json) {
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << fmt::format("backend {} ({}), auth {}; identity source: {}\n\n", to_string(kind),
                             privilege_mode, opt.auth, source);
    std::cout << fmt::format("{:<58} {:<8} {:<26} {:<26} {:>4}  {}\n", "scenario", "cloaking",
                             "expected", "downstream saw", "ctx", "ok");
    for (auto& s : out["scenarios"]) {
      std::cout << fmt::format(
          "{:<58} {:<8} {:<26} {:<26} {:>4}  {}\n", s["name"].get<std::string>(),
          s["cloaking"].get<std::string>(), s["expected"].dump(), s["seen"].dump(),
          s["contexts_established"].get<std::uint64_t>(), s["ok"].get<bool>() ? "ok" : "MISMATCH");
    }
    std::cout << (all_ok ? "\nall scenarios ok\n" : "\nMISMATCH: see the rows above\n");
  }
  return all_ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  CLI::App app{
      "cloak-verify: run every cloaking scenario of DESIGN §1 and show the identity the downstream "
      "saw"};
  app.add_flag("--json", opt.as_json, "print JSON (described in docs/verify.md)");
  app.add_option("--backend", opt.backend, "kernel or model (default: kernel when privileged)")
      ->check(CLI::IsMember({"kernel", "model"}));
  app.add_option("--clients", opt.clients, "fake client range UID:GID:COUNT or FIRST:COUNT");
  app.add_option("--filter", opt.filter, "run only scenarios whose name contains this");
  app.add_option("--auth", opt.auth,
                 "authentication package: local (kernel credentials), kerberos (a realm this run "
                 "starts) or ntlm (an NTLM domain this run makes)")
      ->check(CLI::IsMember({"local", "kerberos", "ntlm"}));
  app.add_flag("--hosts", opt.hosts,
               "the cross-host scenarios instead (one-hop, two-hop; kerberos over tcp between "
               "network namespaces "
               "this run creates; needs CAP_NET_ADMIN, else skipped with the reason printed)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "cloak-verify: error: " << e.what() << "\n\n" << app.help();
    return 2;
  }
  try {
    return run(opt);
  } catch (const std::invalid_argument& e) {  // a bad command line that parsing could not see
    std::cerr << "cloak-verify: error: " << e.what() << "\n\n" << app.help();
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "cloak-verify: error: " << e.what() << "\n";
    return 1;
  }
}
