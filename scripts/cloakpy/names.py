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
# The packages built on GSSAPI: each has baseline/<package>/establish/... and .../mic/...
GSS_PACKAGES = ("kerberos", "ntlm", "negotiate")
# What negotiate's cells, blocks and baselines name in their mech: segment (docs/results.md).
NEGOTIATE_MECHS = ("krb5", "ntlm")
# How reports name each package (and the DCOM authentication service it stands for).
PACKAGE_TITLES = {"local": "Local package", "kerberos": "Kerberos package (warm tickets)",
                  "ntlm": "NTLM package", "negotiate": "Negotiate package",
                  "negotiate/mech:krb5": "Negotiate package over Kerberos (warm tickets)",
                  "negotiate/mech:ntlm": "Negotiate package over NTLM"}
PACKAGE_NAMES = {"local": "the local package", "kerberos": "Kerberos", "ntlm": "NTLM",
                 "negotiate": "Negotiate", "negotiate/mech:krb5": "Negotiate over Kerberos",
                 "negotiate/mech:ntlm": "Negotiate over NTLM"}
_SWITCHES_PER_CALL = {"steady": 0.0, "switch": 1.0, "reimpersonate": 1.0}


@dataclasses.dataclass(frozen=True)
class CellName:
    """What a name says. kind is 'cell' (matrix), 'load' (a load cell), 'baseline' or 'generic'
    (any other name)."""
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
    # authentication package, identity tracking, per-call protection and ticket state (names from
    # before the Kerberos cells have none of these segments: local, identity, na, na)
    auth: Optional[str] = None
    track: Optional[str] = None
    prot: Optional[str] = None
    tickets: Optional[str] = None
    # the mechanism SPNEGO negotiates in a negotiate cell or baseline (krb5, ntlm); "na" elsewhere,
    # whose names have no mech: segment
    mech: str = "na"
    hops: Optional[int] = None  # cross-host (tcp) cells: downstream hops, 1 or 2
    groups: int = 0  # groups:N: a fat token's extra supplementary groups (local cells, baselines)
    level: Optional[str] = None  # baseline/kerberos/establish/tcp/level:L: impersonate or delegate
    # for baselines: syscall, probe, switch, roundtrip, minimal (the plain ping-pong), connect, model,
    # <package>-establish, <package>-mic, <package>-wrap (GSS_PACKAGES)
    baseline: Optional[str] = None
    # load cells: K distinct clients and how popular each is ("zipf:1", "uniform")
    clients: Optional[int] = None
    pop: Optional[str] = None
    # threaded load cells: a proxy per worker thread ("apartment") or one shared proxy ("shared"),
    # and how the workers are driven: "closed", or "open:P" (arrivals at P% of the closed loop's
    # throughput)
    shape: Optional[str] = None
    loop: Optional[str] = None

    @property
    def is_load(self):
        return self.kind == "load"

    @property
    def is_load_threads(self):
        """A threaded load cell (shape:, loop:): its time is the run's wall time, its results the
        counters (calls_per_s, p50_ns ... p999_ns)."""
        return self.kind == "load" and self.loop is not None

    @property
    def open_percent(self):
        """An open-loop cell's arrival rate as % of its closed loop's throughput; None when closed."""
        m = re.fullmatch(r"open:(\d+)", self.loop or "")
        return int(m.group(1)) if m else None

    @property
    def is_cell(self):
        return self.kind == "cell"

    @property
    def is_baseline(self):
        return self.kind == "baseline"

    @property
    def package(self):
        """The package with its mechanism where it has one: 'negotiate/mech:krb5', else auth."""
        return "%s/mech:%s" % (self.auth, self.mech) if self.mech != "na" else self.auth

    def group_key(self):
        """Cells that share a transport, package (and mechanism), protection, tickets, placement,
        payload and threads. Cross-host cells are grouped by hops too, named in the transport
        ("tcp hops:2")."""
        transport = "%s hops:%d" % (self.transport, self.hops) if self.hops else self.transport
        if self.groups:
            transport = "%s groups:%d" % (transport, self.groups)
        return (self.backend, transport, self.package, self.prot, self.tickets, self.place,
                self.bytes, self.threads)

    def variant_label(self):
        """Cloaking and dynamic strategy, e.g. 'dynamic, kernel probe, cache lru:4'."""
        if self.cloaking != "dynamic":
            return self.cloaking
        if self.cache == "per-message":
            return "dynamic, per-message credentials (no probe, no context)"
        label = "dynamic, %s probe, cache %s" % (self.probe, self.cache)
        return label + ", track token" if self.track == "token" else label

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
    # cloak/<backend>/<transport>/auth:/[mech:/]<cloaking>/<pattern>/probe:/cache:/track:/prot:/
    #   tickets:/place:/bytes:/threads:  (before the Kerberos cells: no auth:, track:, prot:,
    #   tickets:; mech: only in negotiate cells)
    hops = None
    groups = 0
    mech = "na"
    if len(parts) > 3 and parts[3].startswith("auth:"):
        parts = list(parts)
        if len(parts) > 4 and parts[4].startswith("mech:"):
            mech = _field(parts.pop(4), "mech")
            if parts[3] != "auth:negotiate" or mech not in NEGOTIATE_MECHS:
                raise ValueError(name)
        if len(parts) > 11 and parts[11].startswith("hops:"):  # cross-host cells: hops:1|2
            hops = int(_field(parts.pop(11), "hops"))
        if len(parts) > 11 and parts[11].startswith("groups:"):  # a fat token: groups:N
            groups = int(_field(parts.pop(11), "groups"))
        fixed = 14
        if len(parts) < fixed or any(not _GB_SUFFIX.match(p) for p in parts[fixed:]):
            raise ValueError(name)
        _, backend, transport, auth, cloaking, pattern = parts[:6]
        auth = _field(auth, "auth")
        probe, cache, track, prot, tickets, place, nbytes, threads = parts[6:14]
        track, prot, tickets = _field(track, "track"), _field(prot, "prot"), _field(tickets, "tickets")
    else:
        if len(parts) < 10 or any(not _GB_SUFFIX.match(p) for p in parts[10:]):
            raise ValueError(name)
        _, backend, transport, cloaking, pattern = parts[:5]
        probe, cache, place, nbytes, threads = parts[5:10]
        auth, prot, tickets = "local", "na", "na"
        track = "identity" if cloaking == "dynamic" and _field(cache, "cache") != "per-message" else "na"
    if cloaking not in ("none", "static", "dynamic") or not pattern:
        raise ValueError(name)
    return CellName(
        name=name, kind="cell", backend=backend, transport=transport, cloaking=cloaking,
        pattern=pattern, probe=_field(probe, "probe"), cache=_field(cache, "cache"),
        place=_field(place, "place"), bytes=int(_field(nbytes, "bytes")),
        threads=int(_field(threads, "threads")), auth=auth, track=track, prot=prot, tickets=tickets,
        hops=hops, groups=groups, mech=mech)


def _parse_load(name, parts):
    # load/<backend>/<transport>/auth:/<cloaking>/clients:/pop:/cache:[/shape:/loop:]/place:/
    # bytes:/threads: (docs/results.md, "Load cells"); kerberos load cells use warm tickets and no
    # per-call protection.
    shape = loop = None
    if len(parts) > 9 and parts[8].startswith("shape:"):
        shape, loop = _field(parts[8], "shape"), _field(parts[9], "loop")
        if shape not in ("apartment", "shared") or not re.fullmatch(r"closed|open:\d+", loop):
            raise ValueError(name)
        parts = parts[:8] + parts[10:]
    fixed = 11
    if len(parts) < fixed or any(not _GB_SUFFIX.match(p) for p in parts[fixed:]):
        raise ValueError(name)
    _, backend, transport, auth, cloaking, clients, pop, cache, place, nbytes, threads = parts[:fixed]
    auth = _field(auth, "auth")
    if cloaking not in ("none", "static", "dynamic"):
        raise ValueError(name)
    gss = auth in GSS_PACKAGES
    return CellName(
        name=name, kind="load", backend=backend, transport=transport, cloaking=cloaking,
        pattern="load", probe="kernel" if cloaking == "dynamic" else "na",
        cache=_field(cache, "cache"), place=_field(place, "place"),
        bytes=int(_field(nbytes, "bytes")), threads=int(_field(threads, "threads")), auth=auth,
        track="identity" if cloaking == "dynamic" else "na", prot="none" if gss else "na",
        tickets="warm" if auth == "kerberos" else "na", clients=int(_field(clients, "clients")),
        pop=_field(pop, "pop"), shape=shape, loop=loop)


def _parse_baseline(name, parts):
    rest = [p for p in parts[1:] if not _GB_SUFFIX.match(p)] if len(parts) > 1 else []
    # negotiate's terms name the mechanism after the package: baseline/negotiate/mech:M/...
    if len(rest) > 1 and rest[0] == "negotiate" and rest[1].startswith("mech:"):
        mech = _field(rest[1], "mech")
        if mech not in NEGOTIATE_MECHS:
            raise ValueError(name)
        info = _parse_baseline(name, ["baseline", "negotiate"] + rest[2:])
        return dataclasses.replace(info, mech=mech)
    if rest == ["syscall"]:
        return CellName(name=name, kind="baseline", baseline="syscall")
    if rest == ["switch"]:
        return CellName(name=name, kind="baseline", baseline="switch")
    if len(rest) == 1 and rest[0].startswith("probe:"):
        return CellName(name=name, kind="baseline", baseline="probe", probe=_field(rest[0], "probe"))
    # a fat token: baseline/switch/groups:N, baseline/probe:kernel/groups:N
    if len(rest) == 2 and rest[0] == "switch" and rest[1].startswith("groups:"):
        return CellName(name=name, kind="baseline", baseline="switch",
                        groups=int(_field(rest[1], "groups")))
    if len(rest) == 2 and rest[0].startswith("probe:") and rest[1].startswith("groups:"):
        return CellName(name=name, kind="baseline", baseline="probe", probe=_field(rest[0], "probe"),
                        groups=int(_field(rest[1], "groups")))
    if len(rest) == 3 and rest[0] == "roundtrip":
        return CellName(name=name, kind="baseline", baseline="roundtrip",
                        place=_field(rest[1], "place"), bytes=int(_field(rest[2], "bytes")))
    if len(rest) == 4 and rest[:2] == ["roundtrip", "minimal"]:
        return CellName(name=name, kind="baseline", baseline="minimal",
                        place=_field(rest[2], "place"), bytes=int(_field(rest[3], "bytes")))
    if len(rest) == 2 and rest[0] == "connect":
        return CellName(name=name, kind="baseline", baseline="connect",
                        place=_field(rest[1], "place"))
    if len(rest) == 2 and rest[0] == "model":
        return CellName(name=name, kind="baseline", baseline="model", transport=rest[1])
    # Each GSSAPI package's terms: baseline/kerberos/establish/inproc/tickets:T,
    # baseline/ntlm/establish/inproc, baseline/<package>/establish/place:P,
    # baseline/<package>/mic/bytes:N
    if len(rest) == 4 and rest[:3] == ["kerberos", "establish", "inproc"]:
        return CellName(name=name, kind="baseline", baseline="kerberos-establish", auth="kerberos",
                        transport="inproc", tickets=_field(rest[3], "tickets"))
    if len(rest) == 3 and rest[0] in GSS_PACKAGES and rest[1:] == ["establish", "inproc"]:
        return CellName(name=name, kind="baseline", baseline=rest[0] + "-establish", auth=rest[0],
                        transport="inproc", tickets="na")
    if len(rest) == 3 and rest[0] in GSS_PACKAGES and rest[1] == "establish":
        return CellName(name=name, kind="baseline", baseline=rest[0] + "-establish", auth=rest[0],
                        transport="uds", tickets="warm" if rest[0] == "kerberos" else "na",
                        place=_field(rest[2], "place"))
    # across hosts: baseline/tcp/roundtrip/hops:N/bytes:B, baseline/kerberos/establish/tcp/level:L
    if len(rest) == 4 and rest[:2] == ["tcp", "roundtrip"]:
        return CellName(name=name, kind="baseline", baseline="roundtrip", transport="tcp",
                        hops=int(_field(rest[2], "hops")), bytes=int(_field(rest[3], "bytes")))
    if len(rest) == 4 and rest[:3] == ["kerberos", "establish", "tcp"]:
        return CellName(name=name, kind="baseline", baseline="kerberos-establish", auth="kerberos",
                        transport="tcp", tickets="warm", level=_field(rest[3], "level"))
    if len(rest) == 3 and rest[0] in GSS_PACKAGES and rest[1] == "wrap":
        return CellName(name=name, kind="baseline", baseline=rest[0] + "-wrap", auth=rest[0],
                        bytes=int(_field(rest[2], "bytes")))
    if len(rest) == 3 and rest[0] in GSS_PACKAGES and rest[1] == "mic":
        return CellName(name=name, kind="baseline", baseline=rest[0] + "-mic", auth=rest[0],
                        bytes=int(_field(rest[2], "bytes")))
    raise ValueError(name)


def parse_name(name):
    """Parse a (canonical) cell name; names that follow no cloakbench scheme are 'generic'."""
    parts = name.split("/")
    try:
        if parts[0] == "cloak":
            return _parse_cell(name, parts)
        if parts[0] == "baseline":
            return _parse_baseline(name, parts)
        if parts[0] == "load":
            return _parse_load(name, parts)
    except ValueError:
        pass
    return CellName(name=name, kind="generic")
