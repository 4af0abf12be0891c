"""Plots are written as PNG and SVG, are not blank, and each fits one screen; every variant has one
colour in every figure, every text is at least 9 pt, legends sit off the data, and a negative term
is drawn below zero."""

import collections
import os
import re
import shutil
import tempfile
import unittest

import matplotlib.colors
import matplotlib.patches
import matplotlib.text
from matplotlib.backends.backend_agg import FigureCanvasAgg

import helpers  # noqa: F401  (puts scripts/ on sys.path for cloakpy)
from helpers import ROOT, default_run_file, default_run_report, fixture, image_content, png_size
from cloakpy import load, plot

# The committed reference run (results/README.md): paired blocks, every matrix cell, two thread
# counts, and negative remainders in its decomposition.
CURRENT_REFERENCE = os.path.join(ROOT, "results", "vm-86725d37",
                                 "reference-20261203T105630Z-b709942.json")


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
                 "base.decomposition_all", "base.cost_per_call", "base.thread_throughput",
                 "base.thread_latency",
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
                self.assertLessEqual(w, round(plot.WIDTH_IN * plot.DPI), path)
                self.assertLessEqual(h, 1000 if ".headline" in path else 1200, path)

    def test_every_plot_has_title_units_and_a_caption_with_machine_and_commit(self):
        for stem in ("base.headline", "base.cost_model", "base.cost_per_call", "base.decomposition",
                     "base.decomposition_all", "base.thread_throughput", "base.thread_latency"):
            with open(self.path(stem, "svg")) as f:
                svg = f.read()
            # matplotlib draws text as glyph paths and keeps each string in a comment
            self.assertIn("Intel(R) Xeon(R) Platinum 8259CL", svg, stem)
            self.assertIn("[3f2a9c41] | commit v0.1.0-14-g3c9e2f1", svg, stem)
            self.assertIn("calls/s, all threads" if "throughput" in stem else "time per call (",
                          svg, stem)

    def test_thread_figures_keep_throughput_and_latency_apart(self):
        # Google Benchmark's real_time at T threads is 1 / (combined throughput): the throughput
        # figure shows calls per second, the latency figure T x real_time, never "time per call"
        # for the former
        with open(self.path("base.thread_throughput", "svg")) as f:
            throughput = f.read()
        with open(self.path("base.thread_latency", "svg")) as f:
            latency = f.read()
        self.assertIn("calls per second of all client threads together", throughput)
        self.assertNotIn("time per call", throughput)
        self.assertIn("mean time of one call as its client thread sees it", latency)
        self.assertNotIn("calls/s", latency)

    def test_machines_and_plain_figures_have_9_pt_text_and_legends_off_the_data(self):
        results = [load.load_result(fixture(n)) for n in
                   ("base.json", "other_machine.json", "plain_gbench.json")]
        figures = plot.plot_machines(results[:2]) + plot.plot_generic_pages(results[2])
        self.assertGreater(len(figures), 1)
        for n, fig in enumerate(figures):
            FigureCanvasAgg(fig)
            fig.draw_without_rendering()
            _assert_readable(self, fig, "machines or plain figure %d" % (n + 1))

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
                self.assertLessEqual(width, round(plot.WIDTH_IN * plot.DPI), w.png)
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


def _assert_readable(test, fig, where):
    """Every visible text of a drawn figure is at least 9 pt; its legends are figure legends that
    overlap no axes."""
    for t in fig.findobj(matplotlib.text.Text):
        if t.get_visible() and t.get_text().strip():
            test.assertGreaterEqual(t.get_fontsize(), plot.MIN_FONT_PT,
                                    "%s: %r" % (where, t.get_text()))
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        test.assertIsNone(ax.get_legend(), "%s: a legend inside the axes" % where)
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            if ax.get_visible() and ax.axison:
                test.assertFalse(box.overlaps(ax.get_window_extent(renderer)),
                                 "%s: the legend covers an axes" % where)


def _hex(c):
    return matplotlib.colors.to_hex(c, keep_alpha=False)


def _tagged(fig, role):
    """{variant: set of colours} of the artists plot.tag named in fig (data and legend entries)."""
    out = collections.defaultdict(set)
    for a in fig.findobj(lambda a: (a.get_gid() or "").startswith(role + "-")):
        key = a.get_gid()[len(role) + 1:].rsplit("-", 1)[0]
        if isinstance(a, matplotlib.patches.Patch):
            out[key].add(_hex(a.get_facecolor()) if a.get_fill() and role == "variant"
                         else _hex(a.get_edgecolor()))
        else:
            out[key].add(_hex(a.get_color()))
    return out


@unittest.skipUnless(os.path.isfile(CURRENT_REFERENCE), "the committed reference run is not there")
class ReferenceFigures(unittest.TestCase):
    """Every figure of the committed reference run, as report draws them, read back from the
    artists."""

    @classmethod
    def setUpClass(cls):
        result = load.load_result(CURRENT_REFERENCE)
        # the first page of each kind (the later ones are drawn by the same code), and two of
        # the appendix's decomposition: about 20 s of CPU
        cls.figures = [(kind, n, fig) for _, kind, figs in plot.figures_for(result, every=16)
                       for n, fig in enumerate(figs)
                       if n == 0 or (kind == "decomposition_all" and n < 2)]
        for _, _, fig in cls.figures:
            FigureCanvasAgg(fig)
            fig.draw_without_rendering()  # makes the tick labels, as saving does

    def test_every_kind_is_drawn(self):
        self.assertEqual({k for k, _, _ in self.figures},
                         {"latency", "headline", "cost_model", "decomposition", "cost_per_call",
                          "decomposition_all", "thread_throughput", "thread_latency"})

    def test_a_variant_has_one_colour_in_every_figure(self):
        seen = collections.defaultdict(set)   # variant -> colours
        where = collections.defaultdict(set)  # variant -> figure kinds
        for kind, _, fig in self.figures:
            for key, colours in _tagged(fig, "variant").items():
                seen[key] |= colours
                where[key].add(kind)
        for key, colours in seen.items():
            self.assertEqual(colours, {_hex(plot.color(key))}, key)
        # the headline variants are in the blocks' latency figure, the headline, the cost model,
        # every cell's bars and the thread figures
        for key in ("none", "static", "dynamic", "dynamic_lru"):
            self.assertLessEqual({"latency", "headline", "cost_model", "cost_per_call",
                                  "thread_throughput", "thread_latency"}, where[key], key)
        # the decomposition's terms are the blocks' baselines, in their colours
        for key in ("roundtrip", "switch", "new_context", "remainder"):
            self.assertIn("decomposition", where[key], key)
        self.assertIn("dynamic_generation", seen)

    def test_the_palette_gives_each_name_its_own_colour(self):
        for key in ("none", "none_aa", "static", "dynamic", "dynamic_lru", "roundtrip", "probe",
                    "switch", "new_context", "clock"):
            self.assertIn(key, plot.PALETTE)
        colours = [_hex(c) for c in plot.PALETTE.values()]
        self.assertEqual(len(colours), len(set(colours)))
        self.assertFalse(set(colours) & {_hex(c) for c in plot._MACHINE_COLORS})
        self.assertEqual(plot.color("a strategy added later"), plot.color("a strategy added later"))

    def test_every_text_is_at_least_9_pt_and_legends_are_off_the_data(self):
        for kind, n, fig in self.figures:
            self.assertTrue(fig.legends, kind)
            _assert_readable(self, fig, "%s page %d" % (kind, n + 1))

    def test_a_negative_remainder_is_drawn_below_zero_and_labelled(self):
        negatives = 0
        for kind, n, fig in self.figures:
            if not kind.startswith("decomposition"):
                continue
            for ax in fig.axes:
                labels = [t.get_text() for t in ax.texts]
                for a in ax.patches:
                    gid = a.get_gid() or ""
                    x0, x1 = sorted((a.get_x(), a.get_x() + a.get_width()))
                    if gid.startswith("negative-"):
                        negatives += 1
                        # left of zero, outlined and hatched: it cannot read as time added
                        self.assertLessEqual(x1, 1e-9, gid)
                        self.assertLess(x0, 0.0, gid)
                        self.assertTrue(a.get_hatch())
                        self.assertEqual(_hex(a.get_facecolor()), "#ffffff")
                    elif gid.startswith("variant-"):
                        # every term drawn as a bar is positive, right of zero
                        self.assertGreaterEqual(x0, -1e-9, gid)
                        self.assertGreater(a.get_width(), 0.0, gid)
                n_neg = sum(1 for a in ax.patches if (a.get_gid() or "").startswith("negative-"))
                self.assertEqual(n_neg, sum(1 for t in labels if re.match(r"^−\d", t)),
                                 "every negative bar has its signed value beside it")
        self.assertGreater(negatives, 5)  # the reference run has them at place:cross

    def test_the_value_labels_are_horizontal_where_they_fit(self):
        # the machines plot aside, a label is turned upright only when the bars are narrower
        for kind, n, fig in self.figures:
            if kind != "cost_per_call":
                continue
            for ax in fig.axes:
                for t in ax.texts:
                    if t.get_rotation() == 90:
                        bars = [p for p in ax.patches if (p.get_gid() or "").startswith("variant-")]
                        width_px = ax.transData.transform((bars[0].get_width(), 0))[0] - \
                            ax.transData.transform((0, 0))[0]
                        renderer = fig.canvas.get_renderer()
                        t.set_rotation(0)
                        self.assertGreater(t.get_window_extent(renderer).width, width_px)
                        t.set_rotation(90)


class Pieces(unittest.TestCase):
    def test_figures_are_as_wide_as_the_report_column(self):
        # report.html shows a figure at 100% (no scaling of its 9 pt text) in a column of
        # 1200 px less 2 x 16 px of padding, with a 1 px border
        from cloakpy import report
        self.assertIn("max-width:1200px", report._CSS)
        self.assertIn("padding:0 1em", report._CSS)
        self.assertLessEqual(round(plot.WIDTH_IN * plot.DPI) + 2, 1200 - 2 * 16)

    def test_file_stems_are_distinct(self):
        r = load.load_result(fixture("base.json"))
        self.assertEqual(plot.file_stems([r, r]), ["base", "base-2"])

    def test_variant_keys_of_matrix_cells(self):
        from cloakpy import names
        base = ("cloak/kernel/uds/auth:local/%s/switch/probe:%s/cache:%s/track:%s/prot:na/tickets:na/"
                "place:same/bytes:64/threads:1")
        for args, key in ((("none", "na", "na", "na"), "none"),
                          (("static", "na", "na", "na"), "static"),
                          (("dynamic", "kernel", "none", "identity"), "dynamic"),
                          (("dynamic", "kernel", "lru:4", "identity"), "dynamic_lru"),
                          (("dynamic", "generation", "none", "identity"), "dynamic_generation"),
                          (("dynamic", "generation", "lru:4", "identity"), "dynamic_generation_lru"),
                          (("dynamic", "kernel", "none", "token"), "dynamic_track_token"),
                          (("dynamic", "none", "per-message", "na"), "dynamic_per_message")):
            self.assertEqual(plot.variant_key(names.parse_name(base % args)), key)
            self.assertIn(key, plot.PALETTE)

    def test_negative_label_says_below_zero(self):
        self.assertEqual(plot.negative_label(-58000.0), "−58.0 µs (below zero)")
        self.assertEqual(plot.negative_label(-58000.0, wide=False), "−58.0 µs")

    def test_ratio_label_is_short(self):
        label = plot.ratio_label("cloak/kernel/uds/dynamic/switch/probe:kernel/cache:none/"
                                 "place:same/bytes:64/threads:1 ÷ none")
        self.assertIn("dynamic, kernel probe, cache none | switch", label)
        self.assertTrue(label.endswith("÷ none"))


if __name__ == "__main__":
    unittest.main()
