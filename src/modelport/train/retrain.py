"""Retraining with a champion/challenger gate: the same spec on fresh data, promoted only
when it is better.

``retrain("churn.yaml")`` reads the spec's data afresh (optionally only the last
``data.window.days`` days), holds out ``promotion.holdout`` of the rows, trains a
challenger on the rest — an AutoML search when the spec has an ``automl`` section, else the
spec's own model — and registers it with its lineage (parent: the current champion; the
data fingerprint; the search summary). Champion and challenger are then scored on the same
held-out rows, and the alias moves to the challenger only when it wins by
``promotion.min_improvement``. The decision and both scores are recorded as a ``retrain``
event of the model (``modelport models show NAME --json`` lists them).

The result is a plain dict, the JSON that ``modelport retrain --json`` prints::

    {"decision": "promoted" | "kept" | "failed", "model": "churn", "alias": "production",
     "metric": "roc_auc", "champion": {"version": 1, "score": 0.861, ...},
     "challenger": {"version": 2, "score": 0.867, ...}, "improvement": 0.006, ...}

Exit codes of the command (:data:`EXIT_CODES`): 0 promoted, 3 kept, 1 failed (2 when the
failure is a mistake in the spec or the data).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import NotFound, UserError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from modelport.predictor import Predictor
    from modelport.registry import Registry, Version
    from modelport.train.spec import Spec

EXIT_CODES = {"promoted": 0, "kept": 3, "failed": 1}
EVENT = "retrain"
log = logging.getLogger("modelport.retrain")


def retrain(spec: str | Path | dict | Spec, *, registry: Registry | None = None,
            engine: str | None = None, time_budget_s: float | None = None) -> dict[str, Any]:
    """Retrain the model a spec describes on fresh data; promote it only if it wins.

    ``engine`` and ``time_budget_s`` override the spec's ``automl`` section (and turn the
    search on for a spec without one). Mistakes in the spec raise a
    :class:`~modelport.errors.UserError`; anything that goes wrong after the spec is read
    is returned as ``decision: failed`` with the error, and recorded as an event.
    """
    from modelport.registry import Registry
    from modelport.train.spec import AutoML, Spec, load_spec

    started = time.monotonic()
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    if engine is not None or time_budget_s is not None:
        base = spec.automl or AutoML(metric=spec.promotion.metric)
        automl = replace(base, engine=engine or base.engine,
                         time_budget_s=float(time_budget_s or base.time_budget_s))
        spec = replace(spec, automl=automl)
        from modelport.train.automl import engine_module

        engine_module(automl.engine)  # an unknown or absent engine fails before any work
    reg = registry or Registry()
    result: dict[str, Any] = {
        "decision": "failed", "model": spec.name, "alias": spec.promotion.alias,
        "metric": spec.promotion.metric, "min_improvement": spec.promotion.min_improvement,
        "champion": {"version": None, "score": None}, "challenger": {"version": None,
                                                                   "score": None},
    }
    try:
        _run(spec, reg, result)
    except Exception as exc:
        result["decision"] = "failed"
        result["error"] = {"type": type(exc).__name__,
                           "message": str(exc).splitlines()[0] if str(exc) else "",
                           "input": isinstance(exc, UserError)}
        result["reason"] = f"{type(exc).__name__}: {result['error']['message']}"
        if not isinstance(exc, UserError):
            log.exception("retraining %s failed", spec.name)
    result["seconds"] = round(time.monotonic() - started, 2)
    try:
        reg.record_event(spec.name, EVENT, _event(result))
    except Exception as exc:  # the decision stands; only its record is missing
        log.error("could not record the retrain event of %s: %s", spec.name, exc)
    return result


def exit_code(result: dict[str, Any]) -> int:
    """The command's exit code for a result: :data:`EXIT_CODES`, and 2 for a failure
    caused by the spec or the data."""
    if result["decision"] == "failed" and result.get("error", {}).get("input"):
        return 2
    return EXIT_CODES[result["decision"]]


def summary_line(result: dict[str, Any]) -> str:
    """One line saying what a retrain did, for people and logs."""
    name, alias, metric = result["model"], result["alias"], result["metric"]
    champ, chall = result["champion"], result["challenger"]
    if result["decision"] == "failed":
        return f"{name}: retrain failed: {result.get('reason', 'unknown error')}"
    against = (f"champion {name}/{champ['version']} {_fmt(champ['score'])}"
               if champ.get("version") is not None else "no champion")
    if result["decision"] == "promoted":
        return (f"{name}: promoted {name}/{chall['version']} to @{alias} ({metric} "
                f"{_fmt(chall['score'])} vs {against}; {result['reason']})")
    return (f"{name}: kept {name}/{champ['version']} at @{alias}; challenger "
            f"{name}/{chall['version']} {metric} {_fmt(chall['score'])} vs "
            f"{_fmt(champ['score'])} ({result['reason']})")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _run(spec: Spec, reg: Registry, result: dict[str, Any]) -> None:
    from modelport.io.tables import describe, read_table
    from modelport.register import fingerprint, log_model
    from modelport.train.metrics import evaluate, higher_is_better
    from modelport.train.oneoff import (
        _categoricals_as_strings,
        _check_target,
        _split,
        feature_kinds,
    )
    from modelport.train.preprocess import build_pipeline, column_kinds

    promotion = spec.promotion
    metric = promotion.metric
    frame = read_table(spec.source, base=spec.base)
    read_rows = len(frame)
    frame = _window(spec, frame)
    features, numeric, categorical = feature_kinds(spec, frame)
    frame = frame[frame[spec.target].notna()].reset_index(drop=True)
    # every string column as the models are fed, since the champion may read other columns
    _, strings, _ = column_kinds(frame, [c for c in frame.columns if c != spec.target])
    frame = _categoricals_as_strings(frame, strings)
    X, y = frame[features], frame[spec.target]
    _check_target(spec, y)
    # the gate's hold-out is this run's test split
    X_train, X_hold, y_train, y_hold = _split(replace(spec, test_size=promotion.holdout), X, y)
    source = describe(spec.source)
    data_fingerprint = fingerprint(frame[[*features, spec.target]])
    result["data"] = {"source": source, "rows_read": read_rows, "rows": len(frame),
                      "train_rows": len(X_train), "holdout_rows": len(X_hold),
                      "fingerprint": data_fingerprint}

    champion = _champion(reg, spec.name, promotion.alias)
    wanted = list(dict.fromkeys([*spec.metrics, metric]))
    if champion is not None:
        result["champion"] = _score_champion(reg, champion, spec.task,
                                             frame.drop(columns=[spec.target]).loc[X_hold.index],
                                             y_hold, wanted, metric)

    search = None
    if spec.automl is not None:
        from modelport.train.automl import search as automl_search

        a = spec.automl
        found = automl_search(X_train, y_train, task=spec.task, metric=a.metric,
                              time_budget_s=a.time_budget_s, engine=a.engine,
                              estimators=a.estimators, feature_selection=a.feature_selection,
                              seed=spec.seed)
        model, search, params = found.pipeline, found.summary, found.params
        estimator = f"{found.family} ({a.engine})"
    else:
        model = build_pipeline(spec.make_estimator(), X_train, numeric, categorical,
                               spec.preprocess)
        model.fit(X_train, y_train)
        params, estimator = spec.params, spec.estimator
    metrics, skipped = evaluate(spec.task, model, X_hold, y_hold, wanted, seed=spec.seed)
    if metric not in metrics:
        raise UserError(f"{spec.label}: promotion.metric: {metric} cannot be computed on the "
                        f"hold-out rows ({skipped.get(metric)}); use another metric or "
                        "more data")
    parent = result["champion"].get("version")
    # the whole training split, so that serving does not flag the challenger's own
    # training rows as out of range
    version = log_model(
        model, spec.name, sample=X_train, task=spec.task, metrics=metrics,
        params=params or None, tags={"spec": spec.label, "retrain": "challenger"},
        parent=parent, formats=spec.formats, description=spec.description,
        data_fingerprint=data_fingerprint,
        lineage={"spec": spec.raw, "estimator": estimator, "source": source,
                 "features": features, "target": spec.target, "rows": result["data"],
                 "champion": parent, "search": search},
        registry=reg,
    )
    result["challenger"] = {"version": version.version, "uri": version.uri,
                            "score": metrics[metric], "metrics": metrics,
                            "estimator": estimator}
    if search is not None:
        result["search"] = search

    champ_score = result["champion"].get("score")
    if champ_score is None:
        why = result["champion"].get("error") or f"no {spec.name}@{promotion.alias} yet"
        decision, improvement, reason = "promoted", None, why
    else:
        sign = 1 if higher_is_better(metric) else -1
        improvement = sign * (metrics[metric] - champ_score)
        wins = improvement > 0 and improvement >= promotion.min_improvement - 1e-12
        decision = "promoted" if wins else "kept"
        reason = (f"{'+' if improvement >= 0 else ''}{improvement:.4f} "
                  f"{'>=' if wins else '<'} {promotion.min_improvement:g}")
    result["improvement"] = None if improvement is None else round(improvement, 6)
    result["reason"] = reason
    if decision == "promoted":
        reg.set_alias(spec.name, version.version, promotion.alias,
                      reason=f"retrain: {metric} {metrics[metric]:.4f} vs "
                             f"{_fmt(champ_score)} ({reason})")
    result["decision"] = decision


def _window(spec: Spec, frame: pd.DataFrame) -> pd.DataFrame:
    """Only the rows within ``data.window``'s last days."""
    if spec.window is None:
        return frame
    import pandas as pd

    column = spec.window["column"]
    if column not in frame.columns:
        raise spec.fail("data.window.column", f"column {column!r} is not in the data")
    try:
        stamps = pd.to_datetime(frame[column], utc=True)
    except (ValueError, TypeError) as exc:
        raise spec.fail("data.window.column", f"column {column!r} does not hold timestamps "
                        f"({str(exc).splitlines()[0]})") from None
    since = datetime.now(UTC) - timedelta(days=spec.window["days"])
    kept = frame[stamps >= since]
    if kept.empty:
        raise spec.fail("data.window", f"no rows have {column} within the last "
                        f"{spec.window['days']:g} days ({len(frame):,} rows read)")
    return kept


def _champion(reg: Registry, name: str, alias: str) -> Version | None:
    try:
        return reg.get(f"{name}@{alias}")
    except NotFound:
        return None


def _score_champion(reg: Registry, version: Version, task: str, X: pd.DataFrame,
                    y: pd.Series, metrics: list[str],
                    metric: str) -> dict[str, Any]:
    """The champion's scores on the hold-out rows, through the model it serves with."""
    from modelport.train.metrics import evaluate

    out: dict[str, Any] = {"version": version.version, "uri": version.uri, "score": None}
    try:
        predictor = reg.load(version)
        model = getattr(predictor, "model", None) or _Scoring(predictor)
        scores, _ = evaluate(task, model, X, y, metrics)
    except Exception as exc:  # a champion that cannot score fresh rows loses to one that can
        out["error"] = (f"the champion {version.uri} cannot score the fresh rows: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return out
    out["score"] = scores.get(metric)
    out["metrics"] = scores
    return out


class _Scoring:
    """A loaded Predictor seen as an estimator, for models registered without a native
    format (imported ONNX or PMML)."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.classes_ = predictor.classes

    def predict(self, X: Any) -> np.ndarray:
        return self.predictor.predict(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.predictor.predict_proba(X)


def _event(result: dict[str, Any]) -> dict[str, Any]:
    """What the registry keeps of a retrain: the decision, both scores, why, how long."""
    keep = ("decision", "alias", "metric", "min_improvement", "improvement", "reason",
            "seconds", "error")
    event = {k: result[k] for k in keep if k in result}
    for side in ("champion", "challenger"):
        s = result[side]
        event[side] = {k: s.get(k) for k in ("version", "score", "metrics", "estimator",
                                             "error") if s.get(k) is not None}
        event[side].setdefault("version", None)
        event[side].setdefault("score", None)
    if "data" in result:
        event["rows"] = {"train": result["data"]["train_rows"],
                         "holdout": result["data"]["holdout_rows"]}
    if "search" in result:
        s = result["search"]
        event["search"] = {k: s.get(k) for k in ("engine", "budget_s", "seconds",
                                                 "evaluations", "best")}
    return event
