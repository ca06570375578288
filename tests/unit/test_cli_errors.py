"""No traceback ever reaches a user: every bad command line is one line on stderr and exit 2.

Each case runs ``miniwdl-fargate``'s main in a process of its own (a fork of the test's: tests/forked.py),
with no stack to talk to: everything here must be refused before anything is reached, or answered in one line when
what it reaches is broken.
"""

import json
from types import SimpleNamespace
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from miniwdl_fargate import arguments, cli
from tests.forked import run_forked

REPO = Path(__file__).resolve().parents[2]
WDL = """version 1.1
workflow w {
  input { String who }
  call hi { input: who = who }
}
task hi {
  input { String who }
  command <<< echo hi ~{who} >>>
}
"""


@pytest.fixture(scope="module", autouse=True)
def commands_loaded():
    """What the commands import as they run (``cli.main`` imports a command's modules once it is
    chosen), imported once in this process: each forked command finds them loaded, where each of
    about a hundred forks imported them again (about 50 modules, 30-40 ms of CPU apiece)."""
    import argcomplete  # noqa: F401
    import WDL.CLI  # noqa: F401
    import WDL.Zip  # noqa: F401
    import samtranslator.yaml_helper  # noqa: F401
    import yaml  # noqa: F401

    from miniwdl_fargate import client, upload  # noqa: F401
    from miniwdl_fargate.local import changes, stack  # noqa: F401
    from miniwdl_fargate.local import cli as local_cli  # noqa: F401
    from miniwdl_fargate.pipeline import snapshot, validate  # noqa: F401


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A workflow folder with a broken miniwdl.cfg, a good one without, and other things to point at."""
    top = tmp_path_factory.mktemp("cli")
    for name, cfg in (("good", None), ("badcfg", "[call_cache\nget = true\n"), ("badpct", "[scheduler]\ncall_concurrency = 50%\n"),
                      ("anyinput", "[file_io]\nallow_any_input = true\n")):
        (top / name).mkdir()
        (top / name / "w.wdl").write_text(WDL)
        (top / name / "inputs.json").write_text(json.dumps({"w.who": "you"}))
        if cfg:
            (top / name / "miniwdl.cfg").write_text(cfg)
    (top / "a-file").write_text("not a folder")
    (top / "my-notes").mkdir()  # (a folder of the user's own: local mode would write over its "changes")
    (top / "my-notes" / "changes").write_text("mine")
    (top / "not-a-zip.zip").write_text(WDL)
    with zipfile.ZipFile(top / "climbs.zip", "w") as bundle:
        bundle.writestr("w.wdl", WDL)
        bundle.writestr("../../x.wdl", WDL)
    (top / "not-json.json").write_text("{oops")
    # templates local mode cannot deploy
    (top / "unclosed.yaml").write_text("Resources:\n  Bucket: {Type: AWS::S3::Bucket\n")
    (top / "a-list.yaml").write_text("- Resources\n")
    (top / "latin1.yaml").write_bytes(b"Description: caf\xe9\nResources: {}\n")
    # not UTF-8: a WDL document itself, and one it imports
    (top / "latin1").mkdir()
    (top / "latin1" / "w.wdl").write_bytes(b'version 1.1\nworkflow w {\n  String s = "caf\xe9"\n  output { String o = s }\n}\n')
    (top / "latin1" / "imports.wdl").write_bytes(b'version 1.1\nimport "lib.wdl"\nworkflow w { call lib.t }\n')
    (top / "latin1" / "lib.wdl").write_bytes(b'version 1.1\ntask t {\n  command <<< echo "\xff" >>>\n}\n')
    (top / "latin1" / "inputs.json").write_text("{}")
    (top / "latin1" / "deeper.wdl").write_bytes(b'version 1.1\nimport "imports.wdl" as i\nworkflow v { call i.lib.t }\n')
    # an imported document that does not load: its errors said with where they are in it
    (top / "imports").mkdir()
    (top / "imports" / "inputs.json").write_text("{}")
    for name, lib in (
        ("several", "version 1.1\ntask t {\n  input { Int a = b }\n  command <<< echo ~{c} >>>\n}\n"),
        ("syntax", "version 1.1\ntask t {\n  command <<< >>>\n"),
        ("one", "version 1.1\ntask t {\n  command <<< echo ~{nope} >>>\n}\n"),
        ("many", "version 1.1\ntask t {\n" + "".join(f"  Int x{i} = y{i}\n" for i in range(7)) + "  command <<< >>>\n}\n"),
    ):
        (top / "imports" / f"{name}-lib.wdl").write_text(lib)
        (top / "imports" / f"{name}.wdl").write_text(f'version 1.1\nimport "{name}-lib.wdl" as lib\nworkflow w {{ call lib.t }}\n')
    (top / "imports" / "circle-a.wdl").write_text('version 1.1\nimport "circle-b.wdl" as b\nworkflow w {}\n')
    (top / "imports" / "circle-b.wdl").write_text('version 1.1\nimport "circle-a.wdl" as a\ntask t { command <<< >>> }\n')
    (top / "imports" / "deeper.wdl").write_text('version 1.1\nimport "one.wdl" as o\nworkflow v { call o.lib.t }\n')
    (top / "uris").mkdir()
    (top / "uris" / "w.wdl").write_text("version development\nworkflow w {\n  input { File f  Directory? d }\n}\n")
    for name, value in (("gs", "gs://x/y"), ("upper", "S3://x/y"), ("nobucket", "s3:///key"), ("bucketonly", "s3://BUCKET")):
        (top / "uris" / f"{name}.json").write_text(json.dumps({"w.f": value}))
    (top / "reserved" / "results").mkdir(parents=True)
    (top / "reserved" / "w.wdl").write_text('version 1.1\nimport "results/lib.wdl" as lib\nworkflow w { call lib.t }\n')
    (top / "reserved" / "results" / "lib.wdl").write_text("version 1.1\ntask t { command <<< >>> }\n")
    (top / "reserved" / "inputs.json").write_text("{}")
    (top / "syntax").mkdir()
    (top / "syntax" / "w.wdl").write_text("version 1.1\nworkflow w { call }\n")
    (top / "maps").mkdir()
    (top / "maps" / "w.wdl").write_text("version 1.1\nworkflow w {\n  input { Map[Int,String]? m }\n  output { Map[Int,String]? o = m }\n}\n")
    (top / "maps" / "inputs.json").write_text(json.dumps({"w.m": {"notint": "x"}}))
    (top / "wrong-shape.json").write_text(json.dumps({"endpoint": "http://127.0.0.1:9"}))
    # a stack that is not there any more: the connection file of a `local up` that was killed
    (top / "gone.json").write_text(json.dumps({
        "endpoint": "http://127.0.0.1:9", "region": "us-east-1", "stack_name": "gone", "outputs": {"BucketName": "b"},
    }))
    return top


# (arguments, the one line stderr must hold); {d} is the fixture's folder
CASES = {
    "submit --name with a slash": (
        ["submit", "{d}/good/w.wdl", "{d}/good/inputs.json", "--name", "../x"],
        "argument --name: run name '../x' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
    ),
    "submit --name with a space": (
        ["submit", "{d}/good/w.wdl", "{d}/good/inputs.json", "--name", "my run"],
        "argument --name: run name 'my run' must be 1-64 letters",
    ),
    "submit --name too long for an execution name": (
        ["submit", "{d}/good/w.wdl", "{d}/good/inputs.json", "--name", "x" * 65],
        "must be 1-64 letters",
    ),
    "submit a bundle with a broken miniwdl.cfg": (
        ["submit", "{d}/badcfg/w.wdl", "{d}/badcfg/inputs.json", "--local={d}/gone.json"],
        "{d}/badcfg/miniwdl.cfg: not a valid miniwdl configuration file: File contains no section headers.",
    ),
    "submit a bundle whose miniwdl.cfg miniwdl cannot interpolate": (
        ["submit", "{d}/badpct/w.wdl", "{d}/badpct/inputs.json", "--local={d}/gone.json"],
        "{d}/badpct/miniwdl.cfg: not a valid miniwdl configuration file: '%' must be followed by '%' or '('",
    ),
    "submit --label with a key AWS reserves": (
        ["submit", "{d}/good/w.wdl", "{d}/good/inputs.json", "--label", "aws:team=x", "--local={d}/gone.json"],
        "error: options.labels: 'aws:team': the key starts with 'aws:', which AWS reserves for its own tags",
    ),
    "submit --label with a character no AWS tag has": (
        ["submit", "{d}/good/w.wdl", "{d}/good/inputs.json", "--label", "team=a;b", "--local={d}/gone.json"],
        "error: options.labels: 'team': the value has ';': AWS tags allow letters, numbers, spaces and _ . : / = + - @",
    ),
    "submit a WDL that is not UTF-8": (
        ["submit", "{d}/latin1/w.wdl", "{d}/latin1/inputs.json", "--local={d}/gone.json"],
        "error: {d}/latin1/w.wdl: not UTF-8 text (byte 0xe9 at offset 42): a WDL document is UTF-8",
    ),
    "submit a WDL importing one that is not UTF-8": (
        ["submit", "{d}/latin1/imports.wdl", "{d}/latin1/inputs.json", "--local={d}/gone.json"],
        "error: {d}/latin1/imports.wdl:2:1: Failed to import lib.wdl: not UTF-8 text (byte 0xff at offset 41)",
    ),
    "submit a WDL whose import imports one that is not UTF-8": (
        ["submit", "{d}/latin1/deeper.wdl", "{d}/latin1/inputs.json", "--local={d}/gone.json"],
        "not UTF-8 text (byte 0xff at offset 41)",
    ),
    "submit a WDL importing one with several errors (miniwdl's own text of them is empty)": (
        ["submit", "{d}/imports/several.wdl", "{d}/imports/inputs.json", "--local={d}/gone.json"],
        "error: {d}/imports/several.wdl:2:1: Failed to import several-lib.wdl: {d}/imports/several-lib.wdl:3:19: "
        "Unknown identifier b; {d}/imports/several-lib.wdl:4:22: Unknown identifier c",
    ),
    "submit a WDL importing one with more errors than are named": (
        ["submit", "{d}/imports/many.wdl", "{d}/imports/inputs.json", "--local={d}/gone.json"],
        "{d}/imports/many-lib.wdl:7:12: Unknown identifier y4 (and 2 more)",
    ),
    "submit a WDL importing one with a syntax error": (
        ["submit", "{d}/imports/syntax.wdl", "{d}/imports/inputs.json", "--local={d}/gone.json"],
        "error: {d}/imports/syntax.wdl:2:1: Failed to import syntax-lib.wdl: {d}/imports/syntax-lib.wdl:3:15: Unexpected token",
    ),
    "local run of a WDL whose import's import has an error": (
        ["local", "run", "{d}/imports/deeper.wdl", "{d}/imports/inputs.json", "--state-dir", "{d}/state"],
        "error: {d}/imports/deeper.wdl:2:1: Failed to import one.wdl: Failed to import one-lib.wdl: "
        "{d}/imports/one-lib.wdl:3:22: Unknown identifier nope",
    ),
    "submit a WDL whose imports import each other (miniwdl says the same imports until its depth limit)": (
        ["submit", "{d}/imports/circle-a.wdl", "{d}/imports/inputs.json", "--local={d}/gone.json"],
        "error: {d}/imports/circle-a.wdl:2:1: Failed to import circle-b.wdl: circular imports: "
        "{d}/imports/circle-a.wdl -> {d}/imports/circle-b.wdl -> {d}/imports/circle-a.wdl",
    ),
    "local run --parameter a number Python reads and CloudFormation does not": (
        ["local", "run", "{d}/good/w.wdl", "--parameter", "MaxRunHours=1_000", "--state-dir", "{d}/state"],
        "error: --parameter MaxRunHours=1_000: must be a number",
    ),
    "submit a Map input whose key is not of the key type": (
        ["submit", "{d}/maps/w.wdl", "{d}/maps/inputs.json", "--local={d}/gone.json"],
        "error: {d}/maps/inputs.json: w.m: expected Map[Int,String]?, got {{\"notint\": \"x\"}} (coercing 'String' to 'Int'",
    ),
    # what the submit step refuses of a URI, refused before the inputs.json is uploaded
    "submit a gs:// File input": (
        ["submit", "{d}/uris/w.wdl", "{d}/uris/gs.json", "--local={d}/gone.json"],
        "error: {d}/uris/gs.json: w.f: File input gs://x/y: only s3:// and https:// URIs are supported",
    ),
    "submit an S3:// File input": (
        ["submit", "{d}/uris/w.wdl", "{d}/uris/upper.json", "--local={d}/gone.json"],
        "error: {d}/uris/upper.json: w.f: File input S3://x/y: only s3:// and https:// URIs are supported",
    ),
    "submit an s3:// File input without a bucket": (
        ["submit", "{d}/uris/w.wdl", "{d}/uris/nobucket.json", "--local={d}/gone.json"],
        "error: {d}/uris/nobucket.json: w.f: File input s3:///key: no bucket named (s3://BUCKET/KEY)",
    ),
    "submit an s3:// File input that is a bucket": (
        ["submit", "{d}/uris/w.wdl", "{d}/uris/bucketonly.json", "--local={d}/gone.json"],
        "error: {d}/uris/bucketonly.json: w.f: s3://BUCKET names a folder; a File input names one object",
    ),
    "submit a WDL importing a file under results/": (
        ["submit", "{d}/reserved/w.wdl", "{d}/reserved/inputs.json", "--local={d}/gone.json"],
        "error: {d}/reserved/w.wdl:2:1: cannot import results/lib.wdl: results/lib.wdl is a name the pipeline keeps",
    ),
    "submit a WDL with a syntax error": (
        ["submit", "{d}/syntax/w.wdl", "{d}/reserved/inputs.json", "--local={d}/gone.json"],
        "error: {d}/syntax/w.wdl:2:19: WDL syntax error: Unexpected token",
    ),
    "submit --option max_vcpus=nan": (
        ["submit", "{d}/good/w.wdl", "{d}/good/inputs.json", "--option", "max_vcpus=nan", "--local={d}/gone.json"],
        "error: options.max_vcpus: Input should be a finite number",
    ),
    "submit a missing WDL": (["submit", "{d}/nope.wdl", "{d}/good/inputs.json"], "error: {d}/nope.wdl: no such WDL file"),
    "submit a folder as the WDL": (["submit", "{d}/good", "{d}/good/inputs.json"], "error: {d}/good: a folder, not a WDL file"),
    "submit a folder as the inputs": (["submit", "{d}/good/w.wdl", "{d}/good"], "error: {d}/good: a folder, not an inputs file"),
    "submit with two inputs files": (
        ["submit", "{d}/good/w.wdl", "{d}/good/inputs.json", "{d}/not-json.json", "--local={d}/gone.json"],
        "error: one inputs file at most (given: {d}/good/inputs.json, {d}/not-json.json); give other inputs as NAME=VALUE",
    ),
    "submit with an input on the command line the workflow does not have": (
        ["submit", "{d}/good/w.wdl", "wh0=you", "--local={d}/gone.json"],
        "error: inputs on the command line: wh0=you: No such input to w: wh0",
    ),
    "local run with an input on the command line of the wrong type": (
        ["local", "run", "{d}/maps/w.wdl", "m=[1", "--state-dir", "{d}/state"],
        "error: inputs on the command line: m=[1: Invalid JSON for input of type Map[Int,String]?",
    ),
    "local run of a folder as the WDL": (["local", "run", "{d}/good", "--state-dir", "{d}/state"], "error: WDL file {d}/good is a folder, not a file"),
    "local run of a folder as the inputs": (
        ["local", "run", "{d}/good/w.wdl", "{d}/good", "--state-dir", "{d}/state"], "error: inputs file {d}/good is a folder, not a file",
    ),
    "submit inputs that are not JSON": (
        ["submit", "{d}/good/w.wdl", "{d}/not-json.json"], "error: {d}/not-json.json: not valid JSON: Expecting property name",
    ),
    "status of something that is not a run id": (["status", "../x"], "argument RUN: run id '../x' is not one"),
    "cancel of a run name, not a run id": (["cancel", "hello"], "argument RUN: run id 'hello' is not one"),
    "logs of a run id with a slash": (["logs", "a/b-12345678"], "argument RUN: run id 'a/b-12345678' is not one"),
    "cache explain of a run name, not a run id": (["cache", "explain", "hello", "greet"], "argument RUN: run id 'hello' is not one"),
    "cache explain without a call": (["cache", "explain", "hello-12345678"], "the following arguments are required: CALL"),
    "cache without what to do": (["cache"], "the following arguments are required: explain"),
    "list --limit 0": (["list", "--limit", "0"], "argument --limit: 0: must be 1 or more"),
    "list --limit not a number": (["list", "--limit", "ten"], "argument --limit: 'ten' is not a whole number"),
    "list --name with a slash": (["list", "--name", "a/b"], "argument --name: run name 'a/b' must be"),
    "outputs --download onto a file": (
        ["outputs", "hello-12345678", "--download", "{d}/a-file", "--local={d}/gone.json"],
        "error: --download {d}/a-file: exists and is not a folder",
    ),
    "no local stack file": (["status", "hello-12345678", "--local={d}/missing.json"], "error: no local stack running ({d}/missing.json not found)"),
    "a local stack file that is not JSON": (
        ["list", "--local={d}/not-json.json"], "error: {d}/not-json.json: not a local stack connection file",
    ),
    "a local stack file of the wrong shape": (
        ["list", "--local={d}/wrong-shape.json"], "not a local stack connection file (no region, stack_name, outputs)",
    ),
    "a local stack that is gone": (
        ["list", "--local={d}/gone.json"], "error: could not reach http://127.0.0.1:9",
    ),
    "local run --timeout negative": (
        ["local", "run", "{d}/good/w.wdl", "{d}/good/inputs.json", "--timeout", "-5"],
        "argument --timeout: -5 seconds: must be a number above 0",
    ),
    "local run --timeout not a number": (
        ["local", "run", "{d}/good/w.wdl", "{d}/good/inputs.json", "--timeout", "soon"],
        "argument --timeout: 'soon' is not a number of seconds",
    ),
    "local run --seed-s3 missing folder": (
        ["local", "run", "{d}/good/w.wdl", "{d}/good/inputs.json", "--seed-s3", "{d}/no-such-dir"],
        "argument --seed-s3: {d}/no-such-dir: no such folder",
    ),
    "local up --seed-s3 a file": (["local", "up", "--seed-s3", "{d}/a-file"], "argument --seed-s3: {d}/a-file: not a folder"),
    "local up --api-port not a port": (["local", "up", "--api-port", "70000"], "argument --api-port: '70000' is not a TCP port"),
    "local run --template missing": (
        ["local", "run", "{d}/good/w.wdl", "{d}/good/inputs.json", "--template", "{d}/none.yaml"],
        "argument --template: {d}/none.yaml: no such file",
    ),
    "local run --template not YAML": (
        ["local", "run", "{d}/good/w.wdl", "{d}/good/inputs.json", "--template", "{d}/unclosed.yaml", "--state-dir", "{d}/state"],
        "error: {d}/unclosed.yaml: not YAML: while parsing a flow mapping in \"{d}/unclosed.yaml\", line 2, column 11",
    ),
    "local up --template YAML that is not a template": (
        ["local", "up", "--template", "{d}/a-list.yaml", "--state-dir", "{d}/state"],
        "error: {d}/a-list.yaml: not a template: a YAML mapping with Resources",
    ),
    "local up --template not UTF-8": (
        ["local", "up", "--template", "{d}/latin1.yaml", "--parameter", "MaxRunHours=1", "--state-dir", "{d}/state"],
        "error: {d}/latin1.yaml: not UTF-8 text: invalid continuation byte at byte 16",
    ),
    "local run --state-dir a file": (
        ["local", "run", "{d}/good/w.wdl", "{d}/good/inputs.json", "--state-dir", "{d}/a-file"],
        "error: --state-dir {d}/a-file: exists and is not a folder",
    ),
    "local run --state-dir a folder of the user's files": (
        ["local", "run", "{d}/good/w.wdl", "{d}/good/inputs.json", "--state-dir", "{d}/my-notes"],
        "error: --state-dir {d}/my-notes: holds files that are not local mode's state (changes): local mode would write",
    ),
    "local up --state-dir a folder of the user's files": (
        ["local", "up", "--state-dir", "{d}/my-notes"], "error: --state-dir {d}/my-notes: holds files that are not local mode's state",
    ),
    "local run --state-dir the workflow's folder": (
        ["local", "run", "{d}/good/w.wdl", "{d}/good/inputs.json", "--state-dir", "{d}/good"],
        "error: --state-dir {d}/good: is the workflow's folder, whose files are uploaded with the workflow",
    ),
    "local run --name with a slash": (
        ["local", "run", "{d}/good/w.wdl", "{d}/good/inputs.json", "--name", "../x"], "argument --name: run name '../x'",
    ),
    "local run --faults not JSON": (
        ["local", "run", "{d}/good/w.wdl", "{d}/good/inputs.json", "--faults", "{{"],
        "error: MINIWDL_FARGATE_LOCAL_FAULTS / --faults: Expecting property name",
    ),
    "local run a bundle with a broken miniwdl.cfg": (
        ["local", "run", "{d}/badcfg/w.wdl", "{d}/badcfg/inputs.json", "--state-dir", "{d}/state"],
        "error: {d}/badcfg/miniwdl.cfg: not a valid miniwdl configuration file",
    ),
    "local run --parameter without =": (
        ["local", "run", "{d}/good/w.wdl", "{d}/good/inputs.json", "--parameter", "ManagedInstances"],
        "argument --parameter: 'ManagedInstances' is not Key=Value with a template parameter name",
    ),
    "local up --parameter with a bad name": (
        ["local", "up", "--parameter", "Managed-Instances=Enabled"],
        "argument --parameter: 'Managed-Instances=Enabled' is not Key=Value",
    ),
    "submit a bundle that is not a zip": (
        ["submit", "{d}/not-a-zip.zip"], "error: {d}/not-a-zip.zip: not a ZIP archive (build the bundle with `miniwdl zip WORKFLOW.wdl`)",
    ),
    "local run a bundle with a member climbing out": (
        ["local", "run", "{d}/climbs.zip", "--state-dir", "{d}/state"],
        "error: {d}/climbs.zip: member '../../x.wdl' is a path that climbs out of the bundle (..); nothing was started",
    ),
    "an unknown command": (["frobnicate"], "error: miniwdl-fargate: argument command: invalid choice: 'frobnicate'"),
    # an option is known by its whole name only: --loc would have been --local, taking the WDL as its file
    "an abbreviated --local": (["submit", "--loc", "{d}/good/w.wdl", "{d}/good/inputs.json"], "unrecognized arguments: --loc"),
    # what CloudFormation refuses of a stack's parameters, and moto deploys
    "local run --parameter the template does not have": (
        ["local", "run", "{d}/good/w.wdl", "{d}/good/inputs.json", "--parameter", "ManagedInstance=Enabled", "--state-dir", "{d}/state"],
        "error: --parameter ManagedInstance: not a parameter of template.yaml (did you mean ManagedInstances?)",
    ),
    "local up --parameter not a number": (
        ["local", "up", "--parameter", "MaxRunHours=abc", "--state-dir", "{d}/state"], "error: --parameter MaxRunHours=abc: must be a number",
    ),
    "local run --parameter not an allowed value": (
        ["local", "run", "{d}/good/w.wdl", "--parameter", "DriverCpu=3", "--parameter", "StatusSeconds=0", "--state-dir", "{d}/state"],
        "error: --parameter DriverCpu=3: must be one of 256, 512, 1024, 2048, 4096 (and 1 more)",
    ),
    # (a CommaDelimitedList's pattern is each item's: a bucket name where an ARN goes)
    "local up --parameter a list item not matching its pattern": (
        ["local", "up", "--parameter", "ReadableS3Arns=arn:aws:s3:::my-data,my-data/*", "--state-dir", "{d}/state"],
        "error: --parameter ReadableS3Arns=arn:aws:s3:::my-data,my-data/*: each an S3 ARN: arn:aws:s3:::BUCKET (listing)",
    ),
    # a run's own miniwdl.cfg may not open the shared file system to the run (config.RUN_CFG_REFUSED)
    "local run a folder whose miniwdl.cfg sets what the stack owns": (
        ["local", "run", "{d}/anyinput/w.wdl", "{d}/anyinput/inputs.json", "--state-dir", "{d}/state"],
        "error: {d}/anyinput/miniwdl.cfg: not a valid miniwdl configuration file: [file_io] allow_any_input: a run's miniwdl.cfg may not set it",
    ),
    "--local to a command without it": (["local", "run", "{d}/good/w.wdl", "--local"], "unrecognized arguments: --local (see"),
    "sweep --run not a run id": (["sweep", "--run", "x y"], "argument --run: run id 'x y' is not one"),
    "-i and an inputs file": (["submit", "{d}/good/w.wdl", "-i", "{d}/good/inputs.json", "{d}/good/inputs.json"],
                              "error: one inputs file at most (given: {d}/good/inputs.json, --input {d}/good/inputs.json)"),
    "--none of a required input": (["local", "run", "{d}/good/w.wdl", "-i", '{{"w.who": "you"}}', "--none", "who", "--state-dir", "{d}/state"],
                                   "error: inputs on the command line: --none who: Cannot set non-optional input String who to None"),
    "an unknown option among late inputs": (["submit", "{d}/good/w.wdl", "--follow", "who=x", "--bogus"], "unrecognized arguments: who=x --bogus"),
    "--task not a WDL name": (["submit", "{d}/good/w.wdl", "--task", "say-hi"], "argument --task: 'say-hi' is not a WDL task name"),
    "--task of no such task": (["local", "run", "{d}/good/w.wdl", "--task", "bye", "--state-dir", "{d}/state"],
                               "error: {d}/good/w.wdl: no task 'bye' in the document (its tasks: hi)"),
    "--task and another task in --option": (["submit", "{d}/good/w.wdl", "--task", "hi", "--option", "task=bye"],
                                            "error: --option task=bye: --task names another task (hi)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_command_line_is_one_line_and_exit_2(case, files):
    argv, expected = CASES[case]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIWDL_FARGATE", "AWS_ENDPOINT"))}
    env.update(AWS_MAX_ATTEMPTS="1", AWS_RETRY_MODE="standard", AWS_CONNECT_TIMEOUT="2")
    proc = run_forked(cli.main, [a.format(d=files) for a in argv], env=env, cwd=files)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert expected.format(d=files) in lines[0]
    assert proc.stdout == ""
    assert not (files / "state").exists()  # refused before local mode started anything
    assert [p.name for p in (files / "my-notes").iterdir()] == ["changes"] and (files / "my-notes" / "changes").read_text() == "mine"


# the commands as docs/usage.md writes them: a bare --local first, then the command's own words
DOCUMENTED_LOCAL = {
    "submit": ["submit", "--local", "{d}/good/w.wdl", "{d}/good/inputs.json", "--name", "hello", "--follow"],
    "status": ["status", "--local", "hello-3cc8301b"],
    "list": ["list", "--local"],
    "logs": ["logs", "--local", "hello-3cc8301b", "--task", "greet", "--follow"],
    "outputs": ["outputs", "--local", "hello-3cc8301b", "--download", "{d}/results"],
    "cancel": ["cancel", "--local", "hello-3cc8301b"],
    "resume": ["resume", "--local", "hello-3cc8301b", "--follow"],
    "cache explain": ["cache", "explain", "--local", "hello-3cc8301b", "greet"],
    "cost": ["cost", "--local", "--label", "project"],
    "gc": ["gc", "--local", "--dry-run"],
}


@pytest.mark.parametrize("command", list(DOCUMENTED_LOCAL))
def test_a_bare_local_takes_no_word_after_it(command, files, monkeypatch):
    """``--local`` alone is the default stack and never swallows the next word (the WDL, a run
    id): argparse would have read ``submit --local WF.wdl INPUTS`` as the stack file WF.wdl and
    the inputs as the workflow. Every command gets as far as looking for the default stack's
    file; another stack's file is ``--local=FILE``."""
    from miniwdl_fargate import client

    monkeypatch.setattr(client, "LOCAL_FILE", files / "default-local.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIWDL_FARGATE", "AWS_ENDPOINT"))}
    proc = run_forked(cli.main, [a.format(d=files) for a in DOCUMENTED_LOCAL[command]], env=env, cwd=files)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"error: no local stack running ({files}/default-local.json not found): start one with `miniwdl-fargate local up`\n"
    named = [f"--local={files}/other.json" if a == "--local" else a.format(d=files) for a in DOCUMENTED_LOCAL[command]]
    named = run_forked(cli.main, named, env=env, cwd=files)
    assert named.stderr.startswith(f"error: no local stack running ({files}/other.json not found)"), named.stderr


@pytest.mark.parametrize("argv", [
    ["submit", "--local", "{d}/good/w.wdl", "--follow", "{d}/good/inputs.json", "who=Ann"],
    ["submit", "--local", "{d}/good/w.wdl", "-i", "{d}/good/inputs.json", "who=Ann", "--name", "x"],
    ["submit", "--local", "-i", '{{"w.who": "Ann"}}', "{d}/good/w.wdl"],
    ["submit", "--local", "{d}/good/w.wdl", "--empty", "who", "--name", "x"],
])
def test_inputs_may_come_after_options_as_miniwdl_run_users_write_them(argv, files, monkeypatch):
    """``submit wf.wdl -i inputs.json x=1`` (argparse alone gave INPUTS only the words before the
    first option and refused the rest): each gets as far as looking for the stack, all its inputs
    read and checked."""
    from miniwdl_fargate import client

    monkeypatch.setattr(client, "LOCAL_FILE", files / "default-local.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIWDL_FARGATE", "AWS_ENDPOINT"))}
    proc = run_forked(cli.main, [a.format(d=files) for a in argv], env=env, cwd=files)
    assert proc.stderr == f"error: no local stack running ({files}/default-local.json not found): start one with `miniwdl-fargate local up`\n"


def test_only_a_bare_optional_value_flag_is_rewritten():
    words = ["submit", "--local", "w.wdl", "--local=x.json", "--localize", "--", "--local"]
    assert arguments.value_only_after_equals(words, ("--local",)) == [
        "submit", "--local=", "w.wdl", "--local=x.json", "--localize", "--", "--local",
    ]
    # only for the commands that have the option
    assert arguments.value_only_after_equals(["local", "run", "--local"], ("--local",), frozenset({"submit"})) == [
        "local", "run", "--local",
    ]
    assert arguments.value_only_after_equals(["--debug", "submit", "--local"], ("--local",), frozenset({"submit"})) == [
        "--debug", "submit", "--local=",
    ]


def test_the_last_line_guard_prints_one_line_and_the_traceback_only_when_debugging(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("something nobody\nanticipated")

    monkeypatch.delenv(arguments.DEBUG_ENV, raising=False)
    monkeypatch.setattr(cli, "sweep_command", broken)
    assert cli.main(["sweep", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: RuntimeError: something nobody anticipated "
        f"(unexpected: for the traceback, --debug or {arguments.DEBUG_ENV}=1)\n"
    )
    assert cli.main(["--debug", "sweep", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.endswith("error: RuntimeError: something nobody anticipated\n")
    monkeypatch.setenv(arguments.DEBUG_ENV, "1")
    assert cli.main(["sweep", "--dry-run"]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_interrupting_a_command_exits_130_without_a_traceback(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "sweep_command", interrupted)
    assert cli.main(["sweep"]) == 130
    assert capsys.readouterr().err == ""


def test_interrupting_the_following_of_a_run_says_the_run_goes_on_and_how_to_stop_it(monkeypatch, capsys):
    """Ctrl-C on `resume --follow` (as on `submit --follow`) stopped the following only, silently:
    the run went on (billing, on AWS) with nothing said."""
    from miniwdl_fargate import client

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(client, "connect", lambda *args, **kwargs: object())
    monkeypatch.setattr(client, "resume", lambda *args, **kwargs: SimpleNamespace(run_id="hello-0e0e0e0e", name="hello"))
    monkeypatch.setattr(client, "follow", interrupted)
    assert cli.main(["resume", "hello-1a2b3c4d", "--follow", "--stack", "prod"]) == 130
    said = capsys.readouterr().err
    assert said.endswith("stopped following run hello-0e0e0e0e; the run goes on (`miniwdl-fargate status hello-0e0e0e0e --stack prod`; to stop it: "
                         "`miniwdl-fargate cancel hello-0e0e0e0e --stack prod`)\n")


def test_local_parameters_reach_the_stack_as_given(monkeypatch, capsys):
    """`local up|run --parameter K=V` (repeatable; a value may be empty or hold "=") deploys the
    template with them (stack.LocalStack(parameters=...))."""
    from miniwdl_fargate.local import stack

    seen = {}

    def local_stack(**kwargs):
        seen.update(kwargs)
        raise RuntimeError("stopped here by the test")

    monkeypatch.setattr(stack, "LocalStack", local_stack)
    assert arguments.stack_parameter("ManagedInstances=Enabled") == ("ManagedInstances", "Enabled")
    assert arguments.stack_parameter("GitHubCredentialArn=") == ("GitHubCredentialArn", "")
    assert arguments.stack_parameter("ImageCache=a=b") == ("ImageCache", "a=b")
    assert cli.main(["local", "up", "--parameter", "ManagedInstances=Enabled", "--parameter", "ImageCache=Enabled"]) != 0
    assert "stopped here by the test" in capsys.readouterr().err
    assert seen["parameters"] == {"ManagedInstances": "Enabled", "ImageCache": "Enabled"}


@pytest.mark.parametrize("command, said", [
    (["status", "--local=/nonexistent/local.json", "hello-20260101-000000-abcdef-01234567"], "error: no local stack running"),
    (["local", "run", "/nonexistent/x.wdl"], "error: WDL file /nonexistent/x.wdl not found"),  # (local mode's too)
])
def test_a_client_command_run_as_the_console_script_leaves_at_once_after_the_interpreters_exit_steps(command, said):
    """``miniwdl-fargate status`` or ``local run`` (no argv given: the console script's call) ends
    the process when done (``cli.leave``): its exit status, the atexit functions run, every
    buffered byte flushed, and nothing after ``main`` runs; a caller passing argv gets the status
    back."""
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        f"sys.argv = ['miniwdl-fargate', *{command!r}]\n"
        "from miniwdl_fargate import cli\n"
        "sys.stdout.write('buffered ')\n"
        "cli.main()\n"
        "print('main returned')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == "buffered atexit ran\n"
    assert proc.stderr.startswith(said)
    called = subprocess.run(
        [sys.executable, "-c", code.replace("cli.main()", "print(cli.main(sys.argv[1:]))")],
        capture_output=True, text=True, timeout=120,
    )
    assert called.stdout == "buffered 2\nmain returned\natexit ran\n"


def test_an_ended_sso_session_and_expired_credentials_say_what_to_do(monkeypatch):
    """botocore's SSO token errors and ExpiredToken answers named what failed, not what to do."""
    import botocore.exceptions as boto
    from botocore.exceptions import ClientError

    monkeypatch.setenv("AWS_PROFILE", "lab")
    said = arguments.explain(boto.TokenRetrievalError(provider="sso", error_msg="Token has expired and refresh failed"))
    assert said.startswith("your AWS SSO session has ended or was never started") and "`aws sso login --profile lab`" in said
    expired = ClientError({"Error": {"Code": "ExpiredToken", "Message": "The provided token has expired."}}, "GetObject")
    assert arguments.explain(expired) == (
        "AWS GetObject: ExpiredToken: The provided token has expired.: your AWS credentials have expired: refresh them "
        "(aws sso login, or new session keys), then again"
    )


@pytest.mark.parametrize(
    "code, message",
    [
        ("RequestTimeTooSkewed", "The difference between the request time and the current time is too large."),
        ("RequestExpired", "Request has expired."),
        ("InvalidSignatureException", "Signature expired: 20261202T120000Z is now earlier than 20261202T121500Z (20261202T123000Z - 15 min.)"),
    ],
)
def test_a_request_refused_for_the_machines_clock_says_so_not_that_credentials_expired(code, message):
    """A request signed more than 15 minutes off AWS's time is the clock's fault: new credentials
    would be refused the same way."""
    from botocore.exceptions import ClientError

    said = arguments.explain(ClientError({"Error": {"Code": code, "Message": message}}, "DescribeStacks"))
    assert said.startswith(f"AWS DescribeStacks: {code}: ")
    assert said.endswith("this machine's clock is more than 15 minutes off AWS's: set it right (NTP), then again")
    assert "credentials" not in said


def test_a_second_local_up_does_not_take_over_a_running_stacks_connection_file(files, tmp_path):
    """The second stack wrote over the first's connection file: once stopped, the first, still
    up with its runs, could no longer be reached with --local. It is refused before it starts."""
    import socket

    from miniwdl_fargate.local import cli as local_cli

    with socket.create_server(("127.0.0.1", 0)) as server:
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
        connection = tmp_path / "local.json"
        first = {"endpoint": endpoint, "region": "us-east-1", "stack_name": "s", "outputs": {}, "state_dir": "/x", "pid": os.getpid()}
        connection.write_text(json.dumps(first))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIWDL_FARGATE", "AWS_ENDPOINT"))}
        proc = run_forked(cli.main, ["local", "up", "--file", str(connection), "--state-dir", str(tmp_path / "state")], env=env, cwd=files)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"error: a local stack is already up (pid {os.getpid()}, {endpoint}, state in /x), reached "
                                      f"with --local={connection}: stop it first")
        assert json.loads(connection.read_text()) == first and not (tmp_path / "state").exists()
    # once it no longer serves, its file is stale: a new stack may take it
    assert local_cli.stack_already_up(connection) is None


def test_a_state_folder_of_a_local_stack_from_before_the_mark_is_taken(tmp_path):
    from miniwdl_fargate.local.stack import state_dir_problem

    for name in ("efs", "s3", "logs", "changes"):
        (tmp_path / name).mkdir() if name != "changes" else (tmp_path / name).write_text("3")
    assert state_dir_problem(str(tmp_path)) is None
    (tmp_path / "notes.txt").write_text("mine")
    assert "holds files that are not local mode's state (changes, efs, logs, ...)" in state_dir_problem(str(tmp_path))


def test_a_ctrl_c_while_the_command_loads_exits_130_without_a_traceback():
    """Ctrl-C in a command's first moments printed a traceback from the middle of an import."""
    import subprocess
    import sys

    code = (
        # (SIGINT handled as a terminal's foreground command has it: a job a non-interactive
        # shell put in the background, such as a CI script's, passes it on ignored)
        "import builtins, os, signal\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "real = builtins.__import__\n"
        "def interrupting(name, globals=None, locals=None, fromlist=(), level=0):\n"
        "    if fromlist and 'arguments' in fromlist:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real(name, globals, locals, fromlist, level)\n"
        "builtins.__import__ = interrupting\n"
        "import miniwdl_fargate.cli\n"
        "print('not interrupted')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (130, "", "")
