// Reading the name -> identity map that the kerberos and ntlm acceptors (and verify) share.
#include "idmap.hpp"

#include <fmt/format.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace cloak::detail {

idmap idmap::load(const std::string& path, std::string_view name_word) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(fmt::format("cannot read the idmap {}", path));
  idmap map;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string name;
    std::uint32_t uid = 0, gid = 0;
    if (!(fields >> name >> uid >> gid)) {
      throw std::runtime_error(
          fmt::format("{}:{}: expected \"{} uid gid group...\"", path, number, name_word));
    }
    identity who = identity::of(uid, gid);
    for (std::uint32_t g = 0; fields >> g && who.group_count < max_groups;)
      who.groups[who.group_count++] = g;
    map.by_name_.emplace(name, who);
  }
  return map;
}

const identity* idmap::find(const std::string& name) const noexcept {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &it->second;
}

}  // namespace cloak::detail
