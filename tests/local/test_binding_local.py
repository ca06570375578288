"""Three submits at once without a name, end to end in local mode: three runs, each with its own
inputs, all succeeding (default run names never collide; each run reads its own copies)."""

import json
from concurrent.futures import ThreadPoolExecutor

from miniwdl_fargate import aws, s3io, upload
from tests.waiting import run_end
from tests.workflows import HELLO


def test_three_concurrent_submits_without_a_name_are_three_runs_with_their_own_inputs(stack, tmp_path):
    bucket = stack.outputs["BucketName"]
    wdl = tmp_path / "wdl" / "echo.wdl"
    wdl.parent.mkdir()
    wdl.write_text(HELLO)
    who = ["Ann", "Bob", "Cyd"]
    with ThreadPoolExecutor(3) as pool:
        submitted = list(pool.map(lambda w: upload.submit(bucket, wdl, {"hello.who": w}), who))
    names = [name for name, _ in submitted]
    assert len(set(names)) == 3 and all(n.startswith("hello-") for n in names)
    assert len({run_id for _, run_id in submitted}) == 3
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda s: run_end(stack, s[0], s[1], timeout=300), submitted))
    assert [r.status for r in results] == ["SUCCEEDED"] * 3, [r.document for r in results]
    assert [r.document["outputs"]["hello.out"] for r in results] == who


def test_submits_under_one_name_at_once_each_run_their_own_workflow_and_options(stack, tmp_path):
    """Three submits of three workflows with one --name at the same moment: each uploads into
    runs/<name>/ in its turn (its claim on the name), so each run runs its own WDL with its own
    options (they ran one another's: the folder was shared), and a file an earlier submission
    left in the folder (its miniwdl.cfg) is not part of a later one's run."""
    bucket = stack.outputs["BucketName"]
    folders = []
    for who in ("Ann", "Bob", "Cyd"):
        folder = tmp_path / who
        folder.mkdir()
        (folder / "echo.wdl").write_text(HELLO.replace('echo "~{who}"', f'echo "~{{who}} by {who}"'))
        folders.append(folder)
    (folders[0] / "miniwdl.cfg").write_text("[task_runtime]\ndefaults = {\"maxRetries\": 2}\n")
    upload.submit(bucket, folders[0] / "echo.wdl", {"hello.who": "first"}, name="shared")  # leaves its miniwdl.cfg

    def submit(folder):
        options = upload.run_options.parse({"labels": {"who": folder.name}})
        return upload.prepare(folder / "echo.wdl", {"hello.who": folder.name}, "shared", options).upload(bucket, interval=0.05)

    with ThreadPoolExecutor(3) as pool:
        submitted = list(pool.map(submit, folders))
    assert len({run_id for _, run_id in submitted}) == 3
    results = [run_end(stack, name, run_id, timeout=300) for name, run_id in submitted]
    assert [r.status for r in results] == ["SUCCEEDED"] * 3, [r.document for r in results]
    assert [r.document["outputs"]["hello.out"] for r in results] == ["Ann by Ann", "Bob by Bob", "Cyd by Cyd"]
    s3 = aws.client("s3")
    for folder, result in zip(folders, results, strict=True):
        bucket_, prefix = s3io.split(result.results)
        record = json.loads(s3.get_object(Bucket=bucket_, Key=prefix + "run.json")["Body"].read())
        assert record["options"]["labels"] == {"who": folder.name}
        sources = {o["Key"].rsplit("/source/", 1)[1] for o in s3.list_objects_v2(Bucket=bucket_, Prefix=prefix + "source/")["Contents"]}
        assert ("miniwdl.cfg" in sources) == (folder.name == "Ann"), sources
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="runs/shared/.submitting")  # (each claim given up)
