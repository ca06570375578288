"""Three submits at once without a name, end to end in local mode: three runs, each with its own
inputs, all succeeding (default run names never collide; each run reads its own copies)."""

from concurrent.futures import ThreadPoolExecutor

from miniwdl_fargate import upload
from tests.workflows import HELLO


def test_three_concurrent_submits_without_a_name_are_three_runs_with_their_own_inputs(stack, tmp_path):
    bucket, machine = stack.outputs["BucketName"], stack.outputs["StateMachineArn"]
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
        results = list(pool.map(lambda s: upload.wait(bucket, machine, s[0], s[1], timeout=300), submitted))
    assert [r.status for r in results] == ["SUCCEEDED"] * 3, [r.document for r in results]
    assert [r.document["outputs"]["hello.out"] for r in results] == who
