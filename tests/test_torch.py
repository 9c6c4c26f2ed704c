"""PyTorch modules: logged as their ONNX export, proven against the module, served anywhere.

A small MLP classifier and regressor are trained for a few steps on synthetic data, logged
with ``log_model``, then scored over HTTP (the in-process ASGI app), in batch and through
``modelport.load`` on rows they were not trained on, each compared with the module itself.
"""

from __future__ import annotations

import asyncio
import warnings

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.errors import UserError
from modelport.formats.onnx import TOLERANCE

from conftest import need_module

torch = need_module("torch", "torch")
need_module("onnxscript", "torch")
need_module("onnxruntime", "onnx")
need_module("onnx", "onnx")

COLUMNS = ["tenure", "charges", "calls", "usage"]
CLASSES = ["stay", "downgrade", "leave"]


def _data(n: int = 600, seed: int = 7):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, len(COLUMNS))), columns=COLUMNS)
    score = X["tenure"] - X["charges"] * X["calls"] + 0.3 * rng.normal(size=n)
    label = np.digitize(score, [-0.5, 0.5])  # three classes
    value = 3 * X["tenure"] - 2 * X["usage"] ** 2 + X["calls"] + 0.1 * rng.normal(size=n)
    return X, label, value.to_numpy()


def _train(net, X, target, loss, steps: int = 60):
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(net.parameters(), lr=0.02)
    x = torch.tensor(X.to_numpy(), dtype=torch.float32)
    for _ in range(steps):
        optimiser.zero_grad()
        loss(net(x), target).backward()
        optimiser.step()
    return net


def _mlp(outputs: int, *extra):
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(len(COLUMNS), 32), torch.nn.ReLU(),
                               torch.nn.Dropout(0.1), torch.nn.Linear(32, outputs), *extra)


@pytest.fixture(scope="module")
def data():
    X, label, value = _data()
    return X.iloc[:400], label[:400], value[:400], X.iloc[400:].reset_index(drop=True)


@pytest.fixture(scope="module")
def classifier(data):
    X, label, _, _ = data
    return _train(_mlp(3), X, torch.tensor(label), torch.nn.functional.cross_entropy)


@pytest.fixture(scope="module")
def regressor(data):
    X, _, value, _ = data
    target = torch.tensor(value, dtype=torch.float32).reshape(-1, 1)
    return _train(_mlp(1), X, target, torch.nn.functional.mse_loss, steps=80)


def _module_proba(net, X) -> np.ndarray:
    net.eval()
    with torch.no_grad():
        logits = net(torch.tensor(X.to_numpy(), dtype=torch.float32))
    return torch.softmax(logits.double(), dim=1).numpy()


def _module_values(net, X) -> np.ndarray:
    net.eval()
    with torch.no_grad():
        return net(torch.tensor(X.to_numpy(), dtype=torch.float32)).double().numpy().ravel()


def _http(app, path: str, body):
    httpx = need_module("httpx", "dev")

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(path, json=body)

    return asyncio.run(go())


def _batch(uri: str, rows: pd.DataFrame, tmp_path) -> pd.DataFrame:
    from modelport.serve.batch import predict

    source = tmp_path / "rows.csv"
    rows.rename_axis("row_id").reset_index().to_csv(source, index=False)
    out = tmp_path / "scores.parquet"
    predict(uri, str(source), str(out), id="row_id", workers=1)
    return pd.read_parquet(out).sort_values("row_id").reset_index(drop=True)


def test_classifier_is_registered_as_onnx_proven_against_the_module(data, classifier):
    X, _, _, unseen = data
    classifier.train()
    v = modelport.log_model(classifier, "churn", sample=X, task="classification",
                            classes=CLASSES, metrics={"accuracy": 0.9})
    assert classifier.training  # the module's mode is the caller's, before and after
    assert v.native_format == "onnx" and v.accepted_formats() == ["onnx"]
    parity = v.artefact("onnx").parity
    assert parity["passed"] and parity["rows"] == len(X) and parity["label_flips"] == 0
    assert parity["max_abs_diff"] <= TOLERANCE
    assert v.params == {"output": "logits"}
    assert v.signature["classes"] == CLASSES
    assert [c["name"] for c in v.signature["inputs"]] == COLUMNS

    predictor = modelport.load("churn")
    assert predictor.format == "onnx"
    expected = _module_proba(classifier, unseen)
    np.testing.assert_allclose(predictor.predict_proba(unseen), expected, atol=TOLERANCE)
    np.testing.assert_array_equal(predictor.predict(unseen),
                                  np.array(CLASSES)[expected.argmax(axis=1)])


def test_classifier_serves_over_http_and_in_batch_like_the_module(data, classifier, tmp_path):
    need_module("orjson", "http")
    need_module("prometheus_client", "http")
    from modelport.serve.http import create_app

    X, _, _, unseen = data
    modelport.log_model(classifier, "churn", sample=X, task="classification",
                        classes=CLASSES, alias="production")
    expected = _module_proba(classifier, unseen)

    app = create_app(["churn@production"], registry=modelport.Registry(), poll_seconds=0)
    records = unseen.head(25).to_dict("records")
    answer = _http(app, "/predict/churn", records)
    assert answer.status_code == 200, answer.text
    served = answer.json()["predictions"]
    proba = np.array([[p["proba"][c] for c in CLASSES] for p in served])
    np.testing.assert_allclose(proba, expected[:25], atol=TOLERANCE)
    assert [p["label"] for p in served] == list(np.array(CLASSES)[expected[:25].argmax(1)])

    scores = _batch("churn@production", unseen, tmp_path)
    assert len(scores) == len(unseen)
    columns = [f"proba_{c}" for c in CLASSES]
    np.testing.assert_allclose(scores[columns].to_numpy(), expected, atol=TOLERANCE)
    assert list(scores["label"]) == list(np.array(CLASSES)[expected.argmax(axis=1)])


def test_regressor_serves_over_http_and_in_batch_like_the_module(data, regressor, tmp_path):
    need_module("orjson", "http")
    need_module("prometheus_client", "http")
    from modelport.serve.http import create_app

    X, _, _, unseen = data
    v = modelport.log_model(regressor, "spend", sample=X.to_numpy(), task="regression")
    assert v.task == "regression" and v.params == {}
    assert [c["name"] for c in v.signature["inputs"]] == ["x0", "x1", "x2", "x3"]
    expected = _module_values(regressor, unseen)
    scale = np.maximum(1.0, np.abs(expected))

    np.testing.assert_allclose(modelport.load("spend").predict(unseen.to_numpy()) / scale,
                               expected / scale, atol=TOLERANCE)
    app = create_app(["spend"], registry=modelport.Registry(), poll_seconds=0)
    records = [dict(zip(["x0", "x1", "x2", "x3"], row, strict=True))
               for row in unseen.head(10).to_numpy().tolist()]
    answer = _http(app, "/predict/spend", records)
    assert answer.status_code == 200, answer.text
    served = np.array([p["value"] for p in answer.json()["predictions"]])
    np.testing.assert_allclose(served / scale[:10], expected[:10] / scale[:10], atol=TOLERANCE)

    renamed = unseen.set_axis(["x0", "x1", "x2", "x3"], axis=1)
    scores = _batch("spend", renamed, tmp_path)
    np.testing.assert_allclose(scores["value"] / scale, expected / scale, atol=TOLERANCE)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_exported_modules_pass_the_predictor_conformance_suite(data, kind, request):
    from modelport.formats.pytorch import TorchPredictor
    from modelport.testing import check_predictor

    X, _, _, unseen = data
    module = request.getfixturevalue(kind)
    options = ({"task": "classification", "classes": CLASSES} if kind == "classifier"
               else {"task": "regression"})
    modelport.log_model(module, "net", sample=X, **options)
    predictor = modelport.load("net")
    output = "logits" if kind == "classifier" else None
    reference = TorchPredictor(module, predictor.signature, output)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # unseen rows outside training ranges
        check_predictor(predictor, reference, unseen, TOLERANCE)


def test_probability_modules_and_single_logit_binary_classifiers(data):
    X, label, _, unseen = data
    softmaxed = _train(_mlp(3, torch.nn.Softmax(dim=1)), X, torch.tensor(label),
                       lambda p, y: torch.nn.functional.nll_loss(torch.log(p), y))
    with pytest.raises(UserError, match="output='proba'"):
        modelport.log_model(softmaxed, "probs", sample=X, task="classification",
                            classes=CLASSES)
    modelport.log_model(softmaxed, "probs", sample=X, task="classification", classes=CLASSES,
                        output="proba")
    softmaxed.eval()
    with torch.no_grad():
        expected = softmaxed(torch.tensor(unseen.to_numpy(), dtype=torch.float32)).numpy()
    np.testing.assert_allclose(modelport.load("probs").predict_proba(unseen), expected,
                               atol=TOLERANCE)

    binary = _train(_mlp(1), X, torch.tensor(label > 0, dtype=torch.float32).reshape(-1, 1),
                    torch.nn.functional.binary_cross_entropy_with_logits)
    with pytest.raises(UserError, match="not probabilities"):
        modelport.log_model(binary, "binary", sample=X, task="classification",
                            output="proba")
    with pytest.warns(UserWarning, match=r"0\.\.1"):
        v = modelport.log_model(binary, "binary", sample=X, task="classification")
    assert v.signature["classes"] == [0, 1]
    binary.eval()
    with torch.no_grad():
        p = torch.sigmoid(binary(torch.tensor(unseen.to_numpy(), dtype=torch.float32)))
    p = p.double().numpy().ravel()
    np.testing.assert_allclose(modelport.load("binary").predict_proba(unseen),
                               np.column_stack([1 - p, p]), atol=TOLERANCE)


def test_what_a_module_cannot_be_registered_with_is_named(data, classifier):
    X, _, _, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(UserError, match="task='classification' or 'regression'"):
            modelport.log_model(classifier, "m", sample=X)
        with pytest.raises(UserError, match="needs sample="):
            modelport.log_model(classifier, "m", task="classification")
        with pytest.raises(UserError, match="not numbers"):
            modelport.log_model(classifier, "m", sample=X.assign(plan="basic"),
                                task="classification")
        with pytest.raises(UserError, match="names 2 classes"):
            modelport.log_model(classifier, "m", sample=X, task="classification",
                                classes=["a", "b"])
        with pytest.raises(UserError, match="one output"):
            modelport.log_model(classifier, "m", sample=X, task="regression")
        with pytest.raises(UserError, match="ONNX only"):
            modelport.log_model(classifier, "m", sample=X, task="classification",
                                formats=["joblib"])
        with pytest.raises(UserError, match="failed on the sample"):
            modelport.log_model(classifier, "m", sample=X[COLUMNS[:2]], task="classification")
    assert modelport.Registry().list_models() == []
