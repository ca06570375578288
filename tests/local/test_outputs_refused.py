"""Outputs are what the task made, through the whole pipeline: a Directory output holding a FIFO
or a link out of the run fails the run with OutputRefused, nothing uploaded, and the run does not
hang on the special file."""

import json

from miniwdl_fargate import upload as local_run
from tests.waiting import run_end

WDL = r"""
version development
workflow made {
  input { String kind }
  call make { input: kind = kind }
  output { Directory d = make.d }
}
task make {
  input { String kind }
  command <<<
    mkdir -p d/sub && echo fine > d/ok.txt
    if [ "~{kind}" = fifo ]; then mkfifo d/sub/pipe; else ln -s /etc d/sub/etc; fi
  >>>
  output { Directory d = "d" }
}
"""


def run(stack, tmp_path, kind):
    wdl = tmp_path / "made.wdl"
    wdl.write_text(WDL)
    bucket = stack.outputs["BucketName"]
    name, run_id = local_run.submit(bucket, wdl, {"made.kind": kind}, name=f"made-{kind}")
    return bucket, run_end(stack, name, run_id, timeout=300)


def uploaded_outputs(s3, bucket, result):
    prefix = result.results[len(f"s3://{bucket}/"):] + "out/"
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def test_a_fifo_in_a_directory_output_fails_the_run_naming_it(stack, s3, tmp_path):
    bucket, result = run(stack, tmp_path, "fifo")
    assert result.status == "FAILED", json.dumps(result.document)[:2000]
    assert result.document["error"] == "OutputRefused"
    assert "sub/pipe is a FIFO" in result.document["message"]
    assert uploaded_outputs(s3, bucket, result) == []


def test_a_link_out_of_the_run_in_a_directory_output_fails_the_run(stack, s3, tmp_path):
    bucket, result = run(stack, tmp_path, "link")
    assert result.status == "FAILED", json.dumps(result.document)[:2000]
    assert result.document["error"] == "OutputRefused"
    assert "sub/etc is a symbolic link to /etc" in result.document["message"]
    assert uploaded_outputs(s3, bucket, result) == []
