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

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, Field, field_validator

from modelport.errors import UserError
from modelport.train.online.config import OnlineSpec, SourceSpec
from modelport.train.sections import (
    Alias,
    Column,
    EstimatorKeys,
    Features,
    Formats,
    Metrics,
    ModelName,
    Name,
    PromotionKeys,
    Section,
    Task,
    keys,
    number,
    read,
    whole,
)

METRICS = {
    "classification": ("accuracy", "log_loss"),
    "regression": ("mae", "rmse"),
    "clustering": ("inertia",),
}
#: metrics where a smaller value is better
LOWER_IS_BETTER = ("log_loss", "mae", "rmse", "inertia")
NumericMode = Literal["scale", "impute", "none"]
CategoricalMode = Literal["onehot", "hash", "none"]
DriftAction = Literal["alert", "reset", "challenger"]
EventFormat = Literal["json", "msgpack"]
NUMERIC_MODES: tuple[str, ...] = get_args(NumericMode)
CATEGORICAL_MODES: tuple[str, ...] = get_args(CategoricalMode)
DRIFT_ACTIONS: tuple[str, ...] = get_args(DriftAction)
#: scikit-learn learners whose inputs must stay non-negative: numbers are imputed, not scaled
_COUNT_LEARNERS = ("MultinomialNB", "ComplementNB", "CategoricalNB")
_SQL = re.compile(r"^(sqlite|postgresql|postgres|mysql|mariadb|mssql|oracle|duckdb)(\+\w+)?://",
                  re.IGNORECASE)
_BROKER = re.compile(r"^(redis|rediss|nats|amqp|amqps|mqtt|kafka)://", re.IGNORECASE)
_FILES = (".jsonl", ".ndjson", ".csv", ".parquet", ".pq")

_SOURCES = ("give a file (.jsonl, .csv, .parquet), a broker URL "
            "(redis://127.0.0.1:6379/0?stream=events) or a SQL table "
            "(postgresql://127.0.0.1/test#events)")
_ESTIMATOR_MISSING = ("missing; give a dotted class path, e.g. sklearn.linear_model.SGDClassifier "
                      "or river.linear_model.LogisticRegression")
_REJECTS_EXAMPLE = ("e.g. rejects: rejects.jsonl, or rejects: "
                    "redis://127.0.0.1:6379/0?stream=rejects")
#: how the checks make a UserError naming a key: fail(key, message)
_Fail = Callable[[str, str], UserError]


def _field(value: Any) -> str:
    return f"expected a field name, got {value!r}"


# The sections of an online spec, as the module docstring shows them. New keys are added to
# these models; existing ones are never renamed.

class SourceSection(Section):
    """``source`` written as a mapping: where the events are and how they are read."""

    url: Name | Path
    rate: float | None = Field(None, gt=0)
    key: Column | None = None
    format: EventFormat = "json"
    poll_ms: float = Field(200.0, ge=1.0)
    group: Column | None = None
    hints = {"url": lambda v: f"missing; {_SOURCES}" if v in (None, "")
             else f"expected a file path or a URL, got {v!r}; {_SOURCES}",
             "rate": lambda v: f"expected events per second (a positive number), got {v!r}",
             "key": lambda v: f"expected the name of the table's increasing key column, "
             f"got {v!r}",
             "format": lambda v: f"unknown event format {v!r}; use json or msgpack",
             "poll_ms": number(1),
             "group": lambda v: f"expected a consumer group name, got {v!r}"}


class LabelDelaySection(Section):
    """``label_delay``: labels arrive later than their events, as ``{id, target}`` events."""

    max_events: int = Field(100_000, ge=1)
    hints = {"max_events": whole(1)}


class PipelineStep(Section):
    """One step of ``learner.pipeline`` written as a mapping."""

    estimator: Name
    params: dict[Any, Any] | None = None


class LearnerSection(EstimatorKeys):
    """``learner``: the incremental estimator, its parameters, and (River only) the
    transformers before it."""

    estimator: Name
    pipeline: list[Name | PipelineStep] | None = None
    hints = {**EstimatorKeys.hints,
             "estimator": lambda v: _ESTIMATOR_MISSING if v in (None, "")
             else f"expected a dotted class path, e.g. sklearn.linear_model.SGDClassifier; "
             f"got {v!r}",
             "pipeline": lambda v: "expected a list of River transformers, each a dotted "
             "class path or {estimator, params}, e.g. [river.preprocessing.StandardScaler]; "
             f"got {v!r}"}


class PreprocessSection(Section):
    """``preprocess``: how scikit-learn learners get numbers from events."""

    #: None: by the learner (scale, or impute for learners that need non-negative inputs)
    numeric: NumericMode | None = None
    categorical: CategoricalMode = "onehot"
    max_categories: int = Field(50, ge=1)
    hash_buckets: int = Field(32, ge=2)
    hints = {"numeric": lambda v: f"unknown mode {v!r}; use scale (running mean imputation "
             "and standard scaling), impute (running mean imputation only) or none",
             "categorical": lambda v: f"unknown mode {v!r}; use onehot (categories take "
             "columns as they first appear), hash (categories hashed into hash_buckets "
             "columns) or none (no categorical fields)",
             "max_categories": whole(1), "hash_buckets": whole(2)}


class BatchSection(Section):
    """``batch``: how many events are learnt at once, and how long a batch may wait."""

    size: int = Field(256, ge=1)
    max_wait_ms: float = Field(50.0, ge=0)
    hints = {"size": whole(1), "max_wait_ms": number(0)}


class CheckpointSection(Section):
    """``checkpoint``: how often the learner is registered, and under which alias."""

    every_events: int = Field(50_000, ge=1)
    every_seconds: Annotated[float, Field(ge=0.001)] | None = 600.0
    alias: Alias = "online-latest"
    formats: Formats | None = None
    hints = {"every_events": whole(1),
             "every_seconds": lambda v: f"expected a number of at least 0.001 (or null: no "
             f"timed checkpoints), got {v!r}"}

    @field_validator("formats")
    @classmethod
    def _no_pmml(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and "pmml" in value:
            raise ValueError("pmml starts a Java runtime for every conversion, far too slow "
                             "for checkpoints; use joblib, onnx or compiled")
        return value


class PromotionSection(PromotionKeys):
    """``promotion``: the alias a checkpoint earns by beating the one it holds; ``alias:
    null`` (or ``promotion: false``) promotes nothing."""

    threshold: float = Field(0.01, ge=0)
    min_events: int = Field(1000, ge=1)
    hints = {**PromotionKeys.hints, "threshold": number(0), "min_events": whole(1)}


class EvaluationSection(Section):
    """``evaluation``: the window of recent events the metrics are measured on."""

    window: int = Field(10_000, ge=10)
    metrics: Metrics | None = None
    hints = {"window": whole(10),
             "metrics": lambda v: "expected a list of metric names (" + "; ".join(
                 f"{', '.join(names)} for {task}" for task, names in METRICS.items())
             + f"), got {v!r}"}


class DriftSection(Section):
    """``drift``: a River detector watching the learner's errors, and what happens when it
    fires."""

    detector: Name = "ADWIN"
    params: dict[Any, Any] | None = None
    action: DriftAction = "alert"
    min_events: int = Field(1000, ge=1)
    max_events: int = Field(50_000, ge=1)
    hints = {"detector": lambda v: "expected a River detector name, e.g. ADWIN, PageHinkley, "
             f"KSWIN or river.drift.binary.DDM; got {v!r}",
             "params": lambda v: f"expected a mapping of parameter: value, got {v!r}",
             "action": lambda v: f"unknown action {v!r}; use alert (log and record it), reset "
             "(start the learner afresh) or challenger (train a fresh learner beside it and "
             "switch when it wins)",
             "min_events": whole(1), "max_events": whole(1)}


class SparkSection(Section):
    """``spark``: where ``--engine spark`` keeps its offsets, and MLlib's streaming
    parameters. Their values are MLlib's and are checked when that engine starts."""

    checkpoint: Any = None
    master: Any = None
    max_files_per_trigger: Any = None
    step_size: Any = None
    num_iterations: Any = None
    mini_batch_fraction: Any = None
    reg_param: Any = None
    convergence_tol: Any = None
    initial_weights: Any = None
    k: Any = None
    decay_factor: Any = None
    half_life: Any = None
    time_unit: Any = None
    centers: Any = None
    seed: Any = None


def _written_as(false: Any, true: Any = True) -> BeforeValidator:
    """Lets a section be switched with a boolean: ``false`` stands for the value ``false``,
    ``true`` for the value ``true`` (by default ``true`` itself, which a section refuses)."""
    return BeforeValidator(lambda v: false if v is False else true if v is True else v)


def _distinct(labels: list[Any]) -> list[Any]:
    if len(set(map(str, labels))) != len(labels):
        raise ValueError("lists a label twice; expected a list of at least two distinct "
                         "labels, e.g. [0, 1]")
    return labels


def _mapping_of(section: type[Section], also: str) -> Callable[[Any], str]:
    return lambda v: f"expected {also}a mapping of {', '.join(keys(section))}; got {v!r}"


class OnlineSpecFile(Section):
    """An online learning spec as written (see the module docstring)."""

    name: ModelName
    task: Task = "classification"
    source: Name | Path | SourceSection
    target: Column | None = None
    features: Features | None = None
    id: Column | None = None
    label_delay: Annotated[LabelDelaySection | None, _written_as(None, true={})] = None
    classes: Annotated[list[Any], Field(min_length=2), AfterValidator(_distinct)] | None = None
    # a spec without learner: is checked as learner: {}, so the message names learner.estimator
    learner: LearnerSection = Field(default_factory=dict, validate_default=True)
    preprocess: Literal["auto", "none"] | PreprocessSection | None = "auto"
    batch: BatchSection | None = None
    checkpoint: CheckpointSection | None = None
    promotion: Annotated[PromotionSection | None, _written_as({"alias": None})] = None
    evaluation: EvaluationSection | None = None
    drift: Annotated[DriftSection | None, _written_as(None)] = None
    description: Any = None
    rejects: Name | Path | None = None
    spark: SparkSection | None = None
    hints = {
        "name": lambda v: "missing; name the model the checkpoints are registered under, e.g. "
        "name: churn-online" if v in (None, "") else f"expected a model name, e.g. "
        f"churn-online; got {v!r}",
        "source": lambda v: f"missing; {_SOURCES}" if v in (None, "") else
        f"expected a file path, a URL or a mapping of {', '.join(keys(SourceSection))}, got "
        f"{v!r}; {_SOURCES}",
        "target": _field, "id": _field,
        "features": lambda v: f"expected a non-empty list of field names, e.g. [tenure, plan]; "
        f"got {v!r}",
        "label_delay": _mapping_of(LabelDelaySection, "true, false or "),
        "classes": lambda v: f"expected a list of at least two distinct labels, e.g. [0, 1]; "
        f"got {v!r}",
        "preprocess": _mapping_of(PreprocessSection, "auto, none or "),
        "promotion": _mapping_of(PromotionSection, "false (promote nothing) or "),
        "drift": _mapping_of(DriftSection, "false (no drift detection) or "),
        "rejects": lambda v: f"expected a .jsonl file or a broker URL, {_REJECTS_EXAMPLE}; "
        f"got {v!r}",
    }


#: the keys each section accepts, as the models above declare them
KEYS: dict[str, tuple[str, ...]] = {
    "": keys(OnlineSpecFile), "source": keys(SourceSection), "learner": keys(LearnerSection),
    "preprocess": keys(PreprocessSection), "batch": keys(BatchSection),
    "checkpoint": keys(CheckpointSection), "promotion": keys(PromotionSection),
    "evaluation": keys(EvaluationSection), "drift": keys(DriftSection),
    "label_delay": keys(LabelDelaySection), "spark": keys(SparkSection),
}


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
    """The spec ``raw``: each key as its section declares it, then the rules that join keys."""

    def fail(key: str, message: str) -> UserError:
        return UserError(f"{label}: {key}: {message}")

    given: OnlineSpecFile = read(OnlineSpecFile, raw, label)
    task = given.task
    source = _source(given.source, base, fail)
    target = None if given.target is None else str(given.target)
    if task == "clustering" and target is not None:
        raise fail("target", "clustering learns without a target; remove it")
    if task != "clustering" and target is None:
        raise fail("target", f"missing; name the field a {task} learner predicts")
    id_column = None if given.id is None else str(given.id)
    features = given.features
    if features is not None:
        for other, what in ((target, "the target"), (id_column, "the id")):
            if other in features:
                raise fail("features", f"lists {what} {other!r}; remove it")

    label_delay = None
    if given.label_delay is not None:
        label_delay = given.label_delay.max_events
        if id_column is None:
            raise fail("label_delay", "needs id: the field that joins a late label to the "
                       "event it labels (e.g. id: customer_id)")
        if task == "clustering":
            raise fail("label_delay", "clustering learns without labels; remove it")

    if given.classes is not None and task != "classification":
        raise fail("classes", f"only classification has classes, the task is {task}")

    estimator = given.learner.estimator
    pipeline = _pipeline(given.learner.pipeline, estimator, fail)
    numeric, categorical, max_categories, hash_buckets = _preprocess(given.preprocess,
                                                                     estimator, fail)
    batch = given.batch or BatchSection()
    checkpoint = given.checkpoint or CheckpointSection()

    evaluation = given.evaluation or EvaluationSection()
    metrics = list(evaluation.metrics or METRICS[task])
    if any(m not in METRICS[task] for m in metrics):
        raise fail("evaluation.metrics", f"expected a list from {', '.join(METRICS[task])} for "
                   f"{task}, got {metrics!r}")

    promotion = given.promotion or PromotionSection()
    if promotion.alias is not None and promotion.alias == checkpoint.alias:
        raise fail("promotion.alias", f"is the checkpoint alias {checkpoint.alias!r}; "
                   "promotion moves another alias (e.g. production)")
    promotion_metric = metrics[0] if promotion.metric is None else promotion.metric
    if promotion_metric not in METRICS[task]:
        raise fail("promotion.metric", f"unknown metric {promotion_metric!r}; use one of "
                   f"{', '.join(METRICS[task])}")
    if promotion_metric not in metrics:
        metrics = [*metrics, promotion_metric]

    drift = given.drift
    if drift is not None and drift.max_events < drift.min_events:
        raise fail("drift.max_events", f"expected a whole number of at least drift.min_events "
                   f"({drift.min_events}), got {drift.max_events}")

    rejects = _rejects(given.rejects, source, base, fail)
    description = given.description
    spec = OnlineSpec(
        name=str(given.name), task=task, source=source, target=target,
        features=list(features) if features else None, id=id_column, label_delay=label_delay,
        classes=list(given.classes) if given.classes else None, estimator=estimator,
        params=dict(given.learner.params or {}), pipeline=pipeline, numeric=numeric,
        categorical=categorical, max_categories=max_categories, hash_buckets=hash_buckets,
        batch_size=batch.size, max_wait_ms=float(batch.max_wait_ms),
        every_events=checkpoint.every_events,
        every_seconds=None if checkpoint.every_seconds is None
        else float(checkpoint.every_seconds),
        checkpoint_alias=checkpoint.alias,
        formats=list(checkpoint.formats) if checkpoint.formats else None,
        promotion_alias=promotion.alias, promotion_metric=promotion_metric,
        promotion_threshold=float(promotion.threshold),
        promotion_min_events=promotion.min_events, window=evaluation.window,
        metrics=metrics, drift_detector=drift.detector if drift else None,
        drift_params=dict(drift.params or {}) if drift else {},
        drift_action=drift.action if drift else "alert",
        drift_min_events=drift.min_events if drift else 1000,
        drift_max_events=drift.max_events if drift else 50_000,
        description=str(description) if description is not None else None, label=label,
        raw=raw, rejects=rejects, spark=dict(raw.get("spark") or {}),
    )
    from modelport.train.online.learners import check_estimator

    check_estimator(spec)
    if spec.drift_detector is not None:
        from modelport.train.online.drift import make_detector

        make_detector(spec)
    return spec


def _source(value: str | Path | SourceSection, base: Path, fail: _Fail) -> SourceSpec:
    """Where events come from: the kind the URL names, a relative file taken from ``base``."""
    options = value if isinstance(value, SourceSection) else SourceSection(url=value)
    url = str(options.url)
    rate = None if options.rate is None else float(options.rate)
    key = None if options.key is None else str(options.key)
    poll_ms = float(options.poll_ms)
    if _BROKER.match(url):
        from modelport.io import brokers

        brokers.parse(url, "source")
        if key is not None:
            raise fail("source.key", "a broker delivers in its own order; key applies to SQL "
                       "tables")
        return SourceSpec("broker", url, rate=rate, format=options.format, poll_ms=poll_ms,
                          group=None if options.group is None else str(options.group))
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
        return SourceSpec("sql", f"{server}#{table}", key=key, rate=rate, poll_ms=poll_ms,
                          base=str(base))
    if "://" in url and not url.startswith("file://"):
        raise fail("source", f"unknown source {url!r}; use a file path, a broker URL (redis://, "
                   "nats://, amqp://, mqtt://, kafka://) or a SQLAlchemy URL with '#table'")
    path = Path(url.removeprefix("file://")).expanduser()
    if not path.is_absolute():
        path = base / path
    if path.is_dir():  # read by --engine spark, as a stream of files
        return SourceSpec("folder", str(path), rate=rate, poll_ms=poll_ms)
    if not path.name.lower().endswith(_FILES):
        raise fail("source", f"cannot replay {path.name}: use a .jsonl, .csv or .parquet file")
    if key is not None:
        raise fail("source.key", "a file is replayed in its own order; key applies to SQL tables")
    return SourceSpec("file", str(path), rate=rate, poll_ms=poll_ms)


def _rejects(value: str | Path | None, source: SourceSpec, base: Path,
             fail: _Fail) -> str | None:
    """Where rejected events go: a broker URL as it is, a .jsonl path made absolute; never
    the source itself, which would feed the learner its own rejects."""
    if value is None:
        return None
    url = str(value)
    if _BROKER.match(url):
        from modelport.io import brokers

        brokers.parse(url, "rejects:")
        if url == source.url:
            raise fail("rejects", "is the source: the learner would read its own rejects; "
                       "name another stream, queue or topic")
        return url
    if "://" in url and not url.startswith("file://"):
        raise fail("rejects", f"unknown destination {url!r}; {_REJECTS_EXAMPLE}")
    path = Path(url.removeprefix("file://")).expanduser()
    if not path.is_absolute():
        path = base / path
    if not path.name.lower().endswith((".jsonl", ".ndjson")):
        raise fail("rejects", f"cannot write rejects to {path.name}: name a .jsonl file (one "
                   f"rejected event a line) or a broker URL, {_REJECTS_EXAMPLE}")
    if source.kind == "file" and path.resolve() == Path(source.url).resolve():
        raise fail("rejects", "is the source file: the learner would read its own rejects; "
                   "name another file")
    if not path.parent.is_dir():
        raise fail("rejects", f"cannot write {path}: its folder does not exist; create it or "
                   "name another file")
    if path.is_dir():
        raise fail("rejects", f"{path} is a folder; name a .jsonl file")
    return str(path)


def _pipeline(steps: list[str | PipelineStep] | None, estimator: str,
              fail: _Fail) -> list[tuple[str, dict[str, Any]]]:
    """``learner.pipeline`` as (class path, params) pairs; only River learners take one."""
    if steps is None:
        return []
    if not estimator.startswith("river."):
        raise fail("learner.pipeline", "is for River learners; scikit-learn learners take "
                   "their preprocessing from the preprocess: section")
    return [(step, {}) if isinstance(step, str) else (step.estimator, dict(step.params or {}))
            for step in steps]


def _preprocess(value: str | PreprocessSection | None, estimator: str,
                fail: _Fail) -> tuple[str, str, int, int]:
    """(numeric, categorical, max_categories, hash_buckets) for the learner ``estimator``:
    River learners preprocess in their own pipeline, count learners are imputed, not
    scaled."""
    river = estimator.startswith("river.")
    learner = estimator.rsplit(".", 1)[-1]
    count_learner = learner in _COUNT_LEARNERS
    if value == "none":
        return "none", "none", 50, 32
    section = value if isinstance(value, PreprocessSection) else PreprocessSection()
    if river and section.model_fields_set:
        raise fail("preprocess", "River learners preprocess inside their own pipeline; put "
                   "river.preprocessing steps in learner.pipeline and remove preprocess")
    if river:
        return "none", "none", 50, 32
    numeric = section.numeric or ("impute" if count_learner else "scale")
    if numeric == "scale" and count_learner:
        raise fail("preprocess.numeric", f"{learner} needs non-negative inputs, which scaling "
                   "breaks; use impute")
    return numeric, section.categorical, section.max_categories, section.hash_buckets
