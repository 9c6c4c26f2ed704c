"""KServe's v1 protocol: ``GET /v1/models/{m}`` and ``POST /v1/models/{m}:predict``.

The body is ``{"instances": [...]}`` with records or rows in signature order; the answer is
``{"predictions": [...]}`` (labels, values or cluster ids).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.predictor import PRIMARY_OUTPUT
from modelport.serve.http.protocol_json import columns_from_any
from modelport.serve.http.routing import HTTPError, loads

if TYPE_CHECKING:
    from modelport.signature import Signature


def decode(data: Any, names: list[str]) -> dict[str, Any]:
    """Columns from a parsed ``{"instances": [...]}`` body."""
    if not isinstance(data, dict) or not isinstance(data.get("instances"), list):
        raise HTTPError(400, 'send {"instances": [...]} with records or rows')
    return columns_from_any(data["instances"], names)


def decode_body(body: bytes, names: list[str]) -> dict[str, Any]:
    """Columns from a ``:predict`` body (bytes): :func:`decode` after parsing the JSON."""
    return decode(loads(body), names)


def encode(out: dict[str, np.ndarray], signature: Signature) -> dict[str, Any]:
    return {"predictions": out[PRIMARY_OUTPUT[signature.task]].tolist()}
