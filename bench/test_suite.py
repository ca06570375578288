"""How long `make test` takes on a clean clone (issue 12: "under 3 minutes on these machines").

Clones the checkout (its committed HEAD) into a temporary folder, runs `make test` there as CI
does (a new .venv, the linter beside the tests), and prints the wall time, the CPU time, how busy
the machine's cores were, the pytest phase and the test counts; the last line is one JSON object.
The figures move with the machine's load and speed: the load average and the CPU a fixed Python
loop takes before and after (``loop_s``) are printed with them.

    python bench/test_suite.py [--keep] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def busy_cores() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields)
    return total - fields[3] - fields[4], total  # (idle, iowait)


class CoreSampler(threading.Thread):
    """The fraction of the machine's cores busy, once a second, while the suite runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        cores = os.cpu_count() or 1
        last = busy_cores()
        while not self.done.wait(1.0):
            now = busy_cores()
            busy, total = now[0] - last[0], now[1] - last[1]
            self.samples.append(cores * busy / total if total else 0.0)
            last = now


def loop_seconds() -> float:
    """The CPU a fixed pure-Python loop takes here now, the median of three: how fast the machine
    is at the moment (on these shared machines it moved by a fifth within a minute), to read the
    suite's figures against."""
    times = []
    for _ in range(3):
        started, total = time.process_time(), 0
        for i in range(5_000_000):
            total += i
        times.append(time.process_time() - started)
    return round(sorted(times)[1], 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    parser.add_argument("--workers", type=int, help="TEST_WORKERS for make test (default: the Makefile's)")
    args = parser.parse_args()

    clone = Path(tempfile.mkdtemp(prefix="bench-test-suite-"))
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    command = ["make", "test"]
    if args.workers is not None:
        command.append(f"TEST_WORKERS={args.workers}")
    load_before = os.getloadavg()[0]
    loop_before = loop_seconds()
    sampler = CoreSampler()
    sampler.start()
    started = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(command, cwd=clone, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic() - started
    sampler.done.set()
    output = proc.stdout + proc.stderr
    summary = re.findall(r"=+ (.*) in ([0-9.]+)s", output)
    counts = dict((name, int(n)) for n, name in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", summary[-1][0])) if summary else {}
    cores = os.cpu_count() or 1
    figures = {
        "make_test_s": round(wall, 1),
        "goal_s": 180,
        "exit_status": proc.returncode,
        "pytest_s": float(summary[-1][1]) if summary else None,
        "tests": counts,
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
        "cores": cores,
        "mean_busy_cores": round(sum(sampler.samples) / len(sampler.samples), 2) if sampler.samples else None,
        "seconds_under_half_busy": sum(1 for s in sampler.samples if s < cores / 2),
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "loop_s": [loop_before, loop_seconds()],
    }
    if summary:
        figures["before_pytest_s"] = round(wall - figures["pytest_s"], 1)
    print(f"make test on a clean clone: {figures['make_test_s']} s (goal: under {figures['goal_s']} s), exit status {proc.returncode}")
    print(f"  pytest: {figures['pytest_s']} s, {counts}; before it (making .venv): {figures.get('before_pytest_s')} s")
    print(f"  CPU: {figures['cpu_s']} s on {cores} cores, {figures['mean_busy_cores']} busy on average, "
          f"{figures['seconds_under_half_busy']} s with fewer than half busy")
    print(f"  load average before/after: {figures['load_average']}; a fixed Python loop before/after: {figures['loop_s']} s of CPU "
          "(the machine's speed at the time: compare runs by it)")
    if proc.returncode != 0:  # what failed: pytest's failures (the linter's output comes after them)
        failures = output.split("short test summary info", 1)[-1].split("\n=", 1)[0] if "short test summary info" in output else ""
        print(failures.strip() or output[-4000:], file=sys.stderr)
        with open(clone.with_suffix(".log"), "w") as log:
            log.write(output)
        print(f"  its whole output: {clone.with_suffix('.log')}", file=sys.stderr)
    if args.keep:
        print(f"  the clone: {clone}")
    else:
        shutil.rmtree(clone, ignore_errors=True)
    print(json.dumps(figures))
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
