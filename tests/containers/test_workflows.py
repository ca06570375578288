"""Whole workflows through local mode with each WDL task in its real image: what a user's
ordinary images do on Fargate (non-root USER, an ENTRYPOINT that is not a shell, no bash, a
command that resolves its own directory), and an image that is not there."""

import json

from miniwdl_fargate import upload
from tests.waiting import run_end

IMAGES_WDL = """
version 1.1
workflow images {
  call nonroot
  call entrypoint
  call sh_only
  call realpath_out
  output {
    Int uid = nonroot.uid
    File greeting = nonroot.greeting
    String said = entrypoint.said
    String shell = sh_only.shell
    File made = realpath_out.made
  }
}
task nonroot {
  command <<<
    id -u > uid.txt
    echo hello > greeting.txt
  >>>
  output { Int uid = read_int("uid.txt")  File greeting = "greeting.txt" }
  runtime { docker: "miniwdl-fargate-test/nonroot:1" }
}
task entrypoint {
  command <<< echo "from the WDL command" >>>
  output { String said = read_string(stdout()) }
  runtime { docker: "miniwdl-fargate-test/entrypoint:1" }
}
task sh_only {
  command <<<
    if command -v bash >/dev/null; then echo bash; else echo no-bash; fi
  >>>
  output { String shell = read_string(stdout()) }
  runtime { docker: "miniwdl-fargate-test/sh-only:1" }
}
task realpath_out {
  command <<<
    p=$(realpath .)
    echo made > "$p/made.txt"
    echo "$(pwd -P)/made.txt" > where.txt
  >>>
  output { File made = read_string("where.txt") }
  runtime { docker: "miniwdl-fargate-test/bash:1" }
}
"""

MISSING_WDL = """
version 1.1
workflow missing {
  call absent
  output { String out = absent.out }
}
task absent {
  command <<< echo never >>>
  output { String out = read_string(stdout()) }
  runtime { docker: "miniwdl-fargate-test/not-built-anywhere:3" }
}
"""


def run_workflow(stack, tmp_path, wdl_text, name):
    wdl = tmp_path / f"{name}.wdl"
    wdl.write_text(wdl_text)
    bucket = stack.outputs["BucketName"]
    name, run_id = upload.submit(bucket, wdl, {}, name=name)
    return run_end(stack, name, run_id, timeout=300)


def read(uri):
    from miniwdl_fargate import aws

    bucket, key = uri[len("s3://"):].split("/", 1)
    return aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def test_ordinary_images_run_their_wdl_tasks(stack, tmp_path):
    result = run_workflow(stack, tmp_path, IMAGES_WDL, "images")
    assert result.status == "SUCCEEDED", json.dumps(result.document, indent=2)
    outputs = result.document["outputs"]
    assert outputs["images.uid"] == 1000  # the image's USER, not root
    assert read(outputs["images.greeting"]) == b"hello\n"
    assert outputs["images.said"] == "from the WDL command"  # not the image's ENTRYPOINT
    assert outputs["images.shell"] == "no-bash"
    assert read(outputs["images.made"]) == b"made\n"  # named by its real absolute path
    assert stack.runtime.running_tasks() == []


def test_an_image_that_is_not_there_fails_the_run_naming_it(stack, tmp_path):
    result = run_workflow(stack, tmp_path, MISSING_WDL, "missing-image")
    assert result.status == "FAILED"
    error = json.dumps(result.document)
    assert "CannotPullContainerError" in error, error
    assert "miniwdl-fargate-test/not-built-anywhere:3" in error
    # (the ECS task itself: stopCode TaskFailedToStart, see test_runner.py)
    assert result.document["failed_task"]["task"] == "call-absent"
    assert (
        "CannotPullContainerError: failed to resolve ref miniwdl-fargate-test/not-built-anywhere:3: "
        in result.document["failed_task"]["message"]
    )
