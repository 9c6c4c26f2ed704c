"""Automatic feature preprocessing for spec training: the same simple recipe for every model.

Numbers: missing values take the column median, then scaling to zero mean and unit
variance. Strings: missing values become the category ``"missing"``, then one-hot encoding
that ignores categories unseen in training. The recipe is plain scikit-learn, so the whole
pipeline converts to ONNX and PMML; tree models get it too (scaling does them no harm and
keeps one recipe for all).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.base import BaseEstimator
    from sklearn.compose import ColumnTransformer

MISSING_CATEGORY = "missing"


def column_kinds(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """Split ``columns`` into (numeric, categorical, unsupported) by their dtype.

    Numbers and booleans are numeric; strings, objects and pandas categoricals are
    categorical; anything else (dates, durations...) is unsupported.
    """
    numeric, categorical, other = [], [], []
    for name in columns:
        kind = getattr(frame[name].dtype, "kind", "O")
        if kind in "biuf":
            numeric.append(name)
        elif kind in "OSU" or str(frame[name].dtype) in ("category", "str", "string"):
            categorical.append(name)
        else:
            other.append(name)
    return numeric, categorical, other


def auto_preprocessor(frame: pd.DataFrame, numeric: Sequence[str] | None = None,
                      categorical: Sequence[str] | None = None) -> ColumnTransformer:
    """A ColumnTransformer that imputes and scales ``numeric`` and imputes and one-hots
    ``categorical`` columns (both inferred from ``frame``'s dtypes when not given).

    Columns in neither list are dropped.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if numeric is None or categorical is None:
        found_numeric, found_categorical, _ = column_kinds(frame, list(frame.columns))
        numeric = found_numeric if numeric is None else numeric
        categorical = found_categorical if categorical is None else categorical
    parts = []
    if numeric:
        parts.append(("numeric", Pipeline([
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
        ]), list(numeric)))
    if categorical:
        parts.append(("categorical", Pipeline([
            ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]), list(categorical)))
    return ColumnTransformer(parts, remainder="drop")


def build_pipeline(estimator: BaseEstimator, frame: pd.DataFrame, numeric: Sequence[str],
                   categorical: Sequence[str], preprocess: str = "auto") -> BaseEstimator:
    """``Pipeline([("preprocess", auto_preprocessor), ("model", estimator)])`` for
    ``preprocess="auto"``; the bare estimator, fed the raw columns, for ``"none"``.
    """
    from sklearn.pipeline import Pipeline

    if preprocess == "none":
        return estimator
    return Pipeline([
        ("preprocess", auto_preprocessor(frame, numeric, categorical)),
        ("model", estimator),
    ])
