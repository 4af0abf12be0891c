// The one timed loop of every matrix cell and the one checked call of every matrix and load cell,
// whichever channel carries it: a Unix socket to this machine's cloak-downstream, the in-process
// model, or TCP to D1 (and through D1 on to D2), through a thread's own proxy or a shared one. A
// channel's cells set up their connection and describe it as a call_site; the rest is here.
#pragma once

#include <fmt/format.h>

#include <array>
#include <cloak/connection.hpp>
#include <cloak/proxy.hpp>
#include <functional>
#include <string>

#include "inject.hpp"
#include "latency_histogram.hpp"
#include "suite.hpp"

namespace cloak::bench {

// What differs between the channels a cell calls through. Its functions run only after a call
// failed, never on the timed path.
struct call_site {
  const identity* process = nullptr;                             // P as the downstream names it
  impersonation_level level = impersonation_level::impersonate;  // the middle's blanket
  // The message for call i that failed with `r` at `hop` (1: the middle's call; 2: D1's call on to
  // D2; `detail`: that hop's account of its last establish); it also marks the far side for a
  // restart when the failure says it is broken.
  std::function<std::string(std::uint64_t i, int hop, const call_result& r,
                            const std::string& detail)>
      failed;
  // An identity as messages name it ("uid 61000 (P)").
  std::function<std::string(const identity&)> label;
  std::string seen_by = "the downstream";  // who saw a wrong identity, for its message
  std::string at;                          // " at D1": where, for the same message
  bool inject_fault = false;               // this thread injects the cell's fault (token_loop.hpp)
  std::function<void()> fault;
  // hops:2: D1 itself, whom D1's none cloaking presents to D2.
  const identity* down1 = nullptr;
};

// How a checked call reaches the downstream: the thread's own proxy on its own connection. (A
// shared proxy's is in load_cells.cpp.) Calls: call, forward, set_blanket, and detail() after a
// failure.
struct own_proxy {
  proxy& px;
  connection& conn;
  call_result call(std::span<const std::byte> payload) noexcept { return px.call(payload); }
  call_result forward(const next_hop& hop, std::span<const std::byte> payload,
                      forward_outcome& out) noexcept {
    return px.forward(hop, payload, out);
  }
  void set_blanket(const blanket& b) { px.set_blanket(b); }
  std::string detail() const { return conn.last_establish().detail; }
};

// The one checked call (docs/design.md §1 at every hop), and the prologue before a cell's timed
// calls. `Calls` is own_proxy or the like; `Failure` has fail(std::string) and failed() (a
// cell_failure, or a worker thread's). One per thread: it reads the thread's held token.
template <class Calls, class Failure>
class checked_calls {
 public:
  checked_calls(Calls& calls, cloaking mode, int hops, const call_site& site, Failure& failure,
                held_token& held)
      : calls_(calls), mode_(mode), hops_(hops), site_(site), failure_(failure), held_(held) {}

  // The CoSetProxyBlanket analogue under the thread's first client `first` (static cloaking
  // captures it), then one verified call outside the timed calls: connection and first contexts
  // are setup, not cost. False: the cell failed.
  bool begin(const token& first) {
    if (!held_.hold(first)) {
      failure_.fail(fmt::format("setup: cannot impersonate {}", to_string(first.who)));
      return false;
    }
    calls_.set_blanket(blanket{mode_, site_.level, std::nullopt});
    captured_by_blanket(mode_ == cloaking::static_ ? &first.who : nullptr);
    std::uint64_t ns = 0;
    return check(0, ns);
  }
  // Whom static cloaking captured when the blanket was set elsewhere (a shared proxy's, on another
  // thread); nullptr: P.
  void captured_by_blanket(const identity* who) {
    captured_ = who;
    // D1's static proxy captures whom D1 acts as at its first call: this one.
    down1_captured_ = expected_identity(mode_, captured_, held_.current(), *site_.process);
  }

  // Call i, checked at every hop; `ns` is its time. False after failing the cell.
  bool check(std::uint64_t i, std::uint64_t& ns) {
    const identity& want = expected_identity(mode_, captured_, held_.current(), *site_.process);
    forward_outcome& out = forwarded_;
    if (hops_ == 2) out = forward_outcome{};  // what this call's D1 reports, nothing older
    std::uint64_t t0 = now_ns();
    if (delay_.active()) [[unlikely]]
      delay_.spin();
    call_result r = hops_ == 2 ? calls_.forward(next_hop{mode_, impersonation_level::impersonate},
                                                payload_, out)
                               : calls_.call(payload_);
    ns = now_ns() - t0;
    if (!r.ok()) [[unlikely]] {
      failure_.fail(site_.failed(i, 1, r, calls_.detail()));
      return false;
    }
    if (hops_ == 2) {
      if (out.next_error != call_error::ok) [[unlikely]] {
        // D1's own call failed: its account of why travels in the reply.
        call_result next{out.next_error, out.next};
        failure_.fail(site_.failed(i, 2, next, std::string(out.detail)));
        return false;
      }
      hop2_contexts_ += out.next_contexts;
      // D1 cloaks as the middle does: none presents D1 itself; static what its proxy captured at
      // its first call on this connection; dynamic whom it acts as now.
      const identity& want2 = mode_ == cloaking::none      ? *site_.down1
                              : mode_ == cloaking::static_ ? down1_captured_
                                                           : want;
      if (mismatch(i, " at D2", "D2", want2, out.next)) return false;
    }
    return !mismatch(i, site_.at.c_str(), site_.seen_by, want, r.view);
  }

  void set_payload(std::span<const std::byte> payload) noexcept { payload_ = payload; }
  std::uint64_t hop2_contexts() const noexcept { return hop2_contexts_; }
  void reset_hop2_contexts() noexcept { hop2_contexts_ = 0; }

 private:
  bool mismatch(std::uint64_t i, const char* at, const std::string& seen_by, const identity& want,
                const downstream_view& seen) {
    if (seen.seen.same_principal(want) && !seen.anonymous) [[likely]]
      return false;
    failure_.fail(fmt::format("call {}: identity mismatch{}: {} cloaking expected {}, {} saw {}", i,
                              at, to_string(mode_), site_.label(want), seen_by,
                              seen.anonymous ? std::string("anonymous") : site_.label(seen.seen)));
    return true;
  }

  Calls& calls_;
  cloaking mode_;
  int hops_;
  const call_site& site_;
  Failure& failure_;
  held_token& held_;
  std::span<const std::byte> payload_;
  const identity* captured_ = nullptr;  // what the middle's static cloaking captured (nullptr: P)
  identity down1_captured_{};           // hops:2: what D1's static proxy captured at its first call
  std::uint64_t hop2_contexts_ = 0;
  forward_outcome forwarded_{};  // hops:2: what D1 reports of its own call (one, not one per call)
  const injected_delay& delay_ =
      injected_delay::instance();  // CLOAK_INJECT_NS, calibrated at startup
};

// A connection to this machine's downstream of `place` with `package` (kerberos, ntlm: the world
// environment started before any cell; throws saying why it is missing).
std::unique_ptr<connection> connect_downstream(environment& env, placement place,
                                               package_id package,
                                               protection per_call = protection::none,
                                               ticket_state tickets = ticket_state::warm,
                                               negotiate_mech mech = negotiate_mech::krb5);

// Runs the cell's token pattern on `conn` after the cell's setup: the blanket under the first
// client, one verified call outside the timed loop, the timed calls (each checked against
// docs/design.md §1 at every hop), the counters and histograms, the leak check.
void run_cell_loop(benchmark::State& state, const matrix_cell& cell, cell_failure& failure,
                   identity_backend& backend, connection& conn,
                   const std::array<token, clients_per_thread>& tokens, const call_site& site);

}  // namespace cloak::bench
