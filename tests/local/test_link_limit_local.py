"""Local mode is as strict as EFS about hard links: the local Fargate runner gives the driver
``[aws_fargate] efs_link_limit`` (177, or what the caller set), and the stack's driver puts spare
copies in the shared ``cache/links`` on local "EFS"."""

import json
import os
import uuid

from miniwdl_fargate import aws
from miniwdl_fargate import upload as local_run
from tests.waiting import run_end

WDL = """
version 1.1
workflow links {
  input { File reference }
  scatter (i in range(3)) {
    call look { input: reference = reference }
  }
  output { Array[String] seen = look.seen }
}
task look {
  input { File reference }
  command <<< cat "~{reference}" >>>
  output { String seen = read_string(stdout()) }
}
"""


def spares_holding(efs_root, text):
    """Spare copies (under some cache/links) whose content is ``text``."""
    found = []
    for root, _dirs, files in os.walk(efs_root):
        if f"{os.sep}cache{os.sep}links{os.sep}" in root + os.sep:
            found += [os.path.join(root, f) for f in files if open(os.path.join(root, f)).read() == text]
    return found


def test_the_stacks_driver_links_past_the_limit_from_shared_spares(stack, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__EFS_LINK_LIMIT", "2")  # one link per file besides its name
    bucket = stack.outputs["BucketName"]
    text = f"reference {uuid.uuid4()}"
    key = f"data/{uuid.uuid4().hex}/ref.txt"
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=text.encode())
    uri = f"s3://{bucket}/{key}"
    (tmp_path / "links.wdl").write_text(WDL)
    (tmp_path / "inputs.json").write_text(json.dumps({"links.reference": uri}))
    name, run_id = local_run.submit(bucket, tmp_path / "links.wdl", tmp_path / "inputs.json", name="links")
    result = run_end(stack, name, run_id, timeout=300)
    assert result.status == "SUCCEEDED", result.document
    assert result.document["outputs"]["links.seen"] == [text] * 3
    # 3 links at 1 per file: the staged copy and 2 spares, in the cache every run shares
    assert len(spares_holding(stack.runtime.efs_root, text)) == 2
