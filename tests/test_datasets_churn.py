"""The churn example data: reproducible, realistic in shape, learnable but not trivially."""

from __future__ import annotations

import time

import numpy as np
import pytest

from modelport.datasets import churn

NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls",
           "data_usage_gb", "age"]
CATEGORICAL = ["plan", "contract", "payment_method", "region"]


@pytest.fixture(scope="module")
def customers():
    return churn.generate(20_000, seed=0)


def test_same_seed_gives_the_same_table_and_another_seed_another():
    first = churn.generate(2_000, seed=7)
    again = churn.generate(2_000, seed=7)
    other = churn.generate(2_000, seed=8)
    assert first.equals(again)
    assert not first.drop(columns="customer_id").equals(other.drop(columns="customer_id"))


def test_columns_have_the_documented_kinds(customers):
    assert list(customers.columns) == ["customer_id", *NUMERIC, *CATEGORICAL, "churned"]
    assert customers["customer_id"].is_unique
    assert customers["tenure_months"].dtype == np.int64
    assert customers["support_calls"].dtype == np.int64
    for name in ("monthly_charges", "data_usage_gb"):
        values = customers[name].dropna().to_numpy()
        assert np.allclose(values, np.round(values, 2))
    for name in NUMERIC:
        assert customers[name].dtype.kind in "if"
    assert set(customers["plan"].dropna()) == set(churn.PLANS)
    assert set(customers["contract"].dropna()) == set(churn.CONTRACTS)
    for name in CATEGORICAL:
        assert all(isinstance(v, str) for v in customers[name].dropna())
    assert set(customers["churned"].unique()) == {0, 1}
    assert customers["churned"].dtype == np.int64
    assert (customers["tenure_months"].between(0, 72)).all()


def test_several_numeric_and_categorical_columns_have_a_few_percent_missing(customers):
    share = customers.isna().mean()
    holed = share[share > 0]
    assert {"total_charges", "data_usage_gb", "age"} <= set(holed.index)
    assert {"payment_method", "region"} <= set(holed.index)
    assert holed.between(0.005, 0.06).all()
    assert share["churned"] == 0


def test_churn_rate_is_between_twenty_and_thirty_percent(customers):
    assert 0.20 <= customers["churned"].mean() <= 0.30


def test_gradient_boosting_learns_it_well_and_a_linear_model_a_little_less(customers):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):  # OpenMP busy-waits on 2 cores
        auc = _test_auc(customers)
    assert 0.80 <= auc["hgb"] <= 0.90
    assert 0.75 <= auc["logistic"] < auc["hgb"]


def _test_auc(customers) -> dict[str, float]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline

    from modelport.train.preprocess import auto_preprocessor

    X = customers[NUMERIC + CATEGORICAL]
    y = customers["churned"]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0,
                                                        stratify=y)
    auc = {}
    for name, estimator in (("hgb", HistGradientBoostingClassifier(max_iter=150, random_state=0)),
                            ("logistic", LogisticRegression(max_iter=1000))):
        model = Pipeline([("preprocess", auto_preprocessor(X_train, NUMERIC, CATEGORICAL)),
                          ("model", estimator)]).fit(X_train, y_train)
        auc[name] = roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])
    return auc


def test_drift_moves_the_distributions_the_documented_way():
    calm = churn.generate(20_000, seed=3)
    drifted = churn.generate(20_000, seed=3, drift=1.0)
    assert drifted["tenure_months"].mean() < 0.9 * calm["tenure_months"].mean()
    assert drifted["monthly_charges"].mean() > calm["monthly_charges"].mean() + 5
    assert drifted["support_calls"].mean() > 1.2 * calm["support_calls"].mean()
    monthly = "month-to-month"
    assert (drifted["contract"] == monthly).mean() > (calm["contract"] == monthly).mean() + 0.1
    assert drifted["churned"].mean() > calm["churned"].mean() + 0.05


def test_a_million_rows_are_generated_in_seconds_not_minutes():
    started = time.perf_counter()
    frame = churn.generate(1_000_000, seed=1)
    elapsed = time.perf_counter() - started
    assert len(frame) == 1_000_000 and frame["customer_id"].is_unique
    # ~2 s on two cores; a per-row Python loop would take minutes
    assert elapsed < 20


def test_zero_rows_give_an_empty_table_with_the_columns():
    frame = churn.generate(0)
    assert len(frame) == 0
    assert "churned" in frame.columns
