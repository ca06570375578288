"""The run report in a real browser: report.html and timeline.svg, as the driver renders them
(report/run.py ``render_report``) for a run with a retried task, a Spot interruption, a call
taken from the call cache, labels and the driver's own row, opened in headless Chromium
(tests/chromium.py): no console error, every task there and drawn inside the picture, and a
screenshot (``make screenshot`` refreshes docs/report-screenshot.png from it).

Skipped only where no Chromium binary can be found; fails instead when
MINIWDL_FARGATE_REQUIRE_BROWSER=1 (.ci/run, which installs Debian's chromium: .ci/browser).
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest

from miniwdl_fargate.attempts import FAILED, INTERRUPTED, OUT_OF_MEMORY, SUCCEEDED, Attempt
from miniwdl_fargate.report.cost import Prices
from miniwdl_fargate.report.run import render_report
from tests.chromium import Browser, find_binary

T = 1_800_000_000.0
RUN = "r-20270115-genomes"
EFS = f"/mnt/efs/runs/{RUN}/work"
IMAGE = "public.ecr.aws/biocontainers/samtools:1.17"
DIGEST = "sha256:" + "5e" * 32


def task(call: str, path: str, attempt: int = 1, **facts) -> Attempt:
    """A WDL task attempt on Fargate as the backend records it."""
    defaults = dict(run=RUN, cpu=1024, memory=2048, capacity="FARGATE", image=IMAGE, image_digest=DIGEST,
                    public_ip=True, task_arn=f"arn:aws:ecs:us-east-1:123456789012:task/wdl/{call}{attempt}")
    return Attempt(call=call, attempt=attempt, path=f"{EFS}/{path}", **{**defaults, **facts})


def recorded() -> list[Attempt]:
    """A run's attempts: a scatter on Spot (one interrupted and retried), an out-of-memory kill
    retried with more memory, a sub-workflow's call, and a last task that failed."""
    return [
        task("call-fetch", "call-fetch", queued=T, launched=T + 1, running=T + 14, stopped=T + 70, billing_start=T + 3,
             outcome=SUCCEEDED, exit_code=0),
        task("call-align-0", "call-align-0", capacity="FARGATE_SPOT", cpu=4096, memory=8192, queued=T + 70,
             launched=T + 71, running=T + 90, stopped=T + 400, outcome=SUCCEEDED, exit_code=0),
        task("call-align-1", "call-align-1", capacity="FARGATE_SPOT", cpu=4096, memory=8192, queued=T + 70,
             launched=T + 72, running=T + 92, stopped=T + 210, outcome=INTERRUPTED,
             detail="Your Spot Task was interrupted."),
        task("call-align-1", "call-align-1", 2, capacity="FARGATE_SPOT", cpu=4096, memory=8192, queued=T + 211,
             launched=T + 212, running=T + 230, stopped=T + 520, outcome=SUCCEEDED, exit_code=0),
        task("call-sort", "call-sub/call-sort", cpu=2048, memory=4096, queued=T + 520, launched=T + 521,
             running=T + 535, stopped=T + 580, outcome=OUT_OF_MEMORY, exit_code=137,
             detail="OutOfMemoryError: Container killed due to memory usage"),
        task("call-sort", "call-sub/call-sort", 2, cpu=2048, memory=8192, queued=T + 580, launched=T + 581,
             running=T + 596, stopped=T + 700, outcome=SUCCEEDED, exit_code=0),
        task("call-report", "call-report", cpu=256, memory=512, queued=T + 700, launched=T + 701, running=T + 712,
             stopped=T + 730, outcome=FAILED, exit_code=1, detail="Essential container in task exited"),
    ]


def driver() -> Attempt:
    return Attempt(call="driver", attempt=1, run=RUN, cpu=1024, memory=2048, capacity="FARGATE",
                   image="123456789012.dkr.ecr.us-east-1.amazonaws.com/miniwdl-fargate-driver:latest",
                   image_digest="sha256:" + "d1" * 32, queued=T - 30, launched=T - 30, running=T - 12, stopped=T + 735,
                   billing_start=T - 28, outcome=FAILED, detail="the driver, until this report", public_ip=True,
                   task_arn="arn:aws:ecs:us-east-1:123456789012:task/wdl/driver")


REUSED = [{"call": "call-index", "task": "index", "from_run": "r-20270114-genomes", "from_call": "call-index"}]
LABELS = {"project": "genomes", "team": "lab-7"}


def report(directory: Path) -> tuple[Path, Path]:
    """report.html and timeline.svg of the run, as the driver renders them, in ``directory``."""
    run = SimpleNamespace(run_id=RUN, results=f"s3://results-bucket/results/{RUN}/", labels=lambda: dict(LABELS))
    svg, page, _cost = render_report(run, "FAILED", 765.0, T + 735, driver(), recorded(), Prices(), REUSED, len(REUSED))
    (directory / "timeline.svg").write_text(svg)
    (directory / "report.html").write_text(page)
    return directory / "report.html", directory / "timeline.svg"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = find_binary()
    if not binary:
        reason = "no Chromium binary found (apt-get install chromium, or set MINIWDL_FARGATE_CHROMIUM)"
        if os.environ.get("MINIWDL_FARGATE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}, and MINIWDL_FARGATE_REQUIRE_BROWSER=1")
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("chromium")
    started = Browser(binary, home / "profile", home / "chromium.log")
    yield started
    started.close()


#: the attempts drawn in the timeline: [call, attempt] in order (the driver first)
DRAWN = "[...document.querySelectorAll('g.attempt')].map(g => [g.dataset.call, +g.dataset.attempt])"
#: what of the picture is drawn outside it, or over something else, as the browser lays the text out
OUTSIDE = """(() => {
  const svg = document.querySelector('svg'), box = svg.viewBox.baseVal, out = [];
  for (const t of svg.querySelectorAll('text')) {
    const b = t.getBBox();
    if (b.x < 0 || b.y < 0 || b.x + b.width > box.width || b.y + b.height > box.height) out.push(t.textContent);
  }
  const legend = [...svg.querySelectorAll('g.legend text')].map(t => [t.textContent, t.getBBox()]);
  const boxes = [...svg.querySelectorAll('g.legend rect')].map(r => r.getBBox());
  for (const [name, b] of legend)
    for (const r of boxes)
      if (b.x < r.x + r.width && r.x < b.x + b.width && b.y < r.y + r.height && r.y < b.y + b.height)
        out.push('legend: ' + name + ' over a swatch');
  return out;
})()"""


def test_the_report_and_its_timeline_render_in_a_browser_without_errors_and_show_every_task(browser, tmp_path):
    page, picture = report(tmp_path)
    calls = [[a.call, a.attempt] for a in [driver(), *recorded()]]

    browser.open(picture)
    assert browser.evaluate("document.documentElement.localName") == "svg"  # (not an XML error page)
    assert browser.evaluate(DRAWN) == calls
    assert browser.evaluate(OUTSIDE) == []
    assert browser.problems() == []

    browser.open(page)
    assert browser.evaluate("document.title") == f"run {RUN}"
    assert browser.evaluate(DRAWN) == calls
    assert browser.evaluate(OUTSIDE) == []
    svg_width = browser.evaluate("document.querySelector('svg').getBoundingClientRect().width")
    assert svg_width > 900  # drawn at its size, not squeezed (the window is 1200 px wide)
    # nothing wider than the window (image names and digests wrap), and no call name broken
    assert browser.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    lines = """[...document.querySelectorAll('td:first-child')].map(td => {
      const text = document.createRange(); text.selectNodeContents(td); return text.getClientRects().length; })"""
    assert set(browser.evaluate(lines)) == {1}
    labels = browser.evaluate("[...document.querySelectorAll('g.attempt text.label')].map(t => t.textContent)")
    assert labels == ["driver", "call-fetch", "call-align-0", "call-align-1", "call-align-1 #2",
                      "call-sub/call-sort", "call-sub/call-sort #2", "call-report"]
    # every attempt in the cost table, every task in the by-task table, the reused call, the labels
    column = "[...document.querySelectorAll('table.%s tr')].slice(1).map(r => r.cells[%d].textContent)"
    assert browser.evaluate(column % ("cost", 0)) == [c for c, _ in calls]
    assert browser.evaluate(column % ("by-task", 0)) == ["align", "driver", "fetch", "report", "sort"]  # (by WDL name)
    assert browser.evaluate(column % ("reused", 0)) == ["call-index"]
    assert browser.evaluate(column % ("by-label", 0)) == list(LABELS)
    assert "call(s) reused from the call cache" in browser.evaluate("document.body.innerText")

    shot = browser.screenshot(tmp_path / "report.png", full_page=False)  # (the facts, the timeline, the reused call)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", shot[16:24]) == (1200, 900)  # the IHDR chunk: the window's size
    assert browser.problems() == []
    if os.environ.get("MINIWDL_FARGATE_SCREENSHOT"):  # make screenshot
        shutil.copyfile(tmp_path / "report.png", os.environ["MINIWDL_FARGATE_SCREENSHOT"])


def test_what_the_browser_test_counts_as_a_problem(browser, tmp_path):
    """(The check above is worth something: a page with an uncaught exception, a console error
    and a file that is not there shows all three.)"""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="absent.png">'
                   '<script>console.error("broken"); null.x;</script></body></html>')
    browser.open(bad)
    found = browser.problems()
    assert any(p.startswith("exception:") and "null" in p for p in found), found
    assert "console.error: ['broken']" in found
    assert any("absent.png" in p for p in found), found
