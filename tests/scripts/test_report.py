"""The design-review report: the headline table and its reading on the first screen, then the
harness-cost checks, then everything else (collapsible in the HTML); figures that fit a screen;
machine, warnings and provenance as before."""

import base64
import io
import os
import re
import shutil
import tempfile
import unittest

import helpers  # noqa: F401  (puts scripts/ on sys.path for cloakpy)
from helpers import REFERENCE, default_run_file, default_run_report, fixture, png_size
from cloakpy import compare, headline, load, report

HEADLINE_LINES = 60


def read(out, name):
    with open(os.path.join(out, name), encoding="utf-8") as f:
        return f.read()


def section(md, title):
    return md.split("## " + title, 1)[1].split("\n## ", 1)[0]


def headline_row_texts(result):
    """The Markdown rows the headline tables must show, as `| variant | pattern | time |`."""
    out = []
    for table in headline.tables(result):
        for r in table.rows:
            out.append("| %s | %s | %s |" % (r.variant, r.pattern, report.fmt.ns(r.median)))
    return out


class DefaultRunReport(unittest.TestCase):
    """A whole default run (auth:, track:, prot:, tickets: names, Kerberos cells, every:2/8/32)."""

    @classmethod
    def setUpClass(cls):
        cls.result = load.load_result(default_run_file())
        # report.write_report(the default run, every=16), drawn once for the modules that need it
        cls.out, cls.written, _ = default_run_report(every=16)
        cls.md = read(cls.out, "report.md")
        cls.html = read(cls.out, "report.html")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.out, ignore_errors=True)

    def test_first_60_lines_hold_the_headline_tables_and_their_reading(self):
        first = "\n".join(self.md.splitlines()[:HEADLINE_LINES])
        self.assertIn("## Headline", first)
        rows = headline_row_texts(self.result)
        self.assertEqual(len(rows), 36)  # local same, local cross, kerberos same: 4 variants x 3
        for row in rows:
            self.assertIn(row, first)
        self.assertRegex(first, r"- On this machine, with the local package, client and downstream "
                                r"on one CPU, .* a token change adds [0-9.]+ µs to the call, of "
                                r"which [0-9.]+ µs \(\d+%\) is a new security context")
        self.assertIn("with Kerberos", first)
        for title in ("### Local package, client and downstream on one CPU",
                      "### Local package, client and downstream on different CPUs",
                      "### Kerberos package (warm tickets), client and downstream on one CPU"):
            self.assertIn(title, first)

    def test_the_reading_says_what_the_table_says(self):
        table = headline.tables(self.result)[0]
        steady = table.row("dynamic, cache none", "steady")
        switch = table.row("dynamic, cache none", "switch")
        sentence = headline.sentence(table, None)
        self.assertIn("costs %s with a steady token" % report.fmt.ns(steady.median), sentence)
        self.assertIn("adds %s to the call" % report.fmt.ns(switch.median - steady.median), sentence)
        self.assertIn("%s (" % report.fmt.ns(switch.terms.new_context), sentence)

    def test_then_the_harness_checks_then_everything_else(self):
        order = [m.group(1) for m in re.finditer(r"^## (.*)$", self.md, re.M)]
        self.assertEqual(order[0], "Headline: what cloaking costs a downstream call")
        self.assertEqual(order[1], "Is the harness's own cost near zero?")
        for later in ("Warnings (2)", "Figures", "Cost per call, every cell",
                      "Where the time goes, every cell", "Machine", "Provenance",
                      "Appendix: figures of the full matrix"):
            self.assertIn(later, order[2:])

    def test_html_keeps_the_headline_open_and_collapses_the_rest(self):
        head, _, rest = self.html.partition("<details")
        self.assertIn("<table class=\"headline\">", head)
        self.assertIn("Is the harness", head)
        self.assertRegex(self.html, r"<details id=\"cost-per-call-every-cell\"><summary>")
        self.assertRegex(self.html, r"<details id=\"figures\" open><summary>")
        self.assertNotIn("<details id=\"provenance\" open", self.html)

    def test_cost_model_is_checked_against_every_n(self):
        model = section(self.md, "Cost model: one identity change every N calls")
        for n in ("2", "8", "32"):
            self.assertRegex(model, r"\| local, client and downstream on one CPU \| dynamic, cache "
                                    r"none \| %s \| [0-9.]+ µs .*\| [+-][0-9.]+%% \|" % n)
        self.assertIn("| Kerberos, client and downstream on one CPU | dynamic, cache lru | 32 |", model)
        self.assertIn("median error", model)

    def test_every_n_evaluates_the_model_for_the_reader(self):
        mine = section(self.md, "At one identity change every 16 calls")
        self.assertIn("| local, client and downstream on one CPU | dynamic, cache none |", mine)
        self.assertIn("not measured", mine)  # the run has no every:16 cell

    def test_figures_fit_one_screen_and_the_headline_is_first(self):
        pngs = [p for p in self.written if p.endswith(".png")]
        self.assertTrue(pngs)
        for path in pngs:
            w, h = png_size(path)
            self.assertLessEqual(w, 1600, path)
            self.assertLessEqual(h, 1200, path)
        main = section(self.md, "Figures")
        links = re.findall(r"!\[([^]]*)\]\(([^)]+)\)", main)
        self.assertTrue(links[0][1].endswith(".headline.png"), links)
        self.assertLessEqual(png_size(os.path.join(self.out, links[0][1]))[1], 1000)
        self.assertTrue(any(".decomposition.png" in p for _, p in links))
        appendix = section(self.md, "Appendix: figures of the full matrix")
        self.assertIn(".cost_per_call.png", appendix)
        self.assertIn(".decomposition_all.png", appendix)

    def test_markdown_links_every_figure_next_to_it(self):
        links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", self.md)
        self.assertEqual(len(links), sum(1 for p in self.written if p.endswith(".png")))
        for link in links:
            self.assertTrue(os.path.isfile(os.path.join(self.out, link)), link)

    def test_html_is_self_contained_with_real_images(self):
        import matplotlib.image
        self.assertNotRegex(self.html, r"(src|href)=\"(?!data:|#)")
        images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", self.html)
        self.assertEqual(len(images), sum(1 for p in self.written if p.endswith(".png")))
        img = matplotlib.image.imread(io.BytesIO(base64.b64decode(images[0])), format="png")
        self.assertGreater(img[..., :3].std(), 0.05)


@unittest.skipUnless(os.path.isfile(REFERENCE), "the committed reference run is not there")
class ReferenceRunReport(unittest.TestCase):
    """The committed reference (names from before the Kerberos cells) gets the same layout."""

    def test_first_60_lines_hold_the_headline(self):
        result = load.load_result(REFERENCE)
        blocks = report.build_blocks(result)
        md = report.render_markdown(blocks, os.path.dirname(REFERENCE))
        first = "\n".join(md.splitlines()[:HEADLINE_LINES])
        rows = headline_row_texts(result)
        self.assertEqual(len(rows), 24)  # local same and cross
        for row in rows:
            self.assertIn(row, first)
        self.assertIn("- On this machine, with the local package", first)
        # its run recorded spread as a coefficient of variation; the report says it recomputes
        self.assertIn("coefficient of variation (an older cloakbench)", md)


class ReportWithBaseline(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.out = tempfile.mkdtemp(prefix="cloakbench-report-")
        cls.result = load.load_result(fixture("failed_cell.json"))
        cls.written = report.write_report(cls.result, cls.out,
                                          baseline=load.load_result(fixture("base.json")))
        cls.md = read(cls.out, "report.md")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.out, ignore_errors=True)

    def test_key_table_overhead_and_decomposition(self):
        self.assertIn("## Cost per call, every cell", self.md)
        self.assertIn("vs no cloaking", self.md)
        self.assertIn("## Where the time goes, every cell", self.md)
        self.assertIn("| dynamic, kernel probe, cache none \\| switch |", self.md)

    def test_a_failed_headline_cell_says_so(self):
        self.assertRegex(section(self.md, "Headline"), r"\| dynamic, cache none \| reimpersonate "
                                                      r"\| [0-9.]+ µs")
        self.assertIn("failed cells (no time reported)", self.md)

    def test_every_run_warning_is_listed(self):
        for warning in self.result.warnings:
            self.assertIn("- run: " + warning, self.md)

    def test_harness_cost_checks_are_stated_with_their_limits(self):
        checks = section(self.md, "Is the harness's own cost near zero?")
        self.assertRegex(checks, r"\*\*(ok|OVER)\*\* place:same: none .* vs raw round trip")
        self.assertIn("(limit ±2%)", checks)

    def test_machine_and_provenance(self):
        self.assertIn("| machine hash | 3f2a9c41d07be815 |", self.md)
        self.assertIn("| command | scripts/cloakbench run --repetitions 5 |", self.md)
        self.assertIn("git checkout a7710de && scripts/cloakbench run --repetitions 5", self.md)
        self.assertIn("--benchmark_filter=", self.md)
        self.assertIn("result file sha256", self.md)

    def test_the_comparison_opens_with_the_headline_cells(self):
        summary = section(self.md, "Compared with the baseline: headline cells side by side")
        self.assertIn("| package, placement | cloaking | token pattern | baseline | candidate |",
                      summary)
        self.assertIn("| local, same | dynamic, cache none | switch |", summary)
        every = section(self.md, "Compared with the baseline, every cell")
        self.assertIn("| failed |", every)


class NoisyCells(unittest.TestCase):
    def test_counted_up_front_by_the_one_spread_and_listed_in_the_appendix(self):
        result = load.load_result(fixture("noisy.json"))
        recorded = ["noisy cell baseline/syscall: coefficient of variation 6.0% over 5 repetitions"]
        result.context["cloak_warnings"] = list(result.warnings) + recorded
        md = report.render_markdown(report.build_blocks(result), tempfile.gettempdir())
        warnings = section(md, "Warnings")
        noisy = report.noisy_cells(result)
        self.assertTrue(noisy)
        self.assertIn("%d cells have a spread above ±5%% (half the interquartile range" % len(noisy),
                      warnings)
        self.assertIn("coefficient of variation (an older cloakbench)", warnings)
        self.assertNotIn("noisy cell baseline/syscall", warnings)
        appendix = section(md, "Appendix: noisy cells")
        self.assertIn("- " + recorded[0], appendix)
        cell, spread = noisy[0]
        self.assertIn("| %s | ±%s |" % (cell.name, report.fmt.percent(spread, signed=False)),
                      appendix)


class OneSpread(unittest.TestCase):
    def test_console_report_and_run_warnings_say_the_same_spread(self):
        from cloakpy import merge, stats, summary
        result = load.load_result(fixture("noisy.json"))
        name = "cloak/kernel/uds/dynamic/switch/probe:kernel/cache:none/place:same/bytes:64/threads:1"
        spread = stats.relative_spread(result.cells[name].samples)
        row = next(r for r in summary.summary_rows(result) if r["name"] == name)
        self.assertEqual(row["spread"], spread)
        md = report.render_markdown(report.build_blocks(result), tempfile.gettempdir())
        shown = "±" + report.fmt.percent(spread, signed=False)
        self.assertIn("| dynamic | kernel | none | switch | %s | %s |" % (
            report.fmt.ns(report.median(result.cells[name].samples)), shown), md)
        self.assertIn("| %s | %s |" % (name, shown), section(md, "Appendix: noisy cells"))
        warning = next(w for w in merge.noisy_cell_warnings(result.cells) if name in w)
        self.assertIn("spread ±%.1f%%" % (spread * 100), warning)


class ReportOfOtherFiles(unittest.TestCase):
    def test_plain_google_benchmark_file(self):
        with tempfile.TemporaryDirectory() as out:
            report.write_report(load.load_result(fixture("plain_gbench.json")), out)
            md = read(out, "report.md")
            self.assertIn("not a cloakbench file", md)
            self.assertIn("| BM_memcpy/64 |", md)
            self.assertIn("cannot be reproduced", md)
            self.assertIn("<details id=\"benchmarks\" open>", read(out, "report.html"))

    def test_baseline_from_another_machine_opens_with_the_ratios_side_by_side(self):
        result = load.load_result(fixture("other_machine.json"))
        baseline = load.load_result(fixture("base.json"))
        with tempfile.TemporaryDirectory() as out:
            with self.assertRaises(compare.CompareRefused):
                report.write_report(result, out, baseline=baseline)
            written = report.write_report(result, out, baseline=baseline,
                                          compare_options={"cross_machine": True})
            self.assertTrue(any("machines.same_run_ratios.headline.png" in p for p in written))
            self.assertTrue(any(p.endswith("machines.same_run_ratios.png") for p in written))
            md = read(out, "report.md")
            summary = section(md, "Compared with the baseline: headline ratios side by side")
            self.assertIn("× none: baseline", summary)
            self.assertRegex(summary, r"Of \d+ headline ratios, \d+ agree within the noise")
            self.assertLess(md.index("headline ratios side by side"),
                            md.index("Compared with the baseline, every cell"))

    def test_reproduce_command_from_git_describe(self):
        r = load.load_result(fixture("base.json"))
        self.assertEqual(report.reproduce_command(r),
                         "git checkout 3c9e2f1 && scripts/cloakbench run --repetitions 5")


if __name__ == "__main__":
    unittest.main()
