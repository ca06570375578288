"""GA4GH WES over our runs (pipeline/wes.py): states, reading a RunRequest (JSON and
multipart/form-data), its mapping onto the one submission path, and the run log."""

import http.client
import io
import json
import re

import pytest
import urllib3

from miniwdl_fargate import runs, status
from miniwdl_fargate.pipeline import wes

HELLO = "version 1.1\nworkflow hello { input { Int x = 0 } call t }\ntask t { command <<< true >>> }\n"


@pytest.mark.parametrize(
    "ours, wes_state",
    [("SUBMITTED", "QUEUED"), ("STARTING", "INITIALIZING"), ("RUNNING", "RUNNING"), ("SUCCEEDED", "COMPLETE"), ("CANCELLED", "CANCELED")],
)
def test_each_of_our_states_has_its_wes_state(ours, wes_state):
    assert wes.state(ours) == wes_state


@pytest.mark.parametrize(
    "error, expected",
    [
        ({"error": "RunFailed", "failed_task": {"error": "CommandFailed", "exit_status": 1}}, "EXECUTOR_ERROR"),
        ({"error": "RunFailed", "failed_task": {"error": "OutOfMemory", "exit_status": 137}}, "EXECUTOR_ERROR"),
        ({"error": "EvalError", "failed_task": {"error": "EvalError"}}, "EXECUTOR_ERROR"),
        ({"error": "RunFailed", "failed_task": {"error": "Interrupted"}}, "SYSTEM_ERROR"),
        ({"error": "RunFailed", "failed_task": {"error": "ImageUnusable"}}, "EXECUTOR_ERROR"),
        ({"error": "RunFailed", "failed_task": {"error": "NullValue"}}, "EXECUTOR_ERROR"),
        # the backend's own failures (a task ECS could not start, the run's EFS volume): the system's
        ({"error": "RunFailed", "failed_task": {"error": "RuntimeError"}}, "SYSTEM_ERROR"),
        ({"error": "RunFailed", "failed_task": {"error": "RunVolumeError"}}, "SYSTEM_ERROR"),
        ({"error": "DriverError", "failed_task": {"error": "DriverError"}}, "SYSTEM_ERROR"),
        ({"error": "TimedOut", "limit": "max_duration"}, "SYSTEM_ERROR"),
        ({"error": "BudgetExceeded", "limit": "max_cost_usd"}, "SYSTEM_ERROR"),
        ({"error": "DriverStopped", "signal": "SIGTERM"}, "SYSTEM_ERROR"),
        ({"error": "States.TaskFailed", "message": "the launch failed"}, "SYSTEM_ERROR"),
        (None, "SYSTEM_ERROR"),
    ],
)
def test_a_failed_run_is_an_executor_error_when_its_workflow_failed_else_a_system_error(error, expected):
    assert wes.state("FAILED", error) == expected


def request(**fields):
    base = {"workflow_url": "hello.wdl", "workflow_type": "WDL", "workflow_type_version": "1.1"}
    return wes.WesRequest(**{**base, **fields}, attachments={"hello.wdl": HELLO.encode()})


def test_a_multipart_request_as_a_client_encodes_it():
    body, content_type = urllib3.encode_multipart_formdata([
        ("workflow_url", "hello.wdl"), ("workflow_type", "WDL"), ("workflow_type_version", " 1.1"),
        ("workflow_params", '{"hello.x": 1}'), ("tags", '{"team": "g"}'),
        ("workflow_attachment", ("hello.wdl", HELLO.encode())),
    ])
    read = wes.read_request(body, content_type)
    assert (read.workflow_url, read.workflow_type, read.attachments) == ("hello.wdl", "WDL", {"hello.wdl": HELLO.encode()})
    asked = wes.submission(read)
    assert (asked.name, asked.workflow, asked.wdl, asked.inputs) == ("hello", None, HELLO, {"hello.x": 1})
    assert (asked.options, asked.workflow_type_version) == ({"labels": {"team": "g"}}, "1.1")


@pytest.mark.parametrize(
    "parts, where",
    [
        ([("workflow_url", "a.wdl"), ("workflow_url", "b.wdl")], "workflow_url: given more than once"),
        ([("color", "blue")], "color: not a field"),
        ([("workflow_attachment", ("../etc/x.wdl", b"x"))], "must be a relative path"),
        ([("workflow_attachment", ("/x.wdl", b"x"))], "must be a relative path"),
        # (the later took the earlier's place: another document was checked, and would have run)
        ([("workflow_attachment", ("w.wdl", b"a")), ("workflow_attachment", ("w.wdl", b"b"))],
         "workflow_attachment 'w.wdl': attached more than once"),
    ],
)
def test_a_multipart_request_with_a_repeated_unknown_or_escaping_part_is_refused(parts, where):
    body, content_type = urllib3.encode_multipart_formdata(parts)
    with pytest.raises(wes.WesRefused) as refused:
        wes.read_request(body, content_type)
    assert where in str(refused.value)


def test_the_same_file_attached_twice_is_one_file():
    """wes-client --attachments="*.wdl" main.wdl attaches the main file by its name, and the glob
    attaches it again: the same bytes are one file."""
    body, content_type = urllib3.encode_multipart_formdata(
        [("workflow_url", "hello.wdl"), ("workflow_type", "WDL"), ("workflow_type_version", "1.1"),
         ("workflow_attachment", ("hello.wdl", HELLO.encode())), ("workflow_attachment", ("hello.wdl", HELLO.encode()))])
    assert wes.read_request(body, content_type).attachments == {"hello.wdl": HELLO.encode()}


@pytest.mark.parametrize("fetched, said", [
    (http.client.InvalidURL("nonnumeric port: 'x'"), "could not fetch"),
    (ValueError("unknown url type"), "could not fetch"),
    (b"<!DOCTYPE html>\n<html><body>blob page</body></html>", "is a web page, not a WDL document"),
])
def test_an_https_workflow_url_that_cannot_be_a_document_is_refused_naming_it(fetched, said):
    def fetch(url):
        if isinstance(fetched, Exception):
            raise fetched
        return fetched

    with pytest.raises(wes.WesRefused, match=f"workflow_url: .*{said}"):
        wes.submission(wes.WesRequest("https://github.com/x/y/blob/main/w.wdl", None, "WDL", "1.0"), fetch=fetch)


def test_a_json_request_is_read_strictly():
    read = wes.read_request(json.dumps({"workflow_url": "s3://b/w/hello.wdl", "workflow_type": "WDL", "workflow_type_version": "1.0",
                                        "workflow_params": {"hello.x": [1]}, "workflow_engine_parameters": {"max_vcpus": 4}}).encode(), "application/json")
    asked = wes.submission(read)
    assert (asked.workflow, asked.wdl, asked.inputs, asked.options) == ("s3://b/w/hello.wdl", None, {"hello.x": [1]}, {"max_vcpus": 4.0})
    for body, where in ((b'{"workflow_url": "a", "workflow_url": "b"}', "workflow_url"), (b"[1]", "must be a JSON object"),
                        (b'{"name": "x"}', "name: not a field"), (b'{"workflow_url": 3}', "workflow_url: must be a string"),
                        (b"{", "not valid JSON")):
        with pytest.raises(wes.WesRefused) as refused:
            wes.read_request(body, "application/json")
        assert where in str(refused.value), body
    with pytest.raises(wes.WesRefused, match="Content-Type"):
        wes.read_request(b"x", "text/plain")


@pytest.mark.parametrize("field", ["workflow_engine_parameters", "tags"])
def test_a_key_given_twice_in_a_form_fields_json_is_refused(field):
    """`{"max_cost_usd": "5", "max_cost_usd": "500"}` took the second: a 5 USD budget became 500,
    unsaid, where workflow_params and the JSON body refuse it."""
    body, content_type = urllib3.encode_multipart_formdata([
        ("workflow_url", "hello.wdl"), ("workflow_type", "WDL"), ("workflow_type_version", "1.1"),
        (field, '{"max_cost_usd": "5", "max_cost_usd": "500"}'), ("workflow_attachment", ("hello.wdl", HELLO.encode())),
    ])
    with pytest.raises(wes.WesRefused) as refused:
        wes.submission(wes.read_request(body, content_type))
    assert f"{field}: max_cost_usd: key given more than once" in str(refused.value)


def test_an_engine_parameter_given_as_service_infos_default_value_is_the_stacks_default():
    """service-info gives every parameter's default_value as "" (the stack's); a client sending
    those back was refused ("max_cost_usd: Input should be a valid number")."""
    defaults = {p["name"]: p["default_value"] for p in wes.service_info("1.16.0", "0.1.0")["default_workflow_engine_parameters"]}
    assert set(defaults.values()) == {""}
    assert wes.submission(request(workflow_engine_parameters=defaults)).options == {}


def test_engine_parameters_and_tags_go_through_the_one_options_model_named_as_wes_fields():
    asked = wes.submission(request(workflow_engine_parameters={"call_cache": "false", "max_run_hours": "2"}, tags={"a": "1"}))
    assert asked.options == {"call_cache": False, "max_run_hours": 2.0, "labels": {"a": "1"}}
    with pytest.raises(wes.WesRefused) as refused:
        wes.submission(request(workflow_engine_parameters={"max_vcpus": "0", "labels": "{}"}))
    assert "workflow_engine_parameters.labels: give labels as the request's tags" in str(refused.value)
    with pytest.raises(wes.WesRefused) as refused:
        wes.submission(request(workflow_engine_parameters={"max_vcpus": "0"}, tags={"x": "a\nb"}))
    assert "workflow_engine_parameters.max_vcpus" in str(refused.value) and "tags: 'x'" in str(refused.value)


def test_a_workflow_engine_version_is_taken_only_as_the_miniwdl_every_driver_runs(monkeypatch):
    """wes-client and others send workflow_engine_version; one the drivers do not run is refused
    (a run would otherwise go on miniwdl 1.16 though the request asked for another)."""
    monkeypatch.setattr(wes, "engine_version", lambda: "1.16.0")
    for same in ("1.16.0", "v1.16.0", "1.16", "1", ""):
        wes.submission(request(workflow_engine_version=same))
    for other in ("1.16.1", "1.1", "2.0.0", "latest"):
        with pytest.raises(wes.WesRefused, match=rf"workflow_engine_version: '{other}': this service runs miniwdl 1.16.0"):
            wes.submission(request(workflow_engine_version=other))


def test_workflow_sources_https_fetched_at_submit_bounded_other_schemes_refused():
    asked = wes.submission(request(workflow_url="https://example.org/wf/hello.wdl"), fetch=lambda url: HELLO.encode())
    assert (asked.workflow, asked.wdl, asked.name) == (None, HELLO, "hello")
    for fetched, where in ((b"x" * (wes.HTTPS_MAX_BYTES + 1), "at most"), (b"\xff", "not UTF-8")):
        with pytest.raises(wes.WesRefused, match=where):
            wes.submission(request(workflow_url="https://example.org/hello.wdl"), fetch=lambda url, f=fetched: f)

    def unreachable(url):
        raise OSError("timed out")

    with pytest.raises(wes.WesRefused, match="could not fetch https://example.org/hello.wdl: timed out"):
        wes.submission(request(workflow_url="https://example.org/hello.wdl"), fetch=unreachable)
    for url in ("http://example.org/hello.wdl", "gs://b/hello.wdl", ""):
        with pytest.raises(wes.WesRefused, match="workflow_url"):
            wes.submission(request(workflow_url=url))
    with pytest.raises(wes.WesRefused, match="a miniwdl zip bundle is taken alone"):
        wes.submission(wes.WesRequest("hello.zip", None, "WDL", "1.1", attachments={"hello.zip": b"PK", "lib.wdl": b""}))


def test_a_wdl_attached_with_the_files_it_imports_runs_as_their_bundle():
    """WES 1.1: "The workflow_attachment array may be used to upload files that are required to
    execute the workflow, including the primary workflow, tools imported by the workflow"
    (wes-client --attachments): they were refused; they become a miniwdl zip bundle, as
    `miniwdl zip` builds it, the WDL workflow_url names its main."""
    import zipfile

    main = b'version 1.1\nimport "tasks/greet.wdl" as g\nworkflow hello { call g.greet }\n'
    lib = b"version 1.1\ntask greet { command <<< echo hi >>> }\n"
    asked = wes.submission(wes.WesRequest("hello.wdl", None, "WDL", "1.1", attachments={"hello.wdl": main, "tasks/greet.wdl": lib}))
    assert asked.workflow is None and asked.wdl is None and asked.name == "hello"
    with zipfile.ZipFile(io.BytesIO(asked.workflow_zip)) as bundle:
        names = bundle.namelist()
    assert any(n.endswith("hello.wdl") for n in names) and any(n.endswith("tasks/greet.wdl") for n in names)
    with pytest.raises(wes.WesRefused, match=r"workflow_attachment: hello.wdl: could not be read with its attachments: .*Failed to import tasks/greet.wdl"):
        wes.submission(wes.WesRequest("hello.wdl", None, "WDL", "1.1", attachments={"hello.wdl": main, "other.wdl": lib}))


@pytest.mark.parametrize("imported", ["/etc/hostname", "../../../../etc/hostname", "https://example.org/lib.wdl", "/proc/self/environ"])
def test_an_attached_wdl_imports_only_attached_files(imported, tmp_path):
    """The bundle is built in the API's function: an import of a file it can read, or of a URL,
    would put what it read in the run (or in the refusal's text); only attached files are read."""
    main = f'version 1.1\nimport "{imported}" as x\nworkflow hello {{ }}\n'.encode()
    read = []
    real_open = open

    def watched(path, *args, **kwargs):
        read.append(str(path))
        return real_open(path, *args, **kwargs)

    import builtins

    builtins_open, builtins.open = builtins.open, watched
    try:
        said = f"could not be read with its attachments: Failed to import {re.escape(imported)}; {re.escape(imported)}: not among the attached files"
        with pytest.raises(wes.WesRefused, match=said) as refused:
            wes.submission(wes.WesRequest("hello.wdl", None, "WDL", "1.1", attachments={"hello.wdl": main, "other.wdl": b"version 1.1\n"}))
    finally:
        builtins.open = builtins_open
    assert not any(path.startswith(("/etc", "/proc")) for path in read), read  # (never opened)
    assert "PATH=" not in str(refused.value)


def test_run_names_come_from_the_workflow_file():
    assert wes.run_name("s3://b/wf/my hello.wdl") == "my-hello"
    assert wes.run_name("https://x/y/z.wdl?token=1") == "z"
    assert wes.run_name("...wdl") == "wes-run"


def test_run_log_task_logs_from_cost_json_and_while_running_from_the_status():
    current = status.RunStatus(
        run_id="hello-0000aaaa", name="hello", status="RUNNING", submitted_at="2026-11-30T09:00:00+00:00",
        started_at="2026-11-30T09:00:05+00:00", workflow="s3://runs/runs/hello/results/hello-0000aaaa/source/workflow.wdl",
        results="s3://runs/runs/hello/results/hello-0000aaaa/", calls={"call-t": ["arn:aws:ecs:us-east-1:1:task/wdl/abc"]},
    )
    record = runs.RunRecord(
        run_id=current.run_id, name="hello", bucket="runs", workflow=current.workflow, inputs=current.results + "inputs.json",
        results=current.results, submitted_at=current.submitted_at, source="api", options={"labels": {"a": "1"}, "max_vcpus": 2.0},
        submitted={"workflow": "(inline)", "workflow_url": "hello.wdl", "workflow_type_version": "1.1"}, workflow_name="hello",
    )
    log = wes.run_log(current.model_dump(), record, {"hello.x": 1}, None, "tasks", "us-east-1")
    assert log["state"] == "RUNNING" and log["run_log"]["name"] == "hello"
    assert log["run_log"]["system_logs"] == []
    # why a run waits, and what a running one does: status.json's phase, until it ends
    queued = current.model_copy(update={"status": "SUBMITTED", "started_at": None, "calls": {},
                                        "phase": "queued behind other runs: at most 2 run(s) of this stack have a driver at once"})
    waiting = wes.run_log(queued.model_dump(), record, {"hello.x": 1}, None, "tasks", "us-east-1")
    assert waiting["state"] == "QUEUED" and waiting["run_log"]["system_logs"] == [queued.phase]
    staging = current.model_copy(update={"phase": "staging inputs 3/20"})
    assert wes.run_log(staging.model_dump(), record, {}, None, "tasks", "us-east-1")["run_log"]["system_logs"] == ["staging inputs 3/20"]
    assert log["request"] == {"workflow_params": {"hello.x": 1}, "workflow_type": "WDL", "workflow_type_version": "1.1",
                              "tags": {"a": "1"}, "workflow_engine_parameters": {"max_vcpus": "2.0"}, "workflow_url": "hello.wdl"}
    [task] = log["task_logs"]
    assert (task["id"], task["name"]) == ("abc", "call-t attempt 1")
    assert task["stdout"] == task["stderr"] and "log-group/tasks/log-events/miniwdl$252Ftask$252Fabc" in task["stdout"]

    cost = {"attempts": [
        {"call": "call-t", "attempt": 1, "outcome": "failed (exit 3)", "capacity": "FARGATE", "ecs_task": "arn:aws:ecs:us-east-1:1:task/wdl/abc",
         "started_at": "2026-11-30T09:00:10+00:00", "stopped_at": "2026-11-30T09:00:20+00:00", "exit_code": 3},
        {"call": "driver", "attempt": 1, "outcome": "failed", "ecs_task": "arn:aws:ecs:us-east-1:1:task/wdl/drv"},
    ]}
    ended = current.model_copy(update={"status": "FAILED", "finished_at": "2026-11-30T09:00:30+00:00"}).model_dump()
    ended["outputs"] = {"hello.x": 1}  # (describe_run's: outputs.json in place of its URI)
    ended["error"] = {"error": "RunFailed", "failed_task": {"error": "CommandFailed", "exit_status": 3}, "message": "call-t failed with exit status 3"}
    log = wes.run_log(ended, record, {}, cost, "tasks", "us-east-1")
    assert log["state"] == "EXECUTOR_ERROR" and log["run_log"]["system_logs"] == ["call-t failed with exit status 3"]
    assert log["outputs"] == {"hello.x": 1}
    [task] = log["task_logs"]
    # (WES's "ISO 8601 format %Y-%m-%dT%H:%M:%SZ": what a client parsing that format reads)
    assert (task["start_time"], task["end_time"], task["exit_code"]) == ("2026-11-30T09:00:10Z", "2026-11-30T09:00:20Z", 3)
    assert task["tags"]["outcome"] == "failed (exit 3)"


def test_service_info_lists_the_engine_parameters_of_the_options_model():
    info = wes.service_info("1.13.0", "0.1.0")
    assert (info["version"], info["type"]) == ("0.1.0", {"group": "org.ga4gh", "artifact": "wes", "version": "1.1.0"})
    types = {p["name"]: p["type"] for p in info["default_workflow_engine_parameters"]}
    assert types == {"call_cache": "string", "max_run_hours": "float", "max_cost_usd": "float", "max_concurrent_tasks": "int",
                     "max_vcpus": "float", "task": "string", "quant_check": "bool"}
    assert info["workflow_engine_versions"] == {"miniwdl": {"workflow_engine_version": ["1.13.0"]}}


def test_an_https_workflow_url_follows_https_redirects_only():
    import urllib.request

    handler = wes._HttpsOnly()
    request = urllib.request.Request("https://example.org/hello.wdl")
    with pytest.raises(OSError, match="redirected to http://example.org/hello.wdl: only https:// is followed"):
        handler.redirect_request(request, None, 302, "Found", {}, "http://example.org/hello.wdl")
    assert handler.redirect_request(request, None, 302, "Found", {}, "https://cdn.example.org/hello.wdl").full_url == "https://cdn.example.org/hello.wdl"


def test_a_document_read_at_submit_says_its_own_version_an_s3_one_is_taken_at_the_requests_word():
    # wes-service's client sends draft-2 for any local .wdl: the document's statement decides
    asked = wes.submission(wes.WesRequest("hello.wdl", None, "WDL", "draft-2", attachments={"hello.wdl": b"# hi\n\nversion 1.0\nworkflow w {}\n"}))
    assert asked.workflow_type_version == "1.0"
    # every version the drivers' miniwdl reads, as every other entrance takes it (Broad's and
    # Dockstore's older workflows are draft-2: no version statement)
    for text, version in ((b"workflow w {}\n", "draft-2"), (b"version development\nworkflow w {}\n", "development"),
                          (b"version 1.2\nworkflow w {}\n", "1.2")):
        assert wes.submission(wes.WesRequest("hello.wdl", None, "WDL", "1.1", attachments={"hello.wdl": text})).workflow_type_version == version
    with pytest.raises(wes.WesRefused, match=re.escape("workflow_url: the document declares WDL 3.0: this service runs WDL draft-2, 1.0, 1.1")):
        wes.submission(wes.WesRequest("hello.wdl", None, "WDL", "1.1", attachments={"hello.wdl": b"version 3.0\nworkflow w {}\n"}))
    assert wes.submission(wes.WesRequest("s3://b/w/x.wdl", None, "WDL", "1.1")).workflow_type_version == "1.1"
    assert wes.submission(wes.WesRequest("s3://b/w/x.wdl", None, "WDL", "draft-2")).workflow_type_version == "draft-2"
    with pytest.raises(wes.WesRefused, match="workflow_type_version: '2.0'"):
        wes.submission(wes.WesRequest("s3://b/w/x.wdl", None, "WDL", "2.0"))


def test_the_wdl_versions_are_the_ones_miniwdl_reads():
    import WDL._grammar

    assert set(wes.WDL_VERSIONS) == set(WDL._grammar.versions)


@pytest.mark.parametrize("given, said", [
    ("2026-11-30T09:00:10.123456+00:00", "2026-11-30T09:00:10Z"),
    ("2026-11-30T11:00:10+02:00", "2026-11-30T09:00:10Z"),
    ("2026-11-30T09:00:10Z", "2026-11-30T09:00:10Z"),
    (None, None),
])
def test_times_are_given_in_wess_own_format(given, said):
    """WES: "ISO 8601 format %Y-%m-%dT%H:%M:%SZ"; a client may parse exactly that."""
    assert wes.wes_time(given) == said


TRS = "https://dockstore.org/api/ga4gh/trs/v2/tools/%23workflow%2Fgithub.com%2Fx%2Fy/versions/main/PLAIN_WDL/descriptor/"


def test_an_https_workflow_with_relative_imports_runs_as_the_bundle_of_them(tmp_path):
    """Dockstore's `wes launch` sends its TRS URL of the main WDL: its relative imports were read
    as the run's own S3 keys ("does not exist"), the run refused. They are fetched relative to the
    document importing them, as `miniwdl run URL` reads them, into a bundle built at submit."""
    from miniwdl_fargate import zipbundle

    served = {
        TRS + "%2Fmain.wdl": b'version 1.0\nimport "tasks/t.wdl" as t\nworkflow main { call t.hi }\n',
        TRS + "tasks/t.wdl": b'version 1.0\nimport "../lib/u.wdl"\ntask hi { command <<< true >>> }\n',
        TRS + "lib/u.wdl": b"version 1.0\ntask u { command <<< true >>> }\n",  # (../ of tasks/)
    }
    fetched = []

    def fetch(url):
        fetched.append(url)
        if url not in served:
            raise OSError(f"HTTP Error 404: {url}")
        return served[url]

    asked = wes.submission(wes.WesRequest(TRS + "%2Fmain.wdl", None, "WDL", "1.0"), fetch=fetch)
    assert asked.name == "main" and asked.wdl is None and asked.workflow_zip is not None  # (not "2Fmain")
    with zipbundle.opened(io.BytesIO(asked.workflow_zip), "workflow_url") as bundle:
        assert bundle.main.endswith("main.wdl") and len(list(bundle.files())) == 4  # (3 documents and the manifest)
    assert sorted(fetched) == sorted(served)  # (each once)
    del served[TRS + "tasks/t.wdl"]
    with pytest.raises(wes.WesRefused, match=r"workflow_url: https://dockstore.org/.*: could not be read with its imports: .*404"):
        wes.submission(wes.WesRequest(TRS + "%2Fmain.wdl", None, "WDL", "1.0"), fetch=fetch)
