// The one runner (runner.hpp): every step kind of scenario.hpp, recorded the same way in every
// world; a world only says how its identities are shown and whether records are keyed by host.
#include "runner.hpp"

#include <fmt/format.h>

#include <cstring>
#include <stdexcept>
#include <type_traits>

#include "packages.hpp"
#include "world.hpp"

namespace cloak::verify {

session::~session() {
  while (!impersonations.empty()) impersonations.pop_back();
  while (!proxies.empty()) proxies.pop_back();
  while (!connections.empty()) connections.pop_back();
  while (!kept.empty()) kept.pop_back();
}

std::uint64_t session::contexts_established() const {
  std::uint64_t n = 0;
  for (const auto& p : proxies)
    if (p) n += p->counters().contexts_established;
  return n;
}

namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

const std::byte payload[64]{};

std::string text(call_error e) { return std::string(to_string(e)); }
std::string text(protocol::status s) { return std::string(protocol::to_string(s)); }

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

class step_runner {
 public:
  step_runner(world& w, session& s, scenario_record& r) : w_(w), s_(s), r_(r) {}

  void operator()(const open& o) {
    std::unique_ptr<client_package> package = o.package ? o.package(w_, s_) : nullptr;
    if (o.tap) {
      if (!package) throw std::logic_error("a tap needs the package it wraps");
      auto tap = std::make_unique<tap_package>(std::move(package), *o.tap);
      s_.tap = tap.get();
      package = std::move(tap);
    }
    auto connection = package || o.tcp ? w_.connect(std::move(package), o.tcp) : w_.connect();
    if (o.connect_now && connection->connect() != call_error::ok)
      throw std::runtime_error(
          fmt::format("cannot open connection {}", static_cast<char>('A' + s_.connections.size())));
    s_.proxies.push_back(
        o.raw ? nullptr
              : std::make_unique<proxy>(w_.backend(), *connection, o.defaults, o.dynamic));
    s_.connections.push_back(std::move(connection));
  }

  void operator()(const set_blanket& b) { current().set_blanket(blanket_of(b)); }

  void operator()(const impersonate& i) {
    identity who = w_.resolve(i.as);
    if (i.as.is == who::role::stranger) check_client_range(client_range{who.uid, who.uid, 1});
    s_.impersonations.push_back(
        std::make_unique<impersonation>(w_.backend(), make_token(who, i.level)));
  }

  void operator()(const revert&) {
    while (!s_.impersonations.empty()) s_.impersonations.pop_back();
  }

  void operator()(const note& n) { record_note(fill(n.text)); }

  void operator()(const call& c) {
    call_result res = current().call(payload);
    const connection& t = *current_connection();
    json seen = seen_of(c.expect, res.error, res.view, t.last_establish().detail);
    finish(c.action, per_host({{"down1", expected_of(c.expect)}}), per_host({{"down1", seen}}),
           matches(c.expect, res.error, res.view));
  }

  void operator()(const access& a) {
    access_outcome out;
    call_result res = current().access_check(w_.clients().client(a.target_client).uid, out);
    json seen;
    bool ok = false;
    if (!res.ok()) {
      seen = {{"error", text(res.error)}};
    } else if (out.view.server_status != protocol::status::ok) {
      seen = {{"refused", text(out.view.server_status)}};
    } else {
      seen = w_.show(out.view.seen);
      seen["access"] = out.granted ? "granted" : "denied";
      if (!out.granted) seen["errno"] = std::strerror(out.error_number);
      ok = out.granted == a.granted;
    }
    finish(a.action,
           json{{"access", a.granted ? "granted" : "denied"},
                {"target_uid", w_.clients().client(a.target_client).uid}},
           seen, ok);
  }

  void operator()(const access_refused& a) {
    access_outcome out;
    call_result res = current().access_check(w_.clients().client(a.target_client).uid, out);
    json seen = !res.ok() ? json{{"error", text(res.error)}}
                          : json{{"refused", text(out.view.server_status)}};
    finish(a.action, json{{"refused", text(a.why)}}, seen,
           res.ok() && out.view.server_status == a.why);
  }

  void operator()(const invalid_blanket& b) {
    json seen;
    bool ok = false;
    try {
      current().set_blanket(blanket_of(b.blanket));
      seen = {{"accepted", true}};
    } catch (const std::invalid_argument& e) {
      seen = {{"error", "invalid argument"}, {"message", e.what()}};
      ok = true;
    }
    finish(b.action, json{{"error", "invalid argument"}}, seen, ok);
  }

  void operator()(const forward& f) {
    forward_outcome out;
    auto started = clock_type::now();
    call_result res = current().forward(f.hop, payload, out);
    double seconds = seconds_since(started);
    const connection& t = *current_connection();
    json seen_d1 = seen_of(f.at_d1, res.error, res.view, t.last_establish().detail);
    json seen_d2 = res.ok() ? seen_of(f.at_d2, out.next_error, out.next, std::string(out.detail))
                            : json{{"not reached", true}};
    bool ok = matches(f.at_d1, res.error, res.view) && res.ok() &&
              matches(f.at_d2, out.next_error, out.next);
    if (f.at_d1.is != expectation::kind::identity) ok = matches(f.at_d1, res.error, res.view);
    finish(f.action, json{{"down1", expected_of(f.at_d1)}, {"down2", expected_of(f.at_d2)}},
           json{{"down1", seen_d1}, {"down2", seen_d2}, {"seconds", seconds}}, ok);
  }

  void operator()(const establish&) {
    call_result first = current().call(payload);
    if (!first.ok())
      throw std::runtime_error(
          fmt::format("the call on connection A failed: {}", to_string(first.error)));
    s_.context = first.view.context;
  }

  void operator()(const reuse_context& u) {
    downstream_view v;
    call_error e = s_.connections.at(u.connection)
                       ->call(s_.context, impersonation_level::impersonate, payload, v);
    json seen = e == call_error::ok        ? w_.show(v.seen)
                : e == call_error::refused ? json{{"refused", text(v.server_status)}}
                                           : json{{"error", text(e)}};
    finish(u.action, json{{"refused", text(u.why)}}, seen,
           e == call_error::refused && v.server_status == u.why);
  }

  void operator()(const spoil_next_mic&) {
    if (!s_.tap) throw std::logic_error("spoiling a MIC needs a tapped connection");
    s_.tap->spoil_next_mic = true;
  }

  void operator()(const spoil_next_seal&) {
    if (!s_.tap) throw std::logic_error("spoiling a sealed message needs a tapped connection");
    s_.tap->spoil_next_seal = true;
  }

  void operator()(const expect_recorded_legs& e) {
    std::size_t seen = s_.tap ? s_.tap->tokens.size() : 0;
    if (seen != e.count)
      throw std::runtime_error(fmt::format("expected {} client legs, saw {}", e.count, seen));
  }

  void operator()(const expect_contexts& e) {
    std::uint64_t n = s_.contexts_established();
    record_note(fmt::format("contexts established {} ({} expects {})", n, e.policy, e.want));
    r_.ok = r_.ok && n == e.want;
  }

  void operator()(const start_clock&) { s_.clock = clock_type::now(); }

  void operator()(const within& b) {
    double waited = seconds_since(s_.clock);
    finish(b.action, json{{"seconds_at_most", b.seconds}}, json{{"seconds", waited}},
           waited < b.seconds);
  }

  void operator()(const inject& i) { w_.inject(i.what); }

  void operator()(const misconfigured_d1_refuses_to_start& m) {
    auto started = clock_type::now();
    std::string message = w_.start_misconfigured_d1();
    double waited = seconds_since(started);
    bool ok =
        message.find("cannot acquire acceptor credentials") != std::string::npos && waited < 10;
    finish(m.action, json{{"error", "cannot acquire acceptor credentials ..."}},
           json{{"error", message}, {"seconds", waited}}, ok);
  }

 private:
  proxy& current() {
    for (auto it = s_.proxies.rbegin(); it != s_.proxies.rend(); ++it)
      if (*it) return **it;
    throw std::logic_error("a step needs a proxy: open one first");
  }
  const connection* current_connection() {
    for (std::size_t i = s_.proxies.size(); i-- > 0;)
      if (s_.proxies[i]) return s_.connections[i].get();
    throw std::logic_error("a step needs a proxy: open one first");
  }

  blanket blanket_of(const set_blanket& b) const {
    blanket out;
    out.mode = b.mode;
    out.level = b.level;
    if (b.explicit_identity) out.explicit_identity = w_.resolve(*b.explicit_identity);
    return out;
  }

  // Across hosts a record keys what it expects and sees by host; here it is the one downstream's.
  json per_host(json keyed) const { return w_.across_hosts() ? keyed : keyed.begin().value(); }

  json expected_of(const expectation& e) const {
    switch (e.is) {
      case expectation::kind::identity:
        return w_.show(w_.resolve(e.whom));
      case expectation::kind::anonymous:
        return json{{"anonymous", true}};
      case expectation::kind::error:
        return json{{"error", text(e.error)}};
      case expectation::kind::refused:
        if (w_.across_hosts())
          return json{{"error", text(call_error::refused)}, {"refused", text(e.refusal)}};
        return json{{"refused", text(e.refusal)}};
    }
    return nullptr;
  }

  // What a call saw: across hosts every failure with its status and detail; here a refusal names
  // its status when one was expected, and the detail comes with an expected failure.
  json seen_of(const expectation& e, call_error error, const downstream_view& v,
               const std::string& detail) const {
    if (w_.across_hosts()) {
      if (error == call_error::ok) return w_.show(v.seen);
      json j{{"error", text(error)}};
      if (error == call_error::refused) j["refused"] = text(v.server_status);
      if (!detail.empty()) j["detail"] = detail;
      return j;
    }
    json seen = error == call_error::ok ? w_.show(v.seen) : json{{"error", text(error)}};
    if (e.is == expectation::kind::refused) {
      if (error == call_error::refused) seen = {{"refused", text(v.server_status)}};
      if (!detail.empty()) seen["detail"] = detail;
    } else if (e.is == expectation::kind::error && error != call_error::ok && !detail.empty()) {
      seen["detail"] = detail;
    }
    return seen;
  }

  bool matches(const expectation& e, call_error error, const downstream_view& v) const {
    switch (e.is) {
      case expectation::kind::identity:
        return error == call_error::ok && v.seen.same_principal(w_.resolve(e.whom)) && !v.anonymous;
      case expectation::kind::anonymous:
        return error == call_error::ok && v.anonymous;
      case expectation::kind::error:
        return error == e.error;
      case expectation::kind::refused:
        return error == call_error::refused && v.server_status == e.refusal;
    }
    return false;
  }

  // A note's text may name what only the run knows (scenario.hpp: note).
  std::string fill(const std::string& text) const {
    if (text.find('{') == std::string::npos) return text;
    auto leg = [&](std::size_t i) {
      return s_.tap && s_.tap->tokens.size() > i ? s_.tap->tokens[i].size() : 0;
    };
    return fmt::format(fmt::runtime(text), fmt::arg("stranger", w_.resolve(stranger).uid),
                       fmt::arg("contexts", s_.contexts_established()), fmt::arg("token0", leg(0)),
                       fmt::arg("token1", leg(1)), fmt::arg("waited", seconds_since(s_.clock)));
  }

  void record_note(const std::string& action) {
    json step{{"action", action}};
    if (!w_.across_hosts()) step["thread"] = w_.show(w_.backend().read_thread_identity());
    r_.steps.push_back(std::move(step));
  }

  void finish(const std::string& action, json expected, json seen, bool ok) {
    json step{{"action", action}, {"expected", expected}, {"seen", seen}, {"ok", ok}};
    if (!w_.across_hosts()) step["thread"] = w_.show(w_.backend().read_thread_identity());
    r_.steps.push_back(std::move(step));
    r_.expected = std::move(expected);
    r_.seen = std::move(seen);
    r_.ok = r_.ok && ok;
  }

  world& w_;
  session& s_;
  scenario_record& r_;
};

}  // namespace

std::vector<scenario_record> run_scenarios(world& w, const std::string& filter) {
  std::vector<scenario_record> records;
  for (const scenario& sc : all_scenarios()) {
    if (!sc.runs_in.has(w.kind())) continue;
    std::string name = w.scenario_prefix() + sc.name;
    if (!filter.empty() && name.find(filter) == std::string::npos) continue;
    scenario_record rec;
    rec.of = &sc;
    rec.name = std::move(name);
    if (w.kind() == world_kind::negotiate_krb5 || w.kind() == world_kind::negotiate_ntlm)
      rec.mech = std::string(to_string(w.mech()));
    {
      session s;
      step_runner run(w, s, rec);
      try {
        for (const step& st : sc.steps) std::visit(run, st);
      } catch (const std::exception& e) {
        rec.ok = false;
        rec.seen = {{"error", e.what()}};
      }
      rec.contexts = s.contexts_established();
    }
    try {
      w.backend().check_no_leak();
    } catch (const std::exception& e) {
      rec.ok = false;
      rec.seen = {{"error", e.what()}};
    }
    records.push_back(std::move(rec));
  }
  return records;
}

}  // namespace cloak::verify
