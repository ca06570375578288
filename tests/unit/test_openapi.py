"""docs/openapi.json is the run API's document as the code generates it (`make openapi`)."""

import json
from pathlib import Path

import api

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_the_committed_openapi_document_is_current():
    assert json.loads(api.openapi_json()) == json.loads(DOC.read_text()), "run `make openapi` and commit docs/openapi.json"


def test_every_route_documents_its_answers():
    doc = json.loads(DOC.read_text())
    routes = {(path, verb): op for path, ops in doc["paths"].items() for verb, op in ops.items()}
    assert set(routes) == {("/runs", "post"), ("/runs", "get"), ("/runs/{run_id}", "get"), ("/runs/{run_id}", "delete")}
    for (path, verb), op in routes.items():
        assert "400" in op["responses"], (verb, path)
        assert "422" not in op["responses"]  # invalid requests answer 400, with every problem
    schema = doc["components"]["schemas"]["RunRequest"]
    assert set(schema["properties"]) == {"name", "workflow", "wdl", "inputs", "options", "client_token"}
