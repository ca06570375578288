"""The run API (functions/api.py) against local mode: API Gateway proxy events (the shape of
tests/events/apigw_post_runs.json) invoked on the deployed function, as API Gateway would."""

import copy
import json
from pathlib import Path

import pytest

from miniwdl_fargate import aws, sweep
from miniwdl_fargate.client import api_function
from tests.waiting import wait_for
from tests.workflows import GREET, sleepy

REPO = Path(__file__).resolve().parents[2]
EVENT = json.loads((REPO / "tests" / "events" / "apigw_post_runs.json").read_text())

SLEEPY = sleepy(120)


@pytest.fixture(scope="module")
def api(stack):
    physical = api_function(stack.stack_name)

    def call(method, path, body=None, query=None):
        event = copy.deepcopy(EVENT)
        resource = "/runs/{run_id}" if path.count("/") == 2 else "/runs"
        event.update(httpMethod=method, path=path, resource=resource, queryStringParameters=query,
                     body=json.dumps(body) if body is not None else None)
        event["pathParameters"] = {"run_id": path.rsplit("/", 1)[1]} if resource != "/runs" else None
        event["requestContext"].update(httpMethod=method, resourcePath=resource, path="/v1" + path)
        answer = json.loads(aws.client("lambda").invoke(FunctionName=physical, Payload=json.dumps(event).encode())["Payload"].read())
        return answer["statusCode"], json.loads(answer["body"]) if answer.get("body") else None

    return call


def run_in(api, run_id, states, timeout=180):
    """GET /runs/{run_id} once the run's status is one of ``states``."""
    last = {}

    def reached():
        code, last["doc"] = api("GET", f"/runs/{run_id}")
        return last["doc"] if code == 200 and last["doc"]["status"] in states else None

    return wait_for(reached, timeout, what=lambda: f"run {run_id} in {states} (last: {last.get('doc')})", interval=0.5)


@pytest.fixture(scope="module")
def finished_events(stack):
    """Run-finished events, through a rule to a queue (what a user would wire to SNS or Slack)."""
    sqs, events = aws.client("sqs"), aws.client("events")
    url = sqs.create_queue(QueueName="run-finished")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="run-finished", EventPattern=json.dumps({"source": ["miniwdl-fargate"], "detail-type": ["Run Finished"]}))
    events.put_targets(Rule="run-finished", Targets=[{"Id": "q", "Arn": arn}])

    def received(run_id, timeout=30):
        seen = []

        def mine():
            for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
                seen.append(json.loads(m["Body"]))
            return [e for e in seen if e["detail"]["run_id"] == run_id]

        # (no pause between receives: each waits up to a second for a message, a long poll)
        return wait_for(mine, timeout, what=lambda: f"run-finished event for {run_id}; saw {seen}", interval=0)

    return received


def test_post_inline_wdl_then_get_the_run_with_its_outputs(api, finished_events):
    code, accepted = api("POST", "/runs", {"name": "api-inline", "wdl": GREET, "inputs": {"greet.who": "Ann"}, "client_token": "t-1"})
    assert code == 202, accepted
    run_id = accepted["run_id"]
    doc = run_in(api, run_id, {"SUCCEEDED", "FAILED"})
    assert doc["status"] == "SUCCEEDED", doc
    assert doc["outputs"] == {"greet.greeting": "Hello, Ann!"}
    assert doc["outputs_json"] == accepted["results"] + "outputs.json"
    assert doc["source"] == "api" and doc["workflow"] == accepted["results"] + "source/workflow.wdl"
    assert doc["submitted_at"] <= doc["started_at"] <= doc["finished_at"]
    assert doc["duration_s"] > 0
    assert doc["driver_task"].startswith("arn:aws:ecs:")
    (event,) = finished_events(run_id)
    assert event["detail"]["status"] == "SUCCEEDED"
    assert event["detail"]["outputs"] == accepted["results"] + "outputs.json"
    # the same request again is the same run
    code, again = api("POST", "/runs", {"name": "api-inline", "wdl": GREET, "inputs": {"greet.who": "Ann"}, "client_token": "t-1"})
    assert code == 200 and again["duplicate"] is True and again["run_id"] == run_id
    # the token with another request is a conflict naming what differs, not a second run
    code, refused = api("POST", "/runs", {"name": "api-other", "wdl": GREET, "inputs": {"greet.who": "Bob"}, "client_token": "t-1"})
    assert code == 409, refused
    assert refused["error"] == "ClientTokenConflict"
    assert refused["message"] == "client_token already used for a request with another name, inputs"
    assert [p["where"] for p in refused["problems"]] == ["name", "inputs"]


def test_list_runs_newest_first_and_by_name(api):
    for token in ("l-1", "l-2"):
        code, _ = api("POST", "/runs", {"name": "api-listed", "wdl": GREET, "inputs": {"greet.who": token}, "client_token": token})
        assert code == 202
    code, listed = api("GET", "/runs", query={"name": "api-listed"})
    assert code == 200
    assert [r["name"] for r in listed["runs"]] == ["api-listed", "api-listed"]
    assert listed["runs"][0]["submitted_at"] >= listed["runs"][1]["submitted_at"]
    # a page holds whole names (runs/<name>/): with a second name in the bucket, whatever ran
    # before in this stack, a one-run page has a next
    code, _ = api("POST", "/runs", {"name": "api-listed-2", "wdl": GREET, "inputs": {"greet.who": "l-3"}, "client_token": "l-3"})
    assert code == 202
    code, everything = api("GET", "/runs", query={"limit": "1"})
    assert code == 200 and everything["runs"] and everything["next"]
    code, bad = api("GET", "/runs", query={"limit": "0"})
    assert code == 400 and bad["problems"][0]["where"] == "query.limit"


def tasks_running(stack, run_id=None):
    """The stack's running ECS tasks (of run ``run_id`` only, if given), each as (task id, its
    run, its group, its last status): what a failed wait says was left."""
    ecs, cluster = aws.client("ecs"), stack.outputs["ClusterName"]
    arns = stack.runtime.running_tasks()
    found = []
    for i in range(0, len(arns), 100):
        for task in ecs.describe_tasks(cluster=cluster, tasks=arns[i:i + 100], include=["TAGS"])["tasks"]:
            run = next((t["value"] for t in task.get("tags", []) if t["key"] == sweep.RUN_TAG), None)
            if run_id is None or run == run_id:
                found.append((task["taskArn"].rsplit("/", 1)[1], run, task.get("group"), task["lastStatus"]))
    return found


def test_delete_cancels_end_to_end(stack, api, finished_events):
    code, accepted = api("POST", "/runs", {"name": "api-cancel", "wdl": SLEEPY, "client_token": "c-1"})
    assert code == 202, accepted
    run_id = accepted["run_id"]
    run_in(api, run_id, {"RUNNING"})
    # its own driver and two naps (an earlier test's runs may still be ending in this stack)
    wait_for(
        lambda: sum(t[3] == "RUNNING" for t in tasks_running(stack, run_id)) >= 3, 60,
        what=lambda: f"the driver and 2 naps of {run_id} running (running: {tasks_running(stack)})", interval=0.5,
    )
    code, cancelled = api("DELETE", f"/runs/{run_id}")
    assert code == 200, cancelled
    assert cancelled["status"] == "CANCELLED"
    sfn = aws.client("stepfunctions")
    wait_for(
        lambda: sfn.describe_execution(executionArn=accepted["execution_arn"])["status"] != "RUNNING", 60,
        what="end of the execution", interval=0.5,
    )
    assert sfn.describe_execution(executionArn=accepted["execution_arn"])["status"] == "ABORTED"
    wait_for(lambda: not stack.runtime.running_tasks(), 60, what=lambda: f"end of {tasks_running(stack)}", interval=0.5)
    assert stack.runtime.running_tasks() == []
    code, doc = api("GET", f"/runs/{run_id}")
    assert doc["status"] == "CANCELLED" and doc["error"]["status"] == "CANCELLED"
    (event,) = finished_events(run_id)
    assert event["detail"]["status"] == "CANCELLED"
    code, again = api("DELETE", f"/runs/{run_id}")
    assert code == 409 and again["error"] == "AlreadyFinished"


def test_unknown_runs_and_bad_requests(api):
    code, doc = api("GET", "/runs/nope-0123abcd")
    assert code == 404 and doc["error"] == "NotFound", doc
    assert set(doc) == {"error", "message", "problems"}  # one error shape, whatever the status
    code, doc = api("GET", "/runs/not a run id")
    assert code == 400
    code, doc = api("POST", "/runs", {"name": "x", "workflow": "s3://b/w.wdl", "wdl": GREET})
    assert code == 400
    assert doc["problems"] == [{"where": "workflow", "problem": (
        "give one of workflow (an s3:// URI of a .wdl file or of a `miniwdl zip` bundle .zip), wdl (the WDL's source) "
        "or workflow_zip (a bundle, base64)"
    )}]
    code, doc = api("POST", "/runs", {"name": "x", "wdl": GREET, "inputs": {"greet.who": 1, "greet.extra": 2}})
    assert code == 400
    assert [p["where"] for p in doc["problems"]] == ["inputs: greet.who", "inputs: greet.extra"]


def test_the_local_gateway_routes_what_the_template_declares_and_answers_the_rest_as_api_gateway_does(stack, api):
    """Through HTTP, as a client reaches it: the deployed REST API's resources and methods are the
    template's Api events, each reaching the function with its resource and path parameters; a
    method or path the API lacks is API Gateway's 403, not the function's answer."""
    import urllib.error
    import urllib.request

    from miniwdl_fargate.local.gateway import Gateway
    from miniwdl_fargate.local.stack import read_template

    template = read_template(REPO / "template.yaml")
    declared = {
        (event["Properties"]["Path"], event["Properties"]["Method"].upper())
        for resource in template["Resources"].values() if resource["Type"] == "AWS::Serverless::Function"
        for event in (resource["Properties"].get("Events") or {}).values() if event["Type"] == "Api"
    }
    service = Gateway.for_stack(stack.stack_name)
    assert {(route.resource, method) for route in service.routes.routes for method in route.methods} == declared
    # (API Gateway waits 29 s for each: the template names no timeoutInMillis)
    assert service.timeouts == {(path, method): 29.0 for path, method in declared}
    with service as url:
        with urllib.request.urlopen(f"{url}/runs?limit=1") as answer:
            # (the function's headers, which Powertools gives as multiValueHeaders: API Gateway merges both)
            assert answer.status == 200 and answer.headers["Content-Type"] == "application/json"
        with pytest.raises(urllib.error.HTTPError) as unknown:
            urllib.request.urlopen(f"{url}/runs/nope-0123abcd")
        assert unknown.value.code == 404 and json.loads(unknown.value.read())["error"] == "NotFound"  # (the function's)
        assert unknown.value.headers["Content-Type"] == "application/json"
        for method, path in (("PUT", "/runs"), ("GET", "/runs/nope-0123abcd/resume"), ("GET", "/ga4gh/wes/v1"), ("GET", "/")):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(url + path, method=method))
            assert refused.value.code == 403, (method, path)
            # API Gateway's own answer in the shape of the function's errors, for either client
            # (the template's GatewayResponses): the run API's ApiError, WES's ErrorResponse
            # (both of API Gateway's causes named: an unsigned request, or no such route)
            assert json.loads(refused.value.read()) == {
                "error": "MissingAuthenticationToken", "message": "Missing Authentication Token",
                "problems": [{"where": "request", "problem": "not signed (the API takes IAM auth: Signature Version 4 "
                              "for execute-api), or no such method and path (the routes: docs/openapi.json)"}],
                "msg": "Missing Authentication Token: the request is not signed (IAM auth, Signature Version 4), "
                       "or the API has no such method and path (docs/openapi.json)", "status_code": 403,
            }
        # POST /runs's body is checked against the template's RunRequest model before the function
        model = template["Resources"]["RunsApi"]["Properties"]["Models"]["RunRequest"]
        assert service.checks.schemas == {("/runs", "POST"): json.loads(json.dumps(model))}
        post = urllib.request.Request(url + "/runs", data=b'{"name": "x", "wdl": "", "extra": 1}', method="POST",
                                      headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(post)
        assert refused.value.code == 400
        said = ('[object instance has properties which are not allowed by the schema: ["extra"], '
                'string "" is too short (length: 0, required minimum: 1)]')
        assert json.loads(refused.value.read()) == {
            "error": "InvalidRequest", "message": "the request body does not match the RunRequest model (docs/openapi.json)",
            "problems": [{"where": "body", "problem": said}],
            "msg": f"the request body does not match the RunRequest model: {said}", "status_code": 400,
        }
        # a body the model takes but whose event is over Lambda's 6 MB: refused by the invoke, as on AWS
        big = json.dumps({"name": "big", "wdl": GREET, "inputs": {"greet.who": "A" * (7 << 20)}}).encode()
        post = urllib.request.Request(url + "/runs", data=big, method="POST", headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(post)
        assert refused.value.code == 413 and json.loads(refused.value.read()) == {
            "error": "RequestTooLarge", "message": "Request Too Long", "problems": [], "msg": "Request Too Long", "status_code": 413,
        }
        code, doc = api("GET", "/runs", query={"name": "big"})
        assert code == 200 and doc["runs"] == []  # (nothing started)
