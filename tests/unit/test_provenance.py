"""What a run ran (outputs.json's "provenance"): the workflow by content, each attempt's image and
digest, the driver's versions."""

import hashlib
import importlib.metadata
import shutil
import subprocess

import pytest

import miniwdl_fargate
from miniwdl_fargate import provenance
from miniwdl_fargate.attempts import Attempt

WDL = b"version 1.1\nworkflow w { call lib.t }\n"


@pytest.fixture
def bundle(tmp_path):
    """A fetched bundle as the driver leaves it: the WDL, an import, a data file, and the run's
    inputs beside them (in .inputs/, not part of the bundle)."""
    (tmp_path / "workflow.wdl").write_bytes(WDL)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "tasks.wdl").write_bytes(b"version 1.1\ntask t { command <<< >>> }\n")
    (tmp_path / "a b.txt").write_bytes(b"spaces in a name\n")
    (tmp_path / "B.txt").write_bytes(b"upper case sorts first\n")
    (tmp_path / ".inputs").mkdir()
    (tmp_path / ".inputs" / "inputs.json").write_text('{"w.x": 1}')
    return tmp_path


def test_the_workflow_is_named_by_the_digests_of_its_wdl_and_its_bundle(bundle):
    digests = provenance.workflow_digests(str(bundle / "workflow.wdl"), str(bundle))
    assert digests["wdl_sha256"] == hashlib.sha256(WDL).hexdigest()
    assert digests["bundle_files"] == 4  # the inputs are not part of the bundle
    assert provenance.bundle_files(str(bundle)) == ["B.txt", "a b.txt", "lib/tasks.wdl", "workflow.wdl"]
    lines = "".join(
        f"{hashlib.sha256((bundle / rel).read_bytes()).hexdigest()}  {rel}\n"
        for rel in ("B.txt", "a b.txt", "lib/tasks.wdl", "workflow.wdl")
    )
    assert digests["bundle_sha256"] == hashlib.sha256(lines.encode()).hexdigest()


@pytest.mark.skipif(not all(shutil.which(t) for t in ("find", "sort", "xargs", "sha256sum")), reason="needs GNU coreutils")
def test_the_bundle_digest_is_what_the_documented_shell_command_gives(bundle):
    shutil.rmtree(bundle / ".inputs")  # (a copy of the run's source/ folder has no inputs in it)
    command = "find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum"
    assert command in provenance.__doc__.replace("\\\\", "\\")
    shell = subprocess.run(command, shell=True, cwd=bundle, capture_output=True, text=True, check=True)
    assert shell.stdout.split()[0] == provenance.workflow_digests(str(bundle / "workflow.wdl"), str(bundle))["bundle_sha256"]


def test_any_change_to_the_bundle_changes_its_digest_and_the_inputs_do_not(bundle):
    before = provenance.workflow_digests(str(bundle / "workflow.wdl"), str(bundle))
    (bundle / ".inputs" / "inputs.json").write_text('{"w.x": 2}')
    assert provenance.workflow_digests(str(bundle / "workflow.wdl"), str(bundle)) == before
    (bundle / "lib" / "tasks.wdl").write_bytes(b"version 1.1\ntask t { command <<< echo >>> }\n")
    after = provenance.workflow_digests(str(bundle / "workflow.wdl"), str(bundle))
    assert after["wdl_sha256"] == before["wdl_sha256"] and after["bundle_sha256"] != before["bundle_sha256"]
    (bundle / "lib" / "tasks.wdl").rename(bundle / "lib" / "moved.wdl")  # a rename is a change too
    assert provenance.workflow_digests(str(bundle / "workflow.wdl"), str(bundle))["bundle_sha256"] != after["bundle_sha256"]


def test_each_attempt_names_its_image_as_asked_as_run_and_by_digest():
    cached = Attempt(
        call="call-align", attempt=1, image="ubuntu:22.04",
        image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/docker-hub/library/ubuntu:22.04",
        image_digest="sha256:" + "a" * 64,
    )
    direct = Attempt(call="call-sort", attempt=2, image="quay.io/biocontainers/samtools:1.19", image_digest="sha256:" + "b" * 64)
    never_started = Attempt(call="call-x", attempt=1, image="ubuntu:22.04")
    assert provenance.task_images([cached, direct, never_started]) == [
        {"call": "call-align", "attempt": 1, "image": "ubuntu:22.04", "image_uri": cached.image_uri, "image_digest": "sha256:" + "a" * 64},
        {"call": "call-sort", "attempt": 2, "image": "quay.io/biocontainers/samtools:1.19",
         "image_uri": "quay.io/biocontainers/samtools:1.19", "image_digest": "sha256:" + "b" * 64},
        {"call": "call-x", "attempt": 1, "image": "ubuntu:22.04", "image_uri": "ubuntu:22.04", "image_digest": ""},
    ]


def test_the_driver_names_its_own_versions():
    found = provenance.versions()
    assert found == {"miniwdl_fargate": miniwdl_fargate.__version__, "miniwdl": importlib.metadata.version("miniwdl")}
    assert found["miniwdl"] == "1.16.0"  # as plugin/pyproject.toml pins it


def test_a_runs_provenance_puts_the_three_together(bundle):
    digests = provenance.workflow_digests(str(bundle / "workflow.wdl"), str(bundle))
    uri = "s3://runs/runs/t/results/t-1/source/workflow.wdl"
    doc = provenance.of_run(uri, digests, [Attempt(call="call-t", attempt=1, image="ubuntu:22.04")])
    assert doc["workflow"] == {"uri": uri, **digests}
    assert [t["call"] for t in doc["tasks"]] == ["call-t"]
    assert doc["driver"] == provenance.versions()
    # a run that ended before its workflow was fetched still says what it can
    assert provenance.of_run(uri, {}, [])["workflow"] == {"uri": uri}
