"""Checks a bench program's JSON output for the smoke tests: it parses, has benchmarks, no cell
failed (unless told which must), every call matched docs/design.md §1 (mismatches == 0), names follow
docs/results.md, the cloak_* context keys are there, and the file loads in cloakbench's readers
as it is (load, compare against itself).

usage: check_bench_json.py FILE [--expect-failed REGEX] [--min-cells N]
                           [--expect-counter REGEX COUNTER VALUE]... [--run PROGRAM ARG...]

--expect-counter: every repetition of every cell matching REGEX has COUNTER equal to VALUE (and
some cell matches), e.g. the spins an injected slowdown took per call (CLOAK_INJECT_PATH).

With --run, first runs PROGRAM ARG... --benchmark_out=FILE --benchmark_out_format=json (it must
exit 0), then checks FILE."""

import argparse
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))

CELL = re.compile(r"^cloak/(kernel/uds|model/inproc)/auth:(local|kerberos|ntlm|negotiate/mech:(krb5|ntlm))"
                  r"/(none|static|dynamic)"
                  r"/(steady|switch|every:\d+|reimpersonate)"
                  r"/(probe:(kernel|generation|na)/cache:(none|lru:\d+|na)/track:(identity|token|na)"
                  r"|probe:none/cache:per-message/track:na)"
                  r"/prot:(none|integrity|privacy|na)/tickets:(warm|cold|na)(/groups:\d+)?"
                  r"/place:(same|cross|unpinned|na)"
                  r"/bytes:\d+/threads:\d+$")
BASELINE = re.compile(r"^check/paired/place:(same|cross)/bytes:64$|^baseline/(syscall|probe:(kernel|generation)|switch|(probe:kernel|switch)/groups:\d+|roundtrip/(minimal/)?place:(same|cross|unpinned)"
                      r"/bytes:\d+|connect/place:(same|cross|unpinned)|model/inproc"
                      r"|kerberos/establish/inproc/tickets:(warm|cold)|ntlm/establish/inproc"
                      r"|negotiate/mech:(krb5|ntlm)/establish/inproc"
                      r"|(kerberos|ntlm|negotiate/mech:(krb5|ntlm))/(establish/place:same|mic/bytes:64|wrap/bytes:\d+))$")
BLOCK = re.compile(r"^block/kernel/uds/auth:(local|kerberos|ntlm|negotiate/mech:(krb5|ntlm))"
                   r"/(steady|switch|reimpersonate)"
                   r"/place:(same|cross)/bytes:64$")
LOAD = re.compile(r"^load/kernel/uds/auth:(local|kerberos)/(none|static|dynamic)/clients:\d+"
                  r"/pop:(uniform|zipf:[0-9.e+-]+)/cache:(none|lru:\d+|na)/place:same/bytes:64"
                  r"/threads:1$")
# The threaded load cells (docs/results.md, "Threaded load cells").
LOAD_THREADS = re.compile(r"^load/kernel/uds/auth:(local|kerberos)/(none|static|dynamic)/clients:\d+"
                          r"/pop:zipf:1/cache:(lru:\d+|na)/shape:(apartment|shared)"
                          r"/loop:(closed|open:\d+)/place:unpinned/bytes:64/threads:\d+$")
LOAD_THREAD_COUNTERS = ("calls_per_s", "served", "p50_ns", "p99_ns", "p999_ns", "hit_rate",
                        "contexts_per_call", "changes_per_call", "workers", "cpus", "mismatches")
LOAD_COUNTERS = ("hit_rate", "contexts_per_call", "cache_hits_per_call", "evictions_per_call",
                 "changes_per_call", "mismatches", "p99_ns")
CONTEXT_KEYS = ("cloak_schema_version", "cloak_suite_version", "cloak_backend", "cloak_privilege_mode",
                "cloak_placement", "cloak_cpus", "cloak_compiler", "cloak_cxx_flags", "cloak_build_type",
                "cloak_benchmark_version", "cloak_machine", "cloak_machine_hash", "cloak_machine_id",
                "cloak_warnings", "cloak_kerberos")


STABLE_KEYS = ("cpu_model", "cores", "threads_per_core", "smt", "kernel", "vulnerabilities", "virtualization")


def stable_hash(machine):
    """docs/results.md: the 64-bit FNV-1a of the stable part as canonical JSON."""
    text = json.dumps({k: machine[k] for k in STABLE_KEYS}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    h = 0xcbf29ce484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001b3) % 2 ** 64
    return "%016x" % h


def problems(data, expect_failed=None, min_cells=1, expect_message=None):
    out = []
    context = data.get("context", {})
    for key in CONTEXT_KEYS:
        if key not in context:
            out.append("context has no %s" % key)
    if not re.fullmatch(r"[0-9a-f]{16}", str(context.get("cloak_machine_hash", ""))):
        out.append("cloak_machine_hash is not 16 hex digits: %r" % context.get("cloak_machine_hash"))
    elif "cloak_machine" in context:
        want = stable_hash(json.loads(context["cloak_machine"]))
        if context["cloak_machine_hash"] != want:
            out.append("cloak_machine_hash %s is not the FNV-1a of the stable part as docs/results.md "
                       "defines it (%s)" % (context["cloak_machine_hash"], want))
    benchmarks = data.get("benchmarks")
    if not isinstance(benchmarks, list) or not benchmarks:
        return out + ["no benchmarks"]
    names = set()
    failed = set()
    for entry in benchmarks:
        name = entry.get("run_name") or entry.get("name")
        names.add(name)
        if not (CELL.match(name) or BASELINE.match(name) or BLOCK.match(name) or LOAD.match(name) or
                LOAD_THREADS.match(name)):
            out.append("name does not follow docs/results.md: %r" % name)
        if entry.get("error_occurred"):
            failed.add(name)
            if not (expect_failed and re.search(expect_failed, name)):
                out.append("%s failed: %s" % (name, entry.get("error_message")))
            elif expect_message and not re.search(expect_message, entry.get("error_message") or ""):
                out.append("%s failed, but not with a message matching %r: %s"
                           % (name, expect_message, entry.get("error_message")))
            continue
        if entry.get("run_type") == "iteration":
            if entry.get("mismatches", 0) != 0:
                out.append("%s: mismatches = %s" % (name, entry.get("mismatches")))
            if CELL.match(name):
                for counter in ("contexts_per_call", "probes_per_call", "cache_hits_per_call",
                                "spins_per_call", "mismatches", "bytes"):
                    if counter not in entry:
                        out.append("%s has no counter %s" % (name, counter))
            if LOAD.match(name):
                for counter in LOAD_COUNTERS:
                    if counter not in entry:
                        out.append("%s has no counter %s" % (name, counter))
                if "/cache:lru:" in name:  # a warm pass added contexts: what each costs
                    for counter in ("bytes_per_context_middle", "bytes_per_context_downstream",
                                    "contexts_cached"):
                        if counter not in entry:
                            out.append("%s has no counter %s" % (name, counter))
            if LOAD_THREADS.match(name):
                for counter in LOAD_THREAD_COUNTERS:
                    if counter not in entry:
                        out.append("%s has no counter %s" % (name, counter))
                if "/loop:open:" in name:
                    for counter in ("offered_per_s", "target_per_s", "unserved"):
                        if counter not in entry:
                            out.append("%s has no counter %s" % (name, counter))
    if any(LOAD.match(n) or LOAD_THREADS.match(n) for n in names) and \
            "cloak_load_seed" not in context:
        out.append("load cells ran but the context has no cloak_load_seed")
    if len(names) < min_cells:
        out.append("only %d cells, expected at least %d" % (len(names), min_cells))
    if expect_failed and not any(re.search(expect_failed, n) for n in failed):
        out.append("no cell matching %r failed, but one should have" % expect_failed)
    return out


def counter_problems(data, expectations):
    """Each (regex, counter, value): every iteration row of a cell matching regex has counter ==
    value, and at least one row matches. The value "usable-cpus": the CPUs this process may run
    on (the bench's, unless it pinned itself)."""
    out = []
    rows = [e for e in data.get("benchmarks", [])
            if e.get("run_type") == "iteration" and not e.get("error_occurred")]
    for regex, counter, value in expectations:
        want = len(os.sched_getaffinity(0)) if value == "usable-cpus" else float(value)
        matched = [e for e in rows if re.search(regex, e.get("run_name") or e.get("name"))]
        if not matched:
            out.append("no passing cell matches %r (for %s == %s)" % (regex, counter, value))
        for e in matched:
            got = e.get(counter)
            if got is None or abs(float(got) - want) > 1e-9:
                out.append("%s: %s = %s, expected %s" % (e.get("run_name") or e.get("name"),
                                                         counter, got, value))
    return out


def reader_problems(path):
    """What keeps cloakbench's readers from using the bench's own file, as it is."""
    from cloakpy import compare, load
    try:
        result = load.load_result(path)
        # compare judges no threaded load cell: a file of nothing else is only read.
        if any(not c.info.is_load_threads for c in result.cells.values()):
            compare.compare_results(result, result)
    except load.LoadError as e:
        return ["cloakbench's readers refuse the file: %s" % e]
    if result.schema_version != 1:
        return ["cloak_schema_version reads as %r, not 1" % result.schema_version]
    return []


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("file")
    p.add_argument("--expect-failed", metavar="REGEX", help="cells that must have failed (and may)")
    p.add_argument("--expect-message", metavar="REGEX",
                   help="what the expected failures' error_message must say")
    p.add_argument("--min-cells", type=int, default=1)
    p.add_argument("--expect-counter", nargs=3, action="append", default=[],
                   metavar=("REGEX", "COUNTER", "VALUE"),
                   help="every repetition of the cells matching REGEX has COUNTER == VALUE "
                        "(a number, or usable-cpus)")
    p.add_argument("--run", nargs=argparse.REMAINDER, metavar="PROGRAM ARG",
                   help="run this bench command first, writing FILE")
    args = p.parse_args(argv)
    if args.run:
        command = args.run + ["--benchmark_out=" + args.file, "--benchmark_out_format=json"]
        print("running: " + " ".join(command), flush=True)
        status = subprocess.run(command, stdout=subprocess.DEVNULL, timeout=300).returncode
        if status != 0:
            print("FAIL: the bench exited with status %d" % status)
            return 1
    try:
        with open(args.file, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        print("FAIL: %s: %s" % (args.file, e))
        return 1
    found = problems(data, args.expect_failed, args.min_cells, args.expect_message)
    found += counter_problems(data, args.expect_counter)
    if not found:
        found = reader_problems(args.file)
    for line in found:
        print("FAIL: " + line)
    if not found:
        print("ok: %s: %d entries" % (args.file, len(data["benchmarks"])))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
