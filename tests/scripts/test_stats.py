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


if __name__ == "__main__":
    unittest.main()
