"""The design-review report carries the key table, plots, machine, warnings and provenance."""

import base64
import io
import os
import re
import shutil
import tempfile
import unittest

import helpers  # noqa: F401  (puts scripts/ on sys.path for cloakpy)
from helpers import fixture
from cloakpy import compare, load, report


class ReportWithBaseline(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.out = tempfile.mkdtemp(prefix="cloakbench-report-")
        cls.result = load.load_result(fixture("failed_cell.json"))
        cls.written = report.write_report(cls.result, cls.out,
                                          baseline=load.load_result(fixture("base.json")))
        with open(os.path.join(cls.out, "report.md"), encoding="utf-8") as f:
            cls.md = f.read()
        with open(os.path.join(cls.out, "report.html"), encoding="utf-8") as f:
            cls.html = f.read()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.out, ignore_errors=True)

    def test_key_table_overhead_and_decomposition(self):
        self.assertIn("## Cost per call", self.md)
        self.assertIn("vs no cloaking", self.md)
        self.assertIn("## Where the time goes", self.md)
        self.assertIn("| dynamic, kernel probe, cache none \\| switch |", self.md)

    def test_every_run_warning_is_listed(self):
        for warning in self.result.warnings:
            self.assertIn("- run: " + warning, self.md)

    def test_harness_cost_checks_are_stated_with_their_limits(self):
        section = self.md.split("## Is the harness's own cost near zero?", 1)[1].split("\n## ", 1)[0]
        self.assertRegex(section, r"\*\*(ok|OVER)\*\* place:same: none .* vs raw round trip")
        self.assertIn("(limit ±2%)", section)

    def test_noisy_cells_are_counted_up_front_and_listed_in_the_appendix(self):
        result = load.load_result(fixture("base.json"))
        noisy = ["noisy cell baseline/syscall: coefficient of variation 6.0% over 5 repetitions",
                 "noisy cell baseline/switch: coefficient of variation 7.0% over 5 repetitions"]
        result.context["cloak_warnings"] = list(result.warnings) + noisy
        md = report.render_markdown(report.build_blocks(result, []), self.out)
        warnings_section = md.split("## Warnings", 1)[1].split("\n## ", 1)[0]
        self.assertIn("2 cells have a spread above 5%", warnings_section)
        self.assertNotIn("noisy cell baseline/syscall", warnings_section)
        appendix = md.split("## Appendix: noisy cells", 1)[1]
        for warning in noisy:
            self.assertIn("- " + warning, appendix)

    def test_machine_and_provenance(self):
        self.assertIn("| machine hash | 3f2a9c41d07be815 |", self.md)
        self.assertIn("| command | scripts/cloakbench run --repetitions 5 |", self.md)
        self.assertIn("git checkout a7710de && scripts/cloakbench run --repetitions 5", self.md)
        self.assertIn("--benchmark_filter=", self.md)
        self.assertIn("result file sha256", self.md)

    def test_compare_table_is_included(self):
        self.assertIn("## Compared with the baseline", self.md)
        self.assertIn("| failed |", self.md)
        self.assertIn("REGRESSED", self.md)

    def test_markdown_links_the_plots_next_to_it(self):
        links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", self.md)
        self.assertEqual(len(links), 3)
        for link in links:
            self.assertTrue(os.path.isfile(os.path.join(self.out, link)), link)

    def test_html_is_self_contained_with_real_images(self):
        import matplotlib.image
        self.assertNotRegex(self.html, r"src=\"(?!data:)")
        images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", self.html)
        self.assertEqual(len(images), 3)
        img = matplotlib.image.imread(io.BytesIO(base64.b64decode(images[0])), format="png")
        self.assertGreater(img[..., :3].std(), 0.05)
        self.assertIn("<table>", self.html)


class ReportOfOtherFiles(unittest.TestCase):
    def test_plain_google_benchmark_file(self):
        with tempfile.TemporaryDirectory() as out:
            report.write_report(load.load_result(fixture("plain_gbench.json")), out)
            with open(os.path.join(out, "report.md"), encoding="utf-8") as f:
                md = f.read()
            self.assertIn("not a cloakbench file", md)
            self.assertIn("| BM_memcpy/64 |", md)
            self.assertIn("cannot be reproduced", md)

    def test_baseline_from_another_machine_needs_cross_machine(self):
        result = load.load_result(fixture("other_machine.json"))
        baseline = load.load_result(fixture("base.json"))
        with tempfile.TemporaryDirectory() as out:
            with self.assertRaises(compare.CompareRefused):
                report.write_report(result, out, baseline=baseline)
            written = report.write_report(result, out, baseline=baseline,
                                          compare_options={"cross_machine": True})
            self.assertTrue(any("machines.same_run_ratios.png" in p for p in written))

    def test_reproduce_command_from_git_describe(self):
        r = load.load_result(fixture("base.json"))
        self.assertEqual(report.reproduce_command(r),
                         "git checkout 3c9e2f1 && scripts/cloakbench run --repetitions 5")


if __name__ == "__main__":
    unittest.main()
