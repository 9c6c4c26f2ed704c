"""What a model takes and gives: input columns with dtypes, vocabularies and ranges; outputs.

A :class:`Signature` is inferred from the training rows when a model is registered (ranges
and vocabularies from every row, read in chunks), stored with the version, and used by every
Predictor to check and coerce what it is fed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

MAX_CATEGORIES = 1000
#: rows read at a time when inferring a signature from a training set
CHUNK_ROWS = 100_000
#: distinct values of one column counted exactly while inferring; beyond, only the most
#: frequent keep their counts (see :class:`ValueCounts`)
COUNTED_VALUES = 100 * MAX_CATEGORIES
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
    def infer(cls, data: Any, task: str, classes: list | None = None, *,
              chunk_rows: int = CHUNK_ROWS) -> Signature:
        """Infer a signature from training rows (a DataFrame, Arrow table, dict, list of
        dicts or 2-D array), reading every row.

        Each column's dtype and kind come from the column's dtype (int64, float64 and bool
        columns are numeric, anything else a categorical of strings); ``nullable``, ``min``
        and ``max`` and the vocabulary (the ``MAX_CATEGORIES`` most frequent values) from all
        rows, read ``chunk_rows`` at a time through an :class:`InputProfile`, so the whole
        training set can be given without copying it.
        """
        frame = to_frame(data)
        profile = InputProfile()
        for chunk in row_chunks(frame, chunk_rows):
            profile.add(chunk)
        if classes is not None:
            classes = [_plain(c) for c in classes]
        return cls(inputs=profile.columns(), task=task, classes=classes)

    def coerce(self, data: Any) -> pd.DataFrame:
        """Return ``data`` as a DataFrame of exactly the signature's columns, in order.

        Numeric columns become float64 (missing values NaN), categorical columns object
        arrays of strings (missing values NaN). A missing column or a value that cannot
        be read as a number raises a :class:`UserError` naming the column.
        """
        import pandas as pd

        cols = self.columns(data)
        n = len(next(iter(cols.values()))) if cols else 0
        return pd.DataFrame(cols, index=pd.RangeIndex(n))

    def columns(self, data: Any) -> dict[str, np.ndarray]:
        """Like :meth:`coerce`, as a dict of NumPy arrays, without building a DataFrame.

        Takes a dict of scalars (one row), a dict of sequences, a list of dicts, an Arrow
        table or record batch, a DataFrame or a 2-D array; fields the model does not take
        are ignored. The first row that cannot be scored (a missing field, a value of the
        wrong type) is a :class:`UserError` naming it. This is the scoring core's row
        checker (:func:`modelport.scoring.checks.check`) with nothing flagged.
        """
        from modelport.kernel import Coded
        from modelport.scoring.checks import check, raise_first

        checked = check(data, self, unknown="ignore")
        raise_first(checked)
        return {k: v.decode() if isinstance(v, Coded) else v
                for k, v in checked.columns.items()}


def default_outputs(task: str, classes: list | None) -> list[dict[str, Any]]:
    if task == "classification":
        outs: list[dict[str, Any]] = [{"name": "label", "dtype": _dtype_of(classes)}]
        if classes is not None:
            outs.append({"name": "proba", "dtype": "float64", "shape": [-1, len(classes)]})
        return outs
    if task == "regression":
        return [{"name": "value", "dtype": "float64"}]
    return [{"name": "cluster", "dtype": "int64"}]


def to_frame(data: Any, names: list[str] | None = None) -> pd.DataFrame:
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


def _is_numeric(s: pd.Series) -> bool:
    kind = getattr(s.dtype, "kind", "O")
    return kind in "biuf"


def _plain(value: Any) -> Any:
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


class ValueCounts:
    """How often each string value occurs, merged chunk by chunk.

    Counts are exact while a column holds at most ``limit`` distinct values. Past that the
    rarest half are dropped each time the limit is crossed (a column of identifiers would
    otherwise grow without bound), so only the most frequent values keep their counts.
    """

    def __init__(self, limit: int = COUNTED_VALUES) -> None:
        self.limit = limit
        self.counts: dict[str, int] = {}

    def add(self, counts: Any) -> None:
        """Add the counts of one chunk: a mapping or a pandas ``value_counts()`` Series."""
        items = zip(counts.index.tolist(), counts.tolist(), strict=True) \
            if hasattr(counts, "index") else counts.items()
        held = self.counts
        for value, n in items:
            held[value] = held.get(value, 0) + int(n)
        if len(held) > self.limit:
            self.counts = dict(self.most_common(self.limit // 2))

    def most_common(self, n: int | None = None) -> list[tuple[str, int]]:
        """The ``n`` most frequent values with their counts; equal counts in value order,
        so the same rows give the same answer however they were chunked."""
        ranked = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        return ranked if n is None else ranked[:n]


class InputProfile:
    """What a signature records about input columns, accumulated over chunks of rows.

    :meth:`add` takes consecutive chunks of one table (same columns, same dtypes);
    :meth:`columns` returns the :class:`Column` list :meth:`Signature.infer` builds: dtype
    and kind from each column's dtype, ``nullable`` when any row is missing, ``min`` and
    ``max`` over every row, and the ``MAX_CATEGORIES`` most frequent categories (equal
    counts broken by value), sorted. It holds one chunk and the category counts at a time.
    """

    def __init__(self) -> None:
        self._seen: dict[Any, _ColumnProfile] = {}

    def add(self, chunk: pd.DataFrame) -> None:
        """Take one chunk of rows (a DataFrame)."""
        for name in chunk.columns:
            s = chunk[name]
            seen = self._seen.get(name)
            if seen is None:
                seen = self._seen[name] = _ColumnProfile(s)
            elif s.dtype != seen.dtype:
                raise UserError(
                    f"column {name!r} is {seen.dtype} in one chunk and {s.dtype} in another: "
                    "give the training rows as one table so each column has one dtype"
                )
            seen.add(s)

    def columns(self) -> list[Column]:
        """The columns seen so far, in the order they first appeared."""
        return [seen.column(str(name)) for name, seen in self._seen.items()]


class _ColumnProfile:
    """One column of an :class:`InputProfile`."""

    def __init__(self, s: pd.Series) -> None:
        self.dtype = s.dtype
        self.numeric = _is_numeric(s)
        self.nullable = False
        self.min: float | None = None
        self.max: float | None = None
        self.counts = None if self.numeric else ValueCounts()

    def add(self, s: pd.Series) -> None:
        self.nullable = self.nullable or bool(s.isna().any())
        if self.counts is not None:
            self.counts.add(s.dropna().astype(str).value_counts())
            return
        values = s.to_numpy(dtype="float64", na_value=np.nan)
        finite = values[~np.isnan(values)]
        if finite.size:
            low, high = float(finite.min()), float(finite.max())
            self.min = low if self.min is None else min(self.min, low)
            self.max = high if self.max is None else max(self.max, high)

    def column(self, name: str) -> Column:
        if self.counts is not None:
            cats = sorted(value for value, _ in self.counts.most_common(MAX_CATEGORIES))
            return Column(name=name, dtype="string", kind="categorical",
                          nullable=self.nullable, categories=cats)
        dtype = "bool" if self.dtype == bool else (
            "int64" if self.dtype.kind in "iu" else "float64")
        return Column(name=name, dtype=dtype, kind="numeric", nullable=self.nullable,
                      min=self.min, max=self.max)


def row_chunks(frame: pd.DataFrame, rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """Consecutive slices of a DataFrame of at most ``rows`` rows each, without copying;
    an empty frame gives one empty slice, so its columns are still seen."""
    if rows < 1:
        raise UserError(f"chunk_rows must be at least 1, got {rows}")
    for start in range(0, max(len(frame), 1), rows):
        yield frame.iloc[start:start + rows]
