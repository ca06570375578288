"""The driver's check of File/Directory outputs before upload (``outputs``): a tree with each
kind of entry, the ones it uploads and the ones it refuses, by name and place."""

import os
import socket
import stat

import pytest

from miniwdl_fargate.outputs import OutputRefused, directory_output, file_output


@pytest.fixture
def run(tmp_path, tmp_path_factory):
    """A runs root, a run directory in it with a Directory output ``d``, and a place elsewhere."""
    runs = tmp_path / "runs"
    run_dir = runs / "r1" / "20240101_w"
    out = run_dir / "call-make" / "work" / "d"
    (out / "sub").mkdir(parents=True)
    (out / "a.txt").write_text("a")
    (out / "sub" / "b.txt").write_text("b")
    (run_dir / "call-other" / "work").mkdir(parents=True)
    (run_dir / "call-other" / "work" / "shared.txt").write_text("shared")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "secret").write_text("secret")
    return {"roots": [str(runs)], "run_dir": str(run_dir), "out": out, "elsewhere": elsewhere}


def check(run):
    return directory_output("w.d", str(run["out"]), run["roots"], run["run_dir"])


def refused(run) -> str:
    with pytest.raises(OutputRefused) as caught:
        check(run)
    return str(caught.value)


def test_plain_files_and_a_link_inside_the_run_are_uploaded_as_files(run):
    os.symlink(os.path.join(run["run_dir"], "call-other", "work", "shared.txt"), run["out"] / "shared")
    os.symlink("sub", run["out"] / "also_sub")
    files = sorted(check(run), key=lambda f: f[1])
    assert [rel for _, rel in files] == ["a.txt", "also_sub/b.txt", "shared", "sub/b.txt"]
    assert dict((rel, real) for real, rel in files)["shared"].endswith("call-other/work/shared.txt")


def test_a_link_out_of_the_run_is_refused(run):
    os.symlink(run["elsewhere"] / "secret", run["out"] / "sub" / "leak")
    message = refused(run)
    assert "Directory output w.d: sub/leak is a symbolic link to" in message
    assert str(run["elsewhere"]) in message and "outside " + run["run_dir"] in message


def test_a_link_to_a_directory_out_of_the_run_is_refused(run):
    os.symlink(run["elsewhere"], run["out"] / "etc")
    assert "w.d: etc is a symbolic link to" in refused(run)


def test_a_fifo_is_refused_without_opening_it(run):
    os.mkfifo(run["out"] / "sub" / "pipe")
    assert refused(run) == "Directory output w.d: sub/pipe is a FIFO (named pipe), which cannot be uploaded"


def test_a_socket_is_refused(run, tmp_path, monkeypatch):
    monkeypatch.chdir(run["out"])  # (bound by a relative name: a socket's path has at most 107 bytes)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock")
        assert refused(run) == "Directory output w.d: sock is a socket, which cannot be uploaded"


def test_a_device_is_refused_through_a_link(run):
    os.symlink("/dev/null", run["out"] / "null")  # (a link out of the run: refused as such first)
    assert "null is a symbolic link to /dev/null" in refused(run)


def test_a_broken_link_is_refused(run):
    os.symlink("no-such-file", run["out"] / "broken")
    assert refused(run) == "output w.d: broken is a broken symbolic link (to no-such-file)"


def test_a_link_loop_is_refused(run):
    os.symlink("loop2", run["out"] / "loop1")
    os.symlink("loop1", run["out"] / "loop2")
    assert refused(run) == "output w.d: loop1 is a symbolic link loop"


def test_a_link_to_a_directory_it_is_in_is_refused(run):
    os.symlink("..", run["out"] / "sub" / "up")
    assert refused(run) == "Directory output w.d: sub/up is a symbolic link to a directory it is in (a cycle)"


def test_a_directory_from_elsewhere_keeps_its_links_inside_itself(run, tmp_path):
    cached = tmp_path / "runs" / "r0" / "20231231_w" / "call-make" / "work" / "d"
    cached.mkdir(parents=True)
    os.symlink(os.path.join(run["run_dir"], "call-other", "work", "shared.txt"), cached / "shared")
    with pytest.raises(OutputRefused, match="shared is a symbolic link to .* outside .*20231231_w/call-make/work/d"):
        directory_output("w.d", str(cached), run["roots"], run["run_dir"])


def test_file_outputs(run):
    inside = run["out"] / "a.txt"
    assert file_output("w.f", str(inside), run["roots"]) == os.path.realpath(inside)
    link = run["out"] / "leak"
    os.symlink(run["elsewhere"] / "secret", link)
    with pytest.raises(OutputRefused, match=r"File output w.f: .*leak leads to .*secret, outside the run's directories"):
        file_output("w.f", str(link), run["roots"])
    os.mkfifo(run["out"] / "pipe")
    with pytest.raises(OutputRefused, match=r"File output w.f: .*pipe is a FIFO \(named pipe\), not a file"):
        file_output("w.f", str(run["out"] / "pipe"), run["roots"])
    assert stat.S_ISFIFO(os.lstat(run["out"] / "pipe").st_mode)  # (checked, never opened)
