// Identity populations: the sampler's draws against the distributions' known frequencies (the pmf
// computed here, independently of the harness), its seeding, and the popularity option.
#include <gtest/gtest.h>

#include <cloak/population.hpp>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace cloak::test {
namespace {

// The Zipf pmf 1 / (k^S * H(K,S)) for ranks 1..K, or uniform 1/K, in long double.
std::vector<double> known_pmf(std::size_t k, double s) {
  long double h = 0;
  for (std::size_t r = 1; r <= k; ++r) h += std::pow(static_cast<long double>(r), -s);
  std::vector<double> p(k);
  for (std::size_t r = 1; r <= k; ++r)
    p[r - 1] = static_cast<double>(std::pow(static_cast<long double>(r), -s) / h);
  return p;
}

std::vector<double> uniform_pmf(std::size_t k) { return std::vector<double>(k, 1.0 / k); }

std::vector<std::uint64_t> draw_counts(std::size_t k, const popularity& p, std::uint64_t seed,
                                       std::size_t draws) {
  population_sampler sampler(k, p, seed);
  std::vector<std::uint64_t> counts(k, 0);
  for (std::size_t i = 0; i < draws; ++i) {
    std::uint32_t who = sampler.next();
    if (who >= k) {
      ADD_FAILURE() << "draw " << who << " outside 0.." << k - 1;
      break;
    }
    ++counts[who];
  }
  return counts;
}

// Pearson's statistic over bins: each of the first `top` ranks alone, the rest together.
double chi_square(const std::vector<std::uint64_t>& counts, const std::vector<double>& pmf,
                  std::size_t draws, std::size_t top) {
  double x2 = 0, rest_observed = 0, rest_expected = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    double expected = pmf[i] * static_cast<double>(draws);
    if (i < top) {
      double d = static_cast<double>(counts[i]) - expected;
      x2 += d * d / expected;
    } else {
      rest_observed += static_cast<double>(counts[i]);
      rest_expected += expected;
    }
  }
  if (rest_expected > 0) {
    double d = rest_observed - rest_expected;
    x2 += d * d / rest_expected;
  }
  return x2;
}

// Critical values of chi-square at p = 0.001 (tables): the seeds are fixed, so a pass is stable;
// a sampler off by a percent on a top rank fails by far.
constexpr double chi2_9_dof = 27.88;
constexpr double chi2_20_dof = 45.31;

TEST(population, uniform_over_ten_matches_one_tenth_each) {
  constexpr std::size_t draws = 200000;
  auto counts = draw_counts(10, popularity::uniform(), 1, draws);
  EXPECT_LT(chi_square(counts, uniform_pmf(10), draws, 10), chi2_9_dof);
}

TEST(population, zipf_one_over_ten_matches_the_pmf) {
  constexpr std::size_t draws = 200000;
  auto counts = draw_counts(10, popularity::zipf(1.0), 2, draws);
  std::vector<double> pmf = known_pmf(10, 1.0);
  EXPECT_NEAR(pmf[0], 1.0 / 2.9289682539682538, 1e-12) << "H(10,1) = 7381/2520";
  EXPECT_LT(chi_square(counts, pmf, draws, 10), chi2_9_dof);
  for (std::size_t r = 0; r < 10; ++r) {  // and each rank within 5 binomial sigmas
    double mean = pmf[r] * draws, sigma = std::sqrt(draws * pmf[r] * (1 - pmf[r]));
    EXPECT_NEAR(static_cast<double>(counts[r]), mean, 5 * sigma) << "rank " << r + 1;
  }
}

TEST(population, zipf_one_over_ten_thousand_matches_the_top_ranks_and_the_tail) {
  constexpr std::size_t k = 10000, draws = 1000000;
  auto counts = draw_counts(k, popularity::zipf(1.0), 3, draws);
  std::vector<double> pmf = known_pmf(k, 1.0);
  // H(10000,1) = 9.787606...: rank 1 is drawn about 10.2% of the time, rank 20 about 0.5%.
  EXPECT_NEAR(pmf[0], 1 / 9.787606036044382, 1e-9);
  EXPECT_LT(chi_square(counts, pmf, draws, 20), chi2_20_dof);
  for (std::size_t r = 0; r < 20; ++r) {
    double mean = pmf[r] * draws, sigma = std::sqrt(draws * pmf[r] * (1 - pmf[r]));
    EXPECT_NEAR(static_cast<double>(counts[r]), mean, 5 * sigma) << "rank " << r + 1;
  }
  // The tail exists: ranks past 1,000 hold about a quarter of the calls (H ratio).
  std::uint64_t tail = 0;
  double tail_p = 0;
  for (std::size_t r = 1000; r < k; ++r) {
    tail += counts[r];
    tail_p += pmf[r];
  }
  double sigma = std::sqrt(draws * tail_p * (1 - tail_p));
  EXPECT_NEAR(static_cast<double>(tail), tail_p * draws, 5 * sigma);
}

TEST(population, uniform_over_ten_thousand_fills_every_bin_evenly) {
  constexpr std::size_t k = 10000, draws = 1000000;
  auto counts = draw_counts(k, popularity::uniform(), 4, draws);
  // 9,999 degrees of freedom: mean 9,999, sd sqrt(2 * 9,999) ~ 141; 5 sd either way.
  double x2 = chi_square(counts, uniform_pmf(k), draws, k);
  EXPECT_NEAR(x2, 9999.0, 5 * std::sqrt(2 * 9999.0));
  for (std::size_t r = 0; r < k; ++r) ASSERT_GT(counts[r], 0u) << "rank " << r + 1;
}

TEST(population, zipf_half_over_ten_thousand_matches_the_top_ranks) {
  constexpr std::size_t k = 10000, draws = 1000000;
  auto counts = draw_counts(k, popularity::zipf(0.5), 5, draws);
  EXPECT_LT(chi_square(counts, known_pmf(k, 0.5), draws, 20), chi2_20_dof);
}

TEST(population, rank_probabilities_are_the_known_pmf) {
  for (double s : {0.5, 1.0, 2.0}) {
    std::vector<double> want = known_pmf(10000, s);
    std::vector<double> got = rank_probabilities(10000, popularity::zipf(s));
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t r : {0, 1, 9, 99, 9999}) EXPECT_NEAR(got[r] / want[r], 1.0, 1e-12) << s;
  }
  EXPECT_EQ(rank_probabilities(4, popularity::uniform()), std::vector<double>(4, 0.25));
}

TEST(population, the_same_seed_replays_the_same_callers_and_another_does_not) {
  population_sampler a(10000, popularity::zipf(1.0), 42), b(10000, popularity::zipf(1.0), 42);
  population_sampler c(10000, popularity::zipf(1.0), 43);
  std::vector<std::uint32_t> sa, sb, sc;
  for (int i = 0; i < 1000; ++i) {
    sa.push_back(a.next());
    sb.push_back(b.next());
    sc.push_back(c.next());
  }
  EXPECT_EQ(sa, sb);
  EXPECT_NE(sa, sc);
  EXPECT_EQ(a.seed(), 42u);
  EXPECT_EQ(to_string(a.shape()), "zipf:1");
}

TEST(population, a_population_of_one_always_draws_it) {
  population_sampler one(1, popularity::zipf(1.0), 7);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(one.next(), 0u);
}

TEST(population, popularity_parses_uniform_and_zipf_and_names_the_accepted_forms) {
  EXPECT_EQ(parse_popularity("uniform").shape, popularity::kind::uniform);
  EXPECT_EQ(parse_popularity("zipf:1.0").shape, popularity::kind::zipf);
  EXPECT_DOUBLE_EQ(parse_popularity("zipf:0.8").exponent, 0.8);
  EXPECT_EQ(to_string(parse_popularity("zipf:1.25")), "zipf:1.25");
  EXPECT_EQ(to_string(popularity::uniform()), "uniform");
  for (const char* bad : {"zipf:0", "zipf:-1", "zipf:", "zipf:x", "zipf", "Uniform", "zipf:1 "}) {
    EXPECT_THROW(parse_popularity(bad), std::invalid_argument) << bad;
  }
  try {
    parse_popularity("pareto");
    ADD_FAILURE() << "pareto parsed";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("uniform or zipf:S"), std::string::npos) << e.what();
  }
  EXPECT_THROW(population_sampler(0, popularity::uniform(), 1), std::invalid_argument);
}

}  // namespace
}  // namespace cloak::test
