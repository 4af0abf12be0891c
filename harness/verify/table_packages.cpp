// The table, part 1: the scenarios of docs/design.md §1 every authentication package runs against
// a downstream on this host; and the whole table in output order.
#include <fmt/format.h>

#include "scenario.hpp"

namespace cloak::verify {

namespace {

using L = impersonation_level;

// C1 -> C2 -> revert -> C1 under a dynamic proxy: D must see each, and the proxy must establish
// exactly `want` contexts (the policy decides whether C1's comes back).
std::vector<step> c1_c2_revert_c1(dynamic_options options, std::uint64_t want, std::string policy) {
  return {open{.dynamic = options},
          set_blanket{cloaking::dynamic},
          impersonate{client(0)},
          note{"impersonate C1"},
          call{"call", sees(client(0))},
          impersonate{client(1)},
          note{"impersonate C2"},
          call{"call", sees(client(1))},
          revert{},
          note{"revert"},
          call{"call", sees(process)},
          impersonate{client(0)},
          note{"impersonate C1 again"},
          call{"call", sees(client(0))},
          expect_contexts{want, std::move(policy)}};
}

}  // namespace

const std::vector<scenario>& all_scenarios() {
  static const std::vector<scenario> table = [] {
    std::vector<scenario> t;
    add_package_scenarios(t);
    add_attack_scenarios(t);
    add_hosts_scenarios(t);
    return t;
  }();
  return table;
}

void add_package_scenarios(std::vector<scenario>& t) {
  t.push_back({.name = "none_without_token",
               .cloaking = "none",
               .steps = {open{}, note{"no thread token"}, call{"call", sees(process)}}});
  t.push_back({.name = "none_with_token",
               .cloaking = "none",
               .steps = {open{}, impersonate{client(0)}, note{"impersonate C1"},
                         call{"call", sees(process)}}});
  t.push_back({.name = "static_set_blanket_then_token_change_then_revert",
               .cloaking = "static",
               .steps = {open{}, impersonate{client(0)}, note{"impersonate C1"},
                         set_blanket{cloaking::static_}, note{"set_blanket(static)"},
                         call{"call", sees(client(0))}, impersonate{client(1)},
                         note{"impersonate C2"}, call{"call", sees(client(0))}, revert{},
                         note{"revert"}, call{"call", sees(client(0))}}});
  t.push_back({.name = "static_set_without_token_called_while_impersonating",
               .cloaking = "static",
               .steps = {open{}, note{"no thread token"}, set_blanket{cloaking::static_},
                         note{"set_blanket(static)"}, impersonate{client(0)},
                         note{"impersonate C1"}, call{"call", sees(process)}}});
  t.push_back({.name = "static_set_blanket_again_recaptures",
               .cloaking = "static",
               .steps = {open{}, impersonate{client(0)}, note{"impersonate C1"},
                         set_blanket{cloaking::static_}, note{"set_blanket(static)"},
                         call{"call", sees(client(0))}, impersonate{client(1)},
                         note{"impersonate C2"}, set_blanket{cloaking::static_},
                         note{"set_blanket(static) again"}, call{"call", sees(client(1))}}});
  t.push_back({.name = "static_process_default_captures_at_first_call",
               .cloaking = "static",
               .steps = {open{.defaults = security_defaults{cloaking::static_}},
                         note{"proxy created with process default static, no thread token"},
                         impersonate{client(0)}, note{"impersonate C1"},
                         call{"first call", sees(client(0))}, impersonate{client(1)},
                         note{"impersonate C2"}, call{"call", sees(client(0))}, revert{},
                         note{"revert"}, call{"call", sees(client(0))}}});
  for (auto probe : {identity_probe::kernel, identity_probe::generation}) {
    for (auto cache : {context_cache_policy::none(), context_cache_policy::lru(4)}) {
      std::uint64_t want = cache.lru_capacity == 0 ? 4 : 3;  // C1 comes back: reused only by lru
      t.push_back({.name = fmt::format("dynamic_c1_c2_revert_c1/probe:{}/cache:{}",
                                       to_string(probe), to_string(cache)),
                   .cloaking = "dynamic",
                   .steps = c1_c2_revert_c1(dynamic_options{probe, cache}, want,
                                            fmt::format("policy {}", to_string(cache)))});
    }
  }
  dynamic_options per_message;
  per_message.authentication = dynamic_authentication::per_message;
  // D reads each call's kernel credentials: a strategy of the local package only.
  t.push_back({.name = "dynamic_c1_c2_revert_c1/per-message",
               .runs_in = only(world_kind::local),
               .cloaking = "dynamic",
               .steps = c1_c2_revert_c1(per_message, 0, "per-message authentication")});
  dynamic_options by_token;
  by_token.tracking = identity_tracking::token;
  t.push_back({.name = "dynamic_c1_reimpersonate_c1/track:token",
               .cloaking = "dynamic",
               .steps = {open{.dynamic = by_token}, set_blanket{cloaking::dynamic},
                         impersonate{client(0)}, note{"impersonate C1"},
                         call{"call", sees(client(0))}, revert{}, impersonate{client(0)},
                         note{"revert, impersonate C1 again (a new token for the same client)"},
                         call{"call", sees(client(0))}, expect_contexts{2, "track:token"}}});
  t.push_back(
      {.name = "explicit_identity",
       .cloaking = "none",
       .steps = {open{}, impersonate{client(0)}, note{"impersonate C1"},
                 set_blanket{cloaking::none, L::impersonate, client(2)},
                 note{"set_blanket(explicit identity C3)"}, call{"call", sees(client(2))}}});
  for (auto mode : {cloaking::static_, cloaking::dynamic}) {
    t.push_back(
        {.name = fmt::format("explicit_identity_with_{}_cloaking_is_invalid", mode_name(mode)),
         .cloaking = mode_name(mode),
         .steps = {open{}, invalid_blanket{"set_blanket(explicit identity C3 + cloaking)",
                                           set_blanket{mode, L::impersonate, client(2)}}}});
    t.push_back(
        {.name = fmt::format("identify_level_token_with_{}_cloaking_fails", mode_name(mode)),
         .cloaking = mode_name(mode),
         .steps = {open{}, impersonate{client(0), L::identify},
                   note{"impersonate C1 with an identify-level token"}, set_blanket{mode},
                   note{fmt::format("set_blanket({})", mode_name(mode))},
                   call{"call", fails(call_error::bad_impersonation_level)}}});
  }
  t.push_back(
      {.name = "access_check_at_impersonate_level_acts_as_caller",
       .cloaking = "dynamic",
       .steps = {open{}, set_blanket{cloaking::dynamic, L::impersonate}, impersonate{client(0)},
                 note{"impersonate C1; set_blanket(dynamic, impersonate)"},
                 access{"access_check(file only C1 may read)", 0, true},
                 access{"access_check(file only C2 may read)", 1, false}}});
  t.push_back(
      {.name = "access_check_at_identify_level_is_refused",
       .cloaking = "dynamic",
       .steps = {open{}, set_blanket{cloaking::dynamic, L::identify}, impersonate{client(0)},
                 note{"impersonate C1; set_blanket(dynamic, identify)"},
                 call{"call (D may still learn who)", sees(client(0))},
                 access_refused{"access_check(file only C1 may read)", 0,
                                protocol::status::identify_only}}});
  t.push_back(
      {.name = "anonymous_level_hides_the_caller",
       .cloaking = "dynamic",
       .steps = {open{}, set_blanket{cloaking::dynamic, L::anonymous}, impersonate{client(0)},
                 note{"impersonate C1; set_blanket(dynamic, anonymous)"},
                 call{"call", sees_anonymous}}});
}

}  // namespace cloak::verify
