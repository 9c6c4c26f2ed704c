"""MOJO-backed versions serve like any other: ``modelport import`` on the command line, then
``modelport predict`` (batch), ``modelport serve`` (HTTP) and SQL-mode database triggers
(PostgreSQL, MariaDB, SQLite) all give h2o-genmodel's scores, to 1e-9."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.formats import mojo
from modelport.serve import trigger
from modelport.serve.trigger.db import connect
from test_http_server import MODELPORT, server  # noqa: F401 - server is a fixture
from test_mojo import FIXTURES, JAR, GenmodelReference, assert_exact, need_java, sample
from test_trigger_worker import db_url  # noqa: F401 - db_url is a fixture


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([MODELPORT, *args], capture_output=True, text=True, timeout=timeout)


def _import(tmp_path, name: str, model: str, *extra: str) -> dict:
    """``modelport import`` of fixture ``name`` with h2o-genmodel.jar beside it."""
    need_java()
    shutil.copyfile(FIXTURES / f"{name}.zip", tmp_path / f"{name}.zip")
    shutil.copyfile(JAR, tmp_path / mojo.GENMODEL_JAR)
    done = cli("import", str(tmp_path / f"{name}.zip"), "--name", model, "--format", "mojo",
               *extra, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_cli_import_then_batch_predict_gives_genmodels_scores(tmp_path):
    sample().to_parquet(tmp_path / "sample.parquet", index=False)
    version = _import(tmp_path, "gbm_binomial", "churn", "--sample",
                      str(tmp_path / "sample.parquet"), "--alias", "production")
    assert version["native_format"] == "mojo"
    assert version["formats"]["mojo"]["parity"]["reference"] == "h2o-genmodel"
    assert version["formats"]["compiled"]["status"] == "accepted"
    assert version["params"]["h2o_distribution"] == "bernoulli"
    frame = sample().assign(customer_id=np.arange(len(sample())))
    frame.to_csv(tmp_path / "customers.csv", index=False)
    for fmt in ("mojo", "compiled"):
        out = tmp_path / f"scores-{fmt}.parquet"
        done = cli("predict", "churn@production", "--input", str(tmp_path / "customers.csv"),
                   "--output", str(out), "--id", "customer_id", "--workers", "1",
                   "--format", fmt)
        assert done.returncode == 0, done.stderr
        scores = pd.read_parquet(out).sort_values("customer_id")
        ref = GenmodelReference("gbm_binomial").run(sample())
        assert_exact(scores["proba_1"].to_numpy(), ref["proba"][:, 1], f"predict --format {fmt}")
        assert list(scores["label"]) == list(ref["label"])


def test_serve_answers_with_genmodels_scores(tmp_path, server):  # noqa: F811
    _import(tmp_path, "drf_multinomial", "churn", "--sample", str(FIXTURES / "sample.csv"),
            "--alias", "production")
    srv = server("churn@production")
    import httpx

    # rows the service validates as known: no unseen levels, numbers within the sample
    rows = sample().drop(columns=["churned", "plan"])
    rows = rows[~rows["city"].eq("city-unseen") & ~rows["payment_method"].eq("barter")].head(25)
    records = [{k: (None if v != v else v) for k, v in r.items()}
               for r in rows.to_dict(orient="records")]
    reply = httpx.post(f"{srv.url}/predict/churn", json=records, timeout=30)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    got = np.array([[p["proba"][c] for c in ("basic", "premium", "standard", "unlimited")]
                    for p in body["predictions"]])
    ref = GenmodelReference("drf_multinomial").run(rows)
    assert_exact(got, ref["proba"], "served probabilities")
    assert [p["label"] for p in body["predictions"]] == list(ref["label"])
    models = httpx.get(f"{srv.url}/models", timeout=10).json()
    assert "churn" in json.dumps(models)


def _customers(url: str, signature, frame: pd.DataFrame) -> None:
    with connect(url) as db:
        text = "VARCHAR(64)" if db.dialect == "mysql" else "TEXT"
        real = "DOUBLE" if db.dialect == "mysql" else "DOUBLE PRECISION"
        cols = ", ".join(f"{c.name} {real if c.kind == 'numeric' else text}"
                         for c in signature.inputs)
        db.execute(f"CREATE TABLE customers (customer_id BIGINT PRIMARY KEY, {cols})")
        names = ["customer_id", *signature.names]
        rows = [(i, *[None if (isinstance(v, float) and v != v) else v
                      for v in r[signature.names].tolist()])
                for i, (_, r) in enumerate(frame.iterrows())]
        db.begin()
        cur = db.conn.cursor()
        cur.executemany(f"INSERT INTO customers ({', '.join(names)}) VALUES "
                        f"({db.params(len(names))})", rows)
        cur.close()
        db.commit()


@pytest.mark.services
@pytest.mark.parametrize("name", ["gbm_binomial", "drf_multinomial", "glm_regression"])
def test_sql_mode_trigger_scores_rows_in_the_database_as_genmodel_does(db_url, name,  # noqa: F811
                                                                       tmp_path):
    need_java()
    shutil.copyfile(FIXTURES / f"{name}.zip", tmp_path / f"{name}.zip")
    shutil.copyfile(JAR, tmp_path / mojo.GENMODEL_JAR)
    frame = sample().head(150)
    version = modelport.import_model(tmp_path / f"{name}.zip", "m", sample=frame,
                                     formats=["compiled"])
    signature = mojo.inspect((FIXTURES / f"{name}.zip").read_bytes())
    _customers(db_url, signature, frame.head(100))  # scored by the install's backfill
    inst = trigger.install("m", db_url, table="customers", key="customer_id", output="score",
                           mode="sql")
    assert inst.version == version.version
    more = frame.iloc[100:]
    with connect(db_url) as db:
        names = ["customer_id", *signature.names]
        db.begin()
        cur = db.conn.cursor()
        cur.executemany(f"INSERT INTO customers ({', '.join(names)}) VALUES "
                        f"({db.params(len(names))})",
                        [(100 + i, *[None if (isinstance(v, float) and v != v) else v
                                     for v in r[signature.names].tolist()])
                         for i, (_, r) in enumerate(more.iterrows())])
        cur.close()
        db.commit()
        got = dict(db.execute("SELECT customer_id, score FROM customers"))
        db.commit()
    ordered = [got[i] for i in range(len(frame))]
    ref = GenmodelReference(name).run(frame)
    if "value" in ref:
        assert_exact(np.asarray(ordered, dtype=float), ref["value"], f"{name} in SQL")
    elif len(signature.classes) == 2:
        assert_exact(np.asarray(ordered, dtype=float), ref["proba"][:, 1], f"{name} in SQL")
    else:
        assert [str(v) for v in ordered] == [str(v) for v in ref["label"]]
    trigger.uninstall(db_url)


def test_export_writes_a_mojo_as_sql_and_code(tmp_path):
    need_java()
    shutil.copyfile(FIXTURES / "glm_multinomial.zip", tmp_path / "glm.zip")
    modelport.import_model(tmp_path / "glm.zip", "plans", sample=sample().head(40),
                           formats=["compiled"])
    for fmt, produced in (("sql", "plans_score.expr.sql"), ("python", "plans.py")):
        done = cli("export", "plans", "--format", fmt, "--out", str(tmp_path / fmt))
        assert done.returncode == 0, done.stderr
        assert (tmp_path / fmt / produced).is_file(), list((tmp_path / fmt).iterdir())
    done = cli("export", "plans", "--format", "onnx", "--out", str(tmp_path / "onnx"))
    assert done.returncode == 2 and "onnx" in done.stderr
