#!/usr/bin/python3
"""docs/remote.md, run exactly as written: every ```sh block, in order, in one shell on "A" (the
middle namespace of a topology this test makes), with "B" (the down1 namespace) reached through an
`ssh` that runs its command there. The run must pass, write a result file with the remote hops:1
cells, and leave no process, copy or realm directory behind. Exits 77 (skipped) without CAP_NET_ADMIN."""
import argparse
import glob
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time

SKIPPED = 77


def blocks(path):
    with open(path) as f:
        text = f.read()
    return re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)


def start_topology(program):
    p = subprocess.Popen([program, "--parent-pid", str(os.getpid())], stdout=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL)
    prefix = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ready, _, _ = select.select([p.stdout], [], [], max(0, deadline - time.monotonic()))
        if not ready:
            break
        line = p.stdout.readline()
        if line.startswith("prefix "):
            prefix = line.split()[1]
        elif line.startswith("ready") or line.startswith("error") or not line:
            if not line.startswith("ready"):
                raise RuntimeError("cloak-topology: " + line)
            return p, prefix
    p.kill()
    raise RuntimeError("cloak-topology did not become ready")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--doc", required=True)
    parser.add_argument("--topology", required=True)
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--repo", required=True)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("skipped: the remote steps run as root (and need CAP_NET_ADMIN for the namespaces)")
        return SKIPPED
    steps = blocks(args.doc)
    if len(steps) < 5:
        print("docs/remote.md has %d sh blocks; expected the setup, realm, copy, downstream, bench and cleanup" % len(steps))
        return 1
    try:
        topology, prefix = start_topology(args.topology)
    except RuntimeError as e:
        if any(why in str(e) for why in ("CAP_NET_ADMIN", "Operation not permitted", "in a user namespace")):
            print("skipped: %s" % e)
            return SKIPPED
        raise
    work = tempfile.mkdtemp(prefix="cloak-remote-doc.")
    copy = os.path.join(work, "b-copy")  # B's copy: another path than A's realm directory
    ns_a, ns_b = prefix + "-middle", prefix + "-down1"
    # The only thing the test adds: `ssh HOST CMD` runs CMD in B's namespace, as ssh would on B.
    shim = 'ssh() { shift; ip netns exec %s bash -c "$1"; }\n' % ns_b
    script = shim + "set -euo pipefail\n" + "\n".join(steps)
    env = dict(os.environ, REPO=args.repo, BUILD=args.build_dir, A_ADDR="198.18.0.1", B_ADDR="198.18.0.2",
               B="b.test", COPY=copy, WORK=work, CLOAK_BUILD_DIR=args.build_dir, CLOAK_NO_BUILD="1")
    status = 1
    try:
        r = subprocess.run(["ip", "netns", "exec", ns_a, "bash", "-c", script], cwd=args.repo, env=env,
                           capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        print(r.stdout[-4000:])
        if r.returncode != 0:
            print("the documented steps failed (exit %d):\n%s" % (r.returncode, r.stderr[-4000:]))
            return 1
        files = glob.glob(os.path.join(work, "results", "*", "*.json"))
        if len(files) != 1:
            print("expected one result file under %s/results, found %s" % (work, files))
            return 1
        with open(files[0]) as f:
            data = json.load(f)
        names = [b["name"] for b in data["benchmarks"] if not b.get("aggregate_name")]
        cells = [n for n in names if n.startswith("cloak/kernel/tcp/")]
        failed = [b["name"] for b in data["benchmarks"] if b.get("error_occurred")]
        hosts = data["context"].get("cloak_hosts")
        hosts = json.loads(hosts) if isinstance(hosts, str) else hosts
        problems = []
        if len(set(cells)) != 16 or not all("/hops:1/" in n for n in cells):
            problems.append("expected the 16 hops:1 cells, got %s" % sorted(set(cells)))
        if failed:
            problems.append("failed cells: %s" % failed)
        if not hosts or hosts.get("mode") != "remote" or hosts.get("down1") != "tcp:198.18.0.2:7400":
            problems.append("cloak_hosts does not describe the remote downstream: %s" % hosts)
        if os.path.exists(copy):
            problems.append("B's copy %s is still there" % copy)
        if problems:
            print("\n".join(problems))
            return 1
        print("docs/remote.md: %d steps ran; %d remote cells passed; %s" % (len(steps), len(set(cells)), files[0]))
        status = 0
    finally:
        topology.terminate()  # ends whatever the steps left running inside A and B, then the namespaces
        try:
            topology.wait(timeout=20)
        except subprocess.TimeoutExpired:
            topology.kill()
        shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
