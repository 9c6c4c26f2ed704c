"""The web service in process: every protocol, validation, auth, hooks, rollouts, reload.

Requests go through httpx's ASGI transport to the real app over a real registry holding a
one-hot + logistic pipeline (ONNX and joblib artefacts). Answers are compared with the
registered model's own predictions.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from conftest import need_module
from zoo import build, data

need_module("orjson", "http")
need_module("prometheus_client", "http")
httpx = need_module("httpx", "dev")

from modelport.registry import Registry  # noqa: E402
from modelport.serve.http import create_app  # noqa: E402


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    import modelport

    home = tmp_path_factory.mktemp("http-registry")
    reg = Registry(f"sqlite:///{home / 'registry.db'}", str(home / "artefacts"))
    model, sample = build("pipeline")
    modelport.log_model(model, "churn", sample=sample, formats=["joblib", "onnx"],
                        alias="production", registry=reg)
    return reg


@pytest.fixture(scope="module")
def app(registry):
    return create_app(["churn@production"], registry=registry, poll_seconds=0)


def rows(n: int = 3) -> list[dict]:
    mixed = data()[0]
    out = []
    for rec in mixed.head(n).to_dict("records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in rec.items()})
    return out


def call(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def reference(registry, records) -> np.ndarray:
    import pandas as pd

    return registry.load("churn@production", format="joblib").predict_proba(
        pd.DataFrame(records))


def test_plain_json_answers_match_the_registered_model(app, registry):
    records = rows(5)
    r = call(app, "POST", "/predict/churn", json=records)
    assert r.status_code == 200
    assert r.headers["modelport-model-version"] == "1"
    preds = r.json()["predictions"]
    proba = np.array([[p["proba"]["0"], p["proba"]["1"]] for p in preds])
    np.testing.assert_allclose(proba, reference(registry, records), atol=1e-4)
    one = call(app, "POST", "/predict/churn", json=records[0]).json()["predictions"]
    assert one == preds[:1]


@pytest.mark.parametrize("shape", ["dataframe_split", "dataframe_records", "instances",
                                   "inputs", "inputs_columns", "csv", "application_csv"])
def test_mlflow_request_formats_give_the_same_labels(app, registry, shape):
    records = rows(4)
    names = list(records[0])
    expected = reference(registry, records).argmax(axis=1).tolist()
    kwargs: dict = {}
    if shape == "dataframe_split":
        kwargs["json"] = {"dataframe_split": {"columns": names,
                                              "data": [list(r.values()) for r in records]}}
    elif shape in ("dataframe_records", "instances", "inputs"):
        kwargs["json"] = {shape: records}
    elif shape == "inputs_columns":
        kwargs["json"] = {"inputs": {n: [r[n] for r in records] for n in names}}
    else:
        lines = [",".join(names)] + [",".join("" if r[n] is None else str(r[n]) for n in names)
                                     for r in records]
        kwargs["content"] = "\n".join(lines).encode()
        kwargs["headers"] = {"content-type": "text/csv" if shape == "csv"
                             else "application/csv"}
    r = call(app, "POST", "/invocations", **kwargs)
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": expected}


def test_mlflow_predict_proba_param_and_exactly_one_key(app, registry):
    records = rows(2)
    r = call(app, "POST", "/invocations",
             json={"dataframe_records": records, "params": {"predict_method": "predict_proba"}})
    np.testing.assert_allclose(r.json()["predictions"], reference(registry, records), atol=1e-4)
    both = call(app, "POST", "/invocations",
                json={"dataframe_records": records, "instances": records})
    assert both.status_code == 400
    for path in ("/ping", "/health", "/version"):
        assert call(app, "GET", path).status_code == 200


def test_kserve_v1_predict_and_metadata(app, registry):
    records = rows(3)
    r = call(app, "POST", "/v1/models/churn:predict", json={"instances": records})
    assert r.json() == {"predictions": reference(registry, records).argmax(axis=1).tolist()}
    assert call(app, "GET", "/v1/models/churn").json()["ready"] is True


def test_v2_columns_and_tensor_forms_agree(app, registry):
    records = rows(3)
    names = list(records[0])
    columns = {"parameters": {"content_type": "pd"}, "inputs": [
        {"name": n, "shape": [3, 1], "datatype": "BYTES" if n in ("plan", "contract") else "FP64",
         "data": [r[n] for r in records]} for n in names]}
    tensor = {"inputs": [{"name": "x", "shape": [3, len(names)], "datatype": "BYTES",
                          "data": [[r[n] for n in names] for r in records]}],
              "outputs": [{"name": "proba"}]}
    a = call(app, "POST", "/v2/models/churn/infer", json=columns).json()
    b = call(app, "POST", "/v2/models/churn/versions/1/infer", json=tensor).json()
    proba_a = next(o for o in a["outputs"] if o["name"] == "proba")
    assert [o["name"] for o in b["outputs"]] == ["proba"]
    assert proba_a["data"] == b["outputs"][0]["data"]
    np.testing.assert_allclose(np.reshape(proba_a["data"], (3, 2)), reference(registry, records),
                               atol=1e-4)
    assert call(app, "POST", "/v2/models/churn/versions/7/infer", json=tensor).status_code == 404


@pytest.mark.parametrize("change, field", [
    ({"bogus": 1}, "bogus"),
    ({"tenure": "soon"}, "tenure"),
    ({"tenure": [1, 2]}, "tenure"),
    ({"plan": {"a": 1}}, "plan"),
    ({"tenure": 10 ** 400}, "tenure"),
])
def test_bad_input_is_a_422_naming_the_field(app, change, field):
    record = {**rows(1)[0], **change}
    r = call(app, "POST", "/predict/churn", json=record)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


@pytest.mark.parametrize("change, field", [
    ({"plan": "platinum"}, "plan"),
    ({"charges": 1e9}, "charges"),
])
def test_values_outside_training_are_scored_and_flagged_by_default(registry, app, change,
                                                                   field):
    record = {**rows(1)[0], **change}
    r = call(app, "POST", "/predict/churn", json=record)
    assert r.status_code == 200, r.text
    assert field in r.headers["modelport-warnings"]
    with pytest.warns(UserWarning, match=field):
        expected = registry.load("churn@production", format="onnx").predict_proba(record)
    got = r.json()["predictions"][0]["proba"]
    np.testing.assert_allclose([got["0"], got["1"]], expected[0], atol=1e-6)
    metrics = call(app, "GET", "/metrics").text
    kind = "unseen_category" if field == "plan" else "out_of_range"
    assert (f'modelport_warnings_total{{field="{field}",kind="{kind}",model="churn",'
            f'surface="http"}}') in metrics


@pytest.mark.parametrize("option", [{"strict": True}, {"unseen_categories": "reject",
                                                        "out_of_range": "reject"}])
def test_strict_policy_refuses_values_outside_training_with_422(registry, option):
    app = create_app(["churn@production"], registry=registry, poll_seconds=0, **option)
    for change, field in (({"plan": "platinum"}, "plan"), ({"charges": 1e9}, "charges")):
        r = call(app, "POST", "/predict/churn", json={**rows(1)[0], **change})
        assert r.status_code == 422, r.text
        assert r.json()["field"] == field


def test_missing_column_unknown_model_bad_json_and_size_limit(registry, app):
    record = rows(1)[0]
    record.pop("plan")
    r = call(app, "POST", "/predict/churn", json=record)
    assert (r.status_code, r.json()["field"]) == (422, "plan")
    assert call(app, "POST", "/predict/fraud", json=record).status_code == 404
    assert call(app, "POST", "/predict/churn", content=b"{nope").status_code == 400
    small = create_app(["churn@production"], registry=registry, poll_seconds=0,
                       max_body_bytes=200)
    assert call(small, "POST", "/predict/churn", json=rows(10)).status_code == 413


def test_warn_spelling_still_flags(registry):
    app = create_app(["churn@production"], registry=registry, poll_seconds=0,
                     unseen_categories="warn", out_of_range="warn")
    r = call(app, "POST", "/predict/churn", json={**rows(1)[0], "plan": "platinum"})
    assert r.status_code == 200
    assert "platinum" in r.headers["modelport-warnings"]


def test_single_row_path_builds_no_dataframe(app, monkeypatch):
    import pandas as pd

    def refuse(*args, **kwargs):
        raise AssertionError("a DataFrame was built on the single-row path")

    monkeypatch.setattr(pd.DataFrame, "__init__", refuse)
    r = call(app, "POST", "/predict/churn", json=rows(1)[0])
    assert r.status_code == 200, r.text


def test_bearer_token_is_required_except_on_probes(registry, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    app = create_app(["churn@production"], registry=registry, poll_seconds=0,
                     token_file=str(token))
    refused = call(app, "POST", "/predict/churn", json=rows(1)[0])
    assert refused.status_code == 401
    assert "modelport-model-version" not in refused.headers  # nothing told without the token
    wrong = {"authorization": "Bearer s3cre"}
    assert call(app, "POST", "/predict/churn", json=rows(1)[0], headers=wrong).status_code == 401
    ok = {"authorization": "Bearer s3cret"}
    assert call(app, "POST", "/predict/churn", json=rows(1)[0], headers=ok).status_code == 200
    assert call(app, "GET", "/v2/health/live").status_code == 200


def batch_counts(app) -> tuple[float, float]:
    """(predictor calls, requests scored) so far, from the batch-size histogram."""
    samples = {s.name: s.value for s in app.server.metrics.batch_size.collect()[0].samples
               if s.name.endswith(("_count", "_sum"))}
    return (samples.get("modelport_batch_requests_count", 0),
            samples.get("modelport_batch_requests_sum", 0))


def test_concurrent_requests_share_predictor_calls(app):
    calls_before, requests_before = batch_counts(app)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(*[client.post("/predict/churn", json=rows(1)[0])
                                          for _ in range(40)])

    answers = asyncio.run(go())
    assert all(a.status_code == 200 for a in answers)
    calls, requests = batch_counts(app)
    assert requests - requests_before == 40
    assert calls - calls_before < 40


def second_version(registry, alias: str):
    """A genuinely different model (fitted on half the rows) as a new version."""
    from sklearn.base import clone

    import modelport

    model, sample = build("pipeline")
    mixed, _, y, _ = data()
    other = clone(model).set_params(model__C=0.05).fit(mixed.iloc[:300], y[:300])
    return modelport.log_model(other, "churn", sample=sample, formats=["joblib", "onnx"],
                               alias=alias, registry=registry)


def test_canary_shadow_prediction_log_and_reload(tmp_path):
    import modelport

    reg = Registry(f"sqlite:///{tmp_path / 'r.db'}", str(tmp_path / "a"))
    model, sample = build("pipeline")
    modelport.log_model(model, "churn", sample=sample, formats=["joblib", "onnx"],
                        alias="production", registry=reg)
    v2 = second_version(reg, "challenger")
    logged: list[dict] = []
    app = create_app(["churn@production"], registry=reg, poll_seconds=0,
                     canary=["churn@challenger:50"], shadow=["churn@challenger"],
                     prediction_log=lambda **record: logged.append(record))

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers = [await client.post("/predict/churn", json=rows(1)[0]) for _ in range(40)]
        await app.server.stop()  # what shutdown does: shadow calls finish, the log drains
        return [a.headers["modelport-model-version"] for a in answers]

    versions = asyncio.run(go())
    assert {"1", "2"} <= set(versions)
    roles = {r["role"] for r in logged}
    assert roles == {"champion", "canary", "shadow"}
    assert {"model", "version", "inputs", "outputs", "request_id", "latency_ms"} <= set(logged[0])
    metrics = call(app, "GET", "/metrics").text
    assert 'role="shadow"' in metrics and 'role="canary"' in metrics

    # a version that cannot load leaves the old one serving, and health says why
    plain = create_app(["churn@production"], registry=reg, poll_seconds=0)
    v3 = second_version(reg, "staging")
    onnx = v3.artefact("onnx")
    reg.store.path(onnx.sha256).write_bytes(b"not a model")
    reg.set_alias("churn", v3.version, "production")
    plain.server.poll()
    r = call(plain, "GET", "/v2/health/ready").json()
    assert r["models"][0]["champion"]["version"] == 1
    assert "3" in str(r["reload_errors"]["churn"])
    reg.set_alias("churn", v2.version, "production")
    plain.server.poll()
    r = call(plain, "POST", "/predict/churn", json=rows(1)[0])
    assert r.headers["modelport-model-version"] == "2"


def test_lookup_reads_the_stored_score_and_refresh_rescores_current_features(
        registry, tmp_path):
    import sqlalchemy as sa

    db = tmp_path / "scores.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    meta = sa.MetaData()
    scores = sa.Table("churn_scores", meta, sa.Column("customer_id", sa.Integer, primary_key=True),
                      sa.Column("model", sa.String), sa.Column("model_version", sa.Integer),
                      sa.Column("label", sa.Integer), sa.Column("score", sa.Float))
    customers = sa.Table("customers", meta,
                         sa.Column("customer_id", sa.Integer, primary_key=True),
                         *[sa.Column(n, sa.String if n in ("plan", "contract") else sa.Float)
                           for n in rows(1)[0]])
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(scores.insert().values(customer_id=42, model="churn", model_version=1,
                                            label=1, score=0.75))
        conn.execute(customers.insert().values(customer_id=42, **rows(1)[0]))
    engine.dispose()
    bare = create_app(["churn@production"], registry=registry, poll_seconds=0)
    assert call(bare, "GET", "/lookup/churn/42").status_code == 501
    assert call(bare, "GET", "/lookup/churn/42?refresh=true").status_code == 501
    app = create_app(["churn@production"], registry=registry, poll_seconds=0,
                     lookup_store=f"sqlite:///{db}#churn_scores",
                     feature_table=f"sqlite:///{db}#customers")
    stored = call(app, "GET", "/lookup/churn/42")
    assert stored.status_code == 200 and stored.json()["score"] == 0.75
    assert call(app, "GET", "/lookup/churn/7").status_code == 404
    fresh = call(app, "GET", "/lookup/churn/42?refresh=true")
    assert fresh.status_code == 200, fresh.text
    np.testing.assert_allclose(list(fresh.json()["proba"].values()),
                               reference(registry, rows(1))[0], atol=1e-4)
    assert call(app, "GET", "/lookup/churn/7?refresh=true").status_code == 404
    assert call(app, "GET", "/lookup/fraud/42").status_code == 404


def test_openapi_document_has_signature_schemas(app):
    doc = call(app, "GET", "/openapi.json").json()
    record = doc["components"]["schemas"]["churn_record"]
    assert record["properties"]["plan"]["enum"][:3] == ["basic", "premium", "standard"]
    assert "/v2/models/churn/infer" in doc["paths"]
    assert call(app, "GET", "/docs").status_code == 200


def test_access_log_has_one_json_line_per_request(app, caplog):
    import json
    import logging

    caplog.set_level(logging.INFO, logger="modelport.access")
    r = call(app, "POST", "/predict/churn", json=rows(1)[0], headers={"x-request-id": "abc-1"})
    assert r.headers["x-request-id"] == "abc-1"
    app.flush()
    lines = [json.loads(line) for rec in caplog.records if rec.name == "modelport.access"
             for line in rec.getMessage().splitlines()]
    mine = [entry for entry in lines if entry["request_id"] == "abc-1"]
    assert len(mine) == 1
    assert mine[0]["status"] == 200 and mine[0]["model"] == "churn" and mine[0]["version"] == 1
