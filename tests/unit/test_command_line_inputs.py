"""NAME=VALUE inputs on the command line (``submit``, ``local run``), as ``miniwdl run`` takes
them: read by miniwdl's own ``runner_input`` (a value by its input's type, an array by repeating
the name, a compound value as JSON, a local file made an absolute path and checked), over the
inputs file's, and each wrong one refused naming it."""

import json

import pytest

from miniwdl_fargate import arguments
from miniwdl_fargate.upload import RunInputError, prepare

WDL = """version 1.1
struct Sample { String id  Int reads }
workflow w {
  input {
    String who
    Int n = 1
    Float ratio = 0.5
    Boolean deep = false
    Array[String] names = []
    File? reference
    Sample? sample
  }
  call t { input: who = who }
}
task t {
  input { String who  Int threads = 1 }
  command <<< echo "~{who}" >>>
}
"""


@pytest.fixture
def wdl(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "w.wdl"
    path.write_text(WDL)
    (tmp_path / "ref.fa").write_text(">x\nACGT\n")
    return path


def test_each_value_is_read_by_its_inputs_type_as_miniwdl_run_reads_it(wdl, tmp_path):
    prepared = prepare(wdl, {}, assignments=[
        "who=Ann", "n=3", "ratio=0.25", "deep=true", "names=a", "names=b", "reference=ref.fa",
        'sample={"id": "s1", "reads": 7}', "t.threads=4",
    ])
    assert prepared.inputs == {
        "w.who": "Ann", "w.n": 3, "w.ratio": 0.25, "w.deep": True, "w.names": ["a", "b"],
        "w.reference": str(tmp_path / "ref.fa"),  # (made absolute, as miniwdl makes it)
        "w.sample": {"id": "s1", "reads": 7}, "w.t.threads": 4,
    }


def test_the_command_lines_inputs_go_over_the_files_with_or_without_the_workflows_name(wdl, tmp_path):
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"w.who": "file", "n": 2, "w.names": ["x", "y"], "ratio": 0.75}))
    prepared = prepare(wdl, inputs, assignments=["w.who=Ann", "n=5", "names=z", "reference=s3://bucket/ref.fa"])
    assert prepared.inputs == {"ratio": 0.75, "w.who": "Ann", "w.n": 5, "w.names": ["z"], "w.reference": "s3://bucket/ref.fa"}


@pytest.mark.parametrize("assignments, said", [
    (["who=Ann", "nme=x"], "inputs on the command line: nme=x: No such input to w: nme"),
    (["who=Ann", "n=many"], "inputs on the command line: n=many: expected Int, got 'many'"),
    (["who=Ann", "w.ratio=half"], "inputs on the command line: w.ratio=half: expected Float, got 'half'"),
    (["who=Ann", "deep=yes"], "inputs on the command line: deep=yes: Boolean input should be true or false instead of `yes'"),
    (["who=Ann", "reference=nope.fa"], "inputs on the command line: reference=nope.fa: File not found: nope.fa"),
    (["who=Ann", "sample={bad"], "inputs on the command line: sample={bad: Invalid JSON for input of type Sample?"),
    (["who=Ann", "who=Bob"], "inputs on the command line: non-array input who duplicated"),
])
def test_a_wrong_assignment_is_refused_naming_it(wdl, assignments, said):
    with pytest.raises(RunInputError) as refused:
        prepare(wdl, {}, assignments=assignments)
    assert str(refused.value).startswith(said), str(refused.value)


def test_a_required_input_given_nowhere_is_still_missing(wdl):
    with pytest.raises(RunInputError, match="w.who: missing required input of type String"):
        prepare(wdl, {}, assignments=["n=2"])


@pytest.mark.parametrize("items, found", [
    ([], (None, [])),
    (["inputs.json"], ("inputs.json", [])),
    (["inputs.json", "who=Ann", "n=2"], ("inputs.json", ["who=Ann", "n=2"])),
    (["who=Ann", "inputs.yaml"], ("inputs.yaml", ["who=Ann"])),
    (["reference=", "ref.fa", "who=Ann"], (None, ["reference=ref.fa", "who=Ann"])),  # (a shell completed the file name)
    (["a=b.json"], ("a=b.json", [])),  # (an existing file, whatever its name)
    (["token=YWI=", "n=2"], (None, ["token=YWI=", "n=2"])),  # (a value ending in "=" is whole: miniwdl's rule)
])
def test_the_inputs_file_and_the_assignments_among_the_positional_inputs(tmp_path, monkeypatch, items, found):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a=b.json").write_text("{}")
    assert arguments.inputs_and_assignments(items) == found


def test_two_inputs_files_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"one inputs file at most \(given: a.json, b.json\); give other inputs as NAME=VALUE"):
        arguments.inputs_and_assignments(["a.json", "b.json"])


def test_a_file_inside_a_compound_value_is_relative_to_the_current_folder_not_the_inputs_files(wdl, tmp_path):
    wdl.write_text(WDL.replace("Sample? sample", "Sample? sample\n    Pair[File, Int]? pair"))
    (tmp_path / "sub").mkdir()
    inputs = tmp_path / "sub" / "inputs.json"
    inputs.write_text(json.dumps({"w.who": "Ann"}))
    prepared = prepare(wdl, inputs, assignments=['pair={"left": "ref.fa", "right": 2}'])
    assert prepared.inputs["w.pair"] == {"left": str(tmp_path / "ref.fa"), "right": 2}


# -- miniwdl run's other ways: -i/--input (a file, - for standard input, the JSON itself), --empty, --none


def test_empty_and_none_set_an_array_empty_and_an_optional_input_null_over_the_files(wdl, tmp_path):
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"w.who": "Ann", "w.names": ["x"], "reference": "ref.fa"}))
    prepared = prepare(wdl, inputs, empty=["names"], none=["w.reference"])
    assert prepared.inputs == {"w.who": "Ann", "w.names": [], "w.reference": None}


@pytest.mark.parametrize("empty, none, said", [
    (["n"], [], "inputs on the command line: --empty n: Cannot set Int n to empty array or string"),
    ([], ["who"], "inputs on the command line: --none who: Cannot set non-optional input String who to None"),
    ([], ["nope"], "inputs on the command line: --none nope: No such input to w: nope"),
])
def test_a_wrong_empty_or_none_is_refused_naming_it(wdl, empty, none, said):
    with pytest.raises(RunInputError) as refused:
        prepare(wdl, {"w.who": "Ann"}, empty=empty, none=none)
    assert str(refused.value).startswith(said), str(refused.value)


def test_the_input_option_is_a_file_standard_input_or_the_json_itself():
    import io

    assert arguments.input_option(None) is None
    assert arguments.input_option("inputs.json") == "inputs.json"  # (a file's name: read as a positional file is)
    assert arguments.input_option(' {"w.who": "Ann"}') == {"w.who": "Ann"}
    assert arguments.input_option("-", io.StringIO('{"who": "Bob"}\n')) == {"who": "Bob"}
    with pytest.raises(ValueError, match=r"^--input: who: key given more than once"):
        arguments.input_option('{"who": "a", "who": "b"}')
    with pytest.raises(ValueError, match=r"^--input - \(standard input\): empty"):
        arguments.input_option("-", io.StringIO(""))
    with pytest.raises(ValueError, match=r"^--input: not valid JSON"):
        arguments.input_option('{"who": ')


def test_the_input_option_counts_as_the_inputs_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.json").write_text("{}")
    assert arguments.inputs_and_assignments(["who=Ann"], "a.json") == ("a.json", ["who=Ann"])
    assert arguments.inputs_and_assignments([], {"who": "Ann"}) == ({"who": "Ann"}, [])
    with pytest.raises(ValueError, match=r"one inputs file at most \(given: a.json, --input b.json\)"):
        arguments.inputs_and_assignments(["a.json"], "b.json")
    with pytest.raises(ValueError, match=r"one inputs file at most \(given: a.json, --input's JSON\)"):
        arguments.inputs_and_assignments(["a.json"], {"who": "Ann"})


def test_json_given_to_input_has_its_local_files_relative_to_the_current_folder(wdl, tmp_path):
    prepared = prepare(wdl, arguments.input_option('{"who": "Ann", "reference": "ref.fa"}'))
    assert prepared.inputs == {"who": "Ann", "reference": "ref.fa"}  # (as given: staged from the current folder)
    assert prepared.inputs_dir == tmp_path
