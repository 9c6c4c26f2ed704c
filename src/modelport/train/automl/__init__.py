"""AutoML for retraining: FLAML, Optuna and TPOT behind one contract.

:func:`search` takes training rows and a wall-clock budget and returns a fitted plain
scikit-learn ``Pipeline`` — modelport's preprocessing (imputation, scaling, one-hot
encoding) followed by one estimator of a family from :mod:`~modelport.train.automl.space`
— that every format converter and serving mode accepts. Engine-specific wrappers never
reach the registry: each engine hands back a family and parameters, and the estimator is
built and refitted here.

An engine is a module with ``EXTRA`` (the pip extra it needs), ``MODULE`` (the package
it imports) and ``run(problem, families, deadline) -> list[Candidate]``: it searches the
families against :class:`~modelport.train.automl.problem.Problem` (the same folds and
metric for every engine), tries each family's default first, stops by ``deadline``
(``time.monotonic()``) and returns its best candidate per family.

Budget: the whole call — preprocessing, search, optional feature selection and the final
refit on every training row — keeps within ``time_budget_s``. The search stops early
enough to leave time for the refit; when the refit of the winner would still overrun, the
winner as fitted during the search (on most of the rows) is used instead, and the summary
says so.
"""

from __future__ import annotations

import importlib
import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelport.errors import UserError, require
from modelport.train.automl.problem import Candidate, Problem
from modelport.train.automl.space import FAMILIES, families_for
from modelport.train.metrics import higher_is_better

if TYPE_CHECKING:
    from types import ModuleType

    import pandas as pd
    from numpy.typing import ArrayLike

ENGINES = ("flaml", "optuna", "tpot")
log = logging.getLogger("modelport.automl")


@dataclass
class SearchResult:
    """The winner of a search: a fitted pipeline, its family, parameters, validation score."""

    pipeline: Any = field(repr=False)
    family: str
    params: dict[str, Any]
    score: float
    metric: str
    engine: str
    seconds: float
    summary: dict[str, Any]


def engine_module(name: str) -> ModuleType:
    """The engine module ``name``, with its package imported (or a MissingExtra)."""
    if name not in ENGINES:
        raise UserError(f"unknown AutoML engine {name!r}; use one of {', '.join(ENGINES)}")
    module = importlib.import_module(f"modelport.train.automl.{name}")
    require(module.MODULE, module.EXTRA, f"the {name} AutoML engine")
    return module


def search(X: pd.DataFrame, y: ArrayLike, *, task: str, metric: str, time_budget_s: float, engine: str = "flaml",
           estimators: list[str] | None = None, feature_selection: bool = False,
           seed: int = 0) -> SearchResult:
    """Search for the best pipeline for ``X`` (a DataFrame) and ``y`` within the budget.

    ``metric`` is one of the spec's metrics for ``task`` (classification or regression);
    ``estimators`` limits the families (default: every installed one that suits the data
    size). ``feature_selection`` also tries the winner on the input columns that carry
    most of its signal and keeps the smaller set when it scores at least as well.
    """
    import numpy as np

    if task not in ("classification", "regression"):
        raise UserError(f"AutoML searches classification and regression models, not {task}")
    started = time.monotonic()
    hard = started + float(time_budget_s)
    module = engine_module(engine)
    problem = Problem(X, y, task=task, metric=metric, seed=seed)
    codes = task != "classification" or (
        problem.classes is not None and problem.y.dtype.kind in "iu"
        and set(np.unique(problem.y)) == set(range(len(problem.classes))))
    families = families_for(estimators, task, problem.rows, labels_are_codes=codes)
    # leave a tenth of the budget (more with feature selection) for what follows the search
    reserve = max(0.5, time_budget_s * (0.18 if feature_selection else 0.1))
    search_deadline = hard - reserve
    log.info("searching %s with %s for %.0f s over %s (%s)", metric, engine,
             search_deadline - time.monotonic(), ", ".join(f.name for f in families),
             problem.protocol)
    searched = time.monotonic()
    with warnings.catch_warnings():
        # engines and estimators warn about convergence, deprecations and their own
        # settings on every trial; the summary reports what matters
        warnings.simplefilter("ignore")
        found = module.run(problem, families, search_deadline)
    candidates = [c for c in found if c.score is not None and np.isfinite(c.score)]
    search_seconds = time.monotonic() - searched
    if not candidates:
        raise UserError(f"the {engine} search found no model within {time_budget_s:g} s; "
                        "raise automl.time_budget_s")
    best = candidates[0]
    for c in candidates[1:]:
        if problem.better(c.score, best.score):
            best = c
    selection = _select_features(problem, best, hard) if feature_selection else None
    model, refit = _refit(problem, best, hard)
    pipeline = problem.pipeline(model)
    seconds = time.monotonic() - started
    board = sorted(candidates, key=lambda c: c.score, reverse=higher_is_better(metric))
    summary = {
        "engine": engine, "metric": metric, "budget_s": float(time_budget_s),
        "seconds": round(seconds, 2), "search_seconds": round(search_seconds, 2),
        "validation": problem.protocol, "rows": problem.rows,
        "evaluations": problem.evaluations,
        "best": {"family": best.family, "params": _plain(best.params),
                 "score": round(best.score, 6)},
        "leaderboard": [{"family": c.family, "score": round(c.score, 6)} for c in board],
        "feature_selection": selection, "refit": refit,
        "features": problem.keep or problem.columns,
    }
    log.info("best %s %s=%.4f in %.1f s (refit: %s)", best.family, metric, best.score,
             seconds, refit)
    return SearchResult(pipeline=pipeline, family=best.family, params=_plain(best.params),
                        score=best.score, metric=metric, engine=engine, seconds=seconds,
                        summary=summary)


def _estimator(problem: Problem, c: Candidate) -> Any:
    return c.estimator if c.estimator is not None else \
        FAMILIES[c.family].make(problem.task, c.params, seed=problem.seed)


def _select_features(problem: Problem, best: Candidate, hard: float) -> dict[str, Any]:
    """Try the winner on the input columns that carry most of the signal; keep the smaller
    set when it scores at least as well on the same splits."""
    import numpy as np
    from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor

    expected = (best.fit_seconds or 1.0) * len(problem.splits) * 1.5 + 1.0
    if hard - time.monotonic() < expected * 2:
        return {"tried": False, "reason": "no time left in the budget"}
    rows = np.random.default_rng(problem.seed).permutation(problem.rows)[:20_000]
    screen = (ExtraTreesClassifier if problem.task == "classification" else
              ExtraTreesRegressor)(n_estimators=50, random_state=problem.seed, n_jobs=1)
    screen.fit(problem.Xt[rows], problem.y[rows])
    importance: dict[str, float] = {}
    for owner, value in zip(problem.owner, screen.feature_importances_, strict=True):
        importance[owner] = importance.get(owner, 0.0) + float(value)
    floor = 0.2 / len(importance)
    keep = [c for c in problem.columns if importance.get(c, 0.0) >= floor]
    if not keep or len(keep) == len(importance):
        return {"tried": True, "kept": False, "reason": "every column carries signal"}
    full = (problem.Xt, problem.owner)
    problem.select(keep)
    score, fitted, seconds = problem.evaluate(_estimator(problem, best))
    if problem.better(best.score, score):
        problem.Xt, problem.owner, problem.keep = full[0], full[1], None
        return {"tried": True, "kept": False, "columns": len(keep), "score": round(score, 6),
                "reason": f"{len(keep)} columns scored worse"}
    best.score, best.fitted, best.fit_seconds = score, fitted, seconds
    dropped = [c for c in problem.columns if c not in keep]
    return {"tried": True, "kept": True, "dropped": dropped, "score": round(score, 6)}


def _refit(problem: Problem, best: Candidate, hard: float) -> tuple[Any, str]:
    """The winner fitted on every training row, or as fitted in the search when a refit
    would overrun the budget."""
    import numpy as np

    fit_rows = len(problem.splits[0][0])
    expected = (best.fit_seconds or 0.0) * problem.rows / max(fit_rows, 1) * 1.2
    # an engine may have fitted its copy on re-coded labels; only the same classes will do
    usable = best.fitted is not None and (problem.classes is None or np.array_equal(
        getattr(best.fitted, "classes_", problem.classes), problem.classes))
    if usable and time.monotonic() + expected > hard:
        return best.fitted, f"skipped: about {expected:.1f} s would overrun the budget"
    model = _estimator(problem, best)
    model.fit(problem.Xt, problem.y)
    return model, "all training rows"


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    out = {}
    for k, v in params.items():
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
    return out
