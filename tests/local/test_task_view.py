"""What a WDL task command observes of its directory, through the whole local pipeline: the same
as under miniwdl's Docker backend. A command that resolves its working directory or its inputs
(``realpath``, ``pwd -P``, ``readlink -f``, Python's ``os.getcwd()``) and names outputs by those
absolute paths succeeds; ``TMPDIR`` is a private scratch directory outside the work directory."""

import json
import os
import re
from pathlib import Path

import pytest

from miniwdl_fargate import aws
from miniwdl_fargate import upload as local_run
from tests.waiting import run_end

RESOLVING_WDL = r"""
version development
workflow resolving {
  input { File reads }
  call resolve { input: reads = reads }
  call consume { input: made = resolve.by_realpath }
  output {
    File by_realpath = resolve.by_realpath
    File by_pwd = resolve.by_pwd
    File by_getcwd = resolve.by_getcwd
    File input_copy = resolve.input_copy
    Array[File] globbed = resolve.globbed
    Directory folder = resolve.folder
    String facts = resolve.facts
    Int consumed = consume.n
  }
}
task resolve {
  input { File reads }
  command <<<
    set -eu
    here=$(realpath .)
    p=$(pwd -P)
    echo realpath > "$here/by_realpath.txt"
    echo pwd > "$p/by_pwd.txt"
    python3 -c 'import os; open(os.path.join(os.getcwd(), "by_getcwd.txt"), "w").write("getcwd\n")'
    cp "$(readlink -f '~{reads}')" "$p/input_copy.txt"
    mkdir -p "$here/folder/sub" && echo leaf > "$here/folder/sub/leaf.txt"
    echo a > "$p/g1.part" && echo b > "$p/g2.part"
    echo "$here" > "$here/here.txt"
    echo "$p" > "$here/pwd.txt"
    echo "${TMPDIR:-unset}" > tmpdir.txt
    touch "$TMPDIR/scratch-works"
    case "$(readlink -f '~{reads}')" in "$here"/*) echo inside > input_where.txt ;; *) echo outside > input_where.txt ;; esac
  >>>
  output {
    File by_realpath = read_string("here.txt") + "/by_realpath.txt"
    File by_pwd = read_string("pwd.txt") + "/by_pwd.txt"
    File by_getcwd = read_string("here.txt") + "/by_getcwd.txt"
    File input_copy = read_string("pwd.txt") + "/input_copy.txt"
    Array[File] globbed = glob("*.part")
    Directory folder = read_string("here.txt") + "/folder"
    String facts = read_string("tmpdir.txt") + " " + read_string("input_where.txt")
  }
}
task consume {
  input { File made }
  command <<< cat "$(realpath '~{made}')" | wc -l >>>
  output { Int n = read_int(stdout()) }
}
"""


def read(s3, uri):
    bucket, key = uri[len("s3://"):].split("/", 1)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_outputs_named_by_resolved_absolute_paths_succeed(stack, s3, tmp_path, monkeypatch):
    from moto.ecs.models import EC2ContainerServiceBackend

    # (the run's own task definitions are deleted at its end: what was registered is seen as it was)
    registered = []
    real = EC2ContainerServiceBackend.register_task_definition

    def spy(self, family, container_definitions, *args, **kwargs):
        if "-task-" in family:
            registered.append((family, container_definitions))
        return real(self, family, container_definitions, *args, **kwargs)

    monkeypatch.setattr(EC2ContainerServiceBackend, "register_task_definition", spy)
    wdl = tmp_path / "resolving.wdl"
    wdl.write_text(RESOLVING_WDL)
    reads = tmp_path / "reads.txt"
    reads.write_text("ACGT\n")
    bucket = stack.outputs["BucketName"]
    s3.put_object(Bucket=bucket, Key="data/reads.txt", Body=reads.read_bytes())
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"resolving.reads": f"s3://{bucket}/data/reads.txt"}))
    name, run_id = local_run.submit(bucket, wdl, inputs, name="resolving")
    result = run_end(stack, name, run_id, timeout=300)
    assert result.status == "SUCCEEDED", json.dumps(result.document, indent=1)[:3000]
    out = result.document["outputs"]
    assert read(s3, out["resolving.by_realpath"]) == b"realpath\n"
    assert read(s3, out["resolving.by_pwd"]) == b"pwd\n"
    assert read(s3, out["resolving.by_getcwd"]) == b"getcwd\n"
    assert read(s3, out["resolving.input_copy"]) == b"ACGT\n"
    assert sorted(read(s3, uri) for uri in out["resolving.globbed"]) == [b"a\n", b"b\n"]
    assert read(s3, out["resolving.folder"].rstrip("/") + "/sub/leaf.txt") == b"leaf\n"
    assert out["resolving.consumed"] == 1
    tmpdir, where = out["resolving.facts"].split()
    # scratch is the container's own (not EFS, not the work directory); inputs resolve to real
    # files inside the work directory (hard links), as bind-mounted inputs do under Docker
    assert tmpdir.startswith("/tmp/miniwdl.") and where == "inside"
    # and on Fargate's terms: every WDL task's command came from the task definition's entryPoint
    assert registered and all(containers[0]["entryPoint"] == ["/bin/sh", "-c"] for _, containers in registered)
    # the run's own task definitions are deregistered, then deleted, when it ends: none is left
    # listed (https://docs.aws.amazon.com/AmazonECS/latest/userguide/task-definition-state.html)
    ecs = aws.client("ecs")
    listed = [a for status in ("ACTIVE", "INACTIVE") for a in ecs.list_task_definitions(status=status)["taskDefinitionArns"]]
    families = {family for family, _ in registered}
    assert not [a for a in listed if a.rsplit("/", 1)[1].split(":")[0] in families], listed


WRITING_WDL = r"""
version 1.1
workflow writing {
  input { File data }
  call scribble { input: f = data }
  call scribble as again { input: f = data }
  output {
    String first = scribble.attempt
    String second = again.attempt
    String seen_after = again.content
    Array[String] who = [scribble.who, again.who]
  }
}
task scribble {
  input { File f }
  command <<<
    # (who the task is and what the file is, to tell why if it ever could write)
    echo "uid $(id -u) caps $(grep CapEff /proc/self/status | cut -f2) file $(stat -c '%a %u %i %h' '~{f}')" > who.txt
    if echo tampered >> '~{f}' 2>/dev/null; then echo wrote; else echo refused; fi
    if : > '~{f}' 2>/dev/null; then echo truncated; else echo kept; fi
    cat '~{f}' > content.txt
  >>>
  output {
    String attempt = sub(read_string(stdout()), "\n", " ")
    String content = read_string("content.txt")
    String who = read_string("who.txt")
  }
}
"""


def test_a_task_cannot_modify_its_input_files(stack, s3, tmp_path):
    """As under miniwdl's Docker backend (inputs mounted read-only): writing an input fails in
    the task, and the staged copy every other task and later run links to never changes."""
    wdl = tmp_path / "writing.wdl"
    wdl.write_text(WRITING_WDL)
    bucket = stack.outputs["BucketName"]
    s3.put_object(Bucket=bucket, Key="data/precious.txt", Body=b"precious\n")
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"writing.data": f"s3://{bucket}/data/precious.txt"}))
    name, run_id = local_run.submit(bucket, wdl, inputs, name="writing")
    result = run_end(stack, name, run_id, timeout=300)
    assert result.status == "SUCCEEDED", json.dumps(result.document, indent=1)[:3000]
    out = result.document["outputs"]
    assert out["writing.first"] == "refused kept" and out["writing.second"] == "refused kept", out["writing.who"]
    assert out["writing.seen_after"] == "precious"


ECHO_WDL = r"""
version 1.1
workflow greet {
  input { Array[String] names }
  scatter (name in names) { call hello { input: name = name } }
  output { Array[String] said = hello.said }
}
task hello {
  input { String name }
  command <<< echo "Hello, ~{name}!" >>>
  output { String said = read_string(stdout()) }
}
"""


def test_characters_beyond_the_bmp_reach_the_command_however_the_json_escapes_them(stack, tmp_path):
    """An emoji written as a JSON surrogate-pair escape ("\\ud83d\\ude00", as Python's json and
    many tools write it) or plainly: the command gets the same characters (miniwdl alone reads
    the escaped form as lone surrogates and fails the task)."""
    wdl = tmp_path / "greet.wdl"
    wdl.write_text(ECHO_WDL)
    names = ["😀 Ünï", "日本"]
    bucket = stack.outputs["BucketName"]
    for i, ascii_only in enumerate((True, False)):
        inputs = tmp_path / f"inputs{i}.json"
        inputs.write_text(json.dumps({"greet.names": names}, ensure_ascii=ascii_only), encoding="utf-8")
        name, run_id = local_run.submit(bucket, wdl, inputs, name=f"greet-{i}")
        result = run_end(stack, name, run_id, timeout=300)
        assert result.status == "SUCCEEDED", json.dumps(result.document)[:2000]
        assert result.document["outputs"]["greet.said"] == [f"Hello, {n}!" for n in names]


HASHED_WDL = r"""
version 1.1
workflow hashed {
  input { Array[File] fs }
  call names { input: fs = fs }
  output { File hash = names.hash  File query = names.query  String seen = names.seen }
}
task names {
  input { Array[File] fs }
  command <<<
    for f in ~{sep=" " fs}; do basename "$f"; done > seen.txt
    cat ~{sep=" " fs} > 'h#1.txt'
    echo query > 'q?.txt'
  >>>
  output { File hash = "h#1.txt"  File query = "q?.txt"  String seen = read_string("seen.txt") }
}
"""


def test_file_names_with_hash_and_question_mark_go_in_and_come_out(stack, s3, tmp_path):
    """'#' and '?' are a file name's own characters, in an S3 key too: local inputs so named are
    staged and found, outputs so named are published, downloaded, and taken by the next run as
    s3:// inputs (a URL parser cut the key at them: "staged/.../x#1.txt does not exist")."""
    from miniwdl_fargate import client

    wdl = tmp_path / "hashed.wdl"
    wdl.write_text(HASHED_WDL)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x#1.txt").write_text("hash\n")
    (tmp_path / "data" / "a?b.txt").write_text("question\n")
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"hashed.fs": ["data/x#1.txt", "data/a?b.txt"]}))
    bucket = stack.outputs["BucketName"]
    name, run_id = local_run.submit(bucket, wdl, inputs, name="hashed")
    first = run_end(stack, name, run_id, timeout=300)
    assert first.status == "SUCCEEDED", json.dumps(first.document, indent=1)[:3000]
    out = first.document["outputs"]
    assert out["hashed.seen"] == "x#1.txt\na?b.txt"
    assert out["hashed.hash"].endswith("/h#1.txt") and out["hashed.query"].endswith("/q?.txt")
    assert read(s3, out["hashed.hash"]) == b"hash\nquestion\n"
    got = client.download_outputs(out, str(tmp_path / "results"), first.results)
    assert sorted(os.path.basename(p) for p in got) == ["h#1.txt", "q?.txt"]
    assert [Path(p).read_text() for p in sorted(got)] == ["hash\nquestion\n", "query\n"]
    # an output gone from S3 since: the download says which
    gone_bucket, gone_key = out["hashed.query"][len("s3://"):].split("/", 1)
    s3.copy_object(Bucket=gone_bucket, Key=gone_key + ".kept", CopySource={"Bucket": gone_bucket, "Key": gone_key})
    s3.delete_object(Bucket=gone_bucket, Key=gone_key)
    with pytest.raises(client.ClientError, match=re.escape(f"--download: {out['hashed.query']} is not in S3")):
        client.download_outputs(out, str(tmp_path / "again"), first.results)
    s3.copy_object(Bucket=gone_bucket, Key=gone_key, CopySource={"Bucket": gone_bucket, "Key": gone_key + ".kept"})
    # the published URIs, as the next run's inputs
    inputs.write_text(json.dumps({"hashed.fs": [out["hashed.hash"], out["hashed.query"]]}))
    name, run_id = local_run.submit(bucket, wdl, inputs, name="rehashed")
    second = run_end(stack, name, run_id, timeout=300)
    assert second.status == "SUCCEEDED", json.dumps(second.document, indent=1)[:3000]
    assert second.document["outputs"]["hashed.seen"] == "h#1.txt\nq?.txt"
    assert read(s3, second.document["outputs"]["hashed.hash"]) == b"hash\nquestion\nquery\n"
