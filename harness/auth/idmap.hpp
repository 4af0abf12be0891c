// The map from an authenticated name (a Kerberos principal, DOMAIN\user) to the identity the
// server acts as: one file a line, "name uid gid group..." (docs/design.md §2).
#pragma once

#include <cloak/identity.hpp>
#include <string>
#include <string_view>
#include <unordered_map>

namespace cloak::detail {

class idmap {
 public:
  // Reads `path`. `name_word` is what the first column holds, for the message of a malformed
  // line ("principal", "user"). Throws std::runtime_error naming the file and line.
  static idmap load(const std::string& path, std::string_view name_word);

  // The identity of `name`; nullptr when it maps to none. Read-only: safe from many threads.
  const identity* find(const std::string& name) const noexcept;

  // Adds every name of `other` (a negotiate acceptor maps principals and DOMAIN\users alike).
  void add(const idmap& other) { by_name_.insert(other.by_name_.begin(), other.by_name_.end()); }

 private:
  std::unordered_map<std::string, identity> by_name_;
};

}  // namespace cloak::detail
