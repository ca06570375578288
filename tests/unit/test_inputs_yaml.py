"""An inputs file in YAML (``.yaml``/``.yml``), as ``miniwdl run -i`` takes one: read with the
loader miniwdl reads it with, held to what its JSON would be, and refused with every problem and
where it is otherwise."""

import json

import pytest

from miniwdl_fargate import inputs_json
from miniwdl_fargate.upload import RunInputError, read_inputs


def test_a_yaml_inputs_file_reads_as_miniwdl_reads_it(tmp_path):
    path = tmp_path / "inputs.yaml"
    path.write_text(
        "# a comment\nhello.names:\n  - Ann\n  - 'Bob'\nhello.count: 3\nhello.ratio: 0.5\nhello.flag: true\n"
        "hello.maybe: null\nhello.pairs: {left: 1, right: 'x'}\nhello.version: '1.10'\n"
    )
    doc = read_inputs(path)
    assert doc == {
        "hello.names": ["Ann", "Bob"], "hello.count": 3, "hello.ratio": 0.5, "hello.flag": True, "hello.maybe": None,
        "hello.pairs": {"left": 1, "right": "x"}, "hello.version": "1.10",
    }
    # YAML 1.2, as ruamel's safe loader (miniwdl's) reads it: `yes` is a string, not a boolean
    path.write_text("hello.answer: yes\n")
    assert read_inputs(path) == {"hello.answer": "yes"}
    (tmp_path / "inputs.yml").write_text("hello.names: [a]\n")
    assert read_inputs(tmp_path / "inputs.yml") == {"hello.names": ["a"]}
    json.dumps(doc, allow_nan=False)  # (the run gets it as JSON)


@pytest.mark.parametrize("text, said", [
    ("", "empty: expected a YAML mapping of workflow inputs"),
    ("- a\n- b\n", "expected a YAML mapping of workflow inputs, got a YAML list"),
    ("hello.names: [a\n", "not valid YAML: expected ',' or ']', but got '<stream end>' (line 2, column 1)"),
    ("hello.names: [a]\nhello.names: [b]\n", 'not valid YAML: found duplicate key "hello.names"'),
    ("hello.x: .nan\n", "hello.x: nan is not a JSON number (JSON has no NaN or infinity)"),
    ("hello.x: [-.inf]\n", "hello.x[0]: -inf is not a JSON number"),
    ("hello.when: 2026-01-01\n", "hello.when: a YAML date, which JSON has no value for: quote it to pass it as text"),
    ("1: x\n", "key 1 is a YAML int: quote it (JSON keys are strings)"),
])
def test_what_json_cannot_say_or_bad_yaml_is_refused_saying_where(tmp_path, text, said):
    path = tmp_path / "inputs.yaml"
    path.write_text(text)
    with pytest.raises(RunInputError) as refused:
        read_inputs(path)
    assert said in str(refused.value) and str(path) in str(refused.value)


def test_a_yaml_inputs_file_is_capped_as_a_json_one_is(tmp_path):
    path = tmp_path / "inputs.yaml"
    path.write_text("hello.x: '" + "a" * inputs_json.MAX_INPUTS_BYTES + "'\n")
    with pytest.raises(RunInputError, match="an inputs JSON may have at most 1 MiB"):
        read_inputs(path)
