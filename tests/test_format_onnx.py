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


# ------------------------------------------------- task, classes, external data, bad files


def _softmax_graph(width: int = 4, classes: int = 3, softmax: bool = True):
    """A graph shaped like PyTorch's export of a classifier: one [batch, k] input and, as
    its only output, the probabilities (or, without softmax, the logits)."""
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(3).normal(size=(width, classes)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["logits" if softmax else "probs"])]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
    graph = helper.make_graph(
        nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", classes])],
        initializer=[numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="pytorch")
    model.ir_version = 8
    return model, weights


def _softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_a_probability_only_graph_is_a_classifier_when_the_task_or_classes_say_so(tmp_path):
    import warnings

    model, weights = _softmax_graph()
    data = model.SerializeToString()
    fmt = _onnx()
    assert fmt.inspect(data).task == "regression"  # nothing in the graph says otherwise
    with pytest.warns(UserWarning, match=r"classes 0\.\.2"):
        assert fmt.inspect(data, task="classification").classes == [0, 1, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        named = fmt.inspect(data, classes=["low", "mid", "high"])
    assert (named.task, named.classes) == ("classification", ["low", "mid", "high"])

    path = tmp_path / "net.onnx"
    path.write_bytes(data)
    modelport.import_model(path, "net", classes=["low", "mid", "high"])
    predictor = modelport.load("net")
    X = np.random.default_rng(4).normal(size=(20, 4))
    expected = _softmax(X.astype(np.float32) @ weights)
    np.testing.assert_allclose(predictor.predict_proba(X), expected, atol=1e-6)
    np.testing.assert_array_equal(predictor.predict(X),
                                  np.array(["low", "mid", "high"])[expected.argmax(axis=1)])
    # three rows give three labels and a 3 x 3 matrix, not nine values
    assert predictor.predict(X[:3]).shape == (3,)
    assert predictor.predict_proba(X[:3]).shape == (3, 3)

    with pytest.warns(UserWarning, match=r"0\.\.2"):
        v = modelport.import_model(path, "net", task="classification")
    assert v.signature["classes"] == [0, 1, 2]
    assert v.artefact("onnx").parity["notes"]


def test_classes_that_contradict_the_graph_are_refused(tmp_path):
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    _, numeric, y, _ = zoo.data()
    X = numeric.to_numpy()
    labelled = _write_onnx(LogisticRegression(max_iter=500).fit(X, y),
                           [("X", FloatTensorType([None, 4]))], tmp_path / "lr.onnx")
    fmt = _onnx()
    # the same classes, as the command line reads them, keep the graph's own values
    assert fmt.inspect(labelled.read_bytes(), classes=["0", "1"]).classes == [0, 1]
    with pytest.raises(UserError, match="differ from the classes the ONNX graph names"):
        fmt.inspect(labelled.read_bytes(), classes=["no", "yes"])

    probs = _softmax_graph()[0].SerializeToString()
    with pytest.raises(UserError, match="names 2 classes but .* gives 3"):
        fmt.inspect(probs, classes=["a", "b"])
    with pytest.raises(UserError, match="task is regression"):
        fmt.inspect(probs, task="regression", classes=["a", "b", "c"])
    one_column = _softmax_graph(classes=1, softmax=False)[0].SerializeToString()
    with pytest.raises(UserError, match="has 1 column"):
        fmt.inspect(one_column, task="classification")


def test_logits_imported_as_probabilities_are_refused_on_the_sample(tmp_path):
    model, _ = _softmax_graph(softmax=False)
    path = tmp_path / "logits.onnx"
    path.write_bytes(model.SerializeToString())
    sample = pd.DataFrame(np.random.default_rng(5).normal(size=(30, 4)) * 3,
                          columns=["x0", "x1", "x2", "x3"])
    with pytest.raises(UserError, match="not probabilities"):
        modelport.import_model(path, "logits", classes=["a", "b", "c"], sample=sample)
    assert modelport.Registry().list_models() == []


def _save_split(model, folder):
    """The model as PyTorch's exporter writes it: net.onnx plus net.onnx.data."""
    import onnx

    folder.mkdir()
    onnx.save_model(model, str(folder / "net.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="net.onnx.data", size_threshold=0)
    assert (folder / "net.onnx.data").is_file()
    return folder / "net.onnx"


def test_external_data_is_folded_into_a_self_contained_artefact(tmp_path):
    import shutil

    import onnx

    model, weights = _softmax_graph()
    path = _save_split(model, tmp_path / "export")
    with pytest.raises(UserError, match="external data|keeps its weights"):
        _onnx().inspect(path.read_bytes())  # bytes alone cannot reach their data

    by_file = modelport.import_model(path, "net", classes=["a", "b", "c"])
    by_folder = modelport.import_model(path.parent, "net", classes=["a", "b", "c"])
    registry = modelport.Registry()
    stored = registry.read_artefact(by_folder, "onnx")
    assert stored == registry.read_artefact(by_file, "onnx")
    proto = onnx.load_from_string(stored)
    assert [t.data_location for t in proto.graph.initializer] == [onnx.TensorProto.DEFAULT]

    shutil.rmtree(path.parent)  # nothing beside the registry is needed to serve it
    X = np.random.default_rng(6).normal(size=(5, 4))
    np.testing.assert_allclose(modelport.load("net/2").predict_proba(X),
                               _softmax(X.astype(np.float32) @ weights), atol=1e-6)


def test_a_missing_data_file_or_an_oversized_model_is_a_user_error(tmp_path, monkeypatch):
    model, _ = _softmax_graph()
    path = _save_split(model, tmp_path / "export")
    (path.parent / "net.onnx.data").rename(tmp_path / "elsewhere.data")
    with pytest.raises(UserError, match=r"net\.onnx\.data.*put the data file"):
        modelport.import_model(path, "net", task="classification")

    (tmp_path / "elsewhere.data").rename(path.parent / "net.onnx.data")
    monkeypatch.setattr(_onnx(), "_PROTOBUF_LIMIT", 16)
    with pytest.raises(UserError, match="cannot exceed 2 GiB"):
        modelport.import_model(path, "net", task="classification")

    (tmp_path / "two").mkdir()
    for name in ("a.onnx", "b.onnx"):
        (tmp_path / "two" / name).write_bytes(model.SerializeToString())
    with pytest.raises(UserError, match="holds 2 .onnx files"):
        modelport.import_model(tmp_path / "two", "net")


def _cli(*args: str):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "modelport", *args], capture_output=True,
                          text=True, env=os.environ.copy(), timeout=120)


def test_import_command_takes_task_and_classes_and_says_what_it_assumed(tmp_path):
    path = tmp_path / "net.onnx"
    path.write_bytes(_softmax_graph()[0].SerializeToString())
    named = _cli("import", str(path), "--name", "net", "--classes", "0,1,2")
    assert named.returncode == 0, named.stderr
    assumed = _cli("import", str(path), "--name", "net", "--task", "classification")
    assert assumed.returncode == 0, assumed.stderr
    assert "note:" in assumed.stderr and "0..2" in assumed.stderr
    for version in ("net/1", "net/2"):
        predictor = modelport.load(version)
        assert (predictor.task, predictor.classes) == ("classification", [0, 1, 2])


def test_graphs_that_cannot_be_read_give_one_line_and_exit_code_2(tmp_path):
    import onnx

    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(_softmax_graph()[0].SerializeToString()[:40])
    future = _softmax_graph()[0]
    future.opset_import[0].version = 99
    onnx.save_model(future, str(tmp_path / "future.onnx"))
    unknown = _softmax_graph()[0]
    unknown.graph.node[0].op_type = "NoSuchOperator"
    onnx.save_model(unknown, str(tmp_path / "unknown.onnx"))
    split = _save_split(_softmax_graph()[0], tmp_path / "split")
    (split.parent / "net.onnx.data").unlink()
    cases = {"corrupt.onnx": "is not an ONNX model", "future.onnx": "opset 99",
             "unknown.onnx": "NoSuchOperator", "split/net.onnx": "net.onnx.data"}
    for name, reason in cases.items():
        out = _cli("import", str(tmp_path / name), "--name", "bad", "--task", "classification")
        assert out.returncode == 2, (name, out.stderr)
        assert "Traceback" not in out.stderr, out.stderr
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("modelport: error:"), out.stderr
        assert reason in lines[0], (name, lines[0])
