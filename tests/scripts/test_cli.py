"""The command line end to end, as `scripts/cloakbench` runs it, with /usr/bin/python3."""

import json
import os
import tempfile
import unittest

import helpers  # noqa: F401  (puts scripts/ on sys.path for cloakpy)
from helpers import fixture, run_cli


SLOWER_CELLS = "^cloak/kernel/uds/dynamic/switch/"


class CompareCommand(unittest.TestCase):
    def test_same_file_with_five_repetitions_is_inconclusive_exit_3(self):
        p = run_cli("compare", fixture("base.json"), fixture("base.json"))
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn("NOT A PASS", p.stdout)
        self.assertIn("| inconclusive | 50 |", p.stdout)

    def test_one_regressed_cell_exits_1(self):
        p = run_cli("compare", "--cells", SLOWER_CELLS, fixture("base.json"),
                    fixture("slower_one_cell.json"))
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("| regressed |", p.stdout)

    def test_json_output(self):
        p = run_cli("compare", "--json", "--cells", SLOWER_CELLS, fixture("base.json"),
                    fixture("slower_one_cell.json"))
        self.assertEqual(p.returncode, 1, p.stderr)
        data = json.loads(p.stdout)
        self.assertEqual(data["counts"]["regressed"], 1)
        self.assertEqual(data["mode"], "absolute")
        self.assertEqual(data["cells_pattern"], SLOWER_CELLS)

    def test_a_bad_cells_pattern_is_bad_usage(self):
        p = run_cli("compare", "--cells", "(", fixture("base.json"), fixture("base.json"))
        self.assertEqual(p.returncode, 2)
        self.assertIn("regular expression", p.stderr)

    def test_noisy_pair_is_inconclusive(self):
        p = run_cli("compare", fixture("base.json"), fixture("noisy.json"))
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn("inconclusive", p.stdout)
        self.assertIn("more repetitions", p.stdout)
        p = run_cli("compare", "--fail-on-inconclusive", fixture("base.json"), fixture("noisy.json"))
        self.assertEqual(p.returncode, 1)

    def test_failed_candidate_cell_exits_1(self):
        p = run_cli("compare", fixture("base.json"), fixture("failed_cell.json"))
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("| failed |", p.stdout)

    def test_other_machine_needs_cross_machine(self):
        p = run_cli("compare", fixture("base.json"), fixture("other_machine.json"))
        self.assertEqual(p.returncode, 2)
        self.assertIn("--cross-machine", p.stderr)
        p = run_cli("compare", "--cross-machine", fixture("base.json"), fixture("other_machine.json"))
        self.assertEqual(p.returncode, 3, p.stderr)  # 5 + 5 repetitions: inconclusive, but compared
        self.assertIn("cross-machine", p.stdout)

    def test_min_effect_option(self):
        p = run_cli("compare", "--min-effect", "0.5", "--json", "--cells", SLOWER_CELLS,
                    fixture("base.json"), fixture("slower_one_cell.json"))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["min_effect"], 0.5)


class UnusableInput(unittest.TestCase):
    def assert_one_line_error(self, p):
        self.assertEqual(p.returncode, 2)
        self.assertNotIn("Traceback", p.stderr)
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertTrue(lines[0].startswith("cloakbench: error: "), lines[0])

    def test_each_bad_input_exits_2_with_one_line(self):
        for bad in ("does_not_exist.json", "not_json.txt", "wrong_schema.json", "no_benchmarks.json"):
            with self.subTest(bad=bad):
                self.assert_one_line_error(run_cli("compare", fixture("base.json"), fixture(bad)))
                self.assert_one_line_error(run_cli("compare", fixture(bad), fixture("base.json")))
        with tempfile.TemporaryDirectory() as out:
            self.assert_one_line_error(run_cli("plot", fixture("not_json.txt"), "-o", out))
            self.assert_one_line_error(run_cli("report", fixture("wrong_schema.json"), "-o", out))
            self.assert_one_line_error(run_cli("report", fixture("base.json"), "--baseline",
                                               fixture("no_benchmarks.json"), "-o", out))

    def test_bad_usage_prints_usage_and_exits_2(self):
        for args in ((), ("compare", fixture("base.json")), ("frobnicate",),
                     ("report", fixture("base.json")), ("compare", "--min-effect", "lots",
                                                        fixture("base.json"), fixture("base.json"))):
            with self.subTest(args=args):
                p = run_cli(*args)
                self.assertEqual(p.returncode, 2)
                self.assertIn("usage: cloakbench", p.stderr)
                self.assertNotIn("Traceback", p.stderr)


class PlotAndReportCommands(unittest.TestCase):
    def test_plot_writes_png_and_svg(self):
        with tempfile.TemporaryDirectory() as out:
            p = run_cli("plot", fixture("base.json"), fixture("other_machine.json"), "-o", out)
            self.assertEqual(p.returncode, 0, p.stderr)
            files = set(os.listdir(out))
            for stem in ("base.cost_per_call", "base.decomposition", "base.thread_throughput",
                         "other_machine.cost_per_call", "machines.same_run_ratios"):
                self.assertIn(stem + ".png", files)
                self.assertIn(stem + ".svg", files)

    def test_report_writes_markdown_and_html(self):
        with tempfile.TemporaryDirectory() as out:
            p = run_cli("report", fixture("slower_one_cell.json"), "--baseline",
                        fixture("base.json"), "-o", out)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertTrue(os.path.isfile(os.path.join(out, "report.md")))
            with open(os.path.join(out, "report.html"), encoding="utf-8") as f:
                self.assertIn("data:image/png;base64,", f.read())


if __name__ == "__main__":
    unittest.main()
