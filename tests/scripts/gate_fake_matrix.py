#!/usr/bin/python3
"""A stand-in for cloak-matrix in the gate's end-to-end tests: the command line the gate uses,
Google Benchmark's JSON with cloakbench's context, times read from speed.json beside it (each
revision of the test repository has its own), a little noise, and CLOAK_INJECT_NS added to every
call. It starts in milliseconds, so a whole gate runs in seconds."""

import json
import os
import random
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv):
    with open(os.path.join(HERE, "speed.json"), encoding="utf-8") as f:
        speed = json.load(f)
    cells = speed["cells"]
    opts = {"filter": None, "reps": 1, "out": None, "list": False}
    for arg in argv:
        name, _, value = arg.partition("=")
        if name == "--benchmark_list_tests":
            opts["list"] = True
        elif name == "--benchmark_filter":
            opts["filter"] = value
        elif name == "--benchmark_repetitions":
            opts["reps"] = int(value)
        elif name == "--benchmark_out":
            opts["out"] = value
        elif name in ("--benchmark_min_time", "--benchmark_out_format", "--cpu-client",
                      "--cpu-other", "--clients", "--benchmark_enable_random_interleaving",
                      "--benchmark_report_aggregates_only"):
            pass
        else:
            print("cloak-matrix: error: unknown option '%s'" % arg, file=sys.stderr)
            return 2
    chosen = [n for n in cells if not opts["filter"] or re.search(opts["filter"], n)]
    if opts["list"]:
        print("\n".join(chosen))
        return 0
    inject = int(os.environ.get("CLOAK_INJECT_NS") or 0)
    noise = float(speed.get("noise", 0.005))
    rng = random.Random(os.urandom(8))
    benchmarks = []
    for family, name in enumerate(chosen):
        for rep in range(opts["reps"]):
            entry = {"name": name, "run_name": name, "run_type": "iteration", "family_index": family,
                     "per_family_instance_index": 0, "repetitions": opts["reps"],
                     "repetition_index": rep, "threads": 1, "iterations": 1000, "time_unit": "ns"}
            if name in speed.get("fail", []):
                entry.update(error_occurred=True, error_message="call 7: identity mismatch (fake)")
            else:
                spread = speed.get("noisy", {}).get(name, noise)  # a cell of its own spread
                t = cells[name] * (1.0 + rng.gauss(0.0, spread)) + inject
                entry.update(real_time=t, cpu_time=t / 2)
            benchmarks.append(entry)
    context = {"date": "2024-06-01T10:00:00+00:00", "host_name": "fake", "executable": sys.argv[0],
               "library_build_type": "release", "cloak_schema_version": "1",
               "cloak_machine": json.dumps({"cpu_model": "fake", "cores": 2}),
               "cloak_machine_hash": "00000000feedf00d", "cloak_machine_id": "fake-feedf00d",
               "cloak_build_type": "Release", "cloak_warnings": "[]"}
    if not speed.get("old_bench"):
        context["cloak_injected_ns"] = str(inject)
        context["cloak_injected_path"] = os.environ.get("CLOAK_INJECT_PATH") or "call"
    if opts["out"]:
        with open(opts["out"], "w", encoding="utf-8") as f:
            json.dump({"context": context, "benchmarks": benchmarks}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
