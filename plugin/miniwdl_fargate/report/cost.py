"""What a run's WDL task attempts cost: ``estimate_cost`` gives vCPU-seconds, GB-seconds and
dollars per attempt and in total, priced with a ``Prices`` table. Fargate bills per second with a
one-minute minimum, from the start of the image pull until the task stops; the attempt's
``billing_start`` is ECS's ``pullStartedAt`` where known, else the moment RunTask accepted the
task. The public IPv4 address of each task that has one is priced too (VPC bills every public IPv4
address by the hour: priced here over the same billed seconds).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..attempts import Attempt

#: us-east-1, Linux/x86_64, USD. On-demand: the AWS Fargate pricing page; Spot prices move with
#: supply and demand (the page's "current Spot price" table): this is a typical value. Public
#: IPv4: the Amazon VPC pricing page (https://aws.amazon.com/vpc/pricing/, "Public IPv4 Address":
#: every public IPv4 address, in use or idle, 0.005 USD an hour), which a Fargate task with
#: assignPublicIp ENABLED holds on its network interface for its life.
DEFAULT_PRICES: dict[str, Any] = {
    "currency": "USD",
    "region": "us-east-1",
    "FARGATE": {"vcpu_hour": 0.04048, "gb_hour": 0.004445},
    "FARGATE_SPOT": {"vcpu_hour": 0.01334058, "gb_hour": 0.00146489},
    "ephemeral_gb_hour": 0.000111,  # per GB over the 20 GB every task gets
    "public_ipv4_hour": 0.005,  # per public IPv4 address
    "minimum_seconds": 60,
}
#: the table's single numbers (the rest: a capacity's rates, or text)
NUMBERS = ("ephemeral_gb_hour", "public_ipv4_hour", "minimum_seconds")


@dataclass
class Prices:
    """A price table: ``DEFAULT_PRICES``, or as ``[aws_fargate] prices`` sets it (``parse``)."""

    table: dict[str, Any] = field(default_factory=lambda: json.loads(json.dumps(DEFAULT_PRICES)))

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
            if key in ("FARGATE", "FARGATE_SPOT") or isinstance(entry, dict):
                if not (isinstance(entry, dict) and {"vcpu_hour", "gb_hour"} <= set(entry)):
                    raise ValueError(f"{key}: expected {{\"vcpu_hour\": ..., \"gb_hour\": ...}}")
                entry = {k: float(v) for k, v in entry.items()}
            elif key in NUMBERS:
                if isinstance(entry, bool) or not isinstance(entry, (int, float)) or entry < 0:
                    raise ValueError(f"{key}: expected a number of at least 0, got {entry!r}")
            table[key] = entry
        return cls(table)

    def rate(self, capacity: str) -> dict[str, float] | None:
        entry = self.table.get(capacity)
        return entry if isinstance(entry, dict) else None


def billed_seconds(attempt: Attempt, minimum: float, now: float | None = None) -> float:
    """Seconds Fargate bills for the attempt: from the image pull (or launch) until it stopped,
    at least ``minimum``; 0 for a launch that never happened, or a task that stopped before its
    image pull began."""
    start = attempt.billing_start or (attempt.launched if attempt.running is not None else None)
    if start is None:
        return 0.0
    end = attempt.stopped if attempt.stopped is not None else (now or time.time())
    return float(max(minimum, math.ceil(max(0.0, end - start))))


def estimate_cost(attempts: Iterable[Attempt], prices: Prices, now: float | None = None) -> dict[str, Any]:
    """Per-attempt and total vCPU-seconds, GB-seconds and dollars."""
    table = prices.table
    minimum = float(table.get("minimum_seconds", 60))
    ephemeral_rate = float(table.get("ephemeral_gb_hour", 0.0))
    ipv4_rate = float(table.get("public_ipv4_hour", 0.0))
    rows, totals = [], {
        "vcpu_seconds": 0.0, "gb_seconds": 0.0, "ephemeral_gb_seconds": 0.0, "public_ipv4_seconds": 0.0, "usd": 0.0,
    }
    ipv4_total = 0.0
    unpriced = set()
    for a in attempts:
        seconds = billed_seconds(a, minimum, now)
        vcpu_s = a.cpu / 1024 * seconds
        gb_s = a.memory / 1024 * seconds
        extra_gb_s = max(0, a.ephemeral_gib - 20) * seconds
        ipv4_s = seconds if a.public_ip else 0.0
        ipv4_usd = ipv4_s * ipv4_rate / 3600
        rate = prices.rate(a.capacity)
        usd = ipv4_usd
        if rate is not None:
            usd += (vcpu_s * rate["vcpu_hour"] + gb_s * rate["gb_hour"] + extra_gb_s * ephemeral_rate) / 3600
        elif seconds:
            unpriced.add(a.capacity or "?")
        rows.append(
            {
                "call": a.call,
                "attempt": a.attempt,
                "outcome": a.outcome_text(),
                "capacity": a.capacity,
                "vcpu": a.cpu / 1024,
                "memory_gib": a.memory / 1024,
                "ephemeral_gib": a.ephemeral_gib,
                "billed_seconds": seconds,
                "vcpu_seconds": round(vcpu_s, 3),
                "gb_seconds": round(gb_s, 3),
                "public_ipv4": a.public_ip,
                "public_ipv4_usd": round(ipv4_usd, 6),
                "usd": round(usd, 6),
                "ecs_task": a.task_arn,
            }
        )
        totals["vcpu_seconds"] += vcpu_s
        totals["gb_seconds"] += gb_s
        totals["ephemeral_gb_seconds"] += extra_gb_s
        totals["public_ipv4_seconds"] += ipv4_s
        totals["usd"] += usd
        ipv4_total += ipv4_usd
    doc: dict[str, Any] = {
        "currency": table.get("currency", "USD"),
        "total_usd": round(totals["usd"], 6),
        "public_ipv4_usd": round(ipv4_total, 6),
        "totals": {k: round(v, 3) for k, v in totals.items() if k != "usd"},
        "attempts": rows,
        "prices": table,
        "method": (
            f"per second with a {minimum:g}-second minimum, from the image pull (or RunTask) to the stop; "
            "vCPU and GB as sized for the task; ephemeral storage beyond 20 GB; "
            "the public IPv4 address of each task that has one, over the same seconds"
        ),
    }
    if unpriced:
        doc["unpriced_capacity"] = sorted(unpriced)
    return doc


def price_text(table: dict[str, Any]) -> str:
    parts = [
        f"{name} {entry['vcpu_hour']:g} per vCPU, {entry['gb_hour']:g} per GB"
        for name, entry in table.items()
        if isinstance(entry, dict)
    ]
    if table.get("ephemeral_gb_hour"):
        parts.append(f"ephemeral storage beyond 20 GB {table['ephemeral_gb_hour']:g} per GB")
    if table.get("public_ipv4_hour"):
        parts.append(f"public IPv4 address {table['public_ipv4_hour']:g} each")
    return "; ".join(parts)
