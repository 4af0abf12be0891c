"""The statistics compare relies on, tested on their own."""

import math
import unittest

import helpers  # noqa: F401  (puts scripts/ on sys.path for cloakpy)
from cloakpy import stats


class MedianAndSpread(unittest.TestCase):
    def test_median_of_odd_and_even_counts(self):
        self.assertEqual(stats.median([3, 1, 2]), 2.0)
        self.assertEqual(stats.median([4, 1, 3, 2]), 2.5)

    def test_median_of_nothing_is_an_error(self):
        with self.assertRaises(ValueError):
            stats.median([])

    def test_spread_is_the_interquartile_range(self):
        self.assertEqual(stats.spread([1, 2, 3, 4, 5]), (2.0, 4.0))

    def test_relative_spread_is_half_the_iqr_over_the_median(self):
        self.assertAlmostEqual(stats.relative_spread([90, 95, 100, 105, 110]), 0.05)
        self.assertEqual(stats.relative_spread([7.0]), 0.0)


class BootstrapInterval(unittest.TestCase):
    base = [100.0, 101.0, 99.0, 100.5, 99.5]

    def test_same_inputs_same_interval(self):
        a = stats.bootstrap_ratio_ci(self.base, [x * 1.3 for x in self.base], key="cell")
        b = stats.bootstrap_ratio_ci(self.base, [x * 1.3 for x in self.base], key="cell")
        self.assertEqual(a, b)

    def test_interval_covers_a_known_ratio(self):
        lo, hi = stats.bootstrap_ratio_ci(self.base, [x * 1.3 for x in self.base])
        self.assertLessEqual(lo, 1.3)
        self.assertGreaterEqual(hi, 1.3)
        self.assertGreater(lo, 1.25)

    def test_identical_constant_samples_give_a_point_interval(self):
        self.assertEqual(stats.bootstrap_ratio_ci([5.0] * 4, [5.0] * 4), (1.0, 1.0))

    def test_zero_baseline_gives_no_interval(self):
        lo, hi = stats.bootstrap_ratio_ci([0.0] * 3, [1.0] * 3)
        self.assertTrue(math.isnan(lo) and math.isnan(hi))


class MannWhitney(unittest.TestCase):
    def test_separated_samples_are_significant(self):
        self.assertLess(stats.mann_whitney_p([1, 2, 3, 4, 5], [11, 12, 13, 14, 15]), 0.01)

    def test_same_samples_are_not(self):
        self.assertEqual(stats.mann_whitney_p([1, 2, 3], [1, 2, 3]), 1.0)

    def test_all_ties_are_not(self):
        self.assertEqual(stats.mann_whitney_p([5.0] * 5, [5.0] * 5), 1.0)


class Verdict(unittest.TestCase):
    def v(self, lo, hi, p, n=5, effect=0.03):
        return stats.verdict(lo, hi, p, effect, n, n)

    def test_regressed_needs_the_whole_interval_above_and_a_small_p(self):
        self.assertEqual(self.v(1.25, 1.35, 0.008), stats.REGRESSED)
        self.assertEqual(self.v(1.25, 1.35, 0.2), stats.INCONCLUSIVE)
        self.assertEqual(self.v(1.02, 1.35, 0.008), stats.INCONCLUSIVE)

    def test_improved_is_the_mirror_image(self):
        self.assertEqual(self.v(0.7, 0.8, 0.008), stats.IMPROVED)
        self.assertEqual(self.v(0.7, 0.99, 0.008), stats.INCONCLUSIVE)

    def test_unchanged_needs_the_whole_interval_inside_the_minimum_effect(self):
        self.assertEqual(self.v(0.98, 1.02, 0.5), stats.UNCHANGED)
        self.assertEqual(self.v(0.98, 1.02, 0.008), stats.UNCHANGED)
        self.assertEqual(self.v(0.9, 1.1, 0.5), stats.INCONCLUSIVE)

    def test_fewer_than_three_repetitions_is_inconclusive(self):
        self.assertEqual(self.v(1.25, 1.35, 0.001, n=2), stats.INCONCLUSIVE)
        self.assertEqual(self.v(1.0, 1.0, 1.0, n=1), stats.INCONCLUSIVE)

    def test_no_interval_is_inconclusive(self):
        self.assertEqual(self.v(math.nan, math.nan, 1.0), stats.INCONCLUSIVE)


class MinimumEffectAndGeometricMean(unittest.TestCase):
    def test_default_min_effect_uses_the_larger_noise_floor_at_least_two_percent(self):
        self.assertEqual(stats.default_min_effect(0.03, 0.04), 0.04)
        self.assertEqual(stats.default_min_effect(0.005, None), 0.02)
        self.assertEqual(stats.default_min_effect(None, None), 0.05)

    def test_geometric_mean(self):
        self.assertAlmostEqual(stats.geometric_mean([2.0, 0.5]), 1.0)
        self.assertAlmostEqual(stats.geometric_mean([1.1, 1.1, 1.1]), 1.1)
        self.assertTrue(math.isnan(stats.geometric_mean([])))


class ExactNullDistributions(unittest.TestCase):
    """The exact distributions every interval and test of compare and gate read."""

    def brute_rank_sum(self, n, m):
        import itertools
        counts = {}
        for ranks in itertools.combinations(range(n + m), m):
            chosen = set(ranks)
            u = sum(1 for y in ranks for x in range(n + m) if x not in chosen and x < y)
            counts[u] = counts.get(u, 0) + 1
        total = math.comb(n + m, m)
        return [sum(c for u2, c in counts.items() if u2 >= u) / total for u in range(n * m + 2)]

    def test_rank_sum_matches_enumeration(self):
        for n, m in ((1, 1), (2, 3), (4, 4), (3, 6)):
            with self.subTest(n=n, m=m):
                for a, b in zip(stats.rank_sum_null_sf(n, m), self.brute_rank_sum(n, m)):
                    self.assertAlmostEqual(a, b, places=12)

    def test_rank_sum_tails_keep_their_precision(self):
        self.assertAlmostEqual(stats.rank_sum_null_sf(60, 80)[-2] * math.comb(140, 60), 1.0,
                               places=6)

    def test_signed_rank_matches_enumeration(self):
        import itertools
        n = 7
        counts = {}
        for signs in itertools.product((0, 1), repeat=n):
            w = sum(r + 1 for r, s in enumerate(signs) if s)
            counts[w] = counts.get(w, 0) + 1
        sf = stats.signed_rank_null_sf(n)
        for w in range(n * (n + 1) // 2 + 2):
            self.assertAlmostEqual(sf[w], sum(c for v, c in counts.items() if v >= w) / 2 ** n)

    def test_p_values_agree_with_scipy(self):
        import numpy as np
        from scipy.stats import mannwhitneyu, wilcoxon
        rng = np.random.default_rng(5)
        x, y = rng.normal(size=12), rng.normal(size=15) + 0.4
        e = stats.unpaired_shift(np.exp(x), np.exp(y))
        self.assertAlmostEqual(e.p_greater(1.0), mannwhitneyu(y, x, alternative="greater",
                                                              method="exact").pvalue)
        d = rng.normal(size=14) + 0.3
        e = stats.paired_shift(np.ones(14), np.exp(d))
        self.assertAlmostEqual(e.p_greater(1.0), wilcoxon(d, alternative="greater",
                                                          mode="exact").pvalue)


class ShiftIntervals(unittest.TestCase):
    def test_bounds_and_tests_agree_exactly(self):
        import numpy as np
        rng = np.random.default_rng(6)
        for paired in (True, False):
            b = np.exp(rng.normal(0, 0.05, 20))
            c = np.exp(rng.normal(0.08, 0.05, 20))
            e = stats.paired_shift(b, c) if paired else stats.unpaired_shift(b, c)
            for level in (0.001, 0.01, 0.05):
                lo, hi = e.bounds(level)
                for r in (lo * 0.999, lo * 1.001, hi * 0.999, hi * 1.001):
                    self.assertEqual(e.p_greater(r) <= level, r < lo, (paired, level, r))
                    self.assertEqual(e.p_less(r) <= level, r > hi, (paired, level, r))

    def test_a_known_ratio_is_estimated(self):
        base = [100.0, 101.0, 99.0, 100.5, 99.5, 100.2, 99.8]
        e = stats.unpaired_shift(base, [x * 1.3 for x in base])
        self.assertAlmostEqual(e.ratio, 1.3, places=6)
        e = stats.paired_shift(base, [x * 1.3 for x in base])
        self.assertAlmostEqual(e.ratio, 1.3, places=6)

    def test_too_few_samples_give_an_unbounded_interval(self):
        e = stats.paired_shift([1.0, 1.0, 1.0], [2.0, 2.0, 2.0])  # smallest p: 1/8
        self.assertEqual(e.bounds(0.01), (0.0, math.inf))
        self.assertAlmostEqual(e.smallest_p(), 0.125)

    def test_holm_steps_down_and_stops_at_the_first_failure(self):
        rejected, stop = stats.holm({"a": 0.001, "b": 0.02, "c": 0.03, "d": 0.5}, 0.05)
        self.assertEqual(rejected, {"a": 0.0125})
        self.assertAlmostEqual(stop, 0.05 / 3)
        rejected, _ = stats.holm({"a": 0.001, "b": 0.012, "c": 0.02, "d": 0.04}, 0.05)
        self.assertEqual(set(rejected), {"a", "b", "c", "d"})
        rejected, _ = stats.holm({"a": 0.001, "b": None}, 0.05, family_size=2)
        self.assertEqual(rejected, {"a": 0.025})


def _family(rng, cells, n, sigma, ratio, paired=True):
    import numpy as np
    out = {}
    for c in range(cells):
        b = np.exp(rng.normal(0.0, sigma, n))
        r = ratio[c] if isinstance(ratio, (list, tuple)) else ratio
        y = np.exp(rng.normal(math.log(r), sigma, n))
        out[c] = stats.paired_shift(b, y) if paired else stats.unpaired_shift(b, y)
    return out


class FamilyWiseVerdicts(unittest.TestCase):
    """decide() on synthetic samples with known answers: A/A stays within the stated rate, a
    10% shift with low noise is caught, high noise is inconclusive, never unchanged."""

    def test_identical_code_fails_within_the_stated_rate_over_many_seeds(self):
        import numpy as np
        rng = np.random.default_rng(7)
        trials = 300
        fails = sum(any(d.verdict == stats.REGRESSED for d in
                        stats.decide(_family(rng, 12, 20, 0.05, 1.0), 0.05, 0.05).values())
                    for _ in range(trials))
        self.assertLessEqual(fails, 26)  # binomial(300, 0.05) exceeds 26 with p < 0.1%

    def test_the_worst_case_null_stays_within_the_rate(self):
        # Every cell exactly 5% slower: the hardest truth for "regressed by more than 5%".
        import numpy as np
        rng = np.random.default_rng(8)
        trials = 300
        reg = unch = 0
        for _ in range(trials):
            v = [d.verdict for d in stats.decide(_family(rng, 12, 30, 0.02, 1.05), 0.05,
                                                 0.05).values()]
            reg += stats.REGRESSED in v
            unch += stats.UNCHANGED in v
        self.assertLessEqual(reg, 26)
        self.assertLessEqual(unch, 26)

    def test_a_ten_percent_shift_with_low_noise_is_regressed(self):
        import numpy as np
        rng = np.random.default_rng(9)
        ratios = [1.10] + [1.0] * 11
        d = stats.decide(_family(rng, 12, 20, 0.02, ratios), 0.05, 0.05)
        self.assertEqual(d[0].verdict, stats.REGRESSED)
        self.assertGreater(d[0].lower, 1.05)
        self.assertEqual({d[c].verdict for c in range(1, 12)}, {stats.UNCHANGED})

    def test_high_noise_is_inconclusive_not_unchanged(self):
        import numpy as np
        rng = np.random.default_rng(10)
        for _ in range(20):
            d = stats.decide(_family(rng, 12, 20, 0.30, 1.10), 0.05, 0.05)
            self.assertNotIn(stats.UNCHANGED, {x.verdict for x in d.values()})

    def test_a_cell_without_samples_is_inconclusive(self):
        d = stats.decide({"a": None}, 0.05, 0.05)
        self.assertEqual(d["a"].verdict, stats.INCONCLUSIVE)

    def test_unpaired_samples_follow_the_same_rule(self):
        import numpy as np
        rng = np.random.default_rng(11)
        d = stats.decide(_family(rng, 4, 15, 0.01, [1.2, 1.0, 0.8, 1.0], paired=False), 0.05, 0.05)
        self.assertEqual([d[c].verdict for c in range(4)],
                         [stats.REGRESSED, stats.UNCHANGED, stats.IMPROVED, stats.UNCHANGED])

    def test_rounds_to_decide(self):
        self.assertEqual(stats.rounds_to_decide(0.05 / 60), 11)  # 2^-11 <= 0.00083
        self.assertEqual(stats.rounds_to_decide(0.05, paired=False), 3)  # 1/C(6,3) = 0.05


if __name__ == "__main__":
    unittest.main()
