"""The report's first screen from the paired blocks (cloak_blocks): every × none ratio and every
decomposition term with its 95% interval across launches, so no number on it contradicts another
beyond what the measurement resolves; and the same rows as headline.json."""

import dataclasses
from typing import Dict, List, Optional

from . import fmt, names

MIN_EFFECT = 0.02  # a ratio whose whole interval is within ±2% of 1.00 reads "≈ 1.00×"
# (block variant, label); the order of a table's rows within a token pattern.
VARIANTS = (("none", "none"), ("static", "static"), ("dynamic", "dynamic, cache none"),
            ("dynamic_lru", "dynamic, cache lru:4"))
PATTERNS = ("steady", "switch", "reimpersonate")
PACKAGE_ORDER = {"local": 0, "kerberos": 1, "ntlm": 2, "negotiate": 3, "negotiate/mech:krb5": 3,
                 "negotiate/mech:ntlm": 4}
PLACE_ORDER = {"same": 0, "cross": 1}
PLACE_TEXT = {"same": "client and downstream on one CPU",
              "cross": "client and downstream on different CPUs"}
TERMS = ("transport", "probe", "switch", "new_context", "remainder")
TERM_HEADERS = ("transport", "probe", "switch", "new context", "remainder")
GLOSSARY = (
    "**steady**: the middle thread keeps one client's token between calls",
    "**switch**: it impersonates another client (of 4, round robin) before every call",
    "**reimpersonate**: it reverts and impersonates the same client again before every call "
    "(a new token, the same identity)",
    "**probe**: dynamic cloaking's read of the thread's identity on every call",
    "**lru:4**: dynamic cloaking keeps the security contexts of the last 4 identities, so an "
    "identity that comes back needs no new context",
    "**track**: what makes dynamic cloaking build a new context: a changed identity (here) or "
    "a changed token",
    "**place**: where the client thread and the downstream run (one CPU, or two: a wake-up each "
    "way)",
    "**× none**: the call over the same call without cloaking, paired round by round",
)


@dataclasses.dataclass
class Row:
    pattern: str
    variant: str
    label: str
    median: Optional[dict]        # {"estimate", "low", "high", ...} in ns, across launches
    p99: Optional[float]
    ratio: Optional[dict]         # × none, across launches (None for none itself)
    terms: Dict[str, dict]        # TERMS -> entry in ns
    anomalies: List[str]


@dataclasses.dataclass
class Table:
    package: str
    place: str
    launches: int
    rows: List[Row]
    aa: Dict[str, dict]           # pattern -> none_aa/none entry: the A/A check
    clock_ns: Optional[float]     # the timestamp's own cost
    failures: List[str]

    @property
    def title(self):
        package = names.PACKAGE_TITLES.get(self.package, "%s package" % self.package)
        return "%s, %s, 64 B, one client thread" % (package, PLACE_TEXT.get(self.place, self.place))

    def row(self, variant, pattern):
        return next((r for r in self.rows if r.variant == variant and r.pattern == pattern), None)


def _est(entry):
    return None if entry is None else entry.get("estimate")


def _anomalies(variant, ratio, terms, min_effect=MIN_EFFECT):
    """What on a row would contradict the rules of arithmetic or of cloaking, and is resolved by
    its interval beyond the band that reads "≈ 1.00×" (an interval that reaches the expected side,
    or lies within the band, is no contradiction: a difference below the band is not claimed). The
    terms are
    priced with their own medians, and a median of a sum is not the sum of the medians, so a
    remainder is an anomaly only when its whole interval lies below -min_effect of the call."""
    out = []
    if (variant != "none" and ratio and ratio.get("high") is not None
            and ratio["high"] < 1.0 - min_effect):
        out.append("cheaper than no cloaking (%s): every cloaked call does at least what an "
                   "uncloaked one does; look for an order or cache effect in the block"
                   % ratio_text(ratio, 0.0))
    rem, call = terms.get("remainder"), _est(terms.get("measured"))
    if rem and rem.get("high") is not None and call and rem["high"] < -min_effect * call:
        out.append("the parts add up to more than the call (remainder %s): a term is overcharged"
                   % term_text(rem))
    return out


def _package(block):
    """A block's package as tables name it: negotiate per mechanism ('negotiate/mech:krb5')."""
    package = block.get("package")
    return "%s/mech:%s" % (package, block["mech"]) if block.get("mech") else package


def tables(result, min_effect=MIN_EFFECT):
    """One Table per package and placement of the run's blocks, rows by pattern then variant;
    [] for a file without blocks."""
    groups = {}
    for b in getattr(result, "blocks", []) or []:
        if b.get("pattern") not in PATTERNS:
            continue
        groups.setdefault((_package(b), b.get("place")), []).append(b)
    out = []
    for (package, place), blocks in sorted(groups.items(), key=lambda kv: (
            PACKAGE_ORDER.get(kv[0][0], 9), kv[0][0] or "", PLACE_ORDER.get(kv[0][1], 9))):
        blocks.sort(key=lambda b: PATTERNS.index(b["pattern"]))
        rows, aa, clock, failures = [], {}, None, []
        launches = min((b.get("launches", 0) for b in blocks), default=0)
        for b in blocks:
            failures += ["%s: %s" % (b["name"], f.get("failed")) for f in b.get("failures", [])]
            if "none_aa/none" in b.get("ratios", {}):
                aa[b["pattern"]] = b["ratios"]["none_aa/none"]
            c = b.get("variants", {}).get("clock", {}).get("median_ns")
            if c and c.get("estimate") is not None:
                clock = max(clock or 0.0, c["estimate"])
            if not b.get("launches"):  # failed (or was interrupted) in every launch
                why = next((f.get("failed") for f in b.get("failures", [])), "no launch")
                rows += [Row(b["pattern"], key, label, None, None, None, {},
                             ["failed in every launch: %s" % why]) for key, label in VARIANTS]
                continue
            for key, label in VARIANTS:
                v = b.get("variants", {}).get(key)
                if v is None:
                    continue
                ratio = None if key == "none" else b.get("ratios", {}).get("%s/none" % key)
                terms = b.get("decomposition", {}).get(key, {})
                p99 = (v.get("summary", {}).get("all") or {}).get("p99")
                rows.append(Row(b["pattern"], key, label, v.get("median_ns"), p99, ratio,
                                {t: terms[t] for t in TERMS if t in terms},
                                _anomalies(key, ratio, terms, min_effect)))
        out.append(Table(package, place, launches, rows, aa, clock, failures))
    return out


def ratio_text(entry, min_effect=MIN_EFFECT):
    """'≈ 1.00×' when the whole interval lies within ±min_effect of 1; else the estimate with its
    interval ('1.31× (1.29–1.33)'); the estimate alone when there is no interval."""
    if entry is None or entry.get("estimate") is None:
        return "n/a"
    lo, hi = entry.get("low"), entry.get("high")
    if lo is None or hi is None:
        return "%.2f× (one launch: no interval)" % entry["estimate"]
    if 1.0 - min_effect <= lo and hi <= 1.0 + min_effect:
        return "≈ 1.00×"
    return "%.2f× (%.2f–%.2f)" % (entry["estimate"], lo, hi)


def term_text(entry):
    """A time with its interval's half-width: '11.8 µs ± 0.3'."""
    if entry is None or entry.get("estimate") is None:
        return "—"
    est, lo, hi = entry["estimate"], entry.get("low"), entry.get("high")
    if est == 0 and lo in (0, None) and hi in (0, None):
        return "0"
    if lo is None or hi is None:
        return fmt.ns(est)
    return "%s ± %s" % (fmt.ns(est), fmt.ns((hi - lo) / 2.0))


def _label(row):
    if row.variant == "static" and row.pattern == "switch":
        return "static (D sees the first client)"
    return row.label


def table_rows(table, min_effect=MIN_EFFECT):
    """Header and rows of one first-screen table (Markdown and HTML)."""
    header = ["cloaking", "token pattern", "per call", "p99", "× none"] + list(TERM_HEADERS)
    rows = []
    for r in table.rows:
        if r.median is None:
            rows.append([_label(r), r.pattern, "failed"] + ["—"] * (2 + len(TERMS)))
            continue
        ratio = "1" if r.variant == "none" else ratio_text(r.ratio, min_effect)
        if r.anomalies:
            ratio += " ⚠"
        rows.append([_label(r), r.pattern, term_text(r.median),
                     fmt.ns(r.p99) if r.p99 is not None else "—", ratio]
                    + [term_text(r.terms.get(t)) for t in TERMS])
    return header, rows


def sentence(table, min_effect=MIN_EFFECT):
    """One plain sentence that reads a table, or None when it lacks the rows."""
    steady, switch = table.row("dynamic", "steady"), table.row("dynamic", "switch")
    none_steady = table.row("none", "steady")
    if steady is None or switch is None or none_steady is None or steady.median is None:
        return None
    where = "%s, %s" % (names.PACKAGE_NAMES.get(table.package, "the %s package" % table.package), PLACE_TEXT.get(table.place, table.place))
    text = ("With %s, a call costs %s without cloaking; dynamic cloaking with a steady token is %s "
            "that" % (where, fmt.ns(_est(none_steady.median)),
                      ratio_text(steady.ratio, min_effect)))
    ctx = switch.terms.get("new_context")
    text += ("; when the token changes before every call it is %s the same call without cloaking"
             % ratio_text(switch.ratio, min_effect))
    if ctx and _est(ctx):
        text += ", a new security context (%s) each time" % term_text(ctx)
    lru = table.row("dynamic_lru", "switch")
    if lru is not None and lru.ratio is not None:
        text += "; an lru:4 context cache brings it to %s" % ratio_text(lru.ratio, min_effect)
    return text + "."


def new_context_check(table):
    """What a token change costs dynamic cloaking (cache none) beyond the token switch, measured
    (its switch call minus its steady call minus the switch term), beside the package's own
    exchange across the same channel in the same rounds: {"measured_ns", "exchange_ns", "ratio"},
    or None when the table lacks them or the package makes no exchange (local)."""
    if table.package == "local":
        return None
    steady, switch = table.row("dynamic", "steady"), table.row("dynamic", "switch")
    if steady is None or switch is None:
        return None
    a, b = _est(switch.median), _est(steady.median)
    token_switch = _est(switch.terms.get("switch"))
    exchange = _est(switch.terms.get("new_context"))
    if a is None or b is None or token_switch is None or not exchange:
        return None
    measured = a - b - token_switch
    return {"measured_ns": measured, "exchange_ns": exchange, "ratio": measured / exchange}


def report_blocks(result, min_effect=MIN_EFFECT):
    """The first screen as report blocks: the sentences, one table per package and placement,
    the A/A checks, anomalies, and a glossary. [] for a file without blocks."""
    ts = tables(result, min_effect)
    if not ts:
        return []
    blocks = [("h2", "Headline: what cloaking costs a downstream call")]
    said = [s for s in (sentence(t, min_effect) for t in ts) if s]
    if said:
        blocks.append(("list", said))
    anomalies = []
    for t in ts:
        header, rows = table_rows(t, min_effect)
        blocks += [("h3", t.title, "tight"), ("table", header, rows)]
        aa = "; ".join("%s %s" % (p, ratio_text(e, min_effect)) for p, e in t.aa.items())
        note = "A/A (no cloaking against itself on a second connection): %s" % (aa or "n/a")
        if t.clock_ns is not None:
            note += "; the timestamp costs %s" % fmt.ns(t.clock_ns)
        check = new_context_check(t)
        if check is not None:
            note += ("; a new context, measured (dynamic switch − dynamic steady − token switch): "
                     "%s, the package's own exchange across the same channel: %s (%.2f×)"
                     % (fmt.ns(check["measured_ns"]), fmt.ns(check["exchange_ns"]), check["ratio"]))
        blocks.append(("p", note + "."))
        for r in t.rows:
            anomalies += ["%s, %s, %s: %s" % (t.title, _label(r), r.pattern, a)
                          for a in r.anomalies]
        anomalies += ["failed launch of %s" % f for f in t.failures]
    launches = min(t.launches for t in ts)
    blocks.append(("p", "Paired blocks: in every round each variant and each term is called once, "
                        "in a fresh random order, each call timed on its own. Per call: median, "
                        "mean of %d launches' medians ± the half-width of its 95%% Student-t "
                        "interval across launches (the launches are the samples); p99 from the "
                        "launches' merged histograms; × none: paired by round within a launch, "
                        "interval across launches, \"≈ 1.00×\" when the whole interval is within "
                        "±%g%%; transport … remainder: where the time goes (remainder = the call "
                        "minus the priced terms)." % (launches, 100 * min_effect)))
    if anomalies:
        blocks += [("h3", "Anomalies (⚠): resolved by their intervals, so not noise", "tight"),
                   ("list", anomalies)]
    blocks.append(("details", "What the words mean", [("list", list(GLOSSARY))], False))
    return blocks


def headline_json(result, min_effect=MIN_EFFECT):
    """The first screen's rows as data (headline.json beside report.md; docs/results.md)."""
    rows = []
    for t in tables(result, min_effect):
        for r in t.rows:
            rows.append({"package": t.package, "place": t.place, "pattern": r.pattern,
                         "variant": r.variant, "median_ns": r.median, "p99_ns": r.p99,
                         "over_none": r.ratio, "over_none_text": (
                             "1" if r.variant == "none" else ratio_text(r.ratio, min_effect)),
                         "terms_ns": r.terms, "anomalies": r.anomalies})
    out = {"machine": result.machine_id, "commit": result.commit, "date": result.date,
           "min_effect": min_effect, "interval": "95% Student-t across launches",
           "rows": rows}
    checks = [dict(package=t.package, place=t.place, **c)
              for t in tables(result, min_effect) for c in [new_context_check(t)] if c]
    if checks:
        out["new_context"] = checks
    return out
