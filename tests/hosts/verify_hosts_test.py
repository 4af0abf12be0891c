#!/usr/bin/python3
"""`cloak-verify --hosts --json`: every cross-host scenario is ok, with the refusals where the rules
say so, the hosts and levels recorded, and no namespace left afterwards. Exits 77 (skipped) only when
this machine cannot make network namespaces (no CAP_NET_ADMIN), saying so."""
import argparse
import json
import os
import subprocess
import sys
import unittest

ARGS = None
RESULT = None
SKIPPED = 77


def namespaces():
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def left_behind(before):
    """Namespaces here now and not before, but for other topologies still alive (a test beside this one)."""
    out = set()
    for n in namespaces() - before:
        parts = n.split("-")
        if len(parts) >= 3 and parts[0] == "cloak" and parts[1].isdigit() and os.path.exists("/proc/" + parts[1]):
            continue
        out.add(n)
    return out

def scenario(name):
    for s in RESULT["scenarios"]:
        if s["name"] == name:
            return s
    raise AssertionError("no scenario %s in %s" % (name, [s["name"] for s in RESULT["scenarios"]]))


def last(s, host):
    return s["steps"][-1]["seen"][host]


class verify_hosts(unittest.TestCase):
    def test_every_scenario_is_ok(self):
        self.assertTrue(RESULT["ok"], json.dumps([s for s in RESULT["scenarios"] if not s["ok"]], indent=1))
        self.assertGreaterEqual(len(RESULT["scenarios"]), 15)

    def test_names_say_one_hop_or_two_hop_and_every_scenario_records_hosts_and_levels(self):
        for s in RESULT["scenarios"]:
            self.assertTrue(s["name"].startswith(("one-hop/", "two-hop/")), s["name"])
            self.assertIn("hosts", s)
            self.assertIn("levels", s)
            if s["name"].startswith("two-hop/"):
                self.assertEqual(s["hosts"], ["middle", "down1", "down2"])
                self.assertIn(s["levels"]["middle"], ("impersonate", "delegate"))
                self.assertEqual(s["levels"]["down1"], "impersonate")
        names = [h["name"] for h in RESULT["topology"]["hosts"]]
        self.assertEqual(names, ["middle", "down1", "down2", "kdc"])
        self.assertGreater(RESULT["topology"]["setup_seconds"], 0)
        self.assertEqual(RESULT["topology"]["subnet"], "198.18.0.0/24")

    def test_one_hop_at_impersonate_shows_the_client(self):
        s = scenario("one-hop/impersonate/dynamic_shows_the_client_at_d1")
        self.assertEqual(last(s, "down1")["uid"], 61000)
        self.assertEqual(s["levels"]["middle"], "impersonate")

    def test_the_local_package_is_refused_over_tcp(self):
        s = scenario("one-hop/local_package_over_tcp_is_refused")
        self.assertEqual(s["steps"][1]["seen"]["down1"]["error"],
                         "authentication package unavailable on this channel")
        self.assertEqual(last(s, "down1")["refused"], "package_unavailable")

    def test_two_hops_at_impersonate_are_refused_by_name_never_with_d1s_or_ps_identity(self):
        for mode in ("dynamic", "static"):
            s = scenario("two-hop/impersonate/%s_at_d1_is_refused_d1_holds_no_credentials_for_c" % mode)
            self.assertEqual(last(s, "down1")["uid"], 61000)
            d2 = last(s, "down2")
            self.assertEqual(d2["error"], "no credentials for the identity")
            self.assertNotIn("uid", d2)
            self.assertIn("forwarded no TGT", d2["detail"])

    def test_two_hops_at_delegate_with_cloaking_show_the_client_at_d2(self):
        for mode in ("dynamic", "static"):
            s = scenario("two-hop/delegate/%s_at_d1_shows_the_client_at_d2" % mode)
            self.assertEqual(last(s, "down2")["uid"], 61000)
            self.assertEqual(s["levels"]["middle"], "delegate")

    def test_two_hops_without_cloaking_at_d1_show_d1_at_d2(self):
        for level in ("delegate", "impersonate"):
            s = scenario("two-hop/%s/none_at_d1_shows_d1_at_d2" % level)
            self.assertTrue(last(s, "down2")["as"].startswith("D1 (cloak/down1@"), last(s, "down2"))

    def test_static_at_d1_ignores_the_token_change_and_dynamic_follows_it(self):
        s = scenario("two-hop/delegate/static_at_d1_ignores_the_token_change_at_the_middle")
        self.assertEqual([st["seen"]["down2"]["uid"] for st in s["steps"] if "seen" in st], [61000, 61000])
        self.assertEqual([st["seen"]["down1"]["uid"] for st in s["steps"] if "seen" in st], [61000, 61001])
        s = scenario("two-hop/delegate/dynamic_at_d1_follows_the_token_change_at_the_middle")
        self.assertEqual([st["seen"]["down2"]["uid"] for st in s["steps"] if "seen" in st], [61000, 61001])

    def test_bad_inputs_end_in_bounded_named_errors(self):
        self.assertEqual(last(scenario("one-hop/bad/clock_skew_beyond_the_kdc_limit_is_refused_by_the_kdc"),
                              "down1")["error"], "clock skew beyond the limit")
        wrong = last(scenario("one-hop/bad/wrong_realm_is_a_named_kdc_error"), "down1")
        self.assertIn("NO-SUCH.REALM", wrong["detail"])
        s = scenario("one-hop/bad/unreachable_host_times_out_within_the_bound")
        self.assertLess(s["steps"][-1]["seen"]["seconds"], 1.5)
        s = scenario("one-hop/bad/wrong_keytab_stops_d1_at_startup_with_a_named_error")
        self.assertIn("cannot acquire acceptor credentials", s["seen"]["error"])
        s = scenario("one-hop/bad/d1_killed_mid_scenario_fails_then_works_after_a_restart")
        seen = [st["seen"]["down1"] for st in s["steps"] if "seen" in st]
        self.assertEqual([v.get("uid", v.get("error")) for v in seen], [61000, "downstream unavailable", 61000])

    def test_no_namespace_survives_the_run(self):
        self.assertEqual(left_behind(BEFORE), set())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--verify", required=True)
    ARGS, rest = parser.parse_known_args()
    BEFORE = namespaces()
    out = subprocess.run([ARGS.verify, "--hosts", "--json"], capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    try:
        RESULT = json.loads(out.stdout)
    except ValueError:
        print("cloak-verify --hosts --json printed no JSON (exit %d):\n%s\n%s" % (out.returncode, out.stdout, out.stderr))
        sys.exit(1)
    if "skipped" in RESULT:
        print("skipped: %s" % RESULT["skipped"])
        sys.exit(SKIPPED)
    if out.returncode != 0:
        print("cloak-verify --hosts exited %d:\n%s" % (out.returncode, out.stderr))
    unittest.main(argv=[sys.argv[0]] + rest)
