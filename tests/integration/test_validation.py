"""Bad input is refused before anything starts, saying what is wrong and where.

Each case drops a run into the bucket (or POSTs it) the way a user would, against moto, and
checks the exact problems reported (runs/<name>/error.json, or the HTTP 400 body) and that no
execution was started.
"""

import base64
import json
import logging
from pathlib import Path

import pytest
from WDL import Zip as wdl_zip
from WDL import load as load_wdl

from miniwdl_fargate import aws, inputs_json, sizes, upload
from miniwdl_fargate.pipeline import snapshot, start, validate
from miniwdl_fargate.pipeline.settings import ApiSettings
from tests.function_env import LambdaContext, environment, set_environment

GOOD = """version 1.1
workflow hello {
  input {
    Array[String] names
    File reference
    Int copies = 1
  }
  scatter (n in names) { call greet { input: name = n } }
  output { Array[String] out = greet.out }
}
task greet {
  input { String name }
  command <<< echo ~{name} >>>
  output { String out = read_string(stdout()) }
  runtime { cpu: 1 memory: "1 GiB" }
}
"""
STRUCTS = GOOD.replace("workflow hello {\n  input {", """struct Person { String name }
workflow hello {
  input {
    Array[Person] people = []
    Person? who""")
IMPORT_RULE = "imports must be relative paths to files inside the workflow's folder (the driver downloads that folder, nothing else)"
BUNDLE_HINT = ("; or submit a `miniwdl zip` bundle, which holds the WDL it imports from anywhere (`miniwdl-fargate submit` "
               "makes one itself)")
OK_INPUTS = {"hello.names": ["Ann"], "hello.reference": "s3://data/ref.txt"}
WDL = "s3://runs/runs/{name}/workflow.wdl"
INPUTS = "s3://runs/runs/{name}/inputs.json"


@pytest.fixture
def pipeline(moto_aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="runs")
    s3.create_bucket(Bucket="data")
    s3.put_object(Bucket="runs", Key="shared/lib.wdl", Body=b"version 1.1\ntask t { command <<< >>> }\n")
    s3.put_object(Bucket="data", Key="ref.txt", Body=b"reference")
    s3.put_object(Bucket="data", Key="dir/a.txt", Body=b"a")
    machine = aws.client("stepfunctions").create_state_machine(
        name="run",
        definition=json.dumps({"StartAt": "a", "States": {"a": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/run",
    )["stateMachineArn"]
    settings = ApiSettings.from_env(environment(STATE_MACHINE_ARN=machine))

    def executions():
        return aws.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"]

    def drop(name, inputs, wdl=GOOD, extra=None):
        """Upload the run folder, then inputs.json (which triggers it), and submit the event."""
        for key, body in (extra or {}).items():
            s3.put_object(Bucket="runs", Key=f"runs/{name}/{key}", Body=body.encode())
        if wdl is not None:
            s3.put_object(Bucket="runs", Key=f"runs/{name}/workflow.wdl", Body=wdl.encode())
        body = inputs if isinstance(inputs, (str, bytes)) else json.dumps(inputs)
        put = s3.put_object(Bucket="runs", Key=f"runs/{name}/inputs.json", Body=body)
        return start.from_object(settings, "runs", f"runs/{name}/inputs.json", put["ETag"].strip('"'), put.get("VersionId"))

    def rejection(name):
        doc = json.loads(s3.get_object(Bucket="runs", Key=f"runs/{name}/error.json")["Body"].read())
        assert doc["status"] == "FAILED" and doc["error"] == "InvalidSubmission"
        return [(p["where"], p["problem"]) for p in doc["problems"]]

    return settings, drop, rejection, executions


BAD_SUBMISSIONS = {
    # name: (inputs, wdl, extra files, [(where, problem)])
    "not-json": (
        '{"hello.names": [', GOOD, None,
        [(INPUTS, "not valid JSON: Expecting value: line 1 column 18 (char 17)")],
    ),
    "json-array": ("[1, 2]", GOOD, None, [(INPUTS, "expected a JSON object of workflow inputs, got a JSON list")]),
    "empty-inputs": ("", GOOD, None, [(INPUTS, 'empty: expected a JSON object of workflow inputs, e.g. {"wf.x": 1}')]),
    "too-big": (
        json.dumps({"hello.names": ["x" * (1024 * 1024)]}), GOOD, None,
        [(INPUTS, "1048597 bytes; an inputs JSON may have at most 1 MiB (put large values in files and pass their s3:// URIs)")],
    ),
    "no-wdl": (OK_INPUTS, None, None, [("s3://runs/runs/{name}/", "no WDL found: upload the workflow as s3://runs/runs/{name}/workflow.wdl "
                                                      "(or a `miniwdl zip` bundle as s3://runs/runs/{name}/workflow.zip)")]),
    "two-wdls": (
        OK_INPUTS, None, {"a.wdl": GOOD, "b.wdl": GOOD},
        [("s3://runs/runs/{name}/", "several WDL files (a.wdl, b.wdl); name the main one workflow.wdl")],
    ),
    "syntax-error": (
        OK_INPUTS, "version 1.1\nworkflow hello { call }\n", None,
        [(WDL + ":2:23", "WDL syntax error: Unexpected token Token('STRING1_FRAGMENT', '}\\n') at line 2, column 23. Expected one of: * CNAME Previous tokens: [Token('CALL', 'call')]")],
    ),
    "unknown-version": (
        OK_INPUTS, GOOD.replace("version 1.1", "version 3.0"), None,
        [(WDL, "WDL syntax error: unknown WDL version 3.0; choices: draft-2, 1.0, 1.1, development, 1.2")],
    ),
    "unknown-identifier": (
        {}, "version 1.1\nworkflow hello {\n  Int x = y\n}\n", None,
        [(WDL + ":3:11", "WDL error: Unknown identifier y")],
    ),
    "type-error": (
        {}, "version 1.1\nworkflow hello {\n  input { Int n = 1 }\n  String s = n + [1]\n}\n", None,
        [(WDL + ":4:14", "WDL error: Non-numeric operand to + operator")],
    ),
    "missing-import": (
        {}, 'version 1.1\nimport "lib.wdl" as lib\nworkflow hello { call lib.t }\n', None,
        [(WDL + ":2:1", "WDL import failed: Failed to import lib.wdl: s3://runs/runs/{name}/lib.wdl does not exist")],
    ),
    "no-workflow": (
        {}, "version 1.1\ntask a { command <<< >>> }\ntask b { command <<< >>> }\n", None,
        [(WDL, "no workflow to run: the document has no workflow and 2 tasks (a, b): name the one to run (--task NAME, or the run option task)")],
    ),
    "map-key-of-another-type": (
        {"hello.m": {"notint": "x"}}, "version 1.1\nworkflow hello {\n  input { Map[Int,String]? m }\n}\n", None,
        [(INPUTS + ": hello.m", 'expected Map[Int,String]?, got {"notint": "x"} '
          "(coercing 'String' to 'Int': invalid literal for int() with base 10: 'notint')")],
    ),
    "empty-nonempty-array": (
        {"hello.ne": [], "hello.s": {"xs": []}, "hello.m": {"a": [1], "b": []}},
        "version 1.1\nstruct S { Array[Int]+ xs }\nworkflow hello {\n  input {\n    Array[String]+ ne\n    S s\n"
        "    Map[String, Array[Int]+] m\n    Array[String]+? omitted\n  }\n}\n", None,
        [(INPUTS + ": hello.ne", "an empty array where Array[String]+ must have at least one item"),
         (INPUTS + ": hello.s.xs", "an empty array where Array[Int]+ must have at least one item"),
         (INPUTS + ': hello.m["b"]', "an empty array where Array[Int]+ must have at least one item")],
    ),
    "runtime-not-a-memory-size": (
        {}, 'version 1.1\nworkflow hello { call t }\ntask t {\n  command <<< >>>\n  runtime { memory: "lots" }\n}\n', None,
        [(WDL + ":3:1", 'task t: runtime.memory = "lots": not a memory size (e.g. "4 GiB", "512 MiB" or a number of bytes)')],
    ),
    "runtime-preemptible-not-a-number": (
        {}, 'version 1.1\nworkflow hello { call t }\ntask t {\n  command <<< >>>\n  runtime { preemptible: "yes" }\n}\n', None,
        [(WDL + ":3:1", 'task t: runtime.preemptible = "yes": expected a whole number (e.g. preemptible: 2)')],
    ),
    "runtime-retries-and-size-both-wrong": (  # (each said: the retries are not a size problem)
        {}, 'version 1.1\nworkflow hello { call t }\ntask t {\n  command <<< >>>\n  runtime { maxRetries: 1.5\n memory: "lots" }\n}\n', None,
        [(WDL + ":3:1", 'task t: runtime.memory = "lots": not a memory size (e.g. "4 GiB", "512 MiB" or a number of bytes)'),
         (WDL + ":3:1", "task t: runtime.maxRetries = 1.5: expected a whole number (e.g. maxRetries: 2)")],
    ),
    "runtime-not-an-image": (
        {}, 'version 1.1\nworkflow hello { call t }\ntask t {\n  command <<< >>>\n  runtime { docker: "UBUNTU::::bad image@@" }\n}\n',
        None, [(WDL + ":3:1", "task t: runtime.docker: not an image reference: 'UBUNTU::::bad image@@'")],
    ),
    "runtime-container-array-not-an-image": (  # ("*" and other protocols skipped)
        {}, 'version 1.1\nworkflow hello { call t }\ntask t {\n  command <<< >>>\n  runtime { container: ["*", "https://x/y", "Bad Image"] }\n}\n',
        None, [(WDL + ":3:1", "task t: runtime.container: not an image reference: 'Bad Image'")],
    ),
    "runtime-an-images-default-input-not-an-image": (  # (`String docker = "..."`, as published WDLs pass it)
        {}, 'version 1.1\nworkflow hello { call t }\ntask t {\n  input { String docker = "UBUNTU::::bad" }\n  command <<< >>>\n'
        '  runtime { docker: docker }\n}\n',
        None, [(WDL + ":3:1", "task t: runtime.docker: 'UBUNTU::::bad': 'UBUNTU:::' is not a repository name (lowercase letters, "
                "digits, . _ -)")],
    ),
    "runtime-an-image-docker-takes-and-ecs-does-not": (  # (ECS: sha256 digests only)
        {}, 'version 1.1\nworkflow hello { call t }\ntask t {\n  command <<< >>>\n  runtime { docker: "ubuntu@sha512:' + "ab" * 64 + '" }\n}\n',
        None, [(WDL + ":3:1", "task t: runtime.docker: 'ubuntu@sha512:" + "ab" * 64 + "': its digest 'sha512:" + "ab" * 64
                + "' is not one ECS takes (sha256: and exactly 64 hex digits)")],
    ),
    "int-beyond-64-bits": (
        dict(OK_INPUTS, **{"hello.copies": 99999999999999999999}), GOOD, None,
        [(INPUTS + ": hello.copies", "99999999999999999999 is beyond WDL's Int, a 64-bit integer "
          "(-9223372036854775808 to 9223372036854775807)")],
    ),
    "missing-input": (
        {"hello.reference": "s3://data/ref.txt"}, GOOD, None,
        [(INPUTS + ": hello.names", "missing required input of type Array[String]")],
    ),
    "unknown-input": (
        dict(OK_INPUTS, **{"hello.nmes": ["x"]}), GOOD, None,
        [(INPUTS + ": hello.nmes", "unknown input: hello has no input nmes")],
    ),
    "wrong-namespace": (
        {"other.names": ["Ann"], "hello.reference": "s3://data/ref.txt"}, GOOD, None,
        [
            (INPUTS + ": other.names", "unknown input: hello has no input other.names (did you mean hello.names?)"),
            (INPUTS + ": hello.names", "missing required input of type Array[String]"),
        ],
    ),
    "wrong-types": (
        dict(OK_INPUTS, **{"hello.names": "Ann", "hello.copies": "three"}), GOOD, None,
        [
            (INPUTS + ": hello.names", "expected Array[String], got \"Ann\" (couldn't construct 'Array[String]' from \"Ann\" (in names))"),
            (INPUTS + ": hello.copies", "expected Int, got \"three\" (couldn't construct 'Int?' from \"three\" (in copies))"),
        ],
    ),
    "missing-object": (
        dict(OK_INPUTS, **{"hello.reference": "s3://data/nope.txt"}), GOOD, None,
        [(INPUTS + ": hello.reference", "s3://data/nope.txt does not exist")],
    ),
    "missing-bucket": (
        dict(OK_INPUTS, **{"hello.reference": "s3://no-such-bucket-x/ref.txt"}), GOOD, None,
        [(INPUTS + ": hello.reference", "s3://no-such-bucket-x/ref.txt: bucket no-such-bucket-x does not exist")],
    ),
    "local-path": (
        dict(OK_INPUTS, **{"hello.reference": "/home/me/ref.txt"}), GOOD, None,
        [(INPUTS + ": hello.reference", "File input '/home/me/ref.txt' is a local path, which the pipeline cannot read: "
          "upload it to S3 and give its s3:// URI (`miniwdl-fargate local run` uploads local files for you)")],
    ),
    "unsupported-scheme": (
        dict(OK_INPUTS, **{"hello.reference": "gs://bucket/ref.txt"}), GOOD, None,
        [(INPUTS + ": hello.reference", "File input gs://bucket/ref.txt: only s3:// and https:// URIs are supported")],
    ),
    "cpu-beyond-fargate": (
        OK_INPUTS, GOOD.replace("cpu: 1", "cpu: 64"), None,
        [(WDL + ":11:1", "task greet cannot run on Fargate: runtime.cpu = 64; Fargate allows at most 16 vCPU; "
          + sizes.ENABLE_MANAGED_INSTANCES)],
    ),
    "gpu-and-memory": (
        OK_INPUTS, GOOD.replace('memory: "1 GiB"', 'memory: "500 GiB" gpu: true'), None,
        [(WDL + ":11:1", "task greet cannot run on Fargate: runtime.gpu = true; Fargate has no GPUs; "
          "runtime.memory = 500 GiB; Fargate allows at most 120 GiB; " + sizes.ENABLE_MANAGED_INSTANCES)],
    ),
    "duplicate-key": (
        '{"hello.names": ["Ann"], "hello.reference": "s3://data/ref.txt", "hello.names": ["Bob"]}', GOOD, None,
        [(INPUTS + ": hello.names", "key given more than once in the same object")],
    ),
    "nan-and-infinity": (
        '{"hello.names": ["Ann"], "hello.reference": "s3://data/ref.txt", "hello.copies": NaN, "x": [-Infinity]}', GOOD, None,
        [
            (INPUTS + ": hello.copies", "NaN is not a JSON number (JSON has no NaN or Infinity)"),
            (INPUTS + ": x[0]", "-Infinity is not a JSON number (JSON has no NaN or Infinity)"),
        ],
    ),
    "nested-too-deep": (
        '{"hello.names": ' + "[" * 50000 + "]" * 50000 + "}", GOOD, None,
        [(INPUTS, "nested too deeply to parse (at most 64 levels of arrays and objects)")],
    ),
    "given-twice": (
        dict(OK_INPUTS, names=["Bob"]), GOOD, None,
        [(INPUTS + ": names", "the input hello.names is also given as 'hello.names': give it once")],
    ),
    "extra-struct-member": (
        dict(OK_INPUTS, **{"hello.people": [{"name": "Ann", "age": 3}], "hello.who": {"name": "Bob", "nmae": "x"}}),
        STRUCTS, None,
        [
            (INPUTS + ": hello.people[0]", "struct Person has no member 'age'"),
            (INPUTS + ": hello.who", "struct Person has no member 'nmae'"),
        ],
    ),
    "import-outside-folder": (
        {}, 'version 1.1\nimport "../shared/lib.wdl" as lib\nworkflow hello { call lib.t }\n', None,
        [(WDL + ":2:1", "WDL import failed: Failed to import ../shared/lib.wdl: cannot import ../shared/lib.wdl: it is "
          "outside the workflow's folder; " + IMPORT_RULE + BUNDLE_HINT)],
    ),
    "import-s3": (
        {}, 'version 1.1\nimport "s3://runs/shared/lib.wdl" as lib\nworkflow hello { call lib.t }\n', None,
        [(WDL + ":2:1", "WDL import failed: Failed to import s3://runs/shared/lib.wdl: cannot import "
          "s3://runs/shared/lib.wdl: " + IMPORT_RULE + "; copy it into the folder and import it by relative path, or "
          "submit a `miniwdl zip` bundle, which holds what the WDL imports by URL (`miniwdl-fargate submit` makes one itself)")],
    ),
    "import-absolute": (
        {}, 'version 1.1\nimport "/etc/lib.wdl" as lib\nworkflow hello { call lib.t }\n', None,
        [(WDL + ":2:1", "WDL import failed: Failed to import /etc/lib.wdl: cannot import /etc/lib.wdl: an absolute "
          "path names a file on the machine running the workflow; " + IMPORT_RULE + BUNDLE_HINT)],
    ),
    "import-errors": (  # (miniwdl's text of an imported document's several errors is empty)
        {}, 'version 1.1\nimport "lib.wdl" as lib\nworkflow hello { call lib.t }\n',
        {"lib.wdl": "version 1.1\ntask t {\n  input { Int a = b }\n  command <<< echo ~{c} >>>\n}\n"},
        [(WDL + ":2:1", "WDL import failed: Failed to import lib.wdl: s3://runs/runs/{name}/lib.wdl:3:19: Unknown identifier b; "
          "s3://runs/runs/{name}/lib.wdl:4:22: Unknown identifier c")],
    ),
    "import-circle": (
        {}, 'version 1.1\nimport "lib.wdl" as lib\nworkflow hello { call lib.t }\n',
        {"lib.wdl": 'version 1.1\nimport "workflow.wdl" as main\ntask t { command <<< >>> }\n'},
        [(WDL + ":2:1", "WDL import failed: Failed to import lib.wdl: circular imports: s3://runs/runs/{name}/workflow.wdl -> "
          "s3://runs/runs/{name}/lib.wdl -> s3://runs/runs/{name}/workflow.wdl")],
    ),
    "bad name!": (OK_INPUTS, GOOD, None, [(INPUTS, "run name 'bad name!' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")]),
    "broken-cfg": (
        OK_INPUTS, GOOD, {"miniwdl.cfg": "[call_cache\nget = true\n"},
        [("s3://runs/runs/{name}/miniwdl.cfg", "not a valid miniwdl configuration file: File contains no section headers. "
          "file: 's3://runs/runs/{name}/miniwdl.cfg', line: 1 '[call_cache\\n'")],
    ),
    "cfg-bad-interpolation": (
        OK_INPUTS, GOOD, {"miniwdl.cfg": "[scheduler]\ncall_concurrency = 50%\n"},
        [("s3://runs/runs/{name}/miniwdl.cfg", "not a valid miniwdl configuration file: '%' must be followed by '%' or '(', found: '%'")],
    ),
    "cfg-stack-owned": (  # (config.RUN_CFG_REFUSED: a run may not open the shared file system to itself)
        OK_INPUTS, GOOD, {"miniwdl.cfg": "[file_io]\nallow_any_input = true\n[aws_fargate]\nspot = false\nsecurity_groups = sg-1\n"},
        [("s3://runs/runs/{name}/miniwdl.cfg", "not a valid miniwdl configuration file: [file_io] allow_any_input: a run's "
          "miniwdl.cfg may not set it (the stack's, or the driver's); [aws_fargate] security_groups: a run's miniwdl.cfg may not "
          "set it (the stack's, or the driver's)")],
    ),
    "cfg-bad-values": (  # (the backend reads each value only when a task needs it: mid-run)
        OK_INPUTS, GOOD, {"miniwdl.cfg": "[aws_fargate]\nkeep_run_dirs = perhaps\ncall_cache = maybe\nspot = false\n"},
        [("s3://runs/runs/{name}/miniwdl.cfg", "not a valid miniwdl configuration file: [aws_fargate] keep_run_dirs = 'perhaps': "
          "expected true or false, got 'perhaps'; [aws_fargate] call_cache = 'maybe': must be true, false, read or write (got 'maybe')")],
    ),
}


@pytest.mark.parametrize("name", BAD_SUBMISSIONS)
def test_bad_submission_is_refused_with_every_problem_and_starts_nothing(pipeline, name):
    settings, drop, rejection, executions = pipeline
    inputs, wdl, extra, expected = BAD_SUBMISSIONS[name]
    assert drop(name, inputs, wdl, extra) is None
    assert rejection(name) == [(w.replace("{name}", name), p.replace("{name}", name)) for w, p in expected]
    assert executions() == []


def test_a_syntax_error_in_an_import_is_said_with_where_it_is_in_the_imported_document(pipeline):
    settings, drop, rejection, executions = pipeline
    wdl = 'version 1.1\nimport "lib.wdl" as lib\nworkflow hello { call lib.t }\n'
    assert drop("import-syntax", {}, wdl, {"lib.wdl": "version 1.1\ntask t {\n  command <<< >>>\n"}) is None
    [(where, problem)] = rejection("import-syntax")
    assert where == WDL.format(name="import-syntax") + ":2:1"
    # (on one line; lark lists the tokens it expected in no fixed order)
    assert problem.startswith(
        "WDL import failed: Failed to import lib.wdl: s3://runs/runs/import-syntax/lib.wdl:3:15: Unexpected token "
        "Token('$END', '') at line 3, column 15. Expected one of: * "
    ), problem
    assert "\n" not in problem
    assert executions() == []


@pytest.mark.parametrize("main", [True, False], ids=["the-workflow", "an-import"])
def test_a_wdl_that_is_not_utf8_is_refused_naming_it_and_starts_nothing(pipeline, main):
    """The driver's miniwdl reads a WDL document strictly as UTF-8: the submit step read it with
    the bad bytes replaced, accepted it, and the run failed later on a UnicodeDecodeError."""
    settings, drop, rejection, executions = pipeline
    s3 = aws.client("s3")
    latin1 = b'version 1.1\ntask t {\n  command <<< echo "caf\xe9" >>>\n}\n'
    if main:
        s3.put_object(Bucket="runs", Key="runs/latin/workflow.wdl", Body=latin1.replace(b"task t", b"workflow w {}\ntask t"))
    else:
        s3.put_object(Bucket="runs", Key="runs/latin/lib.wdl", Body=latin1)
    wdl = None if main else 'version 1.1\nimport "lib.wdl"\nworkflow w { call lib.t }\n'
    drop("latin", {}, wdl=wdl)
    body = s3.get_object(Bucket="runs", Key=f"runs/latin/{'workflow' if main else 'lib'}.wdl")["Body"].read()
    offset = body.index(b"\xe9")
    said = f"not UTF-8 text (byte 0xe9 at offset {offset}): a WDL document is UTF-8"
    if main:
        assert rejection("latin") == [(WDL.format(name="latin"), f"s3://runs/runs/latin/workflow.wdl: {said}")]
    else:
        assert rejection("latin") == [
            (WDL.format(name="latin") + ":2:1", f"WDL import failed: Failed to import lib.wdl: s3://runs/runs/latin/lib.wdl: {said}")
        ]
    assert executions() == []


def test_a_directory_input_must_name_a_prefix_with_files(pipeline):
    settings, drop, rejection, executions = pipeline
    wdl = GOOD.replace("File reference", "Directory reference").replace("version 1.1", "version 1.2")
    assert drop("dir-empty", dict(OK_INPUTS, **{"hello.reference": "s3://data/nothing/"}), wdl) is None
    assert rejection("dir-empty") == [
        (INPUTS.format(name="dir-empty") + ": hello.reference",
         "s3://data/nothing holds no objects (a Directory input names a prefix with files under it)")
    ]
    # a folder holding only folder objects (the S3 console's "Create folder", an empty Directory output)
    aws.client("s3").put_object(Bucket="data", Key="folder/", Body=b"")
    aws.client("s3").put_object(Bucket="data", Key="folder/sub/", Body=b"")
    assert drop("dir-folder", dict(OK_INPUTS, **{"hello.reference": "s3://data/folder"}), wdl) is None
    assert rejection("dir-folder")[0][1] == "s3://data/folder holds no objects (a Directory input names a prefix with files under it)"
    assert drop("dir-ok", dict(OK_INPUTS, **{"hello.reference": "s3://data/dir/"}), wdl) is not None
    assert len(executions()) == 1
    # S3 keys are flat: "odd//b.txt" is a key of its own, with no file path (its staging failed
    # with "refusing to write outside", "a/./b" landed on "a/b"'s path): refused, naming it
    aws.client("s3").put_object(Bucket="data", Key="odd/a.txt", Body=b"a")
    aws.client("s3").put_object(Bucket="data", Key="odd//b.txt", Body=b"b")
    assert drop("dir-odd", dict(OK_INPUTS, **{"hello.reference": "s3://data/odd"}), wdl) is None
    assert rejection("dir-odd")[0][1] == (
        "s3://data/odd: s3://data/odd//b.txt: its key has an empty, '.' or '..' part (a '//', '/./' or '/../' in it), "
        "which no file path can hold: rename it"
    )


def test_an_archived_input_is_refused_until_it_is_restored(pipeline):
    """An object in Glacier Flexible Retrieval or Deep Archive (or Intelligent-Tiering's archive
    tiers) passes HeadObject, and its download fails (InvalidObjectState) after the run started:
    refused at submit, naming it, until a restored copy is there."""
    settings, drop, rejection, executions = pipeline
    s3 = aws.client("s3")
    s3.put_object(Bucket="data", Key="cold/ref.txt", Body=b"ACGT", StorageClass="DEEP_ARCHIVE")
    assert drop("cold", dict(OK_INPUTS, **{"hello.reference": "s3://data/cold/ref.txt"})) is None
    assert rejection("cold") == [(INPUTS.format(name="cold") + ": hello.reference",
                                  "s3://data/cold/ref.txt is archived in S3 (DEEP_ARCHIVE) and cannot be read until it is "
                                  "restored: restore it (RestoreObject, or the S3 console's Initiate restore), then submit again")]
    wdl = GOOD.replace("File reference", "Directory reference").replace("version 1.1", "version 1.2")
    assert drop("cold-dir", dict(OK_INPUTS, **{"hello.reference": "s3://data/cold"}), wdl) is None
    assert rejection("cold-dir")[0][1].startswith("s3://data/cold: s3://data/cold/ref.txt is archived in S3 (DEEP_ARCHIVE)")
    s3.restore_object(Bucket="data", Key="cold/ref.txt", RestoreRequest={"Days": 1})
    assert drop("warm", dict(OK_INPUTS, **{"hello.reference": "s3://data/cold/ref.txt"})) is not None
    assert len(executions()) == 1


@pytest.mark.parametrize("runtime", [
    'docker: ""',  # (the configured default image)
    'container: "*"',
    'container: ["ubuntu:22.04", "Not An Image"]',  # (the first ECS can pull)
    'container: ["https://gcr.io/x/ubuntu:latest", "ubuntu:22.04"]',  # (another protocol: skipped, as WDL says)
    'container: "ubuntu:22.04"\n    docker: "Old:Bad"',  # (miniwdl takes container)
    'docker: "quay.io/biocontainers/samtools:1.17--h00cdaf9_0"',
    'docker: "123456789012.dkr.ecr.us-east-1.amazonaws.com/tools@sha256:' + "a" * 64 + '"',
    'docker: "localhost:5000/x"',
    'container: "docker://ubuntu:22.04"',  # (WDL 1.1's container URI)
])
def test_an_image_miniwdl_would_not_use_or_would_take_is_not_refused(pipeline, runtime):
    settings, drop, rejection, executions = pipeline
    wdl = f"version 1.1\nworkflow hello {{ call t }}\ntask t {{\n  command <<< >>>\n  runtime {{\n    {runtime}\n  }}\n}}\n"
    assert drop("img", {}, wdl=wdl) is not None


def test_a_task_with_an_inline_dockerfile_is_refused_saying_what_to_do(pipeline):
    settings, drop, rejection, executions = pipeline
    wdl = ("version 1.1\nworkflow hello { call t }\ntask t {\n  command <<< >>>\n  runtime {\n"
           '    inlineDockerfile: "FROM ubuntu:22.04"\n  }\n}\n')
    assert drop("inline", {}, wdl=wdl) is None
    [(_, said)] = rejection("inline")
    assert said.startswith("task t: runtime.inlineDockerfile is not supported (ECS runs images from a registry, it builds none)")
    assert executions() == []


def test_a_refused_submission_stays_refused_by_its_run_id_after_a_later_refusal(pipeline):
    """runs/<name>/error.json is the name's latest refusal; `status` of an earlier refused run id
    said "no run" once a later one replaced it."""
    from miniwdl_fargate.pipeline import manage

    settings, drop, rejection, executions = pipeline
    s3 = aws.client("s3")
    ids = []
    for missing in ("hello.names", "hello.reference"):
        inputs = {"hello.names": ["x"], "hello.reference": "s3://data/ref.txt"}
        del inputs[missing]
        drop("twice", inputs)
        ids.append(json.loads(s3.get_object(Bucket="runs", Key="runs/twice/error.json")["Body"].read())["run_id"])
    assert ids[0] != ids[1]
    for run_id, missing in zip(ids, ("hello.names", "hello.reference"), strict=True):
        with pytest.raises(manage.RunRefused) as refused:
            manage.describe_run("runs", run_id)
        assert f"run {run_id} was not started: the submission was refused: " in str(refused.value)
        assert f"{missing}: missing required input" in str(refused.value)
        assert f"(s3://runs/runs/twice/results/{run_id}/error.json)" in str(refused.value)
    assert executions() == []


def test_a_good_submission_starts_once_and_clears_an_earlier_rejection(pipeline):
    settings, drop, rejection, executions = pipeline
    assert drop("retry", {"hello.names": "Ann"}, GOOD) is None
    assert rejection("retry")
    started = drop("retry", OK_INPUTS, GOOD)
    assert started is not None and not started.duplicate
    assert [e["name"] for e in executions()] == [started.record.run_id]
    with pytest.raises(aws.client("s3").exceptions.ClientError):
        aws.client("s3").head_object(Bucket="runs", Key="runs/retry/error.json")


def test_the_same_upload_delivered_twice_starts_one_run_and_a_reupload_starts_another(pipeline):
    settings, drop, rejection, executions = pipeline
    s3 = aws.client("s3")
    first = drop("twice", OK_INPUTS)
    head = s3.head_object(Bucket="runs", Key="runs/twice/inputs.json")
    again = start.from_object(settings, "runs", "runs/twice/inputs.json", head["ETag"].strip('"'), head.get("VersionId"))
    assert again.duplicate and again.record.run_id == first.record.run_id
    assert len(executions()) == 1
    # new content: a new run
    second = drop("twice", dict(OK_INPUTS, **{"hello.copies": 2}), wdl=None)
    assert not second.duplicate and second.record.run_id != first.record.run_id
    assert len(executions()) == 2


def test_api_requests_are_checked_the_same_way(pipeline):
    settings, drop, rejection, executions = pipeline
    aws.client("s3").put_object(Bucket="runs", Key="workflows/hello.wdl", Body=GOOD.encode())
    with pytest.raises(start.Refused) as info:
        start.from_request(
            settings, "api-run", "s3://runs/workflows/hello.wdl",
            {"hello.names": 3, "hello.reference": "s3://data/missing.txt"}, "token-1",
        )
    assert [(p["where"], p["problem"]) for p in info.value.problems] == [
        ("inputs: hello.names", "expected Array[String], got 3 (couldn't construct 'Array[String]' from 3 (in names))"),
    ]
    with pytest.raises(start.Refused) as info:
        start.from_request(settings, "api-run", "s3://runs/workflows/none.wdl", OK_INPUTS, "token-2")
    assert info.value.problems == [{"where": "workflow", "problem": "s3://runs/workflows/none.wdl does not exist or is not readable"}]
    assert executions() == []
    accepted = start.from_request(settings, "api-run", "s3://runs/workflows/hello.wdl", OK_INPUTS, "token-3")
    again = start.from_request(settings, "api-run", "s3://runs/workflows/hello.wdl", OK_INPUTS, "token-3")
    assert again.duplicate and again.record.run_id == accepted.record.run_id
    assert len(executions()) == 1


# -- beyond Fargate: what the stack's managed instances and EBS scratch volumes allow ------------

#: the stack with ManagedInstances=Enabled (the template's defaults, GPU kinds given) and EBS scratch
MANAGED = dict(MANAGED_INSTANCES_MAX_CPU="64", MANAGED_INSTANCES_MAX_MEMORY_GIB="512", MANAGED_INSTANCES_MAX_GPUS="4", EBS_SCRATCH="true")
BEYOND_FARGATE = {
    # name: (the greet task's runtime, what a stack without managed instances or EBS scratch says)
    "cpu-32": ('cpu: 32 memory: "1 GiB"', "runtime.cpu = 32; Fargate allows at most 16 vCPU; " + sizes.ENABLE_MANAGED_INSTANCES),
    "gpu": ('cpu: 1 memory: "1 GiB" gpu: true', "runtime.gpu = true; Fargate has no GPUs; " + sizes.ENABLE_MANAGED_INSTANCES),
    "gpu-count": ('cpu: 1 memory: "1 GiB" gpuCount: 2', "2 GPUs (runtime.gpuCount); Fargate has no GPUs; " + sizes.ENABLE_MANAGED_INSTANCES),
    "gpu-count-string": ('cpu: 1 memory: "1 GiB" gpuCount: "2"', "2 GPUs (runtime.gpuCount); Fargate has no GPUs; " + sizes.ENABLE_MANAGED_INSTANCES),
    "accelerator": ('cpu: 1 memory: "1 GiB" acceleratorType: "nvidia-l4" acceleratorCount: 1',
                    "1 GPU (runtime.acceleratorCount); Fargate has no GPUs; " + sizes.ENABLE_MANAGED_INSTANCES),
    "accelerator-type": ('cpu: 1 memory: "1 GiB" acceleratorType: "nvidia-l4"',
                         '1 GPU (runtime.acceleratorType = "nvidia-l4"); Fargate has no GPUs; ' + sizes.ENABLE_MANAGED_INSTANCES),
    "disks-500": (
        'cpu: 1 memory: "1 GiB" disks: "500 GiB"',
        "runtime.disks = 500 GiB; Fargate ephemeral storage is at most 200 GiB; " + sizes.ENABLE_EBS_SCRATCH
        + " (keep large data on EFS, where the task's working directory is)",
    ),
}


def drop_on(stack_env, name, wdl, inputs=OK_INPUTS):
    """``drop`` (the pipeline fixture's) to a stack whose submit function has ``stack_env``."""
    s3 = aws.client("s3")
    machine = aws.client("stepfunctions").list_state_machines()["stateMachines"][0]["stateMachineArn"]
    settings = ApiSettings.from_env(environment(STATE_MACHINE_ARN=machine, **stack_env))
    s3.put_object(Bucket="runs", Key=f"runs/{name}/workflow.wdl", Body=wdl.encode())
    put = s3.put_object(Bucket="runs", Key=f"runs/{name}/inputs.json", Body=json.dumps(inputs))
    return start.from_object(settings, "runs", f"runs/{name}/inputs.json", put["ETag"].strip('"'), put.get("VersionId"))


def with_runtime(runtime):
    return GOOD.replace('runtime { cpu: 1 memory: "1 GiB" }', f"runtime {{ {runtime} }}")


@pytest.mark.parametrize("name", BEYOND_FARGATE)
def test_a_task_beyond_fargate_is_refused_naming_what_lifts_the_limit(pipeline, name):
    settings, drop, rejection, executions = pipeline  # the stack as deployed by default: no managed instances
    runtime, said = BEYOND_FARGATE[name]
    assert drop(name, OK_INPUTS, with_runtime(runtime)) is None
    assert rejection(name) == [(WDL.format(name=name) + ":11:1", f"task greet cannot run on Fargate: {said}")]
    assert executions() == []


#: sizes as most published WDLs write them: an input with a default, which the workflow may set
SIZED_BY_INPUTS = """version 1.1
workflow sized {
  input { Int aligner_cpu = 64  Int sort_memory_gb = 8 }
  call align { input: cpu = aligner_cpu }
  call sort { input: memory_gb = sort_memory_gb }
  scatter (n in [1, 2]) { call sort as each { input: memory_gb = n * 300 } }
}
task align {
  input { Int cpu = 4 }
  command <<< >>>
  runtime { cpu: cpu  memory: "8 GiB" }
}
task sort {
  input { Int memory_gb = 4  Int extra_gb = 0 }
  command <<< >>>
  runtime { cpu: 2  memory: "~{memory_gb + extra_gb} GiB" }
}
"""


@pytest.mark.parametrize("inputs, refused", [
    ({}, ["task align cannot run on Fargate: runtime.cpu = 64; Fargate allows at most 16 vCPU"]),  # (the workflow's default)
    ({"sized.aligner_cpu": 8}, []),
    ({"sized.aligner_cpu": 8, "sized.sort.extra_gb": 500},
     ["task sort cannot run on Fargate: runtime.memory = 508 GiB; Fargate allows at most 120 GiB"]),  # (a call's input given)
    ({"sized.aligner_cpu": 8, "sized.each.extra_gb": 1}, []),  # (in a scatter: known at run time only)
])
def test_a_size_set_by_inputs_known_before_the_run_is_checked_as_a_literal_is(pipeline, inputs, refused):
    """`cpu: cpu` of `Int cpu = 64` (WARP's style guide, stjudecloud's, biowdl's): the check took
    literals only, and such a run started and failed hours in, when that task launched. What the
    run's inputs, the call or the input's default make before the run is checked; what a scatter's
    item or an earlier call makes is left to the backend."""
    settings, drop, rejection, executions = pipeline
    name = f"sized-{len(inputs)}-{len(refused)}"
    started = drop(name, inputs, SIZED_BY_INPUTS)
    if not refused:
        assert started is not None
        return
    assert started is None and executions() == []
    said = [problem for _where, problem in rejection(name)]
    assert len(said) == len(refused) and all(p.startswith(r) for p, r in zip(said, refused, strict=True)), said


#: GOOD with a big task it calls only under an ``if``, and a library's sub-workflow
SOMETIMES_BIG = GOOD.replace("version 1.1\n", 'version 1.1\nimport "lib.wdl" as lib\n').replace(
    "    Int copies = 1\n", "    Boolean huge = false\n"
).replace(
    "  output {", "  if (huge) { call big }\n  call lib.sub\n  output {", 1  # (the workflow's)
) + """task big {
  command <<< echo big >>>
  runtime { cpu: 64 memory: "500 GiB" }
}
"""
LIBRARY = """version 1.1
workflow sub {
  call small
}
task small {
  command <<< echo small >>>
  runtime { cpu: 1 }
}
task unused_big {
  command <<< echo never >>>
  runtime { cpu: 64 }
}
"""


def test_a_task_beyond_fargate_that_may_never_run_is_not_refused(pipeline):
    """Sizes are checked for the tasks a run calls whatever its inputs: a big task only imported
    (a library of tasks), or called under an ``if`` its inputs may not take, does not refuse the
    run (the backend refuses it with the same words if it is ever launched); a big task that a
    sub-workflow the run calls calls is refused, where the library defines it."""
    _settings, drop, rejection, executions = pipeline
    started = drop("sometimes-big", OK_INPUTS, SOMETIMES_BIG, extra={"lib.wdl": LIBRARY})
    assert started is not None, rejection("sometimes-big")
    assert [e["name"] for e in executions()] == [started.record.run_id]
    always = LIBRARY.replace("call small\n", "call small\n  call unused_big\n")
    assert drop("always-big", OK_INPUTS, SOMETIMES_BIG, extra={"lib.wdl": always}) is None
    assert rejection("always-big") == [
        ("s3://runs/runs/always-big/lib.wdl:10:1", "task unused_big cannot run on Fargate: runtime.cpu = 64; "
         "Fargate allows at most 16 vCPU; " + sizes.ENABLE_MANAGED_INSTANCES),
    ]
    assert len(executions()) == 1


def test_without_managed_instances_the_refusal_names_the_stack_parameter(pipeline):
    _settings, drop, rejection, _executions = pipeline
    drop("cpu", OK_INPUTS, with_runtime(BEYOND_FARGATE["cpu-32"][0]))
    [(_where, problem)] = rejection("cpu")
    assert "deploy the stack with ManagedInstances=Enabled" in problem


@pytest.mark.parametrize("name", BEYOND_FARGATE)
def test_a_task_beyond_fargate_is_accepted_where_the_stack_can_run_it(pipeline, name):
    _settings, _drop, _rejection, executions = pipeline
    started = drop_on(MANAGED, name, with_runtime(BEYOND_FARGATE[name][0]))
    assert started is not None and [e["name"] for e in executions()] == [started.record.run_id]


@pytest.mark.parametrize(
    "runtime, said",
    [
        ('cpu: 96 memory: "1 GiB"', "runtime.cpu = 96; Fargate allows at most 16 vCPU; "
         "the managed instances allow at most 64 vCPU (stack parameter ManagedInstancesMaxVCpu; alone: [aws_fargate] managed_instances_max_cpu)"),
        ('cpu: 8 memory: "600 GiB"', "runtime.memory = 600 GiB; Fargate allows at most 120 GiB; "
         "the managed instances allow at most 486.4 GiB (stack parameter ManagedInstancesMaxMemoryGiB = 512; alone: [aws_fargate] managed_instances_max_memory_gib; less what the ECS agent keeps)"),
        ('cpu: 8 memory: "8 GiB" gpuCount: 8', "8 GPUs (runtime.gpuCount); Fargate has no GPUs; "
         "the managed instances allow at most 4 GPUs (stack parameters ManagedInstancesGpuKinds, ManagedInstancesMaxGpus; alone: [aws_fargate] managed_instances_gpu_capacity_provider, managed_instances_max_gpus)"),
    ],
    ids=["cpu", "memory", "gpus"],
)
def test_a_task_beyond_the_managed_instances_is_refused_naming_the_stack_parameter(pipeline, runtime, said):
    _settings, _drop, rejection, executions = pipeline
    assert drop_on(MANAGED, "huge", with_runtime(runtime)) is None
    assert rejection("huge") == [
        (WDL.format(name="huge") + ":11:1", f"task greet cannot run on Fargate or the stack's managed instances: {said}")
    ]
    assert executions() == []


def test_a_gpu_task_is_refused_where_the_managed_instances_have_no_gpu_types(pipeline):
    _settings, _drop, rejection, _executions = pipeline
    no_gpus = dict(MANAGED, MANAGED_INSTANCES_MAX_GPUS="0")
    assert drop_on(no_gpus, "gpu", with_runtime(BEYOND_FARGATE["gpu"][0])) is None
    assert rejection("gpu") == [
        (WDL.format(name="gpu") + ":11:1", "task greet cannot run on Fargate or the stack's managed instances: "
         "runtime.gpu = true; Fargate has no GPUs; the managed instances allow no GPUs "
         "(stack parameters ManagedInstancesGpuKinds, ManagedInstancesMaxGpus; alone: [aws_fargate] managed_instances_gpu_capacity_provider, managed_instances_max_gpus)")
    ]


def test_the_gpu_example_needs_managed_instances_with_gpus(pipeline):
    _settings, drop, rejection, executions = pipeline
    example = Path(__file__).resolve().parents[2] / "examples" / "gpu"
    wdl, inputs = (example / "workflow.wdl").read_text(), json.loads((example / "inputs.json").read_text())
    assert drop("gpu-example", inputs, wdl) is None
    # (its prepare task's 300 GiB of disk is refused too where no EBS role is set; a stack always has one)
    [(where, problem)] = [(w, p) for w, p in rejection("gpu-example") if "task crunch" in p]
    assert where.startswith(WDL.format(name="gpu-example") + ":") and problem.startswith("task crunch cannot run on Fargate: ")
    assert "runtime.gpu = true; Fargate has no GPUs; runtime.cpu = 32" in problem and "ManagedInstances=Enabled" in problem
    started = drop_on(MANAGED, "gpu-ok", wdl, inputs)
    assert started is not None and [e["name"] for e in executions()] == [started.record.run_id]


@pytest.mark.parametrize("count, shown", [("-1", "-1"), ('"two"', '"two"'), ("1.5", "1.5")])
def test_a_gpu_count_that_is_not_a_count_is_refused(pipeline, count, shown):
    _settings, _drop, rejection, _executions = pipeline
    assert drop_on(MANAGED, "gpus", with_runtime(f"cpu: 4 gpuCount: {count}")) is None
    assert rejection("gpus") == [
        (WDL.format(name="gpus") + ":11:1", f"task greet: runtime.gpuCount = {shown}: expected a whole number of GPUs, e.g. gpuCount: 2")
    ]


def test_the_api_checks_sizes_against_the_stack_it_runs_in(pipeline):
    settings, _drop, _rejection, executions = pipeline
    aws.client("s3").put_object(Bucket="runs", Key="workflows/big.wdl", Body=with_runtime("cpu: 32").encode())
    with pytest.raises(start.Refused, match="deploy the stack with ManagedInstances=Enabled"):
        start.from_request(settings, "api-big", "s3://runs/workflows/big.wdl", OK_INPUTS, "token-1")
    managed = ApiSettings.from_env(environment(STATE_MACHINE_ARN=settings.state_machine_arn, **MANAGED))
    accepted = start.from_request(managed, "api-big", "s3://runs/workflows/big.wdl", OK_INPUTS, "token-2")
    assert [e["name"] for e in executions()] == [accepted.record.run_id]


EVENTS = Path(__file__).resolve().parents[1] / "events"


def test_an_inputs_json_deleted_before_the_submit_step_reads_it_is_rejected_not_retried(pipeline, monkeypatch):
    """The submit function answers the S3 event (a real payload) with error.json and returns: an
    error raised here would only be retried by EventBridge into the dead-letter queue."""
    import inputs_dropped

    settings, drop, rejection, executions = pipeline
    set_environment(monkeypatch, STATE_MACHINE_ARN=settings.state_machine_arn)
    monkeypatch.setattr(inputs_dropped.metrics.provider, "namespace", "test")  # (the template sets it)
    s3 = aws.client("s3")
    s3.put_object(Bucket="runs", Key="runs/gone/workflow.wdl", Body=GOOD.encode())
    put = s3.put_object(Bucket="runs", Key="runs/gone/inputs.json", Body=json.dumps(OK_INPUTS).encode())
    s3.delete_object(Bucket="runs", Key="runs/gone/inputs.json")
    event = json.loads((EVENTS / "s3_object_created.json").read_text())
    event["detail"]["bucket"]["name"] = "runs"
    event["detail"]["object"].update(key="runs/gone/inputs.json", etag=put["ETag"].strip('"'))
    assert inputs_dropped.handler(event, LambdaContext()) == {"started": False}
    assert rejection("gone") == [
        (INPUTS.format(name="gone"), "was deleted before the pipeline could read it: upload it again to start the run")
    ]
    assert executions() == []


def test_a_runs_own_copy_of_its_inputs_matches_the_rule_and_is_ignored_not_counted_rejected(pipeline, monkeypatch, capsys):
    """The submit rule's key pattern runs/*/inputs.json matches every run's own copy,
    runs/<name>/results/<run_id>/inputs.json, too (an EventBridge wildcard matches "/"): its event
    starts nothing, writes nothing and is no RunsRejected; a refused upload still is one."""
    import inputs_dropped

    settings, drop, rejection, executions = pipeline
    set_environment(monkeypatch, STATE_MACHINE_ARN=settings.state_machine_arn)
    monkeypatch.setattr(inputs_dropped.metrics.provider, "namespace", "test")
    s3 = aws.client("s3")
    copy_key = "runs/hello/results/hello-0123abcd/inputs.json"
    put = s3.put_object(Bucket="runs", Key=copy_key, Body=json.dumps(OK_INPUTS).encode())
    event = json.loads((EVENTS / "s3_object_created.json").read_text())
    event["detail"]["bucket"]["name"] = "runs"
    event["detail"]["object"].update(key=copy_key, etag=put["ETag"].strip('"'))
    assert inputs_dropped.handler(event, LambdaContext()) == {"started": False, "ignored": True}
    assert "RunsRejected" not in capsys.readouterr().out
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="runs", Prefix="runs/hello/")["Contents"]] == [copy_key]
    assert executions() == []

    s3.put_object(Bucket="runs", Key="runs/gone2/workflow.wdl", Body=GOOD.encode())
    event["detail"]["object"].update(key="runs/gone2/inputs.json", etag="0" * 32)  # (never uploaded)
    assert inputs_dropped.handler(event, LambdaContext()) == {"started": False}
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [e.get("RunsRejected") for e in emitted] == [[1.0]]


@pytest.mark.parametrize(
    "body, problem",
    [
        ("{oops", "not valid JSON at character 1: Expecting property name enclosed in double quotes"),
        ("[1]", "Input should be a valid dictionary or object to extract fields from"),
        ("", "no request body: send the run as a JSON object (docs/openapi.json)"),
        (None, "no request body: send the run as a JSON object (docs/openapi.json)"),
    ],
)
def test_a_post_whose_body_is_not_a_json_object_is_a_400_saying_so(monkeypatch, body, problem):
    import api

    set_environment(monkeypatch)
    monkeypatch.setattr(api.metrics.provider, "namespace", "test")  # (the template sets it)
    event = json.loads((EVENTS / "apigw_post_runs.json").read_text()) | {"body": body}
    answer = api.handler(event, LambdaContext())
    assert answer["statusCode"] == 400
    assert json.loads(answer["body"])["problems"] == [{"where": "body", "problem": problem}]


def _with_content_type(event: dict, kind: str) -> dict:
    """``event`` (API Gateway's proxy shape) sent with Content-Type ``kind``."""
    event["headers"] = {**event["headers"], "Content-Type": kind}
    if "multiValueHeaders" in event:
        event["multiValueHeaders"] = {**event["multiValueHeaders"], "Content-Type": [kind]}
    return event


@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_a_post_that_is_not_json_is_a_400_naming_the_content_type(monkeypatch, kind):
    """A JSON body sent as another media type (curl's --data sends application/x-www-form-urlencoded)
    is refused saying what to send: Powertools answered 500 for text/plain, and a form's
    "name: Field required" for a body that had a name."""
    import api

    set_environment(monkeypatch)
    monkeypatch.setattr(api.metrics.provider, "namespace", "test")  # (the template sets it)
    body = json.dumps({"name": "typed", "workflow": "s3://runs/w/workflow.wdl", "inputs": {}})
    answer = api.handler(_with_content_type(json.loads((EVENTS / "apigw_post_runs.json").read_text()) | {"body": body}, kind), LambdaContext())
    assert answer["statusCode"] == 400, answer
    media = kind.split(";")[0]
    assert json.loads(answer["body"])["problems"] == [{"where": "Content-Type", "problem": f"{media!r}: send the body as application/json"}]
    # a form as API Gateway passes it (multipart/form-data is a binary media type, for WES): base64
    encoded = dict(_with_content_type(json.loads((EVENTS / "apigw_post_runs.json").read_text()), kind),
                   body=base64.b64encode(body.encode()).decode(), isBase64Encoded=True)
    answer = api.handler(encoded, LambdaContext())
    assert answer["statusCode"] == 400 and json.loads(answer["body"])["problems"][0]["where"] == "Content-Type", answer
    for json_kind in ("application/json; charset=utf-8", "APPLICATION/JSON", "application/vnd.api+json"):  # (JSON: read)
        event = _with_content_type(json.loads((EVENTS / "apigw_post_runs.json").read_text()) | {"body": "{oops"}, json_kind)
        answer = api.handler(event, LambdaContext())
        assert answer["statusCode"] == 400 and json.loads(answer["body"])["problems"][0]["where"] == "body", (json_kind, answer)


@pytest.mark.parametrize("body, unknown", [
    ({"name": "typo", "wdl": "version 1.1\nworkflow w {}\n", "input": {"w.x": 1}}, "input"),
    ({"name": "typo", "wdl": "version 1.1\nworkflow w {}\n", "option": {"max_cost_usd": 1}}, "option"),
])
def test_a_field_the_run_api_does_not_know_is_refused_naming_it(pipeline, monkeypatch, body, unknown):
    """"input" for "inputs" used to start a run with the workflow's defaults, "option" one without
    the budget it meant to set: a field the API does not know is refused, and no run starts."""
    import api

    settings, _drop, _rejection, executions = pipeline
    set_environment(monkeypatch, STATE_MACHINE_ARN=settings.state_machine_arn)
    monkeypatch.setattr(api.metrics.provider, "namespace", "test")  # (the template sets it)
    answer = api.handler(json.loads((EVENTS / "apigw_post_runs.json").read_text()) | {"body": json.dumps(body)}, LambdaContext())
    assert answer["statusCode"] == 400, answer
    assert json.loads(answer["body"])["problems"] == [{"where": unknown, "problem": "Extra inputs are not permitted"}]
    assert executions() == []


# -- issue 11: one reading of the inputs everywhere, limits before loading ---------------------------

def _api_event(body: str) -> dict:
    return json.loads((EVENTS / "apigw_post_runs.json").read_text()) | {"body": body}


@pytest.fixture
def api_env(pipeline, monkeypatch):
    import api

    settings, drop, rejection, executions = pipeline
    set_environment(monkeypatch, STATE_MACHINE_ARN=settings.state_machine_arn)
    monkeypatch.setattr(api.metrics.provider, "namespace", "test")  # (the template sets it)
    aws.client("s3").put_object(Bucket="runs", Key="workflows/hello/hello.wdl", Body=GOOD.encode())
    return api.handler, executions


def test_an_api_workflow_whose_folder_holds_other_runs_is_refused_naming_the_rule(pipeline):
    settings, drop, rejection, executions = pipeline
    s3 = aws.client("s3")
    for key in ("runs/hello.wdl", "hello.wdl"):
        s3.put_object(Bucket="runs", Key=key, Body=GOOD.encode())
        with pytest.raises(start.Refused) as info:
            start.from_request(settings, "api-run", f"s3://runs/{key}", OK_INPUTS, "t-" + key)
        assert info.value.problems == [{"where": "workflow", "problem": f"s3://runs/{key}: " + snapshot.FOLDER_RULE}]
        assert "bucket's top or 'runs/'" in snapshot.FOLDER_RULE
    assert executions() == []


def test_every_s3_input_is_checked_however_many_and_the_message_counts_them_all(pipeline):
    settings, drop, rejection, executions = pipeline
    wdl = GOOD.replace("File reference", "File reference\n    Array[File] more")
    missing = [f"s3://data/missing/{i}.txt" for i in range(3 * validate.MAX_LISTED + 1)]  # (each is one HeadObject)
    assert drop("many", dict(OK_INPUTS, **{"hello.more": missing}), wdl) is None
    found = rejection("many")
    assert len(found) == validate.MAX_LISTED + 1
    assert found[0] == (INPUTS.format(name="many") + ": hello.more", "s3://data/missing/0.txt does not exist")
    assert found[-1] == (
        INPUTS.format(name="many"),
        "301 of the 302 s3:// inputs cannot be read (100 are listed above; fix those and submit again to see the rest)",
    )


def test_an_inputs_json_over_the_cap_is_refused_from_the_event_size_before_it_is_read(pipeline, monkeypatch):
    """A real EventBridge payload: its object.size alone refuses the upload; GetObject never runs."""
    import inputs_dropped

    settings, drop, rejection, executions = pipeline
    set_environment(monkeypatch, STATE_MACHINE_ARN=settings.state_machine_arn)
    monkeypatch.setattr(inputs_dropped.metrics.provider, "namespace", "test")
    reads = []
    monkeypatch.setattr(snapshot, "read_version", lambda *args: reads.append(args))
    s3 = aws.client("s3")
    s3.put_object(Bucket="runs", Key="runs/huge/workflow.wdl", Body=GOOD.encode())
    put = s3.put_object(Bucket="runs", Key="runs/huge/inputs.json", Body=b" " * (inputs_json.MAX_INPUTS_BYTES + 1))
    event = json.loads((EVENTS / "s3_object_created.json").read_text())
    event["detail"]["bucket"]["name"] = "runs"
    event["detail"]["object"].update(key="runs/huge/inputs.json", etag=put["ETag"].strip('"'), size=inputs_json.MAX_INPUTS_BYTES + 1)
    event["detail"]["object"].pop("version-id")
    assert inputs_dropped.handler(event, LambdaContext()) == {"started": False}
    assert rejection("huge") == [
        (INPUTS.format(name="huge"), "1048577 bytes; an inputs JSON may have at most 1 MiB (put large values in files and pass their s3:// URIs)")
    ]
    assert reads == [] and executions() == []


def test_without_an_event_size_the_cap_is_checked_by_head_object_before_reading(pipeline, monkeypatch):
    settings, drop, rejection, executions = pipeline
    reads = []
    monkeypatch.setattr(snapshot, "read_version", lambda *args: reads.append(args))
    s3 = aws.client("s3")
    s3.put_object(Bucket="runs", Key="runs/huge2/workflow.wdl", Body=GOOD.encode())
    put = s3.put_object(Bucket="runs", Key="runs/huge2/inputs.json", Body=b" " * (inputs_json.MAX_INPUTS_BYTES + 5))
    assert start.from_object(settings, "runs", "runs/huge2/inputs.json", put["ETag"].strip('"')) is None
    assert rejection("huge2")[0][1].startswith("1048581 bytes; an inputs JSON may have at most 1 MiB")
    assert reads == []


BOM = "\ufeff"
EMOJI_INPUTS = {"hello.names": ["Ann 😀", "🧬"], "hello.reference": "s3://data/ref 😀.txt"}


def _run_inputs(record) -> bytes:
    bucket, key = record.inputs[len("s3://"):].split("/", 1)
    return aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def test_a_bom_is_stripped_and_emoji_work_in_an_s3_drop(pipeline):
    """Emoji in strings, in JSON keys (a Map's), in an input's object key and in a bundle file's
    name; the run's copy of inputs.json has no byte order mark."""
    settings, drop, rejection, executions = pipeline
    s3 = aws.client("s3")
    s3.put_object(Bucket="data", Key="ref 😀.txt", Body=b"r")
    wdl = GOOD.replace("Int copies = 1", "Int copies = 1\n    Map[String, String] tags = {}")
    inputs = dict(EMOJI_INPUTS, **{"hello.tags": {"🏷️ key": "🧪 value"}})
    started = drop("bom", (BOM + json.dumps(inputs, ensure_ascii=False)).encode("utf-8"), wdl, {"notes 📝.txt": "n"})
    assert started is not None
    copied = _run_inputs(started.record)
    assert not copied.startswith(BOM.encode()) and json.loads(copied) == inputs
    source = started.record.results.split("/", 3)[3] + snapshot.SOURCE_DIR
    assert s3.get_object(Bucket="runs", Key=source + "notes 📝.txt")["Body"].read() == b"n"


def test_a_bom_is_stripped_and_emoji_work_through_the_api(api_env):
    handler, executions = api_env
    aws.client("s3").put_object(Bucket="data", Key="ref 😀.txt", Body=b"r")
    body = BOM + json.dumps({"name": "api-bom", "workflow": "s3://runs/workflows/hello/hello.wdl", "inputs": EMOJI_INPUTS}, ensure_ascii=False)
    answer = handler(_api_event(body), LambdaContext())
    assert answer["statusCode"] == 202, answer["body"]
    run = json.loads(answer["body"])
    inputs = aws.client("s3").get_object(Bucket="runs", Key=run["results"].split("/", 3)[3] + "inputs.json")["Body"].read()
    assert json.loads(inputs) == EMOJI_INPUTS and len(executions()) == 1


@pytest.mark.parametrize(
    "body, problems",
    [
        ('{"name": "a", "workflow": "s3://runs/workflows/hello/hello.wdl", "inputs": {"hello.names": ["A"], "hello.names": []}}',
         [{"where": "inputs: hello.names", "problem": "key given more than once in the same object"}]),
        ('{"name": "a", "workflow": "s3://runs/workflows/hello/hello.wdl", "inputs": {"hello.copies": Infinity}}',
         [{"where": "inputs: hello.copies", "problem": "Infinity is not a JSON number (JSON has no NaN or Infinity)"}]),
        ('{"name": "a", "inputs": {"hello.names": ' + "[" * 50000 + "]" * 50000 + "}}",
         [{"where": "body", "problem": "nested too deeply to parse (at most 64 levels of arrays and objects)"}]),
        ('{"name": "a", "workflow": "s3://runs/workflows/hello/hello.wdl", "inputs": {"hello.names": ["' + "x" * (1 << 20) + '"]}}',
         # (the inputs are capped on their own: the request also holds the WDL, capped apart)
         [{"where": "inputs", "problem": "1048609 bytes; an inputs JSON may have at most 1 MiB (put large values in files and pass their s3:// URIs)"}]),
    ],
    ids=["duplicate-key", "infinity", "too-deep", "too-big"],
)
def test_the_api_refuses_what_an_s3_drop_refuses_with_where(api_env, body, problems):
    handler, executions = api_env
    answer = handler(_api_event(body), LambdaContext())
    assert answer["statusCode"] == 400
    assert json.loads(answer["body"])["problems"] == problems
    assert executions() == []


def test_the_cli_reads_inputs_as_the_pipeline_does(tmp_path):
    wdl = tmp_path / "hello.wdl"
    wdl.write_text(GOOD)
    (tmp_path / "ref 😀.txt").write_text("r")
    good = tmp_path / "good.json"
    good.write_bytes((BOM + json.dumps({"hello.names": ["😀"], "hello.reference": "ref 😀.txt"}, ensure_ascii=False)).encode())
    prepared = upload.prepare(wdl, good, name="cli")
    staged, uploads = upload.stage_inputs(prepared.doc, prepared.inputs, prepared.inputs_dir, "runs")
    assert staged["hello.names"] == ["😀"] and staged["hello.reference"].endswith("/ref 😀.txt")
    assert [item.path.name for item in uploads] == ["ref 😀.txt"]
    for text, message in (
        ('{"hello.names": [], "hello.names": []}', f"{tmp_path}/bad.json: hello.names: key given more than once in the same object"),
        ('{"hello.copies": NaN}', f"{tmp_path}/bad.json: hello.copies: NaN is not a JSON number (JSON has no NaN or Infinity)"),
        (" " * (inputs_json.MAX_INPUTS_BYTES + 1), f"{tmp_path}/bad.json: 1048577 bytes; an inputs JSON may have at most 1 MiB "
         "(put large values in files and pass their s3:// URIs)"),
    ):
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(upload.RunInputError) as info:
            upload.prepare(wdl, tmp_path / "bad.json", name="cli")
        assert str(info.value) == message


@pytest.mark.parametrize("case", ["missing-input", "unknown-input", "wrong-namespace", "wrong-types", "given-twice", "extra-struct-member"])
def test_the_cli_refuses_the_inputs_the_pipeline_refuses_with_every_problem(tmp_path, case):
    """`submit` and `local run` check the inputs as the submit step does: the same problems (an
    input given as `wf.x` and as `x` too, an unknown one beside a mistyped one), every one of
    them, named by the inputs file, before anything is uploaded."""
    inputs, wdl_text, _extra, expected = BAD_SUBMISSIONS[case]
    wdl = tmp_path / "hello.wdl"
    wdl.write_text(wdl_text)
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps(inputs))
    with pytest.raises(upload.RunInputError) as info:
        upload.prepare(wdl, path, name="cli")
    assert str(info.value) == "; ".join(f"{w.replace(INPUTS, str(path))}: {p}" for w, p in expected)
    with pytest.raises(upload.RunInputError) as info:  # (inputs given as a value: named "inputs")
        upload.prepare(wdl, inputs, name="cli")
    assert str(info.value) == "; ".join(f"{w.replace(INPUTS, 'inputs')}: {p}" for w, p in expected)


def test_an_inputs_key_starting_with_a_hash_is_a_comment_as_for_miniwdl(pipeline, tmp_path):
    """miniwdl's values_from_json skips keys starting with "#" (comments in an inputs file): the
    submit step and the CLI too, and the run starts."""
    settings, drop, rejection, executions = pipeline
    inputs = dict(OK_INPUTS, **{"#note": "the reference is hg38", "#": 1})
    assert drop("commented", inputs, GOOD, None) is not None
    assert len(executions()) == 1
    (tmp_path / "hello.wdl").write_text(GOOD)
    assert upload.prepare(tmp_path / "hello.wdl", inputs, name="cli").inputs == inputs


def test_the_cli_refuses_a_bundled_cfg_the_pipeline_refuses(tmp_path):
    _inputs, _wdl, extra, expected = BAD_SUBMISSIONS["cfg-bad-values"]
    (tmp_path / "hello.wdl").write_text(GOOD)
    (tmp_path / "miniwdl.cfg").write_text(extra["miniwdl.cfg"])
    with pytest.raises(upload.RunInputError) as info:
        upload.prepare(tmp_path / "hello.wdl", OK_INPUTS, name="cli")
    assert str(info.value) == expected[0][1].replace("not a valid", f"{tmp_path / 'miniwdl.cfg'}: not a valid")


def test_the_cli_checks_inputs_over_a_bundles_defaults(tmp_path):
    """A `miniwdl zip` bundle's default inputs count, as the submit step merges them: a required
    input it holds is not missing, and one given both ways in the inputs is refused."""
    (tmp_path / "wf").mkdir()
    (tmp_path / "wf" / "hello.wdl").write_text(GOOD)
    (tmp_path / "wf" / "hello.json").write_text(json.dumps({"hello.names": ["Ann"]}))
    bundle = tmp_path / "hello.zip"
    wdl_zip.build(load_wdl(str(tmp_path / "wf" / "hello.wdl")), str(bundle), logging.getLogger("test"),
                  inputs=json.loads((tmp_path / "wf" / "hello.json").read_text()))
    assert upload.prepare(bundle, {"hello.reference": "s3://data/ref.txt"}, name="cli").bundle
    with pytest.raises(upload.RunInputError) as info:
        upload.prepare(bundle, {"hello.reference": "s3://data/ref.txt", "reference": "s3://data/x"}, name="cli")
    assert str(info.value) == "inputs: reference: the input hello.reference is also given as 'hello.reference': give it once"


@pytest.mark.parametrize("uri", ["../shared/lib.wdl", "{tmp}/shared/lib.wdl"], ids=["outside-the-folder", "absolute"])
def test_the_cli_sends_a_wdl_importing_from_outside_its_folder_as_a_bundle(tmp_path, uri):
    """What the pipeline refuses in a folder (its import rule), the CLI sends as the bundle that
    holds it, as `miniwdl run` takes the WDL."""
    from miniwdl_fargate import zipbundle

    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "lib.wdl").write_text("version 1.1\ntask t { command <<< >>> }\n")
    (tmp_path / "wf").mkdir()
    wdl = tmp_path / "wf" / "main.wdl"
    wdl.write_text(f'version 1.1\nimport "{uri.format(tmp=tmp_path)}" as lib\nworkflow hello {{ call lib.t }}\n')
    submission = upload.prepare(wdl, {}, name="cli")
    assert submission.bundle
    with zipbundle.opened(submission.wdl_path, "main.zip") as bundle:
        assert any(i.filename.startswith("__outside_wdl/") and i.filename.endswith("/lib.wdl") for i in bundle.files())


def test_an_api_request_with_a_large_wdl_and_small_inputs_is_not_refused_as_too_big(api_env):
    """The 1 MiB cap is the inputs': an inline WDL near its own limit beside small inputs passes."""
    handler, executions = api_env
    # (a comment of 300,000 emoji: within the WDL's own limit of 1,000,000 characters, 1.2 MB)
    wdl = "version 1.1\nworkflow big { input { String who } output { String out = who } }\n# " + "😀" * 300_000 + "\n"
    body = json.dumps({"name": "big", "wdl": wdl, "inputs": {"big.who": "x"}}, ensure_ascii=False)
    assert len(body.encode()) > 1 << 20
    answer = handler(_api_event(body), LambdaContext())
    assert answer["statusCode"] == 202, answer["body"][:500]
    assert len(executions()) == 1


def test_a_task_needing_more_vcpus_than_the_runs_max_vcpus_is_refused_at_submit_naming_the_task(pipeline):
    """The stack's MaxRunVCpus (an S3 drop without options); a literal cpu is snapped up to a
    Fargate size first (3 runs as 4 vCPU), as the backend sizes it."""
    _settings, _drop, rejection, executions = pipeline
    assert drop_on({"MAX_RUN_VCPUS": "2"}, "vcpus", with_runtime('cpu: 3 memory: "8 GiB"')) is None
    assert rejection("vcpus") == [(
        WDL.format(name="vcpus") + ":11:1",
        "task greet: runtime.cpu = 3 (it runs as 4 vCPU) is more than the run's max_vcpus of 2 (the stack's MaxRunVCpus): "
        "it could never run; ask for fewer vCPUs or give the run a larger max_vcpus",
    )]
    assert executions() == []
    assert drop_on({"MAX_RUN_VCPUS": "4"}, "vcpus-ok", with_runtime('cpu: 3 memory: "8 GiB"')) is not None


def test_the_runs_max_vcpus_option_overrides_the_stacks_at_submit(pipeline):
    settings, _drop, _rejection, executions = pipeline
    aws.client("s3").put_object(Bucket="runs", Key="workflows/two.wdl", Body=with_runtime("cpu: 2").encode())
    with pytest.raises(start.Refused) as refused:
        start.from_request(settings, "api-two", "s3://runs/workflows/two.wdl", OK_INPUTS, "t-1", options={"max_vcpus": 1})
    [problem] = refused.value.problems
    assert problem["problem"].startswith("task greet: runtime.cpu = 2 is more than the run's max_vcpus of 1 (options.max_vcpus)")
    assert executions() == []
    roomy = ApiSettings.from_env(environment(STATE_MACHINE_ARN=settings.state_machine_arn, MAX_RUN_VCPUS="1"))
    accepted = start.from_request(roomy, "api-two", "s3://runs/workflows/two.wdl", OK_INPUTS, "t-2", options={"max_vcpus": 2})
    assert [e["name"] for e in executions()] == [accepted.record.run_id]


def test_a_problem_in_an_inline_wdl_names_the_requests_wdl(pipeline):
    """The API's "wdl" is checked in the run's copy, which a refused run removes: its problems
    name "wdl" and the place in it, not the copy's key."""
    settings, _drop, _rejection, executions = pipeline
    with pytest.raises(start.Refused) as info:
        start.from_request(settings, "inline", None, {}, "t-inline", wdl="version 1.1\nworkflow hello {\n  Int x = y\n}\n")
    assert info.value.problems == [{"where": "wdl:3:11", "problem": "WDL error: Unknown identifier y"}]
    assert executions() == []
    assert "Contents" not in aws.client("s3").list_objects_v2(Bucket="runs", Prefix="runs/inline/")


def test_a_run_started_by_an_events_second_delivery_does_not_carry_the_first_ones_refusal(pipeline):
    """S3 delivers an event at least once, and the run id is the upload's: a first delivery
    refused (inputs.json before workflow.wdl, in a parallel sync) then a second one after the
    WDL arrived start the same run id, which must not keep the refusal as its error.json."""
    settings, drop, rejection, executions = pipeline
    s3 = aws.client("s3")
    put = s3.put_object(Bucket="runs", Key="runs/synced/inputs.json", Body=json.dumps(OK_INPUTS).encode())
    event = ("runs", "runs/synced/inputs.json", put["ETag"].strip('"'), put.get("VersionId"))
    assert start.from_object(settings, *event) is None  # (no WDL yet: refused)
    assert rejection("synced")[0][1].startswith("no WDL found")
    s3.put_object(Bucket="runs", Key="runs/synced/workflow.wdl", Body=GOOD.encode())
    submitted = start.from_object(settings, *event)  # (the same event, delivered again)
    assert submitted is not None and not submitted.duplicate and len(executions()) == 1
    results = s3.list_objects_v2(Bucket="runs", Prefix=f"runs/synced/results/{submitted.record.run_id}/")["Contents"]
    assert "error.json" not in {o["Key"].rsplit("/", 1)[1] for o in results}
