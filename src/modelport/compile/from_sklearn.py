"""Read a fitted scikit-learn estimator (or pipeline, LightGBM, XGBoost model) into a ModelIR.

Each transformer becomes one step per output column and the final estimator one model node;
everything is read from fitted attributes, never re-derived, so the IR computes what the
native model computes. A piece with no compiler raises
:class:`~modelport.errors.ConversionError` naming its class and where it sits
(``no compiler for FunctionTransformer at steps[0]``).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from modelport.compile import ir
from modelport.errors import ConversionError
from modelport.signature import Signature


def to_ir(model: Any, signature: Signature) -> ir.ModelIR:
    """The intermediate form of fitted ``model`` reading the columns of ``signature``.

    A Pipeline's transformers become preprocessing steps and its last step the model node;
    a model fitted on a DataFrame reads its columns by name, one fitted on an array reads
    the signature's columns in order.
    """
    builder = _Builder(signature)
    names = getattr(model, "feature_names_in_", None)
    fields = [str(n) for n in names] if names is not None else list(signature.names)
    unknown = [f for f in fields if f not in builder.kinds]
    if unknown:
        raise ConversionError(
            f"the model reads column(s) {', '.join(map(repr, unknown))} that are not in its signature"
        )
    final, fields, path = model, fields, ""
    while type(final).__name__ == "Pipeline":
        steps = final.steps
        for i, (_, step) in enumerate(steps[:-1]):
            fields = builder.transform(step, fields, f"{path}steps[{i}]")
        path = f"{path}steps[{len(steps) - 1}]."
        final = steps[-1][1]
    node, output, precision = builder.model(final, fields, path.rstrip(".") or "model")
    return ir.ModelIR(signature=signature, steps=builder.steps, model=node, output=output,
                      precision=precision)


class _Builder:
    """Accumulates steps and the kind (numeric or categorical) of every field made."""

    def __init__(self, signature: Signature) -> None:
        self.signature = signature
        self.kinds = {c.name: c.kind for c in signature.inputs}
        self.steps: list = []

    # --- fields -------------------------------------------------------------------------

    def add(self, step: ir.Step, kind: str = "numeric") -> str:
        name, n = step.name, 1
        while name in self.kinds:  # derived names must never shadow another field
            n += 1
            name = f"{step.name}#{n}"
        step.name = name
        self.kinds[name] = kind
        self.steps.append(step)
        return name

    def numeric(self, fields: list[str], est: Any, path: str) -> None:
        for f in fields:
            if self.kinds[f] != "numeric":
                raise ConversionError(
                    f"{type(est).__name__} at {path} reads categorical column {f!r}; "
                    "it can only compile numeric inputs there"
                )

    # --- transformers -------------------------------------------------------------------

    def transform(self, est: Any, fields: list[str], path: str) -> list[str]:
        if est is None or (isinstance(est, str) and est == "passthrough"):
            return fields
        name = type(est).__name__
        handler = getattr(self, f"_t_{name}", None)
        if handler is None:
            raise ConversionError(f"no compiler for {name} at {path}")
        n_in = getattr(est, "n_features_in_", None)
        if n_in is not None and n_in != len(fields):
            raise ConversionError(
                f"{name} at {path} was fitted on {n_in} columns but receives {len(fields)}"
            )
        return handler(est, fields, path)

    def _t_Pipeline(self, est: Any, fields: list[str], path: str) -> list[str]:
        for i, (_, step) in enumerate(est.steps):
            fields = self.transform(step, fields, f"{path}.steps[{i}]")
        return fields

    def _t_ColumnTransformer(self, est: Any, fields: list[str], path: str) -> list[str]:
        indices = est._transformer_to_input_indices
        out: list[str] = []
        for i, (name, trans, _) in enumerate(est.transformers_):
            cols = [fields[j] for j in indices.get(name, [])]
            if not cols or (isinstance(trans, str) and trans == "drop"):
                continue
            out += self.transform(trans, cols, f"{path}.transformers[{i}]")
        return out

    def _t_FunctionTransformer(self, est: Any, fields: list[str], path: str) -> list[str]:
        func = getattr(est.func, "func", est.func)  # functools.partial
        if est.func is None or getattr(func, "__name__", "") == "check_array":
            return fields  # identity, or the input check HistGradientBoosting wraps up
        raise ConversionError(f"no compiler for FunctionTransformer at {path} (func={est.func!r})")

    def _t_SimpleImputer(self, est: Any, fields: list[str], path: str) -> list[str]:
        if not _is_nan(est.missing_values):
            raise ConversionError(
                f"SimpleImputer at {path} imputes {est.missing_values!r}; only missing values "
                "(NaN/None) compile"
            )
        out = []
        for f, stat in zip(fields, est.statistics_, strict=True):
            if _is_nan(stat) and not est.keep_empty_features:
                continue  # scikit-learn drops a column that was empty when fitted
            value = stat if isinstance(stat, str) else _category(stat, self.kinds[f])
            out.append(self.add(ir.Impute(f"impute({f})", f, value), self.kinds[f]))
        if est.add_indicator:
            for j in est.indicator_.features_:
                out.append(self.add(ir.IsMissing(f"missing({fields[j]})", fields[j])))
        return out

    def _t_StandardScaler(self, est: Any, fields: list[str], path: str) -> list[str]:
        self.numeric(fields, est, path)
        return [
            self.add(ir.Scale(f"scale({f})", f,
                              float(est.mean_[j]) if est.mean_ is not None else 0.0,
                              float(est.scale_[j]) if est.scale_ is not None else 1.0))
            for j, f in enumerate(fields)
        ]

    def _t_RobustScaler(self, est: Any, fields: list[str], path: str) -> list[str]:
        self.numeric(fields, est, path)
        return [
            self.add(ir.Scale(f"scale({f})", f,
                              float(est.center_[j]) if est.center_ is not None else 0.0,
                              float(est.scale_[j]) if est.scale_ is not None else 1.0))
            for j, f in enumerate(fields)
        ]

    def _t_MaxAbsScaler(self, est: Any, fields: list[str], path: str) -> list[str]:
        self.numeric(fields, est, path)
        return [self.add(ir.Scale(f"scale({f})", f, 0.0, float(est.scale_[j])))
                for j, f in enumerate(fields)]

    def _t_MinMaxScaler(self, est: Any, fields: list[str], path: str) -> list[str]:
        self.numeric(fields, est, path)
        if est.clip:
            raise ConversionError(f"MinMaxScaler at {path} clips; clip=True does not compile")
        return [self.add(ir.Affine(f"minmax({f})", f, float(est.scale_[j]), float(est.min_[j])))
                for j, f in enumerate(fields)]

    def _t_OneHotEncoder(self, est: Any, fields: list[str], path: str) -> list[str]:
        out = []
        for i, f in enumerate(fields):
            kind = self.kinds[f]
            cats = [_category(c, kind) for c in est.categories_[i]]
            groups = [[c] for c in cats]
            infrequent = None
            if est._infrequent_enabled and est._default_to_infrequent_mappings[i] is not None:
                mapping = np.asarray(est._default_to_infrequent_mappings[i])
                frequent = mapping < mapping.max()
                groups = [[c] for c, keep in zip(cats, frequent, strict=True) if keep]
                infrequent = [c for c, keep in zip(cats, frequent, strict=True) if not keep]
                groups.append(infrequent)
            drop = None
            if est._drop_idx_after_grouping is not None:
                drop = est._drop_idx_after_grouping[i]
            for g, group in enumerate(groups):
                if drop is not None and g == drop:
                    continue
                if group is infrequent:
                    label = "infrequent"
                    if est.handle_unknown == "infrequent_if_exist":
                        # unknown (and unseen missing) values also land in this column
                        known = [c for grp in groups[:-1] for c in grp]
                        step = ir.Indicator(f"{f}={label}", f, known, negate=True)
                    else:
                        step = ir.Indicator(f"{f}={label}", f, group)
                else:
                    step = ir.Indicator(f"{f}={group[0]}", f, group)
                out.append(self.add(step))
        return out

    def _t_OrdinalEncoder(self, est: Any, fields: list[str], path: str) -> list[str]:
        if est._infrequent_enabled:
            raise ConversionError(f"OrdinalEncoder at {path} groups infrequent categories; "
                                  "max_categories/min_frequency do not compile")
        unknown = None
        if est.handle_unknown == "use_encoded_value":
            unknown = _number_or_none(est.unknown_value)
        out = []
        for i, f in enumerate(fields):
            kind = self.kinds[f]
            cats = [_category(c, kind) for c in est.categories_[i]]
            missing = unknown  # an unseen missing value is an unknown category
            if None in cats:
                cats = [c for c in cats if c is not None]
                missing = _number_or_none(est.encoded_missing_value)
            out.append(self.add(ir.Ordinal(f"ordinal({f})", f, cats, unknown, missing)))
        return out

    # --- final estimators ---------------------------------------------------------------

    def model(self, est: Any, fields: list[str], path: str) -> tuple[ir.Node, ir.Output, str]:
        name = type(est).__name__
        n_in = getattr(est, "n_features_in_", None)
        if n_in is not None and n_in != len(fields):
            raise ConversionError(
                f"{name} at {path} was fitted on {n_in} columns but receives {len(fields)}"
            )
        hgb = name in ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")
        if hgb and getattr(est, "_preprocessor", None) is not None:
            # native categorical features: the model ordinal-encodes them itself and moves
            # them first; its trees split on those codes
            fields = self.transform(est._preprocessor, fields, f"{path}._preprocessor")
        self.numeric(fields, est, path)
        if hgb:
            return _hist_gradient_boosting(est, fields, path)
        if name in _TREES:
            return _sklearn_trees(est, fields, path)
        if name in ("GradientBoostingClassifier", "GradientBoostingRegressor"):
            return _gradient_boosting(est, fields, path)
        if name in ("LGBMClassifier", "LGBMRegressor"):
            return _lightgbm(est, fields, path)
        if name in ("XGBClassifier", "XGBRegressor"):
            return _xgboost(est, fields, path)
        if name == "GaussianNB":
            node = ir.GaussianNB(fields, est.theta_.tolist(), est.var_.tolist(),
                                 np.log(est.class_prior_).tolist())
            return node, ir.Output("classification", "softmax", _classes(est)), "float64"
        if name in ("KMeans", "MiniBatchKMeans"):
            centroids = ir.Centroids(fields, est.cluster_centers_.tolist())
            return centroids, ir.Output("clustering", "nearest"), "float64"
        if hasattr(est, "coef_") and hasattr(est, "intercept_"):
            return _linear(est, fields, path)
        raise ConversionError(f"no compiler for {name} at {path}")


_TREES = ("DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier",
          "ExtraTreeRegressor", "RandomForestClassifier", "RandomForestRegressor",
          "ExtraTreesClassifier", "ExtraTreesRegressor")


def _linear(est: Any, fields: list[str], path: str) -> tuple[ir.Linear, ir.Output, str]:
    from sklearn.base import is_classifier

    name = type(est).__name__
    coef = np.atleast_2d(np.asarray(est.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(est.intercept_, dtype=np.float64))
    if intercept.size == 1 and coef.shape[0] == 1:
        intercept = intercept.reshape(1)
    node = ir.Linear(fields, coef.tolist(), intercept.tolist())
    if not is_classifier(est):
        if coef.shape[0] != 1:
            raise ConversionError(f"{name} at {path} predicts several targets; one compiles")
        return node, ir.Output("regression", "identity"), "float64"
    classes = _classes(est)
    binary = len(classes) == 2
    if name == "LogisticRegression":
        return node, ir.Output("classification", "logistic" if binary else "softmax",
                               classes), "float64"
    if name == "SGDClassifier" and est.loss == "log_loss":
        return node, ir.Output("classification", "logistic" if binary else "ovr_logistic",
                               classes), "float64"
    if hasattr(est, "predict_proba"):
        raise ConversionError(f"no compiler for the probabilities of {name} at {path}")
    return node, ir.Output("classification", "margin", classes), "float64"


def _sklearn_tree(tree: Any, classifier: bool) -> ir.Tree:
    t = tree.tree_
    leaf = t.children_left == -1
    if classifier:
        values = t.value[:, 0, :]
        # DecisionTreeClassifier.predict_proba normalises each leaf the same way
        norm = values.sum(axis=1, keepdims=True)
        norm[norm == 0.0] = 1.0
        values = values / norm
    else:
        values = t.value[:, 0, :1]
    missing = getattr(t, "missing_go_to_left", np.zeros(t.node_count, dtype=bool))
    return ir.Tree(
        feature=np.where(leaf, -1, t.feature).astype(int).tolist(),
        threshold=np.where(leaf, 0.0, t.threshold).tolist(),
        left=t.children_left.astype(int).tolist(),
        right=t.children_right.astype(int).tolist(),
        missing_left=np.asarray(missing, dtype=bool).tolist(),
        value=values.tolist(),
        # the weight shap's TreeExplainer reads for scikit-learn trees
        cover=np.asarray(t.weighted_n_node_samples, dtype=np.float64).tolist(),
    )


def _sklearn_trees(est: Any, fields: list[str], path: str
                   ) -> tuple[ir.TreeEnsemble, ir.Output, str]:
    from sklearn.base import is_classifier

    if getattr(est, "n_outputs_", 1) != 1:
        raise ConversionError(f"{type(est).__name__} at {path} predicts several targets")
    classifier = is_classifier(est)
    members = est.estimators_ if hasattr(est, "estimators_") else [est]
    trees = [_sklearn_tree(m, classifier) for m in members]
    n_out = len(est.classes_) if classifier else 1
    node = ir.TreeEnsemble(fields, trees, n_outputs=n_out, base=[0.0] * n_out, combine="mean",
                           compare="<=", input_dtype="float32")
    if classifier:
        return node, ir.Output("classification", "probability", _classes(est)), "float64"
    return node, ir.Output("regression", "identity"), "float64"


def _gradient_boosting(est: Any, fields: list[str], path: str
                       ) -> tuple[ir.TreeEnsemble, ir.Output, str]:
    from sklearn.base import is_classifier

    name = type(est).__name__
    classifier = is_classifier(est)
    # the exponential loss gives expit(2 * raw): doubling every addend doubles the sum exactly
    factor = 2.0 if classifier and est.loss == "exponential" else 1.0
    if est.init_ != "zero" and type(est.init_).__name__ not in ("DummyClassifier",
                                                                  "DummyRegressor"):
        raise ConversionError(f"{name} at {path} starts from a custom init estimator")
    base = est._raw_predict_init(np.zeros((1, est.n_features_in_), dtype=np.float32))[0]
    trees = []
    for stage in est.estimators_:
        for k, member in enumerate(stage):
            t = _sklearn_tree(member, classifier=False)
            # scikit-learn adds learning_rate * value: the product, then the sum, as here
            t.value = [[factor * (est.learning_rate * v[0])] for v in t.value]
            t.output = k
            trees.append(t)
    n_out = est.estimators_.shape[1]
    node = ir.TreeEnsemble(fields, trees, n_outputs=n_out,
                           base=[factor * float(b) for b in base],
                           combine="sum", compare="<=", input_dtype="float32")
    if not classifier:
        return node, ir.Output("regression", "identity"), "float64"
    transform = "logistic" if n_out == 1 else "softmax"
    return node, ir.Output("classification", transform, _classes(est)), "float64"


def _hist_gradient_boosting(est: Any, fields: list[str], path: str
                            ) -> tuple[ir.TreeEnsemble, ir.Output, str]:
    from sklearn.base import is_classifier

    name = type(est).__name__
    known, f_idx_map = (None, None)
    if getattr(est, "is_categorical_", None) is not None and np.any(est.is_categorical_):
        known, f_idx_map = est._bin_mapper.make_known_categories_bitsets()
    trees = []
    for iteration in est._predictors:
        for k, predictor in enumerate(iteration):
            nodes = predictor.nodes
            leaf = nodes["is_leaf"].astype(bool)
            tree = ir.Tree(
                feature=np.where(leaf, -1, nodes["feature_idx"]).astype(int).tolist(),
                threshold=np.where(leaf, 0.0, nodes["num_threshold"]).tolist(),
                left=np.where(leaf, -1, nodes["left"]).astype(int).tolist(),
                right=np.where(leaf, -1, nodes["right"]).astype(int).tolist(),
                missing_left=nodes["missing_go_to_left"].astype(bool).tolist(),
                value=[[float(v)] for v in nodes["value"]],
                output=k,
                cover=[float(c) for c in nodes["count"]],
            )
            if known is not None:
                assert f_idx_map is not None  # made with known
                _hgb_categories(tree, nodes, predictor.raw_left_cat_bitsets, known, f_idx_map)
            trees.append(tree)
    base = np.asarray(est._baseline_prediction, dtype=np.float64).reshape(-1)
    n_out = est.n_trees_per_iteration_
    node = ir.TreeEnsemble(fields, trees, n_outputs=n_out, base=base.tolist(), combine="sum")
    if is_classifier(est):
        transform = "logistic" if n_out == 1 else "softmax"
        return node, ir.Output("classification", transform, _classes(est)), "float64"
    link = type(getattr(est._loss, "link", None)).__name__
    if link == "LogLink":
        return node, ir.Output("regression", "exp"), "float64"
    if link not in ("IdentityLink", "NoneType"):
        raise ConversionError(f"{name} at {path} uses loss {est.loss!r}; it does not compile")
    return node, ir.Output("regression", "identity"), "float64"


def _bitset_members(bitset: np.ndarray) -> list[float]:
    """The category codes (0-255) set in one of scikit-learn's 8 x 32-bit bitsets."""
    return [float(c) for c in range(256) if (int(bitset[c // 32]) >> (c % 32)) & 1]


def _hgb_categories(tree: ir.Tree, nodes: np.ndarray, left_bitsets: np.ndarray,
                    known: np.ndarray, f_idx_map: np.ndarray) -> None:
    """Categorical splits: known codes left or right; unknown ones go with missing values."""
    n = len(tree.feature)
    tree.categories = [None] * n
    tree.categories_right = [None] * n
    for i in np.nonzero(nodes["is_categorical"] & ~nodes["is_leaf"].astype(bool))[0]:
        left = _bitset_members(left_bitsets[nodes["bitset_idx"][i]])
        seen = _bitset_members(known[f_idx_map[nodes["feature_idx"][i]]])
        tree.categories[i] = left
        tree.categories_right[i] = [c for c in seen if c not in set(left)]


def _lightgbm(est: Any, fields: list[str], path: str
              ) -> tuple[ir.TreeEnsemble, ir.Output, str]:
    name = type(est).__name__
    dump = est.booster_.dump_model()
    objective = dump.get("objective", "").split()
    per_iteration = int(dump.get("num_tree_per_iteration", 1))
    trees = []
    for i, info in enumerate(dump["tree_info"]):
        if info.get("is_linear"):
            raise ConversionError(f"{name} at {path} has linear trees; they do not compile")
        t = _lightgbm_tree(info["tree_structure"], name, path)
        t.output = i % per_iteration
        trees.append(t)
    node = ir.TreeEnsemble(fields, trees, n_outputs=per_iteration, base=[0.0] * per_iteration,
                           combine="sum", compare="<=")
    kind = objective[0] if objective else ""
    if kind == "binary":
        if objective[1:] and objective[1] != "sigmoid:1":
            raise ConversionError(f"{name} at {path} uses {objective[1]}; sigmoid:1 compiles")
        return node, ir.Output("classification", "logistic", _classes(est)), "float64"
    if kind in ("multiclass", "softmax"):
        return node, ir.Output("classification", "softmax", _classes(est)), "float64"
    if kind in ("regression", "regression_l1", "huber", "fair", "quantile", "mape"):
        return node, ir.Output("regression", "identity"), "float64"
    if kind in ("poisson", "gamma", "tweedie"):
        return node, ir.Output("regression", "exp"), "float64"
    raise ConversionError(f"{name} at {path} uses objective {kind!r}; it does not compile")


def _lightgbm_tree(root: dict, name: str, path: str) -> ir.Tree:
    cover: list[float] = []
    t = ir.Tree([], [], [], [], [], [], cover=cover)

    def visit(node: dict) -> int:
        i = t.add_leaf()
        # a stump's single leaf has no leaf_count
        cover[i] = float(node.get("internal_count", node.get("leaf_count", 0.0)))
        if "split_feature" not in node:
            t.value[i] = [float(node["leaf_value"])]
            return i
        missing = node.get("missing_type", "None")
        t.feature[i] = int(node["split_feature"])
        if node["decision_type"] == "==":
            # category codes in the set go left, all others (negative, unseen) right
            codes = [float(c) for c in str(node["threshold"]).split("||")]
            if t.categories is None:
                t.categories = []
            t.categories.extend([None] * (i + 1 - len(t.categories)))
            t.categories[i] = codes
            t.missing_left[i] = missing != "NaN" and 0.0 in codes
            t.left[i] = visit(node["left_child"])
            t.right[i] = visit(node["right_child"])
            return i
        if node["decision_type"] != "<=":
            raise ConversionError(f"{name} at {path} splits with {node['decision_type']!r}; "
                                  "it does not compile")
        threshold = float(node["threshold"])
        if missing == "NaN":
            t.missing_left[i] = bool(node["default_left"])
        elif missing == "None":
            # LightGBM reads a missing value as 0.0 when it saw none in training
            t.missing_left[i] = 0.0 <= threshold
        else:
            raise ConversionError(f"{name} at {path} treats zero as missing; it does not compile")
        t.threshold[i] = threshold
        t.left[i] = visit(node["left_child"])
        t.right[i] = visit(node["right_child"])
        return i

    visit(root)
    if t.categories is not None:
        t.categories.extend([None] * (len(t.feature) - len(t.categories)))
    return t


def _xgboost(est: Any, fields: list[str], path: str
             ) -> tuple[ir.TreeEnsemble, ir.Output, str]:
    name = type(est).__name__
    if not _is_nan(est.missing):
        raise ConversionError(f"{name} at {path} treats {est.missing!r} as missing; "
                              "only NaN compiles")
    booster = est.get_booster()
    raw = json.loads(booster.save_raw(raw_format="json"))
    learner = raw["learner"]
    gb = learner["gradient_booster"]
    if gb.get("name") != "gbtree":
        raise ConversionError(f"{name} at {path} uses booster {gb.get('name')!r}; gbtree compiles")
    model = gb["model"]
    objective = learner["objective"]["name"]
    params = learner["learner_model_param"]
    n_class = int(params.get("num_class", 0))
    n_out = max(n_class, 1)
    per_iteration = int(model["gbtree_model_param"].get("num_parallel_tree", 1)) * n_out
    n_rounds = booster.num_boosted_rounds()
    best = getattr(est, "best_iteration", None)
    if best is not None:
        n_rounds = best + 1
    info = model["tree_info"]
    trees = []
    for j, t in enumerate(model["trees"][: n_rounds * per_iteration]):
        if any(int(s) != 0 for s in t.get("split_type", [])):
            raise ConversionError(f"{name} at {path} has categorical splits; they do not compile")
        left = np.asarray(t["left_children"], dtype=int)
        leaf = left == -1
        cond = np.asarray(t["split_conditions"], dtype=np.float32).astype(np.float64)
        trees.append(ir.Tree(
            feature=np.where(leaf, -1, t["split_indices"]).astype(int).tolist(),
            threshold=np.where(leaf, 0.0, cond).tolist(),
            left=left.tolist(),
            right=np.asarray(t["right_children"], dtype=int).tolist(),
            missing_left=np.asarray(t["default_left"], dtype=bool).tolist(),
            value=[[float(v)] for v in np.where(leaf, cond, 0.0)],
            output=int(info[j]),
            cover=[float(c) for c in t["sum_hessian"]] if "sum_hessian" in t else None,
        ))
    base = _xgboost_base(params["base_score"], n_out)
    if objective == "binary:logistic":
        margin = [math.log(b / (1.0 - b)) for b in base]
        output = ir.Output("classification", "logistic", _classes(est))
    elif objective in ("multi:softprob", "multi:softmax"):
        margin = base
        output = ir.Output("classification", "softmax", _classes(est))
    elif objective in ("reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror",
                       "reg:quantileerror"):
        margin = base
        output = ir.Output("regression", "identity")
    elif objective in ("count:poisson", "reg:gamma", "reg:tweedie"):
        margin = [math.log(b) for b in base]
        output = ir.Output("regression", "exp")
    else:
        raise ConversionError(f"{name} at {path} uses objective {objective!r}; it does not compile")
    node = ir.TreeEnsemble(fields, trees, n_outputs=n_out, base=margin, combine="sum",
                           compare="<", input_dtype="float32")
    return node, output, "float32"


def _xgboost_base(text: str, n_out: int) -> list[float]:
    values = json.loads(text) if str(text).startswith("[") else [float(text)]
    values = [float(np.float32(v)) for v in values]
    return values * n_out if len(values) == 1 else values


def _classes(est: Any) -> list:
    return [c.item() if isinstance(c, np.generic) else c for c in est.classes_]


def _is_nan(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(math.isnan(value))
    except TypeError:
        return type(value).__name__ in ("NAType", "NaTType")


def _category(value: Any, kind: str) -> str | float | None:
    """A fitted category as the field holds it: str for categorical fields, float for numeric."""
    if _is_nan(value):
        return None
    if kind == "categorical":
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    return float(value)


def _number_or_none(value: Any) -> float | None:
    return None if _is_nan(value) else float(value)
