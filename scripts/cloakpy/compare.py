"""Compares two result files cell by cell and decides, per cell, whether it regressed."""

import dataclasses
import math
from typing import List, Optional

from . import derive, fmt, stats
from .load import LoadError, UNKNOWN

ABSOLUTE = "absolute"
CROSS_MACHINE = "cross-machine"

_VERDICT_ORDER = (stats.FAILED, stats.REGRESSED, stats.INCONCLUSIVE, stats.IMPROVED,
                  stats.UNCHANGED)


class CompareRefused(LoadError):
    """Two files that must not be compared the way that was asked."""


@dataclasses.dataclass
class CellComparison:
    name: str
    unit: str  # "ns" for absolute times, "ratio" for same-run ratios
    baseline_median: Optional[float]
    candidate_median: Optional[float]
    ratio: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    p_value: Optional[float]
    verdict: str
    n_baseline: int
    n_candidate: int
    note: str = ""
    failed_in_candidate: bool = False


@dataclasses.dataclass
class Comparison:
    mode: str
    baseline: dict
    candidate: dict
    min_effect: float
    min_effect_source: str
    alpha: float
    confidence: float
    resamples: int
    seed: int
    rows: List[CellComparison]
    added: List[str]
    removed: List[str]
    geometric_mean: float
    notes: List[str]

    def counts(self):
        out = {v: 0 for v in _VERDICT_ORDER}
        for row in self.rows:
            out[row.verdict] += 1
        return out


def _describe(result):
    return {"path": result.path, "commit": result.commit, "date": result.date,
            "machine_hash": result.machine_hash, "machine": result.machine_summary(),
            "schema_version": result.schema_version if result.schema_version is not None
            else UNKNOWN, "noise_floor": result.noise_floor}


def check_comparable(baseline, candidate, cross_machine):
    """Refuse absolute comparisons across machines or schema versions (raises CompareRefused);
    return notes about what could not be checked."""
    notes = []
    if cross_machine:
        return notes
    vb, vc = baseline.schema_version, candidate.schema_version
    if vb is not None and vc is not None and vb != vc:
        raise CompareRefused(
            "%s has schema version %s but %s has %s; use --cross-machine to compare "
            "same-run ratios" % (baseline.path, vb, candidate.path, vc))
    hb, hc = baseline.machine_hash, candidate.machine_hash
    if hb != UNKNOWN and hc != UNKNOWN and hb != hc:
        raise CompareRefused(
            "%s (machine %s) and %s (machine %s) come from different machines; absolute "
            "times do not compare across machines, use --cross-machine to compare "
            "same-run ratios" % (baseline.path, hb, candidate.path, hc))
    for r in (baseline, candidate):
        if r.machine_hash == UNKNOWN:
            notes.append("%s records no machine fingerprint (unknown); assuming both files "
                         "come from the same machine" % r.path)
    return notes


def resolve_min_effect(baseline, candidate, override):
    """The minimum effect and where it came from (docs/reading.md)."""
    if override is not None:
        return override, "set by --min-effect"
    floors = [r.noise_floor for r in (baseline, candidate)]
    value = stats.default_min_effect(*floors)
    if all(f is None for f in floors):
        return value, "default: neither file recorded a noise floor"
    return value, "the larger cloak_noise_floor recorded in the two files, at least %s" % \
        fmt.percent(stats.LEAST_MIN_EFFECT, signed=False)


def compare_samples(name, unit, base, cand, min_effect, alpha, resamples, confidence, seed,
                    base_failed=False, cand_failed=False, note=""):
    """One cell: medians, ratio, bootstrap interval, U test and verdict."""
    nb, nc = len(base), len(cand)
    if base_failed or cand_failed:
        side = "candidate" if cand_failed else "baseline"
        if base_failed and cand_failed:
            side = "both files"
        return CellComparison(
            name, unit, stats.median(base) if nb else None, stats.median(cand) if nc else None,
            None, None, None, None, stats.FAILED, nb, nc,
            note=("failed in %s%s" % (side, ": " + note if note else "")),
            failed_in_candidate=cand_failed)
    mb, mc = stats.median(base), stats.median(cand)
    ratio = mc / mb if mb > 0 else math.nan
    lo, hi = stats.bootstrap_ratio_ci(base, cand, resamples=resamples, confidence=confidence,
                                      seed=seed, key=name)
    p = stats.mann_whitney_p(base, cand)
    verdict = stats.verdict(lo, hi, p, min_effect, nb, nc, alpha=alpha)
    if verdict == stats.INCONCLUSIVE and min(nb, nc) < stats.MIN_REPETITIONS:
        note = "fewer than %d repetitions" % stats.MIN_REPETITIONS
    return CellComparison(name, unit, mb, mc, ratio, lo, hi, p, verdict, nb, nc, note=note)


def _absolute_series(result):
    return {name: (c.samples, c.failed, c.error_message, c.from_aggregates)
            for name, c in result.cells.items()}


def _ratio_series(result):
    return {name: (r.samples, r.failed, "", False)
            for name, r in derive.same_run_ratios(result).items()}


def compare_results(baseline, candidate, min_effect=None, alpha=stats.DEFAULT_ALPHA,
                    resamples=stats.DEFAULT_RESAMPLES, confidence=stats.DEFAULT_CONFIDENCE,
                    seed=stats.DEFAULT_SEED, cross_machine=False):
    """Compare two loaded results; raises CompareRefused for inputs that cannot be compared."""
    notes = check_comparable(baseline, candidate, cross_machine)
    effect, source = resolve_min_effect(baseline, candidate, min_effect)
    if cross_machine:
        mode, unit = CROSS_MACHINE, "ratio"
        series_b, series_c = _ratio_series(baseline), _ratio_series(candidate)
        for r, s in ((baseline, series_b), (candidate, series_c)):
            if not s:
                raise CompareRefused("%s has no same-run ratios (no cloakbench matrix cells "
                                     "with their baselines) to compare across machines" % r.path)
    else:
        mode, unit = ABSOLUTE, "ns"
        series_b, series_c = _absolute_series(baseline), _absolute_series(candidate)
    common = [n for n in series_b if n in series_c]
    if not common:
        raise CompareRefused("%s and %s have no cells in common" % (baseline.path, candidate.path))
    rows = []
    for name in common:
        sb, fb, eb, ab = series_b[name]
        sc, fc, ec, ac = series_c[name]
        note = ec or eb
        if not (fb or fc) and (ab or ac):
            note = "only aggregates in the file, no repetitions"
        rows.append(compare_samples(name, unit, sb, sc, effect, alpha, resamples, confidence,
                                    seed, base_failed=fb, cand_failed=fc, note=note))
    ratios = [r.ratio for r in rows if r.verdict != stats.FAILED and r.ratio is not None]
    return Comparison(
        mode=mode, baseline=_describe(baseline), candidate=_describe(candidate),
        min_effect=effect, min_effect_source=source, alpha=alpha, confidence=confidence,
        resamples=resamples, seed=seed, rows=rows,
        added=[n for n in series_c if n not in series_b],
        removed=[n for n in series_b if n not in series_c],
        geometric_mean=stats.geometric_mean(ratios), notes=notes)


def exit_status(comparison, fail_on_inconclusive=False):
    """0 nothing regressed, 1 a cell regressed or failed in the candidate."""
    for row in comparison.rows:
        if row.verdict == stats.REGRESSED or row.failed_in_candidate:
            return 1
        if fail_on_inconclusive and row.verdict == stats.INCONCLUSIVE:
            return 1
    return 0


def headline(comparison):
    """One sentence a release manager reads first."""
    c = comparison.counts()
    bad = c[stats.REGRESSED] + sum(1 for r in comparison.rows if r.failed_in_candidate)
    if bad:
        return "REGRESSED: %d cell(s) regressed or failed in the candidate." % bad
    if c[stats.INCONCLUSIVE]:
        return ("NO REGRESSION FOUND, but %d cell(s) are inconclusive: run again with more "
                "repetitions before trusting them." % c[stats.INCONCLUSIVE])
    return "UNCHANGED or better: no cell regressed."


def _value(row, which):
    v = getattr(row, which)
    if v is None:
        return "—"
    return fmt.ns(v) if row.unit == "ns" else fmt.times(v)


def _change(row):
    if row.ratio is None or math.isnan(row.ratio):
        return "—"
    return fmt.percent(row.ratio - 1.0)


def _interval(row):
    if row.ci_low is None or math.isnan(row.ci_low):
        return "—"
    return "%s … %s" % (fmt.percent(row.ci_low - 1.0), fmt.percent(row.ci_high - 1.0))


def _p(row):
    return "—" if row.p_value is None else "%.3f" % row.p_value


def table_rows(comparison):
    """Header and rows of the per-cell table, shared by the Markdown and HTML reports."""
    header = ["cell", "baseline", "candidate", "change", "%d%% CI of change"
              % round(comparison.confidence * 100), "p (U test)", "verdict", "note"]
    rows = [[r.name, _value(r, "baseline_median"), _value(r, "candidate_median"), _change(r),
             _interval(r), _p(r), r.verdict, r.note] for r in comparison.rows]
    return header, rows


def settings_lines(comparison):
    b, c = comparison.baseline, comparison.candidate
    lines = [
        "Baseline: `%s` (commit %s, %s)" % (b["path"], b["commit"], b["machine"]),
        "Candidate: `%s` (commit %s, %s)" % (c["path"], c["commit"], c["machine"]),
    ]
    if comparison.mode == CROSS_MACHINE:
        lines.append("Mode: **cross-machine** — compares same-run ratios (a cell over the same "
                     "cell without cloaking, `÷ none`, and a cell over its raw transport "
                     "baseline from the same run, `÷ transport`), not absolute times.")
    else:
        lines.append("Mode: absolute time per call (real time, median of repetitions).")
    lines.append("Minimum effect: ±%s (%s); alpha %.2f; %d%% bootstrap interval of the ratio "
                 "of medians over %d resamples (seed %d)."
                 % (fmt.percent(comparison.min_effect, signed=False), comparison.min_effect_source,
                    comparison.alpha, round(comparison.confidence * 100), comparison.resamples,
                    comparison.seed))
    lines.extend("Note: " + n for n in comparison.notes)
    return lines


def render_markdown(comparison):
    out = ["# cloakbench compare", ""]
    out += [line + "  " for line in settings_lines(comparison)]
    out += ["", "**%s**" % headline(comparison), ""]
    counts = comparison.counts()
    out.append(fmt.markdown_table(["verdict", "cells"],
                                  [[v, str(counts[v])] for v in _VERDICT_ORDER]))
    gm = comparison.geometric_mean
    n = sum(1 for r in comparison.rows if r.verdict != stats.FAILED)
    out += ["", "Geometric mean of the ratios over %d cells in both files: %s (%s)."
            % (n, "—" if math.isnan(gm) else "%.4f" % gm,
               "—" if math.isnan(gm) else fmt.percent(gm - 1.0)), ""]
    inconclusive = [r.name for r in comparison.rows if r.verdict == stats.INCONCLUSIVE]
    if inconclusive:
        out += ["Inconclusive cells need more data: run again with more repetitions "
                "(`scripts/cloakbench run --repetitions N` with a larger N), with CPUs pinned "
                "and the machine quiet; see docs/reading.md.", ""]
    header, rows = table_rows(comparison)
    attention = [row for row, r in zip(rows, comparison.rows)
                 if r.verdict in (stats.REGRESSED, stats.FAILED, stats.IMPROVED)]
    if attention:
        out += ["## Regressed, failed or improved", "", fmt.markdown_table(header, attention), ""]
    out += ["## All cells", "", fmt.markdown_table(header, rows), ""]
    if comparison.added:
        out += ["## Added (only in the candidate)", ""] + ["- `%s`" % n for n in comparison.added]
        out.append("")
    if comparison.removed:
        out += ["## Removed (only in the baseline)", ""] + \
               ["- `%s`" % n for n in comparison.removed]
        out.append("")
    return "\n".join(out)


def to_json(comparison, exit_code):
    def clean(v):
        return None if isinstance(v, float) and math.isnan(v) else v
    return {
        "mode": comparison.mode,
        "baseline": comparison.baseline,
        "candidate": comparison.candidate,
        "min_effect": comparison.min_effect,
        "min_effect_source": comparison.min_effect_source,
        "alpha": comparison.alpha,
        "confidence": comparison.confidence,
        "resamples": comparison.resamples,
        "seed": comparison.seed,
        "headline": headline(comparison),
        "counts": comparison.counts(),
        "geometric_mean": clean(comparison.geometric_mean),
        "cells": [{k: clean(v) for k, v in dataclasses.asdict(r).items()}
                  for r in comparison.rows],
        "added": comparison.added,
        "removed": comparison.removed,
        "notes": comparison.notes,
        "exit_status": exit_code,
    }
