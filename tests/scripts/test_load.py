"""Result files load into cells; files that cannot be used say why in one line."""

import json
import os
import tempfile
import unittest

import helpers  # noqa: F401  (puts scripts/ on sys.path for cloakpy)
from helpers import fixture
from cloakpy import load

GB_ENTRY_KEYS = ("name", "run_name", "run_type", "repetitions", "threads", "iterations",
                 "real_time", "cpu_time", "time_unit")
GB_CONTEXT_KEYS = ("date", "host_name", "executable", "num_cpus", "mhz_per_cpu",
                   "cpu_scaling_enabled", "caches", "load_avg", "library_build_type")


class OwnFiles(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.result = load.load_result(fixture("base.json"))

    def test_every_cell_keeps_its_five_repetitions_not_the_aggregates(self):
        self.assertEqual(len(self.result.cells), 50)
        for cell in self.result.cells.values():
            self.assertEqual(len(cell.samples), 5, cell.name)
            self.assertFalse(cell.from_aggregates)

    def test_context_fields(self):
        r = self.result
        self.assertEqual(r.machine_hash, "3f2a9c41d07be815")
        self.assertEqual(r.noise_floor, 0.03)
        self.assertEqual(r.command, "scripts/cloakbench run --repetitions 5")
        self.assertEqual(len(r.warnings), 2)
        self.assertIn("commit v0.1.0-14-g3c9e2f1", r.caption())

    def test_counters_are_read_per_cell(self):
        cell = self.result.cells["cloak/kernel/uds/dynamic/switch/probe:kernel/cache:none/"
                                 "place:same/bytes:64/threads:1"]
        self.assertEqual(cell.counter("contexts_per_call"), 1.0)
        self.assertEqual(cell.counter("probes_per_call"), 1.0)

    def test_failed_cell_is_kept_as_failed(self):
        r = load.load_result(fixture("failed_cell.json"))
        failed = [c for c in r.cells.values() if c.failed]
        self.assertEqual(len(failed), 1)
        self.assertIn("identity mismatch", failed[0].error_message)
        self.assertEqual(failed[0].samples, [])

    def test_files_stay_google_benchmark_shaped(self):
        """What Google Benchmark's own tools read is still there, unchanged in meaning."""
        for name in ("base.json", "slower_one_cell.json", "other_machine.json"):
            with open(fixture(name)) as f:
                data = json.load(f)
            for key in GB_CONTEXT_KEYS:
                self.assertIn(key, data["context"], name)
            for entry in data["benchmarks"]:
                for key in GB_ENTRY_KEYS:
                    self.assertIn(key, entry, entry["name"])
                self.assertIn(entry["run_type"], ("iteration", "aggregate"))
                if entry["run_type"] == "aggregate":
                    self.assertEqual(entry["name"], entry["run_name"] + "_" + entry["aggregate_name"])


class PlainGoogleBenchmark(unittest.TestCase):
    def test_loads_with_unknowns(self):
        r = load.load_result(fixture("plain_gbench.json"))
        self.assertFalse(r.is_cloakbench)
        self.assertEqual(r.machine_hash, "unknown")
        self.assertEqual(r.commit, "unknown")
        self.assertIsNone(r.noise_floor)
        self.assertEqual(set(r.cells), {"BM_memcpy/8", "BM_memcpy/64", "BM_memcpy/4096",
                                        "BM_StringCopy"})
        self.assertTrue(all(c.info.kind == "generic" for c in r.cells.values()))

    def test_time_units_become_nanoseconds(self):
        r = load.load_result(fixture("plain_gbench.json"))
        self.assertAlmostEqual(sum(r.cells["BM_memcpy/4096"].samples) / 3, 81.0, delta=2.0)

    def test_aggregates_only_file_uses_the_median_row(self):
        with open(fixture("plain_gbench.json")) as f:
            data = json.load(f)
        data["benchmarks"] = [e for e in data["benchmarks"] if e["run_type"] == "aggregate"]
        r = load.parse_result("aggregates.json", json.dumps(data))
        cell = r.cells["BM_StringCopy"]
        self.assertTrue(cell.from_aggregates)
        self.assertEqual(len(cell.samples), 1)

    def test_repeats_suffix_does_not_split_a_cell(self):
        entry = {"name": "BM_a/repeats:3", "run_name": "BM_a/repeats:3", "run_type": "iteration",
                 "repetitions": 3, "repetition_index": 0, "threads": 1, "iterations": 10,
                 "real_time": 2.0, "cpu_time": 2.0, "time_unit": "ms"}
        r = load.parse_result("x.json", json.dumps({"benchmarks": [entry, entry]}))
        self.assertEqual(list(r.cells), ["BM_a"])
        self.assertEqual(r.cells["BM_a"].samples, [2e6, 2e6])


class UnusableFiles(unittest.TestCase):
    def assert_refused(self, path, words):
        with self.assertRaises(load.LoadError) as ctx:
            load.load_result(path)
        message = str(ctx.exception)
        self.assertNotIn("\n", message)
        self.assertIn(words, message)

    def test_missing_file(self):
        self.assert_refused(fixture("does_not_exist.json"), "cannot read")

    def test_not_json(self):
        self.assert_refused(fixture("not_json.txt"), "is not JSON")

    def test_wrong_schema(self):
        self.assert_refused(fixture("wrong_schema.json"), "cloak_schema_version 99")

    def test_no_benchmarks(self):
        self.assert_refused(fixture("no_benchmarks.json"), "has no benchmarks")

    def test_other_shapes(self):
        cases = {"[1, 2]": "no \"benchmarks\" list",
                 '{"benchmarks": [{"name": "a", "run_type": "iteration"}]}': "no numeric real_time",
                 '{"benchmarks": [{"name": "a", "real_time": 1, "time_unit": "ps"}]}':
                     "unknown time_unit",
                 '{"benchmarks": [7]}': "has no name",
                 '{"context": 3, "benchmarks": []}': "not an object"}
        for text, words in cases.items():
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "bad.json")
                with open(path, "w") as f:
                    f.write(text)
                self.assert_refused(path, words)


if __name__ == "__main__":
    unittest.main()
