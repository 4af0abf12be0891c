"""The headline ratios of every result file over time, per machine, with change points found by
circular binary segmentation and a permutation test (docs/reading.md, "History"): one
self-contained HTML page plus a PNG per series."""

import dataclasses
import datetime
import html
import io
import os
import zlib
from typing import Dict, List, Optional

from . import derive, fmt, headline, load, plot
from .stats import LEAST_MIN_EFFECT, FALLBACK_MIN_EFFECT, median

MIN_SEGMENT = 3          # runs on each side of a change point
ALPHA = 0.05             # false discovery rate over the series of one page
PERMUTATIONS = 1999
SEED = 20240601

# (key, title, unit): unit "ratio" is shown as 1.23×, "ns" as a time.
METRICS = (
    ("x_none", "dynamic cloaking, a token change before every call, × no cloaking", "ratio"),
    ("x_transport", "no cloaking, steady token, × the raw round trip", "ratio"),
    ("new_context", "one new security context", "ns"),
)
# negotiate's series are per mechanism, as its headline tables are (names.CellName.package)
AUTHS = ("local", "kerberos", "ntlm", "negotiate/mech:krb5", "negotiate/mech:ntlm")
PLACE = "same"  # the headline placement; across CPUs a shared VM is too noisy to follow over time


# ---- change points ----------------------------------------------------------------------------

@dataclasses.dataclass
class ChangePoint:
    index: int        # the first point after the change
    before: float     # median of the segment before
    after: float      # median of the segment after
    p_value: float

    @property
    def change(self):
        return self.after / self.before - 1.0


def _pairs(n, min_segment):
    """Every segment [i, j) that circular binary segmentation may cut out of n points so that each
    of the (up to three) pieces keeps at least min_segment points: i == 0 or i >= L, j == n or
    n - j >= L, and the segment and its complement both at least L."""
    import numpy as np
    pairs = [(i, j) for i in range(0, n) for j in range(i + min_segment, n + 1)
             if (i == 0 or i >= min_segment) and (j == n or n - j >= min_segment)
             and n - (j - i) >= min_segment]
    return np.array(pairs, dtype=int).reshape(-1, 2)


def _max_statistic(x, pairs):
    """The largest statistic sqrt(k (n - k) / n) |mean(inside) - mean(outside)| over the segments
    [i, j) of the last axis of x (k = j - i), and which segment it is."""
    import numpy as np
    n = x.shape[-1]
    cs = np.concatenate([np.zeros(x.shape[:-1] + (1,)), np.cumsum(x, axis=-1)], axis=-1)
    i, j = pairs[:, 0], pairs[:, 1]
    k = (j - i).astype(float)
    inside = cs[..., j] - cs[..., i]
    outside = cs[..., -1:] - inside
    t = np.sqrt(k * (n - k) / n) * np.abs(inside / k - outside / (n - k))
    best = t.argmax(axis=-1)
    return t.max(axis=-1), pairs[best]


def split_test(values, min_segment=MIN_SEGMENT, permutations=PERMUTATIONS, seed=SEED, key=""):
    """((i, j), p-value): the segment [i, j) of log(values) whose mean differs most from the rest's
    (i == 0 or j == n: a single step), and the permutation p-value of that maximum, so searching
    every segment is paid for (circular binary segmentation, Olshen et al. 2004). None when the
    series is too short to split."""
    import numpy as np
    x = np.log(np.asarray(values, dtype=float))
    n = x.size
    pairs = _pairs(n, min_segment)
    if n < 2 * min_segment or pairs.size == 0:
        return None
    observed, where = _max_statistic(x, pairs)
    segment = (int(where[0]), int(where[1]))
    if not observed > 0:
        return segment, 1.0
    rng = np.random.default_rng([int(seed), zlib.crc32(str(key).encode("utf-8"))])
    exceed, done, batch = 0, 0, max(1, 4000000 // (n * len(pairs)))
    while done < permutations:
        m = min(batch, permutations - done)
        shuffled = x[np.argsort(rng.random((m, n)), axis=1)]
        null, _ = _max_statistic(shuffled, pairs)
        exceed += int(np.sum(null >= observed * (1 - 1e-12)))
        done += m
    return segment, (1 + exceed) / (permutations + 1)


def _boundaries(segment, n):
    i, j = segment
    return [b for b in (i, j) if 0 < b < n]


def _shift(values, segment):
    i, j = segment
    inside = values[i:j]
    outside = values[:i] + values[j:]
    return median(inside) / median(outside) - 1.0


def _segment(values, offset, min_effect, alpha, min_segment, permutations, seed, key, found,
             test=None):
    """Circular binary segmentation: cut where the test says if p <= alpha and the segment's
    median differs from the rest's by at least min_effect, then go on in every piece. Adds
    {absolute boundary: p-value} to `found`."""
    values = list(values)
    if test is None:
        test = split_test(values, min_segment, permutations, seed, "%s@%d" % (key, offset))
    if test is None:
        return
    segment, p = test
    if p > alpha or abs(_shift(values, segment)) < min_effect:
        return
    cuts = _boundaries(segment, len(values))
    for b in cuts:
        found[offset + b] = p
    edges = [0] + cuts + [len(values)]
    for lo, hi in zip(edges, edges[1:]):
        _segment(values[lo:hi], offset + lo, min_effect, alpha, min_segment, permutations, seed,
                 key, found)


def _change_points(values, found, min_effect):
    """ChangePoints at the boundaries found, each with the medians of the segments either side;
    a boundary whose two sides differ by less than min_effect is dropped and the sides merged."""
    cuts = sorted(found)
    while True:
        edges = [0] + cuts + [len(values)]
        weak = [c for n, c in enumerate(cuts)
                if abs(median(values[c:edges[n + 2]]) / median(values[edges[n]:c]) - 1.0)
                < min_effect]
        if not weak:
            break
        cuts.remove(weak[0])
    edges = [0] + cuts + [len(values)]
    return [ChangePoint(c, median(values[edges[n]:c]), median(values[c:edges[n + 2]]), found[c])
            for n, c in enumerate(cuts)]


def benjamini_hochberg(p_values, q):
    """Which hypotheses Benjamini-Hochberg rejects at false discovery rate q."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    m = len(p_values)
    passed = 0
    for rank, i in enumerate(order, start=1):
        if p_values[i] <= q * rank / m:
            passed = rank
    return {i for i in order[:passed]}


def detect(series, min_effects, alpha=ALPHA, min_segment=MIN_SEGMENT, permutations=PERMUTATIONS,
           seed=SEED):
    """Change points of several series at once ({key: [values in time order]}).

    Each series's top-level test is judged with Benjamini-Hochberg over all the series at false
    discovery rate alpha (a page of S flat series would otherwise flag S x alpha of them by
    chance); a rejected series is cut there when the shift is at least its minimum effect, and
    every piece is then tested again at alpha (circular binary segmentation). Returns
    {key: [ChangePoint]}."""
    keys = list(series)
    tests = {k: split_test(series[k], min_segment, permutations, seed, "%s@0" % (k,)) for k in keys}
    judged = [k for k in keys if tests[k] is not None]
    rejected = benjamini_hochberg([tests[k][1] for k in judged], alpha)
    out = {k: [] for k in keys}
    for n, k in enumerate(judged):
        values = list(series[k])
        segment, p = tests[k]
        # the top-level test passed Benjamini-Hochberg; the shift must still matter
        if n not in rejected or abs(_shift(values, segment)) < min_effects[k]:
            continue
        found = {b: p for b in _boundaries(segment, len(values))}
        edges = [0] + sorted(found) + [len(values)]
        for lo, hi in zip(edges, edges[1:]):  # the pieces are new hypotheses, each at alpha
            _segment(values[lo:hi], lo, min_effects[k], alpha, min_segment, permutations, seed,
                     str(k), found)
        out[k] = _change_points(values, found, min_effects[k])
    return out


# ---- reading the files ------------------------------------------------------------------------

@dataclasses.dataclass
class Run:
    result: load.Result
    when: datetime.datetime
    metrics: Dict[tuple, float]
    report: Optional[str]  # path of its report, when one was written next to the file


def _parse_date(text):
    try:
        when = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)


def run_metrics(result):
    """{(auth, metric key): value} of the headline cells at place:same."""
    out = {}
    for table in headline.tables(result):
        if table.place != PLACE:
            continue
        switch = table.row("dynamic, cache none", "switch")
        if switch is not None and switch.over_none is not None:
            out[(table.auth, "x_none")] = switch.over_none
        none = table.row("none", "steady")
        if none is not None and none.median is not None:
            floor = derive.transport_floor(result, none.cell.info)
            if floor is not None and not floor.failed and floor.samples:
                out[(table.auth, "x_transport")] = none.median / median(floor.samples)
        if switch is not None and switch.median is not None:
            ctx = derive.context_floor(result, switch.cell.info)
            if ctx is not None and not ctx.failed and ctx.samples:
                out[(table.auth, "new_context")] = median(ctx.samples)
    return out


def report_of(path):
    """The report written next to a result file (results.md: the directory of the same name)."""
    stem = os.path.splitext(path)[0]
    for name in ("report.html", "report.md"):
        candidate = os.path.join(stem, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def result_files(dirs):
    """Every *.json under the directories (or the files themselves), sorted."""
    out = []
    for d in dirs:
        if os.path.isfile(d):
            out.append(d)
            continue
        for root, subdirs, files in os.walk(d):
            subdirs.sort()
            out += [os.path.join(root, f) for f in sorted(files) if f.endswith(".json")]
    return out


def read_runs(dirs):
    """(runs, skipped): every loadable cloakbench result with headline cells, and (path, why) for
    every other file."""
    runs, skipped = [], []
    for path in result_files(dirs):
        try:
            result = load.load_result(path)
        except load.LoadError as e:
            skipped.append((path, str(e)))
            continue
        if not result.is_cloakbench:
            skipped.append((path, "not a cloakbench result (no cloak_ keys)"))
            continue
        metrics = run_metrics(result)
        if not metrics:
            skipped.append((path, "no headline cells at place:same"))
            continue
        when = _parse_date(result.date)
        if when is None:
            when = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
        runs.append(Run(result, when, metrics, report_of(path)))
    runs.sort(key=lambda r: (r.when, r.result.commit, r.result.path))
    return runs, skipped


@dataclasses.dataclass
class Series:
    machine: str
    auth: str
    metric: str
    runs: List[Run]
    values: List[float]
    min_effect: float
    change_points: List[ChangePoint] = dataclasses.field(default_factory=list)

    @property
    def key(self):
        return (self.machine, self.auth, self.metric)


def min_effect_of(runs):
    """The smallest shift a change point must have: the median noise floor the runs recorded, at
    least 2% (5% when none recorded one): compare's minimum effect, for a series of runs."""
    floors = [r.result.noise_floor for r in runs if r.result.noise_floor is not None]
    if not floors:
        return FALLBACK_MIN_EFFECT
    return max(median(floors), LEAST_MIN_EFFECT)


def build_series(runs, permutations=PERMUTATIONS, seed=SEED):
    """Every (machine, package, metric) series with its change points."""
    series = []
    machines = sorted({r.result.machine_id for r in runs})
    for machine in machines:
        mine = [r for r in runs if r.result.machine_id == machine]
        for auth in AUTHS:
            for metric, _, _ in METRICS:
                have = [r for r in mine if (auth, metric) in r.metrics]
                if have:
                    series.append(Series(machine, auth, metric, have,
                                         [r.metrics[(auth, metric)] for r in have],
                                         min_effect_of(have)))
    found = detect({s.key: s.values for s in series}, {s.key: s.min_effect for s in series},
                   permutations=permutations, seed=seed)
    for s in series:
        s.change_points = found[s.key]
    return series


# ---- rendering --------------------------------------------------------------------------------

def metric_title(auth, metric):
    title = next(t for k, t, _ in METRICS if k == metric)
    return "%s package: %s (place:%s, 64 B, one thread)" % (
        {"local": "Local", "ntlm": "NTLM", "negotiate/mech:krb5": "Negotiate (over Kerberos)",
         "negotiate/mech:ntlm": "Negotiate (over NTLM)"}.get(auth, auth.capitalize()), title, PLACE)


def _unit(metric):
    return next(u for k, _, u in METRICS if k == metric)


def value_text(metric, value):
    return fmt.ns(value) if _unit(metric) == "ns" else "%.3f×" % value


def _href(target, out_dir):
    return os.path.relpath(target, out_dir).replace(os.sep, "/")


def plot_metric(all_series, auth, metric, out_dir):
    """One figure: the metric over time, a line per machine, change points marked; every point
    links to its run's report (or its result file) in the SVG."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    mine = [s for s in all_series if s.auth == auth and s.metric == metric]
    if not mine:
        return None
    fig = Figure(figsize=(12.5, 4.6))
    ax = fig.subplots()
    div, unit = (1.0, "×") if _unit(metric) == "ratio" else fmt.unit_for(
        max(v for s in mine for v in s.values))
    for n, s in enumerate(mine):
        color = plot.machine_color(n)
        xs = [r.when for r in s.runs]
        ys = [v / div for v in s.values]
        ax.plot(xs, ys, color=color, linewidth=1.2, label="%s (%d runs)" % (s.machine, len(xs)))
        points = ax.scatter(xs, ys, color=color, s=22, zorder=3)
        points.set_urls([_href(r.report or r.result.path, out_dir) for r in s.runs])
        for cp in s.change_points:
            at = s.runs[cp.index].when
            ax.axvline(at, color=color, linestyle="--", linewidth=1.0)
            ax.annotate("%s at %s (p=%.3f)" % (fmt.percent(cp.change), s.runs[cp.index].result.commit,
                                               cp.p_value),
                        (at, cp.after / div), xytext=(4, 6), textcoords="offset points",
                        fontsize=9, color=color)
            ax.hlines([cp.before / div], s.runs[0].when, at, colors=color, linewidth=0.8, alpha=0.5)
    ax.set_ylabel("× (same-run ratio)" if _unit(metric) == "ratio" else "time (%s)" % unit)
    ax.set_title(metric_title(auth, metric), fontsize=11, loc="left")
    ax.grid(alpha=0.3)
    # above the axes, right of the title: never on the data (plot.py's rule for every figure)
    ax.legend(fontsize=9, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(mine),
              frameon=False)
    fig.autofmt_xdate()
    fig.text(0.01, 0.01, "points: one run each (the metric from that run's medians); dashed: a "
             "change point (circular binary segmentation, permutation test; docs/reading.md)",
             fontsize=9, color="#333333")
    fig.subplots_adjust(bottom=0.22, top=0.9, left=0.08, right=0.98)
    return fig


def _svg_text(fig):
    import matplotlib
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "cloakbench"}):
        fig.savefig(buf, format="svg", facecolor="white", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1300px;
padding:0 1em;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}code{background:#f5f5f5}svg{max-width:100%;height:auto}
h2{border-bottom:1px solid #ddd}summary{cursor:pointer;font-weight:600}
"""


def render_html(runs, series, skipped, dirs, out_dir, figures):
    e = html.escape
    machines = sorted({r.result.machine_id for r in runs})
    out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
           "<title>cloakbench history</title><style>%s</style></head><body>" % _CSS,
           "<h1>cloakbench history</h1>",
           "<p>%s under %s: %s, %s, %s to %s.%s</p>" % (
               _count(len(runs), "result file"), ", ".join("<code>%s</code>" % e(d) for d in dirs),
               _count(len(machines), "machine"), _count(len({r.result.commit for r in runs}),
                                                        "commit"),
               e(runs[0].when.strftime("%Y-%m-%d")) if runs else "—",
               e(runs[-1].when.strftime("%Y-%m-%d")) if runs else "—",
               " %d files skipped (listed at the end)." % len(skipped) if skipped else "")]
    found = [(s, cp) for s in series for cp in s.change_points]
    out.append("<h2>Change points</h2>")
    if found:
        out.append("<table><thead><tr><th>machine</th><th>series</th><th>between</th><th>before"
                   "</th><th>after</th><th>change</th><th>p (permutation)</th></tr></thead><tbody>")
        for s, cp in found:
            a, b = s.runs[cp.index - 1], s.runs[cp.index]
            out.append("<tr><td>%s</td><td>%s</td><td>%s (%s) and %s (%s)</td><td>%s</td><td>%s"
                       "</td><td>%s</td><td>%.4f</td></tr>" % (
                           e(s.machine), e(metric_title(s.auth, s.metric)), _link(a, out_dir),
                           e(a.when.strftime("%Y-%m-%d")), _link(b, out_dir),
                           e(b.when.strftime("%Y-%m-%d")), e(value_text(s.metric, cp.before)),
                           e(value_text(s.metric, cp.after)), e(fmt.percent(cp.change)), cp.p_value))
        out.append("</tbody></table>")
    else:
        short = [s for s in series if len(s.values) < 2 * MIN_SEGMENT]
        out.append("<p>No change point in any series.%s</p>" % (
            " %d series have fewer than %d runs, too few to test." % (len(short), 2 * MIN_SEGMENT)
            if short else ""))
    for (auth, metric), svg in figures:
        out.append("<h2>%s</h2>" % e(metric_title(auth, metric)))
        out.append("<figure>%s<figcaption>Each point is one run; click it for that run's report. "
                   "PNG: <code>%s</code></figcaption></figure>" % (svg, e(png_name(auth, metric))))
    out.append("<h2>Runs</h2>")
    for machine in machines:
        mine = [r for r in runs if r.result.machine_id == machine]
        keys = [(a, m) for a in AUTHS for m, _, _ in METRICS if any((a, m) in r.metrics for r in mine)]
        out.append("<h3>%s</h3><p>%s</p>" % (e(machine), e(mine[0].result.machine_summary())))
        head = "".join("<th>%s %s</th>" % (e(a), e(m.replace("_", " "))) for a, m in keys)
        out.append("<table><thead><tr><th>date</th><th>commit (link)</th>%s</tr></thead>"
                   "<tbody>" % head)
        for r in mine:
            cells = "".join("<td>%s</td>" % (e(value_text(m, r.metrics[(a, m)]))
                                             if (a, m) in r.metrics else "—") for a, m in keys)
            out.append("<tr><td>%s</td><td>%s</td>%s</tr>" % (
                e(r.when.strftime("%Y-%m-%d %H:%M")), _link(r, out_dir), cells))
        out.append("</tbody></table>")
    out.append("<h2>How change points are found</h2>")
    out.append("<p>Each series is one metric on one machine, its runs in time order, one value per "
               "run (computed from that run's medians; ratios are taken inside one run, so they "
               "travel between machines). Circular binary segmentation (Olshen et al., 2004) on "
               "the logarithm of the values: over every segment [i, j) that leaves at least %d "
               "runs in each piece (a single step is a segment that reaches an end), the "
               "statistic sqrt(k(n−k)/n)·|mean inside − mean outside| is largest at some segment; "
               "its p-value is the share of %d seeded random permutations of the series whose "
               "largest statistic is as large, so searching every segment is paid for. The "
               "series' first tests are judged together with Benjamini–Hochberg at a false "
               "discovery rate of %.2f; a rejected series is cut only where the medians either "
               "side differ by at least its minimum effect (the median noise floor its runs "
               "recorded, at least 2%%), and each piece is tested again at %.2f. A series needs "
               "at least %d runs (docs/reading.md, \"History\").</p>"
               % (MIN_SEGMENT, PERMUTATIONS, ALPHA, ALPHA, 2 * MIN_SEGMENT))
    if skipped:
        out.append("<details><summary>Files skipped (%d)</summary><ul>%s</ul></details>" % (
            len(skipped), "".join("<li><code>%s</code>: %s</li>" % (e(p), e(w)) for p, w in skipped)))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _count(n, what):
    return "%d %s%s" % (n, what, "" if n == 1 else "s")


def _link(run, out_dir):
    target = run.report or run.result.path
    label = "%s (%s)" % (run.result.commit, "report" if run.report else "result file; no report")
    return "<a href=\"%s\">%s</a>" % (html.escape(_href(target, out_dir)), label)


def png_name(auth, metric):
    return "history.%s.%s.png" % (auth.replace("/mech:", "-"), metric)


def write_history(dirs, out_dir, permutations=PERMUTATIONS, seed=SEED):
    """Write history.html and a PNG per plotted metric into out_dir; return (paths, runs, series,
    skipped)."""
    runs, skipped = read_runs(dirs)
    series = build_series(runs, permutations, seed)
    written, figures = [], []
    for auth in AUTHS:
        for metric, _, _ in METRICS:
            fig = plot_metric(series, auth, metric, out_dir)
            if fig is None:
                continue
            path = os.path.join(out_dir, png_name(auth, metric))
            fig.savefig(path, format="png", dpi=110, facecolor="white")
            plot.quantize_png(path)
            written.append(path)
            figures.append(((auth, metric), _svg_text(fig)))
    page = os.path.join(out_dir, "history.html")
    with open(page, "w", encoding="utf-8") as f:
        f.write(render_html(runs, series, skipped, dirs, out_dir, figures))
    return [page] + written, runs, series, skipped


def change_point_lines(series):
    """One line per change point, for the console."""
    lines = []
    for s in series:
        for cp in s.change_points:
            lines.append("change point: %s, %s: %s -> %s (%s) at commit %s (p=%.4f)" % (
                s.machine, metric_title(s.auth, s.metric), value_text(s.metric, cp.before),
                value_text(s.metric, cp.after), fmt.percent(cp.change),
                s.runs[cp.index].result.commit, cp.p_value))
    return lines
