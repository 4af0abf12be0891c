"""The release gate (`cloakbench gate`), by concern: cli (the command line), builds (revisions,
worktrees, builds, their lock), launcher (the benches it starts, always reaped), cells (which
cells are gated), sequential (the sequential test over the samples), session (one gate's rounds
and looks), render (Markdown and JSON), calibrate (the gate measured on this machine).

Only the standard library is imported here and in those modules' heads, so --help works before
numpy is importable; the names below are what callers and tests use."""

from .builds import Revision, ensure_build, prepare_sides, resolve_revision, working_tree_revision
from .calibrate import calibrate, calibration_settings, summarize_calibration
from .cells import HEADLINE_CELLS, Selection, normalized_name, select_cells
from .cli import _duration, build_parser, main, rerun_command, split_files
from .common import (CALIBRATION_SLOWDOWN, DEFAULT_BUDGET, DEFAULT_MAX_LOOKS, DEFAULT_MIN_TIME,
                     DEFAULT_REPETITIONS, FIRST_LOOK_EXTRA_ROUNDS, FIRST_LOOK_MIN_ROUNDS,
                     HARD_BUDGET_FACTOR, INCONCLUSIVE, INJECT, INJECT_PATH, INJECT_PATHS,
                     LAUNCH_RETRIES, PASS, FAIL, PROG, ROOT, UNUSABLE, GateAborted, Progress,
                     Unusable)
from .launcher import LaunchResult, Launcher, Side, popen_killer
from .render import headline, render_markdown, to_json
from .sequential import CellRecord, final_verdict, first_decidable_rounds, plan_looks, take_look
from .session import (GateConfig, GateRun, finish, gate_files, gate_revisions, run_gate,
                      settle_inconclusive)

__all__ = [
    "_duration", "build_parser", "calibrate", "calibration_settings", "CALIBRATION_SLOWDOWN",
    "CellRecord", "DEFAULT_BUDGET", "DEFAULT_MAX_LOOKS", "DEFAULT_MIN_TIME", "DEFAULT_REPETITIONS",
    "ensure_build", "FAIL", "final_verdict", "finish", "first_decidable_rounds",
    "FIRST_LOOK_EXTRA_ROUNDS", "FIRST_LOOK_MIN_ROUNDS", "gate_files", "gate_revisions",
    "GateAborted", "GateConfig", "GateRun", "HARD_BUDGET_FACTOR", "headline", "HEADLINE_CELLS",
    "INCONCLUSIVE", "INJECT", "INJECT_PATH", "INJECT_PATHS", "LAUNCH_RETRIES", "Launcher",
    "LaunchResult", "main", "normalized_name", "PASS", "plan_looks", "popen_killer",
    "prepare_sides", "PROG", "Progress", "render_markdown", "rerun_command", "resolve_revision",
    "Revision", "ROOT", "run_gate", "select_cells", "Selection", "settle_inconclusive", "Side",
    "split_files",
    "summarize_calibration", "take_look", "to_json", "UNUSABLE", "Unusable",
    "working_tree_revision",
]
