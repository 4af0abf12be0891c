"""Statistics as pure functions over lists of repetitions, tested on their own."""

import dataclasses
import functools
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


# ---- distribution-free shift inference: the gate's and compare's verdicts -----------------------
#
# A cell's change is a shift of log(time): the candidate takes ratio = exp(shift) times the base.
# The estimate is Hodges-Lehmann's; its confidence bounds and the tests behind every verdict come
# from the exact null distribution of the Wilcoxon signed-rank statistic (paired samples: one base
# and one candidate launch per round of the gate) or of the Mann-Whitney rank-sum statistic
# (unpaired samples: result files, repetitions). Each bound is the inversion of its one-sided test,
# so a verdict read off the interval and one read off the p-value always agree (docs/reading.md,
# "How the gate decides").

DEFAULT_MIN_EFFECT = 0.05      # the user's: never replaced by a measured noise floor
DEFAULT_FAMILY_ALPHA = 0.05    # family-wise rate of false claims of each kind (regressed, unchanged)
_EXACT_RANK_SUM_LIMIT = 10000  # n * m above which the rank-sum null is approximated (normal)


@functools.lru_cache(maxsize=256)
def signed_rank_null_sf(n):
    """P(W+ >= w) for w = 0 .. n(n+1)/2 + 1 under the null (no shift), exactly: the sum of the
    ranks of the positive differences among n, each sign +/- with probability 1/2."""
    import numpy as np
    top = n * (n + 1) // 2
    pmf = np.zeros(top + 1)
    pmf[0] = 1.0
    for rank in range(1, n + 1):
        shifted = np.zeros_like(pmf)
        shifted[rank:] = pmf[:-rank]
        pmf = 0.5 * (pmf + shifted)
    return _sf_from_pmf(pmf)


@functools.lru_cache(maxsize=256)
def rank_sum_null_sf(n, m):
    """P(U >= u) for u = 0 .. nm + 1 under the null, U = #{(i, j): y_j > x_i} for n base and m
    candidate values. Exact up to n * m = 10000, from the recurrence
    p[n, m](u) = n/(n+m) p[n-1, m](u - m) + m/(n+m) p[n, m-1](u) (every term positive, so the
    far tails keep their relative precision); a normal approximation beyond."""
    import numpy as np
    if n > m:
        n, m = m, n  # U's null distribution is symmetric in the two sizes
    top = n * m
    if top > _EXACT_RANK_SUM_LIMIT:
        from scipy.stats import norm
        u = np.arange(top + 1, dtype=float)
        sd = math.sqrt(n * m * (n + m + 1) / 12.0)
        # P(U = u) with the continuity correction: the mass of [u - 0.5, u + 0.5]
        return _sf_from_pmf(norm.sf((u - 0.5 - top / 2.0) / sd) - norm.sf((u + 0.5 - top / 2.0) / sd))
    # row[j] is the pmf of U for sizes (i, j), j = 0 .. m; size i * j + 1
    row = [np.ones(1) for _ in range(m + 1)]  # i = 0: U = 0
    for i in range(1, n + 1):
        new = [np.ones(1)]  # j = 0: U = 0
        for j in range(1, m + 1):
            pmf = np.zeros(i * j + 1)
            # the largest value is a base value (prob i/(i+j)): it beats none of the j candidates
            pmf[: (i - 1) * j + 1] += (i / (i + j)) * row[j]
            # the largest is a candidate value (prob j/(i+j)): it beats all i base values
            pmf[i: i + i * (j - 1) + 1] += (j / (i + j)) * new[j - 1]
            new.append(pmf)
        row = new
    return _sf_from_pmf(row[m])


def _sf_from_pmf(pmf):
    import numpy as np
    sf = np.concatenate([np.cumsum(pmf[::-1])[::-1], [0.0]])
    sf = np.minimum(sf, 1.0)
    sf.setflags(write=False)  # cached: shared by every caller
    return sf


def _critical_count(sf, level):
    """The smallest count c with P(T >= c) <= level; len(sf) - 1 + 1 when no count is that rare."""
    import numpy as np
    hits = np.nonzero(sf <= level)[0]
    return int(hits[0]) if hits.size else len(sf)


@dataclasses.dataclass
class ShiftEstimate:
    """A cell's change in log(time), estimated from launch (or file, or repetition) samples.

    `points` are the sorted Walsh averages of the paired log ratios (paired) or the sorted
    pairwise differences log(candidate) - log(base) (unpaired); their median is the
    Hodges-Lehmann estimate, and every test and bound reads their order statistics."""
    paired: bool
    n_base: int
    n_candidate: int
    points: "object"  # numpy array, sorted
    sf: "object"      # numpy array: P(T >= t) of the null, t = 0 .. len(points) + 1

    @property
    def count(self):
        return len(self.points)

    @property
    def ratio(self):
        return math.exp(float(_median_sorted(self.points))) if self.count else math.nan

    def smallest_p(self):
        """The smallest one-sided p-value these sample sizes can give at all."""
        return float(self.sf[-2]) if self.count else 1.0

    def p_greater(self, ratio):
        """One-sided p-value of 'the change is at most `ratio`' (small: the change is larger)."""
        import numpy as np
        a = math.log(ratio)
        return float(self.sf[int(np.count_nonzero(self.points > a))])

    def p_less(self, ratio):
        """One-sided p-value of 'the change is at least `ratio`' (small: the change is smaller)."""
        import numpy as np
        a = math.log(ratio)
        return float(self.sf[int(np.count_nonzero(self.points < a))])

    def bounds(self, level):
        """(lower, upper) ratio bounds, each one-sided at `level` (together a 1 - 2 level
        interval); lower > r exactly when p_greater(r) <= level, upper < r exactly when
        p_less(r) <= level. An infinite bound means the samples are too few for that level."""
        c = _critical_count(self.sf, level)
        if c > self.count or c == 0:
            return 0.0, math.inf
        lo = math.exp(float(self.points[self.count - c]))
        hi = math.exp(float(self.points[c - 1]))
        return lo, hi


def _median_sorted(a):
    n = len(a)
    return a[n // 2] if n % 2 else 0.5 * (a[n // 2 - 1] + a[n // 2])


def _logs(values):
    import numpy as np
    a = np.asarray(values, dtype=float)
    if a.size and not np.all(a > 0):
        raise ValueError("times must be positive")
    return np.log(a)


def paired_shift(base, candidate):
    """ShiftEstimate from paired samples (base[i] and candidate[i] measured in the same round):
    Wilcoxon signed-rank on the log ratios, Walsh averages for the estimate and the bounds."""
    import numpy as np
    if len(base) != len(candidate):
        raise ValueError("paired samples need the same length")
    d = _logs(candidate) - _logs(base)
    n = d.size
    if n == 0:
        return ShiftEstimate(True, 0, 0, np.zeros(0), np.array([1.0, 0.0]))
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2.0)
    return ShiftEstimate(True, n, n, walsh, signed_rank_null_sf(n))


def unpaired_shift(base, candidate):
    """ShiftEstimate from independent samples: Mann-Whitney on log(time), the pairwise
    differences for the estimate and the bounds (Moses' interval)."""
    import numpy as np
    x, y = _logs(base), _logs(candidate)
    if x.size == 0 or y.size == 0:
        return ShiftEstimate(False, x.size, y.size, np.zeros(0), np.array([1.0, 0.0]))
    diffs = np.sort((y[None, :] - x[:, None]).ravel())
    return ShiftEstimate(False, x.size, y.size, diffs, rank_sum_null_sf(x.size, y.size))


def holm(p_values, alpha, family_size=None):
    """Holm's step-down procedure. p_values: {key: p or None (not testable)}. The family has
    `family_size` hypotheses (default: every key), so cells that cannot be tested still count.
    Returns ({key: level it was rejected at}, the level Holm stopped at)."""
    k = family_size if family_size is not None else len(p_values)
    k = max(k, 1)
    ordered = sorted((p, key) for key, p in p_values.items() if p is not None)
    rejected = {}
    for rank, (p, key) in enumerate(ordered):
        level = alpha / (k - rank)
        if p > level:
            return rejected, level
        rejected[key] = level
    return rejected, alpha / max(k - len(ordered), 1)


@dataclasses.dataclass
class Decision:
    """One cell's verdict at one look, with the numbers the rule read."""
    verdict: str
    level: float          # the one-sided level the verdict (or, undecided, the widest look) used
    ratio: float
    lower: float
    upper: float
    p_value: float        # of the test behind the verdict; undecided: the smallest of the three
    n_base: int
    n_candidate: int
    note: str = ""


def decide(estimates, min_effect, alpha, family_size=None):
    """Verdicts for every cell of one look, family-wise: Holm over the cells, separately for the
    claims regressed (H0: ratio <= 1 + e), improved (H0: ratio >= 1 - e) and unchanged (two
    one-sided tests: H0: ratio >= 1 + e or ratio <= 1 - e), each family at `alpha`.

    estimates: {cell: ShiftEstimate or None (no samples: inconclusive)}. A cell is regressed
    when its lower bound at its Holm level lies above 1 + min_effect, improved when its upper
    bound lies below 1 - min_effect, unchanged when both bounds lie inside; else inconclusive."""
    hi_edge, lo_edge = 1.0 + min_effect, 1.0 - min_effect
    p_reg, p_imp, p_eq = {}, {}, {}
    for key, est in estimates.items():
        if est is None or est.count == 0:
            p_reg[key] = p_imp[key] = p_eq[key] = None
            continue
        p_reg[key] = est.p_greater(hi_edge)
        p_imp[key] = est.p_less(lo_edge) if lo_edge > 0 else 1.0
        p_eq[key] = max(est.p_less(hi_edge), est.p_greater(lo_edge) if lo_edge > 0 else 0.0)
    families = {REGRESSED: holm(p_reg, alpha, family_size), IMPROVED: holm(p_imp, alpha, family_size),
                UNCHANGED: holm(p_eq, alpha, family_size)}
    p_of = {REGRESSED: p_reg, IMPROVED: p_imp, UNCHANGED: p_eq}
    widest = min(stop for _, stop in families.values())
    out = {}
    for key, est in estimates.items():
        if est is None or est.count == 0:
            out[key] = Decision(INCONCLUSIVE, widest, math.nan, math.nan, math.nan, math.nan,
                                est.n_base if est else 0, est.n_candidate if est else 0,
                                note="no samples")
            continue
        verdict, level = INCONCLUSIVE, widest
        for claim in (REGRESSED, IMPROVED, UNCHANGED):
            if key in families[claim][0]:
                verdict, level = claim, families[claim][0][key]
                break
        p = p_of[verdict][key] if verdict != INCONCLUSIVE else min(
            p_reg[key], p_imp[key], p_eq[key])
        lo, hi = est.bounds(level)
        note = ""
        if verdict == INCONCLUSIVE and est.smallest_p() > level:
            note = ("too few samples to decide at this level (%d + %d; the smallest p they can "
                    "give is %.2g)" % (est.n_base, est.n_candidate, est.smallest_p()))
        out[key] = Decision(verdict, level, est.ratio, lo, hi, p, est.n_base, est.n_candidate,
                            note=note)
    return out


def rounds_to_decide(alpha, paired=True):
    """The smallest number of samples per side whose smallest one-sided p-value is <= alpha."""
    n = 1
    while True:
        sf = signed_rank_null_sf(n) if paired else rank_sum_null_sf(n, n)
        if sf[-2] <= alpha:
            return n
        n += 1
