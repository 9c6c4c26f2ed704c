"""The search space modelport defines: model families, their defaults and their ranges.

Every engine searches the same families. A family names one estimator per task, the
parameters its default candidate is built with (tried first: under small budgets a good
default is hard to beat), and the ranges the search explores, in an engine-neutral form
that each engine translates (FLAML's ``tune`` domains, Optuna's ``suggest_*``, TPOT's
configuration spaces). Importing this module imports no machine-learning library.

=============  ==========================================  ====================================
family         classification                              regression
=============  ==========================================  ====================================
``hgb``        HistGradientBoostingClassifier              HistGradientBoostingRegressor
``lgbm``       lightgbm.LGBMClassifier                     lightgbm.LGBMRegressor
``xgboost``    xgboost.XGBClassifier                       xgboost.XGBRegressor
``rf``         RandomForestClassifier                      RandomForestRegressor
``extra_tree`` ExtraTreesClassifier                        ExtraTreesRegressor
``lr``         LogisticRegression                          Ridge
``knn``        KNeighborsClassifier                        KNeighborsRegressor
``svm``        SVC (RBF kernel, probabilities)             SVR (RBF kernel)
=============  ==========================================  ====================================
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Param:
    """One searched parameter: ``int`` or ``float`` in ``[low, high]`` (``log``: on a log
    scale), or ``choice`` among ``choices``."""

    kind: str
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    choices: tuple = ()

    def clip(self, value: Any) -> Any:
        """``value`` moved inside the range (a default outside it becomes its nearest end)."""
        if self.kind == "choice":
            return value if value in self.choices else self.choices[0]
        value = min(max(value, self.low), self.high)
        return int(round(value)) if self.kind == "int" else float(value)


def _int(low: float, high: float, log: bool = False) -> Param:
    return Param("int", low, high, log)


def _float(low: float, high: float, log: bool = False) -> Param:
    return Param("float", low, high, log)


def _choice(*choices: Any) -> Param:
    return Param("choice", choices=tuple(choices))


@dataclass(frozen=True)
class Family:
    """A model family: one estimator class per task, fixed and default parameters, ranges."""

    name: str
    classes: dict[str, str]
    space: dict[str, Param]
    fixed: dict[str, Any] = field(default_factory=dict)
    regression_space: dict[str, Param] | None = None
    max_rows: int | None = None
    extra: str | None = None
    #: the engines' own names for this family, where they have one
    flaml: dict[str, str] = field(default_factory=dict)
    tpot: dict[str, str] = field(default_factory=dict)

    def module(self, task: str) -> str:
        return self.classes[task].rpartition(".")[0]

    def available(self) -> bool:
        top = next(iter(self.classes.values())).split(".")[0]
        return importlib.util.find_spec(top) is not None

    def params_space(self, task: str) -> dict[str, Param]:
        return self.regression_space if task == "regression" and self.regression_space \
            is not None else self.space

    def cls(self, task: str) -> type:
        """The estimator class for ``task`` (imported through the one checker of spec imports,
        :func:`modelport.train.imports.import_class`)."""
        from modelport.train.imports import import_class

        return import_class(self.classes[task], f"automl family {self.name}", task)

    def make(self, task: str, params: dict[str, Any] | None = None, seed: int = 0) -> Any:
        """A fresh estimator of this family for ``task`` with ``params`` over the fixed ones."""
        cls = self.cls(task)
        merged = {**self.fixed, **(params or {})}
        if "random_state" in cls().get_params():
            merged.setdefault("random_state", seed)
        if task == "regression":
            merged = {k: v for k, v in merged.items() if k != "probability"}
        return cls(**merged)


_TREES = {
    "n_estimators": _int(50, 400, log=True),
    "max_features": _float(0.1, 1.0),
    "min_samples_leaf": _int(1, 32, log=True),
}

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family(
        "hgb",
        {"classification": "sklearn.ensemble.HistGradientBoostingClassifier",
         "regression": "sklearn.ensemble.HistGradientBoostingRegressor"},
        {"learning_rate": _float(0.01, 0.3, log=True), "max_iter": _int(50, 500, log=True),
         "max_leaf_nodes": _int(8, 128, log=True), "min_samples_leaf": _int(4, 128, log=True),
         "l2_regularization": _float(1e-6, 10.0, log=True), "max_features": _float(0.3, 1.0)},
        flaml={"classification": "histgb", "regression": "histgb"},
        tpot={"classification": "HistGradientBoostingClassifier",
              "regression": "HistGradientBoostingRegressor"},
    ),
    Family(
        "lgbm",
        {"classification": "lightgbm.LGBMClassifier", "regression": "lightgbm.LGBMRegressor"},
        {"n_estimators": _int(50, 1000, log=True), "learning_rate": _float(0.01, 0.3, log=True),
         "num_leaves": _int(8, 256, log=True), "min_child_samples": _int(5, 100, log=True),
         "colsample_bytree": _float(0.4, 1.0), "reg_lambda": _float(1e-3, 10.0, log=True)},
        fixed={"verbose": -1, "n_jobs": 1},
        extra="automl",
        flaml={"classification": "lgbm", "regression": "lgbm"},
        tpot={"classification": "LGBMClassifier", "regression": "LGBMRegressor"},
    ),
    Family(
        "xgboost",
        {"classification": "xgboost.XGBClassifier", "regression": "xgboost.XGBRegressor"},
        {"n_estimators": _int(50, 1000, log=True), "learning_rate": _float(0.01, 0.3, log=True),
         "max_depth": _int(2, 10), "min_child_weight": _float(0.5, 20.0, log=True),
         "subsample": _float(0.5, 1.0), "colsample_bytree": _float(0.4, 1.0),
         "reg_lambda": _float(1e-3, 10.0, log=True)},
        fixed={"tree_method": "hist", "n_jobs": 1, "verbosity": 0},
        extra="automl",
        flaml={"classification": "xgboost", "regression": "xgboost"},
        tpot={"classification": "XGBClassifier", "regression": "XGBRegressor"},
    ),
    Family(
        "rf",
        {"classification": "sklearn.ensemble.RandomForestClassifier",
         "regression": "sklearn.ensemble.RandomForestRegressor"},
        _TREES, fixed={"n_jobs": 1},
        flaml={"classification": "rf", "regression": "rf"},
        tpot={"classification": "RandomForestClassifier", "regression": "RandomForestRegressor"},
    ),
    Family(
        "extra_tree",
        {"classification": "sklearn.ensemble.ExtraTreesClassifier",
         "regression": "sklearn.ensemble.ExtraTreesRegressor"},
        _TREES, fixed={"n_jobs": 1},
        flaml={"classification": "extra_tree", "regression": "extra_tree"},
        tpot={"classification": "ExtraTreesClassifier", "regression": "ExtraTreesRegressor"},
    ),
    Family(
        "lr",
        {"classification": "sklearn.linear_model.LogisticRegression",
         "regression": "sklearn.linear_model.Ridge"},
        {"C": _float(1e-3, 1e3, log=True)},
        fixed={"max_iter": 2000},
        regression_space={"alpha": _float(1e-3, 1e3, log=True)},
        flaml={"classification": "lrl2"},
        tpot={"classification": "LogisticRegression", "regression": "Ridge"},
    ),
    Family(
        "knn",
        {"classification": "sklearn.neighbors.KNeighborsClassifier",
         "regression": "sklearn.neighbors.KNeighborsRegressor"},
        {"n_neighbors": _int(2, 64, log=True), "weights": _choice("uniform", "distance")},
        max_rows=20_000,
        flaml={"classification": "kneighbor", "regression": "kneighbor"},
        tpot={"classification": "KNeighborsClassifier", "regression": "KNeighborsRegressor"},
    ),
    Family(
        "svm",
        {"classification": "sklearn.svm.SVC", "regression": "sklearn.svm.SVR"},
        {"C": _float(1e-2, 1e3, log=True), "gamma": _float(1e-4, 1.0, log=True)},
        fixed={"probability": True},
        max_rows=10_000,
        tpot={"classification": "SVC"},
    ),
)}

#: what a search tries first, and in this order
DEFAULT_ORDER = ("lr", "hgb", "lgbm", "rf", "extra_tree", "xgboost", "knn", "svm")


def families_for(names: list[str] | None, task: str, rows: int,
                 labels_are_codes: bool = True) -> list[Family]:
    """The families a search runs: ``names`` (default: all installed ones), without those
    too slow for ``rows`` rows, in :data:`DEFAULT_ORDER`.

    XGBoost classifies only labels ``0..k-1``; with other labels it is left out.
    """
    from modelport.errors import MissingExtra

    wanted = list(names) if names else list(DEFAULT_ORDER)
    chosen = []
    for name in sorted(wanted, key=DEFAULT_ORDER.index):
        family = FAMILIES[name]
        if not family.available():
            if names:
                raise MissingExtra(family.extra or "automl", family.module(task).split(".")[0],
                                   f"the AutoML family {name!r}")
            continue
        if not names and family.max_rows is not None and rows > family.max_rows:
            continue
        if name == "xgboost" and task == "classification" and not labels_are_codes:
            continue
        chosen.append(family)
    return chosen or [FAMILIES["hgb"]]
