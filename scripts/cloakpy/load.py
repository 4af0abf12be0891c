"""Loads and validates result files (cloakbench's or plain Google Benchmark JSON) into cells."""

import dataclasses
import json
import math
import statistics
from typing import Dict, List

from . import names

SUPPORTED_SCHEMA_VERSIONS = (1,)
UNKNOWN = "unknown"
# Keys a bench program writes with Google Benchmark's AddCustomContext, which holds strings only,
# so its own JSON carries them as JSON text; a file written by `run` holds them as JSON values.
JSON_TEXT_CONTEXT_KEYS = ("cloak_schema_version", "cloak_cpus", "cloak_machine", "cloak_warnings",
                          "cloak_kerberos", "cloak_negotiate", "cloak_injected_ns", "cloak_hosts")
# CLOAK_INJECT_NS (docs/reading.md, "Calibrating the gate"): a slowdown put in on purpose, at the
# path CLOAK_INJECT_PATH names (cloak_injected_path; a file without it slowed the whole call).
INJECTION_VARIABLE = "CLOAK_INJECT_NS"
INJECTION_PATH_VARIABLE = "CLOAK_INJECT_PATH"
_SLOWED_ON_PATH = {
    "call": "every proxy call",
    "probe": "every identity probe of a dynamic proxy",
    "switch": "every token switch (the identity backend's impersonate)",
    "establish": "every new security context (the calling side, before its first leg)",
    "accept": "every security context the downstream accepted",
}

_NS_PER_UNIT = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
# Keys Google Benchmark writes in every entry; everything else numeric is a user counter.
_GB_ENTRY_KEYS = {
    "name", "run_name", "run_type", "repetitions", "repetition_index", "threads",
    "iterations", "real_time", "cpu_time", "time_unit", "aggregate_name", "aggregate_unit",
    "family_index", "per_family_instance_index", "error_occurred", "error_message", "label",
    "skipped", "skip_message", "allocs_per_iter", "max_bytes_used", "big_o", "rms",
    "cpu_coefficient", "real_coefficient", "total_allocated_bytes", "net_heap_growth",
}
# The stable part of cloak_machine (docs/results.md), shown first in reports.
MACHINE_KEYS = ("cpu_model", "cores", "threads_per_core", "smt", "kernel", "virtualization",
                "governor", "memory_gib", "vulnerabilities")


class LoadError(Exception):
    """A file that cannot be used; the message names the file and says why."""


@dataclasses.dataclass
class Cell:
    """One benchmark: its repetitions in ns (real time) and what the run said about it."""
    name: str
    info: names.CellName
    samples: List[float] = dataclasses.field(default_factory=list)
    counters: Dict[str, float] = dataclasses.field(default_factory=dict)
    failed: bool = False
    error_message: str = ""
    from_aggregates: bool = False  # no iteration rows: one sample from the median aggregate
    # The user counters of each iteration row, beside `samples`; `counters` holds their medians.
    repetition_counters: List[Dict[str, float]] = dataclasses.field(default_factory=list)

    def counter(self, key, default=None):
        return self.counters.get(key, default)


@dataclasses.dataclass
class Result:
    """A loaded result file: its context and its cells by canonical name, in file order."""
    path: str
    context: dict
    cells: Dict[str, Cell]
    # The paired blocks' summaries across launches (docs/results.md, "cloak_blocks"), in file order.
    blocks: list = dataclasses.field(default_factory=list)

    def ctx(self, key, default=UNKNOWN):
        value = self.context.get(key)
        return default if value is None or value == "" else value

    @property
    def is_cloakbench(self):
        return any(k.startswith("cloak_") for k in self.context)

    @property
    def schema_version(self):
        return self.context.get("cloak_schema_version")

    @property
    def machine_hash(self):
        return self.ctx("cloak_machine_hash")

    @property
    def machine(self):
        value = self.context.get("cloak_machine")
        return value if isinstance(value, dict) else {}

    @property
    def machine_id(self):
        return self.ctx("cloak_machine_id", self.ctx("host_name"))

    @property
    def commit(self):
        return self.ctx("cloak_commit")

    @property
    def date(self):
        return self.ctx("cloak_date", self.ctx("date"))

    @property
    def command(self):
        return self.ctx("cloak_command")

    @property
    def injected_ns(self):
        """The busy spin CLOAK_INJECT_NS added to every proxy call, in ns (0: none)."""
        value = self.context.get("cloak_injected_ns")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return int(value)
        return 0

    @property
    def injected_path(self):
        """Where CLOAK_INJECT_PATH put that spin: call, probe, switch, establish or accept (a file
        from before the variable slowed the whole call)."""
        value = self.context.get("cloak_injected_path")
        return value if isinstance(value, str) and value else "call"

    @property
    def warnings(self):
        """The run's warnings; a file measured with CLOAK_INJECT_NS always says so, and where, even
        when the bench that wrote it did not."""
        value = self.context.get("cloak_warnings")
        out = [str(w) for w in value] if isinstance(value, list) else []
        if self.injected_ns and not any(INJECTION_VARIABLE in w for w in out):
            path = self.injected_path
            out.insert(0, "%s=%d %s=%s: %s was slowed by a %d ns busy spin on purpose (a gate "
                          "calibration); these times do not measure the code"
                       % (INJECTION_VARIABLE, self.injected_ns, INJECTION_PATH_VARIABLE, path,
                          _SLOWED_ON_PATH.get(path, "a path"), self.injected_ns))
        return out

    @property
    def noise_floor(self):
        value = self.context.get("cloak_noise_floor")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 \
                and math.isfinite(value):
            return float(value)
        return None

    def machine_summary(self):
        """One line naming the machine, for captions."""
        m = self.machine
        if not m:
            return "machine unknown (host %s, no fingerprint)" % self.ctx("host_name")
        parts = [str(m.get("cpu_model", UNKNOWN))]
        if "cores" in m:
            parts.append("%s cores" % m["cores"])
        parts.append("virt %s" % m.get("virtualization", UNKNOWN))
        parts.append("kernel %s" % m.get("kernel", UNKNOWN))
        return "%s [%s]" % (", ".join(parts), str(self.machine_hash)[:8])

    def caption(self):
        """Machine and commit, the line every plot carries."""
        return "%s | commit %s | %s" % (self.machine_summary(), self.commit, self.date)

    def baseline(self, *parts):
        """The baseline cell with this name, e.g. baseline('roundtrip', 'place:same', 'bytes:64')."""
        return self.cells.get("/".join(("baseline",) + parts))


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _entry_error(entry):
    if entry.get("error_occurred"):
        return True, str(entry.get("error_message", ""))
    skipped = entry.get("skipped")
    if skipped in ("error", "error_occurred", True):
        return True, str(entry.get("skip_message", entry.get("error_message", "")))
    return False, ""


def _real_time_ns(path, entry):
    value = entry.get("real_time")
    unit = entry.get("time_unit", "ns")
    if not _is_number(value) or not math.isfinite(value):
        raise LoadError("%s: benchmark %r has no numeric real_time" % (path, entry.get("name")))
    if unit not in _NS_PER_UNIT:
        raise LoadError("%s: benchmark %r has unknown time_unit %r" % (path, entry.get("name"), unit))
    return float(value) * _NS_PER_UNIT[unit]


def _counters(entry):
    return {k: float(v) for k, v in entry.items()
            if k not in _GB_ENTRY_KEYS and _is_number(v)}


def _cell_key(entry):
    name = entry.get("run_name") or entry.get("name")
    if entry.get("run_type") == "aggregate" and not entry.get("run_name"):
        agg = entry.get("aggregate_name", "")
        if agg and name.endswith("_" + agg):
            name = name[: -len(agg) - 1]
    return names.canonical_name(name)


def cells_from_entries(path, entries):
    """Group Google Benchmark entries into cells: repetitions from iteration rows, aggregates
    only when a cell has no iteration rows, errors kept as failed cells."""
    cells: Dict[str, Cell] = {}
    iteration_counters: Dict[str, List[dict]] = {}
    aggregates: Dict[str, Dict[str, dict]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise LoadError("%s: a benchmark entry has no name" % path)
        key = _cell_key(entry)
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = Cell(name=key, info=names.parse_name(key))
        failed, message = _entry_error(entry)
        if failed:
            cell.failed = True
            cell.error_message = cell.error_message or message
            continue
        if entry.get("run_type") == "aggregate":
            aggregates.setdefault(key, {})[entry.get("aggregate_name", "")] = entry
            continue
        if "real_time" not in entry and ("big_o" in entry or "rms" in entry):
            continue  # complexity rows carry no time per call
        cell.samples.append(_real_time_ns(path, entry))
        iteration_counters.setdefault(key, []).append(_counters(entry))
    for key, cell in cells.items():
        if cell.samples:
            rows = iteration_counters[key]
            cell.repetition_counters = rows
            for counter in sorted({k for row in rows for k in row}):
                values = [row[counter] for row in rows if counter in row]
                cell.counters[counter] = statistics.median(values)
        elif not cell.failed:
            aggs = aggregates.get(key, {})
            entry = aggs.get("median") or aggs.get("mean")
            if entry is not None:
                cell.samples.append(_real_time_ns(path, entry))
                cell.counters = _counters(entry)
                cell.from_aggregates = True
    return {k: c for k, c in cells.items() if c.samples or c.failed}


def decode_context(context):
    """The context with the keys a bench program writes as JSON text decoded into JSON values,
    so a bench program's own output and a file written by `run` read the same."""
    out = dict(context)
    for key in JSON_TEXT_CONTEXT_KEYS:
        value = out.get(key)
        if isinstance(value, str):
            try:
                out[key] = json.loads(value)
            except ValueError:
                pass  # left as it is; the schema check below names a bad version
    return out


def parse_result(path, text):
    """Validate the text of a result file and return its Result (raises LoadError)."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise LoadError("%s is not JSON (%s)" % (path, e)) from None
    return result_from_document(path, data)


def result_from_document(path, data):
    """Validate a parsed result file (Google Benchmark's JSON, raw or merged by `run`) and
    return its Result (raises LoadError)."""
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise LoadError("%s is not a Google Benchmark result (no \"benchmarks\" list)" % path)
    context = data.get("context", {})
    if not isinstance(context, dict):
        raise LoadError("%s: \"context\" is not an object" % path)
    context = decode_context(context)
    version = context.get("cloak_schema_version")
    if version is not None and version not in SUPPORTED_SCHEMA_VERSIONS:
        raise LoadError("%s has cloak_schema_version %r; this reader understands %s"
                        % (path, version, ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))))
    blocks = data.get("cloak_blocks", [])
    if not isinstance(blocks, list) or not all(
            isinstance(b, dict) and isinstance(b.get("name"), str) for b in blocks):
        raise LoadError("%s: \"cloak_blocks\" is not a list of blocks with names" % path)
    if not data["benchmarks"] and not blocks:
        raise LoadError("%s has no benchmarks" % path)
    cells = cells_from_entries(path, data["benchmarks"])
    if not cells and not blocks:
        raise LoadError("%s has no benchmarks with a time per call" % path)
    return Result(path=path, context=context, cells=cells, blocks=blocks)


def load_result(path):
    """Read and validate one result file (raises LoadError with a one-line reason)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise LoadError("cannot read %s: %s" % (path, e.strerror or e)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LoadError("%s is not JSON (not UTF-8 text)" % path) from None
    return parse_result(path, text)
