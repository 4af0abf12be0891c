"""compare decides regressed / improved / unchanged / inconclusive the way a release gate needs: the
minimum effect is the user's, noise makes cells inconclusive (never unchanged), and the claims are
controlled family-wise over the compared cells."""

import json
import os
import random
import tempfile
import unittest

import helpers  # noqa: F401  (puts scripts/ on sys.path for cloakpy)
from helpers import fixture, run_cli
from cloakpy import compare, exits, load, names, stats

SLOWER = "cloak/kernel/uds/dynamic/switch/probe:kernel/cache:none/place:same/bytes:64/threads:1"
FAILING = ("cloak/kernel/uds/dynamic/reimpersonate/probe:generation/cache:none/place:same/"
           "bytes:64/threads:1")


def loaded(name, cache={}):
    if name not in cache:
        cache[name] = load.load_result(fixture(name))
    return cache[name]


def verdicts(comparison):
    return {r.name: r.verdict for r in comparison.rows}


def synthetic(path, samples, noise_floor=None):
    """A Result whose cells have the given repetitions (ns)."""
    cells = {n: load.Cell(name=n, info=names.parse_name(n), samples=list(s))
             for n, s in samples.items()}
    context = {"cloak_schema_version": 1, "cloak_machine_hash": "0123456789abcdef"}
    if noise_floor is not None:
        context["cloak_noise_floor"] = noise_floor
    return load.Result(path, context, cells)


def noisy_runs(rng, cells, reps, sigma, shift=None):
    """Two results: every cell ~1000 ns with relative noise sigma; the candidate's cells in
    `shift` {name: ratio} are slower by that ratio."""
    shift = shift or {}
    base = {n: [1000.0 * (1 + rng.gauss(0, sigma)) for _ in range(reps)] for n in cells}
    cand = {n: [1000.0 * shift.get(n, 1.0) * (1 + rng.gauss(0, sigma)) for _ in range(reps)]
            for n in cells}
    return synthetic("base.json", base), synthetic("candidate.json", cand)


CELLS = ["cell/%d" % i for i in range(12)]


class KnownAnswers(unittest.TestCase):
    """Synthetic repetitions whose truth is known."""

    def test_identical_code_is_rarely_called_regressed_over_many_seeds(self):
        rng = random.Random(1)
        trials, false_alarms = 200, 0
        for _ in range(trials):
            b, c = noisy_runs(rng, CELLS, 15, 0.03)
            cmp = compare.compare_results(b, c)
            false_alarms += compare.exit_status(cmp) == 1
        # The rule allows 5%; a binomial(200, 0.05) exceeds 18 with probability < 0.2%.
        self.assertLessEqual(false_alarms, 18)

    def test_a_ten_percent_shift_with_low_noise_is_regressed(self):
        rng = random.Random(2)
        b, c = noisy_runs(rng, CELLS, 15, 0.01, shift={"cell/3": 1.10})
        v = verdicts(compare.compare_results(b, c))
        self.assertEqual(v.pop("cell/3"), stats.REGRESSED)
        self.assertEqual(set(v.values()), {stats.UNCHANGED})

    def test_high_noise_is_inconclusive_not_unchanged(self):
        rng = random.Random(3)
        b, c = noisy_runs(rng, CELLS, 15, 0.30, shift={n: 1.10 for n in CELLS})
        v = verdicts(compare.compare_results(b, c))
        self.assertNotIn(stats.UNCHANGED, v.values())
        self.assertIn(stats.INCONCLUSIVE, v.values())

    def test_a_noisy_file_never_widens_the_minimum_effect(self):
        # issue 10: one file's noise floor of 26% turned a 10% slowdown into "unchanged".
        rng = random.Random(4)
        b, c = noisy_runs(rng, CELLS, 15, 0.01, shift={n: 1.10 for n in CELLS})
        b = synthetic("base.json", {n: x.samples for n, x in b.cells.items()}, noise_floor=0.26)
        cmp = compare.compare_results(b, c)
        self.assertEqual(cmp.min_effect, stats.DEFAULT_MIN_EFFECT)
        self.assertEqual(set(verdicts(cmp).values()), {stats.REGRESSED})
        self.assertTrue(any("noise floor" in n for n in cmp.notes))


class Verdicts(unittest.TestCase):
    def test_five_repetitions_over_fifty_cells_cannot_show_unchanged(self):
        # 5 + 5 repetitions give p >= 1/252, above Holm's first step over 50 cells (0.001).
        c = compare.compare_results(loaded("base.json"), loaded("base.json"))
        self.assertEqual(set(verdicts(c).values()), {stats.INCONCLUSIVE})
        self.assertIn("too few samples", c.rows[0].note)
        self.assertAlmostEqual(c.geometric_mean, 1.0)
        self.assertEqual(compare.exit_status(c), exits.INCONCLUSIVE)
        self.assertEqual(compare.exit_status(c, fail_on_inconclusive=True), exits.FAIL)
        self.assertIn("NOT A PASS", compare.headline(c))

    def test_one_cell_thirty_percent_slower_is_regressed_when_judged_alone(self):
        c = compare.compare_results(loaded("base.json"), loaded("slower_one_cell.json"),
                                    cells="^" + SLOWER + "$")
        self.assertEqual(verdicts(c), {SLOWER: stats.REGRESSED})
        row = c.rows[0]
        self.assertAlmostEqual(row.ratio, 1.3, delta=0.02)
        self.assertGreater(row.ci_low, 1.0 + c.min_effect)
        self.assertLessEqual(row.p_value, row.level)
        self.assertEqual(compare.exit_status(c), 1)
        self.assertIn(SLOWER, compare.headline(c))

    def test_the_same_change_read_backwards_is_improved(self):
        c = compare.compare_results(loaded("slower_one_cell.json"), loaded("base.json"),
                                    cells="^" + SLOWER + "$")
        self.assertEqual(verdicts(c)[SLOWER], stats.IMPROVED)
        self.assertEqual(compare.exit_status(c), 0)

    def test_a_too_noisy_pair_is_inconclusive(self):
        c = compare.compare_results(loaded("base.json"), loaded("noisy.json"))
        self.assertEqual(set(verdicts(c).values()), {stats.INCONCLUSIVE})
        self.assertEqual(compare.exit_status(c), exits.INCONCLUSIVE)
        self.assertEqual(compare.exit_status(c, fail_on_inconclusive=True), exits.FAIL)

    def test_a_cell_failing_in_the_candidate_fails_the_gate(self):
        c = compare.compare_results(loaded("base.json"), loaded("failed_cell.json"))
        self.assertEqual(verdicts(c)[FAILING], stats.FAILED)
        self.assertEqual(compare.exit_status(c), 1)
        self.assertIn("REGRESSED", compare.headline(c))

    def test_a_cell_failing_only_in_the_baseline_is_reported_not_gated(self):
        c = compare.compare_results(loaded("failed_cell.json"), loaded("base.json"))
        row = next(r for r in c.rows if r.name == FAILING)
        self.assertEqual(row.verdict, stats.FAILED)
        self.assertIn("baseline", row.note)
        self.assertEqual(compare.exit_status(c), exits.INCONCLUSIVE)  # the other 49 cells
        c = compare.compare_results(loaded("failed_cell.json"), loaded("base.json"),
                                    cells="^" + FAILING + "$")
        self.assertEqual(verdicts(c), {FAILING: stats.FAILED})
        self.assertEqual(compare.exit_status(c), exits.PASS)

    def test_min_effect_is_the_users_or_five_percent(self):
        one = "^" + SLOWER + "$"
        c = compare.compare_results(loaded("base.json"), loaded("slower_one_cell.json"),
                                    min_effect=0.5, cells=one)
        self.assertEqual(verdicts(c)[SLOWER], stats.UNCHANGED)  # 30% is below a 50% effect
        c = compare.compare_results(loaded("base.json"), loaded("slower_one_cell.json"),
                                    min_effect=0.30, cells=one)
        self.assertEqual(verdicts(c)[SLOWER], stats.INCONCLUSIVE)  # interval straddles 1.30
        self.assertIn("--min-effect", c.min_effect_source)
        c = compare.compare_results(loaded("base.json"), loaded("noisy.json"))
        self.assertEqual(c.min_effect, stats.DEFAULT_MIN_EFFECT)  # not noisy.json's 30% floor
        c = compare.compare_results(loaded("plain_gbench.json"), loaded("plain_gbench.json"))
        self.assertEqual(c.min_effect, stats.DEFAULT_MIN_EFFECT)

    def test_cells_in_one_file_only_are_added_or_removed(self):
        base = loaded("base.json")
        fewer = load.Result(base.path, base.context, dict(list(base.cells.items())[:-1]))
        c = compare.compare_results(fewer, base)
        self.assertEqual(c.added, [list(base.cells)[-1]])
        c = compare.compare_results(base, fewer)
        self.assertEqual(c.removed, [list(base.cells)[-1]])
        self.assertEqual(compare.exit_status(c), exits.INCONCLUSIVE)  # not a failure either

    def test_few_repetitions_are_inconclusive(self):
        b = synthetic("b", {"x": [1.0, 1.0]})
        c = synthetic("c", {"x": [2.0, 2.0]})
        row = compare.compare_results(b, c).rows[0]
        self.assertEqual(row.verdict, stats.INCONCLUSIVE)
        self.assertIn("too few samples", row.note)

    def test_a_file_measured_with_an_injected_slowdown_says_so(self):
        b = synthetic("b", {"x": [1.0, 1.1, 1.2]})
        c = load.Result("c", dict(b.context, cloak_injected_ns=500), b.cells)
        cmp = compare.compare_results(b, c)
        self.assertTrue(any("CLOAK_INJECT_NS=500" in n for n in cmp.notes))
        self.assertTrue(any("CLOAK_INJECT_NS=500" in w for w in c.warnings))

    def test_the_injected_path_is_named_and_a_file_without_one_slowed_the_whole_call(self):
        b = synthetic("b", {"x": [1.0, 1.1, 1.2]})
        c = load.Result("c", dict(b.context, cloak_injected_ns=500,
                                  cloak_injected_path="establish"), b.cells)
        self.assertEqual(c.injected_path, "establish")
        cmp = compare.compare_results(b, c)
        self.assertTrue(any("CLOAK_INJECT_PATH=establish" in n for n in cmp.notes), cmp.notes)
        self.assertTrue(any("every new security context" in w for w in c.warnings), c.warnings)
        old = load.Result("o", dict(b.context, cloak_injected_ns=500), b.cells)
        self.assertEqual(old.injected_path, "call")
        self.assertTrue(any("every proxy call" in w for w in old.warnings), old.warnings)


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
        self.assertNotIn(stats.REGRESSED, set(verdicts(c).values()))
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


NONE_STEADY = "^cloak/kernel/uds/none/steady/"  # 6 cells unchanged between base and a rerun


class ExitStatus(unittest.TestCase):
    """`compare` end to end on the fixture files, one test per status of the convention it shares
    with the gate (exits.py): 0 pass, 1 regressed or failed, 2 unusable input, 3 inconclusive,
    and --fail-on-inconclusive turning 3 (only) into 1."""

    def compare(self, *args, status):
        p = run_cli("compare", *args)
        self.assertEqual(p.returncode, status, p.stdout[-2000:] + p.stderr)
        if "--json" in args:
            self.assertEqual(json.loads(p.stdout)["exit_status"], status)
        return p

    def test_0_every_cell_unchanged_or_improved(self):
        p = self.compare("--json", "--cells", NONE_STEADY, fixture("base.json"),
                         fixture("same_machine_rerun.json"), status=exits.PASS)
        self.assertEqual(json.loads(p.stdout)["counts"]["unchanged"], 6)
        p = self.compare("--json", "--cells", "^" + SLOWER + "$", fixture("slower_one_cell.json"),
                         fixture("base.json"), status=exits.PASS)
        self.assertEqual(json.loads(p.stdout)["counts"]["improved"], 1)

    def test_1_a_cell_regressed(self):
        p = self.compare("--json", "--cells", "^" + SLOWER + "$", fixture("base.json"),
                         fixture("slower_one_cell.json"), status=exits.FAIL)
        self.assertEqual(json.loads(p.stdout)["counts"]["regressed"], 1)

    def test_1_a_cell_failed_in_the_candidate(self):
        p = self.compare("--json", fixture("base.json"), fixture("failed_cell.json"),
                         status=exits.FAIL)
        self.assertEqual(json.loads(p.stdout)["counts"]["failed"], 1)

    def test_2_unusable_input(self):
        for args in ((fixture("base.json"), fixture("not_json.txt")),
                     (fixture("base.json"), fixture("other_machine.json")),
                     (fixture("wrong_schema.json"), fixture("base.json"))):
            with self.subTest(args=args):
                p = self.compare(*args, status=exits.UNUSABLE)
                self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.compare("--min-effect", "lots", fixture("base.json"), fixture("base.json"),
                     status=exits.UNUSABLE)  # bad usage

    def test_3_inconclusive(self):
        p = self.compare("--json", fixture("base.json"), fixture("noisy.json"),
                         status=exits.INCONCLUSIVE)
        data = json.loads(p.stdout)
        self.assertEqual(data["counts"]["inconclusive"], 50)
        self.assertIn("NOT A PASS", data["headline"])

    def test_0_threaded_load_cells_are_not_judged(self):
        # A threaded load cell runs once (one sample, the run's wall time): compare leaves it out,
        # neither judged nor added/removed, so it cannot make the comparison inconclusive.
        threaded = ("load/kernel/uds/auth:local/none/clients:1000/pop:zipf:1/cache:na/"
                    "shape:apartment/loop:closed/place:unpinned/bytes:64/threads:2")
        with tempfile.TemporaryDirectory() as tmp:
            files = []
            for source, wall in (("base.json", 0.3e9), ("same_machine_rerun.json", 0.9e9)):
                with open(fixture(source), encoding="utf-8") as f:
                    data = json.load(f)
                data["benchmarks"].append({
                    "name": threaded, "run_name": threaded, "run_type": "iteration",
                    "repetitions": 1, "repetition_index": 0, "threads": 1, "iterations": 1,
                    "real_time": wall, "cpu_time": wall, "time_unit": "ns",
                    "calls_per_s": 1e5})
                files.append(os.path.join(tmp, source))
                with open(files[-1], "w", encoding="utf-8") as f:
                    json.dump(data, f)
            p = self.compare("--json", "--cells", NONE_STEADY + "|^load/", *files,
                             status=exits.PASS)
        data = json.loads(p.stdout)
        self.assertEqual(data["counts"]["unchanged"], 6)
        self.assertNotIn(threaded, p.stdout)

    def test_fail_on_inconclusive_turns_3_into_1_and_leaves_the_rest_alone(self):
        self.compare("--json", "--fail-on-inconclusive", fixture("base.json"),
                     fixture("noisy.json"), status=exits.FAIL)
        self.compare("--fail-on-inconclusive", "--cells", NONE_STEADY, fixture("base.json"),
                     fixture("same_machine_rerun.json"), status=exits.PASS)
        self.compare("--fail-on-inconclusive", "--cells", "^" + SLOWER + "$",
                     fixture("base.json"), fixture("slower_one_cell.json"), status=exits.FAIL)
        self.compare("--fail-on-inconclusive", fixture("base.json"), fixture("not_json.txt"),
                     status=exits.UNUSABLE)


class Output(unittest.TestCase):
    def test_markdown_opens_with_the_verdict_and_the_cells_that_decided_it(self):
        c = compare.compare_results(loaded("base.json"), loaded("slower_one_cell.json"),
                                    cells="^cloak/kernel/uds/dynamic/switch/")
        md = compare.render_markdown(c)
        first = md.split("\n\n")[1]
        self.assertTrue(first.startswith("**REGRESSED"), first)
        self.assertIn(SLOWER, first)
        self.assertIn("Holm", md)
        self.assertIn("| %s |" % SLOWER, md)
        self.assertIn("Geometric mean", md)

    def test_json(self):
        c = compare.compare_results(loaded("base.json"), loaded("slower_one_cell.json"))
        data = json.loads(json.dumps(compare.to_json(c, compare.exit_status(c))))
        self.assertEqual(data["exit_status"], exits.INCONCLUSIVE)  # 5 + 5 repetitions, 50 cells
        self.assertEqual(data["family_size"], 50)
        self.assertEqual(len(data["cells"]), 50)
        self.assertTrue(all("level" in cell and "confidence" in cell for cell in data["cells"]))
        self.assertTrue(any("Holm" in line for line in data["rule"]))


if __name__ == "__main__":
    unittest.main()
