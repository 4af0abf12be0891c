// Identities, tokens and the fake-client range, including the check that the range is nobody's.
#include <fmt/format.h>
#include <grp.h>
#include <pwd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cloak/enum_names.hpp>
#include <cloak/identity.hpp>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace cloak {

identity identity::of(std::uint32_t uid, std::uint32_t gid,
                      std::initializer_list<std::uint32_t> groups) {
  if (groups.size() > max_groups) throw std::invalid_argument("identity: too many groups");
  identity who;
  who.uid = uid;
  who.gid = gid;
  who.group_count = static_cast<std::uint32_t>(groups.size());
  std::copy(groups.begin(), groups.end(), who.groups.begin());
  return who;
}

bool operator==(const identity& a, const identity& b) noexcept {
  if (a.uid != b.uid || a.gid != b.gid || a.group_count != b.group_count) return false;
  return std::equal(a.groups.begin(), a.groups.begin() + a.group_count, b.groups.begin());
}

std::string to_string(const identity& who) {
  if (who.uid == 0xFFFFFFFFu && who.gid == 0xFFFFFFFFu) return "anonymous";
  return fmt::format("uid={} gid={}", who.uid, who.gid);
}

namespace {

constexpr auto level_names = make_enum_names<impersonation_level>(
    "impersonation level", {{impersonation_level::anonymous, "anonymous"},
                            {impersonation_level::identify, "identify"},
                            {impersonation_level::impersonate, "impersonate"},
                            {impersonation_level::delegate, "delegate"}});

}  // namespace

std::string_view to_string(impersonation_level level) noexcept {
  return level_names.to_string(level);
}

impersonation_level parse_impersonation_level(std::string_view text) {
  return level_names.parse(text);
}

token make_token(const identity& who, impersonation_level level) {
  static std::atomic<std::uint64_t> next_id{1};
  return token{who, level, next_id.fetch_add(1, std::memory_order_relaxed)};
}

identity client_range::client(std::uint32_t index, std::uint32_t extra) const {
  if (index >= count) {
    throw std::out_of_range(fmt::format("client {} outside the range of {} clients", index, count));
  }
  if (extra > extra_groups) {
    throw std::out_of_range(
        fmt::format("{} extra groups: at most {} are reserved", extra, extra_groups));
  }
  identity who = identity::of(first_uid + index, first_gid + index, {first_gid + index});
  for (std::uint32_t j = 0; j < extra; ++j) who.groups[who.group_count++] = first_gid + count + j;
  return who;
}

namespace {

bool user_exists(std::uint32_t uid) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  return getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr;
}

bool group_exists(std::uint32_t gid) {
  std::vector<char> buf(65536);
  group gr{};
  group* found = nullptr;
  return getgrgid_r(gid, &gr, buf.data(), buf.size(), &found) == 0 && found != nullptr;
}

// Whether getpwent/getgrent list every entry a lookup could find for `database`: its sources in
// /etc/nsswitch.conf are only `files` and `systemd` (both enumerate). Anything else (ldap, sss,
// compat with NIS) may answer a lookup yet list nothing.
bool enumeration_is_complete(std::string_view database) {
  std::ifstream in("/etc/nsswitch.conf");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line.substr(0, line.find('#')));
    std::string word;
    if (!(words >> word) || word != fmt::format("{}:", database)) continue;
    bool any = false;
    while (words >> word) {
      if (word.starts_with("[")) continue;  // an action such as [NOTFOUND=return]
      if (word != "files" && word != "systemd") return false;
      any = true;
    }
    return any;
  }
  return false;
}

// The smallest uid (or gid) in [first, first + count) that a user (group) has, from one pass over
// the database: for a large range, two lookups per id would take seconds.
template <typename Entry, typename Next>
std::optional<std::uint32_t> first_taken(std::uint32_t first, std::uint32_t count, Next next,
                                         std::uint32_t Entry::*id) {
  std::optional<std::uint32_t> found;
  std::vector<char> buf(65536);
  Entry e{};
  Entry* got = nullptr;
  for (;;) {
    int r = next(&e, buf.data(), buf.size(), &got);
    if (r == ERANGE && buf.size() < (std::size_t{1} << 24)) {  // a group with many members
      buf.resize(buf.size() * 2);
      continue;
    }
    if (r != 0 || !got) break;
    std::uint32_t v = got->*id;
    if (v >= first && v - first < count && (!found || v < *found)) found = v;
  }
  return found;
}

std::uint32_t parse_u32(std::string_view text, std::string_view what) {
  std::uint32_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || p != text.data() + text.size()) {
    throw std::invalid_argument(fmt::format("client range: {} '{}' is not a number", what, text));
  }
  return v;
}

}  // namespace

void check_client_range(const client_range& range) {
  if (range.count == 0) throw std::invalid_argument("client range: count must be at least 1");
  if (range.count > max_clients) {
    throw std::invalid_argument(
        fmt::format("client range: at most {} clients (asked for {})", max_clients, range.count));
  }
  if (range.first_uid == 0 || range.first_gid == 0) {
    throw std::invalid_argument("client range: uid/gid 0 (root) can never be a fake client");
  }
  if (range.first_uid > 0xFFFFFFFEu - range.count || range.first_gid > 0xFFFFFFFEu - range.count) {
    throw std::invalid_argument("client range: wraps past the largest uid/gid");
  }
  if (range.count > 256 && enumeration_is_complete("passwd") && enumeration_is_complete("group")) {
    ::setpwent();
    auto uid = first_taken<passwd>(range.first_uid, range.count, ::getpwent_r, &passwd::pw_uid);
    ::endpwent();
    ::setgrent();
    auto gid = first_taken<group>(range.first_gid, range.count, ::getgrent_r, &group::gr_gid);
    ::endgrent();
    if (uid) {
      throw std::invalid_argument(fmt::format(
          "client range: uid {} belongs to an existing user; choose another range with --clients",
          *uid));
    }
    if (gid) {
      throw std::invalid_argument(fmt::format(
          "client range: gid {} belongs to an existing group; choose another range with --clients",
          *gid));
    }
    return;
  }
  for (std::uint32_t i = 0; i < range.count; ++i) {
    if (user_exists(range.first_uid + i)) {
      throw std::invalid_argument(fmt::format(
          "client range: uid {} belongs to an existing user; choose another range with --clients",
          range.first_uid + i));
    }
    if (group_exists(range.first_gid + i)) {
      throw std::invalid_argument(fmt::format(
          "client range: gid {} belongs to an existing group; choose another range with --clients",
          range.first_gid + i));
    }
  }
}

void check_extra_groups(const client_range& range, std::uint32_t extra) {
  if (extra > client_range::extra_groups) {
    throw std::invalid_argument(
        fmt::format("{} extra groups: at most {} are reserved", extra, client_range::extra_groups));
  }
  if (range.first_gid > 0xFFFFFFFEu - range.count - extra) {
    throw std::invalid_argument("client range: its extra groups wrap past the largest gid");
  }
  for (std::uint32_t j = 0; j < extra; ++j) {
    std::uint32_t gid = range.first_gid + range.count + j;
    if (group_exists(gid)) {
      throw std::invalid_argument(fmt::format(
          "client range: gid {}, which a token with {} extra groups would carry (the gids right "
          "after the clients' own), belongs to an existing group; choose another range with "
          "--clients",
          gid, extra));
    }
  }
}

client_range parse_client_range(std::string_view text) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (;;) {
    auto colon = text.find(':', start);
    parts.push_back(text.substr(start, colon - start));
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  client_range range;
  if (parts.size() == 2) {
    range.first_uid = range.first_gid = parse_u32(parts[0], "first id");
    range.count = parse_u32(parts[1], "count");
  } else if (parts.size() == 3) {
    range.first_uid = parse_u32(parts[0], "first uid");
    range.first_gid = parse_u32(parts[1], "first gid");
    range.count = parse_u32(parts[2], "count");
  } else {
    throw std::invalid_argument(
        fmt::format("client range '{}': expected FIRST:COUNT or UID:GID:COUNT", text));
  }
  return range;
}

}  // namespace cloak
