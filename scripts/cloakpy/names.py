"""One parser for cell names (docs/results.md), so every reader agrees on what a name means."""

import dataclasses
import re
from typing import Optional

# Suffixes Google Benchmark appends to a run's name that describe how it was run, not what
# was measured; they are dropped so a cell keeps its identity when, say, repetitions change.
_RUN_CONFIG_SUFFIX = re.compile(
    r"^(repeats:\d+|min_time:[0-9.e+-]+s?|min_warmup_time:[0-9.e+-]+s?|iterations:\d+)$")
# Suffixes Google Benchmark appends that a matrix name already carries or that change nothing
# for a matrix cell.
_GB_SUFFIX = re.compile(r"^(threads:\d+|real_time|manual_time|process_time)$")

# How many identity switches (impersonate + revert) a token pattern makes per call.
_SWITCHES_PER_CALL = {"steady": 0.0, "switch": 1.0, "reimpersonate": 1.0}


@dataclasses.dataclass(frozen=True)
class CellName:
    """What a name says. kind is 'cell' (matrix), 'baseline' or 'generic' (any other name)."""
    name: str
    kind: str
    backend: Optional[str] = None
    transport: Optional[str] = None
    cloaking: Optional[str] = None
    pattern: Optional[str] = None
    probe: Optional[str] = None
    cache: Optional[str] = None
    place: Optional[str] = None
    bytes: Optional[int] = None
    threads: Optional[int] = None
    # for baselines: syscall, probe, switch, roundtrip, connect, model
    baseline: Optional[str] = None

    @property
    def is_cell(self):
        return self.kind == "cell"

    @property
    def is_baseline(self):
        return self.kind == "baseline"

    def group_key(self):
        """Cells that share a transport, placement, payload and thread count."""
        return (self.backend, self.transport, self.place, self.bytes, self.threads)

    def variant_label(self):
        """Cloaking and dynamic strategy, e.g. 'dynamic, kernel probe, cache lru:4'."""
        if self.cloaking != "dynamic":
            return self.cloaking
        if self.cache == "per-message":
            return "dynamic, per-message credentials (no probe, no context)"
        return "dynamic, %s probe, cache %s" % (self.probe, self.cache)

    def short_label(self):
        """Everything a group does not already say: variant and pattern."""
        return "%s | %s" % (self.variant_label(), self.pattern)


def canonical_name(name):
    """The name with Google Benchmark's run-configuration suffixes removed."""
    parts = name.split("/")
    while len(parts) > 1 and _RUN_CONFIG_SUFFIX.match(parts[-1]):
        parts.pop()
    return "/".join(parts)


def switches_per_call(pattern):
    """Impersonate-and-revert pairs per call for a token pattern, None when unknown."""
    if pattern in _SWITCHES_PER_CALL:
        return _SWITCHES_PER_CALL[pattern]
    m = re.fullmatch(r"every:(\d+)", pattern or "")
    if m and int(m.group(1)) > 0:
        return 1.0 / int(m.group(1))
    return None


def _field(part, key):
    prefix = key + ":"
    if not part.startswith(prefix):
        raise ValueError(part)
    return part[len(prefix):]


def _parse_cell(name, parts):
    # cloak/<backend>/<transport>/<cloaking>/<pattern>/probe:/cache:/place:/bytes:/threads:
    if len(parts) < 10 or any(not _GB_SUFFIX.match(p) for p in parts[10:]):
        raise ValueError(name)
    _, backend, transport, cloaking, pattern = parts[:5]
    if cloaking not in ("none", "static", "dynamic") or not pattern:
        raise ValueError(name)
    return CellName(
        name=name, kind="cell", backend=backend, transport=transport, cloaking=cloaking,
        pattern=pattern, probe=_field(parts[5], "probe"), cache=_field(parts[6], "cache"),
        place=_field(parts[7], "place"), bytes=int(_field(parts[8], "bytes")),
        threads=int(_field(parts[9], "threads")))


def _parse_baseline(name, parts):
    rest = [p for p in parts[1:] if not _GB_SUFFIX.match(p)] if len(parts) > 1 else []
    if rest == ["syscall"]:
        return CellName(name=name, kind="baseline", baseline="syscall")
    if rest == ["switch"]:
        return CellName(name=name, kind="baseline", baseline="switch")
    if len(rest) == 1 and rest[0].startswith("probe:"):
        return CellName(name=name, kind="baseline", baseline="probe", probe=_field(rest[0], "probe"))
    if len(rest) == 3 and rest[0] == "roundtrip":
        return CellName(name=name, kind="baseline", baseline="roundtrip",
                        place=_field(rest[1], "place"), bytes=int(_field(rest[2], "bytes")))
    if len(rest) == 2 and rest[0] == "connect":
        return CellName(name=name, kind="baseline", baseline="connect",
                        place=_field(rest[1], "place"))
    if len(rest) == 2 and rest[0] == "model":
        return CellName(name=name, kind="baseline", baseline="model", transport=rest[1])
    raise ValueError(name)


def parse_name(name):
    """Parse a (canonical) cell name; names that follow no cloakbench scheme are 'generic'."""
    parts = name.split("/")
    try:
        if parts[0] == "cloak":
            return _parse_cell(name, parts)
        if parts[0] == "baseline":
            return _parse_baseline(name, parts)
    except ValueError:
        pass
    return CellName(name=name, kind="generic")
