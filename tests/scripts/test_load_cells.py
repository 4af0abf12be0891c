"""The load cells (issue 19) in the scripts: their names parse, the cost model takes a hit rate, and
the report's "Under load" section renders from a small load result."""

import json
import os
import shutil
import tempfile
import unittest

import helpers  # noqa: F401  (puts scripts/ on sys.path for cloakpy)
import make_fixtures
from cloakpy import costmodel, load, names, plot, report, run_suite, summary

LOAD = ("load/kernel/uds/auth:%s/%s/clients:%d/pop:zipf:1/cache:%s/place:same/bytes:64/threads:1")


def load_name(auth, cloaking, cache, clients=10000):
    return LOAD % (auth, cloaking, clients, cache)


def twin(auth, pattern, cache):
    prot, tickets = ("none", "warm") if auth == "kerberos" else ("na", "na")
    return make_fixtures.new_cell_name("kernel", auth, "dynamic", pattern, "kernel", cache,
                                       "identity", prot, tickets)


# Per call: steady 10 µs, a cached change +2 µs, a new context +30 µs more (local).
STEADY, HIT, NEW = 10000.0, 2000.0, 30000.0


def load_document():
    """A small run --load result: local only, the model's matrix cells and five load cells whose
    times follow the model exactly (hit rates 0.3, 0.6, 0.9)."""
    doc = {"context": make_fixtures.context("abc1234", "2026-12-03T14:00:00Z", repetitions=3),
           "benchmarks": []}
    doc["context"]["cloak_load_seed"] = "7"
    cells = [(twin("local", "steady", "lru:4"), STEADY, {}),
             (twin("local", "switch", "lru:4"), STEADY + HIT, {}),
             (twin("local", "switch", "none"), STEADY + HIT + NEW, {})]
    changes = 0.8
    for cloaking, cache, hit_rate in (("none", "na", 0.0), ("static", "na", 0.0),
                                      ("dynamic", "lru:16", 0.3), ("dynamic", "lru:256", 0.6),
                                      ("dynamic", "lru:2000", 0.9)):
        counters = {"hit_rate": hit_rate, "changes_per_call": changes, "mismatches": 0.0,
                    "contexts_per_call": changes * (1 - hit_rate) if cloaking == "dynamic" else 0.0,
                    "cache_hits_per_call": changes * hit_rate, "evictions_per_call": 0.0,
                    "p99_ns": 50000.0, "bytes": 64.0}
        t = STEADY
        if cloaking == "dynamic":
            t = costmodel.predict_under_load(STEADY, HIT, NEW, changes, hit_rate)
            counters.update({"bytes_per_context_middle": 1536.0,
                             "bytes_per_context_downstream": 4096.0, "contexts_cached": 16.0})
        cells.append((load_name("local", cloaking, cache), t, counters))
    for i, (name, t, counters) in enumerate(cells):
        doc["benchmarks"] += make_fixtures.entries(i, name, [t * 0.99, t, t * 1.01], 0.5, counters, 1)
    return doc


class LoadNames(unittest.TestCase):
    def test_a_load_cell_name_says_its_population_and_cache(self):
        info = names.parse_name(load_name("kerberos", "dynamic", "lru:256"))
        self.assertEqual(info.kind, "load")
        self.assertTrue(info.is_load)
        self.assertFalse(info.is_cell)
        self.assertEqual((info.auth, info.cloaking, info.clients, info.pop, info.cache),
                         ("kerberos", "dynamic", 10000, "zipf:1", "lru:256"))
        self.assertEqual((info.prot, info.tickets, info.place, info.bytes, info.threads),
                         ("none", "warm", "same", 64, 1))

    def test_uniform_and_no_cloaking_parse(self):
        info = names.parse_name(
            "load/kernel/uds/auth:local/none/clients:1000/pop:uniform/cache:na/place:same/"
            "bytes:64/threads:1")
        self.assertEqual((info.kind, info.cloaking, info.pop, info.clients), ("load", "none",
                                                                              "uniform", 1000))

    def test_a_malformed_load_name_is_generic(self):
        self.assertEqual(names.parse_name("load/kernel/uds/auth:local/dynamic").kind, "generic")


class LoadCostModel(unittest.TestCase):
    def test_a_perfect_cache_costs_only_the_cached_change_and_no_cache_a_new_context(self):
        self.assertEqual(costmodel.predict_under_load(10.0, 2.0, 30.0, 1.0, 1.0), 12.0)
        self.assertEqual(costmodel.predict_under_load(10.0, 2.0, 30.0, 1.0, 0.0), 42.0)
        self.assertEqual(costmodel.predict_under_load(10.0, 2.0, 30.0, 0.5, 0.5), 18.5)

    def test_the_model_reads_the_runs_matrix_cells_and_the_cells_hit_rate(self):
        result = load.result_from_document("load.json", load_document())
        cell = result.cells[load_name("local", "dynamic", "lru:256")]
        p = costmodel.load_prediction(result, cell)
        self.assertIsNotNone(p)
        self.assertAlmostEqual(p.hit, HIT)
        self.assertAlmostEqual(p.new_context, NEW)
        self.assertAlmostEqual(p.hit_rate, 0.6)
        self.assertAlmostEqual(p.error, 0.0, places=6)

    def test_no_prediction_without_the_matrix_cells(self):
        doc = load_document()
        doc["benchmarks"] = [e for e in doc["benchmarks"] if e["run_name"].startswith("load/")]
        result = load.result_from_document("load.json", doc)
        cell = result.cells[load_name("local", "dynamic", "lru:16")]
        self.assertIsNone(costmodel.load_prediction(result, cell))


class UnderLoadReport(unittest.TestCase):
    def test_the_section_shows_cost_and_hit_rate_against_cache_size_and_memory(self):
        out = tempfile.mkdtemp(prefix="cloakbench-load-report-")
        try:
            path = os.path.join(out, "load.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(load_document(), f)
            result = load.load_result(path)
            md = report.render_markdown(report.build_blocks(result), out)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        section = md.split("## Under load", 1)[1].split("\n## ", 1)[0]
        self.assertIn("seed 7", section)
        self.assertIn("Local package: 10,000 clients, zipf:1", section)
        rows = [line for line in section.splitlines() if line.startswith("| ")]
        labels = [r.split("|")[1].strip() for r in rows[1:]]
        self.assertEqual(labels, ["none", "static", "dynamic, cache lru:16",
                                  "dynamic, cache lru:256", "dynamic, cache lru:2000"])
        lru256 = rows[1 + labels.index("dynamic, cache lru:256")]
        self.assertIn("60.0%", lru256)
        self.assertIn("1.50 KiB", lru256)
        self.assertIn("4.00 KiB", lru256)
        self.assertIn("+0.0%", lru256)  # the model's error on cells made from it

    def test_the_figure_comes_first_among_the_main_figures(self):
        result = load.result_from_document("load.json", load_document())
        kinds = [(section, kind, len(figs)) for section, kind, figs in plot.figures_for(result)]
        self.assertEqual(kinds[0], (plot.MAIN, "under_load", 1))
        fig = plot.plot_under_load(result)
        axes = [ax for ax in fig.axes if ax.get_ylabel() == "hit rate (%)"]
        self.assertEqual(len(axes), 1)
        self.assertEqual(list(axes[0].lines[0].get_ydata()), [30.0, 60.0, 90.0])

    def test_no_figure_without_lru_load_cells(self):
        doc = load_document()
        doc["benchmarks"] = [e for e in doc["benchmarks"] if "/cache:lru:" not in e["run_name"]
                             or not e["run_name"].startswith("load/")]
        self.assertIsNone(plot.plot_under_load(load.result_from_document("x.json", doc)))

    def test_no_section_without_load_cells(self):
        doc = load_document()
        doc["benchmarks"] = [e for e in doc["benchmarks"] if not e["run_name"].startswith("load/")]
        result = load.result_from_document("plain.json", doc)
        self.assertEqual(report.under_load_blocks(result), [])


class RunLoadPlan(unittest.TestCase):
    LISTED = [load_name("local", "dynamic", "lru:16", 1000), load_name("local", "dynamic", "lru:16"),
              load_name("kerberos", "static", "na"), load_name("kerberos", "static", "na", 1000),
              twin("local", "switch", "none"), twin("kerberos", "steady", "lru:4"),
              twin("local", "every:8", "none"), "baseline/syscall"]

    def test_load_runs_its_k_and_the_matrix_cells_the_model_reads(self):
        self.assertEqual(run_suite.load_selection(self.LISTED, quick=False),
                         [self.LISTED[1], self.LISTED[2], self.LISTED[4], self.LISTED[5]])
        self.assertEqual(run_suite.load_selection(self.LISTED, quick=True),
                         [self.LISTED[0], self.LISTED[3], self.LISTED[4], self.LISTED[5]])

    def test_one_launch_per_package_local_first(self):
        plan = run_suite.plan_load_launches(run_suite.load_selection(self.LISTED, quick=False))
        self.assertEqual([k for k, _ in plan], [("load", "local"), ("load", "kerberos")])
        self.assertEqual(plan[1][1], [self.LISTED[2], self.LISTED[5]])


THREADS = ("load/kernel/uds/auth:%s/%s/clients:10000/pop:zipf:1/cache:%s/shape:%s/loop:%s/"
           "place:unpinned/bytes:64/threads:%d")


def thread_name(auth, cloaking, shape, loop, threads):
    return THREADS % (auth, cloaking, "lru:256" if cloaking == "dynamic" else "na", shape, loop,
                      threads)


def thread_document():
    """Threaded load cells of one package: closed loops at 1, 2, 4 threads (throughput grows to 2
    threads and stops), open loops at 2 threads at 50% and 80% with known p99s."""
    doc = {"context": make_fixtures.context("abc1234", "2026-12-03T14:00:00Z", repetitions=1),
           "benchmarks": []}
    doc["context"]["cloak_load"] = json.dumps({"cpus": 2, "seed": 7})
    cells = []
    for cloaking, base in (("none", 40000.0), ("static", 38000.0), ("dynamic", 20000.0)):
        for shape, factor in (("apartment", 1.0), ("shared", 0.9)):
            for threads, gain in ((1, 1.0), (2, 1.6), (4, 1.62)):
                cells.append((thread_name("local", cloaking, shape, "closed", threads),
                              {"calls_per_s": base * factor * gain, "p50_ns": 20000.0,
                               "p99_ns": 90000.0, "hit_rate": 0.7, "mismatches": 0.0}))
            for pct, p99 in ((50, 100000.0), (80, 400000.0)):
                rate = base * factor * 1.6 * pct / 100
                cells.append((thread_name("local", cloaking, shape, "open:%d" % pct, 2),
                              {"calls_per_s": rate, "offered_per_s": rate, "target_per_s": rate,
                               "p50_ns": 30000.0, "p99_ns": p99, "unserved": 0.0,
                               "hit_rate": 0.7, "mismatches": 0.0}))
    for i, (name, counters) in enumerate(cells):
        doc["benchmarks"] += make_fixtures.entries(i, name, [1.0e9], 0.5, counters, 1)
    return doc


class ThreadedLoad(unittest.TestCase):
    def test_a_threaded_name_says_its_shape_and_loop(self):
        info = names.parse_name(thread_name("kerberos", "dynamic", "shared", "open:80", 4))
        self.assertTrue(info.is_load and info.is_load_threads)
        self.assertEqual((info.auth, info.cloaking, info.shape, info.loop, info.open_percent,
                          info.threads, info.place, info.cache),
                         ("kerberos", "dynamic", "shared", "open:80", 80, 4, "unpinned",
                          "lru:256"))
        closed = names.parse_name(thread_name("local", "none", "apartment", "closed", 1))
        self.assertEqual((closed.loop, closed.open_percent), ("closed", None))
        self.assertFalse(names.parse_name(load_name("local", "none", "na")).is_load_threads)
        self.assertEqual(names.parse_name(thread_name("local", "none", "pool", "closed", 1)).kind,
                         "generic")

    def test_saturation_is_the_best_closed_loop_and_p99_comes_from_the_open_loop(self):
        result = load.result_from_document("t.json", thread_document())
        header, rows = costmodel.thread_rows(result)
        by = {(r[1], r[2]): dict(zip(header, r)) for r in rows}
        self.assertEqual(len(rows), 6)
        none = by[("none", "one per thread")]
        self.assertEqual(none["calls/s at saturation"], "{:,.0f}".format(40000 * 1.62))
        self.assertEqual(none["threads"], "4")
        self.assertEqual(none["saturates at"], "2 threads")  # 4 threads add 1.25%, not 10%
        self.assertEqual((none["p99 at 50%"], none["p99 at 80%"]), ("100 µs", "400 µs"))
        self.assertEqual(none["keeps up to"], "80%")
        self.assertEqual(by[("dynamic", "shared")]["hit rate"], "70.0%")
        self.assertEqual(by[("static", "shared")]["hit rate"], "—")

    def test_the_open_loop_keeps_up_only_while_it_serves_what_arrives(self):
        doc = thread_document()
        for b in doc["benchmarks"]:
            if "/none/" in b["name"] and "apartment" in b["name"] and "open:80" in b["name"]:
                b["calls_per_s"] = 0.9 * b["offered_per_s"]  # fell 10% behind at 80%
            if "/static/" in b["name"] and "apartment" in b["name"] and "open:50" in b["name"]:
                b["unserved"] = 3.0  # still queued when the grace ran out, at the lowest rate
        result = load.result_from_document("t.json", doc)
        header, rows = costmodel.thread_rows(result)
        by = {(r[1], r[2]): dict(zip(header, r)) for r in rows}
        self.assertEqual(by[("none", "one per thread")]["keeps up to"], "50%")
        self.assertEqual(by[("static", "one per thread")]["keeps up to"], "below 50%")
        self.assertEqual(by[("none", "shared")]["keeps up to"], "80%")

    def test_the_hit_rate_section_leaves_the_threaded_cells_out(self):
        doc = load_document()
        doc["benchmarks"] += thread_document()["benchmarks"]
        result = load.result_from_document("both.json", doc)
        for cells in costmodel.load_groups(result).values():
            self.assertFalse(any(c.info.is_load_threads for c in cells))

    def test_the_report_shows_throughput_and_tail_latency_apart(self):
        result = load.result_from_document("t.json", thread_document())
        blocks = report.under_load_blocks(result)
        self.assertEqual(blocks[0], ("h3", "Threads: throughput and tail latency"))
        self.assertIn("2 CPUs", blocks[1][1])
        self.assertIn("at 2 worker threads", blocks[1][1])
        kinds = [kind for _, kind, figs in plot.figures_for(result) if figs]
        self.assertIn("load_throughput", kinds)
        self.assertIn("load_latency", kinds)

    def test_the_figures_keep_throughput_and_latency_apart_in_the_palette_colours(self):
        result = load.result_from_document("t.json", thread_document())
        thr = plot.plot_load_throughput(result)
        lat = plot.plot_load_latency(result)
        self.assertEqual([ax.get_ylabel() for ax in thr.axes], ["calls/s, all workers"])
        self.assertEqual([ax.get_ylabel() for ax in lat.axes], ["p99 latency (µs)"])
        colours = {line.get_color() for line in thr.axes[0].lines}
        self.assertEqual(colours, {plot.PALETTE["none"], plot.PALETTE["static"],
                                   plot.PALETTE["dynamic_lru"]})
        none_apartment = [line for line in lat.axes[0].lines
                          if line.get_color() == plot.PALETTE["none"]
                          and line.get_linestyle() == "-" and len(line.get_xdata()) == 2]
        self.assertEqual(list(none_apartment[0].get_ydata()), [100.0, 400.0])

    def test_the_console_summary_shows_a_rate_and_a_tail_not_a_time(self):
        result = load.result_from_document("t.json", thread_document())
        rows = summary.summary_rows(result)
        name = thread_name("local", "none", "apartment", "closed", 2)
        line = [l for l in summary.render_summary(rows) if l.startswith(name + " ")][0]
        self.assertIn("64,000  calls/s, p99 90.0 µs", line)
        self.assertEqual(summary.repetition_counts(rows), "0")  # no timed repetitions to count

    def test_run_load_runs_the_threaded_cells_of_its_k(self):
        listed = [thread_name("local", "none", "shared", "closed", 2),
                  thread_name("local", "none", "shared", "closed", 2).replace("clients:10000",
                                                                               "clients:1000")]
        self.assertEqual(run_suite.load_selection(listed, quick=False), [listed[0]])
        self.assertEqual(run_suite.load_selection(listed, quick=True), [listed[1]])


if __name__ == "__main__":
    unittest.main()
