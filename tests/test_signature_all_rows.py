"""Signatures and monitoring references come from every training row given: ranges,
vocabularies and reference counts cover the whole training set, read in chunks, while the
stored sample stays at most a thousand rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport import register
from modelport.datasets import churn
from modelport.errors import UserError
from modelport.monitor import reference as R
from modelport.register import fingerprint
from modelport.registry import Registry
from modelport.signature import InputProfile, Signature, ValueCounts

from conftest import need_module

ROWS = 20_000
TARGET = "churned"


@pytest.fixture(scope="module")
def training():
    frame = churn.generate(ROWS, seed=11)
    # a region of three customers, which a sample of a thousand rows would most likely miss
    frame.loc[[17, 9_003, 19_998], "region"] = "islands"
    return frame.drop(columns=["customer_id", TARGET]), frame[TARGET]


@pytest.fixture(scope="module")
def fitted(training):
    from sklearn.linear_model import LogisticRegression

    from modelport.train.preprocess import build_pipeline, column_kinds

    X, y = training
    numeric, categorical, _ = column_kinds(X, list(X.columns))
    return build_pipeline(LogisticRegression(max_iter=300), X, numeric, categorical).fit(X, y)


def assert_covers(signature: dict, X: pd.DataFrame) -> None:
    """Every numeric range is the data's own, every category of every row is known."""
    for col in signature["inputs"]:
        values = X[col["name"]]
        assert col.get("nullable", False) == bool(values.isna().any()), col["name"]
        if col["kind"] == "numeric":
            assert col["min"] == values.min() and col["max"] == values.max(), col["name"]
        else:
            assert set(col["categories"]) == set(values.dropna().astype(str)), col["name"]


def without_moments(stats: dict) -> dict:
    """Reference statistics without mean and std, which merging chunks rounds differently
    (and without the version they belong to)."""
    if isinstance(stats, dict):
        return {k: without_moments(v) for k, v in stats.items()
                if k not in ("mean", "std", "version")}
    return stats


def moments(stats: dict) -> list[float]:
    found = []
    for k, v in stats.items():
        if isinstance(v, dict):
            found += moments(v)
        elif k in ("mean", "std"):
            found.append(v)
    return found


# -- log_model ----------------------------------------------------------------------------

def test_a_model_logged_with_its_training_set_has_the_ranges_and_vocabulary_of_every_row(
        training, fitted):
    X, _ = training
    version = modelport.log_model(fitted, "churn", sample=X, formats=["joblib"])
    assert_covers(version.signature, X)
    region = next(c for c in version.signature["inputs"] if c["name"] == "region")
    assert "islands" in region["categories"]

    stored = Registry().sample(version)
    assert len(stored) == 1_000
    assert version.artefact("joblib").parity["rows"] == 1_000
    assert stored.merge(X.drop_duplicates(), how="left", indicator=True)["_merge"].eq(
        "both").all()
    assert version.data_fingerprint == fingerprint(X)


def test_the_stored_sample_is_the_same_for_the_same_training_set(training, fitted):
    X, _ = training
    first = modelport.log_model(fitted, "churn", sample=X, formats=["joblib"])
    second = modelport.log_model(fitted, "churn", sample=X, formats=["joblib"])
    assert first.sample_sha256 == second.sample_sha256


def test_the_monitoring_reference_counts_every_training_row(training, fitted):
    X, _ = training
    version = modelport.log_model(fitted, "churn", sample=X, formats=["joblib"])
    stats = R.load(Registry(), version)
    assert stats["rows"] == ROWS
    for name, feature in stats["features"].items():
        values = X[name]
        assert feature["rows"] == ROWS, name
        assert feature["missing"] == int(values.isna().sum()), name
        if feature["kind"] == "numeric":
            assert sum(feature["counts"]) + feature["missing"] == ROWS, name
            assert feature["min"] == values.min() and feature["max"] == values.max()
            assert feature["mean"] == pytest.approx(values.mean())
        else:
            assert feature["frequencies"] == values.value_counts().sort_index().to_dict()
    assert stats["features"]["region"]["frequencies"]["islands"] == 3
    labels = stats["prediction"]["label"]["frequencies"]
    assert sum(labels.values()) == ROWS
    assert stats["prediction"]["score"]["mean"] == pytest.approx(
        fitted.predict_proba(X)[:, 1].mean())


def test_registration_reads_the_training_set_in_chunks_with_the_same_result(
        training, fitted, monkeypatch):
    X, _ = training
    whole = modelport.log_model(fitted, "churn", sample=X, formats=["joblib"])
    chunks = []
    add = InputProfile.add
    monkeypatch.setattr(InputProfile, "add", lambda self, chunk: (chunks.append(len(chunk)),
                                                                 add(self, chunk))[1])
    monkeypatch.setattr(register, "CHUNK_ROWS", 3_000)
    chunked = modelport.log_model(fitted, "churn", sample=X, formats=["joblib"])

    assert chunks == [3_000] * 6 + [2_000]
    assert chunked.signature == whole.signature
    assert chunked.data_fingerprint == whole.data_fingerprint
    assert chunked.sample_sha256 == whole.sample_sha256
    registry = Registry()
    by_chunk, at_once = R.load(registry, chunked), R.load(registry, whole)
    assert without_moments(by_chunk) == without_moments(at_once)
    assert moments(by_chunk) == pytest.approx(moments(at_once), rel=1e-12)


# -- spec training ------------------------------------------------------------------------

def test_a_spec_trained_model_covers_its_whole_training_split(tmp_path):
    from sklearn.model_selection import train_test_split

    from modelport.io import write_table
    from modelport.train import train

    frame = churn.generate(6_000, seed=12)
    source = write_table(frame, tmp_path / "customers.parquet")
    spec = {
        "name": "churn", "task": "classification",
        "data": {"source": str(source), "target": TARGET, "id": "customer_id"},
        "model": {"estimator": "sklearn.linear_model.LogisticRegression",
                  "params": {"max_iter": 300}, "preprocess": "auto"},
        "validation": {"test_size": 0.25, "seed": 3},
        "metrics": ["roc_auc"], "formats": ["joblib"],
    }
    result = train(spec)

    # the split the spec makes: stratified, with its seed
    X = frame.drop(columns=["customer_id", TARGET])
    X_train, _ = train_test_split(X, test_size=0.25, random_state=3, stratify=frame[TARGET])
    assert result.rows_train == len(X_train) == 4_500
    assert_covers(result.version.signature, X_train)
    assert len(Registry().sample(result.version)) == 1_000
    stats = R.load(Registry(), result.version)
    assert stats["rows"] == 4_500
    assert all(f["rows"] == 4_500 for f in stats["features"].values())


# -- import_model ---------------------------------------------------------------------------

def test_an_imported_model_takes_ranges_from_every_row_and_proves_on_a_sub_sample(
        tmp_path, training):
    need_module("onnxruntime", "onnx")
    need_module("skl2onnx", "onnx")
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    X, y = training
    numbers = ["tenure_months", "monthly_charges", "support_calls"]
    X = X[[*numbers, "plan"]]
    model = Pipeline([
        ("pre", ColumnTransformer([("num", "passthrough", numbers),
                                   ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"])])),
        ("model", LogisticRegression(max_iter=300)),
    ]).fit(X, y)
    types = [(c, FloatTensorType([None, 1])) for c in numbers] + [
        ("plan", StringTensorType([None, 1]))]
    onnx = convert_sklearn(model, initial_types=types, target_opset=17,
                           options={id(model[-1]): {"zipmap": False}})
    path = tmp_path / "churn.onnx"
    path.write_bytes(onnx.SerializeToString())

    version = modelport.import_model(path, "imported", sample=X)
    assert_covers(version.signature, X)
    assert len(Registry().sample(version)) == 1_000
    stats = R.load(Registry(), version)
    assert stats["rows"] == ROWS
    assert stats["features"]["tenure_months"]["rows"] == ROWS
    assert sum(stats["prediction"]["label"]["frequencies"].values()) == ROWS


# -- the pieces ------------------------------------------------------------------------------

def test_a_signature_inferred_in_chunks_equals_one_inferred_at_once(training):
    X, _ = training
    X = X.assign(loyal=X["tenure_months"] > 24)
    at_once = Signature.infer(X, "classification", [0, 1], chunk_rows=len(X))
    for rows in (997, 1):
        part = X.head(3_000) if rows == 1 else X
        expected = at_once if rows != 1 else Signature.infer(part, "classification", [0, 1],
                                                             chunk_rows=len(part))
        assert Signature.infer(part, "classification", [0, 1],
                               chunk_rows=rows).to_dict() == expected.to_dict()
    kinds = {c.name: (c.dtype, c.kind) for c in at_once.inputs}
    assert kinds["tenure_months"] == ("int64", "numeric")
    assert kinds["age"] == ("float64", "numeric")
    assert kinds["loyal"] == ("bool", "numeric")
    assert kinds["plan"] == ("string", "categorical")


def test_an_empty_table_gives_its_columns_without_ranges():
    empty = pd.DataFrame({"x": pd.Series([], dtype="float64"),
                          "c": pd.Series([], dtype=object)})
    sig = Signature.infer(empty, "regression", chunk_rows=10)
    assert [(c.name, c.min, c.max, c.categories) for c in sig.inputs] == [
        ("x", None, None, None), ("c", None, None, [])]


def test_vocabularies_keep_the_most_frequent_values_with_ties_broken_by_value(monkeypatch):
    import modelport.signature as S

    monkeypatch.setattr(S, "MAX_CATEGORIES", 3)
    column = pd.Series(["d", "b", "a", "c", "c", "e", "b", "a", "zz", "zz"])
    for rows in (10, 3, 1):
        sig = Signature.infer(pd.DataFrame({"v": column}), "regression", chunk_rows=rows)
        # a, b, c, zz twice each: the first three in value order
        assert sig.inputs[0].categories == ["a", "b", "c"]

    counts = ValueCounts(limit=4)
    counts.add({"a": 5, "b": 1, "c": 1})
    counts.add({"d": 2, "e": 1})  # five distinct values: the rarest half is dropped
    assert counts.counts == {"a": 5, "d": 2}
    assert ValueCounts().most_common() == []


def test_chunks_with_another_dtype_are_refused_naming_the_column():
    profile = InputProfile()
    profile.add(pd.DataFrame({"tenure": [1, 2]}))
    with pytest.raises(UserError, match="'tenure' is int64 in one chunk and str"):
        profile.add(pd.DataFrame({"tenure": pd.Series(["3"], dtype="str")}))
    with pytest.raises(UserError, match="chunk_rows must be at least 1"):
        Signature.infer(pd.DataFrame({"x": [1.0]}), "regression", chunk_rows=0)


def test_reference_statistics_in_chunks_equal_those_at_once(training, fitted):
    X, _ = training
    signature = Signature.infer(X, "classification", [0, 1])
    predictor = lambda chunk: {"label": fitted.predict(chunk),  # noqa: E731
                               "proba": fitted.predict_proba(chunk)}
    at_once = R.compute(X, predictor(X), signature)
    by_chunk = R.compute_in_chunks(X, predictor, signature, chunk_rows=1_234)
    assert without_moments(by_chunk) == without_moments(at_once)
    assert moments(by_chunk) == pytest.approx(moments(at_once), rel=1e-12)
    assert by_chunk["rows"] == ROWS


def test_a_number_beyond_the_kept_values_is_summed_up_from_a_sub_sample_the_same_however_chunked():
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(10, 2, 50_000), [np.nan] * 100])
    summaries = []
    for parts in (1, 7, 50):
        s = R.NumericSummary(keep=5_000)
        for part in np.array_split(x, parts):
            s.add(part)
        summaries.append(s.result())
    assert without_moments(summaries[0]) == without_moments(summaries[1]) == \
        without_moments(summaries[2])
    stats = summaries[0]
    exact = R.numeric(x)  # every value held
    assert stats["rows"] == 50_100 and stats["missing"] == 100
    assert sum(stats["counts"]) == 50_000
    assert stats["min"] == exact["min"] and stats["max"] == exact["max"]
    assert stats["quantiles"][0] == exact["min"] and stats["quantiles"][-1] == exact["max"]
    assert stats["mean"] == pytest.approx(exact["mean"]) and stats["std"] == pytest.approx(
        exact["std"])
    np.testing.assert_allclose(stats["edges"], exact["edges"], atol=0.1)


def test_a_discrete_number_beyond_the_kept_values_keeps_exact_counts_and_edges():
    rng = np.random.default_rng(6)
    x = rng.poisson(3, 30_000).astype(float)
    s = R.NumericSummary(keep=1_000)
    for part in np.array_split(x, 9):
        s.add(part)
    stats, exact = s.result(), R.numeric(x)
    for key in ("edges", "counts", "values", "value_counts", "min", "max"):
        assert stats[key] == exact[key], key


def test_category_counts_read_values_as_the_signature_does():
    stats = R.categorical([2.0, "2", 2, None, float("nan"), "b", True, True])
    assert stats == {"kind": "categorical", "rows": 8, "missing": 2,
                     "frequencies": {"2": 3, "True": 2, "b": 1}}
    # True and 1 hash alike in pandas, but read as different words
    assert R.categorical([True, 1, 1.0])["frequencies"] == {"1": 2, "True": 1}
