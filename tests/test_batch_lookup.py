"""Lookup tables: scoring into SQL upserts one row per id (a re-run never duplicates) and
``modelport.lookup`` / ``modelport lookup`` read back the latest score."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import modelport
from modelport.registry import Registry
from modelport.serve.batch import predict
from modelport.serve.lookup import lookup

from conftest import need_module, port_open, unavailable

NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls",
           "data_usage_gb", "age"]
CATEGORICAL = ["plan", "contract", "payment_method", "region"]


@pytest.fixture(scope="module")
def churn_model(tmp_path_factory):
    from sklearn.linear_model import LogisticRegression

    from modelport.datasets import churn
    from modelport.train.preprocess import build_pipeline

    home = tmp_path_factory.mktemp("batch-lookup")
    registry = Registry(f"sqlite:///{home / 'registry.db'}", str(home / "artefacts"))
    data = churn.generate(3000, seed=11)
    X = data.drop(columns=["customer_id", "churned"])
    model = build_pipeline(LogisticRegression(max_iter=300), X, NUMERIC, CATEGORICAL)
    model.fit(X, data["churned"])
    for _ in range(2):  # two versions: a re-run with the newer one updates each row
        modelport.log_model(model, "churn", sample=X.head(300), formats=["joblib", "onnx"],
                            registry=registry)
    src = home / "customers.parquet"
    data.drop(columns=["churned"]).to_parquet(src, index=False)
    expected = registry.load("churn/1", format="joblib").predict_proba(X)[:, 1]
    return registry, src, data, expected, home


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """A lookup-table job writes its warnings file in the working folder."""
    monkeypatch.chdir(tmp_path)


def _check_upserts(registry, src, data, expected, store: str) -> None:
    first = predict("churn/1", src, store, id="customer_id", workers=1, chunk_rows=700,
                    registry=registry)
    again = predict("churn/2", src, store, id="customer_id", workers=1, chunk_rows=700,
                    registry=registry)
    assert first.rows == again.rows == len(data)
    from sqlalchemy import text

    from modelport.io.sinks import lookup_engine

    url, _, table = store.partition("#")
    engine = lookup_engine(url)
    with engine.connect() as conn:
        count, distinct, versions = conn.execute(text(
            f"SELECT count(*), count(DISTINCT customer_id), max(model_version) FROM {table}")).one()
    engine.dispose()
    assert count == distinct == len(data) and versions == 2
    for i in (0, 1234, len(data) - 1):
        row = lookup("churn", int(data["customer_id"].iloc[i]), store=store)
        assert row["model"] == "churn" and row["model_version"] == 2
        assert row["score"] == pytest.approx(expected[i], abs=1e-5)
        assert row["label"] == int(expected[i] >= 0.5)
        assert row["scored_at"].endswith("+00:00")
    assert lookup("churn", 1, store=store) is None
    assert lookup("churn/1", int(data["customer_id"].iloc[0]), store=store) is None


def test_sqlite_rerun_keeps_one_row_per_id_and_lookup_reads_latest(churn_model, tmp_path):
    registry, src, data, expected, _ = churn_model
    _check_upserts(registry, src, data, expected, f"sqlite:///{tmp_path}/scores.db#churn_scores")


def test_postgres_rerun_keeps_one_row_per_id(churn_model, postgres_url):
    registry, src, data, expected, _ = churn_model
    _check_upserts(registry, src, data, expected, f"{postgres_url}#churn_scores")


def test_mariadb_rerun_keeps_one_row_per_id(churn_model):
    need_module("pymysql", "mysql")
    if not port_open("127.0.0.1", 3306):
        unavailable("MariaDB is not running on 127.0.0.1:3306")
    import uuid

    import pymysql

    name = f"mp_scores_{uuid.uuid4().hex[:10]}"
    registry, src, data, expected, _ = churn_model
    try:
        _check_upserts(registry, src, data, expected, f"mysql://root@127.0.0.1:3306/test#{name}")
    finally:
        with pymysql.connect(host="127.0.0.1", user="root", database="test") as conn:
            conn.cursor().execute(f"DROP TABLE IF EXISTS {name}")
            conn.commit()


def test_lookup_command_prints_json_and_fails_on_unknown_id(churn_model, tmp_path):
    registry, src, data, expected, home = churn_model
    store = f"sqlite:///{tmp_path}/scores.db#churn_scores"
    predict("churn/1", src, store, id="customer_id", workers=1, registry=registry)
    env = {**os.environ, "MODELPORT_HOME": str(home), "MODELPORT_REGISTRY": registry.url,
           "MODELPORT_ARTIFACTS": str(home / "artefacts")}
    cid = str(data["customer_id"].iloc[42])
    run = subprocess.run([sys.executable, "-m", "modelport", "lookup", "churn", cid,
                          "--store", store], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    row = json.loads(run.stdout)
    assert row["customer_id"] == int(cid) and np.isclose(row["score"], expected[42], atol=1e-5)
    run = subprocess.run([sys.executable, "-m", "modelport", "lookup", "churn", "999",
                          "--store", store], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "no scores for id '999'" in run.stderr
    assert modelport.lookup("churn", cid, store=store)["customer_id"] == int(cid)


def test_a_row_the_lookup_table_cannot_hold_is_rejected_alone(churn_model, postgres_url,
                                                              tmp_path):
    """A text id longer than the key column holds (255 characters) is refused by
    PostgreSQL: under --on-error reject that row goes to the rejects file and every other
    row is written; under fail the job stops naming it and the table is as it was."""
    import pandas as pd

    from modelport.errors import UserError

    registry, _, data, _, _ = churn_model
    frame = data.drop(columns=["churned"]).head(1000).astype({"customer_id": str})
    frame.loc[777, "customer_id"] = "x" * 300
    src = tmp_path / "customers.parquet"
    frame.to_parquet(src, index=False)
    store = f"{postgres_url}#churn_scores"
    with pytest.raises(UserError, match=r"row 778: the lookup table cannot hold this row "
                                        r"\(.*value too long"):
        predict("churn/1", src, store, id="customer_id", workers=1, chunk_rows=100,
                registry=registry)
    from modelport.io.sinks import lookup_engine

    engine = lookup_engine(postgres_url)
    assert not pd.read_sql("SELECT to_regclass('churn_scores') AS t", engine)["t"].iloc[0]
    result = predict("churn/1", src, store, id="customer_id", workers=1, chunk_rows=100,
                     on_error="reject", registry=registry)
    assert (result.rows, result.rejects) == (999, 1)
    ids = pd.read_sql("SELECT customer_id FROM churn_scores", engine)["customer_id"]
    engine.dispose()
    assert sorted(ids) == sorted(frame["customer_id"].drop(index=777))
    [line] = (tmp_path / "churn_scores.rejects.jsonl").read_text().splitlines()
    rejected = json.loads(line)
    assert (rejected["_row"], rejected["_code"]) == (778, "lookup_store")
