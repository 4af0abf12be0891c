// The table, part 3: the cross-host rules of docs/design.md §1 (COM "Cloaking and Impersonation
// Levels"): one hop at impersonate level, two hops at impersonate (refused at D1) and at delegate
// (a forwarded TGT), static vs dynamic at D1, and the bad inputs a cross-host call must survive
// with a bounded, named error.
#include <fmt/format.h>

#include <chrono>

#include "packages.hpp"
#include "scenario.hpp"

namespace cloak::verify {

namespace {

using L = impersonation_level;

const std::vector<std::string> one{"middle", "down1"}, two{"middle", "down1", "down2"};

hosts_shape one_hop(std::string level, std::string cloaking) {
  return {one, {{"middle", std::move(level)}}, {{"middle", std::move(cloaking)}}};
}
hosts_shape two_hops(std::string level, std::string at_d1) {
  return {two,
          {{"middle", std::move(level)}, {"down1", "impersonate"}},
          {{"middle", "dynamic"}, {"down1", std::move(at_d1)}}};
}

}  // namespace

void add_hosts_scenarios(std::vector<scenario>& t) {
  const worlds hosts = only(world_kind::hosts);
  t.push_back(
      {.name = "one-hop/impersonate/dynamic_shows_the_client_at_d1",
       .runs_in = hosts,
       .shape = one_hop("impersonate", "dynamic"),
       .steps = {open{}, set_blanket{cloaking::dynamic, L::impersonate}, impersonate{client(0)},
                 note{"middle impersonates C1; dynamic cloaking at impersonate level; call D1 "
                      "over TCP"},
                 call{"call D1", sees(client(0))}}});
  t.push_back(
      {.name = "one-hop/impersonate/none_shows_the_middle_at_d1",
       .runs_in = hosts,
       .shape = one_hop("impersonate", "none"),
       .steps = {open{}, impersonate{client(0)}, note{"middle impersonates C1; no cloaking"},
                 call{"call D1", sees(middle)}}});
  // The client refuses the local package over tcp; D1 refuses a local establish sent anyway.
  t.push_back(
      {.name = "one-hop/local_package_over_tcp_is_refused",
       .runs_in = hosts,
       .shape = one_hop("impersonate", "dynamic"),
       .steps = {open{.package = local_package()}, set_blanket{cloaking::dynamic, L::impersonate},
                 impersonate{client(0)},
                 note{"the local package over the tcp channel: no kernel credentials cross hosts"},
                 call{"call D1 (the client side refuses)", fails(call_error::package_unavailable)},
                 open{.package = claims_local()}, set_blanket{cloaking::dynamic, L::impersonate},
                 call{"a local establish sent over TCP anyway (D1 refuses)",
                      refused(protocol::status::package_unavailable)}}});

  for (cloaking at_d1 : {cloaking::dynamic, cloaking::static_}) {
    t.push_back(
        {.name =
             fmt::format("two-hop/impersonate/{}_at_d1_is_refused_d1_holds_no_credentials_for_c",
                         mode_name(at_d1)),
         .runs_in = hosts,
         .shape = two_hops("impersonate", mode_name(at_d1)),
         .steps = {open{}, set_blanket{cloaking::dynamic, L::impersonate}, impersonate{client(0)},
                   note{fmt::format("middle impersonates C1 at impersonate level (no TGT "
                                    "forwarded); D1 {} cloaking",
                                    mode_name(at_d1))},
                   forward{"forward_call: D1 acts as C1 and calls D2 cloaked",
                           {at_d1, L::impersonate},
                           sees(client(0)),
                           fails(call_error::no_credentials)}}});
  }
  t.push_back(
      {.name = "two-hop/impersonate/none_at_d1_shows_d1_at_d2",
       .runs_in = hosts,
       .shape = two_hops("impersonate", "none"),
       .steps = {
           open{}, set_blanket{cloaking::dynamic, L::impersonate}, impersonate{client(0)},
           note{"middle impersonates C1 at impersonate level; D1 without cloaking"},
           forward{"forward_call", {cloaking::none, L::impersonate}, sees(client(0)), sees(d1)}}});
  for (cloaking at_d1 : {cloaking::dynamic, cloaking::static_}) {
    t.push_back(
        {.name = fmt::format("two-hop/delegate/{}_at_d1_shows_the_client_at_d2", mode_name(at_d1)),
         .runs_in = hosts,
         .shape = two_hops("delegate", mode_name(at_d1)),
         .steps = {
             open{}, set_blanket{cloaking::dynamic, L::delegate}, impersonate{client(0)},
             note{fmt::format("middle impersonates C1 at delegate level (GSS_C_DELEG_FLAG: "
                              "C1's TGT forwarded to D1); D1 {} cloaking",
                              mode_name(at_d1))},
             forward{"forward_call", {at_d1, L::impersonate}, sees(client(0)), sees(client(0))}}});
  }
  t.push_back(
      {.name = "two-hop/delegate/none_at_d1_shows_d1_at_d2",
       .runs_in = hosts,
       .shape = two_hops("delegate", "none"),
       .steps = {
           open{}, set_blanket{cloaking::dynamic, L::delegate}, impersonate{client(0)},
           note{"middle impersonates C1 at delegate level; D1 without cloaking: even with "
                "C1's TGT, D2 sees D1"},
           forward{"forward_call", {cloaking::none, L::impersonate}, sees(client(0)), sees(d1)}}});
  const next_hop static_hop{cloaking::static_, L::impersonate};
  t.push_back(
      {.name = "two-hop/delegate/static_at_d1_ignores_the_token_change_at_the_middle",
       .runs_in = hosts,
       .shape = two_hops("delegate", "static"),
       .steps = {open{}, set_blanket{cloaking::dynamic, L::delegate}, impersonate{client(0)},
                 note{"middle impersonates C1 (delegate); D1's proxy to D2: static cloaking from "
                      "its default"},
                 forward{"forward_call (D1's first call: static captures C1)", static_hop,
                         sees(client(0)), sees(client(0))},
                 revert{}, impersonate{client(1)},
                 note{"middle impersonates C2: a new context with D1 on the same connection"},
                 forward{"forward_call (D1 acts as C2; its static proxy still presents C1)",
                         static_hop, sees(client(1)), sees(client(0))}}});
  const next_hop dynamic_hop{cloaking::dynamic, L::impersonate};
  t.push_back(
      {.name = "two-hop/delegate/dynamic_at_d1_follows_the_token_change_at_the_middle",
       .runs_in = hosts,
       .shape = two_hops("delegate", "dynamic"),
       .steps = {open{}, set_blanket{cloaking::dynamic, L::delegate}, impersonate{client(0)},
                 note{"middle impersonates C1 (delegate); D1 dynamic cloaking"},
                 forward{"forward_call", dynamic_hop, sees(client(0)), sees(client(0))}, revert{},
                 impersonate{client(1)}, note{"middle impersonates C2"},
                 forward{"forward_call (D1 acts as C2 and presents C2, with C2's TGT)", dynamic_hop,
                         sees(client(1)), sees(client(1))}}});

  // ---- bad inputs: each a bounded, named error
  // An address of the test subnet that no host has: ARP goes unanswered inside the topology.
  t.push_back(
      {.name = "one-hop/bad/unreachable_host_times_out_within_the_bound",
       .runs_in = hosts,
       .shape = one_hop("delegate", "dynamic"),
       .steps = {
           open{.package = kerberos_package(),
                .tcp = tcp_options{"198.18.0.99", 7, std::chrono::milliseconds(1000)}},
           set_blanket{cloaking::dynamic, L::delegate}, impersonate{client(0)}, start_clock{},
           call{"call tcp:198.18.0.99:7 (no such host; bound 1 s)", fails(call_error::timeout)},
           within{"the failure came within the bound", 1.5}}});
  kerberos_client_options wrong_realm;
  wrong_realm.tickets = ticket_state::cold;
  wrong_realm.service = "cloak/down1@NO-SUCH.REALM";
  t.push_back({.name = "one-hop/bad/wrong_realm_is_a_named_kdc_error",
               .runs_in = hosts,
               .shape = one_hop("delegate", "dynamic"),
               .steps = {open{.package = kerberos_package(wrong_realm)},
                         set_blanket{cloaking::dynamic, L::delegate}, impersonate{client(0)},
                         note{"the middle asks for D1's service in a realm its KDC does not serve"},
                         call{"call D1", fails(call_error::authentication_failed)}}});
  t.push_back({.name = "one-hop/bad/wrong_keytab_stops_d1_at_startup_with_a_named_error",
               .runs_in = hosts,
               .shape = {one, {}, {}},
               .steps = {note{"start a second D1 whose keytab holds down2's key, not its own"},
                         misconfigured_d1_refuses_to_start{"cloak-downstream refuses to start"}}});
  kerberos_client_options skewed;
  skewed.tickets = ticket_state::cold;  // each new context asks the KDC
  skewed.clock_offset_seconds = 3600;   // the KDC allows 300 s
  t.push_back(
      {.name = "one-hop/bad/clock_skew_beyond_the_kdc_limit_is_refused_by_the_kdc",
       .runs_in = hosts,
       .shape = one_hop("delegate", "dynamic"),
       .steps = {open{.package = kerberos_package(skewed)},
                 set_blanket{cloaking::dynamic, L::delegate}, impersonate{client(0)},
                 note{"the middle's clock runs 3600 s ahead (its KDC requests carry that time); "
                      "the KDC's clockskew is 300 s"},
                 call{"call D1 (needs a service ticket)", fails(call_error::clock_skew)}}});
  t.push_back({.name = "one-hop/bad/d1_killed_mid_scenario_fails_then_works_after_a_restart",
               .runs_in = hosts,
               .shape = one_hop("delegate", "dynamic"),
               .steps = {open{}, set_blanket{cloaking::dynamic, L::delegate},
                         impersonate{client(0)}, call{"call D1", sees(client(0))},
                         inject{fault::kill_d1}, note{"D1 killed (SIGKILL)"},
                         call{"call D1", fails(call_error::downstream_unavailable)},
                         inject{fault::restart_d1}, note{"D1 restarted on the same port"},
                         call{"call D1 (the proxy reconnects)", sees(client(0))}}});
}

}  // namespace cloak::verify
