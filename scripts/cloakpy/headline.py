"""The headline of a run: the cells that answer "what does cloaking cost a downstream call", with
their 95% intervals, × no cloaking and decomposition, and the plain sentences that read them."""

import dataclasses
import math
from typing import List, Optional

from . import derive, fmt, names
from .stats import median

PATTERNS = ("steady", "switch", "reimpersonate")
# (label, cloaking, cache kind): the kernel probe is the default dynamic strategy; "lru": any lru:N.
VARIANTS = (("none", "none", None), ("static", "static", None),
            ("dynamic, cache none", "dynamic", "none"), ("dynamic, cache lru", "dynamic", "lru"))
PINNED = ("same", "cross")
# Packages in report order; negotiate's tables are one per mechanism (CellName.package).
AUTH_ORDER = {"local": 0, "kerberos": 1, "ntlm": 2, "negotiate": 3, "negotiate/mech:krb5": 3,
              "negotiate/mech:ntlm": 4}
PLACE_TEXT = {"same": "client and downstream on one CPU", "cross": "client and downstream on "
              "different CPUs", "na": "in process (model backend)"}
TERMS = ("transport", "probe", "switch", "new_context", "remainder")
TERM_HEADERS = ("transport", "probe", "switch", "new context", "remainder")
CONFIDENCE = 0.95


def median_interval(xs, confidence=CONFIDENCE):
    """Distribution-free interval of the median from order statistics: the narrowest symmetric
    [x(k), x(n+1-k)] whose coverage 1 - 2 P(Binomial(n, 1/2) < k) is at least `confidence`, or
    [min, max] when n is too small for that. Returns (low, high, coverage); coverage is exact for
    continuous data and says what the interval is worth with few repetitions (5 values: 93.8%)."""
    s = sorted(float(x) for x in xs)
    n = len(s)
    if n == 0:
        raise ValueError("interval of no values")
    if n == 1:
        return s[0], s[0], 0.0

    def coverage(k):  # P(x(k) <= median <= x(n+1-k)) = 1 - 2 P(B < k), B ~ Binomial(n, 1/2)
        tail = sum(math.comb(n, i) for i in range(k)) / 2.0 ** n
        return 1.0 - 2.0 * tail

    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(k + 1) >= confidence:
        k += 1
    return s[k - 1], s[n - k], coverage(k)


def variant_of(info):
    """The headline variant label of a matrix cell, or None when it is not a headline variant."""
    for label, cloaking, cache in VARIANTS:
        if info.cloaking != cloaking:
            continue
        if cloaking != "dynamic":
            return label
        if info.probe != "kernel" or (info.track or "identity") != "identity":
            return None
        if cache == "none" and info.cache == "none":
            return label
        if cache == "lru" and (info.cache or "").startswith("lru:"):
            return label
    return None


def is_headline_cell(info, places=PINNED, backend="kernel"):
    """Kernel backend over the Unix socket, a pinned placement, 64 B, one thread, no per-call
    protection, warm tickets, a headline pattern and variant (or the model backend's in-process
    cells when a run has no kernel cells: backend='model', places=('na',))."""
    if not info.is_cell or info.backend != backend or info.pattern not in PATTERNS:
        return False
    if backend == "kernel" and info.transport != "uds":
        return False
    return (info.place in places and info.bytes == 64 and info.threads == 1
            and (info.prot or "na") in ("none", "na") and (info.tickets or "na") in ("warm", "na")
            and info.hops in (None, 1) and not info.groups and variant_of(info) is not None)


@dataclasses.dataclass
class Row:
    cell: object
    variant: str
    pattern: str
    median: Optional[float]
    low: Optional[float]
    high: Optional[float]
    coverage: Optional[float]
    over_none: Optional[float]
    terms: Optional[derive.Decomposition]


@dataclasses.dataclass
class Table:
    auth: str
    place: str
    rows: List[Row]

    @property
    def title(self):
        auth = names.PACKAGE_TITLES.get(self.auth, "%s package" % self.auth)
        return "%s, %s, 64 B, one client thread" % (auth, PLACE_TEXT.get(self.place, self.place))

    def row(self, variant, pattern):
        return next((r for r in self.rows if r.variant == variant and r.pattern == pattern), None)


def _usable(cell):
    return cell is not None and not cell.failed and bool(cell.samples)


def _row(result, cell):
    info = cell.info
    if not _usable(cell):
        return Row(cell, variant_of(info), info.pattern, None, None, None, None, None, None)
    m = median(cell.samples)
    lo, hi, cov = median_interval(cell.samples)
    over = None
    if info.cloaking == "none":
        over = 1.0
    else:
        none = derive.none_counterpart(result, cell)
        if _usable(none):
            over = m / median(none.samples)
    return Row(cell, variant_of(info), info.pattern, m, lo, hi, cov, over,
               derive.decompose(result, cell))


def tables(result):
    """One Table per authentication package (negotiate: per mechanism) and pinned placement, rows
    by pattern then variant;
    the model backend's in-process cells when the run has no kernel headline cells."""
    cells = [c for c in result.cells.values() if is_headline_cell(c.info)]
    if not cells:
        cells = [c for c in result.cells.values()
                 if is_headline_cell(c.info, places=("na",), backend="model")]
    groups = {}
    for c in cells:
        groups.setdefault((c.info.package or "local", c.info.place), []).append(c)
    order = [label for label, _, _ in VARIANTS]
    out = []
    for (auth, place), group in sorted(groups.items(), key=lambda kv: (
            AUTH_ORDER.get(kv[0][0], 9), kv[0][0], (PINNED + ("na",)).index(kv[0][1]))):
        group.sort(key=lambda c: (PATTERNS.index(c.info.pattern), order.index(variant_of(c.info)),
                                  c.info.cache))
        seen, rows = set(), []
        for c in group:  # one lru size per table: the first (the bench measures lru:4)
            key = (variant_of(c.info), c.info.pattern)
            if key not in seen:
                seen.add(key)
                rows.append(_row(result, c))
        out.append(Table(auth, place, rows))
    return out


def _term(d, key):
    if d is None:
        return "—"
    v = d.component(key)
    return "unknown" if v is None else fmt.ns(v)


def interval_text(row):
    if row.low is None:
        return "—"
    return "%s – %s" % (fmt.ns(row.low), fmt.ns(row.high))


def table_rows(table):
    """Header and rows of a headline table (Markdown and HTML)."""
    header = ["cloaking", "token pattern", "per call", "95% interval", "× none"] + list(TERM_HEADERS)
    rows = []
    for r in table.rows:
        if r.median is None:
            rows.append([r.variant, r.pattern, "failed", "—", "—"] + ["—"] * len(TERMS))
            continue
        rows.append([r.variant, r.pattern, fmt.ns(r.median), interval_text(r),
                     "%.2f×" % r.over_none if r.over_none is not None else "n/a"]
                    + [_term(r.terms, k) for k in TERMS])
    return header, rows


def least_coverage(all_tables):
    covs = [r.coverage for t in all_tables for r in t.rows if r.coverage is not None]
    return min(covs) if covs else None


def change_cost(table, variant):
    """What one token change adds under a variant: its switch cell minus its steady cell (switch
    makes one change per call), with the switch cell's new-context and token-switch terms."""
    steady, switch = table.row(variant, "steady"), table.row(variant, "switch")
    if steady is None or switch is None or steady.median is None or switch.median is None:
        return None
    d = switch.terms
    return {"cost": switch.median - steady.median, "switch_cell": switch,
            "new_context": d.new_context if d is not None else None,
            "token_switch": d.switch if d is not None else None}


def _share(part, whole):
    if part is None or not whole or whole <= 0:
        return ""
    if part > whole:  # separately timed cells and baselines: the terms can exceed the difference
        return " (more than the change measured: read the intervals in the table)"
    return " (%.0f%%)" % (100.0 * part / whole)


def sentence(table, machine):
    """One plain sentence that reads a headline table, or None when it lacks the cells."""
    dyn = change_cost(table, "dynamic, cache none")
    steady = table.row("dynamic, cache none", "steady")
    if dyn is None or steady is None:
        return None
    where = "%s, %s" % (names.PACKAGE_NAMES.get(table.auth, "the %s package" % table.auth),
                        PLACE_TEXT.get(table.place, table.place))
    text = ("On this machine%s, with %s, a call under dynamic cloaking costs %s with a steady token "
            "(%s no cloaking); a token change adds %s to the call"
            % (" (%s)" % machine if machine else "", where, fmt.ns(steady.median),
               "%.2f×" % steady.over_none if steady.over_none else "n/a ×", fmt.ns(dyn["cost"])))
    details = []
    if dyn["new_context"] is not None:
        details.append("%s%s is a new security context" % (fmt.ns(dyn["new_context"]),
                                                          _share(dyn["new_context"], dyn["cost"])))
    if dyn["token_switch"]:
        plain = change_cost(table, "none")
        details.append("%s the token switch itself%s" % (
            fmt.ns(dyn["token_switch"]),
            " (a change adds %s without cloaking)" % fmt.ns(plain["cost"]) if plain else ""))
    if details:
        text += ", of which " + " and ".join(details)
    lru = change_cost(table, "dynamic, cache lru")
    if lru is not None:
        text += "; an %s context cache cuts it to %s" % (lru["switch_cell"].cell.info.cache,
                                                        fmt.ns(lru["cost"]))
    return text + "."


def sentences(all_tables, machine):
    """At most two sentences: the first table of each authentication package (local first)."""
    out, seen = [], set()
    for t in all_tables:
        if t.auth in seen:
            continue
        s = sentence(t, machine)
        if s:
            seen.add(t.auth)
            out.append(s)
        if len(out) == 2:
            break
    return out
