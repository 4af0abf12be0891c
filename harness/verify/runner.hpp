// The one runner: runs a scenario's steps in a world and records each step, what it expected and
// what the downstream reported.
#pragma once

#include <chrono>
#include <cloak/backend.hpp>
#include <cloak/connection.hpp>
#include <cloak/proxy.hpp>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "scenario.hpp"

namespace cloak::verify {

class tap_package;
class world;

// What one scenario holds while it runs; released innermost first (impersonations, proxies,
// connections, then what the packages borrow).
struct session {
  session() = default;
  ~session();
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  std::vector<std::shared_ptr<void>> kept;  // e.g. credentials a connection's package reads
  std::vector<std::unique_ptr<connection>> connections;
  std::vector<std::unique_ptr<proxy>> proxies;  // proxies[i] on connections[i]
  std::vector<std::unique_ptr<impersonation>> impersonations;
  tap_package* tap = nullptr;
  std::uint64_t context = 0;  // what the last `establish` made
  std::chrono::steady_clock::time_point clock = std::chrono::steady_clock::now();

  void keep(std::shared_ptr<void> p) { kept.push_back(std::move(p)); }
  std::uint64_t contexts_established() const;
};

// One scenario's outcome, as the output shows it.
struct scenario_record {
  const scenario* of = nullptr;
  std::string name;  // as the output shows it: the world's prefix (mech:M/ under negotiate), then
                     // the scenario's
  std::string mech;  // negotiate: the mechanism SPNEGO negotiated (krb5, ntlm); empty elsewhere
  nlohmann::json steps = nlohmann::json::array();
  nlohmann::json expected;  // of the last checked step
  nlohmann::json seen;
  std::uint64_t contexts = 0;
  bool ok = true;
};

// Runs every scenario of the table that runs in `w` and whose name (with the world's prefix)
// contains `filter`, checking
// after each that the thread is back to P with no token.
std::vector<scenario_record> run_scenarios(world& w, const std::string& filter);

}  // namespace cloak::verify
