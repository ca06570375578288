"""The run report: attempts -> SVG timeline (parsed as XML) and cost estimate."""

import json
import threading
import xml.etree.ElementTree as ET

import pytest

from miniwdl_fargate.report import cost as report_cost
from miniwdl_fargate.report import render
from miniwdl_fargate.report import run as report_run
from miniwdl_fargate.attempts import (
    CANCELLED, FAILED, FAILED_TO_START, INTERRUPTED, OUT_OF_MEMORY, SUCCEEDED, Attempt, AttemptLog,
)
from miniwdl_fargate.report.cost import Prices

SVG = "{http://www.w3.org/2000/svg}"
T = 1_800_000_000.0


def attempts():
    return [
        Attempt(call="call-a", attempt=1, cpu=1024, memory=2048, capacity="FARGATE", path="/r/w/call-a",
                queued=T, launched=T + 1, running=T + 11, stopped=T + 101, outcome=SUCCEEDED, exit_code=0),
        Attempt(call="call-b", attempt=1, cpu=4096, memory=8192, capacity="FARGATE", path="/r/w/call-b",
                queued=T, launched=T + 2, running=T + 12, stopped=T + 40, outcome=OUT_OF_MEMORY, exit_code=137),
        Attempt(call="call-b", attempt=2, cpu=4096, memory=16384, capacity="FARGATE", path="/r/w/call-b",
                queued=T + 40, launched=T + 41, running=T + 50, stopped=T + 200, billing_start=T + 45,
                outcome=SUCCEEDED, exit_code=0),
        Attempt(call="call-x", attempt=1, cpu=2048, memory=4096, capacity="FARGATE_SPOT", path="/r/w/call-sub/call-x",
                queued=T + 5, launched=T + 6, running=T + 16, stopped=T + 30, outcome=INTERRUPTED),
        Attempt(call="call-y", attempt=1, cpu=256, memory=512, capacity="FARGATE", path="/r/w/call-y",
                queued=T + 5, launched=T + 6, running=None, stopped=T + 20, outcome=FAILED_TO_START),
        Attempt(call="call-z", attempt=1, cpu=256, memory=512, capacity="FARGATE", path="/r/w/call-z",
                queued=T + 5, launched=None, running=None, stopped=T + 9, outcome=CANCELLED),
    ]


def parse(svg):
    root = ET.fromstring(svg)  # well-formed, self-contained XML
    bars = []
    for g in root.iter(f"{SVG}g"):
        if g.get("class") != "attempt":
            continue
        segments = [r for r in g.iter(f"{SVG}rect") if "segment" in (r.get("class") or "")]
        texts = {t.get("class"): t.text for t in g.iter(f"{SVG}text")}
        bars.append(
            {
                "label": texts["label"],
                "outcome": g.get("data-outcome"),
                "text": texts["outcome"],
                "segments": [(r.get("class").split()[1], r.get("fill"), float(r.get("x")), float(r.get("width"))) for r in segments],
                "title": g.find(f"{SVG}title").text,
            }
        )
    return root, bars


def test_one_bar_per_attempt_coloured_by_outcome_and_labelled_with_its_call():
    cost = report_cost.estimate_cost(attempts(), Prices(), now=T + 200)
    root, bars = parse(render.timeline_svg(attempts(), title="run r-1", subtitle="FAILED", now=T + 200, costs=cost))
    assert [b["label"] for b in bars] == ["call-a", "call-b", "call-b #2", "call-sub/call-x", "call-y", "call-z"]
    assert [b["text"] for b in bars] == [
        "succeeded", "out of memory (exit 137)", "succeeded", "interrupted", "failed to start", "cancelled",
    ]
    for bar in bars:
        colour = render.COLOURS[bar["outcome"]]
        for name, fill, _x, _w in bar["segments"]:
            assert fill == (render.QUEUED_COLOUR if name == "queued" else colour)
    # phases: queued, then starting (RunTask accepted), then running; what never happened is absent
    assert [s[0] for s in bars[0]["segments"]] == ["queued", "starting", "running"]
    assert [s[0] for s in bars[4]["segments"]] == ["queued", "starting"]  # never ran
    assert [s[0] for s in bars[5]["segments"]] == ["queued"]  # never launched
    # segments follow each other along the time axis, and time runs left to right
    a = bars[0]["segments"]
    assert a[0][2] + a[0][3] == pytest.approx(a[1][2], abs=0.2) and a[1][2] + a[1][3] == pytest.approx(a[2][2], abs=0.2)
    assert bars[2]["segments"][0][2] > bars[1]["segments"][0][2]  # the retry was queued later
    assert "FARGATE 4 vCPU, 16 GiB" in bars[2]["title"] and "~$" in bars[2]["title"]
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "run r-1" in texts and "0s" in texts and "3m" in texts  # title and time axis (200 s -> 0..3m20s)
    for outcome in ("succeeded", "failed", "out of memory", "interrupted", "failed to start", "cancelled"):
        assert outcome in texts  # the legend


def test_every_other_row_is_shaded_under_the_gridlines():
    root, _bars = parse(render.timeline_svg(attempts(), now=T + 200))
    children = list(root)
    kinds = [c.get("class") for c in children]
    stripes, axis = children[kinds.index("stripes")], kinds.index("axis")
    assert kinds.index("stripes") < axis  # (drawn over the gridlines, the shading hid them)
    assert [float(r.get("y")) for r in stripes] == [render.TOP + i * render.ROW_H for i in (1, 3, 5)]
    assert not any(r.get("fill") == "#f7f8fa" for g in children if g.get("class") == "attempt" for r in g.iter(f"{SVG}rect"))


def test_an_empty_run_still_draws():
    root, bars = parse(render.timeline_svg([], title="nothing", now=T))
    assert bars == [] and "no WDL task ran" in [t.text for t in root.iter(f"{SVG}text")]


def test_labels_and_details_are_escaped():
    odd = Attempt(call="call-<b>&", attempt=1, queued=T, launched=T + 1, running=T + 2, stopped=T + 3,
                  outcome=FAILED, exit_code=1, detail='reason "<x>"')
    _root, bars = parse(render.timeline_svg([odd], now=T + 3))
    assert bars[0]["label"] == "call-<b>&" and 'reason "<x>"' in bars[0]["title"]


def test_cost_per_second_with_a_one_minute_minimum_from_the_image_pull():
    cost = report_cost.estimate_cost(attempts(), Prices(), now=T + 200)
    rows = {(r["call"], r["attempt"]): r for r in cost["attempts"]}
    assert rows[("call-a", 1)]["billed_seconds"] == 100  # launched -> stopped (no pull time known)
    assert rows[("call-b", 1)]["billed_seconds"] == 60  # 38 s, billed the minimum
    assert rows[("call-b", 2)]["billed_seconds"] == 155  # from pullStartedAt
    assert rows[("call-y", 1)]["billed_seconds"] == 0  # stopped before its image pull began
    assert rows[("call-z", 1)]["billed_seconds"] == 0  # never launched
    b2 = rows[("call-b", 2)]
    assert b2["vcpu_seconds"] == 4 * 155 and b2["gb_seconds"] == 16 * 155
    assert b2["usd"] == pytest.approx((4 * 155 * 0.04048 + 16 * 155 * 0.004445) / 3600, abs=1e-6)
    spot = rows[("call-x", 1)]
    assert spot["usd"] == pytest.approx((2 * 60 * 0.01334058 + 4 * 60 * 0.00146489) / 3600, abs=1e-6)
    assert cost["total_usd"] == pytest.approx(sum(r["usd"] for r in cost["attempts"]), abs=1e-5)
    assert cost["totals"]["vcpu_seconds"] == pytest.approx(sum(r["vcpu_seconds"] for r in cost["attempts"]))


def test_ephemeral_storage_beyond_20_gib_is_priced():
    big = Attempt(call="c", attempt=1, cpu=1024, memory=2048, ephemeral_gib=120, capacity="FARGATE",
                  queued=T, launched=T, running=T + 1, stopped=T + 3600, outcome=SUCCEEDED)
    cost = report_cost.estimate_cost([big], Prices())
    assert cost["total_usd"] == pytest.approx(0.04048 + 2 * 0.004445 + 100 * 0.000111, abs=1e-6)


def test_each_attempt_row_has_its_start_stop_and_exit_code_for_the_wes_task_logs():
    ran = Attempt(call="c", attempt=1, cpu=1024, memory=2048, capacity="FARGATE", queued=T, launched=T,
                  running=T + 1, stopped=T + 61, outcome="failed", exit_code=3)
    never = Attempt(call="d", attempt=1, cpu=1024, memory=2048, capacity="FARGATE", queued=T, stopped=T + 1, outcome="failed to start")
    rows = report_cost.estimate_cost([ran, never], Prices())["attempts"]
    from datetime import datetime

    assert datetime.fromisoformat(rows[0]["started_at"]).timestamp() == T + 1
    assert datetime.fromisoformat(rows[0]["stopped_at"]).timestamp() == T + 61 and rows[0]["exit_code"] == 3
    assert (rows[1]["started_at"], rows[1]["exit_code"]) == (None, None)


def test_prices_replace_the_defaults_entry_by_entry(tmp_path):
    prices = Prices.parse('{"region": "eu-west-1", "FARGATE": {"vcpu_hour": 0.04456, "gb_hour": 0.004865}}')
    assert prices.table["region"] == "eu-west-1"
    assert prices.rate("FARGATE") == {"vcpu_hour": 0.04456, "gb_hour": 0.004865}
    assert prices.rate("FARGATE_SPOT") == report_cost.DEFAULT_PRICES["FARGATE_SPOT"]
    table = tmp_path / "prices.json"
    table.write_text(json.dumps({"FARGATE_SPOT": {"vcpu_hour": 0.01, "gb_hour": 0.001}, "minimum_seconds": 0}))
    from_file = Prices.parse(str(table))
    assert from_file.rate("FARGATE_SPOT")["vcpu_hour"] == 0.01 and from_file.table["minimum_seconds"] == 0
    with pytest.raises(ValueError, match="vcpu_hour"):
        Prices.parse('{"FARGATE": {"vcpu": 1}}')
    assert Prices.parse("").table == report_cost.DEFAULT_PRICES
    # a misspelt key changed nothing, silently
    with pytest.raises(ValueError, match=r"^public_ip_hour: not a key of a price table \(its keys: currency, region, FARGATE, "):
        Prices.parse('{"public_ip_hour": 0.005}')
    with pytest.raises(ValueError, match=r"^FARGATE_SPOTT: not a key of a price table"):  # (a capacity misspelt)
        Prices.parse('{"FARGATE_SPOTT": {"vcpu_hour": 0.01, "gb_hour": 0.001}}')


def test_a_price_table_for_another_region_says_which_prices_are_still_us_east_1s():
    """The documented {"region": "eu-west-1", "FARGATE": {...}} kept us-east-1's Spot, managed
    instances, storage and IPv4 prices, and naming the region silenced the region warning."""
    from miniwdl_fargate.report.run import prices_region_warning

    prices = Prices.parse('{"region": "eu-west-1", "FARGATE": {"vcpu_hour": 0.04456, "gb_hour": 0.004865}}')
    warning = prices_region_warning(prices, "eu-west-1")
    assert warning.startswith("the prices name eu-west-1, but these of them are still us-east-1's list prices: FARGATE_SPOT, ")
    assert "FARGATE," not in warning and "public_ipv4_hour" in warning
    whole = {k: v for k, v in report_cost.DEFAULT_PRICES.items() if k != "currency"}
    assert prices_region_warning(Prices.parse(json.dumps({**whole, "region": "eu-west-1"})), "eu-west-1") is None
    assert prices_region_warning(Prices(), "us-east-1") is None


def test_unknown_capacity_is_not_priced_but_said():
    local = Attempt(call="c", attempt=1, cpu=1024, memory=1024, capacity="local",
                    queued=T, launched=T, running=T, stopped=T + 5, outcome=SUCCEEDED)
    cost = report_cost.estimate_cost([local], Prices())
    assert cost["total_usd"] == 0 and cost["unpriced_capacity"] == ["local"]


def test_the_attempt_log_is_thread_safe_and_filters_by_run():
    log = AttemptLog()

    def work(run, n):
        for i in range(n):
            a = log.begin(call=f"call-{i}", attempt=1, run=run)
            log.update(a, launched=a.queued)
            log.finish(a, SUCCEEDED)

    threads = [threading.Thread(target=work, args=(f"r{k}", 200)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(log.snapshot()) == 800 and len(log.snapshot(run="r2")) == 200
    assert all(a.outcome == SUCCEEDED and a.stopped for a in log.snapshot())
    # the backend's own verdict (Spot, OOM) is kept over the generic one
    a = log.begin(call="x", attempt=1)
    log.update(a, outcome=OUT_OF_MEMORY)
    log.finish(a, FAILED, exit_code=137)
    assert log.snapshot(run="")[-1].outcome == OUT_OF_MEMORY


def test_the_page_holds_the_svg_and_the_cost_table():
    cost = report_cost.estimate_cost(attempts(), Prices(), now=T + 200)
    svg = render.timeline_svg(attempts(), now=T + 200)
    page = render.report_html(svg, cost, "run r-1", [("status", "FAILED")])
    assert page.startswith("<!DOCTYPE html>") and svg in page
    assert page.count("<tr><td>") == len(cost["attempts"])
    assert "eu-west-1" not in page and "us-east-1" in page


def test_a_calls_attempts_are_listed_together():
    log = AttemptLog()
    for call, attempt, queued in (("a", 1, 1.0), ("b", 1, 2.0), ("a", 2, 3.0), ("c", 1, 4.0), ("b", 2, 5.0)):
        log.begin(call=call, attempt=attempt, queued=queued, path=f"/r/{call}")
    assert [(a.call, a.attempt) for a in log.snapshot()] == [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("c", 1)]


def test_each_public_ipv4_address_is_priced_over_the_tasks_billed_seconds():
    """Amazon VPC bills every public IPv4 address (0.005 USD an hour by default): a task with
    assignPublicIp ENABLED holds one while Fargate bills it, with the same one-minute minimum."""
    public = Attempt(call="c", attempt=1, cpu=1024, memory=2048, capacity="FARGATE", public_ip=True,
                     queued=T, launched=T, running=T + 1, stopped=T + 3600, billing_start=T, outcome=SUCCEEDED)
    short = dataclasses_replace(public, call="d", stopped=T + 10)  # billed the 60 s minimum
    private = dataclasses_replace(public, call="e", public_ip=False)
    never = dataclasses_replace(public, call="f", launched=None, running=None, billing_start=None)  # no task, no address
    cost = report_cost.estimate_cost([public, short, private, never], Prices())
    rows = {r["call"]: r for r in cost["attempts"]}
    assert rows["c"]["public_ipv4"] and rows["c"]["public_ipv4_usd"] == pytest.approx(0.005)
    assert rows["c"]["usd"] == pytest.approx(0.04048 + 2 * 0.004445 + 0.005, abs=1e-6)
    assert rows["d"]["public_ipv4_usd"] == pytest.approx(60 * 0.005 / 3600, abs=1e-6)  # rounded to 6 places
    assert rows["e"]["public_ipv4"] is False and rows["e"]["public_ipv4_usd"] == 0
    assert rows["e"]["usd"] == pytest.approx(0.04048 + 2 * 0.004445, abs=1e-6)
    assert rows["f"]["public_ipv4_usd"] == 0
    assert cost["public_ipv4_usd"] == pytest.approx(0.005 + 60 * 0.005 / 3600, abs=1e-6)
    assert cost["totals"]["public_ipv4_seconds"] == 3600 + 60
    assert cost["total_usd"] == pytest.approx(sum(r["usd"] for r in cost["attempts"]), abs=1e-5)
    assert "public IPv4" in cost["method"]
    # a region's own price replaces the default
    cheaper = report_cost.estimate_cost([public], Prices.parse('{"public_ipv4_hour": 0.004}'))
    assert cheaper["public_ipv4_usd"] == pytest.approx(0.004)


def test_a_price_that_is_not_a_number_is_refused_by_name():
    for bad in ('{"public_ipv4_hour": "cheap"}', '{"public_ipv4_hour": -1}', '{"minimum_seconds": true}'):
        key = json.loads(bad).popitem()[0]
        with pytest.raises(ValueError, match=f"{key}: expected a number of at least 0"):
            Prices.parse(bad)


def test_the_page_shows_the_public_ipv4_charge_per_row_and_in_total():
    driver_row = Attempt(call="driver", attempt=1, cpu=1024, memory=2048, capacity="FARGATE", public_ip=True,
                         queued=T, launched=T, running=T + 5, stopped=T + 200, outcome=SUCCEEDED)
    cost = report_cost.estimate_cost([driver_row, *attempts()], Prices(), now=T + 200)
    page = render.report_html(render.timeline_svg([driver_row], now=T + 200), cost, "run r-1", [])
    assert "<th>public IPv4</th>" in page
    assert "<td>driver</td>" in page and f"<td>{cost['attempts'][0]['public_ipv4_usd']:.6f}</td>" in page
    assert f"public IPv4 addresses {cost['public_ipv4_usd']:.4f} USD" in page
    assert "public IPv4 address 0.005 each" in page


def dataclasses_replace(attempt, **changes):
    import dataclasses

    return dataclasses.replace(attempt, **changes)


# -- beyond Fargate: managed instances, GPUs, EBS scratch ------------------------------------------

MI = report_cost.DEFAULT_PRICES["MANAGED_INSTANCES"]
MI_SPOT = report_cost.DEFAULT_PRICES["MANAGED_INSTANCES_SPOT"]


def hour_on(capacity, **facts):
    """An attempt billed exactly one hour on ``capacity``."""
    return Attempt(call="c", attempt=1, capacity=capacity, queued=T, launched=T, running=T + 1, stopped=T + 3600,
                   billing_start=T, outcome=SUCCEEDED, **facts)


def test_a_task_on_managed_instances_costs_its_share_of_the_instance_plus_the_management_fee():
    gpu_task = hour_on("MANAGED_INSTANCES", cpu=32 * 1024, memory=128 * 1024, gpus=1)
    cost = report_cost.estimate_cost([gpu_task], Prices())
    [row] = cost["attempts"]
    share = 32 * MI["vcpu_hour"] + 128 * MI["gb_hour"] + 1 * MI["gpu_hour"]
    assert row["management_fee_usd"] == pytest.approx(share * MI["management_fee_fraction"], abs=1e-6)
    assert row["usd"] == pytest.approx(share * (1 + MI["management_fee_fraction"]), abs=1e-6)
    assert (row["capacity"], row["gpus"], row["gpu_seconds"]) == ("MANAGED_INSTANCES", 1, 3600)
    assert cost["totals"]["gpu_seconds"] == 3600 and "unpriced_capacity" not in cost
    spot = report_cost.estimate_cost([hour_on("MANAGED_INSTANCES_SPOT", cpu=32 * 1024, memory=128 * 1024, gpus=1)], Prices())
    spot_share = 32 * MI_SPOT["vcpu_hour"] + 128 * MI_SPOT["gb_hour"] + MI_SPOT["gpu_hour"]
    assert spot["total_usd"] == pytest.approx(spot_share * (1 + MI_SPOT["management_fee_fraction"]), abs=1e-6)
    # the fee is the same dollars on Spot (it is charged on the instance type): about the on-demand fee
    assert spot["attempts"][0]["management_fee_usd"] == pytest.approx(row["management_fee_usd"], rel=0.02)


def test_managed_instances_bill_the_same_one_minute_minimum():
    short = dataclasses_replace(hour_on("MANAGED_INSTANCES", cpu=32 * 1024, memory=64 * 1024), stopped=T + 5)
    [row] = report_cost.estimate_cost([short], Prices())["attempts"]
    assert row["billed_seconds"] == 60
    assert row["usd"] == pytest.approx(60 * (32 * MI["vcpu_hour"] + 64 * MI["gb_hour"]) * 1.12 / 3600, abs=1e-6)


def test_an_ebs_scratch_volume_is_priced_per_gb_month_by_the_second():
    scratch = hour_on("FARGATE", cpu=1024, memory=2048, scratch_gib=500)
    [row] = report_cost.estimate_cost([scratch], Prices())["attempts"]
    assert row["scratch_gib"] == 500 and row["scratch_gb_seconds"] == 500 * 3600
    assert row["scratch_usd"] == pytest.approx(500 * 0.08 / 730, abs=1e-6)
    assert row["usd"] == pytest.approx(0.04048 + 2 * 0.004445 + 500 * 0.08 / 730, abs=1e-6)
    on_instance = hour_on("MANAGED_INSTANCES", cpu=32 * 1024, memory=64 * 1024, scratch_gib=1000)
    [mi_row] = report_cost.estimate_cost([on_instance], Prices())["attempts"]
    # the volume is EBS's, not the instance's: no management fee on it
    assert mi_row["usd"] == pytest.approx((32 * MI["vcpu_hour"] + 64 * MI["gb_hour"]) * 1.12 + 1000 * 0.08 / 730, abs=1e-6)


def test_what_an_attempt_read_and_wrote_of_efs_is_priced_per_gb_of_elastic_throughput():
    """EFS Elastic throughput bills 0.03 USD per GB read and 0.06 written: a scatter reading a
    100 GB BAM per shard could cost more there than its compute, and cost.json said nothing."""
    shard = hour_on("FARGATE", cpu=1024, memory=2048)
    shard.efs_read_bytes, shard.efs_written_bytes = 100 << 30, 10 << 30
    doc = report_cost.estimate_cost([shard, hour_on("FARGATE", cpu=1024, memory=2048)], Prices())
    row = doc["attempts"][0]
    assert (row["efs_read_bytes"], row["efs_written_bytes"]) == (100 << 30, 10 << 30)
    assert row["efs_usd"] == pytest.approx(100 * 0.03 + 10 * 0.06)
    assert row["usd"] == pytest.approx(0.04048 + 2 * 0.004445 + 3.6, abs=1e-6)
    assert (doc["totals"]["efs_read_gb"], doc["totals"]["efs_written_gb"]) == (100, 10)
    assert doc["attempts"][1]["efs_usd"] == 0
    cheaper = Prices.parse(json.dumps({"efs_read_gb": 0.0, "efs_write_gb": 0.0}))
    assert report_cost.estimate_cost([shard], cheaper)["attempts"][0]["efs_usd"] == 0


def test_managed_instances_prices_need_every_rate_and_are_checked_by_name():
    given = Prices.parse('{"MANAGED_INSTANCES": {"vcpu_hour": 0.04, "gb_hour": 0.005, "gpu_hour": 0.9, '
                         '"management_fee_fraction": 0.1}, "ebs_gb_month": 0.0952}')
    assert given.rate("MANAGED_INSTANCES")["gpu_hour"] == 0.9 and given.table["ebs_gb_month"] == 0.0952
    assert given.rate("MANAGED_INSTANCES_SPOT") == MI_SPOT
    with pytest.raises(ValueError, match='MANAGED_INSTANCES: expected .*"gpu_hour": ..., "management_fee_fraction": ...'):
        Prices.parse('{"MANAGED_INSTANCES": {"vcpu_hour": 0.04, "gb_hour": 0.005}}')
    with pytest.raises(ValueError, match="MANAGED_INSTANCES_SPOT.gpu_hour: expected a number of at least 0, got -1"):
        Prices.parse('{"MANAGED_INSTANCES_SPOT": {"vcpu_hour": 0.01, "gb_hour": 0.001, "gpu_hour": -1, '
                     '"management_fee_fraction": 0.3}}')
    with pytest.raises(ValueError, match="FARGATE.vcpu_hour: expected a number of at least 0, got 'cheap'"):
        Prices.parse('{"FARGATE": {"vcpu_hour": "cheap", "gb_hour": 0.004}}')
    with pytest.raises(ValueError, match="ebs_gb_month: expected a number of at least 0"):
        Prices.parse('{"ebs_gb_month": "0.08"}')


def test_the_page_shows_gpus_scratch_and_what_each_attempt_ran():
    from miniwdl_fargate import provenance

    gpu = hour_on("MANAGED_INSTANCES", cpu=32 * 1024, memory=64 * 1024, gpus=2, scratch_gib=500, image="ubuntu:22.04",
                  image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/docker-hub/library/ubuntu:22.04",
                  image_digest="sha256:" + "c" * 64)
    cost = report_cost.estimate_cost([gpu], Prices())
    svg = render.timeline_svg([gpu], now=T + 3600, costs=cost)
    page = render.report_html(svg, cost, "run r-1", [], provenance.task_images([gpu]))
    _root, bars = parse(svg)
    assert "MANAGED_INSTANCES 32 vCPU, 64 GiB, 2 GPUs, 500 GiB EBS scratch, ubuntu:22.04 as 123456789012" in bars[0]["title"]
    assert "sha256:" + "c" * 64 in bars[0]["title"]
    assert "<th>GPUs</th><th>EBS scratch GiB</th>" in page
    assert "<td>MANAGED_INSTANCES</td><td>32</td><td>64</td><td>2</td><td>500</td>" in page
    assert '<table class="images">' in page and f"<td>{'sha256:' + 'c' * 64}</td>" in page
    assert "MANAGED_INSTANCES 0.0333 per vCPU, 0.002475 per GB, 0.3532 per GPU, plus a 12% management fee" in page
    assert "EBS scratch volume 0.08 per GB-month" in page


def test_the_cfg_shows_the_default_prices_as_they_are():
    """aws_fargate.cfg's comment on ``prices`` (and so configuration.md) quotes the default table."""
    from pathlib import Path

    import miniwdl_fargate

    cfg = (Path(miniwdl_fargate.__file__).parent / "aws_fargate.cfg").read_text().splitlines()
    start = next(i for i, line in enumerate(cfg) if line.startswith('#   {"currency"'))
    end = cfg.index("prices =")
    quoted = json.loads(" ".join(line[1:] for line in cfg[start:end]))
    assert quoted == report_cost.DEFAULT_PRICES


@pytest.mark.parametrize("layout, hits", [
    pytest.param({"workflow.log": "", "outputs.json": "{}"}, 1, id="a workflow taken whole from the cache"),
    pytest.param({"workflow.log": "", "outputs.json": "{}", "call-a/task.log": "", "call-a/work/x": "",
                  "call-b/task.log": ""}, 1, id="a workflow with one call reused"),
    pytest.param({"task.log": "", "outputs.json": "{}", "work/x": ""}, 0, id="a document's only task, run"),
    pytest.param({"task.log": "", "outputs.json": "{}", "work2/x": ""}, 0, id="a document's only task, run again"),
    pytest.param({"task.log": "", "outputs.json": "{}"}, 1, id="a document's only task, reused"),
])
def test_the_calls_taken_from_the_call_cache_are_read_from_the_run_directory(tmp_path, layout, hits):
    """A run of a document with only a task is that task's directory: not a workflow taken
    whole from the cache (every such run counted one reused call, cache or no cache)."""
    for name, text in layout.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert report_run.cache_hits(str(tmp_path)) == hits


def test_a_run_priced_at_another_regions_list_prices_says_so():
    """Fargate's list prices differ by region: cost.json says when its prices are another
    region's than the run's (the stack's Prices parameter gives this region's)."""
    from miniwdl_fargate.report.cost import Prices
    from miniwdl_fargate.report.run import prices_region_warning

    said = prices_region_warning(Prices(), "eu-west-1")
    assert said is not None and said.startswith("the prices are us-east-1's list prices, and the run ran in eu-west-1")
    assert prices_region_warning(Prices(), "us-east-1") is None
    # (naming the region alone leaves every price us-east-1's: still said)
    assert "still us-east-1's list prices" in prices_region_warning(Prices.parse('{"region": "eu-west-1"}'), "eu-west-1")
    assert prices_region_warning(Prices(), "") is None


def test_an_out_of_memory_retry_shows_its_own_cost_not_the_next_attempts():
    """An out-of-memory retry runs inside one miniwdl try: both attempts have the call's try 1,
    and the tooltip of the killed one showed the retry's dollars (its row keyed by call and try)."""
    import dataclasses

    small = hour_on("FARGATE", cpu=1024, memory=2048)
    big = dataclasses.replace(small, memory=4 * 2048, queued=small.queued + 10)
    cost = report_cost.estimate_cost([small, big], Prices())
    _root, bars = parse(render.timeline_svg([small, big], now=T + 7200, costs=cost))
    dollars = [f"~${row['usd']:.4f}" for row in cost["attempts"]]
    assert dollars[0] != dollars[1]
    assert dollars[0] in bars[0]["title"] and dollars[1] in bars[1]["title"]
