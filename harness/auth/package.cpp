// What every authentication package shares: names of packages and protection levels, and the
// defaults for packages that protect no call.
#include <cloak/auth.hpp>
#include <cloak/enum_names.hpp>

namespace cloak {

namespace {

constexpr auto package_names = make_enum_names<package_id>("package",
                                                           {{package_id::local, "local"},
                                                            {package_id::kerberos, "kerberos"},
                                                            {package_id::ntlm, "ntlm"},
                                                            {package_id::negotiate, "negotiate"},
                                                            {package_id::test, "test"}},
                                                           "unknown");

constexpr auto protection_names = make_enum_names<protection>("protection",
                                                              {{protection::none, "none"},
                                                               {protection::integrity, "integrity"},
                                                               {protection::privacy, "privacy"}},
                                                              "unknown");

}  // namespace

std::string_view to_string(package_id id) noexcept { return package_names.to_string(id); }

std::string_view to_string(protection p) noexcept { return protection_names.to_string(p); }

protection parse_protection(std::string_view text) { return protection_names.parse(text); }

bool client_package::sign(client_context_state*, std::span<const std::byte>,
                          token_buffer& mic) noexcept {
  mic.clear();
  return false;  // a package that offers no per-call protection cannot sign
}

bool client_package::seal(client_context_state*, std::span<const std::byte>,
                          token_buffer& sealed) noexcept {
  sealed.clear();
  return false;  // nor seal
}

bool client_package::unseal(client_context_state*, std::span<const std::byte>,
                            token_buffer& message) noexcept {
  message.clear();
  return false;
}

bool server_package::verify(server_context_state*, std::span<const std::byte>,
                            std::span<const std::byte>) noexcept {
  return false;
}

bool server_package::unseal(server_context_state*, std::span<const std::byte>,
                            token_buffer& message) noexcept {
  message.clear();
  return false;
}

bool server_package::seal(server_context_state*, std::span<const std::byte>,
                          token_buffer& sealed) noexcept {
  sealed.clear();
  return false;
}

}  // namespace cloak
