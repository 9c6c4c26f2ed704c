"""Bad input in a batch job: a malformed input fails before any output exists; with
``--on-error reject`` bad rows go to a rejects file with the reason, never a NaN score."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelport.errors import UserError
from modelport.registry import Registry
from modelport.serve.batch import predict

NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls",
           "data_usage_gb", "age"]
CATEGORICAL = ["plan", "contract", "payment_method", "region"]


@pytest.fixture(scope="module")
def churn_model(tmp_path_factory):
    from sklearn.linear_model import LogisticRegression

    import modelport
    from modelport.datasets import churn
    from modelport.train.preprocess import build_pipeline

    home = tmp_path_factory.mktemp("batch-errors")
    registry = Registry(f"sqlite:///{home / 'registry.db'}", str(home / "artefacts"))
    data = churn.generate(4000, seed=5)
    X = data.drop(columns=["customer_id", "churned"])
    model = build_pipeline(LogisticRegression(max_iter=300), X, NUMERIC, CATEGORICAL)
    model.fit(X, data["churned"])
    modelport.log_model(model, "churn", sample=X.head(300), formats=["joblib", "onnx"],
                        registry=registry)
    return registry, data.drop(columns=["churned"]), home


def _nothing_written(folder: Path) -> bool:
    return not any(p.name.startswith(("scores", ".scores")) for p in folder.iterdir())


def test_missing_column_fails_before_any_output(churn_model, tmp_path):
    registry, customers, _ = churn_model
    src = tmp_path / "in.parquet"
    customers.drop(columns=["contract"]).to_parquet(src)
    with pytest.raises(UserError, match="'contract'"):
        predict("churn", src, tmp_path / "scores.parquet", id="customer_id", workers=1,
                registry=registry)
    assert _nothing_written(tmp_path)


def test_wrong_type_fails_naming_the_column_before_any_output(churn_model, tmp_path):
    registry, customers, _ = churn_model
    src = tmp_path / "in.parquet"
    bad = customers.copy()
    bad["age"] = pd.Timestamp("2020-01-01")
    bad.to_parquet(src)
    with pytest.raises(UserError, match="column 'age' must be numeric"):
        predict("churn", src, f"sqlite:///{tmp_path}/scores.db#scores", id="customer_id",
                workers=1, registry=registry)
    assert _nothing_written(tmp_path)


def test_a_bad_value_fails_naming_row_and_column(churn_model, tmp_path):
    registry, customers, _ = churn_model
    src = tmp_path / "in.csv"
    bad = customers.astype({"monthly_charges": object})
    bad.loc[5, "monthly_charges"] = "lots"
    bad.to_csv(src, index=False)
    with pytest.raises(UserError, match="monthly_charges") as info:
        predict("churn", src, tmp_path / "scores.parquet", workers=1, registry=registry)
    assert "lots" in str(info.value)
    assert _nothing_written(tmp_path)


def test_reject_sends_bad_rows_to_a_rejects_file_with_the_reason(churn_model, tmp_path):
    registry, customers, _ = churn_model
    src = tmp_path / "in.csv"
    bad = customers.astype({"monthly_charges": object, "age": object})
    bad.loc[[3, 1500], "monthly_charges"] = "unknown"
    bad.loc[2999, "age"] = "old"
    bad.to_csv(src, index=False)
    out = tmp_path / "scores.parquet"
    result = predict("churn", src, out, id="customer_id", workers=1, chunk_rows=500,
                     on_error="reject", registry=registry)
    assert (result.rows, result.rejects) == (len(customers) - 3, 3)
    scores = pd.read_parquet(out)
    assert np.isfinite(scores["score"]).all()
    rejected = {customers.loc[i, "customer_id"] for i in (3, 1500, 2999)}
    assert rejected.isdisjoint(scores["customer_id"])
    lines = [json.loads(x) for x in (tmp_path / "scores.rejects.jsonl").read_text().splitlines()]
    assert [r["_row"] for r in lines] == [4, 1501, 3000]
    assert [r["customer_id"] for r in lines] == sorted(rejected)
    assert "'monthly_charges' must be numeric, got 'unknown'" in lines[0]["_reason"]
    assert "'age'" in lines[2]["_reason"]
    good = customers.drop(index=[3, 1500, 2999])
    expected = registry.load("churn", format="joblib").predict_proba(good)[:, 1]
    np.testing.assert_allclose(scores["score"], expected, atol=1e-5)


def test_command_line_error_is_one_line_with_exit_code_2_and_no_output(churn_model, tmp_path):
    registry, customers, home = churn_model
    src = tmp_path / "in.parquet"
    customers.drop(columns=["plan"]).to_parquet(src)
    env = {**os.environ, "MODELPORT_HOME": str(home), "MODELPORT_REGISTRY": registry.url,
           "MODELPORT_ARTIFACTS": str(home / "artefacts")}
    cmd = [sys.executable, "-m", "modelport", "predict", "churn", "--input", str(src),
           "--output", str(tmp_path / "scores.csv"), "--workers", "1"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "'plan'" in run.stderr
    assert _nothing_written(tmp_path)
    customers.to_parquet(src)
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert f"scored {len(customers):,} rows, 0 rejected" in run.stdout
    assert str(tmp_path / "scores.csv") in run.stdout


def _odd_rows(customers):
    """Rows of the training sample (every value seen in training), but for row 8, whose
    age is out of the training range, and row 10, whose plan training never saw."""
    rows = customers.head(300).copy()
    rows.loc[7, "age"] = 150
    rows.loc[9, "plan"] = "platinum"
    return rows


def test_values_outside_training_are_scored_and_listed_in_a_warnings_file(churn_model,
                                                                          tmp_path):
    registry, customers, _ = churn_model
    src = tmp_path / "in.csv"
    rows = _odd_rows(customers)
    rows.to_csv(src, index=False)
    out = tmp_path / "scores.parquet"
    result = predict("churn", src, out, id="customer_id", workers=1, chunk_rows=100,
                     registry=registry)
    assert (result.rows, result.rejects, result.warnings) == (300, 0, 2)
    assert result.warnings_output == str(tmp_path / "scores.warnings.jsonl")
    assert "2 with warnings" in result.summary() and "warnings -> " in result.summary()
    lines = [json.loads(x) for x in (tmp_path / "scores.warnings.jsonl").read_text()
             .splitlines()]
    assert [(r["_row"], r["customer_id"]) for r in lines] == [
        (8, int(rows.loc[7, "customer_id"])), (10, int(rows.loc[9, "customer_id"]))]
    assert lines[0]["_warnings"] == [
        "field 'age' value 150 is outside the range seen in training [18, 85]"]
    assert lines[1]["_warnings"] == ["field 'plan' value 'platinum' is a category unseen in "
                                     "training"]
    expected = registry.load("churn", format="joblib").predict_proba(rows)[:, 1]
    np.testing.assert_allclose(pd.read_parquet(out)["score"], expected, atol=1e-5)
    # no warnings, no file
    clean = tmp_path / "clean.parquet"
    customers.head(300).to_parquet(tmp_path / "clean_in.parquet")
    result = predict("churn", tmp_path / "clean_in.parquet", clean, workers=1,
                     registry=registry)
    assert result.warnings == 0 and result.warnings_output is None
    assert not (tmp_path / "clean.warnings.jsonl").exists()


def test_strict_refuses_values_outside_training(churn_model, tmp_path):
    registry, customers, _ = churn_model
    src = tmp_path / "in.parquet"
    _odd_rows(customers).to_parquet(src)
    out = tmp_path / "scores.parquet"
    result = predict("churn", src, out, id="customer_id", workers=1, strict=True,
                     on_error="reject", registry=registry)
    assert (result.rows, result.rejects, result.warnings) == (298, 2, 0)
    lines = [json.loads(x) for x in (tmp_path / "scores.rejects.jsonl").read_text()
             .splitlines()]
    assert [(r["_row"], r["_code"]) for r in lines] == [(8, "out_of_range"),
                                                        (10, "unseen_category")]
    assert "strict checking refuses it" in lines[0]["_reason"]
    # each rule on its own; warn is the older spelling of flag
    result = predict("churn", src, out, id="customer_id", workers=1, on_error="reject",
                     unseen_categories="reject", out_of_range="warn", registry=registry)
    assert (result.rows, result.rejects, result.warnings) == (299, 1, 1)
    with pytest.raises(UserError, match=r"row 8: field 'age' value 150 is outside the range.*"
                                        r"--on-error reject"):
        predict("churn", src, tmp_path / "failed.parquet", workers=1, strict=True,
                registry=registry)
    with pytest.raises(UserError, match="--out-of-range 'sometimes' is not known"):
        predict("churn", src, out, out_of_range="sometimes", registry=registry)


def test_strict_on_the_command_line_fails_with_exit_code_2_naming_the_row(churn_model,
                                                                         tmp_path):
    registry, customers, home = churn_model
    src = tmp_path / "in.csv"
    _odd_rows(customers).to_csv(src, index=False)
    env = {**os.environ, "MODELPORT_HOME": str(home), "MODELPORT_REGISTRY": registry.url,
           "MODELPORT_ARTIFACTS": str(home / "artefacts")}
    cmd = [sys.executable, "-m", "modelport", "predict", "churn", "--input", str(src),
           "--output", str(tmp_path / "scores.csv"), "--workers", "1"]
    run = subprocess.run([*cmd, "--unseen-categories", "reject"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert "row 10: field 'plan' value 'platinum' is a category unseen" in run.stderr
    assert _nothing_written(tmp_path)
    run = subprocess.run([*cmd, "--on-error", "reject", "--strict"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "scored 298 rows, 2 rejected, 0 with warnings" in run.stdout
