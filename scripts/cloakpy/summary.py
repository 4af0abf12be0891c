"""The console summary `cloakbench run` prints: one row per cell of a loaded result (load.Result),
with the same median, spread and same-run ratios the report shows."""

from . import derive, fmt
from .merge import SPREAD_LIMIT
from .stats import median, relative_spread


def _ratio_to(cell, other):
    if other is None or other.failed or not other.samples:
        return None
    return median(cell.samples) / median(other.samples)


def summary_rows(result, order=()):
    """One dict per cell: name, median (ns), spread, reps, over_none (÷ the same cell without
    cloaking), over_floor (÷ its raw transport baseline); a failed cell has `failed` (its first
    error) instead, a threaded load cell `per_s` and `p99` (ns) instead. Cells named in `order` come first, in that order; the rest in file order."""
    rank = {n: i for i, n in enumerate(order)}
    cells = sorted(result.cells.values(), key=lambda c: rank.get(c.name, len(rank)))
    rows = []
    for cell in cells:
        if cell.failed:
            rows.append({"name": cell.name, "failed": cell.error_message})
            continue
        info = cell.info
        if info.is_load_threads:  # one run: its result is a rate and a tail, not a time
            rows.append({"name": cell.name, "per_s": cell.counter("calls_per_s") or 0.0,
                         "p99": cell.counter("p99_ns") or 0.0})
            continue
        floor = derive.transport_floor(result, info) if info.is_cell else None
        rows.append({"name": cell.name, "median": median(cell.samples),
                     "spread": relative_spread(cell.samples), "reps": len(cell.samples),
                     "over_none": _ratio_to(cell, derive.none_counterpart(result, cell)),
                     "over_floor": _ratio_to(cell, floor)})
    return rows


def _ratio(value):
    return "—" if value is None else "%.3f" % value


def render_summary(rows):
    """The summary table as text lines; `!` marks a spread above the noisy-cell limit."""
    width = max([len(r["name"]) for r in rows] + [4])
    lines = ["%-*s  %10s  %7s  %8s  %9s" % (width, "cell", "median", "spread", "÷ none", "÷ floor")]
    lines.append("-" * len(lines[0]))
    for r in rows:
        if "failed" in r:
            lines.append("%-*s  FAILED: %s" % (width, r["name"], r["failed"]))
            continue
        if "per_s" in r:
            lines.append("%-*s  %10s  calls/s, p99 %s" % (width, r["name"], "{:,.0f}".format(
                r["per_s"]), fmt.ns(r["p99"])))
            continue
        mark = " !" if r["spread"] > SPREAD_LIMIT else ""
        lines.append("%-*s  %10s  %7s  %8s  %9s%s" % (
            width, r["name"], fmt.ns(r["median"]), "±" + fmt.percent(r["spread"], signed=False),
            _ratio(r["over_none"]), _ratio(r["over_floor"]), mark))
    return lines


def repetition_counts(rows):
    """'5' or '5/15': the repetition counts of the rows, for the summary's heading."""
    counts = sorted({r["reps"] for r in rows if "reps" in r})
    return "/".join(str(c) for c in counts) or "0"
