"""Local File/Directory inputs uploaded by `submit`, named by their content (``upload.STAGED_PREFIX``):
against moto."""

import json
import os
from pathlib import Path

import pytest

from miniwdl_fargate import aws, s3io, upload

WDL = """version development
workflow w {
  input { File f  Directory d }
  output { File out = f }
}
"""


def folder(root, data, files):
    """A workflow folder with its WDL, a file `data.txt` holding ``data`` and a folder `ref/` of ``files``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "w.wdl").write_text(WDL)
    (root / "data.txt").write_text(data)
    (root / "ref").mkdir(exist_ok=True)
    for old in (root / "ref").iterdir():
        old.unlink()
    for name, text in files.items():
        (root / "ref" / name).write_text(text)
    (root / "inputs.json").write_text(json.dumps({"w.f": "data.txt", "w.d": "ref"}))
    return root


def submitted(bucket, root, name):
    """The run's uploaded inputs.json, once ``root`` is submitted under ``name`` (no pipeline here:
    its answer is not waited for)."""
    upload.prepare(root / "w.wdl", root / "inputs.json", name).upload(bucket, answer_timeout=0)
    return json.loads(aws.client("s3").get_object(Bucket=bucket, Key=f"runs/{name}/inputs.json")["Body"].read())


def listing(uri):
    bucket, key = s3io.split(uri)
    prefix = key.rstrip("/") + "/"
    found = aws.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {obj["Key"][len(prefix):]: aws.client("s3").get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode()
            for obj in found}


def read(uri):
    bucket, key = s3io.split(uri)
    return aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def test_the_same_content_is_one_upload_whatever_the_run_name_or_folder(bucket, tmp_path, monkeypatch):
    """Two runs of the same files (other names, other folders) name the same s3:// URIs, which
    the call cache keys File inputs by: the second run can reuse the first's calls."""
    first = submitted(bucket, folder(tmp_path / "a", "hello", {"x.txt": "X"}), "first")
    uploaded = []
    real = upload.upload_staged

    def spied(s3, path, bucket, key, digest, *args):
        before = s3.head_object(Bucket=bucket, Key=key)["LastModified"]
        real(s3, path, bucket, key, digest, *args)
        if s3.head_object(Bucket=bucket, Key=key)["LastModified"] != before:
            uploaded.append(key)

    monkeypatch.setattr(upload, "upload_staged", spied)
    second = submitted(bucket, folder(tmp_path / "b" / "elsewhere", "hello", {"x.txt": "X"}), "second")
    assert second == first
    assert first["w.f"].startswith("s3://runs/staged/") and first["w.f"].endswith("/data.txt")
    assert uploaded == []  # (there already)


def test_a_later_submission_under_the_same_name_does_not_change_what_a_run_reads(bucket, tmp_path):
    """A file changed, and a folder's file removed, before submitting again under the same name
    (or resuming the first run): the first run's inputs still hold the bytes it was given, and
    the second's folder holds no file removed from it."""
    root = folder(tmp_path / "wf", "one", {"x.txt": "X", "y.txt": "Y"})
    first = submitted(bucket, root, "same")
    second = submitted(bucket, folder(root, "two", {"y.txt": "Y"}), "same")
    assert read(first["w.f"]) == "one" and read(second["w.f"]) == "two"
    assert listing(first["w.d"]) == {"x.txt": "X", "y.txt": "Y"}
    assert listing(second["w.d"]) == {"y.txt": "Y"}


def test_a_staged_key_already_there_is_not_uploaded_again_unless_it_lacks_its_sha256(bucket, tmp_path):
    s3 = aws.client("s3")
    path = tmp_path / "f.txt"
    path.write_text("abc")
    digest = upload.content_digest(path)
    key = f"{upload.STAGED_PREFIX}{digest}/f.txt"
    upload.upload_staged(s3, path, bucket, key, digest)
    before = s3.head_object(Bucket=bucket, Key=key)
    assert before["Metadata"] == {"sha256": digest}
    upload.upload_staged(s3, path, bucket, key, digest)
    assert s3.head_object(Bucket=bucket, Key=key)["LastModified"] == before["LastModified"]
    s3.put_object(Bucket=bucket, Key=key, Body=b"xyz")  # (put there by hand: not known to hold these bytes)
    upload.upload_staged(s3, path, bucket, key, digest)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"abc"


def test_a_file_changed_after_it_was_keyed_is_not_uploaded_under_that_key(bucket, tmp_path):
    """Its key was made from its bytes then (before the run name's claim was waited for, say):
    the upload hashes what it sends, and a key never holds other bytes than its name says."""
    s3 = aws.client("s3")
    path = tmp_path / "in.txt"
    path.write_text("AAAA\n")
    digest = upload.content_digest(path)
    key = f"{upload.STAGED_PREFIX}{digest}/in.txt"
    path.write_text("BBBB\n")
    with pytest.raises(upload.RunInputError, match=r"in.txt changed while it was being submitted: nothing was started"):
        upload.upload_staged(s3, path, bucket, key, digest)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=upload.STAGED_PREFIX)


def test_a_file_changed_while_it_is_uploaded_leaves_nothing_under_its_key(bucket, tmp_path, monkeypatch):
    s3 = aws.client("s3")
    path = tmp_path / "in.txt"
    path.write_text("AAAA\n")
    digest = upload.content_digest(path)
    key = f"{upload.STAGED_PREFIX}{digest}/in.txt"

    def read_while_written(self, size=-1):  # (another writer changes it as the upload reads it)
        data = self.raw.read(size)
        self.sha256.update(data.replace(b"A", b"B"))
        return data

    monkeypatch.setattr(upload._HashingReader, "read", read_while_written)
    with pytest.raises(upload.RunInputError, match=r"in.txt changed while it was being submitted"):
        upload.upload_staged(s3, path, bucket, key, digest)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=upload.STAGED_PREFIX)


def test_a_directory_is_staged_through_its_links_as_miniwdl_reads_it(tmp_path):
    """A link to a folder is walked (its files were left out), a relative link to a file inside
    is that file, a link back to a folder it is inside is not followed (a loop), a FIFO holds
    nothing."""
    root = tmp_path / "d"
    (root / "real").mkdir(parents=True)
    (root / "real" / "r.txt").write_text("r")
    (root / "alias").symlink_to("real")
    (root / "f.lnk").symlink_to("real/r.txt")
    (root / "real" / "up").symlink_to("..")
    os.mkfifo(root / "pipe")
    assert sorted(rel for rel, _ in upload.directory_files(root)) == ["alias/r.txt", "f.lnk", "real/r.txt"]


@pytest.mark.parametrize("target", ["absolute", "outside", "dangling"])
def test_a_directory_with_a_link_miniwdl_refuses_is_refused(tmp_path, target):
    """miniwdl refuses a Directory input holding a link to a file that is absolute, leads
    outside it or leads nowhere ("Input Directory contains unusable symlink"): so does submit,
    naming the link (it uploaded the file outside)."""
    root = tmp_path / "d"
    root.mkdir()
    (tmp_path / "y.txt").write_text("y")
    (root / "in.txt").write_text("i")
    link = {"absolute": str(root / "in.txt"), "outside": "../y.txt", "dangling": "nowhere.txt"}[target]
    (root / "l.txt").symlink_to(link)
    with pytest.raises(upload.RunInputError, match=r"^inputs: directory ref: l.txt is a symbolic link that is dangling, absolute or leads outside"):
        upload.directory_files(root, "ref")


def test_a_linked_input_keeps_its_own_name_and_two_files_alike_stay_two(bucket, tmp_path):
    """A task sees an input by the name it was given (a link's, not its target's: tools go by
    names, .bam beside .bai), and two files of one name and content from two folders as two
    paths, as miniwdl gives them; a name with a newline is refused naming it."""
    wdl = tmp_path / "w.wdl"
    wdl.write_text("version 1.1\nworkflow w { input { Array[File] fs  File l } }\n")
    (tmp_path / "c1").mkdir()
    (tmp_path / "c2").mkdir()
    (tmp_path / "c1" / "s.txt").write_text("same")
    (tmp_path / "c2" / "s.txt").write_text("same")
    (tmp_path / "y.txt").write_text("y")
    (tmp_path / "link.bam").symlink_to("y.txt")
    inputs = {"w.fs": ["c1/s.txt", "c2/s.txt", "c1/s.txt"], "w.l": "link.bam"}
    (tmp_path / "inputs.json").write_text(json.dumps(inputs))
    staged, _ = upload.stage_inputs(upload.prepare(wdl, tmp_path / "inputs.json", "n").doc, inputs, tmp_path, "runs")
    first, second, again = staged["w.fs"]
    assert first != second and again == first and first.endswith("/s.txt") and second.endswith("/s.txt")
    assert staged["w.l"].endswith("/link.bam")
    (tmp_path / "a\nb.txt").write_text("x")
    (tmp_path / "inputs.json").write_text(json.dumps({"w.fs": ["a\nb.txt"], "w.l": "y.txt"}))
    with pytest.raises(upload.RunInputError, match=r"its name holds a control character"):
        upload.prepare(wdl, tmp_path / "inputs.json", "n")


def test_an_empty_directory_is_refused_before_anything_is_uploaded(tmp_path):
    root = folder(tmp_path / "wf", "one", {})
    with pytest.raises(upload.RunInputError, match=r"directory ref holds no files .*an S3 folder cannot be empty"):
        upload.prepare(root / "w.wdl", root / "inputs.json", "empty")


@pytest.mark.parametrize("size", [0, 1, 8 << 20, 80_008 << 20, 5 << 40])
def test_a_staged_upload_stays_within_s3s_ten_thousand_parts(size):
    """The upload reads a stream (to hash what it sends), whose parts s3transfer does not size by
    itself: 8 MiB parts, and a file over 78 GiB took part 10,001, which S3 refuses. S3's largest
    object is 5 TiB."""
    transfer = upload.staged_transfer(size)
    part = transfer.multipart_chunksize
    assert part >= 8 << 20 and part % (1 << 20) == 0
    assert part * transfer.max_concurrency <= max(512 << 20, part)  # (the parts in flight are held in memory)
    # and so are those read ahead of them: 10 unless told (about 6 GiB for a 5 TiB file's parts)
    assert part * transfer.max_in_memory_upload_chunks <= max(512 << 20, 2 * part)
    assert -(-size // part) <= upload.MAX_PARTS and part <= 5 << 30  # (S3: a part is at most 5 GiB)


def test_an_input_that_is_no_regular_file_or_cannot_be_read_is_named(tmp_path, monkeypatch):
    root = folder(tmp_path / "wf", "one", {"x.txt": "X"})
    (root / "data.txt").unlink()
    os.mkfifo(root / "data.txt")
    with pytest.raises(upload.RunInputError, match=r"^.*/wf/inputs.json: w.f: file data.txt is not a regular file \(looked for "):
        upload.prepare(root / "w.wdl", root / "inputs.json", "odd")
    (root / "data.txt").unlink()
    (root / "data.txt").write_text("one")

    readable = upload.content_digest

    def unreadable(path):
        if path.name == "data.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return readable(path)

    monkeypatch.setattr(upload, "content_digest", unreadable)
    with pytest.raises(upload.RunInputError, match=r"^.*/wf/inputs.json: w.f: file data.txt: .*/data.txt: Permission denied$"):
        upload.prepare(root / "w.wdl", root / "inputs.json", "odd")


def test_an_empty_path_or_a_loop_of_links_is_named_with_its_input(tmp_path):
    """They were "file  is not a regular file (looked for <the folder>)" and "RuntimeError:
    Symlink loop ... (unexpected)"."""
    root = folder(tmp_path / "wf", "one", {"x.txt": "X"})
    (root / "inputs.json").write_text(json.dumps({"w.f": "", "w.d": "ref"}))
    with pytest.raises(upload.RunInputError, match=r"^.*/wf/inputs.json: w.f: an empty path where a file is named$"):
        upload.prepare(root / "w.wdl", root / "inputs.json", "odd")
    (root / "data.txt").unlink()
    (root / "data.txt").symlink_to("other.txt")
    (root / "other.txt").symlink_to("data.txt")
    (root / "inputs.json").write_text(json.dumps({"w.f": "data.txt", "w.d": "ref"}))
    with pytest.raises(upload.RunInputError, match=r"^.*/wf/inputs.json: w.f: file data.txt: a loop of symbolic links \(looked for "):
        upload.prepare(root / "w.wdl", root / "inputs.json", "odd")


def test_every_local_input_that_cannot_be_uploaded_is_named_at_once(tmp_path):
    """As the submit step lists every problem: submit stopped at the first missing file."""
    root = folder(tmp_path / "wf", "one", {"x.txt": "X"})
    (root / "inputs.json").write_text(json.dumps({"w.f": "nope0", "w.d": "nodir"}))
    with pytest.raises(upload.RunInputError) as refused:
        upload.prepare(root / "w.wdl", root / "inputs.json", "odd")
    said = str(refused.value)
    assert "inputs.json: w.f: file nope0 not found (looked for " in said
    assert "inputs.json: w.d: directory nodir not found" in said
    assert said.count("not found") == 2


def test_a_relative_path_not_beside_the_inputs_file_is_read_from_the_current_folder(bucket, tmp_path, monkeypatch):
    """`miniwdl run -i cfg/in.json` reads a relative path from the current folder: an inputs file
    kept in a subfolder, run from the project's root. Beside the inputs file first (where this
    product has always looked), then there."""
    root = folder(tmp_path / "wf", "from the project's root", {"a.txt": "A"})
    (root / "cfg").mkdir()
    (root / "cfg" / "in.json").write_text(json.dumps({"w.f": "data.txt", "w.d": "ref"}))
    monkeypatch.chdir(root)

    def staged_text(name):
        upload.prepare(root / "w.wdl", root / "cfg" / "in.json", name).upload(bucket, answer_timeout=0)
        staged = json.loads(aws.client("s3").get_object(Bucket=bucket, Key=f"runs/{name}/inputs.json")["Body"].read())
        return aws.client("s3").get_object(Bucket=bucket, Key=staged["w.f"][len(f"s3://{bucket}/"):])["Body"].read()

    assert staged_text("fromcwd") == b"from the project's root"
    (root / "cfg" / "data.txt").write_text("beside the inputs file")  # (that one first)
    assert staged_text("beside") == b"beside the inputs file"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(upload.RunInputError, match=r"w.d: directory ref not found \(looked for .*/cfg/ref and .*/ref\)"):
        upload.prepare(root / "w.wdl", root / "cfg" / "in.json", "fromcwd")


def test_an_executable_local_input_is_staged_executable(bucket, tmp_path):
    """A local script the task runs (`~{tool}`) kept no execute bits through S3 (which keeps no
    modes): the task failed with 126 where plain miniwdl runs it. Its key says so and its object
    carries the mode, which the driver's staging gives the copy back; the same bytes not
    executable stay another key."""
    from miniwdl_fargate import staging

    root = folder(tmp_path / "x", "data", {"a.txt": "A"})
    (root / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    (root / "tool.sh").chmod(0o755)
    (root / "plain.sh").write_text("#!/bin/sh\necho tool\n")
    (root / "inputs.json").write_text(json.dumps({"w.f": "tool.sh", "w.d": "ref"}))
    executable = submitted(bucket, root, "tooled")["w.f"]
    (root / "inputs.json").write_text(json.dumps({"w.f": "plain.sh", "w.d": "ref"}))
    plain = submitted(bucket, root, "plain")["w.f"]
    assert executable != plain and s3io.split(executable)[1].split("/")[1].endswith(".x")
    head = aws.client("s3").head_object(Bucket=bucket, Key=s3io.split(executable)[1])
    assert head["Metadata"][staging.MODE_METADATA] == staging.EXECUTABLE_MODE
    store = tmp_path / "store"
    with s3io.Transfers() as transfers:
        staged_exec = staging._stage_file(executable, str(store), transfers)
        staged_plain = staging._stage_file(plain, str(store), transfers)
    assert os.access(staged_exec, os.X_OK) and not os.access(staged_plain, os.X_OK)


def test_an_s3_directory_input_is_staged_with_its_empty_folders(bucket, tmp_path):
    """A Directory input whose S3 folder holds folder markers (the console's "Create folder", or
    a Directory output of another run) is staged with those folders; its identity stays its
    objects' (the markers name it no differently)."""
    from miniwdl_fargate import staging

    s3 = aws.client("s3")
    for key, body in (("ref/a.txt", b"A"), ("ref/empty/", b""), ("ref/sub/deeper/", b""), ("ref/sub/b.txt", b"B")):
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    with s3io.Transfers() as transfers:
        staged = staging._stage_directory(f"s3://{bucket}/ref/", str(tmp_path / "store"), transfers)
    assert sorted(str(p.relative_to(staged)) for p in Path(staged).rglob("*")) == [
        "a.txt", "empty", "sub", "sub/b.txt", "sub/deeper"]
    assert staging.directory_listing(bucket, "ref/") == sorted(
        (o["Key"], o["ETag"].strip('"')) for o in s3.list_objects_v2(Bucket=bucket, Prefix="ref/")["Contents"] if not o["Key"].endswith("/"))


def test_a_local_directory_is_staged_with_its_executables_and_empty_folders(bucket, tmp_path):
    """A folder of tools given as a Directory (`~{d}/bin/run.sh`) lost its execute bits through
    S3 (the task failed with 126 where plain miniwdl runs it), and an empty folder in it (where
    a tool writes) was not there: the driver's copy has both, as the folder had them. A tree
    with neither keeps its key; the same bytes with a mode changed are another key."""
    from miniwdl_fargate import staging

    root = folder(tmp_path / "x", "data", {"a.txt": "A"})
    plain = submitted(bucket, root, "plain")["w.d"]
    (root / "ref" / "bin").mkdir()
    (root / "ref" / "bin" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "ref" / "bin" / "run.sh").chmod(0o755)
    (root / "ref" / "out" / "deeper").mkdir(parents=True)
    tooled = submitted(bucket, root, "tooled")["w.d"]
    (root / "ref" / "bin" / "run.sh").chmod(0o644)
    unmoded = submitted(bucket, root, "unmoded")["w.d"]
    assert len({plain, tooled, unmoded}) == 3
    assert s3io.split(tooled)[1].split("/")[1].endswith(upload.EXECUTABLE_SUFFIX)
    assert not s3io.split(unmoded)[1].split("/")[1].endswith(upload.EXECUTABLE_SUFFIX)
    (root / "ref" / "bin" / "run.sh").unlink()
    for empty in ("bin", "out/deeper", "out"):
        (root / "ref" / empty).rmdir()
    assert submitted(bucket, root, "plain-again")["w.d"] == plain  # (the key it had before)
    with s3io.Transfers() as transfers:
        staged = {uri: staging._stage_directory(uri, str(tmp_path / "store"), transfers) for uri in (tooled, unmoded)}
    for uri, executable in ((tooled, True), (unmoded, False)):
        assert sorted(str(p.relative_to(staged[uri])) for p in Path(staged[uri]).rglob("*")) == [
            "a.txt", "bin", "bin/run.sh", "out", "out/deeper"]
        assert os.access(Path(staged[uri]) / "bin" / "run.sh", os.X_OK) is executable
        assert not os.access(Path(staged[uri]) / "a.txt", os.X_OK)


def test_only_a_staged_directorys_own_list_of_executables_gives_modes(bucket):
    """A user's own folder named like a staged one, or a list that is not a list, gives none."""
    from miniwdl_fargate import staging

    s3 = aws.client("s3")
    s3.put_object(Bucket=bucket, Key="mine/t.x/ref.modes.json", Body=b'{"executable": ["a"]}')
    s3.put_object(Bucket=bucket, Key=f"staged/{'0' * 64}.x/ref.modes.json", Body=b'{"executable": "a"}')
    s3.put_object(Bucket=bucket, Key=f"staged/{'1' * 64}.x-2/ref.modes.json", Body=b'{"executable": ["a", 3]}')
    assert staging.directory_modes(bucket, "mine/t.x/ref/") == []
    assert staging.directory_modes(bucket, f"staged/{'0' * 64}.x/ref/") == []
    assert staging.directory_modes(bucket, f"staged/{'1' * 64}.x-2/ref/") == ["a"]
    assert staging.directory_modes(bucket, f"staged/{'2' * 64}.x/ref/") == []  # (none there)


def test_a_local_stacks_state_folder_inside_the_workflows_folder_is_left_out_of_its_upload(tmp_path):
    """`local run w.wdl --state-dir state` from the workflow's folder: its EFS, S3 copies and logs
    were uploaded as the workflow's files (and soon passed the folder's 200 files)."""
    root = folder(tmp_path / "wf", "data", {"a.txt": "A"})
    (root / "state" / "efs").mkdir(parents=True)
    (root / "state" / "efs" / "x").write_text("state")
    (root / "state" / upload.LOCAL_STATE_MARK).touch()
    assert sorted(str(p.relative_to(root)) for p in upload.bundle_files(root / "w.wdl")) == [
        "data.txt", "inputs.json", "ref/a.txt", "w.wdl"]


def test_a_missing_file_inside_an_input_is_named_by_the_inputs_file_and_its_place(tmp_path):
    """It was "inputs: w.ps: file nope.txt not found": which inputs file, and where in a Pair of
    an Array, the user had to find."""
    root = tmp_path / "wf"
    root.mkdir()
    (root / "w.wdl").write_text("version 1.1\nworkflow w {\n  input { Array[Pair[File, File]] ps }\n}\n")
    (root / "a.txt").write_text("A")
    (root / "in.json").write_text(json.dumps({"w.ps": [{"left": "a.txt", "right": "a.txt"}, {"left": "a.txt", "right": "nope.txt"}]}))
    with pytest.raises(upload.RunInputError, match=r"^/.*/wf/in.json: w.ps\[1\].right: file nope.txt not found \(looked for "):
        upload.prepare(root / "w.wdl", root / "in.json", "placed")
