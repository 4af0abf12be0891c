// Identity populations: the popularity shapes, their exact probabilities and the alias sampler.
#include <fmt/format.h>

#include <charconv>
#include <cloak/population.hpp>
#include <cmath>
#include <stdexcept>

namespace cloak {

popularity popularity::zipf(double s) {
  if (!(s > 0) || !std::isfinite(s)) {
    throw std::invalid_argument(fmt::format("popularity zipf:{}: the exponent must be > 0", s));
  }
  return popularity{kind::zipf, s};
}

std::string to_string(const popularity& p) {
  return p.shape == popularity::kind::uniform ? std::string("uniform")
                                              : fmt::format("zipf:{}", p.exponent);
}

popularity parse_popularity(std::string_view text) {
  if (text == "uniform") return popularity::uniform();
  if (text.starts_with("zipf:")) {
    auto digits = text.substr(5);
    double s = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), s);
    if (ec == std::errc{} && end == digits.data() + digits.size() && !digits.empty())
      return popularity::zipf(s);
  }
  throw std::invalid_argument(
      fmt::format("unknown popularity '{}' (expected uniform or zipf:S with S > 0)", text));
}

std::vector<double> rank_probabilities(std::size_t k, const popularity& p) {
  if (k == 0) throw std::invalid_argument("a population needs at least one identity");
  std::vector<double> weight(k, 1.0);
  if (p.shape == popularity::kind::zipf) {
    for (std::size_t i = 0; i < k; ++i)
      weight[i] = std::pow(static_cast<double>(i + 1), -p.exponent);
  }
  // Summed from the smallest term up: H(K,S) to the last bit even for K in the millions.
  double total = 0;
  for (std::size_t i = k; i-- > 0;) total += weight[i];
  for (double& w : weight) w /= total;
  return weight;
}

population_sampler::population_sampler(std::size_t k, const popularity& p, std::uint64_t seed)
    : popularity_(p), seed_(seed), engine_(seed) {
  if (k == 0 || k > max_population) {
    throw std::invalid_argument(
        fmt::format("a population of {} identities: expected 1..{}", k, max_population));
  }
  // Vose's alias method: every column holds probability 1/K, split between its own index and at
  // most one alias that tops it up.
  std::vector<double> scaled = rank_probabilities(k, p);
  for (double& x : scaled) x *= static_cast<double>(k);
  threshold_.assign(k, 0);
  alias_.resize(k);
  std::vector<std::uint32_t> small, large;
  for (std::uint32_t i = 0; i < k; ++i) (scaled[i] < 1.0 ? small : large).push_back(i);
  constexpr double one = 4294967296.0;  // the coin is 32 bits
  while (!small.empty() && !large.empty()) {
    std::uint32_t s = small.back(), l = large.back();
    small.pop_back();
    threshold_[s] = static_cast<std::uint64_t>(scaled[s] * one);
    alias_[s] = l;
    scaled[l] -= 1.0 - scaled[s];
    if (scaled[l] < 1.0) {
      large.pop_back();
      small.push_back(l);
    }
  }
  // What is left is 1 up to rounding: those columns always keep their own index.
  for (const auto* rest : {&large, &small}) {
    for (std::uint32_t i : *rest) {
      threshold_[i] = std::uint64_t{1} << 32;
      alias_[i] = i;
    }
  }
}

std::uint32_t population_sampler::next() noexcept {
  std::uint64_t u = engine_();
  // The high half picks the column by multiply-shift (bias below K / 2^32), the low half the coin.
  auto column = static_cast<std::uint32_t>(((u >> 32) * alias_.size()) >> 32);
  return (u & 0xFFFFFFFFu) < threshold_[column] ? column : alias_[column];
}

}  // namespace cloak
