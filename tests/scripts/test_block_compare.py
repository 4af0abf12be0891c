"""compare on files with paired blocks: launches are the samples, identical runs are unchanged
(agree across machines), a 30% slower candidate is regressed, too few launches are
inconclusive, and the exit statuses follow the one convention."""

import math
import random
import unittest

import helpers  # noqa: F401  (puts scripts/ on sys.path for cloakpy)
from cloakpy import compare, exits, load, stats

VARIANTS = ("none", "static", "dynamic", "dynamic_lru")


def block(pattern, launches, slow=1.0, spread=0.005, seed=0, over_none=None):
    """A block summary whose per-launch ratios are drawn around known values."""
    rng = random.Random(seed)
    over_none = over_none or {"none": 1.0, "static": 1.0, "dynamic": 1.05, "dynamic_lru": 1.05}
    ratios = {}
    for v in VARIANTS:
        ratios["%s/roundtrip" % v] = {"launch_estimates": [
            1.02 * over_none[v] * slow * math.exp(rng.gauss(0, spread)) for _ in range(launches)]}
        if v != "none":
            ratios["%s/none" % v] = {"launch_estimates": [
                over_none[v] * math.exp(rng.gauss(0, spread)) for _ in range(launches)]}
    return {"name": "block/kernel/uds/auth:local/%s/place:same/bytes:64" % pattern,
            "package": "local", "place": "same", "pattern": pattern, "ratios": ratios}


def result(name, blocks, machine="0123456789abcdef"):
    doc = {"context": {"cloak_machine_hash": machine, "cloak_machine_id": "vm-1",
                       "cloak_commit": "abc"}, "benchmarks": [], "cloak_blocks": blocks}
    return load.result_from_document(name, doc)


def run(base_kwargs, cand_kwargs, **options):
    base = result("a.json", [block(p, seed=i, **base_kwargs)
                             for i, p in enumerate(("steady", "switch", "reimpersonate"))])
    cand = result("b.json", [block(p, seed=10 + i, **cand_kwargs)
                             for i, p in enumerate(("steady", "switch", "reimpersonate"))])
    return compare.compare_results(base, cand, **options)


class SameMachine(unittest.TestCase):
    def test_identical_runs_are_unchanged_and_exit_0(self):
        c = run({"launches": 5}, {"launches": 5})
        self.assertEqual({r.verdict for r in c.rows}, {stats.UNCHANGED})
        self.assertEqual(len(c.rows), 12)
        self.assertEqual(compare.exit_status(c), exits.PASS)

    def test_a_30_percent_slower_candidate_is_regressed_and_exits_1(self):
        c = run({"launches": 5}, {"launches": 5, "slow": 1.3})
        self.assertEqual({r.verdict for r in c.rows}, {stats.REGRESSED})
        self.assertEqual(compare.exit_status(c), exits.FAIL)
        self.assertTrue(all(1.25 < r.ratio < 1.35 for r in c.rows))

    def test_noise_wider_than_the_band_is_inconclusive_and_exits_3(self):
        c = run({"launches": 3, "spread": 0.2}, {"launches": 3, "spread": 0.2})
        self.assertIn(stats.INCONCLUSIVE, {r.verdict for r in c.rows})
        self.assertEqual(compare.exit_status(c), exits.INCONCLUSIVE)
        self.assertEqual(compare.exit_status(c, fail_on_inconclusive=True), exits.FAIL)

    def test_one_launch_decides_nothing(self):
        c = run({"launches": 1}, {"launches": 1})
        self.assertEqual({r.verdict for r in c.rows}, {stats.INCONCLUSIVE})

    def test_cells_narrows_the_family(self):
        c = run({"launches": 5}, {"launches": 5}, cells="steady")
        self.assertEqual(c.family_size, 4)
        self.assertTrue(all("/steady/" in r.name for r in c.rows))


class Failures(unittest.TestCase):
    def test_a_block_failed_in_the_candidate_fails_the_compare(self):
        base = result("a.json", [block("steady", 5)])
        bad = block("steady", 5, seed=3)
        bad["failures"] = [{"launch": 4, "seed": 7, "failed": "round 12: dynamic: identity mismatch"}]
        c = compare.compare_results(base, result("b.json", [bad]))
        failed = [r for r in c.rows if r.verdict == stats.FAILED]
        self.assertEqual(len(failed), 1)
        self.assertTrue(failed[0].failed_in_candidate)
        self.assertIn("identity mismatch", failed[0].note)
        self.assertEqual(compare.exit_status(c), exits.FAIL)

    def test_an_interrupted_launch_is_not_a_failure(self):
        cand = block("steady", 5, seed=3)
        cand["failures"] = [{"launch": 4, "seed": 7, "failed": "interrupted"}]
        c = compare.compare_results(result("a.json", [block("steady", 5)]), result("b.json", [cand]))
        self.assertEqual(compare.exit_status(c), exits.PASS)

    def test_cells_matching_no_block_compare_the_cells(self):
        base = result("a.json", [block("steady", 5)])
        with self.assertRaises(compare.CompareRefused) as e:  # these files have no cells either
            compare.compare_results(base, result("b.json", [block("steady", 5)]), cells="nothing")
        self.assertIn("no cells in common", str(e.exception))


class CrossMachine(unittest.TestCase):
    def test_same_ratios_agree(self):
        c = run({"launches": 7}, {"launches": 7}, cross_machine=True)
        self.assertEqual(len(c.rows), 9)  # static, dynamic, dynamic_lru per block: no none ÷ none
        lines, header, rows = compare.headline_summary(c)
        self.assertEqual({r[-1] for r in rows}, {"agree"})

    def test_a_different_ratio_differs_and_machine_speed_does_not_matter(self):
        faster = {"none": 1.0, "static": 1.0, "dynamic": 1.30, "dynamic_lru": 1.05}
        c = run({"launches": 7}, {"launches": 7, "slow": 0.5, "over_none": faster},
                cross_machine=True)
        words = {r[2]: r[-1] for r in compare.headline_summary(c)[2] if r[1] == "steady"}
        self.assertEqual(words, {"static": "agree", "dynamic": "differ", "dynamic_lru": "agree"})


if __name__ == "__main__":
    unittest.main()
