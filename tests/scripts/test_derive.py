"""Decomposition and same-run ratios are built from the run's own baselines."""

import unittest

import helpers  # noqa: F401  (puts scripts/ on sys.path for cloakpy)
from helpers import fixture
from cloakpy import derive, load
from cloakpy.stats import median

SAME = "place:same/bytes:64/threads:1"


class Decomposition(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.r = load.load_result(fixture("base.json"))

    def base(self, name):
        return median(self.r.cells[name].samples)

    def test_dynamic_switch_is_transport_probe_switch_context_and_remainder(self):
        cell = self.r.cells["cloak/kernel/uds/dynamic/switch/probe:kernel/cache:none/" + SAME]
        d = derive.decompose(self.r, cell)
        rt = self.base("baseline/roundtrip/place:same/bytes:64")
        self.assertAlmostEqual(d.transport, rt)
        self.assertAlmostEqual(d.probe, self.base("baseline/probe:kernel"))
        self.assertAlmostEqual(d.switch, self.base("baseline/switch"))
        self.assertAlmostEqual(d.new_context, rt)  # one context per call = one extra round trip
        self.assertAlmostEqual(d.transport + d.probe + d.switch + d.new_context + d.remainder,
                               d.measured)
        self.assertEqual(d.notes, [])

    def test_every_n_charges_one_nth_of_a_switch(self):
        cell = self.r.cells["cloak/kernel/uds/none/every:4/probe:na/cache:na/" + SAME]
        d = derive.decompose(self.r, cell)
        self.assertAlmostEqual(d.switch, self.base("baseline/switch") / 4)
        self.assertEqual(d.probe, 0.0)
        self.assertEqual(d.new_context, 0.0)

    def test_negative_remainder_is_kept(self):
        cell = self.r.cells["cloak/kernel/uds/none/switch/probe:na/cache:na/place:cross/bytes:64/"
                            "threads:1"]
        d = derive.decompose(self.r, cell)
        self.assertLess(d.remainder, 0)

    def test_model_cells_measure_only_the_transport(self):
        cell = self.r.cells["cloak/model/inproc/none/steady/probe:na/cache:na/place:na/bytes:64/"
                            "threads:1"]
        d = derive.decompose(self.r, cell)
        self.assertAlmostEqual(d.transport, self.base("baseline/model/inproc"))
        self.assertIsNone(d.probe)
        self.assertTrue(d.notes)

    def test_baselines_and_failed_cells_are_not_decomposed(self):
        self.assertIsNone(derive.decompose(self.r, self.r.cells["baseline/switch"]))
        failed = load.load_result(fixture("failed_cell.json"))
        cell = next(c for c in failed.cells.values() if c.failed)
        self.assertIsNone(derive.decompose(failed, cell))


class SameRunRatios(unittest.TestCase):
    def test_ratios_over_none_and_over_transport(self):
        r = load.load_result(fixture("base.json"))
        ratios = derive.same_run_ratios(r)
        name = "cloak/kernel/uds/dynamic/switch/probe:kernel/cache:none/" + SAME
        over_none = ratios[name + derive.RATIO_OVER_NONE]
        none = r.cells["cloak/kernel/uds/none/switch/probe:na/cache:na/" + SAME]
        self.assertAlmostEqual(median(over_none.samples),
                               median(r.cells[name].samples) / median(none.samples))
        self.assertIn(name + derive.RATIO_OVER_TRANSPORT, ratios)
        self.assertNotIn("cloak/kernel/uds/none/switch/probe:na/cache:na/" + SAME
                         + derive.RATIO_OVER_NONE, ratios)

    def test_ratios_do_not_depend_on_machine_speed(self):
        a = derive.same_run_ratios(load.load_result(fixture("base.json")))
        b = derive.same_run_ratios(load.load_result(fixture("other_machine.json")))
        self.assertEqual(set(a), set(b))
        for name in a:
            self.assertAlmostEqual(median(a[name].samples) / median(b[name].samples), 1.0,
                                   delta=0.02, msg=name)

    def test_plain_files_have_no_ratios(self):
        self.assertEqual(derive.same_run_ratios(load.load_result(fixture("plain_gbench.json"))), {})


if __name__ == "__main__":
    unittest.main()
