"""The pieces of a monitoring pass: reference statistics kept with each version (old
registries included), the drift statistics against SciPy's, change points in a stream,
feedback from SQL and from a stream, and alert rules."""

from __future__ import annotations

import sqlite3
import uuid

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.errors import UserError
from modelport.monitor import drift as D
from modelport.monitor import reference as R
from modelport.registry import Registry

from conftest import need_module, port_open, unavailable


def register(n: int = 400, seed: int = 0):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"tenure": rng.exponential(20, n).round(1),
                      "calls": rng.poisson(2, n).astype(float),
                      "plan": rng.choice(["basic", "pro", "max"], n, p=[0.5, 0.3, 0.2])})
    y = (X.tenure < 15).astype(int)
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    model = make_pipeline(make_column_transformer((OneHotEncoder(), ["plan"]),
                                                  remainder="passthrough"),
                          LogisticRegression(max_iter=500)).fit(X, y)
    return modelport.log_model(model, "churn", sample=X, formats=["joblib"],
                               metrics={"roc_auc": 0.9}), X, model


# -- statistics against SciPy -----------------------------------------------------------

def test_ks_matches_scipy_exactly_for_discrete_and_closely_for_continuous_values():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(1)
    calls_ref, calls_now = rng.poisson(2, 1000).astype(float), rng.poisson(2.6, 3000)
    d, p = D.ks(R.numeric(calls_ref), calls_now)
    exact = ks_2samp(calls_ref, calls_now)
    assert d == pytest.approx(exact.statistic, abs=1e-12)
    assert p == pytest.approx(exact.pvalue, rel=0.5, abs=1e-12)
    tenure_ref, tenure_now = rng.normal(0, 1, 1000), rng.normal(0.3, 1, 3000)
    d, _ = D.ks(R.numeric(tenure_ref), tenure_now)  # 201 stored quantiles, not the sample
    assert d == pytest.approx(ks_2samp(tenure_ref, tenure_now).statistic, abs=0.01)


def test_chi_square_and_psi():
    from scipy.stats import chi2_contingency

    ref = R.categorical(["a"] * 500 + ["b"] * 300 + ["c"] * 200)
    now = ["a"] * 300 + ["b"] * 300 + ["c"] * 350 + ["new"] * 50 + [None] * 10
    cats, r, c = D.categorical_counts(ref, now)
    assert cats == ["a", "b", "c", "(other)", "(missing)"]
    assert c.tolist() == [300, 300, 350, 50, 10]
    stat, p = D.chi2(r, c)
    table = np.array([[500, 300, 200, 0, 0], [300, 300, 350, 50, 10]])
    expected = chi2_contingency(table, correction=False)
    assert stat == pytest.approx(expected[0]) and p == pytest.approx(expected[1])
    rs, cs = (r + 0.5) / (r + 0.5).sum(), (c + 0.5) / (c + 0.5).sum()
    assert D.psi(r, c) == pytest.approx(float(np.sum((cs - rs) * np.log(cs / rs))))
    same = R.numeric(np.random.default_rng(2).normal(size=1000))
    tests = D.test_feature("x", same, np.random.default_rng(3).normal(size=2000),
                           D.THRESHOLDS)
    assert [t["drifted"] for t in tests] == [False, False] and tests[0]["value"] < 0.05
    small = D.test_feature("x", same, np.random.default_rng(3).normal(3, 1, 20), D.THRESHOLDS)
    assert [t["drifted"] for t in small] == [False, False] and "not judged" in small[0]["note"]


def test_change_points_find_the_shift_in_a_score_stream():
    need_module("river", "online")
    rng = np.random.default_rng(4)
    stream = np.concatenate([rng.normal(0.25, 0.05, 1500), rng.normal(0.45, 0.05, 1500)])
    for detector in ("adwin", "page-hinkley"):
        found = D.change_points(stream, detector)
        assert found and 1500 <= found[0] < 1800, (detector, found[:3])
    # KSWIN tests a sliding window at every value, so it also fires now and then by chance
    assert any(1500 <= i < 1700 for i in D.change_points(stream, "kswin"))
    assert D.change_points(rng.normal(0.25, 0.05, 3000), "adwin") == []
    with pytest.raises(UserError, match="--detector"):
        D.change_points(stream, "cusum")


# -- reference statistics in the registry ------------------------------------------------

def test_reference_statistics_are_kept_at_registration(tmp_path):
    version, X, model = register()
    registry = Registry()
    stats = R.load(registry, version)
    assert stats["rows"] == 400 and set(stats["features"]) == {"tenure", "calls", "plan"}
    assert stats["features"]["plan"]["frequencies"] == X["plan"].value_counts().to_dict()
    assert "values" in stats["features"]["calls"] and "quantiles" in stats["features"]["tenure"]
    score = stats["prediction"]["score"]
    assert score["mean"] == pytest.approx(model.predict_proba(X)[:, 1].mean())
    assert sum(stats["prediction"]["label"]["frequencies"].values()) == 400


def test_an_old_registry_without_statistics_gets_them_from_the_stored_sample(tmp_path):
    version, X, _ = register()
    stored = R.load(Registry(), version)
    db = tmp_path / "mp-home" / "registry.db"
    with sqlite3.connect(db) as conn:  # as a registry from before monitoring was
        conn.execute("DROP TABLE mp_references")
    registry = Registry()  # opening it creates the missing table
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM mp_references").fetchone()[0] == 0
    assert R.load(registry, version) == stored
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM mp_references").fetchone()[0] == 1


def test_statistics_of_a_deleted_model_are_not_reused_for_a_new_one(tmp_path):
    first, _, _ = register(seed=0)
    registry = Registry()
    registry.delete("churn", force=True)
    second, X2, _ = register(n=300, seed=9)
    assert second.version == first.version == 1
    assert R.load(registry, second)["rows"] == 300


# -- feedback ----------------------------------------------------------------------------

def test_feedback_from_a_sql_table_upserts_by_id(tmp_path):
    from modelport.monitor.feedback import ingest, read_feedback

    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE outcomes (customer INTEGER, left_us REAL)")
        conn.executemany("INSERT INTO outcomes VALUES (?, ?)",
                         [(1, 1.0), (2, 0.0), (3, None), (None, 1.0)])
    log = f"sqlite:///{tmp_path / 'log.db'}#predictions"
    result = ingest("churn", f"sqlite:///{db}#outcomes", log_url=log, id="customer",
                    label="left_us")
    assert (result.rows, result.skipped) == (2, 2)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE outcomes SET left_us = 1 WHERE customer = 2")
    ingest("churn", f"sqlite:///{db}#outcomes", log_url=log, id="customer", label="left_us")
    stored = read_feedback(log, "churn").set_index("id")["label"].to_dict()
    assert stored == {"1": "1", "2": "1"}
    with pytest.raises(UserError, match="no column"):
        ingest("churn", f"sqlite:///{db}#outcomes", log_url=log, id="customer_id",
               label="left_us")


def test_feedback_from_a_stream_is_acknowledged_once_stored(tmp_path):
    redis = need_module("redis", "brokers")
    orjson = need_module("orjson", "brokers")
    if not port_open("127.0.0.1", 6379):
        unavailable("Redis is not running on 127.0.0.1:6379")
    from modelport.monitor.feedback import ingest, read_feedback

    r = redis.Redis()
    name = f"labels_{uuid.uuid4().hex[:8]}"
    try:
        for i in range(50):
            r.xadd(name, {"data": orjson.dumps({"customer_id": i, "churned": i % 2})})
        r.xadd(name, {"data": b"not json"})
        log = f"sqlite:///{tmp_path / 'log.db'}#predictions"
        result = ingest("churn", f"redis://127.0.0.1:6379/0?stream={name}", log_url=log,
                        id="customer_id", label="churned", idle_seconds=0.5)
        assert (result.rows, result.skipped) == (50, 1)
        assert r.xpending(name, "modelport-feedback")["pending"] == 0
    finally:
        r.delete(name)
    stored = read_feedback(log, "churn")
    assert sorted(stored["id"].astype(int)) == list(range(50))


# -- a monitoring pass and its rules -----------------------------------------------------

def test_monitor_over_a_log_with_labels_and_rules(tmp_path):
    from modelport.monitor.alerts import evaluate, parse_rule
    from modelport.monitor.analysis import analyse
    from modelport.monitor.feedback import record
    from modelport.monitor.log import PredictionLogger

    version, X, model = register(n=1000)
    predictor = Registry().load(version)
    url = f"sqlite:///{tmp_path / 'log.db'}#predictions"
    plog = PredictionLogger(url, flush_seconds=0.05)
    rng = np.random.default_rng(7)
    later = X.assign(tenure=X.tenure * 0.4)  # newer customers: tenure shifts, plan does not
    for day, frame in ((1, X), (2, later)):
        out = predictor.run(frame)
        plog.log("churn", 1, {c: frame[c].to_numpy() for c in frame}, out,
                 ids=[f"{day}-{i}" for i in range(len(frame))], latency_ms=2.0,
                 at=pd.Timestamp(f"2025-01-0{day} 10:00", tz="UTC").to_pydatetime())
        truth = (frame.tenure < 15).astype(int).to_numpy()
        flip = rng.random(len(frame)) < (0.05 if day == 1 else 0.3)
        record(url, "churn", [f"{day}-{i}" for i in range(len(frame))],
               np.where(flip, 1 - truth, truth).tolist())
    plog.close()
    report = analyse("churn", url, since="2025-01-01", until="2025-01-03", detector=None)
    assert [w["rows"] for w in report["windows"]] == [1000, 1000]
    assert report["drift"]["drifted_features"] == ["tenure"]
    assert report["windows"][0]["drifted_features"] == []
    assert report["performance"]["window"]["start"].startswith("2025-01-02")
    assert report["performance"]["change"]["roc_auc"]["worse"]
    assert report["windows"][1]["latency_ms"] == {"p50": 2.0, "p95": 2.0, "p99": 2.0}

    rules = [parse_rule(t) for t in ("psi > 0.2", "ks > 0.1 on plan", "auc drop > 0.1",
                                     "accuracy < 0.5", "rows < 100", "latency_p99 > 1",
                                     "prediction psi > 0.2", "dropped > 0")]
    fired = {r["rule"]: r["fired"] for r in evaluate(rules, report)}
    assert fired == {"psi > 0.2": True, "ks > 0.1 on plan": False, "auc drop > 0.1": True,
                     "accuracy < 0.5": False, "rows < 100": False, "latency_p99 > 1": True,
                     "prediction psi > 0.2": True, "dropped > 0": False}
    with pytest.raises(UserError, match="no feature 'plna'"):
        evaluate([parse_rule("psi > 0.2 on plna")], report)
    looser = analyse("churn", url, since="2025-01-01", until="2025-01-03", detector=None,
                     thresholds={"psi": 50.0, "ks": 0.99, "chi2_p": 0.0})
    assert looser["drift"]["drifted_features"] == []


@pytest.mark.parametrize("rule, message", [
    ("psi >> 0.2", "write STATISTIC OP NUMBER"),
    ("wasserstein > 0.1", "unknown statistic"),
    ("psi drop > 0.1", "drop and rise compare a metric"),
    ("auc > 0.8 on tenure", "go with a drift statistic"),
])
def test_bad_rules_say_how_to_write_one(rule, message):
    from modelport.monitor.alerts import parse_rule

    with pytest.raises(UserError, match=message):
        parse_rule(rule)


def test_rules_file_mistakes_are_user_errors(tmp_path):
    from modelport.monitor.alerts import load_rules_file

    path = tmp_path / "rules.yaml"
    path.write_text("model: churn\nlog: sqlite:///log.db\nrules: [psi > 0.2]\nalert: x\n")
    with pytest.raises(UserError, match="unknown key"):
        load_rules_file(path)
    path.write_text("model: churn\nlog: sqlite:///log.db\nrules: [psi > 0.2]\n"
                    "on_alert: retrain missing.yaml\n")
    with pytest.raises(UserError, match="does not exist"):
        load_rules_file(path)
    path.write_text("model: churn\nrules: [psi > 0.2]\n")
    with pytest.raises(UserError, match="log is missing"):
        load_rules_file(path)
    path.write_text("model: churn\nlog: sqlite:///log.db\nrules: [psi > 0.2]\n")
    assert load_rules_file(path)["log"] == f"sqlite:///{tmp_path / 'log.db'}"


def test_monitor_of_an_empty_period_and_bad_options(tmp_path):
    from modelport.monitor.analysis import analyse
    from modelport.monitor.log import check_options

    register()
    url = f"sqlite:///{tmp_path / 'log.db'}#predictions"
    check_options(url)
    report = analyse("churn", url, detector=None)
    assert report["rows"] == 0 and "no predictions" in report["note"]
    with pytest.raises(UserError, match="--window"):
        analyse("churn", url, window="daily")
    with pytest.raises(UserError, match="--since"):
        analyse("churn", url, since="last tuesday")
    with pytest.raises(UserError, match="--reference"):
        analyse("churn", url, reference="yesterday")
    with pytest.raises(UserError, match="no version 7"):
        analyse("churn", url, reference="7")
