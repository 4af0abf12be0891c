#!/usr/bin/python3
"""Bad command lines: scripts/cloakbench (itself, verify, test), cloak-verify and cloak-downstream
each answer with a message naming the problem, their usage, and exit status 2."""
import argparse
import os
import subprocess
import sys
import tempfile
import unittest
import pwd

ARGS = None


def run(argv, env_extra=None, timeout=60):
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


def existing_user_uid():
    return next(p.pw_uid for p in pwd.getpwall() if p.pw_uid != 0)


class bad_command_line(unittest.TestCase):
    def assert_usage_error(self, result, *needles, usage="usage"):
        text = result.stdout + result.stderr
        self.assertEqual(result.returncode, 2, f"exit {result.returncode}, expected 2:\n{text}")
        self.assertIn("error", result.stderr.lower(), result.stderr)
        self.assertIn(usage, result.stderr.lower(), f"no usage in:\n{result.stderr}")
        for needle in needles:
            self.assertIn(needle, result.stderr, result.stderr)


class dispatcher(bad_command_line):
    def dispatch(self, *argv):
        # The binaries already built are used as they are: no configure, no build, no install.
        return run([ARGS.dispatcher, *argv], {"CLOAK_BUILD_DIR": ARGS.build_dir, "CLOAK_NO_BUILD": "1"})

    def test_no_command_prints_usage_and_exits_2(self):
        self.assert_usage_error(self.dispatch(), "no command")

    def test_unknown_command_is_named(self):
        self.assert_usage_error(self.dispatch("frobnicate"), "unknown command 'frobnicate'")

    def test_unknown_dashed_command_is_named(self):
        self.assert_usage_error(self.dispatch("--verbose"), "unknown command '--verbose'")

    def test_test_takes_no_arguments(self):
        self.assert_usage_error(self.dispatch("test", "--bogus"), "test takes no arguments")

    def test_verify_with_an_unknown_flag(self):
        self.assert_usage_error(self.dispatch("verify", "--bogus"), "--bogus")

    def test_verify_with_a_bad_backend(self):
        self.assert_usage_error(self.dispatch("verify", "--backend", "quantum"), "quantum")

    def test_verify_with_a_malformed_client_range(self):
        self.assert_usage_error(self.dispatch("verify", "--clients", "lots"), "client range 'lots'")

    def test_verify_with_root_in_the_client_range(self):
        self.assert_usage_error(self.dispatch("verify", "--clients", "0:16"), "uid/gid 0")

    def test_verify_with_a_real_user_in_the_client_range(self):
        uid = existing_user_uid()
        self.assert_usage_error(self.dispatch("verify", "--clients", f"{uid}:61000:1"),
                                f"uid {uid} belongs to an existing user")

    def test_help_is_not_an_error(self):
        for argv in (["help"], ["--help"], ["-h"]):
            result = self.dispatch(*argv)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertIn("usage: scripts/cloakbench", result.stdout)

    def test_every_commands_help_is_not_an_error(self):
        for command in ("run", "verify", "test", "plot", "compare", "report"):
            with self.subTest(command=command):
                result = self.dispatch(command, "--help")
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertIn("usage", result.stdout.lower())
        # With a build, verify --help is the program's own.
        self.assertIn("--clients", self.dispatch("verify", "--help").stdout)

    def test_run_refuses_what_it_sets_itself_after_the_double_dash(self):
        self.assert_usage_error(self.dispatch("run", "--", "--benchmark_filter=x"), "--filter",
                                usage="usage: cloakbench run")

    def test_a_missing_build_is_a_clear_error_not_a_build(self):
        with tempfile.TemporaryDirectory() as empty:
            result = run([ARGS.dispatcher, "verify"], {"CLOAK_BUILD_DIR": empty, "CLOAK_NO_BUILD": "1"})
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn(f"no build in {empty}", result.stderr)


class cloak_verify(bad_command_line):
    def verify(self, *argv):
        return run([ARGS.verify, *argv])

    def test_unknown_flag(self):
        self.assert_usage_error(self.verify("--bogus"), "--bogus")

    def test_bad_backend(self):
        self.assert_usage_error(self.verify("--backend", "quantum"), "quantum")

    def test_flag_without_its_value(self):
        self.assert_usage_error(self.verify("--clients"), "--clients")

    def test_malformed_client_ranges(self):
        for text in ("lots", "1:2:3:4", "61000:x", "", "61000:0"):
            with self.subTest(text=text):
                self.assert_usage_error(self.verify("--clients", text), "client range")

    def test_client_range_with_root(self):
        self.assert_usage_error(self.verify("--clients", "0:16"), "uid/gid 0")

    def test_client_range_wrapping_past_the_largest_id(self):
        self.assert_usage_error(self.verify("--clients", "4294967290:16"), "wraps")

    def test_client_range_with_a_real_user(self):
        uid = existing_user_uid()
        self.assert_usage_error(self.verify("--clients", f"{uid}:61000:1"), f"uid {uid} belongs to an existing user")


class cloak_downstream(bad_command_line):
    def downstream(self, *argv):
        return run([ARGS.downstream, *argv])

    def test_missing_socket(self):
        self.assert_usage_error(self.downstream(), "--socket is required")

    def test_unknown_flag(self):
        self.assert_usage_error(self.downstream("--socket", "/nonexistent/s.sock", "--bogus"), "--bogus")

    def test_bad_client_ranges(self):
        uid = existing_user_uid()
        for text, needle in (("lots", "client range 'lots'"), ("0:16", "uid/gid 0"),
                             (f"{uid}:61000:1", f"uid {uid} belongs to an existing user")):
            with self.subTest(text=text):
                self.assert_usage_error(self.downstream("--socket", "/nonexistent/s.sock", "--clients", text), needle)

    def test_out_of_range_numbers(self):
        for flag, value in (("--max-connections", "0"), ("--send-timeout-ms", "0"), ("--cpu", "-3"),
                            ("--max-contexts", "many")):
            with self.subTest(flag=flag):
                self.assert_usage_error(self.downstream("--socket", "/nonexistent/s.sock", flag, value), flag)

    def test_socket_path_too_long(self):
        self.assert_usage_error(self.downstream("--socket", "/tmp/" + "a" * 120 + "/s.sock"), "socket path longer")


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--dispatcher", required=True)
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--verify", required=True)
    parser.add_argument("--downstream", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
