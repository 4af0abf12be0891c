// Who a thread or a call is: the uid, gid and groups that cloaking propagates, and tokens that
// carry them.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace cloak {

// Room for a client's own group, the extra groups of a fat token (client_range::extra_groups) and
// the process's own supplementary groups.
inline constexpr std::size_t max_groups = 80;

// An identity as the kernel knows it. Fixed capacity so the hot path never allocates.
struct identity {
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint32_t group_count = 0;
  std::array<std::uint32_t, max_groups> groups{};

  static identity of(std::uint32_t uid, std::uint32_t gid,
                     std::initializer_list<std::uint32_t> groups = {});

  // What a downstream can learn from the kernel about a peer: uid and gid.
  bool same_principal(const identity& other) const noexcept {
    return uid == other.uid && gid == other.gid;
  }
  friend bool operator==(const identity& a, const identity& b) noexcept;
};

std::string to_string(const identity& who);

// What a token allows: the COM impersonation levels.
enum class impersonation_level : std::uint8_t {
  anonymous = 1,
  identify = 2,
  impersonate = 3,
  delegate = 4,
};

std::string_view to_string(impersonation_level level) noexcept;
// Throws std::invalid_argument naming the accepted values.
impersonation_level parse_impersonation_level(std::string_view text);

// Cloaking is meaningful only when the thread's token may be used to act as its owner.
constexpr bool allows_cloaking(impersonation_level level) noexcept {
  return level >= impersonation_level::impersonate;
}

// A thread token: an identity plus the level at which it was obtained.
struct token {
  identity who;
  impersonation_level level = impersonation_level::impersonate;
  std::uint64_t id = 0;  // unique per token object, assigned by make_token
};

token make_token(const identity& who, impersonation_level level = impersonation_level::impersonate);

// The most fake clients a range may hold: a population of thousands of identities (issue 19). Each
// costs a passwd and a group lookup when the range is checked, and a probe file in a downstream's
// directory while it runs (removed when it stops). Note 61000 + 4535 reaches `nobody` (65534) on
// Debian: a large range starts elsewhere, e.g. 100000:10000.
inline constexpr std::uint32_t max_clients = 20000;

// The fake clients: a dedicated uid/gid range that belongs to no real user.
struct client_range {
  std::uint32_t first_uid = 61000;
  std::uint32_t first_gid = 61000;
  std::uint32_t count = 16;

  // A fat token's extra supplementary groups (the bench's groups:N, N <= this) come from the gids
  // right after the clients' own; check_extra_groups says whether they are free before use.
  static constexpr std::uint32_t extra_groups = 64;

  // Client `index` with its own group and, for a fat token, the first `extra` reserved gids as
  // further supplementary groups (the same for every client: it is the token's size that
  // matters). Throws std::out_of_range.
  identity client(std::uint32_t index, std::uint32_t extra = 0) const;
  bool contains_uid(std::uint32_t uid) const noexcept {
    return uid >= first_uid && uid - first_uid < count;
  }
};

// Throws std::invalid_argument when the range includes uid/gid 0, wraps, or any uid/gid in it
// belongs to an existing user or group (a benchmark must never act as a real account).
void check_client_range(const client_range& range);

// Throws std::invalid_argument when one of the `extra` gids after the range's own (what
// client(i, extra) adds) belongs to an existing group, or extra is above extra_groups. Only the
// groups:N cells need them, so check_client_range leaves them out (a small subordinate gid range in
// a user namespace has no room for them).
void check_extra_groups(const client_range& range, std::uint32_t extra);

// Parses "FIRST:COUNT" (uid and gid both start at FIRST) or "UID:GID:COUNT".
client_range parse_client_range(std::string_view text);

}  // namespace cloak
