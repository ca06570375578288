"""status.json: a finished run keeps its state, whoever writes late."""

import json
from pathlib import Path

import pytest

from miniwdl_fargate import aws, runs, status
from miniwdl_fargate.pipeline import manage
from tests.function_env import LambdaContext, set_environment

RECORD = runs.RunRecord(
    run_id="st-0123abcd", name="st", bucket="runs", workflow="s3://runs/runs/st/workflow.wdl",
    inputs="s3://runs/runs/st/inputs.json", results="s3://runs/runs/st/results/st-0123abcd/",
    submitted_at="2026-11-25T12:00:00+00:00",
)


@pytest.fixture
def run(moto_aws):
    aws.client("s3").create_bucket(Bucket="runs")
    status.update("runs", RECORD.run_id, lambda current: current, initial=status.new(RECORD))
    return RECORD.run_id


def stored(run_id):
    key = status.status_key(run_id)
    return json.loads(aws.client("s3").get_object(Bucket="runs", Key=key)["Body"].read())


def test_a_finished_state_is_not_changed_by_a_late_writer(run):
    status.set_state("runs", run, "RUNNING")
    assert status.set_state("runs", run, "SUCCEEDED").status == "SUCCEEDED"
    for late in ("RUNNING", "FAILED", "CANCELLED"):
        assert status.set_state("runs", run, late).status == "SUCCEEDED"
    assert stored(run)["status"] == "SUCCEEDED"
    # counts still land (the driver's last publish)
    counted = status.update("runs", run, lambda c: c.model_copy(update={"tasks": status.TaskCounts(total=3, succeeded=3)}))
    assert counted.tasks.succeeded == 3 and stored(run)["status"] == "SUCCEEDED"


def test_a_finished_run_has_no_phase_even_after_the_drivers_last_counts(run):
    """status.json's phase says what the driver is doing: nothing, once the run finished (a
    SUCCEEDED run said "uploading outputs 4/4"); the counts of each phase stay."""
    status.update("runs", run, lambda c: c.model_copy(update={"status": "RUNNING", "phase": "uploading outputs 1/4"}))
    assert stored(run)["phase"] == "uploading outputs 1/4"
    status.set_state("runs", run, "SUCCEEDED")
    assert stored(run)["phase"] is None
    late = {"phase": "uploading outputs 4/4", "transfers": {"uploading outputs": status.TransferCounts(done=4, total=4)}}
    status.update("runs", run, lambda c: c.model_copy(update=late))  # (the driver's last publish, after it)
    assert stored(run)["phase"] is None and stored(run)["transfers"]["uploading outputs"] == {"done": 4, "total": 4}


def test_cancelling_a_finished_run_refuses_and_leaves_it_as_it_was(run):
    status.set_state("runs", run, "SUCCEEDED")
    with pytest.raises(manage.RunFinished, match="already SUCCEEDED"):
        manage.cancel_run("runs", "arn:aws:states:us-east-1:123456789012:stateMachine:run", "", run)
    assert stored(run)["status"] == "SUCCEEDED" and stored(run)["error"] is None


# -- one damaged status.json among many runs ---------------------------------------------------

DAMAGED = {
    "broken-deadbeef": b"{not json",  # cut short, or edited by hand
    "shape-0000aaaa": json.dumps({"run_id": "shape-0000aaaa", "status": "DONE"}).encode(),  # not a run status
}


@pytest.fixture
def many(run):
    """The fixture's run, a second good run, and one damaged status.json of each kind."""
    other = RECORD.model_copy(update={"run_id": "other-12345678", "name": "other",
                                      "results": "s3://runs/runs/other/results/other-12345678/"})
    status.update("runs", other.run_id, lambda current: current, initial=status.new(other))
    for run_id, body in DAMAGED.items():
        aws.client("s3").put_object(Bucket="runs", Key=status.status_key(run_id), Body=body)
    return [run, other.run_id]


def test_a_malformed_status_json_is_left_out_of_the_list_and_the_others_shown(many):
    told = []
    found, following = manage.list_runs("runs", on_unreadable=told.append)
    assert sorted(r.run_id for r in found) == sorted(many) and following is None
    assert told == [
        "run broken-deadbeef left out: s3://runs/runs/broken/results/broken-deadbeef/status.json is not valid JSON: "
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        "run shape-0000aaaa left out: s3://runs/runs/shape/results/shape-0000aaaa/status.json is not a run status "
        "(name: Field required; status: Input should be 'SUBMITTED', 'STARTING', 'RUNNING', 'SUCCEEDED', 'FAILED' "
        "or 'CANCELLED'; submitted_at: Field required)",
    ]


def test_a_name_run_often_is_listed_by_reading_its_statuses_several_at_once_newest_first(run, monkeypatch):
    """Every run of a name is read to sort them by time: one after another, a name run a few
    hundred times took longer than the API's 29 s."""
    import threading

    for i in range(30):
        record = RECORD.model_copy(update={"run_id": f"st-{i:08x}", "submitted_at": f"2026-11-26T12:00:{i:02d}+00:00",
                                           "results": f"s3://runs/runs/st/results/st-{i:08x}/"})
        status.update("runs", record.run_id, lambda current: current, initial=status.new(record))
    threads, real = set(), status.read
    monkeypatch.setattr(status, "read", lambda *a: threads.add(threading.get_ident()) or real(*a))
    found, _ = manage.list_runs("runs", name="st")
    assert [r.run_id for r in found] == [f"st-{i:08x}" for i in reversed(range(30))] + [run]
    assert len(threads) > 1 and threading.get_ident() not in threads


def test_a_page_holds_at_most_its_limit_of_runs_and_goes_on_inside_a_name(run):
    """A page ended with its last name's last run: every run of a name run often (a WES client's
    runs are named after its workflow file) came in one page, whatever page_size asked. A page
    holds at most ``limit`` runs; its token goes on inside a name (``<name>:<N>``), or after it."""
    for i in range(5):
        record = RECORD.model_copy(update={"run_id": f"main-{i:08x}", "name": "main", "submitted_at": f"2026-11-26T12:00:0{i}+00:00",
                                           "results": f"s3://runs/runs/main/results/main-{i:08x}/"})
        status.update("runs", record.run_id, lambda current: current, initial=status.new(record))
    pages, token = [], None
    while True:
        found, token = manage.list_runs("runs", limit=2, after=token)
        pages.append([r.run_id for r in found])
        if token is None:
            break
    newest_first = [f"main-{i:08x}" for i in reversed(range(5))]
    assert pages == [newest_first[:2], newest_first[2:4], [newest_first[4], run]]
    assert manage.list_runs("runs", limit=2, name="main", after="main:4") == ([manage.list_runs("runs", name="main")[0][4]], None)
    # names that extend another ("main-x", "main.v2" sort between "runs/main" and "runs/main/"):
    # every run once, and the paging ends
    for name in ("main-x", "main.v2"):
        for i in range(3):
            record = RECORD.model_copy(update={"run_id": f"{name}-{i:08x}", "name": name, "results": f"s3://runs/runs/{name}/results/{name}-{i:08x}/"})
            status.update("runs", record.run_id, lambda current: current, initial=status.new(record))
    seen, token = [], None
    for _ in range(20):
        found, token = manage.list_runs("runs", limit=2, after=token)
        seen += [r.run_id for r in found]
        if token is None:
            break
    assert token is None and sorted(seen) == sorted(set(seen)) and len(seen) == 5 + 3 + 3 + 1
    with pytest.raises(ValueError, match="page token 'main:x' is not one a list of runs gave"):
        manage.list_runs("runs", after="main:x")


def test_the_next_page_is_the_same_whatever_runs_of_the_name_came_since(run):
    """The token was an offset inside a name: every newer run of it (a WES client's are all named
    after its workflow file) shifted the next page by one, giving a run twice. It names the last
    run given, which newer runs do not move."""
    def submit(i):
        record = RECORD.model_copy(update={"run_id": f"wf-{i:08x}", "name": "wf", "submitted_at": f"2026-11-26T12:00:{i:02d}+00:00",
                                           "results": f"s3://runs/runs/wf/results/wf-{i:08x}/"})
        status.update("runs", record.run_id, lambda current: current, initial=status.new(record))

    for i in range(5):
        submit(i)
    first, token = manage.list_runs("runs", limit=2, name="wf")
    assert [r.run_id for r in first] == ["wf-00000004", "wf-00000003"] and token.startswith("wf~")
    submit(10)  # (a newer run of the name, meanwhile)
    second, token = manage.list_runs("runs", limit=2, name="wf", after=token)
    assert [r.run_id for r in second] == ["wf-00000002", "wf-00000001"]
    third, token = manage.list_runs("runs", limit=2, name="wf", after=token)
    assert [r.run_id for r in third] == ["wf-00000000"] and token is None


def test_describing_or_cancelling_a_run_with_a_malformed_status_says_which_object_is_wrong(many):
    with pytest.raises(status.UnreadableStatus, match=r"^s3://runs/runs/broken/results/broken-deadbeef/status.json is not valid JSON"):
        manage.describe_run("runs", "broken-deadbeef")
    with pytest.raises(status.UnreadableStatus, match=r"^s3://runs/runs/shape/results/shape-0000aaaa/status.json is not a run status"):
        manage.cancel_run("runs", "", "", "shape-0000aaaa")
    # an update reads it as describe does, and says the same (it wrote nothing over it)
    with pytest.raises(status.UnreadableStatus, match=r"^s3://runs/runs/broken/results/broken-deadbeef/status.json is not valid JSON"):
        status.set_state("runs", "broken-deadbeef", "RUNNING")


EVENT = Path(__file__).resolve().parents[1] / "events" / "apigw_post_runs.json"


def api_get(path, monkeypatch):
    """GET ``path`` through the API function, as API Gateway invokes it (the stored POST /runs
    payload, made a GET)."""
    import api

    set_environment(monkeypatch)
    monkeypatch.setattr(api.metrics.provider, "namespace", "test")  # (the template sets it)

    event = json.loads(EVENT.read_text())
    run_id = path.split("/")[2] if path.count("/") == 2 else None
    resource = "/runs/{run_id}" if run_id else "/runs"
    event.update(path=path, httpMethod="GET", resource=resource, body=None, pathParameters={"run_id": run_id} if run_id else None)
    event["requestContext"].update(httpMethod="GET", resourcePath=resource, path="/v1" + path)
    answer = api.handler(event, LambdaContext())
    return answer["statusCode"], json.loads(answer["body"])


def test_get_runs_shows_the_others_and_get_of_the_damaged_run_says_what_is_wrong(many, monkeypatch):
    code, body = api_get("/runs", monkeypatch)
    assert code == 200
    assert sorted(r["run_id"] for r in body["runs"]) == sorted(many)
    # and warns of the runs it left out, as `list` does
    assert [w.split(":")[0] for w in body["warnings"]] == ["run broken-deadbeef left out", "run shape-0000aaaa left out"]
    assert "status.json is not valid JSON" in body["warnings"][0]
    code, body = api_get("/runs/broken-deadbeef", monkeypatch)
    assert code == 500
    assert body["error"] == "UnreadableStatus"
    assert body["message"].startswith("s3://runs/runs/broken/results/broken-deadbeef/status.json is not valid JSON")


def test_a_damaged_outputs_json_is_described_as_such(run):
    aws.client("s3").put_object(Bucket="runs", Key=RECORD.results_key("outputs.json"), Body=b"{\"outputs\": ")
    doc = manage.describe_run("runs", run)
    assert doc["status"] == "SUBMITTED" and doc["outputs_json"] == RECORD.results + "outputs.json"
    assert doc["error"] == {
        "error": "UnreadableDocument",
        "message": f"{RECORD.results}outputs.json is not valid JSON: Expecting value: line 1 column 13 (char 12)",
    }


def test_a_runs_outputs_too_large_for_the_apis_answer_are_named_by_their_s3_object(run, monkeypatch):
    """GET /runs/{run_id} answers within Lambda's 6 MB (API Gateway's 502 beyond): outputs that
    would take it past ANSWER_BYTES are given as the URI of outputs.json, as the model allows."""
    import api

    outputs = {"w.files": [f"{RECORD.results}out/files/{i}/sample-{i}.bam" for i in range(200)]}
    aws.client("s3").put_object(Bucket="runs", Key=RECORD.results_key("outputs.json"), Body=json.dumps({"outputs": outputs}).encode())
    code, body = api_get(f"/runs/{run}", monkeypatch)
    assert code == 200 and body["outputs"] == outputs
    monkeypatch.setattr(api, "ANSWER_BYTES", len(json.dumps(outputs)) // 2)
    code, body = api_get(f"/runs/{run}", monkeypatch)
    assert code == 200 and body["outputs"] == body["outputs_json"] == RECORD.results + "outputs.json"


def test_a_page_of_runs_too_large_for_one_answer_leaves_out_the_largest_runs_calls_saying_so(run, monkeypatch):
    import api

    other = RECORD.model_copy(update={"run_id": "st2-0123abcd", "name": "st2", "results": "s3://runs/runs/st2/results/st2-0123abcd/"})
    status.update("runs", other.run_id, lambda current: current, initial=status.new(other))
    arns = [f"arn:aws:ecs:us-east-1:123456789012:task/wdl/{i:032x}" for i in range(300)]
    status.update("runs", other.run_id, lambda c: c.model_copy(update={"calls": {f"call-x-{i}": [arn] for i, arn in enumerate(arns)}}))
    status.update("runs", run, lambda c: c.model_copy(update={"calls": {"call-y": arns[:2]}}))
    code, whole = api_get("/runs", monkeypatch)
    assert code == 200 and {r["run_id"]: len(r["calls"]) for r in whole["runs"]} == {other.run_id: 300, run: 1}
    monkeypatch.setattr(api, "ANSWER_BYTES", len(json.dumps(whole)) // 2)
    code, page = api_get("/runs", monkeypatch)
    assert code == 200 and {r["run_id"]: len(r["calls"]) for r in page["runs"]} == {other.run_id: 0, run: 1}
    assert page["warnings"] == [
        f"run {other.run_id}: its calls are left out of this page, too large for one answer: GET /runs/{other.run_id} has them"
    ]
    assert len(json.dumps(page)) <= api.ANSWER_BYTES


def test_the_answer_is_measured_as_lambda_carries_it_its_body_escaped_once_more(run, monkeypatch):
    """Lambda's 6 MB holds the body as a JSON string: a quote in a value is 2 bytes of the body
    and 4 of the answer. Outputs that fit as a body but not as Lambda's answer are named too."""
    import api

    outputs = {"w.quoted": ['"' * 1000] * 10}
    aws.client("s3").put_object(Bucket="runs", Key=RECORD.results_key("outputs.json"), Body=json.dumps({"outputs": outputs}).encode())
    code, body = api_get(f"/runs/{run}", monkeypatch)
    as_body, as_answer = len(json.dumps(body)), len(json.dumps(json.dumps(body)))
    assert as_answer > 1.8 * as_body
    monkeypatch.setattr(api, "ANSWER_BYTES", (as_body + as_answer) // 2)
    code, body = api_get(f"/runs/{run}", monkeypatch)
    assert code == 200 and body["outputs"] == RECORD.results + "outputs.json"


def s3_calls(operation):
    """The names of the ``operation`` requests (e.g. "GetObject") the S3 client sends from now on."""
    sent = []
    aws.client("s3").meta.events.register(f"before-parameter-build.s3.{operation}", lambda params, **_: sent.append(params["Key"]))
    return sent


def test_a_process_writes_its_next_update_of_a_run_on_top_of_its_last_without_reading_it_again(run):
    """The driver updates status.json a dozen times in a short run (RUNNING, counts, phases): each
    after the first is one conditional PUT (If-Match on the ETag of what it wrote), not a GET and
    a PUT."""
    status.set_state("runs", run, "RUNNING")
    gets, puts = s3_calls("GetObject"), s3_calls("PutObject")
    for n in range(1, 4):
        status.update("runs", run, lambda c, n=n: c.model_copy(update={"tasks": status.TaskCounts(total=3, succeeded=n)}))
    assert gets == [] and len(puts) == 3
    assert stored(run)["status"] == "RUNNING" and stored(run)["tasks"]["succeeded"] == 3
    # a finished run's is not remembered (what follows its end writes it once or twice more at most)
    status.set_state("runs", run, "SUCCEEDED")
    assert status.WRITTEN.get("runs", status.status_key(run)) is None


def test_a_process_that_read_a_runs_status_writes_its_update_on_top_of_what_it_read(run):
    """A launch or a finalize reads the status, decides, then updates it: one GET and a
    conditional PUT, not two GETs; what was read is never handed out to be changed in place."""
    status.set_state("runs", run, "RUNNING")
    status.WRITTEN.forget("runs", status.status_key(run))  # (as in another process, which only wrote nothing yet)
    gets, puts = s3_calls("GetObject"), s3_calls("PutObject")
    seen = status.read("runs", run)
    seen.phase = "changed by the reader, not written"
    status.update("runs", run, lambda c: c.model_copy(update={"tasks": status.TaskCounts(total=1)}))
    assert len(gets) == 1 and len(puts) == 1
    assert stored(run)["tasks"]["total"] == 1 and stored(run)["phase"] is None
    # a finished run's status read is not remembered
    status.set_state("runs", run, "SUCCEEDED")
    assert status.read("runs", run).status == "SUCCEEDED"
    assert status.WRITTEN.get("runs", status.status_key(run)) is None


def test_what_another_writer_changed_since_this_processs_last_write_is_kept(run):
    """Another writer (finalize, a cancel: other processes) changed status.json after this process
    last wrote it: S3 refuses this process's write on top of its own (412), and the update reads
    the object and applies its change to what is there, losing nothing of either."""
    status.set_state("runs", run, "RUNNING")
    s3, key = aws.client("s3"), status.status_key(run)
    theirs = {**stored(run), "labels": {"by": "another writer"}}
    s3.put_object(Bucket="runs", Key=key, Body=json.dumps(theirs).encode())
    gets, puts = s3_calls("GetObject"), s3_calls("PutObject")
    status.update("runs", run, lambda c: c.model_copy(update={"phase": "staging inputs 1/2"}))
    assert puts == [key, key] and gets == [key]  # (refused on top of its own, read once, written)
    assert stored(run)["labels"] == {"by": "another writer"} and stored(run)["phase"] == "staging inputs 1/2"

    # a finish written by another process stands: a late RUNNING of this one is dropped
    s3.put_object(Bucket="runs", Key=key, Body=json.dumps({**stored(run), "status": "SUCCEEDED"}).encode())
    assert status.set_state("runs", run, "RUNNING").status == "SUCCEEDED"
    assert stored(run)["status"] == "SUCCEEDED"

    # removed since (404 to the write on top): as if this process had never seen it
    s3.delete_object(Bucket="runs", Key=key)
    assert status.set_state("runs", run, "RUNNING") is None
    assert "Contents" not in s3.list_objects_v2(Bucket="runs", Prefix=key)
    again = status.update("runs", run, lambda c: c, initial=status.new(RECORD))
    assert again.status == "SUBMITTED" and stored(run)["status"] == "SUBMITTED"


def test_a_change_that_writes_nothing_is_decided_on_what_is_stored_not_on_what_this_process_wrote(run):
    """``change`` returning None (nothing to write) is decided on what status.json says now, not
    on this process's older copy: here this process wrote a driver slot, another gave it back since,
    and "take a slot unless the run holds one" must take one."""
    status.update("runs", run, lambda c: c.model_copy(update={"status": "STARTING", "driver_slot": "drivers/slot-1.json"}))
    s3, key = aws.client("s3"), status.status_key(run)
    s3.put_object(Bucket="runs", Key=key, Body=json.dumps({**stored(run), "driver_slot": None}).encode())

    def unless_it_holds_one(current):
        return None if current.driver_slot else current.model_copy(update={"driver_slot": "drivers/slot-2.json"})

    assert status.update("runs", run, unless_it_holds_one).driver_slot == "drivers/slot-2.json"
    assert stored(run)["driver_slot"] == "drivers/slot-2.json"
    # and a None answered from what is stored, this process's copy being current
    assert status.update("runs", run, unless_it_holds_one).driver_slot == "drivers/slot-2.json"
