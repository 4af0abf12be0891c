"""Shared paths and checks for the script tests; puts scripts/ on sys.path for cloakpy."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCRIPTS = os.path.join(ROOT, "scripts")
FIXTURES = os.path.join(HERE, "fixtures")
PYTHON = "/usr/bin/python3"

if SCRIPTS not in sys.path:
    sys.path.insert(0, SCRIPTS)
os.environ.setdefault("MPLBACKEND", "Agg")


def fixture(name):
    return os.path.join(FIXTURES, name)


def run_cli(*args):
    """Run `python -m cloakpy.cli ARGS` as a user would; return the CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=SCRIPTS, MPLBACKEND="Agg")
    return subprocess.run([PYTHON, "-m", "cloakpy.cli"] + [str(a) for a in args],
                          capture_output=True, text=True, env=env, timeout=120)


def image_content(path):
    """(fraction of pixels that are not white background, standard deviation) of a PNG."""
    import matplotlib.image
    import numpy as np
    img = matplotlib.image.imread(path)
    rgb = img[..., :3]
    not_background = np.any(np.abs(rgb - 1.0) > 0.02, axis=-1)
    return float(not_background.mean()), float(rgb.std())


REFERENCE = os.path.join(ROOT, "results", "vm-11b449eb", "reference-20261124T131113Z-8d19b66.json")
_default_run = []


def default_run_file():
    """A whole default run with today's names (make_fixtures.default_run), written once per
    process to a temporary file: 2.5 MB that the generator makes in a second need not be committed."""
    if not _default_run:
        import json
        import tempfile
        import make_fixtures
        fd, path = tempfile.mkstemp(prefix="cloakbench-default-run-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(make_fixtures.default_run(), f)
        import atexit
        atexit.register(os.remove, path)
        _default_run.append(path)
    return _default_run[0]


def png_size(path):
    """(width, height) in pixels of a PNG, from its header."""
    import struct
    with open(path, "rb") as f:
        head = f.read(24)
    return struct.unpack(">II", head[16:24])


def default_run_report(every=16):
    """report.write_report of the whole default run (make_fixtures.default_run, as run.json) with
    --every `every`, in a fresh directory of the caller's: returns (directory, the paths
    write_report returned, the plot.Written records of the figures it drew).

    Drawing it takes about 20 s of CPU (matplotlib, every figure as PNG and SVG), and test_report,
    test_plot and test_browser each need the same one. Under ctest, CLOAK_TEST_RENDER_CACHE (set by
    tests/scripts/CMakeLists.txt, in the build directory) holds one drawing per state of
    scripts/cloakpy, the fixture generator and matplotlib, made by whichever module asks first (the
    others wait on a lock) and copied for each caller, who may change its copy. Without it (a module
    run by hand) it is drawn each time."""
    import dataclasses
    import fcntl
    import hashlib
    import json
    import shutil
    import tempfile
    import matplotlib
    from cloakpy import load, plot, report

    def draw(out):
        run = os.path.join(out, "run.json")
        with open(run, "w") as f:
            json.dump(_make_fixtures().default_run(), f)
        figures = []
        drawing = plot.write_figures

        def recorded(*args, **kwargs):  # write_report draws through plot.write_figures
            figures.extend(drawing(*args, **kwargs))
            return figures

        plot.write_figures = recorded
        try:
            written = report.write_report(load.load_result(run), out, every=every)
        finally:
            plot.write_figures = drawing
        if not figures:
            raise AssertionError("write_report drew no figures through plot.write_figures")
        os.remove(run)
        return written, figures

    mine = tempfile.mkdtemp(prefix="cloakbench-default-report-")
    cache = os.environ.get("CLOAK_TEST_RENDER_CACHE")
    if not cache:
        written, figures = draw(mine)
        return mine, written, figures
    key = hashlib.sha256(("%s %s\n" % (every, matplotlib.__version__)).encode())
    sources = sorted(os.path.join(SCRIPTS, "cloakpy", n) for n in os.listdir(os.path.join(SCRIPTS, "cloakpy"))
                     if n.endswith(".py"))
    for path in sources + [os.path.join(HERE, "make_fixtures.py"), os.path.abspath(__file__)]:
        with open(path, "rb") as f:
            key.update(path.encode() + b"\0" + f.read() + b"\0")
    os.makedirs(cache, exist_ok=True)
    entry = os.path.join(cache, "default-run-report-" + key.hexdigest()[:16])
    with open(entry + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isfile(os.path.join(entry, "drawn.json")):
            shutil.rmtree(entry, ignore_errors=True)
            drawing_dir = entry + ".partial"
            shutil.rmtree(drawing_dir, ignore_errors=True)
            os.makedirs(drawing_dir)
            written, figures = draw(drawing_dir)
            rel = lambda p: os.path.relpath(p, drawing_dir)  # noqa: E731
            with open(os.path.join(drawing_dir, "drawn.json"), "w") as f:
                json.dump({"written": [rel(p) for p in written],
                           "figures": [dict(dataclasses.asdict(w), png=rel(w.png), svg=rel(w.svg))
                                       for w in figures]}, f)
            os.rename(drawing_dir, entry)
    shutil.copytree(entry, mine, dirs_exist_ok=True)
    with open(os.path.join(mine, "drawn.json")) as f:
        drawn = json.load(f)
    os.remove(os.path.join(mine, "drawn.json"))
    written = [os.path.join(mine, p) for p in drawn["written"]]
    figures = [plot.Written(**dict(w, png=os.path.join(mine, w["png"]), svg=os.path.join(mine, w["svg"])))
               for w in drawn["figures"]]
    return mine, written, figures


def _make_fixtures():
    import make_fixtures
    return make_fixtures
