"""The FLAML engine: FLAML's cost-frugal search over modelport's families.

Families FLAML knows (``histgb``, ``lgbm``, ``xgboost``, ``rf``, ``extra_tree``,
``lrl2``, ``kneighbor``) use FLAML's own search spaces; the others (ridge regression, the
RBF support-vector machine) are added as FLAML learners built from
:mod:`~modelport.train.automl.space`. Histogram gradient boosting and LightGBM start from
their libraries' defaults rather than FLAML's tiny first models: under small budgets the
default is the configuration to beat. FLAML sees the preprocessed matrix and the same
folds (or hold-out rows) and metric as every engine; its own data transformations, label
re-balancing and final retraining are switched off, and its wrappers are unwrapped into
plain estimators.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

from modelport.train.automl.problem import Candidate, Problem
from modelport.train.automl.space import Family, Param
from modelport.train.metrics import higher_is_better, metric_value

if TYPE_CHECKING:
    from flaml import AutoML
    from flaml.automl.model import SKLearnEstimator

EXTRA = "automl"
MODULE = "flaml"

#: where FLAML's histgb and lgbm start: the libraries' own defaults
STARTING_POINTS = {
    "histgb": {"n_estimators": 100, "max_leaves": 31, "min_samples_leaf": 20,
               "learning_rate": 0.1, "log_max_bin": 8, "l2_regularization": 1 / 1024},
    "lgbm": {"n_estimators": 100, "num_leaves": 31, "min_child_samples": 20,
             "learning_rate": 0.1, "log_max_bin": 8, "colsample_bytree": 1.0,
             "reg_alpha": 1 / 1024, "reg_lambda": 1.0},
    "lrl2": {"C": 1.0},
}


def run(problem: Problem, families: list[Family], deadline: float) -> list[Candidate]:
    """Search with FLAML until ``deadline``; the best candidate of each family."""
    from flaml import AutoML

    logging.getLogger("flaml.automl.logger").setLevel(logging.WARNING)
    automl = AutoML()
    names: dict[str, str] = {}  # FLAML learner name -> family
    for family in families:
        name = family.flaml.get(problem.task)
        if name is None:
            name = f"mp_{family.name}"
            automl.add_learner(name, _learner(family, problem.task, problem.seed))
        names[name] = family.name
    higher = higher_is_better(problem.metric)

    def metric(X_val: Any, y_val: Any, estimator: Any, *args: Any, **kwargs: Any
               ) -> tuple[float, dict[str, float]]:
        value = metric_value(problem.metric, problem.task, y_val, estimator, X_val)
        return (-value if higher else value), {problem.metric: value}

    settings: dict[str, Any] = dict(
        task=problem.task, metric=metric, estimator_list=list(names),
        time_budget=max(deadline - time.monotonic(), 0.1), seed=problem.seed, n_jobs=1,
        verbose=0, retrain_full=False, auto_augment=False, skip_transform=True,
        starting_points={k: v for k, v in STARTING_POINTS.items() if k in names},
        log_file_name="", early_stop=False,
    )
    if problem.cv:
        automl.fit(problem.Xt, problem.y, eval_method="cv", split_type=problem.splitter(),
                   **settings)
    else:
        fit, valid = problem.splits[0]
        automl.fit(problem.Xt[fit], problem.y[fit], X_val=problem.Xt[valid],
                   y_val=problem.y[valid], eval_method="holdout", **settings)
    # config_history holds only the trials that improved on the best so far
    problem.evaluations += sum(automl._iter_per_learner.values())
    return _candidates(automl, names, higher)


def _candidates(automl: AutoML, names: dict[str, str], higher: bool) -> list[Candidate]:
    out = []
    losses = automl.best_loss_per_estimator
    for name, family in names.items():
        config = automl.best_config_per_estimator.get(name)
        loss = losses.get(name)
        if config is None or loss is None or not math.isfinite(loss):
            continue
        learner = automl._state.learner_classes[name](task=automl._state.task, **config)
        fitted = None
        trained = automl.best_model_for_estimator(name)
        if trained is not None and getattr(trained, "estimator", None) is not None:
            fitted = trained.estimator  # FLAML may have trimmed its iterations to the budget
            params = fitted.get_params()
        else:
            params = dict(learner.params)
        estimator = learner.estimator_class(**params)
        state = automl._search_states[name]
        out.append(Candidate(
            family=family, params=estimator.get_params(), score=-loss if higher else loss,
            estimator=estimator, fitted=fitted,
            fit_seconds=getattr(state, "best_config_train_time", None)))
    return out


def _learner(family: Family, task: str, seed: int) -> type[SKLearnEstimator]:
    """A FLAML learner for a family FLAML has none of, searching modelport's ranges."""
    from flaml.automl.model import SKLearnEstimator

    space = family.params_space(task)
    default = family.make(task, seed=seed).get_params()

    class Learner(SKLearnEstimator):
        @classmethod
        def search_space(cls, data_size: tuple[int, int], task: Any, **params: Any
                         ) -> dict[str, dict[str, Any]]:
            out = {}
            for name, param in space.items():
                start = default.get(name)
                if name == "gamma":  # 'scale' on standardised columns
                    start = 1.0 / max(int(data_size[1]), 1)
                out[name] = {"domain": _domain(param),
                             "init_value": param.clip(start) if start is not None
                             else _middle(param)}
            return out

        def __init__(self, task: Any = "binary", n_jobs: int | None = None, **config: Any) -> None:
            super().__init__(task, **config)
            kind = "classification" if self._task.is_classification() else "regression"
            self.estimator_class = family.cls(kind)
            self.params = {**family.fixed, **self.params}
            if kind == "regression":
                self.params.pop("probability", None)
            if "random_state" in default:
                self.params.setdefault("random_state", seed)

    Learner.__name__ = f"Modelport{family.name.title()}"
    return Learner


def _domain(param: Param) -> Any:
    from flaml import tune

    if param.kind == "choice":
        return tune.choice(list(param.choices))
    if param.kind == "int":
        return (tune.lograndint if param.log else tune.randint)(int(param.low),
                                                                 int(param.high) + 1)
    return (tune.loguniform if param.log else tune.uniform)(param.low, param.high)


def _middle(param: Param) -> Any:
    if param.kind == "choice":
        return param.choices[0]
    value = math.sqrt(param.low * param.high) if param.log else (param.low + param.high) / 2
    return param.clip(value)
