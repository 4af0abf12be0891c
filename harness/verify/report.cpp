// cloak-verify's output (report.hpp): records to JSON, and the JSON to a table.
#include "report.hpp"

#include <fmt/format.h>

#include <iostream>

#include "world.hpp"

namespace cloak::verify {

namespace {

using json = nlohmann::json;

json pairs(const std::vector<std::pair<std::string, std::string>>& by_host) {
  json out = json::object();
  for (const auto& [host, value] : by_host) out[host] = value;
  return out;
}

// An expected or seen per host, in a few words: "down1: C1; down2: no credentials ...".
std::string brief(const json& j) {
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
}

}  // namespace

json document(const world& w, const std::vector<scenario_record>& records) {
  json out = w.describe();
  out["scenarios"] = json::array();
  bool all_ok = true;
  for (const scenario_record& rec : records) {
    const scenario& sc = *rec.of;
    json s{{"name", rec.name},
           {"steps", rec.steps},
           {"expected", rec.expected},
           {"seen", rec.seen},
           {"ok", rec.ok}};
    if (w.across_hosts()) {
      s["hosts"] = sc.shape.hosts;
      s["levels"] = pairs(sc.shape.levels);
      s["cloaking"] = pairs(sc.shape.cloaking);
    } else {
      s["backend"] = out["backend"];
      s["auth"] = out["auth"];
      if (!rec.mech.empty()) s["mech"] = rec.mech;
      s["cloaking"] = sc.cloaking;
      s["contexts_established"] = rec.contexts;
    }
    all_ok = all_ok && rec.ok;
    out["scenarios"].push_back(std::move(s));
  }
  out["ok"] = all_ok;
  return out;
}

void print_table(const world& w, const json& doc) {
  std::cout << w.headline();
  bool all_ok = doc["ok"].get<bool>();
  if (w.across_hosts()) {
    std::cout << fmt::format("{:<76} {:<34} {:<34} {}\n", "scenario", "expected (last step)",
                             "seen", "ok");
    for (const auto& s : doc["scenarios"]) {
      std::cout << fmt::format("{:<76} {:<34} {:<34} {}\n", s["name"].get<std::string>(),
                               brief(s["expected"]), brief(s["seen"]),
                               s["ok"].get<bool>() ? "ok" : "MISMATCH");
    }
    std::cout << (all_ok ? "\nall cross-host scenarios ok\n"
                         : "\nMISMATCH: see the rows above (--json has every step)\n");
    return;
  }
  std::cout << fmt::format("{:<58} {:<8} {:<26} {:<26} {:>4}  {}\n", "scenario", "cloaking",
                           "expected", "downstream saw", "ctx", "ok");
  for (const auto& s : doc["scenarios"]) {
    std::cout << fmt::format("{:<58} {:<8} {:<26} {:<26} {:>4}  {}\n", s["name"].get<std::string>(),
                             s["cloaking"].get<std::string>(), s["expected"].dump(),
                             s["seen"].dump(), s["contexts_established"].get<std::uint64_t>(),
                             s["ok"].get<bool>() ? "ok" : "MISMATCH");
  }
  std::cout << (all_ok ? "\nall scenarios ok\n" : "\nMISMATCH: see the rows above\n");
}

void print_hosts_skipped(const std::string& why, bool as_json) {
  json out;
  out["hosts_run"] = true;
  out["auth"] = "kerberos";
  out["skipped"] = why;
  out["ok"] = true;
  out["scenarios"] = json::array();
  if (as_json) {
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << "cross-host scenarios skipped: " << why << "\n";
  }
  std::cerr << "cloak-verify: --hosts skipped: " << why << "\n";
}

}  // namespace cloak::verify
