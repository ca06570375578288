"""What `submit --name NAME` does to the folder runs/NAME/ it uploads the workflow into (``upload.
Submission.upload_workflow``), against moto: it removes what an earlier submit uploaded there and
this one does not, and nothing else."""

import pytest

from miniwdl_fargate import aws, upload

WDL = "version 1.1\nworkflow w {\n  input { String who }\n  output { String out = who }\n}\n"


def keys(bucket):
    return sorted(o["Key"] for o in aws.client("s3").list_objects_v2(Bucket=bucket, Prefix="runs/mine/").get("Contents", []))


def workflow_folder(root, *extra):
    root.mkdir()
    (root / "w.wdl").write_text(WDL)
    for name in extra:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"# {name} of {root.name}\n" + ("[scheduler]\n" if name.endswith(".cfg") else ""))
    return root


def test_a_submit_removes_what_an_earlier_submit_left_and_never_a_file_someone_else_put_there(bucket, tmp_path):
    s3 = aws.client("s3")
    # the user's own files in the folder, among them an input of the run (`submit` deleted them all)
    for key in ("runs/mine/reference/genome.fa", "runs/mine/README.md", "runs/mine/precious.txt"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"theirs")
    first = workflow_folder(tmp_path / "first", "miniwdl.cfg", "lib/notes.txt")
    upload.prepare(first / "w.wdl", {"w.who": "a"}, "mine").upload_workflow(bucket)
    assert keys(bucket) == [
        "runs/mine/README.md", "runs/mine/lib/notes.txt", "runs/mine/miniwdl.cfg", "runs/mine/precious.txt",
        "runs/mine/reference/genome.fa", "runs/mine/workflow.wdl",
    ]
    # a second submit under the name, of another folder: the first's miniwdl.cfg and notes go
    second = workflow_folder(tmp_path / "second", "data/table.tsv")
    upload.prepare(second / "w.wdl", {"w.who": "b"}, "mine").upload_workflow(bucket)
    assert keys(bucket) == [
        "runs/mine/README.md", "runs/mine/data/table.tsv", "runs/mine/precious.txt", "runs/mine/reference/genome.fa",
        "runs/mine/workflow.wdl",
    ]
    assert s3.get_object(Bucket=bucket, Key="runs/mine/precious.txt")["Body"].read() == b"theirs"
    assert s3.get_object(Bucket=bucket, Key="runs/mine/workflow.wdl")["Body"].read() == WDL.encode()


def test_the_names_the_pipeline_writes_in_the_folder_are_not_uploaded_from_the_workflows_folder(bucket, tmp_path):
    """A file called error.json beside the WDL was uploaded as the pipeline's refusal of the run,
    which the CLI then reported though the run had started; inputs.json and options.json are the
    submission's own."""
    folder = workflow_folder(tmp_path / "wf", "error.json", "inputs.json", "options.json", "results/old.txt")
    upload.prepare(folder / "w.wdl", {"w.who": "a"}, "mine").upload_workflow(bucket)
    assert keys(bucket) == ["runs/mine/workflow.wdl"]


def test_what_the_folder_upload_leaves_out_and_what_it_says_when_too_large(bucket, tmp_path, monkeypatch):
    """A project folder as people keep one: its test data given as an input (uploaded as the input,
    not a second time with the folder), and the run folders `miniwdl run` left beside the WDL
    (its _LAST link among them). Too large, the refusal names its largest entries."""
    wdl = "version 1.1\nworkflow w {\n  input { File reads }\n  output { File out = reads }\n}\n"
    root = workflow_folder(tmp_path / "project", "test_data/sample.fastq", "scripts/count.sh",
                           "20261203_061500_w/workflow.log", "20261203_061500_w/out/x.txt")
    (root / "w.wdl").write_text(wdl)
    (root / "_LAST").symlink_to(root / "20261203_061500_w", target_is_directory=True)
    submission = upload.prepare(root / "w.wdl", {"w.reads": str(root / "test_data" / "sample.fastq")}, "mine")
    assert sorted(p.relative_to(root).as_posix() for p in submission.files) == ["scripts/count.sh", "w.wdl"]
    monkeypatch.setattr(upload, "BUNDLE_MAX_FILES", 3)
    for n in range(4):
        (root / "notes" / f"{n}.txt").parent.mkdir(exist_ok=True)
        (root / "notes" / f"{n}.txt").write_text("x" * (100 * (n + 1)))
    with pytest.raises(upload.RunInputError) as refused:
        upload.prepare(root / "w.wdl", {"w.reads": str(root / "test_data" / "sample.fastq")}, "mine")
    said = str(refused.value)
    assert said.startswith(f"{root} holds more than 3 files or 256 MiB (the largest so far: notes (0.0 MiB), "), said
    assert "give data as inputs (uploaded apart, once)" in said


def test_an_input_naming_the_workflows_own_files_leaves_none_of_them_out(bucket, tmp_path):
    """A File input naming the WDL, one of its imports or its miniwdl.cfg (or a Directory of the
    whole folder) goes as an input, and the workflow with its folder all the same: leaving them
    out, the run had no workflow.wdl (another .wdl ran) or missed its import."""
    wdl = ('version development\nimport "lib.wdl" as lib\nworkflow w {\n  input { File f  Directory d }\n'
           "  call lib.t\n  output { File out = f }\n}\n")
    root = workflow_folder(tmp_path / "project", "miniwdl.cfg", "data.txt")
    (root / "w.wdl").write_text(wdl)
    (root / "lib.wdl").write_text("version development\ntask t { command <<< true >>> }\n")
    submission = upload.prepare(root / "w.wdl", {"w.f": str(root / "w.wdl"), "w.d": str(root)}, "mine")
    assert sorted(p.relative_to(root).as_posix() for p in submission.files) == ["lib.wdl", "miniwdl.cfg", "w.wdl"]
    # and a bundle submit makes (--zip) leaves the inputs out as the folder does
    (tmp_path / "zips").mkdir()
    zipped = upload.prepare(root / "w.wdl", {"w.f": str(root / "data.txt"), "w.d": str(root)}, "mine", zip_into=tmp_path / "zips")
    from miniwdl_fargate import zipbundle

    with zipbundle.opened(zipped.wdl_path, "w.zip") as bundle:
        assert sorted(i.filename for i in bundle.files()) == ["MANIFEST.json", "lib.wdl", "miniwdl.cfg", "w.wdl"]


def test_the_folders_links_are_its_files_but_a_loop_and_a_linked_input_is_left_out(tmp_path):
    """A link in the folder is the folder's file or folder: its files are there under every name
    it has, whichever is walked first (a WDL may import or read either), its subfolders' too; a
    link back up is a loop, left out; folders linked to one another are each listed under each
    name, no chain of links multiplying the walk; an input given by a link to a file of the folder
    is left out as the file itself is; a deep folder is walked whole."""
    root = workflow_folder(tmp_path / "project", "lib/tasks.wdl", "data/sample.fastq", "scripts/count.sh", "z/z.wdl",
                           "shared_tasks/sub/t.wdl")
    (root / "alib").symlink_to("shared_tasks", target_is_directory=True)  # (walked first: the real one is the alias)
    (root / "lib" / "up").symlink_to("..", target_is_directory=True)  # (a loop)
    (root / "lib" / "self").symlink_to(".", target_is_directory=True)  # (a loop)
    (root / "tools").symlink_to("scripts", target_is_directory=True)  # (after its target)
    (root / "a").symlink_to("z", target_is_directory=True)  # (before its target)
    (root / "reads.fastq").symlink_to("data/sample.fastq")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "common.wdl").write_text("version 1.1\n")
    (root / "shared").symlink_to(tmp_path / "shared", target_is_directory=True)  # (outside: its files come)
    (root / "shared2").symlink_to(tmp_path / "shared", target_is_directory=True)
    for n in range(8):  # (8 folders each linked to every other: 8! paths through them, none followed twice)
        (root / "mesh" / f"m{n}").mkdir(parents=True)
        (root / "mesh" / f"m{n}" / "f.txt").write_text(str(n))
    for n in range(8):
        for other in range(8):
            if other != n:
                (root / "mesh" / f"m{n}" / f"m{other}").symlink_to(f"../m{other}", target_is_directory=True)
    deep = root.joinpath(*["d"] * 60)
    deep.mkdir(parents=True)
    (deep / "x.txt").write_text("x")
    files = upload.bundle_files(root / "w.wdl", leave_out=frozenset({(root / "data" / "sample.fastq").resolve()}))
    assert sorted(p.relative_to(root).as_posix() for p in files) == [
        "a/z.wdl", "alib/sub/t.wdl", "/".join(["d"] * 60) + "/x.txt", "lib/tasks.wdl",
        *sorted([f"mesh/m{n}/f.txt" for n in range(8)] + [f"mesh/m{n}/m{o}/f.txt" for n in range(8) for o in range(8) if o != n]),
        "scripts/count.sh", "shared/common.wdl", "shared2/common.wdl", "shared_tasks/sub/t.wdl", "tools/count.sh", "w.wdl",
        "z/z.wdl",
    ]
