"""Which cells the gate gates: the names both sides list, matched across naming schemes."""

import dataclasses
import re
from typing import Dict, List

from .. import names

# The headline cells (docs/reading.md, "Which cells are gated"): none / static / dynamic (kernel
# probe, no cache) x steady / switch, for every authentication package, same CPU, 64 B, 1 thread.
HEADLINE_CELLS = (r"^cloak/kernel/uds/auth:(local|kerberos)/(none|static|dynamic)/(steady|switch)/"
                  r"probe:(na|kernel)/cache:(na|none)/track:(na|identity)/prot:(na|none)/"
                  r"tickets:(na|warm)/place:same/bytes:64/threads:1$")


def normalized_name(name):
    """A matrix cell's name with every segment of today's scheme, so a revision from before the
    Kerberos cells (no auth:, track:, prot:, tickets:) is matched with today's names."""
    info = names.parse_name(names.canonical_name(name))
    if not info.is_cell:
        return info.name
    parts = ["cloak", info.backend, info.transport, "auth:" + info.auth, info.cloaking,
             info.pattern, "probe:" + info.probe, "cache:" + info.cache, "track:" + info.track,
             "prot:" + info.prot, "tickets:" + info.tickets]
    if info.hops is not None:
        parts.append("hops:%d" % info.hops)
    parts += ["place:" + info.place, "bytes:%d" % info.bytes, "threads:%d" % info.threads]
    return "/".join(parts)


@dataclasses.dataclass
class Selection:
    gated: List[str]                 # normalized names, in the base's order
    native: Dict[str, Dict[str, str]]  # side -> normalized -> the side's own name
    only_base: List[str]
    only_candidate: List[str]
    pattern: str


def select_cells(base_names, candidate_names, pattern):
    """The gated cells: matching `pattern` and present on both sides."""
    rx = re.compile(pattern)
    native = {"base": {}, "candidate": {}}
    for side, listed in (("base", base_names), ("candidate", candidate_names)):
        for n in listed:
            native[side].setdefault(normalized_name(n), n)
    gated = [n for n in native["base"] if rx.search(n) and n in native["candidate"]]
    only_base = [n for n in native["base"] if rx.search(n) and n not in native["candidate"]]
    only_cand = [n for n in native["candidate"] if rx.search(n) and n not in native["base"]]
    return Selection(gated, native, only_base, only_cand, pattern)
