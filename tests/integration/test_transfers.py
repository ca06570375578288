"""Big directories move in parallel (s3io.Transfers: one bounded s3transfer TransferManager),
against in-process moto S3: every object arrives under its relative path, the counts reach m/m,
status.json shows the phase at a bounded rate, and a stop mid-transfer stops it."""

import json
import os
import threading

import pytest

from miniwdl_fargate import aws, progress, runs, s3io, status
from miniwdl_fargate.lifecycle import DriverStopped
from tests.integration.moto_objects import write_objects

N = 300  # objects: many times the transfer concurrency, small enough for a quick test


def rel_paths(n: int = N) -> list[str]:
    return [f"d{i % 7}/sub{i % 3}/f{i}.txt" for i in range(n)]


@pytest.fixture
def s3(moto_aws):
    client = aws.client("s3")
    client.create_bucket(Bucket="data")
    return client


@pytest.fixture
def prefix_of_n(s3):
    """N objects under in/, written straight into moto's S3 (``write_objects``: through the
    API, the seeding took more CPU than the transfers under test)."""
    write_objects("data", ((f"in/{rel}", rel.encode()) for rel in rel_paths()))
    assert s3.list_objects_v2(Bucket="data", Prefix="in/")["KeyCount"] == N
    return "in/"


class Counts:
    """A s3io.Counted that remembers every (done, total) it was told."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def __call__(self, done: int, total: int) -> None:
        with self._lock:
            self.seen.append((done, total))


def files_under(root) -> dict[str, str]:
    return {
        os.path.relpath(os.path.join(folder, name), root): open(os.path.join(folder, name)).read()
        for folder, _, names in os.walk(root)
        for name in names
    }


def upload_items(tmp_path) -> list[tuple[str, str, str]]:
    """N local files under tmp_path/out, each holding its relative path, as upload items to
    s3://data/results/<relative path>."""
    items = []
    for rel in rel_paths():
        path = tmp_path / "out" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
        items.append((str(path), "data", f"results/{rel}"))
    return items


def test_a_prefix_of_many_objects_arrives_whole_with_its_relative_paths(s3, prefix_of_n, tmp_path):
    counts = Counts()
    with s3io.Transfers(counted=counts) as transfers:
        got = s3io.download_prefix("data", prefix_of_n, str(tmp_path / "dest"), transfers=transfers)
    assert len(got) == N
    assert files_under(tmp_path / "dest") == {rel: rel for rel in rel_paths()}  # nothing else (no temporary files)
    assert counts.seen[-1] == (N, N) and max(done for done, _ in counts.seen) == N


def test_many_files_upload_with_their_keys_and_counts(s3, tmp_path):
    items = upload_items(tmp_path)
    counts = Counts()
    with s3io.Transfers(counted=counts) as transfers:
        uris = transfers.upload(items)
    assert uris == [f"s3://data/results/{rel}" for rel in rel_paths()]
    keys = {o["Key"] for o in s3io.list_keys("data", "results/")}
    assert keys == {f"results/{rel}" for rel in rel_paths()}
    assert s3.get_object(Bucket="data", Key="results/d1/sub1/f1.txt")["Body"].read() == b"d1/sub1/f1.txt"
    assert counts.seen[-1] == (N, N)


def test_a_fifo_is_refused_before_anything_is_uploaded(s3, tmp_path):
    (tmp_path / "a.txt").write_text("a")
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ValueError, match=f"not a regular file, not uploaded: {tmp_path / 'pipe'}"):
        with s3io.Transfers() as transfers:
            transfers.upload([(str(tmp_path / "a.txt"), "data", "a.txt"), (str(tmp_path / "pipe"), "data", "pipe")])
    assert list(s3io.list_keys("data", "")) == []


@pytest.mark.parametrize("direction", ["download", "upload"])
def test_a_stop_mid_transfer_stops_it(s3, prefix_of_n, tmp_path, direction):
    """The stop check (the driver's StopSignals.check) starts saying stop once 50 objects are
    done: the transfer raises DriverStopped, and what is left is neither moved nor half-written.
    (With S3, a transfer's progress callback asks the stop check as its bytes move; in-process
    moto moves them without calling it, and answers so fast that on a busy machine every transfer
    could be done before the waiting thread asked. So each request asks it as it starts, as the
    callback would.)"""
    told = threading.Event()

    def stop_check(*_):
        if told.is_set():
            raise DriverStopped("SIGTERM", "staging the inputs")

    def counted(done: int, total: int) -> None:
        if done >= 50:
            told.set()

    def as_its_bytes_move(**_):
        stop_check(0)

    operation = "GetObject" if direction == "download" else "PutObject"
    aws.client("s3").meta.events.register(f"before-call.s3.{operation}", as_its_bytes_move)
    try:
        moved_before_the_stop(s3, tmp_path, direction, stop_check, counted)
    finally:
        aws.client("s3").meta.events.unregister(f"before-call.s3.{operation}", as_its_bytes_move)


def moved_before_the_stop(s3, tmp_path, direction, stop_check, counted):
    if direction == "download":
        with pytest.raises(DriverStopped):
            with s3io.Transfers(stop_check, counted, concurrency=4) as transfers:
                s3io.download_prefix("data", "in/", str(tmp_path / "dest"), transfers=transfers)
        arrived = files_under(tmp_path / "dest")
        assert 50 <= len(arrived) < N
        assert all(rel in set(rel_paths()) and content == rel for rel, content in arrived.items())
    else:
        items = upload_items(tmp_path)
        with pytest.raises(DriverStopped):
            with s3io.Transfers(stop_check, counted, concurrency=4) as transfers:
                transfers.upload(items)
        assert 50 <= len(list(s3io.list_keys("data", "results/"))) < N


@pytest.fixture
def reporter(s3):
    record = runs.RunRecord(
        run_id="big-0123abcd", name="big", bucket="data", submitted_at=runs.now_iso(),
        workflow="s3://data/w.wdl", inputs="s3://data/i.json", results="s3://data/r/",
    )
    status.update("data", record.run_id, lambda s: s, initial=status.new(record))
    return progress.StatusReporter("data", record.run_id, interval=3600)  # (no second write within a test)


def test_status_json_shows_the_phase_and_counts_at_a_bounded_rate(reporter):
    counter = reporter.counter("staging inputs")
    for done in range(N + 1):
        counter(done, N)
    current = status.read("data", "big-0123abcd")
    assert current.phase == "staging inputs 0/300"  # the first count was written, the rest waited for the interval
    counter.flush()
    current = status.read("data", "big-0123abcd")
    assert current.phase == "staging inputs 300/300"
    assert current.transfers == {"staging inputs": status.TransferCounts(done=N, total=N)}


def test_the_task_counts_do_not_claim_the_workflow_runs_while_inputs_stage(reporter):
    """The reporter's periodic publish (task counts) leaves a transfer phase alone until the
    run's first task: status.json does not say "running the workflow" while inputs stage."""
    counter = reporter.counter("staging inputs")
    counter(3, 10)
    reporter.publish()  # (no task launched yet)
    assert status.read("data", "big-0123abcd").phase == "staging inputs 3/10"


def test_staging_a_directory_input_counts_to_m_of_m_in_status_json(reporter, prefix_of_n, tmp_path):
    from miniwdl_fargate import staging

    (tmp_path / "w.wdl").write_text("version development\nworkflow w {\n  input { Directory d\n File f }\n}\n")
    (tmp_path / "inputs.json").write_text('{"w.d": "s3://data/in/", "w.f": "s3://data/in/d0/sub0/f0.txt"}')
    counter = reporter.counter("staging inputs")
    staged = staging.stage_s3_inputs(str(tmp_path / "w.wdl"), str(tmp_path / "inputs.json"), str(tmp_path / "store"), None, counter)
    counter.flush()

    doc = json.load(open(staged))
    assert files_under(doc["w.d"]) == {rel: rel for rel in rel_paths()}
    assert open(doc["w.f"]).read() == "d0/sub0/f0.txt"
    current = status.read("data", "big-0123abcd")
    assert current.phase == f"staging inputs {N + 1}/{N + 1}"  # the Directory's objects and the File
    assert current.transfers["staging inputs"] == status.TransferCounts(done=N + 1, total=N + 1)


def test_every_request_is_valid_and_a_listing_spares_a_head_per_object(s3, prefix_of_n, tmp_path):
    """What Transfers sends validates against botocore's S3 model; a download of a listed prefix
    is ListObjectsV2 and one GetObject per object (the listing's sizes: no HeadObject)."""
    from botocore.validate import ParamValidator

    sent: list[str] = []
    problems: list[str] = []

    def check(params, model, **_):
        sent.append(model.name)
        report = ParamValidator().validate(params, model.input_shape)
        if report.has_errors():
            problems.append(report.generate_report())

    s3.meta.events.register("provide-client-params.s3.*", check)
    with s3io.Transfers() as transfers:
        s3io.download_prefix("data", prefix_of_n, str(tmp_path / "dest"), transfers=transfers)
        transfers.upload([(os.path.join(tmp_path / "dest", "d0/sub0/f0.txt"), "data", "copy/f0.txt")])
    s3.meta.events.unregister("provide-client-params.s3.*", check)
    assert problems == []
    assert sorted(set(sent)) == ["GetObject", "ListObjectsV2", "PutObject"], {op: sent.count(op) for op in set(sent)}
    assert sent.count("GetObject") == N and sent.count("PutObject") == 1


def test_status_text_shows_the_phase_of_a_running_run(reporter):
    from miniwdl_fargate import client

    status.set_state("data", "big-0123abcd", "RUNNING")
    counter = reporter.counter("uploading outputs")
    counter(120, 50_000)
    text = client.status_text(status.read("data", "big-0123abcd").model_dump())
    assert "\nphase      uploading outputs 120/50000\n" in text


@pytest.mark.parametrize("single_put_bytes", [s3io.SINGLE_PUT_BYTES, 1], ids=["one-put", "transfer-manager"])
def test_one_file_uploads_whole_either_way_with_its_progress(s3, tmp_path, monkeypatch, single_put_bytes):
    """A file under the single-put size goes up in one PutObject (no transfer manager and its
    threads); a bigger one through boto3's upload_file. Either way the object is the file, the
    progress starts at 0 and ends with every byte, and the requests are valid (botocore checks
    each against the service model before sending)."""
    monkeypatch.setattr(s3io, "SINGLE_PUT_BYTES", single_put_bytes)
    path = tmp_path / "workflow.log"
    path.write_bytes(b"line\n" * 1000)
    seen: list[int] = []
    operations: list[str] = []
    s3.meta.events.register("before-call.s3.*", lambda model, **kwargs: operations.append(model.name))
    assert s3io.upload_file(str(path), "data", "runs/r/workflow.log", progress=seen.append) == "s3://data/runs/r/workflow.log"
    assert s3.get_object(Bucket="data", Key="runs/r/workflow.log")["Body"].read() == path.read_bytes()
    assert seen[0] == 0 and sum(seen) == path.stat().st_size
    assert operations[:1] == ["PutObject"]
    if single_put_bytes > path.stat().st_size:
        assert operations == ["PutObject", "GetObject"]  # (one request for the upload)


def test_an_object_replaced_after_it_was_named_is_never_staged_under_the_old_name(s3, tmp_path, monkeypatch):
    """Between the HeadObject (or the listing) staging names an input by and its download, a
    writer may replace the object: a small object's single GetObject named no ETag, so the new
    bytes were stored under the old ETag's path (and the call cache keys by that path). Every
    GetObject asks for the ETag (a replaced object is not staged: miniwdl downloads it itself,
    keyed by its new ETag), and a Directory's objects are those it listed, not more."""
    from miniwdl_fargate import staging

    s3.put_object(Bucket="data", Key="ref/one.txt", Body=b"first")
    s3.put_object(Bucket="data", Key="dir/a.txt", Body=b"listed")
    real_head, real_list = s3.head_object, staging.directory_objects

    def head_then_replaced(**kwargs):
        head = real_head(**kwargs)
        s3.put_object(Bucket="data", Key=kwargs["Key"], Body=b"replaced since")
        return head

    def listed_then_replaced(bucket, prefix):
        objects = real_list(bucket, prefix)
        s3.put_object(Bucket="data", Key="dir/a.txt", Body=b"replaced since")
        s3.put_object(Bucket="data", Key="dir/new.txt", Body=b"not listed")
        return objects

    monkeypatch.setattr(s3, "head_object", head_then_replaced)
    monkeypatch.setattr(staging, "directory_objects", listed_then_replaced)
    (tmp_path / "w.wdl").write_text("version development\nworkflow w {\n  input { Directory d\n File f }\n}\n")
    (tmp_path / "inputs.json").write_text('{"w.d": "s3://data/dir", "w.f": "s3://data/ref/one.txt"}')
    doc = json.load(open(staging.stage_s3_inputs(str(tmp_path / "w.wdl"), str(tmp_path / "inputs.json"), str(tmp_path / "store"))))
    # neither was staged: each stays the URI miniwdl downloads itself, and nothing is in the store
    assert doc == {"w.d": "s3://data/dir", "w.f": "s3://data/ref/one.txt"}
    assert [f for f in files_under(tmp_path / "store") if not f.endswith(".miniwdl-fargate-used")] == []
    # as they are now, both stage (listed and headed as they are)
    monkeypatch.setattr(s3, "head_object", real_head)
    monkeypatch.setattr(staging, "directory_objects", real_list)
    doc = json.load(open(staging.stage_s3_inputs(str(tmp_path / "w.wdl"), str(tmp_path / "inputs.json"), str(tmp_path / "store"))))
    assert open(doc["w.f"]).read() == "replaced since"
    assert files_under(doc["w.d"]) == {"a.txt": "replaced since", "new.txt": "not listed"}


def test_miniwdls_s3_downloads_are_named_by_what_the_object_is_now(moto_aws, tmp_path, monkeypatch):
    """miniwdl run on its own, day after day in one folder: its s3:// downloads were kept by URI
    alone and reused for good, so an input object replaced since ran as its old bytes. Each is
    kept by its ETag (a Directory by its listing's) now."""
    import logging

    s3 = aws.client("s3")
    s3.create_bucket(Bucket="data")
    monkeypatch.chdir(tmp_path)
    log = logging.getLogger("test")

    def fetched(kind, uri):
        (answer,) = (s3io.download_file if kind == "file" else s3io.download_directory)(None, log, uri)
        return answer["outputs"][kind]

    s3.put_object(Bucket="data", Key="ref.txt", Body=b"old")
    s3.put_object(Bucket="data", Key="dir/a.txt", Body=b"old")
    first, first_dir = fetched("file", "s3://data/ref.txt"), fetched("directory", "s3://data/dir/")
    assert open(first).read() == "old" and open(os.path.join(first_dir, "a.txt")).read() == "old"
    assert fetched("file", "s3://data/ref.txt") == first  # (unchanged: the same download)
    s3.put_object(Bucket="data", Key="ref.txt", Body=b"new")
    s3.put_object(Bucket="data", Key="dir/a.txt", Body=b"new")
    again, again_dir = fetched("file", "s3://data/ref.txt"), fetched("directory", "s3://data/dir/")
    assert again != first and open(again).read() == "new"
    assert again_dir != first_dir and open(os.path.join(again_dir, "a.txt")).read() == "new"
