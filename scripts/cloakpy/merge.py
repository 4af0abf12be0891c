"""Merges the launches of `cloakbench run` into one result file (docs/results.md): reads a launch's
Google Benchmark JSON (even a torn one), concatenates the launches, adds the run-level keys and
warnings, makes the file strict JSON, and writes it atomically. Cells are read with load.py and
judged with stats.py, like every other reader."""

import json
import math
import os
import re
import statistics
import tempfile

from . import load, stats

SCHEMA_VERSION = 1
SPREAD_LIMIT = 0.05  # a cell whose repetitions spread more than this is reported as noisy

# Keys that describe the run, not one launch's process; `run` writes them, never a launch.
RUN_KEYS = ("cloak_commit", "cloak_command", "cloak_date", "cloak_noise_floor", "cloak_warnings",
            "cloak_launches", "cloak_backend", "cloak_schema_version", "cloak_benchmark_args",
            "cloak_run_seed")
# The fields Google Benchmark's tools/compare.py computes with in every row it reads.
GBENCH_TIME_FIELDS = ("real_time", "cpu_time")

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


def _finite_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def strict_json(value):
    """The value with every NaN and ±Infinity (which Google Benchmark writes bare, e.g. as the
    coefficient of variation of a counter whose mean is 0) replaced by null, so strict JSON
    parsers read the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strict_json(v) for v in value]
    return value


def rows_with_times(benchmarks):
    """(rows kept, names of cells that lost a row): rows whose real_time or cpu_time is missing
    or not finite are left out, since Google Benchmark's compare.py computes with both of every
    row it reads (complexity rows, which carry no time per call, are kept)."""
    kept, dropped = [], []
    for entry in benchmarks:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            dropped.append("an entry without a name")
            continue
        complexity = "big_o" in entry or "rms" in entry
        if not complexity and not all(_finite_number(entry.get(k)) for k in GBENCH_TIME_FIELDS):
            dropped.append(entry["name"])
            continue
        kept.append(entry)
    return kept, _unique(dropped)


def noise_floor(cells):
    """The run's noise floor: the median spread (stats.relative_spread) of the baseline cells
    with at least three repetitions, rounded to 4 decimals; None when no baseline has three."""
    spreads = [stats.relative_spread(c.samples) for c in cells.values()
               if c.name.startswith("baseline/") and not c.failed and not c.from_aggregates
               and len(c.samples) >= 3]
    if not spreads:
        return None
    return round(statistics.median(spreads), 4)


def noisy_cell_warnings(cells, limit=SPREAD_LIMIT):
    """One warning per cell whose repetitions spread more than `limit`."""
    out = []
    for cell in cells.values():
        if cell.failed or cell.from_aggregates or len(cell.samples) < 2:
            continue
        s = stats.relative_spread(cell.samples)
        if s > limit:
            out.append("noisy cell %s: spread ±%.1f%% over %d repetitions (limit ±%.0f%%)"
                       % (cell.name, 100 * s, len(cell.samples), 100 * limit))
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
    entry}; `run` holds the run-level keys (cloak_commit, cloak_command, cloak_date and
    cloak_benchmark_args). Interrupted cells are dropped; family_index is renumbered so it stays
    unique across launches; launches keep their order. Warnings: the launches' own, then
    extra_warnings, then rows left out, failed and noisy cells. The document holds no NaN or
    Infinity (see strict_json)."""
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
        ctx = load.decode_context(out.context)
        if not context:
            context = {k: v for k, v in ctx.items() if k not in RUN_KEYS}
        elif ctx.get("cloak_machine_hash") not in (None, context.get("cloak_machine_hash")):
            warnings.append("launch %s ran on another machine (hash %s, expected %s)"
                            % (record.get("program"), ctx.get("cloak_machine_hash"),
                               context.get("cloak_machine_hash")))
        backends.append(ctx.get("cloak_backend"))
        # Each launch with kerberos cells starts its own realm: the file keeps the first one's
        # description and every launch's own in its record (docs/results.md, cloak_kerberos).
        kerberos = ctx.get("cloak_kerberos")
        if kerberos is not None:
            record["kerberos"] = kerberos
            if context.get("cloak_kerberos") is None:
                context["cloak_kerberos"] = kerberos
        # The negotiate cells' credentials likewise: the first launch with them in the file.
        negotiate = ctx.get("cloak_negotiate")
        if negotiate is not None and context.get("cloak_negotiate") is None:
            context["cloak_negotiate"] = negotiate
        # The cross-host cells run in one launch: the file keeps its description of the hosts
        # (or why they were skipped), and that launch's record too (docs/results.md, cloak_hosts).
        hosts = ctx.get("cloak_hosts")
        if hosts is not None:
            record["hosts"] = hosts
            if context.get("cloak_hosts") is None:
                context["cloak_hosts"] = hosts
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
    benchmarks, lost = rows_with_times(benchmarks)
    cells = load.cells_from_entries("merged launches", benchmarks)
    if context.get("library_build_type") == "debug":
        warnings.append("Google Benchmark's library was built as debug (the Debian package): only "
                        "its once-per-repetition timer code runs unoptimized; the timed loop is "
                        "inlined into the release-built bench")
    warnings += list(extra_warnings)
    for name in lost:
        warnings.append("left out rows of %s without a finite real_time and cpu_time" % name)
    for cell in cells.values():
        if cell.failed:
            warnings.append("failed cell %s: %s" % (cell.name, cell.error_message))
    warnings += noisy_cell_warnings(cells)
    context["cloak_schema_version"] = SCHEMA_VERSION
    for key in ("cloak_commit", "cloak_command", "cloak_date"):
        context[key] = run.get(key, "unknown")
    context["cloak_benchmark_args"] = list(run.get("cloak_benchmark_args", []))
    if run.get("cloak_run_seed") is not None:
        context["cloak_run_seed"] = run["cloak_run_seed"]
    context["cloak_backend"] = _backends(backends)
    context["cloak_noise_floor"] = noise_floor(cells)
    context["cloak_warnings"] = _unique(warnings)
    context["cloak_launches"] = records
    return strict_json({"context": context, "benchmarks": benchmarks})


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


# Top-level keys written one line each: their histograms hold hundreds of [index, count] pairs,
# which indentation would spread over a line per number (a default run's file 4x as large).
COMPACT_KEYS = ("cloak_blocks", "cloak_histograms")


def dumps(document):
    """The document as strict JSON text (a NaN or Infinity left in it is an error): indented,
    except the COMPACT_KEYS, each on one line of its own."""
    document = strict_json(document)
    compact = [(k, document[k]) for k in COMPACT_KEYS if k in document]
    rest = {k: v for k, v in document.items() if k not in COMPACT_KEYS}
    text = json.dumps(rest, indent=2, ensure_ascii=False, allow_nan=False)
    if compact:
        lines = ["%s: %s" % (json.dumps(k), json.dumps(v, ensure_ascii=False, allow_nan=False,
                                                      separators=(",", ":")))
                 for k, v in compact]
        text = text[:-1].rstrip() + (",\n  " if rest else "\n  ") + ",\n  ".join(lines) + "\n}"
    return text + "\n"
