"""What a model takes and gives: input columns with dtypes, vocabularies and ranges; outputs.

A :class:`Signature` is inferred from a sample of training rows when a model is registered,
stored with the version, and used by every Predictor to check and coerce what it is fed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from modelport.errors import UserError

MAX_CATEGORIES = 1000
TASKS = ("classification", "regression", "clustering")


@dataclass
class Column:
    """One input column: ``kind`` is ``numeric`` or ``categorical``."""

    name: str
    dtype: str
    kind: str
    nullable: bool = False
    categories: list[str] | None = None
    min: float | None = None
    max: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Signature:
    """Input columns, task, classes (for classifiers) and output schema of a model."""

    inputs: list[Column]
    task: str
    classes: list | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise UserError(f"unknown task {self.task!r}: use one of {', '.join(TASKS)}")
        if not self.outputs:
            self.outputs = default_outputs(self.task, self.classes)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.inputs]

    @property
    def numeric(self) -> list[str]:
        return [c.name for c in self.inputs if c.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [c.name for c in self.inputs if c.kind == "categorical"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [c.to_dict() for c in self.inputs],
            "task": self.task,
            "classes": self.classes,
            "outputs": self.outputs,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Signature:
        return cls(
            inputs=[Column(**c) for c in d["inputs"]],
            task=d["task"],
            classes=d.get("classes"),
            outputs=d.get("outputs") or [],
        )

    @classmethod
    def infer(cls, sample, task: str, classes: list | None = None) -> Signature:
        """Infer a signature from a DataFrame-like sample of training rows."""
        frame = to_frame(sample)
        cols = []
        for name in frame.columns:
            s = frame[name]
            nullable = bool(s.isna().any())
            if _is_numeric(s):
                values = s.to_numpy(dtype="float64", na_value=np.nan)
                finite = values[~np.isnan(values)]
                kind_dtype = "bool" if s.dtype == bool else ("int64" if s.dtype.kind in "iu" else "float64")
                cols.append(Column(
                    name=str(name), dtype=kind_dtype, kind="numeric", nullable=nullable,
                    min=float(finite.min()) if finite.size else None,
                    max=float(finite.max()) if finite.size else None,
                ))
            else:
                counts = s.dropna().astype(str).value_counts()
                cats = sorted(counts.index[:MAX_CATEGORIES].tolist())
                cols.append(Column(name=str(name), dtype="string", kind="categorical",
                                   nullable=nullable, categories=cats))
        if classes is not None:
            classes = [_plain(c) for c in classes]
        return cls(inputs=cols, task=task, classes=classes)

    def coerce(self, data):
        """Return ``data`` as a DataFrame of exactly the signature's columns, in order.

        Numeric columns become float64 (missing values NaN), categorical columns object
        arrays of strings (missing values NaN). A missing column or a value that cannot
        be read as a number raises a :class:`UserError` naming the column.
        """
        import pandas as pd

        cols = self.columns(data)
        n = len(next(iter(cols.values()))) if cols else 0
        return pd.DataFrame(cols, index=pd.RangeIndex(n))

    def columns(self, data) -> dict[str, np.ndarray]:
        """Like :meth:`coerce`, as a dict of NumPy arrays, without building a DataFrame.

        Takes a dict of scalars (one row), a dict of sequences, a list of dicts, an Arrow
        table or record batch, a DataFrame or a 2-D array. This is the path single rows
        take, so it stays free of pandas for dicts and lists.
        """
        raw = _raw_columns(data, self.names)
        missing = [n for n in self.names if n not in raw]
        if missing:
            raise UserError(
                f"input is missing column(s) {', '.join(map(repr, missing))}; "
                f"the model expects: {', '.join(self.names)}"
            )
        out: dict[str, np.ndarray] = {}
        length = None
        for col in self.inputs:
            values = raw[col.name]
            if col.kind == "numeric":
                arr = _numeric(values, col.name)
            else:
                arr = _strings(values)
            if length is None:
                length = len(arr)
            elif len(arr) != length:
                raise UserError(
                    f"column {col.name!r} has {len(arr)} values but {self.names[0]!r} has "
                    f"{length}: send columns of equal length"
                )
            out[col.name] = arr
        return out


def default_outputs(task: str, classes: list | None) -> list[dict[str, Any]]:
    if task == "classification":
        outs: list[dict[str, Any]] = [{"name": "label", "dtype": _dtype_of(classes)}]
        if classes is not None:
            outs.append({"name": "proba", "dtype": "float64", "shape": [-1, len(classes)]})
        return outs
    if task == "regression":
        return [{"name": "value", "dtype": "float64"}]
    return [{"name": "cluster", "dtype": "int64"}]


def to_frame(data, names: list[str] | None = None):
    """Turn a DataFrame, Arrow table, dict, list of dicts or 2-D array into a DataFrame."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    mod = type(data).__module__
    if mod.startswith("pyarrow"):
        return data.to_pandas()
    if isinstance(data, dict):
        if data and all(np.ndim(v) == 0 for v in data.values()):
            return pd.DataFrame([data])
        return pd.DataFrame(data)
    if isinstance(data, list | tuple):
        if not data:
            return pd.DataFrame({n: [] for n in names or []})
        if isinstance(data[0], dict):
            return pd.DataFrame.from_records(data)
        data = np.asarray(data, dtype=object)
    if isinstance(data, np.ndarray):
        if data.ndim == 1:
            data = data.reshape(1, -1)
        if data.ndim != 2:
            raise UserError(f"input array must be 2-D (rows x columns), got {data.ndim}-D")
        if names is None:
            names = [f"x{i}" for i in range(data.shape[1])]
        if data.shape[1] != len(names):
            raise UserError(
                f"input array has {data.shape[1]} columns but the model expects "
                f"{len(names)}: {', '.join(names)}"
            )
        return pd.DataFrame(data, columns=names)
    raise UserError(
        f"cannot read model input of type {type(data).__name__}: pass a DataFrame, "
        "a dict, a list of dicts, an Arrow table or a 2-D array"
    )


def _is_numeric(s) -> bool:
    kind = getattr(s.dtype, "kind", "O")
    return kind in "biuf"


def _raw_columns(data, names: list[str]) -> dict:
    """The columns of ``data`` by name, each as whatever sequence it came as."""
    if isinstance(data, dict):
        if data and all(np.ndim(v) == 0 for v in data.values()):
            return {k: [v] for k, v in data.items()}
        return data
    if isinstance(data, list | tuple) and data and isinstance(data[0], dict):
        out = {}
        for n in names:
            present = [n in row for row in data]
            if any(present) and not all(present):
                # a key absent from one record is a malformed record, not a missing value:
                # send null for that
                row = present.index(False)
                raise UserError(
                    f"record {row} is missing column {n!r}; send null for a missing value"
                )
            if present[0]:
                out[n] = [row[n] for row in data]
        return out
    mod = type(data).__module__
    if mod.startswith("pyarrow"):
        present = set(data.schema.names)
        return {n: data.column(n).to_numpy(zero_copy_only=False) for n in names if n in present}
    frame = to_frame(data, names)
    return {n: frame[n] for n in names if n in frame.columns}


def _numeric(values, name: str) -> np.ndarray:
    """float64 values with NaN for missing; a value that is not a number is a UserError."""
    dtype = getattr(values, "dtype", None)
    if dtype is not None and getattr(dtype, "kind", "O") in "biuf":
        if hasattr(values, "to_numpy"):
            return values.to_numpy(dtype=np.float64, na_value=np.nan)
        return np.asarray(values, dtype=np.float64)
    if hasattr(values, "to_numpy"):
        values = values.to_numpy(dtype=object)
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        pass
    out = np.empty(len(values), dtype=np.float64)
    bad = []
    for i, v in enumerate(values):
        if v is None or (isinstance(v, str) and not v.strip()):
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            out[i] = np.nan
            if not (isinstance(v, float) and v != v):
                bad.append(v)
    if bad:
        raise UserError(
            f"column {name!r} must be numeric, got {bad[0]!r} (in {len(bad)} row(s)); "
            "send a number or null"
        )
    return out


_PLAIN_STRING_TYPES = frozenset({str, type(None)})


def _strings(values) -> np.ndarray:
    """An object array of str with NaN for missing values."""
    if hasattr(values, "to_numpy"):
        values = values.to_numpy(dtype=object)
    arr = np.asarray(values, dtype=object)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    # the common cases (strings with None or NaN for missing) in C-speed passes, since
    # a Python loop over every value dominated the cost of scoring large batches
    types = set(map(type, arr))
    if types <= _PLAIN_STRING_TYPES:
        if types == {str}:
            return arr
        out = arr.copy()
        if type(None) in types:
            out[np.equal(arr, None)] = np.nan
        return out
    out = arr.copy()
    for i, v in enumerate(arr):
        if type(v) is str:
            continue
        if v is None or (isinstance(v, float) and v != v):
            out[i] = np.nan
        elif isinstance(v, float | np.floating) and float(v).is_integer():
            out[i] = str(int(v))
        elif type(v).__name__ in ("NAType", "NaTType"):
            out[i] = np.nan
        else:
            out[i] = str(v)
    return out


def _plain(value):
    """A Python scalar that JSON can hold (numpy ints and floats become int and float)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _dtype_of(classes: list | None) -> str:
    if not classes:
        return "int64"
    if all(isinstance(c, bool) for c in classes):
        return "bool"
    if all(isinstance(c, int) for c in classes):
        return "int64"
    if all(isinstance(c, int | float) for c in classes):
        return "float64"
    return "string"
