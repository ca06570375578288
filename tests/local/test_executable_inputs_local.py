"""Local inputs a task runs (a script given as a File, a folder of tools given as a Directory)
keep their execute bits, and a Directory its empty folders, through `submit`'s upload, S3 and the
driver's staging, as plain miniwdl gives them: through the whole local pipeline."""

import json

from miniwdl_fargate import upload
from tests.waiting import run_end

WDL = """version development
task use_tools {
  input { File tool  Directory tools }
  command <<<
    set -e
    ~{tool}
    ~{tools}/bin/run.sh
    test -d ~{tools}/scratch && echo "scratch there"
  >>>
  output { Array[String] said = read_lines(stdout()) }
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" }
}
"""


def test_a_script_and_a_folder_of_tools_given_as_inputs_run_as_they_would_under_miniwdl(stack, tmp_path):
    (tmp_path / "tools.wdl").write_text(WDL)
    (tmp_path / "tool.sh").write_text("#!/bin/sh\necho tool ran\n")
    (tmp_path / "tool.sh").chmod(0o755)
    (tmp_path / "kit" / "bin").mkdir(parents=True)
    (tmp_path / "kit" / "scratch").mkdir()
    (tmp_path / "kit" / "bin" / "run.sh").write_text("#!/bin/sh\necho kit ran\n")
    (tmp_path / "kit" / "bin" / "run.sh").chmod(0o755)
    (tmp_path / "kit" / "README").write_text("tools\n")
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"use_tools.tool": "tool.sh", "use_tools.tools": "kit"}))
    submission = upload.prepare(tmp_path / "tools.wdl", inputs, "tools")
    name, run_id = submission.upload(stack.outputs["BucketName"])
    result = run_end(stack, name, run_id, timeout=300, inputs_version=submission.inputs_version)
    assert result.status == "SUCCEEDED", result.document
    assert result.document["outputs"] == {"use_tools.said": ["tool ran", "kit ran", "scratch there"]}
