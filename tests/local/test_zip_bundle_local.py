"""A `miniwdl zip` bundle through the whole local pipeline, as `miniwdl-fargate submit x.zip` and
`local run x.zip` send it: its import resolved inside the bundle, its default inputs honoured
under the submitted ones."""

import json
import logging

import WDL
import WDL.Zip

from miniwdl_fargate import upload
from tests.waiting import run_end

MAIN = """version 1.1
import "lib/greet.wdl" as lib
workflow zipped {
  input {
    String who
    String greeting = "hello"
  }
  call lib.greet { input: who = who, greeting = greeting }
  output { String said = greet.said }
}
"""
LIB = """version 1.1
task greet {
  input { String who  String greeting }
  command <<< echo "~{greeting} ~{who}" >>>
  output { String said = read_string(stdout()) }
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" }
}
"""


def read(s3, uri):
    bucket, key = uri[len("s3://"):].split("/", 1)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_a_miniwdl_zip_bundle_with_an_import_runs_with_its_defaults_under_the_given_inputs(stack, s3, tmp_path):
    (tmp_path / "wf" / "lib").mkdir(parents=True)
    (tmp_path / "wf" / "main.wdl").write_text(MAIN)
    (tmp_path / "wf" / "lib" / "greet.wdl").write_text(LIB)
    bundle = tmp_path / "zipped.zip"
    doc = WDL.load(str(tmp_path / "wf" / "main.wdl"))
    WDL.Zip.build(doc, str(bundle), logging.getLogger("test"), inputs={"zipped.who": "bundle", "zipped.greeting": "hi"})
    bucket = stack.outputs["BucketName"]
    submission = upload.prepare(bundle, {"zipped.who": "uploaded"}, "zip-local")
    name, run_id = submission.upload(bucket)
    result = run_end(stack, name, run_id, timeout=300, inputs_version=submission.inputs_version)
    assert result.status == "SUCCEEDED", result.document
    assert result.document["outputs"] == {"zipped.said": "hi uploaded"}
    assert json.loads(read(s3, result.results + "inputs.json")) == {"zipped.greeting": "hi", "zipped.who": "uploaded"}
    record = json.loads(read(s3, result.results + "run.json"))
    assert record["workflow"] == result.results + "source/main.wdl"
    assert record["submitted"]["workflow"] == f"s3://{bucket}/runs/zip-local/workflow.zip"


def test_a_wdl_importing_from_above_its_folder_runs_as_submit_sends_it(stack, s3, tmp_path):
    """WARP's layout (pipelines/<x>/main.wdl importing ../../tasks/greet.wdl), which `miniwdl
    run` takes: `submit` sends it as a bundle by itself, and it runs."""
    (tmp_path / "pipelines" / "hello").mkdir(parents=True)
    (tmp_path / "tasks").mkdir()
    (tmp_path / "pipelines" / "hello" / "main.wdl").write_text(MAIN.replace("lib/greet.wdl", "../../tasks/greet.wdl"))
    (tmp_path / "tasks" / "greet.wdl").write_text(LIB)
    submission = upload.prepare(tmp_path / "pipelines" / "hello" / "main.wdl", {"zipped.who": "warp"}, "above-folder")
    assert submission.bundle
    name, run_id = submission.upload(stack.outputs["BucketName"])
    result = run_end(stack, name, run_id, timeout=300, inputs_version=submission.inputs_version)
    assert result.status == "SUCCEEDED", result.document
    assert result.document["outputs"] == {"zipped.said": "hello warp"}
