// Who calls next: a population of K client identities and how popular each is (uniform or Zipf),
// drawn from a seeded generator so that a run's sequence of callers can be replayed from its seed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace cloak {

// How often each of K identities calls: `uniform`, or `zipf:S` (rank k, from 1, with probability
// 1 / (k^S * H(K,S)), H the generalised harmonic number; S > 0).
struct popularity {
  enum class kind : std::uint8_t { uniform, zipf };
  kind shape = kind::uniform;
  double exponent = 0;  // S, for zipf

  static popularity uniform() noexcept { return {}; }
  static popularity zipf(double s);  // throws std::invalid_argument unless s > 0 and finite
};
std::string to_string(const popularity& p);          // "uniform", "zipf:1" (shortest round-trip)
popularity parse_popularity(std::string_view text);  // "uniform" or "zipf:S"; invalid_argument

// The probability of each rank (index 0 is rank 1, the most popular), summing to 1. Throws
// std::invalid_argument unless k >= 1.
std::vector<double> rank_probabilities(std::size_t k, const popularity& p);

// Draws client indices 0..K-1 (index i is rank i+1: index 0 is the most popular) in O(1) per draw
// with Walker's alias method: one 64-bit draw of std::mt19937_64 picks a column and a coin. The
// sequence depends only on (K, popularity, seed), on every platform: no std distribution is used.
class population_sampler {
 public:
  // Throws std::invalid_argument unless 1 <= k <= max_population. O(K) to build.
  population_sampler(std::size_t k, const popularity& p, std::uint64_t seed);
  static constexpr std::size_t max_population = std::size_t{1} << 24;

  std::uint32_t next() noexcept;
  std::size_t size() const noexcept { return alias_.size(); }
  const popularity& shape() const noexcept { return popularity_; }
  std::uint64_t seed() const noexcept { return seed_; }

 private:
  popularity popularity_;
  std::uint64_t seed_;
  std::mt19937_64 engine_;
  std::vector<std::uint64_t> threshold_;  // keep the column when the 32-bit coin is below it
  std::vector<std::uint32_t> alias_;      // else take this index
};

}  // namespace cloak
