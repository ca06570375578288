"""Local mode's cache of the template's SAM translation (``stack.transform`` with a cache dir):
the same template, parameters and translator reuse it, the artifacts are uploaded fresh anyway,
anything else (or a damaged entry) is a miss."""

import shutil

import pytest
import samtranslator.translator.transform

from miniwdl_fargate import aws
from miniwdl_fargate.local import stack

TEMPLATE = stack.repo_root() / "template.yaml"
BUCKET = "artifacts"


@pytest.fixture
def artifacts(moto_aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    return s3


def keys(s3):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_a_translation_is_reused_and_its_artifacts_uploaded_again(artifacts, tmp_path, monkeypatch):
    first = stack.transform(TEMPLATE, {"TaskPollSeconds": "0.1"}, BUCKET, tmp_path)
    assert len(list(tmp_path.glob("sam-*.json"))) == 1
    uploaded = keys(artifacts)
    assert uploaded and any(k.startswith("functions/") for k in uploaded)
    for key in uploaded:
        artifacts.delete_object(Bucket=BUCKET, Key=key)

    def no_translation(*args, **kwargs):
        raise AssertionError("translated again")

    monkeypatch.setattr(samtranslator.translator.transform, "transform", no_translation)
    again = stack.transform(TEMPLATE, {"TaskPollSeconds": "0.1"}, BUCKET, tmp_path)
    assert again == first
    assert keys(artifacts) == uploaded


def test_other_parameters_are_another_translation(artifacts, tmp_path):
    stack.transform(TEMPLATE, {"TaskPollSeconds": "0.1"}, BUCKET, tmp_path)
    stack.transform(TEMPLATE, {"TaskPollSeconds": "0.2"}, BUCKET, tmp_path)
    assert len(list(tmp_path.glob("sam-*.json"))) == 2


def test_a_damaged_entry_is_a_miss(artifacts, tmp_path):
    fresh = stack.transform(TEMPLATE, {}, BUCKET)
    stack.transform(TEMPLATE, {}, BUCKET, tmp_path)
    (entry,) = tmp_path.glob("sam-*.json")
    entry.write_text('{"artifacts": ')
    assert stack.transform(TEMPLATE, {}, BUCKET, tmp_path) == fresh
    assert stack.read_translation(tmp_path, entry.name[4:-5]) is not None  # rewritten whole


def test_the_key_follows_the_templates_text_and_folder(tmp_path):
    copy = tmp_path / "template.yaml"
    shutil.copy(TEMPLATE, copy)
    same_text_elsewhere = stack.translation_key(copy, {}, BUCKET)
    assert same_text_elsewhere != stack.translation_key(TEMPLATE, {}, BUCKET)
    copy.write_text(copy.read_text() + "\n# changed\n")
    assert stack.translation_key(copy, {}, BUCKET) != same_text_elsewhere
    assert stack.translation_key(TEMPLATE, {}, BUCKET) == stack.translation_key(TEMPLATE, {}, BUCKET)


def test_a_new_translation_removes_those_whose_template_folder_is_gone(artifacts, tmp_path):
    """A clone of the repository (a test's copy of the template) leaves translations of its own:
    once its folder is gone they can never be read again, and the next translation removes them."""
    cache = tmp_path / "cache"
    copy = tmp_path / "clone" / "template.yaml"
    for folder in ("functions", "statemachine", "plugin"):  # (what the template packages)
        shutil.copytree(TEMPLATE.parent / folder, copy.parent / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(TEMPLATE, copy)
    stack.transform(copy, {}, BUCKET, cache)
    (gone,) = cache.glob("sam-*.json")
    shutil.rmtree(copy.parent)
    (cache / "sam-damaged.json").write_text('{"artifacts": ')
    stack.transform(TEMPLATE, {}, BUCKET, cache)
    (kept,) = cache.glob("sam-*.json")
    assert kept != gone
    assert stack.read_translation(cache, kept.name[4:-5]) is not None
