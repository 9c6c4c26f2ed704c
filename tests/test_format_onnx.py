"""The ONNX format: conversions that agree with the native model, imports of foreign graphs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.errors import ConversionError, UserError
from modelport.formats.native import NativePredictor, classes_of, infer_task
from modelport.parity import compare
from modelport.signature import Signature

import zoo
from conftest import need_module


@pytest.fixture(autouse=True)
def onnx_extra():
    need_module("onnxruntime", "onnx")
    need_module("onnx", "onnx")
    need_module("skl2onnx", "onnx")


def _onnx():
    from modelport.formats import onnx

    return onnx


def _signature(model, frame) -> Signature:
    task = infer_task(model)
    return Signature.infer(frame, task, classes_of(model) if task == "classification" else None)


def _convert_and_load(model, frame):
    fmt = _onnx()
    signature = _signature(model, frame)
    predictor = fmt.load(fmt.convert(model, signature, frame), signature)
    return predictor, NativePredictor(model, signature)


def _layout(data: bytes):
    import onnx

    return _onnx()._stored_layout(onnx.load_from_string(data))


def _tree_pipeline(final):
    """Imputation and one-hot encoding only: trees need no scaling."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    categorical = Pipeline([
        ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
    ])
    pre = ColumnTransformer([
        ("num", SimpleImputer(strategy="median"), ["tenure", "charges", "calls", "usage"]),
        ("cat", categorical, ["plan", "contract"]),
    ])
    return Pipeline([("pre", pre), ("model", final)])


@pytest.mark.parametrize("name", zoo.NAMES)
def test_zoo_family_converts_and_matches_native_on_its_sample(name):
    if name in ("lightgbm", "xgboost"):
        need_module(name, "gbm")
    model, sample = zoo.build(name)
    predictor, native = _convert_and_load(model, sample)
    reference, got = native.run(sample), predictor.run(sample)
    parity = compare(reference, got, predictor.task, _onnx().TOLERANCE)
    assert parity["passed"], parity
    assert set(got) == set(reference)
    n = len(sample)
    if predictor.task == "classification":
        assert got["label"].dtype == np.asarray(predictor.classes).dtype
        assert got["proba"].dtype == np.float64 and got["proba"].shape == (n, 2)
    elif predictor.task == "regression":
        assert got["value"].dtype == np.float64 and got["value"].shape == (n,)
    else:
        assert got["cluster"].dtype == np.int64 and got["cluster"].shape == (n,)


def test_sgd_with_hinge_loss_gives_labels_but_no_probabilities():
    from sklearn.linear_model import SGDClassifier

    _, numeric, y, _ = zoo.data()
    model = SGDClassifier(loss="hinge", random_state=0).fit(numeric, y)
    predictor, native = _convert_and_load(model, numeric)
    assert not predictor.has_proba
    with pytest.raises(UserError, match="no probabilities"):
        predictor.predict_proba(numeric)
    np.testing.assert_array_equal(predictor.predict(numeric), model.predict(numeric))


@pytest.mark.parametrize("library", ["lightgbm", "xgboost"])
def test_gradient_boosting_library_inside_a_column_transformer_pipeline(library):
    need_module(library, "gbm")
    if library == "lightgbm":
        from lightgbm import LGBMClassifier

        final = LGBMClassifier(n_estimators=20, num_leaves=15, verbose=-1, random_state=0)
    else:
        from xgboost import XGBClassifier

        final = XGBClassifier(n_estimators=20, max_depth=4, random_state=0, n_jobs=1)
    mixed, _, y, _ = zoo.data()
    model = _tree_pipeline(final).fit(mixed, y)
    fmt = _onnx()
    signature = _signature(model, mixed)
    data = fmt.convert(model, signature, mixed)
    assert _layout(data).inputs == "columns"
    parity = compare(NativePredictor(model, signature).run(mixed),
                     fmt.load(data, signature).run(mixed), "classification", fmt.TOLERANCE)
    assert parity["passed"], parity


def test_string_labels_of_a_multiclass_pipeline_come_back_as_the_classes():
    from sklearn.linear_model import LogisticRegression

    mixed, numeric, y, _ = zoo.data()
    labels = np.array(["stay", "leave", "maybe"])[(y + (numeric["calls"] > 2)).to_numpy()]
    model = zoo._mixed_pipeline(LogisticRegression(max_iter=500)).fit(mixed, labels)
    predictor, native = _convert_and_load(model, mixed)
    got = predictor.run(mixed)
    np.testing.assert_array_equal(got["label"], model.predict(mixed))
    np.testing.assert_allclose(got["proba"], model.predict_proba(mixed), atol=1e-5)
    assert predictor.classes == ["leave", "maybe", "stay"]


def test_single_rows_score_like_the_native_model_including_missing_values():
    model, sample = zoo.build("pipeline")
    predictor, native = _convert_and_load(model, sample)
    rows = [
        {"tenure": 3, "charges": 99.5, "calls": 4, "usage": 12.25, "plan": "basic",
         "contract": "monthly"},
        {"tenure": 40, "charges": None, "calls": 0, "usage": None, "plan": None,
         "contract": "yearly"},
        {"tenure": 12, "charges": 20.0, "calls": 1, "usage": 3.5, "plan": "unheard-of",
         "contract": "monthly"},
    ]
    for row in rows:
        got, want = predictor.run(row), native.run(row)
        assert got["proba"].shape == (1, 2)
        np.testing.assert_allclose(got["proba"], want["proba"], atol=1e-5)
        np.testing.assert_array_equal(got["label"], want["label"])


def test_a_missing_category_is_imputed_not_treated_as_unknown():
    model, sample = zoo.build("pipeline")
    predictor, native = _convert_and_load(model, sample)
    row = dict(sample.iloc[0])
    missing = predictor.predict_proba({**row, "plan": None})
    unknown = predictor.predict_proba({**row, "plan": "unheard-of"})
    np.testing.assert_allclose(missing, native.predict_proba({**row, "plan": None}), atol=1e-5)
    # the training data had missing plans, imputed as "missing": a category of its own
    assert not np.allclose(missing, unknown, atol=1e-4)


def test_a_step_without_a_converter_is_named_in_the_error():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    _, numeric, y, _ = zoo.data()
    model = make_pipeline(FunctionTransformer(lambda x: x * 2),
                          LogisticRegression(max_iter=500)).fit(numeric, y)
    with pytest.raises(ConversionError, match=r"onnx: no converter for FunctionTransformer\(lambda\)"):
        _onnx().convert(model, _signature(model, numeric), numeric)


def test_log_model_rejects_an_onnx_conversion_that_drifts_over_tolerance():
    """Scaling in float32 moves some rows across a random forest's split thresholds."""
    from sklearn.ensemble import RandomForestClassifier

    mixed, _, y, _ = zoo.data()
    model = zoo._mixed_pipeline(RandomForestClassifier(n_estimators=50, random_state=0))
    model.fit(mixed, y)
    version = modelport.log_model(model, "drifting", sample=mixed, formats=["joblib", "onnx"])
    onnx_art = version.artefact("onnx")
    assert onnx_art.status == "rejected"
    assert "over tolerance" in onnx_art.reason
    assert onnx_art.parity["max_abs_diff"] > _onnx().TOLERANCE
    assert version.artefact("joblib").status == "accepted"
    with pytest.raises(UserError, match="rejected"):
        modelport.load("drifting", format="onnx")


def test_hist_gradient_boosting_pipeline_with_missing_values_runs_in_float64():
    """In float32 this pipeline flips 4 of 600 labels; in float64 it agrees."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    mixed, _, y, _ = zoo.data()
    model = zoo._mixed_pipeline(HistGradientBoostingClassifier(max_iter=30, random_state=0))
    model.fit(mixed, y)
    fmt = _onnx()
    signature = _signature(model, mixed)
    data = fmt.convert(model, signature, mixed)
    assert _layout(data).dtype == "float64"
    parity = compare(NativePredictor(model, signature).run(mixed),
                     fmt.load(data, signature).run(mixed), "classification", 1e-6)
    assert parity["passed"], parity


def test_hist_gradient_boosting_keeps_float64_thresholds_on_near_threshold_data():
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(1)
    # two-decimal values around 100000, where float32 resolution (0.0078) is coarser than
    # the distance from a value to its neighbouring split threshold (0.005)
    frame = pd.DataFrame(np.round(rng.uniform(1e5, 1e5 + 20, (2000, 4)), 2),
                         columns=["a", "b", "c", "d"])
    y = (frame["a"] + frame["b"] + rng.normal(0, 3, 2000) > 2e5 + 20).astype(int)
    model = HistGradientBoostingClassifier(max_iter=50, random_state=0).fit(frame, y)
    rounded = frame.astype(np.float32).astype(np.float64)
    assert not np.allclose(model.predict_proba(rounded), model.predict_proba(frame), atol=1e-4)

    version = modelport.log_model(model, "near", sample=frame, formats=["onnx"])
    assert version.artefact("onnx").status == "accepted", version.artefact("onnx").reason
    predictor = modelport.load("near", format="onnx")
    np.testing.assert_allclose(predictor.predict_proba(frame), model.predict_proba(frame),
                               atol=1e-6)


def test_registered_pipeline_loads_back_as_onnx():
    model, sample = zoo.build("pipeline")
    modelport.log_model(model, "churn", sample=sample, formats=["onnx"])
    predictor = modelport.load("churn", format="onnx")
    assert predictor.format == "onnx"
    np.testing.assert_allclose(predictor.predict_proba(sample.head(5)),
                               model.predict_proba(sample.head(5)), atol=1e-5)


def test_choosing_and_loading_onnx_for_serving_imports_no_converter():
    """A server picks its runtime and loads the artefact without skl2onnx or scikit-learn
    (importing the converter took seconds of every worker's start)."""
    import json
    import os
    import subprocess
    import sys

    model, sample = zoo.build("pipeline")
    modelport.log_model(model, "churn", sample=sample, formats=["onnx"])
    code = ("import sys, json\n"
            "from modelport.registry import Registry\n"
            "from modelport.scoring.choice import choose\n"
            "r = Registry(); v = r.get('churn'); fmt = choose(v, 'row').format\n"
            "proba = r.load(v, format=fmt).predict_proba(r.sample(v).head(3))\n"
            "print(json.dumps([fmt, 'skl2onnx' in sys.modules, 'sklearn' in sys.modules, "
            "proba.tolist()]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=os.environ, timeout=120)
    assert out.returncode == 0, out.stderr
    fmt, converter, sklearn, proba = json.loads(out.stdout)
    assert (fmt, converter, sklearn) == ("onnx", False, False)
    np.testing.assert_allclose(proba, model.predict_proba(sample.head(3)), atol=1e-5)


# ------------------------------------------------------------------- graphs made elsewhere


def _write_onnx(model, initial_types, path, **kwargs):
    from skl2onnx import convert_sklearn

    path.write_bytes(convert_sklearn(model, initial_types=initial_types,
                                     **kwargs).SerializeToString())
    return path


def test_importing_a_matrix_graph_with_zipmap_reads_columns_and_classes(tmp_path):
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    _, numeric, y, _ = zoo.data()
    labels = np.array(["stay", "leave", "maybe"])[(y + (numeric["calls"] > 2)).to_numpy()]
    X = numeric.to_numpy()
    model = LogisticRegression(max_iter=1000).fit(X, labels)
    # skl2onnx's defaults: probabilities as a ZipMap (a list of dicts)
    path = _write_onnx(model, [("input", FloatTensorType([None, 4]))], tmp_path / "m.onnx")

    signature = _onnx().inspect(path.read_bytes())
    assert signature.names == ["x0", "x1", "x2", "x3"]
    assert signature.task == "classification"
    assert signature.classes == ["leave", "maybe", "stay"]

    modelport.import_model(path, "foreign")
    predictor = modelport.load("foreign")
    assert predictor.format == "onnx"
    np.testing.assert_array_equal(predictor.predict(X), model.predict(X))
    np.testing.assert_allclose(predictor.predict_proba(X), model.predict_proba(X), atol=1e-5)


def test_importing_a_graph_with_one_input_per_column_reads_their_kinds(tmp_path):
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    _, numeric, y, _ = zoo.data()
    frame = numeric.assign(plan=np.where(numeric["calls"] > 1, "basic", "premium"))
    model = Pipeline([
        ("pre", ColumnTransformer([
            ("num", "passthrough", ["tenure", "charges", "calls", "usage"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ])),
        ("model", LogisticRegression(max_iter=1000)),
    ]).fit(frame, y)
    types = [(c, FloatTensorType([None, 1])) for c in numeric.columns]
    types.append(("plan", StringTensorType([None, 1])))
    path = _write_onnx(model, types, tmp_path / "cols.onnx",
                       options={id(model[-1]): {"zipmap": False}})

    signature = _onnx().inspect(path.read_bytes())
    assert signature.numeric == ["tenure", "charges", "calls", "usage"]
    assert signature.categorical == ["plan"]
    assert signature.classes == [0, 1]

    modelport.import_model(path, "cols", sample=frame.head(50))
    predictor = modelport.load("cols")
    np.testing.assert_allclose(predictor.predict_proba(frame), model.predict_proba(frame),
                               atol=1e-5)
    row = {**dict(frame.iloc[0]), "tenure": 7}
    np.testing.assert_allclose(predictor.predict_proba(row), model.predict_proba(
        pd.DataFrame([row])), atol=1e-5)


def test_importing_regressors_and_clusterers_reads_their_task(tmp_path):
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.cluster import KMeans
    from sklearn.linear_model import Ridge

    _, numeric, _, value = zoo.data()
    X = numeric.to_numpy()
    ridge = Ridge().fit(X, value)
    kmeans = KMeans(n_clusters=3, n_init=2, random_state=0).fit(X)
    types = [("X", FloatTensorType([None, 4]))]
    ridge_path = _write_onnx(ridge, types, tmp_path / "ridge.onnx")
    kmeans_path = _write_onnx(kmeans, types, tmp_path / "kmeans.onnx")

    assert _onnx().inspect(ridge_path.read_bytes()).task == "regression"
    assert _onnx().inspect(kmeans_path.read_bytes()).task == "clustering"
    modelport.import_model(ridge_path, "ridge")
    modelport.import_model(kmeans_path, "kmeans")
    np.testing.assert_allclose(modelport.load("ridge").predict(X), ridge.predict(X), rtol=1e-5)
    np.testing.assert_array_equal(modelport.load("kmeans").predict(X), kmeans.predict(X))


def test_inspect_refuses_bytes_that_are_not_onnx():
    with pytest.raises(UserError, match="not an ONNX model"):
        _onnx().inspect(b"definitely not protobuf \xff\xfe")


def test_inspect_reads_back_the_columns_of_a_modelport_artefact():
    model, sample = zoo.build("pipeline")
    fmt = _onnx()
    signature = _signature(model, sample)
    found = fmt.inspect(fmt.convert(model, signature, sample))
    assert found.names == signature.names
    assert found.categorical == ["plan", "contract"]
    assert (found.task, found.classes) == ("classification", [0, 1])
