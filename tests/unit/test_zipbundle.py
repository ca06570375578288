"""`miniwdl zip` bundles: what is refused before anything starts, and how default inputs merge."""

import io
import json
import logging
import zipfile

import pytest
import WDL
import WDL.Zip

from miniwdl_fargate import upload, zipbundle

MAIN = 'version 1.1\nimport "tasks/t.wdl" as t\nworkflow w {\n  input { String who  Int n = 1 }\n  call t.hi { input: who = who }\n}\n'
TASKS = "version 1.1\ntask hi {\n  input { String who }\n  command <<< echo ~{who} >>>\n}\n"


def damaged() -> bytes:
    """A bundle whose member "big" inflates beyond the size its directory declares (a lying
    entry): zipfile reads no more than declared, and the CRC of what it read does not match."""
    data = archive({"a.wdl": b"version 1.1\nworkflow w {}\n", "big": bytes(5000)}, method=zipfile.ZIP_DEFLATED).getvalue()
    # shrink "big"'s declared size in its central directory record (what zipfile trusts): the
    # record is 46 bytes then the name, the uncompressed size at offset 24
    record = data.rindex(b"big") - 46
    assert data[record : record + 4] == b"PK\x01\x02"
    assert int.from_bytes(data[record + 24 : record + 28], "little") == 5000
    return data[: record + 24] + (10).to_bytes(4, "little") + data[record + 28 :]


def archive(members: dict[str, bytes], links=(), method=zipfile.ZIP_STORED) -> io.BytesIO:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as zf:
        for name, body in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            if name in links:
                info.external_attr = 0o120777 << 16
            zf.writestr(info, body)
    out.seek(0)
    return out


def built(tmp_path, defaults=None):
    """A bundle as `miniwdl zip` builds it."""
    (tmp_path / "tasks").mkdir(exist_ok=True)
    (tmp_path / "main.wdl").write_text(MAIN)
    (tmp_path / "tasks" / "t.wdl").write_text(TASKS)
    path = tmp_path / "w.zip"
    WDL.Zip.build(WDL.load(str(tmp_path / "main.wdl")), str(path), logging.getLogger("test"), inputs=defaults)
    return path


def test_a_miniwdl_zip_bundle_is_read_with_its_main_wdl_and_default_inputs(tmp_path):
    with zipbundle.opened(built(tmp_path, {"w.who": "Ann"}), "w.zip") as bundle:
        assert bundle.main == "main.wdl"
        assert bundle.defaults == {"w.who": "Ann"}
        assert sorted(i.filename for i in bundle.files()) == ["MANIFEST.json", "default_input.json", "main.wdl", "tasks/t.wdl"]
        main = bundle.extract_to(str(tmp_path / "out"))
    assert main == str(tmp_path / "out" / "main.wdl")
    assert (tmp_path / "out" / "tasks" / "t.wdl").read_text().rstrip() == TASKS.rstrip()  # (as miniwdl wrote it)


def test_without_a_manifest_the_only_top_level_wdl_is_the_main_one():
    with zipbundle.opened(archive({"main.wdl": b"x", "sub/other.wdl": b"y"}), "a.zip") as bundle:
        assert bundle.main == "main.wdl" and bundle.defaults == {}


@pytest.mark.parametrize(
    "members, links, problem",
    [
        ({}, (), "no main WDL: no MANIFEST.json naming it and no top-level WDL file; build the bundle with `miniwdl zip`"),
        ({"MANIFEST.json": b"[]", "a.wdl": b""}, (), "no main WDL: Missing or invalid MANIFEST.json in the bundle"),
        ({"MANIFEST.json": b'{"mainWorkflowURL": "../../etc/passwd"}', "a.wdl": b""}, (),
         "no main WDL: MANIFEST.json refers to missing or invalid files in the bundle"),
        ({"a.wdl": b"", "dir/../../up.wdl": b""}, (), "member 'dir/../../up.wdl' is a path that climbs out of the bundle (..); nothing was started"),
        ({"a.wdl": b"", "C:/x.wdl": b""}, (), "member 'C:/x.wdl' is an absolute path; nothing was started"),
        ({"a.wdl": b"", "sub\\x.wdl": b""}, (), "member 'sub\\\\x.wdl' is a name with a backslash; nothing was started"),
        ({"a.wdl": b"", "ln.wdl": b"a.wdl"}, ("ln.wdl",), "member 'ln.wdl' is a symbolic link (store the file itself); nothing was started"),
        ({"a.wdl": b"", "inputs.json": b"{}"}, (),
         "member 'inputs.json' is a name the pipeline keeps for the run's own files (inputs.json, options.json, results/); nothing was started"),
        ({"MANIFEST.json": b'{"mainWorkflowURL": "a.wdl", "inputFileURLs": ["d.json"]}', "a.wdl": b"", "d.json": b'{"w.x": NaN}'}, (),
         "a.zip: d.json: w.x: NaN is not a JSON number (JSON has no NaN or Infinity)"),
    ],
    ids=["empty", "manifest-not-an-object", "manifest-escapes", "traversal", "drive", "backslash", "symlink", "reserved", "bad-defaults"],
)
def test_a_bad_bundle_is_refused_saying_what_is_wrong(members, links, problem):
    with pytest.raises(zipbundle.BundleError) as info:
        with zipbundle.opened(archive(members, links), "a.zip"):
            pass
    assert str(info.value) in ("a.zip: " + problem, problem)


def test_not_a_zip_and_a_member_given_twice_are_refused():
    with pytest.raises(zipbundle.BundleError, match="^a.zip: not a ZIP archive"):
        zipbundle.opened(io.BytesIO(b"version 1.1\nworkflow w {}\n"), "a.zip").__enter__()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf, pytest.warns(UserWarning):
        zf.writestr("a.wdl", b"1")
        zf.writestr("a.wdl", b"2")
    with pytest.raises(zipbundle.BundleError, match="member 'a.wdl' is given twice"):
        zipbundle.opened(out, "a.zip").__enter__()


def test_a_zip_bomb_is_refused_from_its_declared_sizes_and_too_many_files_likewise(monkeypatch):
    monkeypatch.setattr(zipbundle, "MAX_BYTES", 1000)
    bomb = archive({"a.wdl": b"", "zeros": bytes(5000)}, method=zipfile.ZIP_DEFLATED)
    assert len(bomb.getvalue()) < 1000
    with pytest.raises(zipbundle.BundleError, match="holds 2 files, 5000 bytes uncompressed; a bundle may hold at most 200 files and 0 MiB"):
        zipbundle.opened(bomb, "a.zip").__enter__()
    monkeypatch.setattr(zipbundle, "MAX_FILES", 2)
    with pytest.raises(zipbundle.BundleError, match="holds 3 files"):
        zipbundle.opened(archive({"a.wdl": b"", "b": b"", "c": b""}), "a.zip").__enter__()
    assert zipbundle.size_problem(1001, "a.zip") == "a.zip: 1001 bytes; a bundle may have at most 0 MiB"
    assert zipbundle.size_problem(1000, "a.zip") is None


def test_a_member_that_inflates_beyond_its_declared_size_is_refused_as_damaged():
    with pytest.raises(zipbundle.BundleError, match="a damaged ZIP archive"):
        with zipbundle.opened(io.BytesIO(damaged()), "a.zip") as bundle:
            with bundle.open(bundle.archive.getinfo("big")) as member:
                member.read()


@pytest.mark.parametrize(
    "defaults, given, merged",
    [
        ({"w.who": "A", "w.n": 2}, {"w.who": "B"}, {"w.n": 2, "w.who": "B"}),
        ({"w.who": "A", "w.n": 2}, {"who": "B"}, {"w.n": 2, "who": "B"}),  # with or without the namespace
        ({"who": "A"}, {"w.who": "B"}, {"w.who": "B"}),
        ({"w.t.x": 1, "w.y": [1]}, {"t.x": 2}, {"w.y": [1], "t.x": 2}),  # a call's input
        ({"w.y": [1, 2]}, {"w.y": []}, {"w.y": []}),  # replaced whole, not merged inside
        ({}, {"w.who": "B"}, {"w.who": "B"}),
    ],
)
def test_the_submitted_inputs_go_over_the_bundles_defaults_input_by_input(defaults, given, merged):
    assert zipbundle.merge_defaults(defaults, given, "w") == merged


def test_the_cli_checks_a_bundle_and_names_it_in_every_problem(tmp_path):
    good = built(tmp_path, {"w.who": "Ann"})
    submission = upload.prepare(good, {"w.n": 3}, "zip-run")
    assert submission.bundle and submission.files == [good] and submission.inputs == {"w.n": 3}
    assert upload.default_name(upload.workflow_target(submission.doc).name).startswith("w-")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(archive({"main.wdl": MAIN.replace("call t.hi", "call t.nothing").encode(), "tasks/t.wdl": TASKS.encode()}).getvalue())
    with pytest.raises(upload.RunInputError) as info:
        upload.prepare(broken, {}, "zip-run")
    assert str(info.value).startswith(f"{broken}/main.wdl:5:3: ")
    # a main WDL in a subfolder importing its siblings (Amazon Genomics CLI's bundles): the whole
    # bundle is the run's copy; an import leaving the bundle is still refused
    beside = tmp_path / "beside.zip"
    beside.write_bytes(archive({"sub/main.wdl": MAIN.replace("tasks/t.wdl", "../t.wdl").encode(), "t.wdl": TASKS.encode(),
                                "MANIFEST.json": json.dumps({"mainWorkflowURL": "sub/main.wdl"}).encode()}).getvalue())
    assert upload.prepare(beside, {"w.who": "x"}, "zip-run").bundle
    outside = tmp_path / "outside.zip"
    outside.write_bytes(archive({"sub/main.wdl": MAIN.replace("tasks/t.wdl", "../../t.wdl").encode(), "t.wdl": TASKS.encode(),
                                 "MANIFEST.json": json.dumps({"mainWorkflowURL": "sub/main.wdl"}).encode()}).getvalue())
    with pytest.raises(upload.RunInputError, match="Failed to import|it is outside the workflow's folder"):
        upload.prepare(outside, {}, "zip-run")
    with pytest.raises(upload.RunInputError, match="not a ZIP archive"):
        (tmp_path / "no.zip").write_text("x")
        upload.prepare(tmp_path / "no.zip", {}, "zip-run")


def test_a_wdl_importing_from_outside_its_folder_goes_as_a_bundle_with_the_folders_files(tmp_path):
    """WARP's layout (pipelines/broad/.../X.wdl importing ../../../tasks/broad/Y.wdl), which
    `miniwdl run` takes, was refused unless submitted with --zip: submitted as a bundle by itself,
    with the folder's other files (its scripts, its miniwdl.cfg), as the folder would have gone."""
    pipeline, tasks = tmp_path / "pipelines" / "broad" / "wgs", tmp_path / "tasks" / "broad"
    (pipeline / "scripts").mkdir(parents=True)
    tasks.mkdir(parents=True)
    (pipeline / "main.wdl").write_text(MAIN.replace("tasks/t.wdl", "../../../tasks/broad/t.wdl"))
    (tasks / "t.wdl").write_text(TASKS)
    (pipeline / "scripts" / "count.sh").write_text("wc -l\n")
    (pipeline / "miniwdl.cfg").write_text("[call_cache]\nget = false\n")
    (pipeline / "notes.wdl").write_text(TASKS)  # (not imported: a file of the folder, as a folder upload takes it)
    # miniwdl's additional_files would take these as a glob, refuse a link out of the folder, and
    # refuse a name the archive holds already
    (pipeline / "data[1].txt").write_text("one")
    (pipeline / "MANIFEST.json").write_text("{}")
    (tmp_path / "elsewhere.txt").write_text("linked")
    (pipeline / "linked.txt").symlink_to(tmp_path / "elsewhere.txt")
    submission = upload.prepare(pipeline / "main.wdl", {"w.who": "x"}, "warp")
    assert submission.bundle
    with zipbundle.opened(submission.wdl_path, "main.zip") as bundle:
        assert sorted(i.filename for i in bundle.files()) == [
            "MANIFEST.json", "__outside_wdl/tasks/broad/t.wdl", "data[1].txt", "linked.txt", "main.wdl", "miniwdl.cfg",
            "notes.wdl", "scripts/count.sh"]
        assert json.loads(bundle.archive.read("MANIFEST.json"))["mainWorkflowURL"] == "main.wdl"  # (miniwdl's own)


def test_a_wdl_importing_from_a_folder_the_upload_leaves_out_goes_as_a_bundle(tmp_path):
    """`import ".deps/lib/t.wdl"`: hidden folders are left out of the folder's upload, and the run
    failed in the pipeline, after the upload, its import missing. Such a WDL goes as a bundle."""
    (tmp_path / ".deps" / "lib").mkdir(parents=True)
    (tmp_path / ".deps" / "lib" / "t.wdl").write_text(TASKS)
    (tmp_path / "main.wdl").write_text(MAIN.replace("tasks/t.wdl", ".deps/lib/t.wdl"))
    submission = upload.prepare(tmp_path / "main.wdl", {"w.who": "x"}, "deps")
    assert submission.bundle
    with zipbundle.opened(submission.wdl_path, "main.zip") as bundle:
        assert ".deps/lib/t.wdl" in [i.filename for i in bundle.files()]
    (tmp_path / ".common.wdl").write_text(TASKS)  # (a hidden file too)
    (tmp_path / "main.wdl").write_text(MAIN.replace("tasks/t.wdl", ".common.wdl"))
    assert upload.prepare(tmp_path / "main.wdl", {"w.who": "x"}, "deps").bundle


def test_links_in_the_workflows_folder_are_its_files_as_miniwdl_reads_them(tmp_path):
    """A main WDL that is a link (its imports beside the link), a folder of the workflow that is a
    link (lib -> ../shared/lib), a file that is one: `miniwdl run` reads them by the path given;
    they were refused as outside the folder (or the import not found beside the link's target)."""
    shared = tmp_path / "shared"
    (shared / "lib").mkdir(parents=True)
    (shared / "lib" / "t.wdl").write_text(TASKS)
    (shared / "t2.wdl").write_text(TASKS)
    (shared / "elsewhere").mkdir()
    (shared / "elsewhere" / "main.wdl").write_text(MAIN.replace("tasks/t.wdl", "lib/t.wdl").replace(
        'import "lib/t.wdl" as t\n', 'import "lib/t.wdl" as t\nimport "t2.wdl" as t2\n'))
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "main.wdl").symlink_to(shared / "elsewhere" / "main.wdl")
    (wf / "lib").symlink_to(shared / "lib", target_is_directory=True)
    (wf / "t2.wdl").symlink_to(shared / "t2.wdl")
    (wf / "loop").symlink_to(wf, target_is_directory=True)  # (walked once)
    submission = upload.prepare(wf / "main.wdl", {"w.who": "x"}, "links")
    assert not submission.bundle
    assert sorted(p.relative_to(wf).as_posix() for p in submission.files) == ["lib/t.wdl", "main.wdl", "t2.wdl"]


def test_a_wdl_importing_from_a_folder_given_with_p_goes_as_the_bundle_miniwdl_zip_p_makes(tmp_path, capsys):
    """`miniwdl run -p lib main.wdl` finds `import "t.wdl"` in lib/: submit and local run take
    `-p` as it does, and send the WDL as a bundle holding the import, rewritten to where the
    bundle has it; without `-p` the import is not found, said before anything is uploaded."""
    from miniwdl_fargate import cli

    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "t.wdl").write_text(TASKS)
    (tmp_path / "wf").mkdir()
    main = tmp_path / "wf" / "main.wdl"
    main.write_text(MAIN.replace("tasks/t.wdl", "t.wdl"))
    with pytest.raises(upload.RunInputError, match=r"main.wdl:2:1: .*t\.wdl"):
        upload.prepare(main, {"w.who": "x"}, "p-run")
    submission = upload.prepare(main, {"w.who": "x"}, "p-run", import_path=[str(tmp_path / "lib")])
    assert submission.bundle
    with zipbundle.opened(submission.wdl_path, "main.zip") as bundle:
        assert sorted(i.filename for i in bundle.files()) == ["MANIFEST.json", "__outside_wdl/lib/t.wdl", "main.wdl"]
    doc, _ = upload.load_bundle(submission.wdl_path)  # (what the pipeline loads: no -p there)
    assert [imp.doc.pos.abspath.endswith("/__outside_wdl/lib/t.wdl") for imp in doc.imports] == [True]
    # a folder that is not there is refused as `miniwdl run -p` would be, naming it
    for command in (["submit"], ["local", "run"]):
        with pytest.raises(SystemExit) as exited:
            cli.main([*command, str(main), "w.who=x", "-p", str(tmp_path / "nowhere")])
        assert exited.value.code == 2 and f"{tmp_path / 'nowhere'}: no such folder" in capsys.readouterr().err


def test_the_cli_builds_a_bundle_with_miniwdl_zip_taking_imports_from_outside_the_folder(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "app" / "main.wdl").write_text(MAIN.replace("tasks/t.wdl", "../shared/t.wdl"))
    (tmp_path / "shared" / "t.wdl").write_text(TASKS)
    (tmp_path / "zips").mkdir()
    submission = upload.prepare(tmp_path / "app" / "main.wdl", {"w.who": "x"}, "zip-run", zip_into=tmp_path / "zips")
    assert submission.bundle and submission.wdl_path == tmp_path / "zips" / "main.zip"
    with zipbundle.opened(submission.wdl_path, "main.zip") as bundle:
        assert bundle.main == "main.wdl"
        assert sorted(i.filename for i in bundle.files()) == ["MANIFEST.json", "__outside_wdl/shared/t.wdl", "main.wdl"]


def test_a_wdl_importing_its_folders_workflow_wdl_is_submitted_as_a_bundle(tmp_path):
    """The folder is uploaded with the main WDL as runs/<name>/workflow.wdl: a workflow.wdl of the
    folder that the main WDL imports would be replaced by the main WDL itself (the import then
    fails in the pipeline). Such a WDL goes as a bundle, which names its main WDL apart; a
    workflow.wdl it does not import stays a plain folder's file."""
    (tmp_path / "main.wdl").write_text(MAIN.replace("tasks/t.wdl", "workflow.wdl"))
    (tmp_path / "workflow.wdl").write_text(TASKS)
    (tmp_path / "miniwdl.cfg").write_text('[task_runtime]\ndefaults = {"docker": "alpine:3.19"}\n')
    submission = upload.prepare(tmp_path / "main.wdl", {"w.who": "x"}, "collide")
    assert submission.bundle
    with zipbundle.opened(submission.wdl_path, "main.zip") as bundle:
        assert bundle.main == "main.wdl"
        # the folder's miniwdl.cfg goes with it, beside the main WDL, where the run reads it
        assert sorted(i.filename for i in bundle.files()) == ["MANIFEST.json", "main.wdl", "miniwdl.cfg", "workflow.wdl"]
        cfg, = (i for i in bundle.files() if i.filename == "miniwdl.cfg")
        assert b"alpine:3.19" in bundle.open(cfg).read()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "main.wdl").write_text(MAIN.replace('import "tasks/t.wdl" as t\n', "").replace("call t.hi { input: who = who }", ""))
    (tmp_path / "other" / "workflow.wdl").write_text(TASKS)
    assert not upload.prepare(tmp_path / "other" / "main.wdl", {"w.who": "x"}, "apart").bundle


def test_a_directory_of_too_many_entries_is_refused_before_it_is_read(monkeypatch):
    monkeypatch.setattr(zipbundle, "MAX_ENTRIES", 3)
    many = archive({"a.wdl": b"", "d/": b"", "d/b": b"", "c": b""})
    monkeypatch.setattr(zipfile, "ZipFile", lambda *a, **k: pytest.fail("the directory was read"))
    with pytest.raises(zipbundle.BundleError, match="^a.zip: holds 4 entries; a bundle may hold at most 200 files [(]3 entries with its folders[)]$"):
        zipbundle.opened(many, "a.zip").__enter__()


def test_a_member_compressed_with_a_method_zipfile_cannot_read_is_refused_saying_so():
    data = bytearray(archive({"a.wdl": b"version 1.1\nworkflow w {}\n"}).getvalue())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):  # method: 9 (Deflate64), both headers
        at = data.index(signature) + offset
        data[at : at + 2] = (9).to_bytes(2, "little")
    with pytest.raises(zipbundle.BundleError) as info:
        with zipbundle.opened(io.BytesIO(bytes(data)), "a.zip"):
            pass
    assert str(info.value) == (
        "a.zip: member 'a.wdl' is compressed with method 9, which cannot be read (store or deflate it, as `miniwdl zip` does); "
        "nothing was started"
    )
