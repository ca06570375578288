"""docs/openapi.json is the run API's document (and WES's beside it) as the code generates it (`make openapi`)."""

import json
import re
from pathlib import Path

import pytest

import api
from miniwdl_fargate.local.stack import read_template
from tests.function_env import set_environment

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
WES = "/ga4gh/wes/v1"


def test_the_committed_openapi_document_is_current():
    assert json.loads(api.openapi_json()) == json.loads(DOC.read_text()), "run `make openapi` and commit docs/openapi.json"


def test_every_route_documents_its_answers():
    doc = json.loads(DOC.read_text())
    routes = {(path, verb): op for path, ops in doc["paths"].items() for verb, op in ops.items()}
    assert set(routes) == {
        ("/runs", "post"), ("/runs", "get"), ("/runs/{run_id}", "get"), ("/runs/{run_id}", "delete"),
        ("/runs/{run_id}/resume", "post"),
        # GA4GH WES 1.1 beside it
        (WES + "/service-info", "get"), (WES + "/runs", "post"), (WES + "/runs", "get"), (WES + "/runs/{run_id}", "get"),
        (WES + "/runs/{run_id}/status", "get"), (WES + "/runs/{run_id}/cancel", "post"),
        (WES + "/runs/{run_id}/tasks", "get"), (WES + "/runs/{run_id}/tasks/{task_id}", "get"),
        (WES + "/runs/{run_id}/tasks/{task_id}/logs", "get"),  # (a task log's text)
    }
    # (WES's GetRunLog, GetRunStatus, CancelRun and GetTask have no 400: a malformed id is 404)
    no_400 = {(WES + "/service-info", "get"), (WES + "/runs/{run_id}", "get"), (WES + "/runs/{run_id}/status", "get"),
              (WES + "/runs/{run_id}/cancel", "post"), (WES + "/runs/{run_id}/tasks/{task_id}", "get"),
              (WES + "/runs/{run_id}/tasks/{task_id}/logs", "get")}
    for (path, verb), op in routes.items():
        assert ("400" in op["responses"]) != ((path, verb) in no_400), (verb, path)
        assert "422" not in op["responses"]  # invalid requests answer 400, with every problem
    # the WES RunRequest: multipart/form-data (attached files) or JSON
    body = doc["paths"][WES + "/runs"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert {"workflow_url", "workflow_params", "tags", "workflow_engine_parameters", "workflow_attachment"} <= set(
        body["multipart/form-data"]["schema"]["properties"]
    )
    schema = doc["components"]["schemas"]["RunRequest"]
    assert set(schema["properties"]) == {"name", "workflow", "workflow_zip", "wdl", "inputs", "options", "client_token"}


def test_every_error_answer_has_the_one_error_shape():
    doc = json.loads(DOC.read_text())
    errors = [
        (path, verb, code, answer) for path, ops in doc["paths"].items() for verb, op in ops.items()
        for code, answer in op["responses"].items() if code >= "400"
    ]
    assert ("/runs", "post", "409", errors[0][3]) in [(p, v, c, errors[0][3]) for p, v, c, _ in errors]
    for path, verb, code, answer in errors:
        shape = "WesErrorResponse" if path.startswith(WES) else "ApiError"  # WES's own ErrorResponse under its prefix
        assert answer["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{shape}"}, (verb, path, code)
    assert set(doc["components"]["schemas"]["ApiError"]["required"]) == {"error", "message"}
    assert set(doc["components"]["schemas"]["WesErrorResponse"]["required"]) == {"msg", "status_code"}


def test_errors_are_answered_in_the_one_shape(monkeypatch):
    event = json.loads((DOC.parents[1] / "tests" / "events" / "apigw_post_runs.json").read_text())
    unknown = dict(event, path="/nowhere", resource="/nowhere", httpMethod="GET", body=None)
    answer = api.app.resolve(unknown, None)
    assert answer["statusCode"] == 404
    assert json.loads(answer["body"]) == {"error": "NotFound", "message": "no such resource: GET /nowhere", "problems": []}

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.start, "from_request", broken)
    set_environment(monkeypatch, RUNS_BUCKET="b")
    valid = dict(event, body=json.dumps({"name": "x", "wdl": "version 1.1", "client_token": "t"}))
    answer = api.app.resolve(valid, None)
    assert answer["statusCode"] == 500
    body = json.loads(answer["body"])
    assert body["error"] == "InternalError" and "secret" not in answer["body"] and body["problems"] == []

    # under the WES prefix, WES's ErrorResponse
    answer = api.app.resolve(dict(unknown, path=WES + "/nowhere", resource=WES + "/nowhere"), None)
    assert json.loads(answer["body"]) == {"msg": f"no such resource: GET {WES}/nowhere", "status_code": 404}
    monkeypatch.setattr(api.wes, "service_info", broken)
    answer = api.app.resolve(dict(unknown, path=WES + "/service-info", resource=WES + "/service-info"), None)
    assert answer["statusCode"] == 500 and json.loads(answer["body"])["status_code"] == 500 and "secret" not in answer["body"]


# -- OpenAPI 3.0 only ---------------------------------------------------------------------------
# OpenAPI 3.0's Schema Object (https://spec.openapis.org/oas/v3.0.3#schema-object): one `type`
# (a string), `nullable` for null, draft-4 style boolean exclusiveMinimum/Maximum; none of JSON
# Schema 2020-12's newer keywords. API Gateway validates request models as JSON Schema draft 4
# (https://docs.aws.amazon.com/apigateway/latest/developerguide/how-to-create-model.html).
NOT_IN_OPENAPI_30 = {
    "$schema", "$id", "$anchor", "$defs", "$dynamicRef", "$dynamicAnchor", "$comment", "const", "examples",
    "prefixItems", "contains", "minContains", "maxContains", "if", "then", "else", "dependentRequired",
    "dependentSchemas", "unevaluatedProperties", "unevaluatedItems", "propertyNames", "patternProperties",
    "contentMediaType", "contentEncoding", "contentSchema",
}


def schema_problems(schema, where):
    """Every construct of ``schema`` (recursively) that OpenAPI 3.0 does not have."""
    if not isinstance(schema, dict):
        return []
    found = []
    kind = schema.get("type")
    if isinstance(kind, list):
        found.append(f"{where}: type {kind} (OpenAPI 3.0: one type, `nullable: true` for null)")
    elif kind == "null":
        found.append(f"{where}: type null (OpenAPI 3.0: `nullable: true`)")
    for key in sorted(NOT_IN_OPENAPI_30 & set(schema)):
        found.append(f"{where}: {key} is not an OpenAPI 3.0 keyword")
    for bound in ("exclusiveMinimum", "exclusiveMaximum"):
        if bound in schema and not isinstance(schema[bound], bool):
            found.append(f"{where}: numeric {bound} (OpenAPI 3.0: a boolean beside minimum/maximum)")
    if schema.get("nullable") and "type" not in schema:
        found.append(f"{where}: nullable without a type (OpenAPI 3.0.3: nullable applies beside a type)")
    for key, value in (schema.get("properties") or {}).items():
        found += schema_problems(value, f"{where}.properties.{key}")
    for key in ("items", "additionalProperties", "not"):
        found += schema_problems(schema.get(key), f"{where}.{key}")
    for key in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(schema.get(key, [])):
            found += schema_problems(sub, f"{where}.{key}[{i}]")
    return found


def document_schemas(doc):
    """(where, schema) of every schema an OpenAPI document holds."""
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        yield f"components.schemas.{name}", schema
    for path, operations in doc.get("paths", {}).items():
        for verb, op in operations.items():
            for i, parameter in enumerate(op.get("parameters", [])):
                yield f"{verb} {path} parameters[{i}]", parameter.get("schema")
            for media, content in (op.get("requestBody", {}).get("content") or {}).items():
                yield f"{verb} {path} requestBody {media}", content.get("schema")
            for code, response in op.get("responses", {}).items():
                for media, content in (response.get("content") or {}).items():
                    yield f"{verb} {path} {code} {media}", content.get("schema")


def test_the_openapi_document_is_openapi_30_only():
    doc = json.loads(DOC.read_text())
    assert doc["openapi"].startswith("3.0.")
    problems = [p for where, schema in document_schemas(doc) for p in schema_problems(schema, where)]
    assert not problems, "\n".join(problems)
    # nullable fields say so the 3.0 way
    request = doc["components"]["schemas"]["RunRequest"]["properties"]
    assert request["client_token"] == {**request["client_token"], "type": "string", "nullable": True}


def test_the_gateway_request_model_is_openapi_30_and_draft_4():
    """template.yaml's RunRequest model (the gateway's check of POST /runs)."""
    template = read_template(DOC.parents[1] / "template.yaml")
    models = template["Resources"]["RunsApi"]["Properties"]["Models"]
    problems = [p for name, schema in models.items() for p in schema_problems(schema, f"Models.{name}")]
    assert not problems, "\n".join(problems)


def test_the_walk_refuses_json_schema_2020_constructs():
    """What the two tests above would refuse: Powertools' own (OpenAPI 3.1) output among them."""
    bad = {
        "type": "object",
        "properties": {
            "a": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "b": {"type": ["string", "null"]},
            "c": {"const": 1},
            "d": {"type": "integer", "exclusiveMinimum": 0},
            "e": {"type": "array", "prefixItems": [{"type": "string"}]},
        },
    }
    problems = schema_problems(bad, "x")
    assert [p.split(":")[0] for p in problems] == [
        "x.properties.a.anyOf[1]", "x.properties.b", "x.properties.c", "x.properties.d", "x.properties.e",
    ]
    powertools = json.loads(api.app.get_openapi_json_schema(title="t", version="1"))
    assert [p for where, s in document_schemas(powertools) for p in schema_problems(s, where)]


def test_downgrade_turns_nullable_unions_into_nullable_and_refuses_the_rest():
    from miniwdl_fargate import openapi30

    converted = openapi30.convert(
        {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "null"}], "title": "T", "default": None}, "x"
    )
    assert converted == {"type": "string", "maxLength": 3, "title": "T", "default": None, "nullable": True}
    assert openapi30.convert({"type": ["integer", "null"], "exclusiveMinimum": 0}, "x") == {
        "type": "integer", "nullable": True, "minimum": 0, "exclusiveMinimum": True,
    }
    assert openapi30.convert({"const": "a", "examples": ["a"]}, "x") == {"enum": ["a"], "example": "a"}
    for schema, message in (
        ({"type": "object", "properties": {"p": {"prefixItems": []}}}, "x.properties.p: prefixItems"),
        ({"anyOf": [{"$ref": "#/components/schemas/A"}, {"type": "null"}]}, "x: a nullable $ref"),
    ):
        with pytest.raises(openapi30.Unconvertible, match=re.escape(message)):
            openapi30.convert(schema, "x")
