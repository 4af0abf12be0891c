"""Plots are written as PNG and SVG, are not blank, and each fits one screen."""

import os
import shutil
import tempfile
import unittest

import helpers  # noqa: F401  (puts scripts/ on sys.path for cloakpy)
from helpers import default_run_file, default_run_report, fixture, image_content, png_size
from cloakpy import load, plot


class Plots(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.out = tempfile.mkdtemp(prefix="cloakbench-plot-")
        results = [load.load_result(fixture(n)) for n in
                   ("base.json", "other_machine.json", "plain_gbench.json")]
        cls.written, cls.notes = plot.write_plots(results, cls.out)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.out, ignore_errors=True)

    def path(self, stem, ext="png"):
        return os.path.join(self.out, "%s.%s" % (stem, ext))

    def test_every_plot_kind_is_written_in_both_formats(self):
        stems = ["base.headline", "base.cost_model", "base.decomposition",
                 "base.decomposition_all", "base.cost_per_call", "base.thread_scaling",
                 "other_machine.cost_per_call", "plain_gbench.cost_per_call",
                 plot.MACHINES_STEM]
        for stem in stems:
            for ext in ("png", "svg"):
                self.assertIn(self.path(stem, ext), self.written)
                self.assertGreater(os.path.getsize(self.path(stem, ext)), 1000)
            with open(self.path(stem, "svg")) as f:
                self.assertIn("<svg", f.read(2000))

    def test_images_are_not_blank(self):
        for path in self.written:
            if path.endswith(".png"):
                drawn, std = image_content(path)
                self.assertGreater(drawn, 0.03, path)
                self.assertGreater(std, 0.05, path)

    def test_plain_files_get_only_the_generic_plot(self):
        self.assertFalse(os.path.exists(self.path("plain_gbench.decomposition")))
        self.assertFalse(os.path.exists(self.path("plain_gbench.headline")))

    def test_every_figure_fits_one_screen(self):
        for path in self.written:
            if path.endswith(".png"):
                w, h = png_size(path)
                self.assertLessEqual(w, 1600, path)
                self.assertLessEqual(h, 1000 if ".headline" in path else 1200, path)

    def test_every_plot_has_title_units_and_a_caption_with_machine_and_commit(self):
        for stem in ("base.headline", "base.cost_model", "base.cost_per_call", "base.decomposition",
                     "base.decomposition_all", "base.thread_scaling"):
            with open(self.path(stem, "svg")) as f:
                svg = f.read()
            # matplotlib draws text as glyph paths and keeps each string in a comment
            self.assertIn("Intel(R) Xeon(R) Platinum 8259CL", svg, stem)
            self.assertIn("[3f2a9c41] | commit v0.1.0-14-g3c9e2f1", svg, stem)
            self.assertIn("time per call (", svg, stem)

    def test_one_file_has_no_machines_plot(self):
        with tempfile.TemporaryDirectory() as out:
            written, notes = plot.write_plots([load.load_result(fixture("base.json"))], out)
            self.assertFalse(any(plot.MACHINES_STEM in p for p in written))


class WholeDefaultRun(unittest.TestCase):
    """A default run's full matrix is split into pages, none taller than a screen."""

    def test_pages_fit_and_the_headline_comes_first(self):
        # plot.write_figures(the default run, every=16) as report.write_report calls it, drawn once
        # for the modules that need it
        out, _, figures = default_run_report(every=16)
        try:
            kinds = [(w.section, w.kind) for w in figures]
            self.assertEqual(kinds[0], (plot.MAIN, "headline"))
            self.assertEqual([k for s, k in kinds if s == plot.MAIN],
                             ["headline", "cost_model", "decomposition"])
            self.assertGreater(sum(1 for _, k in kinds if k == "decomposition_all"), 1)
            for w in figures:
                width, height = png_size(w.png)
                self.assertLessEqual(width, 1600, w.png)
                self.assertLessEqual(height, 1000 if w.kind == "headline" else 1200, w.png)
                drawn, std = image_content(w.png)
                self.assertGreater(drawn, 0.03, w.png)
            self.assertIn("page 2 of", [w for w in figures if w.kind == "decomposition_all"][1].title)
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def test_the_headline_figure_shows_every_headline_table_with_units_and_caption(self):
        result = load.load_result(default_run_file())
        with tempfile.TemporaryDirectory() as out:
            png, svg = plot.save(plot.plot_headline(result), out, "h")
            with open(svg) as f:
                text = f.read()
            for words in ("Kerberos package (warm tickets)", "time per call (µs)",
                          "95% interval", "commit v0.2.0-3-g4e5f6a7"):
                self.assertIn(words, text)


class Pieces(unittest.TestCase):
    def test_file_stems_are_distinct(self):
        r = load.load_result(fixture("base.json"))
        self.assertEqual(plot.file_stems([r, r]), ["base", "base-2"])

    def test_ratio_label_is_short(self):
        label = plot.ratio_label("cloak/kernel/uds/dynamic/switch/probe:kernel/cache:none/"
                                 "place:same/bytes:64/threads:1 ÷ none")
        self.assertIn("dynamic, kernel probe, cache none | switch", label)
        self.assertTrue(label.endswith("÷ none"))


if __name__ == "__main__":
    unittest.main()
