"""The user's commands against moto S3, in-process: what they answer when the bucket holds
something they cannot use, or the user's folder something they must not overwrite."""

import json
import os

import pytest

from miniwdl_fargate import aws, cli, client, runs, status

RESULTS = "s3://runs/runs/dl/results/dl-0123abcd/"
OUTPUTS = {"w.report": RESULTS + "out/report/report.txt", "w.parts": [RESULTS + "out/parts/0/a.txt"]}


@pytest.fixture
def bucket(moto_aws, monkeypatch):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="runs")
    for uri in (OUTPUTS["w.report"], *OUTPUTS["w.parts"]):
        s3.put_object(Bucket="runs", Key=uri.split("/", 3)[3], Body=b"new\n")
    monkeypatch.setattr(client, "connect", lambda *a, **k: client.Deployment("s", "us-east-1", {"BucketName": "runs"}))
    return s3


def test_download_refuses_to_overwrite_a_file_before_downloading_anything(bucket, tmp_path):
    (tmp_path / "out" / "report").mkdir(parents=True)
    (tmp_path / "out" / "report" / "report.txt").write_text("mine\n")
    with pytest.raises(client.ClientError) as refused:
        client.download_outputs(OUTPUTS, str(tmp_path), RESULTS)
    assert str(refused.value) == (
        f"--download {tmp_path}: {tmp_path}/out/report/report.txt already exists; use --overwrite to replace"
    )
    assert not (tmp_path / "out" / "parts").exists()  # nothing was downloaded
    assert (tmp_path / "out" / "report" / "report.txt").read_text() == "mine\n"
    got = client.download_outputs(OUTPUTS, str(tmp_path), RESULTS, overwrite=True)
    assert sorted(got) == [f"{tmp_path}/out/parts/0/a.txt", f"{tmp_path}/out/report/report.txt"]
    assert (tmp_path / "out" / "report" / "report.txt").read_text() == "new\n"


@pytest.mark.parametrize("overwrite", [False, True])
def test_download_refuses_a_file_where_a_folder_of_the_outputs_goes_before_downloading_anything(bucket, tmp_path, overwrite):
    """An earlier run's File output `out/parts` where this run's Array[File] makes a folder: the
    report was downloaded, then the download failed ("Not a directory") half done."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "parts").write_text("an earlier run's\n")
    with pytest.raises(client.ClientError) as refused:
        client.download_outputs(OUTPUTS, str(tmp_path), RESULTS, overwrite=overwrite)
    assert str(refused.value) == (f"--download {tmp_path}: {tmp_path}/out/parts is a file where a folder of the outputs goes; "
                                  "move it away, or download into another folder")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["parts"]  # nothing was downloaded
    assert (tmp_path / "out" / "parts").read_text() == "an earlier run's\n"


def test_download_takes_a_directory_output_named_without_its_ending_slash(bucket, tmp_path):
    """outputs.json names a Directory output by its prefix, without an ending "/" (miniwdl's
    Directory values have none): `outputs --download` took it for a missing file and stopped."""
    for rel in ("out/d/d/x.txt", "out/d/d/sub/y.txt"):
        bucket.put_object(Bucket="runs", Key=(RESULTS + rel).split("/", 3)[3], Body=rel.encode())
    outputs = {**OUTPUTS, "w.d": RESULTS + "out/d/d"}
    got = client.download_outputs(outputs, str(tmp_path / "dl"), RESULTS)
    assert sorted(got) == sorted(
        f"{tmp_path}/dl/{rel}" for rel in ("out/d/d/x.txt", "out/d/d/sub/y.txt", "out/report/report.txt", "out/parts/0/a.txt")
    )
    assert (tmp_path / "dl" / "out" / "d" / "d" / "sub" / "y.txt").read_text() == "out/d/d/sub/y.txt"
    with pytest.raises(client.ClientError, match=r"^--download: s3://runs/.*/out/gone/g is not in S3 \(removed since"):
        client.download_outputs({"w.g": RESULTS + "out/gone/g"}, str(tmp_path / "dl2"), RESULTS)


def test_download_fetches_many_file_outputs_at_once_and_each_whole(bucket, tmp_path, monkeypatch):
    """An Array[File] of thousands (a scatter's outputs) went one object after another: File
    outputs are fetched ``transfer_concurrency`` at a time, each to its own path."""
    import threading

    from miniwdl_fargate import s3io

    parts = [RESULTS + f"out/parts/{i}/part.txt" for i in range(40)]
    for i, uri in enumerate(parts):
        bucket.put_object(Bucket="runs", Key=uri.split("/", 3)[3], Body=f"part {i}\n".encode())
    monkeypatch.setattr(s3io, "transfer_concurrency", lambda: 4)
    threads, real = set(), s3io.download_to
    monkeypatch.setattr(s3io, "download_to", lambda *a: threads.add(threading.get_ident()) or real(*a))
    got = client.download_outputs({"w.parts": parts}, str(tmp_path / "dl"), RESULTS)
    assert sorted(got) == sorted(f"{tmp_path}/dl/out/parts/{i}/part.txt" for i in range(40))
    assert all((tmp_path / "dl" / "out" / "parts" / str(i) / "part.txt").read_text() == f"part {i}\n" for i in range(40))
    assert threading.get_ident() not in threads and 1 <= len(threads) <= 4  # (a pool of 4, not this thread)


def test_a_missing_output_says_how_many_files_are_on_disk_already(bucket, tmp_path):
    """File outputs are fetched all at once before any is found missing: the error counts every
    file downloaded (it counted only those listed before the missing one)."""
    gone = RESULTS + "out/gone/g.txt"
    outputs = {"w.first": gone, **OUTPUTS}
    with pytest.raises(client.ClientError) as missing:
        client.download_outputs(outputs, str(tmp_path / "dl"), RESULTS)
    assert str(missing.value) == f"--download: {gone} is not in S3 (removed since the run ended?) (2 file(s) downloaded, under {tmp_path}/dl)"
    assert (tmp_path / "dl" / "out" / "report" / "report.txt").read_text() == "new\n"


def test_download_takes_the_files_that_are_map_keys(bucket, tmp_path):
    key = RESULTS + "out/map-keys/0/k.txt"
    bucket.put_object(Bucket="runs", Key=key.split("/", 3)[3], Body=b"keyed\n")
    got = client.download_outputs({"w.m": {key: 1}}, str(tmp_path / "dl"), RESULTS)
    assert got == [f"{tmp_path}/dl/out/map-keys/0/k.txt"]


def test_download_refuses_an_output_that_would_land_outside_the_folder(bucket, tmp_path):
    outputs = {"w.x": RESULTS + "../../escape.txt"}
    with pytest.raises(client.ClientError, match=r"^output s3://runs/.*/\.\./\.\./escape.txt would land outside "):
        client.download_outputs(outputs, str(tmp_path / "dl"), RESULTS)


def test_download_takes_only_what_the_run_wrote(bucket, tmp_path):
    """The client has no WDL types: a String output naming an object (or a File output the
    workflow gave as a URI) was downloaded too, and one in a bucket that is not there crashed
    the command. Only what is under the run's results is downloaded; the rest is said."""
    outputs = {**OUTPUTS, "w.note": "s3://no-such-bucket/x.txt", "w.m": {"s3://elsewhere/k": "s3://runs/other/y"}}
    got = client.download_outputs(outputs, str(tmp_path / "dl"), RESULTS)
    assert sorted(got) == [f"{tmp_path}/dl/out/parts/0/a.txt", f"{tmp_path}/dl/out/report/report.txt"]
    assert client.outside_results(outputs, RESULTS) == ["s3://no-such-bucket/x.txt", "s3://elsewhere/k", "s3://runs/other/y"]


def test_list_shows_the_good_runs_and_warns_of_a_damaged_status_json(bucket, capsys):
    record = runs.RunRecord(
        run_id="ok-0123abcd", name="ok", bucket="runs", workflow="s3://runs/runs/ok/workflow.wdl",
        inputs="s3://runs/runs/ok/inputs.json", results="s3://runs/runs/ok/results/ok-0123abcd/",
        submitted_at="2026-11-25T12:00:00+00:00",
    )
    status.update("runs", record.run_id, lambda current: current, initial=status.new(record))
    bucket.put_object(Bucket="runs", Key=status.status_key("bad-0123abcd"), Body=json.dumps([1, 2]).encode())
    assert cli.main(["list"]) == 0
    out, err = capsys.readouterr()
    assert "ok-0123abcd  SUBMITTED" in out and "bad-0123abcd" not in out
    assert err == (
        "warning: run bad-0123abcd left out: s3://runs/runs/bad/results/bad-0123abcd/status.json is not a run status "
        "(document: Input should be a valid dictionary or instance of RunStatus)\n"
    )
    assert cli.main(["status", "bad-0123abcd"]) == 2
    assert capsys.readouterr().err == (
        "error: s3://runs/runs/bad/results/bad-0123abcd/status.json is not a run status "
        "(document: Input should be a valid dictionary or instance of RunStatus)\n"
    )


def test_download_into_a_folder_that_cannot_be_made_says_so(bucket, tmp_path):
    """A folder under /proc (or on a read-only mount) passes root's writable-parent check and then
    cannot be made: that was "FileNotFoundError (unexpected)". (To a user, /proc is not writable:
    the check says so first.)"""
    said = (
        r"/proc/miniwdl-fargate-test.*: No such file or directory$" if os.geteuid() == 0
        else r"cannot create it \(/proc is not a writable folder\)$"
    )
    with pytest.raises(client.ClientError, match=r"^--download /proc/miniwdl-fargate-test: " + said):
        client.download_outputs(OUTPUTS, "/proc/miniwdl-fargate-test", RESULTS)


def test_a_command_whose_reader_stops_reading_ends_quietly(bucket, tmp_path):
    """`miniwdl-fargate list | head -1`: the pipe closes under the command, which ended in
    "error: BrokenPipeError" on stderr."""
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # (a reader that is gone)
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from miniwdl_fargate import cli; "
         "cli.dispatch = lambda *a: print('x' * 100000) or 0; sys.exit(cli.main(['list']))"],
        stdout=write, stderr=subprocess.PIPE, text=True, timeout=60,
    )
    os.close(write)
    assert proc.returncode == 141 and proc.stderr == ""


def test_list_says_when_its_limit_left_runs_out(bucket, capsys):
    """Runs are listed by run name: with more runs than --limit, the newest runs (whose generated
    names sort last) were left out without a word."""
    for n, name in enumerate(("alpha", "beta", "gamma")):
        record = runs.RunRecord(
            run_id=f"{name}-0123abcd", name=name, bucket="runs", workflow=f"s3://runs/runs/{name}/workflow.wdl",
            inputs=f"s3://runs/runs/{name}/inputs.json", results=f"s3://runs/runs/{name}/results/{name}-0123abcd/",
            submitted_at=f"2026-11-25T12:0{n}:00+00:00",
        )
        status.update("runs", record.run_id, lambda current: current, initial=status.new(record))
    assert cli.main(["list", "--limit", "2"]) == 0
    out, err = capsys.readouterr()
    assert "alpha-0123abcd" in out and "beta-0123abcd" in out and "gamma" not in out
    assert err == (
        "warning: more runs than --limit 2: the list goes by run name, each name's newest first; "
        "give a larger --limit, or --name NAME for one name's runs\n"
    )
    assert cli.main(["list"]) == 0
    assert capsys.readouterr().err == ""
