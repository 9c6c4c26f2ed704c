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
