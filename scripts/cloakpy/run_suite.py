"""`cloakbench run`: runs the benchmark suite in launches (one bench process per group of cells),
shows progress, merges the launches into one result file written atomically under
results/<machine-id>/, prints the summary and the harness-cost checks, then writes plots and a
report next to the file. SIGINT/SIGTERM stop the run and keep what finished.

Only the standard library is imported before the arguments are parsed, so `--help` works before
Debian's numpy is installed."""

import argparse
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from . import argtypes
from . import merge
from .checks import is_checked_cell
from .names import parse_name

PROG = "cloakbench run"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = "cloak-matrix"

DEFAULT_REPETITIONS = 5
DEFAULT_MIN_TIME = 0.04         # seconds per repetition, default run (fits 3 minutes on 2 vCPUs)
QUICK_MIN_TIME = 0.04            # seconds per repetition, --quick (the paired blocks carry its headline)
# The cells the harness-cost checks read (docs/design.md's "near zero" claim) run in a launch of their own
# per placement, with more and longer repetitions: a 5% or 2% limit needs a median far steadier
# than 5 short repetitions give on a VM where a cross-CPU wake-up varies by tens of percent.
CHECK_REPETITIONS = 15
CHECK_MIN_TIME = 0.07
# Paired blocks (docs/reading.md, "Blocks"): each block runs in this many launches, spread at
# random among the run's other launches; its intervals are computed across them (the launches are
# the independent samples, not the rounds inside one process).
BLOCK_LAUNCHES = 7
QUICK_BLOCK_LAUNCHES = 5
# The default run's launches of a package's blocks where they differ from BLOCK_LAUNCHES (an
# explicit --block-launches, and --quick, apply to every package). The GSSAPI packages' blocks cost
# 5-8 s a launch against local's 3 s, and the default run has a 5-minute budget on 2 vCPUs: 5
# launches each (a 95% Student-t interval over 5 launch estimates is about 15% wider than over 7).
# To be tuned by measuring a default run.
BLOCK_LAUNCHES_BY_PACKAGE = {"kerberos": 5, "ntlm": 5, "negotiate": 5}
# Cells the default run leaves out (a regular expression searched in the names; None: none), the
# place to make room for more blocks. place:unpinned (109 cells, about 30 s of the 5 minutes): the
# scheduler's choice, which the headline, the checks and the blocks never read; they run with
# --full-matrix. Other candidates: the matrix cells a package's paired blocks already carry, the
# model backend's cells (104, about 30 s). Not applied with --filter, --quick, --full-matrix or
# --load.
DEFAULT_RUN_LEAVES_OUT = r"/place:unpinned/"
# Rough seconds of one block launch (its blocks' rounds and the process's setup), by package and
# placement; only for the progress line's estimate. local and kerberos were measured on the
# development machine kind; ntlm and negotiate (both mechanisms' blocks in one launch, after a realm
# and an NTLM domain) are ESTIMATES from their exchanges' cost (about 0.3-0.5 ms a context), not yet
# measured.
BLOCK_LAUNCH_SECONDS = {("local", "same"): 3.0, ("local", "cross"): 8.0, ("kerberos", "same"): 5.0,
                        ("ntlm", "same"): 5.0, ("negotiate", "same"): 6.0}
# run --load (issue 19): the load cells with the matrix cells their cost model reads, one launch per
# package; K = 10,000 clients (1,000 with --quick), 3 repetitions of fixed iterations per cell.
LOAD_CLIENTS = "100000:10000"
QUICK_LOAD_CLIENTS = "100000:1000"
LOAD_REPETITIONS = 3
# The matrix cells the load model reads (costmodel.load_prediction): dynamic steady and switch with
# lru:4, switch with cache:none, per package at the headline placement.
LOAD_MATRIX_CELLS = re.compile(
    r"^cloak/kernel/uds/auth:(local|kerberos)/dynamic/(steady/probe:kernel/cache:lru:4|"
    r"switch/probe:kernel/cache:(lru:4|none))/track:identity/prot:(na|none)/tickets:(na|warm)/"
    r"place:same/bytes:64/threads:1$")
# Rough seconds of a load launch by package (K = 10,000 / 1,000): the realm, credentials and
# downstream for K clients, each cell's warm pass and timed calls, and the threaded cells (each
# bounded in time: 24 closed-loop cells of 0.3 s warm + 1 s, 24 open-loop cells of 0.3 s warm + 1 s
# of arrivals + at most 1 s of grace, and for about half of them, interleaved before their closed
# cell, a 1 s closed loop of their own, per package: about 90 s; quick: about 20 s); for the
# progress line only.
LOAD_LAUNCH_SECONDS = {("local", False): 140.0, ("kerberos", False): 320.0,
                       ("local", True): 30.0, ("kerberos", True): 50.0}
STOP_GRACE_SECONDS = 20         # after a forwarded signal, how long a launch may take to stop
HEARTBEAT_SECONDS = 5


def _label(text):
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", text):
        raise argparse.ArgumentTypeError("use letters, digits, '.', '_' and '-' only")
    return text


# Google Benchmark flags after `--` that would take over what `run` itself decides, and the
# option of `run` to use instead.
OWN_BENCHMARK_FLAGS = {
    "--benchmark_filter": "--filter REGEX",
    "--benchmark_list_tests": "--list",
    "--benchmark_repetitions": "--repetitions N",
    "--benchmark_min_time": "--min-time SECONDS",
    "--benchmark_out": "--out DIR (run writes the result file itself)",
    "--benchmark_out_format": "--out DIR (run writes the result file itself)",
    "--benchmark_format": "--out DIR (run writes the result file itself)",
}


def split_benchmark_args(argv):
    """(run's own arguments, the Google Benchmark flags after the first `--`)."""
    if "--" not in argv:
        return list(argv), []
    i = argv.index("--")
    return list(argv[:i]), list(argv[i + 1:])


def benchmark_args_problem(args):
    """Why the flags after `--` cannot be passed to every launch, or None."""
    for arg in args:
        name = arg.split("=", 1)[0]
        if not (name.startswith("--benchmark_") or name == "--v"):
            return ("after -- come Google Benchmark flags (--benchmark_..., --v), not %r; run's "
                    "own options go before --" % arg)
        if name in OWN_BENCHMARK_FLAGS:
            return "%s is set by run for each launch; use run's %s instead" % (
                name, OWN_BENCHMARK_FLAGS[name])
    return None


def build_parser():
    p = argparse.ArgumentParser(
        prog=PROG,
        usage="%(prog)s [options] [-- GOOGLE_BENCHMARK_FLAG...]",
        description="Run the cloakbench suite (the cloaking matrix and its same-run baselines), "
                    "write results/<machine-id>/<UTC time>-<commit>.json atomically, print a "
                    "summary, and write plots and a report next to the file. Flags after -- "
                    "(e.g. -- --benchmark_min_warmup_time=0.1) go to every launch of the bench, "
                    "after run's own, and are recorded in the file's cloak_benchmark_args; "
                    "--benchmark_filter, _repetitions, _min_time, _out, _format and _list_tests "
                    "are run's to set (use --filter, --repetitions, --min-time, --out, --list).",
        epilog="Exit status: 0 all cells passed (or listed); 1 some cell failed or a launch "
               "crashed (the file is still written), or the bench is not built; 2 bad arguments, "
               "including flags the bench refused (its message is shown); 130/143 interrupted "
               "by SIGINT/SIGTERM (the file holds the cells that finished).")
    p.add_argument("--list", action="store_true",
                   help="print the cells a run with these options would time, one per line, and "
                        "exit (runs the built bench with --benchmark_list_tests)")
    p.add_argument("--quick", action="store_true",
                   help="every cloaking x pattern on the kernel transport at place:same, 64 "
                        "bytes, 1 thread, with its baselines, and the local paired blocks at "
                        "place:same (at most 45 s)")
    p.add_argument("--filter", type=argtypes.regex, metavar="REGEX",
                   help="only cells whose name matches (Python regular expression, searched)")
    p.add_argument("--out", metavar="DIR", default=os.path.join(ROOT, "results"),
                   help="results directory (default: results/ of the source tree); the file "
                        "goes to DIR/<machine-id>/")
    p.add_argument("--repetitions", type=argtypes.odd_repetitions, default=None,
                   metavar="N", help="repetitions per cell, odd (default %d; the harness-cost "
                                     "cells get %d unless --repetitions or --min-time is given)"
                                     % (DEFAULT_REPETITIONS, CHECK_REPETITIONS))
    p.add_argument("--min-time", type=argtypes.seconds, default=None, metavar="SECONDS",
                   help="minimum time per repetition (default %g, %g with --quick)"
                        % (DEFAULT_MIN_TIME, QUICK_MIN_TIME))
    p.add_argument("--cpu-client", type=argtypes.cpu, default=0, metavar="N",
                   help="CPU of the client thread(s) (default %(default)s)")
    p.add_argument("--cpu-other", type=argtypes.cpu, default=1, metavar="N",
                   help="CPU of the downstream in place:cross cells (default %(default)s)")
    p.add_argument("--block-launches", type=argtypes.count, default=None, metavar="N",
                   help="launches of each paired block, the samples of its intervals (default %d, "
                        "%s; %d with --quick; 0: no blocks)"
                        % (BLOCK_LAUNCHES, ", ".join("%s %d" % kv for kv in
                                                     sorted(BLOCK_LAUNCHES_BY_PACKAGE.items())),
                           QUICK_BLOCK_LAUNCHES))
    p.add_argument("--seed", type=argtypes.count, default=None, metavar="N",
                   help="seed of the block launches' places in the run and of their rounds' "
                        "orders, and with --load of the load cells' callers (default: a random "
                        "one, recorded as cloak_run_seed)")
    p.add_argument("--label", type=_label, default=None,
                   help="prefix of the file name, e.g. 'reference'")
    p.add_argument("--no-report", action="store_true",
                   help="do not write plots and a report")
    # ---- under load (issue 19) -----------------------------------------------------------------
    p.add_argument("--load", action="store_true",
                   help="only the load cells (K = 10,000 clients, Zipf(1.0), lru:16/256/2000, "
                        "local and Kerberos) and the matrix cells their cost model reads, %d "
                        "repetitions of fixed iterations each (at most 10 minutes on 2 vCPUs); "
                        "with --quick: K = 1,000, lru:16/256" % LOAD_REPETITIONS)
    p.add_argument("--full-matrix", action="store_true",
                   help="every cell of every package (kerberos: protection x tickets x tracking x "
                        "pattern; ntlm and negotiate: integrity, privacy, every:8) and place:unpinned, "
                        "not only the headline "
                        "set; well past the default run's 5 minutes")
    # ---- across hosts (issue 9): behind options, the default run stays under 4 minutes ----------
    p.add_argument("--hosts", action="store_true",
                   help="also the cross-host cells (chan:tcp, hops:1|2, kerberos at delegate level) "
                        "and their baselines, in network namespaces this run makes (needs "
                        "CAP_NET_ADMIN; without it they are skipped and the file says why); adds "
                        "about 5 minutes at the default timing")
    p.add_argument("--downstream", metavar="tcp:HOST:PORT", default=None,
                   help="the hops:1 cross-host cells against a cloak-downstream on another machine "
                        "(docs/remote.md); needs --realm-dir")
    p.add_argument("--realm-dir", metavar="DIR", default=None,
                   help="with --downstream: the directory of the realm that downstream uses")
    return p


def hosts_options(args):
    """The bench options of --hosts / --downstream / --full-matrix, given to the listing and to
    every launch."""
    out = ["--hosts"] if args.hosts else []
    if getattr(args, "full_matrix", False):
        out.append("--matrix=full")
    if args.downstream:
        out += ["--downstream=" + args.downstream, "--realm-dir=" + (args.realm_dir or "")]
    return out


# ---- planning ----------------------------------------------------------------------------------

def _settings(name):
    """The `key:value` segments of a name (place, bytes, ...): all planning needs of names that
    are not matrix cells, such as check/paired/place:P/bytes:N."""
    return dict(part.split(":", 1) for part in name.split("/") if ":" in part)


def _read_by_checks(name, info, settings):
    """Whether the harness-cost checks read this cell (checks.py), at place:same or place:cross."""
    if settings.get("place") not in ("same", "cross") or settings.get("bytes") != "64":
        return False
    if info.is_cell:
        return is_checked_cell(info) and (
            info.cloaking in ("none", "static")
            or (info.cloaking == "dynamic" and info.probe in ("kernel", "generation") and info.cache == "none"))
    return name.startswith(("baseline/roundtrip/", "check/paired/"))


def group_of(name):
    """The launch a cell belongs to. Cells at one placement and payload share a launch with the
    raw round trip they are read against, so random interleaving mixes them; the syscall, probe
    and switch baselines join the first kernel group (place:same, 64 bytes); the model floor
    joins the model cells; a baseline with a placement and no payload joins that placement's
    64-byte group. The cells of the harness-cost checks at place:same and place:cross get
    a launch of their own (see CHECK_REPETITIONS)."""
    info = parse_name(name)
    settings = _settings(name)
    if name.startswith("block/"):  # a paired block: its package and placement share a launch
        return ("block", settings.get("auth", "local"), settings.get("place", "same"))
    if "/tcp/" in name:  # across hosts: one launch of their own (the topology is made once)
        return ("tcp",)
    if _read_by_checks(name, info, settings):
        return ("check", settings["place"])
    if (info.is_cell and info.backend == "model") or name == "baseline/model/inproc":
        return ("model", info.bytes or 64)
    if settings.get("place") in _PLACE_ORDER:
        # A baseline with a placement but no payload (connect, the Kerberos AP exchange across
        # the socket) joins its placement's 64-byte group.
        nbytes = settings.get("bytes", "64")
        return ("uds", settings["place"], int(nbytes) if nbytes.isdigit() else 64)
    return ("uds", "same", 64)


_PLACE_ORDER = {"same": 0, "cross": 1, "unpinned": 2}


def _group_order(key):
    if key[0] == "block":
        return (3, _PLACE_ORDER.get(key[2], 9), key[1])
    if key[0] == "tcp":
        return (2, 0, 0)
    if key[0] == "check":
        return (-1, _PLACE_ORDER.get(key[1], 9), 0)
    if key[0] == "uds":
        return (0, _PLACE_ORDER.get(key[1], 9), key[2])
    return (1, 0, key[1])


def plan_launches(names):
    """[(group key, [cell names])] in run order; cells keep their listed order."""
    groups = {}
    for name in names:
        groups.setdefault(group_of(name), []).append(name)
    return [(k, groups[k]) for k in sorted(groups, key=_group_order)]


def load_selection(names, quick):
    """What run --load times: the load cells of its K (1,000 with --quick, else the larger ones)
    and the matrix cells their cost model reads."""
    from .names import parse_name as parse
    chosen = []
    for name in names:
        info = parse(name)
        if info.is_load and (info.clients == 1000) == quick:
            chosen.append(name)
        elif LOAD_MATRIX_CELLS.match(name):
            chosen.append(name)
    return chosen


def plan_load_launches(names):
    """One launch per package (each makes its K-client realm and downstream once)."""
    groups = {}
    for name in names:
        auth = _settings(name).get("auth", "local")
        groups.setdefault(("load", auth), []).append(name)
    return sorted(groups.items(), key=lambda kv: (kv[0][1] != "local", kv[0][1]))


def spread_block_launches(plan, count, seed, per_package=None):
    """The plan with every block group run `count` times (`per_package`: {package: count} where a
    package's differs), as launches keyed ("block", package, place, j), each put at a random place
    among the other launches (seeded: the same seed gives the same order). The other launches keep
    their order."""
    import random
    rng = random.Random(seed)
    counts = per_package or {}
    others = [(k, n) for k, n in plan if k[0] != "block"]
    blocks = [(k + (j,), n) for k, n in plan if k[0] == "block"
              for j in range(counts.get(k[1], count))]
    rng.shuffle(blocks)
    out = list(others)
    for item in blocks:
        out.insert(rng.randint(0, len(out)), item)
    return out


def merge_cell_histograms(records):
    """Every repetition's latency histograms of a matrix cell merged (the counts add exactly), with
    their percentiles: {cell: {"all": H, "after_change": H, "summary": {...}}} (docs/results.md)."""
    from . import blocks
    by_name = {}
    for r in records:
        by_name.setdefault(r["name"], []).append(r)
    out = {}
    for name, rs in by_name.items():
        merged = {k: blocks.merge_histograms([r[k] for r in rs]) for k in ("all", "after_change")}
        merged["summary"] = {k: blocks.summary(merged[k]) for k in ("all", "after_change")}
        out[name] = merged
    return out


def summarize_blocks(records):
    """Every launch's block records, grouped by block (in first-seen order), as the blocks'
    summaries across launches (cloakpy/blocks.py; docs/results.md, "cloak_blocks")."""
    from . import blocks
    by_name = {}
    for r in records:
        by_name.setdefault(r["name"], []).append(r)
    return [blocks.block_summary(rs) for rs in by_name.values()]


def launch_filter(names):
    """A --benchmark_filter (POSIX extended regex) that selects exactly these cells. Names hold no
    regex metacharacters except '.', which is escaped; re.escape also escapes '/', ':' and '-',
    which POSIX ERE rejects ("invalid escape"), so those are put back."""
    def posix(name):
        return re.escape(name).replace("\\/", "/").replace("\\:", ":").replace("\\-", "-")
    return "^(" + "|".join(posix(n) for n in names) + ")$"


def estimate_seconds(cells, repetitions, min_time, key=None):
    """Rough time of a launch: the first repetition also searches the iteration count."""
    if key is not None and key[0] == "block":
        return BLOCK_LAUNCH_SECONDS.get((key[1], key[2]), 5.0)
    if key is not None and key[0] == "load":
        return LOAD_LAUNCH_SECONDS.get((key[1], key[2] if len(key) > 2 else False), 60.0)
    return 0.4 + cells * (1.8 + 1.4 * (repetitions - 1)) * min_time


def launch_timing(key, repetitions, min_time, boost_checks=True):
    """(repetitions, min_time) of the launch for group `key`. An explicit --repetitions or
    --min-time applies to every launch (boost_checks=False)."""
    if key[0] == "check" and boost_checks:
        return max(CHECK_REPETITIONS, repetitions), max(CHECK_MIN_TIME, min_time)
    return repetitions, min_time


def describe_group(key):
    if key[0] == "block":
        return "paired blocks auth:%s place:%s (sample %d)" % (
            key[1], key[2], key[3] + 1 if len(key) > 3 else 1)
    if key[0] == "tcp":
        return "across hosts (chan:tcp)"
    if key[0] == "load":
        return "load cells auth:%s and the matrix cells their model reads" % key[1]
    if key[0] == "check":
        return "harness-cost cells place:%s bytes:64 (%d repetitions)" % (key[1], CHECK_REPETITIONS)
    if key[0] == "uds":
        return "kernel/uds place:%s bytes:%d" % (key[1], key[2])
    return "model/inproc bytes:%d" % key[1]


# ---- running -----------------------------------------------------------------------------------

def _clock(seconds):
    seconds = max(0, int(round(seconds)))
    return "%d:%02d" % (seconds // 60, seconds % 60)


def _utc(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Stop:
    """The signal that asked the run to stop, and the launch to pass it on to."""

    def __init__(self):
        self.signal = None
        self.child = None
        self.announced = False

    def handler(self, signum, _frame):
        # No printing here: the signal may arrive while the main thread is inside a write to
        # stderr, and a second write to the same buffered stream raises "reentrant call".
        if self.signal is None:
            self.signal = signum
        child = self.child
        if child is not None and child.poll() is None:
            try:
                os.kill(child.pid, signum)
            except ProcessLookupError:
                pass

    def announce(self):
        """Says once, from the main thread, that a signal asked the run to stop."""
        if self.signal is not None and not self.announced:
            self.announced = True
            print("\n%s: %s received: stopping the running launch and keeping the cells that "
                  "finished" % (PROG, signal.Signals(self.signal).name), file=sys.stderr, flush=True)


def _reader(stream, tag, events):
    for line in iter(stream.readline, ""):
        events.put((tag, line.rstrip("\n")))
    events.put((tag, None))


class Progress:
    def __init__(self, total_cells, planned_seconds):
        self.total = total_cells
        self.done = 0
        self.start = time.monotonic()
        self.planned = planned_seconds
        self.planned_done = 0.0   # planned seconds of the launches that finished
        self.last = 0.0

    def left(self, launch_planned, launch_started):
        elapsed = time.monotonic() - self.start
        # Calibrate the plan by how long the finished launches really took.
        if self.planned_done > 0:
            scale = (launch_started - self.start) / self.planned_done
        else:
            scale = 1.0
        in_launch = time.monotonic() - launch_started
        remaining_plan = self.planned - self.planned_done - min(in_launch / max(scale, 1e-3), launch_planned)
        return elapsed, max(0.0, remaining_plan * scale)

    def line(self, text, launch_planned, launch_started):
        elapsed, left = self.left(launch_planned, launch_started)
        self.last = time.monotonic()
        print("[%s elapsed, ~%s left] %s" % (_clock(elapsed), _clock(left), text), file=sys.stderr,
              flush=True)


class Launches:
    """What every launch of a run shares: how to start the bench and with which options."""

    def __init__(self, prefix, program, repetitions, min_time, cpu_client, cpu_other, work_dir,
                 boost_checks=True, benchmark_args=(), seed=0):
        self.seed = seed
        self.boost_checks = boost_checks
        self.benchmark_args = list(benchmark_args)
        self.prefix = prefix
        self.program = program
        self.repetitions = repetitions
        self.min_time = min_time
        self.work_dir = work_dir
        self.common = ["--benchmark_report_aggregates_only=false",
                     "--benchmark_enable_random_interleaving=true",
                     "--cpu-client=%d" % cpu_client, "--cpu-other=%d" % cpu_other]

    def timing(self, key):
        return launch_timing(key, self.repetitions, self.min_time, self.boost_checks)

    def args(self, key):
        repetitions, min_time = self.timing(key)
        if key[0] == "block":  # fixed rounds, one repetition: the launches are the samples
            return self.common + self.benchmark_args
        return (["--benchmark_repetitions=%d" % repetitions,
                 "--benchmark_min_time=%g" % min_time]  # 1.7.1: plain seconds
                + self.common + self.benchmark_args)

    def estimate(self, key, cells):
        return estimate_seconds(cells, *self.timing(key), key=key)


def run_launch(index, count, key, names, launches, progress, stop, seen_stderr):
    """Runs one bench process for `names`; returns {"output", "record"}."""
    out_path = os.path.join(launches.work_dir, "launch-%d.json" % index)
    blocks_path = os.path.join(launches.work_dir, "launch-%d-blocks.json" % index)
    program = launches.program
    own = ["--blocks-out=" + blocks_path]  # the blocks, and every cell's latency histograms
    if key[0] == "block":
        own.append("--block-seed=%d" % (launches.seed * 1000 + index))
    argv = launches.prefix + [program, "--benchmark_filter=" + launch_filter(names)] + launches.args(key) + own + [
        "--benchmark_format=console", "--benchmark_color=false",
        "--benchmark_out=" + out_path, "--benchmark_out_format=json"]
    record_argv = [a for a in argv if not a.startswith(("--benchmark_out=", "--blocks-out="))]
    planned = launches.estimate(key, len(names))
    started_wall = time.time()
    started = time.monotonic()
    progress.line("launch %d/%d: %s, %d cells" % (index + 1, count, describe_group(key), len(names)),
                  planned, started)
    pending = set(names)
    stderr_lines = []
    events = queue.Queue()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             bufsize=1, start_new_session=True)
    stop.child = child
    if stop.signal is not None:  # asked to stop while the launch was starting
        os.kill(child.pid, stop.signal)
    readers = [threading.Thread(target=_reader, args=(child.stdout, "out", events), daemon=True),
               threading.Thread(target=_reader, args=(child.stderr, "err", events), daemon=True)]
    for r in readers:
        r.start()
    open_streams = 2
    deadline = None
    while open_streams:
        if stop.signal is not None and deadline is None:
            stop.announce()
            deadline = time.monotonic() + STOP_GRACE_SECONDS
        if deadline is not None and time.monotonic() > deadline and child.poll() is None:
            print("%s: launch %d did not stop within %d s: killing it" % (PROG, index + 1, STOP_GRACE_SECONDS),
                  file=sys.stderr, flush=True)
            os.killpg(child.pid, signal.SIGKILL)
            deadline = float("inf")
        try:
            tag, line = events.get(timeout=0.5)
        except queue.Empty:
            if time.monotonic() - progress.last >= HEARTBEAT_SECONDS and stop.signal is None:
                progress.line("launch %d/%d running: %d of its %d cells done"
                              % (index + 1, count, len(names) - len(pending), len(names)),
                              planned, started)
            continue
        if line is None:
            open_streams -= 1
            continue
        if tag == "err":
            stderr_lines.append(line)
            # Google Benchmark prints its context header on stderr; pass on only what our
            # programs say (they prefix their messages) and errors, each once per run.
            if _worth_showing(line) and line not in seen_stderr:
                seen_stderr.add(line)
                print("  " + line, file=sys.stderr, flush=True)
            continue
        fields = line.split()
        if fields and fields[0] in pending:
            pending.discard(fields[0])
            progress.done += 1
            failed = "ERROR OCCURRED" in line
            progress.line("cell %d of %d%s: %s" % (progress.done, progress.total,
                                                    " FAILED" if failed else "", fields[0]),
                          planned, started)
    status = child.wait()
    stop.child = None
    if status != 0 and stop.signal is None:
        show_stderr("launch %d exited with status %s; its last messages:" % (index + 1, status),
                    [l for l in stderr_lines if l not in seen_stderr])
    seconds = time.monotonic() - started
    progress.planned_done += planned
    output = None
    try:
        with open(out_path, encoding="utf-8", errors="replace") as f:
            output = merge.salvage_gbench_json(f.read())
    except OSError:
        output = None
    record = {"program": program, "argv": record_argv, "started": _utc(started_wall),
              "seconds": round(seconds, 2), "exit_status": status}
    blocks, histograms = [], []
    try:
        with open(blocks_path, encoding="utf-8") as f:
            detail = json.load(f)
        blocks, histograms = detail.get("blocks", []), detail.get("cells", [])
    except (OSError, ValueError):
        if key[0] == "block":
            blocks = [{"name": n, "failed": "launch %d wrote no block records (exit status %s)"
                       % (index + 1, status)} for n in names]
    if key[0] == "block":
        # The blocks live in the result file as their summaries across launches (cloak_blocks), not
        # as Google Benchmark rows: one name measured in several launches is one block.
        if output is not None:
            output.benchmarks = [b for b in output.benchmarks if not b.get("name", "").startswith("block/")]
        # Google Benchmark runs a block's function once more as a warm-up when
        # --benchmark_min_warmup_time is set: one launch is one sample, its last record.
        blocks = list({b["name"]: b for b in blocks}.values())
        for b in blocks:
            b["launch"] = index + 1
    return {"output": output, "record": record, "blocks": blocks, "histograms": histograms}


STDERR_TAIL_LINES = 20


def show_stderr(heading, lines):
    """The last lines a failed launch wrote on stderr: the bench's, or Google Benchmark's own,
    message about what went wrong (the bench's usage text, which follows a refused command line,
    is left out: run's own options are what the user typed)."""
    usage = next((i for i, l in enumerate(lines) if l.lower().startswith("usage:")), len(lines))
    lines = [l for l in lines[:usage] if l.strip()][-STDERR_TAIL_LINES:]
    if lines:
        print("%s: %s" % (PROG, heading), file=sys.stderr)
        for line in lines:
            print("  | " + line, file=sys.stderr)
        sys.stderr.flush()


_OWN_MESSAGE = re.compile(r"^(cloak-matrix|cloak-echo-peer|cloak-downstream|cloakbench):")


def _worth_showing(line):
    text = line.strip()
    return bool(_OWN_MESSAGE.match(text)) or "error" in text.lower() or "fatal" in text.lower()


def git_commit():
    try:
        out = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def privilege_prefix():
    """How to give the bench CAP_SETUID/CAP_SETGID: nothing as root; a user namespace with
    subordinate ids when that works; otherwise nothing (the bench falls back to the model)."""
    if os.geteuid() == 0:
        return []
    unshare = shutil.which("unshare")
    if unshare:
        cmd = [unshare, "--map-auto", "--map-root-user"]
        try:
            if subprocess.run(cmd + ["true"], capture_output=True, timeout=10).returncode == 0:
                return cmd
        except (OSError, subprocess.SubprocessError):
            pass
    return []


class BenchRefused(Exception):
    """The bench program refused the options (it exits 2 for a bad command line); the message
    is everything it wrote on stderr."""


class ListFailed(Exception):
    """Listing the cells failed for another reason; the message says how, with the bench's
    stderr."""


def list_cells(program, prefix, quick, cpu_client, cpu_other, benchmark_args=()):
    """The cells the bench would run here, in its table order. The bench also checks the CPU
    options on this machine, and the Google Benchmark flags meant for every launch, so a bad one
    is refused before anything runs."""
    argv = prefix + [program, "--benchmark_list_tests", "--cpu-client=%d" % cpu_client,
                     "--cpu-other=%d" % cpu_other] + (["--quick"] if quick else []) \
        + list(benchmark_args)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    message = out.stderr.strip()
    if out.returncode == 2:
        raise BenchRefused(message.replace("cloak-matrix: error: ", "") or "bad options")
    if out.returncode != 0:
        raise ListFailed("%s --benchmark_list_tests failed (status %d)%s"
                         % (program, out.returncode, ":\n" + message if message else ""))
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def result_path(out_dir, machine_id, started, commit, label):
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    stem = "%s-%s" % (stamp, re.sub(r"[^A-Za-z0-9._-]", "-", commit))
    if label:
        stem = "%s-%s" % (label, stem)
    directory = os.path.join(out_dir, machine_id)
    path = os.path.join(directory, stem + ".json")
    n = 2
    while os.path.exists(path):
        path = os.path.join(directory, "%s-%d.json" % (stem, n))
        n += 1
    return path


def write_report(path):
    """Plots and a report next to the result file, when the tools exist; never fails the run."""
    here = os.path.dirname(os.path.abspath(__file__))
    if not (os.path.exists(os.path.join(here, "plot.py")) and os.path.exists(os.path.join(here, "report.py"))):
        print("report: the plot/report tools are not installed; skipped")
        return
    out_dir = os.path.splitext(path)[0]
    try:
        from . import load, report  # matplotlib: only once the file is written
        os.makedirs(out_dir, exist_ok=True)
        result = load.load_result(path)
        written = report.write_report(result, out_dir)
        md = [p for p in written if p.endswith(".md")]
        print("report: %s (%d files in %s)" % (md[0] if md else out_dir, len(written), out_dir))
    except Exception as e:  # the tools belong to another module; their failure is not the run's
        print("report: could not write plots and a report: %s: %s (the results file is fine)"
              % (type(e).__name__, e))


def print_summary(result, order=()):
    """The summary table, the harness-cost checks and the warnings of a loaded result."""
    from . import checks as harness_checks, summary
    rows = summary.summary_rows(result, order)
    print()
    print("Summary (median of %s repetitions per cell; spread = half the interquartile range "
          "over the median; ÷ none = over the same cell without cloaking; ÷ floor = over the raw "
          "round trip (model: the in-process floor); ! = spread above ±5%%)"
          % summary.repetition_counts(rows))
    for line in summary.render_summary(rows):
        print(line)
    noise = result.noise_floor
    checks = harness_checks.harness_cost_checks(result)
    if checks:
        print()
        print("Harness cost (kernel transport, steady token, 64 bytes, 1 thread):")
        for c in checks:
            verdict = "info" if c["ok"] is None else "ok" if c["ok"] else "OVER"
            note = ""
            if c["ok"] is False and noise is not None and "÷" in c["check"] \
                    and abs(c["value"] - 1) <= noise:
                note = " (within the run's noise floor, %s)" % _percent(noise)
            print("  %-5s place:%-8s %s%s" % (verdict, c["place"], c["text"], note))
        print("  (place:unpinned is not judged: the scheduler decides per repetition whether client "
              "and downstream share a CPU)")
    warnings = result.warnings
    noisy = [w for w in warnings if w.startswith("noisy cell")]
    others = [w for w in warnings if not w.startswith("noisy cell")]
    if warnings:
        print()
        print("Warnings (also in the file's cloak_warnings):")
        for w in others:
            print("  - " + w)
        if noisy:
            print("  - %d noisy cells (spread above ±5%%); the run's noise floor is ±%s"
                  % (len(noisy), _percent(noise)))
    print()
    print("Results: %s" % result.path)


def _percent(value):
    return "unknown" if value is None else "%.1f%%" % (100 * value)


def refused_command_line(launch):
    """Whether a launch exited 2 (the bench's status for a bad command line) before writing."""
    return launch["record"]["exit_status"] == 2 and launch["output"] is None


def _refused(parser, message):
    parser.print_usage(sys.stderr)
    lines = str(message).splitlines() or ["bad options"]
    print("%s: error: %s" % (PROG, lines[0]), file=sys.stderr)
    for line in lines[1:]:
        print("  " + line, file=sys.stderr)
    return 2


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    own, benchmark_args = split_benchmark_args(argv)
    args = parser.parse_args(own)
    problem = benchmark_args_problem(benchmark_args)
    if problem:
        parser.error(problem)
    if args.downstream and not args.realm_dir:
        parser.error("--downstream needs --realm-dir (the realm the downstream uses)")
    if args.load and (args.hosts or args.downstream):
        parser.error("--load runs only the load cells: not with --hosts or --downstream")
    if os.environ.get("CLOAK_CHECK_ARGS_ONLY"):  # scripts/cloakbench asks before it builds
        return 0
    boost = args.repetitions is None and args.min_time is None
    if args.repetitions is None:
        args.repetitions = LOAD_REPETITIONS if args.load else DEFAULT_REPETITIONS
    min_time = args.min_time or (QUICK_MIN_TIME if args.quick else DEFAULT_MIN_TIME)
    build_dir = os.environ.get("CLOAK_BUILD_DIR") or os.path.join(ROOT, "build", "release")
    program = os.path.join(build_dir, "bench", BENCH)
    if not os.access(program, os.X_OK):
        print("%s: error: %s is not built (scripts/cloakbench run builds it; by hand: cmake "
              "--preset release && cmake --build build/release)" % (PROG, program), file=sys.stderr)
        return 1
    prefix = privilege_prefix()
    bench_args = hosts_options(args) + benchmark_args
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    if args.load:
        bench_args = ["--load", "--load-clients=" + (QUICK_LOAD_CLIENTS if args.quick else LOAD_CLIENTS),
                      "--load-seed=%d" % seed] + bench_args
    try:
        cells = list_cells(program, prefix, args.quick and not args.load, args.cpu_client,
                           args.cpu_other, bench_args)
    except BenchRefused as e:
        return _refused(parser, e)
    except (OSError, ListFailed, subprocess.SubprocessError) as e:
        print("%s: error: %s" % (PROG, e), file=sys.stderr)
        return 1
    if args.load:
        cells = load_selection(cells, args.quick)
    if args.filter:
        cells = [n for n in cells if re.search(args.filter, n)]
        if not cells:
            return _refused(parser, "--filter %r matches no cell (list them with "
                                    "scripts/cloakbench run --list)" % args.filter)
    if (DEFAULT_RUN_LEAVES_OUT and not (args.filter or args.quick or args.full_matrix
                                        or args.load)):
        cells = [n for n in cells if not re.search(DEFAULT_RUN_LEAVES_OUT, n)]
    block_launches = args.block_launches
    per_package = None
    if block_launches is None:
        block_launches = QUICK_BLOCK_LAUNCHES if args.quick else BLOCK_LAUNCHES
        per_package = None if args.quick else BLOCK_LAUNCHES_BY_PACKAGE
    if block_launches == 0:
        cells = [n for n in cells if not n.startswith("block/")]
    if args.load:
        launches = [(k + (args.quick,), n) for k, n in plan_load_launches(cells)]
    else:
        launches = spread_block_launches(plan_launches(cells), block_launches, seed, per_package)
    if args.list:
        for name in cells:
            print(name)
        print("%s: %d cells in %d launches (listed, not run)" % (PROG, len(cells), len(launches)),
              file=sys.stderr)
        return 0
    planned = sum(estimate_seconds(len(n), *launch_timing(k, args.repetitions, min_time, boost), key=k)
                  for k, n in launches)
    started = time.time()
    run = {"cloak_commit": git_commit(), "cloak_date": _utc(started),
           "cloak_command": " ".join(["scripts/cloakbench", "run"] + [shlex.quote(a) for a in argv]),
           "cloak_benchmark_args": benchmark_args, "cloak_run_seed": seed}
    check_reps, check_time = launch_timing(("check",), args.repetitions, min_time, boost)
    print("%s: %d cells in %d launches, %d repetitions of at least %g s each (%d of %g s for the "
          "harness-cost cells)%s: about %s"
          % (PROG, len(cells), len(launches), args.repetitions, min_time, check_reps, check_time,
             ", with " + " ".join(benchmark_args) if benchmark_args else "", _clock(planned)),
          file=sys.stderr, flush=True)

    stop = Stop()
    previous = {s: signal.signal(s, stop.handler) for s in (signal.SIGINT, signal.SIGTERM)}
    results = []
    progress = Progress(sum(len(n) for _, n in launches), planned)
    seen_stderr = set()
    try:
        with tempfile.TemporaryDirectory(prefix="cloakbench-run.") as work:
            settings = Launches(prefix, program, args.repetitions, min_time, args.cpu_client,
                                args.cpu_other, work, boost, bench_args, seed)
            for i, (key, group) in enumerate(launches):
                if stop.signal is not None:
                    break
                results.append(run_launch(i, len(launches), key, group, settings, progress, stop,
                                          seen_stderr))
                if refused_command_line(results[-1]):
                    break  # every launch gets the same flags: the others would refuse them too

    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    stop.announce()
    # From here on a second signal may end the process, but the file is written atomically.
    extra = []
    failed_launch = False
    for i, r in enumerate(results):
        status = r["record"]["exit_status"]
        if stop.signal is not None and status in (128 + stop.signal, -stop.signal, 0):
            continue
        if status != 0:
            failed_launch = True
            extra.append("launch %d (%s) exited with status %s; cells it did not finish are missing"
                         % (i + 1, describe_group(launches[i][0]), status))
        if r["output"] is not None and r["output"].torn:
            extra.append("launch %d wrote a torn JSON file; its complete entries were kept" % (i + 1))
    document = merge.merge_launches(results, run, extra)
    cell_histograms = [h for r in results for h in r.get("histograms", [])]
    if cell_histograms:
        document["cloak_histograms"] = merge_cell_histograms(cell_histograms)
    block_records = [b for r in results for b in r.get("blocks", [])]
    if block_records:
        document["cloak_blocks"] = summarize_blocks(block_records)
        for b in document["cloak_blocks"]:
            for f in b.get("failures", []):
                document["context"]["cloak_warnings"].append(
                    "failed block %s in one launch: %s" % (b["name"], f["failed"]))
    done = len(merge.cell_names(document["benchmarks"]))
    if stop.signal is not None:
        document["context"]["cloak_warnings"].insert(0, "interrupted by %s after %d of %d cells: the "
                                                        "file holds only the cells that finished"
                                                     % (signal.Signals(stop.signal).name, done, len(cells)))
    if not document["benchmarks"] and not block_records:
        if results and refused_command_line(results[-1]):
            return _refused(parser, "the bench refused its command line (its message is above); "
                                    "no results file written")
        print("%s: no cell finished; no results file written" % PROG, file=sys.stderr)
        return 128 + stop.signal if stop.signal is not None else 1
    machine_id = document["context"].get("cloak_machine_id") or "unknown-machine"
    path = result_path(args.out, machine_id, started, run["cloak_commit"], args.label)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    merge.write_atomic(path, merge.dumps(document))
    from . import load
    result = load.result_from_document(path, document)
    print_summary(result, [n for _, group in launches for n in group])
    if stop.signal is not None:
        print("report: skipped (the run was interrupted)")
        return 128 + stop.signal
    if not args.no_report:
        write_report(path)
    failed = any(c.failed for c in result.cells.values()) or any(
        not str(f.get("failed", "")).startswith("interrupted")
        for b in document.get("cloak_blocks", []) for f in b.get("failures", []))
    return 1 if failed or failed_launch else 0


if __name__ == "__main__":
    sys.exit(main())
