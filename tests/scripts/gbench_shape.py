"""What Google Benchmark's tools/compare.py (`compare.py benchmarks A.json B.json`) reads from two
result files, transcribed from tools/gbench/util.py and tools/gbench/report.py (v1.7.1 and main
agree on these reads): the same loops, the same keys, the same arithmetic, without the printing.
A file that passes here loads unmodified in compare.py. With CLOAK_GBENCH_TOOLS set to a checkout's
tools/ directory, the tests also run the real compare.py."""

import json
import math
import os
import subprocess

PYTHON = "/usr/bin/python3"
TIME_UNIT_TO_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}  # report.py
UTEST_MIN_REPETITIONS = 2


class NotReadable(Exception):
    """compare.py would fail on this input (exit 1 or a traceback)."""


def strict_loads(text):
    """json.loads that refuses NaN and ±Infinity, like JSON.parse and every strict parser."""
    def refuse(constant):
        raise NotReadable("not strict JSON: bare %s" % constant)
    return json.loads(text, parse_constant=refuse)


def _number(entry, key):
    # calculate_change and the geometric mean compute with these; None or a string raises there.
    try:
        value = entry[key]
    except KeyError:
        raise NotReadable("%r has no %s" % (entry.get("name"), key)) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NotReadable("%r: %s is %r, not a number" % (entry.get("name"), key, value))
    return float(value)


def load_benchmark_results(doc):
    """util.load_benchmark_results and util.sort_benchmark_results."""
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise NotReadable("no benchmarks list")
    context = doc.get("context", {})
    if "json_schema_version" in context and context["json_schema_version"] != 1:  # main only
        raise NotReadable("json_schema_version %r" % context["json_schema_version"])
    benchmarks = doc["benchmarks"]
    for entry in benchmarks:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise NotReadable("an entry without a name")
    benchmarks = sorted(benchmarks, key=lambda b: b.get("repetition_index", -1))
    benchmarks = sorted(benchmarks, key=lambda b: 1 if b.get("run_type") == "aggregate" else 0)
    benchmarks = sorted(benchmarks, key=lambda b: b.get("per_family_instance_index", -1))
    benchmarks = sorted(benchmarks, key=lambda b: b.get("family_index", -1))
    return {"benchmarks": benchmarks}


def _comparable(entry):  # report.is_potentially_comparable_benchmark
    return "time_unit" in entry and "real_time" in entry and "cpu_time" in entry


def partition_benchmarks(json1, json2):
    """report.partition_benchmarks: entries of the names both files have, per name."""
    def unique_names(doc):
        seen, out = set(), []
        for x in doc["benchmarks"]:
            if x["name"] not in seen:
                seen.add(x["name"])
                out.append(x["name"])
        return out
    names2 = set(unique_names(json2))
    partitions = []
    for name in [n for n in unique_names(json1) if n in names2]:
        time_unit = next((x["time_unit"] for x in json1["benchmarks"]
                          if x["name"] == name and _comparable(x)), None)
        if time_unit is None:
            continue
        try:
            lhs = [x for x in json1["benchmarks"] if x["name"] == name and x["time_unit"] == time_unit]
            rhs = [x for x in json2["benchmarks"] if x["name"] == name and x["time_unit"] == time_unit]
        except KeyError:
            raise NotReadable("an entry of %r has no time_unit" % name) from None
        partitions.append([lhs, rhs])
    return partitions


def calculate_change(old, new):
    if old == 0 and new == 0:
        return 0.0
    if old == 0:
        return float(new - old) / (float(old + new) / 2)
    return float(new - old) / abs(old)


def geomean_inputs(doc):
    """report.calculate_geomean: every non-aggregate row's times, in seconds."""
    times = []
    for b in doc["benchmarks"]:
        if b.get("run_type") == "aggregate":
            continue
        multiplier = TIME_UNIT_TO_SECONDS.get(b.get("time_unit", "s"))
        if multiplier is None:
            raise NotReadable("%r: time_unit %r" % (b["name"], b.get("time_unit")))
        times.append([_number(b, "real_time") * multiplier, _number(b, "cpu_time") * multiplier])
    return times


def difference_report(doc1, doc2):
    """report.get_difference_report with the U test's inputs: one row per name in both files,
    plus the overall geometric mean; raises NotReadable where compare.py would fail."""
    json1, json2 = load_benchmark_results(doc1), load_benchmark_results(doc2)
    report = []
    for lhs, rhs in partition_benchmarks(json1, json2):
        first = lhs[0]
        measurements = []
        for bn, other in zip(lhs, rhs):
            measurements.append({
                "time": calculate_change(_number(bn, "real_time"), _number(other, "real_time")),
                "cpu": calculate_change(_number(bn, "cpu_time"), _number(other, "cpu_time"))})
        if min(len(lhs), len(rhs)) >= UTEST_MIN_REPETITIONS:
            for side in (lhs, rhs):
                for x in side:
                    _number(x, "real_time"), _number(x, "cpu_time")
        run_type = first.get("run_type", "")
        aggregate = first.get("aggregate_name", "") if run_type == "aggregate" else ""
        if measurements:
            report.append({"name": first["name"], "label": first.get("label", ""),
                           "time_unit": first["time_unit"], "run_type": run_type,
                           "aggregate_name": aggregate, "measurements": measurements})
    for doc in (json1, json2):
        for pair in geomean_inputs(doc):
            for value in pair:
                if value < 0 or math.isnan(value):
                    raise NotReadable("a negative or NaN time in the geometric mean")
    return report


def run_real_compare(path1, path2):
    """`compare.py benchmarks PATH1 PATH2` from CLOAK_GBENCH_TOOLS; None when it is not set."""
    tools = os.environ.get("CLOAK_GBENCH_TOOLS")
    if not tools:
        return None
    return subprocess.run([PYTHON, os.path.join(tools, "compare.py"), "--no-color", "benchmarks",
                           path1, path2], capture_output=True, text=True, timeout=300)
