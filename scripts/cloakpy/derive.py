"""Numbers derived inside one run: overhead against no cloaking, the decomposition of a cell
into its same-run baselines, and the same-run ratios that travel between machines."""

import dataclasses
from typing import List, Optional

from . import names
from .names import GSS_PACKAGES
from .stats import median

COMPONENTS = ("transport", "probe", "switch", "new_context", "service_ticket", "mic", "remainder")
COMPONENT_LABELS = {
    "transport": "transport (raw round trip)",
    "probe": "identity probe",
    "switch": "token switch",
    "new_context": "new security context",
    "service_ticket": "service ticket from the KDC (TGS-REQ)",
    "mic": "per-call MIC (get_mic + verify_mic)",
    "remainder": "remainder (proxy, cache, credential passing)",
}


def none_counterpart(result, cell):
    """The cell that differs only in having no cloaking (None when absent or cell is one)."""
    i = cell.info
    if not i.is_cell or i.cloaking == "none":
        return None
    if "/auth:" in cell.name:
        hops = "hops:%d/" % i.hops if i.hops else ""  # cross-host cells only
        name = ("cloak/%s/%s/auth:%s/none/%s/probe:na/cache:na/track:na/prot:%s/tickets:%s/%splace:%s/"
                "bytes:%d/threads:%d") % (i.backend, i.transport, _auth_segments(i), i.pattern, i.prot, i.tickets,
                                          hops, i.place, i.bytes, i.threads)
    else:  # a file from before the Kerberos cells
        name = "cloak/%s/%s/none/%s/probe:na/cache:na/place:%s/bytes:%d/threads:%d" % (
            i.backend, i.transport, i.pattern, i.place, i.bytes, i.threads)
    return result.cells.get(name)


def _auth_segments(info):
    """What follows auth: in a name: the package, and for negotiate its mech: segment."""
    return info.auth if info.mech == "na" else "%s/mech:%s" % (info.auth, info.mech)


def transport_floor(result, info):
    """The raw transport baseline a matrix cell is read against."""
    if info.transport == "uds":
        return result.baseline("roundtrip", "place:%s" % info.place, "bytes:%d" % info.bytes)
    if info.transport == "tcp":  # the raw round trip across the veth, through as many hops
        return result.baseline("tcp", "roundtrip", "hops:%d" % info.hops, "bytes:%d" % info.bytes)
    if info.backend == "model":
        return result.baseline("model", info.transport)
    return None


def package_baseline(result, package, kind, **fields):
    """baseline/<package>/<kind>/... of this run with the given name fields, or None."""
    for c in result.cells.values():
        i = c.info
        if i.is_baseline and i.baseline == "%s-%s" % (package, kind) and all(
                getattr(i, k) == v for k, v in fields.items()):
            return c
    return None


def context_floor(result, info):
    """What one new security context costs at this placement. local: an establish message is
    one extra round trip on the open connection with no payload, so the raw round trip at the
    same placement with the smallest payload measured. A GSSAPI package: the same run's exchange
    across the socket (baseline/<package>[/mech:M]/establish/place:P)."""
    if info.transport == "tcp":  # the middle's contexts: at delegate level, a forwarded TGT each
        return kerberos_baseline(result, "establish", transport="tcp", level="delegate")
    if info.transport != "uds":
        return None
    if info.auth in GSS_PACKAGES:
        return package_baseline(result, info.auth, "establish", transport="uds", place=info.place,
                                mech=info.mech)
    candidates = [c for c in result.cells.values()
                  if c.info.is_baseline and c.info.baseline == "roundtrip"
                  and c.info.place == info.place and c.samples and not c.failed]
    if not candidates:
        return None
    return min(candidates, key=lambda c: c.info.bytes)


def kerberos_baseline(result, kind, **fields):
    """baseline/kerberos/<kind>/... of this run with the given name fields, or None."""
    return package_baseline(result, "kerberos", kind, **fields)


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
    service_ticket: Optional[float] = 0.0
    mic: Optional[float] = 0.0

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
        # a fat token (groups:N) is read and switched to by its own baselines
        fat = ("groups:%d" % info.groups,) if info.groups else ()
        probes = cell.counter("probes_per_call")
        if probes is None:
            probes = 1.0 if info.cloaking == "dynamic" else 0.0
            notes.append("probes_per_call missing; assumed %g" % probes)
        if probes == 0:
            probe = 0.0
        else:
            base = result.baseline("probe:%s" % info.probe, *fat)
            if _usable(base):
                probe = probes * median(base.samples)
            else:
                notes.append("no baseline/%s" % "/".join(("probe:%s" % info.probe,) + fat))
        per_call = names.switches_per_call(info.pattern)
        if per_call == 0:
            switch = 0.0
        elif per_call is not None and _usable(result.baseline("switch", *fat)):
            switch = per_call * median(result.baseline("switch", *fat).samples)
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
        if info.hops == 2 and new_context is not None:
            new_context = _second_hop_contexts(result, cell, new_context, notes)
    else:
        notes.append("model backend: only the transport floor is measured in the run")
    known = sum(v for v in (transport, probe, switch, new_context) if v is not None)
    service_ticket = mic = 0.0
    if info.auth in GSS_PACKAGES:
        service_ticket, mic = _package_terms(result, cell, info, notes)
    known += sum(v for v in (service_ticket, mic) if v is not None)
    return Decomposition(measured=measured, transport=transport, probe=probe, switch=switch,
                         new_context=new_context, remainder=measured - known, notes=notes,
                         service_ticket=service_ticket, mic=mic)


def _second_hop_contexts(result, cell, first_hop, notes):
    """hops:2: D1's own new contexts with D2 (hop2_contexts_per_call), each an AP exchange across
    TCP at impersonate level, join the middle's in the new-context term."""
    hop2 = cell.counter("hop2_contexts_per_call")
    if not hop2:
        return first_hop
    ctx = kerberos_baseline(result, "establish", transport="tcp", level="impersonate")
    if not _usable(ctx):
        notes.append("no baseline/kerberos/establish/tcp/level:impersonate for D1's contexts with D2")
        return None
    notes.append("new context: the middle's with D1 (delegate) and D1's with D2 (impersonate)")
    return first_hop + hop2 * median(ctx.samples)


def _package_terms(result, cell, info, notes):
    """kerberos at tickets:cold: contexts x (cold - warm AP exchange in one process), the TGS-REQ
    each new context makes first; prot:integrity (every GSSAPI package): one MIC pair per call;
    prot:privacy: two seal/unseal pairs (request and reply) at the cell's payload size."""
    service_ticket = mic = 0.0
    contexts = cell.counter("contexts_per_call") or 0.0
    if info.tickets == "cold" and contexts > 0:
        cold = kerberos_baseline(result, "establish", transport="inproc", tickets="cold")
        warm = kerberos_baseline(result, "establish", transport="inproc", tickets="warm")
        if _usable(cold) and _usable(warm):
            service_ticket = contexts * (median(cold.samples) - median(warm.samples))
        else:
            service_ticket = None
            notes.append("no baseline/kerberos/establish/inproc/tickets:cold and :warm")
    if info.prot == "privacy":
        # the request and the reply are each sealed and opened: two pairs per call
        pair = package_baseline(result, info.auth, "wrap", bytes=info.bytes, mech=info.mech)
        if _usable(pair):
            mic = 2 * median(pair.samples)
            notes.append("prot:privacy: two seal/unseal pairs per call in the MIC column")
        else:
            mic = None
            notes.append("no baseline/%s/wrap/bytes:%d" % (_auth_segments(info), info.bytes))
    if info.prot == "integrity":
        pair = package_baseline(result, info.auth, "mic", mech=info.mech)
        if _usable(pair):
            mic = median(pair.samples)
        else:
            mic = None
            notes.append("no baseline/%s/mic" % _auth_segments(info))
    return service_ticket, mic


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
