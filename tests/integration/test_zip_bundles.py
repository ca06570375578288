"""`miniwdl zip` bundles wherever a workflow is: an S3 drop's runs/<name>/workflow.zip, the API's
``workflow`` naming an s3:// .zip or ``workflow_zip`` uploading one. Each is checked before
anything starts, unpacked into the run's source/ (a folder, as any run's), and its default inputs
are honoured under the submitted ones (against moto)."""

import base64
import io
import json
import logging
import zipfile

import pytest
import WDL
import WDL.Zip

from miniwdl_fargate import aws, upload
from miniwdl_fargate.pipeline import start
from tests.integration import test_validation
from tests.function_env import LambdaContext
from tests.integration.moto_objects import write_objects
from tests.integration.test_validation import _api_event, _run_inputs
from tests.unit.test_zipbundle import damaged

pipeline = test_validation.pipeline  # (its fixtures: a runs bucket, a state machine, drops)
api_env = test_validation.api_env

MAIN = """version 1.1
import "lib/greet.wdl" as g
workflow hello {
  input {
    String who
    Int copies = 1
  }
  call g.greet { input: who = who }
  output { String msg = greet.msg }
}
"""
LIB = """version 1.1
task greet {
  input { String who }
  command <<< echo "hello ~{who}" >>>
  output { String msg = read_string(stdout()) }
}
"""


def miniwdl_zip(tmp_path, defaults=None) -> bytes:
    """A bundle built by miniwdl's own ``WDL.Zip.build`` (what ``miniwdl zip`` writes)."""
    (tmp_path / "wf" / "lib").mkdir(parents=True, exist_ok=True)
    (tmp_path / "wf" / "main.wdl").write_text(MAIN)
    (tmp_path / "wf" / "lib" / "greet.wdl").write_text(LIB)
    archive = tmp_path / "hello.zip"
    WDL.Zip.build(WDL.load(str(tmp_path / "wf" / "main.wdl")), str(archive), logging.getLogger("test"), inputs=defaults)
    return archive.read_bytes()


def zip_of(members: dict[str, bytes], links=()) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, body in members.items():
            info = zipfile.ZipInfo(name)
            if name in links:
                info.external_attr = (0o120777 << 16)
            archive.writestr(info, body)
    return out.getvalue()


def source_keys(record) -> list[str]:
    prefix = record.results.split("/", 3)[3] + "source/"
    listing = aws.client("s3").list_objects_v2(Bucket="runs", Prefix=prefix)
    return sorted(o["Key"][len(prefix):] for o in listing.get("Contents", []))


def drop_zip(pipeline, name, body, inputs, key="workflow.zip"):
    settings, _drop, _rejection, _executions = pipeline
    s3 = aws.client("s3")
    s3.put_object(Bucket="runs", Key=f"runs/{name}/{key}", Body=body)
    put = s3.put_object(Bucket="runs", Key=f"runs/{name}/inputs.json", Body=json.dumps(inputs).encode())
    return start.from_object(settings, "runs", f"runs/{name}/inputs.json", put["ETag"].strip('"'), put.get("VersionId"))


def test_an_s3_drop_of_a_workflow_zip_runs_its_main_wdl_with_its_defaults_under_the_uploaded_inputs(pipeline, tmp_path):
    settings, drop, rejection, executions = pipeline
    body = miniwdl_zip(tmp_path, {"hello.who": "bundle", "hello.copies": 3})
    started = drop_zip(pipeline, "zipped", body, {"who": "uploaded"})  # (without the namespace: the same input)
    assert started is not None and [e["name"] for e in executions()] == [started.record.run_id]
    assert started.record.workflow == started.record.results + "source/main.wdl"
    assert started.record.submitted["workflow"] == "s3://runs/runs/zipped/workflow.zip"
    assert source_keys(started.record) == ["MANIFEST.json", "default_input.json", "lib/greet.wdl", "main.wdl"]
    assert json.loads(_run_inputs(started.record)) == {"hello.copies": 3, "who": "uploaded"}


def test_an_s3_drop_of_a_bundle_by_the_name_miniwdl_zip_gives_it_runs_it(pipeline, tmp_path):
    """`miniwdl zip main.wdl` writes main.wdl.zip: dropped as it is, the folder's only bundle runs
    (as its only .wdl would); two are refused naming both."""
    settings, drop, rejection, executions = pipeline
    body = miniwdl_zip(tmp_path, {"hello.who": "bundle"})
    started = drop_zip(pipeline, "named", body, {}, key="main.wdl.zip")
    assert started is not None and started.record.submitted["workflow"] == "s3://runs/runs/named/main.wdl.zip"
    aws.client("s3").put_object(Bucket="runs", Key="runs/two/other.zip", Body=body)
    assert drop_zip(pipeline, "two", body, {}, key="main.wdl.zip") is None
    assert rejection("two") == [("s3://runs/runs/two/", "several bundles (main.wdl.zip, other.zip); name the one to run workflow.zip")]


def test_an_api_request_names_a_zip_on_s3_or_uploads_one(pipeline, tmp_path):
    settings, drop, rejection, executions = pipeline
    body = miniwdl_zip(tmp_path, {"hello.who": "bundle"})
    aws.client("s3").put_object(Bucket="runs", Key="workflows/hello.zip", Body=body)
    by_uri = start.from_request(settings, "api-zip", "s3://runs/workflows/hello.zip", {}, "token-uri")
    assert json.loads(_run_inputs(by_uri.record)) == {"hello.who": "bundle"}
    uploaded = start.from_request(settings, "api-zip", None, {"hello.who": "given"}, "token-body", workflow_zip=body)
    assert json.loads(_run_inputs(uploaded.record)) == {"hello.who": "given"}
    assert uploaded.record.submitted["workflow"] == "(uploaded bundle)"
    assert source_keys(uploaded.record) == ["MANIFEST.json", "default_input.json", "lib/greet.wdl", "main.wdl"]
    assert len(executions()) == 2


def test_the_http_api_takes_a_base64_bundle_and_refuses_one_that_is_not_base64(api_env, tmp_path):
    handler, executions = api_env
    body = miniwdl_zip(tmp_path)
    request = {"name": "http-zip", "workflow_zip": base64.b64encode(body).decode(), "inputs": {"hello.who": "you"}}
    answer = handler(_api_event(json.dumps(request)), LambdaContext())
    assert answer["statusCode"] == 202, answer["body"]
    answer = handler(_api_event(json.dumps(dict(request, workflow_zip="not base64!"))), LambdaContext())
    assert answer["statusCode"] == 400
    assert json.loads(answer["body"])["problems"] == [
        {"where": "workflow_zip", "problem": "not base64: give the bundle's bytes base64-encoded"}
    ]
    assert len(executions()) == 1


BAD_BUNDLES = {
    "not-a-zip": (b"version 1.1\nworkflow w {}\n", "not a ZIP archive (build the bundle with `miniwdl zip WORKFLOW.wdl`)"),
    "no-main": (zip_of({"a.wdl": b"", "b.wdl": b""}),
                "no main WDL: no MANIFEST.json naming it and several top-level WDL files (a.wdl, b.wdl); build the bundle with `miniwdl zip`"),
    "manifest-names-nothing": (zip_of({"MANIFEST.json": b'{"mainWorkflowURL": "gone.wdl"}', "a.wdl": b""}),
                               "no main WDL: MANIFEST.json refers to missing or invalid files in the bundle"),
    "traversal": (zip_of({"main.wdl": b"", "../escape.wdl": b""}), "member '../escape.wdl' is a path that climbs out of the bundle (..); nothing was started"),
    "absolute": (zip_of({"main.wdl": b"", "/etc/x": b""}), "member '/etc/x' is an absolute path; nothing was started"),
    "symlink": (zip_of({"main.wdl": b"", "link": b"/etc/passwd"}, links={"link"}),
                "member 'link' is a symbolic link (store the file itself); nothing was started"),
    # found only while its members are copied: what was copied is removed
    "damaged": (damaged(), "a damaged ZIP archive (Bad CRC-32 for file 'big')"),
}


@pytest.mark.parametrize("case", BAD_BUNDLES)
def test_a_bad_bundle_is_refused_saying_why_and_nothing_starts_or_stays(pipeline, case):
    settings, drop, rejection, executions = pipeline
    body, problem = BAD_BUNDLES[case]
    assert drop_zip(pipeline, case, body, {}) is None
    assert rejection(case) == [("s3://runs/runs/" + case + "/workflow.zip", problem)]
    with pytest.raises(start.Refused) as info:
        start.from_request(settings, "api-" + case, None, {}, "t-" + case, workflow_zip=body)
    assert info.value.problems == [{"where": "workflow_zip", "problem": problem}]
    assert executions() == []
    leftovers = aws.client("s3").list_objects_v2(Bucket="runs", Prefix="runs/api-" + case + "/")
    assert leftovers.get("KeyCount") == 0


def test_a_zip_bomb_is_refused_from_its_directory_before_it_is_inflated(pipeline):
    settings, drop, rejection, executions = pipeline
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("main.wdl", b"version 1.1\nworkflow w {}\n")
        for index in range(3):  # 3 x 100 MiB of zeros: a few hundred KiB compressed
            with archive.open(f"zeros{index}", "w", force_zip64=True) as member:
                for _ in range(100):
                    member.write(bytes(1 << 20))
    assert len(out.getvalue()) < 1 << 20
    assert drop_zip(pipeline, "bomb", out.getvalue(), {}) is None
    [(where, problem)] = rejection("bomb")
    assert problem == (
        "holds 4 files, 314572826 bytes uncompressed; a bundle may hold at most 200 files and 256 MiB "
        "(its workflow's WDL and the files it reads by relative path)"
    )
    assert executions() == []


def test_a_drop_with_both_a_workflow_wdl_and_a_workflow_zip_is_refused(pipeline, tmp_path):
    settings, drop, rejection, executions = pipeline
    aws.client("s3").put_object(Bucket="runs", Key="runs/both/workflow.wdl", Body=MAIN.encode())
    assert drop_zip(pipeline, "both", miniwdl_zip(tmp_path), {}) is None
    assert rejection("both") == [("s3://runs/runs/both/", "both workflow.wdl and workflow.zip: keep the one to run")]


def test_a_bundles_wdl_errors_name_the_bundle_and_its_member(pipeline):
    settings, drop, rejection, executions = pipeline
    body = zip_of({"main.wdl": MAIN.replace("call g.greet", "call g.nothing").encode(), "lib/greet.wdl": LIB.encode()})
    assert drop_zip(pipeline, "wdl-error", body, {"hello.who": "x"}) is None
    [(where, problem)] = rejection("wdl-error")
    assert where.startswith("s3://runs/runs/wdl-error/workflow.zip/main.wdl:") and "nothing" in problem


def test_the_cli_uploads_a_bundle_as_workflow_zip_and_a_later_folder_submit_under_the_name_replaces_it(pipeline, tmp_path):
    settings, drop, rejection, executions = pipeline
    s3 = aws.client("s3")
    keys = lambda: sorted(o["Key"] for o in s3.list_objects_v2(Bucket="runs", Prefix="runs/cli-zip/").get("Contents", []))  # noqa: E731
    bundle = tmp_path / "hello.zip"
    bundle.write_bytes(miniwdl_zip(tmp_path, {"hello.who": "bundle"}))
    submission = upload.prepare(bundle, {}, "cli-zip")
    name, run_id = submission.upload("runs", answer_timeout=0)  # (no pipeline listens: the test starts the run)
    assert keys() == ["runs/cli-zip/inputs.json", "runs/cli-zip/workflow.zip"]
    head = s3.head_object(Bucket="runs", Key="runs/cli-zip/inputs.json")
    started = start.from_object(settings, "runs", "runs/cli-zip/inputs.json", head["ETag"].strip('"'), head.get("VersionId"))
    assert started.record.run_id == run_id and json.loads(_run_inputs(started.record)) == {"hello.who": "bundle"}
    upload.prepare(tmp_path / "wf" / "main.wdl", {"hello.who": "folder"}, "cli-zip").upload("runs", answer_timeout=0)
    assert [k for k in keys() if "/results/" not in k] == [
        "runs/cli-zip/inputs.json", "runs/cli-zip/lib/greet.wdl", "runs/cli-zip/workflow.wdl",
    ]


def test_copy_bundle_zip_takes_bytes_or_a_uri_and_copies_a_large_member_whole(moto_aws):
    """The one function every entrance (and the WES API) unpacks a bundle with."""
    from miniwdl_fargate.pipeline import snapshot

    s3 = aws.client("s3")
    s3.create_bucket(Bucket="runs")
    data = bytes(range(256)) * 4096 + bytes(8 << 20)  # 9 MiB (beyond a multipart upload's threshold), a few KiB compressed
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("main.wdl", "version 1.1\nworkflow w {}\n")
        archive.writestr("data/big.bin", data)
    s3.put_object(Bucket="runs", Key="w/x.zip", Body=out.getvalue())
    by_uri = snapshot.copy_bundle_zip("s3://runs/w/x.zip", "runs", "a/source/")
    by_bytes = snapshot.copy_bundle_zip(out.getvalue(), "runs", "b/source/")
    assert (by_uri.workflow, by_bytes.workflow) == ("s3://runs/a/source/main.wdl", "s3://runs/b/source/main.wdl")
    for prefix in ("a", "b"):
        assert s3.get_object(Bucket="runs", Key=f"{prefix}/source/data/big.bin")["Body"].read() == data
    with pytest.raises(snapshot.SnapshotError, match="^s3://runs/w/none.zip does not exist$"):
        snapshot.copy_bundle_zip("s3://runs/w/none.zip", "runs", "c/source/")


def test_a_bundle_file_whose_runs_copy_would_have_a_key_s3_refuses_is_said_before_any_copy(moto_aws, tmp_path):
    """The run's copy of a file is its path under results/<run id>/source/: longer than the
    original's key by that much. A file whose copy would pass S3's 1,024 bytes refuses the
    snapshot naming it, before anything is copied (S3 refused it part way, KeyTooLongError, which
    the submit step answered with a 500 and a half-made copy); the command line says so before
    uploading anything."""
    from miniwdl_fargate.local.moto import fixes
    from miniwdl_fargate.pipeline import snapshot

    fixes.s3_key_length()  # (as S3: moto alone takes any key)
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="runs")
    # (a 1,005-byte path: its key fits, its copy does not; in five folders, not five hundred,
    # as the snapshot lists a folder a request: the test is of the key's length)
    deep = ("d" * 199 + "/") * 5 + "x.txt"
    for key in ("w/workflow.wdl", f"w/{deep}", "w/a.txt"):
        s3.put_object(Bucket="runs", Key=key, Body=b"version 1.1\nworkflow w {}\n")
    dest = "runs/n/results/n-0123abcd/source/"
    with pytest.raises(snapshot.SnapshotError) as refused:
        snapshot.copy_bundle("s3://runs/w/workflow.wdl", "runs", dest)
    assert str(refused.value) == (
        f"s3://runs/w/{deep}: the run's copy of it (under results/<run id>/source/) would be an S3 object whose key is "
        f"{len(dest + deep)} bytes, where S3 allows 1024: shorten the file's path or the run's name"
    )
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("main.wdl", "version 1.1\nworkflow w {}\n")
        bundle.writestr(deep, "x")
    with pytest.raises(snapshot.SnapshotError, match=rf"^workflow: {deep}: the run's copy of it .* key is {len(dest + deep)} bytes"):
        snapshot.copy_bundle_zip(archive.getvalue(), "runs", dest)
    assert s3.list_objects_v2(Bucket="runs", Prefix="runs/")["KeyCount"] == 0  # nothing copied
    # the command line: before anything is uploaded
    (tmp_path / "w.wdl").write_text("version 1.1\nworkflow w {}\n")
    (tmp_path / deep).parent.mkdir(parents=True)
    (tmp_path / deep).write_text("x")
    with pytest.raises(upload.RunInputError, match=rf"^{tmp_path}/{deep}: the run's copy of it \(runs/n/results/<run id>/source/"):
        upload.prepare(tmp_path / "w.wdl", {}, name="n")


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on 127.0.0.1 (where a WDL imports from by URL)."""
    import functools
    from http.server import SimpleHTTPRequestHandler

    from tests.http_servers import QuietHandler, serving

    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        log_message = QuietHandler.log_message

    with serving(functools.partial(Quiet, directory=str(folder))) as url:
        yield folder, url


def test_a_wdl_importing_by_url_is_submitted_as_a_bundle_holding_the_import(served, tmp_path):
    """``miniwdl run`` downloads an http(s):// import; the command line fetches it as it checks the
    WDL and submits a bundle holding it (miniwdl's own ``zip``), since the run's folder could not
    (it said "No such file or directory: 'https://...'"). A URL that answers nothing or 404 is said."""
    folder, url = served
    (folder / "lib.wdl").write_text(LIB)
    main = tmp_path / "wf" / "main.wdl"
    main.parent.mkdir()
    main.write_text(MAIN.replace('"lib/greet.wdl"', f'"{url}/lib.wdl"'))
    prepared = upload.prepare(main, {"hello.who": "Ann"})
    assert prepared.bundle and prepared.wdl_path.suffix == ".zip"
    with zipfile.ZipFile(prepared.wdl_path) as bundle:
        held = [name for name in bundle.namelist() if name.endswith("lib.wdl")]
        assert held and bundle.read(held[0]).decode().strip() == LIB.strip()  # (as fetched)
    assert prepared.doc.workflow.name == "hello" and prepared.inputs == {"hello.who": "Ann"}
    main.write_text(MAIN.replace('"lib/greet.wdl"', f'"{url}/nope.wdl"'))
    with pytest.raises(upload.RunInputError, match=rf"main.wdl:2:1: Failed to import {url}/nope.wdl: HTTP Error 404"):
        upload.prepare(main, {"hello.who": "Ann"})


def test_the_bundle_is_listed_whole_whatever_else_its_folder_holds(moto_aws, monkeypatch):
    """The listing of a WDL's folder stops once it holds more bundle files than allowed (then
    refused), and never before: the run's own files (inputs.json, options.json, a refusal) and
    folder markers used to count, so a folder at the limit left a subfolder unlisted and its
    imports out of the run's copy."""
    from miniwdl_fargate.pipeline import snapshot

    monkeypatch.setattr(snapshot, "BUNDLE_MAX_FILES", 4)
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="runs")
    for key in ("workflow.wdl", "a.wdl", "b.wdl", "inputs.json", "options.json", "error.json", "sub/", "sub/lib.wdl"):
        s3.put_object(Bucket="runs", Key=f"runs/n/{key}", Body=b"x")
    listed = sorted(o["Key"] for o in snapshot.bundle_objects("runs", "runs/n/workflow.wdl"))
    assert listed == ["runs/n/a.wdl", "runs/n/b.wdl", "runs/n/sub/lib.wdl", "runs/n/workflow.wdl"]
    s3.put_object(Bucket="runs", Key="runs/n/sub/more.wdl", Body=b"x")
    with pytest.raises(snapshot.SnapshotError, match="holds more than 4 files"):
        snapshot.bundle_objects("runs", "runs/n/workflow.wdl")


def test_an_s3_drops_only_wdl_is_found_past_the_first_thousand_keys_of_its_folder(moto_aws):
    """ListObjectsV2 answers 1,000 keys a page: the WDL of a folder with more was not seen."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="runs")
    write_objects("runs", ((f"runs/n/data-{i:04}.txt", b"") for i in range(1000)))
    s3.put_object(Bucket="runs", Key="runs/n/zz.wdl", Body=b"version 1.1\nworkflow w {}\n")
    assert start.find_workflow("runs", "n")[0] == "runs/n/zz.wdl"
    s3.put_object(Bucket="runs", Key="runs/n/zzz.wdl", Body=b"version 1.1\nworkflow w {}\n")
    with pytest.raises(start.Refused, match="several WDL files"):
        start.find_workflow("runs", "n")


def test_the_runs_copy_of_a_tagged_file_carries_no_tags(moto_aws):
    """CopyObject copies the source's tags by default, which needs s3:GetObjectTagging and
    s3:PutObjectTagging (the submit and API roles have neither: a file a malware scan tagged made
    the submission fail); the run's copy is made without them."""
    from miniwdl_fargate.pipeline import snapshot

    s3 = aws.client("s3")
    s3.create_bucket(Bucket="runs")
    s3.put_object(Bucket="runs", Key="w/workflow.wdl", Body=b"version 1.1\nworkflow w {}\n", Tagging="scan=clean")
    copy = snapshot.copy_bundle("s3://runs/w/workflow.wdl", "runs", "c/source/")
    assert copy == "s3://runs/c/source/workflow.wdl"
    assert s3.get_object_tagging(Bucket="runs", Key="c/source/workflow.wdl")["TagSet"] == []
    assert s3.get_object_tagging(Bucket="runs", Key="w/workflow.wdl")["TagSet"] == [{"Key": "scan", "Value": "clean"}]
