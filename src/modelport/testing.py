"""The Predictor conformance suite, as ``check_estimator`` is for scikit-learn estimators.

:func:`check_predictor` runs one battery of checks on any Predictor against a reference
(the native model) over a sample. Every format modelport ships passes it; a new format is
done when it does too.
"""

from __future__ import annotations

import numpy as np

from modelport.errors import UserError
from modelport.parity import compare
from modelport.predictor import Predictor


def check_predictor(predictor: Predictor, reference: Predictor, sample, tolerance: float) -> None:
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


def _same_rows(predictor, got: dict, full: dict, rows: list[int], tolerance: float) -> None:
    for key, values in got.items():
        expected = np.asarray(full[key])[rows]
        if values.dtype.kind in "fc":
            np.testing.assert_allclose(values, expected, atol=max(tolerance, 1e-12),
                                       err_msg=f"{predictor.format}: {key} differs by input shape")
        else:
            assert [str(v) for v in values] == [str(v) for v in expected], (
                f"{predictor.format}: {key} differs by input shape")


def _raises_naming(call, name: str) -> None:
    try:
        call()
    except UserError as exc:
        assert name in str(exc), f"error does not name column {name!r}: {exc}"
    else:
        raise AssertionError(f"bad input in column {name!r} was not refused")
