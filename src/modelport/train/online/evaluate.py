"""Prequential evaluation: every event is predicted before it is learnt, and the scores of
the last ``window`` events give the learner's current quality.

The :class:`Window` keeps, for each of the last events, its sequence number, its raw
features, its label and its per-event score terms (right or wrong, log loss, absolute and
squared error, squared distance to the cluster centre). The same terms computed for another
model's predictions on the same events make a fair comparison (the promotion gate, the
drift challenger), and the raw rows are the sample a checkpoint registers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport.train.online.learners import Prediction
from modelport.train.online.schema import Features

_EPS = 1e-15
#: metric -> the per-event term it averages
_TERM = {"accuracy": "correct", "log_loss": "log_loss", "mae": "abs_error",
         "rmse": "sq_error", "inertia": "inertia"}


def needed(metrics: list[str]) -> frozenset[str]:
    """The per-event terms ``metrics`` average."""
    return frozenset(_TERM[m] for m in metrics)


def terms(task: str, y: np.ndarray, prediction: Prediction | None,
          classes: list[Any] | np.ndarray | None, n: int,
          wanted: frozenset[str] | None = None) -> dict[str, np.ndarray]:
    """The per-event score terms of ``prediction`` against labels ``y`` (NaN where the event
    got no prediction): those in ``wanted``, else all the task has."""
    every = {"classification": ("correct", "log_loss"), "regression": ("abs_error",
             "sq_error"), "clustering": ("inertia",)}[task]
    names = [k for k in every if wanted is None or k in wanted]
    if prediction is None:
        return {k: np.full(n, np.nan) for k in names}
    scored = prediction.scored
    out: dict[str, np.ndarray] = {}
    if task == "classification":
        if "correct" in names:
            out["correct"] = (np.asarray(prediction.label) == np.asarray(y)).astype(np.float64)
        if "log_loss" in names:
            if prediction.proba is not None and classes is not None:
                at = _class_index(classes, y, n)
                p = np.where(at >= 0, prediction.proba[np.arange(n), np.maximum(at, 0)], 0.0)
                out["log_loss"] = -np.log(np.clip(p, _EPS, 1.0))
            else:
                out["log_loss"] = np.full(n, np.nan)
    elif task == "regression":
        assert prediction.value is not None  # a regressor predicts values
        err = prediction.value - np.asarray(y, dtype=np.float64)
        if "abs_error" in names:
            out["abs_error"] = np.abs(err)
        if "sq_error" in names:
            out["sq_error"] = err * err
    else:
        out["inertia"] = np.asarray(prediction.value, dtype=np.float64)
    if scored is not None:
        for v in out.values():
            v[~scored] = np.nan
    return out


def _class_index(classes: list[Any] | np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """The position of each label among ``classes`` (-1: not a class)."""
    known = np.asarray(classes)
    y = np.asarray(y)
    if known.dtype.kind in "biuf" and y.dtype.kind in "biuf":
        order = np.argsort(known)
        at = np.searchsorted(known[order], y).clip(0, len(known) - 1)
        return np.where(known[order][at] == y, order[at], -1)
    index = {c: i for i, c in enumerate(known.tolist())}
    return np.fromiter((index.get(v, -1) for v in y.tolist()), dtype=np.int64, count=n)


def summarise(metrics: list[str], values: dict[str, np.ndarray]) -> dict[str, float]:
    """Each metric over the scored events of ``values`` (per-event terms); absent when no
    event was scored."""
    out = {}
    for metric in metrics:
        term = values.get(_TERM[metric])
        if term is None:
            continue
        seen = term[~np.isnan(term)]
        if not seen.size:
            continue
        mean = float(seen.mean())
        out[metric] = float(np.sqrt(mean)) if metric == "rmse" else mean
    return out


def error_stream(task: str, values: dict[str, np.ndarray]) -> np.ndarray:
    """What a drift detector watches: 0/1 mistakes, absolute errors or squared distances."""
    if task == "classification":
        return 1.0 - values["correct"]
    return values["abs_error"] if task == "regression" else values["inertia"]


class Window:
    """The last ``size`` learnt events: sequence numbers, features, labels, score terms."""

    def __init__(self, task: str, metrics: list[str], size: int, n_numeric: int,
                 n_categorical: int) -> None:
        self.task = task
        self.metrics = list(metrics)
        self.size = size
        self.seq = np.full(size, -1, dtype=np.int64)
        self.num = np.empty((size, n_numeric))
        self.cat = [np.empty(size, dtype=object) for _ in range(n_categorical)]
        self.y = np.empty(size, dtype=object)
        self.terms: dict[str, np.ndarray] = {}
        self.other: dict[str, np.ndarray] = {}
        self.head = 0
        self.filled = 0
        self.totals: dict[str, list[float]] = {}

    def add(self, seq: np.ndarray, features: Features, y: np.ndarray | None,
            values: dict[str, np.ndarray],
            other: dict[str, np.ndarray] | None = None) -> None:
        """Append a batch of learnt events with their score terms (and those of a challenger
        learning beside the learner, if any)."""
        n = len(seq)
        if n == 0:
            return
        self._add_totals(values)
        if n > self.size:  # only the last `size` can stay
            keep = slice(n - self.size, n)
            seq, features = seq[keep], features.take(keep)
            y = None if y is None else np.asarray(y, dtype=object)[keep]
            values = {k: v[keep] for k, v in values.items()}
            other = None if other is None else {k: v[keep] for k, v in other.items()}
        self._write(seq, features, y, values, other)

    def promote_other(self, since: int) -> None:
        """The challenger replaced the learner: its score terms become the window's for the
        events since it started, so the windowed metric is the new learner's."""
        slots = self._order(since - 1)
        for k, ring in self.other.items():
            if k in self.terms:
                self.terms[k][slots] = ring[slots]
        self.other = {}

    def _add_totals(self, values: dict[str, np.ndarray]) -> None:
        for k, v in values.items():
            seen = v[~np.isnan(v)]
            total = self.totals.setdefault(k, [0.0, 0.0])
            total[0] += float(seen.sum())
            total[1] += seen.size

    def _write(self, seq: np.ndarray, features: Features, y: np.ndarray | None,
               values: dict[str, np.ndarray],
               other: dict[str, np.ndarray] | None = None) -> None:
        n = len(seq)
        slots = (self.head + np.arange(n)) % self.size
        self.seq[slots] = seq
        self.num[slots] = features.num
        for cat_ring, col in zip(self.cat, features.cat, strict=True):
            cat_ring[slots] = col
        if y is not None:
            self.y[slots] = np.asarray(y, dtype=object)
        for k, v in values.items():
            ring = self.terms.get(k)
            if ring is None:
                ring = self.terms[k] = np.full(self.size, np.nan)
            ring[slots] = v
        for k, v in (other or {}).items():
            ring = self.other.get(k)
            if ring is None:
                ring = self.other[k] = np.full(self.size, np.nan)
            ring[slots] = v
        self.head = (self.head + n) % self.size
        self.filled = min(self.size, self.filled + n)

    def _order(self, since: int | None = None) -> np.ndarray:
        """Slots of the stored events, oldest first (only those after ``since``)."""
        if self.filled < self.size:
            slots = np.arange(self.filled)
        else:
            slots = (self.head + np.arange(self.size)) % self.size
        if since is not None:
            slots = slots[self.seq[slots] > since]
        return slots

    def values(self, since: int | None = None) -> dict[str, float]:
        """The windowed metrics (over events after sequence number ``since``, if given)."""
        slots = self._order(since)
        return summarise(self.metrics, {k: v[slots] for k, v in self.terms.items()})

    def overall(self) -> dict[str, float]:
        """The metrics over every event learnt since the learner started."""
        means = {k: np.array([s / c]) if c else np.array([np.nan])
                 for k, (s, c) in self.totals.items()}
        return summarise(self.metrics, means)

    def scored_total(self) -> int:
        """Events that got a prediction since the learner started."""
        return int(max((c for _, c in self.totals.values()), default=0))

    def scored(self, since: int | None = None) -> int:
        """How many stored events (after ``since``) have a prediction."""
        slots = self._order(since)
        first = next(iter(self.terms.values()), None)
        return 0 if first is None else int((~np.isnan(first[slots])).sum())

    def rows(self, since: int | None = None) -> tuple[np.ndarray, Features, np.ndarray,
                                                      dict[str, np.ndarray]]:
        """The stored events (after ``since``), oldest first: sequence numbers, features,
        labels and score terms."""
        slots = self._order(since)
        return (self.seq[slots], Features(self.num[slots], [c[slots] for c in self.cat]),
                self.y[slots], {k: v[slots] for k, v in self.terms.items()})
