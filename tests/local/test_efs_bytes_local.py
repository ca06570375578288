"""What each task attempt read and wrote of the shared file system reaches cost.json (EFS Elastic
throughput bills by the byte), through the whole local pipeline."""

import json

from miniwdl_fargate import upload
from tests.waiting import run_end

WDL = """version 1.1
task double {
  input { File data }
  command <<<
    cat ~{data} ~{data} > doubled.bin
    head -c 4096 /dev/zero > scratch.tmp && rm scratch.tmp
  >>>
  output { File doubled = "doubled.bin" }
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" }
}
"""


def test_an_attempts_efs_reads_and_writes_are_in_the_cost_estimate(stack, s3, tmp_path):
    (tmp_path / "double.wdl").write_text(WDL)
    (tmp_path / "data.bin").write_bytes(b"x" * 300_000)
    bucket = stack.outputs["BucketName"]
    submission = upload.prepare(tmp_path / "double.wdl", {"double.data": str(tmp_path / "data.bin")}, "efsbytes")
    name, run_id = submission.upload(bucket)
    result = run_end(stack, name, run_id, timeout=300, inputs_version=submission.inputs_version)
    assert result.status == "SUCCEEDED", result.document
    cost = json.loads(s3.get_object(Bucket=bucket, Key=f"runs/{name}/results/{run_id}/cost.json")["Body"].read())
    [row] = [r for r in cost["attempts"] if r["call"] != "driver"]
    assert row["efs_read_bytes"] == 300_000  # (its input, read once)
    # (what it left in its working directory: the doubled file, its stdout and stderr; not the removed scratch)
    assert 600_000 <= row["efs_written_bytes"] < 600_000 + 4096
    assert row["efs_usd"] > 0 and "EFS Elastic throughput per GB" in cost["method"]
