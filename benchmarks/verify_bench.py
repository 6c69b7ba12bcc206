"""Seconds ``farmer --verify`` takes on a 1,000,000-task workdir (benchmarks/README.md).

Writes a workdir in the middle of a farm, in the files' exact formats (a real farm of a
million tasks takes ten minutes to get there): every task imported, 990,000 taken (one
``claims`` line each), 989,000 of them finished, 996 failed, 4 running under two live leases,
10,000 pending, and a job log line for every recorded task. Then runs ``farmer --verify`` on
it ``--rounds`` times (wall time from launch to exit, Python's start-up included) and prints
the median and the range; the check must find the workdir consistent.

``python benchmarks/verify_bench.py [--tasks N] [--rounds R] [--tmpdir DIR]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FARMER = "n1.100-abcd"


def build(workdir: Path, tasks: int) -> None:
    """The workdir described in the module docstring, scaled to ``tasks``."""
    (workdir / "leases").mkdir(parents=True)
    pending = tasks // 100
    taken = tasks - pending
    running = 4
    failed_ids = set(range(999, taken - running, 1000))
    lines = [b"%d echo task %d\n" % (i, i) for i in range(tasks)]
    (workdir / "toprocess").write_bytes(b"".join(lines))
    (workdir / "tasklist").write_bytes(b"".join(line.split(b" ", 1)[1] for line in lines))
    size = sum(len(line) for line in lines)
    (workdir / "imported").write_text(f"bytes {size}\nlines {tasks}\ntasks {tasks}\n")
    claims, end = [], 0
    for i in range(taken):
        end += len(lines[i])
        lease = f"{FARMER}.w{i % 2}.10{i % 2}.1".encode()
        claims.append(b"%d %s %d\n" % (i, lease, end))
    (workdir / "claims").write_bytes(b"".join(claims))
    done = range(taken - running)
    (workdir / "finished").write_bytes(b"".join(lines[i] for i in done if i not in failed_ids))
    (workdir / "failed").write_bytes(b"".join(lines[i] for i in sorted(failed_ids)))
    header = "id\tattempt\tnode\tfarmer\tslot\tstart\truntime\texit\tsignal\toutcome\tcommand\n"
    log = [header.encode()] + [
        b"%d\t1\tn1\t%s\t%d\t%d\t0.010\t%d\t0\t%s\techo task %d\n"
        % (i, FARMER.encode(), i % 2, 1_700_000_000_000 + i, 1 if i in failed_ids else 0,
           b"failed" if i in failed_ids else b"finished", i) for i in done]
    (workdir / "joblog").write_bytes(b"".join(log))
    for slot in range(2):
        (workdir / "leases" / f"{FARMER}.w{slot}.10{slot}.1").write_text(
            f"host=n1\nnode=n1\npid=10{slot}\nboot=b\npidns=p\nstart=1\nworker={slot}\n"
            f"farmer={FARMER}\nsince=1\n")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tmpdir", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.tmpdir) as tmp:
        workdir = Path(tmp) / "wd"
        began = time.monotonic()
        build(workdir, args.tasks)
        print(f"built a {args.tasks}-task workdir in {time.monotonic() - began:.1f} s")
        times = []
        for _ in range(args.rounds):
            start = time.monotonic()
            done = subprocess.run([sys.executable, "-m", "taskfarmer", "-w", str(workdir),
                                   "--verify"], capture_output=True, text=True,
                                  env={**os.environ, "SCRATCH": tmp})
            times.append(time.monotonic() - start)
            if done.returncode != 0:
                print(done.stdout, done.stderr, file=sys.stderr)
                return 1
        print(done.stdout.splitlines()[0])
        print(f"farmer --verify: median {statistics.median(times):.2f} s "
              f"({min(times):.2f}-{max(times):.2f}) over {args.rounds} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
