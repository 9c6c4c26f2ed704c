"""Evaluate a ModelIR in float64 NumPy: the proof that the IR computes what the native model does.

Before any backend writes a model out, the IR is run here on the registration sample and
compared with the native model; each operation follows the order scikit-learn uses, so the
two agree to the last bits for float64 models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.compile import ir

if TYPE_CHECKING:
    import pandas as pd


def evaluate(model_ir: ir.ModelIR, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Outputs of ``model_ir`` on a DataFrame coerced to its signature, as a Predictor gives.

    ``label`` and ``proba`` (in ``classes`` order) for classifiers, ``value`` for
    regressors, ``cluster`` for clustering.
    """
    assert model_ir.output is not None  # set by every front end
    return outputs(model_ir.output, raw_scores(model_ir.model, feature_matrix(model_ir, frame)))


def feature_matrix(model_ir: ir.ModelIR, frame: pd.DataFrame) -> np.ndarray:
    """The model node's input, shape (rows, features): ``frame`` through every step."""
    values = {c: frame[c].to_numpy() for c in frame.columns}
    for step in model_ir.steps:
        values[step.name] = _STEPS[step.op](step, values[step.source])
    node = model_ir.model
    X = np.empty((len(frame), len(node.features)), dtype=np.float64)
    for j, f in enumerate(node.features):
        X[:, j] = np.asarray(values[f], dtype=np.float64)
    return X


def raw_scores(node: ir.Node, X: np.ndarray) -> np.ndarray:
    """The model node's raw scores, shape (rows, outputs), on feature matrix ``X``."""
    if isinstance(node, ir.Linear):
        return X @ np.asarray(node.coef).T + np.asarray(node.intercept)
    if isinstance(node, ir.TreeEnsemble):
        return _ensemble(node, X)
    if isinstance(node, ir.GaussianNB):
        theta, var = np.asarray(node.theta), np.asarray(node.var)
        jll = []
        for i, log_prior in enumerate(node.log_prior):
            n_ij = -0.5 * np.sum(np.log(2.0 * np.pi * var[i, :]))
            n_ij -= 0.5 * np.sum(((X - theta[i, :]) ** 2) / var[i, :], 1)
            jll.append(log_prior + n_ij)
        return np.array(jll).T
    if isinstance(node, ir.Centroids):
        centers = np.asarray(node.centers)
        return ((X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
    raise TypeError(f"unknown model node {type(node).__name__}")


def outputs(output: ir.Output, raw: np.ndarray) -> dict[str, np.ndarray]:
    """Turn raw scores into Predictor outputs with ``output.transform``."""
    from scipy.special import expit

    t = output.transform
    if output.task == "regression":
        return {"value": np.exp(raw[:, 0]) if t == "exp" else raw[:, 0].copy()}
    if output.task == "clustering":
        return {"cluster": np.argmin(raw, axis=1).astype(np.int64)}
    classes = np.asarray(output.classes)
    if t == "margin":
        if raw.shape[1] == 1:
            return {"label": classes[(raw[:, 0] > 0).astype(int)]}
        return {"label": classes[np.argmax(raw, axis=1)]}
    if t == "logistic":
        p = expit(raw[:, 0])
        proba = np.vstack([1 - p, p]).T
    elif t == "softmax":
        z = raw - raw.max(axis=1, keepdims=True)
        e = np.exp(z)
        proba = e / e.sum(axis=1, keepdims=True)
    elif t == "ovr_logistic":
        proba = expit(raw)
        proba /= proba.sum(axis=1).reshape((proba.shape[0], -1))
    elif t == "probability":
        proba = raw
    elif t == "normalize":
        total = raw.sum(axis=1, keepdims=True)
        proba = np.where(total > 0, raw / np.where(total > 0, total, 1.0), raw)
    else:
        raise ValueError(f"unknown transform {t!r} for classification")
    return {"label": classes[np.argmax(proba, axis=1)], "proba": proba}


def _ensemble(node: ir.TreeEnsemble, X: np.ndarray) -> np.ndarray:
    raw = np.zeros((X.shape[0], node.n_outputs)) + np.asarray(node.base)
    for tree in node.trees:
        values = _tree(node, tree, X)
        raw[:, tree.output:tree.output + values.shape[1]] += values
    if node.combine == "mean":
        raw /= len(node.trees)
    return raw


def _tree(node: ir.TreeEnsemble, tree: ir.Tree, X: np.ndarray) -> np.ndarray:
    feature = np.asarray(tree.feature)
    left, right = np.asarray(tree.left), np.asarray(tree.right)
    missing_left = np.asarray(tree.missing_left, dtype=bool)
    ops, thresholds = zip(*(node.split(t) for t in tree.threshold), strict=True)
    less_equal = np.asarray(ops) == "<="
    threshold = np.asarray(thresholds, dtype=np.float64)
    cats = tree.categories or [None] * len(feature)
    cats_right = tree.categories_right or [None] * len(feature)
    at = np.zeros(X.shape[0], dtype=np.int64)
    active = feature[at] >= 0
    while active.any():
        rows = np.nonzero(active)[0]
        nd = at[rows]
        x = X[rows, feature[nd]]
        go_left = np.where(less_equal[nd], x <= threshold[nd], x < threshold[nd])
        for k in np.unique(nd):
            if cats[k] is not None:
                here = nd == k
                in_left = np.isin(x[here], np.asarray(cats[k], dtype=np.float64))
                if cats_right[k] is not None:
                    # neither side's category: it goes where missing values go
                    other = ~in_left & ~np.isin(x[here], np.asarray(cats_right[k], dtype=np.float64))
                    in_left |= other & missing_left[k]
                go_left[here] = in_left
        go_left = np.where(np.isnan(x), missing_left[nd], go_left)
        at[rows] = np.where(go_left, left[nd], right[nd])
        active = feature[at] >= 0
    return np.asarray(tree.value, dtype=np.float64)[at]


def _missing(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.isnan(values)
    import pandas as pd

    return pd.isna(values)


def _impute(step: ir.Impute, x: np.ndarray) -> np.ndarray:
    out = x.copy()
    out[_missing(x)] = step.value
    return out


def _scale(step: ir.Scale, x: np.ndarray) -> np.ndarray:
    return (np.asarray(x, dtype=np.float64) - step.center) / step.scale


def _affine(step: ir.Affine, x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64) * step.mul + step.add


def _indicator(step: ir.Indicator, x: np.ndarray) -> np.ndarray:
    missing = _missing(x)
    known = [c for c in step.categories if c is not None]
    hit = np.zeros(len(x), dtype=bool)
    present = ~missing
    hit[present] = np.isin(x[present], np.asarray(known, dtype=x.dtype))
    hit[missing] = None in step.categories
    return (hit != step.negate).astype(np.float64)


def _is_missing(step: ir.IsMissing, x: np.ndarray) -> np.ndarray:
    return _missing(x).astype(np.float64)


def _ordinal(step: ir.Ordinal, x: np.ndarray) -> np.ndarray:
    codes = {c: float(i) for i, c in enumerate(step.categories)}
    missing = _missing(x)
    nan = float("nan")
    unknown = nan if step.unknown is None else step.unknown
    out = np.array([codes.get(v, unknown) for v in x], dtype=np.float64)
    out[missing] = nan if step.missing is None else step.missing
    return out


_STEPS: dict[str, Callable[[Any, np.ndarray], np.ndarray]] = {
    "impute": _impute, "scale": _scale, "affine": _affine, "indicator": _indicator,
    "is_missing": _is_missing, "ordinal": _ordinal,
}
