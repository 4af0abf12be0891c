"""Runs every paired block of cloak-matrix once with a few rounds and checks what its readers rely
on: every block passed, every variant was timed in every round, the counters follow the cloaking
rules (a dynamic switch without a cache makes one context per call, lru:4 none once warm, static
and none never), each histogram holds every timed call, and the file summarizes as `run` does.

usage: check_blocks.py CLOAK_MATRIX OUT.json"""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))

ROUNDS = 25
EXPECTED_BLOCKS = 18  # local same/cross, kerberos, ntlm, negotiate over krb5 and over NTLM (same),
#                     x steady/switch/reimpersonate
PROXIES = ("none", "none_aa", "static", "dynamic", "dynamic_lru")


def contexts_per_call(variant, pattern):
    """What docs/design.md §1 implies a variant establishes per call under a pattern."""
    if variant == "dynamic" and pattern == "switch":
        return 1.0
    return 0.0


def main():
    program, out = sys.argv[1], sys.argv[2]
    records = out + ".blocks"
    cmd = [program, "--benchmark_filter=^block/", "--block-rounds=%d" % ROUNDS, "--block-seed=1",
           "--blocks-out=" + records, "--benchmark_out=" + out, "--benchmark_out_format=json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=110)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:])
        return "cloak-matrix exited %d" % done.returncode
    with open(records, encoding="utf-8") as f:
        blocks = json.load(f)["blocks"]
    problems = []
    if len(blocks) != EXPECTED_BLOCKS:
        problems.append("%d blocks, expected %d" % (len(blocks), EXPECTED_BLOCKS))
    for b in blocks:
        name = b["name"]
        if b.get("failed"):
            problems.append("%s failed: %s" % (name, b["failed"]))
            continue
        if b["rounds"] != ROUNDS or b["seed"] != 1:
            problems.append("%s: rounds %s, seed %s" % (name, b["rounds"], b["seed"]))
        want = set(PROXIES) | {"roundtrip", "probe", "new_context", "clock"}
        if b["pattern"] != "steady":
            want.add("switch")
        if set(b["variants"]) != want:
            problems.append("%s: variants %s" % (name, sorted(b["variants"])))
        for v in b["variants"]:
            if len(b["times_ns"][v]) != ROUNDS or (v != "clock" and min(b["times_ns"][v]) == 0):
                problems.append("%s: %s timed %d rounds" % (name, v, len(b["times_ns"][v])))
            h = b["histograms"][v]
            if h["all"]["count"] != ROUNDS:
                problems.append("%s: %s histogram holds %d calls" % (name, v, h["all"]["count"]))
            changed = h["after_change"]["count"]
            if v in PROXIES and changed != (0 if b["pattern"] == "steady" else ROUNDS):
                problems.append("%s: %s has %d calls after a change" % (name, v, changed))
        for v in PROXIES:
            c = b["counters"][v]
            got = c["contexts"] / c["calls"]
            if got != contexts_per_call(v, b["pattern"]):
                problems.append("%s: %s made %.2f contexts per call" % (name, v, got))
            probes = c["probes"] / c["calls"]
            if probes != (1.0 if v.startswith("dynamic") else 0.0):
                problems.append("%s: %s probed %.2f times per call" % (name, v, probes))
        if b["pattern"] == "switch" and b["counters"]["dynamic_lru"]["cache_hits"] != ROUNDS:
            problems.append("%s: lru:4 hit %d of %d" % (name, b["counters"]["dynamic_lru"]["cache_hits"], ROUNDS))
    from cloakpy import run_suite
    summary = run_suite.summarize_blocks(blocks)
    for s in summary:
        if s["launches"] != 1 or "dynamic/none" not in s["ratios"] or "none/roundtrip" not in s["ratios"]:
            problems.append("%s: summary %s" % (s["name"], sorted(s["ratios"])))
    return "\n".join(problems) or None


if __name__ == "__main__":
    why = main()
    if why:
        print(why)
        sys.exit(1)
    print("every block passed its checks")
