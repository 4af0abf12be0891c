"""A design-review report of one result file: Markdown plus a self-contained HTML page."""

import base64
import hashlib
import html
import json
import os
import re
import shlex

from . import checks, compare, derive, fmt, plot, stats
from .load import UNKNOWN, MACHINE_KEYS
from .stats import median, relative_spread

# A report is a list of blocks rendered twice, so the Markdown and the HTML say the same.
# ("h1"|"h2"|"h3", text) ("p", text) ("list", [text]) ("table", header, rows)
# ("code", text) ("image", path, alt)


def _cell_stats(cell):
    if cell.failed or not cell.samples:
        return "failed", "—", str(len(cell.samples))
    spread = relative_spread(cell.samples) if len(cell.samples) > 1 else None
    return (fmt.ns(median(cell.samples)),
            "—" if spread is None else "±" + fmt.percent(spread, signed=False),
            str(len(cell.samples)))


def _counter(cell, key):
    v = cell.counter(key)
    return "unknown" if v is None else "%g" % v


def _overhead(result, cell):
    if cell.info.cloaking == "none" or cell.failed or not cell.samples:
        return "—"
    none = derive.none_counterpart(result, cell)
    if none is None:
        return "n/a (no cell without cloaking)"
    if none.failed or not none.samples:
        return "unknown (cell without cloaking failed)"
    m, n = median(cell.samples), median(none.samples)
    return "%s%s (%s)" % ("+" if m >= n else "-", fmt.ns(abs(m - n)), fmt.percent(m / n - 1.0))


def _sorted_cells(cells):
    return sorted(cells, key=lambda c: (plot._variant_key(c.info), plot._pattern_key(c.info.pattern)))


def key_table_blocks(result):
    """Cost per call by cloaking and pattern, with the overhead against no cloaking."""
    blocks = []
    groups = plot._groups(result, threads=None)
    if not groups:
        return blocks
    blocks.append(("h2", "Cost per call"))
    blocks.append(("p", "Median real time per downstream call over the repetitions; spread is "
                        "half the interquartile range relative to the median; *vs no cloaking* "
                        "is the difference to the same cell with cloaking `none` in this run."))
    header = ["cloaking", "probe", "cache", "token pattern", "time per call", "spread", "reps",
              "vs no cloaking", "contexts/call", "probes/call", "cache hits/call"]
    for key, cells in groups:
        rows = []
        for c in _sorted_cells(cells):
            med, spread, reps = _cell_stats(c)
            rows.append([c.info.cloaking, c.info.probe, c.info.cache, c.info.pattern, med, spread,
                         reps, _overhead(result, c), _counter(c, "contexts_per_call"),
                         _counter(c, "probes_per_call"), _counter(c, "cache_hits_per_call")])
        blocks.append(("h3", plot.group_title(key)))
        blocks.append(("table", header, rows))
    return blocks


def _component(d, key):
    v = d.component(key)
    return "unknown" if v is None else fmt.ns(v)


def decomposition_blocks(result):
    blocks = []
    header = ["cloaking | token pattern", "measured", "transport", "identity probe",
              "token switch", "new context", "service ticket (TGS)", "MIC", "remainder", "note"]
    for key, cells in plot._groups(result, threads=None):
        rows = []
        for c in _sorted_cells(cells):
            d = derive.decompose(result, c)
            if d is None:
                continue
            rows.append([c.info.short_label(), fmt.ns(d.measured)] +
                        [_component(d, k) for k in ("transport", "probe", "switch", "new_context",
                                                    "service_ticket", "mic")]
                        + [fmt.ns(d.remainder), "; ".join(d.notes)])
        if rows:
            blocks += [("h3", plot.group_title(key)), ("table", header, rows)]
    if blocks:
        blocks = [("h2", "Where the time goes"),
                  ("p", "Each cell = transport (raw round trip, same placement and payload) + "
                        "probes per call × `baseline/probe:<kind>` + switches per call "
                        "(switch, reimpersonate: 1; every:N: 1/N; steady: 0) × `baseline/switch` "
                        "+ contexts per call × the cost of a new context (local: the raw round "
                        "trip with the smallest payload at the same placement, since establishing "
                        "a context is one extra round trip; kerberos: the same run's AP exchange "
                        "across the socket, `baseline/kerberos/establish/place:P`) + for "
                        "kerberos, tickets:cold: contexts per call × the TGS-REQ (the AP exchange "
                        "in one process cold minus warm) and prot:integrity: one MIC pair "
                        "(`baseline/kerberos/mic/bytes:64`) + "
                        "remainder. The remainder is what the baselines do not explain (proxy, "
                        "cache, credential passing); a negative remainder means the baselines "
                        "add up to more than the cell and is shown as measured.")] + blocks
    return blocks


def baseline_blocks(result):
    rows = [[c.name] + list(_cell_stats(c)) for c in result.cells.values() if c.info.is_baseline]
    generic = [[c.name] + list(_cell_stats(c)) for c in result.cells.values()
               if c.info.kind == "generic"]
    blocks = []
    if rows:
        blocks += [("h2", "Baselines measured in the same run"),
                   ("table", ["baseline", "time", "spread", "reps"], rows)]
    if generic:
        blocks += [("h2", "Benchmarks" if not rows else "Other benchmarks"),
                   ("p", "Names that follow no cloakbench scheme; cloaking, pattern and "
                         "placement are unknown."),
                   ("table", ["benchmark", "time per iteration", "spread", "reps"], generic)]
    return blocks


def reader_warnings(result):
    """Warnings the reader adds to the run's own."""
    out = []
    failed = [c.name for c in result.cells.values() if c.failed]
    if failed:
        out.append("failed cells (no time reported): " + ", ".join(failed))
    aggs = [c.name for c in result.cells.values() if c.from_aggregates]
    if aggs:
        out.append("%d cells have only aggregate rows, no repetitions; compare cannot judge "
                   "them" % len(aggs))
    few = [c.name for c in result.cells.values()
           if not c.failed and not c.from_aggregates and len(c.samples) < stats.MIN_REPETITIONS]
    if few:
        out.append("%d cells have fewer than %d repetitions; compare will call them "
                   "inconclusive" % (len(few), stats.MIN_REPETITIONS))
    if str(result.commit).endswith("-dirty"):
        out.append("built from a tree with uncommitted changes (%s): the commit alone does "
                   "not reproduce it" % result.commit)
    if result.context.get("cpu_scaling_enabled") is True:
        out.append("Google Benchmark saw CPU frequency scaling enabled: times may vary with "
                   "the clock")
    # library_build_type describes Google Benchmark's own library; what matters for the timed
    # loop is how the bench was built, which a cloakbench file records separately.
    if result.context.get("library_build_type") == "debug":
        if result.ctx("cloak_build_type") in ("Release", "RelWithDebInfo", "MinSizeRel"):
            pass  # the run explains this in its own warnings
        else:
            out.append("Google Benchmark library is a debug build and the bench's own build type "
                       "is %s: times are not representative" % result.ctx("cloak_build_type"))
    if not result.is_cloakbench:
        out.append("not a cloakbench file: machine fingerprint, commit and command are unknown")
    return out


def _flatten(prefix, value):
    if isinstance(value, dict):
        rows = []
        for k, v in value.items():
            rows += _flatten("%s.%s" % (prefix, k) if prefix else str(k), v)
        return rows
    if isinstance(value, list):
        return [[prefix, ", ".join(str(v) for v in value)]]
    return [[prefix, _text(value)]]


def machine_blocks(result):
    m = result.machine
    rows = [["machine id", str(result.machine_id)], ["machine hash", str(result.machine_hash)]]
    for key in MACHINE_KEYS:
        rows += _flatten(key, m.get(key, UNKNOWN))
    rows += [r for k, v in m.items() if k not in MACHINE_KEYS for r in _flatten(k, v)]
    for key in ("host_name", "num_cpus", "mhz_per_cpu", "cpu_scaling_enabled", "load_avg",
                "library_build_type"):
        rows += _flatten("google benchmark: " + key, result.ctx(key))
    return [("h2", "Machine"), ("table", ["field", "value"], rows)]


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def reproduce_command(result):
    """One line that rebuilds and reruns what produced the file, or None when unknown."""
    commit, command = result.commit, result.command
    if commit == UNKNOWN or command == UNKNOWN:
        return None
    rev = re.sub(r"-dirty$", "", commit)
    rev = re.sub(r"^.*-g([0-9a-f]{7,40})$", r"\1", rev)  # git describe -> its commit
    return "git checkout %s && %s" % (shlex.quote(rev), command)


def cell_command(result, name):
    """A command that reruns one cell, from the launch that ran it."""
    launches = [l for l in result.context.get("cloak_launches", []) if isinstance(l, dict)]
    owner = next((l for l in launches if isinstance(l.get("cells"), list)
                  and name in l["cells"]), None)
    if owner is None:
        wanted = "baseline" if name.startswith("baseline/") else "matrix"
        owner = next((l for l in launches if wanted in str(l.get("program", ""))), None)
    if owner is None and len(launches) == 1:
        owner = launches[0]
    program = owner.get("program") if owner else "<bench program>"
    reps = max((len(c.samples) for c in result.cells.values()), default=5)
    return "%s --benchmark_filter=%s --benchmark_repetitions=%d --benchmark_format=json" % (
        program, shlex.quote("^" + re.escape(name) + "$"), max(reps, stats.MIN_REPETITIONS))


def _text(value):
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def provenance_blocks(result, report_command):
    keys = [("command", "cloak_command"), ("commit", "cloak_commit"),
            ("suite version", "cloak_suite_version"), ("date", "cloak_date"),
            ("backend", "cloak_backend"), ("privilege mode", "cloak_privilege_mode"),
            ("placement", "cloak_placement"), ("cpus", "cloak_cpus"),
            ("compiler", "cloak_compiler"), ("flags", "cloak_cxx_flags"),
            ("build type", "cloak_build_type"), ("google benchmark", "cloak_benchmark_version"),
            ("noise floor", "cloak_noise_floor"), ("schema version", "cloak_schema_version")]
    rows = [[label, _text(result.ctx(key))] for label, key in keys]
    rows.append(["result file", result.path])
    rows.append(["result file sha256", _sha256(result.path)])
    blocks = [("h2", "Provenance"), ("table", ["field", "value"], rows)]
    launches = [l for l in result.context.get("cloak_launches", []) if isinstance(l, dict)]
    if launches:
        blocks.append(("h3", "Process launches merged into the file"))
        blocks.append(("table", ["program", "argv", "started", "seconds", "exit status", "cells"],
                       [[str(l.get("program", UNKNOWN)),
                         " ".join(shlex.quote(str(a)) for a in l.get("argv", [])),
                         str(l.get("started", UNKNOWN)), str(l.get("seconds", UNKNOWN)),
                         str(l.get("exit_status", UNKNOWN)),
                         str(len(l["cells"]) if isinstance(l.get("cells"), list)
                             else l.get("cells", UNKNOWN))] for l in launches]))
    blocks.append(("h3", "Reproduce"))
    line = reproduce_command(result)
    if line:
        blocks += [("p", "Rerun the whole suite at the same commit:"), ("code", line)]
    else:
        blocks.append(("p", "The file does not record its commit and command (unknown), so "
                            "the run cannot be reproduced from it."))
    example = next((c.name for c in result.cells.values() if c.info.is_cell), None)
    if example and result.is_cloakbench:
        blocks += [("p", "Rerun one cell (any name from the tables above), for example:"),
                   ("code", cell_command(result, example))]
    blocks += [("p", "Every time in this report is the median of the cell's per-repetition "
                     "`real_time` (rows with `run_type` iteration) in the result file above. "
                     "Regenerate this report with:"), ("code", report_command)]
    return blocks


def compare_blocks(comparison):
    header, rows = compare.table_rows(comparison)
    counts = comparison.counts()
    gm = comparison.geometric_mean
    return [("h2", "Compared with the baseline"),
            ("list", compare.settings_lines(comparison)),
            ("p", "**%s**" % compare.headline(comparison)),
            ("p", ", ".join("%s: %d" % (v, n) for v, n in counts.items()) +
             "; geometric mean of the ratios: %s." % ("—" if gm != gm else fmt.percent(gm - 1))),
            ("table", header, rows)] + (
        [("p", "Only in the candidate: " + ", ".join("`%s`" % n for n in comparison.added))]
        if comparison.added else []) + (
        [("p", "Only in the baseline: " + ", ".join("`%s`" % n for n in comparison.removed))]
        if comparison.removed else [])


def _plot_title(path):
    stem = os.path.basename(path)
    kind = stem.split(".")[-2] if stem.count(".") >= 2 else stem
    return {"cost_per_call": "Cost per call", "decomposition": "Where the time goes",
            "thread_scaling": "Scaling with client threads",
            "same_run_ratios": "Same-run ratios across machines"}.get(kind, kind)


NOISY_PREFIX = "noisy cell "


def harness_cost_blocks(result):
    """The checks that say whether the harness itself costs next to nothing (same run)."""
    judged = checks.harness_cost_checks(result)
    if not judged:
        return []
    verdict = {True: "ok", False: "OVER", None: "info"}
    items = ["**%s** place:%s: %s" % (verdict[c["ok"]], c["place"], c["text"]) for c in judged]
    return [("h2", "Is the harness's own cost near zero?"),
            ("p", "Kernel transport, steady token, 64 B, one client thread, this run only: no "
                  "cloaking against the raw round trip (limit +5%), static against none (±2%), "
                  "dynamic against static (one probe plus the run's noise). Measured paired "
                  "(`check/paired/...`: the raw round trip and each proxy called in turn, in "
                  "random order, within every iteration), so interference that hits all of them "
                  "cancels; runs without paired cells are judged on each cell's fastest "
                  "repetition. place:unpinned is shown, not judged."),
            ("list", items)]


def build_blocks(result, images, comparison=None, report_command=""):
    title = "cloakbench report: %s, commit %s" % (result.machine_id, result.commit)
    cells = [c for c in result.cells.values() if c.info.is_cell]
    blocks = [("h1", title),
              ("p", "Run of %s on %s. Backend %s, privilege mode %s. %d matrix cells, %d "
                    "baselines, %d other benchmarks." % (
                        result.date, result.machine_summary(), result.ctx("cloak_backend"),
                        result.ctx("cloak_privilege_mode"), len(cells),
                        sum(1 for c in result.cells.values() if c.info.is_baseline),
                        sum(1 for c in result.cells.values() if c.info.kind == "generic")))]
    if comparison is not None:
        blocks.append(("p", "**Against the baseline: %s**" % compare.headline(comparison)))
    # Every warning is shown, but the per-cell "noisy cell" ones go to an appendix: a list of
    # hundreds would bury the few that say whether the run can be trusted at all.
    run_warnings = [w for w in result.warnings if not w.startswith(NOISY_PREFIX)]
    noisy = [w for w in result.warnings if w.startswith(NOISY_PREFIX)]
    own = reader_warnings(result)
    blocks.append(("h2", "Warnings"))
    items = ["run: " + w for w in run_warnings] + ["reader: " + w for w in own]
    if noisy:
        items.append("run: %d cells have a spread above 5%% (listed in the appendix \"Noisy "
                     "cells\"); read their ratios with the spread beside them" % len(noisy))
    if items:
        blocks.append(("list", items))
    else:
        blocks.append(("p", "The run recorded no warnings."))
    blocks += harness_cost_blocks(result)
    blocks += key_table_blocks(result)
    blocks += decomposition_blocks(result)
    blocks += baseline_blocks(result)
    if comparison is not None:
        blocks += compare_blocks(comparison)
    if images:
        blocks.append(("h2", "Plots"))
        for path in images:
            blocks += [("h3", _plot_title(path)), ("image", path, _plot_title(path))]
    blocks += machine_blocks(result)
    blocks += provenance_blocks(result, report_command)
    if noisy:
        blocks += [("h2", "Appendix: noisy cells"), ("list", noisy)]
    return blocks


def render_markdown(blocks, out_dir):
    out = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            out += ["#" * int(kind[1]) + " " + block[1], ""]
        elif kind == "p":
            out += [block[1], ""]
        elif kind == "list":
            out += ["- " + item for item in block[1]] + [""]
        elif kind == "table":
            out += [fmt.markdown_table(block[1], block[2]), ""]
        elif kind == "code":
            out += ["```", block[1], "```", ""]
        elif kind == "image":
            out += ["![%s](%s)" % (block[2], os.path.relpath(block[1], out_dir)), ""]
    return "\n".join(out)


def _inline_html(text):
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"(?<![\w*])\*([^*]+)\*(?![\w*])", r"<em>\1</em>", text)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}
code,pre{background:#f5f5f5;font-family:ui-monospace,monospace}pre{padding:.6em;overflow-x:auto}
img{max-width:100%;border:1px solid #ddd;margin-bottom:1.5em}h2{border-bottom:1px solid #ddd}
"""


def render_html(blocks):
    title = next((b[1] for b in blocks if b[0] == "h1"), "cloakbench report")
    out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
           "<title>%s</title><style>%s</style></head><body>" % (html.escape(title), _CSS)]
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            out.append("<%s>%s</%s>" % (kind, _inline_html(block[1]), kind))
        elif kind == "p":
            out.append("<p>%s</p>" % _inline_html(block[1]))
        elif kind == "list":
            out.append("<ul>%s</ul>" % "".join("<li>%s</li>" % _inline_html(i) for i in block[1]))
        elif kind == "table":
            head = "".join("<th>%s</th>" % html.escape(str(h)) for h in block[1])
            body = "".join("<tr>%s</tr>" % "".join("<td>%s</td>" % html.escape(str(c)) for c in row)
                           for row in block[2])
            out.append("<table><thead><tr>%s</tr></thead><tbody>%s</tbody></table>" % (head, body))
        elif kind == "code":
            out.append("<pre><code>%s</code></pre>" % html.escape(block[1]))
        elif kind == "image":
            with open(block[1], "rb") as f:
                data = base64.b64encode(f.read()).decode("ascii")
            out.append("<img alt=\"%s\" src=\"data:image/png;base64,%s\">"
                       % (html.escape(block[2]), data))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def report_command_line(result, out_dir, baseline=None, cross_machine=False):
    parts = ["scripts/cloakbench", "report", result.path]
    if baseline is not None:
        parts += ["--baseline", baseline.path]
    if cross_machine:
        parts.append("--cross-machine")
    parts += ["-o", out_dir]
    return " ".join(shlex.quote(p) for p in parts)


def write_report(result, out_dir, baseline=None, compare_options=None):
    """Write report.md, report.html and the plots into out_dir; return the paths written.
    Raises CompareRefused when the baseline cannot be compared as asked."""
    options = dict(compare_options or {})
    comparison = None
    if baseline is not None:
        comparison = compare.compare_results(baseline, result, **options)
    written, _ = plot.write_plots([result], out_dir)
    if baseline is not None and (options.get("cross_machine")
                                 or baseline.machine_hash != result.machine_hash):
        fig = plot.plot_machines([baseline, result])
        if fig is not None:
            written += plot.save(fig, out_dir, plot.MACHINES_STEM)
    images = [p for p in written if p.endswith(".png")]
    blocks = build_blocks(result, images, comparison, report_command_line(
        result, out_dir, baseline, options.get("cross_machine", False)))
    md_path = os.path.join(out_dir, "report.md")
    html_path = os.path.join(out_dir, "report.html")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(render_markdown(blocks, out_dir))
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(render_html(blocks))
    return [md_path, html_path] + written
