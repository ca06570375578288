"""Local mode's fork servers build miniwdl's WDL parsers and parse botocore's models once, before
they fork (forkserver.build_wdl_parsers; forkserver.preload_aws: aws.share_data_loaders,
aws.preload_models): a child then builds no parser for a workflow of any WDL version, and a
client it makes in a new session, as each Lambda environment and driver makes, reads no JSON."""

import json
import re
from pathlib import Path

import boto3
import botocore.loaders
import lark
import pytest
import WDL
import WDL._parser

from miniwdl_fargate import aws
from miniwdl_fargate.local import driver_zygote, forkserver, lambda_zygote
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def files_read(monkeypatch):
    """The botocore data files read from now on."""
    read = []
    original = botocore.loaders.JSONFileLoader.load_file

    def load_file(self, file_path):
        read.append(file_path)
        return original(self, file_path)

    monkeypatch.setattr(botocore.loaders.JSONFileLoader, "load_file", load_file)
    return read


def test_a_client_of_a_preloaded_service_in_a_new_session_reads_no_file(files_read):
    aws.share_data_loaders()  # (as the tests' process already does, and each fork server does)
    aws.preload_models(["sqs"])
    assert any("sqs" in path for path in files_read)  # read once, here
    files_read.clear()
    client = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="eu-west-1").client("sqs")
    assert client.meta.service_model.service_name == "sqs"
    assert client.get_paginator("list_queues") is not None  # (its paginators' model too)
    assert files_read == []


def test_sharing_the_loaders_again_keeps_what_they_parsed(files_read):
    """The stack's process calls it as it starts (moto's modules make sessions as they load), and
    so may a test's process that already did: what was parsed stays parsed."""
    aws.share_data_loaders()
    aws.preload_models(["sns"])
    files_read.clear()
    aws.share_data_loaders()
    boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="us-west-2").client("sns")
    assert files_read == []


def test_a_new_session_does_not_grow_the_shared_loaders_search_paths():
    aws.share_data_loaders()
    boto3.session.Session(region_name="us-east-1").client("s3")
    paths = boto3.session.Session(region_name="us-east-1")._loader.search_paths
    assert len(paths) == len(set(paths))


def test_the_fork_servers_preload_every_service_their_children_call_and_no_other():
    package = REPO / "plugin" / "miniwdl_fargate"
    called, elsewhere = {"sts"}, set()  # (sts: aws.region())
    for source in [*package.rglob("*.py"), *(REPO / "functions").rglob("*.py")]:
        services = set(re.findall(r'aws\.client\("([a-z0-9-]+)"', source.read_text()))
        in_a_child = not (source.is_relative_to(package) and source.relative_to(package).as_posix() in forkserver.NOT_IN_A_CHILD)
        (called if in_a_child else elsewhere).update(services)
    assert {"s3", "ecs", "stepfunctions"} <= called
    assert called - set(forkserver.RARELY_CALLED) == set(forkserver.AWS_SERVICES), called ^ set(forkserver.AWS_SERVICES)
    assert set(forkserver.RARELY_CALLED) <= called
    assert {"cloudformation", "lambda", "ec2", "iam"} <= elsewhere  # (each module named is there, and calls some)


def test_after_build_wdl_parsers_no_version_of_wdl_builds_a_parser(monkeypatch):
    monkeypatch.setattr(WDL._parser, "_lark_cache", {})
    forkserver.build_wdl_parsers()
    assert WDL._parser._lark_cache

    def no_new_parser(*args, **kwargs):
        raise AssertionError("a Lark parser was built after build_wdl_parsers")

    monkeypatch.setattr(lark, "Lark", no_new_parser)
    monkeypatch.setattr(WDL._parser.lark, "Lark", no_new_parser)  # (wdl_parsers' caching Lark, if in use)
    for version in forkserver.WDL_VERSIONS:
        header = "" if version == "draft-2" else f"version {version}\n"
        WDL.parse_document(header + "workflow hello { call greet }\ntask greet { command { echo hi } }\n")
        WDL.parse_expr("[1, 2][0] + 1", version=version)


@pytest.mark.parametrize("preload", [lambda_zygote.preimport, driver_zygote.preload])
def test_both_fork_servers_build_the_parsers_and_parse_the_models(preload, monkeypatch):
    monkeypatch.setenv(lambda_zygote.PRELOAD_ENV, "1")  # (as the stack's Lambda runner starts its zygote)
    done = []
    monkeypatch.setattr(forkserver, "build_wdl_parsers", lambda: done.append("parsers"))
    monkeypatch.setattr(forkserver, "preload_aws", lambda: done.append("models"))
    monkeypatch.setattr(driver_zygote.driver, "cache_plugin_entry_points", lambda: None)  # (it replaces importlib's)
    preload()
    assert sorted(done) == ["models", "parsers"]


def test_a_driver_forked_from_the_fork_server_reads_its_task_metadata_without_reading_the_mime_types(monkeypatch, tmp_path):
    """A local driver's task metadata is a file:// URL, whose type urllib's file handler guesses:
    the fork server has read the system's type tables for every driver it forks."""
    import json
    import mimetypes

    from miniwdl_fargate import sweep

    # (as a fresh interpreter's, every table put back after the test) with a type table of its own
    for name in ("inited", "_db", "types_map", "common_types", "encodings_map", "suffix_map", "knownfiles"):
        monkeypatch.setattr(mimetypes, name, getattr(mimetypes, name))
    monkeypatch.setattr(mimetypes, "inited", False)
    monkeypatch.setattr(mimetypes, "_db", None)
    (tmp_path / "mime.types").write_text("application/x-test-type\ttesttype\n")
    monkeypatch.setattr(mimetypes, "knownfiles", [str(tmp_path / "mime.types")])
    monkeypatch.setattr(forkserver, "build_wdl_parsers", lambda: None)
    monkeypatch.setattr(forkserver, "preload_aws", lambda: None)
    monkeypatch.setattr(driver_zygote.driver, "cache_plugin_entry_points", lambda: None)
    driver_zygote.preload()
    assert mimetypes.inited and mimetypes.guess_type("f.testtype")[0] == "application/x-test-type"
    reads = []
    monkeypatch.setattr(mimetypes.MimeTypes, "read", lambda self, *args, **kwargs: reads.append(args))
    (tmp_path / "task").write_text(json.dumps({"TaskARN": "arn:aws:ecs:us-east-1:123456789012:task/c/t"}))
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", tmp_path.as_uri())
    assert sweep.own_task_arn() == "arn:aws:ecs:us-east-1:123456789012:task/c/t"
    assert reads == []


def test_the_driver_scans_each_group_of_plugin_entry_points_once(monkeypatch):
    import importlib.metadata

    from miniwdl_fargate import driver

    monkeypatch.setattr(importlib.metadata, "entry_points", importlib.metadata.entry_points)  # (restored after)
    scans = []
    scan = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **params: scans.append(params) or scan(**params))
    driver.cache_plugin_entry_points()
    driver.cache_plugin_entry_points()  # (once is enough: not wrapped twice)
    assert len(scans) == len(driver.PLUGIN_GROUPS)
    backends = [importlib.metadata.entry_points(group="miniwdl.plugin.container_backend") for _ in range(3)]
    assert len(scans) == len(driver.PLUGIN_GROUPS)  # answered from what was kept
    assert "aws_fargate" in {entry.name for entry in backends[0]}


def test_a_lambda_zygote_for_other_handlers_preloads_nothing(monkeypatch):
    """The Lambda runner's own tests start many zygotes for handlers that use none of the stack's
    libraries, parsers or models (a second of CPU each when they were imported all the same)."""
    from types import SimpleNamespace

    monkeypatch.delenv(lambda_zygote.PRELOAD_ENV, raising=False)
    done = []
    monkeypatch.setattr(forkserver, "build_wdl_parsers", lambda: done.append("parsers"))
    monkeypatch.setattr(forkserver, "preload_aws", lambda: done.append("models"))
    monkeypatch.setattr(lambda_zygote, "importlib", SimpleNamespace(import_module=lambda name: done.append(name)))
    lambda_zygote.preimport()
    assert done == []
    monkeypatch.setenv(lambda_zygote.PRELOAD_ENV, "1")
    lambda_zygote.preimport()
    assert done == [*lambda_zygote.LIBRARIES, "parsers", "models"]


def test_the_stacks_lambda_runner_asks_its_zygote_to_preload(tmp_path):
    from miniwdl_fargate.local.lambda_runner import LambdaRunner
    from miniwdl_fargate.local.runtime import LocalRuntime

    runtime = LocalRuntime(str(tmp_path), "http://127.0.0.1:9", "us-east-1")
    try:
        assert runtime.lambdas.preload
    finally:
        runtime.shutdown()
    assert not LambdaRunner(str(tmp_path / "w"), str(tmp_path / "l"), {}).preload


def test_a_fork_server_reads_the_parsers_from_the_cache_of_whoever_started_it(monkeypatch, tmp_path):
    """A Lambda fork server's HOME is the stack's (under its state): the folder of built parsers
    comes from the process that starts it, so each new stack does not build them again."""
    import WDL._parser as parser_module

    monkeypatch.setattr(parser_module, "lark", lark)  # (as a fresh process has it: no cache yet)
    monkeypatch.setattr(WDL._parser, "_lark_cache", {})
    monkeypatch.setenv(forkserver.PARSER_CACHE_ENV, str(tmp_path / "parsers"))
    forkserver.build_wdl_parsers()
    built = list((tmp_path / "parsers").iterdir())
    assert len(built) >= len(forkserver.WDL_VERSIONS) and all(p.suffix == ".lark" for p in built), built


def test_a_fork_server_is_told_where_the_parsers_are(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # (every fork server is told; the task one builds no parsers: the driver's, with this empty
    # cache, built them all for this test alone, about 3 s of CPU)
    server = forkserver.ForkServer("miniwdl_fargate.local.task_zygote", str(tmp_path), {"PATH": "/usr/bin:/bin"}, "out")
    def environment() -> dict[bytes, bytes]:
        with open(f"/proc/{server.proc.pid}/environ", "rb") as environ:
            return dict(item.split(b"=", 1) for item in environ.read().split(b"\0") if b"=" in item)

    try:
        # (Popen returns once the child is past the point of no return of its exec, which may be
        # before the kernel has set the new program's environment up: it reads empty until then)
        told = wait_for(environment, timeout=10, what="the fork server's environment", interval=0.01)
        assert told[forkserver.PARSER_CACHE_ENV.encode()] == str(tmp_path / "cache" / "miniwdl-fargate" / "wdl-parsers").encode()
    finally:
        server.stop()


def test_the_driver_fork_server_imports_every_plugin_a_runner_may_load(monkeypatch):
    """A forked driver's runner loads every enabled plugin of each group, miniwdl's built-in
    container backends too (psutil, its subprocess backend): the fork server imports them first."""
    import importlib.metadata
    import logging

    from WDL.runtime import config

    from miniwdl_fargate import driver

    loaded = []
    monkeypatch.setattr(importlib.metadata.EntryPoint, "load", lambda plugin: loaded.append(plugin.value))
    driver_zygote.import_plugins()
    cfg = config.Loader(logging.getLogger("test"), overrides={})
    for group in driver.PLUGIN_GROUPS:
        may_load = [plugin.value for enabled, plugin in config.load_all_plugins(cfg, group) if enabled]
        assert set(may_load) <= set(loaded), group
    assert "WDL.runtime.backend.singularity:SingularityContainer" in loaded


def test_a_lambda_zygote_imports_every_library_module_the_stacks_handlers_import():
    """An environment forked from the zygote imports its handler's module (Lambda's init) and the
    product's modules with it, but no module of the libraries the zygote preloads (``LIBRARIES``):
    Powertools' parser models and its API's validation load at first use, each building pydantic
    models (about 70 ms of a new environment's init). In a new interpreter, which has imported
    nothing yet."""
    import subprocess
    import sys

    roots = sorted({name.split(".")[0] for name in lambda_zygote.LIBRARIES})
    handlers = sorted(path.stem for path in (REPO / "functions").glob("*.py") if "def handler(" in path.read_text())
    script = (
        "import importlib, json, sys\n"
        "from miniwdl_fargate.local import lambda_zygote\n"
        "for name in lambda_zygote.LIBRARIES: importlib.import_module(name)\n"
        "before = set(sys.modules)\n"
        f"sys.path.insert(0, {str(REPO / 'functions')!r})\n"
        f"for handler in {handlers!r}: importlib.import_module(handler)\n"
        f"print(json.dumps(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in {roots!r})))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_SERVICE_NAME": "test"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(handlers) >= 6, handlers
    assert json.loads(proc.stdout.splitlines()[-1]) == []
