"""One monitoring pass: read the log of a model for a period, cut it into windows, and
compare each with the reference.

:func:`analyse` returns a plain dict (what ``modelport monitor --json`` prints, the HTML
report draws and the alert rules read):

- ``drift``: the tests of every feature and of the prediction in the **current window**
  (the latest one with predictions), each ``{feature, kind, statistic, value, threshold,
  drifted}``, and the list of drifted features;
- ``performance``: the metrics of the latest window with at least
  :data:`~modelport.monitor.performance.MIN_LABELS` labelled predictions, the
  reference's (the metrics the version was registered with) and the change;
- ``windows``: per window, predictions logged (and the volume they stand for, given the
  sampling rate), errors, latency percentiles, each feature's PSI and its verdict, the
  prediction's PSI and the metrics once labels are in;
- ``changes``: where a River detector (ADWIN by default) saw the score stream or the
  error stream change, for models scoring in real time;
- ``dropped``: records the loggers dropped in the period.

The reference is the monitored version's training statistics (``training``) or those of
another version of the same model (``--reference 3``). Shadow answers are left out.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import MissingExtra, UserError
from modelport.monitor import drift as D
from modelport.monitor import performance as P

if TYPE_CHECKING:
    import pandas as pd

    from modelport.predictor import Predictor
    from modelport.registry import Registry, Version

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.I)
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
#: windows shown by default: the period starts this many windows before ``until``
DEFAULT_WINDOWS = 30


def parse_duration(text: str, what: str = "--window") -> timedelta:
    """``30s``, ``15m``, ``6h``, ``1d``, ``2w`` -> timedelta."""
    m = _DURATION.match(str(text))
    if not m or float(m.group(1)) <= 0:
        raise UserError(f"{what} {text!r}: give a duration like 30m, 6h, 1d or 1w")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_time(text: str | datetime | None, what: str, now: datetime) -> datetime | None:
    """An ISO date or time (UTC unless it says otherwise), or a duration back from ``now``
    (``7d``)."""
    if text is None or isinstance(text, datetime):
        return _aware(text) if text is not None else None
    if _DURATION.match(str(text)):
        return now - parse_duration(text, what)
    try:
        return _aware(datetime.fromisoformat(str(text).strip()))
    except ValueError:
        raise UserError(f"{what} {text!r}: give an ISO date or time (2024-05-01, "
                        "2024-05-01T12:00) or a duration back from now (7d, 12h)") from None


def _aware(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def analyse(model_uri: str, log_url: str, *, window: str = "1d",
            since: str | datetime | None = None, until: str | datetime | None = None,
            reference: str = "training", thresholds: dict[str, float] | None = None,
            detector: str | None = "adwin", min_rows: int = D.MIN_ROWS,
            min_labels: int = P.MIN_LABELS, registry: Registry | None = None) -> dict[str, Any]:
    """Monitor ``model_uri`` (``churn``, ``churn/3``, ``churn@production``) from the
    prediction log at ``log_url``; return the report as a dict (see the module docstring).

    ``since``/``until`` are datetimes, ISO strings or durations back from now (default:
    the last 30 windows). ``detector`` is ``adwin``, ``kswin``, ``page-hinkley`` or None.
    """
    from modelport.monitor.feedback import read_feedback
    from modelport.monitor.log import _redact, read_drops, read_predictions
    from modelport.monitor.reference import load
    from modelport.registry import Registry
    from modelport.uri import ModelURI

    registry = registry or Registry()
    uri = ModelURI.parse(model_uri)
    monitored = registry.get(uri)
    ref_version = _reference_version(registry, monitored, reference)
    ref = load(registry, ref_version)
    thresholds = {**D.THRESHOLDS, **(thresholds or {})}
    step = parse_duration(window)
    now = datetime.now(UTC)
    until_t = parse_time(until, "--until", now) or now
    since_t = parse_time(since, "--since", until_t) or until_t - DEFAULT_WINDOWS * step
    if since_t >= until_t:
        raise UserError(f"--since {since} is not before --until {until or 'now'}")
    versions = [uri.version] if uri.version is not None else None
    logged = read_predictions(log_url, uri.name, versions=versions, since=since_t,
                              until=until_t)
    report: dict[str, Any] = {
        "model": str(uri), "name": uri.name, "version": monitored.version,
        "task": monitored.task, "log": _redact(log_url),
        "period": {"since": since_t.isoformat(), "until": until_t.isoformat(),
                   "window": window},
        "reference": {"kind": "training" if ref_version.version == monitored.version and
                      reference == "training" else "version",
                      "version": ref_version.version, "rows": ref.get("rows"),
                      "metrics": {k: v for k, v in ref_version.metrics.items()
                                  if isinstance(v, int | float)}},
        "thresholds": thresholds,
        "rows": int(len(logged)),
        "dropped": read_drops(log_url, uri.name, since_t, until_t),
    }
    features = [name for name in ref["features"]]
    if logged.empty:
        report.update(versions={}, drift={"window": None, "features": [], "prediction": [],
                                          "drifted_features": []},
                      performance={"window": None, "current": {}, "reference":
                                   report["reference"]["metrics"], "change": {}},
                      windows=[], changes={}, note="no predictions logged in the period")
        return report
    report["versions"] = {str(k): int(v) for k, v in
                          logged["version"].value_counts(dropna=False).items()}
    labels = read_feedback(log_url, uri.name)
    logged = _join(logged, labels)
    report["labelled"] = int(logged["truth"].notna().sum())

    seconds = step.total_seconds()
    import pandas as pd

    epoch = (logged["at"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    start = np.floor(epoch / seconds) * seconds
    logged["window"] = start
    ok = logged["error"].isna()
    inputs = _inputs(logged.loc[ok, "inputs"].tolist(), features)
    inputs.index = logged.index[ok]
    classes = ref.get("classes") or (monitored.signature.get("classes"))
    task = monitored.task

    windows = []
    for w in np.unique(start):
        in_w = logged["window"] == w
        rows = logged[in_w]
        good = rows[rows["error"].isna()]
        entry: dict[str, Any] = {
            "start": _iso(w), "end": _iso(w + seconds), "rows": int(len(rows)),
            "volume": int(round(float((1.0 / rows["sample_rate"].fillna(1.0)).sum()))),
            "errors": int(rows["error"].notna().sum()),
        }
        entry["error_rate"] = round(entry["errors"] / len(rows), 6) if len(rows) else 0.0
        entry.update(_flagged(rows))
        lat = rows["latency_ms"].dropna().to_numpy()
        entry["latency_ms"] = {f"p{q}": round(float(np.percentile(lat, q)), 3)
                               for q in (50, 95, 99)} if lat.size else {}
        if len(good):
            part = inputs.loc[good.index]
            tests = {}
            for name in features:
                tests[name] = _summary(D.test_feature(name, ref["features"][name],
                                                      part[name].to_numpy(), thresholds,
                                                      min_rows, details=False))
            entry["drift"] = tests
            entry["drifted_features"] = [n for n, t in tests.items() if t["drifted"]]
            entry["prediction"] = _by_feature(_prediction_tests(ref, good, thresholds,
                                                                min_rows, details=False))
            entry["mean_score"] = _mean(good["score"])
        labelled = good[good["truth"].notna()]
        entry["labelled"] = int(len(labelled))
        if len(labelled) >= min_labels:
            entry["performance"] = P.evaluate(labelled, task, classes)
        windows.append(entry)
    report["windows"] = windows

    current = next((w for w in reversed(windows) if w.get("drift")), None)
    if current is None:
        report["drift"] = {"window": None, "features": [], "prediction": [],
                           "drifted_features": []}
    else:
        in_w = (logged["window"] == _epoch(current["start"])) & ok
        part = inputs.loc[logged.index[in_w]]
        rows_out: list[dict[str, Any]] = []
        for name in features:
            rows_out.extend(D.test_feature(name, ref["features"][name], part[name].to_numpy(),
                                           thresholds, min_rows))
        prediction = _prediction_tests(ref, logged[in_w], thresholds, min_rows, details=True)
        report["drift"] = {
            "window": {"start": current["start"], "end": current["end"],
                       "rows": int(in_w.sum())},
            "features": rows_out, "prediction": prediction,
            "drifted_features": sorted({r["feature"] for r in rows_out if r["drifted"]},
                                       key=features.index),
        }
    latest = next((w for w in reversed(windows) if "performance" in w), None)
    ref_metrics = report["reference"]["metrics"]
    report["performance"] = {
        "window": None if latest is None else {"start": latest["start"], "end": latest["end"],
                                               "labelled": latest["labelled"]},
        "current": {} if latest is None else latest["performance"],
        "reference": ref_metrics,
        "change": {} if latest is None else P.change(latest["performance"], ref_metrics),
    }
    if latest is None:
        report["performance"]["note"] = (f"no window has {min_labels} labelled predictions "
                                         "yet (modelport feedback stores labels)")
    report["changes"] = _changes(logged[ok], task, classes, detector)
    report["drivers"] = _drivers(registry, monitored, inputs, logged, windows, features)
    return report


#: logged rows a window's drivers are measured on (the first ones of the window)
DRIVER_ROWS = 500


def _drivers(registry: Registry, monitored: Version, inputs: pd.DataFrame,
             logged: pd.DataFrame, windows: list[dict[str, Any]],
             features: list[str]) -> dict[str, Any]:
    """What drives the scores: each input column's mean absolute contribution to the raw
    score (:mod:`modelport.compile.explain`) over the training sample and over each
    window's logged rows, added to each window as ``drivers``; the current window's figures
    beside training's, the largest first. A version that cannot be explained says why."""
    from modelport.scoring.reasons import explaining

    try:
        predictor = explaining(registry.load(monitored), registry, monitored)
        reference = _mean_contributions(predictor, registry.sample(monitored))
    except UserError as exc:
        return {"available": False, "reason": str(exc)}
    current = None
    for entry in windows:
        rows = logged[(logged["window"] == _epoch(entry["start"])) & logged["error"].isna()]
        part = inputs.loc[rows.index[:DRIVER_ROWS], features] if len(rows) else None
        if part is None or part.empty:
            continue
        try:
            entry["drivers"] = _mean_contributions(predictor, part)
        except Exception as exc:  # noqa: BLE001 - logged rows it cannot read: said, not guessed
            entry["drivers_note"] = f"not measured: {type(exc).__name__}: {exc}"[:300]
            continue
        current = entry
    columns: list[dict[str, Any]] = []
    for name in features:
        ref_value: float | None = reference.get(name)
        now: float | None = current["drivers"].get(name) if current else None
        ratio = round(now / ref_value, 4) if now is not None and ref_value else None
        columns.append({"column": name, "reference": ref_value, "current": now,
                        "ratio": ratio})
    columns.sort(key=lambda c: -(c["current"] if c["current"] is not None
                                 else c["reference"] or 0.0))
    return {"available": True, "space": "raw score (log-odds for a binary classifier)",
            "window": None if current is None else {"start": current["start"],
                                                     "end": current["end"]},
            "reference": reference, "columns": columns}


def _mean_contributions(predictor: Predictor, rows: pd.DataFrame) -> dict[str, float]:
    """Each input column's mean absolute contribution over ``rows`` (and over the classes,
    for a model with one raw score per class)."""
    n = len(rows)
    names = list(predictor.signature.names)
    if not n:
        return {}
    table = predictor.explain(rows, top=len(names))
    outputs = table["output"].nunique() if "output" in table.columns else 1
    total = table.assign(size=table["contribution"].abs()).groupby("column")["size"].sum()
    return {name: round(float(total.get(name, 0.0)) / (n * outputs), 6) for name in names}


def _flagged(rows: pd.DataFrame) -> dict[str, Any]:
    """Rows scored with a value outside what training saw: how many, their share, and how
    many by field and kind (``tenure: out of range``), from the log's ``warnings``."""
    warned = rows["warnings"].dropna() if "warnings" in rows else []
    by: dict[str, int] = {}
    for text in warned:
        for part in str(text).split("; "):
            if part:
                by[part] = by.get(part, 0) + 1
    flagged = len(warned)
    return {"flagged": flagged,
            "flagged_rate": round(flagged / len(rows), 6) if len(rows) else 0.0,
            "flagged_by": dict(sorted(by.items(), key=lambda kv: -kv[1]))}


def _reference_version(registry: Registry, monitored: Version, reference: str) -> Version:
    from modelport.uri import ModelURI

    ref = str(reference or "training").strip()
    if ref == "training":
        return monitored
    if not ref.isdigit():
        raise UserError(f"--reference {reference!r}: use training (the monitored version's "
                        "training statistics) or a version number of the same model")
    return registry.get(ModelURI(monitored.name, int(ref)))


def _join(logged: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Add ``truth`` (label text) and ``truth_value`` (number) to each prediction whose id
    has a label."""
    if labels.empty:
        logged["truth"] = None
        logged["truth_value"] = np.nan
        return logged
    by_id = labels.drop_duplicates("id", keep="last").set_index("id")
    ids = logged["id"]
    logged["truth"] = ids.map(by_id["label"])
    logged["truth_value"] = ids.map(by_id["value"]).astype("float64")
    logged.loc[ids.isna(), ["truth", "truth_value"]] = [None, np.nan]
    return logged


def _inputs(records: list[dict[str, Any]], features: list[str]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame.from_records(records, columns=features) if records else \
        pd.DataFrame({f: [] for f in features})
    return frame


def _prediction_tests(ref: dict[str, Any], rows: pd.DataFrame, thresholds: dict[str, float],
                      min_rows: int, details: bool) -> list[dict[str, Any]]:
    out = []
    pred = ref.get("prediction") or {}
    if "score" in pred:
        out += D.test_feature("score", pred["score"], rows["score"].to_numpy(dtype=np.float64),
                              thresholds, min_rows, details)
    if "label" in pred:
        out += D.test_feature("label", pred["label"], rows["label"].to_numpy(dtype=object),
                              thresholds, min_rows, details)
    return out


def _summary(tests: list[dict]) -> dict[str, Any]:
    """One feature's tests in a window, compactly: each statistic's value and the verdict."""
    out: dict[str, Any] = {t["statistic"]: t["value"] for t in tests}
    out["drifted"] = any(t["drifted"] for t in tests)
    return out if tests else {"drifted": False}


def _by_feature(tests: list[dict]) -> dict[str, dict[str, Any]]:
    grouped: dict[str, list] = {}
    for t in tests:
        grouped.setdefault(t["feature"], []).append(t)
    return {k: _summary(v) for k, v in grouped.items()}


def _changes(rows: pd.DataFrame, task: str, classes: list[Any] | None,
             detector: str | None) -> dict[str, Any]:
    """Change points (times) of the score stream and, where labelled, the error stream."""
    if not detector:
        return {}
    out: dict[str, Any] = {"detector": detector}
    try:
        scores = rows["score"].to_numpy(dtype=np.float64)
        at = rows["at"]
        found = D.change_points(scores, detector)
        out["score"] = [at.iloc[i].isoformat() for i in found]
        labelled = rows[rows["truth"].notna()]
        if len(labelled):
            if task == "classification" and classes:
                truth = P.class_index(labelled["truth"].tolist(), classes)
                pred = P.class_index(labelled["label"].tolist(), classes)
                errors = (truth != pred).astype(np.float64)
            else:
                errors = np.abs(labelled["score"].to_numpy(dtype=np.float64)
                                - labelled["truth_value"].to_numpy(dtype=np.float64))
            found = D.change_points(errors, detector)
            out["error"] = [labelled["at"].iloc[i].isoformat() for i in found]
    except MissingExtra as exc:
        out = {"detector": detector, "available": False, "reason": str(exc)}
    return out


def _mean(values: pd.Series) -> float | None:
    x = values.to_numpy(dtype=np.float64)
    x = x[np.isfinite(x)]
    return round(float(x.mean()), 6) if x.size else None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(float(epoch), UTC).isoformat()


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()
