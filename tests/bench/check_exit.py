"""Runs a command and checks its exit status and what it said on stderr (for usage errors a bench
program must answer before anything runs).

usage: check_exit.py STATUS REGEX PROGRAM ARG..."""

import re
import subprocess
import sys


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    status, regex, command = int(argv[0]), argv[1], argv[2:]
    p = subprocess.run(command, capture_output=True, text=True, timeout=60)
    found = []
    if p.returncode != status:
        found.append("exit status %d, expected %d" % (p.returncode, status))
    if not re.search(regex, p.stderr):
        found.append("stderr does not match %r" % regex)
    for line in found:
        print("FAIL: " + line)
    if found:
        print("stderr was:\n" + p.stderr)
        return 1
    print("ok: exit %d: %s" % (p.returncode, p.stderr.strip().splitlines()[0] if p.stderr else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
