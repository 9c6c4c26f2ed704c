"""Online learning specs: which stream to learn from, with which incremental learner, and how
often to checkpoint into the registry.

::

    name: churn-online
    task: classification               # classification | regression | clustering
    source: data/events.jsonl          # a file (.jsonl, .csv, .parquet), a broker URL, or a
                                       #   SQLAlchemy URL + '#table' tailed by an increasing key
    target: churned
    features: [tenure, plan]           # optional; default: every other field but id
    id: customer_id                    # optional; joins delayed labels to their features
    label_delay: {max_events: 100000}  # optional; labels arrive later as {id, target} events
    classes: [0, 1]                    # optional; default: learnt from the first labels
    learner: {estimator: sklearn.linear_model.SGDClassifier, params: {loss: log_loss}}
    preprocess: {numeric: scale, categorical: onehot, max_categories: 50}
    batch: {size: 256, max_wait_ms: 50}
    checkpoint: {every_events: 50000, every_seconds: 600, alias: online-latest}
    promotion: {alias: production, threshold: 0.01, min_events: 1000}
    evaluation: {window: 10000, metrics: [accuracy, log_loss]}
    drift: {detector: ADWIN, params: {delta: 0.002}, action: challenger}
    rejects: rejects.jsonl             # optional; or a broker URL: every event not learnt, why

``source`` may also be a mapping: ``{url: events.csv, rate: 5000}`` replays a file at 5,000
events a second (any source takes a ``rate``: the most events a second it is read at); ``{url: 'postgresql://127.0.0.1/test#events', key: event_id}`` tails a table
by its increasing key (also written ``...#events?key=event_id``); ``{url: 'redis://...',
format: msgpack}`` reads msgpack events. Only ``name``, ``source``, ``learner.estimator``
and (except for clustering) ``target`` are required. A key this module does not know is
refused with a one-line error naming it; keys are only ever added, never renamed.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.errors import UserError
from modelport.signature import TASKS

#: the keys each section accepts; new keys are added here, existing ones never renamed
KEYS: dict[str, tuple[str, ...]] = {
    "": ("name", "task", "source", "target", "features", "id", "label_delay", "classes",
         "learner", "preprocess", "batch", "checkpoint", "promotion", "evaluation", "drift",
         "description", "rejects", "spark"),
    "source": ("url", "rate", "key", "format", "poll_ms", "group"),
    "learner": ("estimator", "params", "pipeline"),
    "preprocess": ("numeric", "categorical", "max_categories", "hash_buckets"),
    "batch": ("size", "max_wait_ms"),
    "checkpoint": ("every_events", "every_seconds", "alias", "formats"),
    "promotion": ("alias", "metric", "threshold", "min_events"),
    "evaluation": ("window", "metrics"),
    "drift": ("detector", "params", "action", "min_events", "max_events"),
    "label_delay": ("max_events",),
    # --engine spark: where Spark keeps its offsets, and MLlib's streaming parameters
    "spark": ("checkpoint", "master", "max_files_per_trigger", "step_size", "num_iterations",
              "mini_batch_fraction", "reg_param", "convergence_tol", "initial_weights", "k",
              "decay_factor", "half_life", "time_unit", "centers", "seed"),
}

METRICS = {
    "classification": ("accuracy", "log_loss"),
    "regression": ("mae", "rmse"),
    "clustering": ("inertia",),
}
#: metrics where a smaller value is better
LOWER_IS_BETTER = ("log_loss", "mae", "rmse", "inertia")
NUMERIC_MODES = ("scale", "impute", "none")
CATEGORICAL_MODES = ("onehot", "hash", "none")
DRIFT_ACTIONS = ("alert", "reset", "challenger")
#: scikit-learn learners whose inputs must stay non-negative: numbers are imputed, not scaled
_COUNT_LEARNERS = ("MultinomialNB", "ComplementNB", "CategoricalNB")
_KINDS = {"classification": "classifier", "regression": "regressor", "clustering": "clusterer"}
_SQL = re.compile(r"^(sqlite|postgresql|postgres|mysql|mariadb|mssql|oracle|duckdb)(\+\w+)?://",
                  re.IGNORECASE)
_BROKER = re.compile(r"^(redis|rediss|nats|amqp|amqps|mqtt|kafka)://", re.IGNORECASE)
_FILES = (".jsonl", ".ndjson", ".csv", ".parquet", ".pq")


@dataclass
class SourceSpec:
    """Where events come from: ``kind`` is ``file``, ``sql``, ``broker`` or ``folder`` (a
    folder of files, read by ``--engine spark``)."""

    kind: str
    url: str
    rate: float | None = None
    key: str | None = None
    format: str = "json"
    poll_ms: float = 200.0
    group: str | None = None
    base: str | None = None

    def describe(self) -> str:
        from modelport.io.tables import redact

        return redact(self.url)


@dataclass
class OnlineSpec:
    """A checked online learning spec. ``raw`` is the mapping it was read from."""

    name: str
    task: str
    source: SourceSpec
    target: str | None
    features: list[str] | None
    id: str | None
    label_delay: int | None
    classes: list | None
    estimator: str
    params: dict[str, Any]
    pipeline: list[tuple[str, dict[str, Any]]]
    numeric: str
    categorical: str
    max_categories: int
    hash_buckets: int
    batch_size: int
    max_wait_ms: float
    every_events: int
    every_seconds: float | None
    checkpoint_alias: str
    formats: list[str] | None
    promotion_alias: str | None
    promotion_metric: str
    promotion_threshold: float
    promotion_min_events: int
    window: int
    metrics: list[str]
    drift_detector: str | None
    drift_params: dict[str, Any]
    drift_action: str
    drift_min_events: int
    drift_max_events: int
    description: str | None
    label: str = "spec"
    raw: dict[str, Any] = field(default_factory=dict)
    #: the ``spark:`` section, for ``--engine spark``
    spark: dict[str, Any] = field(default_factory=dict)
    #: where rejected events go: a .jsonl file or a broker URL (None: counted only)
    rejects: str | None = None

    @property
    def river(self) -> bool:
        """Whether the learner is a River estimator (learns one event at a time)."""
        return self.estimator.startswith("river.")

    def fail(self, key: str, message: str) -> UserError:
        return UserError(f"{self.label}: {key}: {message}")

    def learning_fingerprint(self) -> str:
        """A digest of what a checkpoint's state depends on: resuming under a spec whose
        fingerprint differs would mix two different learners."""
        parts = {k: self.raw.get(k) for k in ("task", "target", "features", "id", "classes",
                                               "learner", "preprocess")}
        parts["source"] = self.source.url
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_spec(spec: str | Path | Mapping[str, Any], base: str | Path | None = None) -> OnlineSpec:
    """Read and check an online learning spec from a YAML file or a mapping.

    Relative file sources are taken from the spec file's folder (for a mapping: from
    ``base``, else the working directory). The learner is imported and instantiated once,
    so a misspelt class or parameter fails here, naming the key.
    """
    from modelport.train.spec import _read_yaml

    if isinstance(spec, Mapping):
        raw, label = dict(spec), "spec"
        folder = Path(base) if base is not None else Path.cwd()
    else:
        path = Path(spec)
        raw, label = _read_yaml(path), path.name
        folder = Path(base) if base is not None else path.absolute().parent
    return _check(raw, folder.absolute(), label)


def _check(raw: dict[str, Any], base: Path, label: str) -> OnlineSpec:
    def fail(key: str, message: str) -> UserError:
        return UserError(f"{label}: {key}: {message}")

    _known(raw, "", fail)
    name = raw.get("name")
    if not name:
        raise fail("name", "missing; name the model the checkpoints are registered under, "
                   "e.g. name: churn-online")
    from modelport.uri import check_name

    try:
        check_name(str(name))
    except UserError as exc:
        raise fail("name", str(exc)) from None
    task = raw.get("task", "classification")
    if task not in TASKS:
        raise fail("task", f"unknown task {task!r}; use one of {', '.join(TASKS)}")

    source = _source(raw.get("source"), base, fail)
    target = _column(raw, "target", fail)
    if task == "clustering" and target is not None:
        raise fail("target", "clustering learns without a target; remove it")
    if task != "clustering" and target is None:
        raise fail("target", f"missing; name the field a {task} learner predicts")
    id_column = _column(raw, "id", fail)
    features = raw.get("features")
    if features is not None:
        if (not isinstance(features, list) or not features
                or not all(isinstance(f, str) and f for f in features)):
            raise fail("features", "expected a non-empty list of field names, e.g. [tenure, plan]")
        for other, what in ((target, "the target"), (id_column, "the id")):
            if other in features:
                raise fail("features", f"lists {what} {other!r}; remove it")
        if len(set(features)) != len(features):
            raise fail("features", "lists a field twice; list each once")

    delay = raw.get("label_delay")
    label_delay = None
    if delay not in (None, False):
        section = {} if delay is True else _section(raw, "label_delay", fail)
        label_delay = _int(section, "max_events", 100_000, 1, fail, "label_delay.")
        if id_column is None:
            raise fail("label_delay", "needs id: the field that joins a late label to the "
                       "event it labels (e.g. id: customer_id)")
        if task == "clustering":
            raise fail("label_delay", "clustering learns without labels; remove it")

    classes = raw.get("classes")
    if classes is not None:
        if task != "classification":
            raise fail("classes", f"only classification has classes, the task is {task}")
        if not isinstance(classes, list) or len(classes) < 2 or len(set(map(str, classes))) \
                != len(classes):
            raise fail("classes", "expected a list of at least two distinct labels, e.g. [0, 1]")

    learner = _section(raw, "learner", fail)
    estimator = learner.get("estimator")
    if not estimator or not isinstance(estimator, str):
        raise fail("learner.estimator", "missing; give a dotted class path, e.g. "
                   "sklearn.linear_model.SGDClassifier or river.linear_model.LogisticRegression")
    params = learner.get("params") or {}
    if not isinstance(params, Mapping):
        raise fail("learner.params", f"expected a mapping of parameter: value, got {params!r}")
    pipeline = _pipeline(learner.get("pipeline"), estimator, fail)

    numeric, categorical, max_categories, hash_buckets = _preprocess(raw, estimator, fail)

    batch = _section(raw, "batch", fail)
    batch_size = _int(batch, "size", 256, 1, fail, "batch.")
    max_wait_ms = _number(batch, "max_wait_ms", 50.0, 0.0, fail, "batch.")

    checkpoint = _section(raw, "checkpoint", fail)
    every_events = _int(checkpoint, "every_events", 50_000, 1, fail, "checkpoint.")
    every_seconds = checkpoint.get("every_seconds", 600)
    if every_seconds is not None:
        every_seconds = _number(checkpoint, "every_seconds", 600.0, 0.001, fail, "checkpoint.")
    checkpoint_alias = _alias(checkpoint.get("alias", "online-latest"), "checkpoint.alias", fail)
    formats = checkpoint.get("formats")
    if formats is not None:
        from modelport.formats import FORMATS

        if isinstance(formats, str):
            formats = [formats]
        if not isinstance(formats, list) or not formats or any(f not in FORMATS for f in formats):
            raise fail("checkpoint.formats", f"expected a list of formats from "
                       f"{', '.join(FORMATS)}, e.g. [joblib, onnx]; got {formats!r}")
        if "pmml" in formats:
            raise fail("checkpoint.formats", "pmml starts a Java runtime for every conversion, "
                       "far too slow for checkpoints; use joblib, onnx or compiled")

    evaluation = _section(raw, "evaluation", fail)
    window = _int(evaluation, "window", 10_000, 10, fail, "evaluation.")
    metrics = evaluation.get("metrics", list(METRICS[task]))
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, list) or not metrics \
            or any(m not in METRICS[task] for m in metrics):
        raise fail("evaluation.metrics", f"expected a list from {', '.join(METRICS[task])} for "
                   f"{task}, got {metrics!r}")

    promotion = raw.get("promotion", {})
    if promotion is False:
        promotion = {"alias": None}
    if not isinstance(promotion, Mapping):
        raise fail("promotion", f"expected a mapping of {', '.join(KEYS['promotion'])}, or "
                   f"false; got {promotion!r}")
    _known(promotion, "promotion", fail)
    promotion_alias = promotion.get("alias", "production")
    if promotion_alias is not None:
        promotion_alias = _alias(promotion_alias, "promotion.alias", fail)
        if promotion_alias == checkpoint_alias:
            raise fail("promotion.alias", f"is the checkpoint alias {checkpoint_alias!r}; "
                       "promotion moves another alias (e.g. production)")
    promotion_metric = promotion.get("metric", metrics[0])
    if promotion_metric not in METRICS[task]:
        raise fail("promotion.metric", f"unknown metric {promotion_metric!r}; use one of "
                   f"{', '.join(METRICS[task])}")
    if promotion_metric not in metrics:
        metrics = [*metrics, promotion_metric]
    promotion_threshold = _number(promotion, "threshold", 0.01, 0.0, fail, "promotion.")
    promotion_min_events = _int(promotion, "min_events", 1000, 1, fail, "promotion.")

    drift = raw.get("drift")
    drift_detector, drift_params, drift_action = None, {}, "alert"
    drift_min, drift_max = 1000, 50_000
    if drift not in (None, False):
        drift = _section(raw, "drift", fail)
        drift_detector = drift.get("detector", "ADWIN")
        if not isinstance(drift_detector, str) or not drift_detector:
            raise fail("drift.detector", "expected a River detector name, e.g. ADWIN, "
                       "PageHinkley, KSWIN or river.drift.binary.DDM")
        drift_params = drift.get("params") or {}
        if not isinstance(drift_params, Mapping):
            raise fail("drift.params", f"expected a mapping of parameter: value, got "
                       f"{drift_params!r}")
        drift_action = drift.get("action", "alert")
        if drift_action not in DRIFT_ACTIONS:
            raise fail("drift.action", f"unknown action {drift_action!r}; use alert (log and "
                       "record it), reset (start the learner afresh) or challenger (train a "
                       "fresh learner beside it and switch when it wins)")
        drift_min = _int(drift, "min_events", 1000, 1, fail, "drift.")
        drift_max = _int(drift, "max_events", 50_000, drift_min, fail, "drift.")

    description = raw.get("description")
    rejects = _rejects(raw.get("rejects"), source, base, fail)
    spec = OnlineSpec(
        name=str(name), task=task, source=source, target=target,
        features=list(features) if features else None, id=id_column, label_delay=label_delay,
        classes=list(classes) if classes else None, estimator=estimator, params=dict(params),
        pipeline=pipeline, numeric=numeric, categorical=categorical,
        max_categories=max_categories, hash_buckets=hash_buckets, batch_size=batch_size,
        max_wait_ms=max_wait_ms, every_events=every_events, every_seconds=every_seconds,
        checkpoint_alias=checkpoint_alias, formats=list(formats) if formats else None,
        promotion_alias=promotion_alias, promotion_metric=promotion_metric,
        promotion_threshold=promotion_threshold, promotion_min_events=promotion_min_events,
        window=window, metrics=list(metrics), drift_detector=drift_detector,
        drift_params=dict(drift_params), drift_action=drift_action, drift_min_events=drift_min,
        drift_max_events=drift_max,
        description=str(description) if description is not None else None, label=label,
        raw=raw, rejects=rejects, spark=_section(raw, "spark", fail),
    )
    from modelport.train.online.learners import check_estimator

    check_estimator(spec)
    if drift_detector is not None:
        from modelport.train.online.drift import make_detector

        make_detector(spec)
    return spec


def _source(value, base: Path, fail) -> SourceSpec:
    if isinstance(value, Mapping):
        _known(value, "source", fail)
        options = dict(value)
        url = options.get("url")
    else:
        options, url = {}, value
    if not url or not isinstance(url, str | Path):
        raise fail("source", "missing; give a file (.jsonl, .csv, .parquet), a broker URL "
                   "(redis://127.0.0.1:6379/0?stream=events) or a SQL table "
                   "(postgresql://127.0.0.1/test#events)")
    url = str(url)
    rate = options.get("rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)
                             or rate <= 0):
        raise fail("source.rate", f"expected events per second (a positive number), got {rate!r}")
    fmt = options.get("format", "json")
    if fmt not in ("json", "msgpack"):
        raise fail("source.format", f"unknown event format {fmt!r}; use json or msgpack")
    poll_ms = _number(options, "poll_ms", 200.0, 1.0, fail, "source.")
    key = options.get("key")
    group = options.get("group")
    if _BROKER.match(url):
        from modelport.io import brokers

        brokers.parse(url, "source")
        if key is not None:
            raise fail("source.key", "a broker delivers in its own order; key applies to SQL "
                       "tables")
        return SourceSpec("broker", url, rate=float(rate) if rate else None, format=fmt,
                          poll_ms=poll_ms, group=str(group) if group else None)
    if _SQL.match(url):
        server, _, fragment = url.partition("#")
        table, _, query = fragment.partition("?")
        if not table:
            raise fail("source", f"{url!r} names no table: add it after '#', "
                       "e.g. postgresql://127.0.0.1/test#events")
        if query:
            from urllib.parse import parse_qs

            found = parse_qs(query).get("key")
            if not found:
                raise fail("source", f"unknown option {query!r} after the table; name the "
                           "increasing key with ?key=COLUMN")
            if key is not None and key != found[-1]:
                raise fail("source.key", f"{key!r} disagrees with ?key={found[-1]} in the URL")
            key = found[-1]
        return SourceSpec("sql", f"{server}#{table}", key=str(key) if key else None,
                          rate=float(rate) if rate else None, poll_ms=poll_ms, base=str(base))
    if "://" in url and not url.startswith("file://"):
        raise fail("source", f"unknown source {url!r}; use a file path, a broker URL (redis://, "
                   "nats://, amqp://, mqtt://, kafka://) or a SQLAlchemy URL with '#table'")
    path = Path(url.removeprefix("file://")).expanduser()
    if not path.is_absolute():
        path = base / path
    if path.is_dir():  # read by --engine spark, as a stream of files
        return SourceSpec("folder", str(path), rate=float(rate) if rate else None,
                          poll_ms=poll_ms)
    if not path.name.lower().endswith(_FILES):
        raise fail("source", f"cannot replay {path.name}: use a .jsonl, .csv or .parquet file")
    if key is not None:
        raise fail("source.key", "a file is replayed in its own order; key applies to SQL tables")
    return SourceSpec("file", str(path), rate=float(rate) if rate else None, poll_ms=poll_ms)


def _rejects(value, source: SourceSpec, base: Path, fail) -> str | None:
    """Where rejected events go: a broker URL as it is, a .jsonl path made absolute; never
    the source itself, which would feed the learner its own rejects."""
    if value is None:
        return None
    example = ("e.g. rejects: rejects.jsonl, or rejects: "
               "redis://127.0.0.1:6379/0?stream=rejects")
    if not isinstance(value, str | Path) or not str(value):
        raise fail("rejects", f"expected a .jsonl file or a broker URL, {example}; "
                   f"got {value!r}")
    url = str(value)
    if _BROKER.match(url):
        from modelport.io import brokers

        brokers.parse(url, "rejects:")
        if url == source.url:
            raise fail("rejects", "is the source: the learner would read its own rejects; "
                       "name another stream, queue or topic")
        return url
    if "://" in url and not url.startswith("file://"):
        raise fail("rejects", f"unknown destination {url!r}; {example}")
    path = Path(url.removeprefix("file://")).expanduser()
    if not path.is_absolute():
        path = base / path
    if not path.name.lower().endswith((".jsonl", ".ndjson")):
        raise fail("rejects", f"cannot write rejects to {path.name}: name a .jsonl file (one "
                   f"rejected event a line) or a broker URL, {example}")
    if source.kind == "file" and path.resolve() == Path(source.url).resolve():
        raise fail("rejects", "is the source file: the learner would read its own rejects; "
                   "name another file")
    if not path.parent.is_dir():
        raise fail("rejects", f"cannot write {path}: its folder does not exist; create it or "
                   "name another file")
    if path.is_dir():
        raise fail("rejects", f"{path} is a folder; name a .jsonl file")
    return str(path)


def _pipeline(value, estimator: str, fail) -> list[tuple[str, dict[str, Any]]]:
    if value is None:
        return []
    if not estimator.startswith("river."):
        raise fail("learner.pipeline", "is for River learners; scikit-learn learners take "
                   "their preprocessing from the preprocess: section")
    if not isinstance(value, list):
        raise fail("learner.pipeline", "expected a list of River transformers, e.g. "
                   "[river.preprocessing.StandardScaler]")
    steps = []
    for step in value:
        if isinstance(step, str):
            steps.append((step, {}))
        elif isinstance(step, Mapping) and isinstance(step.get("estimator"), str) \
                and set(step) <= {"estimator", "params"}:
            steps.append((step["estimator"], dict(step.get("params") or {})))
        else:
            raise fail("learner.pipeline", f"each step is a dotted class path or {{estimator, "
                       f"params}}, got {step!r}")
    return steps


def _preprocess(raw, estimator: str, fail) -> tuple[str, str, int, int]:
    value = raw.get("preprocess", "auto")
    river = estimator.startswith("river.")
    count_learner = estimator.rsplit(".", 1)[-1] in _COUNT_LEARNERS
    default_numeric = "impute" if count_learner else "scale"
    if value in ("auto", None):
        value = {}
    if value == "none":
        return "none", "none", 50, 32
    if not isinstance(value, Mapping):
        raise fail("preprocess", f"expected auto, none or a mapping of "
                   f"{', '.join(KEYS['preprocess'])}; got {value!r}")
    _known(value, "preprocess", fail)
    if river and value:
        raise fail("preprocess", "River learners preprocess inside their own pipeline; put "
                   "river.preprocessing steps in learner.pipeline and remove preprocess")
    if river:
        return "none", "none", 50, 32
    numeric = value.get("numeric", default_numeric)
    if numeric not in NUMERIC_MODES:
        raise fail("preprocess.numeric", f"unknown mode {numeric!r}; use scale (running mean "
                   "imputation and standard scaling), impute (running mean imputation only) "
                   "or none")
    if numeric == "scale" and count_learner:
        raise fail("preprocess.numeric", f"{estimator.rsplit('.', 1)[-1]} needs non-negative "
                   "inputs, which scaling breaks; use impute")
    categorical = value.get("categorical", "onehot")
    if categorical not in CATEGORICAL_MODES:
        raise fail("preprocess.categorical", f"unknown mode {categorical!r}; use onehot "
                   "(categories take columns as they first appear), hash (categories hashed "
                   "into hash_buckets columns) or none (no categorical fields)")
    max_categories = _int(value, "max_categories", 50, 1, fail, "preprocess.")
    hash_buckets = _int(value, "hash_buckets", 32, 2, fail, "preprocess.")
    return numeric, categorical, max_categories, hash_buckets


def _known(section: Mapping[str, Any], prefix: str, fail) -> None:
    allowed = KEYS[prefix]
    for key in section:
        if key not in allowed:
            where = f"{prefix}.{key}" if prefix else str(key)
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise fail(where, f"unknown key; {hint}known keys here: {', '.join(allowed)}")


def _section(raw: Mapping[str, Any], key: str, fail) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise fail(key, f"expected a mapping of {', '.join(KEYS[key])}, got {value!r}")
    _known(value, key, fail)
    return dict(value)


def _column(raw: Mapping[str, Any], key: str, fail) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
        raise fail(key, f"expected a field name, got {value!r}")
    return str(value)


def _int(section: Mapping[str, Any], key: str, default: int, least: int, fail,
         prefix: str = "") -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise fail(prefix + key, f"expected a whole number of at least {least}, got {value!r}")
    return int(value)


def _number(section: Mapping[str, Any], key: str, default: float, least: float, fail,
            prefix: str = "") -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < least:
        raise fail(prefix + key, f"expected a number of at least {least:g}, got {value!r}")
    return float(value)


def _alias(value, key: str, fail) -> str:
    from modelport.uri import check_alias

    try:
        check_alias(str(value))
    except UserError as exc:
        raise fail(key, str(exc)) from None
    return str(value)
