// What cloak-verify prints: the JSON document (docs/verify.md) or the table, from the records.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runner.hpp"

namespace cloak::verify {

class world;

// The whole document: the world's description, one object per record, and "ok".
nlohmann::json document(const world& w, const std::vector<scenario_record>& records);
// The document as a table, one row per scenario.
void print_table(const world& w, const nlohmann::json& doc);
// Across hosts, on a machine that cannot make network namespaces: the document or the line that
// says why.
void print_hosts_skipped(const std::string& why, bool as_json);

}  // namespace cloak::verify
