"""Conformance suites, as ``check_estimator`` is for scikit-learn estimators.

:func:`check_predictor` runs one battery of checks on any Predictor against a reference
(the native model) over a sample. Every format modelport ships passes it; a new format is
done when it does too.

:func:`check_surface` runs one battery of hostile rows (a list or an object in a numeric
field, NUL bytes, a 400-digit integer, a lone surrogate, missing and mixed-type ids, text
in a numeric field, a model that raises on one value, a prediction-log table that refuses a
row...) through a surface: batch, HTTP, streams, trigger workers, the learner. Every
surface passes it; a new surface is done when it does too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from modelport.errors import UserError
from modelport.parity import compare
from modelport.predictor import Predictor

if TYPE_CHECKING:
    import pandas as pd

    from modelport.signature import Signature

#: rows scored alone by id, as :func:`check_surface` takes them (see :func:`predictor_reference`)
Reference = Callable[[list[dict[str, Any]]], dict[Any, dict[str, Any]]]


def check_predictor(predictor: Predictor, reference: Predictor, sample: pd.DataFrame,
                    tolerance: float) -> None:
    """Assert that ``predictor`` honours the Predictor contract and agrees with ``reference``."""

    sample = sample.reset_index(drop=True)
    n = len(sample)
    sig = predictor.signature
    out = predictor.run(sample)
    _check_outputs(predictor, out, n)

    # agrees with the native model on the whole sample
    parity = compare(reference.run(sample), out, sig.task, tolerance)
    assert parity["passed"], f"{predictor.format}: parity failed: {parity}"

    # the primary output and probabilities through the convenience methods
    primary = predictor.predict(sample)
    assert len(primary) == n
    if predictor.has_proba:
        np.testing.assert_allclose(predictor.predict_proba(sample), out["proba"], atol=1e-12)
    else:
        try:
            predictor.predict_proba(sample)
        except UserError:
            pass
        else:
            raise AssertionError(f"{predictor.format}: predict_proba without probabilities "
                                 "must raise UserError")

    # the same rows in other shapes: one dict, a list of dicts, shuffled and extra columns
    head = sample.head(5)
    records = head.astype(object).where(head.notna(), None).to_dict(orient="records")
    one = predictor.run(records[0])
    _same_rows(predictor, one, out, [0], tolerance)
    many = predictor.run(records)
    _same_rows(predictor, many, out, list(range(len(records))), tolerance)
    shuffled = head[list(reversed(head.columns))].assign(unrelated_column=1)
    _same_rows(predictor, predictor.run(shuffled), out, list(range(len(head))), tolerance)

    # a row of nothing but missing values still scores when every column may be missing
    if all(c.nullable for c in sig.inputs):
        _check_outputs(predictor, predictor.run({c.name: None for c in sig.inputs}), 1)

    # unseen categories are scored, not refused (encoders ignore them)
    if sig.categorical:
        odd = head.copy()
        for name in sig.categorical:
            odd[name] = "a-category-never-seen"
        _check_outputs(predictor, predictor.run(odd), len(odd))

    # empty input gives empty outputs of the same shape
    empty = predictor.run(sample.head(0))
    _check_outputs(predictor, empty, 0)

    # bad input: a missing column and a non-number are user errors naming the column
    missing = sig.names[0]
    _raises_naming(lambda: predictor.run(sample.drop(columns=[missing]).head(3)), missing)
    if sig.numeric:
        col = sig.numeric[0]
        bad = sample.head(2).astype({col: object})
        bad.loc[0, col] = "not-a-number"
        _raises_naming(lambda: predictor.run(bad), col)


def _check_outputs(predictor: Predictor, out: dict, n: int) -> None:
    task = predictor.task
    fmt = predictor.format
    if task == "classification":
        assert "label" in out, f"{fmt}: classification output has no 'label'"
        assert out["label"].shape == (n,), f"{fmt}: label shape {out['label'].shape} != ({n},)"
        classes = predictor.classes
        if classes is not None and n:
            known = {str(c) for c in classes}
            assert {str(v) for v in out["label"]} <= known, f"{fmt}: labels outside classes"
        if predictor.has_proba:
            assert classes is not None, f"{fmt}: probabilities without classes"
            proba = out["proba"]
            assert proba.dtype == np.float64, f"{fmt}: proba dtype {proba.dtype} != float64"
            assert proba.shape == (n, len(classes)), f"{fmt}: proba shape {proba.shape}"
            if n:
                assert np.all((proba >= -1e-9) & (proba <= 1 + 1e-9)), f"{fmt}: proba outside [0,1]"
                np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5,
                                           err_msg=f"{fmt}: probabilities do not sum to 1")
    elif task == "regression":
        assert out["value"].dtype == np.float64, f"{fmt}: value dtype {out['value'].dtype}"
        assert out["value"].shape == (n,), f"{fmt}: value shape {out['value'].shape}"
        assert np.all(np.isfinite(out["value"])), f"{fmt}: non-finite values"
    else:
        assert out["cluster"].dtype == np.int64, f"{fmt}: cluster dtype {out['cluster'].dtype}"
        assert out["cluster"].shape == (n,), f"{fmt}: cluster shape {out['cluster'].shape}"


def _same_rows(predictor: Predictor, got: dict, full: dict, rows: list[int],
               tolerance: float) -> None:
    for key, values in got.items():
        expected = np.asarray(full[key])[rows]
        if values.dtype.kind in "fc":
            np.testing.assert_allclose(values, expected, atol=max(tolerance, 1e-12),
                                       err_msg=f"{predictor.format}: {key} differs by input shape")
        else:
            assert [str(v) for v in values] == [str(v) for v in expected], (
                f"{predictor.format}: {key} differs by input shape")


def _raises_naming(call: Callable[[], object], name: str) -> None:
    try:
        call()
    except UserError as exc:
        assert name in str(exc), f"error does not name column {name!r}: {exc}"
    else:
        raise AssertionError(f"bad input in column {name!r} was not refused")


# -- the surface conformance suite --------------------------------------------------------------
#
# Every surface (batch, HTTP, streams, trigger workers, the learner) must pass one battery of
# hostile rows: each goes to the surface's reject channel with a reason (or, where it is a
# legitimate row, is scored exactly as it would be alone), every other row is scored exactly as
# without it, and the surface keeps serving with nothing lost.

#: the id of the row a refusing prediction-log table turns away (see :func:`refusing_log`)
REFUSED_BY_LOG = "refused-by-log"


@dataclass
class Hostile:
    """One hostile row: what it is, the row (with its ``id``), what must happen to it
    (``reject``, or ``score`` for a legitimate row a surface must not choke on), the
    capability a surface needs for the case to apply (None: every surface) and the one
    under which it does not (``unless``)."""

    name: str
    row: dict[str, Any]
    expect: str
    needs: str | None = None
    unless: str | None = None


@dataclass
class SurfaceResult:
    """What a surface did with a list of rows, by row id: the outputs of the rows it scored
    (as :func:`plain_outputs` gives them), the reason of each row it rejected, and, for
    surfaces that keep a prediction log, the ids the log holds."""

    scored: dict[Any, dict[str, Any]] = field(default_factory=dict)
    rejected: dict[Any, str] = field(default_factory=dict)
    logged: set | None = None


class Surface(Protocol):
    """A surface under test: ``score`` sends rows (each with an ``id`` the surface carries
    or maps back) through it and collects what came out, ``alive`` says it still serves.
    ``capabilities`` names what applies to it: ``records`` (a row may lack a field),
    ``ids`` (rows are keyed by their id, so a missing id is a bad row), ``unicode`` (it
    scores any text, lone surrogates included) or ``refuses surrogates`` (its protocol
    refuses text that is not characters, with a reason), ``tripwire`` (it serves a
    :class:`Tripwire` model), ``log`` (it keeps a prediction log whose table refuses
    :data:`REFUSED_BY_LOG`), ``flat`` (its input is typed columns, as CSV, Parquet or a SQL
    table: a list arrives as its text, which in a categorical field is a legitimate category,
    so the case of a list there does not apply). A surface may also name in ``unreachable``
    the cases whose row its input cannot hold at all (PostgreSQL text never holds a NUL
    character: the application's own insert fails): those do not apply to it."""

    name: str
    capabilities: frozenset[str]

    def score(self, rows: list[dict[str, Any]]) -> SurfaceResult: ...

    def alive(self) -> bool: ...


def hostile_rows(signature: Signature, base: dict[str, Any], *,
                 trip: tuple[str, float] | None = None,
                 id_example: Any = "r0") -> list[Hostile]:
    """The battery of hostile rows for a model of ``signature``, built from the good row
    ``base`` (its fields, without an id)."""
    num = signature.numeric[0] if signature.numeric else None
    cat = signature.categorical[0] if signature.categorical else None
    cases: list[Hostile] = []

    def case(name: str, changes: dict, expect: str, needs: str | None = None,
             drop: str | None = None, id: Any = None, unless: str | None = None) -> None:
        row = {**base, **changes}
        if drop is not None:
            row.pop(drop)
        cases.append(Hostile(name, {"id": id if id is not None else f"h{len(cases)}", **row},
                             expect, needs, unless))

    if num is not None:
        case("a list in a numeric field", {num: [1, 2]}, "reject")
        case("an object in a numeric field", {num: {"value": 1}}, "reject")
        case("text in a numeric field", {num: "forty"}, "reject")
        case("a NUL byte in a numeric field", {num: "1\x00"}, "reject")
        case("a 400-digit integer", {num: 10 ** 400}, "reject")
    if cat is not None:
        case("a list in a categorical field", {cat: ["a", "b"]}, "reject", unless="flat")
        case("a NUL byte in a category", {cat: "basic\x00"}, "score")
        case("a lone surrogate in a category", {cat: "\ud800"}, "score", "unicode")
        case("a lone surrogate in a category, refused", {cat: "\ud800"}, "reject",
             "refuses surrogates")
    case("a field missing", {}, "reject", "records", drop=signature.names[-1])
    case("a missing id", {}, "reject", "ids", id=float("nan"))
    other = 424242 if isinstance(id_example, str) else "h-text-id"
    case("an id of another type", {}, "score", None, id=other)
    if trip is not None:
        case("a value the model raises on", {trip[0]: trip[1]}, "reject", "tripwire")
    case("a row the prediction-log table refuses", {}, "score", "log", id=REFUSED_BY_LOG)
    return cases


def check_surface(surface: Surface, signature: Signature, good: list[dict[str, Any]],
                  reference: Reference, *, trip: tuple[str, float] | None = None,
                  extra: Sequence[Hostile] = (), tolerance: float = 1e-9) -> list[str]:
    """Assert that ``surface`` passes the hostile-row battery; return the cases it ran.

    ``good`` are good rows with distinct ``id`` s; ``reference(rows)`` gives the outputs of
    rows scored alone (:func:`plain_outputs` form, by id), raising for a row that cannot be
    scored. For every case the hostile row sits among the good rows: it must be rejected
    with a reason (or, for a legitimate row, scored as ``reference`` scores it alone, or
    rejected with a reason where ``reference`` cannot score it either), every good row must
    be scored as ``reference`` scores it, every row must come out exactly once, and the
    surface must still serve. Then all cases run together in one list.
    """
    expected = reference(good)
    unreachable: frozenset[str] = getattr(surface, "unreachable", frozenset())
    cases = [c for c in [*hostile_rows(signature, _fields(good[0]), trip=trip,
                                       id_example=good[0]["id"]), *extra]
             if (c.needs is None or c.needs in surface.capabilities)
             and (c.unless is None or c.unless not in surface.capabilities)
             and c.name not in unreachable]
    mid = len(good) // 2
    for c in cases:
        result = surface.score(good[:mid] + [c.row] + good[mid:])
        _check_case(surface, c, result, good, expected, reference, tolerance)
        assert surface.alive(), f"{surface.name}: not serving after {c.name}"
    together = [c.row for c in cases]
    rows = [r for pair in zip(good, together + [None] * len(good), strict=False)
            for r in pair if r is not None]
    rows += together[len(good):]
    result = surface.score(rows)
    for c in cases:
        _check_case(surface, c, result, good, expected, reference, tolerance, together=True)
    assert surface.alive(), f"{surface.name}: not serving after every case at once"
    return [c.name for c in cases]


def _fields(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "id"}


def _key(value: Any) -> Any:
    """Ids compare by value; NaN (a missing id) by its text."""
    return "nan" if isinstance(value, float) and value != value else value


def _check_case(surface: Surface, c: Hostile, result: SurfaceResult, good: list[dict[str, Any]],
                expected: dict[Any, dict[str, Any]], reference: Reference, tolerance: float,
                together: bool = False) -> None:
    where = f"{surface.name}, {c.name}{' (all cases at once)' if together else ''}"
    scored = {_key(k): v for k, v in result.scored.items()}
    rejected = {_key(k): v for k, v in result.rejected.items()}
    hid = _key(c.row["id"])
    for row in good:
        rid = row["id"]
        assert rid not in rejected, f"{where}: good row {rid!r} rejected: {rejected.get(rid)}"
        assert rid in scored, f"{where}: good row {rid!r} lost (neither scored nor rejected)"
        _same(scored[rid], expected[rid], tolerance, f"{where}: good row {rid!r}")
    assert not (hid in scored and hid in rejected), f"{where}: the row came out twice"
    if c.expect == "reject":
        assert hid in rejected, (f"{where}: not rejected" if hid not in scored
                                 else f"{where}: scored instead of rejected: {scored[hid]}")
        assert str(rejected[hid]).strip(), f"{where}: rejected without a reason"
    else:
        try:
            alone = reference([c.row])[c.row["id"]]
        except Exception:  # noqa: BLE001 - not scorable alone either: a reason is due
            alone = None
        if alone is None:
            assert hid in rejected and str(rejected[hid]).strip(), (
                f"{where}: a row the model cannot score was not rejected with a reason")
        else:
            assert hid in scored, f"{where}: not scored: {rejected.get(hid, 'lost')}"
            _same(scored[hid], alone, tolerance, where)
    if result.logged is not None and not together:
        for row in good:
            assert row["id"] in result.logged, f"{where}: good row {row['id']!r} not logged"


def _same(got: dict, want: dict, tolerance: float, where: str) -> None:
    for key, value in want.items():
        assert key in got, f"{where}: output {key!r} missing from {got}"
        if key == "label":
            assert str(got[key]) == str(value), f"{where}: label {got[key]!r} != {value!r}"
        else:
            np.testing.assert_allclose(np.asarray(got[key], dtype=np.float64),
                                       np.asarray(value, dtype=np.float64), rtol=0,
                                       atol=tolerance, err_msg=f"{where}: {key} differs")


def plain_outputs(outputs: dict[str, np.ndarray], i: int) -> dict[str, Any]:
    """Row ``i`` of a Predictor's outputs as plain values: ``label`` (text), ``proba`` (a
    list in class order), ``value``, ``cluster``."""
    out: dict[str, Any] = {}
    for key, values in outputs.items():
        v = np.asarray(values)[i]
        out[key] = v.tolist() if isinstance(v, np.ndarray) else (
            v.item() if isinstance(v, np.generic) else v)
    if "label" in out:
        out["label"] = str(out["label"])
    return out


def surface_tolerance(predictor: Predictor) -> float:
    """How close a surface's scores must be to the same runtime scoring the row alone:
    1e-9 for float64 runtimes; 1e-6 for ONNX, which computes in float32, where the rows
    scored together change the last bits (a batched product sums in another order)."""
    return 1e-6 if predictor.format == "onnx" else 1e-9


def predictor_reference(predictor: Predictor) -> Reference:
    """A ``reference`` for :func:`check_surface`: rows scored by ``predictor`` in one call
    (their ``id`` s set aside), by id; strict about unknown fields like the surfaces."""
    def reference(rows: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
        fields = [_fields(r) for r in rows]
        out = predictor.run(fields)
        return {r["id"]: plain_outputs(out, i) for i, r in enumerate(rows)}
    return reference


class Tripwire:
    """A fitted estimator that raises on one value of one column, to prove that a model
    failing on one row costs that row only: wraps ``model`` and raises ``ValueError`` when
    ``column`` equals ``value`` in any row it is asked to score. Choose a ``value`` inside
    the training range that no training row holds (registration scores the sample).
    Picklable (it lives in modelport), so every surface and worker process can load it."""

    def __init__(self, model: Any, column: str, value: float) -> None:
        self.model, self.column, self.value = model, column, value
        for attr in ("classes_", "feature_names_in_", "n_features_in_"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))
        self._estimator_type = getattr(model, "_estimator_type", None)

    def __sklearn_tags__(self) -> Any:
        return self.model.__sklearn_tags__()

    def _armed(self, X: pd.DataFrame) -> None:
        values = np.asarray(X[self.column], dtype=np.float64)
        if np.any(values == self.value):
            raise ValueError(f"{self.column} == {self.value} trips the wire")

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        self._armed(X)
        return self.model.predict(X)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        self._armed(X)
        return self.model.predict_proba(X)

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        return {"column": self.column, "value": self.value}
