"""Unit tests of run_suite's pure functions: salvaging torn output, merging launches, warnings,
the noise floor, atomic writes, planning and the summary table."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

from cloakpy import run_suite, suite_results as sr

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


def launch(benchmarks, program="build/bench/cloak_matrix", status=0, **ctx):
    return {"output": sr.LaunchOutput(launch_context(**ctx), benchmarks),
            "record": {"program": program, "argv": [program], "started": "2024-06-01T10:00:00Z",
                       "seconds": 1.0, "exit_status": status}}


RUN = {"cloak_commit": "abc1234", "cloak_command": "scripts/cloakbench run", "cloak_date": "2024-06-01T10:00:00Z"}


class SalvageTest(unittest.TestCase):
    def test_complete_file_is_read_as_is(self):
        text = json.dumps({"context": {"a": "1"}, "benchmarks": [entry("baseline/syscall", 70.0)]})
        out = sr.salvage_gbench_json(text)
        self.assertFalse(out.torn)
        self.assertEqual(len(out.benchmarks), 1)

    def test_torn_file_keeps_context_and_complete_entries(self):
        full = json.dumps({"context": {"a": "1"},
                           "benchmarks": [entry("baseline/syscall", 70.0), entry("baseline/switch", 3000.0)]},
                          indent=2)
        cut = full[: full.rindex('"real_time"')]  # inside the second entry
        out = sr.salvage_gbench_json(cut)
        self.assertTrue(out.torn)
        self.assertEqual(out.context, {"a": "1"})
        self.assertEqual([e["name"] for e in out.benchmarks], ["baseline/syscall"])

    def test_file_without_a_context_cannot_be_salvaged(self):
        self.assertIsNone(sr.salvage_gbench_json('{"benchm'))


class MergeTest(unittest.TestCase):
    def test_context_keys_are_decoded_and_run_keys_added(self):
        doc = sr.merge_launches([launch(cell("baseline/syscall", [70, 71, 72]))], RUN)
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
        doc = sr.merge_launches([a, b], RUN)
        families = {e["name"]: e["family_index"] for e in doc["benchmarks"]}
        self.assertEqual(families, {"baseline/syscall": 0, "baseline/switch": 1, "baseline/model/inproc": 2})
        self.assertEqual(doc["context"]["cloak_backend"], "kernel+model")
        self.assertEqual(len(doc["context"]["cloak_launches"]), 2)

    def test_interrupted_cells_are_dropped_whole(self):
        rows = cell("baseline/syscall", [70, 71, 72]) + [
            entry("baseline/switch", 3000.0, 0),
            dict(entry("baseline/switch", 0.0, 1), error_occurred=True, error_message="interrupted"),
        ]
        doc = sr.merge_launches([launch(rows)], RUN)
        self.assertEqual(sr.cell_names(doc["benchmarks"]), ["baseline/syscall"])
        self.assertEqual(doc["context"]["cloak_launches"][0]["cells"], ["baseline/syscall"])

    def test_failed_cells_are_kept_and_warned_about(self):
        rows = [dict(entry(SAME % ("none", "na", "na"), 0.0), error_occurred=True,
                     error_message="call 3: downstream unavailable")]
        doc = sr.merge_launches([launch(rows)], RUN)
        self.assertTrue(doc["benchmarks"][0]["error_occurred"])
        self.assertTrue(any(w.startswith("failed cell") and "downstream unavailable" in w
                            for w in doc["context"]["cloak_warnings"]))

    def test_noisy_cells_and_noise_floor(self):
        rows = cell("baseline/syscall", [100, 102, 101]) + cell("baseline/switch", [100, 110, 90])
        doc = sr.merge_launches([launch(rows)], RUN)
        warnings = doc["context"]["cloak_warnings"]
        self.assertTrue(any("noisy cell baseline/switch" in w for w in warnings))
        self.assertFalse(any("noisy cell baseline/syscall" in w for w in warnings))
        # median of the baselines' coefficients of variation: 1/101 and 10/100
        self.assertAlmostEqual(doc["context"]["cloak_noise_floor"], round((1 / 101 + 0.1) / 2, 4), places=4)

    def test_debug_benchmark_library_is_a_warning(self):
        doc = sr.merge_launches([launch(cell("baseline/syscall", [70, 71, 72]), library_build_type="debug")], RUN)
        self.assertTrue(any("built as debug" in w for w in doc["context"]["cloak_warnings"]))

    def test_a_launch_without_output_is_recorded(self):
        doc = sr.merge_launches([launch(cell("baseline/syscall", [70, 71, 72])),
                                 {"output": None, "record": {"program": "p", "exit_status": -9}}], RUN)
        self.assertEqual(doc["context"]["cloak_launches"][1]["cells"], [])


class StatsTest(unittest.TestCase):
    def test_spread(self):
        self.assertEqual(sr.spread([5.0]), 0.0)
        self.assertAlmostEqual(sr.spread([90, 100, 110]), 0.1)

    def test_noise_floor_needs_three_repetitions(self):
        self.assertIsNone(sr.noise_floor({"baseline/syscall": [1.0, 2.0]}))
        self.assertIsNone(sr.noise_floor({"cloak/x": [1.0, 2.0, 3.0]}))


class AtomicWriteTest(unittest.TestCase):
    def test_writes_and_replaces(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "r.json")
            sr.write_atomic(path, "one")
            sr.write_atomic(path, "two")
            with open(path) as f:
                self.assertEqual(f.read(), "two")
            self.assertEqual(os.listdir(d), ["r.json"])

    def test_failure_leaves_the_old_file_and_no_temporary(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "r.json")
            sr.write_atomic(path, "old")

            with self.assertRaises(TypeError):
                sr.write_atomic(path, object())  # cannot be written: fails mid-write
            with open(path) as f:
                self.assertEqual(f.read(), "old")
            self.assertEqual(os.listdir(d), ["r.json"])

    def test_killed_writer_never_leaves_a_torn_file(self):
        # A writer killed at any point leaves the old complete file (plus at most a hidden
        # temporary), never a half-written result under the real name.
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "r.json")
            sr.write_atomic(path, json.dumps({"n": 0}))
            script = textwrap.dedent("""
                import json, sys
                from cloakpy import suite_results as sr
                big = json.dumps({"n": 1, "pad": "x" * 20000000})
                while True:
                    sr.write_atomic(sys.argv[1], big)
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

    def test_launch_order_puts_the_headline_group_first(self):
        keys = [k for k, _ in run_suite.plan_launches(self.NAMES)]
        self.assertEqual(keys[0], ("check", "same"))
        self.assertEqual(keys[1], ("uds", "same", 64))
        self.assertEqual(keys[-1], ("model", 64))

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
        rows = {r["name"]: r for r in sr.summary_rows(self.rows())}
        static = rows[SAME % ("static", "na", "na")]
        self.assertAlmostEqual(static["over_none"], 8410 / 8350)
        self.assertAlmostEqual(static["over_floor"], 8410 / 8050)
        self.assertIsNone(rows["baseline/probe:kernel"]["over_none"])
        self.assertIn("identity mismatch", rows[SAME % ("dynamic", "generation", "none")]["failed"])

    def test_rows_follow_the_given_order(self):
        order = ["baseline/probe:kernel", SAME % ("none", "na", "na")]
        names = [r["name"] for r in sr.summary_rows(self.rows(), order)]
        self.assertEqual(names[:2], order)

    def test_rendered_table_names_every_cell(self):
        lines = sr.render_summary(sr.summary_rows(self.rows()))
        self.assertIn("÷ none", lines[0])
        self.assertTrue(any("FAILED: call 1: identity mismatch" in l for l in lines))
        self.assertEqual(len(lines), 2 + 6)

    def test_harness_cost_checks(self):
        checks = {(c["check"], c["place"]): c for c in sr.harness_cost_checks(self.rows())}
        # Judged on each cell's fastest repetition; the medians are quoted beside.
        none = checks[("none ÷ raw round trip", "same")]
        self.assertAlmostEqual(none["value"], 8300 / 8000)
        self.assertTrue(none["ok"])
        self.assertIn("medians 8350 ns vs 8050 ns", none["text"])
        self.assertTrue(checks[("static ÷ none", "same")]["ok"])
        dyn = checks[("dynamic − static (probe:kernel)", "same")]
        self.assertAlmostEqual(dyn["value"], 8790 - 8400)
        self.assertFalse(dyn["ok"])  # 390 ns > one probe (300 ns), no noise allowance given
        self.assertTrue(sr.harness_cost_checks(self.rows(), noise=0.02)[2]["ok"])

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
        checks = {(c["check"], c["place"]): c for c in sr.harness_cost_checks(rows)}
        self.assertAlmostEqual(checks[("none ÷ raw round trip", "cross")]["value"], 1.01)
        self.assertTrue(checks[("static ÷ none", "cross")]["ok"])
        self.assertAlmostEqual(checks[("dynamic − static (probe:kernel)", "cross")]["value"], 300)
        self.assertFalse(checks[("dynamic − static (probe:generation)", "cross")]["ok"])  # 10 ns > 2 ns
        self.assertIn("paired", checks[("static ÷ none", "cross")]["text"])

    def test_a_harness_slower_on_every_repetition_fails_its_check(self):
        rows = (cell("baseline/roundtrip/place:same/bytes:64", [8000, 9500, 8050])
                + cell(SAME % ("none", "na", "na"), [8500, 8600, 8700]))  # +6% at best
        check = sr.harness_cost_checks(rows)[0]
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

    def test_result_path_is_under_the_machine_id(self):
        with tempfile.TemporaryDirectory() as d:
            p = run_suite.result_path(d, "vm-0123abcd", 0, "abc1234-dirty", None)
            self.assertEqual(p, os.path.join(d, "vm-0123abcd", "19700101T000000Z-abc1234-dirty.json"))
            self.assertTrue(run_suite.result_path(d, "m", 0, "c", "reference").endswith("/reference-19700101T000000Z-c.json"))


if __name__ == "__main__":
    unittest.main()
