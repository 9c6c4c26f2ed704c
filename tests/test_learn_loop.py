"""The learning loop on files and SQL tables: predict before learn, checkpoints with their
position and state, restarts that learn only what is new, delayed labels, drift actions,
the promotion gate, River learners, regression and clustering, following a growing source."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request

import numpy as np
import orjson
import pandas as pd
import pytest

from modelport.registry import Registry
from modelport.train.online import learn
from modelport.train.online.loop import Learning, State
from modelport.train.online.sources import Batch
from modelport.train.online.spec import load_spec

from conftest import need_module

SGD = {"estimator": "sklearn.linear_model.SGDClassifier", "params": {"loss": "log_loss"}}


def churn_events(n: int, seed: int = 1) -> pd.DataFrame:
    from modelport.datasets import churn

    return churn.generate(n, seed=seed)


def flip_events(n: int, seed: int = 0) -> pd.DataFrame:
    """Three numbers and a label whose rule flips half way through."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    y[n // 2:] = 1 - y[n // 2:]
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["y"] = y
    frame["v"] = X @ [1.0, 2.0, -1.0] + 0.1 * rng.normal(size=n)
    return frame


def write_jsonl(frame: pd.DataFrame, path, mode: str = "wb") -> None:
    with open(path, mode) as fh:
        for row in frame.to_dict("records"):
            clean = {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
            fh.write(orjson.dumps(clean) + b"\n")


def online(source, name: str = "ol", **extra) -> dict:
    spec = {"name": name, "source": str(source), "target": "churned", "id": "customer_id",
            "learner": SGD, "batch": {"size": 200},
            "checkpoint": {"every_events": 10**9, "formats": ["joblib"]}, "promotion": False}
    spec.update(extra)
    return spec


def weights(name: str, version: int | None = None):
    uri = name if version is None else f"{name}/{version}"
    pipe = Registry().load(uri, format="joblib").model
    model, prep = pipe.named_steps["model"], pipe.named_steps["preprocess"]
    scaler = prep.named_transformers_["numeric"].named_steps["scale"]
    return np.concatenate([model.coef_.ravel(), model.intercept_, scaler.mean_, scaler.scale_])


def test_jsonl_csv_and_parquet_replays_learn_the_same_model(tmp_path):
    frame = churn_events(3000)
    write_jsonl(frame, tmp_path / "e.jsonl")
    frame.to_csv(tmp_path / "e.csv", index=False)
    frame.to_parquet(tmp_path / "e.parquet", index=False)
    results = {kind: learn(online(tmp_path / f"e.{kind}", f"ol-{kind}"))
               for kind in ("jsonl", "csv", "parquet")}
    assert {r.learned for r in results.values()} == {3000}
    accuracy = {r.prequential["accuracy"] for r in results.values()}
    assert len(accuracy) == 1 and 0.7 < accuracy.pop() < 0.9
    w = [weights(f"ol-{kind}") for kind in results]
    assert np.allclose(w[0], w[1], rtol=0, atol=1e-12) and np.array_equal(w[0], w[2])


def test_every_event_is_predicted_before_it_is_learnt(tmp_path):
    """Replaying by hand: a batch is learnt in steps of at most an eighth of the events
    learnt before (one at first), each predicted by the model that had learnt exactly the
    events before it, and the weights are the ones partial_fit gives step by step."""
    from sklearn.linear_model import SGDClassifier

    frame = flip_events(700)
    spec = load_spec({"name": "pq", "source": "x.jsonl", "target": "y",
                      "features": ["a", "b", "c"], "classes": [0, 1], "learner": SGD,
                      "preprocess": "none"}, base=tmp_path)
    learning = Learning(spec, State(spec), Registry())
    reference = SGDClassifier(loss="log_loss", learning_rate="constant", eta0=0.01, alpha=0.0,
                              shuffle=False)
    X, y = frame[["a", "b", "c"]].to_numpy(), frame["y"].to_numpy()
    expected, steps, start = [], [], 0
    for size in (5, 50, 1, 300, 344):  # batches as a source might give them
        end = start + size
        while start < end:
            stop = min(end, start + max(1, start // 8))
            step = slice(start, stop)
            expected += (reference.predict(X[step]) == y[step]).tolist() if start else [np.nan]
            reference.partial_fit(X[step], y[step], classes=[0, 1])
            steps.append(stop - start)
            start = stop
        part = frame.iloc[end - size:end]
        learning.process(Batch(size, {"row": end},
                               columns={c: part[c].to_numpy() for c in part.columns}))
    assert steps[:20] == [1] * 16 + [2, 2, 2, 2] and max(steps) == 71 and len(steps) == 52
    _, _, _, terms = learning.state.window.rows()
    assert np.array_equal(terms["correct"], np.array(expected, dtype=float), equal_nan=True)
    assert np.array_equal(learning.state.learner.estimator.coef_, reference.coef_)
    assert learning.state.learner.direct  # learnt without partial_fit's checks, same weights


def test_a_checkpoint_records_position_state_and_a_sample_covering_what_was_seen(tmp_path):
    frame = churn_events(4000, seed=3)
    frame.to_parquet(tmp_path / "e.parquet", index=False)
    result = learn(online(tmp_path / "e.parquet", checkpoint={"every_events": 1500,
                                                              "formats": ["joblib"]}))
    reg = Registry()
    last = reg.get("ol@online-latest")
    assert last.version == result.checkpoints[-1] and len(result.checkpoints) >= 2
    info = last.lineage["online"]
    assert info["position"] == {"row": 4000} and info["seq"] == 4000
    assert info["counts"]["learned"] == 4000
    assert reg.store.exists(info["state_sha256"])
    assert set(last.metrics) == {"accuracy", "log_loss"}
    assert last.metrics["accuracy"] == pytest.approx(result.prequential["accuracy"])
    first = reg.get(f"ol/{result.checkpoints[0]}")
    assert 0 < first.lineage["online"]["position"]["row"] < 4000
    assert last.parent_version == result.checkpoints[-2]
    inputs = {c["name"]: c for c in last.signature["inputs"]}
    for column in ("plan", "contract", "payment_method", "region"):
        assert set(inputs[column]["categories"]) == set(frame[column].dropna())
    for column in ("tenure_months", "monthly_charges", "age"):
        assert inputs[column]["min"] == frame[column].min()
        assert inputs[column]["max"] == frame[column].max()


def test_a_restart_learns_only_the_new_events_and_ends_where_one_run_ends(tmp_path):
    frame = churn_events(3000, seed=4)
    write_jsonl(frame, tmp_path / "whole.jsonl")
    # batches of 16, then 200: the file first ends where a batch of the whole run ends, so
    # both runs learn the very same batches
    split = 16 + 9 * 200
    write_jsonl(frame.iloc[:split], tmp_path / "growing.jsonl")
    one = learn(online(tmp_path / "whole.jsonl", "whole"))
    first = learn(online(tmp_path / "growing.jsonl", "parts"))
    write_jsonl(frame.iloc[split:], tmp_path / "growing.jsonl", mode="ab")
    second = learn(online(tmp_path / "growing.jsonl", "parts"))
    assert (first.learned, second.learned, one.learned) == (split, 3000 - split, 3000)
    assert second.resumed_from == first.checkpoints[-1]
    assert np.array_equal(weights("parts"), weights("whole"))
    again = learn(online(tmp_path / "growing.jsonl", "parts"))
    assert again.events == 0 and again.checkpoints == []
    fresh = learn(online(tmp_path / "growing.jsonl", "parts"), fresh=True)
    assert fresh.learned == 3000 and fresh.resumed_from is None


def test_delayed_labels_are_joined_to_the_predictions_made_on_arrival(tmp_path):
    frame = churn_events(1500, seed=5)
    rows = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
            for r in frame.to_dict("records")]
    events, waiting = [], []
    for i, row in enumerate(rows):
        label = row.pop("churned")
        events.append(row)
        waiting.append((i + 100, {"customer_id": row["customer_id"], "churned": label}))
        while waiting and waiting[0][0] <= i:
            events.append(waiting.pop(0)[1])
    events += [w for _, w in waiting[:-50]]  # the last 50 labels never come
    events.append({"customer_id": -1, "churned": 1})  # a label for an unknown customer
    with open(tmp_path / "e.jsonl", "wb") as fh:
        fh.writelines(orjson.dumps(e) + b"\n" for e in events)
    result = learn(online(tmp_path / "e.jsonl", label_delay={"max_events": 400}))
    assert result.learned == 1450 and result.unmatched == 1 and result.expired == 0
    assert 0.7 < result.prequential["accuracy"] < 0.9
    state = _state("ol")
    assert len(state.pending) == 50  # predicted, waiting for their label
    # with a shorter wait, labels arriving later than 40 events after their customer expire
    short = learn(online(tmp_path / "e.jsonl", "short", label_delay={"max_events": 40}))
    assert short.expired > 1000 and short.learned < 450


def _state(name: str):
    import pickle

    reg = Registry()
    info = reg.get(f"{name}@online-latest").lineage["online"]
    return pickle.loads(reg.store.get(info["state_sha256"]))


@pytest.mark.parametrize("action", ["alert", "reset", "challenger"])
def test_drift_on_the_error_stream_alerts_resets_or_trains_a_challenger(tmp_path, action):
    need_module("river", "online")
    frame = flip_events(8000)
    frame.to_parquet(tmp_path / "f.parquet", index=False)
    spec = {"name": f"flip-{action}", "source": str(tmp_path / "f.parquet"), "target": "y",
            "features": ["a", "b", "c"], "learner": SGD, "batch": {"size": 256},
            "checkpoint": {"every_events": 10**9, "formats": ["joblib"]}, "promotion": False,
            "drift": {"detector": "ADWIN", "action": action, "min_events": 500}}
    result = learn(spec)
    events = Registry().events(f"flip-{action}")
    drifts = [e for e in events if e["kind"] == "online-drift"]
    assert result.drifts >= 1 and drifts and 3900 <= drifts[0]["at_event"] <= 4600
    assert drifts[0]["action"] == action and drifts[0]["detector"] == "ADWIN"
    if action == "challenger":
        won = [e for e in events if e["kind"] == "online-challenger"]
        assert won and won[0]["outcome"] == "won" and won[0]["challenger"] > won[0]["learner"]
    if action != "alert":  # a fresh learner has nothing of the old rule to unlearn
        assert result.prequential["accuracy"] > 0.9


def test_the_gate_keeps_a_better_serving_version_and_promotes_within_the_threshold(tmp_path):
    from sklearn.linear_model import LogisticRegression

    from modelport.register import log_model

    frame = flip_events(6000).iloc[:3000]  # one rule throughout
    frame.to_parquet(tmp_path / "f.parquet", index=False)
    X = frame[["a", "b", "c"]]
    log_model(LogisticRegression().fit(X, frame["y"]), "gate", sample=X.head(200),
              formats=["joblib"], alias="production")  # has seen every event: hard to beat
    spec = {"name": "gate", "source": str(tmp_path / "f.parquet"), "target": "y",
            "features": ["a", "b", "c"], "learner": SGD, "batch": {"size": 100},
            "checkpoint": {"every_events": 10**9, "formats": ["joblib"]},
            "promotion": {"threshold": 0.0, "min_events": 500}}
    kept = learn(spec)
    reg = Registry()
    assert kept.promoted == [] and reg.aliases("gate")["production"] == 1
    reason = reg.events("gate", "online-checkpoint")[-1]["reason"]
    assert "of version 1 over 2998 recent events (threshold 0): kept" in reason  # 2: no model
    # before the second class came
    spec["promotion"]["threshold"] = 0.5
    promoted = learn(spec, fresh=True)
    assert promoted.promoted == promoted.checkpoints
    assert reg.aliases("gate")["production"] == promoted.checkpoints[-1]
    assert reg.rollback("gate", "production").version == 1  # as for any model


def test_river_learners_checkpoint_a_model_that_scores_like_river(tmp_path):
    need_module("river", "online")
    frame = churn_events(1500, seed=6)
    frame.to_parquet(tmp_path / "e.parquet", index=False)
    numbers = ["tenure_months", "monthly_charges", "total_charges", "support_calls", "age"]
    spec = online(tmp_path / "e.parquet", "riv", features=numbers, learner={
        "estimator": "river.linear_model.LogisticRegression",
        "pipeline": [{"estimator": "river.preprocessing.StandardScaler", "params": {}}]},
        checkpoint={"every_events": 10**9})
    result = learn(spec)
    assert result.learned == 1500 and 0.6 < result.prequential["accuracy"] < 0.9
    v = Registry().get("riv")
    assert v.accepted_formats() == ["joblib"]
    predictor = Registry().load("riv")
    rows = frame[numbers].head(20).astype(float)
    river_model = predictor.model.model
    expected = [river_model.predict_proba_one({k: v for k, v in r.items() if v == v})[1]
                for r in rows.to_dict("records")]
    assert np.allclose(predictor.predict_proba(rows)[:, 1], expected)


@pytest.mark.parametrize("task, learner, metric", [
    ("regression", {"estimator": "sklearn.linear_model.SGDRegressor"}, "mae"),
    ("clustering", {"estimator": "sklearn.cluster.MiniBatchKMeans",
                    "params": {"n_clusters": 3}}, "inertia"),
    ("classification", {"estimator": "sklearn.naive_bayes.GaussianNB"}, "accuracy"),
])
def test_regression_clustering_and_naive_bayes_learn_and_checkpoint(tmp_path, task, learner,
                                                                    metric):
    frame = flip_events(3000).iloc[:1500]
    frame.to_parquet(tmp_path / "f.parquet", index=False)
    spec = {"name": task, "task": task, "source": str(tmp_path / "f.parquet"),
            "features": ["a", "b", "c"], "learner": learner,
            "checkpoint": {"every_events": 10**9, "formats": ["joblib", "compiled"]}}
    if task != "clustering":
        spec["target"] = "y" if task == "classification" else "v"
    result = learn(spec)
    assert result.learned == 1500 and metric in result.prequential
    if task == "regression":
        assert result.prequential["mae"] < 0.5  # the target spreads over about ±5
    elif task == "classification":
        assert result.prequential["accuracy"] > 0.9
    v = Registry().get(f"{task}@production")
    assert v.task == task and "joblib" in v.accepted_formats()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


def test_a_sql_table_is_tailed_by_its_increasing_key(database, tmp_path):
    import sqlalchemy as sa

    frame = flip_events(6000).iloc[:2400].reset_index(names="event_id")
    engine = sa.create_engine(database.replace("postgresql://", "postgresql+psycopg://"))
    frame.iloc[:1000].to_sql("events", engine, index=False)
    spec = {"name": "tail", "source": {"url": f"{database}#events", "key": "event_id",
                                       "poll_ms": 50},
            "target": "y", "features": ["a", "b", "c"], "learner": SGD,
            "batch": {"size": 300}, "checkpoint": {"every_events": 700, "formats": ["joblib"]},
            "promotion": False}
    first = learn(spec)
    assert first.learned == 1000 and first.position == {"key": 999}

    def learnt() -> int:
        from modelport.train.online.checkpoint import latest

        return latest(Registry(), "tail")[0].lineage["online"]["seq"]

    async def follow():
        from modelport.train.online.loop import run

        stop = asyncio.Event()
        # a checkpoint as soon as anything is new, so that the test sees when all is learnt
        often = {**spec, "checkpoint": {**spec["checkpoint"], "every_seconds": 0.2}}
        task = asyncio.create_task(run(load_spec(often), follow=True, stop=stop))
        await asyncio.sleep(0.3)
        for start in (1000, 1700):  # rows keep coming while the learner follows
            await asyncio.to_thread(lambda s=start: frame.iloc[s:s + 700].to_sql(
                "events", engine, index=False, if_exists="append"))
        deadline = time.time() + 60
        while await asyncio.to_thread(learnt) < 2400 and time.time() < deadline:
            await asyncio.sleep(0.2)
        stop.set()
        return await task

    second = asyncio.run(follow())
    assert second.learned == 1400 and second.position == {"key": 2399}
    assert second.resumed_from == first.checkpoints[-1]
    engine.dispose()


def test_follow_a_growing_file_at_a_rate_with_prometheus_metrics(tmp_path):
    need_module("prometheus_client", "http")
    import socket

    from modelport.train.online.loop import run

    frame = churn_events(2000, seed=7)
    write_jsonl(frame.iloc[:500], tmp_path / "e.jsonl")
    bad = {k: (None if isinstance(v, float) and v != v else v)
           for k, v in frame.iloc[0].to_dict().items()}
    with open(tmp_path / "e.jsonl", "ab") as fh:  # rejected, and counted by its reason
        fh.write(orjson.dumps({**bad, "tenure_months": [1, 2]}) + b"\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = load_spec({**online(tmp_path / "e.jsonl"),
                      "source": {"url": str(tmp_path / "e.jsonl"), "rate": 2000, "poll_ms": 20}})

    async def scenario():
        stop = asyncio.Event()
        started = time.perf_counter()
        task = asyncio.create_task(run(spec, follow=True, stop=stop, metrics_port=port))
        await asyncio.sleep(0.3)
        write_jsonl(frame.iloc[500:], tmp_path / "e.jsonl", mode="ab")
        while True:
            text = await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read())
            if b'modelport_learn_learned_total{model="ol"} 2000.0' in text:
                break
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - started
        stop.set()
        return await task, text.decode(), elapsed

    result, text, elapsed = asyncio.run(scenario())
    assert result.learned == 2000 and elapsed >= 0.9  # 2,000 events at 2,000 a second
    assert 'modelport_learn_prequential{metric="accuracy",model="ol"}' in text
    assert result.rejected_by_reason == {"wrong_type": 1}
    assert 'modelport_rejected_rows_total{model="ol",reason="wrong_type",surface="learn"} 1.0' \
        in text
    assert result.checkpoints  # the final one, on stop


def test_the_command_prints_the_json_contract(tmp_path):
    import yaml

    frame = churn_events(1000, seed=8)
    frame.to_parquet(tmp_path / "e.parquet", index=False)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(online("e.parquet")))
    proc = subprocess.run([sys.executable, "-m", "modelport", "learn",
                           str(tmp_path / "spec.yaml"), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["events"] == 1000 and out["events_per_s"] > 0
    assert set(out["prequential"]) == {"accuracy", "log_loss"}
    assert out["checkpoints"] == [1]
