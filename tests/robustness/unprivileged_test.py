#!/usr/bin/python3
"""The unprivileged path of the README's commands, from nothing, run by temporary users this test
creates and always removes:
  - a user with a subordinate id range, in a fresh clone of their own with no build/ at all, runs
    `scripts/cloakbench verify` (which builds what verify needs), `scripts/cloakbench run --quick`
    (which builds the bench) and, with ctest -R UNPRIVILEGED_TESTS, the tests of the unprivileged
    path (see there which and why), all in a user namespace (privilege mode "userns"); the user
    builds only what verify and run need, and runs the test programs of the suite's own build
    (--build-dir, which they may read but not write; when they may not read it, they build the
    four programs in their clone instead); where this kernel forbids user namespaces, verify's
    model fallback names why;
  - a user with a small range, in that clone (which they may not write), uses its build as it is
    and picks fake clients inside their mapped ids;
  - a user without a range gets the model fallback, and the message names /etc/subuid.
Not the whole suite a second time: every other test runs as root in the same ctest run.
The clone is of the source tree's HEAD plus its uncommitted changes (--head-only: HEAD alone).
Cost (why it is slow): as that user, the configure and build of the harness, verify, the realm and
the downstream from nothing (verify: 106 s on 2 idle cores), then the bench's build and
`run --quick` with its report (80 s), the 127 tests (a few seconds), and three verify runs of a
second or two each: about 3 min 10 s in all on 2 idle cores before the unity build (CLOAK_UNITY_BUILD),
most of it the compiler; 2.5-3.5 min beside the rest of the suite under ctest -j2 with it and the
shared precompiled headers (156 s and 196 s in two fresh-clone runs). (Building the four test
programs too adds 40 s.)
Needs real root (useradd); exits 77 (skipped) otherwise."""
import argparse
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

MARKER = "cloakbench robustness test (safe to delete)"
PREFIX = "cbrt"
SKIP = 77
RUN_TIMEOUT = 600  # seconds for `run --quick`, which builds the bench first
BUILD_TIMEOUT = 900  # seconds for the first verify, which configures and builds from nothing
TESTS_TIMEOUT = 600  # seconds to build and run the unprivileged path's test programs
# The tests of the unprivileged path, run by the user with ctest inside their user namespace, where
# the process is uid 0 of the namespace and the fake clients are subordinate ids: what differs there
# from real root is the kernel backend (credential switches to mapped ids, the checks on uid 0 and
# on real accounts, who owns the socket directory), and the cross-host tests, which must skip with
# the reason (no CAP_NET_ADMIN over the host's network). Everything else behaves as it does for
# root and runs as root only. The ctest entries:
#   core.backends/{cloaking_rules,dynamic_cloaking,impersonation_guard}.*  docs/design.md §1 and
#       the impersonation guard on the kernel backend (and the model beside it)
#   core.{kernel_probe,model_probe,client_range_check}.*  per-thread credentials as the kernel
#       reports them; the fake-client range kept away from real accounts
#   robustness.{root_client,leak_check,client_range_config,error_path}.*  uid/gid 0 refused
#       (namespace root is uid 0 too); no thread left as a client after failures
#   robustness.socket_directory.*  the socket and its directory admit only the harness user
#   hosts.verify_scenarios, hosts.bench_cells_and_faults  skip, saying why, in a user namespace
# and the programs they need beyond what verify and run --quick build (used only when the suite's
# build cannot be read by the user: then the user builds them in their clone):
UNPRIVILEGED_TEST_PROGRAMS = ("cloak_core_cloaking_test", "cloak_core_identity_test",
                              "cloak_robustness_identity_leak_test", "cloak_robustness_socket_dir_test")
UNPRIVILEGED_TESTS = ("^(core[.]backends/(cloaking_rules|dynamic_cloaking|impersonation_guard)[.]"
                      "|core[.](kernel_probe|model_probe|client_range_check)[.]"
                      "|robustness[.](root_client|leak_check|client_range_config|error_path|socket_directory)[.]"
                      "|hosts[.](verify_scenarios|bench_cells_and_faults)$)")
UNPRIVILEGED_TESTS_AT_LEAST = 100  # 127 at 90c81b4: fewer means the regex lost some


def sh(*argv, check=True, timeout=60, **kw):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=check, **kw)


def real_root():
    if os.geteuid() != 0:
        return False
    with open("/proc/self/uid_map") as f:  # root of a user namespace cannot add users
        return f.read().split() == ["0", "0", "4294967295"]


def remove_stale_users():
    """Users left by an earlier run that was killed before its cleanup (its pid is gone)."""
    for p in pwd.getpwall():
        if p.pw_gecos == MARKER and p.pw_name.startswith(PREFIX):
            pid = p.pw_name[len(PREFIX):].split("x")[0]
            if not pid.isdigit() or not os.path.exists(f"/proc/{pid}"):
                sh("userdel", p.pw_name, check=False)


def subordinate_range(user, path):
    with open(path) as f:
        for line in f:
            name, start, count = (line.strip().split(":") + ["", "", ""])[:3]
            if name == user:
                return int(start), int(count)
    return None


def free_subordinate_start():
    top = 100000
    for path in ("/etc/subuid", "/etc/subgid"):
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    top = max(top, int(parts[1]) + int(parts[2]))
    return top


class temporary_users:
    """Creates users and removes every one of them on exit, whatever happened in between."""

    def __init__(self):
        self.names = []

    def __enter__(self):
        return self

    def add(self, suffix, subordinate_ids):
        """A user with `subordinate_ids` subordinate uids and gids (0: none)."""
        name = f"{PREFIX}{os.getpid()}x{suffix}"
        # A system user gets no subordinate ids of its own; a nologin shell, no home.
        self.names.append(name)
        sh("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--comment", MARKER, name)
        for path, flag in (("/etc/subuid", "--del-subuids"), ("/etc/subgid", "--del-subgids")):
            r = subordinate_range(name, path)
            if r:
                sh("usermod", flag, f"{r[0]}-{r[0] + r[1] - 1}", name)
        if subordinate_ids:
            start = free_subordinate_start()
            last = start + subordinate_ids - 1
            sh("usermod", "--add-subuids", f"{start}-{last}", "--add-subgids", f"{start}-{last}", name)
        return name

    def __exit__(self, *exc):
        for name in self.names:
            sh("pkill", "-KILL", "-u", name, check=False)  # nothing of theirs may outlive the test
            r = sh("userdel", name, check=False)
            if r.returncode not in (0, 6):  # 6: no such user
                print(f"warning: userdel {name}: {r.stderr}", file=sys.stderr)
        for name in self.names:
            assert not any(p.pw_name == name for p in pwd.getpwall()), f"user {name} was not removed"
        return False


def git(*argv, **kw):
    # The source tree may belong to another user than root; reading it is all this test does.
    return sh("git", "-c", "safe.directory=*", *argv, **kw)


def fresh_clone(source, home, user, head_only):
    """A clone of `source` in `home`, owned by `user`, with no build directory. Unless head_only,
    the source's uncommitted changes (modified, added and deleted files) are carried over, so the
    test exercises the tree it is part of."""
    clone = os.path.join(home, "cloakbench")
    git("clone", "--quiet", "--no-hardlinks", source, clone, timeout=120)
    if not head_only:
        listed = git("-C", source, "ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout
        deleted = set(git("-C", source, "ls-files", "-z", "--deleted").stdout.split("\0")) - {""}
        for path in filter(None, listed.split("\0")):
            if path in deleted:
                continue
            target = os.path.join(clone, path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(os.path.join(source, path), target)
        for path in deleted:
            if os.path.lexists(os.path.join(clone, path)):
                os.unlink(os.path.join(clone, path))
    assert not os.path.exists(os.path.join(clone, "build")), "the clone must start without build/"
    sh("chown", "-R", f"{user}:", home)  # and the login group of the user
    os.chmod(home, 0o755)  # the other users read (not write) this clone and its build
    return clone


def run_as(user, home, cwd, *argv, timeout=90):
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": home,
        "TMPDIR": "/tmp",
    }
    cmd = ["runuser", "-u", user, "--", "env", "-i", *[f"{k}={v}" for k, v in env.items()], *argv]
    return sh(*cmd, check=False, timeout=timeout, cwd=cwd)


def userns_possible(user, home):
    r = run_as(user, home, home, "unshare", "--map-auto", "--map-root-user", "true")
    return r.returncode == 0, (r.stderr or r.stdout).strip()


failures = []


def expect(condition, message):
    print(("ok:   " if condition else "FAIL: ") + message)
    if not condition:
        failures.append(message)


def readme_command_as(user, home, clone, command, timeout, *options):
    """One of the README's commands, as the README gives it, as `user`."""
    started = time.monotonic()
    r = run_as(user, home, clone, f"{clone}/scripts/cloakbench", command, *options, timeout=timeout)
    seconds = time.monotonic() - started
    lines = (r.stdout + "\n" + r.stderr).strip().splitlines()
    # What failed, if anything: ctest's list of failed tests and each failed test's own lines.
    failed = [l for l in lines if "***Failed" in l or "***Timeout" in l or l.startswith("FAIL")
              or l.lstrip().startswith(("Failure", "Expected", "Which is", "AssertionError"))]
    tail = "\n".join(failed[-60:] + ["..."] + lines[-25:])
    print(f"--- cloakbench {command} as {user} in {clone}: exit {r.returncode} after {seconds:.0f} s\n{tail}")
    return r


def suite_tests_dir(user, home, suite_build):
    """A ctest directory of the user's (ctest writes its logs there) whose tests are those of the
    suite's own build (`suite_build`: the build this ctest run tests), or None when the user may not
    read that build's test folders or run its test programs."""
    if not suite_build:
        return None
    folders = [os.path.join(suite_build, "tests", d) for d in ("core", "robustness", "hosts")]
    needed = [os.path.join(f, "CTestTestfile.cmake") for f in folders]
    programs = [os.path.join(suite_build, "tests", n.split("_")[1], n) for n in UNPRIVILEGED_TEST_PROGRAMS]
    r = run_as(user, home, home, "sh", "-c", 'for f in "$@"; do [ -r "$f" ] || exit 1; done', "sh", *needed)
    r2 = run_as(user, home, home, "sh", "-c", 'for f in "$@"; do [ -x "$f" ] || exit 1; done', "sh", *programs)
    if r.returncode != 0 or r2.returncode != 0:
        print(f"the suite's build {suite_build} is not readable by {user}: they build the test programs")
        return None
    tests = os.path.join(home, "unprivileged-tests")
    os.mkdir(tests)
    with open(os.path.join(tests, "CTestTestfile.cmake"), "w") as f:
        f.write("# The suite's tests of the unprivileged path, run as a user without root (unprivileged_test.py)\n")
        f.writelines(f'subdirs("{folder}")\n' for folder in folders)
    sh("chown", "-R", f"{user}:", tests)
    return tests


def tests_as(user, home, clone, build, suite_build):
    """Runs the tests of the unprivileged path (UNPRIVILEGED_TESTS) as `user` with ctest in a user
    namespace, entered as `scripts/cloakbench test` enters one (the same unshare and environment):
    the suite's own test programs when the user may read them, otherwise the ones they build in
    their clone."""
    started = time.monotonic()
    tests = suite_tests_dir(user, home, suite_build)
    if tests is None:
        tests = build
        r = run_as(user, home, clone, "cmake", "--build", build, "-j", str(os.cpu_count() or 1), "--target",
                   *UNPRIVILEGED_TEST_PROGRAMS, timeout=TESTS_TIMEOUT)
        expect(r.returncode == 0, "the unprivileged path's test programs build as a user without root"
               + ("" if r.returncode == 0 else ": " + (r.stdout + r.stderr)[-2000:]))
    built = time.monotonic()
    r = run_as(user, home, clone, "unshare", "--map-auto", "--map-root-user", "--",
               "env", "CLOAK_IN_USERNS=1", "CLOAK_PRIVILEGE_MODE=userns",
               "ctest", "--test-dir", tests, "-R", UNPRIVILEGED_TESTS, "--no-tests=error",
               "--output-on-failure", "-j", str(os.cpu_count() or 1), timeout=TESTS_TIMEOUT)
    lines = (r.stdout + r.stderr).strip().splitlines()
    summary = [l for l in lines if "tests passed" in l]
    ran = int(summary[-1].rsplit(" ", 1)[1]) if summary and summary[-1].rsplit(" ", 1)[1].isdigit() else 0
    failed = [l for l in lines if "***" in l or l.lstrip().startswith(("Failure", "Expected", "Which is"))]
    expect(r.returncode == 0, "the unprivileged path's tests pass in a user namespace as a user without root"
           + ("" if r.returncode == 0 else ":\n" + "\n".join(failed[-40:] + lines[-20:])))
    expect(ran >= UNPRIVILEGED_TESTS_AT_LEAST,
           f"ctest -R UNPRIVILEGED_TESTS ran {ran} tests (at least {UNPRIVILEGED_TESTS_AT_LEAST})")
    skipped = [m.group(1) for m in (re.search(r"Test +#[0-9]+: (\S+) .*Skipped", l) for l in lines) if m]
    print(f"--- the unprivileged path's tests as {user} ({'the suite build' if tests != build else 'built by the user'}): "
          f"{built - started:.0f} s before ctest, {ran} tests {time.monotonic() - built:.0f} s; skipped: {skipped or 'none'}")


def verify_as(user, home, clone, timeout=90):
    started = time.monotonic()
    r = run_as(user, home, clone, f"{clone}/scripts/cloakbench", "verify", "--json", timeout=timeout)
    seconds = time.monotonic() - started
    stderr = "\n".join(l for l in r.stderr.strip().splitlines() if not l.startswith(("[", "--", "-- ")))
    print(f"--- cloakbench verify as {user} in {clone}: exit {r.returncode} after {seconds:.0f} s\n{stderr[-4000:]}")
    try:
        out = json.loads(r.stdout)
    except json.JSONDecodeError:
        print(r.stdout[-2000:])
        out = {}
    return r, out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dispatcher", required=True, help="scripts/cloakbench of the source tree to clone")
    # Accepted so the ctest entry stays as it is; the users build their own programs.
    parser.add_argument("--verify")
    parser.add_argument("--downstream")
    parser.add_argument("--build-dir", help="the suite's build, whose tests of the unprivileged path the user "
                                            "runs (without it, or when they may not read it, they build them)")
    parser.add_argument("--head-only", action="store_true",
                        help="clone HEAD without the source tree's uncommitted changes")
    args = parser.parse_args()
    source = os.path.dirname(os.path.dirname(os.path.abspath(args.dispatcher)))

    if not real_root():
        print("SKIPPED: creating temporary users needs real root (not a user namespace)")
        return SKIP
    for tool in ("useradd", "userdel", "usermod", "runuser", "git"):
        if not shutil.which(tool):
            print(f"SKIPPED: {tool} is not installed (Debian packages passwd, util-linux, git)")
            return SKIP

    # A SIGTERM (ctest's timeout) still runs the cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    remove_stale_users()
    tmp = tempfile.mkdtemp(prefix="cloak-unprivileged.")
    try:
        os.chmod(tmp, 0o755)
        with temporary_users() as users:
            with_range = users.add("s", 65536)
            small_range = users.add("r", 1000)  # 61000.. is not mapped: the dispatcher picks clients
            without_range = users.add("n", 0)
            home = os.path.join(tmp, "home")
            os.mkdir(home)
            clone = fresh_clone(source, home, with_range, args.head_only)
            print(f"fresh clone of {source} for {with_range}: {clone} (no build/)")

            possible, why_not = userns_possible(with_range, home)
            print(f"user namespaces for {with_range}: {'available' if possible else 'unavailable: ' + why_not}")
            build = os.path.join(clone, "build", "release")
            r, out = verify_as(with_range, home, clone, timeout=BUILD_TIMEOUT)
            expect("may not write" not in r.stderr and "no build in" not in r.stderr,
                   "verify in the user's own clone is not refused")
            expect(os.path.isfile(os.path.join(build, "CMakeCache.txt"))
                   and os.stat(build).st_uid == pwd.getpwnam(with_range).pw_uid,
                   "the build directory belongs to the clone's owner")
            expect("installing" not in r.stderr and "missing Debian packages" not in r.stderr,
                   "nothing was installed, and no package was missing")
            if possible:
                expect(r.returncode == 0, "verify succeeds in the user namespace")
                expect(out.get("privilege_mode") == "userns", f"privilege mode is userns (got {out.get('privilege_mode')})")
                expect(out.get("backend") == "kernel", f"backend is kernel (got {out.get('backend')})")
                expect(out.get("ok") is True and len(out.get("scenarios", [])) > 10, "every scenario ran and matched")
                expect(out.get("process_identity") == {"uid": 0, "gid": 0}, "the process is root inside its namespace")
                expect("re-running in a user namespace" in r.stderr, "the dispatcher says which path it took")
            else:
                print("the README's `test` and `run` are not run here: without user namespaces a user "
                      "without root has the model backend only (verify checks that fallback)")
                expect(out.get("privilege_mode") == "model-fallback", "without user namespaces: model fallback")
                expect("falling back to the model backend" in r.stderr and "user namespace" in r.stderr,
                       "the fallback names why")
            if r.returncode != 0 and not out:
                print("the first verify failed; the others need its build")
                return 1

            if possible:
                # The README's run, as --quick, in the user's clone: it builds the bench itself.
                r = readme_command_as(with_range, home, clone, "run", RUN_TIMEOUT, "--quick")
                expect(r.returncode == 0, "`scripts/cloakbench run --quick` succeeds as a user without root")
                written = [line.split(":", 1)[1].strip() for line in (r.stdout + r.stderr).splitlines()
                           if line.startswith("Results:")]
                expect(len(written) == 1 and os.path.isfile(written[0])
                       and written[0].startswith(clone), f"run wrote its results file in the clone ({written})")
                if written and os.path.isfile(written[0]):
                    with open(written[0]) as f:
                        data = json.load(f)
                    context = data.get("context", {})
                    expect(context.get("cloak_privilege_mode") == "userns",
                           f"the results record privilege mode userns (got {context.get('cloak_privilege_mode')})")
                    expect(any(b.get("launches", 0) > 0 for b in data.get("cloak_blocks", [])),
                           "the paired blocks ran in the user namespace")
                tests_as(with_range, home, clone, build, args.build_dir and os.path.abspath(args.build_dir))

            if possible:
                r, out = verify_as(small_range, home, clone)
                expect(out.get("privilege_mode") == "userns" and out.get("ok") is True,
                       "a small subordinate range still runs every scenario in a user namespace")
                first = out.get("clients", {}).get("first_uid", 61000)
                expect(first + 16 <= 1000 and "using fake clients" in r.stderr,
                       f"fake clients chosen inside the mapped ids (first uid {first})")
                expect("using the existing build" in r.stderr,
                       "someone else's clone: its build is used as it is")

            r, out = verify_as(without_range, home, clone)
            expect(r.returncode == 0, "verify succeeds on the model backend")
            expect(out.get("privilege_mode") == "model-fallback",
                   f"privilege mode is model-fallback (got {out.get('privilege_mode')})")
            expect(out.get("backend") == "model", f"backend is model (got {out.get('backend')})")
            expect(out.get("ok") is True, "every scenario matched on the model backend")
            expect("/etc/subuid" in r.stderr and "falling back to the model backend" in r.stderr,
                   "the fallback message names what is missing (/etc/subuid)")
            expect("installing" not in r.stderr and "apt-get install -y" not in r.stderr,
                   "nothing was installed or built")
            expect("using the existing build" in r.stderr, "the existing build was used")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
