"""A task's retries (maxRetries here; Spot interruptions and the out-of-memory retry alike) run at
the paths its command was given: its work directory, its inputs under work/_miniwdl_inputs and an
output it names by absolute path. miniwdl's retries move to work2, where its Docker backend mounts
the new directory back at the old path; a task here sees its directory by its real path, so each
attempt runs in ``work`` again, the failed attempt's files renamed aside. Through miniwdl itself,
with the host_process backend (the same task script as on Fargate)."""

import json

import pytest

from miniwdl_fargate import driver

WDL = """
version 1.1
task flaky {
  input {
    File reference
    String tries
  }
  command <<<
    set -e
    cat "~{reference}" > copy.txt
    if [ ! -e "~{tries}/failed-once" ]; then touch "~{tries}/failed-once"; echo partial > half.txt; exit 1; fi
    echo "$TMPDIR" > tmpdir.txt
    realpath copy.txt > where.txt
  >>>
  output {
    File copy = read_string("where.txt")
    String tmpdir = read_string("tmpdir.txt")
  }
  runtime { maxRetries: 1 }
}
"""


@pytest.mark.parametrize("cfg", [
    "",
    # the failed attempt's work directory deleted, and TMPDIR in the work directory
    "[file_io]\ndelete_work = failure\nmount_tmpdir = true\n",
])
def test_a_retried_task_runs_at_the_paths_its_command_was_given(tmp_path, monkeypatch, cfg):
    monkeypatch.setenv("MINIWDL__SCHEDULER__CONTAINER_BACKEND", "host_process")
    monkeypatch.delenv("MINIWDL__AWS_FARGATE__RUN_ID", raising=False)
    (tmp_path / "tries").mkdir()
    (tmp_path / "ref.txt").write_text("ACGT\n")
    (tmp_path / "flaky.wdl").write_text(WDL)
    (tmp_path / "inputs.json").write_text(json.dumps({"reference": str(tmp_path / "ref.txt"), "tries": str(tmp_path / "tries")}))
    cfg_path = None
    if cfg:
        (tmp_path / "run.cfg").write_text(cfg)
        cfg_path = str(tmp_path / "run.cfg")
    status, result = driver.miniwdl_run(str(tmp_path / "flaky.wdl"), str(tmp_path / "inputs.json"), str(tmp_path / "runs"), cfg_path)
    assert status == 0, result
    copy = result["outputs"]["flaky.copy"]
    assert open(copy).read() == "ACGT\n"
    task_dir = next((tmp_path / "runs").glob("*_flaky"))
    assert copy.startswith(str(task_dir / "out")) or copy.startswith(str(task_dir / "work"))
    assert (task_dir / "work" / "copy.txt").read_text() == "ACGT\n" and not (task_dir / "work2").exists()
    if cfg:
        assert result["outputs"]["flaky.tmpdir"] == str(task_dir / "work" / "_miniwdl_tmpdir")
    else:  # (the failed attempt's files, kept aside)
        assert (task_dir / "work.try1" / "half.txt").read_text() == "partial\n"
        assert (task_dir / "stderr.try1.txt").exists()
