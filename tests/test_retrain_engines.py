"""Every engine's winner is a plain scikit-learn pipeline — modelport's preprocessing and
one estimator of a known family — that the format converters accept."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.pipeline import Pipeline

from modelport.datasets import churn
from modelport.register import log_model
from modelport.train.automl import search
from modelport.train.automl.problem import Problem, repeats
from modelport.train.automl.space import FAMILIES

from conftest import need_module


@pytest.fixture(autouse=True)
def one_openmp_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.mark.parametrize("engine,estimators", [
    # an XGBoost winner is left out: after the churn preprocessing its ONNX conversion is
    # off by up to 0.36 and the parity check rejects it (the version serves from joblib)
    ("flaml", ["lgbm", "lr"]),
    ("optuna", ["hgb", "lr", "knn"]),
])
def test_winner_is_a_plain_pipeline_that_converts(engine, estimators):
    need_module(engine, "automl")
    frame = churn.generate(1200, seed=8)
    X, y = frame.drop(columns=["churned", "customer_id"]), frame["churned"]
    started = time.monotonic()
    found = search(X, y, task="classification", metric="roc_auc", time_budget_s=4,
                   engine=engine, estimators=estimators, feature_selection=True)
    assert time.monotonic() - started < 4 * 3  # the budget holds, give or take a slow trial
    assert isinstance(found.pipeline, Pipeline)
    assert [name for name, _ in found.pipeline.steps] == ["preprocess", "model"]
    model = found.pipeline.named_steps["model"]
    assert found.family in estimators
    assert type(model) is FAMILIES[found.family].cls("classification")
    assert found.summary["engine"] == engine and found.summary["evaluations"] >= 1
    assert 0.6 < found.score <= 1.0
    version = log_model(found.pipeline, "churn", sample=X.head(200),
                        formats=("joblib", "onnx"))
    statuses = {a.format: a.status for a in version.artefacts}
    assert statuses == {"joblib": "accepted", "onnx": "accepted"}, version.artefacts


def test_regression_search_starts_from_defaults():
    need_module("optuna", "automl")
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    found = search(X, y, task="regression", metric="rmse", time_budget_s=5, engine="optuna",
                   estimators=["lr", "hgb"])
    board = {row["family"] for row in found.summary["leaderboard"]}
    assert board == {"lr", "hgb"}  # each family's default is tried first
    assert found.summary["best"]["score"] == min(r["score"]
                                                 for r in found.summary["leaderboard"])


def test_the_fewer_the_rows_the_more_draws_of_the_folds():
    # about 3,000 held-out predictions per candidate, between one and ten draws of 5 folds
    assert [repeats(n) for n in (133, 331, 426, 600, 1000, 1001, 9000)] == \
        [10, 10, 8, 5, 3, 1, 1]
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    problem = Problem(X.head(331), y.head(331), task="regression", metric="r2")
    assert len(problem.splits) == 50
    assert problem.protocol == "5-fold cross-validation, 10 times"
    for fit, valid in problem.splits[:5]:  # each draw is a partition of the rows
        assert len(fit) + len(valid) == 331
    assert sorted(np.concatenate([v for _, v in problem.splits[:5]])) == list(range(331))
