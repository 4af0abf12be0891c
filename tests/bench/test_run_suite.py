"""Unit tests of run_suite's pure functions and the modules behind it: salvaging torn output,
merging launches into strict JSON, warnings, the noise floor, atomic writes, planning, the summary
table and the harness-cost checks (both read a load.Result, like every other reader)."""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

from cloakpy import checks, load, merge, run_suite, summary

SAME = "cloak/kernel/uds/%s/steady/probe:%s/cache:%s/place:same/bytes:64/threads:1"


def entry(name, real, rep=0, reps=3, family=0, **extra):
    e = {"name": name, "family_index": family, "per_family_instance_index": 0, "run_name": name,
         "run_type": "iteration", "repetitions": reps, "repetition_index": rep, "threads": 1,
         "iterations": 1000, "real_time": real, "cpu_time": real / 2, "time_unit": "ns"}
    e.update(extra)
    return e


def cell(name, times, family=0, **extra):
    return [entry(name, t, i, len(times), family, **extra) for i, t in enumerate(times)]


def launch_context(**overrides):
    ctx = {"date": "2024-06-01T10:00:00+00:00", "host_name": "vm", "library_build_type": "release",
           "cloak_schema_version": "1", "cloak_suite_version": "0.1.0", "cloak_backend": "kernel",
           "cloak_cpus": '{"client":0,"downstream_same":0,"downstream_other":1}',
           "cloak_machine": '{"cores":2,"cpu_model":"X"}', "cloak_machine_hash": "0123456789abcdef",
           "cloak_machine_id": "vm-01234567", "cloak_warnings": '["virtualized (kvm)"]'}
    ctx.update(overrides)
    return ctx


def launch(benchmarks, program="build/bench/cloak-matrix", status=0, **ctx):
    return {"output": merge.LaunchOutput(launch_context(**ctx), benchmarks),
            "record": {"program": program, "argv": [program], "started": "2024-06-01T10:00:00Z",
                       "seconds": 1.0, "exit_status": status}}


RUN = {"cloak_commit": "abc1234", "cloak_command": "scripts/cloakbench run", "cloak_date": "2024-06-01T10:00:00Z"}


class SalvageTest(unittest.TestCase):
    def test_complete_file_is_read_as_is(self):
        text = json.dumps({"context": {"a": "1"}, "benchmarks": [entry("baseline/syscall", 70.0)]})
        out = merge.salvage_gbench_json(text)
        self.assertFalse(out.torn)
        self.assertEqual(len(out.benchmarks), 1)

    def test_torn_file_keeps_context_and_complete_entries(self):
        full = json.dumps({"context": {"a": "1"},
                           "benchmarks": [entry("baseline/syscall", 70.0), entry("baseline/switch", 3000.0)]},
                          indent=2)
        cut = full[: full.rindex('"real_time"')]  # inside the second entry
        out = merge.salvage_gbench_json(cut)
        self.assertTrue(out.torn)
        self.assertEqual(out.context, {"a": "1"})
        self.assertEqual([e["name"] for e in out.benchmarks], ["baseline/syscall"])

    def test_file_without_a_context_cannot_be_salvaged(self):
        self.assertIsNone(merge.salvage_gbench_json('{"benchm'))


class MergeTest(unittest.TestCase):
    def test_context_keys_are_decoded_and_run_keys_added(self):
        doc = merge.merge_launches([launch(cell("baseline/syscall", [70, 71, 72]))], RUN)
        ctx = doc["context"]
        self.assertEqual(ctx["cloak_schema_version"], 1)
        self.assertEqual(ctx["cloak_cpus"], {"client": 0, "downstream_same": 0, "downstream_other": 1})
        self.assertEqual(ctx["cloak_machine"]["cores"], 2)
        self.assertEqual(ctx["cloak_commit"], "abc1234")
        self.assertIn("virtualized (kvm)", ctx["cloak_warnings"])
        self.assertEqual(ctx["cloak_launches"][0]["cells"], ["baseline/syscall"])
        self.assertEqual(ctx["host_name"], "vm")

    def test_launches_are_concatenated_with_unique_family_indexes(self):
        a = launch(cell("baseline/syscall", [70, 71, 72], family=0) + cell("baseline/switch", [3e3] * 3, family=1))
        b = launch(cell("baseline/model/inproc", [40, 41, 40], family=0), cloak_backend="model")
        doc = merge.merge_launches([a, b], RUN)
        families = {e["name"]: e["family_index"] for e in doc["benchmarks"]}
        self.assertEqual(families, {"baseline/syscall": 0, "baseline/switch": 1, "baseline/model/inproc": 2})
        self.assertEqual(doc["context"]["cloak_backend"], "kernel+model")
        self.assertEqual(len(doc["context"]["cloak_launches"]), 2)

    def test_interrupted_cells_are_dropped_whole(self):
        rows = cell("baseline/syscall", [70, 71, 72]) + [
            entry("baseline/switch", 3000.0, 0),
            dict(entry("baseline/switch", 0.0, 1), error_occurred=True, error_message="interrupted"),
        ]
        doc = merge.merge_launches([launch(rows)], RUN)
        self.assertEqual(merge.cell_names(doc["benchmarks"]), ["baseline/syscall"])
        self.assertEqual(doc["context"]["cloak_launches"][0]["cells"], ["baseline/syscall"])

    def test_failed_cells_are_kept_and_warned_about(self):
        rows = [dict(entry(SAME % ("none", "na", "na"), 0.0), error_occurred=True,
                     error_message="call 3: downstream unavailable")]
        doc = merge.merge_launches([launch(rows)], RUN)
        self.assertTrue(doc["benchmarks"][0]["error_occurred"])
        self.assertTrue(any(w.startswith("failed cell") and "downstream unavailable" in w
                            for w in doc["context"]["cloak_warnings"]))

    def test_noisy_cells_and_noise_floor_use_the_one_spread(self):
        rows = cell("baseline/syscall", [100, 102, 101]) + cell("baseline/switch", [100, 115, 85])
        doc = merge.merge_launches([launch(rows)], RUN)
        warnings = doc["context"]["cloak_warnings"]
        self.assertIn("noisy cell baseline/switch: spread ±7.5% over 3 repetitions (limit ±5%)", warnings)
        self.assertFalse(any("noisy cell baseline/syscall" in w for w in warnings))
        # median of the baselines' spreads (half the IQR over the median): 0.5/101 and 7.5/100
        self.assertAlmostEqual(doc["context"]["cloak_noise_floor"], round((0.5 / 101 + 0.075) / 2, 4), places=4)

    def test_merged_file_is_strict_json(self):
        name = SAME % ("none", "na", "na")
        rows = cell(name, [8300, 8400, 8350], mismatches=0.0) + [
            {"name": name + "_cv", "family_index": 0, "per_family_instance_index": 0, "run_name": name,
             "run_type": "aggregate", "repetitions": 3, "threads": 1, "aggregate_name": "cv",
             "aggregate_unit": "percentage", "iterations": 3, "real_time": 0.006, "cpu_time": 0.004,
             "time_unit": "ns", "mismatches": float("nan"), "bytes": float("inf")},
            {"name": "baseline/syscall_cv", "family_index": 1, "per_family_instance_index": 0,
             "run_name": "baseline/syscall", "run_type": "aggregate", "repetitions": 3, "threads": 1,
             "aggregate_name": "cv", "aggregate_unit": "percentage", "iterations": 3,
             "real_time": float("nan"), "cpu_time": float("nan"), "time_unit": "ns"}]
        doc = merge.merge_launches([launch(rows)], RUN)
        text = merge.dumps(doc)

        def refuse(constant):
            raise ValueError("not strict JSON: " + constant)
        data = json.loads(text, parse_constant=refuse)
        cv = [e for e in data["benchmarks"] if e["name"] == name + "_cv"][0]
        self.assertIsNone(cv["mismatches"])
        self.assertIsNone(cv["bytes"])
        # A row without a finite time is left out (compare.py computes with it), and said so.
        self.assertNotIn("baseline/syscall_cv", [e["name"] for e in data["benchmarks"]])
        self.assertTrue(any("left out rows of baseline/syscall_cv" in w for w in data["context"]["cloak_warnings"]))
        self.assertEqual(json.loads(merge.dumps({"x": [float("-inf"), 1.5]})), {"x": [None, 1.5]})

    def test_benchmark_args_are_recorded(self):
        run = dict(RUN, cloak_benchmark_args=["--benchmark_min_warmup_time=0.1"])
        doc = merge.merge_launches([launch(cell("baseline/syscall", [70, 71, 72]))], run)
        self.assertEqual(doc["context"]["cloak_benchmark_args"], ["--benchmark_min_warmup_time=0.1"])
        doc = merge.merge_launches([launch(cell("baseline/syscall", [70, 71, 72]))], RUN)
        self.assertEqual(doc["context"]["cloak_benchmark_args"], [])

    def test_debug_benchmark_library_is_a_warning(self):
        doc = merge.merge_launches([launch(cell("baseline/syscall", [70, 71, 72]), library_build_type="debug")], RUN)
        self.assertTrue(any("built as debug" in w for w in doc["context"]["cloak_warnings"]))

    def test_a_launch_without_output_is_recorded(self):
        doc = merge.merge_launches([launch(cell("baseline/syscall", [70, 71, 72])),
                                 {"output": None, "record": {"program": "p", "exit_status": -9}}], RUN)
        self.assertEqual(doc["context"]["cloak_launches"][1]["cells"], [])


class StatsTest(unittest.TestCase):
    def test_noise_floor_needs_three_repetitions_of_a_baseline(self):
        def cells(name, times):
            return load.cells_from_entries("t.json", cell(name, times))
        self.assertIsNone(merge.noise_floor(cells("baseline/syscall", [1.0, 2.0])))
        self.assertIsNone(merge.noise_floor(cells(SAME % ("none", "na", "na"), [1.0, 2.0, 3.0])))
        self.assertAlmostEqual(merge.noise_floor(cells("baseline/syscall", [90, 100, 110])), 0.05)


class AtomicWriteTest(unittest.TestCase):
    def test_writes_and_replaces(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "r.json")
            merge.write_atomic(path, "one")
            merge.write_atomic(path, "two")
            with open(path) as f:
                self.assertEqual(f.read(), "two")
            self.assertEqual(os.listdir(d), ["r.json"])

    def test_failure_leaves_the_old_file_and_no_temporary(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "r.json")
            merge.write_atomic(path, "old")

            with self.assertRaises(TypeError):
                merge.write_atomic(path, object())  # cannot be written: fails mid-write
            with open(path) as f:
                self.assertEqual(f.read(), "old")
            self.assertEqual(os.listdir(d), ["r.json"])

    def test_killed_writer_never_leaves_a_torn_file(self):
        # A writer killed at any point leaves the old complete file (plus at most a hidden
        # temporary), never a half-written result under the real name.
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "r.json")
            merge.write_atomic(path, json.dumps({"n": 0}))
            script = textwrap.dedent("""
                import json, sys
                from cloakpy import merge
                big = json.dumps({"n": 1, "pad": "x" * 20000000})
                while True:
                    merge.write_atomic(sys.argv[1], big)
            """)
            env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", ""))
            p = subprocess.Popen([sys.executable, "-c", script, path], env=env)
            try:
                seen_new = 0
                deadline = time.monotonic() + 30
                while seen_new < 3 and time.monotonic() < deadline:
                    with open(path) as f:
                        doc = json.loads(f.read())  # always a complete document, old or new
                    seen_new += doc["n"] == 1
            finally:
                p.send_signal(signal.SIGKILL)
                p.wait()
            self.assertGreater(seen_new, 0, "the writer never replaced the file")
            with open(path) as f:
                json.loads(f.read())
            self.assertEqual([n for n in os.listdir(d) if not n.startswith(".")], ["r.json"])


class PlanTest(unittest.TestCase):
    NAMES = ["baseline/syscall", "baseline/probe:kernel", "baseline/roundtrip/place:same/bytes:64",
             "baseline/roundtrip/place:cross/bytes:4096", "baseline/connect/place:cross",
             "baseline/model/inproc", SAME % ("none", "na", "na"),
             "cloak/kernel/uds/none/steady/probe:na/cache:na/place:cross/bytes:4096/threads:2",
             "cloak/model/inproc/none/steady/probe:na/cache:na/place:na/bytes:64/threads:1"]

    def test_cells_share_a_launch_with_their_floor(self):
        plan = dict(run_suite.plan_launches(self.NAMES))
        self.assertEqual(plan[("uds", "same", 64)], ["baseline/syscall", "baseline/probe:kernel"])
        self.assertIn("baseline/roundtrip/place:cross/bytes:4096", plan[("uds", "cross", 4096)])
        self.assertIn("baseline/connect/place:cross", plan[("uds", "cross", 64)])
        self.assertIn("baseline/model/inproc", plan[("model", 64)])

    def test_harness_cost_cells_run_together_with_more_repetitions(self):
        plan = dict(run_suite.plan_launches(self.NAMES))
        self.assertEqual(plan[("check", "same")],
                         ["baseline/roundtrip/place:same/bytes:64", SAME % ("none", "na", "na")])
        reps, min_time = run_suite.launch_timing(("check", "same"), 5, 0.04)
        self.assertGreaterEqual(reps, 15)
        self.assertEqual(reps % 2, 1)
        self.assertGreater(min_time, 0.04)
        self.assertEqual(run_suite.launch_timing(("uds", "same", 64), 5, 0.04), (5, 0.04))
        # A 2-thread cell or another payload is not read by the checks.
        self.assertEqual(run_suite.group_of(
            "cloak/kernel/uds/none/steady/probe:na/cache:na/place:cross/bytes:4096/threads:2"),
            ("uds", "cross", 4096))

    def test_names_with_an_authentication_package_are_planned_alike(self):
        new = ("cloak/kernel/uds/auth:%s/%s/steady/probe:%s/cache:%s/track:%s/prot:%s/tickets:%s"
               "/place:same/bytes:64/threads:1")
        self.assertEqual(run_suite.group_of(new % ("local", "none", "na", "na", "na", "na", "na")), ("check", "same"))
        self.assertEqual(run_suite.group_of(new % ("local", "dynamic", "kernel", "none", "identity", "na", "na")),
                         ("check", "same"))
        # Not read by the checks: another package, token tracking, per-call protection.
        for other in (new % ("kerberos", "none", "na", "na", "na", "na", "warm"),
                      new % ("local", "dynamic", "kernel", "none", "token", "na", "na"),
                      new % ("kerberos", "static", "na", "na", "na", "integrity", "warm")):
            self.assertEqual(run_suite.group_of(other), ("uds", "same", 64), other)

    def test_launch_order_puts_the_headline_group_first(self):
        keys = [k for k, _ in run_suite.plan_launches(self.NAMES)]
        self.assertEqual(keys[0], ("check", "same"))
        self.assertEqual(keys[1], ("uds", "same", 64))
        self.assertEqual(keys[-1], ("model", 64))

    BLOCKS = ["block/kernel/uds/auth:local/steady/place:same/bytes:64",
              "block/kernel/uds/auth:local/switch/place:same/bytes:64",
              "block/kernel/uds/auth:kerberos/steady/place:same/bytes:64"]

    def test_each_block_group_runs_in_as_many_launches_spread_among_the_others(self):
        plan = run_suite.plan_launches(self.NAMES + self.BLOCKS)
        spread = run_suite.spread_block_launches(plan, 7, seed=3)
        blocks = [(k, n) for k, n in spread if k[0] == "block"]
        self.assertEqual(len(blocks), 14)  # two groups (local, kerberos) x 7 launches
        self.assertEqual(sorted(k[3] for k, _ in blocks if k[1] == "local"), list(range(7)))
        self.assertEqual({tuple(n) for k, n in blocks if k[1] == "local"}, {tuple(self.BLOCKS[:2])})
        # The other launches keep their order; the blocks are not all at one end.
        others = [k for k, _ in spread if k[0] != "block"]
        self.assertEqual(others, [k for k, _ in plan if k[0] != "block"])
        places = [i for i, (k, _) in enumerate(spread) if k[0] == "block"]
        self.assertNotEqual(places, list(range(len(spread) - 14, len(spread))))
        # Seeded: the same seed, the same run; another, another.
        self.assertEqual(spread, run_suite.spread_block_launches(plan, 7, seed=3))
        self.assertNotEqual(spread, run_suite.spread_block_launches(plan, 7, seed=4))
        self.assertEqual([k for k, _ in run_suite.spread_block_launches(plan, 0, 3)], others)

    def test_a_package_may_run_its_blocks_in_fewer_launches_and_both_negotiate_mechs_share_one(self):
        negotiate = ["block/kernel/uds/auth:negotiate/mech:krb5/steady/place:same/bytes:64",
                     "block/kernel/uds/auth:negotiate/mech:ntlm/steady/place:same/bytes:64"]
        self.assertEqual({run_suite.group_of(n) for n in negotiate}, {("block", "negotiate", "same")})
        plan = run_suite.plan_launches(self.NAMES + self.BLOCKS + negotiate)
        spread = run_suite.spread_block_launches(plan, 7, seed=3,
                                                 per_package={"kerberos": 5, "negotiate": 5})
        count = {}
        for k, n in spread:
            if k[0] == "block":
                count[k[1]] = count.get(k[1], 0) + 1
        self.assertEqual(count, {"local": 7, "kerberos": 5, "negotiate": 5})
        self.assertIn(tuple(negotiate), {tuple(n) for k, n in spread if k[1] == "negotiate"})
        # what the default run uses, within the progress line's estimates
        self.assertLessEqual(max(run_suite.BLOCK_LAUNCHES_BY_PACKAGE.values()), run_suite.BLOCK_LAUNCHES)
        self.assertIn(("negotiate", "same"), run_suite.BLOCK_LAUNCH_SECONDS)

    def test_cell_histograms_of_every_repetition_merge_exactly(self):
        def h(counts):
            return {"scheme": "log-linear/7", "count": sum(c for _, c in counts),
                    "min": counts[0][0], "max": counts[-1][0],
                    "sum": sum(i * c for i, c in counts), "buckets": [list(x) for x in counts]}
        name = SAME % ("none", "na", "na")
        merged = run_suite.merge_cell_histograms([
            {"name": name, "all": h([(100, 2), (120, 1)]), "after_change": h([(100, 1)])},
            {"name": name, "all": h([(100, 1), (127, 1)]), "after_change": h([(127, 1)])}])
        self.assertEqual(merged[name]["all"]["count"], 5)
        self.assertEqual(merged[name]["all"]["buckets"], [[100, 3], [120, 1], [127, 1]])
        self.assertEqual(merged[name]["summary"]["all"]["p50"], 100)
        self.assertEqual(merged[name]["summary"]["after_change"]["max"], 127)

    def test_launch_filter_matches_exactly_its_cells(self):
        import re
        names = ["baseline/syscall", SAME % ("none", "na", "na"),
                 "cloak/kernel/uds/dynamic/steady/probe:none/cache:per-message/place:same/bytes:64/threads:1"]
        # No backslash but before '.', or Google Benchmark's POSIX regex refuses the filter.
        self.assertNotRegex(run_suite.launch_filter(names), r"\\[^.]")
        rx = re.compile(run_suite.launch_filter(names))
        self.assertTrue(all(rx.search(n) for n in names))
        self.assertFalse(rx.search("baseline/syscall2"))
        self.assertFalse(rx.search(SAME % ("static", "na", "na")))


def result_of(rows, noise=None):
    return load.result_from_document("run.json", {"context": {"cloak_noise_floor": noise}, "benchmarks": rows})


class SummaryTest(unittest.TestCase):
    def rows(self):
        return (cell("baseline/roundtrip/place:same/bytes:64", [8000, 8100, 8050])
                + cell(SAME % ("none", "na", "na"), [8300, 8400, 8350])
                + cell(SAME % ("static", "na", "na"), [8400, 8420, 8410])
                + cell(SAME % ("dynamic", "kernel", "none"), [8800, 8790, 8810])
                + cell("baseline/probe:kernel", [300, 301, 299])
                + [dict(entry(SAME % ("dynamic", "generation", "none"), 0.0), error_occurred=True,
                        error_message="call 1: identity mismatch")])

    def test_rows_have_ratios_to_none_and_to_the_floor(self):
        rows = {r["name"]: r for r in summary.summary_rows(result_of(self.rows()))}
        static = rows[SAME % ("static", "na", "na")]
        self.assertAlmostEqual(static["over_none"], 8410 / 8350)
        self.assertAlmostEqual(static["over_floor"], 8410 / 8050)
        self.assertIsNone(rows["baseline/probe:kernel"]["over_none"])
        self.assertIn("identity mismatch", rows[SAME % ("dynamic", "generation", "none")]["failed"])
        self.assertAlmostEqual(static["spread"], 5 / 8410)  # the report's spread: half the IQR over the median

    def test_rows_follow_the_given_order(self):
        order = ["baseline/probe:kernel", SAME % ("none", "na", "na")]
        names = [r["name"] for r in summary.summary_rows(result_of(self.rows()), order)]
        self.assertEqual(names[:2], order)

    def test_rendered_table_names_every_cell(self):
        lines = summary.render_summary(summary.summary_rows(result_of(self.rows())))
        self.assertIn("÷ none", lines[0])
        self.assertTrue(any("±0.1%" in l for l in lines))
        self.assertTrue(any("FAILED: call 1: identity mismatch" in l for l in lines))
        self.assertEqual(len(lines), 2 + 6)

    def test_harness_cost_checks(self):
        judged = {(c["check"], c["place"]): c for c in checks.harness_cost_checks(result_of(self.rows()))}
        # Judged on each cell's fastest repetition; the medians are quoted beside.
        none = judged[("none ÷ raw round trip", "same")]
        self.assertAlmostEqual(none["value"], 8300 / 8000)
        self.assertTrue(none["ok"])
        self.assertIn("medians 8.35 µs vs 8.05 µs", none["text"])
        self.assertTrue(judged[("static ÷ none", "same")]["ok"])
        dyn = judged[("dynamic − static (probe:kernel)", "same")]
        self.assertAlmostEqual(dyn["value"], 8790 - 8400)
        self.assertFalse(dyn["ok"])  # 390 ns > one probe (300 ns), no noise allowance given
        self.assertTrue(checks.harness_cost_checks(result_of(self.rows(), noise=0.02))[2]["ok"])

    def test_checks_read_names_with_an_authentication_package(self):
        new = ("cloak/kernel/uds/auth:local/%s/steady/probe:%s/cache:%s/track:%s/prot:na/tickets:na"
               "/place:same/bytes:64/threads:1")
        rows = (cell("baseline/roundtrip/place:same/bytes:64", [8000, 8100, 8050])
                + cell(new % ("none", "na", "na", "na"), [8300, 8400, 8350])
                + cell(new % ("static", "na", "na", "na"), [8400, 8420, 8410])
                + cell(new % ("dynamic", "kernel", "none", "token"), [9900, 9900, 9900])
                + cell(new % ("dynamic", "kernel", "none", "identity"), [8800, 8790, 8810])
                + cell("baseline/probe:kernel", [300, 301, 299]))
        judged = {(c["check"], c["place"]): c for c in checks.harness_cost_checks(result_of(rows))}
        self.assertAlmostEqual(judged[("static ÷ none", "same")]["value"], 8400 / 8300)
        self.assertAlmostEqual(judged[("dynamic − static (probe:kernel)", "same")]["value"], 8790 - 8400)

    def test_none_is_judged_against_the_minimal_ping_pong_when_measured(self):
        rows = self.rows() + cell("baseline/roundtrip/minimal/place:same/bytes:64", [7400, 7500, 7450])
        judged = {(c["check"], c["place"]): c for c in checks.harness_cost_checks(result_of(rows))}
        minimal = judged[("none ÷ minimal ping-pong", "same")]
        self.assertAlmostEqual(minimal["value"], 8350 / 7450)
        self.assertFalse(minimal["ok"])  # +12% > +10%
        self.assertNotIn(("none ÷ minimal ping-pong", "same"),
                         {(c["check"], c["place"]) for c in checks.harness_cost_checks(result_of(self.rows()))})

    def test_paired_cells_are_judged_by_their_within_repetition_ratios(self):
        def paired(raw, none, static, dk, dg):
            e = entry("check/paired/place:cross/bytes:64", raw + none + static + dk + dg)
            e.update(raw_ns=raw, none_ns=none, static_ns=static, dynamic_kernel_ns=dk,
                     dynamic_generation_ns=dg)
            return e
        # The machine drifts by 30% between repetitions; within each, none is 1% over raw.
        rows = [paired(30000, 30300, 30300, 30600, 30310),
                paired(40000, 40400, 40400, 40700, 40410),
                paired(35000, 35350, 35350, 35650, 35360)] + cell("baseline/probe:kernel", [300]) \
            + cell("baseline/probe:generation", [2])
        judged = {(c["check"], c["place"]): c for c in checks.harness_cost_checks(result_of(rows))}
        self.assertAlmostEqual(judged[("none ÷ raw round trip", "cross")]["value"], 1.01)
        self.assertTrue(judged[("static ÷ none", "cross")]["ok"])
        self.assertAlmostEqual(judged[("dynamic − static (probe:kernel)", "cross")]["value"], 300)
        self.assertFalse(judged[("dynamic − static (probe:generation)", "cross")]["ok"])  # 10 ns > 2 ns
        self.assertIn("paired", judged[("static ÷ none", "cross")]["text"])

    def test_a_harness_slower_on_every_repetition_fails_its_check(self):
        rows = (cell("baseline/roundtrip/place:same/bytes:64", [8000, 9500, 8050])
                + cell(SAME % ("none", "na", "na"), [8500, 8600, 8700]))  # +6% at best
        check = checks.harness_cost_checks(result_of(rows))[0]
        self.assertEqual(check["check"], "none ÷ raw round trip")
        self.assertFalse(check["ok"])


class ArgumentsTest(unittest.TestCase):
    def parse(self, *argv):
        return run_suite.build_parser().parse_args(list(argv))

    def test_defaults(self):
        a = self.parse()
        self.assertIsNone(a.repetitions)  # resolved to DEFAULT_REPETITIONS by main(); None
        self.assertIsNone(a.min_time)     # also says "the harness-cost cells get more"
        self.assertFalse(a.quick)

    def test_even_repetitions_are_refused(self):
        with self.assertRaises(SystemExit) as e, open(os.devnull, "w") as null:
            old, sys.stderr = sys.stderr, null
            try:
                self.parse("--repetitions", "4")
            finally:
                sys.stderr = old
        self.assertEqual(e.exception.code, 2)

    def test_flags_after_a_double_dash_go_to_google_benchmark(self):
        own, extra = run_suite.split_benchmark_args(["--quick", "--", "--benchmark_min_warmup_time=0.1", "--v=1"])
        self.assertEqual(own, ["--quick"])
        self.assertEqual(extra, ["--benchmark_min_warmup_time=0.1", "--v=1"])
        self.assertIsNone(run_suite.benchmark_args_problem(extra))
        self.assertEqual(run_suite.split_benchmark_args(["--quick"]), (["--quick"], []))

    def test_flags_run_sets_itself_are_refused_after_the_double_dash(self):
        for flag, instead in (("--benchmark_filter=x", "--filter"), ("--benchmark_repetitions=3", "--repetitions"),
                              ("--benchmark_min_time=1", "--min-time"), ("--benchmark_out=f", "--out"),
                              ("--benchmark_format=json", "--out"), ("--benchmark_list_tests", "--list")):
            with self.subTest(flag=flag):
                self.assertIn(instead, run_suite.benchmark_args_problem([flag]))
        self.assertIn("Google Benchmark flags", run_suite.benchmark_args_problem(["--quick"]))
        self.assertIn("Google Benchmark flags", run_suite.benchmark_args_problem(["file.json"]))

    def test_list_option(self):
        self.assertTrue(self.parse("--list", "--quick").list)

    def test_launches_pass_the_flags_on_after_their_own(self):
        launches = run_suite.Launches([], "cloak-matrix", 5, 0.04, 0, 1, "/tmp", True,
                                      ["--benchmark_enable_random_interleaving=false"])
        args = launches.args(("uds", "same", 64))
        self.assertEqual(args[-1], "--benchmark_enable_random_interleaving=false")
        self.assertLess(args.index("--benchmark_enable_random_interleaving=true"), len(args) - 1)

    def test_result_path_is_under_the_machine_id(self):
        with tempfile.TemporaryDirectory() as d:
            p = run_suite.result_path(d, "vm-0123abcd", 0, "abc1234-dirty", None)
            self.assertEqual(p, os.path.join(d, "vm-0123abcd", "19700101T000000Z-abc1234-dirty.json"))
            self.assertTrue(run_suite.result_path(d, "m", 0, "c", "reference").endswith("/reference-19700101T000000Z-c.json"))


class StopSignalTest(unittest.TestCase):
    """The SIGINT/SIGTERM handler may run while the main thread is inside a write to stderr."""

    class _Raw(io.RawIOBase):
        """A stderr whose next write first runs `during_write`, as a signal arriving then would."""

        def __init__(self):
            super().__init__()
            self.during_write = None
            self.data = b""

        def writable(self):
            return True

        def write(self, b):
            callback, self.during_write = self.during_write, None
            if callback:
                callback()
            self.data += bytes(b)
            return len(b)

    def test_a_signal_during_a_progress_line_is_recorded_and_announced_once(self):
        raw = self._Raw()
        stream = io.TextIOWrapper(io.BufferedWriter(raw), write_through=True)
        stop = run_suite.Stop()
        raw.during_write = lambda: stop.handler(signal.SIGTERM, None)
        with contextlib.redirect_stderr(stream):
            print("cell 3 of 31: a progress line", file=sys.stderr, flush=True)  # must not raise
            self.assertEqual(stop.signal, signal.SIGTERM)
            stop.announce()
            stop.announce()
        text = raw.data.decode()
        self.assertIn("cell 3 of 31: a progress line", text)
        self.assertEqual(text.count("SIGTERM received"), 1, text)

    def test_the_first_signal_is_the_one_reported(self):
        stop = run_suite.Stop()
        stop.handler(signal.SIGINT, None)
        stop.handler(signal.SIGTERM, None)
        self.assertEqual(stop.signal, signal.SIGINT)


if __name__ == "__main__":
    unittest.main()
