// The matrix table and its names, the expectation rule of docs/design.md §1, and how a cell fails.
#include <fmt/format.h>
#include <sched.h>
#include <signal.h>

#include <chrono>
#include <cloak/enum_names.hpp>
#include <cloak/os.hpp>
#include <optional>
#include <stdexcept>

#include "suite.hpp"

namespace cloak::bench {

namespace {

constexpr auto pattern_names = make_enum_names<pattern_kind>(
    "token pattern", {{pattern_kind::steady, "steady"},
                      {pattern_kind::switch_, "switch"},
                      {pattern_kind::every, "every"},
                      {pattern_kind::reimpersonate, "reimpersonate"}});

}  // namespace

std::string to_string(const token_pattern& p) {
  std::string name(pattern_names.to_string(p.kind));
  return p.kind == pattern_kind::every ? fmt::format("{}:{}", name, p.every) : name;
}

std::string cell_name(const matrix_cell& c) {
  bool dynamic = c.mode == cloaking::dynamic;
  bool kernel = c.backend == backend_kind::kernel;
  bool kerberos = c.package == package_id::kerberos;
  bool gss = kerberos || c.package == package_id::ntlm ||
             c.package == package_id::negotiate;  // a per-call protection level
  // Only a negotiate cell names its mechanism (mech:na elsewhere is the segment's absence), so the
  // names of every other package stay those of older result files.
  std::string mech = c.package == package_id::negotiate ? fmt::format("mech:{}/", to_string(c.mech))
                                                        : std::string();
  std::string probe = dynamic ? std::string(to_string(c.probe)) : "na";
  std::string cache = dynamic ? to_string(c.cache) : "na";
  std::string track = dynamic ? std::string(to_string(c.tracking)) : "na";
  if (dynamic && c.auth == dynamic_authentication::per_message) {
    // Neither probe nor context: D reads every call's kernel credentials.
    probe = "none";
    cache = "per-message";
    track = "na";
  }
  // Across hosts: chan tcp, a hops segment after tickets, and no placement (the hosts are
  // namespaces).
  bool tcp = c.hops > 0;
  return fmt::format(
      "cloak/{}/{}/auth:{}/{}{}/{}/probe:{}/cache:{}/track:{}/prot:{}/tickets:{}/{}{}place:{}/"
      "bytes:{}/"
      "threads:{}",
      to_string(c.backend),
      tcp      ? "tcp"
      : kernel ? "uds"
               : "inproc",
      to_string(c.package), mech, to_string(c.mode), to_string(c.pattern), probe, cache, track,
      gss ? std::string(to_string(c.per_call)) : "na",
      kerberos ? std::string(to_string(c.tickets)) : "na",
      tcp ? fmt::format("hops:{}/", c.hops) : "",
      c.groups > 0 ? fmt::format("groups:{}/", c.groups) : "",
      to_string(kernel && !tcp ? c.place : placement::na), c.bytes, c.threads);
}

namespace {

// Identity tracking and the kerberos package, at the headline placement (same CPU, 64 B, one
// thread).
void add_tracking_and_kerberos_cells(std::vector<matrix_cell>& cells,
                                     const token_pattern (&patterns)[4]) {
  auto base = [] {
    matrix_cell c;
    c.backend = backend_kind::kernel;
    c.place = placement::same;
    c.bytes = 64;
    c.threads = 1;
    return c;
  };
  // every:2 and every:32 beside the matrix's every:8, for the cost model of a reader's rate of
  // identity change (docs/reading.md): none, static and dynamic (kernel probe, cache none and lru).
  const token_pattern rates[] = {{pattern_kind::every, 2}, {pattern_kind::every, 32}};
  for (const token_pattern& pattern : rates) {
    for (cloaking mode : {cloaking::none, cloaking::static_, cloaking::dynamic}) {
      for (std::size_t lru : {std::size_t{0}, clients_per_thread}) {
        if (mode != cloaking::dynamic && lru != 0) continue;
        matrix_cell c = base();
        c.mode = mode;
        c.cache = lru == 0 ? context_cache_policy::none() : context_cache_policy::lru(lru);
        c.pattern = pattern;
        cells.push_back(c);
      }
    }
  }
  // track:token on the local package: every token change is a new context, even to the same client.
  for (const token_pattern& pattern : patterns) {
    matrix_cell c = base();
    c.mode = cloaking::dynamic;
    c.tracking = identity_tracking::token;
    c.pattern = pattern;
    cells.push_back(c);
  }
  // groups:N on the local package: none, static and dynamic (kernel probe, cache none) with a fat
  // token, steady and switch: what a user in many groups costs to switch to and to probe.
  for (std::uint32_t groups : {16u, 64u}) {
    for (cloaking mode : {cloaking::none, cloaking::static_, cloaking::dynamic}) {
      for (pattern_kind kind : {pattern_kind::steady, pattern_kind::switch_}) {
        matrix_cell c = base();
        c.mode = mode;
        c.pattern = token_pattern{kind, 0};
        c.groups = groups;
        cells.push_back(c);
      }
    }
  }
  // kerberos: the headline cells (default run), then the rest of the matrix
  // (--matrix=full).
  struct variant {
    cloaking mode;
    context_cache_policy cache;
  };
  const variant variants[] = {{cloaking::none, context_cache_policy::none()},
                              {cloaking::static_, context_cache_policy::none()},
                              {cloaking::dynamic, context_cache_policy::none()},
                              {cloaking::dynamic, context_cache_policy::lru(clients_per_thread)}};
  // ntlm (DCOM's RPC_C_AUTHN_WINNT): the headline variants and patterns in the default run, with
  // DCOM's integrity level on the steady calls and one token change; every:8 and the rest of
  // integrity with the full matrix.
  for (protection per_call : {protection::none, protection::integrity, protection::privacy}) {
    for (const variant& v : variants) {
      for (const token_pattern& pattern : patterns) {
        matrix_cell c = base();
        c.package = package_id::ntlm;
        c.mode = v.mode;
        c.cache = v.cache;
        c.pattern = pattern;
        c.per_call = per_call;
        bool dynamic_none = v.mode == cloaking::dynamic && v.cache.lru_capacity == 0;
        bool headline = per_call == protection::none && pattern.kind != pattern_kind::every;
        bool also_default = per_call == protection::integrity &&
                            (pattern.kind == pattern_kind::steady ||
                             (pattern.kind == pattern_kind::switch_ && dynamic_none));
        c.full_only = !headline && !also_default;
        cells.push_back(c);
      }
    }
  }
  // negotiate (DCOM's RPC_C_AUTHN_GSS_NEGOTIATE) over each mechanism: the headline variants and
  // patterns in the default run; integrity, privacy and every:8 with the full matrix. Over krb5 the
  // SPNEGO credentials hold the kerberos world's warm service tickets.
  for (negotiate_mech mech : {negotiate_mech::krb5, negotiate_mech::ntlm}) {
    for (protection per_call : {protection::none, protection::integrity, protection::privacy}) {
      for (const variant& v : variants) {
        for (const token_pattern& pattern : patterns) {
          matrix_cell c = base();
          c.package = package_id::negotiate;
          c.mech = mech;
          c.mode = v.mode;
          c.cache = v.cache;
          c.pattern = pattern;
          c.per_call = per_call;
          c.full_only = per_call != protection::none || pattern.kind == pattern_kind::every;
          cells.push_back(c);
        }
      }
    }
  }
  for (protection per_call : {protection::none, protection::integrity, protection::privacy}) {
    for (ticket_state tickets : {ticket_state::warm, ticket_state::cold}) {
      for (identity_tracking tracking : {identity_tracking::identity, identity_tracking::token}) {
        for (const variant& v : variants) {
          if (tracking == identity_tracking::token && v.mode != cloaking::dynamic) continue;
          std::vector<token_pattern> kerberos_patterns(std::begin(patterns), std::end(patterns));
          kerberos_patterns.insert(kerberos_patterns.end(), std::begin(rates), std::end(rates));
          for (const token_pattern& pattern : kerberos_patterns) {
            matrix_cell c = base();
            c.package = package_id::kerberos;
            c.mode = v.mode;
            c.cache = v.cache;
            c.pattern = pattern;
            c.per_call = per_call;
            c.tickets = tickets;
            c.tracking = tracking;
            bool dynamic_none = v.mode == cloaking::dynamic && v.cache.lru_capacity == 0;
            // every:N at N = 2, 8, 32 checks the cost model against measurement.
            bool headline = per_call == protection::none &&
                            tracking == identity_tracking::identity &&
                            (tickets == ticket_state::warm ||
                             (pattern.kind == pattern_kind::switch_ && dynamic_none));
            // DCOM's integrity level on the steady calls and one token change; token tracking on
            // re-impersonation: what a review asks beside the headline.
            bool also_default =
                (per_call == protection::integrity && tickets == ticket_state::warm &&
                 tracking == identity_tracking::identity &&
                 (pattern.kind == pattern_kind::steady ||
                  (pattern.kind == pattern_kind::switch_ && dynamic_none))) ||
                (tracking == identity_tracking::token && per_call == protection::none &&
                 tickets == ticket_state::warm && dynamic_none &&
                 pattern.kind == pattern_kind::reimpersonate);
            c.full_only = !headline && !also_default;
            bool rate = pattern.kind == pattern_kind::every;
            if (rate && pattern.every != every_n &&
                (tickets != ticket_state::warm || per_call != protection::none ||
                 tracking != identity_tracking::identity)) {
              continue;  // every:2 and every:32 (the cost model's checks) for the headline variants
                         // only
            }
            c.quick =
                headline && tickets == ticket_state::warm &&
                (pattern.kind == pattern_kind::steady || pattern.kind == pattern_kind::switch_) &&
                v.cache.lru_capacity == 0;
            cells.push_back(c);
          }
        }
      }
    }
  }
}

}  // namespace

std::vector<matrix_cell> matrix_table() {
  const token_pattern patterns[] = {{pattern_kind::steady, 0},
                                    {pattern_kind::switch_, 0},
                                    {pattern_kind::every, every_n},
                                    {pattern_kind::reimpersonate, 0}};
  struct variant {
    cloaking mode;
    identity_probe probe;
    context_cache_policy cache;
    dynamic_authentication auth = dynamic_authentication::context;
  };
  const variant variants[] = {
      {cloaking::none, identity_probe::kernel, context_cache_policy::none()},
      {cloaking::static_, identity_probe::kernel, context_cache_policy::none()},
      {cloaking::dynamic, identity_probe::kernel, context_cache_policy::none()},
      {cloaking::dynamic, identity_probe::kernel, context_cache_policy::lru(clients_per_thread)},
      {cloaking::dynamic, identity_probe::generation, context_cache_policy::none()},
      {cloaking::dynamic, identity_probe::generation,
       context_cache_policy::lru(clients_per_thread)},
      // Per-message authentication is measured with one client thread only (run-time budget).
      {cloaking::dynamic, identity_probe::kernel, context_cache_policy::none(),
       dynamic_authentication::per_message},
  };
  std::vector<matrix_cell> cells;
  for (backend_kind backend : {backend_kind::kernel, backend_kind::model}) {
    std::vector<placement> places =
        backend == backend_kind::kernel
            ? std::vector<placement>{placement::same, placement::cross, placement::unpinned}
            : std::vector<placement>{placement::na};
    for (placement place : places) {
      for (std::size_t bytes : {std::size_t{64}, std::size_t{4096}}) {
        for (int threads : {1, 2}) {
          for (const variant& v : variants) {
            if (v.auth == dynamic_authentication::per_message && threads != 1) continue;
            for (const token_pattern& pattern : patterns) {
              matrix_cell c;
              c.backend = backend;
              c.mode = v.mode;
              c.probe = v.probe;
              c.cache = v.cache;
              c.auth = v.auth;
              c.pattern = pattern;
              c.place = place;
              c.bytes = bytes;
              c.threads = threads;
              c.quick = backend == backend_kind::kernel && place == placement::same &&
                        bytes == 64 && threads == 1;
              cells.push_back(c);
            }
          }
        }
      }
    }
  }
  add_tracking_and_kerberos_cells(cells, patterns);
  return cells;
}

const identity& expected_identity(cloaking mode, const identity* captured, const identity* current,
                                  const identity& process) noexcept {
  switch (mode) {
    case cloaking::none:
      return process;  // P, whatever the token is
    case cloaking::static_:
      return captured ? *captured : process;  // fixed at set_blanket
    case cloaking::dynamic:
      return current ? *current : process;  // the token at this call
  }
  return process;
}

namespace {
thread_local const std::string* current_cell = nullptr;
}  // namespace

void run_cell(benchmark::State& state, const std::string& name,
              const std::function<void(benchmark::State&)>& run) {
  environment& env = environment::instance();
  current_cell = &name;
  if (auto earlier = env.failures().earlier(name)) {
    cell_failure failure(state);
    failure.repeat(*earlier);
    failure.drain();
  } else {
    run(state);
  }
  current_cell = nullptr;
}

void cell_failure::fail(const std::string& message) { fail(message, false, false); }

void cell_failure::interrupt() { fail("interrupted", false, true); }

void cell_failure::fail(const std::string& message, bool repeated, bool interrupted) {
  if (failed_) return;
  failed_ = true;
  message_ = message;
  environment& env = environment::instance();
  int signal = env.interrupted();
  if (current_cell && !repeated) env.failures().record(*current_cell, message, interrupted);
  // Whatever goes wrong once a stop was asked for (a downstream that got the signal too, say) is
  // the interruption, not a failure of the cell: readers drop interrupted cells instead.
  if (signal != 0 && !interrupted && !repeated) {
    state_.SkipWithError(fmt::format("interrupted (signal {}): {}", signal, message).c_str());
  } else {
    state_.SkipWithError(message.c_str());
  }
}

void cell_failure::drain() {
  for (auto _ : state_) {
  }
}

}  // namespace cloak::bench
