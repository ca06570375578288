"""A WDL task sees its own run's files, not every run on the file system: through the whole
local pipeline, its EFS volume is only its run's directory (the run's own access point), at the
path the driver sees it; another run's files are out of reach by their EFS path and by their
host path; and nothing on the host outside its run is writable."""

import json
import os

from miniwdl_fargate import upload as local_run
from tests.waiting import run_end

SECRET_WDL = r"""
version 1.1
workflow secret {
  call keep
  output { String where = keep.where }
}
task keep {
  command <<< echo secret > secret.txt && realpath secret.txt >>>
  output { String where = read_string(stdout()) }
}
"""

PROBE_WDL = r"""
version 1.1
workflow probe {
  input { String other  String other_on_host  String host_efs }
  call look { input: other = other, other_on_host = other_on_host, host_efs = host_efs }
  output { String runs = look.runs  String facts = look.facts }
}
task look {
  input { String other  String other_on_host  String host_efs }
  command <<<
    ls /mnt/efs/runs | tr '\n' ' ' > runs.txt
    for f in '~{other}' '~{other_on_host}'; do
      if cat "$f" >/dev/null 2>&1; then echo "read:$f"; else echo unreadable; fi
    done
    for d in / /etc /mnt /mnt/efs /mnt/efs/runs '~{host_efs}'; do
      if touch "$d/isolation-probe" 2>/dev/null; then echo "wrote:$d"; else echo refused; fi
    done
    touch /tmp/isolation-probe && echo private-tmp
  >>>
  output {
    String runs = read_string("runs.txt")
    String facts = sub(read_string(stdout()), "\n", " ")
  }
}
"""


def run_wdl(stack, tmp_path, source, inputs, name):
    wdl = tmp_path / f"{name}.wdl"
    wdl.write_text(source)
    inputs_file = tmp_path / f"{name}.json"
    inputs_file.write_text(json.dumps(inputs))
    bucket = stack.outputs["BucketName"]
    name, run_id = local_run.submit(bucket, wdl, inputs_file, name=name)
    result = run_end(stack, name, run_id, timeout=300)
    assert result.status == "SUCCEEDED", json.dumps(result.document, indent=1)[:3000]
    return run_id, result.document["outputs"]


def test_a_task_sees_only_its_own_run_and_writes_nowhere_else(stack, tmp_path):
    # the first run's directory stays on EFS for the probe to try (a successful run's is removed
    # at its end otherwise): its bundle's miniwdl.cfg keeps it
    (tmp_path / "miniwdl.cfg").write_text("[aws_fargate]\nkeep_run_dirs = true\n")
    first_id, first = run_wdl(stack, tmp_path, SECRET_WDL, {}, "secret")
    (tmp_path / "miniwdl.cfg").unlink()
    other = first["secret.where"]
    assert other.startswith(f"/mnt/efs/runs/{first_id}/")
    host_efs = stack.runtime.efs_root
    on_host = [os.path.join(root, name) for root, _, names in os.walk(host_efs) for name in names
               if name == "secret.txt" and first_id in root]
    assert on_host, "the first run's file is on the local EFS"
    probe_id, out = run_wdl(
        stack, tmp_path, PROBE_WDL,
        {"probe.other": other, "probe.other_on_host": on_host[0], "probe.host_efs": host_efs}, "probe",
    )
    assert out["probe.runs"].split() == [probe_id]  # not the first run, not the shared cache
    assert out["probe.facts"].split() == ["unreadable", "unreadable"] + ["refused"] * 6 + ["private-tmp"]
    for place in ("/", "/etc", "/mnt", host_efs):
        assert not os.path.exists(os.path.join(place, "isolation-probe"))
    assert not os.path.exists("/tmp/isolation-probe")
