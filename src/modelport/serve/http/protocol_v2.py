"""The Open Inference Protocol (v2, as KServe and Triton speak it), REST binding.

Tabular input comes two ways: one input per column, named after it, each of shape ``[n]``
or ``[n, 1]`` (declare it with ``"parameters": {"content_type": "pd"}``, as MLServer does),
or one ``[n, k]`` tensor whose columns follow the signature order. Inputs may be JSON
``data`` or, with Triton's binary extension (the ``Inference-Header-Content-Length``
header), raw bytes after the JSON header. Outputs: ``label`` and ``proba`` (``[n, k]``,
classes in ``parameters.classes``) for classifiers, ``value`` or ``cluster`` otherwise, as
JSON data; a request may ask for a subset with ``outputs``. ``"parameters": {"explain": 3}``
adds the three largest reasons of each row as tensors (see :func:`encode`).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.serve.http.routing import HTTPError, loads, parse_length

if TYPE_CHECKING:
    from modelport.scoring.reasons import Reasons
    from modelport.signature import Signature

_BINARY = {"BOOL": "?", "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
           "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
           "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}


def datatype(kind_or_dtype: str) -> str:
    """The v2 datatype of a signature dtype (``float64`` -> FP64, ``string`` -> BYTES)."""
    return {"float64": "FP64", "int64": "INT64", "bool": "BOOL", "string": "BYTES",
            "numeric": "FP64", "categorical": "BYTES"}.get(kind_or_dtype, "BYTES")


def parse_body(body: bytes, headers: dict[str, str]) -> tuple[dict, dict[str, bytes]]:
    """(JSON header, binary data by input name) of an infer request; a 400 naming the part
    for anything that is not an infer request."""
    size = headers.get("inference-header-content-length")
    if size is None:
        head, rest = body, b""
    else:
        n = parse_length(size)
        if n is None or n > len(body):
            raise HTTPError(400, "Inference-Header-Content-Length must be the byte length of "
                                 "the JSON header, a whole number no larger than the body "
                                 f"({len(body)} bytes); got {size[:40]!r}")
        head, rest = body[:n], body[n:]
    request = loads(head)
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) \
            or not request["inputs"]:
        raise HTTPError(400, 'send {"inputs": [{"name", "shape", "datatype", "data"}, ...]}')
    if request.get("parameters") is not None and not isinstance(request["parameters"], dict):
        raise HTTPError(400, 'parameters must be a JSON object, e.g. {"content_type": "pd"}')
    _check_outputs(request.get("outputs"))
    rid = request.get("id")
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, str | int)):
        raise HTTPError(400, f"id must be a string, got a {type(rid).__name__}")
    blobs: dict[str, bytes] = {}
    seen: set[str] = set()
    offset = 0
    for item in request["inputs"]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise HTTPError(400, "every input needs a name, a shape, a datatype and data")
        name = item["name"]
        if name in seen:
            raise HTTPError(400, f"input {name!r} is given twice; send each input once", name)
        seen.add(name)
        params = item.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise HTTPError(400, f"input {name!r}: parameters must be a JSON object", name)
        n = (params or {}).get("binary_data_size")
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, int) or n < 0 \
                    or offset + n > len(rest):
                raise HTTPError(400, f"input {name!r}: binary_data_size must be a byte count "
                                     "within the binary part of the body", name)
            blobs[name] = rest[offset:offset + n]
            offset += n
    return request, blobs


def _check_outputs(outputs: Any) -> None:
    if outputs is None:
        return
    if not isinstance(outputs, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
        raise HTTPError(400, 'outputs must be a list like [{"name": "proba"}]: an object with '
                             "a string name per output wanted")


def _strings(blob: bytes, name: str) -> list[str]:
    """The elements of a binary BYTES tensor: each a 4-byte little-endian length, then
    that many bytes."""
    values, pos, end = [], 0, len(blob)
    while pos < end:
        if pos + 4 > end:
            raise HTTPError(400, f"input {name!r}: binary BYTES data ends inside an element's "
                                 "4-byte length prefix", name)
        (n,) = struct.unpack_from("<I", blob, pos)
        if pos + 4 + n > end:
            raise HTTPError(400, f"input {name!r}: a binary BYTES element's length prefix "
                                 f"({n}) runs past the end of its data", name)
        values.append(blob[pos + 4:pos + 4 + n].decode("utf-8", "replace"))
        pos += 4 + n
    return values


def _values(item: dict, blob: bytes | None) -> tuple[Any, list[int]]:
    name = item["name"]
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise HTTPError(422, f"input {name!r} needs a shape: a list of sizes", name)
    dtype = item.get("datatype")
    if dtype is not None and not isinstance(dtype, str):
        raise HTTPError(422, f"input {name!r}: datatype must be a name such as FP64, INT64 or "
                             "BYTES", name)
    if blob is not None:
        if dtype == "BYTES":
            return _strings(blob, name), shape
        if dtype not in _BINARY:
            raise HTTPError(422, f"input {name!r}: unknown datatype {dtype!r}; binary data "
                                 f"takes BYTES or one of {', '.join(_BINARY)}", name)
        try:
            return np.frombuffer(blob, dtype=_BINARY[dtype]), shape
        except ValueError:
            raise HTTPError(422, f"input {name!r}: binary data does not fit {dtype}", name) \
                from None
    data = item.get("data")
    if not isinstance(data, list):
        raise HTTPError(422, f"input {name!r} needs data: a list of values", name)
    if data and isinstance(data[0], list):
        data = _flatten(data, name)
    return data, shape


def _flatten(data: list, name: str) -> list:
    flat: list = []
    stack = [iter(data)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                stack.append(iter(v))
                break
            flat.append(v)
        else:
            stack.pop()
    return flat


def decode(request: dict, blobs: dict[str, bytes], names: list[str]) -> dict[str, Any]:
    """Columns from a v2 infer request (one input per column, or one [n, k] tensor)."""
    inputs = request["inputs"]
    params = request.get("parameters") or {}
    per_column = params.get("content_type") == "pd" or all(
        isinstance(i, dict) and i.get("name") in names for i in inputs)
    if per_column:
        cols: dict[str, Any] = {}
        for item in inputs:
            values, shape = _values(item, blobs.get(item["name"]))
            n = shape[0] if shape else 1
            if len(values) != n or any(s != 1 for s in shape[1:]):
                raise HTTPError(422, f"input {item['name']!r} must have shape [n] or [n, 1] "
                                     f"matching its {len(values)} values", item["name"])
            cols[item["name"]] = values
        return cols
    if len(inputs) != 1:
        raise HTTPError(422, "send one input per column (named after it) or a single "
                             f"[n, {len(names)}] tensor with columns {', '.join(names)}")
    item = inputs[0]
    values, shape = _values(item, blobs.get(item["name"]))
    k = len(names)
    if len(shape) != 2 or shape[1] != k or len(values) != shape[0] * k:
        raise HTTPError(422, f"input {item['name']!r} must have shape [n, {k}] (columns "
                             f"{', '.join(names)}) with n*{k} values", item["name"])
    rows = shape[0]
    if isinstance(values, np.ndarray):
        matrix = values.reshape(rows, k)
        return {n: matrix[:, j] for j, n in enumerate(names)}
    return {n: values[j::k] for j, n in enumerate(names)}


def decode_body(body: bytes, headers: dict[str, str],
                names: list[str]) -> tuple[dict, dict[str, Any]]:
    """(the request's JSON header, its columns) from an infer request's body."""
    request, blobs = parse_body(body, headers)
    return request, decode(request, blobs, names)


def encode(out: dict[str, np.ndarray], signature: Signature, model: str, version: int,
           request: dict, request_id: str, reasons: Reasons | None = None) -> dict[str, Any]:
    """The infer response. With ``reasons`` (``"parameters": {"explain": k}``) it also
    holds, as tensors of shape ``[n]``, ``base`` (FP64), ``reason_1..k`` (BYTES, input
    column names, largest first) and ``contribution_1..k`` (FP64), plus ``reason_output``
    (the class explained) for a model with several raw scores."""
    if reasons is not None:
        out = dict(out)
        out["base"] = reasons.base
        if reasons.output is not None:
            out["reason_output"] = reasons.output
        for name, column in reasons.table().items():
            out[name] = column
    wanted = None
    if isinstance(request.get("outputs"), list):
        wanted = {o.get("name") for o in request["outputs"]
                  if isinstance(o, dict) and isinstance(o.get("name"), str)}
    outputs = []
    for name, arr in out.items():
        if wanted is not None and name not in wanted:
            continue
        if name in ("label", "reason_output") or name.startswith("reason_"):
            kind = "string" if arr.dtype.kind in "OUS" else str(arr.dtype)
            if name != "label" and arr.dtype.kind == "O":
                arr = arr.astype(str)
            entry = {"name": name, "shape": [len(arr)], "datatype": datatype(kind),
                     "data": arr.tolist()}
        elif name == "proba":
            assert signature.classes is not None  # only a classifier gives probabilities
            entry = {"name": "proba", "shape": list(arr.shape), "datatype": "FP64",
                     "data": arr.reshape(-1).tolist(),
                     "parameters": {"classes": [str(c) for c in signature.classes]}}
        else:
            entry = {"name": name, "shape": [len(arr)],
                     "datatype": "INT64" if arr.dtype.kind in "iu" else "FP64",
                     "data": arr.tolist()}
        outputs.append(entry)
    body: dict[str, Any] = {"model_name": model, "model_version": str(version),
                            "outputs": outputs}
    body["id"] = str(request.get("id") or request_id)
    return body


def metadata(name: str, versions: list[int], signature: Signature, fmt: str) -> dict[str, Any]:
    outputs = []
    for o in signature.outputs:
        shape = o.get("shape", [-1])
        outputs.append({"name": o["name"], "datatype": datatype(o.get("dtype", "string")),
                        "shape": shape})
    return {
        "name": name, "versions": [str(v) for v in versions], "platform": f"modelport-{fmt}",
        "inputs": [{"name": c.name, "datatype": datatype(c.dtype if c.kind == "numeric"
                                                         else "string"),
                    "shape": [-1, 1]} for c in signature.inputs],
        "outputs": outputs,
        "parameters": {"content_type": "pd", "task": signature.task},
    }
