"""compare decides regressed / improved / unchanged / inconclusive the way a release gate needs."""

import json
import unittest

import helpers  # noqa: F401  (puts scripts/ on sys.path for cloakpy)
from helpers import fixture
from cloakpy import compare, load, stats

SLOWER = "cloak/kernel/uds/dynamic/switch/probe:kernel/cache:none/place:same/bytes:64/threads:1"
FAILING = ("cloak/kernel/uds/dynamic/reimpersonate/probe:generation/cache:none/place:same/"
           "bytes:64/threads:1")


def loaded(name, cache={}):
    if name not in cache:
        cache[name] = load.load_result(fixture(name))
    return cache[name]


def verdicts(comparison):
    return {r.name: r.verdict for r in comparison.rows}


class Verdicts(unittest.TestCase):
    def test_a_file_against_itself_is_unchanged(self):
        c = compare.compare_results(loaded("base.json"), loaded("base.json"))
        self.assertEqual(set(verdicts(c).values()), {stats.UNCHANGED})
        self.assertAlmostEqual(c.geometric_mean, 1.0)
        self.assertEqual(compare.exit_status(c), 0)

    def test_a_rerun_on_the_same_machine_is_unchanged(self):
        c = compare.compare_results(loaded("base.json"), loaded("same_machine_rerun.json"))
        self.assertEqual(set(verdicts(c).values()), {stats.UNCHANGED})
        self.assertEqual(compare.exit_status(c), 0)

    def test_one_cell_thirty_percent_slower_is_regressed(self):
        c = compare.compare_results(loaded("base.json"), loaded("slower_one_cell.json"))
        v = verdicts(c)
        self.assertEqual(v.pop(SLOWER), stats.REGRESSED)
        self.assertEqual(set(v.values()), {stats.UNCHANGED})
        row = next(r for r in c.rows if r.name == SLOWER)
        self.assertAlmostEqual(row.ratio, 1.3, delta=0.02)
        self.assertGreater(row.ci_low, 1.0 + c.min_effect)
        self.assertLess(row.p_value, 0.05)
        self.assertEqual(compare.exit_status(c), 1)

    def test_the_same_change_read_backwards_is_improved(self):
        c = compare.compare_results(loaded("slower_one_cell.json"), loaded("base.json"))
        self.assertEqual(verdicts(c)[SLOWER], stats.IMPROVED)
        self.assertEqual(compare.exit_status(c), 0)

    def test_a_too_noisy_pair_is_inconclusive(self):
        c = compare.compare_results(loaded("base.json"), loaded("noisy.json"))
        self.assertEqual(set(verdicts(c).values()), {stats.INCONCLUSIVE})
        self.assertEqual(compare.exit_status(c), 0)
        self.assertEqual(compare.exit_status(c, fail_on_inconclusive=True), 1)
        self.assertIn("more repetitions", compare.headline(c))

    def test_a_cell_failing_in_the_candidate_fails_the_gate(self):
        c = compare.compare_results(loaded("base.json"), loaded("failed_cell.json"))
        self.assertEqual(verdicts(c)[FAILING], stats.FAILED)
        self.assertEqual(compare.exit_status(c), 1)

    def test_a_cell_failing_only_in_the_baseline_is_reported_not_gated(self):
        c = compare.compare_results(loaded("failed_cell.json"), loaded("base.json"))
        row = next(r for r in c.rows if r.name == FAILING)
        self.assertEqual(row.verdict, stats.FAILED)
        self.assertIn("baseline", row.note)
        self.assertEqual(compare.exit_status(c), 0)

    def test_min_effect_override_and_default(self):
        c = compare.compare_results(loaded("base.json"), loaded("slower_one_cell.json"),
                                    min_effect=0.5)
        self.assertEqual(verdicts(c)[SLOWER], stats.UNCHANGED)  # 30% is below a 50% effect
        c = compare.compare_results(loaded("base.json"), loaded("slower_one_cell.json"),
                                    min_effect=0.30)
        self.assertEqual(verdicts(c)[SLOWER], stats.INCONCLUSIVE)  # interval straddles 1.30
        self.assertIn("--min-effect", c.min_effect_source)
        c = compare.compare_results(loaded("base.json"), loaded("noisy.json"))
        self.assertEqual(c.min_effect, 0.3)
        c = compare.compare_results(loaded("plain_gbench.json"), loaded("plain_gbench.json"))
        self.assertEqual(c.min_effect, stats.FALLBACK_MIN_EFFECT)

    def test_cells_in_one_file_only_are_added_or_removed(self):
        base = loaded("base.json")
        fewer = load.Result(base.path, base.context, dict(list(base.cells.items())[:-1]))
        c = compare.compare_results(fewer, base)
        self.assertEqual(c.added, [list(base.cells)[-1]])
        c = compare.compare_results(base, fewer)
        self.assertEqual(c.removed, [list(base.cells)[-1]])
        self.assertEqual(compare.exit_status(c), 0)

    def test_few_repetitions_are_inconclusive(self):
        r = compare.compare_samples("x", "ns", [1.0, 1.0], [2.0, 2.0], 0.03, 0.05, 200, 0.95, 1)
        self.assertEqual(r.verdict, stats.INCONCLUSIVE)
        self.assertIn("fewer than 3", r.note)


class Machines(unittest.TestCase):
    def test_files_from_different_machines_are_refused(self):
        with self.assertRaises(compare.CompareRefused) as ctx:
            compare.compare_results(loaded("base.json"), loaded("other_machine.json"))
        self.assertIn("--cross-machine", str(ctx.exception))

    def test_different_schema_versions_are_refused(self):
        base = loaded("base.json")
        other = load.Result("v2.json", dict(base.context, cloak_schema_version=2), base.cells)
        with self.assertRaises(compare.CompareRefused):
            compare.compare_results(base, other)

    def test_cross_machine_compares_same_run_ratios(self):
        c = compare.compare_results(loaded("base.json"), loaded("other_machine.json"),
                                    cross_machine=True)
        self.assertEqual(c.mode, compare.CROSS_MACHINE)
        self.assertTrue(all(r.unit == "ratio" for r in c.rows))
        self.assertTrue(all(" ÷ " in r.name for r in c.rows))
        self.assertEqual(set(verdicts(c).values()), {stats.UNCHANGED})
        self.assertIn("same-run ratios", compare.render_markdown(c))

    def test_cross_machine_needs_matrix_cells(self):
        with self.assertRaises(compare.CompareRefused):
            compare.compare_results(loaded("plain_gbench.json"), loaded("base.json"),
                                    cross_machine=True)

    def test_plain_files_note_the_unknown_machine(self):
        c = compare.compare_results(loaded("plain_gbench.json"), loaded("plain_gbench.json"))
        self.assertTrue(any("unknown" in n for n in c.notes))

    def test_no_common_cells_is_unusable(self):
        with self.assertRaises(compare.CompareRefused):
            compare.compare_results(loaded("plain_gbench.json"), loaded("base.json"))


class Output(unittest.TestCase):
    def test_markdown_and_json(self):
        c = compare.compare_results(loaded("base.json"), loaded("slower_one_cell.json"))
        md = compare.render_markdown(c)
        self.assertIn("REGRESSED", md)
        self.assertIn("| %s |" % SLOWER, md)
        self.assertIn("Geometric mean", md)
        data = json.loads(json.dumps(compare.to_json(c, 1)))
        self.assertEqual(data["exit_status"], 1)
        self.assertEqual(data["counts"]["regressed"], 1)
        self.assertEqual(len(data["cells"]), 50)


if __name__ == "__main__":
    unittest.main()
