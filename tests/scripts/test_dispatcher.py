"""scripts/cloakbench without a build: every command's --help prints at once (nothing installed,
built or re-run, numpy not even importable), apt installs skip recommended packages, and the
build-directory check allows a build directory that does not exist yet."""

import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

import helpers

DISPATCHER = os.path.join(helpers.ROOT, "scripts", "cloakbench")
COMMANDS = ("run", "verify", "test", "plot", "compare", "report", "history")
NOBODY = 65534


def blocked_modules(directory):
    """A directory that makes numpy, scipy and matplotlib fail to import when put on PYTHONPATH."""
    for name in ("numpy", "scipy", "matplotlib"):
        os.makedirs(os.path.join(directory, name))
        with open(os.path.join(directory, name, "__init__.py"), "w") as f:
            f.write("raise ImportError('%s is blocked by test_dispatcher')\n" % name)
    return directory


class HelpPrintsAtOnce(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cloakbench-help.")
        self.addCleanup(shutil.rmtree, self.tmp)
        self.build = os.path.join(self.tmp, "fresh-clone", "build", "release")
        self.env = dict(os.environ, CLOAK_BUILD_DIR=self.build,
                        PYTHONPATH=blocked_modules(os.path.join(self.tmp, "blocked")))
        self.env.pop("CLOAK_NO_BUILD", None)

    def dispatch(self, *argv):
        started = time.monotonic()
        p = subprocess.run([DISPATCHER, *argv], capture_output=True, text=True, env=self.env,
                           timeout=60, stdin=subprocess.DEVNULL)
        return p, time.monotonic() - started

    def assert_help(self, argv, words):
        p, seconds = self.dispatch(*argv)
        self.assertEqual(p.returncode, 0, "%s: %s" % (argv, p.stderr))
        self.assertIn("usage:", p.stdout.lower(), argv)
        self.assertIn(words, p.stdout, argv)
        self.assertLess(seconds, 5, "%s took %.1f s" % (argv, seconds))
        for sign in ("installing", "apt-get", "cmake", "user namespace", "Traceback"):
            self.assertNotIn(sign, p.stderr, "%s: %s" % (argv, p.stderr))
        self.assertFalse(os.path.exists(os.path.dirname(self.build)), "%s configured a build" % (argv,))

    def test_every_command_prints_its_help(self):
        words = {"run": "--list", "verify": "--backend", "test": "ctest", "plot": "FILE",
                 "compare": "BASELINE", "report": "--baseline", "history": "DIR"}
        for command in COMMANDS:
            for flag in ("--help", "-h"):
                with self.subTest(command=command, flag=flag):
                    self.assert_help([command, flag], words[command])
            with self.subTest(command=command, via="help"):
                self.assert_help(["help", command], words[command])

    def test_run_help_names_the_pass_through_flags(self):
        self.assert_help(["run", "--quick", "--help"], "GOOGLE_BENCHMARK_FLAG")

    def test_verify_help_without_a_build_says_so(self):
        self.assert_help(["verify", "--help"], "not built yet")

    def test_a_help_after_the_double_dash_is_refused_not_printed(self):
        # `run -- --help` would hand --help to Google Benchmark; run checks its arguments first
        # and refuses it, before any build.
        p, seconds = self.dispatch("run", "--", "--help")
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("Google Benchmark flags", p.stderr)
        self.assertFalse(os.path.exists(os.path.dirname(self.build)))

    def test_a_mistyped_run_option_is_refused_before_building(self):
        p, seconds = self.dispatch("run", "--repetitons", "5")
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("usage: cloakbench run", p.stderr)
        self.assertLess(seconds, 5)
        self.assertFalse(os.path.exists(os.path.dirname(self.build)))


class OneExitConvention(unittest.TestCase):
    """gate and compare share one exit status (issue 17): the README, `scripts/cloakbench help`,
    both --helps and docs/reading.md each state all of it, in the same order."""

    setUp = HelpPrintsAtOnce.setUp  # a fresh clone's environment, numpy blocked
    dispatch = HelpPrintsAtOnce.dispatch

    CONVENTION = re.compile(r"0 pass\W.*?1 a cell regressed or failed\W.*?2 unusable input\W.*?"
                            r"3 inconclusive\W.*?--fail-on-inconclusive`? turns 3 into 1", re.S)

    def assert_states_the_convention(self, where, text):
        flat = " ".join(text.replace("*", "").split())
        self.assertRegex(flat, self.CONVENTION, where)

    def test_every_place_states_the_same_exit_status(self):
        for argv in (["help"], ["gate", "--help"], ["compare", "--help"]):
            with self.subTest(argv=argv):
                p, _ = self.dispatch(*argv)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assert_states_the_convention(" ".join(argv), p.stdout)
        for name in ("README.md", os.path.join("docs", "reading.md")):
            with self.subTest(file=name):
                with open(os.path.join(helpers.ROOT, name), encoding="utf-8") as f:
                    self.assert_states_the_convention(name, f.read())

    def test_the_tables_of_reading_md_say_3_for_inconclusive(self):
        with open(os.path.join(helpers.ROOT, "docs", "reading.md"), encoding="utf-8") as f:
            text = f.read()
        self.assertIn("| 3 | inconclusive:", text)             # compare's table
        self.assertIn("| **INCONCLUSIVE** | 3 |", text)         # the gate's table


def dispatcher_text():
    with open(DISPATCHER, encoding="utf-8") as f:
        return f.read()


def package_lists():
    """The dispatcher's package arrays, as bash sees them."""
    script = ("eval \"$(sed -n '/^BUILD_PACKAGES=/,/^TEST_PACKAGES=/p' %s)\"; "
              "echo \"${BUILD_PACKAGES[*]}\"; echo \"${RUNTIME_PACKAGES[*]}\"; "
              "echo \"${TEST_PACKAGES[*]}\"" % DISPATCHER)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    build, runtime, tests = out.splitlines()
    return build.split(), runtime.split(), tests.split()


class Packages(unittest.TestCase):
    def test_every_apt_install_skips_recommended_packages(self):
        lines = [l for l in dispatcher_text().splitlines() if "apt-get install" in l]
        self.assertGreaterEqual(len(lines), 3)
        for line in lines:
            self.assertIn("--no-install-recommends", line)

    def test_kerberos_packages_are_listed(self):
        build, runtime, _ = package_lists()
        for pkg in ("pkg-config", "libkrb5-dev"):
            self.assertIn(pkg, build)
        for pkg in ("krb5-kdc", "krb5-admin-server", "krb5-user", "uidmap"):
            self.assertIn(pkg, runtime)

    def test_ntlm_packages_are_listed(self):
        build, runtime, _ = package_lists()
        self.assertIn("libssl-dev", build)      # the NT hashes' MD4
        self.assertIn("gss-ntlmssp", runtime)   # the NTLMSSP mechanism run, verify and test load

    def test_test_installs_the_browser_the_page_tests_use(self):
        _, _, tests = package_lists()
        self.assertIn("chromium", tests)


def can_write_build(build, user=None):
    """The dispatcher's can_write_build for BUILD, run as `user` (uid) when given."""
    script = ("eval \"$(sed -n '/^can_write_build()/,/^}/p' %s)\"; BUILD=%s; can_write_build"
              % (DISPATCHER, build))
    prefix = []
    if user is not None:
        prefix = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"]
    return subprocess.run(prefix + ["bash", "-c", script], capture_output=True).returncode == 0


@unittest.skipUnless(os.geteuid() != 0 or shutil.which("setpriv"),
                     "as root the check needs setpriv to run as another user")
class BuildDirectoryCheck(unittest.TestCase):
    """Run as an unprivileged user: root may write anywhere."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cloakbench-write.")
        self.addCleanup(shutil.rmtree, self.tmp)
        os.chmod(self.tmp, 0o755)
        self.user = NOBODY if os.geteuid() == 0 else None
        self.clone = os.path.join(self.tmp, "clone")
        os.mkdir(self.clone)
        if self.user is not None:
            os.chown(self.clone, self.user, self.user)

    def test_a_fresh_clone_without_build_may_build(self):
        self.assertTrue(can_write_build(os.path.join(self.clone, "build", "release"), self.user))

    def test_an_existing_writable_build_may_build(self):
        build = os.path.join(self.clone, "build", "release")
        os.makedirs(build)
        if self.user is not None:
            for d in (os.path.dirname(build), build):
                os.chown(d, self.user, self.user)
        self.assertTrue(can_write_build(build, self.user))

    def test_someone_elses_tree_may_not(self):
        theirs = os.path.join(self.tmp, "theirs")
        os.makedirs(os.path.join(theirs, "b"))
        if self.user is None:  # not root: make the tree read-only instead of someone else's
            for d in (os.path.join(theirs, "b"), theirs):
                os.chmod(d, 0o555)
                self.addCleanup(os.chmod, d, 0o755)
        self.assertFalse(can_write_build(os.path.join(theirs, "build", "release"), self.user))
        self.assertFalse(can_write_build(os.path.join(theirs, "b"), self.user))


if __name__ == "__main__":
    unittest.main()
