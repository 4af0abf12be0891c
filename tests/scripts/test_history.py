"""history: the headline ratios of every result file over time, per machine, and the change points
it finds: a step the detector must find, flat series it must not flag (the fixtures of
make_fixtures.history_fixtures: 12 commits on each of two machines)."""

import os
import random
import re
import shutil
import tempfile
import unittest

import helpers  # noqa: F401  (puts scripts/ on sys.path for cloakpy)
from helpers import FIXTURES, fixture, run_cli
import make_fixtures
from cloakpy import history

HISTORY = os.path.join(FIXTURES, "history")
VM, EPYC = "bench-vm-1-3f2a9c41", "epyc-runner-b71e0d5a"


def noisy(values, sigma, seed):
    rng = random.Random(seed)
    return [v * (1 + rng.gauss(0, sigma)) for v in values]


class Detector(unittest.TestCase):
    def test_a_step_is_found_where_it_is(self):
        values = noisy([1.0] * 7 + [1.2] * 7, 0.01, 1)
        found = history.detect({"s": values}, {"s": 0.02})["s"]
        self.assertEqual([cp.index for cp in found], [7])
        self.assertAlmostEqual(found[0].change, 0.2, delta=0.03)
        self.assertLess(found[0].p_value, 0.01)

    def test_flat_series_are_not_flagged(self):
        series = {i: noisy([1.0] * 14, 0.01, 100 + i) for i in range(40)}
        found = history.detect(series, {i: 0.02 for i in series})
        self.assertEqual({k: v for k, v in found.items() if v}, {})

    def test_a_significant_but_small_shift_is_not_a_change_point(self):
        values = [1.0, 1.001, 0.999, 1.0, 1.001, 0.999, 1.01, 1.011, 1.009, 1.01, 1.011, 1.009]
        self.assertLess(history.split_test(values)[1], 0.01)
        self.assertEqual(history.detect({"s": values}, {"s": 0.02})["s"], [])
        self.assertEqual([cp.index for cp in history.detect({"s": values}, {"s": 0.005})["s"]], [6])

    def test_a_change_that_comes_back_is_two_change_points(self):
        values = noisy([1.0] * 8 + [1.3] * 8 + [1.0] * 8, 0.01, 3)
        found = history.detect({"s": values}, {"s": 0.02})["s"]
        self.assertEqual([cp.index for cp in found], [8, 16])

    def test_too_short_to_test(self):
        self.assertIsNone(history.split_test([1, 2, 3, 4, 5]))
        self.assertEqual(history.detect({"s": [1, 1, 1, 2, 2]}, {"s": 0.02})["s"], [])

    def test_the_p_value_pays_for_searching_every_split(self):
        # the same data, the best split searched among 9 or fixed: searching gives a larger p
        values = noisy([1.0] * 6 + [1.03] * 6, 0.02, 5)
        split, p = history.split_test(values)
        self.assertGreaterEqual(p, 1.0 / (history.PERMUTATIONS + 1))
        self.assertLessEqual(p, 1.0)
        self.assertEqual(history.split_test(values), (split, p))  # seeded: the same every time

    def test_benjamini_hochberg(self):
        self.assertEqual(history.benjamini_hochberg([0.001, 0.04, 0.045, 0.5], 0.05), {0})
        self.assertEqual(history.benjamini_hochberg([0.001, 0.02, 0.03, 0.5], 0.05), {0, 1, 2})
        self.assertEqual(history.benjamini_hochberg([0.01, 0.02, 0.03, 0.04], 0.05), {0, 1, 2, 3})
        self.assertEqual(history.benjamini_hochberg([0.2, 0.5], 0.05), set())


class FixtureHistory(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.out = tempfile.mkdtemp(prefix="cloakbench-history-")
        cls.results = os.path.join(cls.out, "results")
        shutil.copytree(HISTORY, cls.results)
        with open(os.path.join(cls.results, VM, "notes.json"), "w") as f:
            f.write("{\"not\": \"a result\"}\n")
        # one run has its report next to it, as `run` writes it
        cls.with_report = sorted(os.listdir(os.path.join(cls.results, EPYC)))[0]
        report_dir = os.path.join(cls.results, EPYC, cls.with_report[:-len(".json")])
        os.makedirs(report_dir)
        with open(os.path.join(report_dir, "report.html"), "w") as f:
            f.write("<!DOCTYPE html><title>r</title>\n")
        cls.page_dir = os.path.join(cls.out, "page")
        os.makedirs(cls.page_dir)
        cls.written, cls.runs, cls.series, cls.skipped = history.write_history(
            [cls.results], cls.page_dir)
        with open(os.path.join(cls.page_dir, "history.html"), encoding="utf-8") as f:
            cls.html = f.read()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.out, ignore_errors=True)

    def test_every_run_of_both_machines_old_and_new_names(self):
        self.assertEqual(len(self.runs), 2 * make_fixtures.HISTORY_RUNS)
        self.assertEqual({r.result.machine_id for r in self.runs}, {VM, EPYC})
        vm_local = next(s for s in self.series if s.key == (VM, "local", "x_none"))
        self.assertEqual(len(vm_local.values), make_fixtures.HISTORY_RUNS)  # across the renaming
        vm_kerberos = next(s for s in self.series if s.key == (VM, "kerberos", "x_none"))
        self.assertEqual(len(vm_kerberos.values),
                         make_fixtures.HISTORY_RUNS - make_fixtures.HISTORY_OLD_NAMES)
        self.assertEqual([p for p, _ in self.skipped], [os.path.join(self.results, VM, "notes.json")])

    def test_the_step_is_found_at_its_commit_and_nothing_else_is_flagged(self):
        flagged = {s.key: s.change_points for s in self.series if s.change_points}
        self.assertEqual(list(flagged), [(VM, "local", "x_none")])
        (cp,) = flagged[(VM, "local", "x_none")]
        s = next(s for s in self.series if s.key == (VM, "local", "x_none"))
        self.assertEqual(cp.index, make_fixtures.HISTORY_STEP_RUN)
        self.assertEqual(s.runs[cp.index].result.commit,
                         "%07x" % (0x1a2b3c0 + 17 * make_fixtures.HISTORY_STEP_RUN))
        self.assertGreater(cp.change, 0.15)

    def test_the_page_is_self_contained_and_links_every_point(self):
        self.assertNotRegex(self.html, r"(src|href)=\"(https?:)?//")
        self.assertNotIn("<img", self.html)  # figures are inline SVG
        links = re.findall(r"<a href=\"([^\"]+)\"", self.html)
        svg_links = re.findall(r"<a xlink:href=\"([^\"]+)\"", self.html) or \
            re.findall(r"<a href=\"([^\"]+)\"[^>]*>\s*<path", self.html)
        self.assertGreaterEqual(len(svg_links), 2 * make_fixtures.HISTORY_RUNS)
        for link in set(links + svg_links):
            self.assertTrue(os.path.isfile(os.path.join(self.page_dir, link)), link)
        report = os.path.join(self.results, EPYC, self.with_report[:-len(".json")], "report.html")
        self.assertIn(os.path.relpath(report, self.page_dir), links)
        self.assertIn("Change points", self.html)
        self.assertIn("+2", self.html)  # the step, about +25%
        self.assertIn("Benjamini", self.html)

    def test_a_png_per_series_kind(self):
        pngs = [p for p in self.written if p.endswith(".png")]
        self.assertEqual(len(pngs), 6)  # local and kerberos x (× none, × transport, new context)
        for p in pngs:
            self.assertGreater(os.path.getsize(p), 5000)


class HistoryCommand(unittest.TestCase):
    def test_on_the_fixtures(self):
        with tempfile.TemporaryDirectory() as out:
            p = run_cli("history", HISTORY, "-o", out)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("32 runs on 2 machines, 1 change point\n", p.stderr)
            self.assertIn("change point: %s" % VM, p.stderr)
            self.assertTrue(os.path.isfile(os.path.join(out, "history.html")))

    def test_default_directory_is_the_repositorys_results(self):
        with tempfile.TemporaryDirectory() as repo:
            shutil.copytree(helpers.SCRIPTS, os.path.join(repo, "scripts"),
                            ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copytree(os.path.join(HISTORY, EPYC), os.path.join(repo, "results", EPYC))
            env = dict(os.environ, PYTHONPATH=os.path.join(repo, "scripts"), MPLBACKEND="Agg")
            import subprocess
            p = subprocess.run([helpers.PYTHON, "-m", "cloakpy.cli", "history"], env=env,
                               cwd=tempfile.gettempdir(), capture_output=True, text=True,
                               timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertTrue(os.path.isfile(os.path.join(repo, "results", "history.html")))
            self.assertIn("16 runs on 1 machine, 0 change points", p.stderr)

    def test_a_missing_directory_is_one_line(self):
        with tempfile.TemporaryDirectory() as out:
            p = run_cli("history", os.path.join(out, "nowhere"), "-o", out)
            self.assertEqual(p.returncode, 2)
            self.assertEqual(p.stderr.strip().splitlines(),
                             ["cloakbench: error: no such directory or file: %s"
                              % os.path.join(out, "nowhere")])

    def test_files_that_are_not_results_are_skipped_with_a_reason(self):
        with tempfile.TemporaryDirectory() as out:
            p = run_cli("history", fixture("not_json.txt"), fixture("plain_gbench.json"), "-o", out)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("not a cloakbench result", p.stderr)
            self.assertIn("0 runs on 0 machines", p.stderr)


if __name__ == "__main__":
    unittest.main()
