"""The headline cells, their intervals and sentences, the cost model of a reader's rate of identity
change, and the headline side by side in a compare."""

import os
import tempfile
import unittest

import helpers  # noqa: F401  (puts scripts/ on sys.path for cloakpy)
from helpers import default_run_file, fixture, run_cli
from cloakpy import compare, costmodel, headline, load, names
from cloakpy.stats import median

LOCAL_SAME = ("cloak/kernel/uds/auth:local/%s/%s/probe:%s/cache:%s/track:%s/prot:na/tickets:na/"
              "place:same/bytes:64/threads:1")


def local_same(cloaking, pattern, probe="na", cache="na", track="na"):
    return LOCAL_SAME % (cloaking, pattern, probe, cache, track)


class MedianInterval(unittest.TestCase):
    def test_five_values_give_min_max_at_94_percent(self):
        self.assertEqual(headline.median_interval([5, 1, 4, 2, 3]), (1.0, 5.0, 0.9375))

    def test_fifteen_values_give_the_fourth_and_twelfth(self):
        lo, hi, cov = headline.median_interval(range(1, 16))
        self.assertEqual((lo, hi), (4.0, 12.0))
        self.assertGreaterEqual(cov, 0.95)
        self.assertAlmostEqual(cov, 0.9648, places=4)

    def test_narrower_with_more_values_and_always_around_the_median(self):
        xs = list(range(101))
        lo, hi, cov = headline.median_interval(xs)
        self.assertLess(lo, median(xs))
        self.assertGreater(hi, median(xs))
        self.assertLess(hi - lo, 25)
        self.assertGreaterEqual(cov, 0.95)

    def test_one_value(self):
        self.assertEqual(headline.median_interval([7.0]), (7.0, 7.0, 0.0))


class HeadlineTables(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.result = load.load_result(default_run_file())
        cls.tables = headline.tables(cls.result)

    def test_one_table_per_package_and_pinned_placement(self):
        self.assertEqual([(t.auth, t.place) for t in self.tables],
                         [("local", "same"), ("local", "cross"), ("kerberos", "same")])
        for t in self.tables:
            self.assertEqual([(r.pattern, r.variant) for r in t.rows],
                             [(p, v) for p in headline.PATTERNS for v, _, _ in headline.VARIANTS])

    def test_rows_are_the_kernel_probe_identity_tracking_cells(self):
        for t in self.tables:
            for r in t.rows:
                i = r.cell.info
                self.assertEqual((i.bytes, i.threads, i.place), (64, 1, t.place))
                if i.cloaking == "dynamic":
                    self.assertEqual((i.probe, i.track), ("kernel", "identity"))
                self.assertIn(i.prot, ("na", "none"))
                self.assertIn(i.tickets, ("na", "warm"))

    def test_times_ratios_and_terms_are_the_cells(self):
        t = self.tables[0]
        r = t.row("dynamic, cache none", "switch")
        cell = self.result.cells[local_same("dynamic", "switch", "kernel", "none", "identity")]
        none = self.result.cells[local_same("none", "switch")]
        self.assertEqual(r.median, median(cell.samples))
        self.assertAlmostEqual(r.over_none, median(cell.samples) / median(none.samples))
        self.assertLessEqual(r.low, r.median)
        self.assertGreaterEqual(r.high, r.median)
        rt = median(self.result.cells["baseline/roundtrip/place:same/bytes:64"].samples)
        self.assertAlmostEqual(r.terms.new_context, rt)  # one context per call, one round trip
        kerberos = self.tables[2].row("dynamic, cache none", "switch")
        ap = median(self.result.cells["baseline/kerberos/establish/place:same"].samples)
        self.assertAlmostEqual(kerberos.terms.new_context, ap)

    def test_sentences_read_each_package(self):
        said = headline.sentences(self.tables, None)
        self.assertEqual(len(said), 2)
        self.assertIn("local package", said[0])
        self.assertIn("Kerberos", said[1])
        self.assertIn("lru:4 context cache cuts it to", said[0])

    def test_old_names_and_model_only_files(self):
        old = headline.tables(load.load_result(fixture("base.json")))
        self.assertEqual([(t.auth, t.place) for t in old], [("local", "same"), ("local", "cross")])
        model_only = load.load_result(fixture("base.json"))
        model_only.cells = {n: c for n, c in model_only.cells.items()
                            if c.info.backend != "kernel"}
        tables = headline.tables(model_only)
        self.assertEqual([(t.auth, t.place) for t in tables], [("local", "na")])
        self.assertEqual(headline.tables(load.load_result(fixture("plain_gbench.json"))), [])

    def test_negotiate_has_a_table_per_mechanism_decomposed_with_its_own_exchange(self):
        cell = ("cloak/kernel/uds/auth:negotiate/mech:%s/%s/%s/probe:%s/cache:%s/track:%s/prot:none/"
                "tickets:na/place:same/bytes:64/threads:1")
        exchange = {"krb5": 300000.0, "ntlm": 600000.0}
        rows = [("baseline/roundtrip/place:same/bytes:64", 10000.0, {})]
        for mech, ctx in exchange.items():
            rows.append(("baseline/negotiate/mech:%s/establish/place:same" % mech, ctx, {}))
            for pattern in ("steady", "switch"):
                rows.append((cell % (mech, "none", pattern, "na", "na", "na"), 20000.0, {}))
                rows.append((cell % (mech, "dynamic", pattern, "kernel", "none", "identity"),
                             20000.0 + (ctx if pattern == "switch" else 0.0),
                             {"contexts_per_call": 1.0 if pattern == "switch" else 0.0,
                              "probes_per_call": 1.0}))
        doc = {"context": {}, "benchmarks": [
            dict({"name": n, "run_name": n, "run_type": "iteration", "repetitions": 1,
                  "repetition_index": 0, "threads": 1, "iterations": 100, "real_time": t,
                  "cpu_time": t, "time_unit": "ns"}, **counters) for n, t, counters in rows]}
        tables = headline.tables(load.result_from_document("negotiate.json", doc))
        self.assertEqual([t.auth for t in tables], ["negotiate/mech:krb5", "negotiate/mech:ntlm"])
        self.assertIn("over Kerberos", tables[0].title)
        for t, mech in zip(tables, ("krb5", "ntlm")):
            switch = t.row("dynamic, cache none", "switch")
            self.assertEqual(switch.terms.new_context, exchange[mech])

    def test_is_headline_cell(self):
        self.assertTrue(headline.is_headline_cell(names.parse_name(
            local_same("dynamic", "switch", "kernel", "lru:4", "identity"))))
        for name in (local_same("dynamic", "switch", "generation", "none", "identity"),
                     local_same("dynamic", "switch", "kernel", "none", "token"),
                     local_same("none", "every:8"),
                     local_same("none", "steady").replace("place:same", "place:unpinned")):
            self.assertFalse(headline.is_headline_cell(names.parse_name(name)), name)


class CostModel(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.result = load.load_result(default_run_file())
        cls.models = costmodel.models(cls.result)
        cls.checks = costmodel.checks(cls.result, cls.models)

    def model(self, name):
        return self.models[costmodel.variant_key(names.parse_name(name))]

    def test_the_line_goes_through_steady_and_switch(self):
        m = self.model(local_same("dynamic", "steady", "kernel", "none", "identity"))
        steady = median(self.result.cells[local_same("dynamic", "steady", "kernel", "none",
                                                     "identity")].samples)
        switch = median(self.result.cells[local_same("dynamic", "switch", "kernel", "none",
                                                     "identity")].samples)
        self.assertAlmostEqual(m.predict(1), switch)
        self.assertAlmostEqual(m.predict(10 ** 9), steady, places=3)
        self.assertAlmostEqual(m.predict(4), steady + (switch - steady) / 4)
        lo, hi = m.predict_interval(4)
        self.assertLessEqual(lo, m.predict(4))
        self.assertGreaterEqual(hi, m.predict(4))
        rt = median(self.result.cells["baseline/roundtrip/place:same/bytes:64"].samples)
        self.assertAlmostEqual(m.new_context, rt)  # one new context per change, one round trip
        self.assertAlmostEqual(m.token_switch, median(self.result.cells["baseline/switch"].samples))

    def test_checked_at_2_8_and_32_for_every_headline_variant(self):
        chosen = costmodel.headline_checks(self.checks)
        for auth in ("local", "kerberos"):
            for variant, _, _ in headline.VARIANTS:
                ns = sorted(c.n for c in chosen if c.model.info.auth == auth
                            and c.model.info.place == "same"
                            and headline.variant_of(c.model.info) == variant)
                self.assertEqual(ns, [2, 8, 32], (auth, variant))

    def test_errors_are_prediction_over_measurement(self):
        for c in self.checks:
            self.assertAlmostEqual(c.error, c.predicted / c.measured - 1)
        # the fixture's rare changes cost a little more each (make_fixtures.RARE_CHANGE): the
        # straight line under-predicts, by a few percent at most
        chosen = costmodel.headline_checks(self.checks)
        self.assertTrue(all(-0.1 < c.error <= 0.01 for c in chosen), [c.error for c in chosen])

    def test_an_exactly_linear_run_is_predicted_exactly(self):
        result = load.load_result(default_run_file())
        m = self.model(local_same("none", "steady"))
        cell = result.cells[local_same("none", "every:8")]
        cell.samples = [m.predict(8)] * 5
        check = next(c for c in costmodel.checks(result) if c.cell is cell)
        self.assertAlmostEqual(check.error, 0.0)
        self.assertTrue(check.agrees)

    def test_workload_rows_for_a_readers_n(self):
        header, rows = costmodel.workload_rows(self.result, 8, self.models)
        self.assertEqual(len(rows), 12)  # 3 headline tables x 4 variants
        row = next(r for r in rows if r[:2] == ["local, client and downstream on one CPU",
                                                "dynamic, cache none"])
        m = self.model(local_same("dynamic", "steady", "kernel", "none", "identity"))
        self.assertEqual(row[2], costmodel.fmt.ns(m.predict(8)))
        self.assertIn("error", row[-1])  # the run measured every:8
        header, rows = costmodel.workload_rows(self.result, 100, self.models)
        self.assertTrue(all(r[-1] == "not measured" for r in rows))


class CompareHeadline(unittest.TestCase):
    def test_cross_machine_summary_says_whether_the_ratios_agree(self):
        base = load.load_result(fixture("base.json"))
        c = compare.compare_results(base, load.load_result(fixture("other_machine.json")),
                                    cross_machine=True)
        lines, header, rows = compare.headline_summary(c)
        self.assertIn("× none: baseline", header)
        self.assertIn("× transport: candidate", header)
        # one row per headline cell (old names, both placements), headline order
        self.assertEqual(len(rows), sum(len(t.rows) for t in headline.tables(base)))
        self.assertEqual(rows[0][:3], ["local, same", "none", "steady"])
        self.assertRegex(lines[-1], r"^Of \d+ headline ratios, \d+ agree within the noise")
        md = compare.render_markdown(c)
        self.assertLess(md.index("## Headline ratios side by side"), md.index("## All cells"))

    def test_no_headline_cells_no_summary(self):
        c = compare.compare_results(load.load_result(fixture("plain_gbench.json")),
                                    load.load_result(fixture("plain_gbench.json")))
        self.assertIsNone(compare.headline_summary(c))
        self.assertNotIn("Headline", compare.render_markdown(c))


class ReportEveryOnTheCommandLine(unittest.TestCase):
    def test_report_every_n(self):
        # base.json has the headline cells the section needs, and draws in a quarter of the time
        # of a whole default run (its figures are what the time goes on)
        with tempfile.TemporaryDirectory() as out:
            p = run_cli("report", fixture("base.json"), "--every", "8", "-o", out)
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(os.path.join(out, "report.md"), encoding="utf-8") as f:
                md = f.read()
            self.assertIn("## At one identity change every 8 calls (report --every 8)", md)
            self.assertIn("--every 8 -o", md)  # the regenerate command says it too
            p = run_cli("report", fixture("base.json"), "--every", "0", "-o", out)
            self.assertEqual(p.returncode, 2)


if __name__ == "__main__":
    unittest.main()
