"""The TPOT engine: genetic programming over modelport's families, with a hard deadline.

TPOT 1.1 overruns its ``max_time_mins`` (it waits for running evaluations, and its dask
cluster takes seconds to start), so it runs in a child process that is killed at the
deadline; before it starts, the default histogram gradient boosting is scored here, so a
TPOT run that finds nothing in time still leaves a candidate. TPOT searches the families'
estimators (its own configuration spaces for each), scored by modelport's metric on the
same folds as every engine; the winner is unwrapped into plain scikit-learn steps (TPOT's
``Passthrough`` becomes ``"passthrough"``) and refused if anything else of TPOT's remains.

TPOT needs the ``xgboost`` distribution, which installs the same ``xgboost`` module as
``xgboost-cpu`` in modelport's ``gbm`` and ``automl`` extras; give TPOT its own
environment (``pip install 'modelport[tpot]'`` in a fresh virtual environment).
"""

from __future__ import annotations

import multiprocessing
import time
from typing import TYPE_CHECKING, Any

from modelport.errors import UserError
from modelport.train.automl.problem import Candidate, Problem
from modelport.train.automl.space import FAMILIES, Family
from modelport.train.metrics import higher_is_better, metric_value

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    import numpy as np

EXTRA = "tpot"
MODULE = "tpot"
#: modules a winner's steps may come from
PLAIN = ("sklearn.", "lightgbm.", "xgboost.")


def run(problem: Problem, families: list[Family], deadline: float) -> list[Candidate]:
    """Score the default gradient boosting, then run TPOT in a child killed at
    ``deadline``; the candidates found."""
    out = []
    if "hgb" in [f.name for f in families]:
        estimator = FAMILIES["hgb"].make(problem.task, seed=problem.seed)
        score, fitted, seconds = problem.evaluate(estimator)
        out.append(Candidate("hgb", {}, score, estimator=estimator, fitted=fitted,
                             fit_seconds=seconds))
    names = [f.tpot[problem.task] for f in families if problem.task in f.tpot]
    left = deadline - time.monotonic()
    if not names or left < 5:
        return out
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(problem, names, left, send), daemon=True)
    child.start()
    send.close()
    found = None
    if receive.poll(max(deadline - time.monotonic(), 0)):
        try:
            found = receive.recv()
        except EOFError:
            found = None
    if child.is_alive():
        child.kill()
    child.join()
    if isinstance(found, Exception):
        raise found
    if found is not None:
        estimator, score, fitted, seconds, family = found
        out.append(Candidate(family, estimator.get_params(deep=False), score,
                             estimator=estimator, fitted=fitted, fit_seconds=seconds))
    return out


def _child(problem: Problem, names: list[str], left: float, send: Connection) -> None:
    try:
        send.send(_search(problem, names, left))
    except Exception as exc:  # reported to the parent, which raises it
        send.send(UserError(f"TPOT failed: {type(exc).__name__}: {exc}"[:500]))
    finally:
        send.close()


def _search(problem: Problem, names: list[str], left: float
            ) -> tuple[Any, float, Any, float, str]:
    from distributed import Client, LocalCluster
    from tpot import TPOTClassifier, TPOTRegressor
    from tpot.config import get_search_space

    n_classes = len(problem.classes) if problem.classes is not None else 0
    space = get_search_space(names, n_classes=max(n_classes, 2), n_samples=problem.rows,
                             n_features=problem.Xt.shape[1], random_state=problem.seed)
    sign = 1 if higher_is_better(problem.metric) else -1

    def scorer(estimator: Any, X: np.ndarray, y: np.ndarray) -> float:
        return metric_value(problem.metric, problem.task, y, estimator, X)

    cls = TPOTClassifier if problem.task == "classification" else TPOTRegressor
    # TPOT stops starting evaluations at max_time_mins but waits for running ones: leave
    # it half the time, the rest for that wait and for scoring the winner here
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                           dashboard_address=None)
    client = Client(cluster)
    try:
        tpot = cls(search_space=space, scorers=[scorer], scorers_weights=[sign],
                   cv=problem.splitter() if problem.cv else problem.splits,
                   max_time_mins=left * 0.5 / 60, max_eval_time_mins=left * 0.25 / 60,
                   n_jobs=1, random_state=problem.seed, verbose=0, client=client)
        tpot.fit(problem.Xt, problem.y)
        pipeline = tpot.fitted_pipeline_
    finally:
        client.close()
        cluster.close()
    estimator = unwrap(pipeline)
    score, fitted, seconds = problem.evaluate(estimator)
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    family = next((f.name for f in FAMILIES.values()
                   if f.classes[problem.task].endswith("." + type(final).__name__)),
                  type(final).__name__)
    return estimator, score, fitted, seconds, family


def unwrap(pipeline: Any) -> Any:
    """An unfitted copy of a TPOT pipeline made of plain scikit-learn, LightGBM or XGBoost
    steps only; a single-step pipeline becomes its estimator."""
    from sklearn.base import clone
    from sklearn.pipeline import FeatureUnion, Pipeline

    def plain(step: Any) -> Any:
        if isinstance(step, str):
            return step
        kind = type(step)
        if kind.__module__.startswith("tpot.") and kind.__name__ == "Passthrough":
            return "passthrough"
        if kind.__module__.startswith("tpot.") and kind.__name__ == "SkipTransformer":
            return "drop"
        if isinstance(step, Pipeline):
            steps = [(n, plain(s)) for n, s in step.steps]
            steps = [(n, s) for n, s in steps if s != "passthrough"] or steps[-1:]
            return steps[0][1] if len(steps) == 1 else Pipeline(steps)
        if isinstance(step, FeatureUnion):
            parts = [(n, plain(s)) for n, s in step.transformer_list]
            if all(s == "passthrough" for _, s in parts) and len(parts) == 1:
                return "passthrough"
            return FeatureUnion(parts)
        if not kind.__module__.startswith(PLAIN):
            raise UserError(f"TPOT's winner holds {kind.__module__}.{kind.__name__}, which "
                            "is not plain scikit-learn; it cannot be registered")
        return clone(step)

    out = plain(pipeline)
    if out in ("passthrough", "drop"):
        raise UserError("TPOT's winner has no estimator")
    return out
