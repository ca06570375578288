"""The call cache's key (``callcache.keys``): files by what they are, the key's parts and name,
one readable line per difference; ``explain``'s choice of call; the cache modes' settings."""

import hashlib

import pytest
import WDL

from miniwdl_fargate import config, driver
from miniwdl_fargate.callcache import explain, keys


@pytest.fixture
def cache(tmp_path):
    (tmp_path / "cache").mkdir()
    return tmp_path / "cache"


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_a_staged_s3_input_is_its_uri_and_etag(cache):
    staged = write(cache / "s3" / "data" / "refs" / "hg38.fa" / "abc123" / "hg38.fa", "ACGT")
    assert keys.Identities(str(cache)).of(staged) == "s3://data/refs/hg38.fa#etag=abc123"


def test_each_file_of_a_staged_directory_is_named_by_its_path_in_it(cache):
    """A staged Directory input (``<cache>/s3/<bucket>/<prefix>/<listing digest>/<name>/...``): the
    Directory is its URI and listing digest, each of its files that and its own path; every file of
    it was the Directory's identity (a call given x.txt reused the result of one given y.txt)."""
    from miniwdl_fargate.efs_cleanup import USED_MARKER

    entry = cache / "s3" / "data" / "runs" / "d1" / ("c" * 32)
    write(entry / USED_MARKER, "")
    files = {rel: write(entry / "d1" / rel, rel) for rel in ("x.txt", "y.txt", "a/p.txt", "a/q.txt")}
    ids = keys.Identities(str(cache))
    found = {rel: ids.of(path) for rel, path in files.items()}
    base = "s3://data/runs/d1#etag=" + "c" * 32
    assert found == {rel: f"{base}/{rel}" for rel in files}
    assert ids.of(str(entry / "d1"), directory=True) == base
    # a staged file's entry, marked, is as before
    staged = cache / "s3" / "data" / "refs" / "hg38.fa" / "abc123"
    write(staged / USED_MARKER, "")
    assert ids.of(write(staged / "hg38.fa", "ACGT")) == "s3://data/refs/hg38.fa#etag=abc123"
    # a file below an unmarked entry that is not one's plain shape is known by its content
    loose = write(cache / "s3" / "data" / "runs" / "d2" / ("e" * 32) / "d2" / "a" / "p.txt", "p")
    assert ids.of(loose) == "sha256:" + hashlib.sha256(b"p").hexdigest() + "/p.txt"


def test_a_file_fetched_back_by_the_cache_is_its_digest_without_reading_it(cache):
    fetched = write(cache / "files" / ("f" * 64) / "out.txt", "not what the name says")
    assert keys.Identities(str(cache)).of(fetched) == "sha256:" + "f" * 64 + "/out.txt"
    tree = cache / "dirs" / ("e" * 64) / "results"
    write(tree / "a.txt", "a")
    assert keys.Identities(str(cache)).of(str(tree), directory=True) == "tree:" + "e" * 64 + "/results"


def test_any_other_file_is_the_digest_of_its_content_and_its_name_wherever_it_lies(cache, tmp_path):
    one = write(tmp_path / "runs" / "r1" / "call-a" / "work" / "out.txt", "hello\n")
    two = write(tmp_path / "runs" / "r2" / "out.txt", "hello\n")
    ids = keys.Identities(str(cache))
    expected = "sha256:" + hashlib.sha256(b"hello\n").hexdigest() + "/out.txt"
    assert ids.of(one) == ids.of(two) == expected
    # a task sees a file's name (basename(f): a sample's name): the same content under another
    # name is another input, and explain says that only the name changed
    other = write(tmp_path / "runs" / "r2" / "ann.txt", "hello\n")
    assert ids.of(other) == expected.replace("/out.txt", "/ann.txt")
    assert keys.value_change(ids.of(one), ids.of(other)) == "file name changed (out.txt -> ann.txt; the same content)"


def test_a_files_digest_is_remembered_until_it_changes(cache, tmp_path, monkeypatch):
    path = write(tmp_path / "f.txt", "one")
    ids = keys.Identities(str(cache))
    first = ids.of(path)
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    assert ids.of(path) == first and opened == []
    monkeypatch.undo()
    write(tmp_path / "f.txt", "two, longer")
    assert ids.of(path) != first


def test_a_directory_is_the_digest_of_its_files_paths_and_contents(cache, tmp_path):
    for name in ("a", "b"):
        write(tmp_path / name / "x.txt", "x")
        write(tmp_path / name / "sub" / "y.txt", "y")
    ids = keys.Identities(str(cache))
    # (the same files under another name: another Directory to a task that sees its name)
    assert ids.of(str(tmp_path / "a"), directory=True).rsplit("/", 1)[0] == ids.of(str(tmp_path / "b"), directory=True).rsplit("/", 1)[0]
    assert ids.of(str(tmp_path / "a"), directory=True) != ids.of(str(tmp_path / "b"), directory=True)
    write(tmp_path / "b" / "sub" / "y.txt", "z")
    assert ids.of(str(tmp_path / "a"), directory=True) != keys.Identities(str(cache)).of(str(tmp_path / "b"), directory=True)


def test_a_uri_but_s3s_or_a_missing_path_stays_as_it_is(cache):
    """(An s3:// one is named by its ETag: tests/integration/test_s3_call_cache.py.)"""
    ids = keys.Identities(str(cache))
    assert ids.of("https://example.org/key.txt") == "https://example.org/key.txt"
    assert ids.of("/nowhere/at/all") == "/nowhere/at/all"


def inputs(**values):
    env = WDL.Env.Bindings()
    for name, value in values.items():
        env = env.bind(name, value)
    return env


def test_the_parts_name_each_file_input_by_identity_and_keep_other_values(cache):
    staged = write(cache / "s3" / "b" / "k.txt" / "e1" / "k.txt", "data")
    env = inputs(
        name=WDL.Value.String("ann"),
        refs=WDL.Value.Array(WDL.Type.File(), [WDL.Value.File(staged)]),
        n=WDL.Value.Int(3),
    )
    found = keys.input_identities(env, keys.Identities(str(cache)))
    assert found == {"name": "ann", "refs": ["s3://b/k.txt#etag=e1"], "n": 3}
    parts = keys.key_parts("greet/abc/xyz", found, {"docker": "ubuntu:22.04"})
    assert parts == {
        "version": keys.KEY_VERSION, "task": "greet", "wdl_digest": "abc", "inputs": found,
        "defaults": {"docker": "ubuntu:22.04"},
    }


def test_the_entry_name_changes_with_any_part_and_only_with_them():
    parts = keys.key_parts("greet/abc/ignored", {"name": "ann"}, {})
    name = keys.entry_name(parts)
    assert name.startswith("greet/abc/") and len(name.rsplit("/", 1)[1]) == 32
    assert keys.entry_name(keys.key_parts("greet/abc/other", {"name": "ann"}, {})) == name
    assert keys.entry_name(keys.key_parts("greet/abc/x", {"name": "bob"}, {})) != name
    assert keys.entry_name(keys.key_parts("greet/def/x", {"name": "ann"}, {})) != name
    assert keys.entry_name(keys.key_parts("greet/abc/x", {"name": "ann"}, {"docker": "debian"})) != name


def test_only_the_runtime_defaults_that_change_a_result_are_in_the_key():
    assert keys.result_defaults({"docker": "ubuntu", "cpu": 4, "memory": "8G", "maxRetries": 2, "gpu": False}) == {
        "docker": "ubuntu", "gpu": False,
    }


def test_each_difference_is_one_readable_line():
    before = keys.key_parts("count/d1/x", {
        "reference": "s3://runs/data/ref.txt#etag=aaa", "name": "ann", "made": "sha256:" + "1" * 64, "old": 1,
    }, {"docker": "ubuntu:22.04"})
    now = keys.key_parts("count/d2/x", {
        "reference": "s3://runs/data/ref.txt#etag=bbb", "name": "bob", "made": "sha256:" + "2" * 64, "new": [1, 2],
    }, {"docker": "ubuntu:24.04"})
    assert keys.differences(now, before) == [
        "the task's WDL (command, runtime or outputs) changed: digest d1 -> d2",
        "input made: file content changed (sha256:111111111111... -> sha256:222222222222...)",
        'input name: "ann" -> "bob"',
        "input new: not given before, now [1, 2]",
        "input old: 1 before, not given now",
        "input reference: s3://runs/data/ref.txt changed (ETag aaa -> bbb)",
        'runtime default docker: "ubuntu:22.04" -> "ubuntu:24.04"',
    ]
    assert keys.differences(now, now) == []


def test_an_s3_input_moved_to_another_object_shows_both_uris():
    line = keys.value_change("s3://b/one.txt#etag=a", "s3://b/two.txt#etag=a")
    assert line == '"s3://b/one.txt#etag=a" -> "s3://b/two.txt#etag=a"'


CALLS = [
    {"call": ".", "task": "chain"},
    {"call": "call-make", "task": "make"},
    {"call": "call-greet-0-ann", "task": "greet"},
    {"call": "call-greet-1-bob", "task": "greet"},
    {"call": "call-greet-10-cy", "task": "greet"},
    {"call": "call-sub/call-inner", "task": "inner"},
]


@pytest.mark.parametrize("asked, found", [
    ("call-make", "call-make"), ("make", "call-make"), ("call-greet-1", "call-greet-1-bob"),
    ("call-greet-10-cy", "call-greet-10-cy"), ("call-greet-10", "call-greet-10-cy"),
    ("call-inner", "call-sub/call-inner"), ("inner", "call-sub/call-inner"), (".", "."),
])
def test_explain_finds_a_call_by_its_directory_or_its_tasks_name(asked, found):
    assert explain.pick(CALLS, asked)["call"] == found


def test_explain_asks_which_call_when_a_name_fits_several_or_none():
    with pytest.raises(explain.ExplainError, match="'greet' names 3 calls: call-greet-0-ann, call-greet-1-bob, call-greet-10-cy; name one"):
        explain.pick(CALLS, "greet")
    with pytest.raises(explain.ExplainError, match=r"no call 'nope' in this run; its calls: \. \(the workflow\), call-make, call-greet-0-ann"):
        explain.pick(CALLS, "nope")


def test_explain_takes_a_call_named_exactly_before_sub_workflow_calls_of_that_id():
    calls = [{"call": "call-say_hi", "task": "say_hi"}, {"call": "call-inner/call-say_hi", "task": "say_hi"},
             {"call": "call-inner-1/call-say_hi", "task": "say_hi"}]
    assert explain.pick(calls, "call-say_hi")["call"] == "call-say_hi"
    assert explain.pick(calls, "call-inner/call-say_hi")["call"] == "call-inner/call-say_hi"
    with pytest.raises(explain.ExplainError, match="'say_hi' names 3 calls"):
        explain.pick(calls, "say_hi")


def test_explain_of_a_call_in_a_run_reused_whole_says_so():
    """A run whose whole workflow came from the call cache looked none of its calls up: asked
    about one, explain says that and where the workflow came from (it listed "its calls: .")."""
    whole = [{"call": ".", "task": "one", "outcome": "reused", "source": {"run": "one-1-2d7c9a10", "call": "."}}]
    with pytest.raises(explain.ExplainError) as info:
        explain.pick(whole, "up")
    assert str(info.value) == ("no call 'up' in this run: the whole workflow was reused from the call cache (run "
                               "one-1-2d7c9a10), so none of its calls ran or was looked up; ask about '.' for more")


@pytest.mark.parametrize("text, mode", [("true", True), ("FALSE", False), ("read", "read"), (" write ", "write")])
def test_the_stacks_call_cache_setting_reads_the_four_modes(text, mode):
    assert config.parse_call_cache(text) == mode


def test_a_bad_call_cache_setting_says_what_it_may_be():
    with pytest.raises(ValueError, match="must be true, false, read or write"):
        config.parse_call_cache("sometimes")


@pytest.mark.parametrize("mode, get, put", [
    ("true", "true", "true"), ("false", "false", "false"), ("read", "true", "false"), ("write", "false", "true"),
])
def test_the_stacks_mode_becomes_minwdls_get_and_put(monkeypatch, mode, get, put):
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__CALL_CACHE", mode)
    assert driver.call_cache_defaults() == {"get": get, "put": put}


def test_the_run_cfg_chooses_the_s3_backend_only_with_a_cache_uri(tmp_path, monkeypatch):
    monkeypatch.delenv("MINIWDL_CFG", raising=False)
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__CALL_CACHE", "true")
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    path = driver.run_cfg(str(tmp_path / "one"), str(tmp_path / "cache"), str(tmp_path), {}, cache_uri="s3://runs/cache/")
    text = open(path).read()
    assert "backend = aws_s3" in text and "call_cache_uri = s3://runs/cache/" in text
    path = driver.run_cfg(str(tmp_path / "two"), str(tmp_path / "cache"), str(tmp_path), {"call_cache": "read"})
    text = open(path).read()
    assert "backend" not in text and "get = true" in text and "put = false" in text


@pytest.mark.parametrize("text", ["abc/x.txt", "f" * 64 + "/../x", "f" * 64 + "/a/b", "f" * 64 + "/", "f" * 64 + "/.."])
def test_a_stored_outputs_name_never_leads_outside_the_store(text):
    from miniwdl_fargate.callcache.s3cache import _stored_name

    with pytest.raises(ValueError, match="not a stored output's name"):
        _stored_name(text)


def test_a_stored_outputs_name_is_its_digest_and_its_file_name():
    from miniwdl_fargate.callcache.s3cache import _stored_name

    assert _stored_name("f" * 64 + "/greeting.txt") == ("f" * 64, "greeting.txt")


def test_a_fifo_is_never_opened_it_counts_by_its_path(cache, tmp_path):
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    ids = keys.Identities(str(cache))
    assert ids.of(str(fifo)) == str(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    os.mkfifo(folder / "pipe")
    assert ids.of(str(folder), directory=True) == str(folder)
    with pytest.raises(keys.NotRegular, match="not a regular file: .*/folder/pipe"):
        ids.listing(str(folder))


def test_a_symbolic_link_in_a_directory_is_not_a_regular_file(cache, tmp_path):
    import os

    write(tmp_path / "folder" / "real.txt", "x")
    os.symlink("real.txt", tmp_path / "folder" / "link.txt")
    with pytest.raises(keys.NotRegular, match="link.txt"):
        keys.Identities(str(cache)).listing(str(tmp_path / "folder"))


TASK = """version 1.1
struct Duo {
  String first
  Int second
}
task t {
  input { Duo p }
  command <<< echo ~{p.first} >>>
  output { String said = read_string(stdout()) }
  runtime {
    docker: "ubuntu:22.04"
    cpu: 2  # two
    memory: "1 " +
      "GiB"
    maxRetries: 1
  }
}
"""


def task_of(text):
    doc = WDL.parse_document(text)
    doc.typecheck()
    return doc.tasks[0]


def test_the_tasks_digest_leaves_out_what_only_sizes_it():
    base = keys.result_digest(task_of(TASK))
    resized = TASK.replace("cpu: 2", "cpu: 16").replace('"1 " +\n      "GiB"', '"64 GiB"').replace("maxRetries: 1", "maxRetries: 3")
    assert keys.result_digest(task_of(resized)) == base
    assert task_of(resized).digest != task_of(TASK).digest  # (miniwdl's own would miss)
    for changed in (
        TASK.replace("ubuntu:22.04", "ubuntu:24.04"),
        TASK.replace("echo ~{p.first}", "echo ~{p.second}"),
        TASK.replace("Int second", "Float second"),
        TASK.replace("version 1.1", "version 1.2"),
    ):
        assert keys.result_digest(task_of(changed)) != base


def test_the_tasks_digest_is_miniwdls_when_nothing_only_sizes_it():
    """(miniwdl's private helpers are read as miniwdl reads them: the same text, the same digest)"""
    plain = TASK.replace("    cpu: 2  # two\n", "").replace('    memory: "1 " +\n      "GiB"\n', "").replace("    maxRetries: 1\n", "")
    assert keys.result_digest(task_of(plain)) == task_of(plain).digest
