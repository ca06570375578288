"""The run report as pictures and a page, from the attempts the container backends record
(``attempts.LOG``) and their cost (``cost.estimate_cost``):

- ``timeline_svg``: a self-contained SVG, one bar per attempt, split into queued (waiting for a
  launch token and for RunTask), starting (RunTask accepted until the container runs: ENI, image
  pull) and running; coloured by outcome, labelled with the call, over a time axis, with a legend;
- ``report_html``: one page holding the run's facts, the timeline, the cost table and each task
  attempt's image and digest, readable offline.
"""

from __future__ import annotations

import html
import math
import os
import time
from typing import Any

from ..attempts import CANCELLED, FAILED, FAILED_TO_START, INTERRUPTED, OUT_OF_MEMORY, OUTCOMES, RUNNING, SUCCEEDED, Attempt
from .cost import price_text

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
    # every other row's background, under the gridlines (drawn over them, they hid the lines)
    out.append('<g class="stripes" fill="#f7f8fa">')
    out.extend(f'<rect x="0" y="{TOP + i * ROW_H}" width="{WIDTH}" height="{ROW_H}"/>' for i in range(1, rows, 2))
    out.append("</g>")
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
    # each attempt's cost row: cost.json's rows are the attempts', in the same order (an attempt's
    # (call, try) is not its own: an out-of-memory retry runs inside one miniwdl try)
    priced = (costs or {}).get("attempts", [])
    rates = {(r["call"], r["attempt"]): r for r in priced}
    for i, a in enumerate(attempts):
        y = TOP + i * ROW_H
        colour = COLOURS.get(a.outcome or RUNNING, COLOURS[RUNNING])
        segs = _segments(a, now)
        durations = {name: end - start for name, start, end in segs}
        cost = priced[i] if len(priced) == len(attempts) else rates.get((a.call_path(), a.attempt))
        tip = (
            f"{labels[i]}: {a.outcome_text()}"
            + (f" ({a.detail})" if a.detail else "")
            + f"\n{a.capacity or '?'} {a.cpu / 1024:g} vCPU, {a.memory / 1024:g} GiB"
            + (f", {a.gpus} GPU" + ("s" if a.gpus > 1 else "") if a.gpus else "")
            + (f", {a.ephemeral_gib} GiB disk" if a.ephemeral_gib != 20 else "")
            + (f", {a.scratch_gib} GiB EBS scratch" if a.scratch_gib else "")
            + (f", {a.image}" if a.image else "")
            + (f" as {a.image_uri}" if a.image_uri and a.image_uri != a.image else "")
            + (f" ({a.image_digest})" if a.image_digest else "")
            + (", public IPv4" if a.public_ip else "")
            + f"\nqueued {_duration(durations.get('queued'))}, starting {_duration(durations.get('starting'))}, "
            f"running {_duration(durations.get('running'))}"
            + (f"\n~${cost['usd']:.4f}" if cost else "")
            + (f"\n{a.task_arn}" if a.task_arn else "")
        )
        out.append(
            f'<g class="attempt" data-call="{esc(a.call_path())}" data-attempt="{a.attempt}" '
            f'data-outcome="{esc(a.outcome or RUNNING)}"><title>{esc(tip)}</title>'
        )
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
        lx += 30 + 6.3 * len(outcome)
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


def images_html(images: list[dict[str, Any]]) -> str:
    """The page's table of what each task attempt ran (``provenance.task_images``)."""
    esc = html.escape
    if not images:
        return ""
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{esc(str(i[k] or '-'))}</td>" for k in ("call", "attempt", "image", "image_uri", "image_digest"))
        + "</tr>"
        for i in images
    )
    return (
        "<h2>Images</h2>\n<p>What each task attempt ran: the image as the task names it, as it was pulled "
        "(through the image cache, if any), and its digest.</p>\n"
        '<table class="images"><tr><th>call</th><th>attempt</th><th>image</th><th>as run</th><th>digest</th></tr>\n'
        f"{rows}\n</table>\n"
    )


def groups_html(cost: dict[str, Any]) -> str:
    """The cost by WDL task, and by label (where the run has labels)."""
    esc = html.escape
    currency = esc(cost["currency"])
    tasks = "\n".join(
        f"<tr class=\"task\"><td>{esc(name)}</td><td>{g['attempts']}</td><td>{g['billed_seconds']:g}</td><td>{g['usd']:.6f}</td></tr>"
        for name, g in (cost.get("by_task") or {}).items()
    )
    page = (
        "<h3>By task</h3>\n<table class=\"by-task\"><tr><th>task</th><th>attempts</th><th>billed s</th>"
        f"<th>{currency}</th></tr>\n{tasks}\n</table>\n"
    )
    labels = "\n".join(
        f"<tr class=\"label\"><td>{esc(key)}</td><td>{esc(value)}</td><td>{usd:.6f}</td></tr>"
        for key, values in (cost.get("by_label") or {}).items()
        for value, usd in values.items()
    )
    if labels:
        page += (
            "<h3>By label</h3>\n<p>The run's labels are AWS tags of its tasks: activate them as cost allocation tags "
            "to see them in Cost Explorer.</p>\n<table class=\"by-label\"><tr><th>label</th><th>value</th>"
            f"<th>{currency}</th></tr>\n{labels}\n</table>\n"
        )
    return page


def reused_html(reused: list[dict[str, str]]) -> str:
    """The calls taken from the call cache, each with the run and call it came from."""
    if not reused:
        return ""
    esc = html.escape
    rows = "\n".join(
        f"<tr><td>{esc(r['call'])}</td><td>{esc(r['task'])}</td><td>{esc(r['from_run'])}</td><td>{esc(r['from_call'])}</td></tr>"
        for r in reused
    )
    return (
        "<h2>Reused from the call cache</h2>\n<p>These calls did not run: their results are an earlier call's "
        "(<code>miniwdl-fargate cache explain RUN CALL</code> says why a call did run).</p>\n"
        '<table class="reused"><tr><th>call</th><th>task</th><th>from run</th><th>from call</th></tr>\n'
        f"{rows}</table>\n"
    )


def report_html(
    svg: str, cost: dict[str, Any], title: str, facts: list[tuple[str, str]], images: list[dict[str, Any]] | None = None,
    reused: list[dict[str, str]] | None = None,
) -> str:
    """One self-contained page: the facts of the run, the timeline, the calls reused from the call
    cache, the cost table, and the images."""
    esc = html.escape
    rows = "\n".join(
        "<tr>"
        + "".join(
            f"<td>{esc(str(v))}</td>"
            for v in (
                r["call"], r["attempt"], r["outcome"], r["capacity"], f"{r['vcpu']:g}", f"{r['memory_gib']:g}",
                r.get("gpus") or "-", r.get("scratch_gib") or "-", r["billed_seconds"], r["vcpu_seconds"], r["gb_seconds"],
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
table.cost td:nth-child(n+5) {{ text-align: right; }}
td:first-child {{ white-space: nowrap; }}
table.images td {{ overflow-wrap: anywhere; }}
.facts th {{ background: #f3f4f6; }}
svg {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>{esc(title)}</h1>
<table class="facts">{fact_rows}</table>
<h2>Task timeline</h2>
<p>One bar per task attempt; hover a bar for its size, phases, cost and ECS task.</p>
{svg}
{reused_html(reused or [])}<h2>Cost estimate</h2>
<p>{esc(cost['method'][:1].upper() + cost['method'][1:])}. Total: <b>{cost['total_usd']:.4f} {esc(cost['currency'])}</b>
({cost['totals']['vcpu_seconds']:g} vCPU-seconds, {cost['totals']['gb_seconds']:g} GB-seconds;
public IPv4 addresses {cost['public_ipv4_usd']:.4f} {esc(cost['currency'])} of it).</p>
<p>Prices ({esc(str(cost['prices'].get('region', '')))}, {esc(cost['currency'])} per hour): {esc(price_text(cost['prices']))}</p>
<table class="cost"><tr><th>call</th><th>attempt</th><th>outcome</th><th>capacity</th><th>vCPU</th><th>GiB</th>
<th>GPUs</th><th>EBS scratch GiB</th><th>billed s</th><th>vCPU-s</th><th>GB-s</th><th>public IPv4</th><th>{esc(cost['currency'])}</th></tr>
{rows}
</table>
{groups_html(cost)}{images_html(images or [])}</body></html>
"""
