"""Benchmark: the aws_fargate backend at scale, against a simulated ECS that enforces the quotas.

Runs a real ``miniwdl run`` (a driver process with the aws_fargate backend) of an N-way scatter,
its ECS endpoint pointed at ``ecs_sim`` (token buckets as in ../shared/DESIGN.md, start latency,
injected throttles and capacity failures), samples the driver's memory and threads, and prints:

- launch ratio: time from the first RunTask to the last task launched, / (N / 20 per s)
- throttles: returned by ECS, and unrecovered (tasks that failed because of them)
- DescribeTasks calls made / sum over poll passes of ceil(tasks being watched / 100)
- RegisterTaskDefinition calls for the run
- driver peak RSS, peak threads, mean CPU, at the peak number of concurrent tasks
- STOPPED-to-noticed latency (ECS stops a task -> first DescribeTasks answer showing it)

The last line is one JSON object with the keys launch_ratio, unrecovered_throttles,
describe_calls_ratio, register_calls, driver_peak_rss_mb, driver_threads, notice_latency_s, tasks.

    python bench/fargate_scale.py                 # 2,000 tasks, up to 1,000 at once
    python bench/fargate_scale.py --tasks 200 --concurrency 100 --run-time 5   # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ecs_sim import Faults, SimulatedECS  # noqa: E402

QUOTA_RATE = 20.0  # Fargate task launches per second (and RunTask calls per second)

WDL_SOURCE = """
version 1.1
workflow scale {
  input { Int n }
  scatter (i in range(n)) { call work { input: i = i } }
  output { Int total = length(work.out) }
}
task work {
  input { Int i }
  command <<< echo ~{i} >>>
  output { Int out = i }
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" }
}
"""


def run_driver(args: argparse.Namespace, endpoint: str, workdir: Path) -> tuple[int, dict, float]:
    """Run miniwdl (the driver) against the simulator; sample it; return (exit, samples, seconds)."""
    (workdir / "scale.wdl").write_text(WDL_SOURCE)
    env = dict(os.environ)
    env.update(
        {
            "AWS_ENDPOINT_URL_ECS": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "MINIWDL__SCHEDULER__CONTAINER_BACKEND": "aws_fargate",
            "MINIWDL__SCHEDULER__TASK_CONCURRENCY": str(args.concurrency),
            "MINIWDL__CALL_CACHE__GET": "false",
            "MINIWDL__CALL_CACHE__PUT": "false",
            "MINIWDL__AWS_FARGATE__CLUSTER": "bench",
            "MINIWDL__AWS_FARGATE__SUBNETS": "subnet-0aaa,subnet-0bbb,subnet-0ccc",
            "MINIWDL__AWS_FARGATE__EFS_SECURITY_GROUP": "sg-0bench",
            "MINIWDL__AWS_FARGATE__EFS_ID": "fs-0bench",
            "MINIWDL__AWS_FARGATE__EFS_MOUNTPOINT": str(workdir),
            "MINIWDL__AWS_FARGATE__EXECUTION_ROLE": "arn:aws:iam::123456789012:role/bench-exec",
            "MINIWDL__AWS_FARGATE__LOG_GROUP": "bench-tasks",
            "MINIWDL__AWS_FARGATE__PROVISION": "false",
            "MINIWDL__AWS_FARGATE__POLL_INTERVAL": str(args.poll_interval),
            "MINIWDL__AWS_FARGATE__RUN_ID": "bench",
        }
    )
    cmd = [sys.executable, "-m", "WDL", "run", str(workdir / "scale.wdl"), f"n={args.tasks}",
           "--dir", str(workdir / "runs") + "/", "-o", str(workdir / "result.json")]
    started = time.time()
    log = open(workdir / "driver.log", "wb")
    proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    ps = psutil.Process(proc.pid)
    samples: dict = {"rss": 0, "threads": 0, "rss_at_peak_running": 0, "threads_at_peak_running": 0, "peak_running": 0}
    cpu_start = None
    while proc.poll() is None:
        try:
            with ps.oneshot():
                rss, threads, cpu = ps.memory_info().rss, ps.num_threads(), ps.cpu_times()
        except psutil.Error:
            break
        cpu_start = cpu_start or (time.time(), cpu.user + cpu.system)
        samples["cpu_end"] = (time.time(), cpu.user + cpu.system)
        samples["rss"] = max(samples["rss"], rss)
        samples["threads"] = max(samples["threads"], threads)
        running = args.sim.running()
        if running >= samples["peak_running"]:
            samples.update(peak_running=running, rss_at_peak_running=rss, threads_at_peak_running=threads)
        time.sleep(0.5)
    samples["cpu_start"] = cpu_start
    log.close()
    return proc.wait(), samples, time.time() - started


def pass_figures(sim: SimulatedECS, interval: float) -> tuple[int, int, int, float]:
    """(DescribeTasks calls, sum over passes of ceil(tasks watched / 100), passes, seconds polled).

    A pass is a burst of DescribeTasks calls; every pass describes every task the driver is
    watching, so the tasks named in a pass's calls are the ones it was watching."""
    describes = sorted((t, n) for t, op, n, outcome in sim.calls if op == "DescribeTasks" and outcome == "ok")
    passes: list[list[tuple[float, int]]] = []
    for t, n in describes:
        if passes and t - passes[-1][-1][0] < interval / 2:
            passes[-1].append((t, n))
        else:
            passes.append([(t, n)])
    expected = sum(math.ceil(sum(n for _t, n in calls) / 100) for calls in passes)
    span = describes[-1][0] - describes[0][0] if describes else 0.0
    return len(describes), expected, len(passes), span


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=0, help="miniwdl task_concurrency (default: --tasks, so the launch rate is never capped by it)")
    parser.add_argument("--run-time", type=float, default=50.0, help="seconds each simulated task runs (50: about 1,000 tasks run at once at the quota rate)")
    parser.add_argument("--start-latency", type=float, default=3.0, help="seconds from RunTask to RUNNING (mean)")
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--throttle-rate", type=float, default=0.01, help="injected ThrottlingException per RunTask")
    parser.add_argument("--capacity-rate", type=float, default=0.01, help="injected capacity failures[] per RunTask")
    parser.add_argument("--neighbor", type=float, default=0.0, metavar="RATE",
                        help="another client launching RATE tasks/s from the same account quota during the run")
    args = parser.parse_args(argv)
    args.concurrency = args.concurrency or args.tasks

    args.sim = sim = SimulatedECS(
        start_latency=(args.start_latency * 0.5, args.start_latency * 1.5),
        run_time=(args.run_time * 0.9, args.run_time * 1.1),
        faults=Faults(throttle_rate=args.throttle_rate, capacity_rate=args.capacity_rate),
    )
    endpoint = sim.start()
    neighbor_done = threading.Event()
    if args.neighbor:
        def neighbor() -> None:  # takes launch tokens from the shared quota, as another driver would
            while not neighbor_done.wait(1 / args.neighbor):
                if sim.buckets["RunTask"].take():
                    sim.buckets["launch"].take()
        threading.Thread(target=neighbor, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="fargate-bench-") as tmp:
        workdir = Path(tmp)
        print(f"{args.tasks}-task scatter, up to {args.concurrency} at once, tasks run ~{args.run_time:g}s; "
              f"simulated ECS at {endpoint} (RunTask 20/s burst 100, DescribeTasks 20/s, "
              f"{args.throttle_rate:.0%} throttles, {args.capacity_rate:.0%} capacity failures injected)", flush=True)
        code, samples, seconds = run_driver(args, endpoint, workdir)
        driver_log = (workdir / "driver.log").read_text(errors="replace")
        if code != 0:
            print(driver_log[-4000:], file=sys.stderr)
    # a throttle is unrecovered when a task failed because of it (the launcher gave up)
    unrecovered = sum(1 for line in driver_log.splitlines() if "still throttled after" in line and " ERROR " in line)
    neighbor_done.set()
    sim.stop()

    launched = sorted(t.created for t in sim.tasks.values())
    first_call = min(t for t, op, _n, _o in sim.calls if op == "RunTask")
    launch_time = launched[-1] - first_call
    ideal = args.tasks / (QUOTA_RATE - args.neighbor)  # what is left of the quota
    throttles = sim.count("RunTask", "throttled")
    calls, expected, passes, span = pass_figures(sim, args.poll_interval)
    latencies = [t.noticed - t.stopped_at for t in sim.tasks.values() if t.noticed]
    t0, c0 = samples["cpu_start"]
    t1, c1 = samples["cpu_end"]
    figures = {
        "launch_ratio": round(launch_time / ideal, 3),
        "unrecovered_throttles": unrecovered,
        "describe_calls_ratio": round(calls / expected, 3) if expected else None,
        "register_calls": sim.count("RegisterTaskDefinition", "ok"),
        "driver_peak_rss_mb": round(samples["rss"] / 2**20, 1),
        "driver_threads": samples["threads"],
        "notice_latency_s": round(statistics.mean(latencies), 2) if latencies else None,
        "tasks": args.tasks,
    }
    print(f"workflow: {'succeeded' if code == 0 else 'FAILED (exit %d)' % code} in {seconds:.0f}s; "
          f"{len(launched)} tasks launched, {len(sim.tasks) and sum(1 for t in sim.tasks.values() if t.noticed)} seen stopped")
    share = f" (the quota less a neighbor's {args.neighbor:g}/s)" if args.neighbor else ""
    print(f"launch: {launch_time:.1f}s for {args.tasks} tasks; quota-bound ideal {ideal:.1f}s{share} "
          f"(burst 100: {(args.tasks - 100) / (QUOTA_RATE - args.neighbor):.1f}s); ratio {figures['launch_ratio']}")
    print(f"RunTask: {sim.count('RunTask')} calls, {throttles} throttled ({unrecovered} not recovered), "
          f"{sim.count('RunTask', 'capacity')} capacity failures (retried in other subnets)")
    print(f"DescribeTasks: {calls} calls in {passes} passes over {span:.0f}s (one pass per {span / max(1, passes - 1):.2f}s, "
          f"interval {args.poll_interval:g}s); sum of ceil(watched/100) = {expected}; ratio {figures['describe_calls_ratio']}; "
          f"calls over 100 tasks: {sim.count('DescribeTasks', 'invalid')}")
    print(f"RegisterTaskDefinition: {figures['register_calls']} call(s) for the run")
    print(f"driver: peak RSS {figures['driver_peak_rss_mb']} MB, peak threads {samples['threads']}; "
          f"at the peak of {samples['peak_running']} concurrent tasks: RSS {samples['rss_at_peak_running'] / 2**20:.0f} MB, "
          f"{samples['threads_at_peak_running']} threads; mean CPU {(c1 - c0) / max(1e-9, t1 - t0):.2f} vCPU")
    if latencies:
        p95 = sorted(latencies)[int(0.95 * (len(latencies) - 1))]
        print(f"STOPPED-to-noticed: mean {statistics.mean(latencies):.2f}s, p95 {p95:.2f}s, "
              f"max {max(latencies):.2f}s (poll interval {args.poll_interval:g}s)")
    print(json.dumps(figures))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
