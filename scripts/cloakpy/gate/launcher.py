"""The gate's launcher: it owns the benches it starts. Every child is spawned here and ended
inside `with popen_killer(child):` (on the model of pyperf's manager), so no exception, timeout
or interrupt leaves a bench running; a launch's output is read back as one sample per cell."""

import contextlib
import dataclasses
import os
import signal
import subprocess
import time
from typing import Dict, List, Optional

from .common import INJECT, INJECT_PATH, KERBEROS_LAUNCH_SECONDS, PROG, Unusable

STOP_GRACE_SECONDS = 20  # after SIGTERM, how long a bench has to write its output before SIGKILL


@dataclasses.dataclass
class Side:
    name: str          # "base" or "candidate"
    label: str         # what it is, printed
    program: str
    env: Dict[str, str]
    reused: bool = False
    revision: Optional[object] = None  # builds.Revision
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


@contextlib.contextmanager
def popen_killer(proc):
    """The one cleanup path of a child: whatever ends the block (a return, an exception, ^C), the
    child is killed if it still runs, its pipes closed and its status reaped."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            try:
                proc.kill()
            except OSError:
                pass  # it ended meanwhile
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe:
                pipe.close()
        proc.wait()


def communicate_within(proc, timeout, grace=STOP_GRACE_SECONDS):
    """(stdout, stderr, stopped) of a child given `timeout` seconds; one that overruns gets
    SIGTERM (a bench then writes what it has), and SIGKILL `grace` seconds later."""
    try:
        out, err = proc.communicate(timeout=timeout)
        return out, err, False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return out, err, True


class Launcher:
    """Runs one side's bench for some cells and reads what it wrote."""

    def __init__(self, work_dir, prefix, *, repetitions, min_time, cpu_client, cpu_other,
                 clients=None):
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

    def spawn(self, side, args, **popen):
        """The side's bench started with `args` (after the privilege prefix and the program)."""
        try:
            return subprocess.Popen(self.prefix + [side.program] + args, text=True,
                                    env=self.environment(side), **popen)
        except OSError as e:
            raise Unusable("cannot run the %s's bench %s: %s" % (side.name, side.program, e)) from None

    def list_cells(self, side):
        child = self.spawn(side, ["--benchmark_list_tests"] + self.cpu,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with popen_killer(child):
            try:
                out, err = child.communicate(timeout=120)
            except subprocess.SubprocessError as e:
                raise Unusable("cannot run the %s's bench %s: %s"
                               % (side.name, side.program, e)) from None
        if child.returncode != 0:
            last = (err.strip().splitlines() or ["status %d" % child.returncode])[0]
            raise Unusable("the %s's bench %s cannot list its cells: %s"
                           % (side.name, side.program, last))
        return [l.strip() for l in out.splitlines() if l.strip()]

    def estimate(self, cells, kerberos):
        from ..run_suite import estimate_seconds
        return estimate_seconds(cells, self.repetitions, self.min_time) + \
            (KERBEROS_LAUNCH_SECONDS if kerberos else 0.0)

    def launch(self, side, native_names, timeout):
        from .. import load, merge
        from ..run_suite import launch_filter
        from ..stats import median
        self.count += 1
        out_path = os.path.join(self.work_dir, "launch-%d.json" % self.count)
        args = [
            "--benchmark_filter=" + launch_filter(sorted(native_names.values())),
            "--benchmark_repetitions=%d" % self.repetitions,
            "--benchmark_min_time=%g" % self.min_time,
            "--benchmark_enable_random_interleaving=true",
            "--benchmark_report_aggregates_only=false",
            "--benchmark_out=%s" % out_path, "--benchmark_out_format=json"] + self.cpu
        started = time.monotonic()
        child = self.spawn(side, args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        with popen_killer(child):
            _, err, stopped = communicate_within(child, timeout)
        if stopped:
            err = (err or "") + "\n%s: the launch took more than %.0f s and was stopped" % (PROG, timeout)
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
