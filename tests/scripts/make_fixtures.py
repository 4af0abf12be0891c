#!/usr/bin/python3
"""Writes the golden result files the script tests read; deterministic, rerun after changes.

Timings model a 2 vCPU KVM guest (docs/design.md §2): a Unix-socket round trip ~3 us on
one CPU and ~40 us across CPUs, the kernel identity probe ~350 ns, the generation probe
~2 ns, a token switch and back ~3 us, a bare syscall ~70 ns; a new security context costs
one extra round trip plus credential passing.
"""

import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")
REPETITIONS = 5

ROUNDTRIP = {("same", 64): 3000.0, ("same", 4096): 3600.0, ("cross", 64): 40000.0,
             ("unpinned", 64): 12000.0}
CONNECT = {"same": 21000.0, "cross": 95000.0, "unpinned": 45000.0}
PROBE = {"kernel": 350.0, "generation": 2.0}
SWITCH = 3000.0
SYSCALL = 70.0
MODEL_INPROC = 40.0
PROXY = 150.0          # proxy and verification per call
CREDENTIALS = 400.0    # SCM_CREDENTIALS and server bookkeeping per new context
CACHE_LOOKUP = 100.0
MODEL_SWITCH = 20.0
MODEL_CONTEXT = 180.0
CPU_SHARE = {"same": 0.62, "cross": 0.11, "unpinned": 0.35, "na": 1.0}


def _switches(pattern):
    return {"steady": 0.0, "switch": 1.0, "reimpersonate": 1.0}.get(
        pattern, 1.0 / int(pattern.split(":")[1]) if pattern.startswith("every:") else 0.0)


def _contexts(cloaking, pattern, probe, cache):
    """Security contexts per call: dynamic cloaking re-authenticates when the identity seen
    changes; the generation probe also sees a revert + impersonate of the same client."""
    if cloaking != "dynamic":
        return 0.0, 0.0
    if pattern == "steady":
        changes = 0.0
    elif pattern == "reimpersonate":
        changes = 1.0 if probe == "generation" else 0.0
    else:
        changes = _switches(pattern)
    if cache.startswith("lru:"):
        return 0.0, changes  # k=4 clients fit an lru:4 cache: every change is a hit
    return changes, 0.0


def matrix_cells():
    """(name, ns per call, counters, placement) for every matrix cell of the fixture."""
    cells = []

    def kernel(cloaking, pattern, probe="na", cache="na", place="same", nbytes=64, threads=1):
        rt = ROUNDTRIP[(place, nbytes)]
        sw = _switches(pattern)
        contexts, hits = _contexts(cloaking, pattern, probe, cache)
        probes = 1.0 if cloaking == "dynamic" else 0.0
        establish = ROUNDTRIP[(place, 64)]
        # Across CPUs the switch overlaps the downstream's wake-up: the raw baselines then add
        # up to more than the cell, a negative remainder the decomposition must show.
        overlap = 0.5 if place == "cross" else 1.0
        t = (rt + PROXY + (20.0 if cloaking == "static" else 0.0) + probes * PROBE.get(probe, 0)
             + sw * SWITCH * overlap + contexts * (establish + CREDENTIALS) + hits * CACHE_LOOKUP)
        if threads > 1:  # two vCPUs: more client threads than CPUs queue for them
            t *= {2: 1.08, 4: 1.95}[threads]
        name = "cloak/kernel/uds/%s/%s/probe:%s/cache:%s/place:%s/bytes:%d/threads:%d" % (
            cloaking, pattern, probe, cache, place, nbytes, threads)
        cells.append((name, t, {"bytes": float(nbytes), "cache_hits_per_call": hits,
                                "contexts_per_call": contexts, "mismatches": 0.0,
                                "probes_per_call": probes}, place, threads))

    patterns = ("steady", "switch", "every:4", "reimpersonate")
    for pattern in patterns:
        kernel("none", pattern)
        kernel("static", pattern)
        kernel("dynamic", pattern, "kernel", "none")
        kernel("dynamic", pattern, "generation", "none")
    kernel("dynamic", "switch", "kernel", "lru:4")
    kernel("dynamic", "switch", "generation", "lru:4")
    for pattern in ("steady", "switch"):
        kernel("none", pattern, place="cross")
        kernel("static", pattern, place="cross")
        kernel("dynamic", pattern, "kernel", "none", place="cross")
    kernel("none", "steady", nbytes=4096)
    kernel("dynamic", "steady", "kernel", "none", nbytes=4096)
    for threads in (1, 2, 4):
        kernel("none", "steady", place="unpinned", threads=threads)
        kernel("dynamic", "switch", "kernel", "none", place="unpinned", threads=threads)

    def model(cloaking, pattern, probe="na", cache="na"):
        contexts, hits = _contexts(cloaking, pattern, probe, cache)
        probes = 1.0 if cloaking == "dynamic" else 0.0
        t = (MODEL_INPROC + 5.0 + probes * PROBE.get(probe, 0) + _switches(pattern) * MODEL_SWITCH
             + contexts * MODEL_CONTEXT)
        name = "cloak/model/inproc/%s/%s/probe:%s/cache:%s/place:na/bytes:64/threads:1" % (
            cloaking, pattern, probe, cache)
        cells.append((name, t, {"bytes": 64.0, "cache_hits_per_call": hits,
                                "contexts_per_call": contexts, "mismatches": 0.0,
                                "probes_per_call": probes}, "na", 1))

    for pattern in ("steady", "switch"):
        model("none", pattern)
        model("static", pattern)
        model("dynamic", pattern, "generation", "none")
    return cells


def baseline_cells():
    cells = [("baseline/syscall", SYSCALL, {}, "na", 1),
             ("baseline/probe:kernel", PROBE["kernel"], {}, "na", 1),
             ("baseline/probe:generation", PROBE["generation"], {}, "na", 1),
             ("baseline/switch", SWITCH, {}, "na", 1)]
    for (place, nbytes), t in ROUNDTRIP.items():
        cells.append(("baseline/roundtrip/place:%s/bytes:%d" % (place, nbytes), t,
                      {"bytes": float(nbytes)}, place, 1))
    for place, t in CONNECT.items():
        cells.append(("baseline/connect/place:%s" % place, t, {}, place, 1))
    cells.append(("baseline/model/inproc", MODEL_INPROC, {}, "na", 1))
    return cells


def machine(kind):
    if kind == "vm":
        m = {"cpu_model": "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz", "cores": 1,
             "threads_per_core": 2, "smt": True, "kernel": "6.1.0-21-cloud-amd64",
             "vulnerabilities": {"meltdown": "Mitigation: PTI",
                                 "spectre_v2": "Mitigation: Retpolines; STIBP: disabled",
                                 "mds": "Vulnerable: Clear CPU buffers attempted, no microcode"},
             "governor": "unknown", "virtualization": "kvm", "memory_gib": 7.7}
        return m, "3f2a9c41d07be815", "bench-vm-1-3f2a9c41"
    m = {"cpu_model": "AMD EPYC 7B13", "cores": 4, "threads_per_core": 2, "smt": True,
         "kernel": "6.1.0-21-amd64", "vulnerabilities": {"spectre_v2": "Mitigation: Retpolines"},
         "governor": "performance", "virtualization": "kvm", "memory_gib": 15.6}
    return m, "b71e0d5aa2c96f03", "epyc-runner-b71e0d5a"


def context(commit, date, machine_kind="vm", noise_floor=0.03, warnings=(), repetitions=5):
    m, mhash, mid = machine(machine_kind)
    command = "scripts/cloakbench run --repetitions %d" % repetitions
    return {
        "date": date.replace("Z", "+00:00"),
        "host_name": mid.rsplit("-", 1)[0],
        "executable": "build/release/bench/cloak_matrix",
        "num_cpus": m["cores"] * m["threads_per_core"],
        "mhz_per_cpu": 2500 if machine_kind == "vm" else 2450,
        "cpu_scaling_enabled": False,
        "caches": [{"type": "Data", "level": 1, "size": 32768, "num_sharing": 2},
                   {"type": "Instruction", "level": 1, "size": 32768, "num_sharing": 2},
                   {"type": "Unified", "level": 2, "size": 1048576, "num_sharing": 2},
                   {"type": "Unified", "level": 3, "size": 37486592, "num_sharing": 2}],
        "load_avg": [0.31, 0.22, 0.12],
        "library_build_type": "release",
        "cloak_schema_version": 1,
        "cloak_suite_version": "0.1.0",
        "cloak_commit": commit,
        "cloak_command": command,
        "cloak_date": date,
        "cloak_backend": "kernel+model",
        "cloak_privilege_mode": "userns",
        "cloak_placement": "pinned: client cpu 0, downstream cpu 0 (same) or 1 (cross)",
        "cloak_cpus": {"client": 0, "downstream_same": 0, "downstream_other": 1},
        "cloak_compiler": "GNU 12.2.0",
        "cloak_cxx_flags": "-O2 -g -DNDEBUG",
        "cloak_build_type": "Release",
        "cloak_benchmark_version": "1.7.1",
        "cloak_machine": m,
        "cloak_machine_hash": mhash,
        "cloak_machine_id": mid,
        "cloak_noise_floor": noise_floor,
        "cloak_warnings": list(warnings),
        "cloak_launches": [
            {"program": "build/release/bench/cloak_baselines",
             "argv": ["build/release/bench/cloak_baselines", "--benchmark_format=json",
                      "--benchmark_repetitions=%d" % repetitions],
             "started": date, "seconds": 48.6, "exit_status": 0, "cells": 12},
            {"program": "build/release/bench/cloak_matrix",
             "argv": ["build/release/bench/cloak_matrix", "--benchmark_format=json",
                      "--benchmark_repetitions=%d" % repetitions],
             "started": date, "seconds": 412.3, "exit_status": 0, "cells": 38},
        ],
    }


def _iterations(t):
    return max(1, int(round(5e8 / t, -2 if t < 1e5 else 0)))


def _median(xs):
    s = sorted(xs)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


def _stddev(xs):
    m = sum(xs) / len(xs)
    return (sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5 if len(xs) > 1 else 0.0


def entries(family_index, name, samples, cpu_share, counters, threads, error=None,
            zero_over_zero=None):
    """Google Benchmark 1.7.1's rows for one benchmark: repetitions, then aggregates. The
    coefficient of variation of a counter that is 0 in every repetition is 0/0: Google Benchmark
    writes NaN, a file merged by `run` null (`zero_over_zero`)."""
    rows = []
    for i, t in enumerate(samples):
        row = {"name": name, "family_index": family_index, "per_family_instance_index": 0,
               "run_name": name, "run_type": "iteration", "repetitions": len(samples),
               "repetition_index": i, "threads": threads}
        if error:
            row.update({"error_occurred": True, "error_message": error,
                        "iterations": 0, "real_time": 0.0, "cpu_time": 0.0, "time_unit": "ns"})
        else:
            row.update({"iterations": _iterations(t), "real_time": t,
                        "cpu_time": round(t * cpu_share, 3), "time_unit": "ns"})
            row.update(counters)
        rows.append(row)
    if error:
        return rows  # Google Benchmark computes no aggregates over failed repetitions
    cpus = [r["cpu_time"] for r in rows]
    for agg in ("mean", "median", "stddev", "cv"):
        fn = {"mean": lambda xs: sum(xs) / len(xs), "median": _median, "stddev": _stddev,
              "cv": lambda xs: _stddev(xs) / (sum(xs) / len(xs))}[agg]
        row = {"name": "%s_%s" % (name, agg), "family_index": family_index,
               "per_family_instance_index": 0, "run_name": name, "run_type": "aggregate",
               "repetitions": len(samples), "threads": threads, "aggregate_name": agg,
               "aggregate_unit": "percentage" if agg == "cv" else "time",
               "iterations": len(samples), "real_time": fn(samples), "cpu_time": fn(cpus),
               "time_unit": "ns"}
        for k, v in counters.items():
            row[k] = {"mean": v, "median": v, "stddev": 0.0, "cv": 0.0 if v else zero_over_zero}[agg]
        rows.append(row)
    return rows


def samples_for(rng, t, place, sigma=None, multipliers=None):
    if multipliers is not None:
        ms = list(multipliers)
        rng.shuffle(ms)
        return [round(t * m, 3) for m in ms]
    if sigma is None:
        sigma = {"same": 0.004, "cross": 0.006, "unpinned": 0.006, "na": 0.004}[place]
    return [round(t * (1.0 + rng.gauss(0.0, sigma)), 3) for _ in range(REPETITIONS)]


def result(seed, commit, date, machine_kind="vm", scale=1.0, slower=None, noisy=False,
           failed=None, noise_floor=0.03, warnings=(), zero_over_zero=None):
    rng = random.Random(seed)
    rows = []
    for index, (name, t, counters, place, threads) in enumerate(baseline_cells() + matrix_cells()):
        t = t * scale * (1.3 if name == slower else 1.0)
        multipliers = (0.55, 0.8, 1.0, 1.25, 1.6) if noisy else None
        error = None
        if name == failed:
            error = ("identity mismatch on call 1: downstream saw uid 200002, "
                     "DESIGN section 1 expects uid 200001")
        rows += entries(index, name, samples_for(rng, t, place, multipliers=multipliers),
                        CPU_SHARE[place], counters, threads, error, zero_over_zero)
    return {"context": context(commit, date, machine_kind, noise_floor, warnings), "benchmarks": rows}


# What `run` adds to a bench program's context, and what the program writes as JSON text
# (docs/results.md, "Raw bench output and how run merges it").
RUN_LEVEL_KEYS = ("cloak_commit", "cloak_command", "cloak_date", "cloak_noise_floor", "cloak_launches")
JSON_TEXT_KEYS = ("cloak_schema_version", "cloak_cpus", "cloak_machine", "cloak_warnings")


def raw_bench():
    """cloak_matrix's own --benchmark_out JSON, as one launch writes it: the cloak_ keys Google
    Benchmark's AddCustomContext stores as strings, bare NaN for 0/0, no run-level keys."""
    data = result(8, "v0.1.0-14-g3c9e2f1", "2024-06-01T10:00:00Z", warnings=VM_WARNINGS[:1],
                  zero_over_zero=float("nan"))
    ctx = {k: v for k, v in data["context"].items() if k not in RUN_LEVEL_KEYS}
    for key in JSON_TEXT_KEYS:
        ctx[key] = json.dumps(ctx[key], separators=(",", ":"))
    return {"context": ctx, "benchmarks": data["benchmarks"]}


def plain_gbench():
    """What any Google Benchmark program writes, with no cloak_ keys."""
    rng = random.Random(7)
    rows = []
    specs = [("BM_memcpy/8", 4.1, "ns", {"bytes_per_second": 1.95e9}),
             ("BM_memcpy/64", 5.3, "ns", {"bytes_per_second": 1.2e10}),
             ("BM_memcpy/4096", 0.081, "us", {"bytes_per_second": 5.05e10}),
             ("BM_StringCopy", 11.8, "ns", {})]
    for index, (name, t, unit, counters) in enumerate(specs):
        samples = [round(t * (1.0 + rng.gauss(0.0, 0.01)), 4) for _ in range(3)]
        for row in entries(index, name, samples, 0.99, counters, 1):
            row["time_unit"] = unit if row.get("aggregate_unit") != "percentage" else unit
            rows.append(row)
    ctx = {"date": "2024-05-30T09:12:44+00:00", "host_name": "laptop",
           "executable": "./mybench", "num_cpus": 8, "mhz_per_cpu": 3600,
           "cpu_scaling_enabled": True,
           "caches": [{"type": "Data", "level": 1, "size": 49152, "num_sharing": 2}],
           "load_avg": [1.2, 0.9, 0.7], "library_build_type": "release"}
    return {"context": ctx, "benchmarks": rows}


FAILING_CELL = "cloak/kernel/uds/dynamic/reimpersonate/probe:generation/cache:none/place:same/bytes:64/threads:1"
SLOWER_CELL = "cloak/kernel/uds/dynamic/switch/probe:kernel/cache:none/place:same/bytes:64/threads:1"
VM_WARNINGS = ["virtualization: kvm guest, timings include hypervisor scheduling",
               "cpufreq governor unknown (no cpufreq in the guest)"]

# ---- files with the Kerberos-era names (auth:, track:, prot:, tickets:), as the default run of
# bench/cells.cpp times them: the local matrix, every:2 and every:32 beside every:8 for the
# headline variants, track:token, and the Kerberos headline cells with their baselines.

ROUNDTRIP_ALL = {**ROUNDTRIP, ("cross", 4096): 41000.0, ("unpinned", 4096): 12800.0}
KRB_ESTABLISH_UDS = 67000.0    # a new kerberos context across the socket (AP-REQ, AP-REP)
KRB_ESTABLISH_WARM = 50000.0   # the AP exchange in one process, service ticket cached
KRB_TGS = 230000.0             # the TGS-REQ a cold context makes first
KRB_MIC = 1200.0               # get_mic + verify_mic on 64 B
KRB_SERVER = 2500.0            # the downstream's bookkeeping per kerberos context
# Rare changes cost a little more each (caches gone cold between them): the rate model's
# straight line in 1/N is then close, not exact, as on a real machine.
RARE_CHANGE = 0.12

LOCAL_VARIANTS = (("none", "na", "na"), ("static", "na", "na"), ("dynamic", "kernel", "none"),
                  ("dynamic", "kernel", "lru:4"), ("dynamic", "generation", "none"),
                  ("dynamic", "generation", "lru:4"), ("dynamic", "none", "per-message"))
HEADLINE_VARIANTS = LOCAL_VARIANTS[:4]
PATTERNS4 = ("steady", "switch", "every:8", "reimpersonate")


def _changes(pattern, track):
    """Identity changes per call a dynamic proxy sees: reimpersonation changes the token, not the
    identity, so only token tracking sees it."""
    if pattern == "reimpersonate":
        return 1.0 if track == "token" else 0.0
    return _switches(pattern)


def new_cell_name(backend, auth, cloaking, pattern, probe="na", cache="na", track="na", prot="na",
                  tickets="na", place="same", nbytes=64, threads=1, old=False):
    transport = "uds" if backend == "kernel" else "inproc"
    if backend == "model":
        place = "na"
    if old:
        return "cloak/%s/%s/%s/%s/probe:%s/cache:%s/place:%s/bytes:%d/threads:%d" % (
            backend, transport, cloaking, pattern, probe, cache, place, nbytes, threads)
    return ("cloak/%s/%s/auth:%s/%s/%s/probe:%s/cache:%s/track:%s/prot:%s/tickets:%s/place:%s/"
            "bytes:%d/threads:%d") % (backend, transport, auth, cloaking, pattern, probe, cache,
                                      track, prot, tickets, place, nbytes, threads)


def new_cell(cloaking, pattern, probe="na", cache="na", track=None, auth="local", prot="na",
             tickets="na", place="same", nbytes=64, threads=1, backend="kernel", old=False,
             scale=1.0, context_extra=0.0):
    """(name, ns per call, counters, placement, threads) of one cell of the fixture machine."""
    dynamic = cloaking == "dynamic"
    if track is None:
        track = "identity" if dynamic and cache != "per-message" else "na"
    kerberos = auth == "kerberos"
    if kerberos:
        prot = prot if prot != "na" else "none"
        tickets = tickets if tickets != "na" else "warm"
    probes = 1.0 if dynamic and probe != "none" else 0.0
    changes = _changes(pattern, track) if dynamic and cache != "per-message" else 0.0
    contexts = hits = 0.0
    if changes:
        if cache.startswith("lru:") and track == "identity":
            hits = changes  # k=4 clients fit an lru:4 cache: every change is a hit
        else:
            contexts = changes
    sw = _switches(pattern)
    n = int(pattern.split(":")[1]) if pattern.startswith("every:") else 1
    rare = 1.0 + RARE_CHANGE * (1.0 - 1.0 / n) if pattern.startswith("every:") else 1.0
    if backend == "model":
        t = (MODEL_INPROC + 5.0 + probes * PROBE.get(probe, 0) + sw * MODEL_SWITCH * rare
             + contexts * MODEL_CONTEXT * rare)
    else:
        rt = ROUNDTRIP_ALL[(place, nbytes)]
        establish = ROUNDTRIP_ALL[(place, 64)] + CREDENTIALS
        if kerberos:
            establish = KRB_ESTABLISH_UDS + KRB_SERVER + (KRB_TGS if tickets == "cold" else 0.0)
        overlap = 0.5 if place == "cross" else 1.0
        t = (rt + PROXY + (20.0 if cloaking == "static" else 0.0) + probes * PROBE.get(probe, 0)
             + (KRB_MIC if prot == "integrity" else 0.0)
             + (sw * SWITCH * overlap + contexts * (establish + context_extra)
                + hits * CACHE_LOOKUP) * rare)
        if cache == "per-message":
            t += 250.0  # SCM_CREDENTIALS read on every call
        if threads > 1:
            t *= 1.08
    name = new_cell_name(backend, auth, cloaking, pattern, probe, cache, track, prot, tickets,
                         place, nbytes, threads, old)
    counters = {"bytes": float(nbytes), "cache_hits_per_call": hits, "contexts_per_call": contexts,
                "mismatches": 0.0, "probes_per_call": probes}
    return name, t * scale, counters, ("na" if backend == "model" else place), threads


def new_baseline_cells(scale=1.0, kerberos=True, places=("same", "cross", "unpinned"), old=False):
    cells = [("baseline/syscall", SYSCALL, {}, "na", 1),
             ("baseline/probe:kernel", PROBE["kernel"], {}, "na", 1),
             ("baseline/probe:generation", PROBE["generation"], {}, "na", 1),
             ("baseline/switch", SWITCH, {}, "na", 1)]
    for (place, nbytes), t in sorted(ROUNDTRIP_ALL.items()):
        if place in places:
            cells.append(("baseline/roundtrip/place:%s/bytes:%d" % (place, nbytes), t,
                          {"bytes": float(nbytes)}, place, 1))
    for place in places:
        cells.append(("baseline/connect/place:%s" % place, CONNECT[place], {}, place, 1))
    cells.append(("baseline/model/inproc", MODEL_INPROC, {}, "na", 1))
    if kerberos and not old:
        cells += [("baseline/kerberos/establish/inproc/tickets:warm", KRB_ESTABLISH_WARM, {}, "na", 1),
                  ("baseline/kerberos/establish/inproc/tickets:cold", KRB_ESTABLISH_WARM + KRB_TGS,
                   {}, "na", 1),
                  ("baseline/kerberos/establish/place:same", KRB_ESTABLISH_UDS, {}, "same", 1),
                  ("baseline/kerberos/mic/bytes:64", KRB_MIC, {"bytes": 64.0}, "na", 1)]
    return [(n, t * scale, c, p, th) for n, t, c, p, th in cells]


def paired_cell(place, scale=1.0):
    """check/paired/place:P/bytes:64: each kind's mean time per iteration as a counter."""
    rt = ROUNDTRIP_ALL[(place, 64)] * scale
    kinds = {"raw_ns": rt, "none_ns": rt + PROXY * scale, "static_ns": rt + (PROXY + 20.0) * scale,
             "dynamic_kernel_ns": rt + (PROXY + PROBE["kernel"]) * scale,
             "dynamic_generation_ns": rt + (PROXY + PROBE["generation"]) * scale}
    return "check/paired/place:%s/bytes:64" % place, sum(kinds.values()), kinds, place, 1


def default_run_cells(scale=1.0):
    """Every cell of a default run (bench/cells.cpp, --kerberos-matrix=headline)."""
    cells = []
    for backend, places in (("kernel", ("same", "cross", "unpinned")), ("model", ("na",))):
        for place in places:
            for nbytes in (64, 4096):
                for threads in (1, 2):
                    for cloaking, probe, cache in LOCAL_VARIANTS:
                        if cache == "per-message" and threads != 1:
                            continue
                        for pattern in PATTERNS4:
                            cells.append(new_cell(cloaking, pattern, probe, cache, place=place,
                                                  nbytes=nbytes, threads=threads, backend=backend,
                                                  scale=scale))
    for pattern in ("every:2", "every:32"):
        for cloaking, probe, cache in HEADLINE_VARIANTS:
            cells.append(new_cell(cloaking, pattern, probe, cache, scale=scale))
    for pattern in PATTERNS4:
        cells.append(new_cell("dynamic", pattern, "kernel", "none", track="token", scale=scale))
    for cloaking, probe, cache in HEADLINE_VARIANTS:
        probe = "kernel" if cloaking == "dynamic" else "na"
        for pattern in PATTERNS4[:2] + ("every:2", "every:8", "every:32") + PATTERNS4[3:]:
            cells.append(new_cell(cloaking, pattern, probe, cache, auth="kerberos", scale=scale))
        cells.append(new_cell(cloaking, "steady", probe, cache, auth="kerberos", prot="integrity",
                              scale=scale))
    cells.append(new_cell("dynamic", "switch", "kernel", "none", auth="kerberos", tickets="cold",
                          scale=scale))
    cells.append(new_cell("dynamic", "switch", "kernel", "none", auth="kerberos",
                          prot="integrity", scale=scale))
    cells.append(new_cell("dynamic", "reimpersonate", "kernel", "none", track="token",
                          auth="kerberos", scale=scale))
    return cells


def _rows_for(rng, cells, repetitions=REPETITIONS, aggregates=True, run_noise=0.0):
    rows = []
    for index, (name, t, counters, place, threads) in enumerate(cells):
        drift = 1.0 + rng.gauss(0.0, run_noise) if run_noise else 1.0
        sigma = {"same": 0.004, "cross": 0.006, "unpinned": 0.006, "na": 0.004}[place]
        samples = [round(t * drift * (1.0 + rng.gauss(0.0, sigma)), 3) for _ in range(repetitions)]
        rep_counters = counters
        if name.startswith("check/paired/"):
            rep_counters = dict(counters)
        cell_rows = entries(index, name, samples, CPU_SHARE[place], rep_counters, threads)
        rows += cell_rows if aggregates else [r for r in cell_rows if r["run_type"] == "iteration"]
    return rows


KERBEROS_CONTEXT = {"realm": "CLOAKBENCH.TEST", "kdc": "127.0.0.1:38811", "kdc_cpu": 1,
                    "setup_seconds": 0.11, "credentials_seconds": 0.42,
                    "mechanism": "krb5 (GSSAPI, not SPNEGO)", "mutual": True, "rcache": "file2",
                    "matrix": "headline"}


def default_run(seed=11):
    """A whole default run with today's names: what the lead's reference run will look like."""
    rng = random.Random(seed)
    cells = new_baseline_cells() + [paired_cell("same"), paired_cell("cross")] + default_run_cells()
    ctx = context("v0.2.0-3-g4e5f6a7", "2024-07-01T10:00:00Z", warnings=VM_WARNINGS)
    ctx["cloak_command"] = "scripts/cloakbench run --label reference"
    ctx["cloak_kerberos"] = KERBEROS_CONTEXT
    return {"context": ctx, "benchmarks": _rows_for(rng, cells)}


# ---- history: several commits on two machines (tests/scripts/fixtures/history/<machine>/) ----

HISTORY_RUNS = 16
HISTORY_STEP_RUN = 8       # on the vm, runs from this index on pay more per new security context
HISTORY_STEP_NS = 2500.0   # a step of about +14% in dynamic/switch x none on the vm
HISTORY_REPETITIONS = 3
HISTORY_OLD_NAMES = 5      # the vm's first runs come from before the Kerberos cells


def history_cells(scale, old, context_extra):
    """What the history reads and little else, so 24 runs stay small: the baselines of the
    decomposition at place:same; none and dynamic (cache none) with a steady token and a change per
    call."""
    keep = ("baseline/probe:kernel", "baseline/switch", "baseline/roundtrip/place:same/bytes:64",
            "baseline/kerberos/establish/place:same")
    cells = [c for c in new_baseline_cells(scale, kerberos=not old, places=("same",), old=old)
             if c[0] in keep]
    for pattern in ("steady", "switch"):
        for cloaking, probe, cache in (HEADLINE_VARIANTS[0], HEADLINE_VARIANTS[2]):
            cells.append(new_cell(cloaking, pattern, probe, cache, old=old, scale=scale,
                                  context_extra=context_extra))
            if not old:
                cells.append(new_cell(cloaking, pattern, probe, cache, auth="kerberos",
                                      scale=scale))
    return cells


def history_fixtures():
    """relative path -> result: 16 runs per machine, a day apart. On the vm a step at run 8 in
    what a new local security context costs (so dynamic/switch x none steps up, the transport
    ratio and the kerberos series stay flat); on the epyc every series is flat."""
    out = {}
    for kind, seed0, scale in (("vm", 100, 1.0), ("epyc", 200, 0.8)):
        _, _, mid = machine(kind)
        for i in range(HISTORY_RUNS):
            rng = random.Random(seed0 + i)
            commit = "%07x" % (0x1a2b3c0 + 17 * i)
            date = "2024-08-%02dT09:00:00Z" % (1 + i)
            old = kind == "vm" and i < HISTORY_OLD_NAMES
            extra = HISTORY_STEP_NS if kind == "vm" and i >= HISTORY_STEP_RUN else 0.0
            cells = history_cells(scale, old, extra)
            ctx = context(commit, date, kind, noise_floor=0.02)
            ctx.pop("cloak_launches")
            ctx["cloak_command"] = "scripts/cloakbench run --label nightly"
            if not old:
                ctx["cloak_kerberos"] = KERBEROS_CONTEXT
            name = "%s/nightly-%s-%s.json" % (mid, date.replace("-", "").replace(":", "")[:15] + "Z",
                                              commit)
            out[name] = {"context": ctx, "benchmarks": _rows_for(
                rng, cells, repetitions=HISTORY_REPETITIONS, aggregates=False, run_noise=0.008)}
    return out


def fixtures():
    base = result(1, "v0.1.0-14-g3c9e2f1", "2024-06-01T10:00:00Z", warnings=VM_WARNINGS)
    return {
        "base.json": base,
        "same_machine_rerun.json": result(2, "v0.1.0-15-g8d41a07", "2024-06-02T10:00:00Z",
                                          warnings=VM_WARNINGS),
        "slower_one_cell.json": result(3, "v0.1.0-16-g51b0c3e", "2024-06-03T10:00:00Z",
                                       slower=SLOWER_CELL, warnings=VM_WARNINGS),
        "noisy.json": result(4, "v0.1.0-16-g51b0c3e", "2024-06-03T12:00:00Z", noisy=True,
                             noise_floor=0.3, warnings=VM_WARNINGS + [
                                 "noise floor 30%: the machine was busy; results are noisy"]),
        "failed_cell.json": result(5, "v0.1.0-17-ga7710de", "2024-06-04T10:00:00Z",
                                   failed=FAILING_CELL, warnings=VM_WARNINGS + [
                                       "failed cells: " + FAILING_CELL]),
        "other_machine.json": result(6, "v0.1.0-14-g3c9e2f1", "2024-06-01T15:00:00Z",
                                     machine_kind="epyc", scale=0.8, noise_floor=0.02),
        "plain_gbench.json": plain_gbench(),
        "raw_bench.json": raw_bench(),
        "wrong_schema.json": {"context": dict(base["context"], cloak_schema_version=99),
                              "benchmarks": base["benchmarks"][:9]},
        "no_benchmarks.json": {"context": base["context"], "benchmarks": []},
    }


def main(argv):
    if len(argv) == 3 and argv[1] == "--default-run":  # a whole default run, written to PATH
        with open(argv[2], "w") as f:
            json.dump(default_run(), f, separators=(",", ":"))
            f.write("\n")
        return 0
    os.makedirs(FIXTURES, exist_ok=True)
    for name, data in fixtures().items():
        with open(os.path.join(FIXTURES, name), "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
    for name, data in history_fixtures().items():
        path = os.path.join(FIXTURES, "history", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(data, f, separators=(",", ":"))
            f.write("\n")
    with open(os.path.join(FIXTURES, "not_json.txt"), "w") as f:
        f.write("Run on (2 X 2500 MHz CPU s)\nBM_memcpy/8   4.10 ns   4.06 ns   170666666\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
