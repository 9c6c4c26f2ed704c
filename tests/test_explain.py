"""Contributions read from the intermediate form agree with shap, add up, and refuse the rest.

Every model is explained on rows it was not trained on (``zoo.data`` with another seed).
Tree ensembles are compared with ``shap.TreeExplainer(feature_perturbation=
"tree_path_dependent")``, linear models with ``shap.LinearExplainer`` over the same
background; where a pipeline encodes columns, both sides are summed back to input columns.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from modelport.compile import ModelIR, to_ir
from modelport.compile.explain import contributions
from modelport.compile.numpy_eval import feature_matrix, raw_scores
from modelport.errors import ConversionError, UserError
from modelport.formats.native import NativePredictor, classes_of, infer_task
from modelport.signature import Signature

import zoo

shap = pytest.importorskip("shap")

NUMERIC = ["tenure", "charges", "calls", "usage"]
TOLERANCE = 1e-6


def _unseen(n: int = 150) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(mixed, numeric) rows from another seed than the training rows."""
    mixed, numeric, _, _ = zoo.data(n, seed=7)
    return mixed, numeric


def _signature(model, sample) -> Signature:
    task = infer_task(model)
    return Signature.infer(sample, task, classes_of(model) if task == "classification" else None)


def _raw(model_ir: ModelIR, frame) -> np.ndarray:
    return raw_scores(model_ir.model, feature_matrix(model_ir, frame))


def _check_additive(model_ir: ModelIR, frame, base, contrib) -> None:
    raw = _raw(model_ir, frame)
    total = base + (contrib.sum(axis=1) if contrib.ndim == 3 else contrib.sum(axis=1)[:, None])
    assert np.abs(total - raw).max() <= 1e-9 * max(1.0, np.abs(raw).max())


def _by_column(values: np.ndarray, names: list[str], columns: list[str]) -> np.ndarray:
    """Sum shap values over encoded features back to the input column each was made from
    (scikit-learn's output names start with the input column's name)."""
    mapping = np.zeros((len(names), len(columns)))
    for j, name in enumerate(names):
        plain = name.split("__", 1)[-1]
        owners = [c for c in columns if plain == c or plain.startswith(f"{c}_")]
        assert len(owners) == 1, name
        mapping[j, columns.index(owners[0])] = 1.0
    return np.einsum("rf...,fc->rc...", values, mapping)


def _fit(name: str):
    """Tree models of every family shap reads, each with its training frame and target kind."""
    mixed, numeric, y, value = zoo.data()
    import sklearn.ensemble as ens
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    models = {
        "decision_tree_classifier": lambda: DecisionTreeClassifier(max_depth=6, random_state=0),
        "decision_tree_regressor": lambda: DecisionTreeRegressor(random_state=0),
        "random_forest_classifier": lambda: ens.RandomForestClassifier(
            n_estimators=15, max_depth=7, random_state=0),
        "random_forest_regressor": lambda: ens.RandomForestRegressor(
            n_estimators=15, max_depth=7, random_state=0),
        "extra_trees_classifier": lambda: ens.ExtraTreesClassifier(
            n_estimators=15, max_depth=7, random_state=0),
        "extra_trees_regressor": lambda: ens.ExtraTreesRegressor(
            n_estimators=15, max_depth=7, random_state=0),
        "gradient_boosting_classifier": lambda: ens.GradientBoostingClassifier(
            n_estimators=40, max_depth=3, random_state=0),
        "gradient_boosting_regressor": lambda: ens.GradientBoostingRegressor(
            n_estimators=40, max_depth=4, subsample=0.8, random_state=0),
        "hist_gradient_boosting_classifier": lambda: ens.HistGradientBoostingClassifier(
            max_iter=30, random_state=0),
        "hist_gradient_boosting_regressor": lambda: ens.HistGradientBoostingRegressor(
            max_iter=30, random_state=0),
    }
    if name == "lightgbm_classifier":
        model = pytest.importorskip("lightgbm").LGBMClassifier(
            n_estimators=30, num_leaves=15, verbose=-1, random_state=0)
    elif name == "lightgbm_regressor":
        model = pytest.importorskip("lightgbm").LGBMRegressor(
            n_estimators=30, num_leaves=15, verbose=-1, random_state=0)
    elif name == "xgboost_classifier":
        model = pytest.importorskip("xgboost").XGBClassifier(
            n_estimators=30, max_depth=4, random_state=0, n_jobs=1)
    else:
        model = models[name]()
    target = value if "regressor" in name else y
    # HistGradientBoosting and LightGBM route missing values: train them with NaN
    frame = mixed[NUMERIC] if name.startswith(("hist", "lightgbm")) else numeric
    return model.fit(frame, target), frame


TREES = [
    "decision_tree_classifier", "decision_tree_regressor", "random_forest_classifier",
    "random_forest_regressor", "extra_trees_classifier", "extra_trees_regressor",
    "gradient_boosting_classifier", "gradient_boosting_regressor",
    "hist_gradient_boosting_classifier", "hist_gradient_boosting_regressor",
    "lightgbm_classifier", "lightgbm_regressor", "xgboost_classifier",
]


@pytest.mark.parametrize("name", TREES)
def test_tree_contributions_equal_shap_tree_path_dependent(name):
    model, train = _fit(name)
    mixed, numeric = _unseen()
    rows = mixed[NUMERIC] if train.isna().any().any() else numeric
    sig = _signature(model, train)
    model_ir = to_ir(model, sig)
    frame = sig.coerce(rows)
    base, contrib = contributions(model_ir, frame)

    explainer = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")
    expected = np.asarray(explainer.shap_values(rows))
    expected_base = np.atleast_1d(np.asarray(explainer.expected_value, dtype=np.float64))
    assert contrib.shape == expected.shape
    # XGBoost's values reach shap in float32 (5e-7 apart here); the others agree to 1e-12
    assert np.abs(contrib - expected).max() <= TOLERANCE
    assert np.abs(base - expected_base).max() <= TOLERANCE
    _check_additive(model_ir, frame, base, contrib)
    # the explanation is of what the model predicts, not of a look-alike
    assert np.abs(contrib).max() > 0


def test_tree_contributions_sum_back_one_hot_columns():
    from sklearn.ensemble import GradientBoostingClassifier

    model = zoo._mixed_pipeline(GradientBoostingClassifier(n_estimators=30, random_state=0))
    mixed, _, y, _ = zoo.data()
    model.fit(mixed, y)
    rows, _ = _unseen()
    sig = _signature(model, mixed)
    model_ir = to_ir(model, sig)
    frame = sig.coerce(rows)
    base, contrib = contributions(model_ir, frame)

    pre, final = model[:-1], model[-1]
    encoded = pre.transform(rows)
    values = shap.TreeExplainer(final, feature_perturbation="tree_path_dependent").shap_values(encoded)
    expected = _by_column(np.asarray(values), list(pre.get_feature_names_out()), sig.names)
    assert np.abs(contrib - expected).max() <= TOLERANCE
    _check_additive(model_ir, frame, base, contrib)
    # plan is one-hot encoded into several features; its contribution is their sum
    assert np.abs(contrib[:, sig.names.index("plan")]).max() > 0


def _linear_cases():
    from sklearn.linear_model import LinearRegression, LogisticRegression

    mixed, numeric, y, value = zoo.data()
    three = np.digitize(value, np.quantile(value, [1 / 3, 2 / 3]))
    return {
        "logistic_regression": (zoo.build("logreg")[0], numeric, numeric),
        "linear_regression": (LinearRegression().fit(numeric, value), numeric, numeric),
        "multinomial_logistic_regression": (
            LogisticRegression(max_iter=1000).fit(numeric, three), numeric, numeric),
        "pipeline_logistic_regression": (zoo.build("pipeline")[0], mixed, mixed),
    }


@pytest.mark.parametrize("name", ["logistic_regression", "linear_regression",
                                  "multinomial_logistic_regression",
                                  "pipeline_logistic_regression"])
def test_linear_contributions_equal_shap_linear_explainer(name):
    model, train, background = _linear_cases()[name]
    mixed, numeric = _unseen()
    rows = mixed if "plan" in train.columns else numeric
    sig = _signature(model, train)
    model_ir = to_ir(model, sig)
    frame = sig.coerce(rows)
    base, contrib = contributions(model_ir, frame, background=sig.coerce(background))

    if hasattr(model, "steps"):
        pre, final = model[:-1], model[-1]
        names = list(pre.get_feature_names_out())
        X, B = pre.transform(rows), pre.transform(background)
    else:
        pre, final, names, X, B = None, model, sig.names, rows.to_numpy(), background.to_numpy()
    # all of it: shap's default masker would average a random 100 rows of the background
    explainer = shap.LinearExplainer(final, shap.maskers.Independent(B, max_samples=len(B)))
    values = np.asarray(explainer.shap_values(X))
    expected = _by_column(values, names, sig.names) if pre is not None else values
    assert contrib.shape == expected.shape
    assert np.abs(contrib - expected).max() <= TOLERANCE
    assert np.abs(base - np.atleast_1d(explainer.expected_value)).max() <= TOLERANCE
    _check_additive(model_ir, frame, base, contrib)


def test_linear_contributions_need_a_background():
    model, train, _ = _linear_cases()["logistic_regression"]
    sig = _signature(model, train)
    with pytest.raises(UserError, match="background"):
        contributions(to_ir(model, sig), sig.coerce(train))


@pytest.mark.parametrize("name", ["gaussian_nb", "minibatch_kmeans"])
def test_a_model_the_form_cannot_explain_is_refused_with_the_reason(name):
    model, sample = zoo.build(name)
    sig = _signature(model, sample)
    model_ir = to_ir(model, sig)
    with pytest.raises(ConversionError, match=f"{model_ir.model.kind} model node"):
        contributions(model_ir, sig.coerce(sample), background=sig.coerce(sample))


def test_trees_without_covers_are_refused():
    model, sample = zoo.build("random_forest")
    sig = _signature(model, sample)
    stored = to_ir(model, sig).to_dict()
    for tree in stored["model"]["trees"]:
        del tree["cover"]  # a form stored before covers were recorded
    old = ModelIR.from_dict(json.loads(json.dumps(stored)))
    assert old.model.trees[0].cover is None
    with pytest.raises(ConversionError, match="has no node covers"):
        contributions(old, sig.coerce(sample))


def test_covers_are_stored_only_when_present():
    model, sample = zoo.build("random_forest")
    sig = _signature(model, sample)
    model_ir = to_ir(model, sig)
    stored = model_ir.to_dict()
    assert all("cover" in t for t in stored["model"]["trees"])
    back = ModelIR.from_dict(json.loads(json.dumps(stored)))
    assert back.model.trees[0].cover == model_ir.model.trees[0].cover
    for tree in back.model.trees:
        tree.cover = None
    assert all("cover" not in t for t in back.to_dict()["model"]["trees"])


# --- Predictor.explain ------------------------------------------------------------------


def _compiled(model, sample):
    from modelport.formats import compiled

    sig = _signature(model, sample)
    return compiled.load(compiled.convert(model, sig, sample), sig)


@pytest.mark.parametrize("kind", ["compiled", "native"])
def test_explain_ranks_the_top_columns_of_each_row(kind):
    model, sample = zoo.build("random_forest")
    predictor = (_compiled(model, sample) if kind == "compiled"
                 else NativePredictor(model, _signature(model, sample)))
    _, rows = _unseen(5)
    table = predictor.explain(rows, top=2)
    assert list(table.columns) == ["row", "output", "rank", "column", "value", "contribution",
                                   "base"]
    sig = predictor.signature
    base, contrib = contributions(to_ir(model, sig), sig.coerce(rows))
    assert len(table) == 5 * 2 * 2  # rows x classes x top
    for (r, label), group in table.groupby(["row", "output"], sort=False):
        k = predictor.classes.index(label)
        magnitudes = np.abs(contrib[r, :, k])
        best = np.argsort(-magnitudes, kind="stable")[:2]
        assert list(group["rank"]) == [1, 2]
        assert list(group["column"]) == [sig.names[j] for j in best]
        assert np.allclose(group["contribution"], contrib[r, best, k], rtol=0, atol=1e-12)
        assert list(group["value"]) == [rows.iloc[r][sig.names[j]] for j in best]
        assert np.all(group["base"] == base[k])
    assert np.array_equal(table.attrs["base"], base)


def test_explain_measures_a_linear_model_from_the_background():
    model, sample = zoo.build("pipeline")
    predictor = _compiled(model, sample)
    rows, _ = _unseen(4)
    with pytest.raises(UserError, match="background"):
        predictor.explain(rows)
    predictor.background = lambda: sample  # what Registry.load sets
    table = predictor.explain(rows, top=6)
    sig = predictor.signature
    base, contrib = contributions(to_ir(model, sig), sig.coerce(rows), sig.coerce(sample))
    assert list(table.columns) == ["row", "rank", "column", "value", "contribution", "base"]
    # all six columns: they add up to the log-odds the model gives
    for r, group in table.groupby("row"):
        logit = np.log(model.predict_proba(rows.iloc[[r]])[0, 1]
                       / model.predict_proba(rows.iloc[[r]])[0, 0])
        assert abs(group["base"].iloc[0] + group["contribution"].sum() - logit) <= 1e-9
        assert np.allclose(np.sort(np.abs(group["contribution"]))[::-1],
                           np.sort(np.abs(contrib[r]))[::-1], rtol=0, atol=1e-12)


def test_a_predictor_that_cannot_explain_says_why():
    model, sample = zoo.build("gaussian_nb")
    for predictor in (_compiled(model, sample), NativePredictor(model, _signature(model, sample))):
        with pytest.raises(UserError, match="cannot be explained: .*gaussian_nb"):
            predictor.explain(sample.head(3))


def test_a_format_without_an_intermediate_form_cannot_explain():
    from modelport.predictor import Predictor

    class Opaque(Predictor):
        format = "opaque"

        def _run(self, frame):
            return {"value": np.zeros(len(frame))}

    _, sample = zoo.build("ridge")
    predictor = Opaque(Signature.infer(sample, "regression"))
    with pytest.raises(UserError, match="opaque format holds no intermediate form"):
        predictor.explain(sample.head(2))


def test_a_registered_linear_model_is_measured_from_its_registered_sample():
    import modelport

    model, sample = zoo.build("pipeline")
    version = modelport.log_model(model, "churn", sample=sample, formats=["compiled"])
    predictor = modelport.Registry().load(version.uri, format="compiled")
    rows, _ = _unseen(3)
    table = predictor.explain(rows, top=1)
    sig = predictor.signature
    base, _ = contributions(to_ir(model, sig), sig.coerce(rows), sig.coerce(sample))
    assert np.allclose(table.attrs["base"], base, rtol=0, atol=1e-12)


def test_a_path_testing_more_features_than_a_bit_pattern_holds_equals_shap():
    """A chain tree whose deepest path tests 70 distinct features: its leaves are worked
    out feature by feature, not from bit patterns, and still agree with shap."""
    from modelport.compile import ir
    from modelport.compile.explain import Explainer

    depth = 70
    rng = np.random.default_rng(0)
    feature, left, right, value, cover = [], [], [], [], []
    weight = 1000.0
    for i in range(depth):  # node 2i splits feature i; its left child is a leaf
        k = len(feature)
        share = rng.uniform(0.2, 0.8)
        feature += [i, -1]
        left += [k + 1, -1]
        right += [k + 2, -1]
        value += [[0.0], [float(rng.normal())]]
        cover += [weight, weight * share]
        weight *= 1 - share
    feature.append(-1)
    left.append(-1)
    right.append(-1)
    value.append([float(rng.normal())])
    cover.append(weight)
    n = len(feature)
    tree = ir.Tree(feature=feature, threshold=[0.0] * n, left=left, right=right,
                   missing_left=[False] * n, value=value, cover=cover)
    names = [f"c{i}" for i in range(depth)]
    X = rng.normal(size=(30, depth))
    X[:5] = 1.0  # rows that go all the way down
    frame = pd.DataFrame(X, columns=names)
    signature = Signature.infer(frame, "regression", None)
    model_ir = ModelIR(signature=signature,
                       model=ir.TreeEnsemble(features=names, trees=[tree], n_outputs=1,
                                             base=[0.0]),
                       output=ir.Output("regression", "identity"))
    explainer = Explainer(model_ir)
    assert max(block.width for block in explainer._trees.blocks) == depth
    base, ours = explainer.contributions(signature.coerce(frame))
    custom = {"trees": [{"children_left": np.array(left), "children_right": np.array(right),
                         "children_default": np.array(right), "features": np.array(feature),
                         "thresholds": np.zeros(n), "values": np.array(value),
                         "node_sample_weight": np.array(cover)}]}
    reference = shap.TreeExplainer(custom, feature_perturbation="tree_path_dependent")
    assert np.abs(ours - reference.shap_values(X)).max() <= TOLERANCE
    assert abs(base[0] - float(np.ravel(reference.expected_value)[0])) <= TOLERANCE
    _check_additive(model_ir, signature.coerce(frame), base, ours)
