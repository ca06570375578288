"""An OpenAPI 3.1 document (what Powertools generates from pydantic models: JSON Schema 2020-12)
rewritten in OpenAPI 3.0 terms, which API Gateway imports and every 3.0 tool reads.

OpenAPI 3.0's Schema Object is a subset of JSON Schema draft 4/5 with its own ``nullable``
(https://spec.openapis.org/oas/v3.0.3#schema-object); API Gateway's REST API models are JSON
Schema draft 4 (https://docs.aws.amazon.com/apigateway/latest/developerguide/how-to-create-model.html).
So: ``anyOf: [X, {"type": "null"}]`` and ``type: [X, "null"]`` become X with ``nullable: true``,
``const`` an ``enum`` of one value, ``examples`` one ``example``, a numeric ``exclusiveMinimum``
a ``minimum`` with ``exclusiveMinimum: true``. A 2020-12 keyword with no 3.0 equivalent is an
error naming where it is, never silently dropped.
"""

from __future__ import annotations

import copy
from typing import Any

VERSION = "3.0.3"

#: JSON Schema keywords OpenAPI 3.0's Schema Object does not have (nor draft 4)
UNSUPPORTED = frozenset({
    "$schema", "$id", "$anchor", "$defs", "$dynamicRef", "$dynamicAnchor", "$comment", "const", "examples",
    "prefixItems", "contains", "minContains", "maxContains", "if", "then", "else", "dependentRequired",
    "dependentSchemas", "unevaluatedProperties", "unevaluatedItems", "propertyNames", "patternProperties",
    "contentMediaType", "contentEncoding", "contentSchema",
})
NULL = {"type": "null"}


class Unconvertible(ValueError):
    """A construct with no OpenAPI 3.0 equivalent; the message says where."""


def downgrade(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of the OpenAPI 3.1 document ``doc`` in OpenAPI 3.0 terms."""
    out = copy.deepcopy(doc)
    out["openapi"] = VERSION
    for name, schema in out.get("components", {}).get("schemas", {}).items():
        out["components"]["schemas"][name] = convert(schema, f"#/components/schemas/{name}")
    for path, operations in out.get("paths", {}).items():
        for verb, op in operations.items():
            where = f"paths.{path}.{verb}"
            for i, parameter in enumerate(op.get("parameters", [])):
                if "schema" in parameter:
                    parameter["schema"] = convert(parameter["schema"], f"{where}.parameters[{i}]")
            for media, content in (op.get("requestBody", {}).get("content") or {}).items():
                content["schema"] = convert(content["schema"], f"{where}.requestBody.{media}")
            for code, response in op.get("responses", {}).items():
                for media, content in (response.get("content") or {}).items():
                    if "schema" in content:
                        content["schema"] = convert(content["schema"], f"{where}.responses.{code}.{media}")
    return out


def convert(schema: Any, where: str) -> Any:
    """One Schema Object (and those inside it) in OpenAPI 3.0 terms."""
    if not isinstance(schema, dict):
        return schema
    schema = dict(schema)
    for key in ("anyOf", "oneOf"):
        if key in schema and NULL in schema[key]:
            schema = _nullable_union(schema, key, where)
    if isinstance(schema.get("type"), list):
        schema = _nullable_type(schema, where)
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    if "examples" in schema:
        examples = schema.pop("examples")
        if isinstance(examples, list) and examples:
            schema["example"] = examples[0]
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(schema.get(bound), (int, float)) and not isinstance(schema[bound], bool):
            schema[plain] = schema.pop(bound)
            schema[bound] = True
    found = sorted(UNSUPPORTED & set(schema))
    if found:
        raise Unconvertible(f"{where}: {', '.join(found)} has no OpenAPI 3.0 equivalent")
    if isinstance(schema.get("properties"), dict):
        schema["properties"] = {k: convert(v, f"{where}.properties.{k}") for k, v in schema["properties"].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            schema[key] = convert(schema[key], f"{where}.{key}")
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            schema[key] = [convert(s, f"{where}.{key}[{i}]") for i, s in enumerate(schema[key])]
    return schema


def _nullable_union(schema: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """``anyOf: [X, {"type": "null"}]``: X, nullable (its annotations kept). Several non-null
    branches stay a union, each branch nullable (3.0.3: ``nullable`` applies beside a ``type``)."""
    rest = [s for s in schema.pop(key) if s != NULL]
    if any("$ref" in s for s in rest):
        raise Unconvertible(f"{where}: a nullable $ref has no OpenAPI 3.0 form (give the field a default instead)")
    if len(rest) == 1:
        return {**rest[0], **schema, "nullable": True}
    if not all("type" in s for s in rest):
        raise Unconvertible(f"{where}: a nullable union of untyped schemas has no OpenAPI 3.0 form")
    return {**schema, key: [{**s, "nullable": True} for s in rest]}


def _nullable_type(schema: dict[str, Any], where: str) -> dict[str, Any]:
    types = [t for t in schema["type"] if t != "null"]
    if len(types) != 1:
        raise Unconvertible(f"{where}: type {schema['type']} has no OpenAPI 3.0 form (one type, maybe nullable)")
    return {**schema, "type": types[0], **({"nullable": True} if "null" in schema["type"] else {})}
