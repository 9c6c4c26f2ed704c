"""scikit-learn learners on a stream: SGD learns the very weights partial_fit gives while
skipping its checks, Gaussian naive Bayes is the model GaussianNB.fit gives on every event
at once whatever the batches, and a batch is learnt in steps that grow from one event."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import SGDClassifier, SGDRegressor
from sklearn.naive_bayes import GaussianNB
from sklearn.preprocessing import StandardScaler

from modelport.registry import Registry
from modelport.train.online import learn
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


def test_gaussian_naive_bayes_is_the_model_fit_gives_on_every_event_whatever_the_batches():
    X, y = stream(3000)
    expected = GaussianNB().fit(StandardScaler().fit_transform(X), y)
    frame = pd.DataFrame(X, columns=list("abcd"))
    for sizes in ([3000], [1] * 40 + [60] * 49 + [20], [7] * 428 + [4]):
        run = learning({"estimator": "sklearn.naive_bayes.GaussianNB"})
        feed(run, X, y, sizes)
        exported = run.state.learner.export()
        nb = exported.named_steps["model"]
        assert np.allclose(nb.theta_, expected.theta_, rtol=0, atol=1e-11)
        assert np.allclose(nb.var_, expected.var_, rtol=1e-11, atol=0)
        assert nb.epsilon_ == pytest.approx(expected.epsilon_, rel=1e-9)
        assert np.array_equal(nb.class_count_, expected.class_count_)
        assert np.allclose(exported.predict_proba(frame), expected.predict_proba(
            StandardScaler().fit_transform(X)), rtol=0, atol=1e-9)


def test_naive_bayes_predicts_from_the_second_event_on():
    """A class seen once has no variance, and GaussianNB.partial_fit smooths variances by
    the batch's: on a batch of one event it then divides by 0. Here every prediction from
    the second event on is a number."""
    X, y = stream(400, seed=3)
    run = learning({"estimator": "sklearn.naive_bayes.GaussianNB"})
    feed(run, X, y, [1] * 400)
    _, _, _, terms = run.state.window.rows()
    assert np.isnan(terms["log_loss"][0]) and np.isfinite(terms["log_loss"][1:]).all()
    assert np.nanmean(terms["correct"]) > 0.7  # every seventh label is noise


def test_only_the_first_event_of_a_stream_goes_unpredicted(tmp_path):
    X, y = stream(2000, seed=4)
    frame = pd.DataFrame(X, columns=list("abcd"))
    frame["y"] = (y == 1).astype(int)
    frame.to_parquet(tmp_path / "e.parquet", index=False)
    result = learn({"name": "first", "source": str(tmp_path / "e.parquet"), "target": "y",
                    "classes": [0, 1], "batch": {"size": 256},
                    "learner": {"estimator": "sklearn.linear_model.SGDClassifier",
                                "params": {"loss": "log_loss"}},
                    "checkpoint": {"every_events": 10**9, "formats": ["joblib"]}})
    assert (result.learned, result.scored) == (2000, 1999)
