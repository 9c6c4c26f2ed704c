"""Metrics: how a fitted model is measured on held-out rows, one definition for all.

:func:`evaluate` measures a model on the metrics a spec names (:data:`METRICS` per task);
the one-off trainer (:mod:`modelport.train.oneoff`), the retrainer's promotion gate
(:mod:`modelport.train.retrain`) and every AutoML engine (:func:`metric_value`) score
through it, so their numbers compare. :func:`higher_is_better` says which way a metric
points.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import ArrayLike
    from sklearn.base import BaseEstimator

#: the metrics a spec may name, per task
METRICS = {
    "classification": ("roc_auc", "accuracy", "f1", "log_loss", "precision", "recall"),
    "regression": ("rmse", "mae", "r2"),
    "clustering": ("silhouette",),
}
#: what a spec that names no metrics is measured on
DEFAULT_METRICS = {
    "classification": ("roc_auc", "accuracy", "f1", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
    "clustering": ("silhouette",),
}
#: metrics computed from class probabilities, so the estimator needs ``predict_proba``
PROBA_METRICS = ("roc_auc", "log_loss")
#: metrics where a smaller value is better; every other metric is better larger
SMALLER_IS_BETTER = ("log_loss", "rmse", "mae")
#: clustering rows the silhouette is computed on, at most
SILHOUETTE_ROWS = 5000


def evaluate(task: str, model: BaseEstimator, X: pd.DataFrame, y: ArrayLike,
             metrics: Sequence[str],
             seed: int = 0) -> tuple[dict[str, float], dict[str, str]]:
    """Measure a fitted model on held-out rows; return (metrics, skipped with reasons).

    Classification: ``roc_auc`` (one-vs-rest for several classes), ``accuracy``, ``f1``,
    ``precision``, ``recall`` (for the second class when there are two, else
    macro-averaged), ``log_loss``. Regression: ``rmse``, ``mae``, ``r2``. Clustering:
    ``silhouette`` on the preprocessed features of up to 5,000 rows. A metric the data
    cannot support (one class only in the test rows, one cluster) is skipped with a reason.
    """
    import numpy as np
    from sklearn import metrics as M

    out: dict[str, float] = {}
    skipped: dict[str, str] = {}
    if task == "classification":
        classes = list(model.classes_)
        predicted = model.predict(X)
        proba = model.predict_proba(X) if any(m in PROBA_METRICS for m in metrics) else None
        binary = len(classes) == 2
        averaging = {"average": "binary", "pos_label": classes[-1]} if binary else \
            {"average": "macro"}

        def roc_auc() -> float:
            assert proba is not None  # computed when roc_auc is asked for
            return (M.roc_auc_score(np.asarray(y) == classes[1], proba[:, 1])
                    if binary else
                    M.roc_auc_score(y, proba, multi_class="ovr", labels=classes))

        scorers = {
            "roc_auc": roc_auc,
            "accuracy": lambda: M.accuracy_score(y, predicted),
            "f1": lambda: M.f1_score(y, predicted, zero_division=0, **averaging),
            "precision": lambda: M.precision_score(y, predicted, zero_division=0, **averaging),
            "recall": lambda: M.recall_score(y, predicted, zero_division=0, **averaging),
            "log_loss": lambda: M.log_loss(y, proba, labels=classes),
        }
    elif task == "regression":
        predicted = np.asarray(model.predict(X), dtype=np.float64)
        scorers = {
            "rmse": lambda: float(np.sqrt(M.mean_squared_error(y, predicted))),
            "mae": lambda: M.mean_absolute_error(y, predicted),
            "r2": lambda: M.r2_score(y, predicted),
        }
    else:
        scorers = {"silhouette": lambda: _silhouette(model, X, seed)}
    for name in metrics:
        try:
            out[name] = float(scorers[name]())
        except ValueError as exc:
            skipped[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return out, skipped


def _silhouette(model: BaseEstimator, X: pd.DataFrame, seed: int) -> float:
    import numpy as np
    from sklearn.metrics import silhouette_score

    labels = np.asarray(model.predict(X))
    if len(np.unique(labels)) < 2 or len(labels) < 3:
        raise ValueError("the test rows fall in fewer than two clusters")
    steps = getattr(model, "steps", None)
    features = model[:-1].transform(X) if steps and len(steps) > 1 \
        else X.to_numpy(dtype=np.float64)
    return silhouette_score(features, labels, sample_size=min(len(labels), SILHOUETTE_ROWS),
                            random_state=seed)


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is a better model (see :data:`SMALLER_IS_BETTER`)."""
    return metric not in SMALLER_IS_BETTER


def metric_value(metric: str, task: str, y_true: ArrayLike, model: BaseEstimator,
                 X: pd.DataFrame, classes: Sequence[Any] | None = None) -> float:
    """``metric`` of a fitted ``model`` on ``X``, ``y_true`` — the one definition every
    engine and the promotion gate use (:func:`evaluate`); a metric the rows cannot
    support is a ``ValueError``."""
    values, skipped = evaluate(task, model, X, y_true, [metric])
    if metric in skipped:
        raise ValueError(f"{metric} cannot be computed: {skipped[metric]}")
    return values[metric]
