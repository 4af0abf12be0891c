// Variables of this process's environment changed for a while and put back: the realm's KRB5_CONFIG
// and the ntlm domain's GSS_MECH_CONFIG are set for a run and restored when it ends.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace cloak::os {

// The variable's value, or nullopt when it is unset.
std::optional<std::string> get_env(const char* name);

// The first change to each variable remembers the value it had (or that it was unset); restore()
// and the destructor put every one back. Not thread-safe, as setenv is not: change and restore
// before other threads start or after they end.
class environment_override {
 public:
  environment_override() = default;
  ~environment_override() { restore(); }
  environment_override(const environment_override&) = delete;
  environment_override& operator=(const environment_override&) = delete;

  void set(const char* name, const std::string& value);
  void unset(const char* name);
  void restore() noexcept;

 private:
  void remember(const char* name);
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

}  // namespace cloak::os
