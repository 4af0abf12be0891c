"""Compares two result files cell by cell and decides, per cell, whether it regressed: the same
distribution-free intervals and family-wise rule as the gate (docs/reading.md), on repetitions."""

import dataclasses
import math
import re
from typing import List, Optional

from . import derive, exits, fmt, stats, verdicts
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
    ratio: Optional[float]      # Hodges-Lehmann estimate of candidate / baseline
    ci_low: Optional[float]     # the interval the verdict was read from (bounds one-sided at level)
    ci_high: Optional[float]
    p_value: Optional[float]    # of the test behind the verdict (undecided: the smallest of three)
    verdict: str
    n_baseline: int
    n_candidate: int
    note: str = ""
    failed_in_candidate: bool = False
    level: Optional[float] = None       # each bound's one-sided level (Holm's step for the cell)
    confidence: Optional[float] = None  # 1 - 2 level: the two-sided confidence of the interval


@dataclasses.dataclass
class Comparison:
    mode: str
    baseline: dict
    candidate: dict
    min_effect: float
    min_effect_source: str
    alpha: float
    confidence: float   # the strictest interval shown (Holm's first step, 1 - 2 alpha / cells)
    family_size: int
    cells_pattern: Optional[str]
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
    """The minimum effect and where it came from: the user's, or 5%; a file's recorded noise
    floor never widens it (a noisy file makes cells inconclusive, never unchanged)."""
    if override is not None:
        return override, "set by --min-effect"
    return stats.DEFAULT_MIN_EFFECT, "default"


def _noise_note(baseline, candidate):
    floors = [(r.path, r.noise_floor) for r in (baseline, candidate) if r.noise_floor is not None]
    if not floors:
        return []
    return ["recorded noise floors (cloak_noise_floor): %s; shown only: noise widens the "
            "intervals, it never widens the minimum effect"
            % ", ".join("±%s in %s" % (fmt.percent(f, signed=False), p) for p, f in floors)]


def _injection_notes(baseline, candidate):
    out = []
    for side, r in (("baseline", baseline), ("candidate", candidate)):
        if r.injected_ns:
            out.append("the %s %s was measured with CLOAK_INJECT_NS=%d CLOAK_INJECT_PATH=%s: "
                       "slowed on purpose" % (side, r.path, r.injected_ns, r.injected_path))
    return out


def _estimate(base, cand):
    """The cell's shift estimate from its repetitions (None when a side has none or a time is
    not positive)."""
    if not base or not cand:
        return None
    try:
        return stats.unpaired_shift(base, cand)
    except ValueError:
        return None


def _judged(name):
    """Whether compare judges a cell (or a same-run ratio, by its cell): not the threaded load
    cells, which run once (one sample, the run's wall time; docs/results.md)."""
    from . import names
    return not names.parse_name(name.partition(" ÷ ")[0]).is_load_threads


def _absolute_series(result):
    return {name: (c.samples, c.failed, c.error_message, c.from_aggregates)
            for name, c in result.cells.items() if _judged(name)}


def _ratio_series(result):
    return {name: (r.samples, r.failed, "", False)
            for name, r in derive.same_run_ratios(result).items() if _judged(name)}


# What a block comparison judges: per block, each headline variant's call paired with the same
# rounds' raw round trip (same machine: the machine's drift between the two runs cancels, what
# the suite measures does not), or its ratio to no cloaking (across machines).
BLOCK_VARIANTS = ("none", "static", "dynamic", "dynamic_lru")
BLOCK_TRANSPORT = "roundtrip"


def _welch(base_logs, cand_logs, level):
    """(estimate, low, high, p) of exp(mean(cand) - mean(base)) with a Welch t interval whose
    each bound holds at one-sided `level`; p is the two-sided p-value of no difference."""
    from scipy.stats import t as student
    nb, nc = len(base_logs), len(cand_logs)
    mb, mc = sum(base_logs) / nb, sum(cand_logs) / nc
    vb = sum((x - mb) ** 2 for x in base_logs) / (nb - 1)
    vc = sum((x - mc) ** 2 for x in cand_logs) / (nc - 1)
    se2 = vb / nb + vc / nc
    d = mc - mb
    if se2 <= 0:
        return math.exp(d), math.exp(d), math.exp(d), 0.0 if d else 1.0
    df = se2 ** 2 / ((vb / nb) ** 2 / (nb - 1) + (vc / nc) ** 2 / (nc - 1))
    se = math.sqrt(se2)
    q = float(student.ppf(1.0 - level, df))
    p = float(2 * student.sf(abs(d) / se, df))
    return math.exp(d), math.exp(d - q * se), math.exp(d + q * se), p


def _block_series(result, cross_machine):
    """{row name: launch values} of a result's blocks: '<block> <variant> ÷ transport' (same
    machine) or '<block> <variant> ÷ none' (across machines), each launch's paired estimate."""
    out = {}
    for b in result.blocks:
        ratios = b.get("ratios", {})
        for v in BLOCK_VARIANTS:
            if cross_machine:
                key, label = "%s/none" % v, "÷ none"
                if v == "none":
                    continue
            else:
                key, label = "%s/%s" % (v, BLOCK_TRANSPORT), "÷ transport"
            entry = ratios.get(key)
            if entry and entry.get("launch_estimates"):
                out["%s %s %s" % (b["name"], v, label)] = [float(x) for x in entry["launch_estimates"]]
    return out


def _block_rows(baseline, candidate, effect, alpha, cross_machine, cells):
    """CellComparison rows of the blocks both files have, judged with launches as the samples:
    Welch t intervals on the launches' log estimates, Bonferroni over the family."""
    series_b = _block_series(baseline, cross_machine)
    series_c = _block_series(candidate, cross_machine)
    if cells:
        rx = re.compile(cells)
        series_b = {n: v for n, v in series_b.items() if rx.search(n)}
        series_c = {n: v for n, v in series_c.items() if rx.search(n)}
    common = [n for n in series_b if n in series_c]
    level = alpha / max(1, len(common))
    band = math.log1p(effect)
    rows = []
    # A block that failed in a launch of either file stays in the family as failed: the rule is
    # fixed before anything is known about it, and a failure in the candidate fails the compare.
    for side, result in (("baseline", baseline), ("candidate", candidate)):
        for b in result.blocks:
            problems = [f.get("failed") for f in b.get("failures", [])
                        if not str(f.get("failed", "")).startswith("interrupted")]
            if not problems or (cells and not re.search(cells, b["name"])):
                continue
            rows.append(CellComparison(
                "%s (%s)" % (b["name"], side), "ratio", None, None, None, None, None, None,
                stats.FAILED, 0, 0, note="failed in %s: %s" % (side, problems[0]),
                failed_in_candidate=side == "candidate"))
    for name in common:
        vb, vc = series_b[name], series_c[name]
        mb, mc = stats.median(vb), stats.median(vc)
        if len(vb) < 2 or len(vc) < 2:
            rows.append(CellComparison(name, "ratio", mb, mc, None, None, None, None,
                                       stats.INCONCLUSIVE, len(vb), len(vc),
                                       note="fewer than 2 launches on a side"))
            continue
        est, lo, hi, p = _welch([math.log(x) for x in vb], [math.log(x) for x in vc], level)
        llo, lhi = math.log(lo), math.log(hi)
        if llo > band:
            verdict = stats.REGRESSED
        elif lhi < -band:
            verdict = stats.IMPROVED
        elif -band <= llo and lhi <= band:
            verdict = stats.UNCHANGED
        else:
            verdict = stats.INCONCLUSIVE
        rows.append(CellComparison(name, "ratio", mb, mc, est, lo, hi, p, verdict, len(vb),
                                   len(vc), level=level, confidence=1.0 - 2.0 * level))
    return rows, [n for n in series_c if n not in series_b], [n for n in series_b if n not in series_c]


def compare_results(baseline, candidate, min_effect=None, alpha=stats.DEFAULT_FAMILY_ALPHA,
                    cross_machine=False, cells=None):
    """Compare two loaded results; raises CompareRefused for inputs that cannot be compared.
    `cells` (a regex searched in the names) restricts the family of cells judged together.
    When both files have paired blocks, the blocks are what is judged (their launches are
    independent samples; a cell's repetitions share one process and are not)."""
    notes = check_comparable(baseline, candidate, cross_machine)
    effect, source = resolve_min_effect(baseline, candidate, min_effect)
    rows = None
    if baseline.blocks and candidate.blocks:
        rows, added, removed = _block_rows(baseline, candidate, effect, alpha, cross_machine, cells)
    if rows:  # else (no block matches --cells, say) the cells are compared below
        # The matrix cells are not judged, but one that failed in the candidate still fails it.
        rx = re.compile(cells) if cells else None
        for name, c in candidate.cells.items():
            if c.failed and (rx is None or rx.search(name)):
                rows.append(CellComparison(name, "ns", None, None, None, None, None, None,
                                           stats.FAILED, 0, 0, failed_in_candidate=True,
                                           note="failed in candidate: %s" % c.error_message))
        notes.append("judged on the paired blocks, launches as the samples (Welch t, Bonferroni "
                     "over %d rows): %s; the separately timed matrix cells are not judged"
                     % (len(rows), "each variant's × none" if cross_machine else
                        "each variant's call over the same rounds' raw round trip, so the "
                        "machine's drift between the two runs cancels"))
        notes += _noise_note(baseline, candidate) + _injection_notes(baseline, candidate)
        ratios = [r.ratio for r in rows if r.ratio is not None]
        return Comparison(
            mode=CROSS_MACHINE if cross_machine else ABSOLUTE, baseline=_describe(baseline),
            candidate=_describe(candidate), min_effect=effect, min_effect_source=source,
            alpha=alpha, confidence=1.0 - 2.0 * alpha / len(rows), family_size=len(rows),
            cells_pattern=cells, rows=rows, added=added, removed=removed,
            geometric_mean=stats.geometric_mean(ratios), notes=notes)
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
    if cells:
        rx = re.compile(cells)
        series_b = {n: v for n, v in series_b.items() if rx.search(n)}
        series_c = {n: v for n, v in series_c.items() if rx.search(n)}
    common = [n for n in series_b if n in series_c]
    if not common:
        skipped = any(not _judged(n) for r in (baseline, candidate) for n in r.cells)
        raise CompareRefused("%s and %s have no cells in common%s%s" % (
            baseline.path, candidate.path, " matching %s" % cells if cells else "",
            " (threaded load cells are not judged)" if skipped else ""))
    estimates, failed = {}, {}
    for name in common:
        sb, fb, eb, ab = series_b[name]
        sc, fc, ec, ac = series_c[name]
        if fb or fc:
            failed[name] = (fb, fc, ec or eb)
            continue
        estimates[name] = _estimate(sb, sc)
    # Failed cells stay in the family: the rule is fixed before anything is known about them.
    decisions = stats.decide(estimates, effect, alpha, family_size=len(common))
    rows = []
    for name in common:
        sb, _, _, ab = series_b[name]
        sc, _, _, ac = series_c[name]
        nb, nc = len(sb), len(sc)
        mb = stats.median(sb) if nb else None
        mc = stats.median(sc) if nc else None
        if name in failed:
            fb, fc, message = failed[name]
            side = "both files" if fb and fc else "candidate" if fc else "baseline"
            rows.append(CellComparison(
                name, unit, mb, mc, None, None, None, None, stats.FAILED, nb, nc,
                note="failed in %s%s" % (side, ": " + message if message else ""),
                failed_in_candidate=fc))
            continue
        d = decisions[name]
        note = d.note
        if ab or ac:
            note = "only aggregates in the file, no repetitions"
        rows.append(CellComparison(
            name, unit, mb, mc, d.ratio if math.isfinite(d.ratio) else None,
            d.lower if math.isfinite(d.ratio) else None,
            d.upper if math.isfinite(d.ratio) else None, d.p_value, d.verdict, nb, nc, note=note,
            level=d.level, confidence=1.0 - 2.0 * d.level))
    ratios = [r.ratio for r in rows if r.verdict != stats.FAILED and r.ratio is not None]
    notes += _noise_note(baseline, candidate) + _injection_notes(baseline, candidate)
    return Comparison(
        mode=mode, baseline=_describe(baseline), candidate=_describe(candidate),
        min_effect=effect, min_effect_source=source, alpha=alpha,
        confidence=1.0 - 2.0 * alpha / len(common), family_size=len(common), cells_pattern=cells,
        rows=rows, added=[n for n in series_c if n not in series_b],
        removed=[n for n in series_b if n not in series_c],
        geometric_mean=stats.geometric_mean(ratios), notes=notes)


def exit_status(comparison, fail_on_inconclusive=False):
    """The exit status of the convention gate and compare share (exits.py): 1 a cell regressed
    or failed in the candidate, else 3 when a cell is inconclusive (1 with
    fail_on_inconclusive), else 0. A cell that failed only in the baseline is reported but
    decides nothing."""
    return exits.status(
        any(r.verdict == stats.REGRESSED or r.failed_in_candidate for r in comparison.rows),
        any(r.verdict == stats.INCONCLUSIVE for r in comparison.rows), fail_on_inconclusive)


def _phrases(comparison, verdict):
    return [(r.name, r.ratio, r.ci_low, r.ci_high) for r in comparison.rows if r.verdict == verdict]


def headline(comparison):
    """The one-line verdict a release manager reads first, with the few cells that decided it."""
    c = comparison.counts()
    k = len(comparison.rows)
    e = fmt.percent(comparison.min_effect, signed=False)
    failed = [r for r in comparison.rows if r.failed_in_candidate]
    if c[stats.REGRESSED] or failed:
        parts = []
        if c[stats.REGRESSED]:
            parts.append("%d of %d cells slower by more than %s: %s" % (
                c[stats.REGRESSED], k, e, verdicts.deciding_cells(_phrases(comparison, stats.REGRESSED))))
        if failed:
            parts.append("%d failed in the candidate: %s" % (
                len(failed), ", ".join("`%s`" % r.name for r in failed[:verdicts.SHOWN_DECIDING_CELLS])))
        return "REGRESSED — " + "; ".join(parts) + "."
    if c[stats.INCONCLUSIVE]:
        return ("NO REGRESSION SHOWN, NOT A PASS — %d of %d cells are inconclusive (%s): the data "
                "cannot tell them from a change of ±%s; more repetitions or `scripts/cloakbench "
                "gate` can. %d unchanged, %d improved."
                % (c[stats.INCONCLUSIVE], k, verdicts.deciding_cells(
                    _phrases(comparison, stats.INCONCLUSIVE)), e, c[stats.UNCHANGED],
                   c[stats.IMPROVED]))
    improved = _phrases(comparison, stats.IMPROVED)
    return "UNCHANGED — all %d cells within ±%s%s." % (
        k - c[stats.FAILED], e, " or faster (%s)" % verdicts.deciding_cells(improved) if improved else "")


def _value(row, which):
    v = getattr(row, which)
    if v is None:
        return "—"
    return fmt.ns(v) if row.unit == "ns" else fmt.times(v)


def _change(row):
    return verdicts.change(row.ratio)


def _interval(row):
    if row.ci_low is None:
        return "—"
    return verdicts.interval(row.ci_low, row.ci_high)


def _p(row):
    if row.p_value is None:
        return "—"
    return "%.2g %s %.2g" % (row.p_value, "≤" if row.p_value <= (row.level or 0) else ">",
                             row.level) if row.level is not None else "%.2g" % row.p_value


def table_rows(comparison):
    """Header and rows of the per-cell table, shared by the Markdown and HTML reports."""
    header = ["cell", "baseline", "candidate", "change", "interval", "confidence",
              "p vs level", "verdict", "note"]
    rows = [[r.name, _value(r, "baseline_median"), _value(r, "candidate_median"), _change(r),
             _interval(r), verdicts.confidence(r.level), _p(r), r.verdict, r.note]
            for r in comparison.rows]
    return header, rows


def is_block_comparison(comparison):
    return any(r.name.startswith("block/") for r in comparison.rows)


def _block_settings_lines(comparison):
    e = fmt.percent(comparison.min_effect, signed=False)
    what = ("each headline variant's × none (paired by round within a launch)"
            if comparison.mode == CROSS_MACHINE else
            "each headline variant's call over the same rounds' raw round trip (`÷ transport`, "
            "paired by round within a launch: the machine's drift between the two runs falls on "
            "both and cancels; a slower kernel round trip is not a regression of the suite's code)")
    return [
        "Mode: **paired blocks** — %s." % what,
        "Minimum effect: ±%s (%s); family: %d rows%s, α %g." % (
            e, comparison.min_effect_source, comparison.family_size,
            " matching `%s`" % comparison.cells_pattern if comparison.cells_pattern else "",
            comparison.alpha),
        "Sample: one launch (an independent process); each row's change is exp of the difference "
        "of the launches' mean log estimates, its interval a Welch t interval with each bound "
        "one-sided at α/%d (Bonferroni over the family)." % comparison.family_size,
        "Verdicts: **regressed** when the whole interval lies above +%s, **improved** below "
        "−%s, **unchanged** (across machines: *agree*) inside ±%s; anything else is "
        "**inconclusive** (*cannot tell*)." % (e, e, e),
    ]


def settings_lines(comparison):
    b, c = comparison.baseline, comparison.candidate
    lines = [
        "Baseline: `%s` (commit %s, %s)" % (b["path"], b["commit"], b["machine"]),
        "Candidate: `%s` (commit %s, %s)" % (c["path"], c["commit"], c["machine"]),
    ]
    if is_block_comparison(comparison):
        return lines + _block_settings_lines(comparison) + ["Note: " + n for n in comparison.notes]
    if comparison.mode == CROSS_MACHINE:
        lines.append("Mode: **cross-machine** — compares same-run ratios (a cell over the same "
                     "cell without cloaking, `÷ none`, and a cell over its raw transport "
                     "baseline from the same run, `÷ transport`), not absolute times.")
    else:
        lines.append("Mode: absolute time per call (real time, median of repetitions).")
    lines.append("Minimum effect: ±%s (%s); family: %d cells%s, α %g."
                 % (fmt.percent(comparison.min_effect, signed=False), comparison.min_effect_source,
                    comparison.family_size,
                    " matching `%s`" % comparison.cells_pattern if comparison.cells_pattern else "",
                    comparison.alpha))
    lines += verdicts.rule_lines(
        comparison.min_effect, comparison.alpha, comparison.family_size, 1,
        "one repetition of a cell (repetitions inside one process are not independent: "
        "their spread understates the launch-to-launch noise, so read these verdicts as a "
        "first look; `scripts/cloakbench gate` samples launches)",
        "Mann-Whitney", what="compared cells")
    lines.extend("Note: " + n for n in comparison.notes)
    return lines


def render_markdown(comparison):
    out = ["# cloakbench compare", "", "**%s**" % headline(comparison), ""]
    out += [line + "  " for line in settings_lines(comparison)]
    out.append("")
    out += render_headline_summary(comparison)
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
        out += ["Inconclusive cells need more data: run both sides again with more repetitions "
                "(`scripts/cloakbench run --repetitions N`), judge fewer cells together "
                "(`--cells REGEX`), or use `scripts/cloakbench gate`, which samples launches and "
                "adds rounds until it can decide; see docs/reading.md.", ""]
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
        return None if isinstance(v, float) and not math.isfinite(v) else v
    return {
        "mode": comparison.mode,
        "baseline": comparison.baseline,
        "candidate": comparison.candidate,
        "min_effect": comparison.min_effect,
        "min_effect_source": comparison.min_effect_source,
        "alpha": comparison.alpha,
        "family_size": comparison.family_size,
        "cells_pattern": comparison.cells_pattern,
        "rule": verdicts.rule_lines(comparison.min_effect, comparison.alpha,
                                    comparison.family_size, 1, "one repetition", "Mann-Whitney",
                                    what="compared cells"),
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


# ---- the headline cells side by side (issue 11): what a reader of a cross-machine compare or a
# report --baseline sees first. Kept apart from the verdict statistics above, which it only reads.

def _headline_info(row_name):
    from . import headline, names
    info = names.parse_name(row_name.partition(" ÷ ")[0])
    if headline.is_headline_cell(info):
        return info
    return None


def _agreement(row, min_effect):
    if row.verdict == stats.FAILED:
        return "failed"
    interval = _interval(row)
    if row.verdict == stats.UNCHANGED:
        return "yes (within ±%s)" % fmt.percent(min_effect, signed=False)
    if row.verdict in (stats.REGRESSED, stats.IMPROVED):
        return "no: %s (%s)" % (_change(row), interval)
    return "cannot tell (%s)" % interval


def headline_summary(comparison):
    """(lines, header, rows) of the headline cells (headline.is_headline_cell) in both files: in
    cross-machine mode each cell's × none and × transport on both machines and whether they agree
    within the minimum effect (the verdict), else each cell's time in both files. None when no
    headline cell is in both files."""
    from . import headline
    if is_block_comparison(comparison):
        return _block_headline_summary(comparison)
    by_cell = {}
    for row in comparison.rows:
        info = _headline_info(row.name)
        if info is not None:
            base, _, over = row.name.partition(" ÷ ")
            by_cell.setdefault(base, (info, {}))[1][over or "time"] = row
    if not by_cell:
        return None
    order = [label for label, _, _ in headline.VARIANTS]

    def rank(item):
        info = item[1][0]
        return (headline.AUTH_ORDER.get(info.package, 9), headline.PINNED.index(info.place),
                headline.PATTERNS.index(info.pattern), order.index(headline.variant_of(info)))
    cross = comparison.mode == CROSS_MACHINE
    if cross:
        header = ["package, placement", "cloaking", "token pattern", "× none: baseline",
                  "× none: candidate", "agree?", "× transport: baseline", "× transport: candidate",
                  "agree?"]
    else:
        header = ["package, placement", "cloaking", "token pattern", "baseline", "candidate",
                  "change (interval)", "verdict"]
    rows, verdicts = [], []
    for base, (info, kinds) in sorted(by_cell.items(), key=rank):
        where = "%s, %s" % (info.package or "local", info.place)
        line = [where, headline.variant_of(info), info.pattern]
        if cross:
            for kind in ("none", "transport"):
                r = kinds.get(kind)
                if r is None:
                    line += ["—", "—", "—"]
                    continue
                line += [_value(r, "baseline_median"), _value(r, "candidate_median"),
                         _agreement(r, comparison.min_effect)]
                verdicts.append(r.verdict)
        else:
            r = kinds.get("time")
            if r is None:
                continue
            line += [_value(r, "baseline_median"), _value(r, "candidate_median"),
                     "%s (%s)" % (_change(r), _interval(r)), r.verdict]
            verdicts.append(r.verdict)
        rows.append(line)
    agree = sum(1 for v in verdicts if v == stats.UNCHANGED)
    differ = sum(1 for v in verdicts if v in (stats.REGRESSED, stats.IMPROVED))
    failed = sum(1 for v in verdicts if v == stats.FAILED)
    what = "headline ratios" if cross else "headline cells"
    lines = ["Baseline: %s (commit %s); candidate: %s (commit %s)." % (
        comparison.baseline["machine"], comparison.baseline["commit"],
        comparison.candidate["machine"], comparison.candidate["commit"]),
        "Of %d %s, %d agree within the noise (±%s, the minimum effect), %d differ, %d cannot "
        "be told apart with these repetitions%s." % (len(verdicts), what, agree,
                                  fmt.percent(comparison.min_effect, signed=False), differ,
                                  len(verdicts) - agree - differ - failed,
                                  ", %d failed" % failed if failed else "")]
    return lines, header, rows


def _block_headline_summary(comparison):
    """headline_summary for a comparison of paired blocks: every judged row is a headline row."""
    from . import names
    cross = comparison.mode == CROSS_MACHINE
    what = "× none" if cross else "÷ transport"
    header = ["package, placement", "token pattern", "cloaking", "%s: baseline" % what,
              "%s: candidate" % what, "agree?" if cross else "change (interval)",
              "verdict"]
    rows, counts = [], {}
    for r in comparison.rows:
        if r.verdict == stats.FAILED:  # named in the verdict line and the table below
            counts["failed"] = counts.get("failed", 0) + 1
            continue
        block, variant, _ = r.name.split(" ", 2)
        info = names.parse_name(block)
        fields = dict(p.split(":", 1) for p in block.split("/") if ":" in p)
        word = {stats.UNCHANGED: "agree", stats.REGRESSED: "differ", stats.IMPROVED: "differ",
                stats.INCONCLUSIVE: "cannot tell"}.get(r.verdict, r.verdict) if cross else r.verdict
        counts[word] = counts.get(word, 0) + 1
        package = fields.get("auth", "?") + ("/mech:%s" % fields["mech"] if "mech" in fields else "")
        segments = block.split("/")[4:]  # the pattern follows auth: (and negotiate's mech:)
        pattern = next((s for s in segments if ":" not in s), info.pattern or "?")
        rows.append(["%s, %s" % (package, fields.get("place", "?")), pattern,
                     variant, _value(r, "baseline_median"), _value(r, "candidate_median"),
                     "%s (%s)" % (_change(r), _interval(r)), word])
    lines = ["Baseline: %s (commit %s); candidate: %s (commit %s)." % (
        comparison.baseline["machine"], comparison.baseline["commit"],
        comparison.candidate["machine"], comparison.candidate["commit"]),
        "Of %d headline %s, %s (±%s, the minimum effect; launches as samples)." % (
            len(rows), "ratios" if cross else "calls",
            ", ".join("%d %s" % (n, w) for w, n in sorted(counts.items())),
            fmt.percent(comparison.min_effect, signed=False))]
    return lines, header, rows


def render_headline_summary(comparison):
    """The headline summary as Markdown lines (empty when there is none)."""
    summary = headline_summary(comparison)
    if summary is None:
        return []
    lines, header, rows = summary
    title = ("## Headline ratios side by side" if comparison.mode == CROSS_MACHINE
             else "## Headline cells side by side")
    # the settings above already name both files; the count says whether the headline travels
    return [title, "", lines[-1], "", fmt.markdown_table(header, rows), ""]
