"""The driver's copies of an inputs JSON (``inputs_json.write_json``/``unescape_json``): the
characters as UTF-8, never ``\\u`` escapes, which miniwdl 1.16 reads as lone surrogates."""

import json

from miniwdl_fargate import inputs_json


def test_an_escaped_emoji_is_rewritten_as_utf8(tmp_path):
    path = tmp_path / "inputs.json"
    path.write_text('{"w.name": "\\ud83d\\ude00 caf\\u00e9"}', encoding="ascii")
    inputs_json.unescape_json(str(path))
    assert path.read_bytes() == '{\n  "w.name": "😀 café"\n}'.encode("utf-8")
    assert json.loads(path.read_text(encoding="utf-8")) == {"w.name": "😀 café"}


def test_what_is_not_json_or_holds_a_lone_surrogate_is_left_for_miniwdl(tmp_path):
    for text in ('{"w.name": ', '{"w.name": "\\ud83d"}'):
        path = tmp_path / "inputs.json"
        path.write_text(text, encoding="ascii")
        inputs_json.unescape_json(str(path))
        assert path.read_text(encoding="ascii") == text


def test_write_json_writes_utf8_without_escapes(tmp_path):
    path = tmp_path / "inputs.staged.json"
    inputs_json.write_json(str(path), {"w.f": "/mnt/efs/cache/s3/b/ключ/😀.txt"})
    assert "\\u" not in path.read_text(encoding="utf-8")
    assert json.loads(path.read_bytes()) == {"w.f": "/mnt/efs/cache/s3/b/ключ/😀.txt"}
