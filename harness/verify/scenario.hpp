// A verify scenario as data: the worlds it runs in, its steps, and what each checked step expects.
#pragma once

#include <chrono>
#include <cloak/call.hpp>
#include <cloak/connection.hpp>
#include <cloak/identity.hpp>
#include <cloak/protocol.hpp>
#include <cloak/proxy.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace cloak {
class client_package;
}

namespace cloak::verify {

// Where a scenario runs: each authentication package against a local downstream (negotiate once
// per mechanism SPNEGO negotiates), or across hosts.
enum class world_kind : std::uint8_t {
  local = 1,
  kerberos = 2,
  ntlm = 4,
  hosts = 8,
  negotiate_krb5 = 16,
  negotiate_ntlm = 32
};
struct worlds {
  std::uint8_t bits = 0;
  constexpr bool has(world_kind k) const { return (bits & static_cast<std::uint8_t>(k)) != 0; }
};
constexpr worlds only(world_kind k) { return {static_cast<std::uint8_t>(k)}; }
inline constexpr worlds every_package{1 | 2 | 4 | 16 | 32};  // local, kerberos, ntlm, negotiate
inline constexpr worlds negotiate_mechs{16 | 32};            // negotiate over krb5 and NTLM

// An identity named by its role; the world it runs in says which uid that is.
struct who {
  enum class role : std::uint8_t { process, client, stranger, middle, d1 };
  role is = role::process;
  std::uint32_t index = 0;  // client: C(index+1)
};

// A cloaking mode's name as a scenario's name and its `cloaking` field spell it.
inline std::string mode_name(cloaking m) { return std::string(to_string(m)); }

inline constexpr who process{who::role::process};    // P as D sees it on this host
inline constexpr who stranger{who::role::stranger};  // the uid just past the fake clients
inline constexpr who middle{who::role::middle};      // P as the other hosts know it
inline constexpr who d1{who::role::d1};              // D1 as D2 knows it
constexpr who client(std::uint32_t index) { return {who::role::client, index}; }

// What a checked call expects the downstream to report.
struct expectation {
  enum class kind : std::uint8_t { identity, anonymous, error, refused };
  kind is = kind::identity;
  who whom{};
  call_error error = call_error::ok;
  protocol::status refusal = protocol::status::ok;
};
constexpr expectation sees(who w) { return {expectation::kind::identity, w}; }
inline constexpr expectation sees_anonymous{expectation::kind::anonymous};
constexpr expectation fails(call_error e) { return {expectation::kind::error, {}, e}; }
constexpr expectation refused(protocol::status s) {
  return {expectation::kind::refused, {}, call_error::refused, s};
}

struct session;  // what a running scenario holds (runner.hpp)
class world;

// How a step's connection authenticates: the world's own package unless a scenario names another.
using package_maker = std::function<std::unique_ptr<client_package>(world&, session&)>;

// Records every establish token and may alter one (to capture or tamper with what goes on the
// wire); at most one per scenario.
struct tap_spec {
  std::size_t alter_leg = 0;
  std::function<void(std::vector<std::byte>&)> alter{};  // none: only record
};

// Opens a connection to D (across hosts, D1) and a proxy on it; later steps act on this proxy.
struct open {
  package_maker package{};           // empty: the world's own connection
  std::optional<tcp_options> tcp{};  // another address than the world's downstream
  std::optional<tap_spec> tap{};
  security_defaults defaults{};
  dynamic_options dynamic{};
  bool connect_now = false;  // connect at once (as whoever the thread is then)
  bool raw = false;          // no proxy: only `reuse_context` calls on it
};

struct set_blanket {
  cloaking mode = cloaking::none;
  impersonation_level level = impersonation_level::impersonate;
  std::optional<who> explicit_identity{};
};
struct impersonate {
  who as = client(0);
  impersonation_level level = impersonation_level::impersonate;
};
struct revert {};  // every impersonation of the scenario, innermost first
// A step in the record with the thread's identity. `text` may name {stranger}, {contexts},
// {token0}, {token1} (the tapped legs' sizes) and {waited} (seconds since the last start_clock).
struct note {
  std::string text{};
};
struct call {
  std::string action{};
  expectation expect{};
};
struct access {
  std::string action{};
  std::uint32_t target_client = 0;  // the probe file only this client may read
  bool granted = true;
};
struct access_refused {
  std::string action{};
  std::uint32_t target_client = 0;
  protocol::status why = protocol::status::ok;
};
struct invalid_blanket {
  std::string action{};
  set_blanket blanket{};
};
// D1 acts as whom it authenticated and calls D2 through its own proxy.
struct forward {
  std::string action{};
  next_hop hop{};
  expectation at_d1{};
  expectation at_d2{};
};
// An unchecked call that must succeed; its context is what `reuse_context` presents.
struct establish {};
// A raw call on connection `connection` (open order) under the context `establish` made.
struct reuse_context {
  std::string action{};
  std::size_t connection = 0;
  protocol::status why = protocol::status::ok;
};
struct spoil_next_mic {};
struct spoil_next_seal {};  // prot:privacy: one bit of the next request's sealed payload flipped
struct expect_recorded_legs {
  std::size_t count = 0;
};
// The proxies established this many contexts; notes "contexts established N (<policy> expects N)".
struct expect_contexts {
  std::uint64_t want = 0;
  std::string policy{};
};
struct start_clock {};
struct within {
  std::string action{};
  double seconds = 0;  // since the last start_clock
};
enum class fault : std::uint8_t { stop_kdc, continue_kdc, kill_d1, restart_d1 };
struct inject {
  fault what = fault::stop_kdc;
};
// A D1 given another host's keytab must refuse to start, within a bound, naming the reason.
struct misconfigured_d1_refuses_to_start {
  std::string action{};
};

using step = std::variant<open, set_blanket, impersonate, revert, note, call, access,
                          access_refused, invalid_blanket, forward, establish, reuse_context,
                          spoil_next_mic, spoil_next_seal, expect_recorded_legs, expect_contexts,
                          start_clock, within, inject, misconfigured_d1_refuses_to_start>;

// What the JSON records for a cross-host scenario: the hosts it involves, and per host its level
// and cloaking.
struct hosts_shape {
  std::vector<std::string> hosts{};
  std::vector<std::pair<std::string, std::string>> levels{};
  std::vector<std::pair<std::string, std::string>> cloaking{};
};

struct scenario {
  std::string name{};
  worlds runs_in = every_package;
  std::string cloaking{};  // the mode under test (package worlds)
  hosts_shape shape{};     // across hosts
  std::vector<step> steps{};
};

// Every scenario, in the order the output lists them.
const std::vector<scenario>& all_scenarios();

// The parts of the table (scenarios_*.cpp).
void add_package_scenarios(std::vector<scenario>& table);
void add_attack_scenarios(std::vector<scenario>& table);
void add_hosts_scenarios(std::vector<scenario>& table);

}  // namespace cloak::verify
