"""One gate from start to verdict: rounds of interleaved launches of the two sides, looks at
planned round counts (sequential.py decides), until every gated cell is decided or the budget or
the looks run out; and the same rule over two sets of result files."""

import dataclasses
import math
import os
import random
import tempfile
import time
from typing import Dict, List, Optional

from .builds import prepare_sides
from .cells import HEADLINE_CELLS, Selection, select_cells
from .common import (DEFAULT_BUDGET, DEFAULT_MAX_LOOKS, DEFAULT_MIN_TIME, DEFAULT_REPETITIONS,
                     FIRST_LOOK_EXTRA_ROUNDS, FIRST_LOOK_MIN_ROUNDS, HARD_BUDGET_FACTOR, INJECT,
                     INJECT_PATH, KERBEROS_LAUNCH_SECONDS, LAUNCH_RETRIES, RERUN_BUDGET_FACTOR,
                     GateAborted, Progress, Unusable, clock, note)
from .launcher import Launcher, Side
from .sequential import (CellRecord, first_decidable_rounds, plan_looks, projected_samples,
                         side_medians, take_look, verdict_counts)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GateConfig:
    """How a gate measures and decides: built by field name, defaults as the command line's."""
    min_effect: float = 0.05
    alpha: float = 0.05
    budget: float = DEFAULT_BUDGET     # seconds of measuring
    max_looks: int = DEFAULT_MAX_LOOKS  # the looks alpha is split over (planned, not taken)
    first_look: Optional[int] = None   # rounds before the first look (None: planned)
    fail_fast: bool = False
    repetitions: int = DEFAULT_REPETITIONS
    min_time: float = DEFAULT_MIN_TIME
    cpu_client: int = 0
    cpu_other: int = 1

    @classmethod
    def of(cls, given):
        """A GateConfig as is, or one made of the parsed command line's fields of the same name."""
        if isinstance(given, cls):
            return given
        return cls(**{f.name: getattr(given, f.name) for f in dataclasses.fields(cls)})

    @property
    def cpus(self):
        return self.cpu_client, self.cpu_other


@dataclasses.dataclass(kw_only=True)
class GateRun:
    """What one gate did and found; the renderers read it, nothing in it is recomputed."""
    mode: str                     # "revisions" or "files"
    base: Side
    candidate: Side
    selection: Selection
    records: Dict[str, CellRecord]
    config: GateConfig
    looks_planned: List[int]
    looks_taken: int
    rounds: int = 0
    launches: int = 0
    seconds: float = 0.0
    stop_reason: str = ""
    seed: Optional[int] = None
    notes: List[str] = dataclasses.field(default_factory=list)
    machine: str = "unknown"
    base_medians: Dict[str, float] = dataclasses.field(default_factory=dict)
    candidate_medians: Dict[str, float] = dataclasses.field(default_factory=dict)
    rerun: Optional[str] = None        # inconclusive: the command that reruns with a larger budget
    full_round_seconds: float = 0.0    # what a round of every gated cell took here (estimated)
    projected: Optional[int] = None    # inconclusive: the samples the undecided cells would need
    rerun_budget: Optional[float] = None  # inconclusive: the budget the rerun asks for (seconds)

    @property
    def planned_looks_for_alpha(self):
        return self.config.max_looks


def _first_look(config, k, planned_round):
    """Rounds before the first look: asked for, or the fewest that can decide plus a margin; no
    more than the budget affords (raises Unusable when it affords too few to decide anything)."""
    fewest = first_decidable_rounds(config.alpha, config.max_looks, k)
    first = config.first_look or max(fewest + FIRST_LOOK_EXTRA_ROUNDS, FIRST_LOOK_MIN_ROUNDS)
    affordable = int(config.budget // planned_round)
    if first > affordable:
        if fewest > affordable:
            raise Unusable("the budget of %s allows about %d rounds (%.1f s each, planned), fewer "
                           "than the %d that can decide anything at alpha %g over %d cells and %d "
                           "looks; raise --budget or gate fewer cells (--cells)"
                           % (clock(config.budget), affordable, planned_round, fewest, config.alpha,
                              k, config.max_looks))
        first = affordable
    return first


class _Rounds:
    """The rounds of one gate: each launches both sides once, in random order, for the cells
    still open, and feeds the records."""

    def __init__(self, base, candidate, selection, records, launcher, progress, rng, seconds_per_cell):
        self.sides = [base, candidate]
        self.selection, self.records = selection, records
        self.launcher, self.progress, self.rng = launcher, progress, rng
        self.kerberos = any("/auth:kerberos/" in n for n in selection.gated)
        self.seconds_per_cell_launch = seconds_per_cell
        self.rounds = self.launches = 0
        self.notes, self.seen_warnings = [], set()
        self.failures = {"base": 0, "candidate": 0}
        self.first_context = {}

    def open_cells(self):
        return [n for n in self.selection.gated if self.records[n].open]

    def realm_seconds(self):
        return 2 * KERBEROS_LAUNCH_SECONDS if self.kerberos else 0

    def round_estimate(self, cells=None):
        n = len(self.open_cells()) if cells is None else cells
        return 2 * self.seconds_per_cell_launch * n + self.realm_seconds()

    def run_one(self, target, look, budget):
        open_cells = self.open_cells()
        left_to_look = (target - self.rounds) * self.round_estimate()
        order = list(self.sides)
        self.rng.shuffle(order)
        round_seconds = 0.0
        said = []
        for side in order:
            native = {n: self.selection.native[side.name][n] for n in open_cells}
            timeout = 60 + 10 * self.launcher.estimate(len(native), self.kerberos)
            result = self.launcher.launch(side, native, timeout)
            self.launches += 1
            round_seconds += result.seconds
            _absorb(result, side, self.records, open_cells, self.notes, self.seen_warnings,
                    self.failures)
            self.first_context = self.first_context or result.context
            said.append("%s %.1f s%s" % (side.name, result.seconds, "" if result.status == 0
                                         else " (exit status %d)" % result.status))
        self.progress.say("round %d of %d before look %d: %d cells; %s"
                          % (self.rounds + 1, target, look, len(open_cells), ", ".join(said)),
                          left=min(max(0.0, left_to_look - round_seconds),
                                   max(0.0, budget - self.progress.elapsed())))
        if round_seconds > 0 and open_cells:
            self.seconds_per_cell_launch = 0.5 * self.seconds_per_cell_launch + \
                0.5 * round_seconds / 2 / len(open_cells)
        self.rounds += 1


def run_gate(base, candidate, selection, config, launcher, progress, rng):
    """Rounds of interleaved launches with looks at planned round counts, until every gated cell
    is decided, the planned looks are used, or the next look would not fit the budget. `config`
    is a GateConfig (or the parsed command line)."""
    from .. import stats
    config = GateConfig.of(config)
    k = len(selection.gated)
    records = {n: CellRecord(n) for n in selection.gated}
    looks = config.max_looks
    alpha_look = config.alpha / looks
    kerberos = any("/auth:kerberos/" in n for n in selection.gated)
    planned_round = 2 * launcher.estimate(k, kerberos)
    first = _first_look(config, k, planned_round)
    schedule = [first]  # the later looks are placed once the first segment's speed is known
    rounds = _Rounds(base, candidate, selection, records, launcher, progress, rng,
                     planned_round / 2 / max(k, 1))
    looks_taken = 0
    stop_reason = ""
    while True:
        target = schedule[looks_taken]
        # A look is started only when its rounds are expected to fit the budget; a segment
        # already under way is stopped only far beyond it.
        if looks_taken > 0 and progress.elapsed() + (target - rounds.rounds) * \
                rounds.round_estimate() > config.budget:
            stop_reason = "budget"
            break
        while rounds.rounds < target:
            if progress.elapsed() > config.budget * HARD_BUDGET_FACTOR:
                stop_reason = "budget"
                break
            rounds.run_one(target, looks_taken + 1, config.budget)
            if not rounds.open_cells():
                break
        if stop_reason:
            break
        if rounds.rounds < target and not rounds.open_cells():
            stop_reason = "failed"
            break  # every cell failed before the look
        looks_taken += 1
        take_look(records, config.min_effect, alpha_look, looks_taken, rounds.rounds)
        progress.say("look %d of at most %d at round %d: %s (alpha %.4g per look)"
                     % (looks_taken, looks, rounds.rounds, verdict_counts(records), alpha_look))
        if not any(r.open for r in records.values()):
            stop_reason = "decided"
            break
        if config.fail_fast and any(r.decision and r.decision.verdict == stats.REGRESSED
                                    for r in records.values()):
            stop_reason = "regressed"  # a regressed call is final: the verdict cannot change
            break
        if looks_taken == 1:
            # The later looks, now that the speed of a round is known: geometric up to what the
            # budget allows with every cell still open.
            per_round = rounds.round_estimate(k)
            last = rounds.rounds + int(max(0.0, config.budget - progress.elapsed()) // per_round)
            schedule = plan_looks(first, max(last, first), looks)
            if len(schedule) == 1:
                stop_reason = "looks" if looks == 1 else "budget"
                break
        if looks_taken >= len(schedule):
            stop_reason = "looks"
            break
    return GateRun(mode="revisions", base=base, candidate=candidate, selection=selection,
                   records=records, config=config, looks_planned=schedule,
                   looks_taken=looks_taken, rounds=rounds.rounds, launches=rounds.launches,
                   seconds=progress.elapsed(), stop_reason=stop_reason, notes=rounds.notes,
                   machine=machine_of(rounds.first_context),
                   full_round_seconds=rounds.round_estimate(k))


PROJECTION_MARGIN = 1.2  # the rerun's later looks split alpha over the cells still open then


def settle_inconclusive(run):
    """An inconclusive gate's projection: the samples its undecided cells would need
    (sequential.projected_samples, at the noise this gate measured) and, for a gate of
    revisions, the budget its rerun asks for: those rounds at the pace of a round of every gated
    cell, a fifth more, in whole minutes; never less than RERUN_BUDGET_FACTOR × the budget."""
    run.projected = projected_samples(run.records, run.config.min_effect)
    if run.mode != "revisions":
        return
    floor = RERUN_BUDGET_FACTOR * run.config.budget
    if not run.projected or run.full_round_seconds <= 0:
        run.rerun_budget = floor
        return
    need = PROJECTION_MARGIN * run.projected * run.full_round_seconds
    run.rerun_budget = max(floor, 60.0 * math.ceil(need / 60.0))


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
        _note_once("the %s was launched with %s=%s but its bench recorded cloak_injected_ns=%s: "
                   "it may not implement the slowdown" % (side.name, INJECT, want, got),
                   notes, seen_warnings)
    want_path = side.env.get(INJECT_PATH)
    got_path = result.context.get("cloak_injected_path")
    if want_path and result.context and str(got_path) != want_path:
        _note_once("the %s was launched with %s=%s but its bench recorded cloak_injected_path=%s: "
                   "it may not implement that path" % (side.name, INJECT_PATH, want_path, got_path),
                   notes, seen_warnings)
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


def _note_once(msg, notes, seen):
    if msg not in seen:
        seen.add(msg)
        notes.append(msg)


def machine_of(context):
    from .. import load
    if not context:
        return "unknown"
    return load.Result("", context, {}).machine_summary()


def finish(run):
    """The medians of each side's samples, and the candidate's slowdown said first."""
    for name, r in run.records.items():
        b, c = side_medians(r)
        if b is not None:
            run.base_medians[name] = b
        if c is not None:
            run.candidate_medians[name] = c
    if run.candidate.env:
        run.notes.insert(0, "the candidate ran with %s: its times are not the code's own"
                         % " ".join("%s=%s" % kv for kv in sorted(run.candidate.env.items())))


def new_launcher(work_dir, config):
    """The launcher of this machine's benches (privileges as `run` takes them)."""
    from ..run_suite import privilege_prefix
    return Launcher(work_dir, privilege_prefix(), repetitions=config.repetitions,
                    min_time=config.min_time, cpu_client=config.cpu_client,
                    cpu_other=config.cpu_other, clients=os.environ.get("CLOAK_CLIENTS"))


def new_seed(seed):
    return seed if seed is not None else int(time.time() * 1000) % (2 ** 31)


def gate_revisions(args):
    """A gate of the revisions the command line names: both built (or reused), then run_gate."""
    config = GateConfig.of(args)
    base, candidate = prepare_sides(args.repo, args.revisions, say=note, bench_for=args.bench_for,
                                    build_root=args.build_root, jobs=args.jobs,
                                    candidate_env=args.candidate_env)
    seed = new_seed(args.seed)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="cloakbench-gate.") as work:
        launcher = new_launcher(work, config)
        selection = select_cells(launcher.list_cells(base), launcher.list_cells(candidate),
                                 args.cells or HEADLINE_CELLS)
        if not selection.gated:
            raise Unusable("no cell %s is in both builds (base: %d, candidate: %d "
                           "matching)" % (selection.described(""), len(selection.only_base),
                                          len(selection.only_candidate)))
        note("gating %d cells (%s), min effect ±%g%%, alpha %g, budget %s, seed %d"
             % (len(selection.gated), "headline set" if not args.cells else args.cells,
                100 * config.min_effect, config.alpha, clock(config.budget), seed))
        progress = Progress()
        run = run_gate(base, candidate, selection, config, launcher, progress, rng)
    run.seed = seed
    finish(run)
    return run


def gate_files(args, base_files, candidate_files):
    """The gate's rule over result files: each file one sample per cell, one look, unpaired."""
    from .. import load
    from ..stats import median
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
        raise Unusable("no cell %s is in the files of both sides" % selection.described(""))
    records = {n: CellRecord(n) for n in selection.gated}
    notes = []
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
    # No launches: no budget, repetitions or CPUs of the gate's own, and one look.
    config = GateConfig(min_effect=args.min_effect, alpha=args.alpha, budget=0.0, max_looks=1,
                        repetitions=0, min_time=0.0, cpu_client=0, cpu_other=0)
    run = GateRun(mode="files", base=Side("base", label["base"], "files", {}),
                  candidate=Side("candidate", label["candidate"], "files", {}),
                  selection=selection, records=records, config=config, looks_planned=[0],
                  looks_taken=1, stop_reason="files", notes=notes,
                  machine=sides["base"][0].machine_summary())
    finish(run)
    return run
