"""scikit-learn learners on a stream: SGD learns the very weights partial_fit gives while
skipping its checks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier, SGDRegressor

from modelport.registry import Registry
from modelport.train.online.loop import Learning, State
from modelport.train.online.sources import Batch
from modelport.train.online.spec import load_spec

STREAM = {"learning_rate": "constant", "eta0": 0.01, "alpha": 0.0, "shuffle": False}
SIZES = [1, 1, 3, 10, 50, 200, 235]


def stream(n: int = 500, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * [1.0, 100.0, 0.01, 3.0] + [0.0, 5000.0, 2.0, -1.0]
    Z = (X - [0.0, 5000.0, 2.0, -1.0]) / [1.0, 100.0, 0.01, 3.0]
    y = (Z[:, 0] + Z[:, 1] - Z[:, 2] > 0).astype(int)
    y[::7] = 2
    return X, y


def learning(learner: dict, classes=(0, 1, 2)) -> Learning:
    spec = load_spec({"name": "l", "source": "x.jsonl", "target": "y",
                      "features": ["a", "b", "c", "d"], "classes": list(classes),
                      "learner": learner})
    return Learning(spec, State(spec), Registry())


def feed(learning: Learning, X, y, sizes) -> None:
    start = 0
    for size in sizes:
        part = slice(start, start + size)
        columns = {name: X[part, j] for j, name in enumerate("abcd")}
        learning.process(Batch(size, {"row": start + size}, columns={**columns, "y": y[part]}))
        start += size


@pytest.mark.parametrize("estimator, params", [
    (SGDClassifier, {"loss": "log_loss"}),
    (SGDClassifier, {"loss": "hinge", "class_weight": {0: 2.0, 1: 1.0}}),
    (SGDClassifier, {"loss": "modified_huber", "penalty": "elasticnet", "alpha": 1e-4,
                     "learning_rate": "invscaling"}),
    (SGDRegressor, {}),
    (SGDRegressor, {"loss": "huber", "penalty": "l1", "alpha": 1e-3,
                    "learning_rate": "optimal"}),
])
def test_sgd_learns_the_weights_partial_fit_gives_without_its_checks(estimator, params):
    from modelport.train.online.learners import _Epoch

    X, y = stream()
    y = (y == 1).astype(int) if estimator is SGDClassifier else X @ [1.0, 0.01, 3.0, -2.0]
    reference = estimator(**{**STREAM, **params})
    direct = copy.deepcopy(reference)
    first = {"classes": [0, 1]} if estimator is SGDClassifier else {}
    reference.partial_fit(X[:1], y[:1], **first)
    direct.partial_fit(X[:1], y[:1], **first)
    epoch, start = _Epoch(direct), 1
    assert _Epoch.fits(direct)
    for size in SIZES[1:]:
        reference.partial_fit(X[start:start + size], y[start:start + size])
        epoch(direct, X[start:start + size], y[start:start + size])
        start += size
    assert np.array_equal(direct.coef_, reference.coef_)
    assert np.array_equal(direct.intercept_, reference.intercept_)
    assert direct.t_ == reference.t_ and direct.coef_.shape == reference.coef_.shape


@pytest.mark.parametrize("params, direct", [({}, True), ({"average": True}, False),
                                            ({"shuffle": True, "random_state": 1}, False)])
def test_a_learner_skips_partial_fit_only_where_it_learns_the_same(params, direct):
    X, y = stream()
    y = (y == 1).astype(int)
    learner = {"estimator": "sklearn.linear_model.SGDClassifier",
               "params": {"loss": "log_loss", **params}}
    fast, slow = learning(learner, classes=(0, 1)), learning(learner, classes=(0, 1))
    for run in (fast, slow):
        feed(run, X, y, SIZES[:1])
    slow.state.learner.direct = False  # partial_fit throughout
    for run in (fast, slow):
        feed(run, X[1:], y[1:], SIZES[1:])
    assert fast.state.learner.direct is direct
    a, b = fast.state.learner.estimator, slow.state.learner.estimator
    assert np.array_equal(a.coef_, b.coef_) and np.array_equal(a.intercept_, b.intercept_)
    assert a.t_ == b.t_ == 501.0
