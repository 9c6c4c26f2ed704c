"""The parity proof: replay a sample through the native model and a conversion, compare.

A conversion whose outputs differ from the native model's by more than its format's
tolerance, or that changes a single label, is rejected and never used.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def compare(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], task: str,
            tolerance: float) -> dict[str, Any]:
    """Max absolute difference and label flips between two Predictor outputs."""
    if task == "classification":
        key = "label"
        values = "proba" if "proba" in reference and "proba" in candidate else None
    elif task == "regression":
        key, values = None, "value"
    else:
        key, values = "cluster", None
    rows = len(next(iter(reference.values())))
    diff = 0.0
    rel = 0.0
    if values is not None:
        a = np.asarray(reference[values], dtype=np.float64)
        b = np.asarray(candidate[values], dtype=np.float64)
        if a.shape != b.shape:
            return _result(rows, float("inf"), rows, tolerance,
                           f"output shape {b.shape} differs from the native {a.shape}")
        delta = np.abs(a - b)
        delta[np.isnan(a) & np.isnan(b)] = 0.0
        delta[np.isnan(delta)] = np.inf
        diff = float(delta.max()) if delta.size else 0.0
        rel = float((delta / np.maximum(1.0, np.abs(a))).max()) if delta.size else 0.0
    flips = 0
    if key is not None:
        la = np.asarray(reference[key])
        lb = np.asarray(candidate[key])
        if la.shape != lb.shape:
            return _result(rows, diff, rows, tolerance, "label count differs from the native")
        flips = int(np.sum(la.astype(str) != lb.astype(str)))
    measured = rel if task == "regression" else diff
    reason = None
    if measured > tolerance:
        reason = f"max difference {measured:.3g} over tolerance {tolerance:g}"
    if flips:
        reason = (reason + "; " if reason else "") + f"{flips} of {rows} labels differ"
    out = _result(rows, diff, flips, tolerance, reason)
    if task == "regression":
        out["max_rel_diff"] = rel
    return out


def _result(rows: int, diff: float, flips: int, tolerance: float,
            reason: str | None) -> dict[str, Any]:
    return {
        "rows": int(rows), "max_abs_diff": diff, "label_flips": int(flips),
        "tolerance": tolerance, "passed": reason is None, **({"reason": reason} if reason else {}),
    }
