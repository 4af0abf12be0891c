// CLOAK_INJECT_NS: a known slowdown of every proxy call, so a gate can be shown to catch what it
// was told about (docs/reading.md, "Calibrating the gate"). Off unless the variable is set.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

namespace cloak::bench {

// The busy spin added before every proxy call of a matrix cell and of the paired cell. It is a
// counted loop calibrated once against steady_clock, not a clock-polling loop: a clock read costs
// tens of ns on a VM and would be part of what is added.
class injected_delay {
 public:
  static constexpr std::string_view variable = "CLOAK_INJECT_NS";
  static constexpr std::int64_t max_ns = 100'000'000;  // 0.1 s per call: anything above is a typo

  // Reads CLOAK_INJECT_NS and calibrates the spin, once. Throws std::invalid_argument when the
  // value is not a whole number of ns from 0 to max_ns.
  static const injected_delay& instance() {
    static const injected_delay delay(std::getenv(variable.data()));
    return delay;
  }

  std::int64_t ns() const noexcept { return ns_; }
  bool active() const noexcept { return iterations_ != 0; }
  double iterations_per_ns() const noexcept { return iterations_per_ns_; }

  void spin() const noexcept { spin_for(iterations_); }

 private:
  explicit injected_delay(const char* text) {
    if (text == nullptr || *text == '\0') return;
    std::string_view s(text);
    std::int64_t v = 0;
    for (char ch : s) {
      if (ch < '0' || ch > '9' || v > max_ns) {
        throw std::invalid_argument(std::string(variable) + "=" + std::string(s) +
                                    ": needs a whole number of ns from 0 to " +
                                    std::to_string(max_ns));
      }
      v = v * 10 + (ch - '0');
    }
    if (v > max_ns) {
      throw std::invalid_argument(std::string(variable) + "=" + std::string(s) + ": at most " +
                                  std::to_string(max_ns) + " ns");
    }
    ns_ = v;
    if (ns_ == 0) return;
    iterations_per_ns_ = calibrate();
    iterations_ = static_cast<std::uint64_t>(static_cast<double>(ns_) * iterations_per_ns_ + 0.5);
    if (iterations_ == 0) iterations_ = 1;
  }

  static void spin_for(std::uint64_t n) noexcept {
    for (std::uint64_t i = 0; i < n; ++i) {
      asm volatile("" : "+r"(i));  // keeps the loop: the compiler cannot see through i
    }
  }

  // The fastest of several ~10 ms runs: interference only ever makes a run slower, so the
  // minimum is the loop's own speed.
  static double calibrate() {
    using clock = std::chrono::steady_clock;
    std::uint64_t n = 1 << 16;
    for (;;) {  // grow until one run takes at least 10 ms
      auto t0 = clock::now();
      spin_for(n);
      auto took = std::chrono::duration<double, std::nano>(clock::now() - t0).count();
      if (took >= 1e7 || n >= (std::uint64_t{1} << 40)) break;
      n *= 2;
    }
    double best = 0;
    for (int run = 0; run < 5; ++run) {
      auto t0 = clock::now();
      spin_for(n);
      double took = std::chrono::duration<double, std::nano>(clock::now() - t0).count();
      if (took > 0 && (best == 0 || took < best)) best = took;
    }
    return static_cast<double>(n) / best;
  }

  std::int64_t ns_ = 0;
  std::uint64_t iterations_ = 0;
  double iterations_per_ns_ = 0;
};

}  // namespace cloak::bench
