"""The gate's sequential test, apart from any launching: the looks' round counts, each cell's
samples per round, one look's Holm decision over them, and the gate's verdict and exit status.
Plain functions over numbers (stats.py holds the tests themselves)."""

import dataclasses
import math
from typing import List, Optional

from .. import exits


def first_decidable_rounds(alpha, looks, family_size, paired=True):
    """The fewest samples per side whose smallest p-value can pass Holm's first step."""
    from .. import stats
    return stats.rounds_to_decide(alpha / looks / family_size, paired=paired)


def plan_looks(first, last, looks):
    """Round counts of the looks: `first`, then geometric up to `last`, at most `looks` of them,
    strictly increasing."""
    if last <= first or looks == 1:
        return [max(first, 1)] if looks == 1 or last <= first else [first]
    out = []
    for i in range(looks):
        n = int(round(first * (last / first) ** (i / (looks - 1))))
        if not out or n > out[-1]:
            out.append(n)
    return out


@dataclasses.dataclass
class CellRecord:
    name: str
    base: List[Optional[float]] = dataclasses.field(default_factory=list)       # per round
    candidate: List[Optional[float]] = dataclasses.field(default_factory=list)  # per round
    failed: str = ""
    failed_side: str = ""
    decision: object = None        # stats.Decision once a look decided it (kept from then on)
    decided_look: int = 0
    decided_round: int = 0
    last: object = None            # the latest look's Decision (for undecided cells)

    def pairs(self):
        """(base, candidate) of the rounds where both launches measured the cell."""
        b, c = [], []
        for x, y in zip(self.base, self.candidate):
            if x is not None and y is not None and x > 0 and y > 0:
                b.append(x)
                c.append(y)
        return b, c

    @property
    def open(self):
        return self.decision is None and not self.failed

    @property
    def verdict(self):
        """The cell's verdict so far: failed, the decided one, or inconclusive."""
        from .. import stats
        return "failed" if self.failed else self.decision.verdict if self.decision \
            else stats.INCONCLUSIVE


def estimate(record, paired=True):
    """A cell's estimate from its samples so far (None: nothing to estimate from)."""
    from .. import stats
    if record.failed:
        return None
    if paired:
        b, c = record.pairs()
        return stats.paired_shift(b, c) if b else None
    b = [x for x in record.base if x]
    c = [x for x in record.candidate if x]
    return stats.unpaired_shift(b, c) if b and c else None


def take_look(records, min_effect, alpha_per_look, look, rounds, paired=True):
    """One look: every gated cell's estimate from its samples so far (decided cells keep theirs,
    frozen), Holm over all of them, and the first verdict of each cell kept."""
    from .. import stats
    estimates = {r.name: estimate(r, paired) for r in records.values()}
    decisions = stats.decide(estimates, min_effect, alpha_per_look, family_size=len(records))
    for name, d in decisions.items():
        r = records[name]
        r.last = d
        if r.open and d.verdict != stats.INCONCLUSIVE:
            r.decision, r.decided_look, r.decided_round = d, look, rounds
    return decisions


def final_verdict(records, fail_on_inconclusive=False):
    """(verdict word, exit status) of the whole gate: the convention of exits.py."""
    from .. import stats
    failed = any(r.failed for r in records.values())
    verdicts = [r.decision.verdict if r.decision else stats.INCONCLUSIVE for r in records.values()]
    regressed = stats.REGRESSED in verdicts
    inconclusive = stats.INCONCLUSIVE in verdicts
    code = exits.status(failed or regressed, inconclusive, fail_on_inconclusive)
    if failed:
        return "FAILED", code
    if regressed:
        return "REGRESSED", code
    if inconclusive:
        return "INCONCLUSIVE", code
    return "PASS", code


PROJECTION_LIMIT = 20  # an undecided cell's projection is capped at this many times its samples


def samples_to_decide(record, min_effect):
    """How many samples (rounds; with --files, files per side) this undecided cell would need to
    be decided at the level its last look used. Its interval narrows as 1/sqrt(samples): from
    the half-width w at n samples (w = z se at that level), a cell that has not clearly moved
    (its estimate within min effect + 2 se of no change) is projected as unchanged in truth,
    needing n ((w + 1.645 se) / e)^2 for its interval to fit inside ±e with about 95% chance
    (e = min effect); one that clearly moved needs n (w / r)^2, r the room between its estimate
    and the edge it passed. Capped at PROJECTION_LIMIT n; None when it cannot be said (decided,
    failed, or too few samples for any interval yet). The projection's coverage is measured in
    tests/scripts/test_gate.py."""
    from statistics import NormalDist
    d = record.last
    if record.decision or record.failed or d is None or not d.n_base:
        return None
    if not (d.lower > 0 and math.isfinite(d.upper) and d.ratio > 0 and 0 < d.level < 0.5):
        return None
    n = d.n_base
    centre = math.log(d.ratio)
    half = (math.log(d.upper) - math.log(d.lower)) / 2
    se = half / NormalDist().inv_cdf(1 - d.level)
    edge = math.log1p(min_effect) if centre >= 0 else -math.log1p(-min_effect)
    if abs(centre) - 2 * se > edge:  # it moved: regressed or improved once narrow enough
        need = n * (half / (abs(centre) - edge)) ** 2
    else:  # inside ±e on both sides: the nearer edge, log(1 + e), bounds the room
        need = n * ((half + NormalDist().inv_cdf(0.95) * se) / math.log1p(min_effect)) ** 2
    return min(PROJECTION_LIMIT * n, max(n + 1, math.ceil(need)))


def projected_samples(records, min_effect):
    """The samples the undecided cells would need (the most any of them needs), or None when some
    undecided cell cannot be projected."""
    needs = [samples_to_decide(r, min_effect) for r in records.values() if r.open]
    return None if not needs or None in needs else max(needs)


def side_medians(record):
    """(base, candidate) medians of a cell's per-round samples (None where none were taken)."""
    from ..stats import median
    b = [x for x in record.base if x]
    c = [x for x in record.candidate if x]
    return (median(b) if b else None), (median(c) if c else None)


def verdict_counts(records):
    """How many cells have each verdict so far, as "3 unchanged, 1 failed" parts."""
    counts = {}
    for r in records.values():
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    return ", ".join("%d %s" % (n, v) for v, n in sorted(counts.items()))
