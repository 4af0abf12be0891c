// The one timed loop and the one checked call of every matrix cell, whichever channel carries it: a
// Unix socket to this machine's cloak-downstream, the in-process model, or TCP to D1 (and through
// D1 on to D2). A channel's cells set up their connection and describe it as a call_site; the rest
// is here.
#pragma once

#include <array>
#include <cloak/proxy.hpp>
#include <cloak/transport.hpp>
#include <functional>
#include <string>

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

// A connection to this machine's downstream of `place` with `package` (kerberos, ntlm: the world
// environment started before any cell; throws saying why it is missing).
std::unique_ptr<transport> connect_downstream(environment& env, placement place, package_id package,
                                              protection per_call = protection::none,
                                              ticket_state tickets = ticket_state::warm,
                                              negotiate_mech mech = negotiate_mech::krb5);

// Runs the cell's token pattern on `channel` after the cell's setup: the blanket under the first
// client, one verified call outside the timed loop, the timed calls (each checked against
// docs/design.md §1 at every hop), the counters and histograms, the leak check.
void run_cell_loop(benchmark::State& state, const matrix_cell& cell, cell_failure& failure,
                   identity_backend& backend, transport& channel,
                   const std::array<token, clients_per_thread>& tokens, const call_site& site);

}  // namespace cloak::bench
