// Pins latency_histogram's bucket scheme (a Python reader decodes the same) and its 1% accuracy.
#include "latency_histogram.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <vector>

namespace cloak::bench {
namespace {

using hist = latency_histogram;
constexpr std::uint64_t u64_max = std::numeric_limits<std::uint64_t>::max();

// The midpoint a wide bucket reports for any value in it.
std::uint64_t reported(std::uint64_t v) {
  const std::size_t i = hist::bucket_index(v);
  return hist::bucket_lower(i) + (hist::bucket_width(i) - 1) / 2;
}

double relative_error(std::uint64_t got, std::uint64_t want) {
  const long double diff =
      got > want ? static_cast<long double>(got - want) : static_cast<long double>(want - got);
  return static_cast<double>(diff / static_cast<long double>(want));
}

// Values from every magnitude, the edges of each power of two among them.
std::vector<std::uint64_t> sweep_values() {
  std::vector<std::uint64_t> values;
  for (int k = 0; k < 64; ++k) {
    const std::uint64_t p = std::uint64_t{1} << k;
    values.insert(values.end(), {p, p - 1, p + 1, p + p / 2});
  }
  values.push_back(u64_max);
  std::mt19937_64 rng(20240611);
  for (int n = 0; n < 100'000; ++n) {
    const std::uint64_t r = rng();
    values.push_back(r);
    values.push_back(r >> (rng() % 64));  // random 64-bit values are mostly near 2^63
  }
  return values;
}

TEST(latency_histogram, values_below_256_are_their_own_exact_bucket) {
  for (std::uint64_t v = 0; v < 256; ++v) {
    EXPECT_EQ(hist::bucket_index(v), v);
    EXPECT_EQ(hist::bucket_lower(v), v);
    EXPECT_EQ(hist::bucket_width(v), 1u);
  }
}

TEST(latency_histogram, bucket_indices_match_the_documented_scheme) {
  // Values the Python reader's tests use too: 256 starts the first width-2 row; 1000 is in
  // [512, 1024), e = 9, sub = (1000 >> 2) - 128 = 122, index = 3 * 128 + 122.
  EXPECT_EQ(hist::bucket_index(256), 256u);
  EXPECT_EQ(hist::bucket_index(257), 256u);
  EXPECT_EQ(hist::bucket_index(258), 257u);
  EXPECT_EQ(hist::bucket_width(256), 2u);
  EXPECT_EQ(hist::bucket_index(1000), 506u);
  EXPECT_EQ(hist::bucket_lower(506), 1000u);
  EXPECT_EQ(hist::bucket_width(506), 4u);
  EXPECT_EQ(hist::bucket_index(u64_max), 7423u);
  EXPECT_EQ(hist::bucket_count, 7424u);
  EXPECT_EQ(hist::bucket_lower(7423), std::uint64_t{255} << 56);
  EXPECT_EQ(hist::bucket_width(7423), std::uint64_t{1} << 56);
}

TEST(latency_histogram, buckets_cover_every_uint64_without_gaps_or_overlap) {
  for (std::size_t i = 0; i < hist::bucket_count; ++i) {
    const std::uint64_t lower = hist::bucket_lower(i);
    const std::uint64_t last = lower + (hist::bucket_width(i) - 1);
    ASSERT_EQ(hist::bucket_index(lower), i);
    ASSERT_EQ(hist::bucket_index(last), i);
    if (i + 1 < hist::bucket_count) {
      ASSERT_EQ(hist::bucket_lower(i + 1), last + 1) << "index " << i;
    } else {
      EXPECT_EQ(last, u64_max);
    }
  }
}

TEST(latency_histogram, every_value_is_reported_within_one_percent) {
  for (const std::uint64_t v : sweep_values()) {
    const std::size_t i = hist::bucket_index(v);
    ASSERT_LT(i, hist::bucket_count) << v;
    const std::uint64_t lower = hist::bucket_lower(i);
    const std::uint64_t width = hist::bucket_width(i);
    ASSERT_LE(lower, v);
    ASSERT_LT(v - lower, width) << v;
    ASSERT_LE(width, std::max<std::uint64_t>(1, lower / 128)) << v;
    if (v > 0) {
      ASSERT_LT(relative_error(reported(v), v), 0.01) << v;
    }
  }
}

TEST(latency_histogram, small_percentiles_are_exact_order_statistics) {
  hist h;
  for (const std::uint64_t v : {7u, 3u, 5u}) h.record(v);
  EXPECT_EQ(h.percentile(0.0), 3u);   // rank at least 1
  EXPECT_EQ(h.percentile(0.34), 5u);  // ceil(0.34 * 3) = 2
  EXPECT_EQ(h.percentile(0.5), 5u);
  EXPECT_EQ(h.percentile(0.67), 7u);
  EXPECT_EQ(h.percentile(1.0), 7u);
  EXPECT_EQ(h.percentile(-1.0), 3u);
  EXPECT_EQ(h.percentile(2.0), 7u);
  EXPECT_EQ(h.count(), 3u);
  EXPECT_EQ(h.min(), 3u);
  EXPECT_EQ(h.max(), 7u);
  EXPECT_DOUBLE_EQ(h.mean(), 5.0);
}

TEST(latency_histogram, percentiles_of_1_to_100000_are_within_one_percent) {
  hist h;
  for (std::uint64_t v = 1; v <= 100'000; ++v) h.record(v);
  for (const double q : {0.5, 0.9, 0.99, 0.999}) {
    const auto exact = static_cast<std::uint64_t>(std::ceil(q * 100'000));
    EXPECT_LT(relative_error(h.percentile(q), exact), 0.01) << q;
  }
  EXPECT_EQ(h.percentile(0.0), 1u);
  EXPECT_EQ(h.percentile(1.0), 100'000u);  // clamped to max, not the bucket's midpoint
  EXPECT_DOUBLE_EQ(h.mean(), 50'000.5);
}

TEST(latency_histogram, a_wide_bucket_reports_no_value_outside_what_was_recorded) {
  hist h;
  h.record(1'000'003);  // bucket [999424, 1003520): midpoint 1001471
  for (const double q : {0.0, 0.5, 1.0}) EXPECT_EQ(h.percentile(q), 1'000'003u) << q;
}

TEST(latency_histogram, merge_equals_recording_everything_into_one) {
  auto a = std::make_unique<hist>();
  auto b = std::make_unique<hist>();
  auto all = std::make_unique<hist>();
  std::mt19937_64 rng(7);
  for (int n = 0; n < 20'000; ++n) {
    const std::uint64_t v = rng() >> (rng() % 64);
    (n % 3 == 0 ? *a : *b).record(v);
    all->record(v);
  }
  auto merged = std::make_unique<hist>();  // empty first: its min must not stick at 0
  merged->merge(*a);
  merged->merge(*b);
  EXPECT_EQ(merged->to_json(), all->to_json());
  EXPECT_EQ(merged->count(), all->count());
  EXPECT_EQ(merged->min(), all->min());
  EXPECT_EQ(merged->max(), all->max());
  EXPECT_DOUBLE_EQ(merged->mean(), all->mean());
  for (const double q : {0.0, 0.5, 0.9, 0.99, 1.0}) {
    EXPECT_EQ(merged->percentile(q), all->percentile(q)) << q;
  }
}

TEST(latency_histogram, to_json_round_trips_bucket_indices_and_counts) {
  hist h;
  std::map<std::size_t, std::uint64_t> expected;
  std::uint64_t sum = 0;
  std::mt19937_64 rng(11);
  for (int n = 0; n < 5'000; ++n) {
    const std::uint64_t v = rng() % 10'000'000;
    h.record(v);
    ++expected[hist::bucket_index(v)];
    sum += v;
  }
  const auto j = nlohmann::json::parse(h.to_json().dump());
  EXPECT_EQ(j.at("scheme"), "log-linear/7");
  EXPECT_EQ(j.at("count").get<std::uint64_t>(), 5'000u);
  EXPECT_EQ(j.at("min").get<std::uint64_t>(), h.min());
  EXPECT_EQ(j.at("max").get<std::uint64_t>(), h.max());
  EXPECT_EQ(j.at("sum").get<std::uint64_t>(), sum);
  std::map<std::size_t, std::uint64_t> read;
  std::size_t previous = 0;
  for (const auto& bucket : j.at("buckets")) {
    ASSERT_EQ(bucket.size(), 2u);
    const auto index = bucket[0].get<std::size_t>();
    const auto count = bucket[1].get<std::uint64_t>();
    EXPECT_GT(count, 0u);
    if (!read.empty()) {
      EXPECT_GT(index, previous) << "ascending";
    }
    previous = index;
    read[index] = count;
  }
  EXPECT_EQ(read, expected);
}

TEST(latency_histogram, an_empty_histogram_reports_zero) {
  const hist h;
  EXPECT_EQ(h.count(), 0u);
  for (const double q : {0.0, 0.5, 0.99, 1.0}) EXPECT_EQ(h.percentile(q), 0u) << q;
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.mean(), 0.0);
  EXPECT_TRUE(h.to_json().at("buckets").empty());
  EXPECT_EQ(h.to_json().at("sum"), 0);
}

TEST(latency_histogram, zero_and_uint64_max_land_in_the_first_and_last_bucket) {
  hist h;
  h.record(0);
  h.record(u64_max);
  EXPECT_EQ(h.percentile(0.0), 0u);
  // The last bucket's midpoint: below max, so no clamp applies.
  EXPECT_EQ(h.percentile(1.0), (std::uint64_t{255} << 56) + ((std::uint64_t{1} << 56) - 1) / 2);
  EXPECT_LT(relative_error(h.percentile(1.0), u64_max), 0.01);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), u64_max);
  const auto j = h.to_json();
  EXPECT_EQ(j.at("buckets"), nlohmann::json::parse("[[0, 1], [7423, 1]]"));
  EXPECT_EQ(j.at("sum").get<std::uint64_t>(), u64_max);
}

TEST(latency_histogram, sum_and_mean_survive_values_past_64_bits) {
  hist h;
  h.record(u64_max);
  h.record(u64_max);
  EXPECT_DOUBLE_EQ(h.mean(), static_cast<double>(u64_max));
  EXPECT_DOUBLE_EQ(h.to_json().at("sum").get<double>(), 2.0 * static_cast<double>(u64_max));
}

TEST(latency_histogram, reset_forgets_every_value) {
  hist h;
  h.record(5);
  h.record(1'000'000);
  h.reset();
  EXPECT_EQ(h.to_json(), hist{}.to_json());
  h.record(42);
  EXPECT_EQ(h.min(), 42u);
  EXPECT_EQ(h.max(), 42u);
  EXPECT_EQ(h.percentile(0.5), 42u);
}

TEST(latency_histogram, now_ns_never_goes_backwards) {
  std::uint64_t previous = now_ns();
  EXPECT_GT(previous, 0u);
  for (int n = 0; n < 1'000; ++n) {
    const std::uint64_t t = now_ns();
    ASSERT_GE(t, previous);
    previous = t;
  }
}

}  // namespace
}  // namespace cloak::bench
