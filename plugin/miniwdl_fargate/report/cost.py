"""What a run's WDL task attempts cost: ``estimate_cost`` gives vCPU-seconds, GB-seconds and
dollars per attempt and in total, priced with a ``Prices`` table. Fargate bills per second with a
one-minute minimum, from the start of the image pull until the task stops; the attempt's
``billing_start`` is ECS's ``pullStartedAt`` where known, else the moment RunTask accepted the
task. The public IPv4 address of each task that has one is priced too (VPC bills every public IPv4
address by the hour: priced here over the same billed seconds).

A task on ECS Managed Instances (capacity MANAGED_INSTANCES or MANAGED_INSTANCES_SPOT) shares an
EC2 instance that bills by the second whoever runs on it; its estimate is its share of the
instance, what it asked for (vCPU, GiB, GPUs) at per-unit rates, plus ECS's management fee on
that, as a fraction; over the same billed seconds. An EBS scratch volume (``scratch_gib``) is
priced as gp3 storage, per GB-month prorated by the second.

The cost is grouped too: ``by_task`` per WDL call by name (a scatter's calls, their retries
together; the driver as "driver"), and ``by_label`` per label of the run ({key: {value: usd}}: all
of a run's tasks carry its labels as AWS tags); ``sum_by_label`` adds up several runs' cost.json.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

from ..attempts import Attempt

#: us-east-1, Linux/x86_64, USD. On-demand: the AWS Fargate pricing page; Spot prices move with
#: supply and demand (the page's "current Spot price" table): this is a typical value. Public
#: IPv4: the Amazon VPC pricing page (https://aws.amazon.com/vpc/pricing/, "Public IPv4 Address":
#: every public IPv4 address, in use or idle, 0.005 USD an hour), which a Fargate task with
#: assignPublicIp ENABLED holds on its network interface for its life.
#:
#: ECS Managed Instances (https://aws.amazon.com/ec2/pricing/on-demand/ and
#: https://aws.amazon.com/ecs/pricing/): the instance at its EC2 price plus a management fee per
#: instance, billed per second with a one-minute minimum; the ECS pricing page's example is
#: c6a.2xlarge at 0.037 USD an hour, 12% of its on-demand 0.306. EC2 prices whole instances, so
#: the per-unit rates are derived from us-east-1 on-demand list prices: c6a.large (2 vCPU, 4 GiB,
#: 0.0765) and m6a.large (2 vCPU, 8 GiB, 0.0864) give 0.002475 per GiB-hour and 0.0333 per
#: vCPU-hour; g4dn.xlarge (4 vCPU, 16 GiB, one NVIDIA T4, 0.526) less its vCPUs and memory gives
#: 0.3532 per GPU-hour (an A10G, g5.xlarge at 1.006, would be 0.8332: set gpu_hour for the GPU
#: kinds the stack allows). Spot: a typical 67% off on-demand (EC2 Spot prices move like
#: Fargate Spot's; the Fargate Spot default above is the same fraction), and the management fee,
#: charged on the instance type whatever it costs, is the same dollars: 0.12 / 0.33 of the Spot
#: price. EBS gp3 (https://aws.amazon.com/ebs/pricing/): 0.08 USD per GB-month, billed per second;
#: a month is 730 hours.
DEFAULT_PRICES: dict[str, Any] = {
    "currency": "USD",
    "region": "us-east-1",
    "FARGATE": {"vcpu_hour": 0.04048, "gb_hour": 0.004445},
    "FARGATE_SPOT": {"vcpu_hour": 0.01334058, "gb_hour": 0.00146489},
    "MANAGED_INSTANCES": {"vcpu_hour": 0.0333, "gb_hour": 0.002475, "gpu_hour": 0.3532, "management_fee_fraction": 0.12},
    "MANAGED_INSTANCES_SPOT": {
        "vcpu_hour": 0.010989, "gb_hour": 0.00081675, "gpu_hour": 0.116556, "management_fee_fraction": 0.3636,
    },
    "ephemeral_gb_hour": 0.000111,  # per GB over the 20 GB every task gets
    "ebs_gb_month": 0.08,  # an EBS scratch volume (gp3), per GB
    "public_ipv4_hour": 0.005,  # per public IPv4 address
    # EFS Elastic throughput (https://aws.amazon.com/efs/pricing/), per GB read and written
    "efs_read_gb": 0.03,
    "efs_write_gb": 0.06,
    "minimum_seconds": 60,
}
#: the table's single numbers (the rest: a capacity's rates, or text)
NUMBERS = ("ephemeral_gb_hour", "ebs_gb_month", "public_ipv4_hour", "efs_read_gb", "efs_write_gb", "minimum_seconds")
GIB = 1 << 30  # AWS's GB in its per-GB prices
#: what a capacity's entry must give; a managed-instances capacity's entry, also these
RATES = ("vcpu_hour", "gb_hour")
INSTANCE_RATES = ("gpu_hour", "management_fee_fraction")
HOURS_PER_MONTH = 730  # AWS's month in its per-GB-month prices


@dataclass
class Prices:
    """A price table: ``DEFAULT_PRICES``, or as ``[aws_fargate] prices`` sets it (``parse``)."""

    table: dict[str, Any] = field(default_factory=lambda: json.loads(json.dumps(DEFAULT_PRICES)))
    #: the entries left at the defaults (us-east-1's) of a table that names another region
    defaults_kept: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str) -> "Prices":
        """A JSON object, or the path of a JSON file holding one; keys given replace the
        defaults' (a capacity's entry as a whole), so ``{"FARGATE": {...}}`` alone is enough."""
        text = value.strip()
        if not text:
            return cls()
        if not text.startswith("{"):
            with open(os.path.expanduser(text)) as infile:
                text = infile.read()
        given = json.loads(text)
        if not isinstance(given, dict):
            raise ValueError("expected a JSON object")
        table = cls().table
        for key, entry in given.items():
            if key in ("FARGATE", "FARGATE_SPOT", "MANAGED_INSTANCES", "MANAGED_INSTANCES_SPOT"):
                entry = _capacity_entry(key, entry)
            elif key in NUMBERS:
                _check_number(key, entry)
            elif key not in ("currency", "region"):  # (a misspelt key would change nothing, silently)
                known = ", ".join(k for k in DEFAULT_PRICES if k not in ("currency", "region"))
                raise ValueError(f"{key}: not a key of a price table (its keys: currency, region, {known})")
            table[key] = entry
        kept: tuple[str, ...] = ()
        if str(table.get("region") or "") != DEFAULT_PRICES["region"]:
            kept = tuple(k for k in DEFAULT_PRICES if k not in ("currency", "region") and k not in given)
        return cls(table, kept)

    def rate(self, capacity: str) -> dict[str, float] | None:
        entry = self.table.get(capacity)
        return entry if isinstance(entry, dict) else None


def _check_number(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{key}: expected a number of at least 0, got {value!r}")


def _capacity_entry(key: str, entry: Any) -> dict[str, float]:
    """A capacity's rates, every one a number of at least 0; a managed-instances capacity's with
    its GPU rate and management fee too."""
    needed = RATES + (INSTANCE_RATES if key.startswith("MANAGED_INSTANCES") else ())
    if not (isinstance(entry, dict) and set(needed) <= set(entry)):
        raise ValueError(f"{key}: expected {{" + ", ".join(f'"{k}": ...' for k in needed) + "}")
    for name, value in entry.items():
        _check_number(f"{key}.{name}", value)
    return {k: float(v) for k, v in entry.items()}


def billed_seconds(attempt: Attempt, minimum: float, now: float | None = None, committed: bool = False) -> float:
    """Seconds Fargate bills for the attempt: from the image pull (or launch) until it stopped,
    at least ``minimum``; 0 for a launch that never happened, or a task that stopped before its
    image pull began. ``committed`` (a budget's estimate): a task launched and not stopped whose
    pull is not seen yet counts from its launch (it will bill at least ``minimum`` once it pulls)."""
    started = attempt.running is not None or (committed and attempt.stopped is None)
    start = attempt.billing_start or (attempt.launched if started else None)
    if start is None:
        return 0.0
    end = attempt.stopped if attempt.stopped is not None else (now or time.time())
    return float(max(minimum, math.ceil(max(0.0, end - start))))


@dataclass
class AttemptCost:
    """One attempt's cost: its row of cost.json, and the unrounded figures the totals add up."""

    row: dict[str, Any]
    used: dict[str, float]  # vCPU-, GB-, GPU-seconds... over its billed seconds
    usd: float
    ipv4_usd: float
    priced: bool  # its capacity has a price


def minimum_usd(a: Attempt, prices: Prices) -> float:
    """The least ``a`` costs once it runs: its size at its capacity for the minimum billed seconds."""
    now = time.time()
    billed = dataclasses.replace(a, billing_start=now, launched=now, running=now, stopped=now)
    return attempt_cost(billed, prices, float(prices.table.get("minimum_seconds", 60)), now).usd


def _iso(epoch: float | None) -> str | None:
    """An attempt's time (epoch seconds) as ISO 8601 in UTC; None: it never got there."""
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat() if epoch else None


def attempt_cost(a: Attempt, prices: Prices, minimum: float, now: float | None = None, committed: bool = False) -> AttemptCost:
    """One attempt's billed seconds (``billed_seconds``), what it used over them, and dollars
    (none for what its capacity has no price for)."""
    table = prices.table
    seconds = billed_seconds(a, minimum, now, committed)
    used = {
        "vcpu_seconds": a.cpu / 1024 * seconds,
        "gb_seconds": a.memory / 1024 * seconds,
        "gpu_seconds": a.gpus * seconds,
        "ephemeral_gb_seconds": max(0, a.ephemeral_gib - 20) * seconds,
        "scratch_gb_seconds": (a.scratch_gib or 0) * seconds,
        "public_ipv4_seconds": seconds if a.public_ip else 0.0,
    }
    ipv4_usd = used["public_ipv4_seconds"] * float(table.get("public_ipv4_hour", 0.0)) / 3600
    scratch_usd = used["scratch_gb_seconds"] * float(table.get("ebs_gb_month", 0.0)) / (HOURS_PER_MONTH * 3600)
    rate = prices.rate(a.capacity)
    compute_usd = fee_usd = 0.0
    if rate is not None:
        compute_usd = (
            used["vcpu_seconds"] * rate["vcpu_hour"] + used["gb_seconds"] * rate["gb_hour"]
            + used["gpu_seconds"] * rate.get("gpu_hour", 0.0)
            + used["ephemeral_gb_seconds"] * float(table.get("ephemeral_gb_hour", 0.0))
        ) / 3600
        fee_usd = compute_usd * rate.get("management_fee_fraction", 0.0)
    # what it read and wrote of EFS (at least: ``Attempt.efs_read_bytes``), billed by the byte
    efs_usd = (a.efs_read_bytes * float(table.get("efs_read_gb", 0.0))
               + a.efs_written_bytes * float(table.get("efs_write_gb", 0.0))) / GIB
    total = compute_usd + fee_usd + scratch_usd + ipv4_usd + efs_usd
    row = {
        "call": a.call_path(),  # (a sub-workflow's call under its directory: call-inner/call-x)
        "attempt": a.attempt,
        "outcome": a.outcome_text(),
        "capacity": a.capacity,
        "vcpu": a.cpu / 1024,
        "memory_gib": a.memory / 1024,
        "gpus": a.gpus,
        "ephemeral_gib": a.ephemeral_gib,
        "scratch_gib": a.scratch_gib,
        "billed_seconds": seconds,
        **{k: round(v, 3) for k, v in used.items() if k not in ("ephemeral_gb_seconds", "public_ipv4_seconds")},
        "public_ipv4": a.public_ip,
        "public_ipv4_usd": round(ipv4_usd, 6),
        "scratch_usd": round(scratch_usd, 6),
        "efs_read_bytes": a.efs_read_bytes,
        "efs_written_bytes": a.efs_written_bytes,
        "efs_usd": round(efs_usd, 6),
        "management_fee_usd": round(fee_usd, 6),
        "usd": round(total, 6),
        "ecs_task": a.task_arn,
        "started_at": _iso(a.running),
        "stopped_at": _iso(a.stopped),
        "exit_code": a.exit_code,
    }
    return AttemptCost(row, used, total, ipv4_usd, rate is not None)


def estimate_cost(attempts: Iterable[Attempt], prices: Prices, now: float | None = None, committed: bool = False) -> dict[str, Any]:
    """Per-attempt and total vCPU-, GB- and GPU-seconds, and dollars (``committed``: see ``billed_seconds``)."""
    table = prices.table
    minimum = float(table.get("minimum_seconds", 60))
    rows = []
    totals = dict.fromkeys(
        ("vcpu_seconds", "gb_seconds", "gpu_seconds", "ephemeral_gb_seconds", "scratch_gb_seconds", "public_ipv4_seconds",
         "efs_read_gb", "efs_written_gb"), 0.0
    )
    usd = ipv4_usd = 0.0
    unpriced = set()
    for a in attempts:
        cost = attempt_cost(a, prices, minimum, now, committed)
        for key, value in cost.used.items():
            totals[key] += value
        totals["efs_read_gb"] += a.efs_read_bytes / GIB
        totals["efs_written_gb"] += a.efs_written_bytes / GIB
        if not cost.priced and cost.row["billed_seconds"]:
            unpriced.add(a.capacity or "?")
        usd += cost.usd
        ipv4_usd += cost.ipv4_usd
        rows.append(cost.row)
    doc: dict[str, Any] = {
        "currency": table.get("currency", "USD"),
        "total_usd": round(usd, 6),
        "public_ipv4_usd": round(ipv4_usd, 6),
        "totals": {k: round(v, 3) for k, v in totals.items()},
        "attempts": rows,
        "prices": table,
        "method": (
            f"per second with a {minimum:g}-second minimum, from the image pull (or RunTask) to the stop; "
            "vCPU and GB as sized for the task; ephemeral storage beyond 20 GB; "
            "on managed instances the task's share of its instance (vCPU, GB, GPUs) plus the management fee "
            "(a lower bound: EC2 bills the whole instance, from its launch until it is stopped after its last task); "
            "EBS scratch volumes as gp3 storage; "
            "the public IPv4 address of each task that has one, over the same seconds; "
            "EFS Elastic throughput per GB, at least: the input files of each attempt that ran read once and the "
            "files left in its working directory written once (files it wrote and removed, or read again, are not seen). "
            "Not counted: what else bills by the byte or request (EFS storage, the driver's staging and upload, "
            "CloudWatch Logs ingestion, a NAT gateway's data processing, S3 requests and storage), which a "
            "scatter reading large inputs can make more than its compute"
        ),
    }
    if unpriced:
        doc["unpriced_capacity"] = sorted(unpriced)
    doc["by_task"] = by_task(rows)
    return doc


#: miniwdl's call ids: call-<name>, in a scatter call-<name>-<index> or call-<name>-<index>-<tag>, the
#: tag made of the item's letters, digits and underscores (its ``_scatter_tags``), once per scatter
#: level (call-greet-0-AlyssaPHacker, call-pair-1-x-0); a WDL name has no "-"
_CALL_ID = re.compile(r"^call-(?P<name>[^-]+)(?:-\d+(?:-\w+)?)*$")


def task_name(call: str) -> str:
    """The WDL call's name of a call id (``call-greet-2-CyDFect`` -> ``greet``), or of the last
    call of a sub-workflow's (``call-inner/call-say_hi`` -> ``say_hi``); other ids as they are."""
    match = _CALL_ID.match(call.rsplit("/", 1)[-1])
    return match.group("name") if match else call


def by_task(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per WDL call by name (``task_name``): its attempts, billed seconds and dollars."""
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        group = groups.setdefault(task_name(row["call"]), {"attempts": 0, "billed_seconds": 0.0, "usd": 0.0})
        group["attempts"] += 1
        group["billed_seconds"] += row["billed_seconds"]
        group["usd"] += row["usd"]
    return {name: {**group, "usd": round(group["usd"], 6)} for name, group in sorted(groups.items())}


def by_label(labels: dict[str, str], usd: float) -> dict[str, dict[str, float]]:
    """{label key: {value: dollars}} of one run: every attempt carries the run's labels."""
    return {key: {value: round(usd, 6)} for key, value in sorted(labels.items())}


def sum_by_label(docs: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Several runs' cost.json ``by_label`` added up: {label key: {value: dollars}}."""
    total: dict[str, dict[str, float]] = {}
    for doc in docs:
        for key, values in (doc.get("by_label") or {}).items():
            for value, usd in values.items():
                total.setdefault(key, {}).setdefault(value, 0.0)
                total[key][value] += float(usd)
    return {key: {value: round(usd, 6) for value, usd in sorted(values.items())} for key, values in sorted(total.items())}


def price_text(table: dict[str, Any]) -> str:
    parts = [_rate_text(name, entry) for name, entry in table.items() if isinstance(entry, dict)]
    if table.get("ephemeral_gb_hour"):
        parts.append(f"ephemeral storage beyond 20 GB {table['ephemeral_gb_hour']:g} per GB")
    if table.get("ebs_gb_month"):
        parts.append(f"EBS scratch volume {table['ebs_gb_month']:g} per GB-month")
    if table.get("public_ipv4_hour"):
        parts.append(f"public IPv4 address {table['public_ipv4_hour']:g} each")
    return "; ".join(parts)


def _rate_text(name: str, entry: dict[str, float]) -> str:
    text = f"{name} {entry['vcpu_hour']:g} per vCPU, {entry['gb_hour']:g} per GB"
    if "gpu_hour" in entry:
        text += f", {entry['gpu_hour']:g} per GPU"
    if entry.get("management_fee_fraction"):
        text += f", plus a {entry['management_fee_fraction']:.0%} management fee"
    return text
