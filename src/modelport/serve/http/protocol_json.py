"""Plain JSON, for people and scripts: ``POST /predict/{model}`` with records.

The body is one record (``{"tenure": 3, "plan": "basic"}``), a list of records, or a dict of
columns (``{"tenure": [3, 40], "plan": ["basic", "premium"]}``). The answer names the model
and version and gives one prediction per row: ``label`` and ``proba`` (class -> probability)
for classifiers, ``value`` for regressors, ``cluster`` for clustering. ``?explain=3`` adds
each prediction's three largest reasons (:mod:`modelport.scoring.reasons`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.serve.http.routing import HTTPError, loads

if TYPE_CHECKING:
    from modelport.scoring.reasons import Reasons
    from modelport.signature import Signature


def columns_from_records(records: list, names: list[str]) -> dict[str, list]:
    """Records (dicts) to columns; a key in any record becomes a column (missing -> None)."""
    if len(records) == 1:
        row = records[0]
        if not isinstance(row, dict):
            raise HTTPError(422, f"a record must be a JSON object, got {type(row).__name__}")
        return {k: [v] for k, v in row.items()}
    keys: dict[str, None] = {}
    for i, row in enumerate(records):
        if not isinstance(row, dict):
            raise HTTPError(422, f"record {i} must be a JSON object, got {type(row).__name__}")
        keys.update(dict.fromkeys(row))
    return {k: [row.get(k) for row in records] for k in keys}


def columns_from_rows(rows: list, names: list[str]) -> dict[str, list]:
    """Positional rows (lists in signature order) to columns."""
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(names):
            raise HTTPError(422, f"row {i} must be a list of {len(names)} values in the "
                                 f"order {', '.join(names)}")
    return {n: [row[j] for row in rows] for j, n in enumerate(names)}


def columns_from_any(data: Any, names: list[str]) -> dict[str, Any]:
    """Records, one record, a dict of columns, or positional rows, to columns."""
    if isinstance(data, dict):
        if not data:
            raise HTTPError(422, "the request holds no rows")
        if all(isinstance(v, list) for v in data.values()):
            return data
        # any scalar value makes it one record; a list inside it is then a bad value
        return {k: [v] for k, v in data.items()}
    if isinstance(data, list):
        if not data:
            raise HTTPError(422, "the request holds no rows")
        if isinstance(data[0], list):
            return columns_from_rows(data, names)
        return columns_from_records(data, names)
    raise HTTPError(422, "send a JSON object (one record or columns) or a list of records")


def decode(data: Any, names: list[str]) -> dict[str, Any]:
    """Columns from a parsed body: records, one record, ``{"records": [...]}``, a dict of
    columns or positional rows."""
    if isinstance(data, dict) and set(data) == {"records"}:
        data = data["records"]
    return columns_from_any(data, names)


def decode_body(body: bytes, names: list[str]) -> dict[str, Any]:
    """Columns from a ``/predict`` body (bytes): :func:`decode` after parsing the JSON."""
    return decode(loads(body), names)


def encode(out: dict[str, np.ndarray], signature: Signature, model: str, version: int,
           reasons: Reasons | None = None) -> dict[str, Any]:
    """The answer: one prediction per row; with ``reasons`` (``?explain=k``, a
    :class:`~modelport.scoring.reasons.Reasons`) each prediction also holds ``base`` and
    ``reasons`` (``[{"column", "value", "contribution"}]``, largest first), and ``output``
    (the class explained) for a model with several raw scores."""
    task = signature.task
    if task == "classification":
        labels = out["label"].tolist()
        if "proba" in out:
            assert signature.classes is not None  # only a classifier gives probabilities
            classes = [str(c) for c in signature.classes]
            preds = [{"label": lab, "proba": dict(zip(classes, p, strict=True))}
                     for lab, p in zip(labels, out["proba"].tolist(), strict=True)]
        else:
            preds = [{"label": lab} for lab in labels]
    elif task == "regression":
        preds = [{"value": v} for v in out["value"].tolist()]
    else:
        preds = [{"cluster": c} for c in out["cluster"].tolist()]
    if reasons is not None:
        for pred, why in zip(preds, reasons.records(), strict=True):
            pred.update(why)
    return {"model": model, "version": version, "predictions": preds}
