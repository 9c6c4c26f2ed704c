"""Incremental learners behind one small interface: scikit-learn ``partial_fit`` estimators
fed mini-batches, and River estimators (and pipelines) fed one event at a time.

The learning loop asks a learner to :meth:`~SklearnLearner.test_then_train` a batch, which
a scikit-learn learner learns in steps that grow with what it has learnt: each step is
predicted with what was learnt before it, then learnt. scikit-learn's SGD-family
``partial_fit`` still updates the weights once per event inside a step (in compiled code),
so a step costs one call while the weights follow the same path as event-by-event
learning; only the predictions of a step share the weights it started with. SGD skips
``partial_fit``'s per-call checks once it has shown it learns the same without them
(:class:`_Epoch`); Gaussian naive Bayes learns through
:class:`~modelport.train.online.bayes.GaussianBayes`. Predictions of linear models and
Gaussian naive Bayes are computed here from the fitted attributes (the same arithmetic as
``predict_proba``, without its per-call validation).

Unless the spec sets them, learners get defaults suited to streams, recorded with every
checkpoint: SGD learns at a constant rate of 0.01 without regularisation (what River's
linear models do; the default schedule decays too fast for a stream that drifts), and
estimators that shuffle or draw random numbers do neither / use seed 0, so a replay from
a checkpoint learns exactly what an uninterrupted run learnt.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
from scipy.special import expit as _expit
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from modelport.errors import UserError, require
from modelport.train.online.bayes import GaussianBayes
from modelport.train.online.schema import Features, Schema

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from modelport.train.online.config import OnlineSpec
    from modelport.train.online.preprocess import Preprocessor

#: parameters set unless the spec gives them (see the module docstring)
STREAM_DEFAULTS: dict[str, dict[str, Any]] = {
    "SGDClassifier": {"learning_rate": "constant", "eta0": 0.01, "alpha": 0.0,
                      "shuffle": False},
    "SGDRegressor": {"learning_rate": "constant", "eta0": 0.01, "alpha": 0.0,
                     "shuffle": False},
    "PassiveAggressiveClassifier": {"shuffle": False},
    "PassiveAggressiveRegressor": {"shuffle": False},
    "Perceptron": {"shuffle": False},
    "MLPClassifier": {"shuffle": False, "random_state": 0},
    "MLPRegressor": {"shuffle": False, "random_state": 0},
    "MiniBatchKMeans": {"random_state": 0, "n_init": 1},
}
#: a learning step holds at most 1/_STEP of the events learnt before it
_STEP = 8
_LINEAR = ("SGDClassifier", "SGDRegressor", "Perceptron", "PassiveAggressiveClassifier",
           "PassiveAggressiveRegressor")
_EXAMPLES = "SGDClassifier, SGDRegressor, GaussianNB, MultinomialNB, MiniBatchKMeans"
_KINDS = {"classification": "classifier", "regression": "regressor", "clustering": "clusterer"}


@dataclass
class Prediction:
    """Predictions for a batch: labels (classification), class probabilities when the
    learner gives them, values (regression), cluster ids and squared distances to the
    centre (clustering). ``scored`` marks the events that got a prediction at all."""

    label: np.ndarray | None = None
    proba: np.ndarray | None = None
    value: np.ndarray | None = None
    scored: np.ndarray | None = None


def check_estimator(spec: OnlineSpec) -> None:
    """Import and build the spec's learner once: it exists, takes its parameters, learns
    incrementally and suits the task. Adjusts the default metrics to what it predicts."""
    explicit = "metrics" in (spec.raw.get("evaluation") or {})
    if spec.river:
        model = _river_model(spec)
        river_base = require("river.base", "online", "River learners")
        wanted = {"classification": river_base.Classifier,
                  "regression": river_base.Regressor}.get(spec.task)
        final = model[list(model.steps)[-1]] if hasattr(model, "steps") else model
        if wanted is None:
            raise spec.fail("learner.estimator", "River learners here classify or regress; "
                            "cluster a stream with sklearn.cluster.MiniBatchKMeans")
        if not isinstance(final, wanted):
            raise spec.fail("learner.estimator", f"{spec.estimator} is not a River "
                            f"{_KINDS[spec.task]} but the task is {spec.task}")
        return
    from modelport.train.imports import import_class

    cls = import_class(spec.estimator, spec.label, "learner.estimator")
    if not hasattr(cls, "partial_fit"):
        raise spec.fail("learner.estimator", f"{cls.__name__} cannot learn incrementally (it "
                        f"has no partial_fit); use one that does, e.g. {_EXAMPLES}, or a "
                        "River learner")
    estimator = build_sklearn(spec)
    name = type(estimator).__name__
    kind = _sklearn_kind(estimator)
    if kind is not None and kind != _KINDS[spec.task]:
        raise spec.fail("learner.estimator", f"{name} is a {kind} but the task is "
                        f"{spec.task}; use a {_KINDS[spec.task]} or change task")
    if spec.task == "classification" and not hasattr(estimator, "predict_proba") \
            and "log_loss" in spec.metrics:
        if explicit or spec.promotion_metric == "log_loss":
            raise spec.fail("evaluation.metrics", f"log_loss needs class probabilities, which "
                            f"{name} with these params does not give (SGDClassifier gives "
                            "them with loss: log_loss); remove log_loss")
        spec.metrics.remove("log_loss")


def build_sklearn(spec: OnlineSpec) -> Any:
    """A fresh scikit-learn estimator with the stream defaults under the spec's params."""
    from modelport.train.imports import import_class

    cls = import_class(spec.estimator, spec.label, "learner.estimator")
    params = {**STREAM_DEFAULTS.get(cls.__name__, {}), **spec.params}
    try:
        return cls(**params)
    except TypeError as exc:
        raise spec.fail("learner.params", f"{spec.estimator} does not accept these parameters "
                        f"({exc}); check the names against its documentation") from None


def effective_params(spec: OnlineSpec) -> dict[str, Any]:
    """The parameters the learner runs with: stream defaults, then the spec's."""
    if spec.river:
        return dict(spec.params)
    name = spec.estimator.rsplit(".", 1)[-1]
    return {**STREAM_DEFAULTS.get(name, {}), **spec.params}


def make_learner(spec: OnlineSpec, schema: Schema) -> SklearnLearner | RiverLearner:
    """The learner a spec names, ready for its first batch."""
    if spec.river:
        return RiverLearner(_river_model(spec), spec.task, spec.classes, schema)
    from modelport.train.online.preprocess import Preprocessor

    if schema.categorical and spec.categorical == "none":
        raise spec.fail("preprocess.categorical", f"is none but field(s) "
                        f"{', '.join(map(repr, schema.categorical))} hold text; encode them "
                        "with onehot or hash, or leave them out of features")
    prep = Preprocessor(schema.numeric, schema.categorical, spec.numeric, spec.categorical,
                        spec.max_categories, spec.hash_buckets)
    return SklearnLearner(build_sklearn(spec), prep, spec.task, spec.classes)


def _sklearn_kind(estimator: Any) -> str | None:
    try:
        from sklearn.utils import get_tags

        return get_tags(estimator).estimator_type
    except Exception:
        return getattr(estimator, "_estimator_type", None)


def _river_model(spec: OnlineSpec) -> Any:
    from modelport.train.imports import import_class

    require("river", "online", "River learners")

    def build(path: str, params: dict[str, Any], key: str) -> Any:
        cls = import_class(path, spec.label, key)
        try:
            return cls(**params)
        except TypeError as exc:
            where = "learner.params" if key == "learner.estimator" else key
            raise spec.fail(where, f"{path} does not accept these parameters ({exc})") from None

    model = build(spec.estimator, spec.params, "learner.estimator")
    if not hasattr(model, "learn_one"):
        raise spec.fail("learner.estimator", f"{spec.estimator} is not a River estimator "
                        "(it has no learn_one)")
    steps = [build(path, params, "learner.pipeline") for path, params in spec.pipeline]
    for step in steps:
        if not hasattr(step, "transform_one"):
            raise spec.fail("learner.pipeline", f"{type(step).__name__} is not a River "
                            "transformer (it has no transform_one)")
    if steps:
        from river import compose

        model = compose.Pipeline(*steps, model)
    return model


# -- scikit-learn ----------------------------------------------------------------------------

class SklearnLearner:
    """A ``partial_fit`` estimator behind incremental preprocessing. A ``GaussianNB`` learns
    through :class:`~modelport.train.online.bayes.GaussianBayes` instead (see there)."""

    #: the statistics a GaussianNB learns through
    bayes: GaussianBayes | None = None
    #: whether SGD learns through _Epoch (None: not compared with partial_fit yet)
    direct: bool | None = None
    _epoch: _Epoch | None = None
    #: events learnt so far, which bound the next step (see test_then_train)
    learnt: int = 0
    #: set by the learning loop (State.tag)
    tag: int

    def __init__(self, estimator: Any, prep: Preprocessor, task: str,
                 classes: list | None) -> None:
        self.estimator = estimator
        self.prep = prep
        self.task = task
        self.classes = np.asarray(sorted(classes)) if classes else None
        self.fitted = False
        self.waiting: list[tuple[np.ndarray, np.ndarray | None]] = []
        if type(estimator).__name__ == "GaussianNB" and \
                type(estimator).__module__.startswith("sklearn."):
            self.bayes = GaussianBayes(estimator.var_smoothing, estimator.priors)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_epoch", None)  # built again from the estimator when needed
        return state

    def fresh(self) -> SklearnLearner:
        """The same learner, with nothing learnt (for a reset or a challenger)."""
        from sklearn.base import clone

        classes = self.classes.tolist() if self.classes is not None else None
        return SklearnLearner(clone(self.estimator), self.prep.fresh(), self.task, classes)

    def accepts(self, y: np.ndarray) -> np.ndarray:
        """Which labels the learner can learn (classes are fixed at the first fit)."""
        if self.task != "classification" or self.classes is None:
            return np.ones(len(y), dtype=bool)
        y = np.asarray(y)
        if len(self.classes) <= 8 and y.dtype.kind == self.classes.dtype.kind:
            return (y[:, None] == self.classes[None, :]).any(1)
        return np.isin(y, self.classes)

    def predict(self, features: Features) -> Prediction | None:
        if not self.fitted or not len(features):
            return None
        return self._predict(self._scaled(self._inputs(features)))

    def test_then_train(self, features: Features, y: np.ndarray | None) -> Prediction | None:
        """Predict the batch and learn it, in steps: each step is predicted with what was
        learnt before it, then learnt. A step holds at most an eighth of the events learnt
        before it (one, at first), so every event is predicted by a model that learnt at
        least eight ninths of the events before it, and only the very first event of a
        stream goes unpredicted. A thousand events take about fifty steps; a long stream
        reaches full batches after eight times their size."""
        n = len(features)
        ends = [0]
        while ends[-1] < n:
            ends.append(min(n, ends[-1] + max(1, (self.learnt + ends[-1]) // _STEP)))
        ends.pop(0)
        sizes = np.diff(ends, prepend=0)
        X, shift, scale = self.prep.learn(features.num, features.cat, ends)
        if self.bayes is None and self.prep.numeric_mode == "scale":
            step = np.repeat(np.arange(len(ends)), sizes) if len(ends) > 1 else 0
            X = (X - shift[step]) / scale[step]
        made: list[Prediction | None] = []
        start = 0
        for j, stop in enumerate(ends):
            part = X[start:stop]
            made.append(self._predict(self._scaled(part, shift[j], scale[j]))
                        if self.fitted else None)
            self._fit(part, None if y is None else y[start:stop])
            start = stop
        self.learnt += n
        return _joined(made, sizes.tolist())

    def learn(self, features: Features, y: np.ndarray | None) -> None:
        self.prep.update(features.num, features.cat)
        self._fit(self._inputs(features), y)
        self.learnt += len(features)

    def _inputs(self, features: Features) -> np.ndarray:
        """The batch as the learner learns it: preprocessed, and scaled unless it is learnt
        through GaussianBayes, which keeps its statistics in the units of the data."""
        return self.prep.transform(features.num, features.cat, scaled=self.bayes is None)

    def _scaled(self, X: np.ndarray, shift: np.ndarray | None = None,
                scale: np.ndarray | None = None) -> np.ndarray:
        """The batch as the estimator of the exported pipeline takes it, with a GaussianNB
        brought to the scale (``shift``, ``scale``: the preprocessing's current one)."""
        if self.bayes is None:
            return X
        if shift is None:
            shift, scale = self.prep.standardisation()
        assert self.classes is not None and scale is not None  # known once it learns
        self.bayes.write(self.estimator, self.classes, shift, scale)
        return (X - shift) / scale

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        if not self.fitted and not self._ready(X, y):
            return
        self._partial_fit(X, y)

    def _partial_fit(self, Z: np.ndarray, y: np.ndarray | None) -> None:
        import sklearn

        est = self.estimator
        epoch = self._sgd() if self.fitted else None
        if epoch is not None and self.direct:
            epoch(est, Z, y)
            return
        probe = None
        if epoch is not None:  # the first time: learn the batch both ways and compare
            probe = copy.deepcopy(est)
            try:
                epoch(probe, Z, y)
            except Exception:  # noqa: BLE001 - other internals: partial_fit it is
                probe, self.direct = None, False
        try:
            with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
                if self.bayes is not None:
                    assert self.classes is not None  # known before the first fit
                    assert y is not None  # a GaussianNB classifies: its events have labels
                    self.bayes.learn(Z, y, self.classes)
                elif self.task == "clustering":
                    est.partial_fit(Z)
                elif self.task == "classification" and not self.fitted:
                    est.partial_fit(Z, y, classes=self.classes)
                else:
                    est.partial_fit(Z, y)
        except ValueError as exc:  # e.g. negative counts for MultinomialNB
            raise UserError(f"{type(est).__name__} refused a batch: {exc}; check the "
                            "learner against the data (and preprocess)") from None
        if probe is not None:
            self.direct = _same_weights(probe, est)
        self.fitted = True

    def _sgd(self) -> _Epoch | None:
        """The direct SGD epoch for the estimator, unless it does not apply or gave other
        weights than partial_fit."""
        if self.direct is False:
            return None
        if self._epoch is None:
            if not _Epoch.fits(self.estimator):
                self.direct = False
                return None
            try:
                self._epoch = _Epoch(self.estimator)
            except Exception:  # noqa: BLE001 - another scikit-learn's internals: partial_fit
                self.direct = False
                return None
        return self._epoch

    def _ready(self, X: np.ndarray, y: np.ndarray | None) -> bool:
        """Whether the first fit can happen: a classifier needs two classes (unless the spec
        lists them), k-means as many events as clusters. Until then events wait, in order."""
        if self.task == "classification" and self.classes is not None:
            return True
        self.waiting.append((X, y))
        labels = np.concatenate([w[1] for w in self.waiting]) if y is not None else None
        rows = sum(len(w[0]) for w in self.waiting)
        if self.task == "classification":
            assert labels is not None  # a classifier learns from labels
            if len(np.unique(labels)) < 2:
                if rows > 100_000:
                    raise UserError("the first 100000 labels hold a single class; list every "
                                    "class in the spec's classes: key")
                return False
            self.classes = np.unique(labels)
        elif self.task == "clustering" and rows < getattr(self.estimator, "n_clusters", 1):
            return False
        held = np.concatenate([w[0] for w in self.waiting])
        self.waiting = []
        self._partial_fit(held, labels)
        return False  # the events were learnt with the waiting ones

    def _predict(self, Z: np.ndarray) -> Prediction:
        est = self.estimator
        name = type(est).__name__
        if self.task == "clustering":
            centres = est.cluster_centers_
            d = (Z * Z).sum(1)[:, None] - 2 * Z @ centres.T + (centres * centres).sum(1)[None]
            best = d.argmin(1)
            return Prediction(label=best, value=np.maximum(d[np.arange(len(Z)), best], 0.0))
        if self.task == "regression":
            if name in _LINEAR:
                return Prediction(value=Z @ est.coef_.reshape(-1) + est.intercept_[0])
            return Prediction(value=np.asarray(self._call("predict", Z), dtype=np.float64))
        classes = est.classes_
        if name in _LINEAR:
            if len(classes) == 2:
                d = Z @ est.coef_[0] + est.intercept_[0]
                label = classes[(d > 0).view(np.int8)]
                proba = None
                if getattr(est, "loss", None) == "log_loss":
                    proba = np.empty((len(d), 2))
                    proba[:, 1] = _expit(d)
                    np.subtract(1.0, proba[:, 1], out=proba[:, 0])
                return Prediction(label=label, proba=proba)
            d = Z @ est.coef_.T + est.intercept_
            proba = None
            if getattr(est, "loss", None) == "log_loss":
                proba = _expit(d)
                proba /= proba.sum(1, keepdims=True)
            return Prediction(label=classes[d.argmax(1)], proba=proba)
        if name == "GaussianNB":
            jll = np.empty((len(Z), len(classes)))
            with np.errstate(divide="ignore"):  # a class not seen yet: log(0)
                prior = np.log(est.class_prior_)
            for i in range(len(classes)):
                var = est.var_[i]
                jll[:, i] = (prior[i] - 0.5 * np.log(2 * np.pi * var).sum()
                             - 0.5 * (((Z - est.theta_[i]) ** 2) / var).sum(1))
            return Prediction(label=classes[jll.argmax(1)], proba=_softmax(jll))
        if hasattr(est, "predict_proba"):
            proba = np.asarray(self._call("predict_proba", Z), dtype=np.float64)
            return Prediction(label=classes[proba.argmax(1)], proba=proba)
        return Prediction(label=np.asarray(self._call("predict", Z)))

    def _call(self, method: str, Z: np.ndarray) -> Any:
        import sklearn

        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return getattr(self.estimator, method)(Z)

    def export(self) -> Pipeline:
        """A fitted scikit-learn Pipeline (preprocessing, then a copy of the estimator) that
        reads the raw fields by name: what a checkpoint registers."""
        from sklearn.pipeline import Pipeline

        if self.bayes is not None and self.fitted:
            self._scaled(np.empty((0, self.prep.width)))  # the estimator in today's scale
        return Pipeline([("preprocess", self.prep.export()),
                         ("model", copy.deepcopy(self.estimator))])

    def convertible(self) -> bool:
        return self.prep.convertible()


# -- SGD without partial_fit's checks ---------------------------------------------------------

class _Epoch:
    """One epoch of SGD over a batch by the compiled loop that ``partial_fit`` ends in,
    called with the arguments ``partial_fit`` passes it. ``partial_fit`` first checks its
    input and its parameters and prepares the call: about 0.9 ms on a batch of twenty
    events, where the loop takes 20 µs. The learner's input (a dense float64 matrix,
    labels among the classes) has nothing for those checks to find, and what the call
    needs from the estimator's parameters is prepared once. This is private scikit-learn
    code: a learner uses it only after it gave the very weights ``partial_fit`` gives on
    one of its batches (:meth:`SklearnLearner._partial_fit`)."""

    def __init__(self, est: Any) -> None:
        from sklearn.linear_model import _stochastic_gradient as sgd
        from sklearn.utils._seq_dataset import ArrayDataset64

        self.loop, self.dataset = sgd._plain_sgd64, ArrayDataset64
        self.loss = est._get_loss_function(est.loss)
        self.regressor = isinstance(est, RegressorMixin)
        self.zero_one = isinstance(self.loss, sgd.CyHalfBinomialLoss)  # else labels are ±1
        negative, positive = (1.0, 1.0) if self.regressor else est._expanded_class_weight
        self.penalty = (est._get_penalty_type(est.penalty), est.alpha, est._get_l1_ratio())
        self.schedule = (False, None, int(est.n_iter_no_change), 1,
                         -np.inf if est.tol is None else est.tol, int(est.fit_intercept), 0, 0,
                         1, float(positive), float(negative),
                         est._get_learning_rate_type(est.learning_rate), est.eta0,
                         est.power_t, 0)

    @staticmethod
    def fits(est: Any) -> bool:
        """Whether ``est`` is scikit-learn's ``SGDClassifier`` with two classes or its
        ``SGDRegressor``, neither averaging, shuffling nor stopping early (the stream
        defaults)."""
        cls = type(est)
        if not cls.__module__.startswith("sklearn.") or \
                cls.__name__ not in ("SGDClassifier", "SGDRegressor"):
            return False
        if est.average or est.shuffle or est.early_stopping:
            return False
        return cls.__name__ == "SGDRegressor" or len(est.classes_) == 2

    def __call__(self, est: Any, Z: np.ndarray, y: np.ndarray | None) -> None:
        n = len(Z)
        if self.regressor:
            target = np.asarray(y, dtype=np.float64)
        else:
            hit = np.asarray(y) == est.classes_[1]
            target = hit.astype(np.float64) if self.zero_one else np.where(hit, 1.0, -1.0)
        weights, intercept, _, _, epochs = self.loop(
            est.coef_.ravel(), float(est.intercept_[0]), None, 0.0, self.loss, *self.penalty,
            self.dataset(np.ascontiguousarray(Z), target, np.ones(n), 1),
            np.zeros(n, dtype=np.uint8), *self.schedule, est.t_, 1.0, 0)
        est.coef_ = np.asarray(weights).reshape(est.coef_.shape)
        est.intercept_ = np.atleast_1d(intercept)
        est.t_ += epochs * n
        est.n_iter_ = epochs


def _same_weights(a: Any, b: Any) -> bool:
    return (np.array_equal(a.coef_, b.coef_) and np.array_equal(a.intercept_, b.intercept_)
            and a.t_ == b.t_)


def _joined(made: list[Prediction | None], sizes: list[int]) -> Prediction | None:
    """The predictions of a batch's steps as one (the events of steps before the first fit
    marked unscored)."""
    if len(made) == 1:
        return made[0]
    first = next((p for p in made if p is not None), None)
    if first is None:
        return None

    def column(name: str) -> np.ndarray | None:
        like = getattr(first, name)
        if like is None:
            return None
        return np.concatenate([getattr(p, name) if p is not None else
                               np.zeros((k, *like.shape[1:]), dtype=like.dtype)
                               for p, k in zip(made, sizes, strict=True)])

    scored = None
    if any(p is None or p.scored is not None for p in made):
        scored = np.concatenate([np.zeros(k, dtype=bool) if p is None else
                                 np.ones(k, dtype=bool) if p.scored is None else p.scored
                                 for p, k in zip(made, sizes, strict=True)])
    return Prediction(label=column("label"), proba=column("proba"), value=column("value"),
                      scored=scored)


def _softmax(jll: np.ndarray) -> np.ndarray:
    top = jll.max(1, keepdims=True)
    e = np.exp(jll - top)
    return e / e.sum(1, keepdims=True)


# -- River -----------------------------------------------------------------------------------

class RiverLearner:
    """A River estimator or pipeline, predicting and learning one event at a time."""

    #: set by the learning loop (State.tag)
    tag: int

    def __init__(self, model: Any, task: str, classes: list | None, schema: Schema) -> None:
        self.model = model
        self.task = task
        self.schema = schema
        self.classes: list = list(classes) if classes else []
        self.known = set(self.classes)
        self.fitted = False

    def fresh(self) -> RiverLearner:
        return RiverLearner(self.model.clone(), self.task, self.classes, self.schema)

    def accepts(self, y: np.ndarray) -> np.ndarray:
        return np.ones(len(y), dtype=bool)

    def _labels(self, y: np.ndarray | None) -> list:
        assert y is not None  # River learners classify or regress: events have labels
        values = y.tolist()
        if self.task == "classification":
            for v in values:
                if v not in self.known:
                    self.known.add(v)
                    self.classes.append(v)
        return values

    def _one(self, x: dict[str, Any]) -> tuple[dict[Any, float] | None, Any]:
        if self.task == "classification":
            p = self.model.predict_proba_one(x)
            return p, (max(p, key=p.get) if p else None)
        return None, self.model.predict_one(x)

    def _prediction(self, probas: list, outs: list) -> Prediction:
        n = len(outs)
        if self.task == "classification":
            scored = np.fromiter((o is not None for o in outs), dtype=bool, count=n)
            index = {c: i for i, c in enumerate(self.classes)}
            proba = np.zeros((n, len(self.classes)))
            for r, p in enumerate(probas):
                for c, v in (p or {}).items():
                    if c in index:
                        proba[r, index[c]] = v
            label = np.empty(n, dtype=object)
            label[:] = outs
            return Prediction(label=label, proba=proba, scored=scored)
        value = np.array([np.nan if o is None else o for o in outs], dtype=np.float64)
        return Prediction(value=value, scored=~np.isnan(value))

    def predict(self, features: Features) -> Prediction | None:
        if not self.fitted or not len(features):
            return None
        probas, outs = zip(*(self._one(x) for x in self.schema.rows(features)), strict=True)
        return self._prediction(list(probas), list(outs))

    def test_then_train(self, features: Features, y: np.ndarray | None) -> Prediction | None:
        rows = self.schema.rows(features)
        labels = self._labels(y)
        probas, outs = [], []
        learn, one = self.model.learn_one, self._one
        for x, target in zip(rows, labels, strict=True):
            p, out = one(x)
            probas.append(p)
            outs.append(out)
            learn(x, target)
        fitted, self.fitted = self.fitted, self.fitted or bool(rows)
        return self._prediction(probas, outs) if fitted or rows else None

    def learn(self, features: Features, y: np.ndarray | None) -> None:
        learn = self.model.learn_one
        for x, target in zip(self.schema.rows(features), self._labels(y), strict=True):
            learn(x, target)
        self.fitted = self.fitted or bool(len(features))

    def export(self) -> _RiverEstimator:
        cls = RiverClassifier if self.task == "classification" else RiverRegressor
        return cls(copy.deepcopy(self.model), list(self.schema.order), list(self.classes))

    def convertible(self) -> bool:
        return False


class _RiverEstimator(BaseEstimator):
    """A learnt River model with scikit-learn's ``predict`` over a DataFrame, so that it
    registers and serves like any other model (stored with joblib only)."""

    def __init__(self, model: Any = None, features: Sequence[str] = (),
                 classes: Sequence[Any] = ()) -> None:
        self.model = model
        self.features = features
        self.classes = classes

    @property
    def feature_names_in_(self) -> np.ndarray:
        return np.asarray(self.features, dtype=object)

    def fit(self, X: Any, y: Any = None) -> NoReturn:
        raise TypeError("a learnt River model is updated by modelport learn, not refitted")

    def _rows(self, X: Any) -> list[dict[str, Any]]:
        import pandas as pd

        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=self.features)
        records = frame[list(self.features)].to_dict("records")
        return [{k: v for k, v in r.items() if v is not None and v == v} for r in records]


class RiverClassifier(ClassifierMixin, _RiverEstimator):
    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.classes)

    def predict_proba(self, X: Any) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        rows = self._rows(X)
        out = np.zeros((len(rows), len(self.classes)))
        for r, x in enumerate(rows):
            for c, v in self.model.predict_proba_one(x).items():
                if c in index:
                    out[r, index[c]] = v
        return out

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]


class RiverRegressor(RegressorMixin, _RiverEstimator):
    def predict(self, X: Any) -> np.ndarray:
        return np.array([self.model.predict_one(x) for x in self._rows(X)], dtype=np.float64)
