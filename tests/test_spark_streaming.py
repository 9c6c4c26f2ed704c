"""Spark Structured Streaming: scoring that survives SIGKILL with each row scored once, and
online learning with MLlib's streaming semantics that resumes to the same weights."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import need_module, unavailable

NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls",
           "data_usage_gb", "age"]
CATEGORICAL = ["plan", "contract", "payment_method", "region"]


@pytest.fixture(scope="module")
def spark():
    """One local[2] session for the in-process runs of this module."""
    need_module("pyspark", "spark")
    if shutil.which("java") is None:
        unavailable("Spark needs Java (a JDK 17 on the PATH)")
    from modelport.serve.spark_stream import session

    s = session("local[2]", app="modelport tests")
    yield s
    s.stop()


def _churn_model():
    from sklearn.linear_model import LogisticRegression

    import modelport
    from modelport.datasets import churn
    from modelport.train.preprocess import build_pipeline

    data = churn.generate(2000, seed=5)
    X = data.drop(columns=["customer_id", "churned"])
    model = build_pipeline(LogisticRegression(max_iter=300), X, NUMERIC, CATEGORICAL)
    modelport.log_model(model.fit(X, data["churned"]), "churn", sample=X.head(200),
                        formats=["joblib"])
    return model


def _write_files(folder: Path, first: int, count: int, rows: int, seed: int) -> list[int]:
    """JSON-lines files ``events-000.jsonl``... with rising modification times (Spark takes
    them in that order); one row of each has an age that is no number. Returns the ids of
    the good rows."""
    from modelport.datasets import churn

    folder.mkdir(parents=True, exist_ok=True)
    good = []
    for n in range(first, first + count):
        part = churn.generate(rows, seed=seed + n).drop(columns=["churned"])
        part["customer_id"] = np.arange(n * rows, (n + 1) * rows)
        records = part.to_dict(orient="records")
        records[3]["age"] = "old"
        good += [r["customer_id"] for i, r in enumerate(records) if i != 3]
        path = folder / f"events-{n:03d}.jsonl"
        tmp = folder / f".events-{n:03d}.tmp"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
        os.utime(tmp, (1_700_000_000 + n, 1_700_000_000 + n))
        os.replace(tmp, path)
    return good


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and its JVM (one process group)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _wait_for(what, at_least: int, proc: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got >= at_least:
            return got
        if proc.poll() is not None:
            raise AssertionError(f"the query stopped early: {proc.stderr.read().decode()[-3000:]}")
        time.sleep(0.2)
    _kill_group(proc)
    raise AssertionError(f"fewer than {at_least} batches committed in {timeout} s")


def _stream(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "modelport", "stream", "churn",
                             "--engine", "spark", "--master", "local[2]",
                             "--id", "customer_id", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, **kw)


@pytest.mark.parametrize("sink_kind", ["folder", "table"])
def test_a_query_killed_mid_stream_resumes_from_its_checkpoint_scoring_each_row_once(
        tmp_path, sink_kind, request, spark):
    from modelport.serve.spark_stream import stream_spark

    _churn_model()
    src, ck = tmp_path / "events", tmp_path / "checkpoint"
    good = _write_files(src, 0, 3, 30, seed=100)
    if sink_kind == "folder":
        sink = str(tmp_path / "scores")

        def committed() -> int:
            return len(list((tmp_path / "scores").glob("batch=*")))
    else:
        import sqlalchemy as sa

        url = request.getfixturevalue("postgres_url")
        sink = f"{url}#churn_scores"
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))

        def committed() -> int:
            with engine.connect() as conn:
                if not sa.inspect(conn).has_table("modelport_batch_progress"):
                    return 0
                return conn.execute(sa.text(
                    "select count(*) from modelport_batch_progress")).scalar()
    args = ["--source", f"{src}?max_files_per_trigger=1", "--sink", sink,
            "--checkpoint", str(ck)]
    first = _stream(args)
    before = _wait_for(committed, 1, first)
    _kill_group(first)
    good += _write_files(src, 3, 2, 30, seed=100)
    # restarted (here, in this process's driver) from the killed driver's checkpoint
    stream_spark("churn", f"{src}?max_files_per_trigger=1", sink, checkpoint=ck,
                 id="customer_id", available_now=True)
    assert committed() == 5 and before < 5

    if sink_kind == "folder":
        scores = pd.read_parquet(tmp_path / "scores")
        ids = scores["customer_id"].tolist()
        assert sorted(ids) == sorted(good)  # each good row once, none lost
        assert set(scores["label"].unique()) <= {0, 1}
    else:
        with engine.connect() as conn:
            ids = [r[0] for r in conn.execute(sa.text("select customer_id from churn_scores"))]
            batches = conn.execute(sa.text(
                "select chunk, rows from modelport_batch_progress order by chunk")).all()
        engine.dispose()
        assert sorted(ids) == sorted(good)
        # each micro-batch committed once, holding its file's good rows
        assert [b[0] for b in batches] == list(range(5))
        assert sum(b[1] for b in batches) == len(good)
    dead = pd.concat([pd.read_json(p, lines=True) for p in sorted(
        (tmp_path / "checkpoint.dead-letter" / "rejects").glob("batch=*/*.json"))])
    assert len(dead) == 5 and dead["_batch"].is_unique
    assert set(dead["_code"]) == {"wrong_type"} and (dead["age"] == "old").all()
    assert all("age" in r for r in dead["_reason"])


def test_the_query_follows_an_alias_at_micro_batch_boundaries(tmp_path, spark):
    import threading

    from modelport.registry import Registry
    from modelport.serve.spark_stream import stream_spark

    _churn_model()
    _churn_model()  # version 2
    registry = Registry()
    registry.set_alias("churn", 1, "production")
    src, sink = tmp_path / "events", tmp_path / "scores"
    _write_files(src, 0, 1, 20, seed=7)
    done: list = []
    worker = threading.Thread(target=lambda: done.append(stream_spark(
        "churn@production", f"{src}?max_files_per_trigger=1", str(sink),
        checkpoint=tmp_path / "ck", id="customer_id", poll_seconds=0)))
    worker.start()
    try:
        deadline = time.monotonic() + 90
        while not (sink / "batch=0").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        registry.set_alias("churn", 2, "production")
        _write_files(src, 1, 1, 20, seed=7)
        while not (sink / "batch=1").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for query in spark.streams.active:
            query.stop()
        worker.join(60)
    assert done and done[0].versions == [1, 2]
    first = pd.read_parquet(sink / "batch=0")
    second = pd.read_parquet(sink / "batch=1")
    assert set(first["model_version"]) == {1} and set(second["model_version"]) == {2}
    assert len(first) == len(second) == 19


def test_the_rate_source_drives_load_through_the_scoring_core(tmp_path, spark):
    """Spark's rate source as a load generator: each row's inputs are made from its number
    (numbers swept across the training range, categories in turn), and each is scored as
    the model scores those inputs."""
    import threading

    from modelport.registry import Registry
    from modelport.serve.spark_stream import stream_spark

    model = _churn_model()
    sink = tmp_path / "scores"
    done: list = []
    worker = threading.Thread(target=lambda: done.append(stream_spark(
        "churn", "rate://?rows_per_second=400", str(sink), checkpoint=tmp_path / "ck",
        id="n", poll_seconds=0)))
    worker.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            parts = list(sink.glob("batch=*/*.parquet"))
            if parts and len(pd.read_parquet(sink)) >= 400:
                break
            time.sleep(0.5)
    finally:
        for query in spark.streams.active:
            query.stop()
        worker.join(60)
    scores = pd.read_parquet(sink)
    assert len(scores) >= 400 and scores["n"].is_unique
    n = scores["n"].to_numpy()
    inputs = {}
    for col in Registry().load("churn").signature.inputs:
        if col.kind == "numeric":
            inputs[col.name] = col.min + (n % 997) / 996.0 * (col.max - col.min)
        else:
            inputs[col.name] = np.asarray(col.categories, dtype=object)[n % len(col.categories)]
    expected = model.predict_proba(pd.DataFrame(inputs))[:, 1]
    np.testing.assert_allclose(scores["score"], expected, rtol=0, atol=1e-9)


def test_a_csv_folder_is_scored_as_the_local_batch_engine_scores_it(tmp_path, spark):
    """Through the same scoring core: the same labels and scores, whatever the order of
    the CSV's columns."""
    from modelport.datasets import churn
    from modelport.registry import Registry
    from modelport.serve.batch import predict
    from modelport.serve.spark_stream import stream_spark

    _churn_model()
    rows = churn.generate(60, seed=11).drop(columns=["churned"])
    rows = rows[list(reversed(rows.columns))]  # not the signature's order
    src = tmp_path / "in"
    src.mkdir()
    rows.to_csv(src / "a.csv", index=False)
    predict("churn", src / "a.csv", tmp_path / "local.parquet", id="customer_id", workers=1,
            registry=Registry())
    done = stream_spark("churn", str(src), str(tmp_path / "out"), checkpoint=tmp_path / "ck",
                        id="customer_id", available_now=True)
    assert done.rows == 60 and done.rejects == 0
    a = pd.read_parquet(tmp_path / "local.parquet").astype({"customer_id": str})
    b = pd.read_parquet(tmp_path / "out").astype({"customer_id": str})
    a, b = (x.sort_values("customer_id").reset_index(drop=True) for x in (a, b))
    assert a["customer_id"].tolist() == b["customer_id"].tolist()
    assert a["label"].tolist() == b["label"].tolist()
    np.testing.assert_allclose(a["score"], b["score"], rtol=0, atol=1e-12)


def test_bad_source_or_sink_urls_are_one_line_and_exit_2(tmp_path):
    for args, words in (
        (["--source", str(tmp_path / "nowhere"), "--sink", str(tmp_path / "out")],
         "no such folder"),
        (["--source", "rate://?rows_per_second=lots", "--sink", str(tmp_path / "out")],
         "rows_per_second"),
        (["--source", "ftp://host/x", "--sink", str(tmp_path / "out")], "is not known"),
        (["--source", str(tmp_path), "--sink", "postgresql://127.0.0.1/test"], "names no table"),
        (["--source", str(tmp_path), "--sink", str(tmp_path / "o"), "--engine", "flink"],
         "--engine 'flink'"),
    ):
        engine = [] if "--engine" in args else ["--engine", "spark"]
        done = subprocess.run([sys.executable, "-m", "modelport", "stream", "churn", *engine,
                               *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert words in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


# -- learning ------------------------------------------------------------------------------

def _drifting(folder: Path, first: int, count: int, rows: int, kind: str) -> None:
    """Files of a stream whose relation drifts: y = x . w(t) + noise for regression, blobs
    that wander for clustering; rising modification times."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(first, first + count):
        rng = np.random.default_rng(1000 + n)
        X = rng.normal(size=(rows, 3))
        if kind == "kmeans":
            centres = np.array([[0, 0, 0], [4, 4, 0], [-4, 0, 4]]) + n * 0.2
            X = X * 0.5 + centres[rng.integers(0, 3, rows)]
            frame = pd.DataFrame(X, columns=["x0", "x1", "x2"])
        else:
            w = np.array([1.5, -2.0, 0.5]) + n * np.array([0.1, 0.05, -0.1])
            frame = pd.DataFrame(X, columns=["x0", "x1", "x2"])
            frame["y"] = X @ w + rng.normal(0, 0.1, rows)
        records = frame.to_dict(orient="records")
        records[1]["x1"] = "n/a"  # not learnt: counted out
        tmp = folder / f".part-{n:03d}.tmp"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
        os.utime(tmp, (1_700_000_000 + n, 1_700_000_000 + n))
        os.replace(tmp, folder / f"part-{n:03d}.jsonl")


def _learn_spec(path: Path, kind: str, checkpoint: str) -> Path:
    import yaml

    spec = {"name": f"drift-{kind}", "source": "events", "features": ["x0", "x1", "x2"],
            "checkpoint": {"every_events": 200, "formats": ["joblib"]},
            "promotion": False,
            "spark": {"checkpoint": checkpoint, "master": "local[2]", "max_files_per_trigger": 1}}
    if kind == "kmeans":
        spec.update(task="clustering",
                    learner={"estimator": "sklearn.cluster.MiniBatchKMeans"})
        spec["spark"].update(k=3, half_life=2.0, time_unit="batches",
                             centers=[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [-1.0, 0.0, 1.0]])
    else:
        spec.update(task="regression", target="y",
                    learner={"estimator": "sklearn.linear_model.SGDRegressor"})
        spec["spark"].update(step_size=0.2, num_iterations=20, mini_batch_fraction=0.5)
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("kind", ["linear", "kmeans"])
def test_a_learner_killed_mid_stream_resumes_to_the_weights_of_an_uninterrupted_run(
        tmp_path, kind, spark, monkeypatch):
    from modelport.registry import Registry
    from modelport.train.online.spark import STATE_FILE, learn_spark
    from modelport.train.online.spec import load_spec

    events = tmp_path / "events"
    _drifting(events, 0, 4, 50, kind)
    killed = _learn_spec(tmp_path / "killed.yaml", kind, "killed.ck")
    state = tmp_path / "killed.ck" / STATE_FILE
    env = {**os.environ, "MODELPORT_HOME": str(tmp_path / "killed-home")}

    def learnt() -> int:
        return json.loads(state.read_text())["last_batch"] + 1 if state.exists() else 0

    first = subprocess.Popen([sys.executable, "-m", "modelport", "learn", str(killed),
                              "--engine", "spark", "--follow"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    _wait_for(learnt, 1, first)
    _kill_group(first)
    _drifting(events, 4, 2, 50, kind)
    # restarted (here, in this process's driver) from the killed driver's checkpoint
    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path / "killed-home"))
    learn_spark(load_spec(killed))

    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path / "whole-home"))
    whole = load_spec(_learn_spec(tmp_path / "whole.yaml", kind, "whole.ck"))
    result = learn_spark(whole)
    assert result.learned == 6 * 49 and result.rejected == 6
    a = json.loads(state.read_text())
    b = json.loads((tmp_path / "whole.ck" / STATE_FILE).read_text())
    # Spark may draw other micro-batches after a crash; the learner steps once per file
    assert a["units"] == b["units"] == 6 and a["seq"] == b["seq"] == 6 * 49
    assert a["rejected"] == b["rejected"] == 6
    key = "centers" if kind == "kmeans" else "weights"
    assert np.array_equal(np.asarray(a[key]), np.asarray(b[key]))  # bit for bit
    start = np.asarray(whole.spark["centers"]) if kind == "kmeans" else np.zeros(3)
    assert np.abs(np.asarray(b[key]) - start).max() > 0.5  # it learnt something

    # the last checkpoint is an ordinary version holding the weights, under @online-latest
    version = Registry().get(f"drift-{kind}@online-latest")
    model = Registry().load(version).model
    if kind == "kmeans":
        np.testing.assert_array_equal(model.cluster_centers_, np.asarray(b["centers"]))
    else:
        np.testing.assert_array_equal(model.coef_, np.asarray(b["weights"]))
        rows = pd.DataFrame([[1.0, 2.0, 3.0]], columns=["x0", "x1", "x2"])
        out = Registry().load(version).run(rows)
        assert out["value"][0] == pytest.approx(np.dot([1.0, 2.0, 3.0], b["weights"]))
    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path / "killed-home"))
    resumed = Registry().get(f"drift-{kind}@online-latest")
    np.testing.assert_array_equal(
        getattr(Registry().load(resumed).model, "cluster_centers_" if kind == "kmeans"
                else "coef_"), np.asarray(a[key]))


def test_sgd_and_streaming_kmeans_updates_match_mllib(spark):
    """Per micro-batch, from the previous weights: what StreamingLinearRegressionWithSGD,
    StreamingLogisticRegressionWithSGD and StreamingKMeans run on each batch of a DStream."""
    from pyspark.mllib.classification import LogisticRegressionWithSGD
    from pyspark.mllib.clustering import StreamingKMeansModel
    from pyspark.mllib.regression import LabeledPoint, LinearRegressionWithSGD

    from modelport.train.online.spark import kmeans_update, sgd_update

    sc = spark.sparkContext
    rng = np.random.default_rng(7)
    linear = np.zeros(3)
    logistic = np.zeros(3)
    theirs_linear = theirs_logistic = [0.0, 0.0, 0.0]
    centres = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [-1.0, -1.0, 0.0]])
    counts = np.ones(3)
    model = StreamingKMeansModel(centres.tolist(), [1.0, 1.0, 1.0])
    for batch in range(2):
        X = rng.normal(size=(80, 3)) + batch * 0.3
        y = X @ np.array([1.5, -2.0, 0.5]) + rng.normal(0, 0.1, 80)
        label = (y > 0).astype(float)
        points = sc.parallelize([LabeledPoint(v, x) for x, v in zip(X, y, strict=True)], 2)
        theirs_linear = LinearRegressionWithSGD.train(
            points, 10, 0.2, 1.0, theirs_linear, intercept=False, convergenceTol=0.001).weights
        linear = sgd_update(linear, X, y, logistic=False, step_size=0.2, num_iterations=10)
        labelled = sc.parallelize([LabeledPoint(v, x) for x, v in zip(X, label, strict=True)],
                                  2)
        theirs_logistic = LogisticRegressionWithSGD.train(
            labelled, 10, 0.5, 1.0, theirs_logistic, regParam=0.05, regType="l2",
            intercept=False, convergenceTol=0.001).weights
        logistic = sgd_update(logistic, X, label, logistic=True, step_size=0.5,
                              num_iterations=10, reg_param=0.05)
        model = model.update(sc.parallelize([x.tolist() for x in X], 2), 0.7, "batches")
        centres, counts = kmeans_update(centres, counts, X, decay_factor=0.7)
        np.testing.assert_allclose(linear, theirs_linear.toArray(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(logistic, theirs_logistic.toArray(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(centres, np.asarray(model.centers), rtol=0, atol=1e-9)
        np.testing.assert_allclose(counts, np.asarray(model.clusterWeights), rtol=0, atol=1e-9)
    assert np.abs(linear - [1.5, -2.0, 0.5]).max() < 0.7  # the weights moved toward the truth


def test_kafka_in_and_out(tmp_path, spark):
    """Events from a Kafka topic scored into another, a malformed one to the dead letters.
    Runs only when ``MODELPORT_KAFKA_URL`` (``kafka://HOST:9092``) names a broker (and the
    Spark Kafka connector can be fetched); skipped otherwise, as the other Kafka tests."""
    import uuid

    url = os.environ.get("MODELPORT_KAFKA_URL")
    if not url:
        pytest.skip("no Kafka broker installs on this machine; set MODELPORT_KAFKA_URL="
                    "kafka://HOST:9092 to run it against one")
    ck = need_module("confluent_kafka", "brokers")
    from modelport.datasets import churn
    from modelport.serve.spark_stream import stream_spark

    _churn_model()
    bootstrap = url.split("://", 1)[-1].split("?")[0].rstrip("/")
    t = uuid.uuid4().hex[:8]
    source, sink = f"kafka://{bootstrap}?topic=sin_{t}", f"kafka://{bootstrap}?topic=sout_{t}"
    producer = ck.Producer({"bootstrap.servers": bootstrap})
    rows = churn.generate(20, seed=3).drop(columns=["churned"]).to_dict(orient="records")
    for r in rows:
        producer.produce(f"sin_{t}", json.dumps(r).encode())
    producer.produce(f"sin_{t}", b"[1, 2]")
    producer.flush(30)
    done = stream_spark("churn", source, sink, checkpoint=tmp_path / "ck", id="customer_id",
                        dead_letter=str(tmp_path / "dead"), available_now=True)
    assert done.rows == 20 and done.rejects == 1
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": f"g{t}",
                            "auto.offset.reset": "earliest"})
    consumer.subscribe([f"sout_{t}"])
    got = []
    deadline = time.monotonic() + 60
    while len(got) < 20 and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error():
            got.append(json.loads(msg.value()))
    consumer.close()
    assert sorted(str(g["customer_id"]) for g in got) == sorted(str(r["customer_id"]) for r in rows)
