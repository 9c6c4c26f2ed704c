"""The scoring core every surface uses: checks, isolation, choice, following, counting."""

from __future__ import annotations

import math
import sqlite3
import time

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.errors import UserError
from modelport.registry import Registry
from modelport.scoring import choice
from modelport.scoring.checks import InputPolicy, Unreadable, check
from modelport.scoring.following import Follower
from modelport.scoring.isolation import is_transient, isolate, score
from modelport.signature import Signature

from zoo import build

SIGNATURE = Signature.from_dict({
    "task": "regression",
    "inputs": [
        {"name": "tenure", "kind": "numeric", "dtype": "float64", "nullable": True,
         "min": 0.0, "max": 72.0},
        {"name": "plan", "kind": "categorical", "dtype": "string", "nullable": True,
         "categories": ["basic", "premium"]},
    ],
})


def rows(*changes: dict) -> list[dict]:
    base = {"tenure": 12.0, "plan": "basic"}
    return [{**base, **c} for c in changes]


# -- checks ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, code", [
    ({"tenure": [1, 2]}, "wrong_type"),
    ({"tenure": {"v": 1}}, "wrong_type"),
    ({"tenure": "forty"}, "wrong_type"),
    ({"tenure": "1\x00"}, "wrong_type"),
    ({"tenure": 10 ** 400}, "wrong_type"),
    ({"plan": ["basic"]}, "wrong_type"),
])
def test_a_bad_value_rejects_its_row_only(bad, code):
    checked = check(rows({}, bad, {"tenure": 3.0}), SIGNATURE)
    assert list(checked.rejects) == [1]
    why = checked.rejects[1]
    assert why.code == code and why.field == next(iter(bad))
    cols, kept = checked.kept()
    np.testing.assert_array_equal(kept, [0, 2])
    np.testing.assert_array_equal(cols["tenure"], [12.0, 3.0])
    assert cols["plan"].tolist() == ["basic", "basic"]


def test_records_missing_or_with_unknown_fields_reject_their_row():
    checked = check([{"tenure": 1.0}, {"tenure": 1.0, "plan": "basic", "extra": 1},
                     {"tenure": 2.0, "plan": "premium"}], SIGNATURE)
    assert {i: r.code for i, r in checked.rejects.items()} == {0: "missing_field",
                                                                1: "unknown_field"}
    ignoring = check([{"tenure": 1.0, "plan": "basic", "extra": 1}], SIGNATURE,
                     unknown="ignore")
    assert not ignoring.rejects


def test_values_outside_training_are_flagged_by_default_and_refused_when_strict():
    odd = rows({}, {"tenure": 500.0}, {"plan": "gold"}, {"tenure": math.inf})
    flagged = check(odd, SIGNATURE)
    assert not flagged.rejects
    assert {i: [f.kind for f in fs] for i, fs in flagged.row_flags().items()} == {
        1: ["out_of_range"], 2: ["unseen_category"], 3: ["out_of_range"]}
    strict = check(odd, SIGNATURE, InputPolicy.of(strict=True))
    assert {i: r.code for i, r in strict.rejects.items()} == {
        1: "out_of_range", 2: "unseen_category", 3: "out_of_range"}
    assert InputPolicy("warn", "warn") == InputPolicy()  # the older spelling of flag
    with pytest.raises(UserError, match="--out-of-range 'ignore' is not known"):
        InputPolicy.of(out_of_range="ignore")


def test_text_that_cannot_be_written_out_is_quoted_safely_in_messages():
    checked = check(rows({"plan": "\ud800"}), SIGNATURE)
    message = checked.flags[0].message
    message.encode("utf-8")  # no lone surrogate left in the message itself
    assert "\\ud800" in message


def test_columns_missing_from_columnar_input_are_unreadable_naming_the_field():
    with pytest.raises(Unreadable) as refused:
        check({"tenure": [1.0, 2.0]}, SIGNATURE)
    assert refused.value.field == "plan"


def test_a_single_clean_row_takes_the_fast_path_with_the_same_columns():
    fast = check({"tenure": [12.0], "plan": ["basic"]}, SIGNATURE)
    general = check([{"tenure": 12.0, "plan": "basic"}], SIGNATURE)
    for name in SIGNATURE.names:
        assert fast.columns[name].dtype == general.columns[name].dtype
        assert fast.columns[name].tolist() == general.columns[name].tolist()


def test_numpy_numbers_in_a_row_take_the_fast_path_as_floats():
    from modelport.scoring.checks import checker

    inputs = checker(SIGNATURE, unknown="ignore")
    for value in (np.float64(12.5), np.float32(12.5), np.int64(12), np.int32(12)):
        clean = inputs.one({"tenure": value, "plan": "basic"})
        assert clean is not None and type(clean["tenure"]) is float
        assert clean["tenure"] == float(value)
    # a value the fast path cannot vouch for still goes to the full check
    assert inputs.one({"tenure": np.float64("inf"), "plan": "basic"}) is None
    assert inputs.one({"tenure": np.bool_(True), "plan": "basic"}) is None


def test_arrow_and_frames_are_checked_like_records():
    import pyarrow as pa

    table = pa.table({"tenure": ["1", "x", " 3 ", None], "plan": ["basic", "gold", None, "basic"],
                      "id": [1, 2, 3, 4]})
    checked = check(table, SIGNATURE, unknown="ignore")
    assert {i: r.code for i, r in checked.rejects.items()} == {1: "wrong_type"}
    assert [f.kind for f in checked.flags] == ["unseen_category"]
    cols, _ = checked.kept()
    assert cols["tenure"].tolist()[:2] == [1.0, 3.0] and math.isnan(cols["tenure"][2])
    frame = pd.DataFrame({"tenure": pd.array([1, None], dtype="Int64"), "plan": ["basic", None],
                          "id": [1, 2]})
    framed = check(frame, SIGNATURE, unknown="ignore")
    assert not framed.rejects
    assert math.isnan(framed.columns["tenure"][1]) and framed.columns["plan"][1] != "basic"


# -- isolation -------------------------------------------------------------------------------

def test_isolate_finds_the_bad_rows_in_few_calls():
    bad = {5, 40}
    calls = []

    def call(positions):
        calls.append(len(positions))
        if bad & set(positions.tolist()):
            raise ValueError("bad row")
        return positions.sum()

    done, failed = isolate(call, 64)
    assert set(failed) == bad
    assert sorted(int(i) for part, _ in done for i in part) == sorted(set(range(64)) - bad)
    assert len(calls) <= 2 * 2 * 6 + 1  # about 2k log2(n) calls for k bad rows of n


def test_failures_not_tied_to_rows_are_raised_without_splitting():
    calls = []

    def call(positions):
        calls.append(len(positions))
        raise ConnectionRefusedError("database is down")

    with pytest.raises(ConnectionRefusedError):
        isolate(call, 100)
    assert calls == [100]


def test_transient_failures_are_told_from_bad_rows(postgres_url):
    import sqlalchemy as sa

    assert is_transient(sqlite3.OperationalError("database is locked"))
    assert not is_transient(sqlite3.OperationalError("no such column: x"))
    assert not is_transient(ValueError("could not convert string to float"))
    down = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/test")
    with pytest.raises(sa.exc.OperationalError) as refused:
        down.connect()
    assert is_transient(refused.value)
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id bigint)"))
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as typed:
        conn.execute(sa.text("SELECT * FROM t WHERE id = CAST(:k AS varchar)"), {"k": "a"})
    assert not is_transient(typed.value)  # operator does not exist: a bad key, not a bad db
    engine.dispose()


def test_a_model_raising_on_one_row_costs_that_row_only():
    from modelport.testing import Tripwire

    model, sample = build("pipeline")
    trip = 33.5  # inside the training range, never in the training rows
    version = modelport.log_model(Tripwire(model, "tenure", trip), "trip", sample=sample,
                                  formats=["joblib"])
    predictor = Registry().load(version)
    frame = sample.head(20).copy()
    frame.loc[[3, 11], "tenure"] = trip
    checked = check(frame, predictor.signature, unknown="ignore")
    outcome = score(predictor.run_checked, checked, predictor.empty_outputs)
    assert set(outcome.rejects) == {3, 11}
    assert all(r.code == "model_error" and "trips the wire" in r.message
               for r in outcome.rejects.values())
    good = [i for i in range(20) if i not in (3, 11)]
    np.testing.assert_array_equal(outcome.positions, good)
    alone = model.predict_proba(frame.iloc[good])
    np.testing.assert_allclose(outcome.outputs["proba"], alone, rtol=0, atol=1e-12)


def test_scores_that_are_not_numbers_reject_their_row():
    class Gappy:
        def __call__(self, cols):
            v = np.asarray(cols["tenure"], dtype=np.float64) * 2
            v[v > 100] = np.nan
            return {"value": v}

    checked = check(rows({}, {"tenure": 60.0}, {"tenure": 1.0}), SIGNATURE)
    outcome = score(Gappy(), checked, lambda: {"value": np.zeros(0)})
    assert {i: r.code for i, r in outcome.rejects.items()} == {1: "not_finite"}
    np.testing.assert_array_equal(outcome.outputs["value"], [24.0, 2.0])


# -- choice ----------------------------------------------------------------------------------

@pytest.fixture
def pipeline_version():
    model, sample = build("pipeline")
    return modelport.log_model(model, "churn", sample=sample,
                               formats=["joblib", "onnx", "compiled"])


def test_rows_go_to_the_fastest_timed_artefact_and_batches_to_the_best_throughput(
        pipeline_version):
    v = pipeline_version
    timed = {a.format: a.parity["single_row_us"] for a in v.artefacts}
    assert choice.choose(v, "row").format == min(timed, key=timed.get)
    for a in v.artefacts:
        a.parity.pop("single_row_us", None)
        a.parity.pop("batch_rows_per_s", None)
    assert choice.choose(v, "row").format == "onnx"  # the fixed order when nothing was timed
    assert choice.choose(v, "batch").format == "compiled"
    v.artefact("joblib").parity["batch_rows_per_s"] = 1e12
    assert choice.choose(v, "batch").format == "joblib"
    assert "rows/s" in choice.choose(v, "batch").why
    assert choice.choose(v, "row", "joblib").why == "forced by --format"
    with pytest.raises(UserError, match="no accepted pmml artefact"):
        choice.choose(v, "row", "pmml")


def test_an_artefact_whose_runtime_is_missing_is_passed_over_with_the_reason(
        pipeline_version, monkeypatch):
    from modelport.formats import onnx

    v = pipeline_version
    for a in v.artefacts:
        a.parity.pop("single_row_us", None)
    monkeypatch.setattr(onnx, "available", lambda: False)
    chosen = choice.choose(v, "row")
    assert chosen.format == "compiled"
    assert "onnx (not installed" in chosen.why


def test_models_show_prints_what_the_surfaces_use(pipeline_version):
    import json

    from typer.testing import CliRunner

    from modelport.cli import app

    result = CliRunner().invoke(app, ["models", "show", "churn/1", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)["serving"]
    version = Registry().get("churn/1")
    assert shown["row"]["format"] == choice.choose(version, "row").format
    assert shown["batch"]["format"] == choice.choose(version, "batch").format


# -- following -------------------------------------------------------------------------------

def test_a_follower_swaps_in_the_new_version_and_keeps_the_old_when_a_load_fails():
    model, sample = build("logreg")
    reg = Registry()
    modelport.log_model(model, "m", sample=sample, formats=["joblib"], alias="production")
    loads = []

    def load(version):
        loads.append(version.version)
        if version.version == 2:
            raise RuntimeError("broken artefact")
        return f"predictor {version.version}"

    outcomes = []
    f = Follower("m@production", reg, load, poll_seconds=0.01,
                 on_reload=lambda follower, outcome: outcomes.append(outcome))
    assert (f.current, f.version) == ("predictor 1", 1)
    modelport.log_model(model, "m", sample=sample, formats=["joblib"], alias="production")
    assert not f.poll()
    assert (f.current, f.version) == ("predictor 1", 1)
    assert f.error["version"] == 2 and "broken artefact" in f.error["error"]
    assert not f.poll() and loads.count(2) == 1  # not tried again until the alias moves
    modelport.log_model(model, "m", sample=sample, formats=["joblib"], alias="production")
    time.sleep(0.02)
    f.tick()  # in the background
    f.wait(10)
    assert (f.current, f.version, f.error) == ("predictor 3", 3, None)
    assert outcomes == ["failed", "loaded"]
    assert f.status()["version"] == 3


# -- counting --------------------------------------------------------------------------------

def test_every_surface_counts_under_the_same_names():
    from prometheus_client import generate_latest

    from modelport.scoring.metrics import HttpMetrics, StreamMetrics, TriggerMetrics

    checked = check(rows({}, {"tenure": "x"}, {"plan": "gold"}), SIGNATURE)
    outcome = score(lambda cols: {"value": cols["tenure"] * 1.0}, checked,
                    lambda: {"value": np.zeros(0)})
    for metrics in (HttpMetrics(), StreamMetrics(), TriggerMetrics()):
        metrics.count("churn", 3, outcome, seconds=0.01)
        text = generate_latest(metrics.registry).decode()
        s = metrics.surface
        assert (f'modelport_scored_rows_total{{model="churn",surface="{s}",version="3"}} 2.0'
                in text)
        assert (f'modelport_rejected_rows_total{{model="churn",reason="wrong_type",'
                f'surface="{s}"}} 1.0') in text
        assert (f'modelport_warnings_total{{field="plan",kind="unseen_category",model="churn",'
                f'surface="{s}"}} 1.0') in text


