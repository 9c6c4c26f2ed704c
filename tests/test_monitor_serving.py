"""Every serving mode logs what it scored with ``--log``: the web service (answers and
refusals, by request id), batch scoring (by the id column, rejects as errors), database
triggers (by the row key) and streams (by the event id, dead letters as errors)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import numpy as np
import pytest

import modelport
from modelport.monitor.log import read_predictions
from modelport.registry import Registry

from conftest import need_module, port_open, unavailable

NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls",
           "data_usage_gb", "age"]
CATEGORICAL = ["plan", "contract", "payment_method", "region"]


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    """churn@production: a one-hot + logistic pipeline (joblib), its registry and data."""
    from sklearn.linear_model import LogisticRegression

    from modelport.datasets import churn as dataset
    from modelport.train.preprocess import build_pipeline

    home = tmp_path_factory.mktemp("monitor-serving")
    registry = Registry(f"sqlite:///{home / 'registry.db'}", str(home / "artefacts"))
    data = dataset.generate(1500, seed=3)
    X = data[NUMERIC + CATEGORICAL]
    model = build_pipeline(LogisticRegression(max_iter=300), X, NUMERIC, CATEGORICAL)
    model.fit(X, data["churned"])
    modelport.log_model(model, "churn", sample=X.head(500), formats=["joblib"],
                        alias="production", registry=registry)
    return registry, data, model


def records(data, n: int, start: int = 0) -> list[dict]:
    out = []
    for rec in data[NUMERIC + CATEGORICAL].iloc[start:start + n].to_dict("records"):
        out.append({k: (None if isinstance(v, float) and np.isnan(v) else v)
                    for k, v in rec.items()})
    return out


def test_the_web_service_logs_answers_and_refusals_by_request_id(churn, tmp_path):
    need_module("orjson", "http")
    need_module("prometheus_client", "http")
    httpx = need_module("httpx", "dev")
    from modelport.serve.http import create_app

    registry, data, model = churn
    url = f"sqlite:///{tmp_path / 'log.db'}#predictions"
    app = create_app(["churn@production"], registry=registry, poll_seconds=0, log_url=url)
    one, three = records(data, 1), records(data, 3, start=10)
    bad = dict(one[0], age="forty")  # not a number: 422
    odd = dict(one[0], plan="platinum")  # a category the model never saw: scored, flagged

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers = [await client.post("/predict/churn", json=one,
                                         headers={"x-request-id": "c-100"}),
                       await client.post("/invocations", json={"dataframe_records": three},
                                         headers={"x-request-id": "batch-7"}),
                       await client.post("/predict/churn", json=[bad],
                                         headers={"x-request-id": "c-bad"}),
                       await client.post("/predict/churn", json=[odd],
                                         headers={"x-request-id": "c-odd"})]
            metrics = await client.get("/metrics")
            return answers, metrics

    answers, metrics = asyncio.run(go())
    assert [a.status_code for a in answers] == [200, 200, 422, 200]
    assert "modelport_prediction_log_dropped_total 0.0" in metrics.text
    app.server.prediction_log.close()
    rows = read_predictions(url, "churn")
    assert rows["id"].tolist() == ["c-100", "batch-7/0", "batch-7/1", "batch-7/2", "c-bad",
                                   "c-odd"]
    assert set(rows["source"]) == {"http"} and set(rows["role"]) == {"champion"}
    import pandas as pd

    expected = model.predict_proba(pd.DataFrame(one + three))[:, 1]
    np.testing.assert_allclose(rows["score"].iloc[:4], expected, atol=1e-9)
    assert rows["inputs"].iloc[1] == three[0]
    assert (rows["latency_ms"] > 0).all()
    assert rows["error"].iloc[:4].isna().all()
    assert rows["error"].iloc[4].startswith("422: ") and "forty" in rows["error"].iloc[4]
    assert rows["warnings"].iloc[:4].isna().all()
    assert rows["warnings"].iloc[5] == "plan: unseen category"
    from modelport.monitor.analysis import analyse

    window = analyse("churn@production", url, window="1d", registry=registry)["windows"][-1]
    assert (window["flagged"], window["flagged_by"]) == (1, {"plan: unseen category": 1})


def test_serve_refuses_a_bad_log_url_once_with_exit_code_2(churn):
    proc = subprocess.run([sys.executable, "-m", "modelport", "serve", "churn", "--log",
                           "logs.db"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MODELPORT_REGISTRY": str(churn[0].url)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "--log 'logs.db' is not a database URL" in \
        proc.stderr


def test_batch_scoring_logs_rows_by_id_and_rejects_as_errors(churn, tmp_path):
    from modelport.serve.batch import predict

    registry, data, _ = churn
    frame = data[["customer_id", *NUMERIC, *CATEGORICAL]].head(1000).copy()
    frame["age"] = frame["age"].astype(object)
    frame.loc[5, "age"] = "forty"  # a rejected row
    frame.to_csv(tmp_path / "in.csv", index=False)
    url = f"sqlite:///{tmp_path / 'log.db'}#predictions"

    def score(log_url, sample):
        return predict("churn@production", str(tmp_path / "in.csv"),
                       str(tmp_path / "out.parquet"), id="customer_id", workers=1,
                       chunk_rows=300, on_error="reject", registry=registry, log_url=log_url,
                       log_sample=sample)

    assert score(url, 1.0).rejects == 1
    rows = read_predictions(url, "churn")
    errors = rows[rows["error"].notna()]
    assert errors["id"].tolist() == [str(frame.loc[5, "customer_id"])]
    assert "'age' must be numeric" in errors["error"].iloc[0]
    scored = rows[rows["error"].isna()]
    assert len(scored) == 999 and set(scored["role"]) == {"batch"}
    import pandas as pd

    out = pd.read_parquet(tmp_path / "out.parquet").set_index("customer_id")["score"]
    logged = scored.set_index(scored["id"].astype(int))["score"]
    np.testing.assert_allclose(logged, out.loc[logged.index], atol=1e-12)
    # the rows the warnings file lists carry their flags in the log, and only they
    import json

    listed = {json.loads(line)["customer_id"]: json.loads(line)["_warnings"]
              for line in (tmp_path / "out.warnings.jsonl").read_text().splitlines()}
    assert listed
    flagged = scored[scored["warnings"].notna()]
    assert set(flagged["id"].astype(int)) == set(listed)
    some = next(iter(listed))
    fields = {w.split("'")[1] for w in listed[some]}
    text = flagged.set_index(flagged["id"].astype(int))["warnings"].loc[some]
    assert {part.split(":")[0] for part in text.split("; ")} == fields

    sampled = f"sqlite:///{tmp_path / 'log.db'}#sampled"
    score(sampled, 0.5)
    rows = read_predictions(sampled, "churn")
    assert 400 <= len(rows) <= 600  # half of the 1,000 rows, by chance
    assert set(rows["sample_rate"]) == {0.5}


def test_the_trigger_worker_logs_scored_rows_by_key(churn, tmp_path):
    from modelport.serve import trigger
    from modelport.serve.trigger.db import connect

    registry, data, _ = churn
    db = f"sqlite:///{tmp_path / 'app.db'}"
    with connect(db) as conn:
        cols = ", ".join([f"{c} REAL" for c in NUMERIC] + [f"{c} TEXT" for c in CATEGORICAL])
        conn.execute(f"CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, {cols})")
        conn.commit()
    trigger.install("churn@production", db, table="customers", key="customer_id",
                    output="churn", registry=registry)
    rows = data[["customer_id", *NUMERIC, *CATEGORICAL]].head(40)
    with connect(db) as conn:
        names = ", ".join(rows.columns)
        conn.conn.executemany(
            f"INSERT INTO customers ({names}) VALUES ({conn.params(len(rows.columns))})",
            [tuple(None if isinstance(v, float) and v != v else
                   (v.item() if hasattr(v, "item") else v) for v in r)
             for r in rows.itertuples(index=False)])
        conn.commit()
    url = f"sqlite:///{tmp_path / 'log.db'}#predictions"
    stats = trigger.run(db, once=True, registry=registry, log_url=url)
    assert stats.scored == 40
    logged = read_predictions(url, "churn")
    with connect(db) as conn:
        stored = dict(conn.execute("SELECT customer_id, churn FROM customers"))
        conn.commit()
    assert sorted(logged["id"].astype(int)) == sorted(stored)
    for key, score in zip(logged["id"], logged["score"], strict=True):
        assert score == pytest.approx(stored[int(key)], abs=1e-12)
    assert set(logged["source"]) == {"trigger"} and set(logged["version"]) == {1}


def test_a_stream_logs_events_by_id_and_dead_letters_as_errors(churn):
    redis = need_module("redis", "brokers")
    orjson = need_module("orjson", "brokers")
    if not port_open("127.0.0.1", 6379):
        unavailable("Redis is not running on 127.0.0.1:6379")
    import tempfile
    import uuid

    from modelport.serve.stream import run

    registry, data, _ = churn
    r = redis.Redis()
    t = uuid.uuid4().hex[:8]
    names = [f"in_{t}", f"out_{t}", f"dead_{t}"]
    urls = [f"redis://127.0.0.1:6379/0?stream={n}" for n in names]
    url = f"sqlite:///{tempfile.mkdtemp()}/log.db#predictions"
    events = [{"id": f"cust-{i}", **rec} for i, rec in enumerate(records(data, 20))]
    events[3]["plan"] = "platinum"  # scored, flagged

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(run("churn@production", urls[0], urls[1],
                                       dead_letter_url=urls[2], stop=stop, registry=registry,
                                       log_url=url, poll_seconds=0))
        for e in events:
            r.xadd(names[0], {"data": orjson.dumps(e)})
        r.xadd(names[0], {"data": b"{broken"})
        while r.xlen(names[1]) < 20 or r.xlen(names[2]) < 1:
            await asyncio.sleep(0.05)
        stop.set()
        return await task

    try:
        stats = asyncio.run(scenario())
    finally:
        r.delete(*names)
    assert stats.scored == 20 and stats.dead_lettered == 1
    rows = read_predictions(url, "churn")
    scored = rows[rows["error"].isna()]
    assert scored["id"].tolist() == [e["id"] for e in events]
    assert scored["request_id"].str.match(r"^\d+-\d+$").all()  # the stream's entry ids
    assert (scored["latency_ms"] >= 0).all() and set(scored["source"]) == {"stream"}
    dead = rows[rows["error"].notna()]
    assert len(dead) == 1 and dead["error"].iloc[0].startswith("not json")
    assert scored.set_index("id")["warnings"].get("cust-3") == "plan: unseen category"
