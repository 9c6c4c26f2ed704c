"""The fields a learner reads, and turning a batch of raw events into its feature columns.

A :class:`Schema` is fixed by the first batch (or by the spec's ``features``): each field is
numeric or categorical from the values it holds then, and stays so. Events are checked by
the scoring core against :meth:`Schema.signature` (the one row checker every surface
uses), and :meth:`Schema.features` turns the checked columns into :class:`Features` (a
float matrix of the numeric fields, an object array of text per categorical field).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from modelport.signature import Signature
    from modelport.train.online.config import OnlineSpec


@dataclass
class Features:
    """The features of ``n`` events: numbers as one matrix, each categorical field as text."""

    num: np.ndarray
    cat: list[np.ndarray]

    def __len__(self) -> int:
        return self.num.shape[0]

    def take(self, index: slice | np.ndarray) -> Features:
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
    def infer(cls, spec: OnlineSpec, columns: dict[str, object]) -> Schema:
        """The schema of a spec from its first batch: the listed features (default every
        field but the target and the id), numeric unless they hold text."""
        skip = {spec.target, spec.id}
        names = spec.features or [c for c in columns if c not in skip]
        if not names:
            raise UserError(f"{spec.label}: features: the first events hold no field besides "
                            "the target and the id; list the features to learn from")
        numeric: list[str] = []
        categorical: list[str] = []
        for name in names:
            values = columns.get(name)
            (categorical if _is_text(values) else numeric).append(name)
        return cls(numeric, categorical, list(names))

    def signature(self, task: str) -> Signature:
        """The fields as a :class:`~modelport.signature.Signature` for the scoring core's
        row checker: numeric fields numeric, categorical ones categorical, every one
        nullable, and no ranges or vocabularies (a learner has no training ranges: every
        value it has not seen yet is one to learn)."""
        from modelport.signature import Column, Signature

        numeric = set(self.numeric)
        return Signature([Column(name, "float64", "numeric", nullable=True) if name in numeric
                          else Column(name, "object", "categorical", nullable=True)
                          for name in self.order], task)

    def features(self, columns: dict[str, np.ndarray], n: int) -> Features:
        """The :class:`Features` of ``n`` events from the columns the checker gave (numbers
        as float64 with NaN for missing, categories as text with NaN for missing)."""
        num = np.empty((n, len(self.numeric)))
        for j, name in enumerate(self.numeric):
            num[:, j] = columns[name]
        return Features(num, [columns[name] for name in self.categorical])

    def frame(self, features: Features) -> pd.DataFrame:
        """The features as a DataFrame of the raw fields, in the schema's order."""
        import pandas as pd

        data = {name: features.num[:, j] for j, name in enumerate(self.numeric)}
        data.update({name: features.cat[j] for j, name in enumerate(self.categorical)})
        return pd.DataFrame({name: data[name] for name in self.order})

    def rows(self, features: Features) -> list[dict[str, Any]]:
        """One dict per event without its missing values (None or NaN), as River learners
        take them."""
        names = self.numeric + self.categorical
        columns = [features.num[:, j].tolist() for j in range(len(self.numeric))]
        columns += [c.tolist() for c in features.cat]
        out = []
        for values in zip(*columns, strict=True):
            out.append({k: v for k, v in zip(names, values, strict=True)
                        if v is not None and v == v})
        return out if columns else [{} for _ in range(len(features))]

    def to_dict(self) -> dict[str, list[str]]:
        return {"numeric": self.numeric, "categorical": self.categorical, "order": self.order}


def _is_text(values: Any) -> bool:
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
