"""GA4GH WES end to end in local mode, driven by an existing WES client from PyPI (wes-service's
``wes_client.WESClient``, pinned in requirements-dev.txt, unmodified) over HTTP: local/gateway.py serves the
stack's API function as API Gateway would (multipart/form-data base64-encoded), and the run goes
through the whole pipeline."""

import json

import pytest
from wes_client.util import WESClient

from tests.workflows import GREET

from miniwdl_fargate.local.gateway import Gateway
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def client(stack):
    with Gateway.for_stack(stack.stack_name) as url:
        yield WESClient({"auth": {}, "proto": "http", "host": url[len("http://"):]})


def state_of(client, run_id, states, timeout=120):
    last = {}

    def reached():
        last["state"] = client.get_run_status(run_id)["state"]
        return last["state"] in states

    wait_for(reached, timeout, what=lambda: f"run {run_id} in {states} (last: {last.get('state')})", interval=0.5)
    return last["state"]


def test_a_wes_client_runs_a_workflow_reads_its_log_cancels_another_and_sees_a_third_fail(client, tmp_path):
    info = client.get_service_info()
    assert info["workflow_type_versions"]["WDL"]["workflow_type_version"] == ["draft-2", "1.0", "1.1", "1.2", "development"]

    wdl = tmp_path / "greet.wdl"
    wdl.write_text(GREET)
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"greet.who": "WES"}))
    run_id = client.run(str(wdl), "file://" + str(inputs), [])["run_id"]
    assert run_id.startswith("greet-")

    assert state_of(client, run_id, ("COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR")) == "COMPLETE"
    log = client.get_run_log(run_id)
    assert log["outputs"] == {"greet.greeting": "Hello, WES!"}
    assert log["request"]["workflow_params"] == {"greet.who": "WES"} and log["request"]["workflow_type_version"] == "1.1"
    [task] = log["task_logs"]
    assert task["name"] == "call-hi attempt 1" and task["exit_code"] == 0
    assert task["start_time"] and task["end_time"] >= task["start_time"]
    assert log["run_log"]["start_time"] and log["run_log"]["end_time"]
    assert run_id in [r["run_id"] for r in client.list_runs()["runs"]]
    # WES 1.1's ListTasks and GetTask, at the RunLog's task_logs_url (the local API's own path)
    import requests

    base = client.proto + "://" + client.host
    assert log["task_logs_url"] == f"/ga4gh/wes/v1/runs/{run_id}/tasks"
    listed = requests.get(base + log["task_logs_url"], params={"page_size": 1}, timeout=30).json()
    assert listed == {"task_logs": [task], "next_page_token": ""}
    assert requests.get(f"{base}{log['task_logs_url']}/{task['id']}", timeout=30).json() == task

    other = client.run(str(wdl), json.dumps({"greet.who": "nobody"}), [])["run_id"]
    assert client.cancel(other) == {"run_id": other}
    assert client.get_run_status(other)["state"] == "CANCELED"

    # a task that fails is the workflow's failure: EXECUTOR_ERROR, its exit code in its task log
    failing = tmp_path / "fails.wdl"
    failing.write_text(GREET.replace('echo "Hello, ~{who}!"', "exit 3"))
    failed = client.run(str(failing), json.dumps({"greet.who": "x"}), [])["run_id"]
    assert state_of(client, failed, ("COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR")) == "EXECUTOR_ERROR"
    [task] = client.get_run_log(failed)["task_logs"]
    assert task["exit_code"] == 3 and task["system_logs"] == ["failed (exit 3)"]


def test_a_wes_client_runs_a_workflow_with_its_imports_attached_and_reads_its_log_over_http(client, tmp_path):
    """`wes-client --attachments=tasks/greet.wdl` (WES 1.1: "tools imported by the workflow" go
    in workflow_attachment): the run is their bundle; the run log's stderr, the run's
    workflow.log, is a URL the client GETs as it is."""
    import requests

    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "greet.wdl").write_text(GREET.replace("workflow greet", "workflow unused"))
    wdl = tmp_path / "main.wdl"
    wdl.write_text('version 1.1\nimport "tasks/greet.wdl" as g\nworkflow main {\n  input { String who }\n'
                   '  call g.hi { input: who = who }\n  output { String greeting = hi.out }\n}\n')
    run_id = client.run(str(wdl), json.dumps({"main.who": "imports"}), [str(tmp_path / "tasks" / "greet.wdl")])["run_id"]
    assert state_of(client, run_id, ("COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR")) == "COMPLETE"
    log = client.get_run_log(run_id)
    assert log["outputs"] == {"main.greeting": "Hello, imports!"}
    assert "miniwdl" in requests.get(log["run_log"]["stderr"], timeout=30).text  # (workflow.log's lines)
