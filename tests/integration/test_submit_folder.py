"""What `submit --name NAME` does to the folder runs/NAME/ it uploads the workflow into (``upload.
Submission.upload_workflow``), against moto: it removes what an earlier submit uploaded there and
this one does not, and nothing else."""

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
