"""A run's labels, end to end in local mode: ``miniwdl-fargate submit --label`` tags the driver and
every task the run starts, and cost.json gives the run's cost under each label; a bad label is
refused at the API with nothing started."""

import copy
import json
from pathlib import Path

from miniwdl_fargate import aws, s3io, sweep
from tests.local_ecs import tasks_of_run
from miniwdl_fargate.client import api_function

REPO = Path(__file__).resolve().parents[2]
EVENT = json.loads((REPO / "tests" / "events" / "apigw_post_runs.json").read_text())
TAGGED = """version 1.1
workflow tagged {
  call hi
  output { String said = hi.said }
}
task hi {
  command <<< echo hi >>>
  output { String said = read_string(stdout()) }
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" }
}
"""


def test_submit_with_labels_tags_the_driver_and_every_task_and_cost_json_groups_by_them(stack, tmp_path, local_cli):
    folder = tmp_path / "tagged"
    folder.mkdir()
    (folder / "tagged.wdl").write_text(TAGGED)
    (folder / "inputs.json").write_text("{}")
    proc = local_cli(
        "submit", str(folder / "tagged.wdl"), str(folder / "inputs.json"),
        "--name", "tagged", "--label", "project=x", "--label", "cost center=lab:42", "--follow",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    run_id = doc["run_id"]
    tasks = tasks_of_run(stack, run_id)
    calls = sorted(sweep.tags_of(t)["miniwdl-fargate:call"] for t in tasks)
    assert calls == ["call-hi", "driver"], calls
    for task in tasks:
        tags = sweep.tags_of(task)
        assert tags["project"] == "x" and tags["cost center"] == "lab:42", tags
        assert tags["miniwdl-fargate:run-name"] == "tagged" and tags["miniwdl-fargate:workflow"] == "tagged", tags
    bucket, prefix = s3io.split(doc["results"])
    cost = json.loads(aws.client("s3").get_object(Bucket=bucket, Key=prefix + "cost.json")["Body"].read())
    assert cost["labels"] == {"project": "x", "cost center": "lab:42"}
    assert cost["by_label"] == {"cost center": {"lab:42": cost["total_usd"]}, "project": {"x": cost["total_usd"]}}
    assert set(cost["by_task"]) == {"driver", "hi"} and cost["by_task"]["hi"]["attempts"] == 1
    page = aws.client("s3").get_object(Bucket=bucket, Key=prefix + "report.html")["Body"].read().decode()
    assert "<tr><th>labels</th><td>project=x, cost center=lab:42</td></tr>" in page
    assert page.count('<tr class="label">') == 2 and page.count('<tr class="task">') == 2
    # and `miniwdl-fargate cost` adds the runs of the name up per label value
    summed = local_cli("cost", "--name", "tagged", "--json", timeout=120)
    assert summed.returncode == 0, summed.stderr
    assert json.loads(summed.stdout)["by_label"]["project"] == {"x": cost["total_usd"]}


def test_the_api_refuses_a_bad_label_naming_it_and_starts_nothing(stack):
    physical = api_function(stack.stack_name)
    event = copy.deepcopy(EVENT)
    body = {"name": "badlabel", "wdl": TAGGED, "inputs": {}, "options": {"labels": {"aws:team": "x", "ok": "y"}}}
    event.update(httpMethod="POST", path="/runs", resource="/runs", body=json.dumps(body))
    answer = json.loads(aws.client("lambda").invoke(FunctionName=physical, Payload=json.dumps(event).encode())["Payload"].read())
    assert answer["statusCode"] == 400, answer
    problems = json.loads(answer["body"])["problems"]
    assert [p["where"] for p in problems] == ["options.labels"]
    assert "'aws:team': the key starts with 'aws:'" in problems[0]["problem"]
    listed = aws.client("s3").list_objects_v2(Bucket=stack.outputs["BucketName"], Prefix="runs/badlabel/")
    assert listed.get("KeyCount", 0) == 0
