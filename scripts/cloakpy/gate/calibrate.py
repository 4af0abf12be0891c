"""`gate --calibrate`: the gate measured on this machine. Repeated A/A gates of one build and
gates with the candidate slowed on purpose (CLOAK_INJECT_NS at CLOAK_INJECT_PATH), alternating,
logged a gate per line so a calibration continues where it stopped; and the false-alarm and
detection rates they give, against the targets."""

import json
import os
import random
import tempfile
import time

from .builds import prepare_sides, working_tree_revision
from .cells import HEADLINE_CELLS, select_cells
from .common import (CALIBRATION_SLOWDOWN, CALIBRATION_TARGET_GATES, INJECT, INJECT_PATH,
                     Progress, Unusable, clock, note)
from .launcher import Side
from .render import round_samples
from .sequential import final_verdict
from .session import GateConfig, new_launcher, new_seed, run_gate


def calibrate(args):
    """Repeated A/A gates and A/A gates with the candidate slowed by CLOAK_INJECT_NS, alternating,
    on one build; prints how often identical code failed and how often the slowdown was caught."""
    from .. import stats
    spec = args.revisions[0] if args.revisions else None
    if len(args.revisions) > 1:
        raise Unusable("--calibrate takes one revision")
    repo = os.path.abspath(args.repo)
    spec = spec or working_tree_revision(repo).commit
    base, _ = prepare_sides(repo, [spec, spec], say=note, bench_for=args.bench_for,
                            build_root=args.build_root, jobs=args.jobs)
    config = GateConfig.of(args)
    started = time.monotonic()
    seed = new_seed(args.seed)
    rng = random.Random(seed)
    results = {"aa": [], "slow": []}
    with tempfile.TemporaryDirectory(prefix="cloakbench-calibrate.") as work:
        launcher = new_launcher(work, config)
        listed = launcher.list_cells(base)
        selection = select_cells(listed, listed, args.cells or HEADLINE_CELLS)
        if not selection.gated:
            raise Unusable("no cell %s in %s" % (selection.described(""), base.program))
        settings = calibration_settings(config, selection)
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
            run = run_gate(base, cand, selection, config, launcher, progress, gate_rng)
            verdict, _ = final_verdict(run.records)
            regressed = [n for n, r in run.records.items()
                         if r.decision and r.decision.verdict == stats.REGRESSED]
            gate = {"kind": kind, "verdict": verdict, "seconds": run.seconds, "rounds": run.rounds,
                    "regressed": regressed, "stop_reason": run.stop_reason,
                    "verdicts": {n: r.verdict for n, r in run.records.items()},
                    # The candidate/base ratio each cell measured (at its verdict, or at the
                    # last look): what the injected share became on the clock.
                    "ratios": {n: measured_ratio(r) for n, r in run.records.items()},
                    # The base's median time per cell in this gate: the injected ns over it is
                    # the share the slowdown had on the day.
                    "base_ns": {n: base_median(r) for n, r in run.records.items()},
                    # Every round's samples per cell (render.round_samples): the data a different
                    # look plan or test can be tried on afterwards.
                    "samples": {n: round_samples(r) for n, r in run.records.items()},
                    "inject_ns": inject, "inject_path": path, "shares": shares,
                    "settings": settings,
                    "build": base.label, "machine": run.machine,
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            results[kind].append(gate)
            append_calibration_log(args.calibration_log, gate)
            spent = time.monotonic() - started
            note("gate %d of %d (%s): %s in %s, %d rounds; ~%s left"
                 % (i + 1, len(kinds), "A/A" if kind == "aa" else "slowed", verdict,
                    clock(run.seconds), run.rounds,
                    clock(spent / (i + 1) * (len(kinds) - i - 1))))
    return summarize_calibration(results, inject, shares, args, time.monotonic() - started, seed,
                                 base)


def measured_ratio(record):
    """A cell's candidate/base ratio at its verdict, else at the last look (None: not measured)."""
    d = record.decision or record.last
    return None if record.failed or d is None or d.ratio is None else round(d.ratio, 5)


def base_median(record):
    """The median of the base's per-launch medians of a cell, in ns (None: never measured)."""
    from .. import stats
    values = [x for x in record.base if x]
    return round(stats.median(values), 1) if values else None


def _median_of(gates, key, name, value=lambda x: x):
    """The median over the gates that logged `key` for cell `name` of value(x), and how many."""
    from .. import stats
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


def calibration_settings(config, selection):
    """What makes two calibration gates comparable: the gate's rule and the cells it gates."""
    return {"cells": selection.pattern or "headline", "gated": sorted(selection.gated),
            "min_effect": config.min_effect, "alpha": config.alpha, "max_looks": config.max_looks,
            "first_look": config.first_look, "repetitions": config.repetitions,
            "min_time": config.min_time, "budget": config.budget, "fail_fast": config.fail_fast,
            "cpus": [config.cpu_client, config.cpu_other]}


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
    from .. import stats
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
                 clock(_median_seconds(aa)), clock(max([g["seconds"] for g in aa], default=0)),
                 clock(_median_seconds(slow)), clock(max([g["seconds"] for g in slow], default=0)),
                 clock(args.budget), ", --fail-fast" if args.fail_fast else "", clock(seconds)),
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
    from .. import fmt
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


