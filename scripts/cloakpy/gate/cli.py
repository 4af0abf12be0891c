"""`cloakbench gate`: the release gate's command line. Builds two revisions in their own
worktrees, runs their benches interleaved on this machine (one launch of each per round, in
random order, pinned the same way), and decides per gated cell regressed / improved / unchanged /
inconclusive with family-wise error rates it states (docs/reading.md, "The release gate"). Also
judges two sets of result files, and measures itself (--calibrate).

Only the standard library is imported before the arguments are parsed, so --help works at once."""

import argparse
import json
import os
import re
import shlex
import sys

from .. import argtypes, exits
from .builds import build_root_of, rerun_commit
from .calibrate import calibrate
from .common import (DEFAULT_BUDGET, DEFAULT_CALIBRATION_GATES, DEFAULT_MAX_LOOKS,
                     DEFAULT_MIN_TIME, DEFAULT_REPETITIONS, FAIL, FIRST_LOOK_EXTRA_ROUNDS,
                     FIRST_LOOK_MIN_ROUNDS, INJECT_PATHS, LAUNCH_RETRIES, PASS, PROG, RERUN_BUDGET,
                     RERUN_BUDGET_FACTOR, RERUN_TIMES, ROOT, UNUSABLE, GateAborted, Unusable, note)
from .render import emit, projection_words, rerun_budget_words
from .sequential import final_verdict
from .session import gate_files, gate_revisions, settle_inconclusive


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
        raise argparse.ArgumentTypeError("write REV=PATH (a revision and its built cloak-matrix)")
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
                    "unchanged), runs their cloak-matrix interleaved on this machine (each round "
                    "one launch of each, in random order, same CPU pinning, only the gated cells), "
                    "and decides per cell, with a launch as the sample. More rounds run, for the "
                    "undecided cells only, while the budget lasts. See docs/reading.md, \"The "
                    "release gate\".",
        epilog=exits.CONVENTION + " The gate also exits 1 when a side's bench fails %d "
               "launches in a row. Unusable input here: an unknown revision, a build that fails, "
               "files that do not load or come from different machines, a budget too small to "
               "decide anything. An inconclusive gate says how many rounds its undecided cells "
               "would need at the noise it measured, and, of revisions, prints the command that "
               "reruns it with a budget for them (at least %s; with --max-looks 1, also at least "
               "%s the rounds of its look), reusing both builds. --calibrate: 0 when the "
               "measured error rates meet the targets, 1 when not."
               % (LAUNCH_RETRIES, RERUN_BUDGET, RERUN_TIMES))
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
                   help="use PATH as REV's cloak-matrix instead of building it (for tests: the "
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


def _duration_text(seconds):
    """A --budget value that _duration reads back: '20m', '16s', '90.5s'."""
    if seconds >= 60 and seconds % 60 == 0:
        return "%dm" % (seconds // 60)
    return "%ss" % (int(seconds) if seconds == int(seconds) else repr(seconds))


def rerun_command(run, args):
    """The command that reruns this gate of revisions with the budget settle_inconclusive chose
    (RERUN_BUDGET_FACTOR × the budget at least, more where the noise measured needs more rounds;
    with a single look, whose rounds the budget does not set, also at least that many times its
    rounds, or the rounds projected):
    both sides named by commit (so their trees, and with them their builds in
    build/gate/<tree>/, are found again; --bench-for programs are passed again), every option
    that was given kept, paths made absolute, and a fresh launch-order seed."""
    repo = os.path.abspath(args.repo)
    build_root = build_root_of(repo, args.build_root)
    defaults = build_parser().parse_args([])
    argv = [os.path.join(ROOT, "scripts", "cloakbench"), "gate",
            rerun_commit(run.base, build_root), rerun_commit(run.candidate, build_root),
            "--budget", _duration_text(run.rerun_budget or RERUN_BUDGET_FACTOR * args.budget)]
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
        first_look = max(RERUN_BUDGET_FACTOR * run.looks_planned[0], run.projected or 0)
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
            argv += ["--bench-for", "%s=%s" % (rerun_commit(side, build_root), side.program)]
    return " ".join(shlex.quote(a) for a in argv)


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
                from ..merge import write_atomic
                write_atomic(args.markdown, text + "\n")
            return PASS if ok else FAIL
        if args.files:
            run = gate_files(args, args.revisions, candidate_files or [])
        else:
            if not args.revisions:
                parser.error("give BASE (and optionally CANDIDATE), or --files, or --calibrate")
            run = gate_revisions(args)
        verdict, code = final_verdict(run.records, args.fail_on_inconclusive)
        if verdict == "INCONCLUSIVE":
            settle_inconclusive(run)
            if run.mode == "revisions":
                run.rerun = rerun_command(run, args)
                note("inconclusive: more data is needed; %s; to rerun with %s, reusing both "
                     "builds: %s" % (projection_words(run), rerun_budget_words(run), run.rerun))
        emit(run, verdict, code, json_out=args.json, markdown_path=args.markdown)
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

