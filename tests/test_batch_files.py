"""Batch scoring into files: the scores are the model's, whatever the input kind, chunking or
worker count, and the id and row order are kept."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelport.errors import UserError
from modelport.io.chunks import open_source
from modelport.registry import Registry
from modelport.serve.batch import predict

NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls",
           "data_usage_gb", "age"]
CATEGORICAL = ["plan", "contract", "payment_method", "region"]


@pytest.fixture(scope="module")
def churn_model(tmp_path_factory):
    """A registered one-hot + logistic churn pipeline, customers to score, and its registry."""
    from sklearn.linear_model import LogisticRegression

    import modelport
    from modelport.datasets import churn
    from modelport.train.preprocess import build_pipeline

    home = tmp_path_factory.mktemp("batch-home")
    registry = Registry(f"sqlite:///{home / 'registry.db'}", str(home / "artefacts"))
    data = churn.generate(12_000, seed=3)
    X = data.drop(columns=["customer_id", "churned"])
    model = build_pipeline(LogisticRegression(max_iter=300), X, NUMERIC, CATEGORICAL)
    model.fit(X.head(3000), data["churned"].head(3000))
    modelport.log_model(model, "churn", sample=X.head(300), formats=["joblib", "onnx"],
                        registry=registry)
    customers = data.drop(columns=["churned"])
    path = home / "customers.parquet"
    customers.to_parquet(path, index=False, row_group_size=2500)
    return registry, customers, path


def _reference(registry, customers) -> np.ndarray:
    return registry.load("churn", format="joblib").predict_proba(customers)[:, 1]


def test_parquet_scores_equal_the_native_model_with_ids_kept(churn_model, tmp_path):
    registry, customers, path = churn_model
    out = tmp_path / "scores.parquet"
    result = predict("churn", path, out, id="customer_id", workers=1, chunk_rows=1000,
                     registry=registry)
    scores = pd.read_parquet(out)
    assert result.rows == len(customers) and result.rejects == 0
    # a Parquet input is cut at its row groups: each 2,500-row group is a piece of its own,
    # read by the worker in batches of 1,000
    assert result.format == "onnx" and result.chunks == 5
    assert list(scores.columns) == ["customer_id", "label", "score", "proba_0", "proba_1"]
    assert scores["customer_id"].tolist() == customers["customer_id"].tolist()
    np.testing.assert_allclose(scores["score"], _reference(registry, customers), atol=1e-5)
    np.testing.assert_allclose(scores["proba_0"] + scores["proba_1"], 1.0, atol=1e-6)
    assert ((scores["score"] >= 0.5) == (scores["label"] == 1)).all()
    assert not (tmp_path / ".scores.parquet.parts").exists()


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_two_workers_give_the_same_file_as_one_in_input_order(churn_model, tmp_path, start,
                                                               monkeypatch):
    registry, customers, path = churn_model
    one, two = tmp_path / "one.parquet", tmp_path / "two.parquet"
    predict("churn", path, one, workers=1, chunk_rows=700, registry=registry)
    # forked workers inherit the loaded model; spawned ones load it themselves
    monkeypatch.setenv("MODELPORT_BATCH_START", start)
    result = predict("churn", path, two, workers=2, chunk_rows=700, registry=registry)
    assert result.workers == 2
    a, b = pq.read_table(one), pq.read_table(two)
    assert a.equals(b)
    assert "customer_id" not in a.column_names
    np.testing.assert_allclose(a.column("score").to_numpy(), _reference(registry, customers),
                               atol=1e-5)


def test_csv_jsonl_folder_and_sql_inputs_score_alike(churn_model, tmp_path):
    registry, customers, path = churn_model
    expected = _reference(registry, customers)
    head = customers.head(3000)
    csv_in = tmp_path / "in.csv"
    head.to_csv(csv_in, index=False)
    jsonl_in = tmp_path / "in.jsonl"
    head.to_json(jsonl_in, orient="records", lines=True)
    folder = tmp_path / "folder"
    folder.mkdir()
    head.iloc[:1700].to_parquet(folder / "a.parquet", index=False)
    head.iloc[1700:].to_parquet(folder / "b.parquet", index=False)
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        head.sample(frac=1.0, random_state=0).to_sql("customers", conn, index=False)
    inputs = {
        "csv": (csv_in, tmp_path / "o.csv", pd.read_csv),
        "jsonl": (jsonl_in, tmp_path / "o.jsonl", lambda p: pd.read_json(p, lines=True)),
        "folder": (folder, tmp_path / "o_folder.parquet", pd.read_parquet),
        "table": (f"sqlite:///{db}#customers", tmp_path / "o_table.parquet", pd.read_parquet),
        "query": (f"sqlite:///{db}#SELECT * FROM customers WHERE tenure_months >= 0",
                  tmp_path / "o_query.parquet", pd.read_parquet),
    }
    for kind, (src, out, read) in inputs.items():
        result = predict("churn", src, out, id="customer_id", workers=1, chunk_rows=400,
                         registry=registry)
        got = read(out).sort_values("customer_id").reset_index(drop=True)
        assert result.rows == len(got), kind
        assert got["customer_id"].tolist() == sorted(head["customer_id"]), kind
        np.testing.assert_allclose(got["score"], expected[:3000], atol=1e-5, err_msg=kind)
    # a table is read in id order, so its chunks do not depend on how rows were stored
    table_scores = pd.read_parquet(tmp_path / "o_table.parquet")
    assert table_scores["customer_id"].is_monotonic_increasing


def test_jsonl_output_holds_one_object_per_row(churn_model, tmp_path):
    registry, customers, path = churn_model
    out = tmp_path / "scores.jsonl"
    predict("churn", path, out, id="customer_id", workers=1, chunk_rows=5000,
            registry=registry)
    lines = out.read_text().splitlines()
    assert len(lines) == len(customers)
    first = json.loads(lines[0])
    assert set(first) == {"customer_id", "label", "score", "proba_0", "proba_1"}


def test_format_flag_forces_a_runtime(churn_model, tmp_path):
    registry, customers, path = churn_model
    out = tmp_path / "joblib.parquet"
    result = predict("churn", path, out, id="customer_id", workers=1, chunk_rows=4000,
                     format="joblib", registry=registry)
    assert result.format == "joblib"
    np.testing.assert_allclose(pd.read_parquet(out)["score"], _reference(registry, customers),
                               rtol=0, atol=1e-12)
    with pytest.raises(UserError, match="no accepted pmml artefact"):
        predict("churn", path, tmp_path / "x.parquet", format="pmml", registry=registry)


def test_chunk_boundaries_are_the_same_when_resuming(churn_model, tmp_path):
    _, customers, path = churn_model
    csv_path = tmp_path / "c.csv"
    customers.head(5000).to_csv(csv_path, index=False)
    for src in (path, csv_path):
        full = list(open_source(src, 900).chunks())
        later = list(open_source(src, 900).chunks(skip=3))
        assert [c.num_rows for c in full][-1] == (len(pa.concat_tables(full)) % 900 or 900)
        assert len(later) == len(full) - 3
        for a, b in zip(full[3:], later, strict=True):
            assert a.equals(b)


def test_the_rows_checked_before_a_job_are_the_start_of_the_first_chunk(churn_model, tmp_path):
    """A Parquet source checks a short head (its types are the file's); others check the
    whole first chunk. An empty first file is passed over; an empty source has no head."""
    _, customers, path = churn_model
    csv_path = tmp_path / "c.csv"
    customers.head(5000).to_csv(csv_path, index=False)
    for src, rows in ((path, 2048), (csv_path, 4000)):
        source = open_source(src, 4000, dictionaries=["plan"])
        head, first = source.head(), next(iter(source.chunks()))
        assert head.num_rows == rows
        assert head.equals(first.slice(0, rows))
    folder = tmp_path / "parts"
    folder.mkdir()
    customers.head(0).to_parquet(folder / "a.parquet")
    customers.head(10).to_parquet(folder / "b.parquet")
    assert open_source(folder, 4000).head().equals(next(iter(open_source(folder, 4000).chunks())))
    assert open_source(folder / "a.parquet", 4000).head() is None
    # a number column stored as text is parsed value by value: the whole first chunk
    text = tmp_path / "text.parquet"
    customers.head(5000).astype({"age": str}).to_parquet(text)
    assert open_source(text, 4000).head(["age"]).num_rows == 4000
    assert open_source(text, 4000).head(["tenure_months"]).num_rows == 2048


def test_a_bad_number_in_a_text_parquet_column_fails_before_any_output(churn_model, tmp_path):
    registry, customers, _ = churn_model
    src = tmp_path / "in.parquet"
    bad = customers.head(5000).astype({"age": str})
    bad.loc[3000, "age"] = "old"
    bad.to_parquet(src)
    with pytest.raises(UserError, match="'old'"):
        predict("churn", src, tmp_path / "scores.parquet", id="customer_id", workers=1,
                chunk_rows=4000, registry=registry)
    assert not any(p.name.startswith(("scores", ".scores")) for p in tmp_path.iterdir())


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_gradient_boosting_scores_with_trees_compiled_to_c_as_the_native_model(
        tmp_path, start, monkeypatch):
    from sklearn.ensemble import HistGradientBoostingClassifier

    import modelport
    from modelport.datasets import churn
    from modelport.serve import batch
    from modelport.train.preprocess import build_pipeline

    from conftest import unavailable

    if shutil.which("cc") is None:
        unavailable("no C compiler (cc) to build compiled trees with")
    monkeypatch.setenv("MODELPORT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(batch, "_PREDICTOR", None)  # a model loaded here by an earlier test
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}", str(tmp_path / "artefacts"))
    data = churn.generate(6_000, seed=5)
    X = data.drop(columns=["customer_id", "churned"])
    model = build_pipeline(HistGradientBoostingClassifier(max_iter=40, random_state=0), X,
                           NUMERIC, CATEGORICAL).fit(X.head(3000), data["churned"].head(3000))
    modelport.log_model(model, "gbm", sample=X.head(300), formats=["joblib", "compiled"],
                        registry=registry)
    path = tmp_path / "customers.parquet"
    data.drop(columns=["churned"]).to_parquet(path, index=False, row_group_size=1500)
    one, two, walked = (tmp_path / f"{n}.parquet" for n in ("one", "two", "walked"))

    result = predict("gbm", path, one, id="customer_id", workers=1, chunk_rows=1000,
                     registry=registry)
    assert result.format == "compiled"
    # in this process: the trees run in the compiled library, built into the cache
    assert getattr(batch._PREDICTOR._prepared._program.model_node.native, "library", None)
    assert list((tmp_path / "cache" / "trees").glob("*.so"))
    monkeypatch.setenv("MODELPORT_BATCH_START", start)
    predict("gbm", path, two, id="customer_id", workers=2, chunk_rows=1000, registry=registry)
    monkeypatch.setenv("MODELPORT_TREES", "numpy")
    predict("gbm", path, walked, id="customer_id", workers=2, chunk_rows=1000,
            registry=registry)

    a, b, w = (pd.read_parquet(p) for p in (one, two, walked))
    pd.testing.assert_frame_equal(a, b)
    np.testing.assert_allclose(a["score"], w["score"], rtol=0, atol=1e-12)
    assert a["customer_id"].tolist() == data["customer_id"].tolist()
    native = model.predict_proba(X)[:, 1]
    np.testing.assert_allclose(a["score"], native, rtol=0, atol=1e-9)


def test_a_small_file_is_scored_in_this_process_without_pandas_or_scikit_learn(churn_model,
                                                                               tmp_path):
    """Start-up: a file too small to split is scored here rather than by workers, and a
    compiled or ONNX artefact is read, checked and scored without importing pandas or
    scikit-learn (pyarrow imports pandas on some conversions of Python values)."""
    import os
    import subprocess
    import sys

    registry, customers, _ = churn_model
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    customers.head(10).to_csv(small, index=False)
    customers.to_csv(large, index=False)
    assert predict("churn", small, tmp_path / "a.csv", registry=registry).workers == 1
    assert predict("churn", large, tmp_path / "b.csv", registry=registry,
                   chunk_rows=5000).workers == (os.cpu_count() or 1)
    home = registry.url.removeprefix("sqlite:///").rsplit("/", 1)[0]
    code = ("import sys\nfrom modelport.cli import main\n"
            f"sys.argv = ['modelport', 'predict', 'churn', '--input', {str(small)!r}, "
            f"'--output', {str(tmp_path / 'c.csv')!r}, '--format', 'onnx']\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print(sorted(m for m in ('pandas', 'sklearn') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ,
                                            "MODELPORT_REGISTRY": registry.url,
                                            "MODELPORT_ARTIFACTS": f"{home}/artefacts"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
    got = pd.read_csv(tmp_path / "c.csv")["score"].to_numpy()
    np.testing.assert_allclose(got, _reference(registry, customers.head(10)), atol=1e-5)
