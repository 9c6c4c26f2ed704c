"""The kernel: score an exported modelport model inside an application, with NumPy alone.

This one file is the whole runtime and the bottom layer of modelport (``modelport.kernel``):
the row checker every surface uses, and the prepared runtime of the ``compiled`` format. It
needs NumPy, and onnxruntime only for ONNX artefacts; it imports nothing from modelport, so
an application can vendor it: copy this file under any name (a bundle written by
``modelport export MODEL --format bundle`` carries it as ``modelport_inapp.py``).

::

    model = load("churn-bundle")       # a bundle folder, or a .compiled.json / .onnx file
    model.predict_proba({"tenure_months": 3, "plan": "basic", ...})[0, 1]

Rows come as a dict (one row), a list of dicts, a dict of columns or a 2-D array with the
columns in signature order. They are checked by :class:`Inputs`, the one row checker
every modelport surface uses: an unknown or absent field, text in a numeric field or a
value that is not a scalar is an :class:`InputError` naming the field; a category not seen
in training or a number outside the range seen in training is scored and flagged (an
:class:`InputWarning`), or refused with ``strict=True``. A missing value (``None``, NaN)
gets the model's own default (its imputer, or the branch its trees send missing values);
where the model has none, the row is refused rather than scored as NaN.

The compiled artefact is the model's intermediate form as JSON: preprocessing steps, one
model node (linear, tree ensemble, naive Bayes, centroids) and the output transform.
:class:`Program` prepares it once: a batch then costs one NumPy operation per step, and a
single row a plain Python operation per step and one NumPy call for the model node. It
computes in float64 in the order scikit-learn does, which is why it agrees with the native
model to 1e-9 (modelport's ``compiled`` format scores through it too). A loaded model is
read-only, so threads may share it.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import warnings
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from typing import TypeAlias

    import numpy.typing as npt

    #: a compiled step: its field, its source field, and the function of the source's values
    _Step: TypeAlias = tuple[str, str, Callable[[np.ndarray], np.ndarray]]
    #: a compiled step on one value (a float, or a category's integer code)
    _ScalarStep: TypeAlias = tuple[str, str, Callable[[float], float]]

__all__ = ["Checked", "Coded", "Flag", "InputError", "InputWarning", "Inputs", "Model", "Program",
           "Reject", "load"]

#: what a row's outputs are called, by task
PRIMARY_OUTPUT = {"classification": "label", "regression": "value", "clustering": "cluster"}
#: what a value outside what training saw does to its row: ``flag`` scores it and says so
POLICIES = ("flag", "reject")
_SPELLINGS = {"flag": "flag", "warn": "flag", "reject": "reject"}


class InputError(ValueError):
    """A row the model cannot score; the message names the field and the fix."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InputWarning(UserWarning):
    """A row scored although a value lies outside what training saw (an unseen category, a
    number outside the training range); ``strict=True`` refuses such rows instead."""


# --------------------------------------------------------------------------- loading


def load(path: str | os.PathLike[str], format: str | None = None, *, strict: bool = False,
         unseen_categories: str | None = None, out_of_range: str | None = None,
         signature: dict | None = None) -> Model:
    """The model in ``path``: a bundle folder, a ``.compiled.json`` file or an ``.onnx`` file.

    In a bundle, ``format`` picks the artefact (``compiled``, the default, or ``onnx``). An
    ``.onnx`` file outside a bundle needs its signature: a ``signature.json`` beside it, or
    ``signature=`` (the dict modelport writes there). A category unseen in training or a
    number outside the training range is scored with the model's own handling and emits an
    :class:`InputWarning`, as modelport's other surfaces flag it; ``strict=True`` refuses
    such rows with an :class:`InputError` instead. ``unseen_categories`` and
    ``out_of_range`` (``flag``, ``warn`` or ``reject``) set either rule alone.
    """
    default = "reject" if strict else "flag"
    unseen_categories = policy(unseen_categories or default, "unseen_categories")
    out_of_range = policy(out_of_range or default, "out_of_range")
    path = os.fspath(path)
    name, version, layout = None, None, None
    if os.path.isdir(path):
        manifest = _read_json(os.path.join(path, "bundle.json"), "the bundle's manifest")
        files = manifest.get("files", {})
        fmt = format or next((f for f in ("compiled", "onnx") if f in files), None)
        if fmt not in ("compiled", "onnx") or fmt not in files:
            have = [f for f in ("compiled", "onnx") if f in files]
            raise ValueError(f"the bundle {path} has no {fmt} artefact; it has: "
                             f"{', '.join(have) or 'none'}")
        artefact = os.path.join(path, files[fmt])
        if signature is None:
            signature = _read_json(os.path.join(path, files.get("signature", "signature.json")),
                                   "the bundle's signature")
        name, version, layout = manifest.get("model"), manifest.get("version"), manifest.get("onnx")
    else:
        artefact = path
        fmt = format or ("onnx" if path.endswith(".onnx") else "compiled")
    scorer: Program | OnnxScorer
    if fmt == "compiled":
        ir = _read_json(artefact, "the compiled model")
        if not isinstance(ir, dict) or "model" not in ir or "steps" not in ir:
            raise ValueError(f"{artefact} is not a compiled modelport model (no steps and model)")
        signature = signature or ir["signature"]
        scorer = Program({**ir, "signature": signature})
    elif fmt == "onnx":
        if signature is None:
            beside = os.path.join(os.path.dirname(os.path.abspath(artefact)), "signature.json")
            if not os.path.exists(beside):
                raise ValueError(f"{artefact} needs its signature: put signature.json beside "
                                 "it or pass signature=")
            signature = _read_json(beside, "the model's signature")
        with open(artefact, "rb") as fh:
            scorer = OnnxScorer(fh.read(), signature, layout)
    else:
        raise ValueError(f"format={fmt!r}: use compiled or onnx")
    return Model(scorer, signature, format=fmt, name=name, version=version,
                 unseen_categories=unseen_categories, out_of_range=out_of_range)


def _read_json(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} is missing: {path}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} in {path} is not valid JSON: {exc}") from None


class Model:
    """A loaded model: :meth:`predict` and :meth:`predict_proba` over checked rows."""

    def __init__(self, scorer: Program | OnnxScorer, signature: dict, *, format: str, name: str | None = None,
                 version: int | None = None, unseen_categories: str = "flag",
                 out_of_range: str = "flag") -> None:
        self.signature = signature
        self.format = format
        self.name = name
        self.version = version
        self.task = signature["task"]
        self.classes = signature.get("classes")
        self._scorer = scorer
        self._inputs = Inputs(signature, unseen_categories, out_of_range,
                              no_default=getattr(scorer, "no_default", set()))

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs.names)

    @property
    def has_proba(self) -> bool:
        return (self.task == "classification" and self.classes is not None
                and self._scorer.gives_proba)

    def run(self, rows: Any) -> dict[str, np.ndarray]:
        """Every output for ``rows``: ``label`` and ``proba`` (classifiers, probabilities in
        :attr:`classes` order), ``value`` (regressors) or ``cluster`` (clustering)."""
        one = self._inputs.one(rows) if type(rows) is dict else None
        if one is not None:
            n, out = 1, self._scorer.run_one(one)
        else:
            cols, n = self._inputs.columns(rows)
            if n == 0:
                return self._empty()
            out = self._scorer(cols)
        scores = out.get("proba", out.get("value"))
        if scores is not None and scores.dtype.kind == "f":
            bad = np.isnan(scores.reshape(n, -1)).any(axis=1)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise InputError(f"the model gives no score for row {row}: one of its inputs is "
                                 "missing and the model has no default for it; send a value")
        return out

    def predict(self, rows: Any) -> np.ndarray:
        """Labels, values or cluster ids, one per row."""
        return self.run(rows)[PRIMARY_OUTPUT[self.task]]

    def predict_proba(self, rows: Any) -> np.ndarray:
        """Class probabilities, one row per input row, columns in :attr:`classes` order."""
        if not self.has_proba:
            raise TypeError(f"{self.describe()} gives no probabilities (task {self.task}); "
                            "use predict")
        return self.run(rows)["proba"]

    def describe(self) -> str:
        who = f"{self.name}/{self.version}" if self.name else "the model"
        return f"{who} ({self.format})"

    def __repr__(self) -> str:
        return f"<Model {self.describe()} task={self.task} inputs={len(self._inputs.names)}>"

    def _empty(self) -> dict[str, np.ndarray]:
        if self.task == "classification":
            out = {"label": np.asarray(self.classes or [])[:0]}
            if self.has_proba:
                assert self.classes is not None  # has_proba needs classes
                out["proba"] = np.zeros((0, len(self.classes)))
            return out
        if self.task == "regression":
            return {"value": np.zeros(0)}
        return {"cluster": np.zeros(0, dtype=np.int64)}


# --------------------------------------------------------------------------- input checks

class Coded:
    """A categorical column kept dictionary-encoded: ``words[codes[i]]`` is row ``i``'s value.

    ``words`` holds each distinct string once; ``codes`` are integer positions in it, -1
    for a missing value. Columnar readers (Arrow, Parquet) give categories this way, and
    :class:`Program` scores it by looking up each distinct word once, never one string per
    row. Indexing with a slice, mask or positions selects rows and keeps the words.
    """

    __slots__ = ("words", "codes")

    def __init__(self, words: npt.ArrayLike, codes: npt.ArrayLike) -> None:
        self.words = np.asarray(words, dtype=object)
        self.codes = np.asarray(codes)

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, rows: slice | np.ndarray | list[int]) -> Coded:
        return Coded(self.words, self.codes[rows])

    def decode(self) -> np.ndarray:
        """An object array of the values, NaN for missing (as :class:`Inputs` gives them)."""
        return np.append(self.words, np.nan).astype(object)[self.codes]


_SCALARS = (str, int, float, bool, type(None), np.generic)
_ABSENT = object()
#: NumPy's number scalars a clean row may hold (a row taken from an array): read as floats
_NUMPY_NUMBERS = frozenset({np.float64, np.float32, np.int64, np.int32})
_PLAIN_TEXT = frozenset({str, type(None)})
_INFINITY = frozenset({"inf", "infinity"})


def _is_missing(v: object) -> bool:
    return v is None or (isinstance(v, float | np.floating) and v != v) or \
        type(v).__name__ in ("NAType", "NaTType")


def policy(value: str, option: str) -> str:
    """``flag`` or ``reject`` for a policy option; ``warn`` is the older spelling of ``flag``."""
    found = _SPELLINGS.get(value) if isinstance(value, str) else None
    if found is None:
        raise ValueError(f"{option}={value!r}: use one of {', '.join(POLICIES)}")
    return found


class Flag:
    """Rows scored although a value lies outside what training saw: ``kind`` is
    ``out_of_range`` or ``unseen_category``, ``rows`` their positions, ``message`` names
    the field and the first such value."""

    __slots__ = ("field", "kind", "rows", "message")

    def __init__(self, field: str, kind: str, rows: np.ndarray, message: str) -> None:
        self.field, self.kind, self.rows, self.message = field, kind, rows, message

    def __repr__(self) -> str:
        return f"<Flag {self.field} {self.kind} rows={self.rows.tolist()[:5]}>"


class Reject:
    """Why one row cannot be scored: the ``field`` at fault (None for the row as a whole),
    a short ``code`` (``wrong_type``, ``missing_field``, ``unknown_field``, ``no_default``,
    ``out_of_range``, ``unseen_category``...) and a ``message`` naming the value and the fix."""

    __slots__ = ("field", "code", "message")

    def __init__(self, field: str | None, code: str, message: str) -> None:
        self.field, self.code, self.message = field, code, message

    def __repr__(self) -> str:
        return f"<Reject {self.code} {self.field!r}: {self.message}>"


class Checked:
    """Rows checked against a signature: ``columns`` hold every row (a rejected row holds
    missing values), ``rejects`` maps a row's position to its :class:`Reject`, ``flags``
    lists the :class:`Flag` s of rows scored with a warning."""

    __slots__ = ("columns", "rows", "rejects", "flags")

    def __init__(self, columns: dict, rows: int, rejects: dict | None = None,
                 flags: list | None = None) -> None:
        self.columns = columns
        self.rows = rows
        self.rejects: dict[int, Reject] = rejects if rejects is not None else {}
        self.flags: list[Flag] = flags if flags is not None else []

    def kept(self) -> tuple[dict, np.ndarray | None]:
        """The columns of the rows not rejected, and their positions (None: every row)."""
        if not self.rejects:
            return self.columns, None
        keep = np.ones(self.rows, dtype=bool)
        keep[list(self.rejects)] = False
        positions = np.flatnonzero(keep)
        return {k: v[positions] for k, v in self.columns.items()}, positions

    def row_flags(self) -> dict[int, list[Flag]]:
        """The flags of each flagged row that is not rejected, by position."""
        out: dict[int, list[Flag]] = {}
        for f in self.flags:
            for i in f.rows.tolist():
                if i not in self.rejects:
                    out.setdefault(i, []).append(f)
        return out

    def first_reject(self) -> tuple[int, Reject] | None:
        if not self.rejects:
            return None
        row = min(self.rejects)
        return row, self.rejects[row]


class Inputs:
    """The row checker: turns rows into the columns a model is fed, float64 numbers (NaN
    missing) and strings (NaN missing) or :class:`Coded` columns, and says for each row what
    keeps it from being scored (a field absent or unknown, a value of the wrong type, a gap
    the model has no default for) and which values lie outside what training saw (numbers
    outside the range, unseen categories). ``unseen_categories`` and ``out_of_range`` are
    ``flag`` (score the row and say so) or ``reject``; ``unknown`` says what a field the
    model does not take does to its row (``reject``, or ``ignore`` as data frames with extra
    columns need)."""

    def __init__(self, signature: dict, unseen_categories: str = "flag",
                 out_of_range: str = "flag", no_default: set[str] | None = None,
                 unknown: str = "reject") -> None:
        self.inputs = signature["inputs"]
        self.names = [c["name"] for c in self.inputs]
        self.name_set = frozenset(self.names)
        self.known = {c["name"]: frozenset(c["categories"]) for c in self.inputs
                      if c["kind"] == "categorical" and c.get("categories")}
        self.range = {c["name"]: (c["min"], c["max"]) for c in self.inputs
                      if c["kind"] == "numeric" and c.get("min") is not None
                      and c.get("max") is not None}
        self.unseen_categories = policy(unseen_categories, "unseen_categories")
        self.out_of_range = policy(out_of_range, "out_of_range")
        self.no_default = frozenset(no_default or ())
        self.unknown = unknown
        strict_range = self.out_of_range == "reject"
        strict_words = self.unseen_categories == "reject"
        self._plan = [(c["name"], c["kind"] == "numeric", self.known.get(c["name"]),
                       *self.range.get(c["name"], (None, None)), c["name"] in self.no_default)
                      for c in self.inputs]
        self._strict = (strict_range, strict_words)

    # -- one clean row, fast ----------------------------------------------------------------

    def one(self, row: dict) -> dict | None:
        """One clean row as plain scalars (float with NaN for missing; str or None), in a few
        microseconds; None sends anything unusual (a flag included) down :meth:`check`. The
        row may also come as columns of one value each (``{"tenure": [3], ...}``)."""
        if len(row) != len(self._plan):
            return None
        out = {}
        for name, numeric, known, lo, hi, required in self._plan:
            v = row.get(name, _ABSENT)
            t = type(v)
            if t is list:
                if len(v) != 1:
                    return None
                v = v[0]
                t = type(v)
                if t is list:
                    return None
            if numeric:
                if t is float or t is int or t in _NUMPY_NUMBERS:
                    try:
                        v = float(v)
                    except OverflowError:
                        return None
                    if v != v:
                        if required:
                            return None
                    elif lo is not None and not lo <= v <= hi:
                        return None
                elif v is None and not required:
                    v = math.nan
                else:
                    return None
            elif t is str:
                if known is not None and v not in known:
                    return None
            elif v is not None or required:
                return None
            out[name] = v
        return out

    def check_one(self, row: dict) -> Checked | None:
        """A single clean row (see :meth:`one`) as checked columns of one row, or None for
        anything unusual, which :meth:`check` then names."""
        clean = self.one(row)
        if clean is None:
            return None
        cols = {}
        for name, numeric, *_ in self._plan:
            v = clean[name]
            if numeric:
                cols[name] = np.array([v], dtype=np.float64)
            else:
                arr = np.empty(1, dtype=object)
                arr[0] = math.nan if v is None else v
                cols[name] = arr
        return Checked(cols, 1)

    # -- every row ---------------------------------------------------------------------------

    def check(self, rows: Any) -> Checked:
        """Every row of ``rows`` checked: a dict (one row, or columns), a list of dicts, a data
        frame or a 2-D array. An input that is not rows at all (a column absent from columnar
        input, columns of unequal length, an array of the wrong width) is an
        :class:`InputError`; anything wrong with one row rejects that row only."""
        raw, n, rejects = self._raw(rows)
        cols: dict = {}
        flags: list[Flag] = []
        for c in self.inputs:
            name = c["name"]
            values = raw[name]
            arr: np.ndarray | Coded
            if c["kind"] == "numeric":
                arr = self._numbers(name, values, n, rejects)
                bounds = self.range.get(name)
                if bounds is not None:
                    self._outside(name, arr, bounds, rejects, flags)
            else:
                arr = self._texts(name, values, n, rejects)
                known = self.known.get(name)
                if known is not None:
                    self._unseen(name, arr, known, rejects, flags)
            if name in self.no_default:
                self._required(name, arr, rejects)
            cols[name] = arr
        return Checked(cols, n, rejects, flags)

    def columns(self, rows: Any) -> tuple[dict[str, np.ndarray], int]:
        """``(columns, row count)`` for ``rows`` in one call: the first rejected row is an
        :class:`InputError` naming its field and row; each flagged field emits one
        :class:`InputWarning`."""
        checked = self.check(rows)
        first = checked.first_reject()
        if first is not None:
            row, why = first
            where = f" (row {row})" if checked.rows > 1 else ""
            raise InputError(why.message + where, why.field)
        for f in checked.flags:
            warnings.warn(f.message, InputWarning, stacklevel=4)
        return checked.columns, checked.rows

    # -- reading the shape -------------------------------------------------------------------

    def _raw(self, rows: Any) -> tuple[dict, int, dict[int, Reject]]:
        names = self.names
        rejects: dict[int, Reject] = {}
        if isinstance(rows, dict):
            # one value anywhere makes it a row (a list in it is then a bad value); only
            # sequences throughout make it columns
            if not rows or any(isinstance(v, _SCALARS) for v in rows.values()):
                why = self._fields(rows, "input")
                if why is not None:
                    rejects[0] = why
                return {n: [rows.get(n)] for n in names}, 1, rejects
            self._columnar(rows.keys(), "input")
            return rows, _length(rows, names), rejects
        if hasattr(rows, "columns") and hasattr(rows, "__getitem__") and not isinstance(
                rows, np.ndarray):
            # a data frame (pandas, polars...) read column by column, without importing it
            keys = [str(c) for c in rows.columns]
            self._columnar(keys, "input")
            out = {n: _as_array(rows[n]) for n in names}
            return out, _length(out, names), rejects
        if isinstance(rows, list | tuple):
            if not rows:
                return {n: [] for n in names}, 0, rejects
            if isinstance(rows[0], dict):
                n = len(rows)
                out = {name: [None] * n for name in names}
                for i, r in enumerate(rows):
                    if not isinstance(r, dict):
                        rejects[i] = Reject(None, "not_a_record",
                                            f"record {i} is a {type(r).__name__}, not an object "
                                            "of fields")
                        continue
                    if len(r) != len(names) or any(k not in self.name_set for k in r):
                        why = self._fields(r, f"record {i}")
                        if why is not None:
                            rejects[i] = why
                            continue
                    for name in names:
                        out[name][i] = r.get(name)
                return out, n, rejects
            rows = np.asarray(rows, dtype=object)
        if isinstance(rows, np.ndarray):
            if rows.ndim == 1:
                rows = rows.reshape(1, -1)
            if rows.ndim != 2:
                raise InputError(f"an input array must be 2-D (rows x fields), got {rows.ndim}-D")
            if rows.shape[1] != len(names):
                raise InputError(f"an input array has {rows.shape[1]} columns but the model takes "
                                 f"{len(names)}, in this order: {', '.join(names)}")
            return {n: rows[:, j] for j, n in enumerate(names)}, rows.shape[0], rejects
        raise InputError(f"cannot read input of type {type(rows).__name__}: send a dict (one row), "
                         "a list of dicts, a dict of columns or a 2-D array")

    def _fields(self, record: dict, where: str) -> Reject | None:
        """What is wrong with a record's fields: an absent one, or one the model does not take."""
        if self.unknown == "reject":
            for k in record:
                if k not in self.name_set:
                    return Reject(str(k), "unknown_field",
                                  f"{where} has unknown field {shown(k)}; the model takes: "
                                  f"{', '.join(self.names)}")
        for name in self.names:
            if name not in record:
                return Reject(name, "missing_field",
                              f"{where} is missing field {name!r}; send null for a missing "
                              "value")
        return None

    def _columnar(self, keys: Collection[object], where: str) -> None:
        if self.unknown == "reject":
            for k in keys:
                if k not in self.name_set:
                    raise InputError(f"{where} has unknown field {shown(k)}; the model takes: "
                                     f"{', '.join(self.names)}", str(k))
        present = set(keys)
        absent = [n for n in self.names if n not in present]
        if absent:
            raise InputError(f"{where} is missing field {absent[0]!r}; the model takes: "
                             f"{', '.join(self.names)}", absent[0])

    # -- values ------------------------------------------------------------------------------

    def _numbers(self, name: str, values: Any, n: int, rejects: dict) -> np.ndarray:
        if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
            arr = values.astype(np.float64, copy=False).reshape(-1)
            if len(arr) == n:
                return arr
        try:
            arr = np.asarray(values, dtype=np.float64)
            # an infinity may be text too large for a float: the loop below tells them apart
            if arr.ndim == 1 and len(arr) == n and not np.isinf(arr).any():
                return arr
        except (TypeError, ValueError, OverflowError):
            pass
        if len(values) != n:
            raise InputError(f"field {name!r} has {len(values)} values but {self.names[0]!r} "
                             f"has {n}: send columns of equal length", name)
        arr = np.empty(n, dtype=np.float64)
        for i, v in enumerate(values):
            if _is_missing(v):
                arr[i] = np.nan
                continue
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            if isinstance(v, str):
                text = v.strip()
                if not text:
                    arr[i] = np.nan
                    continue
                try:
                    arr[i] = float(text)
                    if not math.isinf(arr[i]) or text.lstrip("+-").lower() in _INFINITY:
                        continue
                    why = (f"field {name!r} holds a number too large for a float "
                           f"({text[:20]}...); send a number or null")
                except ValueError:
                    why = f"field {name!r} must be numeric, got {shown(v)}; send a number or null"
            elif isinstance(v, numbers.Real):
                try:
                    arr[i] = float(v)
                    continue
                except OverflowError:
                    why = (f"field {name!r} holds a number too large for a float "
                           f"({str(v)[:20]}...); send a number or null")
            else:
                why = f"field {name!r} must be a number or null, got a {type(v).__name__}"
            arr[i] = np.nan
            rejects.setdefault(i, Reject(name, "wrong_type", why))
        return arr

    def _texts(self, name: str, values: Any, n: int, rejects: dict) -> np.ndarray | Coded:
        if isinstance(values, Coded):
            return values
        if isinstance(values, np.ndarray):
            arr = values.astype(object, copy=False).reshape(-1)
        else:
            # fromiter keeps a list inside the column as one (bad) value, never a new axis
            arr = np.fromiter(values, dtype=object, count=len(values))
        if len(arr) != n:
            raise InputError(f"field {name!r} has {len(arr)} values but {self.names[0]!r} "
                             f"has {n}: send columns of equal length", name)
        # the common cases (strings with None for missing) in C-speed passes: a Python loop
        # over every value would dominate the cost of large batches
        kinds = set(map(type, arr))
        if kinds <= _PLAIN_TEXT:
            if type(None) in kinds:
                arr = arr.copy()
                # numpy's stubs take no None operand; it compares each value with None
                arr[np.equal(arr, None)] = np.nan  # type: ignore[call-overload]
            return arr
        out = arr.copy()
        for i, v in enumerate(arr):
            if type(v) is str:
                continue
            if _is_missing(v):
                out[i] = np.nan
            elif isinstance(v, float | np.floating) and float(v).is_integer():
                out[i] = str(int(v))  # 2.0 read from a numeric-looking column is the category "2"
            elif isinstance(v, bytes):
                out[i] = v.decode("utf-8", "replace")
            elif isinstance(v, _SCALARS):
                out[i] = str(v.item() if isinstance(v, np.generic) else v)
            else:
                out[i] = np.nan
                rejects.setdefault(i, Reject(
                    name, "wrong_type",
                    f"field {name!r} must be a string or null, got a {type(v).__name__}"))
        return out

    def _outside(self, name: str, arr: np.ndarray, bounds: tuple[float, float], rejects: dict,
                 flags: list) -> None:
        lo, hi = bounds
        if len(arr) <= 16:  # plain floats beat three array operations for a few rows
            # NaN (missing) compares False both ways; infinity is outside any seen range
            rows = [i for i, v in enumerate(arr.tolist()) if v < lo or v > hi]
            if not rows:
                return
            at = np.asarray(rows, dtype=np.int64)
        else:
            with np.errstate(invalid="ignore"):
                at = np.flatnonzero((arr < lo) | (arr > hi))
            if not at.size:
                return
        message = (f"field {name!r} value {arr[at[0]]:g} is outside the range seen in "
                   f"training [{lo:g}, {hi:g}]")
        self._found(name, "out_of_range", at, message, self._strict[0], rejects, flags)

    def _unseen(self, name: str, arr: np.ndarray | Coded, known: frozenset, rejects: dict,
                flags: list) -> None:
        if isinstance(arr, Coded):
            words = [w.__class__ is str and w not in known for w in arr.words.tolist()]
            if not any(words):
                return
            bad = np.flatnonzero(np.asarray(words, dtype=bool))
            at = np.flatnonzero(np.isin(arr.codes, bad))
            if not at.size:
                return
            first = arr.words[arr.codes[at[0]]]
        else:
            rows = [i for i, v in enumerate(arr.tolist()) if v.__class__ is str and v not in known]
            if not rows:
                return
            at = np.asarray(rows, dtype=np.int64)
            first = arr[at[0]]
        some = ", ".join(sorted(known)[:10])
        message = (f"field {name!r} value {shown(first)} is a category unseen in training "
                   f"(known: {some})")
        self._found(name, "unseen_category", at, message, self._strict[1], rejects, flags)

    @staticmethod
    def _found(name: str, kind: str, rows: np.ndarray, message: str, strict: bool,
               rejects: dict, flags: list) -> None:
        if strict:
            why = Reject(name, kind, message + "; strict checking refuses it")
            for i in rows.tolist():
                rejects.setdefault(i, why)
        else:
            flags.append(Flag(name, kind, rows, message))

    def _required(self, name: str, arr: np.ndarray | Coded, rejects: dict) -> None:
        if isinstance(arr, Coded):
            missing = arr.codes < 0
        elif arr.dtype.kind == "f":
            missing = np.isnan(arr)
        else:
            missing = np.fromiter((v.__class__ is not str for v in arr), dtype=bool,
                                  count=len(arr))
        if missing.any():
            why = Reject(name, "no_default", f"field {name!r} is missing and the model has no "
                                             "default for it: send a value")
            for i in np.flatnonzero(missing).tolist():
                rejects.setdefault(i, why)


def _length(cols: dict, names: list[str]) -> int:
    return len(cols[names[0]]) if names else 0


def shown(value: object) -> str:
    """A value for a message: quoted, at most 40 characters, with no text that could not
    be written out (lone surrogates, control characters)."""
    text = repr(value if isinstance(value, str) else str(value))
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= 42 else text[:40] + "..."


def _as_array(column: Any) -> np.ndarray | list:
    if hasattr(column, "to_numpy"):
        numeric = getattr(getattr(column, "dtype", None), "kind", "O") in "biuf"
        try:
            if numeric:
                return column.to_numpy(dtype=np.float64, na_value=np.nan)
            return column.to_numpy(dtype=object)
        except TypeError:  # a frame library whose to_numpy takes no dtype
            return column.to_numpy()
    if isinstance(column, np.ndarray):
        return column
    return list(column)


# --------------------------------------------------------------------------- compiled models


class Program:
    """A compiled model (the intermediate form as a dict) prepared for scoring.

    Everything that does not depend on the rows is done here: categorical inputs get one
    vocabulary each, so every one-hot column and ordinal code becomes a table lookup on
    integer codes; all trees of an ensemble become one set of flat node arrays walked for
    every row and every tree at once. With ``native_trees`` (and onnx and onnxruntime
    installed) batches of rows walk the trees in onnxruntime's float64 tree operator
    instead (see :func:`native_forest`); single rows always take the NumPy walk.
    """

    gives_proba = True

    def __init__(self, ir: dict, native_trees: bool = False) -> None:
        if ir.get("precision", "float64") != "float64":
            raise ValueError(f"the model computes in {ir['precision']}; this runtime computes "
                             "in float64 and would not match it exactly")
        self.ir = ir
        self.output = ir["output"]
        self.gives_proba = (self.output["task"] == "classification"
                            and self.output["transform"] != "margin")
        kinds = {c["name"]: c["kind"] for c in ir["signature"]["inputs"]}
        # categorical fields are integer codes over the vocabulary of their input column:
        # 0 missing, 1..m known values, m + 1 anything else
        root: dict[str, str] = {n: n for n, k in kinds.items() if k == "categorical"}
        vocab: dict[str, dict[str, int]] = {n: {} for n in root}

        def learn(col: str, values: Collection[str | None]) -> None:
            table = vocab[root[col]]
            for v in values:
                if v is not None and v not in table:
                    table[v] = len(table) + 1

        for s in ir["steps"]:
            if s["source"] in root:
                if s["op"] == "impute":
                    root[s["name"]] = root[s["source"]]
                    learn(s["source"], [s["value"]])
                elif s["op"] in ("indicator", "ordinal"):
                    learn(s["source"], s["categories"])
        self._vocab = vocab
        self._root = root
        self._program = [self._compile_step(s) for s in ir["steps"]]
        self._one_program = [self._compile_scalar_step(s) for s in ir["steps"]]
        node = ir["model"]
        self._features = list(node["features"])
        self._native_trees = native_trees
        #: the model node compiled: feature matrix in, raw outputs out (a :class:`Forest`
        #: for tree ensembles, whose walk the C tree compiler may replace)
        self.model_node = self._compile_node(node)
        self.no_default = _no_default(ir, kinds)
        self._folded = self._fold_linear(node, kinds) if node["kind"] == "linear" else None

    # --- preparation ----------------------------------------------------------------------

    def _compile_step(self, s: dict) -> _Step:
        op, name, source = s["op"], s["name"], s["source"]
        if source in self._root:
            table = self._vocab[self._root[source]]
            if op == "impute":
                code = table[s["value"]]
                return name, source, lambda c: np.where(c == 0, code, c)
            if op == "is_missing":
                return name, source, lambda c: (c == 0).astype(np.float64)
            return name, source, self._lookup(s).take
        # numeric sources stay float64 with NaN for missing
        if op == "impute":
            value = float(s["value"])
            return name, source, lambda x: np.where(np.isnan(x), value, x)
        if op == "scale":
            center, scale = s["center"], s["scale"]
            return name, source, lambda x: (x - center) / scale
        if op == "affine":
            mul, add = s["mul"], s["add"]
            return name, source, lambda x: x * mul + add
        if op == "is_missing":
            return name, source, lambda x: np.isnan(x).astype(np.float64)
        if op == "indicator":
            known = np.asarray([c for c in s["categories"] if c is not None], dtype=np.float64)
            with_missing, negate = None in s["categories"], bool(s.get("negate"))

            def indicator(x: np.ndarray) -> np.ndarray:
                hit = np.where(np.isnan(x), with_missing, np.isin(x, known))
                return (hit != negate).astype(np.float64)

            return name, source, indicator
        if op == "ordinal":
            codes = {float(c): float(i) for i, c in enumerate(s["categories"])}
            unknown, missing = _or_nan(s.get("unknown")), _or_nan(s.get("missing"))

            def ordinal(x: np.ndarray) -> np.ndarray:
                return np.array([missing if v != v else codes.get(v, unknown) for v in x.tolist()],
                                dtype=np.float64)

            return name, source, ordinal
        raise ValueError(f"unknown step {op!r}: this runtime is older than the model")

    def _lookup(self, s: dict) -> np.ndarray:
        """The value of a one-hot or ordinal step for every code of its categorical source."""
        table = self._vocab[self._root[s["source"]]]
        lut = np.zeros(len(table) + 2, dtype=np.float64)
        if s["op"] == "indicator":
            for c in s["categories"]:
                lut[0 if c is None else table[c]] = 1.0
            if s.get("negate"):
                lut = 1.0 - lut
        elif s["op"] == "ordinal":
            lut[:] = _or_nan(s.get("unknown"))
            for i, c in enumerate(s["categories"]):
                lut[table[c]] = float(i)
            lut[0] = _or_nan(s.get("missing"))
        else:
            raise ValueError(f"the step {s['op']!r} cannot take a categorical field "
                             f"({s['source']!r})")
        return lut

    def _compile_scalar_step(self, s: dict) -> _ScalarStep:
        """The same step on one value (a Python float or category code): a single row costs
        microseconds instead of one NumPy call per step. Python floats are IEEE doubles, so
        every result is bit for bit the vectorised one."""
        op, name, source = s["op"], s["name"], s["source"]
        if source in self._root:
            table = self._vocab[self._root[source]]
            if op == "impute":
                code = table[s["value"]]
                return name, source, lambda c: code if c == 0 else c
            if op == "is_missing":
                return name, source, lambda c: 1.0 if c == 0 else 0.0
            return name, source, self._lookup(s).tolist().__getitem__
        if op == "impute":
            value = float(s["value"])
            return name, source, lambda x: value if x != x else x
        if op == "scale":
            center, scale = float(s["center"]), float(s["scale"])
            return name, source, lambda x: (x - center) / scale
        if op == "affine":
            mul, add = float(s["mul"]), float(s["add"])
            return name, source, lambda x: x * mul + add
        if op == "is_missing":
            return name, source, lambda x: 1.0 if x != x else 0.0
        if op == "indicator":
            known = frozenset(float(c) for c in s["categories"] if c is not None)
            with_missing, negate = None in s["categories"], bool(s.get("negate"))
            return name, source, lambda x: float((with_missing if x != x else x in known)
                                                 != negate)
        if op == "ordinal":
            codes = {float(c): float(i) for i, c in enumerate(s["categories"])}
            unknown, missing = _or_nan(s.get("unknown")), _or_nan(s.get("missing"))
            return name, source, lambda x: missing if x != x else codes.get(x, unknown)
        raise ValueError(f"unknown step {op!r}: this runtime is older than the model")

    def _compile_node(self, node: dict) -> Callable[[np.ndarray], np.ndarray]:
        kind = node["kind"]
        if kind == "linear":
            coef_t = np.ascontiguousarray(np.asarray(node["coef"], dtype=np.float64).T)
            intercept = np.asarray(node["intercept"], dtype=np.float64)
            return lambda X: X @ coef_t + intercept
        if kind == "tree_ensemble":
            return Forest(node, native=self._native_trees)
        if kind == "gaussian_nb":
            theta = np.asarray(node["theta"], dtype=np.float64)
            var = np.asarray(node["var"], dtype=np.float64)
            log_prior = node["log_prior"]

            def joint_log_likelihood(X: np.ndarray) -> np.ndarray:
                jll = []
                for i, prior in enumerate(log_prior):
                    n_ij = -0.5 * np.sum(np.log(2.0 * np.pi * var[i, :]))
                    n_ij -= 0.5 * np.sum(((X - theta[i, :]) ** 2) / var[i, :], 1)
                    jll.append(prior + n_ij)
                return np.array(jll).T

            return joint_log_likelihood
        if kind == "centroids":
            centers = np.asarray(node["centers"], dtype=np.float64)
            return lambda X: ((X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
        raise ValueError(f"unknown model node {kind!r}: this runtime is older than the model")

    def _fold_linear(self, node: dict, kinds: dict[str, str]
                     ) -> tuple[dict[str, np.ndarray], list[_Step], list[str], np.ndarray,
                                np.ndarray] | None:
        """A linear model's terms grouped by the input each comes from, for batches.

        Every field derives from exactly one input, so all the terms of a categorical input
        (its one-hot columns, ordinal code, missing flag, times their coefficients) are a
        function of that input's code alone: running the steps over every possible code
        once gives one table of raw scores per input, and a batch then costs one lookup per
        categorical input instead of one column per category. Numeric inputs keep their
        steps and meet their coefficients in one matrix product.
        """
        origin = {n: n for n in kinds}
        for s in self.ir["steps"]:
            origin[s["name"]] = origin[s["source"]]
        coef = np.asarray(node["coef"], dtype=np.float64)
        if coef.ndim != 2:
            return None
        tables = {}
        for name, table in self._vocab.items():
            domain = {name: np.arange(len(table) + 2, dtype=np.int64)}
            for field, source, fn in self._program:
                if origin[field] == name:
                    domain[field] = fn(domain[source])
            folded = np.zeros((len(table) + 2, coef.shape[0]), dtype=np.float64)
            for j, f in enumerate(self._features):
                if origin[f] == name:
                    folded += np.outer(np.asarray(domain[f], dtype=np.float64), coef[:, j])
            tables[name] = folded
        numeric = [j for j, f in enumerate(self._features) if origin[f] not in self._vocab]
        steps = [st for st in self._program if origin[st[0]] not in self._vocab]
        return (tables, steps, [self._features[j] for j in numeric],
                np.ascontiguousarray(coef[:, numeric].T),
                np.asarray(node["intercept"], dtype=np.float64))

    def _run_folded(self, cols: dict) -> np.ndarray:
        assert self._folded is not None  # only run for a folded linear model
        tables, steps, features, coef_t, intercept = self._folded
        values = dict(cols)
        for name, source, fn in steps:
            values[name] = fn(values[source])
        n = len(next(iter(cols.values())))
        if features:
            X = np.empty((n, len(features)), dtype=np.float64)
            for j, f in enumerate(features):
                X[:, j] = values[f]
            raw = X @ coef_t
            raw += intercept
        else:
            raw = np.repeat(intercept[None, :], n, axis=0)
        for name, folded in tables.items():
            raw += folded[self.encode(name, cols[name])]
        return raw

    # --- scoring ----------------------------------------------------------------------------

    def encode(self, name: str, values: np.ndarray | Coded) -> np.ndarray:
        """Integer codes of categorical input ``name`` (0 missing, m + 1 unknown); ``values``
        is an array of strings (anything else is missing) or a :class:`Coded` column."""
        table = self._vocab[name]
        unknown = len(table) + 1
        get = table.get
        if isinstance(values, Coded):
            # each distinct word once; the extra last entry serves the -1 of missing values
            lut = np.fromiter((get(w, unknown) if w.__class__ is str else 0
                               for w in values.words), dtype=np.int64,
                              count=len(values.words))
            return np.append(lut, 0)[values.codes]
        return np.fromiter(
            (get(v, unknown) if v.__class__ is str else 0 for v in values),
            dtype=np.int64, count=len(values),
        )

    def run(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs for checked columns: float64 numbers with NaN for missing values, and
        strings (anything that is not a ``str`` is missing) or :class:`Coded` columns for
        categorical inputs."""
        if self._folded is not None:
            return outputs(self.output, self._run_folded(cols))
        values = dict(cols)
        for name in self._vocab:
            values[name] = self.encode(name, cols[name])
        for name, source, fn in self._program:
            values[name] = fn(values[source])
        n = len(next(iter(cols.values())))
        X = np.empty((n, len(self._features)), dtype=np.float64)
        for j, f in enumerate(self._features):
            X[:, j] = values[f]
        return outputs(self.output, self.model_node(X))

    __call__ = run

    def run_one(self, row: dict) -> dict[str, np.ndarray]:
        """Outputs for one checked row of plain scalars (see :meth:`Inputs.one`)."""
        values = dict(row)
        for name, table in self._vocab.items():
            v = row[name]
            values[name] = table.get(v, len(table) + 1) if v.__class__ is str else 0
        for name, source, fn in self._one_program:
            values[name] = fn(values[source])
        features = [values[f] for f in self._features]
        node = self.model_node
        if node.__class__ is Forest:
            return outputs(self.output, node.one_row(features))
        return outputs(self.output, node(np.array([features], dtype=np.float64)))


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _no_default(ir: dict, kinds: dict[str, str]) -> set[str]:
    """Inputs whose missing value would reach a model node with no rule for it (a linear
    model, naive Bayes, centroids) as NaN; tree ensembles route missing values."""
    if ir["model"]["kind"] == "tree_ensemble":
        return set()
    origin = {n: n for n in kinds}
    maybe_nan = {n: True for n in kinds}
    for s in ir["steps"]:
        origin[s["name"]] = origin[s["source"]]
        op = s["op"]
        if op in ("scale", "affine"):
            maybe_nan[s["name"]] = maybe_nan[s["source"]]
        elif op == "ordinal":
            maybe_nan[s["name"]] = maybe_nan[s["source"]] and s.get("missing") is None
        else:  # impute, is_missing, indicator: a number for missing values too
            maybe_nan[s["name"]] = False
    return {origin[f] for f in ir["model"]["features"] if maybe_nan[f]}


def _expit(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def outputs(output: dict, raw: np.ndarray) -> dict[str, np.ndarray]:
    """Turn raw scores into outputs with the model's output transform."""
    t, task = output["transform"], output["task"]
    if task == "regression":
        return {"value": np.exp(raw[:, 0]) if t == "exp" else raw[:, 0].copy()}
    if task == "clustering":
        return {"cluster": np.argmin(raw, axis=1).astype(np.int64)}
    classes = np.asarray(output["classes"])
    if t == "margin":
        if raw.shape[1] == 1:
            return {"label": classes[(raw[:, 0] > 0).astype(int)]}
        return {"label": classes[raw.argmax(axis=1)]}
    if t == "logistic":
        if raw.shape[0] == 1 and raw[0, 0] > -709.0:
            # one row whose exp(-z) cannot overflow: NumPy's scalar arithmetic (the same
            # exp) and a comparison cost less than array operations and an argmax (which
            # takes the first of equals, as here)
            q = float(1.0 / (1.0 + np.exp(-raw[0, 0])))
            return {"label": classes[[1 if q > 1.0 - q else 0]],
                    "proba": np.array([[1.0 - q, q]])}
        p = _expit(raw[:, 0])
        proba = np.empty((len(p), 2))
        proba[:, 1] = p
        proba[:, 0] = 1 - p
    elif t == "softmax":
        e = np.exp(raw - raw.max(axis=1, keepdims=True))
        proba = e / e.sum(axis=1, keepdims=True)
    elif t == "ovr_logistic":
        proba = _expit(raw)
        proba /= proba.sum(axis=1).reshape((proba.shape[0], -1))
    elif t == "probability":
        proba = raw
    elif t == "normalize":
        total = raw.sum(axis=1, keepdims=True)
        proba = np.where(total > 0, raw / np.where(total > 0, total, 1.0), raw)
    else:
        raise ValueError(f"unknown output transform {t!r}: this runtime is older than the model")
    return {"label": classes[proba.argmax(axis=1)], "proba": proba}


def double_split(threshold: float, compare: str, input_dtype: str) -> tuple[str, float]:
    """Restate the split ``float32(x) compare threshold`` as ``x op t`` on float64 ``x``.

    Native tree libraries that round features to float32 first (scikit-learn's trees,
    XGBoost) send a float64 value that lies between a threshold and its float32 rounding
    the other way from a float64 evaluator. Both tests are monotone in ``x``, so the exact
    float64 boundary is the midpoint between the last float32 going left and the next one,
    with the midpoint itself going wherever round-half-to-even sends it.
    """
    if input_dtype != "float32" or not math.isfinite(threshold):
        return compare, float(threshold)
    t = float(threshold)
    f = np.float32(t)
    # f: the largest float32 that still goes left
    if (compare == "<=" and float(f) > t) or (compare == "<" and float(f) >= t):
        f = np.nextafter(f, np.float32(-np.inf))
    g = np.nextafter(f, np.float32(np.inf))
    if not np.isfinite(g):
        return "<=", math.inf
    mid = (float(f) + float(g)) / 2.0  # exact: float32 neighbours average exactly in float64
    f_is_even = int(np.asarray(f).view(np.uint32)) & 1 == 0
    return ("<=" if f_is_even else "<"), mid


def tree_depth(tree: dict) -> int:
    """The longest root-to-leaf path of a tree (flat arrays, node 0 the root), in splits."""
    feature, left, right = tree["feature"], tree["left"], tree["right"]
    best, stack = 0, [(0, 0)]
    while stack:
        i, d = stack.pop()
        if feature[i] < 0:
            best = max(best, d)
        else:
            stack += [(left[i], d + 1), (right[i], d + 1)]
    return best


#: rows scored per block, so the (rows x trees) walk state stays small
_BLOCK = 2048


class Forest:
    """Every tree of an ensemble as one flat node table, walked for all trees at once.

    A tree is flat arrays indexed by node (``feature`` -1 marks a leaf holding ``value``);
    a missing feature goes left when ``missing_left``; a categorical split sends the codes
    in ``categories`` left and, when ``categories_right`` is given, those codes right and
    every other code the way missing values go.
    """

    def __init__(self, node: dict, native: bool = False) -> None:
        n_outputs = node["n_outputs"]
        compare = node.get("compare", "<=")
        input_dtype = node.get("input_dtype", "float64")
        feature, threshold, le, missing_left, left, right, values = [], [], [], [], [], [], []
        is_leaf: list[bool] = []
        cat_rows: list[tuple[int, list, list | None]] = []
        roots, offset = [], 0
        for tree in node["trees"]:
            roots.append(offset)
            size = len(tree["feature"])
            cats = tree.get("categories") or [None] * size
            cats_right = tree.get("categories_right") or [None] * size
            out = tree.get("output", 0)
            for i, f in enumerate(tree["feature"]):
                leaf = f < 0
                is_leaf.append(leaf)
                op, t = double_split(tree["threshold"][i], compare, input_dtype)
                feature.append(0 if leaf else f)
                threshold.append(t)
                le.append(op == "<=")
                missing_left.append(bool(tree["missing_left"][i]))
                # a leaf points at itself: a walker there stays until it is dropped
                left.append(offset + i if leaf else offset + tree["left"][i])
                right.append(offset + i if leaf else offset + tree["right"][i])
                row = np.zeros(n_outputs)
                if leaf:
                    v = tree["value"][i]
                    row[out:out + len(v)] = v
                values.append(row)
                if not leaf and cats[i] is not None:
                    cat_rows.append((offset + i, cats[i], cats_right[i]))
            offset += size
        self.is_leaf = np.asarray(is_leaf, dtype=bool)
        self.feature = np.asarray(feature, dtype=np.int32)
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.le = np.asarray(le, dtype=bool)
        self.missing_left = np.asarray(missing_left, dtype=bool)
        self.left = np.asarray(left, dtype=np.int32)
        self.right = np.asarray(right, dtype=np.int32)
        #: children[2 * i] is node i's left child, children[2 * i + 1] its right one
        self.children = np.column_stack([self.left, self.right]).reshape(-1)
        self.values = np.asarray(values, dtype=np.float64).reshape(len(values), n_outputs)
        self.roots = np.asarray(roots, dtype=np.int32)
        self.base = np.asarray(node["base"], dtype=np.float64)
        self.mean = len(node["trees"]) if node.get("combine", "sum") == "mean" else None
        self.all_le = bool(self.le.all())
        self.depth = max((tree_depth(t) for t in node["trees"]), default=0)
        #: the same trees in onnxruntime's float64 tree operator, for batches (None: NumPy)
        self.native = native_forest(node) if native else None
        self.cat = None
        if cat_rows:
            # per categorical node: the side each integer code goes, 1 left, 0 right,
            # 2 "with the missing values"; codes beyond the table are "other"
            width = max(int(max([*c, *(r or [])], default=0)) for _, c, r in cat_rows) + 1
            self.cat_index = np.full(len(feature), -1, dtype=np.int32)
            table = np.zeros((len(cat_rows), width + 1), dtype=np.int8)
            for k, (i, c, r) in enumerate(cat_rows):
                self.cat_index[i] = k
                if r is not None:
                    table[k, :] = 2
                    table[k, [int(v) for v in r]] = 0
                table[k, [int(v) for v in c]] = 1
            self.cat = table
            self.cat_width = width

    def __call__(self, X: np.ndarray) -> np.ndarray:
        if X.shape[0] == 1:
            # compiled trees carry an entry for one row (``one``), proven on probe rows
            one = getattr(self.native, "one", None)
            if one is None:
                return self._one(X[0])
            return self._finished(one(X[0])[None, :])
        if self.native is not None:
            return self._finished(self.native(X))
        return self.walk(X)

    def _finished(self, raw: np.ndarray) -> np.ndarray:
        """The compiled trees' raw sums ``raw`` (rows x outputs, written in place) with the
        base added and, for a mean of trees, divided by their number."""
        raw += self.base
        if self.mean:
            raw /= self.mean
        return raw

    def one_row(self, features: list[float]) -> np.ndarray:
        """The forest's output for one row given as its feature values, as ``self`` gives it
        for that row as a matrix: through compiled trees' entry on values when they have
        one, with no array built for the row."""
        one = getattr(self.native, "one_values", None)
        if one is None:
            return self(np.array([features], dtype=np.float64))
        return self._finished(one(features).reshape(1, -1))

    def walk(self, X: np.ndarray) -> np.ndarray:
        """The forest's output for the rows of ``X``, always by the NumPy walk."""
        if X.shape[0] <= _BLOCK:
            return self._block(X)
        return np.concatenate([self._block(X[i:i + _BLOCK]) for i in range(0, len(X), _BLOCK)])

    def _go_left(self, x: np.ndarray, node: np.ndarray | slice,
                 maybe_nan: bool = True) -> np.ndarray:
        """Whether value ``x`` at ``node`` (an index array, or ``slice(None)`` for all) goes left."""
        t = self.threshold[node]
        go_left = (x <= t) if self.all_le else np.where(self.le[node], x <= t, x < t)
        if self.cat is not None:
            k = self.cat_index[node]
            is_cat = k >= 0
            if is_cat.any():
                code = np.where(np.isnan(x) | (x < 0) | (x > self.cat_width) | (x % 1 != 0),
                                self.cat_width, x).astype(np.intp)
                side = self.cat[np.where(is_cat, k, 0), np.where(is_cat, code, 0)]
                side_left = np.where(side == 2, self.missing_left[node], side == 1)
                go_left = np.where(is_cat, side_left, go_left)
        if maybe_nan:
            nan = np.isnan(x)
            if nan.any():
                go_left = np.where(nan, self.missing_left[node], go_left)
        return go_left

    def _one(self, row: np.ndarray) -> np.ndarray:
        # one row: decide every node of every tree at once, then follow the decisions from
        # each root; a few operations over all nodes beat a walk of many small steps
        go_left = self._go_left(row[self.feature], slice(None), bool(np.isnan(row).any()))
        step = np.where(go_left, self.left, self.right)
        node = self.roots
        for _ in range(self.depth):
            node = step[node]
        raw = self.values[node].sum(axis=0)[None, :] + self.base
        if self.mean:
            raw /= self.mean
        return raw

    def _block(self, X: np.ndarray) -> np.ndarray:
        n, n_trees = X.shape[0], len(self.roots)
        # one walker per (row, tree), in row-major order; leaves point at themselves, and
        # walkers that reached one are dropped from the active set once they are many, so
        # the work follows the actual path lengths, not the deepest tree
        at = np.tile(self.roots, n)
        flat_x = X.reshape(-1)
        active = np.flatnonzero(~self.is_leaf[at]).astype(np.int32)
        node = at[active]
        base_ix = (active // n_trees) * np.int32(X.shape[1])
        while active.size:
            x = flat_x[base_ix + self.feature[node]]
            go_left = self._go_left(x, node)
            node = self.children[2 * node + ~go_left]
            done = self.is_leaf[node]
            n_done = np.count_nonzero(done)
            if n_done == active.size:
                at[active] = node
                break
            if n_done * 4 >= active.size:
                at[active[done]] = node[done]
                keep = ~done
                active, node, base_ix = active[keep], node[keep], base_ix[keep]
        raw = self.values[at].reshape(n, n_trees, -1).sum(axis=1) + self.base
        if self.mean:
            raw /= self.mean
        return raw


def native_forest(node: dict) -> Callable[[np.ndarray], np.ndarray] | None:
    """The trees of ``node`` as onnxruntime's float64 tree operator, or None.

    ONNX's ``TreeEnsemble`` (ai.onnx.ml opset 5) compares and sums in float64, so with the
    thresholds restated by :func:`double_split` it takes every branch the NumPy walk takes
    and its sums differ only in the last bits; it walks rows in compiled code, several
    times faster than the vectorised walk. Returns a function of a float64 matrix giving
    the raw tree sums (no base, no averaging), or None when onnx or onnxruntime is not
    installed, ``MODELPORT_NUMPY_TREES`` is set (or ``MODELPORT_TREES=numpy``), or a tree
    has categorical splits.
    """
    if os.environ.get("MODELPORT_NUMPY_TREES") or os.environ.get("MODELPORT_TREES") == "numpy":
        return None
    trees = node["trees"]
    if any(c is not None for t in trees for c in (t.get("categories") or [])):
        return None
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    compare, dtype = node.get("compare", "<="), node.get("input_dtype", "float64")
    n_outputs = node["n_outputs"]
    inner_lists: dict[str, list] = {k: [] for k in (
        "modes", "splits", "features", "true", "true_leaf", "false", "false_leaf", "nan_true")}
    leaf_target: list[int] = []
    leaf_weight: list[float] = []
    roots: list[int] = []
    constant = np.zeros(n_outputs)
    for tree in trees:
        feature, first = tree["feature"], tree.get("output", 0)
        width = len(tree["value"][0]) if tree["value"] and tree["value"][0] is not None else 1
        if feature[0] < 0:  # a tree that is one leaf adds a constant
            constant[first:first + width] += tree["value"][0]
            continue
        # a leaf of the operator holds one number: a tree whose leaves hold several (one
        # per class) becomes one copy of the tree per class
        for k in range(width):
            inner: dict[int, int] = {}
            leaves: dict[int, int] = {}
            for i, f in enumerate(feature):
                if f < 0:
                    leaves[i] = len(leaf_target)
                    leaf_target.append(first + k)
                    leaf_weight.append(float(tree["value"][i][k]))
                else:
                    inner[i] = len(inner_lists["modes"]) + len(inner)
            roots.append(inner[0])
            for i in sorted(inner, key=inner.__getitem__):
                op, t = double_split(tree["threshold"][i], compare, dtype)
                inner_lists["modes"].append(0 if op == "<=" else 1)  # BRANCH_LEQ, BRANCH_LT
                inner_lists["splits"].append(t)
                inner_lists["features"].append(int(feature[i]))
                for side, child in (("true", tree["left"][i]), ("false", tree["right"][i])):
                    is_leaf = child in leaves
                    inner_lists[side].append(leaves[child] if is_leaf else inner[child])
                    inner_lists[side + "_leaf"].append(int(is_leaf))
                inner_lists["nan_true"].append(int(bool(tree["missing_left"][i])))
    if not roots:
        return lambda X: np.repeat(constant[None, :], len(X), axis=0)
    n_features = len(node["features"])
    op = helper.make_node(
        "TreeEnsemble", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=n_outputs,
        aggregate_function=1, post_transform=0, tree_roots=roots,
        nodes_modes=numpy_helper.from_array(np.asarray(inner_lists["modes"], dtype=np.uint8)),
        nodes_splits=numpy_helper.from_array(np.asarray(inner_lists["splits"],
                                                        dtype=np.float64)),
        nodes_featureids=inner_lists["features"],
        nodes_truenodeids=inner_lists["true"], nodes_trueleafs=inner_lists["true_leaf"],
        nodes_falsenodeids=inner_lists["false"], nodes_falseleafs=inner_lists["false_leaf"],
        nodes_missing_value_tracks_true=inner_lists["nan_true"],
        leaf_targetids=leaf_target,
        leaf_weights=numpy_helper.from_array(np.asarray(leaf_weight, dtype=np.float64)))
    graph = helper.make_graph(
        [op], "forest",
        [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [None, n_features])],
        [helper.make_tensor_value_info("Y", TensorProto.DOUBLE, [None, n_outputs])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21),
                                                     helper.make_opsetid("ai.onnx.ml", 5)])
    model.ir_version = 10
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(model.SerializeToString(), opts,
                                       providers=["CPUExecutionProvider"])
    except Exception:  # an onnxruntime without the float64 tree operator
        return None
    has_constant = bool(constant.any())

    def run(X: np.ndarray) -> np.ndarray:
        raw = session.run(None, {"X": np.ascontiguousarray(X, dtype=np.float64)})[0]
        if has_constant:
            raw += constant
        return raw

    return run


# --------------------------------------------------------------------------- ONNX models

#: numpy dtype of each ONNX input type (None: strings)
_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
               "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(string)": None}


class OnnxScorer:
    """An ONNX graph written by modelport, run by onnxruntime with one thread.

    How to feed and read the graph (one input per column or one matrix, the numeric dtype,
    the string fed for a missing category, which output is which) is the ``layout`` a
    bundle's manifest holds and the graph's own ``modelport`` metadata repeats.
    """

    def __init__(self, data: bytes, signature: dict, layout: dict | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("ONNX artefacts need onnxruntime: pip install onnxruntime") from None
        opts = ort.SessionOptions()
        # an application scores a row at a time: a thread pool costs more to wake than
        # the row takes to score
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        if layout is None:
            meta = self._session.get_modelmeta().custom_metadata_map.get("modelport")
            if meta is None:
                raise ValueError("the ONNX graph has no modelport layout: export it with "
                                 "modelport, or load it from a bundle")
            layout = json.loads(meta)
        self.layout = layout
        graph = {i.name: i for i in self._session.get_inputs()}
        self._feeds = [(name, col, _ONNX_TYPES.get(graph[name].type, np.float32),
                        (-1,) if len(graph[name].shape) == 1 else (-1, 1))
                       for name, col in zip(layout["names"], layout["columns"], strict=False)]
        self._matrix = layout["inputs"] == "matrix"
        self._roles = list(layout["outputs"])
        self._fetch = [layout["outputs"][r] for r in self._roles]
        self.task = signature["task"]
        classes = signature.get("classes")
        self._classes = np.asarray(classes) if classes is not None else None
        self.gives_proba = "proba" in layout["outputs"] and classes is not None
        self.no_default: set[str] = set()

    def _feed(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._matrix:
            name, _, dtype, _ = self._feeds[0]
            return {name: np.column_stack([cols[c] for c in self.layout["columns"]]).astype(
                dtype or np.float32)}
        feed = {}
        for name, col, dtype, shape in self._feeds:
            values = cols[col]
            if dtype is None:
                if isinstance(values, Coded):
                    values = values.decode()
                # anything that is not a string (None, NaN) is a missing category
                missing = np.fromiter((v.__class__ is not str for v in values), dtype=bool,
                                      count=len(values))
                if missing.any():
                    values = np.where(missing, self.layout["missing"], values)
                feed[name] = values.astype(object).reshape(shape)
            else:
                feed[name] = values.astype(dtype, copy=False).reshape(shape)
        return feed

    def run_one(self, row: dict) -> dict[str, np.ndarray]:
        return self({k: np.array([v], dtype=object if v is None or type(v) is str
                                  else np.float64) for k, v in row.items()})

    def __call__(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raw = dict(zip(self._roles, self._session.run(self._fetch, self._feed(cols)), strict=True))
        if self.task == "regression":
            return {"value": np.asarray(raw["value"], dtype=np.float64).reshape(-1)}
        if self.task == "clustering":
            return {"cluster": np.asarray(raw["cluster"], dtype=np.int64).reshape(-1)}
        if self.gives_proba:
            proba = np.asarray(raw["proba"], dtype=np.float64)
            assert self._classes is not None  # gives_proba needs classes
            return {"label": self._classes[np.argmax(proba, axis=1)], "proba": proba}
        labels = np.asarray(raw["label"]).reshape(-1)
        if self._classes is not None:
            by_text = {str(c): c for c in self._classes.tolist()}
            labels = np.asarray([by_text.get(str(v), v) for v in labels.tolist()])
        return {"label": labels}
