"""One-off training from a spec: read the data, split, fit, measure, register.

``train("churn.yaml")`` reads the table the spec names, holds out a test split (stratified
for classification), fits ``Pipeline(preprocess, estimator)`` on the rest, measures the
spec's metrics on the held-out rows and registers the fitted pipeline with
:func:`modelport.register.log_model`, which converts it to every format and proves each
conversion. It is given the whole training split, so the signature's ranges and
vocabularies and the monitoring reference cover every row the model learnt from. The
version records the metrics, the spec, the estimator, the row counts, the source and a
fingerprint of the data it learnt from.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.io.tables import describe, read_table
from modelport.train.metrics import evaluate
from modelport.train.preprocess import build_pipeline, column_kinds
from modelport.train.spec import Spec, load_spec
from modelport.uri import check_alias

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.base import BaseEstimator

    from modelport.registry import Registry, Version

@dataclass
class TrainResult:
    """What a training run produced: the registered version, its test metrics, a report."""

    version: Version
    metrics: dict[str, float]
    rows_train: int
    rows_test: int
    seconds: float
    report: str
    model: Any = field(default=None, repr=False)
    skipped_metrics: dict[str, str] = field(default_factory=dict)


def train(spec: str | Path | Mapping[str, Any] | Spec, registry: Registry | None = None,
          alias: str | None = None) -> TrainResult:
    """Train the model a spec describes and register it; return a :class:`TrainResult`.

    ``spec`` is a YAML file, a dict with the same keys, or a loaded :class:`Spec`.
    ``alias`` (e.g. ``"production"``) is pointed at the new version. Mistakes in the spec
    or the data raise a :class:`~modelport.errors.UserError` naming the spec field.
    """
    from modelport.register import fingerprint, log_model

    started = time.perf_counter()
    if alias is not None:
        check_alias(alias)  # before the work, not after it
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    frame = read_table(spec.source, base=spec.base)
    features, numeric, categorical = feature_kinds(spec, frame)
    used = list(dict.fromkeys(c for c in (spec.id, *features, spec.target) if c))
    frame = frame[used]
    read_rows = len(frame)
    if spec.target is not None:
        frame = frame[frame[spec.target].notna()]
    dropped = read_rows - len(frame)
    frame = _categoricals_as_strings(frame, categorical).reset_index(drop=True)
    X = frame[features]
    y = frame[spec.target] if spec.target is not None else None
    _check_target(spec, y)
    X_train, X_test, y_train, y_test = _split(spec, X, y)

    model = build_pipeline(spec.make_estimator(), X_train, numeric, categorical, spec.preprocess)
    fit_started = time.perf_counter()
    _fit(spec, model, X_train, y_train)
    fit_seconds = time.perf_counter() - fit_started

    metrics, skipped = evaluate(spec.task, model, X_test, y_test, spec.metrics, seed=spec.seed)
    register_started = time.perf_counter()
    source = describe(spec.source)
    version = log_model(
        model, spec.name, sample=X_train, task=spec.task, metrics=metrics,
        params=spec.params or None, tags={"spec": spec.path.name if spec.path else "inline"},
        formats=spec.formats, description=spec.description,
        data_fingerprint=fingerprint(frame),
        lineage={
            "spec": spec.raw, "estimator": spec.estimator, "preprocess": spec.preprocess,
            "source": source, "features": features, "target": spec.target,
            "rows": {"read": read_rows, "dropped": dropped, "train": len(X_train),
                     "test": len(X_test)},
        },
        alias=alias, registry=registry,
    )
    ended = time.perf_counter()
    seconds = ended - started
    report = _report(spec, version, source, read_rows, dropped, len(X_train), len(X_test),
                     numeric, categorical, metrics, skipped,
                     (seconds, fit_seconds, ended - register_started))
    return TrainResult(version=version, metrics=metrics, rows_train=len(X_train),
                       rows_test=len(X_test), seconds=seconds, report=report, model=model,
                       skipped_metrics=skipped)


def _categoricals_as_strings(frame: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """String columns as pandas strings (missing stays missing), as the model will be fed."""
    if not categorical:
        return frame
    frame = frame.copy()
    for name in categorical:
        frame[name] = frame[name].astype("str")
    return frame


def feature_kinds(spec: Spec, frame: pd.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """The spec's feature columns in ``frame`` and which are numeric and categorical; a
    column that is neither is refused naming ``data.features``."""
    features = spec.feature_columns(list(frame.columns))
    numeric, categorical, other = column_kinds(frame, features)
    if other:
        kinds = ", ".join(f"{c} ({frame[c].dtype})" for c in other)
        raise spec.fail("data.features", f"column(s) {kinds} are neither numbers nor strings; "
                        "list data.features without them or convert them in the source")
    return features, numeric, categorical


def _check_target(spec: Spec, y: pd.Series | None) -> None:
    if y is None:
        return
    if len(y) < 2:
        raise spec.fail("data.target", f"only {len(y)} row(s) have a value in "
                        f"{spec.target!r}; a model needs more data")
    if spec.task == "classification":
        counts = y.value_counts()
        if len(counts) < 2:
            raise spec.fail("data.target", f"column {spec.target!r} holds one class only "
                            f"({counts.index[0]!r}); a classifier needs at least two")
        if y.dtype.kind == "f" and not (y == y.round()).all():
            raise spec.fail("data.target", f"column {spec.target!r} holds fractional "
                            f"numbers ({len(counts)} distinct values); a classifier needs "
                            "class labels: use task: regression or a label column")
    elif spec.task == "regression" and y.dtype.kind not in "biuf":
        raise spec.fail("data.target", f"column {spec.target!r} is not numeric ({y.dtype}); "
                        "a regression target must be a number (or use task: classification)")


def _split(spec: Spec, X: pd.DataFrame, y: pd.Series | None) -> Sequence[Any]:
    # (X_train, X_test, y_train, y_test), the last two None without a target
    from sklearn.model_selection import train_test_split

    try:
        if y is None:
            X_train, X_test = train_test_split(X, test_size=spec.test_size,
                                               random_state=spec.seed)
            return X_train, X_test, None, None
        stratify = y if spec.task == "classification" else None
        return train_test_split(X, y, test_size=spec.test_size, random_state=spec.seed,
                                stratify=stratify)
    except ValueError as exc:
        field_name = "data.target" if "class" in str(exc) else "validation.test_size"
        raise spec.fail(field_name, f"cannot split {len(X)} rows into train and test: "
                        f"{str(exc).splitlines()[0]}") from None


def _fit(spec: Spec, model: BaseEstimator, X: pd.DataFrame, y: pd.Series | None) -> None:
    from sklearn.utils._param_validation import InvalidParameterError

    try:
        model.fit(X, y) if y is not None else model.fit(X)
    except InvalidParameterError as exc:
        raise spec.fail("model.params", f"{exc}".splitlines()[0]) from None
    except (ValueError, TypeError) as exc:
        hint = ("the estimator cannot take raw strings or missing values: use "
                "preprocess: auto" if spec.preprocess == "none" else
                "check model.params and the data")
        raise spec.fail("model", f"fitting {spec.estimator} failed: "
                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                        f"{hint}") from None


def _report(spec: Spec, version: Version, source: str, read_rows: int, dropped: int,
            rows_train: int, rows_test: int, numeric: list[str], categorical: list[str],
            metrics: dict[str, float], skipped: dict[str, str],
            times: tuple[float, float, float]) -> str:
    total, fit, register = times
    aliases = f" (alias {', '.join(version.aliases)})" if version.aliases else ""
    dropped_text = f"; {dropped:,} dropped: no {spec.target}" if dropped else ""
    lines = [
        f"{version.uri} registered{aliases}",
        f"  task      {spec.task}: {spec.estimator} (preprocess {spec.preprocess})",
        f"  data      {source}: {read_rows:,} rows -> {rows_train:,} train, "
        f"{rows_test:,} test{dropped_text}",
        f"  features  {len(numeric) + len(categorical)} ({len(numeric)} numeric, "
        f"{len(categorical)} categorical)",
        "  metrics   " + (", ".join(f"{k} {v:.4f}" for k, v in metrics.items()) or "none"),
    ]
    for name, reason in skipped.items():
        lines.append(f"            {name} not computed: {reason}")
    accepted = version.accepted_formats()
    lines.append(f"  formats   accepted: {', '.join(accepted) or 'none'}")
    for art in version.artefacts:
        if art.status != "accepted":
            reason = (art.reason or "").splitlines()[0][:120] if art.reason else ""
            lines.append(f"            {art.status}: {art.format} ({reason})")
    lines.append(f"  time      {total:.1f} s (fit {fit:.1f} s, convert and register "
                 f"{register:.1f} s)")
    return "\n".join(lines)
