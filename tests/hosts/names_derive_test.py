#!/usr/bin/python3
"""The readers know the cross-host names: chan:tcp cells with their hops segment, the TCP round trip
and the AP exchange across TCP at either level; and the decomposition charges each hop: transport from
the round trip with as many hops, new contexts from the AP exchange at delegate level (the middle's)
plus, at hops:2, D1's own contexts with D2 at impersonate level."""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from cloakpy import derive, load, names  # noqa: E402

CELL = ("cloak/kernel/tcp/auth:kerberos/{mode}/switch/probe:{probe}/cache:{cache}/track:{track}/prot:none/"
        "tickets:warm/hops:{hops}/place:na/bytes:64/threads:1")


def dynamic(hops):
    return CELL.format(mode="dynamic", probe="kernel", cache="none", track="identity", hops=hops)


def none(hops):
    return CELL.format(mode="none", probe="na", cache="na", track="na", hops=hops)


def entry(name, ns, **counters):
    e = {"name": name, "run_name": name, "run_type": "iteration", "repetitions": 1, "repetition_index": 0,
         "threads": 1, "iterations": 1000, "real_time": ns, "cpu_time": ns, "time_unit": "ns"}
    e.update(counters)
    return e


def result():
    entries = [
        entry("baseline/tcp/roundtrip/hops:1/bytes:64", 40000.0),
        entry("baseline/tcp/roundtrip/hops:2/bytes:64", 90000.0),
        entry("baseline/kerberos/establish/tcp/level:impersonate", 200000.0, contexts_per_call=1),
        entry("baseline/kerberos/establish/tcp/level:delegate", 600000.0, contexts_per_call=1),
        entry("baseline/probe:kernel", 300.0),
        entry("baseline/switch", 3000.0),
        entry(dynamic(1), 700000.0, contexts_per_call=1.0, probes_per_call=1.0),
        entry(none(1), 45000.0, contexts_per_call=0.0, probes_per_call=0.0),
        entry(dynamic(2), 1000000.0, contexts_per_call=1.0, probes_per_call=1.0, hop2_contexts_per_call=1.0),
        entry(none(2), 100000.0, contexts_per_call=0.0, probes_per_call=0.0, hop2_contexts_per_call=0.0),
    ]
    return load.result_from_document("synthetic", {"context": {}, "benchmarks": entries})


class cross_host_names(unittest.TestCase):
    def test_tcp_cells_carry_hops_and_group_by_them(self):
        one, two = names.parse_name(dynamic(1)), names.parse_name(dynamic(2))
        self.assertTrue(one.is_cell)
        self.assertEqual((one.transport, one.hops, one.place, one.auth), ("tcp", 1, "na", "kerberos"))
        self.assertNotEqual(one.group_key(), two.group_key())
        self.assertEqual(two.group_key()[1], "tcp hops:2")

    def test_tcp_baselines(self):
        rt = names.parse_name("baseline/tcp/roundtrip/hops:2/bytes:64")
        self.assertEqual((rt.baseline, rt.transport, rt.hops, rt.bytes), ("roundtrip", "tcp", 2, 64))
        ap = names.parse_name("baseline/kerberos/establish/tcp/level:delegate")
        self.assertEqual((ap.baseline, ap.transport, ap.level), ("kerberos-establish", "tcp", "delegate"))


class cross_host_decomposition(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.r = result()

    def test_one_hop_charges_the_one_hop_round_trip_and_a_delegated_context(self):
        d = derive.decompose(self.r, self.r.cells[dynamic(1)])
        self.assertEqual(d.transport, 40000.0)
        self.assertEqual(d.new_context, 600000.0)
        self.assertAlmostEqual(d.remainder, 700000.0 - 40000.0 - 300.0 - 3000.0 - 600000.0)

    def test_two_hops_charge_both_round_trips_and_d1s_own_context_with_d2(self):
        d = derive.decompose(self.r, self.r.cells[dynamic(2)])
        self.assertEqual(d.transport, 90000.0)
        self.assertEqual(d.new_context, 600000.0 + 200000.0)
        self.assertTrue(any("D1's with D2" in n for n in d.notes), d.notes)

    def test_none_counterpart_keeps_the_hops(self):
        self.assertEqual(derive.none_counterpart(self.r, self.r.cells[dynamic(2)]).name, none(2))
        ratios = derive.same_run_ratios(self.r)
        self.assertIn(dynamic(2) + derive.RATIO_OVER_NONE, ratios)
        self.assertAlmostEqual(ratios[dynamic(2) + derive.RATIO_OVER_TRANSPORT].samples[0], 1000000.0 / 90000.0)


if __name__ == "__main__":
    unittest.main()
