"""The gate's two sides as programs: revisions resolved in git, each tree checked out in a
worktree of its own and built once under build/gate/<tree>/, behind a file lock so two gates
never build the same tree at once."""

import dataclasses
import fcntl
import os
import re
import shlex
import shutil
import subprocess
import tempfile

from .common import Unusable
from .launcher import Side


def git(repo, *args, env=None, check=True):
    full_env = dict(os.environ, **(env or {}))
    try:
        out = subprocess.run(["git", "-C", repo] + list(args), capture_output=True, text=True,
                             env=full_env, timeout=300)
    except (OSError, subprocess.SubprocessError) as e:
        raise Unusable("cannot run git: %s" % e) from None
    if check and out.returncode != 0:
        raise Unusable("git %s failed: %s" % (" ".join(args), out.stderr.strip().splitlines()[-1:]
                                              or "status %d" % out.returncode))
    return out


@dataclasses.dataclass
class Revision:
    spec: str        # what the user wrote ("HEAD~1"), or "working tree"
    commit: str      # the commit to check out (for the working tree: a commit made of its tree)
    tree: str        # the tree hash: what decides whether a build can be reused
    label: str       # how it is printed: "3c9e2f1", "working tree (3c9e2f1 + changes)"


_GATE_IDENTITY = {"GIT_AUTHOR_NAME": "cloakbench gate", "GIT_AUTHOR_EMAIL": "gate@cloakbench.invalid",
                  "GIT_COMMITTER_NAME": "cloakbench gate",
                  "GIT_COMMITTER_EMAIL": "gate@cloakbench.invalid"}


def resolve_revision(repo, spec):
    """The commit and tree a revision names (raises Unusable for one that does not exist)."""
    if git(repo, "rev-parse", "--git-dir", check=False).returncode != 0:
        raise Unusable("%s is not a git repository" % repo)
    out = git(repo, "rev-parse", "--verify", "--quiet", "%s^{commit}" % spec, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise Unusable("unknown revision '%s' in %s" % (spec, repo))
    commit = out.stdout.strip()
    tree = git(repo, "rev-parse", "%s^{tree}" % commit).stdout.strip()
    return Revision(spec, commit, tree, commit[:10])


def working_tree_revision(repo):
    """The working tree as a revision: its tracked and untracked, not ignored files written as a
    tree through a temporary index (the real index is not touched), and a commit of that tree on
    top of HEAD so a worktree can check it out."""
    head = resolve_revision(repo, "HEAD")
    with tempfile.TemporaryDirectory(prefix="cloakbench-gate-index.") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        git(repo, "read-tree", head.commit, env=env)
        git(repo, "add", "-A", env=env)
        tree = git(repo, "write-tree", env=env).stdout.strip()
    if tree == head.tree:
        return Revision("working tree", head.commit, tree, "working tree (= %s)" % head.commit[:10])
    commit = git(repo, "commit-tree", tree, "-p", head.commit, "-m",
                 "cloakbench gate: the working tree on top of %s" % head.commit[:10],
                 env=_GATE_IDENTITY).stdout.strip()
    return Revision("working tree", commit, tree,
                    "working tree (%s + uncommitted changes)" % head.commit[:10])


class FileLock:
    """An exclusive lock on a file: two gates never build the same tree at once."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _log_hint(log_path):
    """The first compiler or CMake error line of a build log, for the one-line message."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            lines = [l.strip() for l in f]
    except OSError:
        return ""
    for i, line in enumerate(lines):
        if re.search(r"\berror\b", line, re.IGNORECASE) and "Error 1" not in line:
            if line.endswith(":"):  # CMake puts its message on the lines that follow
                following = next((l for l in lines[i + 1:] if l), "")
                line = "%s %s" % (line, following)
            return line[:200]
    return lines[-1][:200] if lines else ""


MATRIX = "cloak-matrix"
MATRIX_BEFORE_HYPHENS = "cloak_matrix"  # pre-hyphen: its name in revisions before 2026-12-03


def matrix_target(src):
    """The bench target a revision's tree builds: cloak-matrix, or in a revision from before the
    programs' names took hyphens, the old name."""
    for name in ("bench/CMakeLists.txt", "CMakeLists.txt"):
        try:
            with open(os.path.join(src, name), encoding="utf-8") as f:
                if MATRIX in f.read():
                    return MATRIX
        except OSError:
            pass
    return MATRIX_BEFORE_HYPHENS


def ensure_build(repo, rev, build_root, jobs, say):
    """The path of rev's cloak-matrix, built in build_root/<tree>/ (a git worktree in src/, the
    release build in build/) unless a finished build of the same tree is there already."""
    where = os.path.join(build_root, rev.tree[:16])
    src, build, log = (os.path.join(where, n) for n in ("src", "build", "build.log"))
    stamp = os.path.join(where, "built")
    os.makedirs(build_root, exist_ok=True)
    with FileLock(where + ".lock"):
        built = [os.path.join(build, "bench", t) for t in (MATRIX, MATRIX_BEFORE_HYPHENS)]
        program = next((p for p in built if os.access(p, os.X_OK)), None)
        if os.path.exists(stamp) and program:
            say("reusing the build of %s (tree %s): %s" % (rev.label, rev.tree[:10], build))
            return program, True
        os.makedirs(where, exist_ok=True)
        if not os.path.isdir(os.path.join(src, ".git")) and not os.path.isfile(os.path.join(src, ".git")):
            if os.path.exists(src):
                shutil.rmtree(src)
            git(repo, "worktree", "prune", check=False)
            git(repo, "worktree", "add", "--detach", src, rev.commit)
        target = matrix_target(src)
        program = os.path.join(build, "bench", target)
        say("building %s (tree %s) in %s (log: %s)" % (rev.label, rev.tree[:10], build, log))
        with open(log, "w", encoding="utf-8") as f:
            # Both revisions built alike whatever their CMake files default to: without the unity
            # build (CLOAK_UNITY_BUILD; CMAKE_UNITY_BUILD for revisions older than the option),
            # which changes what the compiler inlines across a target's files.
            steps = [["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=Release",
                      "-DCLOAK_UNITY_BUILD=OFF", "-DCMAKE_UNITY_BUILD=OFF"],
                     ["nice", "-n", "10", "cmake", "--build", build, "-j", str(jobs),
                      "--target", target]]
            for step in steps:
                f.write("$ %s\n" % " ".join(shlex.quote(a) for a in step))
                f.flush()
                status = subprocess.run(step, stdout=f, stderr=subprocess.STDOUT).returncode
                if status != 0:
                    hint = _log_hint(log)
                    raise Unusable("building %s failed%s; the full log is %s"
                                   % (rev.label, ": " + hint if hint else "", log))
        if not os.access(program, os.X_OK):
            raise Unusable("building %s made no %s; the full log is %s" % (rev.label, program, log))
        with open(stamp, "w", encoding="utf-8") as f:
            f.write("%s %s\n" % (rev.commit, rev.tree))
        return program, False


def build_root_of(repo, build_root=None):
    """Where worktrees and builds are kept: --build-root, or REPO/build/gate."""
    return os.path.abspath(build_root or os.path.join(repo, "build", "gate"))


def prepare_sides(repo, revisions, *, say, bench_for=(), build_root=None, jobs=None,
                  candidate_env=()):
    """(base Side, candidate Side) for BASE [CANDIDATE]: revisions resolved, built or reused.
    `bench_for` is (revision, program) pairs used instead of a build."""
    repo = os.path.abspath(repo)
    if len(revisions) not in (1, 2):
        raise Unusable("give BASE and optionally CANDIDATE (git revisions), or --files")
    revs = [resolve_revision(repo, revisions[0])]
    revs.append(resolve_revision(repo, revisions[1]) if len(revisions) == 2
                else working_tree_revision(repo))
    overrides = {}
    for spec, path in bench_for:
        rev = working_tree_revision(repo) if spec in ("WORKTREE", "working-tree") \
            else resolve_revision(repo, spec)
        if not os.access(path, os.X_OK):
            raise Unusable("--bench-for %s=%s: not an executable file" % (spec, path))
        overrides[rev.tree] = os.path.abspath(path)
    build_root = build_root_of(repo, build_root)
    jobs = jobs or os.cpu_count() or 1
    sides = []
    for name, rev, env in (("base", revs[0], {}), ("candidate", revs[1], dict(candidate_env))):
        label = rev.label if rev.spec == "working tree" or rev.commit.startswith(rev.spec) \
            else "%s (%s)" % (rev.spec, rev.label)
        if rev.tree in overrides:
            program, reused = overrides[rev.tree], True
            say("%s: %s uses %s (--bench-for)" % (name, rev.label, program))
        else:
            program, reused = ensure_build(repo, rev, build_root, jobs, say)
        sides.append(Side(name, label.strip(), program, env, reused, rev,
                          bench_for=rev.tree in overrides))
    return sides


def rerun_commit(side, build_root):
    """The commit that names a side in the rerun command. A revision names its own commit; the
    working tree names the commit its build's worktree checked out (recorded in the build's
    stamp), which that worktree keeps reachable, so the rerun gates the same tree even after
    the working tree changed, and finds its build."""
    rev = side.revision
    if rev.spec == "working tree" and not side.bench_for:
        try:
            with open(os.path.join(build_root, rev.tree[:16], "built"), encoding="utf-8") as f:
                commit, tree = f.read().split()[:2]
            if tree == rev.tree:
                return commit
        except (OSError, ValueError):
            pass
    return rev.commit
