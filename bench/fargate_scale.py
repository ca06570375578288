"""Benchmark: the aws_fargate backend at scale, against a simulated ECS that enforces the quotas.

Runs a real ``miniwdl run`` (a driver process with the aws_fargate backend) of an N-way scatter,
its ECS endpoint pointed at ``ecs_sim`` (token buckets as in ../shared/DESIGN.md, start latency,
injected throttles and capacity failures), samples the driver's memory and threads, and prints:

- launch ratio: time from the first RunTask to the last task launched, / (N / 20 per s)
- throttles: returned by ECS, and unrecovered (tasks that failed because of them)
- DescribeTasks calls made / sum over poll passes of ceil(tasks being watched / 100), and the
  busiest minute of DescribeTasks as a share of the account's read rate (20/s)
- RegisterTaskDefinition calls for the run
- driver peak RSS, peak threads, mean CPU, at the peak number of concurrent tasks
- STOPPED-to-noticed latency (ECS stops a task -> first DescribeTasks answer showing it)

With ``--runs N`` it starts N drivers at once against the one simulated account (one set of
quotas), each running the scatter, and reports each run's launch time (first to last task it
launched) and how the slowest compares with the mean.

The last line is one JSON object with the keys launch_ratio, unrecovered_throttles,
describe_calls_ratio, describe_share, register_calls, driver_peak_rss_mb, driver_threads,
driver_cpu, notice_latency_s, notice_p95_s, tasks (and runs, launch_s, slowest_over_mean with --runs).

    python bench/fargate_scale.py                 # 2,000 tasks
    python bench/fargate_scale.py --tasks 10000 --concurrency 2000   # make bench-10k
    python bench/fargate_scale.py --runs 10 --tasks 500              # make bench-fair
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

from miniwdl_fargate import aws

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ecs_sim import Faults, SimulatedECS  # noqa: E402

QUOTA_RATE = 20.0  # Fargate task launches per second (and RunTask calls per second)
READ_RATE = 20.0  # DescribeTasks calls per second (the account's sustained read rate)

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


def start_driver(args: argparse.Namespace, endpoint: str, workdir: Path, run_id: str) -> subprocess.Popen:
    """Start miniwdl (a driver) against the simulator, its log in workdir/driver.log."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "scale.wdl").write_text(WDL_SOURCE)
    env = dict(os.environ)
    env.update(
        {
            "AWS_ENDPOINT_URL_ECS": endpoint,
            **aws.FAKE_CREDENTIALS,
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
            "MINIWDL__AWS_FARGATE__RUN_ID": run_id,
        }
    )
    if args.describe_budget:
        env["MINIWDL__AWS_FARGATE__DESCRIBE_BUDGET"] = str(args.describe_budget)
    cmd = [sys.executable, "-m", "WDL", "run", str(workdir / "scale.wdl"), f"n={args.tasks}",
           "--dir", str(workdir / "runs") + "/", "-o", str(workdir / "result.json")]
    with open(workdir / "driver.log", "wb") as log:
        return subprocess.Popen(cmd, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)


def sample_driver(args: argparse.Namespace, proc: subprocess.Popen) -> tuple[int, dict, float]:
    """Sample a driver's memory, threads and CPU until it ends; return (exit, samples, seconds)."""
    started = time.time()
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
    return proc.wait(), samples, time.time() - started


def pass_figures(sim: SimulatedECS, interval: float, client: str | None = None) -> tuple[int, int, int, float]:
    """(DescribeTasks calls, sum over passes of ceil(tasks watched / 100), passes, seconds polled)
    of one driver (``client``: its run id; None: every call).

    A pass is a burst of DescribeTasks calls, back to back; passes are at least ``interval``
    (the poller's floor) apart. Every pass describes every task the driver is watching, so the
    tasks named in a pass's calls are the ones it was watching."""
    describes = sorted(
        (t, n) for t, op, n, outcome, who in sim.calls_by_client()
        if op == "DescribeTasks" and outcome == "ok" and (client is None or who == client)
    )
    passes: list[list[tuple[float, int]]] = []
    for t, n in describes:
        # a pass's calls name 100 tasks each but the last; its calls are spread 1/budget apart
        if passes and passes[-1][-1][1] == 100 and t - passes[-1][-1][0] < interval:
            passes[-1].append((t, n))
        else:
            passes.append([(t, n)])
    expected = sum(math.ceil(sum(n for _t, n in calls) / 100) for calls in passes)
    span = describes[-1][0] - describes[0][0] if describes else 0.0
    return len(describes), expected, len(passes), span


def busiest_describe_rate(sim: SimulatedECS, client: str | None = None, window: float = 60.0) -> float:
    """DescribeTasks calls per second in the busiest ``window`` seconds (sliding) of one driver
    (``client``: its run id; None: every caller together)."""
    times = sorted(t for t, op, _n, _o, who in sim.calls_by_client() if op == "DescribeTasks" and client in (None, who))
    best, lo = 0, 0
    if not times:
        return 0.0
    for hi, t in enumerate(times):
        while times[lo] < t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best / window


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000, help="tasks in each run's scatter")
    parser.add_argument("--runs", type=int, default=1, help="drivers started at once against the one simulated account")
    parser.add_argument("--concurrency", type=int, default=0, help="miniwdl task_concurrency (default: --tasks, so the launch rate is never capped by it)")
    parser.add_argument("--run-time", type=float, default=50.0, help="seconds each simulated task runs (50: about 1,000 tasks run at once at the quota rate)")
    parser.add_argument("--start-latency", type=float, default=3.0, help="seconds from RunTask to RUNNING (mean)")
    parser.add_argument("--poll-interval", type=float, default=0.5, help="[aws_fargate] poll_interval: the shortest time between passes")
    parser.add_argument("--describe-budget", type=float, default=0.0, help="[aws_fargate] describe_budget (default: the backend's, 5 calls/s)")
    parser.add_argument("--throttle-rate", type=float, default=0.01, help="injected ThrottlingException per RunTask")
    parser.add_argument("--capacity-rate", type=float, default=0.01, help="injected capacity failures[] per RunTask")
    parser.add_argument("--neighbor", type=float, default=0.0, metavar="RATE",
                        help="another client launching RATE tasks/s from the same account quota during the run")
    args = parser.parse_args(argv)
    args.concurrency = args.concurrency or args.tasks
    return args


def run_all(args: argparse.Namespace, endpoint: str, tmp: Path) -> list[dict]:
    """Start ``args.runs`` drivers at once, sample each until it ends; one dict per run."""
    results: list[dict] = [{} for _ in range(args.runs)]

    def one(i: int, proc: subprocess.Popen, workdir: Path) -> None:
        code, samples, seconds = sample_driver(args, proc)
        log = (workdir / "driver.log").read_text(errors="replace")
        results[i].update(code=code, samples=samples, seconds=seconds, log=log)

    procs = []
    for i in range(args.runs):
        run_id = "bench" if args.runs == 1 else f"bench-{i:02d}"
        workdir = tmp / run_id
        procs.append((start_driver(args, endpoint, workdir, run_id), workdir))
        results[i]["run_id"] = run_id
    threads = [threading.Thread(target=one, args=(i, proc, workdir)) for i, (proc, workdir) in enumerate(procs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def launch_time(sim: SimulatedECS, run_id: str | None = None) -> float:
    """Seconds from a run's first RunTask call to its last task launched (None: every run)."""
    calls = [t for t, op, _n, _o, who in sim.calls_by_client() if op == "RunTask" and run_id in (None, who)]
    created = [t.created for t in sim.tasks.values() if run_id in (None, t.started_by)]
    return max(created) - min(calls)


def cpu_of(samples: dict) -> float:
    (t0, c0), (t1, c1) = samples["cpu_start"], samples["cpu_end"]
    return (c1 - c0) / max(1e-9, t1 - t0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
    runs_text = f"{args.runs} drivers at once, each a " if args.runs > 1 else ""
    print(f"{runs_text}{args.tasks}-task scatter, up to {args.concurrency} at once, tasks run ~{args.run_time:g}s; "
          f"simulated ECS at {endpoint} (RunTask 20/s burst 100, DescribeTasks 20/s, "
          f"{args.throttle_rate:.0%} throttles, {args.capacity_rate:.0%} capacity failures injected)", flush=True)
    with tempfile.TemporaryDirectory(prefix="fargate-bench-") as tmp:
        results = run_all(args, endpoint, Path(tmp))
    for result in results:
        if result["code"] != 0:
            print(f"--- {result['run_id']} failed (exit {result['code']}):\n{result['log'][-4000:]}", file=sys.stderr)
    # a throttle is unrecovered when a task failed because of it (the launcher gave up)
    unrecovered = sum(
        1 for r in results for line in r["log"].splitlines() if "still throttled after" in line and " ERROR " in line
    )
    neighbor_done.set()
    sim.stop()

    total = args.tasks * args.runs
    launched = len(sim.tasks)
    launch_s = launch_time(sim)
    ideal = total / (QUOTA_RATE - args.neighbor)  # what is left of the quota
    throttles = sim.count("RunTask", "throttled")
    per_run = [pass_figures(sim, args.poll_interval, r["run_id"]) for r in results]
    calls, expected = sum(p[0] for p in per_run), sum(p[1] for p in per_run)
    passes, span = per_run[0][2], per_run[0][3]
    latencies = [t.noticed - t.stopped_at for t in sim.tasks.values() if t.noticed]
    busiest = max(busiest_describe_rate(sim, r["run_id"]) for r in results)  # one driver's
    together = busiest_describe_rate(sim)
    rss = max(r["samples"]["rss"] for r in results)
    threads = max(r["samples"]["threads"] for r in results)
    cpu = max(cpu_of(r["samples"]) for r in results)
    figures = {
        "launch_ratio": round(launch_s / ideal, 3),
        "unrecovered_throttles": unrecovered,
        "describe_calls_ratio": round(calls / expected, 3) if expected else None,
        "describe_share": round(busiest / READ_RATE, 3),
        "register_calls": sim.count("RegisterTaskDefinition", "ok"),
        "driver_peak_rss_mb": round(rss / 2**20, 1),
        "driver_threads": threads,
        "driver_cpu": round(cpu, 2),
        "notice_latency_s": round(statistics.mean(latencies), 2) if latencies else None,
        "notice_p95_s": round(percentile(latencies, 0.95), 2) if latencies else None,
        "tasks": args.tasks,
    }
    succeeded = sum(1 for r in results if r["code"] == 0)
    seconds = max(r["seconds"] for r in results)
    print(f"workflow: {succeeded} of {args.runs} run(s) succeeded in {seconds:.0f}s; "
          f"{launched} tasks launched, {sum(1 for t in sim.tasks.values() if t.noticed)} seen stopped")
    share = f" (the quota less a neighbor's {args.neighbor:g}/s)" if args.neighbor else ""
    print(f"launch: {launch_s:.1f}s for {total} tasks; quota-bound ideal {ideal:.1f}s{share} "
          f"(burst 100: {(total - 100) / (QUOTA_RATE - args.neighbor):.1f}s); ratio {figures['launch_ratio']}")
    if args.runs > 1:
        times = [launch_time(sim, r["run_id"]) for r in results]
        mean = statistics.mean(times)
        figures.update(runs=args.runs, describe_share_all=round(together / READ_RATE, 3), launch_s=[round(t, 1) for t in times], slowest_over_mean=round(max(times) / mean, 3))
        print(f"per run launch time: mean {mean:.1f}s, fastest {min(times):.1f}s, slowest {max(times):.1f}s "
              f"(slowest / mean = {figures['slowest_over_mean']}); each run's: {figures['launch_s']}")
    print(f"RunTask: {sim.count('RunTask')} calls, {throttles} throttled ({unrecovered} not recovered), "
          f"{sim.count('RunTask', 'capacity')} capacity failures (retried in other subnets)")
    print(f"DescribeTasks: {calls} calls ({sim.count('DescribeTasks', 'throttled')} throttled); "
          f"{'run 1: ' if args.runs > 1 else ''}{passes} passes over {span:.0f}s (one pass per {span / max(1, passes - 1):.2f}s, "
          f"floor {args.poll_interval:g}s); sum of ceil(watched/100) = {expected}; ratio {figures['describe_calls_ratio']}; "
          f"calls over 100 tasks: {sim.count('DescribeTasks', 'invalid')}; busiest minute: {busiest:.2f} calls/s "
          f"= {figures['describe_share']:.0%} of the account's 20/s"
          f"{f' (the busiest driver; all {args.runs} together: {together:.2f} calls/s)' if args.runs > 1 else ''}")
    print(f"RegisterTaskDefinition: {figures['register_calls']} call(s)")
    s0 = results[0]["samples"]
    print(f"driver{' (the largest of each figure over the runs)' if args.runs > 1 else ''}: peak RSS "
          f"{figures['driver_peak_rss_mb']} MB, peak threads {threads}; mean CPU {cpu:.2f} vCPU; "
          f"{'run 1 ' if args.runs > 1 else ''}at the peak of {s0['peak_running']} concurrent tasks: "
          f"RSS {s0['rss_at_peak_running'] / 2**20:.0f} MB, {s0['threads_at_peak_running']} threads")
    if latencies:
        print(f"STOPPED-to-noticed: mean {statistics.mean(latencies):.2f}s, p95 {figures['notice_p95_s']:.2f}s, "
              f"max {max(latencies):.2f}s (poll floor {args.poll_interval:g}s)")
    print(json.dumps(figures))
    return 0 if succeeded == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
