"""Numbers derived inside one run: overhead against no cloaking, the decomposition of a cell
into its same-run baselines, and the same-run ratios that travel between machines."""

import dataclasses
from typing import List, Optional

from . import names
from .stats import median

COMPONENTS = ("transport", "probe", "switch", "new_context", "remainder")
COMPONENT_LABELS = {
    "transport": "transport (raw round trip)",
    "probe": "identity probe",
    "switch": "token switch",
    "new_context": "new security context",
    "remainder": "remainder (proxy, cache, credential passing)",
}


def none_counterpart(result, cell):
    """The cell that differs only in having no cloaking (None when absent or cell is one)."""
    i = cell.info
    if not i.is_cell or i.cloaking == "none":
        return None
    name = "cloak/%s/%s/none/%s/probe:na/cache:na/place:%s/bytes:%d/threads:%d" % (
        i.backend, i.transport, i.pattern, i.place, i.bytes, i.threads)
    return result.cells.get(name)


def transport_floor(result, info):
    """The raw transport baseline a matrix cell is read against."""
    if info.transport == "uds":
        return result.baseline("roundtrip", "place:%s" % info.place, "bytes:%d" % info.bytes)
    if info.backend == "model":
        return result.baseline("model", info.transport)
    return None


def context_floor(result, info):
    """What one new security context costs at this placement: an establish message is one
    extra round trip on the open connection with no payload, so the raw round trip at the
    same placement with the smallest payload measured."""
    if info.transport != "uds":
        return None
    candidates = [c for c in result.cells.values()
                  if c.info.is_baseline and c.info.baseline == "roundtrip"
                  and c.info.place == info.place and c.samples and not c.failed]
    if not candidates:
        return None
    return min(candidates, key=lambda c: c.info.bytes)


def _usable(cell):
    return cell is not None and cell.samples and not cell.failed


@dataclasses.dataclass
class Decomposition:
    """Where a cell's time goes, each term in ns per call; None for a term not measured."""
    measured: float
    transport: Optional[float]
    probe: Optional[float]
    switch: Optional[float]
    new_context: Optional[float]
    remainder: float
    notes: List[str]

    def component(self, key):
        return getattr(self, key)


def decompose(result, cell):
    """measured = transport + probes x probe + switches x switch + contexts x round trip
    + remainder, all from this run (docs/reading.md). None when the cell has no measured
    time or no transport baseline. The remainder may be negative and is kept as is."""
    info = cell.info
    if not info.is_cell or not _usable(cell):
        return None
    floor = transport_floor(result, info)
    if not _usable(floor):
        return None
    notes = []
    measured = median(cell.samples)
    transport = median(floor.samples)
    probe = switch = new_context = None
    if info.backend == "kernel":
        probes = cell.counter("probes_per_call")
        if probes is None:
            probes = 1.0 if info.cloaking == "dynamic" else 0.0
            notes.append("probes_per_call missing; assumed %g" % probes)
        if probes == 0:
            probe = 0.0
        else:
            base = result.baseline("probe:%s" % info.probe)
            if _usable(base):
                probe = probes * median(base.samples)
            else:
                notes.append("no baseline/probe:%s" % info.probe)
        per_call = names.switches_per_call(info.pattern)
        if per_call == 0:
            switch = 0.0
        elif per_call is not None and _usable(result.baseline("switch")):
            switch = per_call * median(result.baseline("switch").samples)
        else:
            notes.append("switch cost unknown for pattern %s" % info.pattern)
        contexts = cell.counter("contexts_per_call")
        if contexts is None:
            notes.append("contexts_per_call missing; new context not separated")
        elif contexts == 0:
            new_context = 0.0
        else:
            ctx = context_floor(result, info)
            if _usable(ctx):
                new_context = contexts * median(ctx.samples)
            else:
                notes.append("no round trip baseline for a new context")
    else:
        notes.append("model backend: only the transport floor is measured in the run")
    known = sum(v for v in (transport, probe, switch, new_context) if v is not None)
    return Decomposition(measured=measured, transport=transport, probe=probe, switch=switch,
                         new_context=new_context, remainder=measured - known, notes=notes)


@dataclasses.dataclass
class RatioSeries:
    """A ratio measured inside one run: each repetition of the numerator over the median
    of the denominator."""
    name: str
    numerator: str
    denominator: str
    samples: List[float]
    failed: bool = False


def _ratio(name, num, den):
    if num.failed or den is None or not _usable(den):
        return RatioSeries(name, num.name, den.name if den else "", [], failed=True)
    d = median(den.samples)
    if d <= 0:
        return RatioSeries(name, num.name, den.name, [], failed=True)
    return RatioSeries(name, num.name, den.name, [x / d for x in num.samples])


RATIO_OVER_NONE = " ÷ none"
RATIO_OVER_TRANSPORT = " ÷ transport"


def same_run_ratios(result):
    """Ratios that do not depend on how fast the machine is, keyed by a stable name:
    '<cell> ÷ none' (a cloaked cell over the same cell without cloaking) and
    '<cell> ÷ transport' (a cell over its raw transport baseline)."""
    ratios = {}
    for cell in result.cells.values():
        if not cell.info.is_cell:
            continue
        if cell.info.cloaking != "none":
            none = none_counterpart(result, cell)
            if none is not None:
                name = cell.name + RATIO_OVER_NONE
                ratios[name] = _ratio(name, cell, none)
        floor = transport_floor(result, cell.info)
        if floor is not None:
            name = cell.name + RATIO_OVER_TRANSPORT
            ratios[name] = _ratio(name, cell, floor)
    return ratios
