"""Fitted models of every family the conformance test covers, each with its sample.

Numeric values are rounded to two decimals, as money and tenure are: float32 backends then
never see a value within rounding distance of a split threshold.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd

NAMES = (
    "logreg", "random_forest", "hgb", "pipeline", "lightgbm", "xgboost", "sgd",
    "gaussian_nb", "minibatch_kmeans", "ridge",
)


@cache
def data(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """(mixed frame with NaN and strings, numeric frame, binary target, regression target)."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, n).astype(float)
    charges = np.round(rng.uniform(15, 120, n), 2)
    calls = rng.poisson(1.5, n).astype(float)
    usage = np.round(rng.gamma(2.0, 10.0, n), 2)
    plan = rng.choice(["basic", "standard", "premium"], n, p=[0.5, 0.3, 0.2]).astype(object)
    contract = rng.choice(["monthly", "yearly"], n).astype(object)
    logit = -1.0 - 0.04 * tenure + 0.02 * charges + 0.5 * calls + (plan == "basic") * 0.8
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    value = 3 * tenure - 0.5 * charges + 7 * calls + rng.normal(0, 5, n)
    numeric = pd.DataFrame({"tenure": tenure, "charges": charges, "calls": calls,
                            "usage": usage})
    mixed = numeric.copy()
    mixed.loc[rng.uniform(size=n) < 0.05, "charges"] = np.nan
    mixed.loc[rng.uniform(size=n) < 0.05, "usage"] = np.nan
    plan[rng.uniform(size=n) < 0.05] = np.nan
    mixed["plan"] = pd.array(plan, dtype="str")
    mixed["contract"] = pd.array(contract, dtype="str")
    return mixed, numeric, y, np.round(value, 2)


def _mixed_pipeline(final):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = Pipeline([("impute", SimpleImputer(strategy="median")),
                        ("scale", StandardScaler())])
    categorical = Pipeline([
        ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
    ])
    pre = ColumnTransformer([
        ("num", numeric, ["tenure", "charges", "calls", "usage"]),
        ("cat", categorical, ["plan", "contract"]),
    ])
    return Pipeline([("pre", pre), ("model", final)])


@cache
def build(name: str):
    """A fitted model of family ``name`` and a sample of its training rows."""
    mixed, numeric, y, value = data()
    if name == "logreg":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=500).fit(numeric, y), numeric
    if name == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0).fit(numeric, y), numeric
    if name == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        model = HistGradientBoostingClassifier(max_iter=40, random_state=0)
        return model.fit(mixed[["tenure", "charges", "calls", "usage"]], y), mixed[
            ["tenure", "charges", "calls", "usage"]]
    if name == "pipeline":
        from sklearn.linear_model import LogisticRegression

        return _mixed_pipeline(LogisticRegression(max_iter=500)).fit(mixed, y), mixed
    if name == "lightgbm":
        from lightgbm import LGBMClassifier

        model = LGBMClassifier(n_estimators=30, num_leaves=15, verbose=-1, random_state=0)
        return model.fit(numeric, y), numeric
    if name == "xgboost":
        from xgboost import XGBClassifier

        model = XGBClassifier(n_estimators=30, max_depth=4, random_state=0, n_jobs=1)
        return model.fit(numeric, y), numeric
    if name == "sgd":
        from sklearn.linear_model import SGDClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", random_state=0))
        return model.fit(numeric, y), numeric
    if name == "gaussian_nb":
        from sklearn.naive_bayes import GaussianNB

        return GaussianNB().fit(numeric, y), numeric
    if name == "minibatch_kmeans":
        from sklearn.cluster import MiniBatchKMeans

        return MiniBatchKMeans(n_clusters=4, random_state=0, n_init=3).fit(numeric), numeric
    if name == "ridge":
        from sklearn.linear_model import Ridge

        return Ridge(alpha=1.0).fit(numeric, value), numeric
    raise KeyError(name)
