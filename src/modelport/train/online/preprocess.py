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

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

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


class HashingEncoder(TransformerMixin, BaseEstimator):
    """Each categorical column hashed into ``buckets`` indicator columns (murmurhash3 of the
    value as text, seeded by the column's position); missing values set none."""

    def __init__(self, buckets: int = 32) -> None:
        self.buckets = buckets

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=object)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
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
        with np.errstate(invalid="ignore", divide="ignore"):
            std = np.sqrt(np.where(self.count > 0, self.m2 / np.maximum(self.count, 1), 0.0))
        return np.where(std > 0, std, 1.0)  # a constant column is centred, not divided by 0

    def update(self, num: np.ndarray, cat: list[np.ndarray]) -> None:
        """Fold a batch into the running means and variances and the category columns."""
        if num.shape[1] and self.numeric_mode != "none":
            seen = ~np.isnan(num)
            k = seen.sum(axis=0).astype(np.float64)
            if k.any():
                with np.errstate(invalid="ignore", divide="ignore"):
                    bmean = np.where(k > 0, np.nansum(num, axis=0) / np.maximum(k, 1), 0.0)
                    bm2 = np.nansum(np.where(seen, num - bmean, 0.0) ** 2, axis=0)
                total = self.count + k
                delta = bmean - self.mean
                ratio = np.divide(k, total, out=np.zeros_like(k), where=total > 0)
                # Chan et al.'s pairwise update: exact and stable for any batch size
                self.m2 = self.m2 + bm2 + delta * delta * self.count * ratio
                self.mean = self.mean + delta * ratio
                self.count = total
        if self.categorical_mode == "onehot":
            for vocab, values in zip(self.vocab, cat, strict=True):
                if len(vocab) >= self.max_categories:
                    continue
                for v in _distinct(values):  # in order of first appearance
                    if v not in vocab:
                        vocab[v] = len(vocab)
                        if len(vocab) >= self.max_categories:
                            break

    def transform(self, num: np.ndarray, cat: list[np.ndarray]) -> np.ndarray:
        """The float matrix the learner takes: numbers first, then each field's columns."""
        n = num.shape[0]
        k = len(self.numeric)
        out = np.zeros((n, self.width))
        if k:
            if self.numeric_mode == "none":
                out[:, :k] = num
            else:
                filled = np.where(np.isnan(num), self.mean, num)
                out[:, :k] = (filled - self.mean) / self.scale \
                    if self.numeric_mode == "scale" else filled
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

    def export(self):
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
                taken = sorted(vocab, key=vocab.get)
                categories.append(taken + [UNUSED.format(i)
                                           for i in range(len(taken), self.max_categories)])
            parts.append(("categorical", OneHotEncoder(
                categories=categories, handle_unknown="ignore", sparse_output=False),
                self.categorical))
        elif self.categorical and self.categorical_mode == "hash":
            parts.append(("categorical", HashingEncoder(self.hash_buckets), self.categorical))
        transformer = ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)
        # fit the structure on two made-up rows, then set the learnt statistics
        frame = {name: [0.0, 1.0] for name in self.numeric}
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
