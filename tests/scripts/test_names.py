"""Cell names mean one thing to every reader."""

import unittest

import helpers  # noqa: F401  (puts scripts/ on sys.path for cloakpy)
from cloakpy import names

CELL = "cloak/kernel/uds/dynamic/every:4/probe:kernel/cache:lru:4/place:cross/bytes:4096/threads:2"


class CellNames(unittest.TestCase):
    def test_matrix_cell_fields(self):
        i = names.parse_name(CELL)
        self.assertEqual((i.kind, i.backend, i.transport, i.cloaking, i.pattern, i.probe, i.cache,
                          i.place, i.bytes, i.threads),
                         ("cell", "kernel", "uds", "dynamic", "every:4", "kernel", "lru:4",
                          "cross", 4096, 2))

    def test_per_message_cells_are_labelled_as_such(self):
        i = names.parse_name("cloak/kernel/uds/dynamic/switch/probe:none/cache:per-message/"
                             "place:same/bytes:64/threads:1")
        self.assertEqual((i.probe, i.cache), ("none", "per-message"))
        self.assertIn("per-message credentials", i.variant_label())

    def test_google_benchmark_thread_suffix_is_tolerated(self):
        i = names.parse_name(CELL + "/threads:2/real_time")
        self.assertTrue(i.is_cell)
        self.assertEqual(i.threads, 2)

    def test_baselines(self):
        p = names.parse_name
        self.assertEqual(p("baseline/syscall").baseline, "syscall")
        self.assertEqual(p("baseline/probe:generation").probe, "generation")
        self.assertEqual(p("baseline/switch").baseline, "switch")
        rt = p("baseline/roundtrip/place:same/bytes:64")
        self.assertEqual((rt.baseline, rt.place, rt.bytes), ("roundtrip", "same", 64))
        self.assertEqual(p("baseline/connect/place:cross").place, "cross")
        self.assertEqual(p("baseline/model/inproc").transport, "inproc")

    def test_negotiate_names_carry_their_mechanism_and_no_other_name_changes(self):
        cell = ("cloak/kernel/uds/auth:negotiate/mech:ntlm/dynamic/switch/probe:kernel/cache:none/"
                "track:identity/prot:none/tickets:na/place:same/bytes:64/threads:1")
        i = names.parse_name(cell)
        self.assertEqual((i.kind, i.auth, i.mech, i.package, i.cloaking, i.pattern, i.cache),
                         ("cell", "negotiate", "ntlm", "negotiate/mech:ntlm", "dynamic", "switch",
                          "none"))
        self.assertIn("negotiate/mech:ntlm", i.group_key())
        ntlm = names.parse_name(cell.replace("auth:negotiate/mech:ntlm", "auth:ntlm"))
        self.assertEqual((ntlm.auth, ntlm.mech, ntlm.package), ("ntlm", "na", "ntlm"))
        # mech: belongs to negotiate alone, and names one of its mechanisms
        for bad in (cell.replace("auth:negotiate/", "auth:kerberos/"),
                    cell.replace("mech:ntlm", "mech:schannel")):
            self.assertEqual(names.parse_name(bad).kind, "generic", bad)
        self.assertIn("over NTLM", names.PACKAGE_TITLES[i.package])

    def test_negotiate_baselines(self):
        for name, kind, mech, extra in (
                ("baseline/negotiate/mech:krb5/establish/inproc", "negotiate-establish", "krb5",
                 {"transport": "inproc"}),
                ("baseline/negotiate/mech:ntlm/establish/place:same", "negotiate-establish", "ntlm",
                 {"transport": "uds", "place": "same"}),
                ("baseline/negotiate/mech:krb5/mic/bytes:64", "negotiate-mic", "krb5", {"bytes": 64}),
                ("baseline/negotiate/mech:ntlm/wrap/bytes:4096", "negotiate-wrap", "ntlm",
                 {"bytes": 4096})):
            i = names.parse_name(name)
            self.assertEqual((i.kind, i.baseline, i.auth, i.mech), ("baseline", kind, "negotiate", mech))
            for k, v in extra.items():
                self.assertEqual(getattr(i, k), v, name)
        self.assertEqual(names.parse_name("baseline/negotiate/mech:x/mic/bytes:64").kind, "generic")
        self.assertEqual(names.parse_name("baseline/ntlm/establish/place:same").mech, "na")

    def test_other_names_are_generic(self):
        for name in ("BM_memcpy/64", "cloak/kernel/uds", "cloak/kernel/uds/sometimes/steady/probe:na/"
                     "cache:na/place:same/bytes:64/threads:1", "baseline/roundtrip/place:x"):
            self.assertEqual(names.parse_name(name).kind, "generic", name)

    def test_run_configuration_suffixes_are_not_part_of_a_cell(self):
        self.assertEqual(names.canonical_name("BM_x/64/repeats:5"), "BM_x/64")
        self.assertEqual(names.canonical_name("BM_x/min_time:0.500/repeats:3"), "BM_x")
        self.assertEqual(names.canonical_name("BM_x/threads:2"), "BM_x/threads:2")

    def test_switches_per_call(self):
        self.assertEqual(names.switches_per_call("steady"), 0.0)
        self.assertEqual(names.switches_per_call("switch"), 1.0)
        self.assertEqual(names.switches_per_call("reimpersonate"), 1.0)
        self.assertEqual(names.switches_per_call("every:4"), 0.25)
        self.assertIsNone(names.switches_per_call("sometimes"))


if __name__ == "__main__":
    unittest.main()
