"""Benchmark: what local mode adds to a run, side by side with plain ``miniwdl run``.

Both sides are measured as a user runs them, wall clock from start to exit of a command:
- plain: ``miniwdl run WORKFLOW -i INPUTS`` with the ``host_process`` backend (task commands as
  host processes; the reference file a local path);
- local: ``miniwdl-fargate submit --local --follow WORKFLOW INPUTS`` against a stack that
  ``miniwdl-fargate local up --engine none`` deployed once (the deploy is timed apart: a one-time
  cost, like ``sam deploy``). Each run goes the whole way: S3 drop, EventBridge, the submit
  Lambda, Step Functions, the launch Lambda, the driver (miniwdl with the aws_fargate backend),
  one ECS task per WDL task (sandboxed host processes), the completion event, finalize.
Each workload runs ``--repeat`` times on each side (median reported); every run has inputs of its
own, so the driver's call cache never answers for it. The first local run after the deploy is
reported apart too (its Lambda environments may still be starting).

Workloads: examples/hello (4 tasks) and bench/scatter/scatter.wdl at ``--tasks`` (default 50)
and at a fifth of that, so the overhead's growth with the task count shows.

Last, for reference, one ``miniwdl-fargate local run`` of hello from scratch (deploy, run, stop).
The machine's load average is printed with the figures: on a shared machine they move with it.

With each local run, the CPU time the stack's processes spent on it (``stack_cpu``: the stack
itself, the drivers, the Lambda workers, the sandboxed tasks) and the client's (``submit
--follow``), and from the small scatter to the big one, the CPU each task more cost in each: where
the growth goes. And how much of the growth that CPU accounts for: the tasks more times the CPU a
task more costs beyond plain miniwdl's, over the cores this process may use, is what the overhead
would grow by if all that grew were work with every core busy; the measured growth beyond it would
be waiting. And what its driver's polling cost (its log's last word on DescribeTasks: calls, tasks
described) and its AWS calls by operation (the log's "AWS calls over the run"), with the calls each
task more added: counts, not times, so they do not move with the machine's load.

The last line is one JSON object: deploy_s, first_run_s, one_shot_local_run_s, load_average,
overhead_growth_s, overhead_growth_from_cpu_s, cores, cpu_per_extra_task_ms,
driver_calls_per_extra_task, and per workload plain_s,
local_s, overhead_s, ratio, cpu_s, plain_cpu_s, describe_tasks (calls, tasks_described) and
aws_calls (by operation; medians).

    make bench-local                                  # = .venv/bin/python bench/local_overhead.py
    .venv/bin/python bench/local_overhead.py --repeat 5 --tasks 100
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from miniwdl_fargate.local.jobs import children, descendants

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HELLO = ROOT / "examples" / "hello" / "workflow.wdl"
REFERENCE = ROOT / "examples" / "s3" / "example-data" / "hello" / "reference.txt"
SCATTER = ROOT / "bench" / "scatter" / "scatter.wdl"
NAMES = ["Alyssa P. Hacker", "Ben Bitdiddle", "Cy D. Fect"]


class Workloads:
    """Inputs files, a fresh one per run (distinct inputs: no call-cache hits)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    def inputs(self, workload: str, local: bool) -> tuple[Path, Path]:
        self.count += 1
        tag = f"#{self.count}"
        if workload == "hello":
            reference = "s3://example-data/hello/reference.txt" if local else str(REFERENCE)
            doc = {"hello.names": [f"{n} {tag}" for n in NAMES], "hello.reference": reference}
            wdl = HELLO
        else:
            # the tag is a task input: a new one makes every call new to the call cache
            doc = {"fan_out.n": int(workload.split("-")[1]), "fan_out.tag": tag}
            wdl = SCATTER
        path = self.folder / f"inputs-{self.count}.json"
        path.write_text(json.dumps(doc))
        return wdl, path


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.monotonic()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=1800)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.decode(errors="replace")[-4000:])
        raise SystemExit(f"failed: {' '.join(argv)}")
    return elapsed


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: the local stack's processes by what they do: its own children are fork servers (by module);
#: ``python_zygote`` forks both drivers and Lambda environments (``PYTHON_CHILDREN``)
KINDS = {"driver_zygote": "drivers", "task_zygote": "tasks", "lambda_zygote": "lambdas", "python_zygote": "drivers"}
#: python_zygote's children by their process name: the drivers it reaped count as its own CPU
PYTHON_CHILDREN = {"lambda": "lambdas", "driver": "drivers"}


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(its own, its reaped children's) CPU seconds of a process (/proc/<pid>/stat: utime,
    stime, cutime, cstime, fields 14-17, proc(5)); (0, 0) once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as infile:
            fields = infile.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return (utime + stime) / CLOCK_TICKS, (cutime + cstime) / CLOCK_TICKS


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and of every live descendant, each with the children it reaped."""
    return sum(sum(cpu_seconds(process)) for process in descendants(pid))


def stack_cpu(stack_pid: int) -> dict[str, float]:
    """CPU seconds so far of the local stack's processes: ``stack`` (moto, the ECS and Lambda
    runners: the ``local up`` process itself), ``drivers`` (forked from ``python_zygote``, which
    reaps them: its own CPU counts here), ``lambdas`` (the Lambda workers, its live children named
    ``lambda``), ``tasks`` (the sandboxed WDL tasks:
    forked from the task fork server, or the stack's own children where they are new processes)."""
    own, reaped = cpu_seconds(stack_pid)
    totals = {"stack": own, "drivers": 0.0, "lambdas": 0.0, "tasks": reaped}
    for child in children(stack_pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as infile:
                command = infile.read().decode(errors="replace")
        except OSError:
            continue
        kind = next((k for module, k in KINDS.items() if module in command), "tasks")
        if "python_zygote" not in command:
            totals[kind] += tree_cpu(child)
            continue
        totals[kind] += sum(cpu_seconds(child))  # (with the drivers that ended: it reaped them)
        for grandchild in children(child):
            try:
                with open(f"/proc/{grandchild}/comm") as infile:
                    name = infile.read().strip()
            except OSError:
                continue
            totals[PYTHON_CHILDREN.get(name, "drivers")] += tree_cpu(grandchild)
    return totals


def children_cpu() -> float:
    """CPU seconds of this process's reaped children (a plain run: miniwdl and its tasks)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def plain_run(wdl: Path, inputs: Path, work: Path) -> tuple[float, float]:
    """(seconds, CPU seconds) of a plain ``miniwdl run``."""
    env = {**os.environ, "MINIWDL__SCHEDULER__CONTAINER_BACKEND": "host_process"}
    run_dir = Path(tempfile.mkdtemp(dir=work, prefix="plain-"))
    before = children_cpu()
    seconds = timed([str(BIN / "miniwdl"), "run", str(wdl), "-i", str(inputs), "--dir", str(run_dir)], env, work)
    return seconds, children_cpu() - before


#: the driver's log line on its polling (``FargateTaskContainer.release_run``)
POLLING = re.compile(r"DescribeTasks over the run :: calls: (\d+), passes: \d+, tasks_described: (\d+)")


#: the driver's log line on its AWS calls (``driver.finish``): ``service.Operation: count, ...``
AWS_CALLS = re.compile(r"AWS calls over the run :: (.*)")


def last_run_counts(state: Path) -> dict[str, dict[str, int]]:
    """What the driver of the last run (the newest driver log of the stack whose state folder
    is ``state``) counted: its DescribeTasks calls and tasks described (``describe_tasks``), and
    its AWS calls by operation (``aws_calls``)."""
    logs = sorted((state / "logs" / "ecs").glob("*-driver/*.log"), key=lambda path: path.stat().st_mtime)
    text = logs[-1].read_text(errors="replace") if logs else ""
    polled, called = POLLING.findall(text), AWS_CALLS.findall(text)
    if not polled or not called:
        raise SystemExit(f"no DescribeTasks or AWS calls line in the last driver's log ({logs[-1] if logs else 'none found'})")
    calls, described = polled[-1]
    by_operation = dict(part.rsplit(": ", 1) for part in called[-1].strip().split(", ") if ": " in part)
    return {
        "describe_tasks": {"calls": int(calls), "tasks_described": int(described)},
        "aws_calls": {name: int(count) for name, count in by_operation.items()},
    }


def local_run(wdl: Path, inputs: Path, connection: Path, work: Path) -> float:
    argv = [str(BIN / "miniwdl-fargate"), "submit", f"--local={connection}", str(wdl), str(inputs), "--follow"]
    return timed(argv, dict(os.environ), work)


def start_stack(work: Path, connection: Path) -> tuple[subprocess.Popen, float]:
    """``local up`` in the background; the seconds until it serves (its connection file)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(BIN / "miniwdl-fargate"), "local", "up", "--engine", "none", "--file", str(connection),
         "--state-dir", str(work / "state"), "--seed-s3", str(ROOT / "examples" / "s3")],
        stdout=subprocess.DEVNULL, stderr=open(work / "local-up.log", "w"),
    )
    deadline = started + 300
    while not connection.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"local up did not start: see {work / 'local-up.log'}")
        time.sleep(0.02)
    return proc, time.monotonic() - started


def stop_stack(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="runs per workload and side (median reported)")
    parser.add_argument("--tasks", type=int, default=50, help="the big scatter's width (the small one is a fifth)")
    args = parser.parse_args()
    workloads = ["hello", f"scatter-{max(1, args.tasks // 5)}", f"scatter-{args.tasks}"]
    work = Path(tempfile.mkdtemp(prefix="bench-local-"))
    inputs = Workloads(work)
    connection = work / "local.json"

    plain: dict[str, list[float]] = {w: [] for w in workloads}
    local: dict[str, list[float]] = {w: [] for w in workloads}
    cpu: dict[str, list[dict[str, float]]] = {w: [] for w in workloads}  # the stack's, per local run
    cpu_plain: dict[str, list[float]] = {w: [] for w in workloads}
    counted: dict[str, list[dict[str, dict[str, int]]]] = {w: [] for w in workloads}  # the driver's own counts
    load_before = os.getloadavg()[0]
    proc, deploy = start_stack(work, connection)
    print(f"local up (moto, template deployed, Lambda environments started): {deploy:.2f} s", flush=True)
    try:
        first = local_run(*inputs.inputs("hello", True), connection, work)
        print(f"first local run of hello after the deploy: {first:.2f} s", flush=True)
        for _ in range(args.repeat):
            for workload in workloads:  # interleaved: both sides see the same machine load
                seconds, plain_cpu = plain_run(*inputs.inputs(workload, False), work)
                plain[workload].append(seconds)
                cpu_plain[workload].append(plain_cpu)
                before, client_before = stack_cpu(proc.pid), children_cpu()
                local[workload].append(local_run(*inputs.inputs(workload, True), connection, work))
                after = stack_cpu(proc.pid)
                cpu[workload].append({kind: after[kind] - before[kind] for kind in after})
                cpu[workload][-1]["client"] = children_cpu() - client_before
                counted[workload].append(last_run_counts(work / "state"))
    finally:
        stop_stack(proc)
    one_shot = timed(
        [str(BIN / "miniwdl-fargate"), "local", "run", str(HELLO), str(inputs.inputs("hello", True)[1]),
         "--seed-s3", str(ROOT / "examples" / "s3"), "--engine", "none", "--state-dir", str(work / "one-shot")],
        dict(os.environ), work,
    )
    load = os.getloadavg()[0]

    results = {}
    print(f"\n{'workload':<12} {'plain miniwdl':>14} {'local mode':>11} {'overhead':>9} {'ratio':>6}")
    for workload in workloads:
        p, q = statistics.median(plain[workload]), statistics.median(local[workload])
        results[workload] = {"plain_s": round(p, 2), "local_s": round(q, 2), "overhead_s": round(q - p, 2), "ratio": round(q / p, 2)}
        print(f"{workload:<12} {p:>12.2f} s {q:>9.2f} s {q - p:>7.2f} s {q / p:>5.1f}x")
    small, big = workloads[1], workloads[2]
    growth = results[big]["overhead_s"] - results[small]["overhead_s"]
    print(f"\noverhead growth from {small} to {big}: {growth:+.2f} s (median of {args.repeat} runs each; work dir {work})")
    kinds = list(cpu[big][0])
    for workload in workloads:
        results[workload]["cpu_s"] = {k: round(statistics.median(run[k] for run in cpu[workload]), 2) for k in kinds}
        results[workload]["plain_cpu_s"] = round(statistics.median(cpu_plain[workload]), 2)
        results[workload]["describe_tasks"] = {
            k: statistics.median(run["describe_tasks"][k] for run in counted[workload]) for k in ("calls", "tasks_described")
        }
        operations = sorted({name for run in counted[workload] for name in run["aws_calls"]})
        results[workload]["aws_calls"] = {
            name: statistics.median(run["aws_calls"].get(name, 0) for run in counted[workload]) for name in operations
        }
    extra_tasks = int(big.split("-")[1]) - int(small.split("-")[1])
    per_task = {k: round(1000 * (results[big]["cpu_s"][k] - results[small]["cpu_s"][k]) / extra_tasks, 1) for k in kinds}
    per_task["plain_miniwdl"] = round(1000 * (results[big]["plain_cpu_s"] - results[small]["plain_cpu_s"]) / extra_tasks, 1)
    print("CPU of a local run by process (s, median): " + "; ".join(
        f"{w} " + ", ".join(f"{k} {results[w]['cpu_s'][k]:.2f}" for k in kinds) for w in workloads))
    print("CPU per task more, from {} to {} (ms): {}".format(small, big, ", ".join(f"{k} {v:.1f}" for k, v in per_task.items())))
    # what the growth would be if all that grew were CPU, the machine's cores all busy: the tasks
    # more times the CPU a task more costs beyond plain miniwdl's, over the cores (more than the
    # measured growth: cores were idle; less: something waits)
    cores = len(os.sched_getaffinity(0))
    local_ms = sum(per_task[k] for k in kinds)
    from_cpu = (local_ms - per_task["plain_miniwdl"]) * extra_tasks / 1000 / cores
    print(f"overhead growth the CPU accounts for: ({local_ms:.1f} - {per_task['plain_miniwdl']:.1f} ms a task more) x {extra_tasks}"
          f" tasks / {cores} cores = {from_cpu:+.2f} s; measured {growth:+.2f} s, beyond what the CPU accounts for {growth - from_cpu:+.2f} s")
    print("DescribeTasks by the driver (median): " + "; ".join(
        f"{w} {results[w]['describe_tasks']['calls']:g} calls, {results[w]['describe_tasks']['tasks_described']:g} tasks described"
        + (f" ({results[w]['describe_tasks']['tasks_described'] / int(w.split('-')[1]):.1f} a task)" if w.startswith("scatter-") else "")
        for w in workloads))
    # (counts: they do not move with the machine's load)
    operations = sorted(set(results[big]["aws_calls"]) | set(results[small]["aws_calls"]))
    calls_per_task = {
        name: round((results[big]["aws_calls"].get(name, 0) - results[small]["aws_calls"].get(name, 0)) / extra_tasks, 2)
        for name in operations
    }
    calls_per_task = {name: n for name, n in calls_per_task.items() if n}
    print(f"AWS calls by the driver per task more, from {small} to {big} (median): "
          + ", ".join(f"{name} {n:g}" for name, n in calls_per_task.items()))
    print(f"one shot, `miniwdl-fargate local run` of hello (deploy, run, stop): {one_shot:.2f} s")
    print(f"load average: {load_before:.1f} before, {load:.1f} after ({os.cpu_count()} CPUs)")
    print(json.dumps({"deploy_s": round(deploy, 2), "first_run_s": round(first, 2), "one_shot_local_run_s": round(one_shot, 2),
                      "repeat": args.repeat, "overhead_growth_s": round(growth, 2),
                      "overhead_growth_from_cpu_s": round(from_cpu, 2), "cores": cores, "cpu_per_extra_task_ms": per_task,
                      "driver_calls_per_extra_task": calls_per_task,
                      "load_average": [round(load_before, 1), round(load, 1)], "workloads": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
