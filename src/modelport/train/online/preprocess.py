"""Incremental preprocessing: numbers imputed with their running mean and scaled with their
running standard deviation, categories one-hot encoded as they first appear or hashed.

A :class:`Preprocessor` learns from each batch it is about to learn from (statistics need no
labels, so updating them first leaks nothing into the prequential score) and turns raw
columns into the float matrix a ``partial_fit`` learner takes. Its width never changes:
one-hot encoding gives every categorical field ``max_categories`` columns that categories
take in order of appearance (later ones are encoded as all zeros, like an unseen category),
hashing gives it ``hash_buckets`` columns. At a checkpoint :meth:`Preprocessor.export`
writes the same transformation as a fitted scikit-learn ``ColumnTransformer``
(``SimpleImputer``, ``StandardScaler``, ``OneHotEncoder``), which every model format can
convert; hashed fields use :class:`HashingEncoder`, which only joblib stores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

if TYPE_CHECKING:
    from numpy.typing import ArrayLike
    from sklearn.compose import ColumnTransformer

#: category names that fill one-hot columns no category has taken yet
UNUSED = "__modelport_unused_{}__"
_HASH_CACHE = 200_000


def _hash_codes(values: np.ndarray, seed: int, buckets: int, cache: dict) -> np.ndarray:
    """The bucket of every value (-1 for missing), hashing each distinct value once."""
    from sklearn.utils import murmurhash3_32

    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and v != v):
            out[i] = -1
            continue
        code = cache.get(v)
        if code is None:
            if len(cache) > _HASH_CACHE:
                cache.clear()
            code = cache[v] = murmurhash3_32(str(v), seed=seed, positive=True) % buckets
        out[i] = code
    return out


def _factorize(values: np.ndarray) -> tuple[np.ndarray, list]:
    """Each value's index among the distinct values (-1: missing), and those values in
    order of first appearance."""
    import pandas as pd

    index, distinct = pd.factorize(values, use_na_sentinel=True)
    return index, list(distinct)


def _distinct(values: np.ndarray) -> list:
    return _factorize(values)[1]


def _std(m2: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Standard deviations from sums of squared deviations; 1 for a constant column, which
    is then centred, not divided by 0."""
    std = np.sqrt(m2 / np.maximum(count, 1))  # m2 is 0 where count is
    return np.where(std > 0, std, 1.0)


class HashingEncoder(TransformerMixin, BaseEstimator):
    """Each categorical column hashed into ``buckets`` indicator columns (murmurhash3 of the
    value as text, seeded by the column's position); missing values set none."""

    def __init__(self, buckets: int = 32) -> None:
        self.buckets = buckets

    def fit(self, X: ArrayLike, y: Any = None) -> Self:
        X = np.asarray(X, dtype=object)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: ArrayLike) -> np.ndarray:
        X = np.asarray(X, dtype=object)
        out = np.zeros((X.shape[0], X.shape[1] * self.buckets))
        for j in range(X.shape[1]):
            codes = _hash_codes(X[:, j], j, self.buckets, {})
            rows = np.flatnonzero(codes >= 0)
            out[rows, j * self.buckets + codes[rows]] = 1.0
        return out


class Preprocessor:
    """Running statistics and category columns for the numeric and categorical fields."""

    def __init__(self, numeric: list[str], categorical: list[str], numeric_mode: str = "scale",
                 categorical_mode: str = "onehot", max_categories: int = 50,
                 hash_buckets: int = 32) -> None:
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.numeric_mode = numeric_mode
        self.categorical_mode = categorical_mode
        self.max_categories = max_categories
        self.hash_buckets = hash_buckets
        k = len(self.numeric)
        self.count = np.zeros(k)
        self.mean = np.zeros(k)
        self.m2 = np.zeros(k)
        self.vocab: list[dict] = [{} for _ in self.categorical]
        self._hash_cache: list[dict] = [{} for _ in self.categorical]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_hash_cache"] = [{} for _ in self.categorical]  # a cache, rebuilt as needed
        return state

    def fresh(self) -> Preprocessor:
        """The same preprocessing with nothing learnt yet."""
        return Preprocessor(self.numeric, self.categorical, self.numeric_mode,
                            self.categorical_mode, self.max_categories, self.hash_buckets)

    @property
    def slots(self) -> int:
        if self.categorical_mode == "onehot":
            return self.max_categories
        if self.categorical_mode == "hash":
            return self.hash_buckets
        return 0

    @property
    def width(self) -> int:
        """Columns of the matrix :meth:`transform` gives."""
        return len(self.numeric) + len(self.categorical) * self.slots

    @property
    def scale(self) -> np.ndarray:
        return _std(self.m2, self.count)

    def update(self, num: np.ndarray, cat: list[np.ndarray]) -> None:
        """Fold a batch into the running means and variances and the category columns."""
        self.learn(num, cat, [len(num)])

    def learn(self, num: np.ndarray, cat: list[np.ndarray],
              ends: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fold a batch into the statistics in steps (its events up to each of ``ends``) and
        return it transformed but not scaled, with what scaling subtracts from and divides
        each column by after each step (one row per step). Each step is imputed and scaled
        with the statistics that include it and none after it, as if it were a batch of
        its own."""
        stops = np.asarray(ends)
        k = len(self.numeric)
        shift, scale = np.zeros((len(stops), self.width)), np.ones((len(stops), self.width))
        numbers = num
        if k and self.numeric_mode != "none":
            missing = np.isnan(num)
            mean, m2, count = self._fold(num, missing, stops)
            if missing.any():
                numbers = np.where(missing, np.repeat(mean, np.diff(stops, prepend=0), axis=0),
                                   num)
            if self.numeric_mode == "scale":
                shift[:, :k], scale[:, :k] = mean, _std(m2, count)
        self._take_categories(cat)
        return self._columns(numbers, num, cat), shift, scale

    def _fold(self, num: np.ndarray, missing: np.ndarray,
              ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Merge the batch's events up to each end into the running count, mean and sum of
        squared deviations (Chan et al.'s pairwise update, with the batch's sums taken
        about the running mean: exact and stable for any batch size); keep the last and
        return all (one row per end)."""
        seen = self.count > 0
        ref = self.mean if seen.all() else np.where(seen, self.mean, np.nan_to_num(num[0]))
        d = num - ref
        if missing.any():
            d[missing] = 0.0
            k = np.cumsum(~missing, axis=0)[ends - 1].astype(np.float64)
        else:
            k = ends[:, None].astype(np.float64)
        s = np.cumsum(d, axis=0)[ends - 1]
        q = np.cumsum(d * d, axis=0)[ends - 1]
        bmean = s / np.maximum(k, 1)
        bm2 = np.maximum(q - s * bmean, 0.0)
        total = self.count + k
        ratio = k / np.maximum(total, 1)  # 0 where neither had a value
        delta = ref + bmean - self.mean
        mean = self.mean + delta * ratio
        m2 = self.m2 + bm2 + delta * (delta * (self.count * ratio))
        self.count, self.mean, self.m2 = total[-1], mean[-1], m2[-1]
        return mean, m2, total

    def _take_categories(self, cat: list[np.ndarray]) -> None:
        """Give new categories their columns, in order of first appearance."""
        if self.categorical_mode != "onehot":
            return
        for vocab, values in zip(self.vocab, cat, strict=True):
            if len(vocab) >= self.max_categories:
                continue
            for v in _distinct(values):
                if v not in vocab:
                    vocab[v] = len(vocab)
                    if len(vocab) >= self.max_categories:
                        break

    def standardisation(self) -> tuple[np.ndarray, np.ndarray]:
        """What scaling subtracts from and divides each column of :meth:`transform` by (0
        and 1 for the columns it leaves as they are)."""
        shift, scale = np.zeros(self.width), np.ones(self.width)
        if self.numeric_mode == "scale":
            k = len(self.numeric)
            shift[:k], scale[:k] = self.mean, self.scale
        return shift, scale

    def transform(self, num: np.ndarray, cat: list[np.ndarray],
                  scaled: bool = True) -> np.ndarray:
        """The float matrix the learner takes: numbers first, then each field's columns
        (numbers imputed but not scaled unless ``scaled``)."""
        numbers = num
        if len(self.numeric) and self.numeric_mode != "none":
            missing = np.isnan(num)
            if missing.any():
                numbers = np.where(missing, self.mean, num)
            if scaled and self.numeric_mode == "scale":
                numbers = (numbers - self.mean) / self.scale
        return self._columns(numbers, num, cat)

    def _columns(self, numbers: np.ndarray, num: np.ndarray, cat: list[np.ndarray]) -> np.ndarray:
        """The numbers (an array of their own) followed by each categorical field's columns."""
        if not cat:
            return numbers if numbers is not num else np.array(num, dtype=np.float64, order="C")
        k = len(self.numeric)
        out = np.zeros((num.shape[0], self.width))
        out[:, :k] = numbers
        slots = self.slots
        for j, values in enumerate(cat):
            if self.categorical_mode == "onehot":
                vocab = self.vocab[j]
                index, distinct = _factorize(values)
                slot = np.fromiter((vocab.get(v, -1) for v in distinct), dtype=np.int64,
                                   count=len(distinct))
                codes = np.where(index >= 0, slot[index] if len(slot) else -1, -1)
            elif self.categorical_mode == "hash":
                codes = _hash_codes(values, j, slots, self._hash_cache[j])
            else:
                continue
            rows = np.flatnonzero(codes >= 0)
            out[rows, k + j * slots + codes[rows]] = 1.0
        return out

    def export(self) -> ColumnTransformer:
        """A fitted scikit-learn transformer that computes what :meth:`transform` computes
        now, reading the fields by name from a DataFrame."""
        import pandas as pd
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        parts = []
        if self.numeric:
            if self.numeric_mode == "none":
                parts.append(("numeric", "passthrough", self.numeric))
            else:
                impute = SimpleImputer(strategy="mean", keep_empty_features=True)
                step = impute if self.numeric_mode == "impute" else Pipeline(
                    [("impute", impute), ("scale", StandardScaler())])
                parts.append(("numeric", step, self.numeric))
        categories = []
        if self.categorical and self.categorical_mode == "onehot":
            for vocab in self.vocab:
                # every key is in vocab: get gives its column, never None
                taken = sorted(vocab, key=vocab.get)  # type: ignore[arg-type]
                categories.append(taken + [UNUSED.format(i)
                                           for i in range(len(taken), self.max_categories)])
            parts.append(("categorical", OneHotEncoder(
                categories=categories, handle_unknown="ignore", sparse_output=False),
                self.categorical))
        elif self.categorical and self.categorical_mode == "hash":
            parts.append(("categorical", HashingEncoder(self.hash_buckets), self.categorical))
        transformer = ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)
        # fit the structure on two made-up rows, then set the learnt statistics
        frame: dict[str, Any] = {name: [0.0, 1.0] for name in self.numeric}
        for j, name in enumerate(self.categorical):
            first = categories[j][0] if categories else "x"
            frame[name] = np.array([first, first], dtype=object)
        transformer.fit(pd.DataFrame(frame, columns=self.numeric + self.categorical))
        if self.numeric and self.numeric_mode != "none":
            step = transformer.named_transformers_["numeric"]
            impute = step if self.numeric_mode == "impute" else step.named_steps["impute"]
            impute.statistics_ = self.mean.copy()
            if self.numeric_mode == "scale":
                scaler = step.named_steps["scale"]
                scaler.mean_ = self.mean.copy()
                scaler.var_ = (self.scale ** 2) * (self.count > 0)
                scaler.scale_ = self.scale.copy()
                scaler.n_samples_seen_ = self.count.astype(np.int64)
        return transformer

    def convertible(self) -> bool:
        """Whether :meth:`export` uses only steps that ONNX and the compiler can convert."""
        return not (self.categorical and self.categorical_mode == "hash")
