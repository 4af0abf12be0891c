"""End-to-end tests of `cloakbench run` (cloakpy.run_suite) and of cloak-matrix's command line:
bad arguments exit 2 with usage, a small run writes a complete result file, and SIGINT/SIGTERM
keep the cells that finished in a valid file with no temporary left behind.

Needs CLOAK_BUILD_DIR (the build with bench/cloak-matrix) and PYTHONPATH=scripts."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import gbench_shape  # noqa: E402  (tests/scripts: what Google Benchmark's compare.py reads)

BUILD = os.environ.get("CLOAK_BUILD_DIR", "")
MATRIX = os.path.join(BUILD, "bench", "cloak-matrix")
SMALL = (r"^baseline/(syscall|probe:kernel|roundtrip/place:same/bytes:64|model/inproc)$"
         r"|^cloak/kernel/uds/auth:local/(none|static)/steady/.*tickets:na/place:same/bytes:64/threads:1$"
         r"|^cloak/model/inproc/auth:local/none/steady/.*bytes:64/threads:1$")


def run_cli(*args):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "cloakpy.cli"] + list(args), env=env,
                          capture_output=True, text=True, timeout=300)


def run_suite(*args, env=None, **kwargs):
    env = dict(env if env is not None else os.environ, MPLBACKEND="Agg")
    return subprocess.Popen([sys.executable, "-m", "cloakpy.run_suite"] + list(args), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def result_files(out):
    found = []
    for root, _, files in os.walk(out):
        found += [os.path.join(root, f) for f in files if f.endswith(".json")]
    return found


def stray_temporaries(out):
    return [os.path.join(r, f) for r, _, files in os.walk(out) for f in files
            if f.startswith(".") or f.endswith(".tmp")]


@unittest.skipUnless(os.access(MATRIX, os.X_OK), "cloak-matrix is not built (set CLOAK_BUILD_DIR)")
class BenchCommandLineTest(unittest.TestCase):
    def check_usage_error(self, *args):
        p = subprocess.run([MATRIX] + list(args), capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 2, "%s: %s" % (args, p.stderr))
        self.assertIn("cloak-matrix: error:", p.stderr)
        self.assertIn("usage: cloak-matrix", p.stderr)
        return p.stderr

    def test_unknown_option(self):
        self.assertIn("unknown option '--bogus'", self.check_usage_error("--bogus"))

    def test_even_repetitions(self):
        self.assertIn("odd", self.check_usage_error("--benchmark_repetitions=2"))

    def test_min_time_with_a_unit(self):
        self.assertIn("plain number", self.check_usage_error("--benchmark_min_time=0.1s"))

    def test_bad_values(self):
        self.check_usage_error("--cpu-client=4000")
        self.check_usage_error("--cpu-client=x")
        self.check_usage_error("--benchmark_format=xml")
        self.check_usage_error("--fault=explode")
        self.check_usage_error("--clients=0:16")
        self.check_usage_error("--benchmark_filter=(")
        self.check_usage_error("--benchmark_filter=^nothing-matches$")
        self.check_usage_error("--benchmark_repetitions", "3")

    def test_bad_values_of_our_options(self):
        self.assertIn("--cpu-other", self.check_usage_error("--cpu-other=-1"))
        self.assertIn("at least 8 clients", self.check_usage_error("--clients=61000:4"))
        self.assertIn("headline,full", self.check_usage_error("--kerberos-matrix=all"))
        self.assertIn("file2,none", self.check_usage_error("--rcache=memory"))
        self.assertIn("tcp:ADDR:PORT", self.check_usage_error("--downstream=tcp:nowhere"))
        self.assertIn("both 1", self.check_usage_error("--cpu-client=1", "--cpu-other=1"))
        self.check_usage_error("--quick=maybe")
        self.check_usage_error("--benchmark_time_unit=h")
        self.check_usage_error("--benchmark_color=red")
        self.check_usage_error("--benchmark_out=")

    def test_downstream_and_realm_dir_need_each_other(self):
        self.assertIn("--downstream requires --realm-dir",
                      self.check_usage_error("--downstream=tcp:127.0.0.1:7400"))
        self.assertIn("--realm-dir requires --downstream", self.check_usage_error("--realm-dir=/tmp"))

    def test_a_separate_value_for_google_benchmark_is_refused(self):
        self.assertIn("write --benchmark_min_time=VALUE",
                      self.check_usage_error("--benchmark_min_time", "0.1"))

    def test_unknown_benchmark_flag_shows_google_benchmarks_message(self):
        # Refused before anything is set up or listed, in Google Benchmark's own words.
        for extra in ([], ["--benchmark_list_tests"]):
            err = self.check_usage_error(*extra, "--benchmark_no_such_flag=1")
            self.assertIn("cloak-matrix: error: unrecognized command-line flag: --benchmark_no_such_flag=1", err)

    def test_help_exits_0(self):
        p = subprocess.run([MATRIX, "--help", "--benchmark_no_such_flag=1"], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        for text in ("usage: cloak-matrix", "--quick", "--realm-dir", "--benchmark_filter", "--benchmark_min_time",
                     "--benchmark_enable_random_interleaving"):
            self.assertIn(text, p.stdout)

    def test_options_take_separate_values_and_the_last_counts(self):
        p = subprocess.run([MATRIX, "--cpu-client", "1", "--cpu-other", "0", "--quick", "--quick=false",
                            "--benchmark_filter", "^baseline/syscall$", "--benchmark_list_tests"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.split(), ["baseline/syscall"])

    def test_raw_output_loads_in_every_reader(self):
        with tempfile.TemporaryDirectory() as d:
            raw = os.path.join(d, "raw.json")
            p = subprocess.run([MATRIX, "--benchmark_filter=^baseline/(syscall|switch)$",
                                "--benchmark_repetitions=3", "--benchmark_min_time=0.001",
                                "--benchmark_out=" + raw, "--benchmark_out_format=json"],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(raw) as f:
                self.assertIsInstance(json.load(f)["context"]["cloak_schema_version"], str)
            p = run_cli("compare", raw, raw)
            self.assertNotEqual(p.returncode, 2, p.stderr)
            self.assertIn("# cloakbench compare", p.stdout)
            p = run_cli("report", raw, "-o", os.path.join(d, "report"))
            self.assertEqual(p.returncode, 0, p.stderr)

    def test_load_cells_are_listed_only_with_load(self):
        plain = subprocess.run([MATRIX, "--benchmark_list_tests"], capture_output=True, text=True,
                               timeout=60).stdout.split()
        self.assertFalse([n for n in plain if n.startswith("load/")])
        p = subprocess.run([MATRIX, "--load", "--benchmark_list_tests", "--benchmark_filter=^load/"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        names = p.stdout.split()
        self.assertIn("load/kernel/uds/auth:kerberos/dynamic/clients:10000/pop:zipf:1/cache:lru:2000"
                      "/place:same/bytes:64/threads:1", names)
        self.assertIn("load/kernel/uds/auth:local/static/clients:1000/pop:zipf:1/cache:na"
                      "/place:same/bytes:64/threads:1", names)
        single = [n for n in names if "/shape:" not in n]
        self.assertEqual(len(single), 20)  # per package: 6 at K = 10,000, 4 at K = 1,000
        # Threaded, per package, cloaking mode and shape: 4 closed and 4 open at K = 10,000, 2 and 2
        # at K = 1,000; each open cell after the closed cell it reads.
        threaded = [n for n in names if "/shape:" in n]
        self.assertEqual(len(threaded), 2 * 3 * 2 * (8 + 4))
        for i, n in enumerate(threaded):
            if "/loop:open:" in n:
                closed = re.sub(r"/loop:open:\d+/", "/loop:closed/", n)
                self.assertIn(closed, threaded[:i])

    def test_load_options_need_load_and_a_valid_range(self):
        self.assertIn("go with --load", self.check_usage_error("--load-clients=100000:1000"))
        self.check_usage_error("--load", "--load-clients=100000:4")
        self.check_usage_error("--load", "--load-clients=100000:1000000")

    def test_list_prints_documented_names(self):
        p = subprocess.run([MATRIX, "--quick", "--benchmark_list_tests"], capture_output=True, text=True, timeout=60)
        names = p.stdout.split()
        self.assertIn("cloak/kernel/uds/auth:local/dynamic/switch/probe:kernel/cache:none/track:identity/prot:na"
                      "/tickets:na/place:same/bytes:64/threads:1", names)
        self.assertIn("baseline/roundtrip/place:same/bytes:64", names)
        self.assertFalse([n for n in names if n.endswith("real_time")])


@unittest.skipUnless(os.access(MATRIX, os.X_OK), "cloak-matrix is not built (set CLOAK_BUILD_DIR)")
class RunCommandLineTest(unittest.TestCase):
    def check_usage_error(self, *args):
        p = run_suite(*args)
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 2, err)
        self.assertIn("usage: cloakbench run", err)
        return err

    def test_bad_arguments(self):
        self.assertIn("odd", self.check_usage_error("--repetitions", "4"))
        self.check_usage_error("--bogus")
        self.check_usage_error("--min-time", "0.1s")
        self.check_usage_error("--filter", "(")
        self.check_usage_error("--cpu-client", "-1")
        self.assertIn("this machine has CPUs", self.check_usage_error("--cpu-client", "4000"))
        self.assertIn("matches no cell", self.check_usage_error("--filter", "^no-such-cell$"))

    def test_small_run_writes_a_complete_result_file(self):
        with tempfile.TemporaryDirectory() as out:
            p = run_suite("--filter", SMALL, "--repetitions", "3", "--min-time", "0.005", "--out", out,
                          "--", "--benchmark_min_warmup_time=0.001")
            stdout, stderr = p.communicate(timeout=180)
            self.assertEqual(p.returncode, 0, stderr + stdout)
            files = result_files(out)
            self.assertEqual(len(files), 1, files)
            path = files[0]
            self.assertIn("Results: " + path, stdout)
            self.assertIn("Harness cost", stdout)
            self.assertRegex(stderr, r"cell \d+ of 7")
            with open(path) as f:
                text = f.read()
            data = gbench_shape.strict_loads(text)  # no NaN or Infinity
            self.assertTrue(gbench_shape.difference_report(data, data))  # compare.py reads it
            ctx = data["context"]
            self.assertEqual(ctx["cloak_benchmark_args"], ["--benchmark_min_warmup_time=0.001"])
            self.assertTrue(all("--benchmark_min_warmup_time=0.001" in l["argv"] for l in ctx["cloak_launches"]))
            self.assertEqual(os.path.basename(os.path.dirname(path)), ctx["cloak_machine_id"])
            self.assertEqual(ctx["cloak_schema_version"], 1)
            self.assertIsInstance(ctx["cloak_machine"], dict)
            self.assertIsInstance(ctx["cloak_cpus"], dict)
            self.assertIsInstance(ctx["cloak_warnings"], list)
            self.assertRegex(ctx["cloak_machine_hash"], r"^[0-9a-f]{16}$")
            self.assertEqual(ctx["cloak_backend"], "kernel+model")
            self.assertTrue(ctx["cloak_command"].startswith("scripts/cloakbench run --filter"))
            launches = ctx["cloak_launches"]
            # kernel baselines, the harness-cost cells (round trip, none, static), model
            self.assertEqual(len(launches), 3)
            self.assertEqual(sorted(n for l in launches for n in l["cells"]),
                             sorted({e["run_name"] for e in data["benchmarks"]}))
            iterations = [e for e in data["benchmarks"] if e["run_type"] == "iteration"]
            self.assertEqual(len(iterations), 7 * 3)
            self.assertFalse([e for e in data["benchmarks"] if e.get("error_occurred")])
            families = {}
            for e in data["benchmarks"]:
                families.setdefault(e["family_index"], set()).add(e["run_name"])
            self.assertTrue(all(len(v) == 1 for v in families.values()))
            self.assertEqual(stray_temporaries(out), [])

    def test_list_prints_the_cells_a_run_would_time(self):
        with tempfile.TemporaryDirectory() as out:
            p = run_suite("--list", "--quick", "--filter", "static", "--out", out)
            stdout, stderr = p.communicate(timeout=120)
            self.assertEqual(p.returncode, 0, stderr)
            listed = subprocess.run([MATRIX, "--quick", "--benchmark_list_tests"], capture_output=True,
                                    text=True, timeout=60).stdout.split()
            self.assertEqual(stdout.split(), [n for n in listed if "static" in n])
            self.assertIn("listed, not run", stderr)
            self.assertEqual(result_files(out), [])

    def test_the_default_run_leaves_out_what_the_constant_says_and_the_full_matrix_keeps_it(self):
        # run_suite.DEFAULT_RUN_LEAVES_OUT (place:unpinned): room in the 5 minutes for the blocks
        with tempfile.TemporaryDirectory() as out:
            default = run_suite("--list", "--out", out)
            names, stderr = default.communicate(timeout=120)
            self.assertEqual(default.returncode, 0, stderr)
            full = run_suite("--list", "--full-matrix", "--out", out)
            all_names, stderr = full.communicate(timeout=120)
            self.assertEqual(full.returncode, 0, stderr)
        names, all_names = names.split(), all_names.split()
        self.assertFalse([n for n in names if "/place:unpinned/" in n])
        self.assertTrue([n for n in all_names if "/place:unpinned/" in n])
        for mech in ("krb5", "ntlm"):  # negotiate's headline cells and blocks, per mechanism
            self.assertTrue([n for n in names if "auth:negotiate/mech:%s/" % mech in n
                             and n.startswith("block/")])
            self.assertEqual(len([n for n in names if n.startswith("cloak/")
                                  and "auth:negotiate/mech:%s/" % mech in n]), 12)

    def test_load_lists_its_cells_and_the_matrix_cells_its_model_reads(self):
        with tempfile.TemporaryDirectory() as out:
            p = run_suite("--list", "--load", "--quick", "--out", out)
            stdout, stderr = p.communicate(timeout=120)
            self.assertEqual(p.returncode, 0, stderr)
            names = stdout.split()
            load = [n for n in names if n.startswith("load/")]
            self.assertEqual(len([n for n in load if "/shape:" not in n]), 8, names)
            self.assertEqual(len([n for n in load if "/shape:" in n]), 2 * 3 * 2 * 4, names)
            self.assertTrue(all("/clients:1000/" in n for n in load))
            twins = [n for n in names if not n.startswith("load/")]
            self.assertEqual(len(twins), 6, names)  # steady lru:4, switch lru:4 and none, per package
            self.assertIn("in 2 launches", stderr)
            self.assertEqual(result_files(out), [])

    def test_a_flag_the_bench_refuses_shows_its_message(self):
        with tempfile.TemporaryDirectory() as out:
            p = run_suite("--filter", "^baseline/syscall$", "--repetitions", "1", "--out", out,
                          "--", "--benchmark_no_such_flag=1")
            stdout, stderr = p.communicate(timeout=120)
            self.assertEqual(p.returncode, 2, stderr)
            self.assertIn("usage: cloakbench run", stderr)
            # Google Benchmark's own message, passed on when the bench lists the cells
            self.assertIn("unrecognized command-line flag: --benchmark_no_such_flag=1", stderr)
            self.assertEqual(result_files(out), [])

    def test_flags_run_sets_itself_are_refused(self):
        self.assertIn("--repetitions", self.check_usage_error("--", "--benchmark_repetitions=3"))
        self.assertIn("Google Benchmark flags", self.check_usage_error("--", "--quick"))

    def interrupt(self, sig, whole_group):
        with tempfile.TemporaryDirectory() as out:
            p = run_suite("--quick", "--repetitions", "1", "--min-time", "0.05", "--out", out, "--no-report",
                          start_new_session=True)
            lines = []
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                line = p.stderr.readline()
                if not line:
                    break
                lines.append(line)
                if re.search(r"cell 3 of \d+", line):
                    break
            self.assertTrue(any(re.search(r"cell 3 of", l) for l in lines), "".join(lines))
            if whole_group:
                os.killpg(p.pid, sig)  # as a terminal's Ctrl-C does
            else:
                os.kill(p.pid, sig)
            stdout, stderr = p.communicate(timeout=60)
            self.assertEqual(p.returncode, 128 + sig, stderr)
            files = result_files(out)
            self.assertEqual(len(files), 1, files)
            with open(files[0]) as f:
                data = json.load(f)
            # Cells that finished: rows, and paired blocks measured in at least one launch (a
            # block launch may come first: blocks are kept as summaries, not rows).
            done = {e["run_name"] for e in data["benchmarks"]} | {
                b["name"] for b in data.get("cloak_blocks", []) if b["launches"] > 0}
            self.assertGreaterEqual(len(done), 3)
            self.assertLess(len(done), 31)
            self.assertFalse([e for e in data["benchmarks"] if e.get("error_occurred")])
            self.assertIn("interrupted by %s" % signal.Signals(sig).name, data["context"]["cloak_warnings"][0])
            self.assertEqual(stray_temporaries(out), [])

    def test_sigint_keeps_finished_cells(self):
        self.interrupt(signal.SIGINT, whole_group=True)

    def test_sigint_during_kerberos_cells_leaves_no_kdc_and_no_realm(self):
        with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as out:
            env = dict(os.environ, TMPDIR=tmp)  # the bench's realm and servers live under here
            p = run_suite("--quick", "--filter", "kerberos", "--repetitions", "1", "--min-time", "0.2",
                          "--out", out, "--no-report", start_new_session=True, env=env)
            lines = []
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                line = p.stderr.readline()
                if not line:
                    break
                lines.append(line)
                if re.search(r"cell 2 of \d+", line):
                    break
            self.assertTrue(any(re.search(r"cell 2 of", l) for l in lines), "".join(lines))
            realms = [d for d in os.listdir(tmp) if d.startswith("cloak-realm")]
            self.assertTrue(realms, "no realm under TMPDIR while kerberos cells run: %s" % os.listdir(tmp))
            os.killpg(p.pid, signal.SIGINT)
            p.communicate(timeout=60)
            self.assertEqual(p.returncode, 128 + signal.SIGINT)
            # The supervisor removes the realm when the bench exits; give it its bounded stop time.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (self.kdcs_under(tmp) or self.realms_under(tmp)):
                time.sleep(0.1)
            self.assertEqual(self.kdcs_under(tmp), [], "a krb5kdc of the run survived SIGINT")
            self.assertEqual(self.realms_under(tmp), [], "the run's realm directory survived SIGINT")

    @staticmethod
    def realms_under(tmp):
        return [d for d in os.listdir(tmp) if d.startswith("cloak-realm")]

    @staticmethod
    def kdcs_under(tmp):
        """krb5kdc processes whose command line or environment names a path under `tmp`."""
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmd = f.read()
                if b"krb5kdc" not in cmd:
                    continue
                with open("/proc/%s/environ" % pid, "rb") as f:
                    env = f.read()
            except OSError:
                continue
            if tmp.encode() in cmd or tmp.encode() in env:
                found.append(int(pid))
        return found

    def test_sigterm_keeps_finished_cells(self):
        self.interrupt(signal.SIGTERM, whole_group=False)


if __name__ == "__main__":
    unittest.main()
