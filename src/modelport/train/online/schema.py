"""The fields a learner reads, and turning a batch of raw events into its feature columns.

A :class:`Schema` is fixed by the first batch (or by the spec's ``features``): each field is
numeric or categorical from the values it holds then, and stays so. :meth:`Schema.extract`
turns a batch's columns into :class:`Features` (a float matrix of the numeric fields, an
object array of text per categorical field) and marks the events that cannot be read:
text in a numeric field, a list or an object where a value belongs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelport.errors import UserError


@dataclass
class Features:
    """The features of ``n`` events: numbers as one matrix, each categorical field as text."""

    num: np.ndarray
    cat: list[np.ndarray]

    def __len__(self) -> int:
        return self.num.shape[0]

    def take(self, index) -> Features:
        return Features(self.num[index], [c[index] for c in self.cat])

    @staticmethod
    def concat(parts: list[Features]) -> Features:
        return Features(np.concatenate([p.num for p in parts]),
                        [np.concatenate(cols) for cols in zip(*(p.cat for p in parts), strict=True)]
                        if parts and parts[0].cat else [])


class Schema:
    """The learner's fields in order, split into numeric and categorical ones."""

    def __init__(self, numeric: list[str], categorical: list[str], order: list[str]) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.order = order

    @classmethod
    def infer(cls, spec, columns: dict[str, object]) -> Schema:
        """The schema of a spec from its first batch: the listed features (default every
        field but the target and the id), numeric unless they hold text."""
        skip = {spec.target, spec.id}
        names = spec.features or [c for c in columns if c not in skip]
        if not names:
            raise UserError(f"{spec.label}: features: the first events hold no field besides "
                            "the target and the id; list the features to learn from")
        numeric, categorical = [], []
        for name in names:
            values = columns.get(name)
            (categorical if _is_text(values) else numeric).append(name)
        return cls(numeric, categorical, list(names))

    def extract(self, column, n: int) -> tuple[Features, np.ndarray]:
        """The features of a batch (``column(name)`` gives a field's values, or None when
        no event has it) and a mask of the events that could not be read."""
        bad = np.zeros(n, dtype=bool)
        num = np.empty((n, len(self.numeric)))
        for j, name in enumerate(self.numeric):
            num[:, j] = _numbers(column(name), n, bad)
        cat = [_texts(column(name), n, bad) for name in self.categorical]
        return Features(num, cat), bad

    def frame(self, features: Features):
        """The features as a DataFrame of the raw fields, in the schema's order."""
        import pandas as pd

        data = {name: features.num[:, j] for j, name in enumerate(self.numeric)}
        data.update({name: features.cat[j] for j, name in enumerate(self.categorical)})
        return pd.DataFrame({name: data[name] for name in self.order})

    def rows(self, features: Features) -> list[dict]:
        """One dict per event without its missing values, as River learners take them."""
        names = self.numeric + self.categorical
        columns = [features.num[:, j].tolist() for j in range(len(self.numeric))]
        columns += [c.tolist() for c in features.cat]
        out = []
        for values in zip(*columns, strict=True):
            out.append({k: v for k, v in zip(names, values, strict=True)
                        if v is not None and v == v})
        return out if columns else [{} for _ in range(len(features))]

    def to_dict(self) -> dict:
        return {"numeric": self.numeric, "categorical": self.categorical, "order": self.order}


def _is_text(values) -> bool:
    if values is None:
        return False
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return False
    for v in values:
        if isinstance(v, str):
            try:
                float(v)
            except ValueError:
                return True
    return False


def _numbers(values, n: int, bad: np.ndarray) -> np.ndarray:
    if values is None:
        return np.full(n, np.nan)
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return values.astype(np.float64, copy=False)
    try:
        out = np.asarray(values, dtype=np.float64)
        if out.shape == (n,):
            return out
    except (TypeError, ValueError):
        pass
    out = np.empty(n)
    for i, v in enumerate(values):
        if v is None:
            out[i] = np.nan
        elif isinstance(v, bool | int | float | np.number):
            out[i] = float(v)
        else:
            try:
                out[i] = float(v) if not isinstance(v, str) or v.strip() else np.nan
            except (TypeError, ValueError):
                out[i] = np.nan
                bad[i] = True
    return out


def _texts(values, n: int, bad: np.ndarray) -> np.ndarray:
    out = np.empty(n, dtype=object)
    if values is None:
        return out  # every value missing: None
    if isinstance(values, np.ndarray) and values.dtype == object:
        from pandas.api.types import infer_dtype

        if infer_dtype(values, skipna=True) == "string":
            return values  # text and missing values only: nothing to check
    for i, v in enumerate(values):
        if v is None or isinstance(v, str):
            out[i] = v
        elif isinstance(v, float | np.floating):
            out[i] = None if v != v else str(v)
        elif isinstance(v, bool | int | np.integer | np.bool_):
            out[i] = str(v)
        else:
            bad[i] = True
    return out
