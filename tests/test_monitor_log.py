"""The prediction log: what a row holds, sampling, and a serving side that never waits for
the database (records beyond the buffer are dropped and counted, then written as soon as
the database answers again)."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest

from modelport.errors import UserError
from modelport.monitor.log import PredictionLogger, check_options, read_drops, read_predictions

from conftest import need_module


def one_request(i: int) -> dict:
    """The record the web service hands over for a one-row request."""
    return {"model": "churn", "version": 3, "role": "champion",
            "inputs": {"tenure_months": np.array([float(i)]),
                       "plan": np.array(["basic" if i % 2 else None], dtype=object)},
            "outputs": {"label": np.array([i % 2]), "proba": np.array([[0.25, 0.75]])},
            "request_id": f"req-{i}", "latency_ms": 1.5}


def test_rows_hold_inputs_outputs_ids_and_time(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}#predictions"
    plog = PredictionLogger(url, source="http", flush_seconds=0.05)
    for i in range(3):
        plog.put(one_request(i))
    plog.log("churn", 3, {"tenure_months": [1.0, np.nan], "plan": ["basic", "premium"]},
             {"value": np.array([2.5, np.inf])}, ids=[100042, 100043], role="batch",
             errors=[None, "model gave no number"])
    plog.put({"model": "churn", "version": 3, "inputs": {"tenure_months": np.array([2.0])},
              "outputs": {"label": np.array(["b"], dtype=object),
                          "proba": np.array([[0.2, 0.7, 0.1]])}, "request_id": "three"})
    plog.close()
    assert plog.written == 6 and plog.dropped == 0
    rows = read_predictions(url, "churn")
    assert rows["id"].tolist() == ["req-0", "req-1", "req-2", "100042", "100043", "three"]
    first = rows.iloc[0]
    assert first["inputs"] == {"tenure_months": 0.0, "plan": None}
    # two classes: the label and score columns say it all, no outputs JSON is written
    assert first["outputs"] == {}
    assert rows.iloc[5]["outputs"] == {"label": "b", "proba": [0.2, 0.7, 0.1]}
    assert (rows.iloc[5]["label"], rows.iloc[5]["score"]) == ("b", 0.7)
    assert (first["version"], first["role"], first["source"], first["label"],
            first["score"], first["latency_ms"]) == (3, "champion", "http", "0", 0.75, 1.5)
    assert str(first["at"].tz) == "UTC"
    batch = rows.iloc[3:5]
    assert batch["inputs"].tolist()[1] == {"tenure_months": None, "plan": "premium"}
    assert batch["score"].tolist()[0] == 2.5 and np.isnan(batch["score"].tolist()[1])
    assert batch["error"].isna().tolist() == [True, False]
    assert batch["error"].iloc[1] == "model gave no number"


def test_sampling_keeps_about_the_share_asked(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}#p"
    plog = PredictionLogger(url, sample=0.2, flush_seconds=0.05)
    for i in range(1000):
        plog.put(one_request(i))  # requests are kept or not as a whole
    plog.log("churn", 3, {"x": np.arange(5000.0)}, {"value": np.arange(5000.0)})
    plog.close()
    rows = read_predictions(url, "churn")
    requests = rows["request_id"].notna().sum()
    assert 120 <= requests <= 280, requests
    assert 800 <= len(rows) - requests <= 1200
    assert set(rows["sample_rate"]) == {0.2}


def test_a_locked_database_costs_dropped_records_not_waiting(tmp_path):
    """While another connection holds SQLite's write lock the writer cannot insert: puts
    keep returning at once, rows beyond the buffer are dropped and counted, and once the
    lock goes everything buffered is written with the drop count."""
    path = tmp_path / "log.db"
    url = f"sqlite:///{path}#predictions"
    check_options(url)  # creates the tables
    dropped = []
    plog = PredictionLogger(url, capacity=200, flush_seconds=0.05, on_drop=dropped.append)
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        for i in range(1000):
            plog.put(one_request(i))
        # nothing could be written, and the serving side never waited for the lock
        assert plog.written == 0
        assert plog.dropped == 800 and sum(dropped) == 800
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert plog.flush(timeout=60)
    plog.close()
    rows = read_predictions(url, "churn")
    assert rows["id"].tolist() == [f"req-{i}" for i in range(200)]
    assert read_drops(url, "churn") == 800


def test_a_failing_writer_never_raises_into_the_caller(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}#predictions"
    plog = PredictionLogger(url, flush_seconds=0.05)
    plog.put({"model": "churn", "version": 1, "inputs": {"x": object()}, "rows": 1})  # bad
    plog.log("churn", 1, {"x": [1.0, 2.0]}, {"value": [1.0]})  # ragged: refused quietly
    plog.put(one_request(7))
    plog.close()
    rows = read_predictions(url, "churn")
    assert "req-7" in rows["id"].tolist()


def test_bad_log_urls_and_samples_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not a database URL"):
        check_options("logs.db")
    with pytest.raises(UserError, match="table name"):
        check_options(f"sqlite:///{tmp_path / 'x.db'}#bad-name")
    with pytest.raises(UserError, match="redis:// is not a database"):
        check_options("redis://127.0.0.1:6379/0#predictions")
    with pytest.raises(UserError, match="--log-sample"):
        check_options(f"sqlite:///{tmp_path / 'x.db'}", 0)
    with pytest.raises(UserError, match="no SQLite database"):
        read_predictions(f"sqlite:///{tmp_path / 'x.db'}#predictions", "churn")
    check_options(f"sqlite:///{tmp_path / 'x.db'}#predictions")
    with pytest.raises(UserError, match="no prediction log"):
        read_predictions(f"sqlite:///{tmp_path / 'x.db'}#nothing_here", "churn")


def test_postgresql_log_from_several_threads(postgres_url):
    url = f"{postgres_url}#predictions"
    plog = PredictionLogger(url, flush_seconds=0.05)
    need_module("psycopg", "postgres")

    def serve(start: int) -> None:
        for i in range(start, start + 300):
            plog.put(one_request(i))

    threads = [threading.Thread(target=serve, args=(k * 1000,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    plog.close()
    rows = read_predictions(url, "churn")
    assert len(rows) == 900 and rows["id"].nunique() == 900
    assert rows["score"].iloc[0] == 0.75 and rows["label"].iloc[0] in ("0", "1")
    assert rows["at"].is_monotonic_increasing


def test_the_log_thread_keeps_to_its_cpu_budget_by_dropping(tmp_path):
    """A log thread allowed a tiny share of a core rests after each write for as long as
    the budget demands; what arrives meanwhile fills the buffer, then is dropped and
    counted, and closing writes what was kept."""
    import time

    url = f"sqlite:///{tmp_path / 'log.db'}#predictions"
    plog = PredictionLogger(url, capacity=500, flush_seconds=0.05, cpu_budget=0.0001)
    for i in range(100):
        plog.put(one_request(i))
    deadline = time.monotonic() + 30
    while plog.written < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert plog.written == 100
    for i in range(100, 1100):
        plog.put(one_request(i))
    time.sleep(0.3)  # six flush intervals: without a budget all of it would be written
    assert plog.written == 100 and plog.dropped == 500
    plog.close()
    assert plog.written == 600
    assert read_drops(url, "churn") == 500


def test_postgresql_feedback_upserts_by_model_and_id(postgres_url):
    from modelport.monitor.feedback import read_feedback, record

    url = f"{postgres_url}#predictions"
    assert record(url, "churn", [1, 2, 2, "3"], ["1", 0, 1, None]) == (2, 1)
    assert record(url, "churn", [1], [0.0]) == (1, 0)
    record(url, "other", [1], [1])
    stored = read_feedback(url, "churn").set_index("id")
    assert stored["label"].to_dict() == {"1": "0", "2": "1"}
    assert stored["value"].to_dict() == {"1": 0.0, "2": 1.0}
