"""``modelport stream`` and ``modelport predict`` hand one settings object to the Python API:
the settings hold what the API takes, refuse a bad option when built (with the messages
the API always gave), pickle and cannot change; the command builds one from its options;
the API's keyword forms and the settings forms do the same job."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import os
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from modelport.errors import UserError
from modelport.scoring.checks import InputPolicy
from modelport.serve.batch_settings import BatchSettings
from modelport.serve.stream_settings import StreamSettings


def _keywords(function, leave_out: frozenset[str] = frozenset()) -> dict:
    """Each parameter of ``function`` (or a settings class) and its default."""
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if name not in leave_out}


def _command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelport", *args], capture_output=True,
                          text=True, env=os.environ.copy(), timeout=120)


# -- stream ------------------------------------------------------------------------------

def test_stream_settings_hold_what_run_takes_with_the_same_defaults():
    from modelport.serve.stream import run

    assert _keywords(StreamSettings) == _keywords(run, frozenset({"registry", "stop"}))


@pytest.mark.parametrize(("options", "message"), [
    ({"fmt": "xml"}, "--format 'xml': use json or msgpack"),
    ({"batch": 0}, "--batch must be at least 1"),
    ({"inflight": 0}, "--inflight must be at least 1"),
])
def test_stream_settings_refuse_what_no_worker_can_run_with(options, message):
    with pytest.raises(UserError) as caught:
        StreamSettings("churn", "redis://127.0.0.1/0?stream=a", "redis://127.0.0.1/0?stream=b",
                       **options)
    assert str(caught.value) == message


def test_run_refuses_a_bad_option_before_it_opens_a_broker():
    from modelport.serve.stream import run

    with pytest.raises(UserError, match="--format 'xml': use json or msgpack"):
        asyncio.run(run("churn", "nowhere://a", "nowhere://b", fmt="xml"))


def test_stream_settings_pickle_and_cannot_change():
    settings = StreamSettings("churn@production", "redis://127.0.0.1/0?stream=a",
                              "redis://127.0.0.1/0?stream=b", batch=64,
                              policy=InputPolicy.of(strict=True), explain="3")
    assert pickle.loads(pickle.dumps(settings)) == settings
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.batch = 1


def test_the_stream_command_hands_its_options_over_as_one_settings_object(monkeypatch):
    import modelport.serve.stream as stream
    from modelport.cli import app

    given = []

    def serve_settings(settings, registry=None):
        given.append(settings)
        return stream.Stats(consumed=5, scored=5)

    monkeypatch.setattr(stream, "serve_settings", serve_settings)
    result = CliRunner().invoke(app, [
        "stream", "churn@production", "--source", "redis://h/0?stream=in",
        "--sink", "redis://h/0?stream=out", "--dead-letter", "redis://h/0?stream=dead",
        "--batch", "64", "--inflight", "2", "--format", "msgpack", "--strict",
        "--out-of-range", "flag", "--log", "sqlite:///log.db#log", "--log-sample", "0.5",
        "--explain", "2"])
    assert result.exit_code == 0, result.output
    assert given == [StreamSettings(
        "churn@production", "redis://h/0?stream=in", "redis://h/0?stream=out",
        dead_letter_url="redis://h/0?stream=dead", batch=64, inflight=2, fmt="msgpack",
        policy=InputPolicy("reject", "flag"), log_url="sqlite:///log.db#log", log_sample=0.5,
        explain="2")]


def test_the_stream_command_refuses_a_bad_option_in_one_line_with_exit_code_2():
    proc = _command("stream", "churn", "--source", "redis://127.0.0.1:1/0?stream=a",
                    "--sink", "redis://127.0.0.1:1/0?stream=b", "--inflight", "0")
    assert proc.returncode == 2, proc.stderr
    assert "--inflight must be at least 1" in proc.stderr and "Traceback" not in proc.stderr


# -- predict -----------------------------------------------------------------------------

def test_batch_settings_hold_the_options_of_predict_with_the_same_defaults():
    from modelport.serve.batch import predict

    assert _keywords(BatchSettings) == _keywords(predict, frozenset({"registry", "progress"}))


@pytest.mark.parametrize(("options", "message"), [
    ({"on_error": "skip"}, "--on-error 'skip' is not known: use fail or reject"),
    ({"engine": "dask"}, "--engine 'dask' is not known: use local or spark"),
    ({"out_of_range": "ignore"}, "--out-of-range 'ignore' is not known: use"),
    ({"unseen_categories": "drop"}, "--unseen-categories 'drop' is not known: use"),
])
def test_batch_settings_refuse_an_unknown_option_naming_it(options, message):
    with pytest.raises(UserError) as caught:
        BatchSettings("churn", "in.csv", "out.csv", **options)
    assert str(caught.value).startswith(message)


def test_batch_settings_give_the_input_policy_of_their_options():
    assert BatchSettings("churn", "in.csv", "out.csv").policy == InputPolicy("flag", "flag")
    strict = BatchSettings("churn", "in.csv", "out.csv", strict=True, out_of_range="warn")
    assert strict.policy == InputPolicy("reject", "flag")


def test_batch_settings_pickle_and_cannot_change():
    settings = BatchSettings("churn/1", {"url": "sqlite:///a.db", "query": "SELECT * FROM t"},
                             "sqlite:///s.db#scores", id="customer_id", workers=2,
                             on_error="reject", explain=3)
    assert pickle.loads(pickle.dumps(settings)) == settings
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.workers = 1


@pytest.fixture
def small_job(tmp_path):
    """A registered logistic model and a small CSV of rows to score, with ids."""
    from sklearn.linear_model import LogisticRegression

    from modelport.register import log_model

    rng = np.random.default_rng(4)
    X = pd.DataFrame({"a": rng.normal(size=300).round(3), "b": rng.normal(size=300).round(3)})
    log_model(LogisticRegression().fit(X, (X.a + X.b > 0).astype(int)), "small", sample=X,
              formats=["joblib"])
    path = tmp_path / "rows.csv"
    X.assign(row_id=range(len(X))).to_csv(path, index=False)
    return path, X


def test_predict_settings_scores_a_file_as_predict_does(small_job, tmp_path):
    from modelport.serve.batch import predict, predict_settings

    path, X = small_job
    by_keywords = predict("small", path, tmp_path / "a.parquet", id="row_id", workers=1,
                          chunk_rows=100, progress=False)
    settings = BatchSettings("small", str(path), str(tmp_path / "b.parquet"), id="row_id",
                             workers=1, chunk_rows=100)
    by_settings = predict_settings(settings, progress=False)
    a, b = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == len(X) and a["row_id"].tolist() == list(range(len(X)))
    assert (by_keywords.rows, by_keywords.rejects, by_keywords.chunks) == \
           (by_settings.rows, by_settings.rejects, by_settings.chunks) == (300, 0, 3)


def test_predict_refuses_an_unknown_option_before_it_opens_the_registry(monkeypatch):
    import modelport.registry as registry
    from modelport.serve.batch import predict

    def no_registry(*args, **kwargs):
        raise AssertionError("the registry was opened")

    monkeypatch.setattr(registry, "Registry", no_registry)
    with pytest.raises(UserError, match="--on-error 'skip' is not known"):
        predict("churn", "in.csv", "out.csv", on_error="skip")


def test_the_predict_command_hands_its_options_over_as_one_settings_object(monkeypatch):
    import modelport.serve.batch as batch
    from modelport.cli import app

    given = []

    def predict_settings(settings, *, registry=None, progress=None):
        given.append(settings)
        return batch.BatchResult(rows=3, rejects=0, seconds=1.0, output=str(settings.output),
                                 rejects_output=None, chunks=1, skipped_chunks=0,
                                 model="small/1", format="joblib", workers=1)

    monkeypatch.setattr(batch, "predict_settings", predict_settings)
    result = CliRunner().invoke(app, [
        "predict", "small", "--input", "rows.csv", "--output", "sqlite:///s.db#scores",
        "--id", "row_id", "--workers", "2", "--chunk-rows", "10", "--on-error", "reject",
        "--format", "joblib", "--unseen-categories", "reject", "--log",
        "sqlite:///log.db#log", "--log-sample", "0.25", "--explain", "2", "--resume"])
    assert result.exit_code == 0, result.output
    assert "scored 3 rows" in result.output
    assert given == [BatchSettings(
        "small", "rows.csv", "sqlite:///s.db#scores", id="row_id", workers=2, chunk_rows=10,
        resume=True, on_error="reject", format="joblib", unseen_categories="reject",
        log_url="sqlite:///log.db#log", log_sample=0.25, explain="2")]


def test_the_predict_command_refuses_an_unknown_option_in_one_line_with_exit_code_2():
    proc = _command("predict", "churn", "--input", "rows.csv", "--output", "out.csv",
                    "--engine", "dask")
    assert proc.returncode == 2, proc.stderr
    assert "--engine 'dask' is not known: use local or spark" in proc.stderr
    assert "Traceback" not in proc.stderr
