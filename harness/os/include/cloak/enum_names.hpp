// An enum's names in one {value, "name"} table that both to_string and parse read, so a name added
// to one cannot be missing from the other.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace cloak {

template <class E>
struct enum_name {
  E value;
  std::string_view name;
};

// `what` names the enum in parse's error; `unknown` is what to_string gives a value not in the
// table (a cast from a number, or memory gone bad).
template <class E, std::size_t N>
class enum_names {
 public:
  constexpr enum_names(std::string_view what, std::array<enum_name<E>, N> names,
                       std::string_view unknown)
      : what_(what), names_(names), unknown_(unknown) {}

  constexpr std::string_view to_string(E value) const noexcept {
    for (const auto& n : names_) {
      if (n.value == value) return n.name;
    }
    return unknown_;
  }

  constexpr std::optional<E> find(std::string_view text) const noexcept {
    for (const auto& n : names_) {
      if (n.name == text) return n.value;
    }
    return std::nullopt;
  }

  // The names in table order: "a, b or c" (or "a, b, c" with last = ", ").
  std::string choices(std::string_view last = " or ") const {
    std::string out;
    for (std::size_t i = 0; i < N; ++i) {
      if (i > 0) out += i + 1 == N ? last : std::string_view(", ");
      out += names_[i].name;
    }
    return out;
  }

  // Throws std::invalid_argument naming the accepted values: "unknown WHAT 'TEXT' (expected a, b
  // or c)".
  E parse(std::string_view text) const {
    if (auto value = find(text)) return *value;
    throw std::invalid_argument("unknown " + std::string(what_) + " '" + std::string(text) +
                                "' (expected " + choices() + ")");
  }

  constexpr const std::array<enum_name<E>, N>& entries() const noexcept { return names_; }

 private:
  std::string_view what_;
  std::array<enum_name<E>, N> names_;
  std::string_view unknown_;
};

// make_enum_names<cloaking>("cloaking", {{cloaking::none, "none"}, ...}): the count is deduced.
template <class E, std::size_t N>
constexpr enum_names<E, N> make_enum_names(std::string_view what, const enum_name<E> (&names)[N],
                                           std::string_view unknown = "invalid") {
  return enum_names<E, N>(what, std::to_array(names), unknown);
}

}  // namespace cloak
