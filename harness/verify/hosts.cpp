// cloak-verify --hosts: the cross-host rules of docs/design.md §1 (COM "Cloaking and Impersonation
// Levels") against downstreams in network namespaces: one hop at impersonate level, two hops at
// impersonate (refused at D1) and at delegate (a forwarded TGT), static vs dynamic at D1, and the
// bad inputs a cross-host call must survive with a bounded, named error.
#include "hosts.hpp"

#include <fmt/format.h>
#include <signal.h>

#include <chrono>
#include <cloak/backend.hpp>
#include <cloak/hosts.hpp>
#include <cloak/kerberos.hpp>
#include <cloak/net.hpp>
#include <cloak/proxy.hpp>
#include <cloak/transport.hpp>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

namespace cloak::verify {

namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

// What a scenario expects a downstream to say: an identity, or a named error.
struct outcome {
  std::optional<identity> who;
  std::optional<call_error> error;
  std::optional<protocol::status> refusal;  // with error == refused
  static outcome as(const identity& w) { return {w, std::nullopt, std::nullopt}; }
  static outcome failing(call_error e) { return {std::nullopt, e, std::nullopt}; }
  static outcome refused(protocol::status s) { return {std::nullopt, call_error::refused, s}; }
};

struct world {
  identity_backend& backend;
  cross_hosts& hosts;
  kerberos_credentials& credentials;
  client_range clients;
  std::map<std::uint32_t, std::string> names;  // uid -> "C1 (client-61000@R)", for the output

  token client(std::uint32_t i) const { return make_token(clients.client(i)); }
  const identity& middle() const {
    return hosts.realm_description().middle;
  }  // P as the hosts know it
  const identity& d1() const { return hosts.realm_description().host("down1").who; }
  std::string label(std::uint32_t uid) const {
    auto it = names.find(uid);
    return it == names.end() ? fmt::format("uid {}", uid) : it->second;
  }
  std::unique_ptr<transport> connect_d1(kerberos_client_options o = {}) {
    os::tcp_endpoint d1 = hosts.down1_address();
    return make_connection(make_tcp_channel(tcp_options{d1.address, d1.port}),
                           make_kerberos_client(credentials, o));
  }
};

json describe(const world& w, const outcome& o) {
  if (o.who) return json{{"uid", o.who->uid}, {"gid", o.who->gid}, {"as", w.label(o.who->uid)}};
  json j{{"error", std::string(to_string(*o.error))}};
  if (o.refusal) j["refused"] = std::string(protocol::to_string(*o.refusal));
  return j;
}

struct record {
  std::string name;
  json hosts = json::array();
  json levels;
  json cloaking;
  json steps = json::array();
  json expected;
  json seen;
  bool ok = true;
};

class recorder {
 public:
  recorder(world& w, record& r) : w_(w), r_(r) {}

  void note(const std::string& action) { r_.steps.push_back({{"action", action}}); }

  // A call to D1 under `p`.
  void one_hop(proxy& p, const std::string& action, const outcome& want, const transport& t) {
    static const std::byte payload[64]{};
    call_result res = p.call(payload);
    json seen = view_of(res.error, res.view, t.last_establish().detail);
    finish(action, json{{"down1", describe(w_, want)}}, json{{"down1", seen}},
           matches(want, res.error, res.view));
  }

  // A forward_call: D1 acts as whom it authenticated and calls D2 through its own proxy (`hop`).
  void two_hop(proxy& p, const next_hop& hop, const std::string& action, const outcome& at_d1,
               const outcome& at_d2, const transport& t) {
    static const std::byte payload[64]{};
    forward_outcome out;
    auto started = clock_type::now();
    call_result res = p.forward(hop, payload, out);
    double seconds = std::chrono::duration<double>(clock_type::now() - started).count();
    json seen_d1 = view_of(res.error, res.view, t.last_establish().detail);
    json seen_d2 = res.ok() ? view_of(out.next_error, out.next, std::string(out.detail))
                            : json{{"not reached", true}};
    bool ok =
        matches(at_d1, res.error, res.view) && res.ok() && matches(at_d2, out.next_error, out.next);
    if (!at_d1.who) ok = matches(at_d1, res.error, res.view);
    json seen{{"down1", seen_d1}, {"down2", seen_d2}, {"seconds", seconds}};
    finish(action, json{{"down1", describe(w_, at_d1)}, {"down2", describe(w_, at_d2)}}, seen, ok);
  }

  // A step that is not a call: `ok` and what was seen, decided by the scenario.
  void checked(const std::string& action, json expected, json seen, bool ok) {
    finish(action, std::move(expected), std::move(seen), ok);
  }

 private:
  json view_of(call_error e, const downstream_view& v, const std::string& detail) const {
    if (e == call_error::ok)
      return json{{"uid", v.seen.uid}, {"gid", v.seen.gid}, {"as", w_.label(v.seen.uid)}};
    json j{{"error", std::string(to_string(e))}};
    if (e == call_error::refused) j["refused"] = std::string(protocol::to_string(v.server_status));
    if (!detail.empty()) j["detail"] = detail;
    return j;
  }
  static bool matches(const outcome& want, call_error e, const downstream_view& v) {
    if (want.who) return e == call_error::ok && v.seen.same_principal(*want.who) && !v.anonymous;
    if (e != *want.error) return false;
    return !want.refusal || v.server_status == *want.refusal;
  }
  void finish(const std::string& action, json expected, json seen, bool ok) {
    r_.steps.push_back({{"action", action}, {"expected", expected}, {"seen", seen}, {"ok", ok}});
    r_.expected = std::move(expected);
    r_.seen = std::move(seen);
    r_.ok = r_.ok && ok;
  }
  world& w_;
  record& r_;
};

blanket blanket_at(cloaking mode, impersonation_level level) {
  blanket b;
  b.mode = mode;
  b.level = level;
  return b;
}

struct scenario {
  std::string name;
  std::vector<std::string> hosts;
  json levels;
  json cloaking;
  std::function<void(world&, recorder&)> run;
};

std::string mode_name(cloaking m) { return std::string(to_string(m)); }

std::vector<scenario> scenarios() {
  using L = impersonation_level;
  std::vector<scenario> s;
  const std::vector<std::string> one{"middle", "down1"}, two{"middle", "down1", "down2"};

  s.push_back(
      {"one-hop/impersonate/dynamic_shows_the_client_at_d1",
       one,
       {{"middle", "impersonate"}},
       {{"middle", "dynamic"}},
       [](world& w, recorder& r) {
         auto t = w.connect_d1();
         proxy p(w.backend, *t);
         p.set_blanket(blanket_at(cloaking::dynamic, L::impersonate));
         impersonation as_c1(w.backend, w.client(0));
         r.note("middle impersonates C1; dynamic cloaking at impersonate level; call D1 over TCP");
         r.one_hop(p, "call D1", outcome::as(w.clients.client(0)), *t);
       }});
  s.push_back({"one-hop/impersonate/none_shows_the_middle_at_d1",
               one,
               {{"middle", "impersonate"}},
               {{"middle", "none"}},
               [](world& w, recorder& r) {
                 auto t = w.connect_d1();
                 proxy p(w.backend, *t);
                 impersonation as_c1(w.backend, w.client(0));
                 r.note("middle impersonates C1; no cloaking");
                 r.one_hop(p, "call D1", outcome::as(w.middle()), *t);
               }});
  s.push_back({"one-hop/local_package_over_tcp_is_refused",
               one,
               {{"middle", "impersonate"}},
               {{"middle", "dynamic"}},
               [](world& w, recorder& r) {
                 os::tcp_endpoint d1 = w.hosts.down1_address();
                 auto t = make_connection(make_tcp_channel(tcp_options{d1.address, d1.port}),
                                          make_local_client());
                 proxy p(w.backend, *t);
                 p.set_blanket(blanket_at(cloaking::dynamic, L::impersonate));
                 impersonation as_c1(w.backend, w.client(0));
                 r.note(
                     "the local package over the tcp channel: no kernel credentials cross hosts");
                 r.one_hop(p, "call D1 (the client side refuses)",
                           outcome::failing(call_error::package_unavailable), *t);
                 // The same refusal from D1 itself, for a client that sends a local establish
                 // anyway.
                 struct claims_local final : client_package {
                   package_id id() const noexcept override { return package_id::local; }
                   bool needs_kernel_credentials() const noexcept override { return false; }
                   establish_outcome establish(const presentation&,
                                               establish_legs& legs) noexcept override {
                     establish_outcome out;
                     leg_reply reply;
                     out.error = legs.leg({}, reply);
                     return out;
                   }
                 };
                 auto raw = make_connection(make_tcp_channel(tcp_options{d1.address, d1.port}),
                                            std::make_unique<claims_local>());
                 proxy q(w.backend, *raw);
                 q.set_blanket(blanket_at(cloaking::dynamic, L::impersonate));
                 r.one_hop(q, "a local establish sent over TCP anyway (D1 refuses)",
                           outcome::refused(protocol::status::package_unavailable), *raw);
               }});

  for (cloaking at_d1 : {cloaking::dynamic, cloaking::static_}) {
    s.push_back(
        {fmt::format("two-hop/impersonate/{}_at_d1_is_refused_d1_holds_no_credentials_for_c",
                     mode_name(at_d1)),
         two,
         {{"middle", "impersonate"}, {"down1", "impersonate"}},
         {{"middle", "dynamic"}, {"down1", mode_name(at_d1)}},
         [at_d1](world& w, recorder& r) {
           auto t = w.connect_d1();
           proxy p(w.backend, *t);
           p.set_blanket(blanket_at(cloaking::dynamic, L::impersonate));
           impersonation as_c1(w.backend, w.client(0));
           r.note(fmt::format(
               "middle impersonates C1 at impersonate level (no TGT forwarded); D1 {} cloaking",
               mode_name(at_d1)));
           r.two_hop(p, next_hop{at_d1, L::impersonate},
                     "forward_call: D1 acts as C1 and calls D2 cloaked",
                     outcome::as(w.clients.client(0)), outcome::failing(call_error::no_credentials),
                     *t);
         }});
  }
  s.push_back({"two-hop/impersonate/none_at_d1_shows_d1_at_d2",
               two,
               {{"middle", "impersonate"}, {"down1", "impersonate"}},
               {{"middle", "dynamic"}, {"down1", "none"}},
               [](world& w, recorder& r) {
                 auto t = w.connect_d1();
                 proxy p(w.backend, *t);
                 p.set_blanket(blanket_at(cloaking::dynamic, L::impersonate));
                 impersonation as_c1(w.backend, w.client(0));
                 r.note("middle impersonates C1 at impersonate level; D1 without cloaking");
                 r.two_hop(p, next_hop{cloaking::none, L::impersonate}, "forward_call",
                           outcome::as(w.clients.client(0)), outcome::as(w.d1()), *t);
               }});
  for (cloaking at_d1 : {cloaking::dynamic, cloaking::static_}) {
    s.push_back({fmt::format("two-hop/delegate/{}_at_d1_shows_the_client_at_d2", mode_name(at_d1)),
                 two,
                 {{"middle", "delegate"}, {"down1", "impersonate"}},
                 {{"middle", "dynamic"}, {"down1", mode_name(at_d1)}},
                 [at_d1](world& w, recorder& r) {
                   auto t = w.connect_d1();
                   proxy p(w.backend, *t);
                   p.set_blanket(blanket_at(cloaking::dynamic, L::delegate));
                   impersonation as_c1(w.backend, w.client(0));
                   r.note(
                       fmt::format("middle impersonates C1 at delegate level (GSS_C_DELEG_FLAG: "
                                   "C1's TGT forwarded to D1); "
                                   "D1 {} cloaking",
                                   mode_name(at_d1)));
                   r.two_hop(p, next_hop{at_d1, L::impersonate}, "forward_call",
                             outcome::as(w.clients.client(0)), outcome::as(w.clients.client(0)),
                             *t);
                 }});
  }
  s.push_back({"two-hop/delegate/none_at_d1_shows_d1_at_d2",
               two,
               {{"middle", "delegate"}, {"down1", "impersonate"}},
               {{"middle", "dynamic"}, {"down1", "none"}},
               [](world& w, recorder& r) {
                 auto t = w.connect_d1();
                 proxy p(w.backend, *t);
                 p.set_blanket(blanket_at(cloaking::dynamic, L::delegate));
                 impersonation as_c1(w.backend, w.client(0));
                 r.note(
                     "middle impersonates C1 at delegate level; D1 without cloaking: even with "
                     "C1's TGT, D2 sees D1");
                 r.two_hop(p, next_hop{cloaking::none, L::impersonate}, "forward_call",
                           outcome::as(w.clients.client(0)), outcome::as(w.d1()), *t);
               }});
  s.push_back(
      {"two-hop/delegate/static_at_d1_ignores_the_token_change_at_the_middle",
       two,
       {{"middle", "delegate"}, {"down1", "impersonate"}},
       {{"middle", "dynamic"}, {"down1", "static"}},
       [](world& w, recorder& r) {
         auto t = w.connect_d1();
         proxy p(w.backend, *t);
         p.set_blanket(blanket_at(cloaking::dynamic, L::delegate));
         const next_hop hop{cloaking::static_, L::impersonate};
         {
           impersonation as_c1(w.backend, w.client(0));
           r.note(
               "middle impersonates C1 (delegate); D1's proxy to D2: static cloaking from its "
               "default");
           r.two_hop(p, hop, "forward_call (D1's first call: static captures C1)",
                     outcome::as(w.clients.client(0)), outcome::as(w.clients.client(0)), *t);
         }
         impersonation as_c2(w.backend, w.client(1));
         r.note("middle impersonates C2: a new context with D1 on the same connection");
         r.two_hop(p, hop, "forward_call (D1 acts as C2; its static proxy still presents C1)",
                   outcome::as(w.clients.client(1)), outcome::as(w.clients.client(0)), *t);
       }});
  s.push_back({"two-hop/delegate/dynamic_at_d1_follows_the_token_change_at_the_middle",
               two,
               {{"middle", "delegate"}, {"down1", "impersonate"}},
               {{"middle", "dynamic"}, {"down1", "dynamic"}},
               [](world& w, recorder& r) {
                 auto t = w.connect_d1();
                 proxy p(w.backend, *t);
                 p.set_blanket(blanket_at(cloaking::dynamic, L::delegate));
                 const next_hop hop{cloaking::dynamic, L::impersonate};
                 {
                   impersonation as_c1(w.backend, w.client(0));
                   r.note("middle impersonates C1 (delegate); D1 dynamic cloaking");
                   r.two_hop(p, hop, "forward_call", outcome::as(w.clients.client(0)),
                             outcome::as(w.clients.client(0)), *t);
                 }
                 impersonation as_c2(w.backend, w.client(1));
                 r.note("middle impersonates C2");
                 r.two_hop(p, hop, "forward_call (D1 acts as C2 and presents C2, with C2's TGT)",
                           outcome::as(w.clients.client(1)), outcome::as(w.clients.client(1)), *t);
               }});

  // ---- bad inputs: each a bounded, named error
  // ----------------------------------------------------
  s.push_back({"one-hop/bad/unreachable_host_times_out_within_the_bound",
               one,
               {{"middle", "delegate"}},
               {{"middle", "dynamic"}},
               [](world& w, recorder& r) {
                 // An address of the test subnet that no host has: ARP goes unanswered inside the
                 // topology.
                 auto t = make_connection(make_tcp_channel(tcp_options{
                                              "198.18.0.99", 7, std::chrono::milliseconds(1000)}),
                                          make_kerberos_client(w.credentials));
                 proxy p(w.backend, *t);
                 p.set_blanket(blanket_at(cloaking::dynamic, L::delegate));
                 impersonation as_c1(w.backend, w.client(0));
                 auto started = clock_type::now();
                 r.one_hop(p, "call tcp:198.18.0.99:7 (no such host; bound 1 s)",
                           outcome::failing(call_error::timeout), *t);
                 double waited = std::chrono::duration<double>(clock_type::now() - started).count();
                 r.checked("the failure came within the bound", json{{"seconds_at_most", 1.5}},
                           json{{"seconds", waited}}, waited < 1.5);
               }});
  s.push_back({"one-hop/bad/wrong_realm_is_a_named_kdc_error",
               one,
               {{"middle", "delegate"}},
               {{"middle", "dynamic"}},
               [](world& w, recorder& r) {
                 kerberos_client_options o;
                 o.tickets = ticket_state::cold;
                 o.service = "cloak/down1@NO-SUCH.REALM";
                 auto t = w.connect_d1(o);
                 proxy p(w.backend, *t);
                 p.set_blanket(blanket_at(cloaking::dynamic, L::delegate));
                 impersonation as_c1(w.backend, w.client(0));
                 r.note("the middle asks for D1's service in a realm its KDC does not serve");
                 r.one_hop(p, "call D1", outcome::failing(call_error::authentication_failed), *t);
               }});
  s.push_back({"one-hop/bad/wrong_keytab_stops_d1_at_startup_with_a_named_error", one,
               json::object(), json::object(), [](world& w, recorder& r) {
                 downstream_config dc;
                 dc.clients = w.clients;
                 dc.realm_dir = w.hosts.realm_description().dir;
                 dc.netns = w.hosts.net().host("down1").netns;
                 dc.listen = fmt::format("tcp:{}:0", w.hosts.net().host("down1").address);
                 dc.service = w.hosts.realm_description().host("down1").principal;
                 dc.keytab =
                     w.hosts.realm_description().host("down2").keytab;  // another host's keys
                 r.note("start a second D1 whose keytab holds down2's key, not its own");
                 std::string message;
                 auto started = clock_type::now();
                 try {
                   downstream_process wrong(dc);
                   message = "started";
                 } catch (const std::exception& e) {
                   message = e.what();
                 }
                 double waited = std::chrono::duration<double>(clock_type::now() - started).count();
                 bool ok =
                     message.find("cannot acquire acceptor credentials") != std::string::npos &&
                     waited < 10;
                 r.checked("cloak-downstream refuses to start",
                           json{{"error", "cannot acquire acceptor credentials ..."}},
                           json{{"error", message}, {"seconds", waited}}, ok);
               }});
  s.push_back({"one-hop/bad/clock_skew_beyond_the_kdc_limit_is_refused_by_the_kdc",
               one,
               {{"middle", "delegate"}},
               {{"middle", "dynamic"}},
               [](world& w, recorder& r) {
                 kerberos_client_options o;
                 o.tickets = ticket_state::cold;  // each new context asks the KDC
                 o.clock_offset_seconds = 3600;   // the KDC allows 300 s
                 auto t = w.connect_d1(o);
                 proxy p(w.backend, *t);
                 p.set_blanket(blanket_at(cloaking::dynamic, L::delegate));
                 impersonation as_c1(w.backend, w.client(0));
                 r.note(
                     "the middle's clock runs 3600 s ahead (its KDC requests carry that time); the "
                     "KDC's clockskew is 300 s");
                 r.one_hop(p, "call D1 (needs a service ticket)",
                           outcome::failing(call_error::clock_skew), *t);
               }});
  s.push_back(
      {"one-hop/bad/d1_killed_mid_scenario_fails_then_works_after_a_restart",
       one,
       {{"middle", "delegate"}},
       {{"middle", "dynamic"}},
       [](world& w, recorder& r) {
         auto t = w.connect_d1();
         proxy p(w.backend, *t);
         p.set_blanket(blanket_at(cloaking::dynamic, L::delegate));
         impersonation as_c1(w.backend, w.client(0));
         r.one_hop(p, "call D1", outcome::as(w.clients.client(0)), *t);
         {
           temporary_identity as_p(w.backend, nullptr);  // P started D1: only P may signal it
           w.hosts.down1().kill(SIGKILL);
         }
         r.note("D1 killed (SIGKILL)");
         r.one_hop(p, "call D1", outcome::failing(call_error::downstream_unavailable), *t);
         {
           temporary_identity as_p(w.backend, nullptr);
           w.hosts.restart_down1();
         }
         r.note("D1 restarted on the same port");
         r.one_hop(p, "call D1 (the proxy reconnects)", outcome::as(w.clients.client(0)), *t);
       }});
  return s;
}

}  // namespace

int run_hosts(const hosts_options& opt) {
  client_range clients = parse_client_range(opt.clients);
  check_client_range(clients);
  json out;
  out["hosts_run"] = true;
  out["auth"] = "kerberos";
  if (auto why = topology::unavailable_reason()) {
    out["skipped"] = *why;
    out["ok"] = true;
    out["scenarios"] = json::array();
    if (opt.as_json) {
      std::cout << out.dump(2) << "\n";
    } else {
      std::cout << "cross-host scenarios skipped: " << *why << "\n";
    }
    std::cerr << "cloak-verify: --hosts skipped: " << *why << "\n";
    return opt.skipped_exit;
  }
  if (auto why = kernel_backend_unavailable_reason()) {
    throw std::invalid_argument(
        "--hosts needs the kernel backend (the thread's identity selects the principal): " + *why);
  }
  auto backend = make_kernel_backend();
  cross_hosts_config hc;
  hc.clients = clients;
  hc.process = backend->process_identity();
  cross_hosts hosts(hc);
  const realm_info& realm = hosts.realm_description();
  // The middle's client side runs in the middle namespace: this thread's sockets (to D1 and to the
  // KDC) are created there. Processes it starts still enter their own namespaces themselves.
  os::netns_scope in_middle(hosts.middle_netns());
  auto acquiring = clock_type::now();
  kerberos_credentials credentials(realm, clients, backend->process_identity(),
                                   std::chrono::milliseconds(5000), realm.host("down1").principal);
  double credentials_seconds = std::chrono::duration<double>(clock_type::now() - acquiring).count();
  world w{*backend, hosts, credentials, clients, {}};
  w.names[realm.middle.uid] = fmt::format("P (cloak-middle@{})", realm.name);
  for (const auto& h : realm.hosts) {
    w.names[h.who.uid] = fmt::format("{} ({})", h.name == "down1" ? "D1" : "D2", h.principal);
  }
  for (std::uint32_t i = 0; i < clients.count; ++i) {
    w.names[clients.client(i).uid] =
        fmt::format("C{} (client-{}@{})", i + 1, clients.client(i).uid, realm.name);
  }

  out["backend"] = "kernel";
  out["identity_source"] =
      "kerberos over tcp: the principal of the AP-REQ's ticket, mapped by the realm's idmap";
  json topo = json::array();
  for (const auto& h : hosts.net().hosts()) {
    topo.push_back({{"name", h.name}, {"netns", h.netns}, {"address", h.address}});
  }
  out["topology"] = {
      {"subnet", std::string(topology::subnet)},      {"prefix", hosts.net().prefix()},
      {"setup_seconds", hosts.net().setup_seconds()}, {"hosts", topo},
      {"down1", hosts.down1_address().to_string()},   {"down2", hosts.down2_address().to_string()}};
  out["realm"] = {{"name", realm.name},
                  {"kdc", fmt::format("{}:{}", realm.kdc_host, realm.kdc_port)},
                  {"kdc_netns", realm.netns},
                  {"setup_seconds", realm.setup_seconds},
                  {"credentials_seconds", credentials_seconds}};
  out["world_setup_seconds"] = hosts.setup_seconds();
  out["identities"] = json::object();
  for (const auto& [uid, name] : w.names) {
    if (clients.contains_uid(uid) && uid >= clients.first_uid + 2)
      continue;  // C1, C2 are the ones used
    out["identities"][name] = uid;
  }
  out["scenarios"] = json::array();
  bool all_ok = true;
  for (auto& sc : scenarios()) {
    if (!opt.filter.empty() && sc.name.find(opt.filter) == std::string::npos) continue;
    record rec;
    rec.name = sc.name;
    rec.hosts = sc.hosts;
    rec.levels = sc.levels;
    rec.cloaking = sc.cloaking;
    recorder r(w, rec);
    try {
      sc.run(w, r);
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
                                {"hosts", rec.hosts},
                                {"levels", rec.levels},
                                {"cloaking", rec.cloaking},
                                {"steps", rec.steps},
                                {"expected", rec.expected},
                                {"seen", rec.seen},
                                {"ok", rec.ok}});
  }
  out["ok"] = all_ok;
  if (opt.as_json) {
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << fmt::format(
        "across hosts (namespaces {}-*, {}), kerberos realm {} with its KDC in {}\n\n",
        hosts.net().prefix(), topology::subnet, realm.name, realm.netns);
    std::cout << fmt::format("{:<76} {:<34} {:<34} {}\n", "scenario", "expected (last step)",
                             "seen", "ok");
    auto brief = [](const json& j) {
      std::string s;
      for (const auto& [host, v] : j.items()) {
        if (host == "seconds") continue;
        std::string what = v.contains("as") ? v["as"].get<std::string>().substr(
                                                  0, v["as"].get<std::string>().find(' '))
                           : v.contains("refused") ? "refused " + v["refused"].get<std::string>()
                           : v.contains("error")   ? v["error"].get<std::string>()
                                                   : v.dump();
        if (what.size() > 60) what = what.substr(0, 57) + "...";  // --json has all of it
        s += (s.empty() ? "" : "; ") + host + ": " + what;
      }
      return s;
    };
    for (auto& sc : out["scenarios"]) {
      std::cout << fmt::format("{:<76} {:<34} {:<34} {}\n", sc["name"].get<std::string>(),
                               brief(sc["expected"]), brief(sc["seen"]),
                               sc["ok"].get<bool>() ? "ok" : "MISMATCH");
    }
    std::cout << (all_ok ? "\nall cross-host scenarios ok\n"
                         : "\nMISMATCH: see the rows above (--json has every step)\n");
  }
  return all_ok ? 0 : 1;
}

}  // namespace cloak::verify
