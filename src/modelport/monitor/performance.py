"""Performance from ground truth: logged predictions scored against the labels joined to
them by id (:mod:`modelport.monitor.feedback`).

Classification: ``roc_auc`` (binary, or one-vs-rest from the logged probabilities),
``accuracy``, ``f1`` (of the positive class when binary, else macro) and ``log_loss``;
regression: ``rmse``, ``mae`` and ``r2``. These are the names training records its
held-out metrics under, so a window's figures compare directly with the version's
reference. A metric the labels cannot support (one class only) is left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import ArrayLike

#: metrics where a smaller value is better (a "drop" in them is an improvement)
LOWER_IS_BETTER = ("log_loss", "rmse", "mae")
#: at least this many labelled predictions before a window's metrics are computed
MIN_LABELS = 50


def class_index(labels: Iterable[Any], classes: Sequence[Any]) -> np.ndarray:
    """Each label's position in ``classes`` (-1 when it is not a known class), comparing
    as text so that ``"1"``, ``1`` and ``1.0`` are one class."""
    keys = {_text(c): i for i, c in enumerate(classes)}
    return np.array([keys.get(_text(v), -1) for v in labels], dtype=np.int64)


def _text(v: object) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, np.generic):
        return _text(v.item())
    return str(v)


def classification(truth: Iterable[Any], proba: np.ndarray | None, predicted: ArrayLike,
                   classes: Sequence[Any]) -> dict[str, float]:
    """Metrics of a classifier from true labels, probabilities (rows in ``classes``
    order, or None) and predicted labels."""
    from sklearn import metrics as M

    y = class_index(truth, classes)
    keep = y >= 0
    y = y[keep]
    out: dict[str, float] = {"labelled": int(y.size)}
    if not y.size:
        return out
    pred = class_index(np.asarray(predicted, dtype=object)[keep], classes)
    out["accuracy"] = float(np.mean(pred == y))
    binary = len(classes) == 2
    if binary:
        out["f1"] = float(M.f1_score(y, pred, pos_label=1, zero_division=0))
    else:
        out["f1"] = float(M.f1_score(y, pred, average="macro", zero_division=0))
    if proba is not None:
        p = np.asarray(proba, dtype=np.float64)[keep]
        ok = np.isfinite(p).all(axis=1)
        p, yp = p[ok], y[ok]
        if len(np.unique(yp)) >= 2:
            if binary:
                out["roc_auc"] = float(M.roc_auc_score(yp, p[:, 1]))
            elif len(np.unique(yp)) == len(classes):
                out["roc_auc"] = float(M.roc_auc_score(yp, p, multi_class="ovr",
                                                       labels=list(range(len(classes)))))
        if yp.size:
            out["log_loss"] = float(M.log_loss(yp, np.clip(p, 1e-15, 1),
                                               labels=list(range(len(classes)))))
    return out


def regression(truth: ArrayLike, predicted: ArrayLike) -> dict[str, float]:
    """RMSE, MAE and R² of predicted values against true ones."""
    y = np.asarray(truth, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    ok = np.isfinite(y) & np.isfinite(p)
    y, p = y[ok], p[ok]
    out: dict[str, float] = {"labelled": int(y.size)}
    if not y.size:
        return out
    err = p - y
    out["rmse"] = float(np.sqrt(np.mean(err ** 2)))
    out["mae"] = float(np.mean(np.abs(err)))
    if y.size > 1 and np.var(y) > 0:
        out["r2"] = float(1 - np.mean(err ** 2) / np.var(y))
    return out


def evaluate(joined: pd.DataFrame, task: str, classes: list[Any] | None) -> dict[str, float]:
    """Metrics of labelled rows of a joined frame (``truth``, ``label``, ``score``,
    ``outputs``)."""
    if task == "classification" and classes:
        proba = None
        if len(joined) and all("proba" in o for o in joined["outputs"]):
            proba = np.array([o["proba"] for o in joined["outputs"]], dtype=np.float64)
        elif len(classes) == 2 and joined["score"].notna().all():
            # two classes: the log keeps the second one's probability as the score
            score = joined["score"].to_numpy(dtype=np.float64)
            proba = np.column_stack([1 - score, score])
        return classification(joined["truth"].tolist(), proba, joined["label"].tolist(),
                              classes)
    if task == "regression":
        return regression(joined["truth_value"], joined["score"])
    return {"labelled": int(len(joined))}


def change(current: dict[str, float], reference: dict[str, float]) -> dict[str, dict[str, Any]]:
    """For each metric in both: reference, current, ``drop`` (reference - current) and
    ``worse`` (whether the change is for the worse)."""
    out = {}
    for name, ref in reference.items():
        cur = current.get(name)
        if cur is None or not isinstance(ref, int | float) or name == "labelled":
            continue
        drop = float(ref) - float(cur)
        worse = drop < 0 if name in LOWER_IS_BETTER else drop > 0
        out[name] = {"reference": float(ref), "current": float(cur), "drop": round(drop, 6),
                     "worse": bool(worse)}
    return out
