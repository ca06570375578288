"""The one script a task container runs (``task_script``), run for real with the host_process
backend (``miniwdl run``'s main in a process of its own: tests/forked.py; no AWS): the WDL command runs with bash where the image has it and with
sh where it does not, in its real directory, with a private TMPDIR that is removed afterwards."""

import json
import os
from pathlib import Path

import WDL.CLI as WDL_CLI

from tests.forked import run_forked

WDL = """
version 1.1
task which_shell {
  command <<<
    if [ -n "${BASH_VERSION:-}" ]; then echo bash; else echo sh; fi
    pwd -P > where.txt
    echo "$TMPDIR" > tmpdir.txt
    [ -d "$TMPDIR" ] && [ -w "$TMPDIR" ] && echo writable > tmp_ok.txt
  >>>
  output {
    String shell = read_string(stdout())
    String where = read_string("where.txt")
    String tmpdir = read_string("tmpdir.txt")
    String tmp_ok = read_string("tmp_ok.txt")
  }
}
"""


def run(tmp_path: Path, **env: str) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    wdl = tmp_path / "t.wdl"
    wdl.write_text(WDL)
    environ = {**os.environ, "MINIWDL__SCHEDULER__CONTAINER_BACKEND": "host_process", **env}
    proc = run_forked(WDL_CLI.main, ["run", str(wdl), "--dir", str(tmp_path / "runs") + "/", "-o", str(tmp_path / "out.json")],
                      env=environ)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp_path / "out.json").read_text())


def test_bash_when_the_image_has_it_and_sh_when_it_does_not(tmp_path):
    with_bash = run(tmp_path / "a")
    assert with_bash["outputs"]["which_shell.shell"] == "bash"
    no_bash = run(tmp_path / "b", MINIWDL__TASK_RUNTIME__COMMAND_SHELL="/no/such/bash")
    assert no_bash["outputs"]["which_shell.shell"] == "sh"
    said = (Path(no_bash["dir"]) / "container.log").read_text()
    assert "miniwdl-fargate: the image has no /no/such/bash; the command runs under /bin/sh" in said


def test_the_shell_takes_its_flags_as_miniwdls_command_shell_does(tmp_path):
    """``command_shell = /bin/bash -x`` (miniwdl's default.cfg's own example): bash with -x, where
    the whole string was taken for the program's name, not found, and sh ran the command."""
    traced = run(tmp_path, MINIWDL__TASK_RUNTIME__COMMAND_SHELL="/bin/bash -x")
    assert traced["outputs"]["which_shell.shell"] == "bash"
    assert "+ pwd -P" in (Path(traced["dir"]) / "stderr.txt").read_text()  # (bash -x traces to the command's stderr)


def test_command_runs_in_its_real_work_directory_with_a_private_tmpdir(tmp_path):
    result = run(tmp_path)
    outputs = result["outputs"]
    work = os.path.realpath(os.path.join(result["dir"], "work"))
    assert outputs["which_shell.where"] == work  # not a view through symlinks
    tmpdir = outputs["which_shell.tmpdir"]
    assert tmpdir.startswith(os.path.join(os.environ.get("TMPDIR", "/tmp"), "miniwdl."))
    assert outputs["which_shell.tmp_ok"] == "writable"
    assert not os.path.exists(tmpdir)  # scratch is removed when the command ends


def test_the_private_tmpdir_goes_to_tmp_where_the_given_tmpdir_cannot_hold_it(tmp_path):
    """A scratch volume the container's user cannot write (ECS grants a non-root user access only
    when the container definition names it): the command still gets a private TMPDIR, in /tmp."""
    result = run(tmp_path, TMPDIR=str(tmp_path / "no-such-volume"))
    tmpdir = result["outputs"]["which_shell.tmpdir"]
    assert tmpdir.startswith("/tmp/miniwdl.")
    assert result["outputs"]["which_shell.tmp_ok"] == "writable"
    assert not os.path.exists(tmpdir)
    # and the container's log says so, naming the directory and the user; the task's stderr() is
    # the command's own
    said = f"miniwdl-fargate: scratch {tmp_path / 'no-such-volume'} is not writable by uid {os.getuid()}; TMPDIR is /tmp instead"
    task_dir = Path(result["dir"])
    assert said in (task_dir / "container.log").read_text() and said not in (task_dir / "stderr.txt").read_text()


TAR_WDL = """
version 1.1
task untar {
  input { File bundle }
  command <<<
    echo "${TAR_OPTIONS-unset}" > tar_options.txt
    tar -xf ~{bundle}
    stat -c %u ref/genome.fa > owner.txt
  >>>
  output {
    String tar_options = read_string("tar_options.txt")
    Int owner = read_int("owner.txt")
  }
}
"""


def test_tar_restores_no_owner_unless_the_task_asks_for_it(tmp_path):
    """On EFS through the run's access point, a file cannot be given to another owner: GNU tar run
    as root (restoring each file's owner) failed there. TAR_OPTIONS=--no-same-owner makes the
    extracted files the task's own, as a non-root user's always are; a TAR_OPTIONS of the
    container's own is kept."""
    import io
    import tarfile

    bundle = tmp_path / "ref.tar"
    with tarfile.open(bundle, "w") as archive:
        info = tarfile.TarInfo("ref/genome.fa")
        data = b">chr1\nACGT\n"
        info.size, info.uid, info.gid = len(data), 4321, 4321
        archive.addfile(info, io.BytesIO(data))
    wdl = tmp_path / "untar.wdl"
    wdl.write_text(TAR_WDL)
    for env, options in (({}, "--no-same-owner"), ({"TAR_OPTIONS": "--verbose"}, "--verbose")):
        out = tmp_path / f"out-{len(env)}.json"
        environ = {k: v for k, v in os.environ.items() if k != "TAR_OPTIONS"}
        environ.update(MINIWDL__SCHEDULER__CONTAINER_BACKEND="host_process", **env)
        proc = run_forked(WDL_CLI.main, ["run", str(wdl), f"bundle={bundle}", "--dir", str(tmp_path / f"runs-{len(env)}") + "/",
                                         "-o", str(out)], env=environ)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outputs = json.loads(out.read_text())["outputs"]
        assert outputs["untar.tar_options"] == options
        if not env:
            assert outputs["untar.owner"] == os.getuid()  # (not 4321, the archive's)
