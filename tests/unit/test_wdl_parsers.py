"""``wdl_parsers.use_cache``: miniwdl's Lark parsers built through Lark's cache in a private
folder; a parser loaded from a file parses as one built anew (comments included), a file that
cannot be loaded is built anew, and a folder others may write to is not used."""

import lark
import pytest
import WDL
import WDL._parser as parser_module

from miniwdl_fargate import wdl_parsers

DOC = """version 1.0
# a comment the lexer callback collects
workflow w {
  input { Int n = 1 }
  output { Int m = n + 1 }
}
"""


@pytest.fixture
def clean(monkeypatch, tmp_path):
    """miniwdl's parser module as it was, with no parser in memory; restored afterwards."""
    monkeypatch.setattr(parser_module, "lark", lark)
    monkeypatch.setattr(parser_module, "_lark_cache", {})
    folder = tmp_path / "parsers"
    return folder


def load(tmp_path) -> WDL.Tree.Document:
    path = tmp_path / "w.wdl"
    path.write_text(DOC)
    return WDL.load(str(path))


def comments(doc) -> list[str]:
    return [c.text for c in doc.source_comments if c is not None]


def test_a_parser_loaded_from_the_cache_parses_as_one_built_anew(clean, tmp_path, monkeypatch):
    built = load(tmp_path)
    monkeypatch.setattr(parser_module, "_lark_cache", {})
    assert wdl_parsers.use_cache(clean)
    first = load(tmp_path)  # built, and written to the cache
    assert [p.suffix for p in clean.iterdir()] == [".lark"]
    monkeypatch.setattr(parser_module, "_lark_cache", {})
    monkeypatch.setattr(lark.Lark, "_build_parser", lambda self: pytest.fail("built, not loaded from the cache"))
    cached = load(tmp_path)
    for doc in (first, cached):
        assert comments(doc) == comments(built) == ["# a comment the lexer callback collects"]
        assert [o.name for o in doc.workflow.outputs] == ["m"]
        assert str(doc.workflow.outputs[0].expr) == str(built.workflow.outputs[0].expr)


def test_a_cache_file_that_cannot_be_loaded_is_built_anew(clean, tmp_path, monkeypatch):
    assert wdl_parsers.use_cache(clean)
    load(tmp_path)
    (cache_file,) = clean.iterdir()
    cache_file.write_bytes(b"half a file")
    monkeypatch.setattr(parser_module, "_lark_cache", {})
    assert comments(load(tmp_path)) == ["# a comment the lexer callback collects"]
    assert cache_file.stat().st_size > len(b"half a file")  # written again, whole


def test_a_folder_others_may_write_to_is_not_used(clean, tmp_path):
    clean.mkdir(mode=0o777)
    clean.chmod(0o777)
    assert not wdl_parsers.use_cache(clean)
    assert parser_module.lark is lark
    load(tmp_path)
    assert list(clean.iterdir()) == []


def test_using_the_cache_twice_changes_nothing_more(clean):
    assert wdl_parsers.use_cache(clean) and wdl_parsers.use_cache(clean)
    assert parser_module.lark.Lark.args[0] is lark.Lark  # (one shim, not a shim of a shim)
    assert parser_module.lark.Token is lark.Token
