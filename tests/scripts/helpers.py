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
