"""Paired-block launch records reduced to ratios, terms and histograms with launch intervals."""

import fractions
import functools
import math

from cloakpy import names

# numpy and scipy are imported where they are used, as in stats.py, so that importing this
# module (every --help) costs nothing.

SCHEME = "log-linear/7"
SUB_BITS = 7
SUB_BUCKETS = 1 << SUB_BITS  # 128 linear sub-buckets per power of two
DEFAULT_CONFIDENCE = 0.95
P999_MIN_COUNT = 1000  # below this a p99.9 is the top few calls, not a percentile

BASE = "none"
TRANSPORT = "roundtrip"
# Variants compared with BASE round by round; none_aa is BASE again on a second connection.
CLOAKING = ("none_aa", "static", "dynamic", "dynamic_lru")
TERMS = ("roundtrip", "probe", "switch", "new_context", "clock")
DECOMPOSITION = ("measured", "transport", "probe", "switch", "new_context", "remainder")
INTERVAL_METHOD = "student_t_over_launches"


# --- histograms -------------------------------------------------------------------------------

def bucket_index(v):
    """The bucket of a non-negative integer time v: v itself below 128, else 128 linear
    sub-buckets per power of two (the mapping the C++ side uses)."""
    v = int(v)
    if v < 0:
        raise ValueError("negative time %d" % v)
    if v < SUB_BUCKETS:
        return v
    e = v.bit_length() - 1
    sub = (v >> (e - SUB_BITS)) - SUB_BUCKETS
    return (e - SUB_BITS + 1) * SUB_BUCKETS + sub


def bucket_bounds(index):
    """(lower bound, width) of a bucket: every v with lower <= v < lower + width maps to it."""
    index = int(index)
    if index < 0:
        raise ValueError("negative bucket index %d" % index)
    if index < SUB_BUCKETS:
        return index, 1
    e = index // SUB_BUCKETS + SUB_BITS - 1
    sub = index % SUB_BUCKETS
    return (SUB_BUCKETS + sub) << (e - SUB_BITS), 1 << (e - SUB_BITS)


def empty_histogram():
    """A histogram of no calls."""
    return {"scheme": SCHEME, "count": 0, "min": None, "max": None, "sum": 0, "buckets": []}


def histogram(values):
    """The histogram of integer times, as the C++ side would write it (for tests and for
    times that reach Python raw)."""
    counts = {}
    values = [int(v) for v in values]
    for v in values:
        i = bucket_index(v)
        counts[i] = counts.get(i, 0) + 1
    if not values:
        return empty_histogram()
    return {"scheme": SCHEME, "count": len(values), "min": min(values), "max": max(values),
            "sum": sum(values), "buckets": [[i, counts[i]] for i in sorted(counts)]}


def _check_scheme(h):
    if h.get("scheme") != SCHEME:
        raise ValueError("histogram scheme %r, expected %r" % (h.get("scheme"), SCHEME))


def merge_histograms(hs):
    """One histogram of all the calls in `hs` (counts added bucket by bucket: exact)."""
    counts = {}
    merged = empty_histogram()
    for h in hs:
        _check_scheme(h)
        if not h.get("count"):
            continue
        for i, c in h["buckets"]:
            counts[int(i)] = counts.get(int(i), 0) + int(c)
        merged["count"] += int(h["count"])
        merged["sum"] += h["sum"]
        merged["min"] = h["min"] if merged["min"] is None else min(merged["min"], h["min"])
        merged["max"] = h["max"] if merged["max"] is None else max(merged["max"], h["max"])
    merged["buckets"] = [[i, counts[i]] for i in sorted(counts) if counts[i]]
    return merged


def percentile(h, q):
    """The time at rank ceil(q x count) (at least 1): exact in width-1 buckets, else the bucket's
    midpoint, clamped to [min, max]; None for an empty histogram."""
    _check_scheme(h)
    if not 0.0 <= q <= 1.0:
        raise ValueError("percentile q must be in [0, 1], got %r" % q)
    count = int(h.get("count") or 0)
    if count == 0:
        return None
    # q as the decimal it was written as, so 0.999 x 1000 is rank 999, not 1000.
    rank = max(1, math.ceil(fractions.Fraction(repr(float(q))) * count))
    seen = 0
    for i, c in sorted((int(i), int(c)) for i, c in h["buckets"]):
        seen += c
        if seen >= rank:
            lower, width = bucket_bounds(i)
            value = lower + (width - 1) // 2
            return min(max(value, h["min"]), h["max"])
    raise ValueError("histogram buckets hold %d calls, count says %d" % (seen, count))


def summary(h):
    """{"count", "p50", "p90", "p99", "p99.9", "max", "mean"} of a histogram; p99.9 is None
    below 1000 calls, and everything but count is None for an empty one."""
    count = int(h.get("count") or 0)
    out = {"count": count}
    for key, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        out[key] = percentile(h, q)
    out["p99.9"] = percentile(h, 0.999) if count >= P999_MIN_COUNT else None
    out["max"] = h["max"] if count else None
    out["mean"] = h["sum"] / count if count else None
    return out


# --- one launch -------------------------------------------------------------------------------

def _floats(xs):
    # Float arrays (float32 from the coverage test's model) are kept as they are; anything else
    # (the records' integer ns) becomes float64.
    import numpy as np
    a = np.asarray(xs)
    return a if a.dtype.kind == "f" else a.astype(float)


def paired_log_ratio(none_ns, variant_ns):
    """Median over rounds (the last axis) of log(variant) - log(none), the two paired by round:
    the launch's log-ratio estimate. Vectorised: leading axes are kept."""
    # Median rather than the Hodges-Lehmann shift (the median of the Walsh averages of the same
    # differences) because the known-answer model of tests/scripts/test_blocks.py does not tell
    # them apart on coverage: 1000 repetitions, 5 launches of 1500 rounds, covered 94.4% (median)
    # and 94.3% (Hodges-Lehmann), mean interval widths within 2%, since the launch effect on the
    # ratio, not the estimator, sets the width. Hodges-Lehmann is narrower only when that effect
    # is absent (17% narrower, both covering 94-95%), and costs O(R^2) time and memory (1.1 M Walsh
    # averages per variant at 1500 rounds) where the median costs O(R): with the median the
    # coverage test runs the very estimator the result file uses on 1000 x 7 launches in seconds.
    import numpy as np
    n, v = _floats(none_ns), _floats(variant_ns)
    if n.shape != v.shape:
        raise ValueError("paired times need the same shape, got %s and %s" % (n.shape, v.shape))
    if n.shape[-1] == 0:
        raise ValueError("paired times need at least one round")
    if not (np.all(n > 0) and np.all(v > 0)):
        raise ValueError("paired times must be positive")
    d = np.median(np.log(v) - np.log(n), axis=-1)
    return float(d) if d.ndim == 0 else d


def _median(xs):
    import numpy as np
    a = np.asarray(xs, dtype=float)
    if a.size == 0:
        raise ValueError("median of no values")
    return float(np.median(a))


def _times(record, variant):
    times = record.get("times_ns", {}).get(variant)
    if times is None:
        raise ValueError("%s: no times for variant %s" % (record.get("name"), variant))
    if len(times) != record["rounds"]:
        raise ValueError("%s: %s has %d times for %d rounds"
                         % (record.get("name"), variant, len(times), record["rounds"]))
    return times


def _per_call(record, variant, counter):
    c = record.get("counters", {}).get(variant)
    if c is None or not c.get("calls"):
        raise ValueError("%s: no calls counted for %s" % (record.get("name"), variant))
    return c[counter] / c["calls"]


def _term_cost(record, medians, multiplier, term, variant):
    # A cost the variant does not pay is 0 even when the block has no such term (switch in a
    # steady block); a cost it pays without the term to price it is a malformed block.
    if multiplier == 0:
        return 0.0
    if term not in medians:
        raise ValueError("%s: %s pays %s but the block has no %s term"
                         % (record.get("name"), variant, term, term))
    return multiplier * medians[term]


def launch_estimates(record):
    """One successful launch record reduced to its paired estimates:
    {"log_ratios": {"v/none": median log ratio}, "medians": {variant: ns},
     "decomposition": {variant: {measured, transport, probe, switch, new_context, remainder}}}.
    The decomposition is per variant with counters, priced with this launch's term medians:
    probes and contexts per call from the counters, switches per call from the pattern
    (names.switches_per_call: 1 for switch and reimpersonate, 1/N for every:N, 0 for steady)."""
    if record.get("failed"):
        raise ValueError("%s: launch failed: %s" % (record.get("name"), record["failed"]))
    variants = list(record["variants"])
    medians = {v: _median(_times(record, v)) for v in variants}
    log_ratios = {}
    if BASE in variants:
        base = _times(record, BASE)
        for v in CLOAKING:
            if v in variants:
                log_ratios["%s/%s" % (v, BASE)] = paired_log_ratio(base, _times(record, v))
    if TRANSPORT in variants:
        # Each call over the same round's raw round trip: what compare judges on one machine,
        # since the machine's drift between two runs falls on both and cancels.
        floor = _times(record, TRANSPORT)
        for v in (BASE,) + CLOAKING:
            if v in variants:
                log_ratios["%s/%s" % (v, TRANSPORT)] = paired_log_ratio(floor, _times(record, v))
    switches = names.switches_per_call(record.get("pattern"))
    if switches is None:
        raise ValueError("%s: unknown token pattern %r"
                         % (record.get("name"), record.get("pattern")))
    decomposition = {}
    for v in variants:
        if v not in record.get("counters", {}) or v in TERMS:
            continue
        if "roundtrip" not in medians:
            raise ValueError("%s: no roundtrip term to decompose %s" % (record.get("name"), v))
        parts = {
            "measured": medians[v],
            "transport": medians["roundtrip"],
            "probe": _term_cost(record, medians, _per_call(record, v, "probes"), "probe", v),
            "switch": _term_cost(record, medians, switches, "switch", v),
            "new_context": _term_cost(record, medians, _per_call(record, v, "contexts"),
                                      "new_context", v),
        }
        parts["remainder"] = parts["measured"] - sum(
            parts[k] for k in ("transport", "probe", "switch", "new_context"))
        decomposition[v] = parts
    return {"log_ratios": log_ratios, "medians": medians, "decomposition": decomposition}


# --- across launches --------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _t_quantile(confidence, df):
    from scipy.stats import t  # scipy is slow to import; only intervals need it
    return float(t.ppf(0.5 + confidence / 2.0, df))


def _t_interval(values, confidence):
    import numpy as np
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return None, None, None
    mean = float(a.mean())
    if a.size < 2:
        return mean, None, None
    half = _t_quantile(confidence, a.size - 1) * float(a.std(ddof=1)) / math.sqrt(a.size)
    return mean, mean - half, mean + half


def ratio_interval(launch_log_estimates, confidence=DEFAULT_CONFIDENCE):
    """(estimate, low, high, method) of a ratio: a Student-t interval on the launches' log-ratio
    estimates (mean +- t x sd / sqrt(L)), exponentiated; low and high are None when L < 2, and
    the estimate too when L = 0."""
    mean, lo, hi = _t_interval(launch_log_estimates, confidence)
    ex = (lambda x: None if x is None else math.exp(x))
    return ex(mean), ex(lo), ex(hi), INTERVAL_METHOD


def term_interval(values, confidence=DEFAULT_CONFIDENCE):
    """(estimate, low, high, method) of a time in ns: a Student-t interval on the launches'
    values themselves (not their logs: terms are added and subtracted, and may be 0 or
    negative); low and high are None when L < 2, and the estimate too when L = 0."""
    mean, lo, hi = _t_interval(values, confidence)
    return mean, lo, hi, INTERVAL_METHOD


def _entry(interval, launch_values):
    estimate, lo, hi, method = interval
    return {"estimate": estimate, "low": lo, "high": hi, "method": method,
            "launch_estimates": list(launch_values)}


def block_summary(records, confidence=DEFAULT_CONFIDENCE):
    """A block's launch records (one per launch, the same block) combined into the block summary
    of the result file; failed launches are left out and counted in "failed_launches"."""
    if not records:
        raise ValueError("a block summary needs at least one launch record")
    name = records[0]["name"]
    if any(r["name"] != name for r in records):
        raise ValueError("launch records of different blocks: %s"
                         % sorted({r["name"] for r in records}))
    ok = [r for r in records if not r.get("failed")]
    failed = [r for r in records if r.get("failed")]
    variants = list(ok[0]["variants"]) if ok else []
    if any(list(r["variants"]) != variants for r in ok):
        raise ValueError("%s: launches recorded different variants" % name)
    per_launch = [launch_estimates(r) for r in ok]
    # A launch that wrote no records leaves a stub with only a name and why (run_suite.py).
    first = ok[0] if ok else records[0]
    out = {"name": name, "package": first.get("package"), "place": first.get("place"),
           "pattern": first.get("pattern"), "launches": len(ok),
           "failed_launches": len(failed),
           "failures": [{"launch": r.get("launch"), "seed": r.get("seed"), "failed": r["failed"]}
                        for r in failed],
           "rounds": [r["rounds"] for r in ok], "seeds": [r.get("seed") for r in ok],
           "confidence": confidence, "variants": {}, "ratios": {}, "terms": {},
           "decomposition": {}}
    # negotiate's blocks name the mechanism SPNEGO negotiated (a failed launch's stub: its name)
    mech = first.get("mech") or next((p[len("mech:"):] for p in name.split("/")
                                      if p.startswith("mech:")), None)
    if mech:
        out["mech"] = mech
    for v in variants:
        meds = [e["medians"][v] for e in per_launch]
        kinds = sorted({k for r in ok for k in r.get("histograms", {}).get(v, {})})
        hists = {k: merge_histograms([r["histograms"][v][k] for r in ok
                                      if k in r.get("histograms", {}).get(v, {})])
                 for k in kinds}
        out["variants"][v] = {"median_ns": _entry(term_interval(meds, confidence), meds),
                              "histogram": hists,
                              "summary": {k: summary(h) for k, h in hists.items()}}
    for key in (per_launch[0]["log_ratios"] if per_launch else {}):
        logs = [e["log_ratios"][key] for e in per_launch]
        out["ratios"][key] = _entry(ratio_interval(logs, confidence), [math.exp(x) for x in logs])
    for t in TERMS:
        if t in variants:
            meds = [e["medians"][t] for e in per_launch]
            out["terms"][t] = _entry(term_interval(meds, confidence), meds)
    for v in (per_launch[0]["decomposition"] if per_launch else {}):
        out["decomposition"][v] = {}
        for part in DECOMPOSITION:
            vals = [e["decomposition"][v][part] for e in per_launch]
            out["decomposition"][v][part] = _entry(term_interval(vals, confidence), vals)
    return out
