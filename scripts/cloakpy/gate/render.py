"""A finished gate as text: the Markdown summary (for a reader and a release checklist) and the
JSON record, both from the same rows; nothing here measures or decides."""

import json
import math
import sys

from .common import RERUN_BUDGET, RERUN_BUDGET_FACTOR, RERUN_TIMES, clock


def _cell_rows(run):
    from .. import fmt, stats
    from ..verdicts import change, confidence, interval
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
                     "base_ns": b, "candidate_ns": c, "rounds": round_samples(r)})
    return rows


def round_samples(record):
    """A cell's samples as measured, per round (revisions) or per file (--files): the base's and
    the candidate's launch medians in ns, null where a launch did not measure it. What the verdict
    was computed from, kept so that a look plan or a test can be tried again on real gates
    (docs/reading.md, the gate's --json)."""
    def ns(values):
        return [round(v, 1) if v else None for v in values]
    return {"base": ns(record.base), "candidate": ns(record.candidate)}


IMPRACTICAL_SECONDS = 4 * 3600  # a rerun budget beyond this is said to be out of reach here


def projection_words(run):
    """What the undecided cells of an inconclusive gate would need, at the noise it measured."""
    from .sequential import PROJECTION_LIMIT
    unit = "rounds" if run.mode == "revisions" else "result files on each side"
    if not run.projected:
        return "too few samples yet to project how many more would decide it"
    most = max((r.last.n_base for r in run.records.values() if r.open and r.last), default=0)
    at_cap = most and run.projected >= PROJECTION_LIMIT * most
    return "at the noise it measured, its undecided cells need %s %d %s (it had %d)" % (
        "more than" if at_cap else "about", run.projected, unit, most)


def rerun_budget_words(run):
    """The rerun's budget in words: at least RERUN_BUDGET_FACTOR times, more when projected."""
    floor = RERUN_BUDGET_FACTOR * run.config.budget
    budget = run.rerun_budget or floor
    words = "a budget of %s" % ("%d min" % round(budget / 60) if budget < 7200 else
                                "%.1f h" % (budget / 3600))
    if run.rerun_budget and run.rerun_budget > floor:
        words += " (those rounds at this gate's pace, a fifth more)"
    else:
        words += " (%s)" % RERUN_BUDGET
    if run.rerun_budget and run.rerun_budget > IMPRACTICAL_SECONDS:
        words += ("; that is out of reach here: gate on a quieter machine, fewer cells (--cells) "
                  "or a larger --min-effect")
    return words


def headline(run, verdict):
    from .. import fmt, stats
    from ..verdicts import deciding_cells
    rows = _cell_rows(run)
    k = len(rows)
    e = fmt.percent(run.config.min_effect, signed=False)

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
        why = {"budget": "within the %s budget" % clock(run.config.budget),
               "looks": "after all %d planned looks" % len(run.looks_planned)
               if len(run.looks_planned) > 1 else "at its only planned look"}.get(
                   run.stop_reason, "with the samples given")
        more = ("give more result files on each side (%s)" % projection_words(run)
                if run.mode == "files" else
                "rerun with a larger --budget, on a quieter machine if possible (%s; the command "
                "below asks for %s, reusing both builds)" % (projection_words(run),
                                                            rerun_budget_words(run)))
        return ("**INCONCLUSIVE** — nothing regressed, but %d of %d gated cells could not be "
                "shown to be within ±%s %s: %s. Not a pass and not a regression: more data is "
                "needed; %s." % (len(inc), k, e, why, deciding_cells(inc), more))
    imp = pick(stats.IMPROVED)
    return "**PASS** — all %d gated cells are unchanged within ±%s%s." % (
        k, e, (" or faster (%s)" % deciding_cells(imp)) if imp else "")


def _sample_words(run):
    if run.mode == "files":
        return "one result file per sample: the median of the cell's repetitions in that file"
    return ("one launch of a side's cloak-matrix: the median of its %d repetitions of at least "
            "%g s; each round launches both sides once, in random order, pinned alike; the "
            "change is read from each round's candidate ÷ base"
            % (run.config.repetitions, run.config.min_time))


def render_markdown(run, verdict):
    from .. import fmt
    from ..verdicts import rule_lines
    cfg = run.config
    out = ["# cloakbench gate", "", headline(run, verdict), ""]
    if run.rerun:
        out += ["Rerun with %s%s, reusing both builds:" % (
                    rerun_budget_words(run), " and %s the rounds of its only look" % RERUN_TIMES
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
                     % (run.rounds, run.launches, clock(run.seconds), clock(cfg.budget),
                        run.looks_taken, run.planned_looks_for_alpha,
                        ", ".join(map(str, run.looks_planned)), cfg.cpu_client, cfg.cpu_other,
                        run.seed))
    facts.append("Machine: %s." % run.machine)
    facts.append("Gated: %d cells %s." % (len(run.selection.gated), run.selection.described()))
    out += ["- " + f for f in facts] + [""]
    out += ["## How this was decided", ""]
    out += ["- " + l for l in rule_lines(
        cfg.min_effect, cfg.alpha, len(run.selection.gated), run.planned_looks_for_alpha,
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
    cfg = run.config
    rows = [{k: clean(v) for k, v in r.items()} for r in _cell_rows(run)]
    return {
        "mode": run.mode, "verdict": verdict.lower(), "exit_status": code,
        "headline": headline(run, verdict),
        "base": _side_json(run.base), "candidate": _side_json(run.candidate),
        "min_effect": cfg.min_effect, "alpha": cfg.alpha,
        "looks_planned": run.looks_planned, "looks_taken": run.looks_taken,
        "alpha_per_look": cfg.alpha / run.planned_looks_for_alpha,
        "rounds": run.rounds, "launches": run.launches, "seconds": round(run.seconds, 1),
        "budget_seconds": cfg.budget, "stop_reason": run.stop_reason, "seed": run.seed,
        "repetitions": cfg.repetitions, "min_time": cfg.min_time,
        "cpus": {"client": cfg.cpu_client, "other": cfg.cpu_other}, "machine": run.machine,
        "cells_pattern": run.selection.pattern,
        "cells": rows,
        "not_gated": {"only_base": run.selection.only_base,
                      "only_candidate": run.selection.only_candidate},
        "notes": run.notes,
        "rerun": run.rerun,
        # inconclusive: the samples (rounds; files per side) the undecided cells would need at
        # the noise measured, and the budget the rerun asks for (seconds)
        "projected_samples": run.projected, "rerun_budget_seconds": run.rerun_budget,
    }


def _side_json(side):
    out = {"label": side.label, "program": side.program, "env": side.env, "build_reused": side.reused}
    if side.revision is not None:
        out.update({"revision": side.revision.spec, "commit": side.revision.commit,
                    "tree": side.revision.tree})
    return out


def emit(run, verdict, code, json_out=False, markdown_path=None):
    """The verdict on stdout (Markdown, or JSON with json_out), and the Markdown also to
    markdown_path when given."""
    md = render_markdown(run, verdict)
    if markdown_path:
        from ..merge import write_atomic
        write_atomic(markdown_path, md + "\n")
    if json_out:
        json.dump(to_json(run, verdict, code), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(md + "\n")
    sys.stdout.flush()
