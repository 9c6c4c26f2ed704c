"""The OpenAPI document of a server, with request schemas derived from each model's signature,
and the ``/docs`` page that renders it: self-contained, so it works on a machine with no
internet access."""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING, Any

import modelport

if TYPE_CHECKING:
    from modelport.signature import Signature


def record_schema(signature: Signature) -> dict[str, Any]:
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
        # ?explain=N, "parameters": {"explain": N}, "params": {"explain": N}: reason codes
        explain = {"type": "integer", "minimum": 1, "maximum": len(sig.names),
                   "description": "add each prediction's N largest reasons (input column, "
                                  "value, contribution to the raw score)"}
        ref = f"{name}_record"
        schemas[ref] = record_schema(sig)
        record = {"$ref": f"#/components/schemas/{ref}"}
        records = {"type": "array", "items": record, "minItems": 1, "maxItems": 1000}
        paths[f"/predict/{name}"] = {"post": {
            "summary": f"Score rows with {name}", "operationId": f"predict_{name}",
            "parameters": [{"name": "explain", "in": "query", "required": False,
                            "schema": explain, "description": explain["description"]}],
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
                "parameters": {"type": "object", "properties": {"explain": explain}},
                "inputs": {"type": "array", "prefixItems": columns, "minItems": 1}}}),
            "responses": _answers("v2 outputs")}}
        for path, op in ((f"/v2/models/{name}", "v2_metadata"),
                         (f"/v2/models/{name}/ready", "v2_ready"),
                         (f"/v1/models/{name}", "kserve_metadata")):
            paths[path] = {"get": {"operationId": f"{op}_{name}",
                                   "responses": {"200": {"description": "ok"}}}}
    first = next(iter(models.values()), None)
    if first is not None:
        first_sig = first.champion.current.signature
        record = record_schema(first_sig)
        records = {"type": "array", "items": record, "minItems": 1}
        params = {"type": "object", "properties": {
            "predict_method": {"enum": ["predict", "predict_proba"]},
            "explain": {"type": "integer", "minimum": 1, "maximum": len(first_sig.names)}}}
        paths["/invocations"] = {"post": {
            "summary": "MLflow scoring (first model, or ?model=NAME)",
            "operationId": "invocations",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"oneOf": [
                    {"type": "object", "required": ["dataframe_records"],
                     "properties": {"dataframe_records": records, "params": params},
                     "additionalProperties": False},
                    {"type": "object", "required": ["instances"],
                     "properties": {"instances": records, "params": params},
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


#: the /docs page's style and script, inline: the page loads nothing from anywhere else
_DOCS_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem 1.5rem;
color:#1d2330;background:#fff}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.2rem;margin:1.6rem 0 .4rem;
border-bottom:1px solid #d5d9e0}h3{font-size:1rem;margin:1rem 0 .3rem}
table{border-collapse:collapse;width:100%}th,td{text-align:left;vertical-align:top;
padding:.25rem .5rem;border-bottom:1px solid #eceef2}th{font-weight:600}
code,pre{font:13px/1.4 ui-monospace,monospace}pre{background:#f4f5f7;padding:.6rem;
overflow-x:auto;white-space:pre-wrap;word-break:break-all}
.method{display:inline-block;min-width:3.2rem;font-weight:600}.muted{color:#5b6475}
"""
_DOCS_SCRIPT = r"""
"use strict";
function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}
function resolve(doc, schema) {
  for (let i = 0; schema && schema.$ref && i < 20; i++) {
    schema = schema.$ref.split("/").slice(1).reduce(
      (at, key) => at && at[key.replace(/~1/g, "/").replace(/~0/g, "~")], doc);
  }
  return schema || {};
}
function kinds(s) { return [].concat(s.type || []).filter(t => t !== "null"); }
function describe(s) {
  if (Array.isArray(s.enum)) {
    const known = s.enum.filter(v => v !== null);
    const shown = known.slice(0, 8).map(v => JSON.stringify(v)).join(", ");
    return "one of " + known.length + " categories: " + shown + (known.length > 8 ? ", ..." : "");
  }
  if (typeof s.minimum === "number" && typeof s.maximum === "number") {
    return "number, " + s.minimum + " to " + s.maximum + " in training";
  }
  return kinds(s).join(" or ") || "any";
}
function example(record) {
  const row = {};
  for (const [name, s] of Object.entries(record.properties || {})) {
    const known = Array.isArray(s.enum) ? s.enum.filter(v => v !== null) : [];
    if (known.length) row[name] = known[0];
    else if (typeof s.minimum === "number" && typeof s.maximum === "number")
      row[name] = Number(((s.minimum + s.maximum) / 2).toPrecision(6));
    else row[name] = kinds(s).includes("number") ? 0 : "";
  }
  return row;
}
function shell(text) { return "'" + text.replace(/'/g, "'\\''") + "'"; }
function routes(paths, list) {
  const table = el("table");
  for (const path of list) {
    for (const [method, op] of Object.entries(paths[path] || {})) {
      const row = el("tr");
      const cell = el("td");
      cell.append(el("span", method.toUpperCase(), "method"), el("code", path));
      row.append(cell, el("td", op.summary || "", "muted"));
      table.append(row);
    }
  }
  return table;
}
function model(doc, name, own) {
  const section = el("section");
  section.className = "model";
  section.append(el("h2", name), el("h3", "Routes"), routes(doc.paths, own));
  const body = ((doc.paths["/predict/" + name].post || {}).requestBody || {}).content || {};
  const schema = resolve(doc, ((body["application/json"] || {}).schema || {}).oneOf?.[0]);
  const inputs = el("table");
  const head = el("tr");
  head.append(el("th", "input"), el("th", "values"));
  inputs.append(head);
  for (const [column, s] of Object.entries(schema.properties || {})) {
    const row = el("tr");
    const cell = el("td");
    cell.append(el("code", column));
    row.append(cell, el("td", describe(s)));
    inputs.append(row);
  }
  const request = JSON.stringify(example(schema));
  const url = location.origin + "/predict/" + encodeURIComponent(name);
  section.append(el("h3", "Inputs"), inputs, el("h3", "Example request"),
    el("pre", "curl -X POST " + shell(url) + " -H 'Content-Type: application/json' -d " +
              shell(request)));
  return section;
}
async function main() {
  const status = document.getElementById("status");
  let doc;
  try {
    const answer = await fetch("openapi.json", {headers: {accept: "application/json"}});
    if (!answer.ok) throw new Error("the server answered " + answer.status);
    doc = await answer.json();
  } catch (error) {
    status.textContent = "Could not read openapi.json: " + error.message;
    return;
  }
  const paths = doc.paths || {};
  const names = Object.keys(paths).filter(p => p.startsWith("/predict/")).map(p => p.slice(9));
  const owned = new Set();
  const models = document.getElementById("models");
  for (const name of names) {
    const own = ["/predict/" + name, "/v1/models/" + name + ":predict", "/v1/models/" + name,
                 "/v2/models/" + name + "/infer", "/v2/models/" + name,
                 "/v2/models/" + name + "/ready"].filter(p => p in paths);
    own.forEach(p => owned.add(p));
    models.append(model(doc, name, own));
  }
  const rest = Object.keys(paths).filter(p => !owned.has(p));
  models.append(el("h2", "Other routes"), routes(paths, rest));
  const info = doc.info || {};
  status.textContent = (info.description || "") + " (modelport " + (info.version || "?") +
    "; the full OpenAPI document is at /openapi.json)";
}
main();
"""


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


#: ``/docs``: a page of its own (no Swagger UI, no CDN, nothing fetched but
#: ``openapi.json`` from the same server) listing each model's routes, inputs and an example
#: request. Text from the document (column names, categories) is set as text, never as
#: markup, and the Content-Security-Policy admits only this page's own script and style.
DOCS_HTML = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
script-src {_csp_hash(_DOCS_SCRIPT)}; style-src {_csp_hash(_DOCS_STYLE)}; connect-src 'self'; \
base-uri 'none'; form-action 'none'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>modelport API</title>
<style>{_DOCS_STYLE}</style>
</head><body>
<header><h1>modelport API</h1><p id="status" class="muted">Reading openapi.json...</p></header>
<main id="models"></main>
<script>{_DOCS_SCRIPT}</script>
</body></html>
"""
