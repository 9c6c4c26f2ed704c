"""MLflow's scoring protocol: ``POST /invocations`` as ``mlflow models serve`` takes it.

JSON bodies hold exactly one of ``dataframe_split`` (``columns`` + ``data``),
``dataframe_records``, ``instances`` or ``inputs`` (records, a dict of columns, or rows), plus
optional ``params``; ``text/csv`` and ``application/csv`` bodies have a header row. The
answer is ``{"predictions": [...]}``: labels, values or cluster ids, or class probabilities
with ``params: {"predict_method": "predict_proba"}``, as MLflow's scikit-learn flavour
gives them; ``params: {"explain": 3}`` adds ``reasons`` beside them.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.predictor import PRIMARY_OUTPUT
from modelport.serve.http.protocol_json import columns_from_any, columns_from_rows
from modelport.serve.http.routing import HTTPError, loads

if TYPE_CHECKING:
    from modelport.scoring.reasons import Reasons
    from modelport.signature import Signature

KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
CSV_TYPES = ("text/csv", "application/csv")


def decode(body: bytes, content_type: str, names: list[str]) -> tuple[dict[str, Any], dict]:
    """(columns, params) from an ``/invocations`` body."""
    if content_type in CSV_TYPES:
        return _csv(body), {}
    if content_type not in ("application/json", ""):
        raise HTTPError(415, f"content type {content_type!r} is not supported; send "
                             "application/json or text/csv")
    data = loads(body)
    if not isinstance(data, dict):
        raise HTTPError(400, f"send a JSON object with one of: {', '.join(KEYS)}")
    given = [k for k in KEYS if k in data]
    extra = [k for k in data if k not in KEYS and k != "params"]
    if len(given) != 1 or extra:
        got = ", ".join(list(map(str, data))[:10]) + (", ..." if len(data) > 10 else "")
        raise HTTPError(400, f"send exactly one of {', '.join(KEYS)} (and optionally params); "
                             f"got: {got or 'nothing'}")
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise HTTPError(400, "params must be a JSON object")
    key = given[0]
    value = data[key]
    if key == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise HTTPError(400, "dataframe_split needs 'columns' and 'data' (a list of rows)")
        columns = value.get("columns") or names
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise HTTPError(400, "dataframe_split 'columns' must be a list of names")
        if not value["data"]:
            raise HTTPError(422, "the request holds no rows")
        return columns_from_rows(value["data"], columns), params
    if key == "dataframe_records" and not isinstance(value, list):
        raise HTTPError(400, "dataframe_records must be a list of records")
    return columns_from_any(value, names), params


def _csv(body: bytes) -> dict[str, list]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HTTPError(400, "CSV body is not UTF-8") from None
    reader = csv.reader(io.StringIO(text))
    try:
        rows = list(reader)
    except csv.Error as exc:
        # e.g. a field over csv.field_size_limit() (128 KiB): no model input is that long
        raise HTTPError(400, f"CSV body cannot be read at line {reader.line_num}: {exc}; send "
                             "one header row, then one row per record, each field under "
                             "128 KiB") from None
    if len(rows) < 2:
        raise HTTPError(422, "CSV body needs a header row and at least one data row")
    header = rows[0]
    body_rows = rows[1:]
    for i, row in enumerate(body_rows, start=2):
        if len(row) != len(header):
            raise HTTPError(422, f"CSV line {i} has {len(row)} fields, the header {len(header)}")
    return {name: [row[j] if row[j] != "" else None for row in body_rows]
            for j, name in enumerate(header)}


def encode(out: dict[str, np.ndarray], signature: Signature, params: dict,
           reasons: Reasons | None = None) -> dict[str, Any]:
    """``{"predictions": [...]}``; with ``params: {"explain": k}`` also ``reasons``, one
    ``{"base", "reasons": [{"column", "value", "contribution"}]}`` per prediction, so
    MLflow clients reading ``predictions`` see the same answer."""
    if params.get("predict_method") == "predict_proba" and "proba" in out:
        body = {"predictions": out["proba"].tolist()}
    else:
        body = {"predictions": out[PRIMARY_OUTPUT[signature.task]].tolist()}
    if reasons is not None:
        body["reasons"] = reasons.records()
    return body
