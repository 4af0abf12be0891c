"""A design-review report of one result file: Markdown plus a self-contained HTML page."""

import base64
import hashlib
import html
import json
import os
import re
import shlex

from . import checks, compare, costmodel, derive, firstscreen, fmt, headline, plot, stats
from .load import UNKNOWN, MACHINE_KEYS
from .names import PACKAGE_TITLES
from .merge import SPREAD_LIMIT
from .stats import median, relative_spread

# A report is a list of blocks rendered twice, so the Markdown and the HTML say the same.
# ("h1"|"h2"|"h3", text) ("h3", text, "tight": no blank line after it in Markdown) ("p", text)
# ("list", [text]) ("table", header, rows) ("code", text) ("image", path, alt)
# ("details", title, [blocks], open): a collapsible section in the HTML, a "##" section in Markdown


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
                        "a context is one extra round trip; kerberos, ntlm and negotiate: the same "
                        "run's exchange across the socket, `baseline/<package>[/mech:M]/establish/"
                        "place:P`) + for kerberos, tickets:cold: contexts per call × the TGS-REQ "
                        "(the AP exchange in one process cold minus warm) and prot:integrity: one "
                        "MIC pair (`baseline/<package>[/mech:M]/mic/bytes:64`; prot:privacy: two "
                        "seal/unseal pairs) + "
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
    # The threaded load cells run once by design (their counters are the result, not a time);
    # results.md says so.
    few = [c.name for c in result.cells.values()
           if not c.failed and not c.from_aggregates and len(c.samples) < stats.MIN_REPETITIONS
           and not c.info.is_load_threads]
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


def headline_blocks(result, tables):
    """The first screen: one table per package and pinned placement, and the sentences that read
    them. Headings sit right on their tables so a default run's headline fits 60 Markdown lines."""
    if not tables:
        return []
    blocks = [("h2", "Headline: what cloaking costs a downstream call")]
    said = headline.sentences(tables, None)  # the line above names the machine
    if said:
        blocks.append(("list", said))
    cov = headline.least_coverage(tables)
    note = ""
    if cov is not None and cov < headline.CONFIDENCE - 1e-9:
        note = (" (for a cell of %d repetitions no distribution-free interval reaches 95%%: "
                "it is [min, max], %.1f%%)" % (min(len(r.cell.samples) for t in tables
                                                  for r in t.rows if r.coverage is not None),
                                              100 * cov))
    for t in tables:
        header, rows = headline.table_rows(t)
        blocks += [("h3", t.title, "tight"), ("table", header, rows)]
    blocks.append(("p", "Per call: median of the repetitions; 95%% interval of that median from "
                        "order statistics%s; × none: over the same token pattern without "
                        "cloaking; transport … remainder: where the time goes (decomposition "
                        "below). Dynamic cloaking uses the kernel probe." % note))
    return blocks


def workload_blocks(result, every, all_models):
    header, rows = costmodel.workload_rows(result, every, all_models)
    if not rows:
        return [("h2", "At one identity change every %d calls" % every),
                ("p", "The run has no steady and switch cells of the headline variants, so the "
                      "cost model cannot be evaluated.")]
    return [("h2", "At one identity change every %d calls (report --every %d)" % (every, every)),
            ("p", "The cost model (below) evaluated at N = %d: per call = steady + (switch − "
                  "steady) / N, from this run's cells. *A change costs* is switch − steady; lru "
                  "numbers assume the identities that come back fit the cache (the bench's 4 "
                  "clients in lru:4)." % every),
            ("table", header, rows)]


def cost_model_blocks(check_list):
    chosen = costmodel.headline_checks(check_list)
    if not chosen:
        return []
    n, med_err, max_err, overlap = costmodel.summary(chosen)
    header, rows = costmodel.check_rows(chosen, headline_only=True)
    return [("p", "Per call at one identity change every N calls = steady + (switch − steady) / "
                  "N: the switch cell changes identity before every call, so switch − steady is "
                  "what one change costs (a token switch, and under dynamic cloaking without a "
                  "cached context a new security context), paid once every N calls. For the "
                  "headline variants steady and switch come from the run's paired blocks (means "
                  "of the launches' medians, intervals across launches); the others from the "
                  "cells; every:N cells, timed separately, measure the same thing directly. Over these "
                  "%d checks the median error is %s and the largest %s; in %d the prediction's "
                  "interval (from the steady and switch intervals) and the measured median's interval "
                  "overlap. `report --every N` evaluates the model at a reader's N."
                  % (n, fmt.percent(med_err, signed=False), fmt.percent(max_err, signed=False),
                     overlap)),
            ("table", header, rows)]


def all_cost_model_blocks(check_list):
    if not check_list:
        return []
    n, med_err, max_err, overlap = costmodel.summary(check_list)
    header, rows = costmodel.check_rows(check_list, headline_only=False)
    return [("p", "Every every:N cell of the run against the model of its variant: %d checks, "
                  "median error %s, largest %s, intervals overlap in %d."
                  % (n, fmt.percent(med_err, signed=False), fmt.percent(max_err, signed=False),
                     overlap)),
            ("table", header, rows)]


def noisy_cells(result):
    """(cell, spread) of every cell whose repetitions spread more than the noisy-cell limit, by
    the one spread of docs/reading.md."""
    out = []
    for c in result.cells.values():
        if not c.failed and not c.from_aggregates and len(c.samples) > 1:
            s = relative_spread(c.samples)
            if s > SPREAD_LIMIT:
                out.append((c, s))
    return out


def warning_blocks(result, noisy, open_section=True):
    run_warnings = [w for w in result.warnings if not w.startswith(NOISY_PREFIX)]
    recorded_noisy = [w for w in result.warnings if w.startswith(NOISY_PREFIX)]
    own = reader_warnings(result)
    if any("coefficient of variation" in w for w in recorded_noisy):
        own.append("the run recorded its noisy-cell warnings as a coefficient of variation (an "
                   "older cloakbench); this report's spread is half the interquartile range over "
                   "the median (docs/reading.md), so its list of noisy cells may differ")
    items = ["run: " + w for w in run_warnings] + ["reader: " + w for w in own]
    if noisy:
        items.append("reader: %d cells have a spread above ±%.0f%% (half the interquartile range "
                     "over the median; listed in the appendix \"Noisy cells\"); read their "
                     "ratios with the spread beside them" % (len(noisy), SPREAD_LIMIT * 100))
    inner = [("list", items)] if items else [("p", "The run recorded no warnings.")]
    return [("details", "Warnings (%d)" % len(items), inner, open_section)]


def warning_count(result, noisy):
    n = len([w for w in result.warnings if not w.startswith(NOISY_PREFIX)])
    return n + len(reader_warnings(result)) + (1 if noisy else 0)


def _figure_blocks(figures):
    return [("image", w.png, w.title) for w in figures]


def compare_headline_blocks(comparison):
    summary = compare.headline_summary(comparison)
    if summary is None:
        return []
    lines, header, rows = summary
    cross = comparison.mode == compare.CROSS_MACHINE
    return [("h2", "Compared with the baseline: headline %s side by side"
             % ("ratios" if cross else "cells")),
            ("p", "**%s**" % compare.headline(comparison)),
            ("p", " ".join(lines)),
            ("table", header, rows)]


def thread_blocks(result):
    """The threaded load cells: throughput at saturation per package, cloaking mode and proxy shape,
    p99 at 50% and 80% of it under open-loop arrivals, and where the machine saturates."""
    header, rows = costmodel.thread_rows(result)
    if not rows:
        return []
    load_ctx = result.ctx("cloak_load", None)
    if isinstance(load_ctx, str):
        try:
            load_ctx = json.loads(load_ctx)
        except ValueError:
            load_ctx = None
    cpus = load_ctx.get("cpus") if isinstance(load_ctx, dict) else None
    if not cpus and result.ctx("num_cpus", None) not in (None, UNKNOWN):
        cpus = result.ctx("num_cpus")
    groups = costmodel.thread_groups(result)
    sat = sorted({costmodel.saturates_at(g) for g in groups.values()
                  if costmodel.saturates_at(g) is not None})
    where = ("throughput stops growing (the next thread count adds under 10%%) at %s" %
             " to ".join(str(t) for t in ([sat[0], sat[-1]] if len(sat) > 1 else sat)) +
             " worker threads") if sat else "no closed-loop cells to say where it saturates"
    return [("h3", "Threads: throughput and tail latency"),
            ("p", "T worker threads serve K clients (Zipf(1.0), a seeded population per worker), "
                  "each request impersonating its client (per-thread kernel credentials) and "
                  "calling the downstream, every call verified. *one per thread*: each worker has "
                  "its own proxy and connection (apartments); *shared*: one thread-safe proxy over "
                  "a connection per worker, an identity hashed to its connection under dynamic "
                  "cloaking (docs/design.md, \"Threads\"). *calls/s at saturation*: the closed "
                  "loop's most calls a second over the thread counts run; *p50/p99 at 50%%, 80%%*: "
                  "open loop, Poisson arrivals at that fraction of the same cell's closed-loop "
                  "throughput, latency from each request's due time (docs/reading.md, \"Under "
                  "load: threads\"); *keeps up to*: the highest of those rates at which the open "
                  "loop served what arrived (at least 95%% of it, nothing left queued): past it the "
                  "queue grows and p99 measures the queue. Each arrival wakes an idle worker, which "
                  "the closed loop never pays, so the open loop can saturate well below the closed "
                  "loop's rate. The downstream runs a thread per connection; both sides "
                  "unpinned on %s CPU%s: %s." % (
                      cpus if cpus else "?", "" if cpus == 1 else "s", where)),
            ("table", header, rows)]


def under_load_blocks(result):
    """Issue 19's section: the threaded middle tier's throughput and tail latency (thread_blocks),
    then per package and population, cost per call and hit rate against the cache size, the model's
    prediction from the hit rate, and what a cached context costs in memory."""
    groups = costmodel.load_groups(result)
    blocks = thread_blocks(result)
    if not groups:
        return blocks
    seed = result.ctx("cloak_load_seed", None)
    blocks = blocks + [("p", "One middle-tier thread serving K client identities drawn from a seeded "
                    "population (seed %s), impersonating each caller before its call (the token "
                    "switch is part of the call) and checking every call's identity at the "
                    "downstream. The cache was warmed by one pass of K draws before the timed "
                    "calls. *hit rate*: of the identity changes, those that found their context "
                    "in the lru cache. *model*: steady + changes/call × (a cached change + (1 − "
                    "hit rate) × a new context), from the same run's dynamic steady and switch "
                    "cells (docs/reading.md, \"Under load\"). *bytes/context*: what the warm "
                    "pass added to the middle's heap (allocator statistics) and to the "
                    "downstream's RssAnon, over the contexts it added."
                    % (seed if seed not in (None, UNKNOWN) else "unknown"))]
    for (auth, clients, pop), cells in groups.items():
        title = "%s: %s clients, %s" % (
            PACKAGE_TITLES.get(auth, auth), "{:,}".format(clients) if clients else "?", pop)
        header, rows = costmodel.load_rows(result, cells)
        blocks += [("h3", title), ("table", header, rows)]
    return blocks


def build_blocks(result, images=(), comparison=None, report_command="", every=None,
                 figures=None, machine_figures=None, equal_within=None):
    """The report as blocks. `figures` is what plot.write_figures wrote ([plot.Written]); plain
    image paths in `images` are shown in the main figures section (older callers)."""
    figures = list(figures or [])
    machine_figures = list(machine_figures or [])
    title = "cloakbench report: %s, commit %s" % (result.machine_id, result.commit)
    cells = [c for c in result.cells.values() if c.info.is_cell]
    noisy = noisy_cells(result)
    n_warn = warning_count(result, noisy)
    tables = headline.tables(result)
    blocks = [("h1", title),
              ("p", "Run of %s on %s; backend %s (%s); %d matrix cells, %d baselines, %d other "
                    "benchmarks. **%d warning%s** (below: read them before quoting a number)." % (
                        result.date, result.machine_summary(), result.ctx("cloak_backend"),
                        result.ctx("cloak_privilege_mode"), len(cells),
                        sum(1 for c in result.cells.values() if c.info.is_baseline),
                        sum(1 for c in result.cells.values() if c.info.kind == "generic"),
                        n_warn, "" if n_warn == 1 else "s"))]
    if comparison is not None:
        blocks.append(("p", "**Against the baseline: %s**" % compare.headline(comparison)))
    if result.blocks:  # the paired blocks carry the first screen; the cells the full picture
        blocks += firstscreen.report_blocks(result, equal_within or firstscreen.MIN_EFFECT)
    else:
        blocks += headline_blocks(result, tables)
    blocks += harness_cost_blocks(result)
    all_models = costmodel.models(result)
    if every:
        blocks += workload_blocks(result, every, all_models)
    if comparison is not None:
        blocks += compare_headline_blocks(comparison)
        blocks += _figure_blocks([w for w in machine_figures if w.section == plot.MAIN])
    check_list = costmodel.checks(result, all_models)
    model = cost_model_blocks(check_list)
    if model:
        blocks.append(("details", "Cost model: one identity change every N calls, against the "
                                  "measured every:N cells", model, True))
    load = under_load_blocks(result)
    if load:
        blocks.append(("details", "Under load", load, True))
    blocks += warning_blocks(result, noisy)
    main = _figure_blocks([w for w in figures if w.section == plot.MAIN]) + \
        [("image", p, _plot_title(p)) for p in images]
    if main:
        blocks.append(("details", "Figures", main, True))
    rest = []
    table = key_table_blocks(result)
    if table:
        rest.append(("details", "Cost per call, every cell", table[1:], False))
    decomposition = decomposition_blocks(result)
    if decomposition:
        rest.append(("details", "Where the time goes, every cell", decomposition[1:], False))
    every_check = all_cost_model_blocks(check_list)
    if every_check:
        rest.append(("details", "Cost model, every variant", every_check, False))
    base = baseline_blocks(result)
    if base:  # a file of other benchmarks has nothing else to show: open
        rest.append(("details", base[0][1], base[1:], not tables and not cells))
    if comparison is not None:
        rest.append(("details", "Compared with the baseline, every cell",
                     compare_blocks(comparison)[1:], False))
    appendix = _figure_blocks([w for w in figures if w.section == plot.APPENDIX]) + \
        _figure_blocks([w for w in machine_figures if w.section == plot.APPENDIX])
    if appendix:
        rest.append(("details", "Appendix: figures of the full matrix", appendix, False))
    rest.append(("details", "Machine", machine_blocks(result)[1:], False))
    rest.append(("details", "Provenance", provenance_blocks(result, report_command)[1:], False))
    if noisy or any(w.startswith(NOISY_PREFIX) for w in result.warnings):
        rest.append(("details", "Appendix: noisy cells", noisy_blocks(result, noisy), False))
    return blocks + rest


def noisy_blocks(result, noisy):
    out = []
    if noisy:
        out.append(("table", ["cell", "spread (half the IQR over the median)", "reps"],
                    [[c.name, "±" + fmt.percent(s, signed=False), str(len(c.samples))]
                     for c, s in noisy]))
    recorded = [w for w in result.warnings if w.startswith(NOISY_PREFIX)]
    if recorded:
        out += [("p", "The run's own noisy-cell warnings, as it recorded them:"),
                ("list", recorded)]
    return out


def _plot_title(path):
    stem = os.path.basename(path)
    kind = stem.split(".")[-2] if stem.count(".") >= 2 else stem
    return plot.KIND_TITLES.get(re.sub(r"-\d+$", "", kind), kind)


def render_markdown(blocks, out_dir, depth=0):
    out = []
    for block in blocks:
        kind = block[0]
        if kind == "details":
            out += ["## " + block[1], ""]
            out.append(render_markdown(block[2], out_dir, depth + 1))
            continue
        if kind in ("h1", "h2", "h3"):
            level = 3 if depth else int(kind[1])  # inside a "##" section every heading is "###"
            out.append("#" * level + " " + block[1])
            if not (len(block) > 2 and block[2] == "tight"):
                out.append("")
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
    return "\n".join(out) if depth else "\n".join(out).rstrip("\n") + "\n"


def _inline_html(text):
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"(?<![\w*])\*([^*]+)\*(?![\w*])", r"<em>\1</em>", text)


# The body is 1200 px at most with 1em (16 px) of padding each side: a figure (plot.WIDTH_IN at
# plot.DPI, 1166 px, and its 1 px border) fills the column at 100%, so its 9 pt text stays 9 pt.
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1em auto;max-width:1200px;
padding:0 1em;color:#222;line-height:1.35}
h1{font-size:1.45em;margin:.3em 0}h2{font-size:1.25em;border-bottom:1px solid #ddd}
h3{font-size:1.02em;margin:.9em 0 .3em}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}
table.headline{font-size:.8em;margin:.2em 0 .8em}table.headline td,table.headline th{padding:.12em .45em}
code,pre{background:#f5f5f5;font-family:ui-monospace,monospace}pre{padding:.6em;overflow-x:auto}
img{max-width:100%;border:1px solid #ddd}figure{margin:0 0 1.5em}
figcaption{font-size:.85em;color:#555}
details{margin:.4em 0}details>summary{cursor:pointer}
details>summary>h2{display:inline-block;margin:.4em 0;border:none}
"""


def render_html(blocks):
    title = next((b[1] for b in blocks if b[0] == "h1"), "cloakbench report")
    out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
           "<title>%s</title><style>%s</style></head><body>" % (html.escape(title), _CSS)]
    out += _html_blocks(blocks)
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def _html_blocks(blocks):
    out = []
    in_headline = False
    for block in blocks:
        kind = block[0]
        if kind == "details":
            out.append("<details id=\"%s\"%s><summary><h2>%s</h2></summary>" % (
                _slug(block[1]), " open" if block[3] else "", _inline_html(block[1])))
            out += _html_blocks(block[2])
            out.append("</details>")
            continue
        if kind == "h2":
            in_headline = block[1].startswith("Headline")
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
            attr = " class=\"headline\"" if in_headline else ""
            out.append("<table%s><thead><tr>%s</tr></thead><tbody>%s</tbody></table>"
                       % (attr, head, body))
        elif kind == "code":
            out.append("<pre><code>%s</code></pre>" % html.escape(block[1]))
        elif kind == "image":
            with open(block[1], "rb") as f:
                data = base64.b64encode(f.read()).decode("ascii")
            out.append("<figure><img alt=\"%s\" src=\"data:image/png;base64,%s\"><figcaption>"
                       "%s</figcaption></figure>" % (html.escape(block[2]), data,
                                                     html.escape(block[2])))
    return out


def report_command_line(result, out_dir, baseline=None, cross_machine=False, every=None):
    parts = ["scripts/cloakbench", "report", result.path]
    if baseline is not None:
        parts += ["--baseline", baseline.path]
    if cross_machine:
        parts.append("--cross-machine")
    if every:
        parts += ["--every", str(every)]
    parts += ["-o", out_dir]
    return " ".join(shlex.quote(p) for p in parts)


def write_report(result, out_dir, baseline=None, compare_options=None, every=None,
                 equal_within=None):
    """Write report.md, report.html, headline.json (when the run has blocks) and the figures into
    out_dir; return the paths written.
    Raises CompareRefused when the baseline cannot be compared as asked."""
    options = dict(compare_options or {})
    comparison = None
    if baseline is not None:
        comparison = compare.compare_results(baseline, result, **options)
    stem = plot.file_stems([result])[0]
    figures = plot.write_figures(result, out_dir, stem, every)
    machine_figures = []
    if baseline is not None and (options.get("cross_machine")
                                 or baseline.machine_hash != result.machine_hash):
        machine_figures = plot.write_machines([baseline, result], out_dir, headline_only=True,
                                              section=plot.MAIN)
        machine_figures += plot.write_machines([baseline, result], out_dir)
    blocks = build_blocks(result, comparison=comparison, report_command=report_command_line(
        result, out_dir, baseline, options.get("cross_machine", False), every), every=every,
        figures=figures, machine_figures=machine_figures, equal_within=equal_within)
    md_path = os.path.join(out_dir, "report.md")
    html_path = os.path.join(out_dir, "report.html")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(render_markdown(blocks, out_dir))
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(render_html(blocks))
    written = [p for w in figures + machine_figures for p in (w.png, w.svg)]
    if result.blocks:
        json_path = os.path.join(out_dir, "headline.json")
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(firstscreen.headline_json(result, equal_within or firstscreen.MIN_EFFECT), f,
                      indent=1, ensure_ascii=False)
            f.write("\n")
        written.insert(0, json_path)
    return [md_path, html_path] + written
