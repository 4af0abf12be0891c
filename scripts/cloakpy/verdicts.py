"""How gate and compare word a verdict: the change, its interval, the cells that decided the outcome
and the rule, so both commands say the same thing the same way (docs/reading.md)."""

import math

from . import fmt

SHOWN_DECIDING_CELLS = 3


def change(ratio):
    """'+9.8%' for a ratio of 1.098; '—' when there is none."""
    if ratio is None or not math.isfinite(ratio):
        return "—"
    return fmt.percent(ratio - 1.0)


def interval(lower, upper):
    """'+6.1% … +13.5%'; an unbounded side (too few samples for the level) reads 'unbounded'."""
    if lower is None or upper is None or (isinstance(lower, float) and math.isnan(lower)):
        return "—"
    if lower <= 0.0 and math.isinf(upper):
        return "unbounded (too few samples)"
    lo = "unbounded" if lower <= 0.0 else fmt.percent(lower - 1.0)
    hi = "unbounded" if math.isinf(upper) else fmt.percent(upper - 1.0)
    return "%s … %s" % (lo, hi)


def confidence(level):
    """The two-sided confidence of an interval whose bounds are each one-sided at `level`."""
    if level is None or not math.isfinite(level):
        return "—"
    c = 100.0 * (1.0 - 2.0 * level)
    return ("%.3f%%" if c >= 99.9 else "%.2f%%") % c


def cell_phrase(name, ratio, lower, upper):
    return "`%s` %s (%s)" % (name, change(ratio), interval(lower, upper))


def deciding_cells(rows, limit=SHOWN_DECIDING_CELLS):
    """The few cells that decided an outcome, most extreme first: rows are (name, ratio, lower,
    upper); returns the phrase for at most `limit` of them and how many were left out."""
    ordered = sorted(rows, key=lambda r: -abs(math.log(r[1])) if r[1] and r[1] > 0 and
                     math.isfinite(r[1]) else 0.0)
    shown = [cell_phrase(*r) for r in ordered[:limit]]
    more = len(ordered) - len(shown)
    return ", ".join(shown) + (" and %d more" % more if more > 0 else "")


def rule_lines(min_effect, alpha, family_size, looks, sample, test, what="gated cells"):
    """The decision rule, as printed under every verdict. `sample` says what one sample is,
    `test` which exact distribution the intervals come from."""
    e = fmt.percent(min_effect, signed=False)
    per_look = alpha / looks
    out = [
        "Sample: %s." % sample,
        "Change: the Hodges-Lehmann estimate of candidate ÷ base; interval: distribution-free, "
        "from the exact %s distribution, its bounds each one-sided at the cell's level." % test,
        "Verdicts: **regressed** when the whole interval lies above +%s, **improved** below "
        "−%s, **unchanged** inside ±%s; anything else is **inconclusive** (never unchanged). "
        "The minimum effect ±%s is the one asked for, never widened by noise." % (e, e, e, e),
        "Family-wise: Holm's step-down over the %d %s, separately for the claims "
        "regressed, improved and unchanged, at α = %g%s. So identical code is called regressed "
        "(fails) with probability at most %g, and a cell that moved by more than ±%s is called "
        "unchanged with probability at most %g."
        % (family_size, what, alpha,
           " split evenly over at most %d looks (Bonferroni: %.4g per look; a cell keeps the "
           "first verdict a look gives it)" % (looks, per_look) if looks > 1 else "",
           alpha, e, alpha),
    ]
    return out
