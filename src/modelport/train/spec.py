"""Training specs: a small YAML file that says what to learn from which data, and how.

::

    name: churn
    task: classification          # classification | regression | clustering
    data:
      source: data/customers.parquet   # path relative to this file, SQL URL + '#table',
      target: churned                  #   or {url, query}
      id: customer_id                  # optional; never used as a feature
      features: [tenure_months, plan]  # optional; default: every other column
    model:
      estimator: sklearn.ensemble.HistGradientBoostingClassifier
      params: {max_iter: 200}
      preprocess: auto                 # auto (impute, scale, one-hot) | none
    validation: {test_size: 0.2, seed: 42}
    metrics: [roc_auc, accuracy]
    formats: [joblib, onnx]            # optional; default: every available format
    description: nightly churn model   # optional
    automl:                            # optional, for modelport retrain: search, not one model
      engine: flaml                    # flaml | optuna | tpot
      time_budget_s: 120
      metric: roc_auc                  # default: promotion.metric, else the first of metrics
      estimators: [lr, rf, extra_tree, hgb, lgbm, xgboost]   # default: every installed family
      feature_selection: true
    promotion:                         # optional, for modelport retrain
      alias: production                # the champion's alias, moved only when the challenger wins
      metric: roc_auc                  # default: automl.metric, else the first of metrics
      min_improvement: 0.002           # the margin the challenger must win by
      holdout: 0.2                     # share of the fresh rows both are scored on

``data.window: {column: updated_at, days: 90}`` keeps only the rows whose ``column`` (a
timestamp) falls within the last ``days`` days when ``modelport retrain`` reads them.

``model.estimator`` is imported by name, so a spec could name any class Python can import
(``subprocess.Popen`` with ``params: {args: ..., shell: true}`` runs a command when the
spec is checked). A spec imports only from :data:`ALLOWED_MODULES` -- scikit-learn,
LightGBM, XGBoost, River and modelport -- and from the module prefixes listed in the
environment variable ``MODELPORT_ALLOWED_MODULES`` (comma-separated, e.g.
``mycompany.models``), checked before anything is imported; the class itself must be
defined inside one of them. A spec cannot widen the list itself: whoever runs modelport
says which code it may run. Every spec that names a class (online learners, their
pipelines, drift detectors) goes through :func:`~modelport.train.imports.import_class`.

Only ``name``, ``data.source`` and (except for clustering) ``data.target`` are required.
Every mistake raises a :class:`~modelport.errors.UserError` that names the field
(``data.target``, ``model.params``...) and says how to fix it. Checks that need the data
(do the named columns exist?) are made by :meth:`Spec.feature_columns` once it is read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from modelport.errors import UserError
from modelport.train.imports import (  # noqa: F401 - the spec's allow-list, named here too
    ALLOWED_MODULES,
    ALLOWED_MODULES_ENV,
    allowed_modules,
    import_class,
    module_allowed,
)
from modelport.train.metrics import DEFAULT_METRICS, METRICS, PROBA_METRICS
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
    did_you_mean,
    keys,
    read,
)

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

DEFAULT_ESTIMATORS = {
    "classification": "sklearn.ensemble.HistGradientBoostingClassifier",
    "regression": "sklearn.ensemble.HistGradientBoostingRegressor",
    "clustering": "sklearn.cluster.KMeans",
}
PREPROCESS = ("auto", "none")

_ESTIMATOR_KINDS = {"classification": "classifier", "regression": "regressor",
                    "clustering": "clusterer"}


def _fraction(value: Any) -> str:
    return f"must be a fraction between 0 and 1 (exclusive), got {value!r}; e.g. 0.2"


def _column(value: Any) -> str:
    return f"expected a column name, got {value!r}"


_SOURCE_MISSING = ("missing; give a file path, a SQL URL with the table after '#', or "
                   "{url, query}")


class WindowSection(Section):
    """``data.window``: keep the rows whose timestamp ``column`` is within ``days``."""

    column: Name
    days: float = Field(gt=0)
    hints = {"column": lambda v: "missing; name the timestamp column to filter on",
             "days": lambda v: f"must be a positive number of days, got {v!r}"}


class DataSection(Section):
    """``data``: where the rows come from and which columns are what."""

    source: str | dict[Any, Any]
    target: Column | None = None
    id: Column | None = None
    features: Features | None = None
    window: WindowSection | None = None
    hints = {"source": lambda v: _SOURCE_MISSING if v is None else
             f"expected a path, a URL or {{url, query}}, got {v!r}",
             "target": _column, "id": _column,
             "features": lambda v: "expected a non-empty list of column names, e.g. "
             "[tenure_months, plan]"}

    @field_validator("source")
    @classmethod
    def _query_or_path(cls, value: Any) -> Any:
        if isinstance(value, dict):
            if not value.get("url") or not value.get("query") or set(value) - {"url", "query"}:
                raise ValueError("a query source has exactly two keys, url and query, e.g. "
                                 "{url: 'sqlite:///app.db', query: 'SELECT * FROM customers'}")
            return {"url": str(value["url"]), "query": str(value["query"])}
        if not value:
            raise ValueError(_SOURCE_MISSING)
        return value


class ModelSection(EstimatorKeys):
    """``model``: the estimator, its parameters, and the preprocessing around it."""

    preprocess: Any = "auto"

    @field_validator("preprocess")
    @classmethod
    def _known_preprocess(cls, value: Any) -> str:
        if str(value).lower() not in PREPROCESS:
            raise ValueError(f"unknown value {value!r}; use auto (impute, scale and one-hot "
                             "encode) or none (raw features)")
        return str(value).lower()


class ValidationSection(Section):
    """``validation``: the hold-out the metrics are measured on."""

    test_size: float = Field(0.2, gt=0, lt=1)
    seed: int = 42
    hints = {"test_size": _fraction,
             "seed": lambda v: f"must be a whole number, got {v!r}"}


def _families() -> str:
    from modelport.train.automl.space import FAMILIES

    return ", ".join(FAMILIES)


class AutoMLSection(Section):
    """``automl``: search model families for a while instead of fitting one model."""

    engine: str = "flaml"
    time_budget_s: float = Field(60.0, gt=0)
    metric: str | None = None
    estimators: list[str] | str | None = None
    feature_selection: bool = False
    hints = {"engine": lambda v: f"unknown engine {v!r}; use one of flaml, optuna, tpot",
             "time_budget_s": lambda v: f"must be a positive number of seconds, got {v!r}",
             "metric": lambda v: f"unknown metric {v!r}",
             "estimators": lambda v: f"expected a list of families from {_families()}",
             "feature_selection": lambda v: f"must be true or false, got {v!r}"}


class PromotionSection(PromotionKeys):
    """``promotion``: the alias a challenger must earn, and by what margin."""

    alias: Alias = "production"
    min_improvement: float = Field(0.0, ge=0)
    holdout: float = Field(0.2, gt=0, lt=1)
    hints = {**PromotionKeys.hints,
             "min_improvement": lambda v: f"must be a number >= 0, got {v!r}",
             "holdout": _fraction}


class SpecFile(Section):
    """A training spec as written: the sections and their keys (see the module docstring).
    New keys are added here; existing ones are never renamed."""

    name: ModelName
    task: Task = "classification"
    data: DataSection | None = None
    model: ModelSection | None = None
    validation: ValidationSection | None = None
    metrics: Metrics | None = None
    formats: Formats | None = None
    description: Any = None
    automl: AutoMLSection | None = None
    promotion: PromotionSection | None = None
    hints = {"name": lambda v: "missing; give the model a name, e.g. name: churn"
             if v in (None, "") else f"expected a model name, e.g. churn; got {v!r}",
             "metrics": lambda v: "expected a list of metric names, e.g. " + "; ".join(
                 f"[{', '.join(names)}] for {task}" for task, names in DEFAULT_METRICS.items())
             + f"; got {v!r}"}


#: the keys each section accepts, as the models above declare them
KEYS = {"": keys(SpecFile), "data": keys(DataSection), "data.window": keys(WindowSection),
        "automl": keys(AutoMLSection), "promotion": keys(PromotionSection),
        "model": keys(ModelSection), "validation": keys(ValidationSection)}


@dataclass
class AutoML:
    """The ``automl`` section: which engine searches which families for how long."""

    engine: str = "flaml"
    time_budget_s: float = 60.0
    metric: str = ""
    estimators: list[str] | None = None
    feature_selection: bool = False


@dataclass
class Promotion:
    """The ``promotion`` section: the alias a challenger must earn and by what margin."""

    alias: str = "production"
    metric: str = ""
    min_improvement: float = 0.0
    holdout: float = 0.2


@dataclass
class Spec:
    """A checked training spec. ``base`` is the folder relative data paths start from."""

    name: str
    task: str
    source: str | dict[str, Any]
    target: str | None
    id: str | None
    features: list[str] | None
    estimator: str
    params: dict[str, Any]
    preprocess: str
    test_size: float
    seed: int
    metrics: list[str]
    formats: list[str] | None
    description: str | None
    base: Path
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    window: dict[str, Any] | None = None
    automl: AutoML | None = None
    promotion: Promotion = field(default_factory=Promotion)

    @property
    def label(self) -> str:
        """What messages call this spec: its file name, or ``spec`` for an inline one."""
        return self.path.name if self.path else "spec"

    def fail(self, fieldname: str, message: str) -> UserError:
        return UserError(f"{self.label}: {fieldname}: {message}")

    def estimator_class(self) -> type:
        """The estimator class ``model.estimator`` names (imported, see :func:`import_class`)."""
        return import_class(self.estimator, self.label)

    def make_estimator(self) -> BaseEstimator:
        """A fresh, unfitted estimator with ``model.params``."""
        cls = self.estimator_class()
        try:
            return cls(**self.params)
        except TypeError as exc:
            raise self.fail("model.params", f"{self.estimator} does not accept these "
                            f"parameters ({exc}); check the names against its documentation"
                            ) from None

    def feature_columns(self, columns: list[str]) -> list[str]:
        """The feature columns, checked against the columns the data source has.

        A target, id or listed feature missing from the data raises a
        :class:`~modelport.errors.UserError` naming ``data.target``, ``data.id`` or
        ``data.features``; without ``data.features`` every other column is a feature.
        """
        have = [str(c) for c in columns]
        shown = ", ".join(have[:40]) + (" ..." if len(have) > 40 else "")
        where = f"the data ({shown})"
        if self.target is not None and self.target not in have:
            raise self.fail("data.target", f"column {self.target!r} is not in {where}; set "
                            "data.target to the column to predict")
        if self.id is not None and self.id not in have:
            raise self.fail("data.id", f"column {self.id!r} is not in {where}; fix the name "
                            "or remove data.id")
        if self.features is None:
            features = [c for c in have if c not in (self.target, self.id)]
            if not features:
                raise self.fail("data.features", f"no columns are left to learn from in {where}")
            return features
        missing = [c for c in self.features if c not in have]
        if missing:
            raise self.fail("data.features", f"column(s) {', '.join(map(repr, missing))} "
                            f"are not in {where}; fix or remove them")
        return list(self.features)


def load_spec(spec: str | Path | Mapping[str, Any], base: str | Path | None = None) -> Spec:
    """Read and check a spec from a YAML file or a dict; return a :class:`Spec`.

    Relative data paths are taken from the spec file's folder (for a dict: from ``base``,
    else the working directory). Everything that can be checked without reading the data
    is checked here, including that ``model.estimator`` imports and accepts
    ``model.params``.
    """
    path = None
    if isinstance(spec, Mapping):
        raw = dict(spec)
        folder = Path(base) if base is not None else Path.cwd()
    else:
        path = Path(spec)
        raw = _read_yaml(path)
        folder = Path(base) if base is not None else path.absolute().parent
    return _check(raw, folder.absolute(), path)


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise UserError(f"cannot read the spec {path}: no such file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise UserError(f"{path.name}: not valid YAML{at}: {getattr(exc, 'problem', exc)}; "
                        "fix the syntax") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path.name}: a spec is a mapping of keys (name, task, data, model...), "
                        f"got {type(raw).__name__}")
    return raw


def _check(raw: dict[str, Any], base: Path, path: Path | None) -> Spec:
    label = path.name if path else "spec"

    def fail(fieldname: str, message: str) -> UserError:
        return UserError(f"{label}: {fieldname}: {message}")

    given = read(SpecFile, raw, label)
    if given.data is None:
        raise fail("data", "missing; add a data: section (see the example in "
                   "modelport.train.spec)")
    data = given.data
    model = given.model or ModelSection()
    validation = given.validation or ValidationSection()

    name, task = str(given.name), given.task
    target = None if data.target is None else str(data.target)
    if task == "clustering" and target is not None:
        raise fail("data.target", "clustering learns without a target; remove data.target "
                   "(or list the columns to cluster on in data.features)")
    if task != "clustering" and target is None:
        raise fail("data.target", f"missing; name the column a {task} model predicts")
    id_column = None if data.id is None else str(data.id)
    features = data.features
    if features is not None:
        if target in features:
            raise fail("data.features", f"lists the target {target!r}; remove it")
        if id_column in features:
            raise fail("data.features", f"lists the id column {id_column!r}, which is never a "
                       "feature; remove it from data.features (or drop data.id)")

    estimator = model.estimator or DEFAULT_ESTIMATORS[task]

    metrics = list(given.metrics or DEFAULT_METRICS[task])
    for metric in metrics:
        if metric not in METRICS[task]:
            raise fail("metrics", f"unknown metric {metric!r} for {task}; use any of "
                       f"{', '.join(METRICS[task])}")

    formats = given.formats
    window = None
    if data.window is not None:
        window = {"column": data.window.column, "days": float(data.window.days)}
    automl_given = (given.automl or AutoMLSection()) if "automl" in raw else None
    automl, promotion = _check_retrain(automl_given, given.promotion or PromotionSection(),
                                       task, metrics, fail)

    description = given.description
    spec = Spec(
        name=name, task=task, source=data.source, target=target, id=id_column,
        features=list(features) if features is not None else None, estimator=estimator,
        params=dict(model.params or {}), preprocess=model.preprocess,
        test_size=float(validation.test_size), seed=validation.seed,
        metrics=list(metrics), formats=list(formats) if formats else None,
        description=str(description) if description is not None else None,
        base=base, path=path, raw=raw, window=window, automl=automl, promotion=promotion,
    )
    _check_estimator(spec)
    return spec


def _check_retrain(automl_given: AutoMLSection | None, promotion_given: PromotionSection,
                   task: str, metrics: list[str],
                   fail: Callable[[str, str], UserError]) -> tuple[AutoML | None, Promotion]:
    """The ``automl`` and ``promotion`` sections; both metrics default to each other, then
    to the first of ``metrics``."""
    if automl_given is not None and task == "clustering":
        raise fail("automl", "AutoML searches classification and regression models; remove "
                   "the automl section or change task")
    metric = (promotion_given.metric or (automl_given.metric if automl_given else None)
              or metrics[0])
    for where, section in (("promotion", promotion_given), ("automl", automl_given)):
        value = section.metric if section is not None and section.metric is not None \
            else metric
        if value not in METRICS[task]:
            raise fail(f"{where}.metric", f"unknown metric {value!r} for {task}; use any of "
                       f"{', '.join(METRICS[task])}")
    automl = None
    if automl_given is not None:
        from modelport.train.automl import ENGINES as engines
        from modelport.train.automl.space import FAMILIES

        engine = automl_given.engine
        if engine not in engines:
            raise fail("automl.engine", f"unknown engine {engine!r}; "
                       f"{did_you_mean(engine, engines)}use one of {', '.join(engines)}")
        estimators = automl_given.estimators
        if estimators is not None:
            if isinstance(estimators, str):
                estimators = [estimators]
            if not estimators:
                raise fail("automl.estimators", f"expected a list of families from "
                           f"{', '.join(FAMILIES)}")
            for name in estimators:
                if name not in FAMILIES:
                    raise fail("automl.estimators", f"unknown family {name!r}; "
                               f"{did_you_mean(name, FAMILIES)}use any of "
                               f"{', '.join(FAMILIES)}")
        automl = AutoML(engine=engine, time_budget_s=float(automl_given.time_budget_s),
                        metric=automl_given.metric or metric,
                        estimators=list(dict.fromkeys(estimators)) if estimators else None,
                        feature_selection=automl_given.feature_selection)
    promotion = Promotion(alias=promotion_given.alias, metric=promotion_given.metric or metric,
                          min_improvement=float(promotion_given.min_improvement),
                          holdout=float(promotion_given.holdout))
    return automl, promotion


def _check_estimator(spec: Spec) -> None:
    """Instantiate the estimator once: it imports, takes the params and suits the task."""
    instance = spec.make_estimator()
    kind = _estimator_kind(instance)
    wanted = _ESTIMATOR_KINDS[spec.task]
    if kind is not None and kind != wanted:
        raise spec.fail("model.estimator", f"{spec.estimator} is a {kind} but the task is "
                        f"{spec.task}; use a {wanted} (e.g. {DEFAULT_ESTIMATORS[spec.task]}) "
                        "or change task")
    if not hasattr(instance, "predict"):
        raise spec.fail("model.estimator", f"{spec.estimator} has no predict method, so it "
                        "cannot score new rows; use an estimator that predicts (e.g. "
                        f"{DEFAULT_ESTIMATORS[spec.task]})")
    if spec.task == "classification" and not hasattr(instance, "predict_proba"):
        needing = [m for m in spec.metrics if m in PROBA_METRICS]
        if needing:
            raise spec.fail("metrics", f"{', '.join(needing)} need class probabilities but "
                            f"{spec.estimator} (with these params) gives none; remove them "
                            "or use an estimator with predict_proba")


def _estimator_kind(instance: BaseEstimator) -> str | None:
    try:
        from sklearn.utils import get_tags

        return get_tags(instance).estimator_type
    except Exception:  # not a scikit-learn estimator: nothing to check against
        return getattr(instance, "_estimator_type", None)
