#!/usr/bin/python3
"""The unprivileged path of `scripts/cloakbench verify`, run by temporary users this test creates and
always removes:
  - a user with a subordinate id range gets the kernel backend in a user namespace (privilege mode
    "userns"), or, where this kernel forbids user namespaces, the model fallback naming why;
  - a user without one gets the model fallback, and the message names /etc/subuid.
Needs real root (useradd); exits 77 (skipped) otherwise."""
import argparse
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile

MARKER = "cloakbench robustness test (safe to delete)"
PREFIX = "cbrt"
SKIP = 77


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


def stage(args, tmp):
    """Copies the dispatcher and the two programs where the temporary users may read them."""
    os.makedirs(f"{tmp}/scripts")
    os.makedirs(f"{tmp}/build/harness/verify")
    os.makedirs(f"{tmp}/build/harness/downstream")
    shutil.copy2(args.dispatcher, f"{tmp}/scripts/cloakbench")
    shutil.copy2(args.verify, f"{tmp}/build/harness/verify/cloak-verify")
    shutil.copy2(args.downstream, f"{tmp}/build/harness/downstream/cloak-downstream")
    for root, dirs, files in os.walk(tmp):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o755)


def run_as(user, tmp, *argv):
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": tmp,
        "TMPDIR": "/tmp",
        "CLOAK_BUILD_DIR": f"{tmp}/build",
        "CLOAK_DOWNSTREAM": f"{tmp}/build/harness/downstream/cloak-downstream",
    }
    cmd = ["runuser", "-u", user, "--", "env", "-i", *[f"{k}={v}" for k, v in env.items()], *argv]
    return sh(*cmd, check=False, timeout=90, cwd=tmp)


def userns_possible(user, tmp):
    r = run_as(user, tmp, "unshare", "--map-auto", "--map-root-user", "true")
    return r.returncode == 0, (r.stderr or r.stdout).strip()


failures = []


def expect(condition, message):
    print(("ok:   " if condition else "FAIL: ") + message)
    if not condition:
        failures.append(message)


def verify_as(user, tmp):
    r = run_as(user, tmp, f"{tmp}/scripts/cloakbench", "verify", "--json")
    print(f"--- cloakbench verify as {user}: exit {r.returncode}\n{r.stderr.strip()}")
    try:
        out = json.loads(r.stdout)
    except json.JSONDecodeError:
        print(r.stdout[-2000:])
        out = {}
    return r, out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dispatcher", required=True)
    parser.add_argument("--verify", required=True)
    parser.add_argument("--downstream", required=True)
    args = parser.parse_args()

    if not real_root():
        print("SKIPPED: creating temporary users needs real root (not a user namespace)")
        return SKIP
    for tool in ("useradd", "userdel", "usermod", "runuser"):
        if not shutil.which(tool):
            print(f"SKIPPED: {tool} is not installed (Debian packages passwd, util-linux)")
            return SKIP

    # A SIGTERM (ctest's timeout) still runs the cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    remove_stale_users()
    tmp = tempfile.mkdtemp(prefix="cloak-unprivileged.")
    try:
        os.chmod(tmp, 0o755)
        stage(args, tmp)
        with temporary_users() as users:
            with_range = users.add("s", 65536)
            small_range = users.add("r", 1000)  # 61000.. is not mapped: the dispatcher picks clients
            without_range = users.add("n", 0)

            possible, why_not = userns_possible(with_range, tmp)
            print(f"user namespaces for {with_range}: {'available' if possible else 'unavailable: ' + why_not}")
            r, out = verify_as(with_range, tmp)
            if possible:
                expect(r.returncode == 0, "verify succeeds in the user namespace")
                expect(out.get("privilege_mode") == "userns", f"privilege mode is userns (got {out.get('privilege_mode')})")
                expect(out.get("backend") == "kernel", f"backend is kernel (got {out.get('backend')})")
                expect(out.get("ok") is True and len(out.get("scenarios", [])) > 10, "every scenario ran and matched")
                expect(out.get("process_identity") == {"uid": 0, "gid": 0}, "the process is root inside its namespace")
                expect("re-running in a user namespace" in r.stderr, "the dispatcher says which path it took")
            else:
                expect(out.get("privilege_mode") == "model-fallback", "without user namespaces: model fallback")
                expect("falling back to the model backend" in r.stderr and "user namespace" in r.stderr,
                       "the fallback names why")

            if possible:
                r, out = verify_as(small_range, tmp)
                expect(out.get("privilege_mode") == "userns" and out.get("ok") is True,
                       "a small subordinate range still runs every scenario in a user namespace")
                first = out.get("clients", {}).get("first_uid", 61000)
                expect(first + 16 <= 1000 and "using fake clients" in r.stderr,
                       f"fake clients chosen inside the mapped ids (first uid {first})")

            r, out = verify_as(without_range, tmp)
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
