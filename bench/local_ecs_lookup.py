"""Benchmark: what a local stack's DescribeTasks costs as the tasks it has run pile up.

Every WDL task in local mode costs DescribeTasks calls answered by the embedded moto: one for
each "ECS Task State Change" event the runner emits (``ecs_state.emit``, one task named) and its
share of the driver's poller passes (up to 100 tasks named). moto 5.2.5 looks for each name in
every task of every cluster, so each answer cost grows with every task the stack ever ran: the
named fix ``task_lookup_by_key`` (``local/moto/fixes.py``) looks each name up by key instead.
This measures both, side by side in one run, at several counts of tasks known to moto:

- one name, through the same in-process client ``ecs_state.emit`` uses (an event's cost);
- a hundred names (a poller's call), through moto's backend.

Tasks are copies of one task RunTask started (new IDs), put into moto's table directly; no HTTP,
no runner. The last line is one JSON object: per count, milliseconds per call for moto's own
lookup and for the fix, and their ratio.

    make bench-local-ecs               # = .venv/bin/python bench/local_ecs_lookup.py
    .venv/bin/python bench/local_ecs_lookup.py --tasks 1000 20000
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
import uuid
from typing import Any, Callable

from miniwdl_fargate import aws

REGION = "us-east-1"
ACCOUNT = "123456789012"


def per_call_ms(call: Callable[[], Any], budget_s: float = 0.4) -> float:
    """Milliseconds per call: as many calls as fit in ``budget_s`` (at least 3)."""
    calls, started = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - started < budget_s:
        call()
        calls += 1
    return 1000 * (time.perf_counter() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, nargs="+", default=[100, 1000, 10000], help="counts of tasks known to moto")
    args = parser.parse_args()
    os.environ.update(aws.FAKE_CREDENTIALS)
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)

    from moto.ecs.models import EC2ContainerServiceBackend, ecs_backends

    from miniwdl_fargate.local.moto.ecs_state import LOCAL_RUNTIME_AGENT
    from miniwdl_fargate.local.moto import direct, fixes, hooks, patching

    patching.check_version()
    fixes.install()
    hooks.describe_tasks_faults()
    ecs, ec2 = direct.client("ecs", REGION, LOCAL_RUNTIME_AGENT), direct.client("ec2", REGION)
    ecs.create_cluster(clusterName="bench")
    ecs.register_task_definition(
        family="bench", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
        containerDefinitions=[{"name": "task", "image": "ubuntu:22.04"}],
    )
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    first = ecs.run_task(
        cluster="bench", taskDefinition="bench", launchType="FARGATE",
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": ["sg-1"]}},
    )["tasks"][0]["taskArn"]
    backend = ecs_backends[ACCOUNT][REGION]
    table = backend.tasks["bench"]
    template = table[first]
    by_key = EC2ContainerServiceBackend.describe_tasks
    moto_own = patching.unpatched("task_lookup_by_key", EC2ContainerServiceBackend, "describe_tasks")

    rows: dict[str, dict[str, float]] = {}
    print(f"{'tasks known':>12}  {'1 name, moto':>13}  {'1 name, fix':>12}  {'100 names, moto':>16}  {'100 names, fix':>15}")
    for count in sorted(args.tasks):
        while len(table) < count:
            task = copy.copy(template)
            task.id = str(uuid.uuid4())
            table[task.task_arn] = task
        newest = list(table)[-100:]
        figures: dict[str, float] = {}
        for label, lookup in (("moto", moto_own), ("fix", by_key)):
            EC2ContainerServiceBackend.describe_tasks = lookup
            try:
                one, hundred = [newest[-1]], list(newest)
                ecs.describe_tasks(cluster="bench", tasks=one)  # (warm)
                figures[f"one_{label}_ms"] = per_call_ms(lambda n=one: ecs.describe_tasks(cluster="bench", tasks=n))
                figures[f"hundred_{label}_ms"] = per_call_ms(lambda n=hundred: backend.describe_tasks("bench", n))
            finally:
                EC2ContainerServiceBackend.describe_tasks = by_key
        figures["one_ratio"] = figures["one_moto_ms"] / figures["one_fix_ms"]
        figures["hundred_ratio"] = figures["hundred_moto_ms"] / figures["hundred_fix_ms"]
        rows[str(count)] = {k: round(v, 3) for k, v in figures.items()}
        print(
            f"{count:>12}  {figures['one_moto_ms']:>10.2f} ms  {figures['one_fix_ms']:>9.2f} ms"
            f"  {figures['hundred_moto_ms']:>13.2f} ms  {figures['hundred_fix_ms']:>12.2f} ms", flush=True,
        )
    print(json.dumps({"ms_per_call": rows}))


if __name__ == "__main__":
    main()
