"""What every engine searches against: the preprocessed training rows, one validation
protocol, one metric.

The preprocessing (:func:`modelport.train.preprocess.auto_preprocessor`: imputation,
scaling, one-hot encoding) is fitted once on the training rows; engines only ever see its
numeric output, and the winner is returned inside a plain scikit-learn ``Pipeline`` with
that same fitted preprocessor in front, so what serves is what was searched.

Validation: five stratified folds up to :data:`CV_ROWS` rows (drawn several times over up
to :data:`REPEAT_ROWS`, see :func:`repeats`), one 20 % hold-out split above. Every engine
scores candidates on these same splits with the same metric function
(:func:`modelport.train.metrics.metric_value`), so their scores compare.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.train.metrics import higher_is_better, metric_value

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import ArrayLike
    from sklearn.compose import ColumnTransformer
    from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold
    from sklearn.pipeline import Pipeline

CV_ROWS = 10_000
FOLDS = 5
#: up to this many rows the folds are drawn several times over (:func:`repeats`)
REPEAT_ROWS = 1_000
#: each candidate is scored on about this many held-out predictions, at most ten draws
VALIDATION_ROWS = 3_000
MAX_REPEATS = 10
HOLDOUT = 0.2


def repeats(rows: int) -> int:
    """How many times the five folds are drawn for ``rows`` training rows: enough that
    each candidate is scored on about :data:`VALIDATION_ROWS` held-out predictions (three
    draws at 1,000 rows, ten at 300 and below), once above :data:`REPEAT_ROWS`.

    On a few hundred rows one draw of five folds ranks close candidates by luck, and a
    search that tries hundreds of configurations against so noisy a score keeps the
    luckiest: its validation score flatters it, and on new rows it loses to the plainer
    model it beat. More draws make each trial dearer — about as dear as at 1,000 rows —
    so the search tries fewer configurations, each scored closer to what it will do.
    """
    if rows > REPEAT_ROWS:
        return 1
    return max(1, min(MAX_REPEATS, math.ceil(VALIDATION_ROWS / max(rows, 1))))


@dataclass
class Candidate:
    """One configuration an engine found, with its validation score (the metric's value)."""

    family: str
    params: dict[str, Any]
    score: float
    estimator: Any = field(default=None, repr=False)  # unfitted, ready to refit
    fitted: Any = field(default=None, repr=False)  # fitted on part of the rows, a fallback
    fit_seconds: float | None = None


class Problem:
    """Training rows, preprocessed once, with the splits and metric of a search."""

    def __init__(self, X: pd.DataFrame, y: ArrayLike, *, task: str, metric: str, seed: int = 0,
                 cv_rows: int = CV_ROWS) -> None:
        from modelport.train.preprocess import auto_preprocessor, column_kinds

        self.task, self.metric, self.seed = task, metric, seed
        self.X = X
        self.columns = list(X.columns)
        numeric, categorical, _ = column_kinds(X, self.columns)
        self.preprocess = auto_preprocessor(X, numeric, categorical)
        self.Xt = np.asarray(self.preprocess.fit_transform(X), dtype=np.float64)
        self.owner = _owners(self.preprocess, numeric, categorical)
        self.keep: list[str] | None = None  # input columns kept by feature selection
        self.y = np.asarray(y)
        self.rows = len(self.y)
        self.classes = np.unique(self.y) if task == "classification" else None
        self.cv = self.rows <= cv_rows
        self.repeats = repeats(self.rows)
        self.splits = self._splits()
        self.evaluations = 0

    @property
    def protocol(self) -> str:
        if not self.cv:
            return f"{int(HOLDOUT * 100)}% hold-out split"
        return f"{FOLDS}-fold cross-validation" + (f", {self.repeats} times"
                                                   if self.repeats > 1 else "")

    def splitter(self) -> RepeatedKFold | RepeatedStratifiedKFold:
        """The scikit-learn splitter of these folds (cross-validation only)."""
        from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold

        cls = RepeatedStratifiedKFold if self.task == "classification" and \
            self._stratifiable() else RepeatedKFold
        return cls(n_splits=FOLDS, n_repeats=self.repeats, random_state=self.seed)

    def _stratifiable(self) -> bool:
        return int(np.unique(self.y, return_counts=True)[1].min()) >= FOLDS

    def _splits(self) -> list[tuple[np.ndarray, np.ndarray]]:
        if self.cv:
            return list(self.splitter().split(self.Xt, self.y))
        from sklearn.model_selection import train_test_split

        index = np.arange(self.rows)
        stratify = self.y if self.task == "classification" and self._stratifiable() else None
        fit, valid = train_test_split(index, test_size=HOLDOUT, random_state=self.seed,
                                      stratify=stratify)
        return [(np.sort(fit), np.sort(valid))]

    def better(self, a: float | None, b: float | None) -> bool:
        """Whether score ``a`` beats ``b`` (``None`` never beats anything)."""
        if a is None or not np.isfinite(a):
            return False
        if b is None or not np.isfinite(b):
            return True
        return a > b if higher_is_better(self.metric) else a < b

    def score(self, model: Any, rows: np.ndarray | None = None) -> float:
        """The metric of a fitted estimator on preprocessed rows ``rows`` (all by default)."""
        X = self.Xt if rows is None else self.Xt[rows]
        y = self.y if rows is None else self.y[rows]
        return metric_value(self.metric, self.task, y, model, X)

    def evaluate(self, estimator: Any) -> tuple[float, Any, float]:
        """Fit a clone of ``estimator`` on each split's training part and score it on the
        rest; return (mean score, the last fitted clone, mean fit seconds)."""
        from sklearn.base import clone

        scores, seconds, fitted = [], [], None
        for fit, valid in self.splits:
            fitted = clone(estimator)
            started = time.monotonic()
            fitted.fit(self.Xt[fit], self.y[fit])
            seconds.append(time.monotonic() - started)
            scores.append(self.score(fitted, valid))
        self.evaluations += 1
        return float(np.mean(scores)), fitted, float(np.mean(seconds))

    def select(self, keep: list[str]) -> None:
        """Keep only the preprocessed columns made from input columns ``keep``.

        The preprocessor treats each input column on its own, so dropping the columns made
        from the others equals preprocessing ``keep`` alone; :meth:`pipeline` then builds
        a preprocessor that reads only those columns.
        """
        mask = np.isin(self.owner, keep)
        self.Xt, self.owner = self.Xt[:, mask], [o for o, m in zip(self.owner, mask, strict=True) if m]
        self.keep = [c for c in self.columns if c in set(keep)]

    def pipeline(self, fitted_model: Any) -> Pipeline:
        """The servable pipeline: the fitted preprocessor, then ``fitted_model``."""
        from sklearn.pipeline import Pipeline

        preprocess = self.preprocess
        if self.keep is not None:
            from modelport.train.preprocess import auto_preprocessor, column_kinds

            frame = self.X[self.keep]
            numeric, categorical, _ = column_kinds(frame, self.keep)
            preprocess = auto_preprocessor(frame, numeric, categorical).fit(frame)
        return Pipeline([("preprocess", preprocess), ("model", fitted_model)])


def _owners(preprocess: ColumnTransformer, numeric: list[str], categorical: list[str]) -> list[str]:
    """The input column each preprocessed column is made from, in output order."""
    owners: list[str] = []
    for name, transformer, columns in preprocess.transformers_:
        if name == "numeric":
            owners.extend(columns)
        elif name == "categorical":
            encoder = transformer.named_steps["onehot"]
            for column, categories in zip(columns, encoder.categories_, strict=True):
                owners.extend([column] * len(categories))
    return owners
