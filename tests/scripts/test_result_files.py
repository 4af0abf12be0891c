"""Result files every tool reads (issue 12): a bench program's own JSON loads in every cloakbench
reader, and a file merged by `run` is strict JSON that Google Benchmark's compare.py still reads."""

import copy
import json
import os
import tempfile
import unittest

import helpers  # noqa: F401  (puts scripts/ on sys.path for cloakpy)
from helpers import fixture, run_cli
import gbench_shape
from cloakpy import load, merge

MERGED_FIXTURES = ("base.json", "same_machine_rerun.json", "slower_one_cell.json", "noisy.json",
                   "failed_cell.json", "other_machine.json", "plain_gbench.json")


def read(name):
    with open(fixture(name), encoding="utf-8") as f:
        return f.read()


def raw_launches():
    """The raw fixture split into two launches, as `run` would have started them."""
    raw = json.loads(read("raw_bench.json"))
    rows = raw["benchmarks"]
    cut = next(i for i, e in enumerate(rows) if e["name"].startswith("cloak/"))

    def launch(part, n):
        return {"output": merge.LaunchOutput(copy.deepcopy(raw["context"]), copy.deepcopy(part)),
                "record": {"program": "build/release/bench/cloak-matrix", "argv": ["cloak-matrix"],
                           "started": "2024-06-01T10:00:00Z", "seconds": 1.0 + n, "exit_status": 0}}
    return [launch(rows[:cut], 0), launch(rows[cut:], 1)]


def merged_text():
    run = {"cloak_commit": "v0.1.0-14-g3c9e2f1", "cloak_date": "2024-06-01T10:00:00Z",
           "cloak_command": "scripts/cloakbench run -- --benchmark_min_warmup_time=0.1",
           "cloak_benchmark_args": ["--benchmark_min_warmup_time=0.1"]}
    return merge.dumps(merge.merge_launches(raw_launches(), run))


class BenchProgramOutput(unittest.TestCase):
    """What cloak-matrix writes itself: context keys as JSON text, bare NaN for 0/0."""

    def test_the_fixture_is_shaped_like_the_bench_output(self):
        text = read("raw_bench.json")
        self.assertIn("NaN", text)
        ctx = json.loads(text)["context"]
        self.assertEqual(ctx["cloak_schema_version"], "1")
        self.assertIsInstance(ctx["cloak_machine"], str)
        self.assertNotIn("cloak_commit", ctx)

    def test_loads_with_its_context_decoded(self):
        r = load.load_result(fixture("raw_bench.json"))
        self.assertEqual(r.schema_version, 1)
        self.assertEqual(r.machine["cores"], 1)
        self.assertEqual(r.context["cloak_cpus"], {"client": 0, "downstream_same": 0, "downstream_other": 1})
        self.assertEqual(r.warnings, ["virtualization: kvm guest, timings include hypervisor scheduling"])
        self.assertEqual(r.commit, "unknown")
        self.assertEqual(len(r.cells), 50)

    def test_compare_accepts_it_against_itself(self):
        p = run_cli("compare", fixture("raw_bench.json"), fixture("raw_bench.json"))
        self.assertEqual(p.returncode, 3, p.stderr)  # read and compared; 5 + 5 reps: inconclusive
        self.assertIn("NO REGRESSION", p.stdout)

    def test_compare_accepts_it_against_a_merged_file_of_the_same_machine(self):
        p = run_cli("compare", "--json", fixture("base.json"), fixture("raw_bench.json"))
        self.assertIn(p.returncode, (0, 1, 3), p.stderr)  # anything but 2, unusable input
        self.assertEqual(json.loads(p.stdout)["candidate"]["schema_version"], 1)

    def test_report_and_plot_read_it(self):
        with tempfile.TemporaryDirectory() as out:
            p = run_cli("report", fixture("raw_bench.json"), "-o", out)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertTrue(os.path.isfile(os.path.join(out, "report.md")))
            p = run_cli("plot", fixture("raw_bench.json"), "-o", out)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("raw_bench.cost_per_call.png", os.listdir(out))

    def test_google_benchmark_reads_its_own_output(self):
        doc = json.loads(read("raw_bench.json"))
        self.assertTrue(gbench_shape.difference_report(doc, doc))


class MergedFiles(unittest.TestCase):
    """What `run` writes: strict JSON, still Google Benchmark's shape."""

    @classmethod
    def setUpClass(cls):
        cls.text = merged_text()

    def test_merged_file_is_strict_json(self):
        doc = gbench_shape.strict_loads(self.text)
        self.assertNotIn("NaN", self.text)
        self.assertNotIn("Infinity", self.text)
        # 0/0 became null; the values around it are kept.
        cv = next(e for e in doc["benchmarks"] if e.get("aggregate_name") == "cv"
                  and e["name"].startswith("cloak/kernel/uds/none/steady/"))
        self.assertIsNone(cv["contexts_per_call"])
        self.assertEqual(cv["bytes"], 0.0)
        self.assertEqual(doc["context"]["cloak_schema_version"], 1)
        self.assertEqual(doc["context"]["cloak_benchmark_args"], ["--benchmark_min_warmup_time=0.1"])

    def test_merged_file_loads_in_every_reader(self):
        r = load.parse_result("merged.json", self.text)
        self.assertEqual(len(r.cells), 50)
        self.assertEqual(r.machine_hash, "3f2a9c41d07be815")
        self.assertIsNotNone(r.noise_floor)

    def test_google_benchmark_compare_reads_the_merged_file(self):
        doc = gbench_shape.strict_loads(self.text)
        report = gbench_shape.difference_report(doc, doc)
        names = {row["name"] for row in report}
        self.assertIn("baseline/syscall", names)
        self.assertIn("baseline/syscall_cv", names)
        self.assertTrue(all(m["time"] == 0.0 for row in report for m in row["measurements"]))
        base = json.loads(read("base.json"))
        self.assertTrue(gbench_shape.difference_report(base, doc))

    def test_committed_merged_fixtures_are_strict_and_google_benchmark_shaped(self):
        for name in MERGED_FIXTURES:
            with self.subTest(name=name):
                doc = gbench_shape.strict_loads(read(name))
                self.assertTrue(gbench_shape.difference_report(doc, doc))

    def test_the_shape_check_catches_what_compare_py_cannot_read(self):
        doc = gbench_shape.strict_loads(self.text)
        broken = copy.deepcopy(doc)
        broken["benchmarks"][0]["real_time"] = None
        with self.assertRaises(gbench_shape.NotReadable):
            gbench_shape.difference_report(broken, doc)
        broken = copy.deepcopy(doc)
        del broken["benchmarks"][3]["time_unit"]
        with self.assertRaises(gbench_shape.NotReadable):
            gbench_shape.difference_report(broken, doc)
        with self.assertRaises(gbench_shape.NotReadable):
            gbench_shape.strict_loads(read("raw_bench.json"))

    @unittest.skipUnless(os.environ.get("CLOAK_GBENCH_TOOLS"),
                         "set CLOAK_GBENCH_TOOLS to Google Benchmark's tools/ to run its compare.py")
    def test_real_compare_py_reads_the_merged_file(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "merged.json")
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.text)
            for other in (path, fixture("base.json")):
                p = gbench_shape.run_real_compare(other, path)
                self.assertEqual(p.returncode, 0, p.stdout[-2000:] + p.stderr[-2000:])
                self.assertIn("OVERALL_GEOMEAN", p.stdout)


if __name__ == "__main__":
    unittest.main()
