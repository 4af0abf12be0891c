"""`cloakbench gate`: the release gate. Builds two revisions in their own worktrees, runs their
benches interleaved on this machine (one launch of each per round, in random order, pinned the same
way), and decides per gated cell regressed / improved / unchanged / inconclusive with family-wise
error rates it states (docs/reading.md, "The release gate"). Also judges two sets of result files,
and measures itself (--calibrate).

Only the standard library is imported before the arguments are parsed, so --help works at once."""

import argparse
import dataclasses
import fcntl
import json
import math
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from . import argtypes
from typing import Dict, List, Optional

from . import exits, names

PROG = "cloakbench gate"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The headline cells (docs/reading.md, "Which cells are gated"): none / static / dynamic (kernel
# probe, no cache) x steady / switch, for every authentication package, same CPU, 64 B, 1 thread.
HEADLINE_CELLS = (r"^cloak/kernel/uds/auth:(local|kerberos)/(none|static|dynamic)/(steady|switch)/"
                  r"probe:(na|kernel)/cache:(na|none)/track:(na|identity)/prot:(na|none)/"
                  r"tickets:(na|warm)/place:same/bytes:64/threads:1$")
DEFAULT_BUDGET = 600.0
DEFAULT_REPETITIONS = 3
DEFAULT_MIN_TIME = 0.05
DEFAULT_MAX_LOOKS = 5
FIRST_LOOK_EXTRA_ROUNDS = 5   # rounds beyond the fewest that can decide anything at all
FIRST_LOOK_MIN_ROUNDS = 16
KERBEROS_LAUNCH_SECONDS = 0.3  # the realm each launch with kerberos cells starts
HARD_BUDGET_FACTOR = 1.25      # a segment of rounds under way stops only this far beyond the budget
LAUNCH_RETRIES = 3             # consecutive launches of one side that may fail before the gate stops
INJECT = "CLOAK_INJECT_NS"
# Where the spin goes (docs/reading.md, "Slowing the candidate on purpose"); call when unset.
INJECT_PATH = "CLOAK_INJECT_PATH"
INJECT_PATHS = ("call", "probe", "switch", "establish", "accept")
CALIBRATION_SLOWDOWN = 0.10
DEFAULT_CALIBRATION_GATES = 20
CALIBRATION_TARGET_GATES = 20  # the targets (≤ 1 false alarm, ≥ 19 caught) are per 20 gates

# The exit status, the same as compare's (exits.py): 0 pass, 1 regressed or failed, 2 unusable
# input, 3 inconclusive (1 with --fail-on-inconclusive).
PASS, FAIL, UNUSABLE, INCONCLUSIVE = exits.PASS, exits.FAIL, exits.UNUSABLE, exits.INCONCLUSIVE
RERUN_BUDGET_FACTOR = 2  # an inconclusive gate prints its rerun with this many times the budget
RERUN_TIMES = "twice" if RERUN_BUDGET_FACTOR == 2 else "%g times" % RERUN_BUDGET_FACTOR
RERUN_BUDGET = RERUN_TIMES + " the budget"


class Unusable(Exception):
    """Input the gate cannot work with: an unknown revision, a build that fails, files that do not
    load. The message is one line (the details go to a log it names)."""


# ---- arguments ---------------------------------------------------------------------------------

def _duration(text):
    m = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*",
                     text)
    if not m or not any(m.groups()):
        raise argparse.ArgumentTypeError("not a duration: %r (e.g. 600, 90s, 10m, 1h30m)" % text)
    h, mnt, s = (float(g) if g else 0.0 for g in m.groups())
    value = h * 3600 + mnt * 60 + s
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def _assignment(text):
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", text)
    if not m:
        raise argparse.ArgumentTypeError("write VAR=VALUE, e.g. CLOAK_INJECT_NS=500")
    return m.group(1), m.group(2)


def _bench_for(text):
    rev, sep, path = text.partition("=")
    if not sep or not rev or not path:
        raise argparse.ArgumentTypeError("write REV=PATH (a revision and its built cloak_matrix)")
    return rev, path


def build_parser():
    p = argparse.ArgumentParser(
        prog=PROG,
        usage="%(prog)s BASE [CANDIDATE] [options]\n"
              "       %(prog)s --files BASE_FILE... -- CANDIDATE_FILE... [options]\n"
              "       %(prog)s --calibrate [REV] [options]",
        description="The release gate: builds BASE and CANDIDATE (git revisions; CANDIDATE defaults "
                    "to the working tree, uncommitted changes included) in their own worktrees "
                    "under build/gate/<tree hash>/ (release build, reused while the tree is "
                    "unchanged), runs their cloak_matrix interleaved on this machine (each round "
                    "one launch of each, in random order, same CPU pinning, only the gated cells), "
                    "and decides per cell, with a launch as the sample. More rounds run, for the "
                    "undecided cells only, while the budget lasts. See docs/reading.md, \"The "
                    "release gate\".",
        epilog=exits.CONVENTION + " The gate also exits 1 when a side's bench fails %d "
               "launches in a row. Unusable input here: an unknown revision, a build that fails, "
               "files that do not load or come from different machines, a budget too small to "
               "decide anything. An inconclusive gate of revisions prints the command that reruns "
               "it with %s (with --max-looks 1, also %s the rounds of its look), reusing both "
               "builds. --calibrate: 0 when the measured error rates meet the targets, 1 when "
               "not." % (LAUNCH_RETRIES, RERUN_BUDGET, RERUN_TIMES))
    p.add_argument("revisions", nargs="*", metavar="REV",
                   help="BASE and CANDIDATE revisions (with --calibrate: the one revision, default "
                        "the working tree)")
    p.add_argument("--files", action="store_true",
                   help="judge result files instead of revisions: BASE_FILE... -- CANDIDATE_FILE... "
                        "(each file is one sample per cell: the median of its repetitions)")
    p.add_argument("--min-effect", type=argtypes.fraction, default=0.05, metavar="FRACTION",
                   help="the smallest change that matters (default %(default)s = 5%%); never "
                        "widened by noise")
    p.add_argument("--alpha", type=argtypes.fraction, default=0.05,
                   help="family-wise rate of false claims of each kind: identical code fails with "
                        "at most this probability (default %(default)s)")
    p.add_argument("--budget", type=_duration, default=DEFAULT_BUDGET, metavar="DURATION",
                   help="time for measuring (not building), e.g. 10m (default); a look is only "
                        "started when it fits")
    p.add_argument("--cells", type=argtypes.regex, default=None, metavar="REGEX",
                   help="gate the cells whose name matches (Python regex, searched; names as in "
                        "docs/results.md) instead of the headline set")
    p.add_argument("--max-looks", type=argtypes.positive_int, default=DEFAULT_MAX_LOOKS, metavar="L",
                   help="planned looks at the data; alpha is split evenly over them (default "
                        "%(default)s)")
    p.add_argument("--first-look", type=argtypes.positive_int, default=None, metavar="ROUNDS",
                   help="rounds before the first look (default: the fewest that can decide, "
                        "plus %d, at least %d)" % (FIRST_LOOK_EXTRA_ROUNDS, FIRST_LOOK_MIN_ROUNDS))
    p.add_argument("--repetitions", type=argtypes.odd_repetitions, default=DEFAULT_REPETITIONS, metavar="N",
                   help="repetitions per cell in each launch, odd (default %(default)s); their "
                        "median is the launch's sample")
    p.add_argument("--min-time", type=argtypes.seconds, default=DEFAULT_MIN_TIME, metavar="SECONDS",
                   help="minimum time per repetition (default %(default)s)")
    p.add_argument("--cpu-client", type=argtypes.cpu, default=0, metavar="N",
                   help="CPU of the client thread(s), both sides (default %(default)s)")
    p.add_argument("--cpu-other", type=argtypes.cpu, default=1, metavar="N",
                   help="the other CPU, both sides (default %(default)s)")
    p.add_argument("--candidate-env", type=_assignment, action="append", default=[],
                   metavar="VAR=VALUE",
                   help="set VAR in the candidate's launches only (repeatable), e.g. "
                        "CLOAK_INJECT_NS=500 to slow every proxy call by 500 ns, with "
                        "CLOAK_INJECT_PATH=establish every new security context instead")
    p.add_argument("--json", action="store_true", help="write JSON instead of Markdown")
    p.add_argument("--markdown", metavar="FILE", default=None,
                   help="also write the Markdown summary to FILE (for a release checklist)")
    p.add_argument("--fail-fast", action="store_true",
                   help="stop at the first look that calls a cell regressed (the verdict cannot "
                        "change after it; the cells still open stay inconclusive)")
    p.add_argument("--fail-on-inconclusive", action="store_true",
                   help=exits.FAIL_ON_INCONCLUSIVE_HELP)
    # Before issue 17 an inconclusive gate exited 1 and this made it 0; now it exits 3.
    p.add_argument("--allow-inconclusive", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the launch order (default: from the clock; printed)")
    p.add_argument("--repo", metavar="DIR", default=ROOT,
                   help="the git repository the revisions name (default: this source tree)")
    p.add_argument("--build-root", metavar="DIR", default=None,
                   help="where worktrees and builds are kept (default: REPO/build/gate)")
    p.add_argument("--jobs", type=argtypes.positive_int, default=None, metavar="N",
                   help="parallel build jobs (default: the number of CPUs); builds run niced")
    p.add_argument("--bench-for", type=_bench_for, action="append", default=[], metavar="REV=PATH",
                   help="use PATH as REV's cloak_matrix instead of building it (for tests: the "
                        "build under test)")
    p.add_argument("--calibrate", action="store_true",
                   help="measure the gate on this machine: repeated A/A gates of REV and A/A gates "
                        "with the candidate slowed by 10%% (CLOAK_INJECT_NS); print the false-alarm "
                        "rate and the share caught")
    p.add_argument("--calibrate-gates", type=argtypes.positive_int, default=DEFAULT_CALIBRATION_GATES,
                   metavar="N", help="gates of each kind for --calibrate (default %(default)s)")
    p.add_argument("--calibration-log", metavar="FILE", default=None,
                   help="--calibrate: append every finished gate to FILE (JSON lines) and count the "
                        "gates already there with the same settings, so a calibration can be "
                        "interrupted and continued, in pieces, until N of each kind are in it")
    p.add_argument("--inject-ns", type=argtypes.positive_int, default=None, metavar="NS",
                   help="--calibrate's slowdown in ns (default: 10%% of the fastest gated cell, "
                        "measured first)")
    p.add_argument("--inject-path", choices=INJECT_PATHS, default="call",
                   help="--calibrate: where the slowdown goes (CLOAK_INJECT_PATH; default "
                        "%(default)s, the whole proxy call); any other path needs --inject-ns")
    return p


def split_files(argv):
    """(options and base files, candidate files) for --files BASE... -- CANDIDATE...; None when
    there is no --."""
    if "--" not in argv:
        return argv, None
    i = argv.index("--")
    return argv[:i], argv[i + 1:]


# ---- git: revisions, trees, worktrees ----------------------------------------------------------

def git(repo, *args, env=None, check=True):
    full_env = dict(os.environ, **(env or {}))
    try:
        out = subprocess.run(["git", "-C", repo] + list(args), capture_output=True, text=True,
                             env=full_env, timeout=300)
    except (OSError, subprocess.SubprocessError) as e:
        raise Unusable("cannot run git: %s" % e) from None
    if check and out.returncode != 0:
        raise Unusable("git %s failed: %s" % (" ".join(args), out.stderr.strip().splitlines()[-1:]
                                              or "status %d" % out.returncode))
    return out


@dataclasses.dataclass
class Revision:
    spec: str        # what the user wrote ("HEAD~1"), or "working tree"
    commit: str      # the commit to check out (for the working tree: a commit made of its tree)
    tree: str        # the tree hash: what decides whether a build can be reused
    label: str       # how it is printed: "3c9e2f1", "working tree (3c9e2f1 + changes)"


_GATE_IDENTITY = {"GIT_AUTHOR_NAME": "cloakbench gate", "GIT_AUTHOR_EMAIL": "gate@cloakbench.invalid",
                  "GIT_COMMITTER_NAME": "cloakbench gate",
                  "GIT_COMMITTER_EMAIL": "gate@cloakbench.invalid"}


def resolve_revision(repo, spec):
    """The commit and tree a revision names (raises Unusable for one that does not exist)."""
    if git(repo, "rev-parse", "--git-dir", check=False).returncode != 0:
        raise Unusable("%s is not a git repository" % repo)
    out = git(repo, "rev-parse", "--verify", "--quiet", "%s^{commit}" % spec, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise Unusable("unknown revision '%s' in %s" % (spec, repo))
    commit = out.stdout.strip()
    tree = git(repo, "rev-parse", "%s^{tree}" % commit).stdout.strip()
    return Revision(spec, commit, tree, commit[:10])


def working_tree_revision(repo):
    """The working tree as a revision: its tracked and untracked, not ignored files written as a
    tree through a temporary index (the real index is not touched), and a commit of that tree on
    top of HEAD so a worktree can check it out."""
    head = resolve_revision(repo, "HEAD")
    with tempfile.TemporaryDirectory(prefix="cloakbench-gate-index.") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        git(repo, "read-tree", head.commit, env=env)
        git(repo, "add", "-A", env=env)
        tree = git(repo, "write-tree", env=env).stdout.strip()
    if tree == head.tree:
        return Revision("working tree", head.commit, tree, "working tree (= %s)" % head.commit[:10])
    commit = git(repo, "commit-tree", tree, "-p", head.commit, "-m",
                 "cloakbench gate: the working tree on top of %s" % head.commit[:10],
                 env=_GATE_IDENTITY).stdout.strip()
    return Revision("working tree", commit, tree,
                    "working tree (%s + uncommitted changes)" % head.commit[:10])


class _Lock:
    """An exclusive lock on a file: two gates never build the same tree at once."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _log_hint(log_path):
    """The first compiler or CMake error line of a build log, for the one-line message."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            lines = [l.strip() for l in f]
    except OSError:
        return ""
    for i, line in enumerate(lines):
        if re.search(r"\berror\b", line, re.IGNORECASE) and "Error 1" not in line:
            if line.endswith(":"):  # CMake puts its message on the lines that follow
                following = next((l for l in lines[i + 1:] if l), "")
                line = "%s %s" % (line, following)
            return line[:200]
    return lines[-1][:200] if lines else ""


def ensure_build(repo, rev, build_root, jobs, say):
    """The path of rev's cloak_matrix, built in build_root/<tree>/ (a git worktree in src/, the
    release build in build/) unless a finished build of the same tree is there already."""
    where = os.path.join(build_root, rev.tree[:16])
    src, build, log = (os.path.join(where, n) for n in ("src", "build", "build.log"))
    program = os.path.join(build, "bench", "cloak_matrix")
    stamp = os.path.join(where, "built")
    os.makedirs(build_root, exist_ok=True)
    with _Lock(where + ".lock"):
        if os.path.exists(stamp) and os.access(program, os.X_OK):
            say("reusing the build of %s (tree %s): %s" % (rev.label, rev.tree[:10], build))
            return program, True
        os.makedirs(where, exist_ok=True)
        if not os.path.isdir(os.path.join(src, ".git")) and not os.path.isfile(os.path.join(src, ".git")):
            if os.path.exists(src):
                shutil.rmtree(src)
            git(repo, "worktree", "prune", check=False)
            git(repo, "worktree", "add", "--detach", src, rev.commit)
        say("building %s (tree %s) in %s (log: %s)" % (rev.label, rev.tree[:10], build, log))
        with open(log, "w", encoding="utf-8") as f:
            steps = [["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=Release"],
                     ["nice", "-n", "10", "cmake", "--build", build, "-j", str(jobs),
                      "--target", "cloak_matrix"]]
            for step in steps:
                f.write("$ %s\n" % " ".join(shlex.quote(a) for a in step))
                f.flush()
                status = subprocess.run(step, stdout=f, stderr=subprocess.STDOUT).returncode
                if status != 0:
                    hint = _log_hint(log)
                    raise Unusable("building %s failed%s; the full log is %s"
                                   % (rev.label, ": " + hint if hint else "", log))
        if not os.access(program, os.X_OK):
            raise Unusable("building %s made no %s; the full log is %s" % (rev.label, program, log))
        with open(stamp, "w", encoding="utf-8") as f:
            f.write("%s %s\n" % (rev.commit, rev.tree))
        return program, False


# ---- cells ------------------------------------------------------------------------------------

def normalized_name(name):
    """A matrix cell's name with every segment of today's scheme, so a revision from before the
    Kerberos cells (no auth:, track:, prot:, tickets:) is matched with today's names."""
    info = names.parse_name(names.canonical_name(name))
    if not info.is_cell:
        return info.name
    parts = ["cloak", info.backend, info.transport, "auth:" + info.auth, info.cloaking,
             info.pattern, "probe:" + info.probe, "cache:" + info.cache, "track:" + info.track,
             "prot:" + info.prot, "tickets:" + info.tickets]
    if info.hops is not None:
        parts.append("hops:%d" % info.hops)
    parts += ["place:" + info.place, "bytes:%d" % info.bytes, "threads:%d" % info.threads]
    return "/".join(parts)


@dataclasses.dataclass
class Selection:
    gated: List[str]                 # normalized names, in the base's order
    native: Dict[str, Dict[str, str]]  # side -> normalized -> the side's own name
    only_base: List[str]
    only_candidate: List[str]
    pattern: str


def select_cells(base_names, candidate_names, pattern):
    """The gated cells: matching `pattern` and present on both sides."""
    rx = re.compile(pattern)
    native = {"base": {}, "candidate": {}}
    for side, listed in (("base", base_names), ("candidate", candidate_names)):
        for n in listed:
            native[side].setdefault(normalized_name(n), n)
    gated = [n for n in native["base"] if rx.search(n) and n in native["candidate"]]
    only_base = [n for n in native["base"] if rx.search(n) and n not in native["candidate"]]
    only_cand = [n for n in native["candidate"] if rx.search(n) and n not in native["base"]]
    return Selection(gated, native, only_base, only_cand, pattern)


# ---- launches ---------------------------------------------------------------------------------

@dataclasses.dataclass
class Side:
    name: str          # "base" or "candidate"
    label: str         # what it is, printed
    program: str
    env: Dict[str, str]
    reused: bool = False
    revision: Optional[Revision] = None
    bench_for: bool = False   # the program came from --bench-for, not from a build


@dataclasses.dataclass
class LaunchResult:
    medians: Dict[str, float]   # normalized name -> median of the launch's repetitions (ns)
    failed: Dict[str, str]      # normalized name -> the cell's error
    context: dict
    seconds: float
    status: int
    stderr_tail: List[str]
    refused: bool = False       # the bench refused its command line (exit 2, no output)


class Launcher:
    """Runs one side's bench for some cells and reads what it wrote."""

    def __init__(self, repetitions, min_time, cpu_client, cpu_other, work_dir, prefix, clients=None):
        self.repetitions = repetitions
        self.min_time = min_time
        self.cpu = ["--cpu-client=%d" % cpu_client, "--cpu-other=%d" % cpu_other]
        if clients:
            self.cpu.append("--clients=%s" % clients)
        self.work_dir = work_dir
        self.prefix = prefix
        self.count = 0

    def environment(self, side):
        # Only ever set on purpose: a slowdown left in the gate's own environment is not passed on.
        env = {k: v for k, v in os.environ.items() if k not in (INJECT, INJECT_PATH)}
        env.update(side.env)
        return env

    def list_cells(self, side):
        argv = self.prefix + [side.program, "--benchmark_list_tests"] + self.cpu
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                                 env=self.environment(side))
        except (OSError, subprocess.SubprocessError) as e:
            raise Unusable("cannot run the %s's bench %s: %s" % (side.name, side.program, e)) from None
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or ["status %d" % out.returncode])[0]
            raise Unusable("the %s's bench %s cannot list its cells: %s"
                           % (side.name, side.program, last))
        return [l.strip() for l in out.stdout.splitlines() if l.strip()]

    def estimate(self, cells, kerberos):
        from .run_suite import estimate_seconds
        return estimate_seconds(cells, self.repetitions, self.min_time) + \
            (KERBEROS_LAUNCH_SECONDS if kerberos else 0.0)

    def launch(self, side, native_names, timeout):
        from . import load, merge
        from .run_suite import launch_filter
        from .stats import median
        self.count += 1
        out_path = os.path.join(self.work_dir, "launch-%d.json" % self.count)
        argv = self.prefix + [
            side.program, "--benchmark_filter=" + launch_filter(sorted(native_names.values())),
            "--benchmark_repetitions=%d" % self.repetitions,
            "--benchmark_min_time=%g" % self.min_time,
            "--benchmark_enable_random_interleaving=true",
            "--benchmark_report_aggregates_only=false",
            "--benchmark_out=%s" % out_path, "--benchmark_out_format=json"] + self.cpu
        started = time.monotonic()
        try:
            child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=self.environment(side))
        except OSError as e:
            raise Unusable("cannot run the %s's bench %s: %s" % (side.name, side.program, e)) from None
        try:
            _, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGTERM)
            try:
                _, err = child.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                _, err = child.communicate()
            err = (err or "") + "\n%s: the launch took more than %.0f s and was stopped" % (PROG, timeout)
        except BaseException:
            child.kill()
            child.wait()
            raise
        seconds = time.monotonic() - started
        tail = [l for l in (err or "").splitlines() if l.strip()][-12:]
        output = None
        try:
            with open(out_path, encoding="utf-8", errors="replace") as f:
                output = merge.salvage_gbench_json(f.read())
            os.unlink(out_path)
        except OSError:
            pass
        if output is None:
            return LaunchResult({}, {}, {}, seconds, child.returncode, tail,
                                refused=child.returncode == 2)
        by_native = {v: k for k, v in native_names.items()}
        cells = load.cells_from_entries(out_path, output.benchmarks)
        medians, failed = {}, {}
        for name, cell in cells.items():
            key = by_native.get(name)
            if key is None:
                continue
            if cell.failed:
                failed[key] = cell.error_message or "failed"
            elif cell.samples:
                medians[key] = median(cell.samples)
        return LaunchResult(medians, failed, load.decode_context(output.context), seconds,
                            child.returncode, tail)


# ---- the sequential plan and its looks ---------------------------------------------------------

def first_decidable_rounds(alpha, looks, family_size, paired=True):
    """The fewest samples per side whose smallest p-value can pass Holm's first step."""
    from . import stats
    return stats.rounds_to_decide(alpha / looks / family_size, paired=paired)


def plan_looks(first, last, looks):
    """Round counts of the looks: `first`, then geometric up to `last`, at most `looks` of them,
    strictly increasing."""
    if last <= first or looks == 1:
        return [max(first, 1)] if looks == 1 or last <= first else [first]
    out = []
    for i in range(looks):
        n = int(round(first * (last / first) ** (i / (looks - 1))))
        if not out or n > out[-1]:
            out.append(n)
    return out


@dataclasses.dataclass
class CellRecord:
    name: str
    base: List[Optional[float]] = dataclasses.field(default_factory=list)       # per round
    candidate: List[Optional[float]] = dataclasses.field(default_factory=list)  # per round
    failed: str = ""
    failed_side: str = ""
    decision: object = None        # stats.Decision once a look decided it (kept from then on)
    decided_look: int = 0
    decided_round: int = 0
    last: object = None            # the latest look's Decision (for undecided cells)

    def pairs(self):
        """(base, candidate) of the rounds where both launches measured the cell."""
        b, c = [], []
        for x, y in zip(self.base, self.candidate):
            if x is not None and y is not None and x > 0 and y > 0:
                b.append(x)
                c.append(y)
        return b, c

    @property
    def open(self):
        return self.decision is None and not self.failed


def take_look(records, min_effect, alpha_per_look, look, rounds, paired=True):
    """One look: every gated cell's estimate from its samples so far (decided cells keep theirs,
    frozen), Holm over all of them, and the first verdict of each cell kept."""
    from . import stats
    estimates = {}
    for r in records.values():
        if r.failed:
            estimates[r.name] = None
            continue
        if paired:
            b, c = r.pairs()
            estimates[r.name] = stats.paired_shift(b, c) if b else None
        else:
            b = [x for x in r.base if x]
            c = [x for x in r.candidate if x]
            estimates[r.name] = stats.unpaired_shift(b, c) if b and c else None
    decisions = stats.decide(estimates, min_effect, alpha_per_look, family_size=len(records))
    for name, d in decisions.items():
        r = records[name]
        r.last = d
        if r.open and d.verdict != stats.INCONCLUSIVE:
            r.decision, r.decided_look, r.decided_round = d, look, rounds
    return decisions


def final_verdict(records, fail_on_inconclusive=False):
    """(verdict word, exit status) of the whole gate: the convention of exits.py."""
    from . import stats
    failed = any(r.failed for r in records.values())
    verdicts = [r.decision.verdict if r.decision else stats.INCONCLUSIVE for r in records.values()]
    regressed = stats.REGRESSED in verdicts
    inconclusive = stats.INCONCLUSIVE in verdicts
    code = exits.status(failed or regressed, inconclusive, fail_on_inconclusive)
    if failed:
        return "FAILED", code
    if regressed:
        return "REGRESSED", code
    if inconclusive:
        return "INCONCLUSIVE", code
    return "PASS", code


# ---- progress ---------------------------------------------------------------------------------

def _clock(seconds):
    seconds = max(0, int(round(seconds)))
    return "%d:%02d" % (seconds // 60, seconds % 60)


class Progress:
    def __init__(self, quiet=False):
        self.start = time.monotonic()
        self.quiet = quiet

    def elapsed(self):
        return time.monotonic() - self.start

    def say(self, text, left=None):
        if self.quiet:
            return
        eta = "" if left is None else ", ~%s left" % _clock(left)
        print("[%s elapsed%s] %s" % (_clock(self.elapsed()), eta, text), file=sys.stderr, flush=True)


def note(text):
    print("%s: %s" % (PROG, text), file=sys.stderr, flush=True)


# ---- one gate over two built sides ------------------------------------------------------------

@dataclasses.dataclass
class GateRun:
    mode: str                     # "revisions" or "files"
    base: Side
    candidate: Side
    selection: Selection
    records: Dict[str, CellRecord]
    min_effect: float
    alpha: float
    looks_planned: List[int]
    looks_taken: int
    rounds: int
    launches: int
    seconds: float
    budget: float
    stop_reason: str
    seed: Optional[int]
    repetitions: int
    min_time: float
    cpus: tuple
    notes: List[str]
    machine: str = "unknown"
    planned_looks_for_alpha: int = 1   # the looks alpha was split over (planned, not taken)
    base_medians: Dict[str, float] = dataclasses.field(default_factory=dict)
    candidate_medians: Dict[str, float] = dataclasses.field(default_factory=dict)
    rerun: Optional[str] = None        # inconclusive: the command that reruns with a larger budget


def run_gate(base, candidate, selection, args, launcher, progress, rng):
    """Rounds of interleaved launches with looks at planned round counts, until every gated cell
    is decided, the planned looks are used, or the next look would not fit the budget."""
    from . import stats
    k = len(selection.gated)
    records = {n: CellRecord(n) for n in selection.gated}
    kerberos = any("/auth:kerberos/" in n for n in selection.gated)
    looks = args.max_looks
    alpha_look = args.alpha / looks
    fewest = first_decidable_rounds(args.alpha, looks, k)
    first = args.first_look or max(fewest + FIRST_LOOK_EXTRA_ROUNDS, FIRST_LOOK_MIN_ROUNDS)
    planned_round = 2 * launcher.estimate(k, kerberos)
    affordable = int(args.budget // planned_round)
    if first > affordable:
        if fewest > affordable:
            raise Unusable("the budget of %s allows about %d rounds (%.1f s each, planned), fewer "
                           "than the %d that can decide anything at alpha %g over %d cells and %d "
                           "looks; raise --budget or gate fewer cells (--cells)"
                           % (_clock(args.budget), affordable, planned_round, fewest, args.alpha,
                              k, looks))
        first = affordable
    schedule = [first]  # the later looks are placed once the first segment's speed is known
    notes = []
    seen_warnings = set()
    rounds = launches = 0
    looks_taken = 0
    stop_reason = ""
    failures = {"base": 0, "candidate": 0}
    seconds_per_cell_launch = planned_round / 2 / max(k, 1)
    first_context = {}
    while True:
        target = schedule[looks_taken]

        def round_estimate():
            n_open = sum(1 for n in selection.gated if records[n].open)
            return 2 * seconds_per_cell_launch * n_open + (2 * KERBEROS_LAUNCH_SECONDS if kerberos else 0)
        # A look is started only when its rounds are expected to fit the budget; a segment
        # already under way is stopped only far beyond it.
        if looks_taken > 0 and progress.elapsed() + (target - rounds) * round_estimate() > args.budget:
            stop_reason = "budget"
            break
        while rounds < target:
            open_cells = [n for n in selection.gated if records[n].open]
            left_to_look = (target - rounds) * round_estimate()
            if progress.elapsed() > args.budget * HARD_BUDGET_FACTOR:
                stop_reason = "budget"
                break
            order = [base, candidate]
            rng.shuffle(order)
            round_seconds = 0.0
            said = []
            for side in order:
                native = {n: selection.native[side.name][n] for n in open_cells}
                timeout = 60 + 10 * launcher.estimate(len(native), kerberos)
                result = launcher.launch(side, native, timeout)
                launches += 1
                round_seconds += result.seconds
                _absorb(result, side, records, open_cells, notes, seen_warnings, failures)
                first_context = first_context or result.context
                said.append("%s %.1f s%s" % (side.name, result.seconds, "" if result.status == 0
                                             else " (exit status %d)" % result.status))
            progress.say("round %d of %d before look %d: %d cells; %s"
                         % (rounds + 1, target, looks_taken + 1, len(open_cells), ", ".join(said)),
                         left=min(max(0.0, left_to_look - round_seconds),
                                  max(0.0, args.budget - progress.elapsed())))
            if round_seconds > 0 and open_cells:
                seconds_per_cell_launch = 0.5 * seconds_per_cell_launch + \
                    0.5 * round_seconds / 2 / len(open_cells)
            rounds += 1
            if not any(records[n].open for n in selection.gated):
                break
        if stop_reason:
            break
        if rounds < target and not any(records[n].open for n in selection.gated):
            stop_reason = "failed"
            break  # every cell failed before the look
        looks_taken += 1
        take_look(records, args.min_effect, alpha_look, looks_taken, rounds)
        counts = {}
        for r in records.values():
            v = "failed" if r.failed else r.decision.verdict if r.decision else stats.INCONCLUSIVE
            counts[v] = counts.get(v, 0) + 1
        progress.say("look %d of at most %d at round %d: %s (alpha %.4g per look)"
                     % (looks_taken, looks, rounds,
                        ", ".join("%d %s" % (n, v) for v, n in sorted(counts.items())), alpha_look))
        if not any(r.open for r in records.values()):
            stop_reason = "decided"
            break
        if args.fail_fast and any(r.decision and r.decision.verdict == stats.REGRESSED
                                  for r in records.values()):
            stop_reason = "regressed"  # a regressed call is final: the verdict cannot change
            break
        if looks_taken == 1:
            # The later looks, now that the speed of a round is known: geometric up to what the
            # budget allows with every cell still open.
            per_round = 2 * seconds_per_cell_launch * k + (2 * KERBEROS_LAUNCH_SECONDS if kerberos else 0)
            last = rounds + int(max(0.0, args.budget - progress.elapsed()) // per_round)
            schedule = plan_looks(first, max(last, first), looks)
            if len(schedule) == 1:
                stop_reason = "looks" if looks == 1 else "budget"
                break
        if looks_taken >= len(schedule):
            stop_reason = "looks"
            break
    return GateRun("revisions", base, candidate, selection, records, args.min_effect, args.alpha,
                   schedule, looks_taken, rounds, launches, progress.elapsed(), args.budget,
                   stop_reason, None, args.repetitions, args.min_time,
                   (args.cpu_client, args.cpu_other), notes, machine=_machine_of(first_context),
                   planned_looks_for_alpha=looks)


def _absorb(result, side, records, open_cells, notes, seen_warnings, failures):
    """One launch's medians into the records, its failures and warnings into the notes."""
    if result.refused:
        raise Unusable("the %s's bench refused its command line: %s"
                       % (side.name, (result.stderr_tail or ["(no message)"])[0]))
    if not result.medians and not result.failed:
        failures[side.name] += 1
        if failures[side.name] >= LAUNCH_RETRIES:
            raise GateAborted("the %s's bench failed %d launches in a row (exit status %d): %s"
                              % (side.name, LAUNCH_RETRIES, result.status,
                                 " | ".join(result.stderr_tail[-3:]) or "no message"))
    else:
        failures[side.name] = 0
    for name in open_cells:
        r = records[name]
        value = result.medians.get(name)
        if side.name == "base":
            r.base.append(value)
        else:
            r.candidate.append(value)
        if name in result.failed and not r.failed:
            r.failed = result.failed[name]
            r.failed_side = side.name
    want = side.env.get(INJECT)
    got = result.context.get("cloak_injected_ns")
    if want and result.context and str(got) != str(int(want) if want.isdigit() else want):
        msg = ("the %s was launched with %s=%s but its bench recorded cloak_injected_ns=%s: it may "
               "not implement the slowdown" % (side.name, INJECT, want, got))
        if msg not in seen_warnings:
            seen_warnings.add(msg)
            notes.append(msg)
    want_path = side.env.get(INJECT_PATH)
    got_path = result.context.get("cloak_injected_path")
    if want_path and result.context and str(got_path) != want_path:
        msg = ("the %s was launched with %s=%s but its bench recorded cloak_injected_path=%s: it "
               "may not implement that path" % (side.name, INJECT_PATH, want_path, got_path))
        if msg not in seen_warnings:
            seen_warnings.add(msg)
            notes.append(msg)
    warnings = result.context.get("cloak_warnings")
    for w in warnings if isinstance(warnings, list) else []:
        if str(w).startswith(INJECT):
            continue  # said once, first, by finish()
        text = "bench warning (%%s): %s" % w
        mine, both = text % side.name, text % "base and candidate"
        other = text % ("candidate" if side.name == "base" else "base")
        if mine in notes or both in notes:
            continue
        if other in notes:
            notes[notes.index(other)] = both
        else:
            notes.append(mine)


class GateAborted(Exception):
    """The gate stopped before a verdict: a side's bench keeps failing (exit 1)."""


def medians_of_launches(run):
    from .stats import median
    for name, r in run.records.items():
        b = [x for x in r.base if x]
        c = [x for x in r.candidate if x]
        if b:
            run.base_medians[name] = median(b)
        if c:
            run.candidate_medians[name] = median(c)


# ---- rendering --------------------------------------------------------------------------------

def _cell_rows(run):
    from . import fmt, stats
    from .verdicts import change, confidence, interval
    rows = []
    for name in run.selection.gated:
        r = run.records[name]
        d = r.decision or r.last
        b, c = run.base_medians.get(name), run.candidate_medians.get(name)
        samples = len(r.pairs()[0]) if run.mode == "revisions" else \
            "%d + %d" % (len([x for x in r.base if x]), len([x for x in r.candidate if x]))
        if r.failed:
            verdict, ratio, lo, hi, level, when = stats.FAILED, None, None, None, None, ""
            note = "failed in the %s: %s" % (r.failed_side, r.failed)
        else:
            verdict = r.decision.verdict if r.decision else stats.INCONCLUSIVE
            ratio, lo, hi, level = (d.ratio, d.lower, d.upper, d.level) if d else (None,) * 4
            when = "look %d, round %d" % (r.decided_look, r.decided_round) if r.decision and \
                run.mode == "revisions" else ""
            note = d.note if d else "no samples"
        rows.append({"name": name, "base": fmt.ns(b) if b else "—", "candidate": fmt.ns(c) if c else "—",
                     "change": change(ratio), "interval": interval(lo, hi),
                     "confidence": confidence(level), "samples": samples, "verdict": verdict,
                     "decided": when, "note": note, "ratio": ratio, "lower": lo, "upper": hi,
                     "level": level, "p_value": d.p_value if d and not r.failed else None,
                     "base_ns": b, "candidate_ns": c})
    return rows


def headline(run, verdict):
    from . import fmt, stats
    from .verdicts import deciding_cells
    rows = _cell_rows(run)
    k = len(rows)
    e = fmt.percent(run.min_effect, signed=False)

    def pick(v):
        return [(r["name"], r["ratio"], r["lower"], r["upper"]) for r in rows if r["verdict"] == v]
    if verdict == "FAILED":
        failed = [r for r in rows if r["verdict"] == stats.FAILED]
        return "**FAILED** — %d of %d gated cells failed: %s." % (
            len(failed), k, ", ".join("`%s` (%s)" % (r["name"], r["note"]) for r in failed[:3]))
    if verdict == "REGRESSED":
        reg = pick(stats.REGRESSED)
        stopped = ""
        if run.stop_reason == "regressed":
            stopped = " Stopped at that look (--fail-fast): %d cells were not decided." % len(
                pick(stats.INCONCLUSIVE))
        return "**REGRESSED** — %d of %d gated cells are slower by more than %s: %s.%s" % (
            len(reg), k, e, deciding_cells(reg), stopped)
    if verdict == "INCONCLUSIVE":
        inc = pick(stats.INCONCLUSIVE)
        why = {"budget": "within the %s budget" % _clock(run.budget),
               "looks": "after all %d planned looks" % len(run.looks_planned)
               if len(run.looks_planned) > 1 else "at its only planned look"}.get(
                   run.stop_reason, "with the samples given")
        more = ("give more result files on each side" if run.mode == "files" else
                "rerun with a larger --budget, on a quieter machine if possible (the command "
                "below does so, reusing both builds)")
        return ("**INCONCLUSIVE** — nothing regressed, but %d of %d gated cells could not be "
                "shown to be within ±%s %s: %s. Not a pass and not a regression: more data is "
                "needed; %s." % (len(inc), k, e, why, deciding_cells(inc), more))
    imp = pick(stats.IMPROVED)
    return "**PASS** — all %d gated cells are unchanged within ±%s%s." % (
        k, e, (" or faster (%s)" % deciding_cells(imp)) if imp else "")


def _sample_words(run):
    if run.mode == "files":
        return "one result file per sample: the median of the cell's repetitions in that file"
    return ("one launch of a side's cloak_matrix: the median of its %d repetitions of at least "
            "%g s; each round launches both sides once, in random order, pinned alike; the "
            "change is read from each round's candidate ÷ base" % (run.repetitions, run.min_time))


def render_markdown(run, verdict):
    from . import fmt
    from .verdicts import rule_lines
    out = ["# cloakbench gate", "", headline(run, verdict), ""]
    if run.rerun:
        out += ["Rerun with %s%s, reusing both builds:" % (
                    RERUN_BUDGET, " and %s the rounds of its only look" % RERUN_TIMES
                    if run.planned_looks_for_alpha == 1 else ""), "",
                "```", run.rerun, "```", ""]
    b, c = run.base, run.candidate
    facts = ["Base: %s (`%s`)%s" % (b.label, b.program, ", build reused" if b.reused else ""),
             "Candidate: %s (`%s`)%s%s" % (c.label, c.program, ", build reused" if c.reused else "",
                                          "; launched with " + " ".join(
                                              "%s=%s" % kv for kv in sorted(c.env.items()))
                                          if c.env else "")]
    if run.mode == "revisions":
        facts.append("Measured: %d rounds (%d launches) in %s of a %s budget; %d look(s) of at most "
                     "%d (planned at rounds %s); CPUs: client %d, other %d; launch order seed %s."
                     % (run.rounds, run.launches, _clock(run.seconds), _clock(run.budget),
                        run.looks_taken, run.planned_looks_for_alpha,
                        ", ".join(map(str, run.looks_planned)), run.cpus[0], run.cpus[1], run.seed))
    facts.append("Machine: %s." % run.machine)
    facts.append("Gated: %d cells matching `%s`." % (len(run.selection.gated), run.selection.pattern))
    out += ["- " + f for f in facts] + [""]
    out += ["## How this was decided", ""]
    out += ["- " + l for l in rule_lines(
        run.min_effect, run.alpha, len(run.selection.gated), run.planned_looks_for_alpha,
        _sample_words(run), "Wilcoxon signed-rank" if run.mode == "revisions" else "Mann-Whitney")]
    out += ["- Pass (exit 0): every gated cell unchanged or improved; a regressed or failed cell "
            "fails the gate (exit 1); cells still inconclusive when the looks or the budget run "
            "out, with nothing regressed or failed, make it inconclusive (exit 3, or 1 with "
            "--fail-on-inconclusive): not a pass.", ""]
    rows = _cell_rows(run)
    header = ["cell", "base", "candidate", "change", "interval", "confidence",
              "rounds" if run.mode == "revisions" else "files", "verdict", "decided", "note"]
    table = [[r["name"], r["base"], r["candidate"], r["change"], r["interval"], r["confidence"],
              str(r["samples"]), r["verdict"], r["decided"], r["note"]] for r in rows]
    out += ["## Gated cells", "", fmt.markdown_table(header, table), ""]
    out.append("Base and candidate are the medians of the launch medians; change and interval are "
               "the paired estimate, at the confidence the cell's verdict (or, undecided, the "
               "strictest remaining step) was tested at." if run.mode == "revisions" else
               "Base and candidate are the medians of the file medians.")
    out.append("")
    if run.selection.only_base or run.selection.only_candidate:
        out += ["## Not gated (in one side only)", ""]
        out += ["- only in the base: `%s`" % n for n in run.selection.only_base]
        out += ["- only in the candidate: `%s`" % n for n in run.selection.only_candidate]
        out.append("")
    if run.notes:
        out += ["## Notes", ""] + ["- " + n for n in run.notes] + [""]
    return "\n".join(out)


def to_json(run, verdict, code):
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v
    rows = [{k: clean(v) for k, v in r.items()} for r in _cell_rows(run)]
    return {
        "mode": run.mode, "verdict": verdict.lower(), "exit_status": code,
        "headline": headline(run, verdict),
        "base": _side_json(run.base), "candidate": _side_json(run.candidate),
        "min_effect": run.min_effect, "alpha": run.alpha,
        "looks_planned": run.looks_planned, "looks_taken": run.looks_taken,
        "alpha_per_look": run.alpha / run.planned_looks_for_alpha,
        "rounds": run.rounds, "launches": run.launches, "seconds": round(run.seconds, 1),
        "budget_seconds": run.budget, "stop_reason": run.stop_reason, "seed": run.seed,
        "repetitions": run.repetitions, "min_time": run.min_time,
        "cpus": {"client": run.cpus[0], "other": run.cpus[1]}, "machine": run.machine,
        "cells_pattern": run.selection.pattern,
        "cells": rows,
        "not_gated": {"only_base": run.selection.only_base,
                      "only_candidate": run.selection.only_candidate},
        "notes": run.notes,
        "rerun": run.rerun,
    }


def _side_json(side):
    out = {"label": side.label, "program": side.program, "env": side.env, "build_reused": side.reused}
    if side.revision is not None:
        out.update({"revision": side.revision.spec, "commit": side.revision.commit,
                    "tree": side.revision.tree})
    return out


def emit(run, verdict, code, args):
    md = render_markdown(run, verdict)
    if args.markdown:
        from .merge import write_atomic
        write_atomic(args.markdown, md + "\n")
    if args.json:
        json.dump(to_json(run, verdict, code), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(md + "\n")
    sys.stdout.flush()


# ---- the modes --------------------------------------------------------------------------------

def _machine_of(context):
    from . import load
    if not context:
        return "unknown"
    return load.Result("", context, {}).machine_summary()


def prepare_sides(args, say):
    """(base Side, candidate Side) for BASE [CANDIDATE]: revisions resolved, built or reused."""
    repo = os.path.abspath(args.repo)
    if len(args.revisions) not in (1, 2):
        raise Unusable("give BASE and optionally CANDIDATE (git revisions), or --files")
    revs = [resolve_revision(repo, args.revisions[0])]
    revs.append(resolve_revision(repo, args.revisions[1]) if len(args.revisions) == 2
                else working_tree_revision(repo))
    overrides = {}
    for spec, path in args.bench_for:
        rev = working_tree_revision(repo) if spec in ("WORKTREE", "working-tree") \
            else resolve_revision(repo, spec)
        if not os.access(path, os.X_OK):
            raise Unusable("--bench-for %s=%s: not an executable file" % (spec, path))
        overrides[rev.tree] = os.path.abspath(path)
    build_root = os.path.abspath(args.build_root or os.path.join(repo, "build", "gate"))
    jobs = args.jobs or os.cpu_count() or 1
    sides = []
    for name, rev, env in (("base", revs[0], {}), ("candidate", revs[1], dict(args.candidate_env))):
        label = rev.label if rev.spec == "working tree" or rev.commit.startswith(rev.spec) \
            else "%s (%s)" % (rev.spec, rev.label)
        if rev.tree in overrides:
            program, reused = overrides[rev.tree], True
            say("%s: %s uses %s (--bench-for)" % (name, rev.label, program))
        else:
            program, reused = ensure_build(repo, rev, build_root, jobs, say)
        sides.append(Side(name, label.strip(), program, env, reused, rev,
                          bench_for=rev.tree in overrides))
    return sides


def _duration_text(seconds):
    """A --budget value that _duration reads back: '20m', '16s', '90.5s'."""
    if seconds >= 60 and seconds % 60 == 0:
        return "%dm" % (seconds // 60)
    return "%ss" % (int(seconds) if seconds == int(seconds) else repr(seconds))


def _rerun_commit(side, build_root):
    """The commit that names a side in the rerun command. A revision names its own commit; the
    working tree names the commit its build's worktree checked out (recorded in the build's
    stamp), which that worktree keeps reachable, so the rerun gates the same tree even after
    the working tree changed, and finds its build."""
    rev = side.revision
    if rev.spec == "working tree" and not side.bench_for:
        try:
            with open(os.path.join(build_root, rev.tree[:16], "built"), encoding="utf-8") as f:
                commit, tree = f.read().split()[:2]
            if tree == rev.tree:
                return commit
        except (OSError, ValueError):
            pass
    return rev.commit


def rerun_command(run, args):
    """The command that reruns this gate of revisions with RERUN_BUDGET_FACTOR × the budget
    (with a single look, whose rounds the budget does not set, also that many times its rounds):
    both sides named by commit (so their trees, and with them their builds in
    build/gate/<tree>/, are found again; --bench-for programs are passed again), every option
    that was given kept, paths made absolute, and a fresh launch-order seed."""
    repo = os.path.abspath(args.repo)
    build_root = os.path.abspath(args.build_root or os.path.join(repo, "build", "gate"))
    defaults = build_parser().parse_args([])
    argv = [os.path.join(ROOT, "scripts", "cloakbench"), "gate",
            _rerun_commit(run.base, build_root), _rerun_commit(run.candidate, build_root),
            "--budget", _duration_text(RERUN_BUDGET_FACTOR * args.budget)]
    for option, attr in (("--min-effect", "min_effect"), ("--alpha", "alpha"),
                         ("--cells", "cells"), ("--max-looks", "max_looks"),
                         ("--repetitions", "repetitions"),
                         ("--min-time", "min_time"), ("--cpu-client", "cpu_client"),
                         ("--cpu-other", "cpu_other"), ("--jobs", "jobs")):
        value = getattr(args, attr)
        if value is not None and value != getattr(defaults, attr):
            argv += [option, repr(value) if isinstance(value, float) else str(value)]
    first_look = args.first_look
    if args.max_looks == 1 and run.looks_planned:
        first_look = RERUN_BUDGET_FACTOR * run.looks_planned[0]
    if first_look is not None:
        argv += ["--first-look", str(first_look)]
    for var, value in args.candidate_env:
        argv += ["--candidate-env", "%s=%s" % (var, value)]
    for flag, attr in (("--fail-fast", "fail_fast"), ("--fail-on-inconclusive",
                                                      "fail_on_inconclusive"), ("--json", "json")):
        if getattr(args, attr):
            argv.append(flag)
    if args.markdown:
        argv += ["--markdown", os.path.abspath(args.markdown)]
    if repo != os.path.abspath(ROOT):
        argv += ["--repo", repo]
    if args.build_root:
        argv += ["--build-root", build_root]
    trees = set()
    for side in (run.base, run.candidate):
        if side.bench_for and side.revision.tree not in trees:  # one per tree, as given
            trees.add(side.revision.tree)
            argv += ["--bench-for", "%s=%s" % (_rerun_commit(side, build_root), side.program)]
    return " ".join(shlex.quote(a) for a in argv)


def gate_revisions(args):
    progress = Progress()
    base, candidate = prepare_sides(args, note)
    seed = args.seed if args.seed is not None else int(time.time() * 1000) % (2 ** 31)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="cloakbench-gate.") as work:
        from .run_suite import privilege_prefix
        launcher = Launcher(args.repetitions, args.min_time, args.cpu_client, args.cpu_other, work,
                            privilege_prefix(), os.environ.get("CLOAK_CLIENTS"))
        selection = select_cells(launcher.list_cells(base), launcher.list_cells(candidate),
                                 args.cells or HEADLINE_CELLS)
        if not selection.gated:
            raise Unusable("no cell matching %s is in both builds (base: %d, candidate: %d "
                           "matching)" % (selection.pattern, len(selection.only_base),
                                          len(selection.only_candidate)))
        note("gating %d cells (%s), min effect ±%g%%, alpha %g, budget %s, seed %d"
             % (len(selection.gated), "headline set" if not args.cells else args.cells,
                100 * args.min_effect, args.alpha, _clock(args.budget), seed))
        progress = Progress()
        run = run_gate(base, candidate, selection, args, launcher, progress, rng)
    run.seed = seed
    finish(run)
    return run


def finish(run):
    medians_of_launches(run)
    if run.candidate.env:
        run.notes.insert(0, "the candidate ran with %s: its times are not the code's own"
                         % " ".join("%s=%s" % kv for kv in sorted(run.candidate.env.items())))


def gate_files(args, base_files, candidate_files):
    from . import load
    if not base_files or not candidate_files:
        raise Unusable("--files needs BASE_FILE... -- CANDIDATE_FILE... (at least one on each side)")
    sides = {}
    for name, paths in (("base", base_files), ("candidate", candidate_files)):
        try:
            sides[name] = [load.load_result(p) for p in paths]
        except load.LoadError as e:
            raise Unusable(str(e)) from None
    hashes = {r.machine_hash for rs in sides.values() for r in rs} - {load.UNKNOWN}
    if len(hashes) > 1:
        raise Unusable("the files come from %d machines (%s); the gate compares times from one "
                       "machine" % (len(hashes), ", ".join(sorted(hashes))))
    listed = {name: [n for r in rs for n in r.cells] for name, rs in sides.items()}
    selection = select_cells(listed["base"], listed["candidate"], args.cells or HEADLINE_CELLS)
    if not selection.gated:
        raise Unusable("no cell matching %s is in the files of both sides" % selection.pattern)
    records = {n: CellRecord(n) for n in selection.gated}
    notes = []
    from .stats import median
    for name, rs in sides.items():
        for result in rs:
            for w in result.warnings:
                if w.startswith(load.INJECTION_VARIABLE):
                    notes.append("%s: %s" % (result.path, w))
            for key in selection.gated:
                cell = result.cells.get(selection.native[name][key])
                r = records[key]
                value = None
                if cell is not None and cell.failed and not r.failed:
                    r.failed, r.failed_side = cell.error_message or "failed", name
                elif cell is not None and cell.samples:
                    value = median(cell.samples)
                (r.base if name == "base" else r.candidate).append(value)
    take_look(records, args.min_effect, args.alpha, 1, 0, paired=False)
    label = {n: "%d file%s: %s" % (len(p), "" if len(p) == 1 else "s", ", ".join("`%s`" % x for x in p))
             for n, p in (("base", base_files), ("candidate", candidate_files))}
    run = GateRun("files", Side("base", label["base"], "files", {}),
                  Side("candidate", label["candidate"], "files", {}), selection, records,
                  args.min_effect, args.alpha, [0], 1, 0, 0, 0.0, 0.0, "files", None,
                  0, 0.0, (0, 0), notes, machine=sides["base"][0].machine_summary())
    finish(run)
    return run


# ---- calibration ------------------------------------------------------------------------------

def calibrate(args):
    """Repeated A/A gates and A/A gates with the candidate slowed by CLOAK_INJECT_NS, alternating,
    on one build; prints how often identical code failed and how often the slowdown was caught."""
    from . import stats
    spec = args.revisions[0] if args.revisions else None
    if len(args.revisions) > 1:
        raise Unusable("--calibrate takes one revision")
    repo = os.path.abspath(args.repo)
    args.revisions = [spec, spec] if spec else [working_tree_revision(repo).commit] * 2
    args.candidate_env = []
    base, _ = prepare_sides(args, note)
    started = time.monotonic()
    seed = args.seed if args.seed is not None else int(time.time() * 1000) % (2 ** 31)
    rng = random.Random(seed)
    results = {"aa": [], "slow": []}
    with tempfile.TemporaryDirectory(prefix="cloakbench-calibrate.") as work:
        from .run_suite import privilege_prefix
        launcher = Launcher(args.repetitions, args.min_time, args.cpu_client, args.cpu_other, work,
                            privilege_prefix(), os.environ.get("CLOAK_CLIENTS"))
        listed = launcher.list_cells(base)
        selection = select_cells(listed, listed, args.cells or HEADLINE_CELLS)
        if not selection.gated:
            raise Unusable("no cell matching %s in %s" % (selection.pattern, base.program))
        settings = calibration_settings(args, selection)
        path = args.inject_path
        logged = [g for g in read_calibration_log(args.calibration_log, settings)
                  if g.get("inject_path", "call") == path]
        inject = args.inject_ns
        shares = {}
        if inject is None and path != "call" and not logged:
            raise Unusable("--inject-path %s needs --inject-ns: the default (10%% of the fastest "
                           "gated cell) is a share of a whole call" % path)
        if inject is None and logged:
            inject, shares = logged[0]["inject_ns"], logged[0].get("shares", {})
        if inject is None:
            native = {n: selection.native["base"][n] for n in selection.gated}
            medians = {}
            for _ in range(3):
                r = launcher.launch(base, native, 60 + 10 * launcher.estimate(len(native), True))
                for n, v in r.medians.items():
                    medians.setdefault(n, []).append(v)
            if not medians:
                raise Unusable("the bench measured none of the gated cells")
            typical = {n: stats.median(v) for n, v in medians.items()}
            inject = max(1, int(round(CALIBRATION_SLOWDOWN * min(typical.values()))))
            shares = {n: inject / t for n, t in typical.items()}
        logged = [g for g in logged if g["inject_ns"] == inject]
        for g in logged:
            results[g["kind"]].append(g)
        todo = {k: max(0, args.calibrate_gates - len(results[k])) for k in results}
        slow_env = {INJECT: str(inject)}
        if path != "call":
            slow_env[INJECT_PATH] = path
        note("calibrating: %d A/A gates and %d gates with %s, alternating (seed %d)%s"
             % (todo["aa"], todo["slow"], " ".join("%s=%s" % kv for kv in slow_env.items()), seed,
                "; %d A/A and %d slowed gates already in %s" % (
                    len(results["aa"]), len(results["slow"]), args.calibration_log)
                if logged else ""))
        kinds = []
        while todo["aa"] or todo["slow"]:
            pair = [k for k in ("aa", "slow") if todo[k]]
            rng.shuffle(pair)
            for k in pair:
                todo[k] -= 1
            kinds += pair
        for i, kind in enumerate(kinds):
            cand = Side("candidate", base.label, base.program,
                        dict(slow_env) if kind == "slow" else {}, True, base.revision)
            progress = Progress(quiet=True)
            gate_rng = random.Random(rng.randrange(2 ** 31))
            run = run_gate(base, cand, selection, args, launcher, progress, gate_rng)
            verdict, _ = final_verdict(run.records)
            regressed = [n for n, r in run.records.items()
                         if r.decision and r.decision.verdict == stats.REGRESSED]
            gate = {"kind": kind, "verdict": verdict, "seconds": run.seconds, "rounds": run.rounds,
                    "regressed": regressed, "stop_reason": run.stop_reason,
                    "verdicts": {n: ("failed" if r.failed else r.decision.verdict
                                     if r.decision else stats.INCONCLUSIVE)
                                 for n, r in run.records.items()},
                    # The candidate/base ratio each cell measured (at its verdict, or at the
                    # last look): what the injected share became on the clock.
                    "ratios": {n: measured_ratio(r) for n, r in run.records.items()},
                    # The base's median time per cell in this gate: the injected ns over it is
                    # the share the slowdown had on the day.
                    "base_ns": {n: base_median(r) for n, r in run.records.items()},
                    "inject_ns": inject, "inject_path": path, "shares": shares,
                    "settings": settings,
                    "build": base.label, "machine": run.machine,
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            results[kind].append(gate)
            append_calibration_log(args.calibration_log, gate)
            spent = time.monotonic() - started
            note("gate %d of %d (%s): %s in %s, %d rounds; ~%s left"
                 % (i + 1, len(kinds), "A/A" if kind == "aa" else "slowed", verdict,
                    _clock(run.seconds), run.rounds,
                    _clock(spent / (i + 1) * (len(kinds) - i - 1))))
    return summarize_calibration(results, inject, shares, args, time.monotonic() - started, seed,
                                 base)


def measured_ratio(record):
    """A cell's candidate/base ratio at its verdict, else at the last look (None: not measured)."""
    d = record.decision or record.last
    return None if record.failed or d is None or d.ratio is None else round(d.ratio, 5)


def base_median(record):
    """The median of the base's per-launch medians of a cell, in ns (None: never measured)."""
    from . import stats
    values = [x for x in record.base if x]
    return round(stats.median(values), 1) if values else None


def _median_of(gates, key, name, value=lambda x: x):
    """The median over the gates that logged `key` for cell `name` of value(x), and how many."""
    from . import stats
    values = [value(g[key][name]) for g in gates if g.get(key, {}).get(name) is not None]
    return (stats.median(values), len(values)) if values else (None, 0)


def _median_change(gates, name):
    """The median measured change of `name` over the gates that logged one, as "+9.6% (n=7)"."""
    median, n = _median_of(gates, "ratios", name)
    return "—" if median is None else "%+.1f%% (n=%d)" % (100 * (median - 1), n)


def _share_on_the_day(gates, name, inject):
    """The median over the slowed gates of the injected ns as a share of the cell's base there."""
    median, n = _median_of(gates, "base_ns", name, lambda t: inject / t)
    return "—" if median is None else "+%.1f%% (n=%d)" % (100 * median, n)


def _median_seconds(gates):
    durations = sorted(g["seconds"] for g in gates)
    return durations[len(durations) // 2] if durations else 0.0


def calibration_settings(args, selection):
    """What makes two calibration gates comparable: the gate's rule and the cells it gates."""
    return {"cells": selection.pattern, "gated": sorted(selection.gated),
            "min_effect": args.min_effect, "alpha": args.alpha, "max_looks": args.max_looks,
            "first_look": args.first_look, "repetitions": args.repetitions,
            "min_time": args.min_time, "budget": args.budget, "fail_fast": args.fail_fast,
            "cpus": [args.cpu_client, args.cpu_other]}


def read_calibration_log(path, settings):
    """The gates in the calibration log `path` made with `settings` (none when there is no log);
    a line that does not parse makes the log unusable: nothing is guessed."""
    if not path or not os.path.exists(path):
        return []
    gates = []
    try:
        with open(path) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    g = json.loads(line)
                except json.JSONDecodeError as e:
                    raise Unusable("%s line %d is not JSON (%s): fix or remove it" % (path, number, e))
                if not isinstance(g, dict) or g.get("kind") not in ("aa", "slow"):
                    raise Unusable("%s line %d is not a calibration gate" % (path, number))
                if g.get("settings") == settings:
                    gates.append(g)
    except OSError as e:
        raise Unusable("cannot read %s: %s" % (path, e.strerror))
    machines = {g.get("machine") for g in gates}
    if len(machines) > 1:
        raise Unusable("%s has gates from several machines (%s): one log per machine"
                       % (path, ", ".join(sorted(str(m) for m in machines))))
    return gates


def append_calibration_log(path, gate):
    """One finished gate appended as a line, flushed to disk before the next gate starts."""
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps(gate, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _slowed_where(path):
    """Where CLOAK_INJECT_PATH put the spin, in the calibration's words."""
    return "on every proxy call" if path == "call" else "at %s=%s" % (INJECT_PATH, path)


def summarize_calibration(results, inject, shares, args, seconds, seed, base):
    """The calibration's figures as Markdown (or JSON) text and whether the targets hold."""
    from . import stats
    aa, slow = results["aa"], results["slow"]
    n_aa, n_slow = len(aa), len(slow)
    false_alarms = sum(1 for g in aa if g["verdict"] in ("REGRESSED", "FAILED"))
    aa_pass = sum(1 for g in aa if g["verdict"] == "PASS")
    slowed = [n for n, s in shares.items() if s >= CALIBRATION_SLOWDOWN * 0.999] or \
        sorted(shares, key=lambda n: -shares[n])[:1]
    # Every gated cell is slowed by the same ns, so any regressed cell is a true detection; how
    # often the cell slowed by the full 10% was among those named is said beside it.
    caught = sum(1 for g in slow if g["verdict"] == "REGRESSED")
    named = sum(1 for g in slow if g["verdict"] == "REGRESSED" and
                (not shares or any(n in g["regressed"] for n in slowed)))
    durations = sorted(g["seconds"] for g in aa + slow)
    median_gate = durations[len(durations) // 2] if durations else 0.0
    targets = false_alarms * 20 <= n_aa and caught * 20 >= 19 * n_slow
    # The targets are stated per 20 gates of each kind: fewer say "so far", never "met".
    complete = n_aa >= CALIBRATION_TARGET_GATES and n_slow >= CALIBRATION_TARGET_GATES
    state = ("TARGETS MET" if complete else "WITHIN THE TARGETS SO FAR, BUT FEWER THAN %d GATES"
             % CALIBRATION_TARGET_GATES) if targets else "TARGETS NOT MET"
    lines = ["# cloakbench gate --calibrate", "",
             "**%s** — identical code failed %d of %d gates (target at most 1 in 20); a %s "
             "slowdown was caught in %d of %d gates (target at least 19 in 20)."
             % (state, false_alarms, n_aa,
                "%g%%" % (100 * CALIBRATION_SLOWDOWN) if args.inject_ns is None else "%d ns" % inject,
                caught, n_slow), "",
             "- Build: %s (`%s`)." % (base.label, base.program),
             "- Slowdown: %s=%d ns %s of the candidate%s." % (
                 INJECT, inject, _slowed_where(getattr(args, "inject_path", "call")),
                 " (10%% of the fastest gated cell's median, %s)" % ", ".join(
                     "`%s` +%.1f%%" % (n, 100 * s) for n, s in sorted(shares.items(), key=lambda x: -x[1])[:3])
                 if shares else ""),
             "- A/A gates: %d passed, %d failed (false alarms), %d inconclusive." % (
                 aa_pass, false_alarms, n_aa - aa_pass - false_alarms),
             "- Slowed gates: %d regressed (%d of them naming a cell slowed by the full %g%%), %d "
             "passed (the slowdown missed with a claim of unchanged), %d inconclusive or "
             "otherwise." % (
                 caught, named, 100 * CALIBRATION_SLOWDOWN,
                 sum(1 for g in slow if g["verdict"] == "PASS"),
                 n_slow - caught - sum(1 for g in slow if g["verdict"] == "PASS")),
             "- Time per gate: A/A median %s, longest %s; slowed median %s, longest %s (budget %s%s);"
             " this invocation %s." % (
                 _clock(_median_seconds(aa)), _clock(max([g["seconds"] for g in aa], default=0)),
                 _clock(_median_seconds(slow)), _clock(max([g["seconds"] for g in slow], default=0)),
                 _clock(args.budget), ", --fail-fast" if args.fail_fast else "", _clock(seconds)),
             "- Builds: %s; machines: %s." % (
                 ", ".join(sorted({str(g.get("build", base.label)) for g in aa + slow})) or base.label,
                 ", ".join(sorted({str(g.get("machine", "?")) for g in aa + slow})) or "?"),
             "- Settings: min effect ±%g%%, alpha %g, at most %d looks, %d repetitions of %g s per "
             "launch, CPUs %d/%d, seed %d." % (100 * args.min_effect, args.alpha, args.max_looks,
                                                args.repetitions, args.min_time, args.cpu_client,
                                                args.cpu_other, seed), ""]
    cells = sorted({n for g in aa + slow for n in g["verdicts"]})
    table = []
    for n in cells:
        def tally(gs):
            c = {}
            for g in gs:
                v = g["verdicts"].get(n, stats.INCONCLUSIVE)
                c[v] = c.get(v, 0) + 1
            return ", ".join("%d %s" % (k, v) for v, k in sorted(c.items()))
        table.append([n, "+%.1f%%" % (100 * shares[n]) if n in shares else "—",
                      _share_on_the_day(slow, n, inject), _median_change(slow, n), tally(aa),
                      tally(slow)])
    from . import fmt
    lines += ["## Per cell", "",
              "The injected share is the slowdown over the cell's median when the calibration "
              "began; the share in the gates is it over the base's median in each slowed gate "
              "(the median of those). The measured change is the median over the slowed gates "
              "of the cell's candidate/base ratio, at its verdict or at the gate's last look; it "
              "differs from the share in the gates when the spin does not add its ns to the "
              "call one for one (n: the gates that logged it; older log lines lack these fields). With "
              "`--fail-fast` a gate stops at the first regressed cell, so the other cells' "
              "verdicts stay inconclusive whatever their share.", "",
              fmt.markdown_table(["cell", "injected share", "share in the gates",
                                  "slowed: measured change",
                                  "A/A verdicts", "slowed verdicts"], table), ""]
    data = {"false_alarms": false_alarms, "aa_gates": n_aa, "caught": caught, "slowed_gates": n_slow,
            "aa_passed": aa_pass, "inject_ns": inject, "inject_path": getattr(args, "inject_path", "call"),
            "shares": shares,
            "targets_met": targets and complete, "within_targets_so_far": targets, "named": named,
            "median_gate_seconds": round(median_gate, 1), "seconds": round(seconds, 1),
            "seed": seed, "gates": results}
    return "\n".join(lines), data, targets


# ---- main -------------------------------------------------------------------------------------

def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    own, candidate_files = split_files(argv)
    # After `--` come the candidate's files; argparse must not read them as revisions.
    args = parser.parse_args(own)
    if candidate_files is not None and not args.files:
        parser.error("'--' separates BASE_FILE... from CANDIDATE_FILE... and needs --files")
    if args.files and args.calibrate:
        parser.error("--files and --calibrate do not go together")
    if args.allow_inconclusive:
        parser.error("--allow-inconclusive is gone: an inconclusive gate now exits 3 (a pass 0, "
                     "a regression or failed cell 1), so a pipeline can tell it apart; "
                     "--fail-on-inconclusive makes it exit 1")
    if os.environ.get("CLOAK_CHECK_ARGS_ONLY"):  # scripts/cloakbench asks before anything else
        return 0
    try:
        if args.calibrate:
            text, data, ok = calibrate(args)
            if args.json:
                json.dump(data, sys.stdout, indent=2)
                sys.stdout.write("\n")
            else:
                sys.stdout.write(text + "\n")
            if args.markdown:
                from .merge import write_atomic
                write_atomic(args.markdown, text + "\n")
            return PASS if ok else FAIL
        if args.files:
            run = gate_files(args, args.revisions, candidate_files or [])
        else:
            if not args.revisions:
                parser.error("give BASE (and optionally CANDIDATE), or --files, or --calibrate")
            run = gate_revisions(args)
        verdict, code = final_verdict(run.records, args.fail_on_inconclusive)
        if verdict == "INCONCLUSIVE" and run.mode == "revisions":
            run.rerun = rerun_command(run, args)
            note("inconclusive: more data is needed; to rerun with %s, reusing both builds: %s"
                 % (RERUN_BUDGET, run.rerun))
        emit(run, verdict, code, args)
        return code
    except Unusable as e:
        print("%s: error: %s" % (PROG, e), file=sys.stderr)
        return UNUSABLE
    except GateAborted as e:
        print("%s: error: %s" % (PROG, e), file=sys.stderr)
        return FAIL
    except KeyboardInterrupt:
        print("\n%s: interrupted: no verdict" % PROG, file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
