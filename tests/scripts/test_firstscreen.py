"""The report's first screen from paired blocks: ratios read "≈ 1.00×" only when their whole
interval is inside the band, contradictions appear only when resolved (and then as anomalies),
static's row says what the downstream sees, and headline.json carries every row."""

import json
import os
import tempfile
import unittest

import helpers  # noqa: F401  (puts scripts/ on sys.path for cloakpy)
from cloakpy import firstscreen, load, report


def entry(estimate, low=None, high=None):
    half = None if low is None else (estimate - low)
    return {"estimate": estimate, "low": low if half is not None else None,
            "high": high, "method": "student_t_over_launches", "launch_estimates": []}


def block(pattern, ratios, terms=None, package="local", place="same", mech=None):
    """A block summary as blocks.block_summary writes it, with the fields the screen reads."""
    variants = {}
    for v in ("none", "static", "dynamic", "dynamic_lru", "none_aa", "clock"):
        variants[v] = {"median_ns": entry(30.0 if v == "clock" else 10000.0, 9900.0, 10100.0),
                       "summary": {"all": {"p99": 25000}}}
    decomposition = {v: {"measured": entry(10000.0, 9900.0, 10100.0),
                         "transport": entry(9000.0, 8900.0, 9100.0),
                         "probe": entry(0.0, 0.0, 0.0), "switch": entry(0.0, 0.0, 0.0),
                         "new_context": entry(0.0, 0.0, 0.0),
                         "remainder": entry(1000.0, 900.0, 1100.0)}
                     for v in ("none", "static", "dynamic", "dynamic_lru")}
    for (v, part), e in (terms or {}).items():
        decomposition[v][part] = e
    out = {"name": "block/kernel/uds/auth:%s/%s%s/place:%s/bytes:64"
                   % (package, "mech:%s/" % mech if mech else "", pattern, place),
           "package": package, "place": place, "pattern": pattern, "launches": 7,
           "failed_launches": 0, "failures": [], "variants": variants,
           "ratios": {"%s/none" % k: v for k, v in ratios.items()},
           "decomposition": decomposition}
    if mech:
        out["mech"] = mech
    return out


def result_with(blocks):
    doc = {"context": {"cloak_machine_id": "vm-1", "cloak_commit": "abc"}, "benchmarks": [],
           "cloak_blocks": blocks}
    return load.result_from_document("test.json", doc)


FLAT = {"none_aa": entry(1.0, 0.99, 1.01), "static": entry(1.0, 0.995, 1.005),
        "dynamic": entry(1.05, 1.04, 1.06), "dynamic_lru": entry(1.05, 1.04, 1.06)}


class RatioText(unittest.TestCase):
    def test_whole_interval_inside_the_band_reads_equal(self):
        self.assertEqual(firstscreen.ratio_text(entry(1.01, 0.99, 1.019)), "≈ 1.00×")

    def test_interval_reaching_out_of_the_band_is_printed_with_it(self):
        self.assertEqual(firstscreen.ratio_text(entry(1.01, 0.99, 1.03)), "1.01× (0.99–1.03)")

    def test_the_band_is_an_option(self):
        self.assertEqual(firstscreen.ratio_text(entry(1.01, 0.99, 1.03), 0.05), "≈ 1.00×")

    def test_one_launch_says_it_has_no_interval(self):
        self.assertIn("no interval", firstscreen.ratio_text(entry(1.2)))


class Anomalies(unittest.TestCase):
    def test_cheaper_than_none_beyond_its_interval_is_an_anomaly(self):
        ratios = dict(FLAT, static=entry(0.9, 0.88, 0.92))
        t = firstscreen.tables(result_with([block("steady", ratios)]))[0]
        self.assertTrue(t.row("static", "steady").anomalies)
        self.assertIn("⚠", firstscreen.table_rows(t)[1][1][4])

    def test_cheaper_than_none_within_the_band_is_not(self):
        ratios = dict(FLAT, static=entry(0.99, 0.985, 0.995))
        t = firstscreen.tables(result_with([block("steady", ratios)]))[0]
        self.assertEqual(t.row("static", "steady").anomalies, [])
        self.assertEqual(firstscreen.table_rows(t)[1][1][4], "≈ 1.00×")

    def test_cheaper_than_none_within_its_interval_is_not(self):
        ratios = dict(FLAT, static=entry(0.97, 0.94, 1.001))
        t = firstscreen.tables(result_with([block("steady", ratios)]))[0]
        self.assertEqual(t.row("static", "steady").anomalies, [])

    def test_parts_larger_than_the_whole_beyond_the_band_are_an_anomaly(self):
        terms = {("dynamic", "remainder"): entry(-900.0, -1000.0, -800.0)}
        t = firstscreen.tables(result_with([block("steady", FLAT, terms)]))[0]
        self.assertTrue(any("more than the call" in a for a in t.row("dynamic", "steady").anomalies))

    def test_a_small_negative_remainder_is_not(self):
        terms = {("dynamic", "remainder"): entry(-100.0, -150.0, -50.0)}
        t = firstscreen.tables(result_with([block("steady", FLAT, terms)]))[0]
        self.assertEqual(t.row("dynamic", "steady").anomalies, [])


class FailedBlock(unittest.TestCase):
    def test_a_block_failed_in_every_launch_shows_failed_rows_and_why(self):
        dead = block("switch", FLAT)
        dead.update(launches=0, variants={}, ratios={}, decomposition={},
                    failures=[{"launch": 1, "failed": "setup: cannot connect"}])
        t = firstscreen.tables(result_with([block("steady", FLAT), dead]))[0]
        rows = [r for r in firstscreen.table_rows(t)[1] if r[1] == "switch"]
        self.assertEqual(len(rows), 4)
        self.assertTrue(all(r[2] == "failed" for r in rows))
        self.assertIn("cannot connect", t.row("dynamic", "switch").anomalies[0])


class Screen(unittest.TestCase):
    def setUp(self):
        self.result = result_with([
            block("switch", dict(FLAT, dynamic=entry(1.6, 1.55, 1.65))),
            block("steady", FLAT), block("steady", FLAT, package="kerberos")])

    def test_one_table_per_package_and_placement_local_first_patterns_in_order(self):
        ts = firstscreen.tables(self.result)
        self.assertEqual([(t.package, t.place) for t in ts], [("local", "same"), ("kerberos", "same")])
        self.assertEqual([r.pattern for r in ts[0].rows][::4], ["steady", "switch"])

    def test_static_under_switch_says_what_the_downstream_sees(self):
        rows = firstscreen.table_rows(firstscreen.tables(self.result)[0])[1]
        self.assertIn("static (D sees the first client)", [r[0] for r in rows])

    def test_report_has_the_glossary_and_writes_headline_json(self):
        with tempfile.TemporaryDirectory() as d:
            self.result.path = os.path.join(d, "run.json")
            with open(self.result.path, "w", encoding="utf-8") as f:
                f.write("{}")
            report.write_report(self.result, d)
            with open(os.path.join(d, "report.md"), encoding="utf-8") as f:
                md = f.read()
            with open(os.path.join(d, "headline.json"), encoding="utf-8") as f:
                data = json.load(f)
        self.assertIn("What the words mean", md)
        self.assertIn("1.60× (1.55–1.65)", md)
        row = next(r for r in data["rows"] if r["variant"] == "dynamic" and r["pattern"] == "switch")
        self.assertEqual(row["package"], "local")
        self.assertAlmostEqual(row["over_none"]["low"], 1.55)
        self.assertEqual(row["p99_ns"], 25000)
        self.assertIn("remainder", row["terms_ns"])


class NegotiateTables(unittest.TestCase):
    """negotiate's blocks make one table per mechanism, after the other packages, and a GSSAPI
    table says what a new context measured against the package's own exchange."""

    def setUp(self):
        steady = dict(FLAT)
        switch = dict(FLAT, dynamic=entry(20.0, 19.0, 21.0))
        ctx = {("dynamic", "new_context"): entry(180000.0, 170000.0, 190000.0),
               ("dynamic", "switch"): entry(12000.0, 11000.0, 13000.0)}
        blocks = []
        for mech in ("ntlm", "krb5"):
            blocks.append(block("steady", steady, package="negotiate", mech=mech))
            b = block("switch", switch, terms=ctx, package="negotiate", mech=mech)
            b["variants"]["dynamic"]["median_ns"] = entry(212000.0, 200000.0, 224000.0)
            blocks.append(b)
        blocks.append(block("steady", FLAT))
        self.result = result_with(blocks)

    def test_one_table_per_mechanism_krb5_first(self):
        ts = firstscreen.tables(self.result)
        self.assertEqual([t.package for t in ts],
                         ["local", "negotiate/mech:krb5", "negotiate/mech:ntlm"])
        self.assertIn("Negotiate package over NTLM", ts[2].title)

    def test_a_new_context_measured_beside_the_raw_exchange(self):
        ts = firstscreen.tables(self.result)
        self.assertIsNone(firstscreen.new_context_check(ts[0]))  # local makes no exchange
        check = firstscreen.new_context_check(ts[1])
        # 212 µs (switch) - 10 µs (steady) - 12 µs (token switch) = 190 µs against 180 µs
        self.assertAlmostEqual(check["measured_ns"], 190000.0)
        self.assertAlmostEqual(check["exchange_ns"], 180000.0)
        self.assertAlmostEqual(check["ratio"], 190.0 / 180.0)
        data = firstscreen.headline_json(self.result)
        self.assertEqual([c["package"] for c in data["new_context"]],
                         ["negotiate/mech:krb5", "negotiate/mech:ntlm"])
        text = str(firstscreen.report_blocks(self.result))
        self.assertIn("a new context, measured", text)


if __name__ == "__main__":
    unittest.main()
