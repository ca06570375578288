"""The run report: what every WDL task attempt did, when, and what it cost.

From the attempts the container backends record (``attempts.LOG``) this module makes:

- ``timeline_svg``: a self-contained SVG, one bar per attempt, split into queued (waiting for a
  launch token and for RunTask), starting (RunTask accepted until the container runs: ENI, image
  pull) and running; coloured by outcome, labelled with the call, over a time axis, with a legend;
- ``estimate_cost``: vCPU-seconds, GB-seconds and dollars per attempt and in total, priced with a
  ``Prices`` table (Fargate bills per second with a one-minute minimum, from the start of the image
  pull until the task stops; the attempt's ``billing_start`` is ECS's ``pullStartedAt`` where known,
  else the moment RunTask accepted the task), plus the public IPv4 address of each task that has
  one (VPC bills every public IPv4 address by the hour: priced here over the same billed seconds);
- ``report_html``: one page holding both, readable offline.
"""

from __future__ import annotations

import html
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from .attempts import (
    CANCELLED, FAILED, FAILED_TO_START, INTERRUPTED, OUT_OF_MEMORY, OUTCOMES, RUNNING, SUCCEEDED, Attempt,
)

# -- what happened ----------------------------------------------------------------------------

COLOURS = {
    SUCCEEDED: "#2f9e5b",
    FAILED: "#d64545",
    OUT_OF_MEMORY: "#8e44ad",
    INTERRUPTED: "#e8a317",
    FAILED_TO_START: "#7f4f24",
    CANCELLED: "#8a94a6",
    RUNNING: "#3b7dd8",
}
QUEUED_COLOUR = "#d5d9e0"


# -- what it cost -------------------------------------------------------------------------------

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


# -- the picture --------------------------------------------------------------------------------

WIDTH = 1000
LABEL_W = 230
ROW_H = 20
BAR_H = 13
TOP = 78
RIGHT_PAD = 150


def _nice_step(span: float, ticks: int = 8) -> float:
    """A tick interval for ``span`` seconds: 1, 2, 5 x 10^k seconds, or whole minutes/hours."""
    raw = max(span, 1e-3) / ticks
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400):
        if step >= raw:
            return float(step)
    return 86400.0 * math.ceil(raw / 86400)


def clock(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g}s"
    if seconds < 3600:
        m, s = divmod(int(round(seconds)), 60)
        return f"{m}m" if not s else f"{m}m{s:02d}s"
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h}h" if not rest else f"{h}h{rest // 60:02d}m"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 60 else clock(seconds)


def call_labels(attempts: list[Attempt]) -> dict[int, str]:
    """Labels by attempt index: the call's directory relative to the run's (so calls of
    sub-workflows read ``call-sub/call-x``), or the call id when directories are unknown."""
    paths = [a.path.rstrip("/") for a in attempts if a.path]
    base = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else ""
    labels = {}
    for i, a in enumerate(attempts):
        name = os.path.relpath(a.path.rstrip("/"), base) if a.path and base else a.call
        labels[i] = name + (f" #{a.attempt}" if a.attempt > 1 else "")
    return labels


def _segments(a: Attempt, end_of_time: float) -> list[tuple[str, float, float]]:
    """(segment, start, end) of one attempt, clamped so clocks that disagree slightly (the
    driver's and ECS's) never draw a segment backwards."""
    end = a.stopped if a.stopped is not None else end_of_time
    launched = min(a.launched, end) if a.launched is not None else None
    running = a.running
    if running is not None:
        running = max(running, launched if launched is not None else a.queued)
        running = min(running, end)
    out = []
    queue_end = launched if launched is not None else end
    out.append(("queued", a.queued, max(a.queued, queue_end)))
    if launched is not None:
        out.append(("starting", launched, running if running is not None else end))
    if running is not None:
        out.append(("running", running, end))
    return [s for s in out if s[2] > s[1] or s[0] == "queued"]


def timeline_svg(
    attempts: list[Attempt], title: str = "", subtitle: str = "", now: float | None = None, costs: dict[str, Any] | None = None
) -> str:
    """The task timeline as a standalone SVG document."""
    esc = html.escape
    now = now or time.time()
    rows = len(attempts)
    height = TOP + max(rows, 1) * ROW_H + 96
    plot_w = WIDTH - LABEL_W - RIGHT_PAD
    if attempts:
        t0 = min(a.queued for a in attempts)
        t1 = max(max((s[2] for s in _segments(a, now)), default=a.queued) for a in attempts)
    else:
        t0, t1 = now, now + 1
    span = max(t1 - t0, 1.0)
    step = _nice_step(span)
    span = math.ceil(span / step) * step

    def x(t: float) -> float:
        return LABEL_W + (t - t0) / span * plot_w

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">',
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="12" y="24" font-size="16" font-weight="bold">{esc(title or "miniwdl-fargate run")}</text>',
        f'<text x="12" y="44" fill="#444">{esc(subtitle)}</text>',
    ]
    axis_y = TOP - 8
    # time axis: gridlines and labels
    ticks = int(round(span / step))
    out.append('<g class="axis" fill="#555" font-size="11">')
    for i in range(ticks + 1):
        tx = LABEL_W + i * step / span * plot_w
        out.append(f'<line x1="{tx:.1f}" y1="{axis_y}" x2="{tx:.1f}" y2="{TOP + max(rows, 1) * ROW_H}" stroke="#e6e8eb"/>')
        out.append(f'<text x="{tx:.1f}" y="{axis_y - 4}" text-anchor="middle">{esc(clock(i * step))}</text>')
    out.append("</g>")
    if not attempts:
        out.append(f'<text x="{LABEL_W}" y="{TOP + 14}" fill="#555">no WDL task ran</text>')
    labels = call_labels(attempts)
    rates = {(r["call"], r["attempt"]): r for r in (costs or {}).get("attempts", [])}
    for i, a in enumerate(attempts):
        y = TOP + i * ROW_H
        colour = COLOURS.get(a.outcome or RUNNING, COLOURS[RUNNING])
        segs = _segments(a, now)
        durations = {name: end - start for name, start, end in segs}
        cost = rates.get((a.call, a.attempt))
        tip = (
            f"{labels[i]}: {a.outcome_text()}"
            + (f" ({a.detail})" if a.detail else "")
            + f"\n{a.capacity or '?'} {a.cpu / 1024:g} vCPU, {a.memory / 1024:g} GiB"
            + (f", {a.ephemeral_gib} GiB disk" if a.ephemeral_gib != 20 else "")
            + (f", {a.image}" if a.image else "")
            + (", public IPv4" if a.public_ip else "")
            + f"\nqueued {_duration(durations.get('queued'))}, starting {_duration(durations.get('starting'))}, "
            f"running {_duration(durations.get('running'))}"
            + (f"\n~${cost['usd']:.4f}" if cost else "")
            + (f"\n{a.task_arn}" if a.task_arn else "")
        )
        out.append(
            f'<g class="attempt" data-call="{esc(a.call)}" data-attempt="{a.attempt}" '
            f'data-outcome="{esc(a.outcome or RUNNING)}"><title>{esc(tip)}</title>'
        )
        if i % 2:
            out.append(f'<rect x="0" y="{y}" width="{WIDTH}" height="{ROW_H}" fill="#f7f8fa"/>')
        out.append(
            f'<text class="label" x="{LABEL_W - 8}" y="{y + ROW_H / 2 + 4}" text-anchor="end">{esc(_fit(labels[i], 34))}</text>'
        )
        top = y + (ROW_H - BAR_H) / 2
        for name, start, end in segs:
            width = max(x(end) - x(start), 1.0 if name != "queued" else 0.0)
            fill, opacity = (QUEUED_COLOUR, 1.0) if name == "queued" else (colour, 0.45 if name == "starting" else 1.0)
            out.append(
                f'<rect class="segment {name}" x="{x(start):.1f}" y="{top:.1f}" width="{width:.1f}" height="{BAR_H}" '
                f'fill="{fill}" fill-opacity="{opacity}"/>'
            )
        bar_end = max(x(s[2]) for s in segs)
        out.append(
            f'<text class="outcome" x="{bar_end + 6:.1f}" y="{y + ROW_H / 2 + 4}" fill="{colour}" font-size="11">'
            f"{esc(a.outcome_text())}</text>"
        )
        out.append("</g>")
    # legend
    ly = TOP + max(rows, 1) * ROW_H + 30
    out.append(f'<g class="legend" font-size="11"><text x="12" y="{ly}" font-weight="bold">outcome</text>')
    lx = 80
    for outcome in OUTCOMES:
        if outcome == RUNNING and not any(a.outcome in ("", RUNNING) for a in attempts):
            continue
        out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{COLOURS[outcome]}"/>')
        out.append(f'<text x="{lx + 16}" y="{ly}">{esc(outcome)}</text>')
        lx += 24 + 7 * len(outcome)
    ly += 22
    out.append(f'<text x="12" y="{ly}" font-weight="bold">phase</text>')
    lx = 80
    for _name, fill, opacity, what in (
        ("queued", QUEUED_COLOUR, 1.0, "queued: waiting to launch"),
        ("starting", COLOURS[SUCCEEDED], 0.45, "starting: RunTask accepted, image pull"),
        ("running", COLOURS[SUCCEEDED], 1.0, "running: the command"),
    ):
        out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{fill}" fill-opacity="{opacity}"/>')
        out.append(f'<text x="{lx + 16}" y="{ly}">{esc(what)}</text>')
        lx += 30 + 6.3 * len(what)
    out.append("</g></svg>")
    return "\n".join(out) + "\n"


def _fit(text: str, chars: int) -> str:
    return text if len(text) <= chars else "…" + text[-(chars - 1) :]


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


def report_html(svg: str, cost: dict[str, Any], title: str, facts: list[tuple[str, str]]) -> str:
    """One self-contained page: the facts of the run, the timeline, and the cost table."""
    esc = html.escape
    rows = "\n".join(
        "<tr>"
        + "".join(
            f"<td>{esc(str(v))}</td>"
            for v in (
                r["call"], r["attempt"], r["outcome"], r["capacity"], f"{r['vcpu']:g}", f"{r['memory_gib']:g}",
                r["billed_seconds"], r["vcpu_seconds"], r["gb_seconds"],
                f"{r['public_ipv4_usd']:.6f}" if r["public_ipv4"] else "-", f"{r['usd']:.6f}",
            )
        )
        + "</tr>"
        for r in cost["attempts"]
    )
    fact_rows = "\n".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: DejaVu Sans, Helvetica, Arial, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin: 12px 0; font-size: 13px; }}
th, td {{ border: 1px solid #d5d9e0; padding: 3px 8px; text-align: left; }}
td:nth-child(n+5) {{ text-align: right; }}
.facts th {{ background: #f3f4f6; }}
svg {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>{esc(title)}</h1>
<table class="facts">{fact_rows}</table>
<h2>Task timeline</h2>
<p>One bar per task attempt; hover a bar for its size, phases, cost and ECS task.</p>
{svg}
<h2>Cost estimate</h2>
<p>{esc(cost['method'])}. Total: <b>{cost['total_usd']:.4f} {esc(cost['currency'])}</b>
({cost['totals']['vcpu_seconds']:g} vCPU-seconds, {cost['totals']['gb_seconds']:g} GB-seconds;
public IPv4 addresses {cost['public_ipv4_usd']:.4f} {esc(cost['currency'])} of it).</p>
<p>Prices ({esc(str(cost['prices'].get('region', '')))}, {esc(cost['currency'])} per hour): {esc(price_text(cost['prices']))}</p>
<table class="cost"><tr><th>call</th><th>attempt</th><th>outcome</th><th>capacity</th><th>vCPU</th><th>GiB</th>
<th>billed s</th><th>vCPU-s</th><th>GB-s</th><th>public IPv4</th><th>{esc(cost['currency'])}</th></tr>
{rows}
</table>
</body></html>
"""
