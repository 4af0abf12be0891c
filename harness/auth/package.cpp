// What every authentication package shares: names of packages and protection levels, and the
// defaults for packages that protect no call.
#include <fmt/format.h>

#include <cloak/auth.hpp>
#include <stdexcept>

namespace cloak {

std::string_view to_string(package_id id) noexcept {
  switch (id) {
    case package_id::local:
      return "local";
    case package_id::kerberos:
      return "kerberos";
    case package_id::ntlm:
      return "ntlm";
    case package_id::negotiate:
      return "negotiate";
    case package_id::test:
      return "test";
  }
  return "unknown";
}

std::string_view to_string(protection p) noexcept {
  switch (p) {
    case protection::none:
      return "none";
    case protection::integrity:
      return "integrity";
    case protection::privacy:
      return "privacy";
  }
  return "unknown";
}

protection parse_protection(std::string_view text) {
  if (text == "none") return protection::none;
  if (text == "integrity") return protection::integrity;
  if (text == "privacy") return protection::privacy;
  throw std::invalid_argument(
      fmt::format("unknown protection '{}' (expected none, integrity or privacy)", text));
}

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
