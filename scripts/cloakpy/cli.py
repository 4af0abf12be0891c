"""`cloakbench plot|compare|report|history`: a thin argparse layer over the cloakpy modules."""

import argparse
import json
import os
import sys

from . import argtypes
from . import exits
from . import stats
from .load import LoadError

PROG = "cloakbench"
# scripts/cloakpy/cli.py -> the repository, whose results/ history reads by default (as run writes)
REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _add_statistics_options(p):
    p.add_argument("--min-effect", type=argtypes.fraction_or_zero, default=None, metavar="FRACTION",
                   help="the smallest relative change that matters (default 0.05 = 5%%); a "
                        "noisy file never widens it, it makes cells inconclusive")
    p.add_argument("--alpha", type=argtypes.fraction_or_zero, default=stats.DEFAULT_FAMILY_ALPHA,
                   help="family-wise rate of false claims of each kind over all compared cells "
                        "(Holm; default %(default)s)")
    p.add_argument("--cross-machine", action="store_true",
                   help="compare same-run ratios instead of absolute times; needed for "
                        "files from different machines or schema versions")


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Read cloakbench results: plots, compare, report.")
    sub = parser.add_subparsers(dest="command", metavar="{plot,compare,report,history}")
    sub.required = True

    p = sub.add_parser("plot", help="write PNG and SVG plots of result files",
                       description="Write PNG and SVG plots: cost per call, where the time "
                                   "goes, same-run ratios across machines, throughput and latency "
                                   "with client threads.")
    p.add_argument("files", nargs="+", metavar="FILE", help="result files")
    p.add_argument("-o", "--output", metavar="DIR", default=None,
                   help="output directory (default: the directory of the first FILE)")

    c = sub.add_parser("compare", help="compare a candidate against a baseline",
                       description="Compare CANDIDATE against BASELINE cell by cell "
                                   "(docs/reading.md, \"Reading a compare\").",
                       epilog=exits.CONVENTION + " A cell that failed only in the baseline is "
                              "reported and decides nothing; inconclusive cells need more "
                              "repetitions, fewer cells judged together (--cells) or "
                              "`scripts/cloakbench gate`.")
    c.add_argument("baseline", metavar="BASELINE")
    c.add_argument("candidate", metavar="CANDIDATE")
    _add_statistics_options(c)
    c.add_argument("--cells", metavar="REGEX", default=None, type=argtypes.regex,
                   help="judge only the cells whose name matches (Python regex, searched): a "
                        "smaller family decides with fewer repetitions")
    c.add_argument("--json", action="store_true", help="write JSON instead of Markdown")
    c.add_argument("--fail-on-inconclusive", action="store_true",
                   help=exits.FAIL_ON_INCONCLUSIVE_HELP)

    r = sub.add_parser("report", help="write a Markdown and HTML design-review report",
                       description="Write report.md and a self-contained report.html.")
    r.add_argument("file", metavar="FILE")
    r.add_argument("--baseline", metavar="FILE", default=None,
                   help="also compare FILE against this baseline")
    r.add_argument("-o", "--output", metavar="DIR", required=True, help="output directory")
    r.add_argument("--every", type=argtypes.positive_int, default=None, metavar="N",
                   help="also evaluate the cost model at one identity change every N calls "
                        "(docs/reading.md)")
    r.add_argument("--equal-within", type=argtypes.fraction, default=None, metavar="FRACTION",
                   help="on the first screen, a × none ratio whose whole 95%% interval lies "
                        "within this fraction of 1.00 reads '≈ 1.00×' (default 0.02)")
    _add_statistics_options(r)

    h = sub.add_parser("history", help="the headline ratios of every result file over time",
                       description="Read every result file under DIR... (default results/) and "
                                   "write history.html (self-contained) and a PNG per series: "
                                   "the headline ratios per commit and machine over time, with "
                                   "change points (docs/reading.md).")
    h.add_argument("dirs", nargs="*", metavar="DIR", help="directories or files (default: "
                                                        "the repository's results/)")
    h.add_argument("-o", "--output", metavar="DIR", default=None,
                   help="output directory (default: the repository's results/)")
    h.add_argument("--permutations", type=argtypes.positive_int, default=None,
                   help="permutations of the change-point test (default 1999)")
    h.add_argument("--seed", type=int, default=None, help="seed of the permutations")
    return parser


def _stat_kwargs(args):
    return dict(min_effect=args.min_effect, alpha=args.alpha, cross_machine=args.cross_machine,
                cells=getattr(args, "cells", None))


def _ensure_dir(path):
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise LoadError("cannot create output directory %s: %s" % (path, e.strerror or e)) from None


def run_plot(args):
    from . import load, plot
    results = [load.load_result(f) for f in args.files]
    out = args.output or os.path.dirname(os.path.abspath(args.files[0]))
    _ensure_dir(out)
    written, notes = plot.write_plots(results, out)
    for note in notes:
        print("note: " + note, file=sys.stderr)
    for path in written:
        print(path)
    return 0


def run_compare(args):
    from . import compare, load
    baseline = load.load_result(args.baseline)
    candidate = load.load_result(args.candidate)
    comparison = compare.compare_results(baseline, candidate, **_stat_kwargs(args))
    code = compare.exit_status(comparison, args.fail_on_inconclusive)
    if args.json:
        json.dump(compare.to_json(comparison, code), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(compare.render_markdown(comparison) + "\n")
    return code


def run_report(args):
    from . import load, report
    result = load.load_result(args.file)
    baseline = load.load_result(args.baseline) if args.baseline else None
    _ensure_dir(args.output)
    written = report.write_report(result, args.output, baseline=baseline,
                                  compare_options=_stat_kwargs(args), every=args.every,
                                  equal_within=args.equal_within)
    for path in written:
        print(path)
    return 0


def run_history(args):
    from . import history
    results = os.path.join(REPOSITORY, "results")
    dirs = args.dirs or [results]
    args.output = args.output or results
    for d in dirs:
        if not os.path.exists(d):
            raise LoadError("no such directory or file: %s" % d)
    _ensure_dir(args.output)
    options = {k: v for k, v in (("permutations", args.permutations), ("seed", args.seed))
               if v is not None}
    written, runs, series, skipped = history.write_history(dirs, args.output, **options)
    for path, why in skipped:
        print("note: skipped %s: %s" % (path, why), file=sys.stderr)
    for line in history.change_point_lines(series):
        print(line, file=sys.stderr)
    machines = len({r.result.machine_id for r in runs})
    points = sum(len(s.change_points) for s in series)
    print("history: %d run%s on %d machine%s, %d change point%s" % (
        len(runs), "" if len(runs) == 1 else "s", machines, "" if machines == 1 else "s",
        points, "" if points == 1 else "s"), file=sys.stderr)
    for path in written:
        print(path)
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    handler = {"plot": run_plot, "compare": run_compare, "report": run_report,
               "history": run_history}[args.command]
    try:
        return handler(args)
    except LoadError as e:
        print("%s: error: %s" % (PROG, e), file=sys.stderr)
        return exits.UNUSABLE
    except BrokenPipeError:
        return 0
    except OSError as e:  # writing plots or the report
        where = " %s" % e.filename if getattr(e, "filename", None) else ""
        print("%s: error: cannot write%s: %s" % (PROG, where, e.strerror or e), file=sys.stderr)
        return exits.UNUSABLE


if __name__ == "__main__":
    sys.exit(main())
