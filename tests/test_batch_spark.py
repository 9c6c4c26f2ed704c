"""``--engine spark`` gives the same scores as the local engine."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd

from modelport.registry import Registry
from modelport.serve.batch import predict

from conftest import need_module, unavailable

NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls",
           "data_usage_gb", "age"]
CATEGORICAL = ["plan", "contract", "payment_method", "region"]


def test_spark_and_local_engines_write_the_same_scores(tmp_path):
    need_module("pyspark", "spark")
    if shutil.which("java") is None:
        unavailable("Spark needs Java (a JDK 17 on the PATH)")
    from sklearn.ensemble import HistGradientBoostingClassifier

    import modelport
    from modelport.datasets import churn
    from modelport.train.preprocess import build_pipeline

    data = churn.generate(5000, seed=13)
    X = data.drop(columns=["customer_id", "churned"])
    model = build_pipeline(HistGradientBoostingClassifier(max_iter=30), X, NUMERIC, CATEGORICAL)
    model.fit(X, data["churned"])
    modelport.log_model(model, "churn", sample=X.head(300), formats=["joblib", "onnx"])
    src = tmp_path / "customers.parquet"
    data.drop(columns=["churned"]).to_parquet(src, index=False)

    local = predict("churn", src, tmp_path / "local.parquet", id="customer_id", workers=1,
                    chunk_rows=1000, registry=Registry())
    spark = predict("churn", src, tmp_path / "spark.parquet", id="customer_id",
                    engine="spark", registry=Registry())
    assert spark.rows == local.rows == len(data) and spark.format == local.format
    a = pd.read_parquet(tmp_path / "local.parquet")
    b = pd.read_parquet(tmp_path / "spark.parquet").sort_values("customer_id")
    b = b.reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    assert a["customer_id"].tolist() == b["customer_id"].tolist()
    assert a["label"].tolist() == b["label"].tolist()
    np.testing.assert_allclose(a["score"], b["score"], rtol=0, atol=1e-12)


def test_spark_rejects_warns_and_fails_as_the_local_engine_does(tmp_path):
    """The same rejects (row, code, reason) and warnings from both engines; with
    --on-error fail, Spark names the first bad row and writes nothing."""
    import json

    import pytest
    from sklearn.linear_model import LogisticRegression

    import modelport
    from modelport.datasets import churn
    from modelport.errors import UserError
    from modelport.train.preprocess import build_pipeline

    need_module("pyspark", "spark")
    if shutil.which("java") is None:
        unavailable("Spark needs Java (a JDK 17 on the PATH)")
    data = churn.generate(600, seed=17)
    X = data.drop(columns=["customer_id", "churned"])
    model = build_pipeline(LogisticRegression(max_iter=300), X, NUMERIC, CATEGORICAL)
    modelport.log_model(model.fit(X, data["churned"]), "churn", sample=X, formats=["joblib"])
    rows = data.drop(columns=["churned"]).astype({"age": object})
    rows.loc[40, "age"] = "old"
    rows.loc[41, "age"] = 150
    rows.loc[500, "plan"] = "platinum"
    src = tmp_path / "customers.csv"
    rows.to_csv(src, index=False)

    def read(path):
        return [json.loads(x) for x in path.read_text().splitlines()]

    found = {}
    for engine in ("local", "spark"):
        out = tmp_path / engine / "scores.parquet"
        out.parent.mkdir()
        result = predict("churn", src, out, id="customer_id", engine=engine, workers=1,
                         on_error="reject", registry=Registry())
        assert (result.rows, result.rejects, result.warnings) == (599, 1, 2), engine
        found[engine] = (read(out.parent / "scores.rejects.jsonl"),
                         read(out.parent / "scores.warnings.jsonl"),
                         pd.read_parquet(out).sort_values("customer_id"))
    (rejects, warnings, scores), (s_rejects, s_warnings, s_scores) = found.values()
    assert [(r["_row"], r["customer_id"], r["_code"], r["_reason"]) for r in rejects] == \
        [(r["_row"], r["customer_id"], r["_code"], r["_reason"]) for r in s_rejects] == \
        [(41, int(rows.loc[40, "customer_id"]), "wrong_type",
          "field 'age' must be numeric, got 'old'; send a number or null")]
    assert [(r["_row"], r["_warnings"]) for r in warnings] == \
        [(r["_row"], r["_warnings"]) for r in s_warnings]
    assert [r["_row"] for r in warnings] == [42, 501]
    np.testing.assert_allclose(scores["score"], s_scores["score"], rtol=0, atol=1e-12)

    out = tmp_path / "failed.parquet"
    with pytest.raises(UserError, match=r"row 41: field 'age' must be numeric, got 'old'.*"
                                        r"--on-error reject"):
        predict("churn", src, out, id="customer_id", engine="spark", registry=Registry())
    assert not out.exists() and not (tmp_path / "failed.rejects.jsonl").exists()
