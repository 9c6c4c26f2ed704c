"""One row checker and one input policy for every surface.

The checker itself is :class:`modelport.kernel.Inputs`, in the kernel, so that a
vendored in-app model checks rows exactly as the server does. This module gives the
rest of modelport its entry points:

- :class:`InputPolicy`: what a value outside what training saw does to its row. By
  default a number outside the training range or an unseen category is **scored and
  flagged**; ``strict`` (``--out-of-range reject``, ``--unseen-categories reject``) refuses
  it. ``warn`` is the older spelling of ``flag``.
- :func:`check`: any rows (dicts, columns, a data frame, an Arrow table) against a
  signature, giving a :class:`Checked`: every row's columns, the rejected rows with their
  :class:`Reject` (field, code, message) and the :class:`Flag` s of rows scored with a
  warning. A missing or unknown field or a value of the wrong type rejects its row only.
- :func:`arrow_columns`: an Arrow table's columns as the model is fed them (numbers as
  float64 read from Arrow's buffers, strings dictionary-encoded as :class:`Coded`), the
  columnar path batch jobs take.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import UserError
from modelport.kernel import (
    POLICIES,
    Checked,
    Coded,
    Flag,
    InputError,
    Inputs,
    Reject,
    policy,
    shown,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from modelport.signature import Signature

__all__ = ["Checked", "Coded", "Flag", "InputPolicy", "Reject", "Unreadable", "arrow_columns",
           "as_event", "check", "checker", "shown"]


class Unreadable(UserError):
    """Input that is not rows of the model at all (a column absent from columnar input,
    columns of unequal length); ``field`` names the field at fault, when one is."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class InputPolicy:
    """What an unseen category and a number outside the training range do to their row:
    ``flag`` (score it, count it, say so next to the score) or ``reject``."""

    unseen_categories: str = "flag"
    out_of_range: str = "flag"

    def __post_init__(self) -> None:
        for option, value in (("--unseen-categories", self.unseen_categories),
                              ("--out-of-range", self.out_of_range)):
            try:
                object.__setattr__(self, option[2:].replace("-", "_"), policy(value, option))
            except ValueError:
                raise UserError(f"{option} {value!r} is not known: use "
                                f"{' or '.join(POLICIES)} (warn is the same as flag)") from None

    @classmethod
    def of(cls, strict: bool = False, unseen_categories: str | None = None,
           out_of_range: str | None = None) -> InputPolicy:
        """The policy of ``strict`` (both rules ``reject``), each rule overridable alone."""
        default = "reject" if strict else "flag"
        return cls(unseen_categories or default, out_of_range or default)

    @property
    def strict(self) -> bool:
        return self.unseen_categories == "reject" and self.out_of_range == "reject"


FLAG = InputPolicy()


def checker(signature: Signature, policy: InputPolicy = FLAG, *, unknown: str = "reject",
            no_default: frozenset[str] | set[str] = frozenset()) -> Inputs:
    """The row checker of ``signature`` under ``policy``, built once per signature object.

    ``unknown`` says what a field the model does not take does to its row: ``reject`` (the
    web service, in-app) or ``ignore`` (data frames, tables and events that carry ids and
    other fields beside the model's). ``no_default`` names fields the model cannot score
    missing.
    """
    cache = signature.__dict__.setdefault("_checkers", {})
    key = (policy, unknown, frozenset(no_default))
    found = cache.get(key)
    if found is None:
        found = cache[key] = Inputs(signature.to_dict(), policy.unseen_categories,
                                    policy.out_of_range, no_default=set(no_default),
                                    unknown=unknown)
    return found


def check(rows: Any, signature: Signature, policy: InputPolicy = FLAG, *,
          unknown: str = "reject") -> Checked:
    """``rows`` checked against ``signature``: every row's columns, its rejects and flags.

    An input that is not rows at all (a column absent from columnar input, columns of
    unequal length) is a :class:`UserError`; anything wrong with one row rejects it alone.
    Arrow tables and record batches are read column by column (:func:`arrow_columns`).
    """
    inputs = checker(signature, policy, unknown=unknown)
    if type(rows) is dict:
        # one clean row (as a record, or as columns of one value) in a few microseconds
        found = inputs.check_one(rows)
        if found is not None:
            return found
    arrow_rejects: dict[int, Reject] = {}
    if type(rows).__module__.startswith("pyarrow"):
        present = set(rows.schema.names)
        absent = [n for n in signature.names if n not in present]
        if absent:
            raise Unreadable(f"input is missing field {absent[0]!r}; the model takes: "
                             f"{', '.join(signature.names)}", absent[0])
        rows, arrow_rejects = arrow_columns(rows, signature)
    try:
        checked = inputs.check(rows)
    except InputError as exc:
        raise Unreadable(str(exc), exc.field) from None
    for i, why in arrow_rejects.items():
        checked.rejects.setdefault(i, why)
    return checked


def raise_first(checked: Checked, where: str = "input") -> None:
    """A :class:`UserError` for the first rejected row of ``checked``, naming it; for the
    single-call Python API, where one bad row fails the call."""
    first = checked.first_reject()
    if first is not None:
        row, why = first
        at = f"{where} row {row}: " if checked.rows > 1 else ""
        raise UserError(at + why.message)


def as_event(why: Reject, position: int) -> Reject:
    """A reject the checker made for record ``position`` of a batch, reworded to name "the
    event": a position in a batch means nothing to whoever reads a dead letter."""
    prefix = f"record {position} "
    if why.message.startswith(prefix):
        return Reject(why.field, why.code, "the event " + why.message[len(prefix):])
    return why


def warning_text(flags: list[Flag]) -> str:
    """The flags of one row as one line: ``field: what`` joined by ``; ``."""
    return "; ".join(f"{f.field}: {f.kind.replace('_', ' ')}" for f in flags)


# -- Arrow -------------------------------------------------------------------------------------

def arrow_columns(table: pa.Table | pa.RecordBatch,
                  signature: Signature) -> tuple[dict[str, Any], dict[int, Reject]]:
    """The signature's columns of an Arrow table as the model is fed them, and the rows whose
    text in a numeric column is not a number.

    Numbers become float64 (missing: NaN) read from Arrow's buffers, without pandas; string
    categories become :class:`Coded` columns (each distinct word once, and integer codes);
    numbers in a categorical column follow the checker's rule (2.0 is the category ``"2"``).
    """
    import pyarrow as pa

    cols: dict[str, Any] = {}
    bad: dict[int, Reject] = {}
    for col in signature.inputs:
        values = table.column(col.name)
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if col.kind == "numeric":
            cols[col.name] = _arrow_numbers(values, col.name, bad)
        else:
            cols[col.name] = _arrow_categories(values)
    return cols, bad


def _arrow_numbers(values: pa.Array, name: str, bad: dict[int, Reject]) -> np.ndarray:
    import pyarrow as pa

    t = values.type
    if pa.types.is_dictionary(t):
        values = values.dictionary_decode()
        t = values.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return float64(values)
    import pyarrow.compute as pc

    if pa.types.is_boolean(t) or pa.types.is_decimal(t) or pa.types.is_null(t):
        return float64(pc.cast(values, pa.float64()))
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise UserError(f"column {name!r} must be numeric, but it holds {t} values; "
                        "convert it to numbers")
    stripped = pc.utf8_trim_whitespace(values)
    # empty text is missing; written without Python literals, whose conversion makes
    # pyarrow import pandas (a quarter of a second at start-up)
    empty = pc.invert(pc.cast(pc.utf8_length(stripped), pa.bool_()))
    stripped = pc.if_else(empty, pa.nulls(len(stripped), stripped.type), stripped)
    try:
        out = float64(pc.cast(stripped, pa.float64()))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        out = None
    if out is not None:
        return _overflowed(out, stripped, name, bad)
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(stripped.to_pylist()):
        if v is None:
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except ValueError:
            out[i] = np.nan
            bad.setdefault(i, Reject(name, "wrong_type",
                                     f"field {name!r} must be numeric, got {shown(v)}; send a "
                                     "number or null"))
    return _overflowed(out, stripped, name, bad)


def _overflowed(out: np.ndarray, texts: pa.Array, name: str, bad: dict[int, Reject]) -> np.ndarray:
    """``out`` with the numbers whose text overflows a float (a 400-digit integer, ``1e400``)
    rejected: parsing makes them infinite, as if the text had said ``inf``, which it did not."""
    at = np.flatnonzero(np.isinf(out))
    if not at.size:
        return out
    out = np.array(out)  # Arrow's array may be read-only
    for i in at.tolist():
        text = texts[i].as_py()
        if text.lstrip("+-").lower() not in ("inf", "infinity"):
            out[i] = np.nan
            bad.setdefault(i, Reject(name, "wrong_type",
                                     f"field {name!r} holds a number too large for a float "
                                     f"({text[:20]}...); send a number or null"))
    return out


def float64(values: pa.Array) -> np.ndarray:
    """An Arrow array of numbers as float64, NaN where null, read from its buffers.

    Arrow's own conversion of an array with nulls goes through pandas, and its compute
    functions take half a second to load on their first call: a batch worker needs neither.
    """
    name = str(values.type)
    dtype = np.dtype({"halffloat": "float16", "float": "float32", "double": "float64"}.get(
        name, name))
    out = np.frombuffer(values.buffers()[1], dtype=dtype,
                        count=len(values) + values.offset)[values.offset:].astype(np.float64)
    if values.null_count:
        bits = np.unpackbits(np.frombuffer(values.buffers()[0], dtype=np.uint8),
                             bitorder="little")[values.offset:values.offset + len(values)]
        out[bits == 0] = np.nan
    return out


def _arrow_categories(values: pa.Array) -> Coded | np.ndarray:
    """A :class:`Coded` column: each distinct string once, and codes. Dictionary-encoded
    Arrow columns (Parquet's own encoding of strings) are taken as they are; plain strings
    are encoded first."""
    import pyarrow as pa

    t = values.type
    if pa.types.is_dictionary(t):
        encoded = values
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        encoded = values.dictionary_encode()
    else:
        # numbers as categories follow the checker's own rule (2.0 -> "2")
        return values.to_numpy(zero_copy_only=False)
    # the words are few: a list of them, since Arrow's own conversion goes through pandas
    words = np.array(encoded.dictionary.to_pylist() + [None], dtype=object)[:-1]
    words[np.equal(words, None)] = np.nan  # type: ignore[call-overload]  # stubs: no None operand
    codes = float64(encoded.indices)
    return Coded(words, np.where(np.isnan(codes), -1, codes).astype(np.int64)
                 if encoded.null_count else codes.astype(np.int64))
