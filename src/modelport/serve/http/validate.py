"""Checking request rows against a model's signature before they reach the model.

Every protocol decodes its body into columns (name -> sequence of values); :func:`check`
turns them into the NumPy columns a Predictor takes, or raises a 422 that names the field:
a missing or unknown column, a value that is not a scalar, text in a numeric column, and,
unless the policy says ``warn``, a category the model never saw or a number outside the
range seen in training. It touches no pandas, so a single row costs microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelport.serve.http.routing import HTTPError
from modelport.signature import Signature

_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Policy:
    """What to do with unseen categories and out-of-range numbers: ``reject`` or ``warn``."""

    unseen_categories: str = "reject"
    out_of_range: str = "reject"


class Checked:
    """Coerced columns, their row count, and warnings for values let through."""

    __slots__ = ("columns", "rows", "warnings")

    def __init__(self, columns: dict[str, np.ndarray], rows: int, warnings: list[str]) -> None:
        self.columns = columns
        self.rows = rows
        self.warnings = warnings


def unprocessable(message: str, field: str | None = None) -> HTTPError:
    return HTTPError(422, message, field)


def check(raw: dict, signature: Signature, policy: Policy) -> Checked:
    """Columns checked and coerced for ``signature``; a 422 naming the field otherwise."""
    names = signature.names
    unknown = [k for k in raw if k not in signature_set(signature)]
    if unknown:
        raise unprocessable(
            f"unknown column {unknown[0]!r}; the model takes: {', '.join(names)}", unknown[0])
    missing = [n for n in names if n not in raw]
    if missing:
        raise unprocessable(
            f"missing column {missing[0]!r}; the model takes: {', '.join(names)}", missing[0])
    fast = _one_clean_row(raw, signature, policy)
    if fast is not None:
        return Checked(fast, 1, [])
    rows = None
    cols: dict[str, np.ndarray] = {}
    warnings: list[str] = []
    for col in signature.inputs:
        values = raw[col.name]
        if isinstance(values, _SCALARS):
            values = [values]
        n = len(values)
        if rows is None:
            rows = n
        elif n != rows:
            raise unprocessable(
                f"column {col.name!r} has {n} values but {names[0]!r} has {rows}", col.name)
        if col.kind == "numeric":
            arr = _numbers(values, col.name)
            if col.min is not None and col.max is not None:
                _range(arr, col, policy, warnings)
        else:
            arr = _texts(values, col.name)
            if col.categories:
                _categories(arr, col, policy, warnings)
        cols[col.name] = arr
    # Predictor.run applies the signature's own coercion (the one definition of what a
    # model is fed) to these columns; everything it could refuse was refused above.
    return Checked(cols, rows or 0, warnings)


def _one_clean_row(raw: dict, signature: Signature, policy: Policy) -> dict | None:
    """The columns of a single row that passes every check, in plain Python (a few
    microseconds); None sends anything unusual down the general path, which names the
    problem."""
    cols: dict[str, np.ndarray] = {}
    for col in signature.inputs:
        values = raw[col.name]
        if type(values) is not list or len(values) != 1:
            return None
        v = values[0]
        if col.kind == "numeric":
            if v is None:
                v = np.nan
            elif type(v) not in (float, int):
                return None
            elif col.min is not None and col.max is not None and not col.min <= v <= col.max:
                return None
            cols[col.name] = np.array([v], dtype=np.float64)
        else:
            if v is None:
                v = np.nan
            elif type(v) is not str:
                return None
            elif col.categories and v not in _category_set(col):
                return None
            arr = np.empty(1, dtype=object)
            arr[0] = v
            cols[col.name] = arr
    return cols


def signature_set(signature: Signature) -> frozenset[str]:
    cached = getattr(signature, "_name_set", None)
    if cached is None:
        cached = frozenset(signature.names)
        signature._name_set = cached  # type: ignore[attr-defined]
    return cached


def _numbers(values, name: str) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return values.astype(np.float64, copy=False).reshape(-1)
    try:
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim == 1:
            return arr
    except (TypeError, ValueError):
        pass
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if v is None:
            out[i] = np.nan
        elif isinstance(v, bool | int | float | np.number):
            out[i] = float(v)
        elif isinstance(v, str):
            try:
                out[i] = float(v) if v.strip() else np.nan
            except ValueError:
                raise unprocessable(
                    f"column {name!r} must be numeric, got {v[:40]!r} in row {i}; send a "
                    "number or null", name) from None
        else:
            raise unprocessable(
                f"column {name!r} must be a number or null, got a {type(v).__name__} in "
                f"row {i}", name)
    return out


def _texts(values, name: str) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind in "OUS":
        values = values.reshape(-1).tolist()
    for i, v in enumerate(values):
        if not isinstance(v, _SCALARS):
            if isinstance(v, bytes):
                continue
            raise unprocessable(
                f"column {name!r} must be a string or null, got a {type(v).__name__} in "
                f"row {i}", name)
    return np.asarray([v.decode() if isinstance(v, bytes) else v for v in values]
                      if any(isinstance(v, bytes) for v in values) else values, dtype=object)


def _range(arr: np.ndarray, col, policy: Policy, warnings: list[str]) -> None:
    lo, hi = col.min, col.max
    if len(arr) <= 16:  # plain floats beat three array operations for a few rows
        # NaN (missing) compares False both ways; infinity is outside any seen range
        outside = [v for v in arr.tolist() if v < lo or v > hi]
        if not outside:
            return
        value = outside[0]
    else:
        with np.errstate(invalid="ignore"):
            bad = (arr < lo) | (arr > hi)
        if not bad.any():
            return
        value = arr[bad][0]
    message = (f"column {col.name!r} value {value:g} is outside the range seen in "
               f"training [{col.min:g}, {col.max:g}]")
    if policy.out_of_range != "warn":
        raise unprocessable(message + "; the server rejects it (--out-of-range warn "
                            "lets it through)", col.name)
    warnings.append(message)


def _categories(arr: np.ndarray, col, policy: Policy, warnings: list[str]) -> None:
    known = _category_set(col)
    for v in arr:
        if v is None or (isinstance(v, float) and v != v):
            continue
        if str(v) not in known:
            message = f"column {col.name!r} value {str(v)[:40]!r} is a category unseen in training"
            if policy.unseen_categories != "warn":
                raise unprocessable(
                    message + f" (known: {', '.join(col.categories[:10])}); the server rejects "
                    "it (--unseen-categories warn lets it through)", col.name)
            warnings.append(message)
            return


def _category_set(col) -> frozenset[str]:
    cached = getattr(col, "_category_set", None)
    if cached is None:
        cached = frozenset(col.categories)
        col._category_set = cached
    return cached
