"""Pure functions behind `cloakbench run`: read a launch's Google Benchmark JSON (even a torn one),
merge launches into one result file (docs/results.md), judge the numbers (spread, noise floor,
warnings, the harness-cost checks) and write the file atomically."""

import json
import os
import re
import statistics
import tempfile

SCHEMA_VERSION = 1
SPREAD_LIMIT = 0.05  # a cell whose repetitions spread more than this is reported as noisy

# Keys a bench program writes with AddCustomContext as JSON text (Google Benchmark's custom context
# holds strings only); the merged file holds them as JSON values.
JSON_CONTEXT_KEYS = ("cloak_schema_version", "cloak_cpus", "cloak_machine", "cloak_warnings")
# Keys that describe one launch's process, not the run; they come from the first launch.
RUN_KEYS = ("cloak_commit", "cloak_command", "cloak_date", "cloak_noise_floor", "cloak_warnings",
            "cloak_launches", "cloak_backend", "cloak_schema_version")

INTERRUPTED = "interrupted"


class LaunchOutput:
    """What one bench process launch produced: its context, its benchmark entries, and whether the
    JSON had to be salvaged from a torn file."""

    def __init__(self, context, benchmarks, torn=False):
        self.context = context
        self.benchmarks = benchmarks
        self.torn = torn


def salvage_gbench_json(text):
    """Parse Google Benchmark JSON; if the writer died mid-file, keep the context and every complete
    benchmark entry before the tear. Returns a LaunchOutput, or None when not even the context can
    be read."""
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            return LaunchOutput(data.get("context", {}) or {}, list(data.get("benchmarks", []) or []))
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    m = re.search(r'"context"\s*:\s*', text)
    if not m:
        return None
    try:
        context, end = decoder.raw_decode(text, m.end())
    except ValueError:
        return None
    m = re.compile(r'\s*,\s*"benchmarks"\s*:\s*\[').match(text, end)
    benchmarks = []
    if m:
        pos = m.end()
        while True:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            try:
                entry, pos = decoder.raw_decode(text, pos)
            except ValueError:
                break
            if isinstance(entry, dict):
                benchmarks.append(entry)
    return LaunchOutput(context if isinstance(context, dict) else {}, benchmarks, torn=True)


def decode_context(context):
    """A launch's context with the cloak_* keys written as JSON text decoded to JSON values."""
    out = dict(context)
    for key in JSON_CONTEXT_KEYS:
        value = out.get(key)
        if isinstance(value, str):
            try:
                out[key] = json.loads(value)
            except ValueError:
                pass
    return out


def _is_interrupted(entry):
    return bool(entry.get("error_occurred")) and \
        str(entry.get("error_message", "")).startswith(INTERRUPTED)


def finished_entries(benchmarks):
    """The entries of cells that finished: every row of a cell is dropped when any of its rows says
    it was interrupted (an interrupted cell is incomplete, not failed). Returns (kept entries,
    names of the cells dropped)."""
    dropped = []
    for entry in benchmarks:
        if _is_interrupted(entry):
            name = entry.get("run_name") or entry.get("name")
            if name not in dropped:
                dropped.append(name)
    kept = [e for e in benchmarks if (e.get("run_name") or e.get("name")) not in dropped]
    return kept, dropped


def cell_names(benchmarks):
    """Names of the cells in entries, in first-seen order."""
    seen = []
    for entry in benchmarks:
        name = entry.get("run_name") or entry.get("name")
        if name and name not in seen:
            seen.append(name)
    return seen


def repetitions_by_cell(benchmarks):
    """{cell name: [real_time of each successful repetition]} from iteration rows."""
    reps = {}
    for entry in benchmarks:
        if entry.get("run_type", "iteration") != "iteration" or entry.get("error_occurred"):
            continue
        name = entry.get("run_name") or entry.get("name")
        value = entry.get("real_time")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            reps.setdefault(name, []).append(float(value))
    return reps


def failed_cells(benchmarks):
    """{cell name: first error message} of cells with an error row (interrupted cells excluded)."""
    out = {}
    for entry in benchmarks:
        if entry.get("error_occurred") and not _is_interrupted(entry):
            name = entry.get("run_name") or entry.get("name")
            out.setdefault(name, str(entry.get("error_message", "")))
    return out


def spread(samples):
    """Relative spread of repetitions: their coefficient of variation (sample standard deviation
    over mean); 0 for fewer than two samples."""
    if len(samples) < 2:
        return 0.0
    m = statistics.mean(samples)
    return statistics.stdev(samples) / m if m > 0 else float("inf")


def noise_floor(reps):
    """The run's noise floor: median spread of the baseline cells with at least three repetitions,
    rounded to 4 decimals; None when no baseline has three."""
    spreads = [spread(v) for k, v in reps.items() if k.startswith("baseline/") and len(v) >= 3]
    if not spreads:
        return None
    return round(statistics.median(spreads), 4)


def noisy_cell_warnings(reps, limit=SPREAD_LIMIT):
    """One warning per cell whose repetitions spread more than `limit`."""
    out = []
    for name, samples in reps.items():
        s = spread(samples)
        if s > limit:
            out.append("noisy cell %s: coefficient of variation %.1f%% over %d repetitions (limit %.0f%%)"
                       % (name, 100 * s, len(samples), 100 * limit))
    return out


def _unique(items):
    out = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _backends(values):
    found = set()
    for v in values:
        if isinstance(v, str):
            found.update(p for p in v.split("+") if p in ("kernel", "model"))
    if found == {"kernel", "model"}:
        return "kernel+model"
    return found.pop() if found else "none"


def merge_launches(launches, run, extra_warnings=()):
    """Merge launches into one result document.

    `launches` is a list of dicts {"output": LaunchOutput or None, "record": cloak_launches
    entry}; `run` holds the run-level keys (cloak_commit, cloak_command, cloak_date). Interrupted
    cells are dropped; family_index is renumbered so it stays unique across launches; launches
    keep their order. Warnings: the launches' own, then extra_warnings, then failed and noisy
    cells."""
    context = {}
    benchmarks = []
    warnings = []
    records = []
    backends = []
    family_offset = 0
    for launch in launches:
        out = launch["output"]
        record = dict(launch["record"])
        if out is None:
            record["cells"] = []
            records.append(record)
            continue
        ctx = decode_context(out.context)
        if not context:
            context = {k: v for k, v in ctx.items() if k not in RUN_KEYS}
        elif ctx.get("cloak_machine_hash") not in (None, context.get("cloak_machine_hash")):
            warnings.append("launch %s ran on another machine (hash %s, expected %s)"
                            % (record.get("program"), ctx.get("cloak_machine_hash"),
                               context.get("cloak_machine_hash")))
        backends.append(ctx.get("cloak_backend"))
        if isinstance(ctx.get("cloak_warnings"), list):
            warnings += [str(w) for w in ctx["cloak_warnings"]]
        kept, _ = finished_entries(out.benchmarks)
        top = -1
        for entry in kept:
            entry = dict(entry)
            if isinstance(entry.get("family_index"), int):
                top = max(top, entry["family_index"])
                entry["family_index"] += family_offset
            benchmarks.append(entry)
        family_offset += top + 1
        record["cells"] = cell_names(kept)
        records.append(record)
    reps = repetitions_by_cell(benchmarks)
    if context.get("library_build_type") == "debug":
        warnings.append("Google Benchmark's library was built as debug (the Debian package): only "
                        "its once-per-repetition timer code runs unoptimized; the timed loop is "
                        "inlined into the release-built bench")
    warnings += list(extra_warnings)
    for name, message in failed_cells(benchmarks).items():
        warnings.append("failed cell %s: %s" % (name, message))
    warnings += noisy_cell_warnings(reps)
    context["cloak_schema_version"] = SCHEMA_VERSION
    for key in ("cloak_commit", "cloak_command", "cloak_date"):
        context[key] = run.get(key, "unknown")
    context["cloak_backend"] = _backends(backends)
    context["cloak_noise_floor"] = noise_floor(reps)
    context["cloak_warnings"] = _unique(warnings)
    context["cloak_launches"] = records
    return {"context": context, "benchmarks": benchmarks}


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path, text):
    """Write text to path so that readers see the old file or the whole new one, never a torn
    one: a temporary file in the same directory, fsync, rename, fsync of the directory."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        # mkstemp makes the file 0600; a results file is meant to be read and shared.
        os.fchmod(fd, 0o644 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def dumps(document):
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# ---- the summary table and the harness-cost checks ----------------------------------------------

def _parts(name):
    """Fields of a matrix cell name, or None."""
    p = name.split("/")
    if len(p) != 10 or p[0] != "cloak":
        return None
    try:
        return {"backend": p[1], "transport": p[2], "cloaking": p[3], "pattern": p[4],
                "probe": p[5].split(":", 1)[1], "cache": p[6].split(":", 1)[1],
                "place": p[7].split(":", 1)[1], "bytes": int(p[8].split(":", 1)[1]),
                "threads": int(p[9].split(":", 1)[1])}
    except (IndexError, ValueError):
        return None


def none_counterpart(name):
    f = _parts(name)
    if f is None or f["cloaking"] == "none":
        return None
    return "cloak/%s/%s/none/%s/probe:na/cache:na/place:%s/bytes:%d/threads:%d" % (
        f["backend"], f["transport"], f["pattern"], f["place"], f["bytes"], f["threads"])


def transport_floor(name):
    f = _parts(name)
    if f is None:
        return None
    if f["transport"] == "uds":
        return "baseline/roundtrip/place:%s/bytes:%d" % (f["place"], f["bytes"])
    return "baseline/model/inproc"


def summary_rows(benchmarks, order=()):
    """One row per cell: name, median ns, spread, ÷ none, ÷ raw round trip; failed cells say
    so. Ratios are medians over medians; None when the other cell is absent. Cells named in
    `order` come first, in that order; the rest follow in file order."""
    reps = repetitions_by_cell(benchmarks)
    failed = failed_cells(benchmarks)
    medians = {k: statistics.median(v) for k, v in reps.items() if v}
    rows = []
    rank = {n: i for i, n in enumerate(order)}
    names = sorted(cell_names(benchmarks), key=lambda n: (rank.get(n, len(rank)),))
    for name in names:
        if name in failed:
            rows.append({"name": name, "failed": failed[name]})
            continue
        if name not in medians:
            continue
        m = medians[name]
        none = medians.get(none_counterpart(name) or "")
        floor = medians.get(transport_floor(name) or "")
        rows.append({"name": name, "median": m, "spread": spread(reps[name]),
                     "reps": len(reps[name]),
                     "over_none": m / none if none else None,
                     "over_floor": m / floor if floor else None})
    return rows


def _ns(value):
    if value >= 100000:
        return "%.0f µs" % (value / 1000)
    if value >= 10000:
        return "%.1f µs" % (value / 1000)
    if value >= 100:
        return "%.0f ns" % value
    return "%.1f ns" % value


def _ratio(value):
    return "—" if value is None else "%.3f" % value


def render_summary(rows):
    """The summary table as text lines."""
    width = max([len(r["name"]) for r in rows] + [4])
    lines = ["%-*s  %10s  %7s  %8s  %9s" % (width, "cell", "median", "spread", "÷ none", "÷ floor")]
    lines.append("-" * len(lines[0]))
    for r in rows:
        if "failed" in r:
            lines.append("%-*s  FAILED: %s" % (width, r["name"], r["failed"]))
            continue
        mark = " !" if r["spread"] > SPREAD_LIMIT else ""
        lines.append("%-*s  %10s  %6.1f%%  %8s  %9s%s" % (
            width, r["name"], _ns(r["median"]), 100 * r["spread"], _ratio(r["over_none"]),
            _ratio(r["over_floor"]), mark))
    return lines


PAIRED_KINDS = ("raw_ns", "none_ns", "static_ns", "dynamic_kernel_ns", "dynamic_generation_ns")


def paired_checks(benchmarks, noise=None):
    """The harness-cost checks from the paired cells `check/paired/place:P/bytes:64`: in each of
    their iterations one raw round trip and one call per proxy ran back to back in a random
    order, each timed on its own (counters raw_ns, none_ns, ...). A ratio is formed within each
    repetition, and the median over repetitions is judged, so drift and bursts that hit every
    kind alike cancel. Returns [] when the file has no paired cells."""
    per_place = {}
    for entry in benchmarks:
        name = entry.get("run_name") or entry.get("name") or ""
        m = re.match(r"^check/paired/place:([a-z]+)/bytes:64$", name)
        if (not m or entry.get("run_type", "iteration") != "iteration"
                or entry.get("error_occurred")):
            continue
        values = [entry.get(k) for k in PAIRED_KINDS]
        if all(isinstance(v, (int, float)) and v > 0 for v in values):
            per_place.setdefault(m.group(1), []).append(dict(zip(PAIRED_KINDS, values)))
    probes = {}
    for probe in ("kernel", "generation"):
        reps = repetitions_by_cell(benchmarks).get("baseline/probe:%s" % probe)
        if reps:
            probes[probe] = statistics.median(reps)
    out = []
    for place, reps in sorted(per_place.items(), key=lambda kv: ("same", "cross").index(kv[0])
                              if kv[0] in ("same", "cross") else 9):
        def med(f):
            return statistics.median(f(r) for r in reps)
        raw, none, static = med(lambda r: r["raw_ns"]), med(lambda r: r["none_ns"]), med(lambda r: r["static_ns"])
        r = med(lambda r: r["none_ns"] / r["raw_ns"])
        out.append({"check": "none ÷ raw round trip", "place": place, "value": r, "limit": 1.05,
                    "ok": r <= 1.05,
                    "text": "none %s vs raw round trip %s, paired: %+.1f%% (limit +5%%)"
                            % (_ns(none), _ns(raw), 100 * (r - 1))})
        r = med(lambda r: r["static_ns"] / r["none_ns"])
        out.append({"check": "static ÷ none", "place": place, "value": r, "limit": 1.02,
                    "ok": abs(r - 1) <= 0.02,
                    "text": "static %s vs none %s, paired: %+.1f%% (limit ±2%%)"
                            % (_ns(static), _ns(none), 100 * (r - 1))})
        for probe, key in (("kernel", "dynamic_kernel_ns"), ("generation", "dynamic_generation_ns")):
            cost = probes.get(probe)
            if cost is None:
                continue
            extra = med(lambda r, key=key: r[key] - r["static_ns"])
            allowance = (noise or 0.0) * static
            limit = cost + allowance
            out.append({"check": "dynamic − static (probe:%s)" % probe, "place": place,
                        "value": extra, "limit": limit, "ok": extra <= limit,
                        "text": "dynamic/probe:%s − static, paired: %+.0f ns (one probe: %s%s)"
                                % (probe, extra, _ns(cost),
                                   " + noise %s" % _ns(allowance) if allowance else "")})
    return out


def harness_cost_checks(benchmarks, noise=None):
    """DESIGN's claim that the harness costs next to nothing, checked per placement on the
    kernel transport (64 bytes, 1 thread): none within 5% of the raw round trip, static within 2%
    of none, dynamic with a steady token within one probe of static (plus the run's noise floor
    times static, when given: a probe of a few ns is below what a run can resolve). Returns a
    list of dicts {check, place, value, limit, ok, text}. place:unpinned is reported but not
    judged (ok is None): the scheduler puts client and downstream on one CPU or two, differently
    from one repetition to the next, so its cells and its floor measure different things.

    Where the run has the paired cells (check/paired/...), their within-repetition ratios are
    judged instead (paired_checks): that is the default run. Otherwise the checks are judged on
    the fastest repetition of each cell (each repetition is itself a
    mean over thousands of calls), and the medians are printed beside them. Interference on a
    shared VM only ever adds time -- a late vCPU wake-up, a neighbour's burst -- so the minimum
    estimates the cost of the code itself, while a median of 15 repetitions whose spread is 5-15%
    cannot resolve a 2% limit (Chen and Revels, "Robust benchmarking in noisy environments",
    2016, argue the same)."""
    reps = repetitions_by_cell(benchmarks)
    best = {k: min(v) for k, v in reps.items() if v}
    med = {k: statistics.median(v) for k, v in reps.items() if v}
    out = []

    def name(mode, place, probe="na", cache="na"):
        return ("cloak/kernel/uds/%s/steady/probe:%s/cache:%s/place:%s/bytes:64/threads:1"
                % (mode, probe, cache, place))

    def medians(a, b):
        if a in med and b in med:
            return "; medians %s vs %s: %+.1f%%" % (_ns(med[a]), _ns(med[b]),
                                                  100 * (med[a] / med[b] - 1))
        return ""

    paired = paired_checks(benchmarks, noise)
    for place in ("same", "cross", "unpinned"):
        if any(c["place"] == place for c in paired):
            out += [c for c in paired if c["place"] == place]
            continue
        floor_name = "baseline/roundtrip/place:%s/bytes:64" % place
        none_name, static_name = name("none", place), name("static", place)
        floor, none, static = best.get(floor_name), best.get(none_name), best.get(static_name)
        if none and floor:
            r = none / floor
            out.append({"check": "none ÷ raw round trip", "place": place, "value": r,
                        "limit": 1.05, "ok": r <= 1.05,
                        "text": "none %s vs raw round trip %s: %+.1f%% (limit +5%%)%s"
                                % (_ns(none), _ns(floor), 100 * (r - 1),
                                   medians(none_name, floor_name))})
        if none and static:
            r = static / none
            out.append({"check": "static ÷ none", "place": place, "value": r, "limit": 1.02,
                        "ok": abs(r - 1) <= 0.02,
                        "text": "static %s vs none %s: %+.1f%% (limit ±2%%)%s"
                                % (_ns(static), _ns(none), 100 * (r - 1),
                                   medians(static_name, none_name))})
        for probe in ("kernel", "generation"):
            dynamic_name = name("dynamic", place, probe, "none")
            dynamic = best.get(dynamic_name)
            cost = med.get("baseline/probe:%s" % probe)
            if dynamic and static and cost:
                extra = dynamic - static
                allowance = (noise or 0.0) * static
                limit = cost + allowance
                out.append({"check": "dynamic − static (probe:%s)" % probe, "place": place,
                            "value": extra, "limit": limit, "ok": extra <= limit,
                            "text": "dynamic/probe:%s %s − static %s = %+.0f ns (one probe: %s%s)"
                                    % (probe, _ns(dynamic), _ns(static), extra, _ns(cost),
                                       " + noise %s" % _ns(allowance) if allowance else "")})
    for c in out:
        if c["place"] == "unpinned":
            c["ok"] = None
    return out
