"""Statistics as pure functions over lists of repetitions, tested on their own."""

import math
import zlib

# numpy is imported where it is used, so the command lines that only need the constants here
# (every --help) start before, or without, Debian's python3-numpy.

DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_ALPHA = 0.05
DEFAULT_SEED = 20240601
MIN_REPETITIONS = 3
# Minimum effect when neither file recorded a noise floor, and the least we ever accept.
FALLBACK_MIN_EFFECT = 0.05
LEAST_MIN_EFFECT = 0.02

REGRESSED = "regressed"
IMPROVED = "improved"
UNCHANGED = "unchanged"
INCONCLUSIVE = "inconclusive"
FAILED = "failed"


def median(xs):
    """Median of a non-empty sequence."""
    import numpy as np
    if len(xs) == 0:
        raise ValueError("median of no values")
    return float(np.median(np.asarray(xs, dtype=float)))


def spread(xs):
    """(first quartile, third quartile): the interquartile range plots draw as whiskers."""
    import numpy as np
    a = np.asarray(xs, dtype=float)
    if a.size == 0:
        raise ValueError("spread of no values")
    q1, q3 = np.percentile(a, [25, 75])
    return float(q1), float(q3)


def relative_spread(xs):
    """The spread every table, the console summary, the noise floor and the noisy-cell warning
    use (docs/reading.md): half the interquartile range relative to the median, shown as
    "±1.5%" (0.015); 0 for a single value."""
    m = median(xs)
    q1, q3 = spread(xs)
    return (q3 - q1) / 2.0 / m if m else math.inf


def _seed_for(seed, key):
    # Each cell gets its own stream, stable whatever order cells are compared in.
    return [int(seed), zlib.crc32(str(key).encode("utf-8"))]


def bootstrap_ratio_ci(baseline, candidate, resamples=DEFAULT_RESAMPLES,
                       confidence=DEFAULT_CONFIDENCE, seed=DEFAULT_SEED, key=""):
    """Percentile bootstrap confidence interval of median(candidate) / median(baseline).

    Both samples are resampled independently with replacement; the generator is seeded
    from (seed, key) so the same inputs always give the same interval."""
    import numpy as np
    b = np.asarray(baseline, dtype=float)
    c = np.asarray(candidate, dtype=float)
    if b.size == 0 or c.size == 0:
        raise ValueError("bootstrap needs values on both sides")
    rng = np.random.default_rng(_seed_for(seed, key))
    med_b = np.median(b[rng.integers(0, b.size, size=(resamples, b.size))], axis=1)
    med_c = np.median(c[rng.integers(0, c.size, size=(resamples, c.size))], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = med_c / med_b
    if not np.all(np.isfinite(ratios)):
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(ratios, [tail, 1.0 - tail])
    return float(lo), float(hi)


def mann_whitney_p(baseline, candidate):
    """Two-sided Mann-Whitney U p-value; 1.0 when the samples cannot be told apart at all."""
    from scipy.stats import mannwhitneyu  # scipy is slow to import; only compare needs it
    if len(baseline) == 0 or len(candidate) == 0:
        return 1.0
    p = mannwhitneyu(list(baseline), list(candidate), alternative="two-sided").pvalue
    return 1.0 if p is None or math.isnan(p) else float(p)


def default_min_effect(*noise_floors):
    """max(recorded noise floors, 0.02), or 0.05 when no file recorded one."""
    known = [f for f in noise_floors if f is not None]
    if not known:
        return FALLBACK_MIN_EFFECT
    return max(max(known), LEAST_MIN_EFFECT)


def verdict(ci_low, ci_high, p_value, min_effect, n_baseline, n_candidate,
            alpha=DEFAULT_ALPHA):
    """regressed / improved / unchanged / inconclusive for one cell (see docs/reading.md).

    regressed: the whole interval is above 1 + min_effect and the U test agrees (p < alpha);
    improved: the whole interval is below 1 - min_effect and p < alpha;
    unchanged: the whole interval lies within 1 +- min_effect;
    inconclusive: anything else, including fewer than 3 repetitions on either side."""
    if n_baseline < MIN_REPETITIONS or n_candidate < MIN_REPETITIONS:
        return INCONCLUSIVE
    if math.isnan(ci_low) or math.isnan(ci_high):
        return INCONCLUSIVE
    if ci_low > 1.0 + min_effect and p_value < alpha:
        return REGRESSED
    if ci_high < 1.0 - min_effect and p_value < alpha:
        return IMPROVED
    if ci_low >= 1.0 - min_effect and ci_high <= 1.0 + min_effect:
        return UNCHANGED
    return INCONCLUSIVE


def geometric_mean(ratios):
    """Geometric mean of positive ratios; nan when there are none."""
    logs = [math.log(r) for r in ratios if r is not None and r > 0 and math.isfinite(r)]
    if not logs:
        return math.nan
    return math.exp(sum(logs) / len(logs))
