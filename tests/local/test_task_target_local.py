"""`submit --task NAME` / the run option ``task`` (as `miniwdl run --task`): one task of a document
of several tasks and no workflow (a task library), through the whole local pipeline: the submit
step's checks, the driver's staging and its outputs are the task's."""

import json

import pytest

from miniwdl_fargate import run_options, upload
from tests.waiting import run_end

TASKS = """version 1.1
task count_lines {
  input { File text  Int extra = 0 }
  command <<< echo $(( $(wc -l < ~{text}) + ~{extra} )) >>>
  output { Int lines = read_int(stdout()) }
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" }
}
task shout {
  input { String word }
  command <<< echo "~{word}" | tr a-z A-Z >>>
  output { String loud = read_string(stdout()) }
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" }
}
"""


def test_a_task_of_a_document_of_tasks_runs_by_its_name_with_its_inputs_and_outputs(stack, s3, tmp_path):
    (tmp_path / "tasks.wdl").write_text(TASKS)
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    bucket = stack.outputs["BucketName"]
    options = run_options.parse_assignments([], [], "count_lines")
    submission = upload.prepare(tmp_path / "tasks.wdl", {"count_lines.text": str(tmp_path / "three.txt")}, "tasklib", options, assignments=["extra=2"])
    name, run_id = submission.upload(bucket)
    result = run_end(stack, name, run_id, timeout=300, inputs_version=submission.inputs_version)
    assert result.status == "SUCCEEDED", result.document
    assert result.document["outputs"] == {"count_lines.lines": 5}
    record = json.loads(s3.get_object(Bucket=bucket, Key=f"runs/tasklib/results/{run_id}/run.json")["Body"].read())
    assert record["options"] == {"task": "count_lines"} and record["workflow_name"] == "count_lines"


def test_a_document_of_tasks_without_one_named_or_with_an_unknown_one_is_refused_before_anything_is_uploaded(tmp_path):
    (tmp_path / "tasks.wdl").write_text(TASKS)
    with pytest.raises(upload.RunInputError, match=r"2 tasks \(count_lines, shout\): name the one to run \(--task NAME"):
        upload.prepare(tmp_path / "tasks.wdl", {"shout.word": "x"}, "tasklib")
    with pytest.raises(upload.RunInputError, match=r"no task 'whisper' in the document \(its tasks: count_lines, shout\)"):
        upload.prepare(tmp_path / "tasks.wdl", {}, "tasklib", run_options.parse_assignments([], [], "whisper"))
    # the inputs are the task's: another task's are unknown
    with pytest.raises(upload.RunInputError, match=r"shout\.word"):
        upload.prepare(tmp_path / "tasks.wdl", {"shout.word": "x"}, "tasklib", run_options.parse_assignments([], [], "count_lines"))
