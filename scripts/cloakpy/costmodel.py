"""The cost of a call at a reader's rate of identity change (one change every N calls), from the
same run's cells: cost(N) = steady + (switch - steady) / N for each variant (docs/reading.md)."""

import dataclasses
import re
from typing import Optional

from . import derive, fmt, headline
from .stats import median

CHECKED_N = (2, 8, 32)


def variant_key(info):
    """Every field of a matrix cell's name except its token pattern."""
    return (info.backend, info.transport, info.package, info.cloaking, info.probe, info.cache,
            info.track, info.prot, info.tickets, info.place, info.bytes, info.threads, info.hops)


def every_n(pattern):
    m = re.fullmatch(r"every:(\d+)", pattern or "")
    return int(m.group(1)) if m and int(m.group(1)) > 0 else None


def _usable(cell):
    return cell is not None and not cell.failed and bool(cell.samples)


@dataclasses.dataclass
class RateModel:
    """One variant's line: `steady` ns per call with no change, `per_change` ns each change adds
    (the switch cell makes one change per call), and what of a change the baselines explain."""
    steady_cell: object
    switch_cell: object
    steady: float
    per_change: float
    steady_interval: tuple
    switch_interval: tuple
    new_context: Optional[float]  # per change, from the decomposition of the two cells
    token_switch: Optional[float]
    service_ticket: Optional[float]
    source: str = "cells"  # "blocks": steady and switch from the paired blocks (across launches)

    @property
    def info(self):
        return self.steady_cell.info

    def predict(self, n):
        """ns per call with one identity change every n calls."""
        return self.steady + self.per_change / float(n)

    def predict_interval(self, n):
        """The prediction is (1 - 1/n) steady + (1/n) switch, increasing in both, so the cells'
        median intervals bound it from below and above."""
        w = 1.0 / float(n)
        return ((1 - w) * self.steady_interval[0] + w * self.switch_interval[0],
                (1 - w) * self.steady_interval[1] + w * self.switch_interval[1])


def _term_difference(a, b, key):
    if a is None or b is None:
        return None
    va, vb = a.component(key), b.component(key)
    if va is None or vb is None:
        return None
    return va - vb


def models(result):
    """A RateModel for every variant of the run that has both a steady and a switch cell."""
    by_variant = {}
    for cell in result.cells.values():
        if cell.info.is_cell and cell.info.pattern in ("steady", "switch") and _usable(cell):
            by_variant.setdefault(variant_key(cell.info), {})[cell.info.pattern] = cell
    out = {}
    for key, cells in by_variant.items():
        if "steady" not in cells or "switch" not in cells:
            continue
        s, w = cells["steady"], cells["switch"]
        ds, dw = derive.decompose(result, s), derive.decompose(result, w)
        ms, mw = median(s.samples), median(w.samples)
        si, wi = headline.median_interval(s.samples), headline.median_interval(w.samples)
        out[key] = _from_blocks(result, s, w) or RateModel(
            s, w, ms, mw - ms, si[:2], wi[:2], _term_difference(dw, ds, "new_context"),
            _term_difference(dw, ds, "switch"), _term_difference(dw, ds, "service_ticket"))
    return out


# A headline cell's variant as the paired blocks name it.
_BLOCK_VARIANT = {"none": "none", "static": "static", "dynamic, cache none": "dynamic",
                  "dynamic, cache lru": "dynamic_lru"}


def _block_entry(result, info, pattern):
    """(block, its variant) measuring the headline cell `info` under `pattern`, or (None, None)."""
    if not headline.is_headline_cell(info):
        return None, None
    v = _BLOCK_VARIANT.get(headline.variant_of(info))
    for b in result.blocks:
        package = "%s/mech:%s" % (b.get("package"), b["mech"]) if b.get("mech") else b.get("package")
        if (package, b.get("place"), b.get("pattern")) == (info.package or "local", info.place,
                                                            pattern):
            if v in b.get("variants", {}) and b["variants"][v].get("median_ns", {}).get("low") is not None:
                return b, v
    return None, None


def _from_blocks(result, steady_cell, switch_cell):
    """A headline variant's model from the paired blocks: steady and switch medians (mean of the
    launches' medians, 95% intervals across launches), and what a change costs in new contexts and
    token switches from the blocks' decompositions. None when the run has no such blocks."""
    bs, v = _block_entry(result, steady_cell.info, "steady")
    bw, _ = _block_entry(result, steady_cell.info, "switch")
    if bs is None or bw is None:
        return None
    ms, mw = bs["variants"][v]["median_ns"], bw["variants"][v]["median_ns"]

    def term(key):
        a = bw.get("decomposition", {}).get(v, {}).get(key, {}).get("estimate")
        b = bs.get("decomposition", {}).get(v, {}).get(key, {}).get("estimate")
        return None if a is None or b is None else a - b
    return RateModel(steady_cell, switch_cell, ms["estimate"], mw["estimate"] - ms["estimate"],
                     (ms["low"], ms["high"]), (mw["low"], mw["high"]), term("new_context"),
                     term("switch"), 0.0, source="blocks")


@dataclasses.dataclass
class Check:
    model: RateModel
    n: int
    cell: object
    predicted: float
    predicted_interval: tuple
    measured: float
    measured_interval: tuple

    @property
    def error(self):
        return self.predicted / self.measured - 1.0

    @property
    def agrees(self):
        """Whether the prediction's interval and the measured median's interval overlap."""
        lo, hi = self.predicted_interval
        return lo <= self.measured_interval[1] and self.measured_interval[0] <= hi


def checks(result, all_models=None):
    """Every every:N cell of the run against its variant's model, in file order."""
    all_models = models(result) if all_models is None else all_models
    out = []
    for cell in result.cells.values():
        n = every_n(cell.info.pattern) if cell.info.is_cell else None
        if n is None or not _usable(cell):
            continue
        m = all_models.get(variant_key(cell.info))
        if m is None:
            continue
        lo, hi, _ = headline.median_interval(cell.samples)
        out.append(Check(m, n, cell, m.predict(n), m.predict_interval(n), median(cell.samples),
                         (lo, hi)))
    return out


def is_headline_model(model, model_backend=False):
    """Whether a model's variant is in the headline tables (the model backend's in-process cells
    stand in only for a run without kernel cells: model_backend=True)."""
    if model_backend:
        return headline.is_headline_cell(model.info, places=("na",), backend="model")
    return headline.is_headline_cell(model.info)


def headline_checks(check_list):
    """The checks of the headline variants, in headline order (package, placement, variant, N)."""
    chosen = [c for c in check_list if is_headline_model(c.model)] or \
        [c for c in check_list if is_headline_model(c.model, model_backend=True)]
    return sorted(chosen, key=lambda c: _sort_key(c.model) + (c.n,))


def group_label(info):
    auth = {"kerberos": "Kerberos", "ntlm": "NTLM", "negotiate/mech:krb5": "Negotiate over Kerberos",
            "negotiate/mech:ntlm": "Negotiate over NTLM"}.get(info.package, info.package or "local")
    return "%s, %s" % (auth, headline.PLACE_TEXT.get(info.place, info.place))


def check_rows(check_list, headline_only):
    header = ["package, placement", "cloaking", "N", "predicted", "measured every:N",
              "error", "intervals overlap?"]
    rows = []
    for c in check_list:
        info = c.model.info
        label = headline.variant_of(info) if headline_only else info.variant_label()
        where = group_label(info) if headline_only else (
            "%s, %s, %d B, %d thread%s" % (group_label(info), info.transport, info.bytes,
                                            info.threads, "" if info.threads == 1 else "s"))
        rows.append([where, label, str(c.n), "%s (%s – %s)" % (
            fmt.ns(c.predicted), fmt.ns(c.predicted_interval[0]), fmt.ns(c.predicted_interval[1])),
            "%s (%s – %s)" % (fmt.ns(c.measured), fmt.ns(c.measured_interval[0]),
                              fmt.ns(c.measured_interval[1])),
            fmt.percent(c.error), "yes" if c.agrees else "no"])
    return header, rows


def _sort_key(model):
    i = model.info
    order = [label for label, _, _ in headline.VARIANTS]
    v = headline.variant_of(i)
    places = {"same": 0, "cross": 1, "na": 2}
    return (headline.AUTH_ORDER.get(i.package, 9), places.get(i.place, 3),
            order.index(v) if v in order else 9, str(i.cache))


def headline_models(all_models):
    """The headline variants' models, one lru size per table, in headline order."""
    chosen = [m for m in all_models.values() if is_headline_model(m)] or \
        [m for m in all_models.values() if is_headline_model(m, model_backend=True)]
    seen, out = set(), []
    for m in sorted(chosen, key=_sort_key):
        key = (m.info.package, m.info.place, headline.variant_of(m.info))
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out


def workload_rows(result, n, all_models=None):
    """The headline variants at one identity change every n calls: predicted cost, × none at the
    same rate, what a change costs and its new context; measured beside when the run has every:n."""
    all_models = models(result) if all_models is None else all_models
    chosen = headline_models(all_models)
    measured = {(variant_key(c.cell.info)): c for c in checks(result, all_models) if c.n == n}
    header = ["package, placement", "cloaking", "per call at N=%d" % n, "× none at N=%d" % n,
              "a change costs", "of which new context", "measured every:%d" % n]
    rows = []
    for m in chosen:
        none_key = list(variant_key(m.info))
        none_key[3:7] = ["none", "na", "na", "na"]
        none = all_models.get(tuple(none_key))
        ratio = m.predict(n) / none.predict(n) if none is not None else None
        got = measured.get(variant_key(m.info))
        rows.append([group_label(m.info), headline.variant_of(m.info), fmt.ns(m.predict(n)),
                     "%.2f×" % ratio if ratio else "n/a", fmt.ns(m.per_change),
                     fmt.ns(m.new_context) if m.new_context is not None else "unknown",
                     "%s (error %s)" % (fmt.ns(got.measured), fmt.percent(got.error)) if got else
                     "not measured"])
    return header, rows


def summary(check_list):
    """(count, median |error|, largest |error|, how many intervals overlap) of some checks."""
    if not check_list:
        return None
    errs = sorted(abs(c.error) for c in check_list)
    return len(errs), median(errs), errs[-1], sum(1 for c in check_list if c.agrees)


# ---- under load (issue 19): a hit rate instead of a fixed rate of change -------------------------

@dataclasses.dataclass
class LoadPrediction:
    """One load cell against the model: per call = steady + c · (hit + (1 − h) · new_context), with
    c the cell's identity changes per call and h its measured hit rate (docs/reading.md, "Under
    load")."""
    cell: object
    measured: float
    changes: float
    hit_rate: float
    steady: float
    hit: float          # a change whose context is cached: dynamic switch lru:4 − steady
    new_context: float  # what a miss adds: dynamic switch cache:none − switch lru:4

    @property
    def predicted(self):
        return predict_under_load(self.steady, self.hit, self.new_context, self.changes,
                                  self.hit_rate)

    @property
    def error(self):
        return self.predicted / self.measured - 1.0 if self.measured > 0 else None


def predict_under_load(steady, hit, new_context, changes, hit_rate):
    """ns per call when `changes` of the calls change identity and `hit_rate` of those find their
    context cached."""
    return steady + changes * (hit + (1.0 - hit_rate) * new_context)


def _matrix_twin(load_info, pattern, cache):
    """The matrix cell with a load cell's package at the headline placement."""
    return ("cloak/%s/%s/auth:%s/dynamic/%s/probe:kernel/cache:%s/track:identity/prot:%s/tickets:%s/"
            "place:%s/bytes:%d/threads:1" % (load_info.backend, load_info.transport, load_info.auth,
                                             pattern, cache, load_info.prot, load_info.tickets,
                                             load_info.place, load_info.bytes))


def load_prediction(result, cell):
    """A LoadPrediction for a dynamic load cell, None when the run lacks the matrix cells the model
    reads (dynamic steady and switch with lru:4, switch with cache:none) or the cell's counters."""
    info = cell.info
    if not info.is_load or info.cloaking != "dynamic" or not _usable(cell):
        return None
    twins = {}
    for key, pattern, cache in (("steady", "steady", "lru:4"), ("hit", "switch", "lru:4"),
                                ("new", "switch", "none")):
        twin = result.cells.get(_matrix_twin(info, pattern, cache))
        if not _usable(twin):
            return None
        twins[key] = median(twin.samples)
    changes, hit_rate = cell.counter("changes_per_call"), cell.counter("hit_rate")
    if changes is None or hit_rate is None:
        return None
    if info.cache in ("none", "na"):
        hit_rate = 0.0
    return LoadPrediction(cell=cell, measured=median(cell.samples), changes=changes,
                          hit_rate=hit_rate, steady=twins["steady"],
                          hit=twins["hit"] - twins["steady"], new_context=twins["new"] - twins["hit"])


def _cache_order(info):
    if info.cloaking != "dynamic":
        return (0 if info.cloaking == "none" else 1, 0)
    m = re.fullmatch(r"lru:(\d+)", info.cache or "")
    return (2, int(m.group(1)) if m else 0)


def load_groups(result):
    """{(auth, clients, pop): [load cells, none and static first, then dynamic by cache size]}."""
    groups = {}
    for cell in result.cells.values():
        if cell.info.is_load and not cell.info.is_load_threads:
            groups.setdefault((cell.info.auth, cell.info.clients, cell.info.pop), []).append(cell)
    return {k: sorted(v, key=lambda c: _cache_order(c.info)) for k, v in sorted(
        groups.items(), key=lambda kv: (kv[0][0] != "local", kv[0][0], -(kv[0][1] or 0), kv[0][2]))}


def load_rows(result, cells):
    """The rows of one group's table: variant, cost per call, hit rate, changes and new contexts
    per call, the model's prediction and its error, bytes per cached context on each side."""
    header = ["cloaking, cache", "per call", "hit rate", "changes/call", "new contexts/call",
              "model", "model error", "bytes/context (middle)", "bytes/context (downstream)"]
    rows = []
    for cell in cells:
        info = cell.info
        label = info.cloaking if info.cloaking != "dynamic" else "dynamic, cache %s" % info.cache
        if cell.failed or not cell.samples:
            rows.append([label, "failed"] + ["—"] * (len(header) - 2))
            continue
        lookups = info.cloaking == "dynamic" and info.cache.startswith("lru:")
        p = load_prediction(result, cell)

        def number(key, fmt_string="%.2f"):
            v = cell.counter(key)
            return "—" if v is None else fmt_string % v

        def size(key):
            v = cell.counter(key)
            return "—" if v is None else fmt.bytes_(v)

        rows.append([label, fmt.ns(median(cell.samples)),
                     fmt.percent(cell.counter("hit_rate"), signed=False)
                     if lookups and cell.counter("hit_rate") is not None else "—",
                     number("changes_per_call"), number("contexts_per_call"),
                     fmt.ns(p.predicted) if p else "—",
                     fmt.percent(p.error) if p and p.error is not None else "—",
                     size("bytes_per_context_middle"), size("bytes_per_context_downstream")])
    return header, rows


# ---- threaded load cells (issue 19, items 4 and 5) ----------------------------------------------

CLOAKING_ORDER = {"none": 0, "static": 1, "dynamic": 2}
SHAPE_ORDER = {"apartment": 0, "shared": 1}


def thread_groups(result):
    """{(auth, clients, cloaking, shape): {"closed": {threads: cell}, "open": {threads: {percent:
    cell}}}} of the run's threaded load cells that did not fail, packages local first."""
    groups = {}
    for cell in result.cells.values():
        i = cell.info
        if not i.is_load_threads or cell.failed or cell.counter("calls_per_s") is None:
            continue
        g = groups.setdefault((i.auth, i.clients, i.cloaking, i.shape), {"closed": {}, "open": {}})
        if i.open_percent is None:
            g["closed"][i.threads] = cell
        else:
            g["open"].setdefault(i.threads, {})[i.open_percent] = cell
    return {k: groups[k] for k in sorted(groups, key=lambda k: (
        k[0] != "local", k[0], -(k[1] or 0), CLOAKING_ORDER.get(k[2], 9), SHAPE_ORDER.get(k[3], 9)))}


def saturation(group):
    """(throughput, threads) of a group's best closed-loop cell: the most calls a second any thread
    count sustained. None without closed cells."""
    closed = group["closed"]
    if not closed:
        return None
    t = max(closed, key=lambda n: closed[n].counter("calls_per_s") or 0.0)
    return closed[t].counter("calls_per_s"), t


def saturates_at(group, gain=1.1):
    """The thread count after which more threads stop adding throughput (the next count gains less
    than `gain` ×), or the largest measured when each still gains. None without closed cells."""
    closed = group["closed"]
    counts = sorted(closed)
    if not counts:
        return None
    for a, b in zip(counts, counts[1:]):
        if (closed[b].counter("calls_per_s") or 0.0) < gain * (closed[a].counter("calls_per_s") or 0.0):
            return a
    return counts[-1]


def open_at(group, percent):
    """(threads, open-loop cell) at `percent` of its closed loop's throughput; None if not run."""
    for threads in sorted(group["open"]):
        cell = group["open"][threads].get(percent)
        if cell is not None:
            return threads, cell
    return None


# The open loop keeps up while it serves what arrives: at least this share of the offered rate
# served, and nothing left queued when the grace ran out.
KEEPS_UP_SERVED = 0.95


def keeps_up_to(group):
    """(threads, the highest arrival rate, as a percent of the closed loop's throughput, up to which
    the open loop at that thread count served what arrived: served >= KEEPS_UP_SERVED x offered at
    that rate and every lower one, nothing unserved). The percent is 0 when even the lowest rate
    run fell behind. None without open-loop cells."""
    for threads in sorted(group["open"]):
        cells = group["open"][threads]
        best = 0
        for percent in sorted(cells):
            c = cells[percent]
            served, offered = c.counter("calls_per_s"), c.counter("offered_per_s")
            if served is None or not offered or served < KEEPS_UP_SERVED * offered \
                    or (c.counter("unserved") or 0.0) > 0:
                break
            best = percent
        return threads, best
    return None


def _keeps_up_label(kept, group):
    if kept is None:
        return "—"
    threads, percent = kept
    if percent == 0:
        return "below %d%%" % min(group["open"][threads])
    return "%d%%" % percent


def thread_rows(result):
    """The "Under load: threads" table: per package, cloaking and shape, the throughput at
    saturation (and at how many threads), where adding threads stops paying, and p50/p99 at 50%
    and 80% of the closed loop's throughput in the open loop."""
    header = ["package", "cloaking", "proxy", "calls/s at saturation", "threads", "saturates at",
              "open loop: threads", "keeps up to", "p50 at 50%", "p99 at 50%", "p99 at 80%",
              "hit rate"]
    rows = []
    for (auth, clients, cloaking, shape), g in thread_groups(result).items():
        sat = saturation(g)
        at50, at80 = open_at(g, 50), open_at(g, 80)

        def pct(cell_at, key):
            return "—" if cell_at is None or cell_at[1].counter(key) is None else fmt.ns(
                cell_at[1].counter(key))
        hit = None
        if sat is not None and cloaking == "dynamic":
            hit = g["closed"][sat[1]].counter("hit_rate")
        rows.append([auth, cloaking, "one per thread" if shape == "apartment" else "shared",
                     "—" if sat is None else "{:,.0f}".format(sat[0]),
                     "—" if sat is None else str(sat[1]),
                     "—" if sat is None else "%d thread%s" % (
                         saturates_at(g), "" if saturates_at(g) == 1 else "s"),
                     str((at50 or at80 or (None,))[0] or "—"),
                     _keeps_up_label(keeps_up_to(g), g),
                     pct(at50, "p50_ns"), pct(at50, "p99_ns"), pct(at80, "p99_ns"),
                     "—" if hit is None else fmt.percent(hit, signed=False)])
    return header, rows
