#!/usr/bin/python3
"""`cloak-verify --json --auth negotiate`: every scenario of docs/design.md §1 runs once per
mechanism SPNEGO negotiates (named mech:krb5/... and mech:ntlm/...) and is ok, with the identity
from the exchange; the attacks that apply are refused with the named status; --mech picks one
mechanism and is refused without --auth negotiate. Exits 77 (skipped) only where krb5's programs or
Debian's gss-ntlmssp are not installed, or this process may not switch identities, saying so."""
import argparse
import json
import os
import subprocess
import sys
import unittest

ARGS = None
RESULT = None
SKIPPED = 77
KRB5_PROGRAMS = ("/usr/sbin/krb5kdc", "/usr/sbin/kdb5_util", "/usr/sbin/kadmin.local")
NTLMSSP = "/usr/lib/x86_64-linux-gnu/gssntlmssp/gssntlmssp.so"
# What the SPNEGO acceptor must refuse, and how (docs/verify.md, "With --auth negotiate").
REFUSALS = {
    "negotiate/identity_without_a_user_fails_with_no_credentials": {"error": "no credentials for the identity"},
    "negotiate/context_from_another_connection_is_rejected": {"refused": "unknown_context"},
    "negotiate/tampered_token_is_rejected": {"refused": "auth_failed"},
}
# Each of these has a refused step and then a call that works again.
REFUSED_STEP = {
    "negotiate/tampered_mic_is_rejected": "bad_mic",
    "negotiate/tampered_sealed_message_is_rejected": "not_sealed",
}


def verify(*args):
    return subprocess.run([ARGS.verify] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=300)


def scenario(name):
    for s in RESULT["scenarios"]:
        if s["name"] == name:
            return s
    raise AssertionError("no scenario %s in %s" % (name, [s["name"] for s in RESULT["scenarios"]]))


class verify_negotiate(unittest.TestCase):
    def test_every_scenario_is_ok(self):
        self.assertTrue(RESULT["ok"], json.dumps([s for s in RESULT["scenarios"] if not s["ok"]], indent=1))
        self.assertEqual(RESULT["auth"], "negotiate")
        self.assertEqual(RESULT["mech"], "both")

    def test_every_scenario_runs_once_per_mechanism(self):
        names = [s["name"] for s in RESULT["scenarios"]]
        krb5 = sorted(n[len("mech:krb5/"):] for n in names if n.startswith("mech:krb5/"))
        ntlm = sorted(n[len("mech:ntlm/"):] for n in names if n.startswith("mech:ntlm/"))
        self.assertEqual(len(krb5) + len(ntlm), len(names), names)
        # the same scenarios, but for the replayed AUTHENTICATE (NTLM's challenge; krb5 has a replay
        # cache and the kerberos package's own scenario)
        self.assertEqual(set(ntlm) - set(krb5),
                         {"negotiate/authenticate_replayed_on_a_second_connection_is_rejected"})
        self.assertEqual(set(krb5) - set(ntlm), set())
        for s in RESULT["scenarios"]:
            self.assertEqual(s["mech"], s["name"].split("/")[0][len("mech:"):], s["name"])
        # every scenario of docs/design.md §1 the kerberos and ntlm packages run
        for name in ("none_with_token", "static_set_blanket_then_token_change_then_revert",
                     "dynamic_c1_c2_revert_c1/probe:kernel/cache:none", "explicit_identity",
                     "dynamic_c1_reimpersonate_c1/track:token", "anonymous_level_hides_the_caller",
                     "access_check_at_impersonate_level_acts_as_caller"):
            self.assertIn(name, krb5)
            self.assertIn(name, ntlm)

    def test_the_identity_comes_from_the_exchange(self):
        for mech in ("krb5", "ntlm"):
            s = scenario("mech:%s/static_set_blanket_then_token_change_then_revert" % mech)
            self.assertEqual(s["seen"], {"uid": 61000, "gid": 61000})
            s = scenario("mech:%s/dynamic_c1_c2_revert_c1/probe:kernel/cache:none" % mech)
            self.assertEqual(s["contexts_established"], 4)

    def test_the_attacks_are_refused_with_the_named_status(self):
        for mech in ("krb5", "ntlm"):
            for name, want in REFUSALS.items():
                s = scenario("mech:%s/%s" % (mech, name))
                self.assertTrue(s["ok"], s)
                self.assertEqual({k: v for k, v in s["seen"].items() if k != "detail"}, want, s)
            for name, status in REFUSED_STEP.items():
                s = scenario("mech:%s/%s" % (mech, name))
                self.assertTrue(s["ok"], s)
                self.assertIn({"refused": status}, [{k: v for k, v in st.get("seen", {}).items()
                                                     if k == "refused"} for st in s["steps"]], s)
        s = scenario("mech:ntlm/negotiate/authenticate_replayed_on_a_second_connection_is_rejected")
        self.assertEqual(s["seen"]["refused"], "auth_failed")

    def test_mech_picks_one_mechanism(self):
        out = verify("--json", "--auth", "negotiate", "--mech", "ntlm", "--filter", "tampered_token")
        self.assertEqual(out.returncode, 0, out.stderr)
        doc = json.loads(out.stdout)
        self.assertEqual([s["name"] for s in doc["scenarios"]],
                         ["mech:ntlm/negotiate/tampered_token_is_rejected"])
        self.assertEqual(doc["mech"], "ntlm")

    def test_mech_without_negotiate_is_a_bad_command_line(self):
        out = verify("--auth", "ntlm", "--mech", "krb5")
        self.assertEqual(out.returncode, 2)
        self.assertIn("--mech needs --auth negotiate", out.stderr)


def main():
    global ARGS, RESULT
    p = argparse.ArgumentParser()
    p.add_argument("--verify", required=True)
    ARGS, rest = p.parse_known_args()
    missing = [x for x in KRB5_PROGRAMS + (NTLMSSP,) if not os.path.exists(x)]
    if missing:
        print("skipped: not installed: %s" % ", ".join(missing))
        return SKIPPED
    if os.geteuid() != 0:
        print("skipped: --auth negotiate needs the kernel backend (run as root)")
        return SKIPPED
    out = verify("--json", "--auth", "negotiate")
    if out.returncode not in (0, 1):
        print(out.stderr, file=sys.stderr)
        return 1
    RESULT = json.loads(out.stdout)
    prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
