"""The run report as the driver writes it at a run's end: ``run_report`` puts ``report.html``,
``timeline.svg`` and ``cost.json`` under the run's results prefix, from the attempts the
container backends recorded (``attempts.LOG``), the driver's own task (``driver_attempt``, its
size from ECS), the prices the run's miniwdl configuration sets and the calls the call cache
answered (``cache_hits``).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from WDL.runtime import config as wdl_config

from .. import attempts, aws, config, provenance, s3io, sweep
from .cost import DEFAULT_PRICES, Prices, by_label, estimate_cost
from .render import clock, report_html, timeline_svg

if TYPE_CHECKING:
    from ..driver import DriverRun

log = logging.getLogger("miniwdl-fargate.driver")


def run_report(
    run: "DriverRun", status: str, started: float, run_dir: str = "", cfg: str | None = None,
    calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write the run report (report.html, timeline.svg, cost.json) under the results prefix;
    return what outputs.json / error.json say of it. ``calls``: the run's call cache lookups
    (``callcache.s3cache.CALLS``), whose reused calls the report names with the run each came
    from; None: the hits are counted from the run directory (``cache_hits``). Never fails the
    run: a report that cannot be made is logged and left out."""
    try:
        now = time.time()
        settings = config.loader(cfg)  # (the run's miniwdl configuration, read once)
        recorded = attempts.LOG.snapshot(run=run.run_id)
        own = driver_attempt(run, started, status, now, public_ip=own_public_ip(settings))
        reused = reused_calls(calls) if calls is not None else []
        hits = len(reused) if calls is not None else cache_hits(run_dir)
        svg, page, cost = render_report(run, status, now - started, now, own, recorded, report_prices(settings), reused, hits)
        return write_report(run, svg, page, cost)
    except Exception:
        log.exception("could not write the run report")
        return {}


def render_report(
    run: "DriverRun", status: str, elapsed: float, now: float, own: attempts.Attempt | None,
    recorded: list[attempts.Attempt], prices: Prices, reused: list[dict[str, str]], hits: int,
) -> tuple[str, str, dict[str, Any]]:
    """timeline.svg, report.html and cost.json of a run: from the driver's own row (``own``, if
    known), the WDL tasks' attempts, the prices, and the calls the call cache answered (``reused``,
    named; ``hits``, counted). (tests/browser renders its result in a real browser.)"""
    rows = ([own] if own else []) + recorded
    cost = run_cost(run, status, rows, prices, hits, now)
    if reused:
        cost["reused_calls"] = reused
    title = f"run {run.run_id}"
    svg = timeline_svg(rows, title=title, subtitle=subtitle(status, recorded, cost, elapsed), now=now, costs=cost)
    page = report_html(
        svg, cost, title, facts(run, status, recorded, cost, with_driver=own is not None), provenance.task_images(rows),
        reused,
    )
    return svg, page, cost


def run_cost(
    run: "DriverRun", status: str, rows: list[attempts.Attempt], prices: Prices, hits: int, now: float
) -> dict[str, Any]:
    """cost.json: the attempts' cost (and by task), the run's id, status and labels, its cost by
    label, and the calls the call cache answered."""
    cost = estimate_cost(rows, prices, now=now)
    labels = run_labels(run)
    cost.update(run_id=run.run_id, status=status, labels=labels, by_label=by_label(labels, cost["total_usd"]))
    if hits:
        cost["call_cache_hits"] = hits
    if (warning := prices_region_warning(prices, os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", ""))):
        cost["warnings"] = [warning]
    return cost


def prices_region_warning(prices: Prices, region: str) -> str | None:
    """What to say when the prices are another region's than the run's (Fargate's list prices
    differ by region, https://aws.amazon.com/fargate/pricing/), else None."""
    priced = str(prices.table.get("region") or "")
    if prices.defaults_kept:  # (a table for another region that leaves some of us-east-1's prices)
        return (
            f"the prices name {priced}, but these of them are still {DEFAULT_PRICES['region']}'s list prices: "
            f"{', '.join(prices.defaults_kept)}; give each this region's (the stack's Prices parameter, or [aws_fargate] prices)"
        )
    if not priced or not region or priced == region:
        return None
    return (
        f"the prices are {priced}'s list prices, and the run ran in {region}: its cost is estimated (and its budget "
        "checked) at those; give the stack's Prices parameter (or [aws_fargate] prices) this region's"
    )


def run_labels(run: "DriverRun") -> dict[str, str]:
    """The run's labels; none if its record cannot be read (the report goes on without them)."""
    try:
        return run.labels()
    except Exception as exn:  # noqa: BLE001
        log.warning("cannot read the run's labels: %s", exn)
        return {}


def reused_calls(calls: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The calls the call cache answered: each call, and the run and call its results came from."""
    return [
        {"call": c["call"], "task": c.get("task", ""), "from_run": (c.get("source") or {}).get("run", ""),
         "from_call": (c.get("source") or {}).get("call", "")}
        for c in calls
        if c.get("outcome") == "reused"
    ]


def subtitle(status: str, recorded: list[attempts.Attempt], cost: dict[str, Any], elapsed: float) -> str:
    """The timeline's second line: status, tasks and attempts, call cache, time and cost."""
    hits = cost.get("call_cache_hits", 0)
    return (
        f"{status} · {len({a.call_path() for a in recorded})} task(s), {len(recorded)} attempt(s)"
        + (f", {hits} call(s) reused from the call cache" if hits else "")
        + f" · {clock(round(elapsed))} · estimated {cost['total_usd']:.4f} {cost['currency']}"
    )


def facts(
    run: "DriverRun", status: str, recorded: list[attempts.Attempt], cost: dict[str, Any], with_driver: bool
) -> list[tuple[str, str]]:
    """The report page's table of facts about the run."""
    hits = cost.get("call_cache_hits", 0)
    total = f"{cost['total_usd']:.4f} {cost['currency']}"
    return [
        ("status", status),
        ("results", run.results),
        ("WDL tasks", f"{len({a.call_path() for a in recorded})} ({len(recorded)} attempts)"),
        ("call cache", f"{hits} call(s) reused" if hits else "no call reused"),
        ("estimated cost", f"{total} (driver included)" if with_driver
         else f"{total} (WDL tasks; the driver's own size is unknown here)"),
        *([("labels", ", ".join(f"{k}={v}" for k, v in cost["labels"].items()))] if cost.get("labels") else []),
    ]


def write_report(run: "DriverRun", svg: str, page: str, cost: dict[str, Any]) -> dict[str, Any]:
    """Put timeline.svg, report.html and cost.json under the results prefix; what outputs.json /
    error.json say of them."""
    bucket = run.results_bucket
    s3 = aws.client("s3")
    for name, body, kind in (
        ("timeline.svg", svg, "image/svg+xml"),
        ("report.html", page, "text/html; charset=utf-8"),
    ):
        s3.put_object(Bucket=bucket, Key=run.results_key(name), Body=body.encode(), ContentType=kind)
    s3io.put_json(bucket, run.results_key("cost.json"), cost)
    return {
        "report": s3io.uri(bucket, run.results_key("report.html")),
        "cost": s3io.uri(bucket, run.results_key("cost.json")),
        "estimated_cost_usd": cost["total_usd"],
    }


def report_prices(settings: wdl_config.Loader) -> Prices:
    """``[aws_fargate] prices`` as the run's miniwdl configuration has it."""
    if settings.has_option(config.SECTION, "prices"):
        return Prices.parse(settings[config.SECTION]["prices"])
    return Prices()


def own_public_ip(settings: wdl_config.Loader) -> bool:
    """Whether this driver's task has a public IPv4 address: the stack launches it with the
    assignPublicIp it gives the WDL tasks (``[aws_fargate] assign_public_ip``, set from the same
    template parameter); DescribeTasks does not report the address itself."""
    try:
        return bool(config.option(settings, "assign_public_ip"))
    except ValueError as exn:  # the backend refuses such a setting before any task runs
        log.warning("%s: the report counts no public IPv4 address for the driver", exn)
        return False


def driver_attempt(run: "DriverRun", started: float, status: str, now: float, public_ip: bool = False) -> attempts.Attempt | None:
    """The driver task itself as a row of the report (its size and capacity from ECS), when it
    runs as an ECS task."""
    arn = sweep.own_task_arn()
    if not arn:
        return None
    try:
        cluster = arn.split("/")[1] if arn.count("/") >= 2 else str(config.option(config.loader(), "cluster"))
        task = aws.client("ecs").describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
        if not (int(task.get("cpu") or 0) and int(task.get("memory") or 0)):
            log.info("the driver task's size is unknown (%s): the report leaves the driver out", arn)
            return None
        created = attempts.epoch(task.get("createdAt")) or started
        container = (task.get("containers") or [{}])[0]
        return attempts.Attempt(
            call="driver",
            attempt=1,
            run=run.run_id,
            image=container.get("image", ""),
            image_digest=container.get("imageDigest", ""),
            cpu=int(task.get("cpu") or 0),
            memory=int(task.get("memory") or 0),
            capacity=task.get("capacityProviderName") or task.get("launchType") or "FARGATE",
            queued=created,
            launched=created,
            running=attempts.epoch(task.get("startedAt")) or started,
            stopped=now,
            billing_start=attempts.epoch(task.get("pullStartedAt")),
            outcome=attempts.SUCCEEDED if status == "SUCCEEDED" else attempts.FAILED,
            detail="the driver, until this report",
            task_arn=arn,
            public_ip=public_ip,
        )
    except Exception as exn:  # the report goes on without the driver's row
        log.warning("cannot describe the driver task %s: %s", arn, exn)
        return None


def cache_hits(run_dir: str) -> int:
    """Calls miniwdl took from the call cache, read from the run directory: a task call's
    directory has a ``work`` directory once a container was made for it, and a cached call's
    never does; a whole workflow taken from the cache has outputs and no call directories. A
    run of a document's only task is that task's own directory (its ``task.log`` there): a hit
    only if it has no ``work`` directory either."""
    if not run_dir or not os.path.isdir(run_dir):
        return 0
    hits = 0
    calls = 0
    for root, dirs, files in os.walk(run_dir):
        if os.path.basename(root).startswith("call-"):
            calls += 1
            if "task.log" in files and not any(d.startswith("work") for d in dirs):
                hits += 1
        dirs[:] = [d for d in dirs if d.startswith("call-")]
    if not calls and os.path.isfile(os.path.join(run_dir, "outputs.json")):
        if os.path.isfile(os.path.join(run_dir, "task.log")):
            return 0 if any(d.startswith("work") for d in os.listdir(run_dir)) else 1
        return 1
    return hits
