"""The compiled form of a model computes what the native model computes, family by family."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pandas as pd
import pytest

from modelport.compile import ModelIR, evaluate, to_ir
from modelport.compile.ir import double_split
from modelport.errors import ConversionError
from modelport.formats.native import NativePredictor, classes_of, infer_task
from modelport.parity import compare
from modelport.signature import Signature

import zoo
from conftest import need_module

NUMERIC = ["tenure", "charges", "usage"]  # charges and usage hold NaN

pytestmark = [
    pytest.mark.filterwarnings("ignore:Found unknown categories"),
    pytest.mark.filterwarnings("ignore:categorical_feature keyword has been found"),
]


def _preprocess(kind: str):
    """Mixed-column preprocessing: every compiled transformer appears in one of the two."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, RobustScaler

    if kind == "wide":
        return ColumnTransformer([
            ("num", make_pipeline(SimpleImputer(strategy="mean", add_indicator=True),
                                  MinMaxScaler()), ["charges", "usage"]),
            ("robust", RobustScaler(), ["tenure"]),
            ("plan", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                   OneHotEncoder(drop="first", handle_unknown="ignore",
                                                 sparse_output=False)), ["plan"]),
            ("contract", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
             ["contract"]),
        ], remainder="passthrough")
    if kind == "codes":
        return ColumnTransformer([
            ("codes", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
             ["plan", "contract"]),
        ], remainder="passthrough")
    return ColumnTransformer([
        ("num", SimpleImputer(strategy="constant", fill_value=0.0), ["charges", "usage"]),
        ("plan", OneHotEncoder(min_frequency=0.25, handle_unknown="infrequent_if_exist",
                               sparse_output=False), ["plan"]),
        ("contract", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["contract"]),
    ], remainder="drop")


def _region_codes(n: int) -> np.ndarray:
    """Integer category codes 0-7 with some missing, as a LightGBM categorical feature takes."""
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 8, n).astype(float)
    codes[rng.uniform(size=n) < 0.08] = np.nan
    return codes


def _family(name: str):
    """(unfitted model, X, y) of family ``name``; y is None for clustering."""
    from sklearn import cluster, ensemble, linear_model, naive_bayes, tree
    from sklearn.pipeline import make_pipeline

    mixed, _, y, value = zoo.data(n=300)
    y3 = (mixed["tenure"] // 25).astype(int).to_numpy()
    labels = np.array(["stays", "churns"])[y]
    num = mixed[NUMERIC]
    wide, narrow = _preprocess("wide"), _preprocess("narrow")
    families = {
        "logistic_binary_strings": (make_pipeline(narrow, linear_model.LogisticRegression(
            max_iter=2000)), mixed, labels),
        "logistic_multinomial": (make_pipeline(wide, linear_model.LogisticRegression(
            max_iter=2000)), mixed, y3),
        "linear_regression": (make_pipeline(wide, linear_model.LinearRegression()), mixed, value),
        "ridge": (make_pipeline(narrow, linear_model.Ridge()), mixed, value),
        "lasso": (make_pipeline(wide, linear_model.Lasso(alpha=0.1)), mixed, value),
        "elastic_net": (make_pipeline(wide, linear_model.ElasticNet(alpha=0.1)), mixed, value),
        "sgd_log_binary": (make_pipeline(wide, linear_model.SGDClassifier(
            loss="log_loss", random_state=0)), mixed, y),
        "sgd_log_multiclass": (make_pipeline(wide, linear_model.SGDClassifier(
            loss="log_loss", random_state=0)), mixed, y3),
        "sgd_hinge": (make_pipeline(wide, linear_model.SGDClassifier(random_state=0)), mixed, y),
        "sgd_regressor": (make_pipeline(wide, linear_model.SGDRegressor(random_state=0)),
                          mixed, value),
        "decision_tree_multiclass": (make_pipeline(narrow, tree.DecisionTreeClassifier(
            max_depth=5, random_state=0)), mixed, y3),
        "decision_tree_regressor_nan": (tree.DecisionTreeRegressor(max_depth=6, random_state=0),
                                        num, value),
        "random_forest_nan": (ensemble.RandomForestClassifier(
            n_estimators=8, max_depth=5, random_state=0), num, y),
        "random_forest_regressor": (ensemble.RandomForestRegressor(
            n_estimators=8, max_depth=5, random_state=0), num, value),
        "extra_trees": (make_pipeline(wide, ensemble.ExtraTreesClassifier(
            n_estimators=8, max_depth=5, random_state=0)), mixed, y),
        "hgb_binary_nan": (ensemble.HistGradientBoostingClassifier(max_iter=15, random_state=0),
                           num, y),
        "hgb_multiclass": (make_pipeline(narrow, ensemble.HistGradientBoostingClassifier(
            max_iter=8, random_state=0)), mixed, y3),
        "hgb_regressor_nan": (ensemble.HistGradientBoostingRegressor(
            max_iter=15, random_state=0), num, value),
        "hgb_poisson": (ensemble.HistGradientBoostingRegressor(
            loss="poisson", max_iter=15, random_state=0), num, np.abs(value)),
        "hgb_native_categorical_strings": (ensemble.HistGradientBoostingClassifier(
            categorical_features=["plan", "contract"], max_iter=8, random_state=0), mixed, y3),
        "hgb_categorical_codes": (make_pipeline(_preprocess("codes"),
                                                ensemble.HistGradientBoostingClassifier(
            categorical_features=[0, 1], max_iter=10, random_state=0)), mixed, y),
        "gaussian_nb": (make_pipeline(wide, naive_bayes.GaussianNB()), mixed, y3),
        "kmeans": (make_pipeline(wide, cluster.KMeans(n_clusters=3, n_init=2, random_state=0)),
                   mixed, None),
        "minibatch_kmeans": (cluster.MiniBatchKMeans(n_clusters=4, n_init=2, random_state=0),
                             mixed[["tenure"]], None),
        "gradient_boosting_binary": (make_pipeline(wide, ensemble.GradientBoostingClassifier(
            n_estimators=10, random_state=0)), mixed, y),
        "gradient_boosting_multiclass": (make_pipeline(wide, ensemble.GradientBoostingClassifier(
            n_estimators=5, random_state=0)), mixed, y3),
        "gradient_boosting_exponential": (make_pipeline(wide, ensemble.GradientBoostingClassifier(
            loss="exponential", n_estimators=10, random_state=0)), mixed, y),
        "gradient_boosting_regressor": (make_pipeline(narrow, ensemble.GradientBoostingRegressor(
            n_estimators=10, random_state=0)), mixed, value),
    }
    if name.startswith("lightgbm"):
        lightgbm = need_module("lightgbm", "gbm")
        coded = num.assign(region=_region_codes(len(num)))
        families = {
            "lightgbm_binary_nan": (lightgbm.LGBMClassifier(n_estimators=10, verbose=-1), num, y),
            "lightgbm_categorical": (lightgbm.LGBMClassifier(
                n_estimators=10, verbose=-1, min_data_per_group=5, cat_smooth=1.0,
                categorical_feature=[3]),
                coded, ((coded["region"].fillna(3) % 3 == 0) ^ (y == 1)).astype(int)),
            "lightgbm_multiclass": (lightgbm.LGBMClassifier(n_estimators=5, verbose=-1), num, y3),
            "lightgbm_regressor": (lightgbm.LGBMRegressor(n_estimators=10, verbose=-1),
                                   num, value),
        }
    if name.startswith("xgboost"):
        xgboost = need_module("xgboost", "gbm")
        families = {
            "xgboost_binary_pipeline": (make_pipeline(wide, xgboost.XGBClassifier(
                n_estimators=10, max_depth=3, n_jobs=1)), mixed, y),
            "xgboost_multiclass_nan": (xgboost.XGBClassifier(
                n_estimators=5, max_depth=3, n_jobs=1), num, y3),
            "xgboost_regressor": (xgboost.XGBRegressor(n_estimators=10, max_depth=3, n_jobs=1),
                                  num, value),
        }
    return families[name]


FAMILIES = (
    "logistic_binary_strings", "logistic_multinomial", "linear_regression", "ridge", "lasso",
    "elastic_net", "sgd_log_binary", "sgd_log_multiclass", "sgd_hinge", "sgd_regressor",
    "decision_tree_multiclass", "decision_tree_regressor_nan", "random_forest_nan",
    "random_forest_regressor", "extra_trees", "hgb_binary_nan", "hgb_multiclass",
    "hgb_regressor_nan", "hgb_poisson", "hgb_native_categorical_strings",
    "hgb_categorical_codes", "gaussian_nb", "kmeans", "minibatch_kmeans",
    "lightgbm_binary_nan", "lightgbm_categorical", "lightgbm_multiclass", "lightgbm_regressor",
    "xgboost_binary_pipeline", "xgboost_multiclass_nan", "xgboost_regressor",
    "gradient_boosting_binary", "gradient_boosting_multiclass", "gradient_boosting_exponential",
    "gradient_boosting_regressor",
)


@cache
def _fit(name: str):
    model, X, y = _family(name)
    model.fit(X) if y is None else model.fit(X, y)
    return model, X


def fitted(name: str):
    """(fitted model, signature, sample) of family ``name``, the sample with unseen values."""
    model, X = _fit(name)
    sig = Signature.infer(X, infer_task(model), classes_of(model))
    return model, sig, X


def with_unseen_rows(X: pd.DataFrame) -> pd.DataFrame:
    """``X`` plus rows holding an unknown category and missing values wherever possible."""
    extra = X.head(3).copy()
    if "plan" in extra:
        extra.loc[extra.index[0], "plan"] = "enterprise"  # never seen in training
        extra.loc[extra.index[1], ["plan", "contract"]] = np.nan
    if "region" in extra:
        extra.loc[extra.index[:2], "region"] = [11.0, -1.0]  # an unseen and a negative code
    for col in ("charges", "usage"):
        if col in extra:
            extra.loc[extra.index[2], col] = np.nan
    return pd.concat([X, extra], ignore_index=True)


def ir_tolerance(model_ir: ModelIR) -> float:
    return 1e-6 if model_ir.precision == "float32" else 1e-9


@pytest.mark.parametrize("family", FAMILIES)
def test_compiled_form_equals_native_model(family):
    model, sig, X = fitted(family)
    frame = sig.coerce(with_unseen_rows(X))
    model_ir = to_ir(model, sig)
    # what is proven is what a backend gets: the form after a trip through JSON
    model_ir = ModelIR.from_dict(json.loads(json.dumps(model_ir.to_dict())))
    reference = NativePredictor(model, sig)._run(frame)
    result = compare(reference, evaluate(model_ir, frame), sig.task, ir_tolerance(model_ir))
    assert result["passed"], result


def test_float32_split_restated_on_float64_sends_every_value_the_same_way():
    rng = np.random.default_rng(1)
    thresholds = np.concatenate([
        rng.normal(0, 100, 200),
        # midpoints of neighbouring float32 values: the round-half-to-even cases
        [(float(a) + float(np.nextafter(a, np.float32(np.inf)))) / 2
         for a in rng.normal(0, 10, 100).astype(np.float32)],
    ])
    for compare_op in ("<=", "<"):
        for t in thresholds:
            op, m = double_split(float(t), compare_op, "float32")
            f = np.float32(t)
            near = [np.nextafter(f, np.float32(-np.inf)), f, np.nextafter(f, np.float32(np.inf))]
            xs = [float(v) for v in near]
            xs += [m, np.nextafter(m, -np.inf), np.nextafter(m, np.inf), float(t),
                   np.nextafter(float(t), -np.inf), np.nextafter(float(t), np.inf)]
            for x in xs:
                native = (np.float32(x) <= t) if compare_op == "<=" else (np.float32(x) < t)
                restated = (x <= m) if op == "<=" else (x < m)
                assert native == restated, (compare_op, t, x)


def test_float64_split_is_kept_as_is():
    assert double_split(0.1, "<=", "float64") == ("<=", 0.1)


def test_unsupported_step_is_named_with_its_position():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    _, numeric, y, _ = zoo.data(n=100)
    model = make_pipeline(FunctionTransformer(np.log1p), LogisticRegression()).fit(numeric, y)
    sig = Signature.infer(numeric, "classification", classes_of(model))
    with pytest.raises(ConversionError, match=r"no compiler for FunctionTransformer at steps\[0\]"):
        to_ir(model, sig)


def test_unsupported_transformer_inside_column_transformer_is_named_with_its_path():
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    _, numeric, _, value = zoo.data(n=100)
    pre = ColumnTransformer([("a", StandardScaler(), ["tenure"]),
                             ("b", PolynomialFeatures(), ["charges", "calls"])])
    model = make_pipeline(pre, LinearRegression()).fit(numeric, value)
    sig = Signature.infer(numeric, "regression")
    with pytest.raises(ConversionError,
                       match=r"no compiler for PolynomialFeatures at steps\[0\]\.transformers\[1\]"):
        to_ir(model, sig)


def test_unsupported_final_estimator_is_named():
    from sklearn.neighbors import KNeighborsClassifier

    _, numeric, y, _ = zoo.data(n=100)
    model = KNeighborsClassifier().fit(numeric, y)
    sig = Signature.infer(numeric, "classification", classes_of(model))
    with pytest.raises(ConversionError, match="no compiler for KNeighborsClassifier"):
        to_ir(model, sig)


def test_scaler_on_a_string_column_is_refused_naming_the_column():
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # scikit-learn reads strings of digits as numbers; the signature keeps them categorical
    X = pd.DataFrame({"code": np.array(["1", "2", "3", "5"], dtype=object)})
    model = make_pipeline(StandardScaler(), LinearRegression()).fit(X, [1.0, 2.0, 3.0, 5.0])
    sig = Signature.infer(X, "regression")
    with pytest.raises(ConversionError,
                       match=r"StandardScaler at steps\[0\] reads categorical column 'code'"):
        to_ir(model, sig)


def test_one_hot_of_unknown_and_infrequent_categories_matches_scikit_learn():
    from sklearn.preprocessing import OneHotEncoder

    train = pd.DataFrame({"plan": ["a"] * 6 + ["b"] * 3 + ["c", "d"]})
    test = pd.DataFrame({"plan": ["a", "b", "c", "d", "zzz", np.nan]}, dtype=object)
    sig = Signature.infer(train, "regression")
    for encoder in (OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                    OneHotEncoder(min_frequency=2, handle_unknown="infrequent_if_exist",
                                  sparse_output=False),
                    OneHotEncoder(min_frequency=2, handle_unknown="ignore", sparse_output=False),
                    OneHotEncoder(drop="first", handle_unknown="ignore", sparse_output=False)):
        encoder.fit(train)
        from modelport.compile.from_sklearn import _Builder
        from modelport.compile.numpy_eval import _STEPS

        builder = _Builder(sig)
        names = builder.transform(encoder, ["plan"], "steps[0]")
        values = {"plan": sig.coerce(test)["plan"].to_numpy()}
        for step in builder.steps:
            values[step.name] = _STEPS[step.op](step, values[step.source])
        compiled = np.column_stack([values[n] for n in names])
        np.testing.assert_array_equal(compiled, encoder.transform(test.fillna("zzz")))


def test_form_is_plain_json():
    model, sig, _ = fitted("hgb_binary_nan")
    d = to_ir(model, sig).to_dict()
    text = json.dumps(d)
    assert json.loads(text)["model"]["kind"] == "tree_ensemble"
    assert json.loads(text)["output"]["transform"] == "logistic"
