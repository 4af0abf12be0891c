// One way to change environment variables for a while and put them back (environment.hpp).
#include <cloak/environment.hpp>
#include <cstdlib>

namespace cloak::os {

std::optional<std::string> get_env(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return std::nullopt;
  return std::string(v);
}

void environment_override::remember(const char* name) {
  for (const auto& [saved, value] : saved_) {
    if (saved == name) return;  // the first change's value is the one to restore
  }
  saved_.emplace_back(name, get_env(name));
}

void environment_override::set(const char* name, const std::string& value) {
  remember(name);
  ::setenv(name, value.c_str(), 1);
}

void environment_override::unset(const char* name) {
  remember(name);
  ::unsetenv(name);
}

void environment_override::restore() noexcept {
  for (const auto& [name, value] : saved_) {
    if (value) {
      ::setenv(name.c_str(), value->c_str(), 1);
    } else {
      ::unsetenv(name.c_str());
    }
  }
  saved_.clear();
}

}  // namespace cloak::os
