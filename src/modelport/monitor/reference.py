"""Training statistics: what a version saw when it was registered, to compare traffic with.

At registration (:func:`modelport.log_model`, :func:`modelport.import_model` with a
sample) every training row given and the model's outputs on it are summed up per feature,
chunk by chunk, and stored in the registry (:meth:`~modelport.registry.Registry.set_reference`):

- a number: the share missing, decile bin edges and the count in each bin (the bins PSI
  is computed over), the exact value counts when it takes at most 100 distinct values
  or else 201 quantiles (the distribution Kolmogorov-Smirnov is computed against), mean,
  standard deviation, minimum and maximum;
- a category: the share missing and the count of each category;
- the prediction: the score (probability of the positive class, the value of a
  regression) as a number and the predicted label as a category.

Counts of rows, missing values, categories and discrete values, the mean, standard
deviation, minimum and maximum are exact over every row. Memory stays bounded: quantiles
and bin edges of a number with more than :data:`QUANTILE_ROWS` finite values come from a
uniform sub-sample of that many (chosen by row position, so the same rows give the same
statistics however they are chunked), and its bin counts are that sub-sample's scaled to
the whole.

A version registered before modelport kept statistics gets them computed from its stored
sample the first time it is monitored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import UserError
from modelport.signature import CHUNK_ROWS, Signature, ValueCounts, row_chunks

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import ArrayLike

    from modelport.registry import Registry, Version

#: decile edges: ten bins (fewer when values repeat) plus one for missing values
BIN_QUANTILES = np.linspace(0.1, 0.9, 9)
#: a number with at most this many distinct values keeps its exact value counts
DISCRETE = 100
QUANTILES = 201
#: finite values of a number held for its quantiles; beyond, a uniform sub-sample this size
QUANTILE_ROWS = 100_000
MISSING = "(missing)"
OTHER = "(other)"


# -- computing ---------------------------------------------------------------------------

def numeric(values: ArrayLike) -> dict[str, Any]:
    """The statistics of one numeric column (NaN is missing)."""
    summary = NumericSummary()
    summary.add(values)
    return summary.result()


def categorical(values: ArrayLike) -> dict[str, Any]:
    """The statistics of one categorical column (None or NaN is missing)."""
    summary = CategoricalSummary()
    summary.add(values)
    return summary.result()


class NumericSummary:
    """The statistics of one numeric column (see :func:`numeric`), accumulated chunk by
    chunk with :meth:`add`; :meth:`result` gives the same dict :func:`numeric` would for
    all the values at once (the mean and standard deviation to rounding)."""

    def __init__(self, keep: int = QUANTILE_ROWS) -> None:
        self.keep = keep
        self.rows = 0
        self.missing = 0
        self._n = 0
        self._mean = 0.0
        self._m2 = 0.0
        self._min = np.inf
        self._max = -np.inf
        # distinct values and their counts, until there are more than DISCRETE of them
        self._distinct: np.ndarray | None = np.empty(0)
        self._distinct_counts = np.empty(0, dtype=np.int64)
        self._held = np.empty(0)
        self._held_keys = np.empty(0, dtype=np.uint64)

    def add(self, values: ArrayLike) -> None:
        """Take the next values of the column, in row order."""
        x = np.asarray(values, dtype=np.float64).reshape(-1)
        finite_at = np.isfinite(x)
        finite = x[finite_at]
        first_row = self.rows
        self.rows += int(x.size)
        self.missing += int(x.size - finite.size)
        if not finite.size:
            return
        self._add_moments(finite)
        self._add_distinct(finite)
        self._held = np.concatenate([self._held, finite])
        self._held_keys = np.concatenate([self._held_keys,
                                          _row_keys(first_row, x.size)[finite_at]])
        if self._held.size > self.keep:
            # the rows with the smallest keys: a uniform sub-sample that does not depend
            # on how the rows were chunked
            smallest = np.argpartition(self._held_keys, self.keep - 1)[: self.keep]
            self._held, self._held_keys = self._held[smallest], self._held_keys[smallest]

    def _add_moments(self, finite: np.ndarray) -> None:
        n, mean = finite.size, float(finite.mean())
        m2 = float(((finite - mean) ** 2).sum())
        self._min = min(self._min, float(finite.min()))
        self._max = max(self._max, float(finite.max()))
        if not self._n:
            self._n, self._mean, self._m2 = n, mean, m2
            return
        # Chan et al.'s pairwise update: stable where a running sum of squares is not
        total = self._n + n
        delta = mean - self._mean
        self._mean += delta * n / total
        self._m2 += m2 + delta * delta * self._n * n / total
        self._n = total

    def _add_distinct(self, finite: np.ndarray) -> None:
        if self._distinct is None:
            return
        values, counts = np.unique(finite, return_counts=True)
        merged, at = np.unique(np.concatenate([self._distinct, values]), return_inverse=True)
        if merged.size > DISCRETE:
            self._distinct = None  # a continuous number: quantiles instead
            return
        self._distinct_counts = np.bincount(
            at, weights=np.concatenate([self._distinct_counts, counts]),
            minlength=merged.size).astype(np.int64)
        self._distinct = merged

    def result(self) -> dict[str, Any]:
        """The statistics of every value added so far."""
        out: dict[str, Any] = {"kind": "numeric", "rows": self.rows, "missing": self.missing}
        if not self._n:
            out.update(edges=[], counts=[0], missing_count=self.missing)
            return out
        held_all = self._n <= self.keep
        if held_all:
            edges = np.unique(np.quantile(self._held, BIN_QUANTILES))
            counts = bin_counts(self._held, edges)
        elif self._distinct is not None:
            edges = np.unique(_quantiles_of_counts(self._distinct, self._distinct_counts,
                                                   BIN_QUANTILES))
            counts = np.bincount(np.searchsorted(edges, self._distinct, side="left"),
                                 weights=self._distinct_counts,
                                 minlength=edges.size + 1).astype(np.int64)
        else:
            edges = np.unique(np.quantile(self._held, BIN_QUANTILES))
            counts = _scaled(bin_counts(self._held, edges), self._n)
        out["edges"] = edges.tolist()
        out["counts"] = counts.tolist()
        if self._distinct is not None:
            out["values"] = self._distinct.tolist()
            out["value_counts"] = self._distinct_counts.tolist()
        else:
            quantiles = np.quantile(self._held, np.linspace(0, 1, QUANTILES))
            quantiles[0], quantiles[-1] = self._min, self._max  # exact, not the sub-sample's
            out["quantiles"] = quantiles.tolist()
        out.update(mean=self._mean, std=float(np.sqrt(self._m2 / self._n)), min=self._min,
                   max=self._max)
        return out


class CategoricalSummary:
    """The statistics of one categorical column (see :func:`categorical`), accumulated
    chunk by chunk with :meth:`add`. Counts are exact up to
    :data:`~modelport.signature.COUNTED_VALUES` distinct categories; past that only the
    most frequent are kept."""

    def __init__(self) -> None:
        self.rows = 0
        self.missing = 0
        self._counts = ValueCounts()

    def add(self, values: ArrayLike) -> None:
        """Take the next values of the column."""
        counts, present, n = _word_counts(values)
        self.rows += n
        self.missing += n - present
        self._counts.add(counts)

    def result(self) -> dict[str, Any]:
        """The statistics of every value added so far."""
        return {"kind": "categorical", "rows": self.rows, "missing": self.missing,
                "frequencies": dict(sorted(self._counts.counts.items()))}


class Reference:
    """The reference statistics of a version (see :func:`compute`), accumulated over
    chunks of training rows: :meth:`add` each chunk with the model's outputs on it,
    :meth:`result` for the statistics of all of them."""

    def __init__(self, signature: Signature) -> None:
        self.signature = signature
        self.rows = 0
        self._features: dict[str, NumericSummary | CategoricalSummary] = {}
        self._score = NumericSummary()
        self._label = CategoricalSummary()
        self._scored = self._labelled = False

    def add(self, frame: pd.DataFrame, outputs: dict[str, Any]) -> None:
        """Take one chunk of rows (a DataFrame holding the signature's inputs) and the
        model's outputs on it."""
        self.rows += int(len(frame))
        for col in self.signature.inputs:
            if col.name not in frame.columns:
                continue
            values = frame[col.name]
            if col.kind == "numeric":
                summary = self._features.setdefault(col.name, NumericSummary())
                summary.add(values.to_numpy(dtype=np.float64, na_value=np.nan))
            else:
                summary = self._features.setdefault(col.name, CategoricalSummary())
                summary.add(values.to_numpy(dtype=object))
        s = scores(outputs, self.signature.task)
        if s is not None:
            self._score.add(s)
            self._scored = True
        label = outputs.get("label", outputs.get("cluster"))
        if label is not None:
            self._label.add(np.asarray(label, dtype=object))
            self._labelled = True

    def result(self) -> dict[str, Any]:
        """The statistics of every chunk added so far."""
        prediction: dict[str, Any] = {}
        if self._scored:
            prediction["score"] = self._score.result()
        if self._labelled:
            prediction["label"] = self._label.result()
        features = {col.name: self._features[col.name].result()
                    for col in self.signature.inputs if col.name in self._features}
        return {"rows": self.rows, "task": self.signature.task,
                "classes": self.signature.classes, "features": features,
                "prediction": prediction}


def bin_counts(finite: np.ndarray, edges: Sequence[float] | np.ndarray) -> np.ndarray:
    """Counts of finite values in the bins (-inf, e0], (e0, e1], ..., (ek, inf)."""
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), finite, side="left")
    return np.bincount(index, minlength=len(edges) + 1)


def scores(outputs: dict[str, Any], task: str) -> np.ndarray | None:
    """The score of each row: positive-class (or top) probability, or the regression value."""
    if "proba" in outputs and outputs["proba"] is not None:
        p = np.asarray(outputs["proba"], dtype=np.float64)
        if p.ndim == 2 and p.shape[1]:
            return p[:, 1] if p.shape[1] == 2 else p.max(axis=1)
    if task == "regression" and "value" in outputs:
        return np.asarray(outputs["value"], dtype=np.float64)
    return None


def compute(frame: pd.DataFrame, outputs: dict[str, Any], signature: Signature) -> dict[str, Any]:
    """The statistics of a sample (a DataFrame holding the signature's inputs) and of the
    model's ``outputs`` on it."""
    reference = Reference(signature)
    reference.add(frame, outputs)
    return reference.result()


def compute_in_chunks(frame: pd.DataFrame, score: Callable[[Any], dict[str, Any]],
                      signature: Signature,
                      chunk_rows: int = CHUNK_ROWS) -> dict[str, Any]:
    """The statistics of every row of ``frame`` and of ``score(chunk)``, the model's
    outputs, read ``chunk_rows`` rows at a time so that memory holds one chunk, not the
    whole training set's outputs."""
    reference = Reference(signature)
    for chunk in row_chunks(frame, chunk_rows):
        reference.add(chunk, score(chunk))
    return reference.result()


def _row_keys(first: int, n: int) -> np.ndarray:
    """A pseudo-random 64-bit key per row position (SplitMix64's finaliser): the rows with
    the smallest keys are a uniform sub-sample, the same however the rows are chunked."""
    with np.errstate(over="ignore"):
        z = np.arange(first, first + n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _quantiles_of_counts(values: np.ndarray, counts: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.quantile`` (its default, linear method) of the sorted distinct ``values`` each
    repeated ``counts`` times, without repeating them."""
    ends = np.cumsum(counts)
    position = (ends[-1] - 1) * np.asarray(q, dtype=np.float64)
    below = np.floor(position)
    t = position - below
    a = values[np.searchsorted(ends, below, side="right")]
    b = values[np.searchsorted(ends, np.minimum(below + 1, ends[-1] - 1), side="right")]
    # the interpolation NumPy uses, so the edges match those of the repeated values
    return np.where(t >= 0.5, b - (b - a) * (1 - t), a + (b - a) * t)


def _scaled(counts: np.ndarray, total: int) -> np.ndarray:
    """Sub-sample bin counts scaled to ``total`` values, whole numbers summing to it (the
    largest remainders round up)."""
    exact = counts * (total / counts.sum())
    out = np.floor(exact).astype(np.int64)
    short = int(total - out.sum())
    if short:
        out[np.argsort(out - exact, kind="stable")[:short]] += 1
    return out


#: value types whose pandas value counts can be turned into word counts afterwards: only
#: ``True`` and ``1`` count as one value in pandas but read as different words
_COUNTABLE = frozenset({str, int, float, bool, type(None)})


def _word_counts(values: ArrayLike) -> tuple[dict[str, int], int, int]:
    """(count of each word, values present, values) of categories read as :func:`_words`
    reads them; pandas counts the raw values first, since a Python loop over every row of a
    training set is slow and the distinct values are few."""
    import pandas as pd

    arr = np.asarray(values, dtype=object).reshape(-1)
    types = set(map(type, arr))
    if not types <= _COUNTABLE or (bool in types and types & {int, float}):
        words = [w for w in _words(arr) if w is not None]
        counted = pd.Series(words, dtype=object).value_counts()
        return dict(zip(counted.index.tolist(), counted.tolist(), strict=True)), \
            len(words), int(arr.size)
    counted = pd.Series(arr, dtype=object).value_counts(dropna=True)
    out: dict[str, int] = {}
    for word, n in zip(_words(counted.index.to_numpy(dtype=object)), counted.tolist(),
                       strict=True):
        assert word is not None  # value_counts left the missing values out
        out[word] = out.get(word, 0) + int(n)
    return out, int(sum(out.values())), int(arr.size)


def _words(values: ArrayLike) -> list[str | None]:
    """Categories as strings, the way the signature reads them (2.0 -> "2"), None if missing."""
    out: list[str | None] = []
    for v in np.asarray(values, dtype=object).tolist():
        if v is None or (isinstance(v, float) and v != v):
            out.append(None)
        elif isinstance(v, float) and v.is_integer():
            out.append(str(int(v)))
        else:
            out.append(str(v))
    return out


# -- storing -----------------------------------------------------------------------------

def _identity(version: Version) -> dict[str, Any]:
    # a model deleted and registered again reuses version numbers: statistics belong to
    # the version that had this sample and creation time
    return {"sample_sha256": version.sample_sha256, "created_at": version.created_at}


def record(registry: Registry, version: Version, statistics: dict[str, Any]) -> None:
    """Store ``statistics`` as the reference of ``version`` (replacing any older row)."""
    registry.set_reference(version.name, version.version,
                           {**statistics, "version": _identity(version)})


def record_training(registry: Registry, version: Version, frame: pd.DataFrame,
                    score: Callable[[Any], dict[str, Any]],
                    chunk_rows: int = CHUNK_ROWS) -> None:
    """Compute and store the reference of a version just registered, from every row of its
    training ``frame`` and ``score(chunk)``, the model's outputs on each chunk."""
    signature = Signature.from_dict(version.signature)
    record(registry, version, compute_in_chunks(frame, score, signature, chunk_rows))


def load(registry: Registry, version: Version) -> dict[str, Any]:
    """The reference statistics of ``version``: stored, or computed from its sample (and
    stored) for versions registered without them."""
    stored = registry.reference(version.name, version.version)
    if stored and stored.get("version") == _identity(version):
        return stored
    if not version.sample_sha256:
        raise UserError(f"{version.uri} was registered without a sample, so there are no "
                        "training statistics to compare with; use --reference VERSION with a "
                        "version registered with a sample")
    frame = registry.sample(version)
    predictor = registry.load(version)
    stats = compute(frame, predictor.run(frame), predictor.signature)
    try:
        record(registry, version, stats)
    except Exception:  # noqa: BLE001 - a read-only registry still gets its answer
        pass
    return {**stats, "version": _identity(version)}
