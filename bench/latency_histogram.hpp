// Per-call latencies in fixed log-linear buckets: percentiles within 1%, no allocation per call.
#pragma once

#include <time.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>

namespace cloak::bench {

// Counts of nanosecond values in 128 linear sub-buckets per power of two. The mapping is part of
// the result format ("log-linear/7"): a Python reader computes the same indices and bounds.
class latency_histogram {
 public:
  static constexpr int sub_bucket_bits = 7;
  static constexpr std::uint64_t sub_bucket_count = std::uint64_t{1} << sub_bucket_bits;
  // (63 - 6) * 128 + 127 is the index of UINT64_MAX, the largest there is.
  static constexpr std::size_t bucket_count = (63 - 6) * 128 + 128;

  // Values below 128 are their own index; above, the top 8 significant bits pick the bucket.
  static constexpr std::size_t bucket_index(std::uint64_t v) noexcept {
    if (v < sub_bucket_count) return static_cast<std::size_t>(v);
    const int e = std::bit_width(v) - 1;
    const std::uint64_t sub = (v >> (e - sub_bucket_bits)) - sub_bucket_count;
    return static_cast<std::size_t>(e - 6) * sub_bucket_count + static_cast<std::size_t>(sub);
  }

  // Precondition for both: index < bucket_count.
  static constexpr std::uint64_t bucket_lower(std::size_t index) noexcept {
    if (index < sub_bucket_count) return index;
    const std::size_t e = index / sub_bucket_count + 6;
    const std::uint64_t sub = index % sub_bucket_count;
    return (sub_bucket_count + sub) << (e - sub_bucket_bits);
  }
  static constexpr std::uint64_t bucket_width(std::size_t index) noexcept {
    if (index < sub_bucket_count) return 1;
    return std::uint64_t{1} << (index / sub_bucket_count - 1);
  }

  void record(std::uint64_t ns) noexcept {
    ++counts_[bucket_index(ns)];
    ++count_;
    min_ = std::min(min_, ns);
    max_ = std::max(max_, ns);
    add_to_sum(0, ns);
  }

  void merge(const latency_histogram& other) noexcept {
    for (std::size_t i = 0; i < bucket_count; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
    add_to_sum(other.sum_high_, other.sum_low_);
  }

  // In place: a fresh histogram is 58 KiB, not something to build on the stack per reset.
  void reset() noexcept {
    counts_.fill(0);
    count_ = 0;
    min_ = std::numeric_limits<std::uint64_t>::max();
    max_ = 0;
    sum_low_ = 0;
    sum_high_ = 0;
  }

  std::uint64_t count() const noexcept { return count_; }
  std::uint64_t min() const noexcept { return count_ == 0 ? 0 : min_; }
  std::uint64_t max() const noexcept { return max_; }
  double mean() const noexcept {
    if (count_ == 0) return 0.0;
    return static_cast<double>(sum() / static_cast<long double>(count_));
  }

  // The value at rank ceil(q * count) (at least 1), q clamped to [0, 1]; a wide bucket answers
  // with its midpoint, which is within half a bucket (< 0.4%) of any value in it. 0 when empty.
  std::uint64_t percentile(double q) const noexcept {
    if (count_ == 0) return 0;
    if (!(q > 0.0)) q = 0.0;  // NaN too: a percentile must not read past the buckets
    if (q > 1.0) q = 1.0;
    const double wanted = std::ceil(q * static_cast<double>(count_));
    std::uint64_t rank = wanted < 1.0 ? 1 : static_cast<std::uint64_t>(wanted);
    rank = std::min(rank, count_);  // q * count can round above count for huge counts
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        const std::uint64_t value = bucket_lower(i) + (bucket_width(i) - 1) / 2;
        return std::clamp(value, min_, max_);
      }
    }
    return max_;  // not reached: the counts add up to count_
  }

  // Values in buckets that start at `ns` or above (exact when `ns` is a bucket's lower bound;
  // otherwise the bucket holding `ns` is left out).
  std::uint64_t count_from(std::uint64_t ns) const noexcept {
    std::uint64_t n = 0;
    for (std::size_t i = bucket_index(ns); i < bucket_count; ++i) {
      if (bucket_lower(i) >= ns) n += counts_[i];
    }
    return n;
  }

  // Sparse, so a result file holds only the buckets a run touched. "sum" is an integer while it
  // fits 64 bits, otherwise the nearest double.
  nlohmann::json to_json() const {
    nlohmann::json buckets = nlohmann::json::array();
    for (std::size_t i = 0; i < bucket_count; ++i) {
      if (counts_[i] != 0) buckets.push_back({i, counts_[i]});
    }
    nlohmann::json sum_json;
    if (sum_high_ == 0) {
      sum_json = sum_low_;
    } else {
      sum_json = static_cast<double>(sum());
    }
    return {{"scheme", "log-linear/7"},
            {"count", count_},
            {"min", min()},
            {"max", max()},
            {"sum", sum_json},
            {"buckets", std::move(buckets)}};
  }

 private:
  // The sum in two 64-bit halves: UINT64_MAX may be recorded, and the sum must stay exact.
  void add_to_sum(std::uint64_t high, std::uint64_t low) noexcept {
    sum_low_ += low;
    sum_high_ += high + (sum_low_ < low ? 1 : 0);
  }
  long double sum() const noexcept {
    return std::ldexp(static_cast<long double>(sum_high_), 64) + static_cast<long double>(sum_low_);
  }

  std::array<std::uint64_t, bucket_count> counts_{};
  std::uint64_t count_ = 0;
  std::uint64_t min_ = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t max_ = 0;
  std::uint64_t sum_low_ = 0;
  std::uint64_t sum_high_ = 0;
};

// clock_gettime(CLOCK_MONOTONIC) directly: each call is timed on its own, and this clock's own
// cost is what the baseline measures, so the timer must be the same call everywhere.
inline std::uint64_t now_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace cloak::bench
