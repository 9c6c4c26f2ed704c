"""The OpenAPI document of a server, with request schemas derived from each model's signature,
and the ``/docs`` page that renders it."""

from __future__ import annotations

from typing import Any

import modelport


def record_schema(signature) -> dict[str, Any]:
    """A JSON Schema of one input row: numbers and strings, categories as an enum."""
    props: dict[str, Any] = {}
    for c in signature.inputs:
        if c.kind == "numeric":
            s: dict[str, Any] = {"type": ["number", "null"]}
            if c.min is not None and c.max is not None:
                s["minimum"], s["maximum"] = c.min, c.max
        else:
            s = {"type": ["string", "null"]}
            if c.categories:
                s["enum"] = list(c.categories) + [None]
        props[c.name] = s
    return {"type": "object", "properties": props, "required": list(props),
            "additionalProperties": False}


def _json_body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _answers(ok: str) -> dict:
    return {"200": {"description": ok}, "400": {"description": "malformed request"},
            "404": {"description": "unknown model"}, "413": {"description": "body too large"},
            "422": {"description": "input does not fit the model's signature"}}


def document(models: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for the served ``models`` (name -> ServedModel)."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for name, served in models.items():
        sig = served.champion.current.signature
        ref = f"{name}_record"
        schemas[ref] = record_schema(sig)
        record = {"$ref": f"#/components/schemas/{ref}"}
        records = {"type": "array", "items": record, "minItems": 1, "maxItems": 1000}
        paths[f"/predict/{name}"] = {"post": {
            "summary": f"Score rows with {name}", "operationId": f"predict_{name}",
            "requestBody": _json_body({"oneOf": [record, records]}),
            "responses": _answers("one prediction per row")}}
        paths[f"/v1/models/{name}:predict"] = {"post": {
            "summary": f"KServe v1 predict with {name}", "operationId": f"kserve_{name}",
            "requestBody": _json_body({"type": "object", "required": ["instances"],
                                       "properties": {"instances": records}}),
            "responses": _answers("predictions")}}
        columns = [{"type": "object", "required": ["name", "shape", "datatype", "data"],
                    "properties": {"name": {"const": c.name},
                                   "shape": {"type": "array", "items": {"type": "integer"}},
                                   "datatype": {"type": "string"},
                                   "data": {"type": "array"}}} for c in sig.inputs]
        paths[f"/v2/models/{name}/infer"] = {"post": {
            "summary": f"Open Inference Protocol v2 infer with {name}",
            "operationId": f"v2_infer_{name}",
            "requestBody": _json_body({"type": "object", "required": ["inputs"], "properties": {
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "inputs": {"type": "array", "prefixItems": columns, "minItems": 1}}}),
            "responses": _answers("v2 outputs")}}
        for path, op in ((f"/v2/models/{name}", "v2_metadata"),
                         (f"/v2/models/{name}/ready", "v2_ready"),
                         (f"/v1/models/{name}", "kserve_metadata")):
            paths[path] = {"get": {"operationId": f"{op}_{name}",
                                   "responses": {"200": {"description": "ok"}}}}
    first = next(iter(models.values()), None)
    if first is not None:
        record = record_schema(first.champion.current.signature)
        records = {"type": "array", "items": record, "minItems": 1}
        paths["/invocations"] = {"post": {
            "summary": "MLflow scoring (first model, or ?model=NAME)",
            "operationId": "invocations",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"oneOf": [
                    {"type": "object", "required": ["dataframe_records"],
                     "properties": {"dataframe_records": records, "params": {"type": "object"}},
                     "additionalProperties": False},
                    {"type": "object", "required": ["instances"],
                     "properties": {"instances": records, "params": {"type": "object"}},
                     "additionalProperties": False},
                    {"type": "object", "required": ["dataframe_split"], "properties": {
                        "dataframe_split": {"type": "object", "properties": {
                            "columns": {"type": "array", "items": {"type": "string"}},
                            "data": {"type": "array", "items": {"type": "array"}}}}},
                     "additionalProperties": False},
                ]}},
                "text/csv": {"schema": {"type": "string"}}}},
            "responses": _answers("predictions")}}
    for path in ("/ping", "/health", "/version", "/v2", "/v2/health/live", "/v2/health/ready",
                 "/metrics"):
        paths[path] = {"get": {"responses": {"200": {"description": "ok"}}}}
    return {"openapi": "3.1.0",
            "info": {"title": "modelport", "version": modelport.__version__,
                     "description": "Models served by modelport: " + ", ".join(models)},
            "paths": paths, "components": {"schemas": schemas}}


DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>modelport API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head><body><div id="ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "openapi.json", dom_id: "#ui"});</script>
</body></html>"""
