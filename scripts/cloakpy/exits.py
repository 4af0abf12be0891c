"""The exit status of `gate` and `compare`: one convention for both (docs/reading.md, "Exit
status"), so a pipeline tells a regression from a verdict that needs more data by the status alone.

Only the standard library: the gate's --help must print before numpy is importable."""

PASS = 0          # every judged cell unchanged or improved
FAIL = 1          # a cell regressed or failed (or, with --fail-on-inconclusive, inconclusive)
UNUSABLE = 2      # unusable input or bad usage; one line on stderr
INCONCLUSIVE = 3  # nothing regressed or failed, but some cells need more data

FAIL_ON_INCONCLUSIVE_HELP = ("exit 1 instead of 3 when nothing regressed or failed but cells "
                             "stayed inconclusive (strict use: only a pass exits 0)")

# The words both --help epilogs, the README, `scripts/cloakbench help` and docs/reading.md use.
CONVENTION = ("Exit status (the same for gate and compare): 0 pass, every cell unchanged or "
              "improved; 1 a cell regressed or failed; 2 unusable input (one line on stderr) or "
              "bad usage; 3 inconclusive, nothing regressed or failed but some cells need more "
              "data. --fail-on-inconclusive turns 3 into 1.")


def status(regressed_or_failed, inconclusive, fail_on_inconclusive=False):
    """The exit status of a verdict: 1 for a regressed or failed cell, else 3 (1 when strict) for
    an inconclusive one, else 0."""
    if regressed_or_failed:
        return FAIL
    if inconclusive:
        return FAIL if fail_on_inconclusive else INCONCLUSIVE
    return PASS
