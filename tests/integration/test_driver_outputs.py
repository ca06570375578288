"""The driver uploads what the tasks made and nothing else: through ``driver.drive`` (the
host_process backend, moto S3), a task whose Directory output holds a FIFO, or a link to a
directory out of the run, ends the run FAILED with error.json saying which output, where and
what, uploads no output, and does not hang."""

import json

import pytest

from miniwdl_fargate import aws, driver

WDL = """
version development
task make {
  input { String kind }
  command <<<
    mkdir -p d/sub
    echo fine > d/fine.txt
    echo plain > plain.txt
    case "~{kind}" in
      fifo) mkfifo d/sub/pipe ;;
      escape) ln -s /etc d/sub/etc ;;
      inside) ln -s ../fine.txt d/sub/linked.txt; ln -s sub d/also ;;
      latin1) printf x > "d/sub/$(printf 'caf\\351.txt')" ;;
      deep) deep=d/sub; for i in 1 2 3 4 5; do deep="$deep/$(printf '%0200d' $i)"; done; mkdir -p "$deep"; echo x > "$deep/leaf.txt" ;;
    esac
  >>>
  output {
    File plain = "plain.txt"
    Directory d = "d"
  }
}
"""


@pytest.fixture
def drive(moto_aws, tmp_path, monkeypatch):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="runs")
    s3.put_object(Bucket="runs", Key="runs/t/make.wdl", Body=WDL.encode())
    monkeypatch.setenv("MINIWDL__SCHEDULER__CONTAINER_BACKEND", "host_process")
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__RUN_ID", "t-1")
    monkeypatch.chdir(tmp_path)

    def run(kind: str) -> int:
        s3.put_object(Bucket="runs", Key="runs/t/inputs.json", Body=json.dumps({"make.kind": kind}).encode())
        return driver.drive(
            driver.DriverRun(
                run_id="t-1",
                workflow="s3://runs/runs/t/make.wdl",
                inputs="s3://runs/runs/t/inputs.json",
                results="s3://runs/runs/t/results/t-1/",
                workdir=str(tmp_path / "work" / kind),
            )
        )

    return run


def results() -> dict[str, bytes]:
    s3 = aws.client("s3")
    listed = s3.list_objects_v2(Bucket="runs", Prefix="runs/t/results/t-1/").get("Contents", [])
    return {o["Key"].rsplit("t-1/", 1)[1]: s3.get_object(Bucket="runs", Key=o["Key"])["Body"].read() for o in listed}


def test_a_fifo_in_a_directory_output_fails_the_run_and_uploads_nothing(drive):
    assert drive("fifo") == 1
    got = results()
    error = json.loads(got["error.json"])
    assert error["status"] == "FAILED" and error["error"] == "OutputRefused"
    assert error["message"] == "Directory output make.d: sub/pipe is a FIFO (named pipe), which cannot be uploaded"
    assert not [key for key in got if key.startswith("out/")] and "outputs.json" not in got


def test_a_name_that_is_not_utf8_in_a_directory_output_fails_the_run_saying_so(drive):
    """An S3 key is UTF-8: the upload failed with the encoder's own words ("surrogates not
    allowed") after the outputs were checked, not as a refusal naming the file."""
    assert drive("latin1") == 1
    got = results()
    error = json.loads(got["error.json"])
    assert error["error"] == "OutputRefused"
    assert error["message"] == (
        "Directory output make.d: 'sub/caf\\udce9.txt': its name is not UTF-8 (byte 0xe9), which an S3 key must be: rename it"
    )
    assert not [key for key in got if key.startswith("out/")]


def test_a_file_whose_s3_key_would_be_over_1024_bytes_fails_the_run_before_any_upload(drive):
    """S3 refuses a key over 1,024 bytes (KeyTooLongError, mid-upload on AWS; moto takes it): a
    Directory output holding a deep tree is refused first, naming the file."""
    assert drive("deep") == 1
    got = results()
    error = json.loads(got["error.json"])
    assert error["error"] == "OutputRefused"
    inside = "sub/" + "/".join(f"{i:0200d}" for i in range(1, 6)) + "/leaf.txt"
    key = f"runs/t/results/t-1/out/d/d/{inside}"  # (out/<output>/<its folder>/...: miniwdl's layout)
    assert error["message"].startswith(
        f"Directory output make.d: {inside} would be an S3 object whose key is {len(key)} bytes, where S3 allows 1024"
    ), error["message"]
    assert not [key for key in got if key.startswith("out/")]


def test_a_link_out_of_the_run_in_a_directory_output_fails_the_run(drive):
    assert drive("escape") == 1
    got = results()
    error = json.loads(got["error.json"])
    assert error["error"] == "OutputRefused"
    assert error["message"].startswith("Directory output make.d: sub/etc is a symbolic link to /etc, outside ")
    assert not [key for key in got if key.startswith("out/")]


def test_links_inside_are_uploaded_as_what_they_point_to(drive):
    # (miniwdl itself refuses a link to a file outside the Directory: "contains unusable symlink")
    assert drive("inside") == 0
    got = results()
    outputs = json.loads(got["outputs.json"])["outputs"]
    assert outputs["make.d"] == "s3://runs/runs/t/results/t-1/out/d/d"
    assert got["out/d/d/fine.txt"] == got["out/d/d/sub/linked.txt"] == got["out/d/d/also/linked.txt"] == b"fine\n"


MAP_KEYS_WDL = """
version 1.1
task mk {
  input { String tag }
  command <<< echo "~{tag}" > k.txt >>>
  output { Map[File,String] m = {"k.txt": tag} }
}
task arr {
  command <<< mkdir a; echo ARRAY > a/k.txt >>>
  output { Array[File] files = ["a/k.txt"] }
}
workflow w {
  call mk as m1 { input: tag = "first" }
  call mk as m2 { input: tag = "second" }
  call arr
  output {
    Map[File,String] o1 = m1.m
    Map[File,String] o2 = m2.m
    Map[File,String] both = {keys(m1.m)[0]: "a", keys(m2.m)[0]: "b"}
    Array[File] other = arr.files
  }
}
"""


def drive_workflow(wdl: str, tmp_path, monkeypatch) -> int:
    """``wdl`` (no inputs) run by the driver as run t-1 (host_process tasks, moto S3): its exit status."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="runs")
    s3.put_object(Bucket="runs", Key="runs/w/w.wdl", Body=wdl.encode())
    s3.put_object(Bucket="runs", Key="runs/w/inputs.json", Body=b"{}")
    monkeypatch.setenv("MINIWDL__SCHEDULER__CONTAINER_BACKEND", "host_process")
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__RUN_ID", "t-1")
    monkeypatch.chdir(tmp_path)
    return driver.drive(driver.DriverRun(
        run_id="t-1", workflow="s3://runs/runs/w/w.wdl", inputs="s3://runs/runs/w/inputs.json",
        results="s3://runs/runs/t/results/t-1/", workdir=str(tmp_path / "work"),
    ))


def test_files_that_are_map_keys_are_each_uploaded_under_a_key_of_their_own(moto_aws, tmp_path, monkeypatch):
    """miniwdl links no Map key into out/: such files went to out/other/<name>, so two of one name
    were one object (the run succeeded with the second file's content lost, or failed on two keys
    that became one)."""
    assert drive_workflow(MAP_KEYS_WDL, tmp_path, monkeypatch) == 0
    got = results()
    outputs = json.loads(got["outputs.json"])["outputs"]
    (first, tag1), = outputs["w.o1"].items()
    (second, tag2), = outputs["w.o2"].items()
    assert (tag1, tag2) == ("first", "second")
    prefix = "s3://runs/runs/t/results/t-1/"
    assert first != second and first.endswith("/k.txt") and second.endswith("/k.txt")
    assert got[first[len(prefix):]] == b"first\n" and got[second[len(prefix):]] == b"second\n"
    assert outputs["w.both"] == {first: "a", second: "b"}  # (the same file, the same object)
    # under a folder no output has (an output named `other` had out/other/0/k.txt too: one object)
    assert first.startswith(prefix + "out/map-keys/") and second.startswith(prefix + "out/map-keys/")
    assert got[outputs["w.other"][0][len(prefix):]] == b"ARRAY\n"


def test_an_empty_directory_output_is_there_to_download(moto_aws, tmp_path, monkeypatch):
    """S3 has no folders: an empty Directory output left nothing under its URI, and `outputs
    --download` said it was not in S3 and downloaded none of the run's other outputs."""
    from miniwdl_fargate import client

    wdl = 'version development\ntask t { command <<< mkdir e; echo hi > f.txt >>>\n  output { Directory e = "e"  File f = "f.txt" } }\n'
    assert drive_workflow(wdl, tmp_path, monkeypatch) == 0
    got = results()
    outputs = json.loads(got["outputs.json"])["outputs"]
    assert outputs["t.e"] == "s3://runs/runs/t/results/t-1/out/e/e" and got["out/e/e/"] == b""
    downloaded = client.download_outputs(outputs, str(tmp_path / "dl"), "s3://runs/runs/t/results/t-1/")
    assert downloaded == [str(tmp_path / "dl" / "out" / "f" / "f.txt")]
    assert (tmp_path / "dl" / "out" / "e" / "e").is_dir() and not any((tmp_path / "dl" / "out" / "e" / "e").iterdir())


def test_a_file_output_that_is_a_uri_is_given_as_it_is(moto_aws, tmp_path, monkeypatch):
    """A workflow output naming an object the run never downloaded (`File ref = "s3://..."`):
    plain `miniwdl run` gives the URI as it is; the driver failed the run saying it was a broken
    symbolic link."""
    wdl = ('version 1.1\nworkflow w {\n  call t\n'
           '  output { File ref = "s3://data/ref.txt"  Array[File] both = [t.f, "s3://data/ref.txt"] }\n}\n'
           'task t { command <<< echo hi > f.txt >>>\n  output { File f = "f.txt" } }\n')
    aws.client("s3").create_bucket(Bucket="data")
    aws.client("s3").put_object(Bucket="data", Key="ref.txt", Body=b"reference")
    assert drive_workflow(wdl, tmp_path, monkeypatch) == 0
    outputs = json.loads(results()["outputs.json"])["outputs"]
    assert outputs["w.ref"] == "s3://data/ref.txt"
    assert outputs["w.both"][1] == "s3://data/ref.txt" and outputs["w.both"][0].startswith("s3://runs/runs/t/results/t-1/out/")


def test_an_empty_folder_inside_a_directory_output_is_there_to_download(moto_aws, tmp_path, monkeypatch):
    """S3 has no folders: an empty folder inside a Directory output (a `logs/` the task made and
    left empty) was dropped on its way to S3 and back, where miniwdl gives the Directory as the
    task made it. Each is a "<path>/" marker now, made a folder again by `outputs --download`."""
    from miniwdl_fargate import client

    wdl = ('version development\ntask t { command <<< mkdir -p d/logs d/a/b/empty; echo x > d/a/x.txt >>>\n'
           '  output { Directory d = "d" } }\n')
    assert drive_workflow(wdl, tmp_path, monkeypatch) == 0
    got = results()
    outputs = json.loads(got["outputs.json"])["outputs"]
    assert got["out/d/d/logs/"] == b"" and got["out/d/d/a/b/empty/"] == b"" and got["out/d/d/a/x.txt"] == b"x\n"
    downloaded = client.download_outputs(outputs, str(tmp_path / "dl"), "s3://runs/runs/t/results/t-1/")
    root = tmp_path / "dl" / "out" / "d" / "d"
    assert downloaded == [str(root / "a" / "x.txt")]
    assert (root / "logs").is_dir() and (root / "a" / "b" / "empty").is_dir()
