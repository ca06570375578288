"""Reading an inputs JSON the one way every entrance reads it (S3 drop, API, CLI).

Python's ``json`` module takes a document the driver (or another JSON reader) would read
differently: a key given twice keeps the last value silently, ``NaN``/``Infinity`` are accepted
though not JSON (RFC 8259 section 6), and nesting deep enough exhausts the recursion limit with a
RecursionError instead of an answer. Here each of those is a problem with where it is. A UTF-8
byte order mark is accepted and stripped on every entrance (RFC 8259 section 8.1 lets parsers
ignore it), and the run's copy of its inputs is written without one.

The driver's copies of an inputs JSON, the ones miniwdl reads, are written with their characters
as UTF-8, not ``\\u`` escapes (``write_json``, ``unescape_json``).
"""

from __future__ import annotations

import json
import math
from typing import Any

#: the one cap on an inputs JSON, whichever way it comes in: beyond 1 MiB it is data that belongs in files
MAX_INPUTS_BYTES = 1024 * 1024
#: deepest nesting of arrays/objects accepted (WDL values nest far less; the driver parses it again)
MAX_DEPTH = 64
BOM = "\ufeff"


class InputsJSONError(ValueError):
    """The document cannot be used: ``problems`` says each thing wrong, and where."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p['where']}: {p['problem']}" for p in problems))


class _Pairs(dict):
    """An object as parsed, remembering the keys it was given more than once."""

    duplicates: list[str]


class _Constant:
    """A NaN/Infinity literal, kept to be reported with where it is."""

    def __init__(self, text: str) -> None:
        self.text = text


def _pairs(pairs: list[tuple[str, Any]]) -> _Pairs:
    found = _Pairs(pairs)
    seen: set[str] = set()
    found.duplicates = sorted({k for k, _ in pairs if k in seen or seen.add(k)})  # type: ignore[func-returns-value]
    return found


def size_problem(size: int) -> str | None:
    """Why an inputs JSON of ``size`` bytes is refused, if it is."""
    if size <= MAX_INPUTS_BYTES:
        return None
    return (
        f"{size} bytes; an inputs JSON may have at most {MAX_INPUTS_BYTES >> 20} MiB "
        "(put large values in files and pass their s3:// URIs)"
    )


def decode(body: bytes | str, where: str) -> str:
    """The document as text: UTF-8, its byte order mark (if any) stripped."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exn:
            raise InputsJSONError([{"where": where, "problem": f"not UTF-8 text: byte {exn.start} is not UTF-8"}]) from None
    return body[1:] if body.startswith(BOM) else body


def loads(body: bytes | str, where: str, capped: bool = True, wrapping: int = 0) -> Any:
    """Any JSON document, strictly: InputsJSONError naming every duplicate key, NaN/Infinity
    and a nesting too deep, each with its path (``a.b[2].c``) after ``where``. ``capped``: the
    inputs size cap applies to the whole document (an API request, which also holds a WDL, has
    its inputs capped on their own); ``wrapping``: levels around the inputs that do not count
    towards the nesting limit (the API request's object)."""
    text = decode(body, where)
    problem = size_problem(len(text.encode("utf-8"))) if capped else None
    if problem:
        raise InputsJSONError([{"where": where, "problem": problem}])
    try:
        doc = json.loads(text, object_pairs_hook=_pairs, parse_constant=_Constant)
    except RecursionError:
        doc = None
        problem = f"nested too deeply to parse (at most {MAX_DEPTH} levels of arrays and objects)"
    except ValueError as exn:
        raise InputsJSONError([{"where": where, "problem": f"not valid JSON: {exn}"}]) from None
    if problem:
        raise InputsJSONError([{"where": where, "problem": problem}])
    problems: list[dict[str, str]] = []
    _check(doc, "", -wrapping, where, problems)
    if problems:
        raise InputsJSONError(problems)
    return doc


def load_object(body: bytes | str, where: str) -> dict[str, Any]:
    """An inputs document: a non-empty JSON object, read as ``loads`` reads it."""
    if not decode(body, where).strip():
        raise InputsJSONError([{"where": where, "problem": "empty: expected a JSON object of workflow inputs, e.g. {\"wf.x\": 1}"}])
    doc = loads(body, where)
    if not isinstance(doc, dict):
        raise InputsJSONError(
            [{"where": where, "problem": f"expected a JSON object of workflow inputs, got a JSON {type(doc).__name__}"}]
        )
    return doc


#: the names of an inputs file read as YAML (``load_yaml_object``), as ``miniwdl run -i`` reads any
YAML_SUFFIXES = (".yaml", ".yml")


def load_yaml_object(body: bytes | str, where: str) -> dict[str, Any]:
    """An inputs document written in YAML (a ``.yaml``/``.yml`` file given to the command line),
    read as ``miniwdl run -i`` reads one (ruamel.yaml's safe, pure loader: YAML 1.2, a key given
    twice refused), then held to what its JSON would be: a non-empty mapping, string keys, no
    NaN or infinity, nothing JSON cannot say (a date, binary); each problem with where it is.
    The run gets it as JSON (the uploaded inputs.json), the one form every entrance takes."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    text = decode(body, where)
    problem = size_problem(len(text.encode("utf-8")))
    if problem:
        raise InputsJSONError([{"where": where, "problem": problem}])
    if not text.strip():
        raise InputsJSONError([{"where": where, "problem": "empty: expected a YAML mapping of workflow inputs, e.g. \"wf.x: 1\""}])
    try:
        doc = YAML(typ="safe", pure=True).load(text)
    except MarkedYAMLError as exn:
        mark = exn.problem_mark
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise InputsJSONError([{"where": where, "problem": f"not valid YAML: {exn.problem or exn.context}{at}"}]) from None
    except (YAMLError, RecursionError) as exn:
        raise InputsJSONError([{"where": where, "problem": f"not valid YAML: {exn}"}]) from None
    if not isinstance(doc, dict):
        raise InputsJSONError([{"where": where, "problem": f"expected a YAML mapping of workflow inputs, got a YAML {type(doc).__name__}"}])
    problems: list[dict[str, str]] = []
    _check_yaml(doc, "", 0, where, problems)
    if problems:
        raise InputsJSONError(problems)
    return doc


def _check_yaml(value: Any, path: str, depth: int, where: str, problems: list[dict[str, str]]) -> None:
    """What of a YAML document its JSON could not say (``load_yaml_object``)."""
    if isinstance(value, float) and not math.isfinite(value):
        problems.append({"where": _at(where, path), "problem": f"{value} is not a JSON number (JSON has no NaN or infinity)"})
    elif isinstance(value, (dict, list)) and depth >= MAX_DEPTH:
        problems.append({"where": _at(where, path), "problem": f"nested too deeply (at most {MAX_DEPTH} levels of arrays and objects)"})
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                problems.append({"where": _at(where, path), "problem": f"key {key!r} is a YAML {type(key).__name__}: quote it (JSON keys are strings)"})
                continue
            _check_yaml(item, f"{path}.{key}" if path else key, depth + 1, where, problems)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_yaml(item, f"{path}[{index}]", depth + 1, where, problems)
    elif not (value is None or isinstance(value, (str, int, float, bool))):
        problems.append({"where": _at(where, path), "problem": f"a YAML {type(value).__name__}, which JSON has no value for: quote it to pass it as text"})


def _at(where: str, path: str) -> str:
    return f"{where}: {path}" if path else where


def _check(value: Any, path: str, depth: int, where: str, problems: list[dict[str, str]]) -> None:
    if isinstance(value, _Constant):
        problems.append({"where": _at(where, path), "problem": f"{value.text} is not a JSON number (JSON has no NaN or Infinity)"})
    elif isinstance(value, (dict, list)) and depth >= MAX_DEPTH:
        problems.append({"where": _at(where, path), "problem": f"nested too deeply (at most {MAX_DEPTH} levels of arrays and objects)"})
    elif isinstance(value, dict):
        for key in getattr(value, "duplicates", []):
            problems.append({"where": _at(where, f"{path}.{key}" if path else key), "problem": "key given more than once in the same object"})
        for key, item in value.items():
            _check(item, f"{path}.{key}" if path else key, depth + 1, where, problems)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", depth + 1, where, problems)


# -- the driver's copies, as miniwdl reads them ------------------------------------------------


def unescape_json(path: str) -> None:
    """Rewrite a JSON file with its characters as UTF-8 instead of ``\\u`` escapes. miniwdl
    (1.16) reads a string escaped as a surrogate pair (``"\\ud83d\\ude00"``, how Python's json
    and many tools write an emoji) as two lone surrogates, and the task then fails writing its
    command ("surrogates not allowed"); the same characters written plainly work. A file that is
    not JSON (or holds a lone surrogate, no character at all) is left for miniwdl to report."""
    try:
        with open(path, encoding="utf-8") as infile:
            write_json(path, json.load(infile))
    except ValueError:  # (UnicodeError included: nothing was written)
        return


def write_json(path: str, doc: Any) -> None:
    """A JSON file miniwdl reads as written: UTF-8, no ``\\u`` escapes (``unescape_json``)."""
    data = json.dumps(doc, indent=2, ensure_ascii=False).encode("utf-8")  # (before the file is opened)
    with open(path, "wb") as outfile:
        outfile.write(data)
