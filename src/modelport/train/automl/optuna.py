"""The Optuna engine: tree-structured Parzen estimators over modelport's search space.

The family is the first choice of every trial and each family's parameters are searched
in its own ranges (:mod:`~modelport.train.automl.space`). The first trials are the
families' defaults, in :data:`~modelport.train.automl.space.DEFAULT_ORDER`. Optuna's own
timeout is only checked between trials, so the budget is kept here: a trial starts only
when a trial of its family has taken less than the time left (the first trial always runs,
so a search always has a candidate).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Literal

from modelport.train.automl.problem import Candidate, Problem
from modelport.train.automl.space import FAMILIES, Family, Param
from modelport.train.metrics import higher_is_better

if TYPE_CHECKING:
    from optuna.distributions import CategoricalChoiceType
    from optuna.trial import Trial

EXTRA = "automl"
MODULE = "optuna"
#: consecutive trials skipped for lack of time after which the search stops
MAX_SKIPS = 20


def run(problem: Problem, families: list[Family], deadline: float) -> list[Candidate]:
    """Search with Optuna's TPE sampler until ``deadline``; the best candidate per family."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(logging.WARNING)
    names = [f.name for f in families]
    sampler = optuna.samplers.TPESampler(seed=problem.seed, multivariate=True, group=True,
                                         n_startup_trials=len(names) + 5)
    direction: Literal["maximize", "minimize"] = (
        "maximize" if higher_is_better(problem.metric) else "minimize")
    study = optuna.create_study(direction=direction, sampler=sampler)
    for name in names:
        study.enqueue_trial({"family": name}, user_attrs={"default": True})
    best: dict[str, Candidate] = {}
    seconds: dict[str, float] = {}  # family -> longest evaluation so far
    skips = 0
    while skips < MAX_SKIPS:
        left = deadline - time.monotonic()
        if left <= 0 and best:  # past the deadline only to find a first candidate
            break
        trial = study.ask()
        family = FAMILIES[trial.suggest_categorical("family", names)]
        if trial.user_attrs.get("default"):
            params = {}
        else:
            params = {name: _suggest(trial, f"{family.name}.{name}", p)
                      for name, p in family.params_space(problem.task).items()}
        expected = seconds.get(family.name, 0.0)
        if expected > left and best:
            study.tell(trial, state=TrialState.PRUNED)
            skips += 1
            continue
        skips = 0
        estimator = family.make(problem.task, params, seed=problem.seed)
        started = time.monotonic()
        try:
            score, fitted, fit_seconds = problem.evaluate(estimator)
        except Exception:  # a configuration that cannot fit this data: the search goes on
            study.tell(trial, state=TrialState.FAIL)
            continue
        finally:
            seconds[family.name] = max(seconds.get(family.name, 0.0),
                                       time.monotonic() - started)
        study.tell(trial, score)
        if problem.better(score, best[family.name].score if family.name in best else None):
            best[family.name] = Candidate(family=family.name, params=params, score=score,
                                          estimator=estimator, fitted=fitted,
                                          fit_seconds=fit_seconds)
    return list(best.values())


def _suggest(trial: Trial, name: str, param: Param) -> CategoricalChoiceType:
    if param.kind == "choice":
        return trial.suggest_categorical(name, list(param.choices))
    if param.kind == "int":
        return trial.suggest_int(name, int(param.low), int(param.high), log=param.log)
    return trial.suggest_float(name, param.low, param.high, log=param.log)
