"""What every part of the gate shares: its name, its defaults, its two errors, and how it speaks
on stderr. Only the standard library, so --help works before numpy is importable."""

import os
import sys
import time

from .. import exits

PROG = "cloakbench gate"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

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


class GateAborted(Exception):
    """The gate stopped before a verdict: a side's bench keeps failing (exit 1)."""


def clock(seconds):
    """Seconds as m:ss."""
    seconds = max(0, int(round(seconds)))
    return "%d:%02d" % (seconds // 60, seconds % 60)


class Progress:
    """Elapsed time and the lines that say where the gate is, on stderr."""

    def __init__(self, quiet=False):
        self.start = time.monotonic()
        self.quiet = quiet

    def elapsed(self):
        return time.monotonic() - self.start

    def say(self, text, left=None):
        if self.quiet:
            return
        eta = "" if left is None else ", ~%s left" % clock(left)
        print("[%s elapsed%s] %s" % (clock(self.elapsed()), eta, text), file=sys.stderr, flush=True)


def note(text):
    print("%s: %s" % (PROG, text), file=sys.stderr, flush=True)
