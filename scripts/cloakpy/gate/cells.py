"""Which cells the gate gates: the names both sides list, matched across naming schemes."""

import dataclasses
import re
from typing import Dict, List, Optional

from .. import names

# The gated patterns and variants of the report's headline (headline.py: the same definition
# its first tables use); every authentication package's cells of them are gated, so a package
# the bench adds joins the gate without an edit here.
GATED_PATTERNS = ("steady", "switch")
GATED_VARIANTS = ("none", "static", "dynamic, cache none")   # labels of headline.VARIANTS
GATED_PLACES = ("same",)


def is_gated_headline_cell(info):
    """Whether a parsed cell name is in the default gated set (docs/reading.md, "Which cells are
    gated"): a headline cell (kernel transport, 64 B, one thread, no per-call protection, warm
    tickets; headline.is_headline_cell) on one CPU, steady or switch, with no cloaking, static,
    or dynamic with the kernel probe and no cache; of any authentication package."""
    from .. import headline
    return (headline.is_headline_cell(info, places=GATED_PLACES)
            and info.pattern in GATED_PATTERNS and headline.variant_of(info) in GATED_VARIANTS)


class HeadlineCells:
    """The default gated set: the cells is_gated_headline_cell accepts."""
    pattern = None  # no --cells

    def __contains__(self, normalized):
        return is_gated_headline_cell(names.parse_name(normalized))


class MatchingCells:
    """The cells whose (normalized) name a --cells regex searches."""

    def __init__(self, pattern):
        self.pattern = pattern
        self.rx = re.compile(pattern)

    def __contains__(self, normalized):
        return bool(self.rx.search(normalized))


HEADLINE_CELLS = HeadlineCells()


def normalized_name(name):
    """A matrix cell's name with every segment of today's scheme, so a revision from before the
    Kerberos cells (no auth:, track:, prot:, tickets:) is matched with today's names. A negotiate
    cell keeps its mech: (two cells, one per mechanism); no other name has one."""
    info = names.parse_name(names.canonical_name(name))
    if not info.is_cell:
        return info.name
    parts = ["cloak", info.backend, info.transport, "auth:" + info.auth]
    if info.mech != "na":
        parts.append("mech:" + info.mech)
    parts += [info.cloaking, info.pattern, "probe:" + info.probe, "cache:" + info.cache,
              "track:" + info.track, "prot:" + info.prot, "tickets:" + info.tickets]
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
    pattern: Optional[str]           # the --cells regex; None: the headline set

    def described(self, quote="`"):
        """What the gated cells are, after "cells": "matching `REGEX`" or "of the headline set"."""
        if self.pattern is None:
            return "of the headline set"
        return "matching %s%s%s" % (quote, self.pattern, quote)


def select_cells(base_names, candidate_names, cells=HEADLINE_CELLS):
    """The gated cells: in `cells` (HEADLINE_CELLS, or a --cells regex) and present on both
    sides."""
    if cells is None or isinstance(cells, str):
        cells = HEADLINE_CELLS if cells is None else MatchingCells(cells)
    native = {"base": {}, "candidate": {}}
    for side, listed in (("base", base_names), ("candidate", candidate_names)):
        for n in listed:
            native[side].setdefault(normalized_name(n), n)
    gated = [n for n in native["base"] if n in cells and n in native["candidate"]]
    only_base = [n for n in native["base"] if n in cells and n not in native["candidate"]]
    only_cand = [n for n in native["candidate"] if n in cells and n not in native["base"]]
    return Selection(gated, native, only_base, only_cand, cells.pattern)
