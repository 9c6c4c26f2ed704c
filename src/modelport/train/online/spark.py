"""Online learning on Spark Structured Streaming, with MLlib's streaming semantics.

``modelport learn SPEC.yaml --engine spark`` reads the spec's source (a folder of JSON, CSV
or Parquet files, or ``kafka://``) as a Structured Streaming query and learns on the
driver, one update per file of a folder (in Spark's order of files: modification time,
then name) or per micro-batch of Kafka, as MLlib's streaming learners update per batch:

- regression (``learner.estimator: sklearn.linear_model.SGDRegressor``) is
  ``StreamingLinearRegressionWithSGD``: for each micro-batch, ``num_iterations`` steps of
  mini-batch gradient descent on the squared error from the current weights, step
  ``step_size / sqrt(i)`` at the i-th step of the batch, a ``mini_batch_fraction`` of the
  batch per step, ``reg_param`` as an L2 penalty, stopping early once a step moves the
  weights by less than ``convergence_tol`` times their norm (at least 1); no intercept;
- classification (``sklearn.linear_model.SGDClassifier``) is
  ``StreamingLogisticRegressionWithSGD``: the same steps on the logistic loss, labels 0
  and 1, ``reg_param`` the L2 penalty;
- clustering (``sklearn.cluster.MiniBatchKMeans``) is ``StreamingKMeans``: each centre
  moves to the weighted mean of its old position (its weight discounted by
  ``decay_factor``, or by ``half_life`` in ``time_unit`` batches or points) and the batch's
  points nearest to it; a dying cluster takes half of the largest one.

Updating per file keeps what is learnt independent of where Spark draws its micro-batch
boundaries, which may differ after a crash (with ``max_files_per_trigger: 1`` a file is a
micro-batch, exactly MLlib's semantics). Each update's events are first predicted, then
learnt (prequential evaluation). A step that samples (``mini_batch_fraction`` below 1)
draws with a generator seeded by ``seed``, the update's number and the step, so an update
made again gives the same weights; the draw is not MLlib's.

What has been learnt lives on the driver: after each micro-batch it is written, with the
batch id, to ``learner.json`` in Spark's checkpoint folder (``spark.checkpoint``) before
Spark commits the batch. A driver killed at any point restarts from Spark's offsets; a
batch that was learnt but not committed is skipped when Spark runs it again, so every
event is learnt once. Every ``checkpoint.every_events`` events (and at the end) the
weights become a registry version under ``@online-latest`` (a scikit-learn
``SGDRegressor``, ``LogisticRegression`` or ``KMeans`` holding them, so every format,
export and serving mode works), with the promotion gate of ``modelport learn``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import UserError, require

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd
    from numpy.typing import ArrayLike
    from pyspark.sql import DataFrame, SparkSession
    from sklearn.base import BaseEstimator

    from modelport.io.spark import Endpoint
    from modelport.registry import Registry, Version
    from modelport.train.online.loop import Result
    from modelport.train.online.spec import OnlineSpec

log = logging.getLogger("modelport.learn")

#: the learner's state file in Spark's checkpoint folder
STATE_FILE = "learner.json"
ALGORITHMS = {"regression": "linear", "classification": "logistic", "clustering": "kmeans"}
_ESTIMATORS = {"linear": "SGDRegressor", "logistic": "SGDClassifier", "kmeans": "MiniBatchKMeans"}
TIME_UNITS = ("batches", "points")


@dataclass
class Params:
    """MLlib's parameters, with MLlib's defaults."""

    step_size: float = 0.1
    num_iterations: int = 50
    mini_batch_fraction: float = 1.0
    reg_param: float = 0.0
    convergence_tol: float = 0.001
    initial_weights: list[float] | None = None
    k: int = 2
    decay_factor: float = 1.0
    half_life: float | None = None
    time_unit: str = "batches"
    centers: list[list[float]] | None = None
    seed: int = 42

    @property
    def discount(self) -> float:
        """The decay factor, from ``half_life`` when given (as MLlib's ``setHalfLife``)."""
        if self.half_life is not None:
            return float(np.exp(np.log(0.5) / self.half_life))
        return self.decay_factor


def sgd_update(weights: ArrayLike, X: ArrayLike, y: ArrayLike, *, logistic: bool, step_size: float, num_iterations: int,
               mini_batch_fraction: float = 1.0, reg_param: float = 0.0,
               convergence_tol: float = 0.001, seed: tuple = (42,)) -> np.ndarray:
    """The weights after one micro-batch ``X, y`` of MLlib's ``GradientDescent`` from
    ``weights``: the least-squares (or logistic) gradient averaged over the sampled rows,
    the L2 updater's step ``step_size / sqrt(i)``, early stop by ``convergence_tol``."""
    w = np.array(weights, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if not len(X):
        return w
    previous = None
    for i in range(1, num_iterations + 1):
        if mini_batch_fraction < 1.0:
            keep = np.random.default_rng([*seed, i]).random(len(X)) < mini_batch_fraction
            Xi, yi = X[keep], y[keep]
        else:
            Xi, yi = X, y
        m = len(Xi)
        if not m:
            continue
        dot = Xi @ w
        multiplier = 1.0 / (1.0 + np.exp(-dot)) - yi if logistic else dot - yi
        gradient = (Xi.T @ multiplier) / float(m)
        step = step_size / np.sqrt(i)
        w = w * (1.0 - step * reg_param) - step * gradient
        if previous is not None and np.linalg.norm(previous - w) \
                < convergence_tol * max(float(np.linalg.norm(w)), 1.0):
            break
        previous = w
    return w


def kmeans_update(centers: ArrayLike, counts: ArrayLike, X: ArrayLike, *, decay_factor: float,
                  time_unit: str = "batches") -> tuple[np.ndarray, np.ndarray]:
    """The centres and their weights after one micro-batch ``X`` of MLlib's
    ``StreamingKMeansModel.update``."""
    centers = np.array(centers, dtype=np.float64)
    counts = np.array(counts, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    if not len(X):
        return centers, counts
    closest = _nearest(centers, X)
    discount = decay_factor if time_unit == "batches" else decay_factor ** len(X)
    counts *= discount
    for j in np.unique(closest).tolist():
        mine = X[closest == j]
        n = len(mine)
        updated = counts[j] + n
        lam = n / max(updated, 1e-16)
        counts[j] = updated
        centers[j] = centers[j] * (1.0 - lam) + (lam / n) * mine.sum(axis=0)
    largest, smallest = int(np.argmax(counts)), int(np.argmin(counts))
    if counts[smallest] < 1e-8 * counts[largest]:
        log.info("cluster %d is dying: splitting cluster %d", smallest, largest)
        weight = (counts[largest] + counts[smallest]) / 2.0
        counts[largest] = counts[smallest] = weight
        x = centers[largest].copy()
        p = 1e-14 * np.maximum(np.abs(x), 1.0)
        centers[largest], centers[smallest] = x + p, x - p
    return centers, counts


def _nearest(centers: np.ndarray, X: np.ndarray) -> np.ndarray:
    d2 = ((X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
    return np.argmin(d2, axis=1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass
class State:
    """What the learner has learnt and how far it got; JSON in Spark's checkpoint folder
    and in the registry."""

    algorithm: str
    features: list[str]
    weights: list[float] = field(default_factory=list)
    centers: list[list[float]] = field(default_factory=list)
    counts: list[float] = field(default_factory=list)
    last_batch: int = -1
    seq: int = 0
    #: the updates made (a step of SGD or of k-means each)
    units: int = 0
    rejected: int = 0
    batches: int = 0
    run: str = ""
    fingerprint: str = ""
    parent: int | None = None
    checkpoint_seq: int = 0

    def dumps(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def loads(cls, data: bytes) -> State:
        return cls(**json.loads(data))


def params_of(spec: OnlineSpec) -> Params:
    """The spec's ``spark:`` section as MLlib parameters, each checked."""
    section = dict(spec.spark)
    p = Params()
    for key in ("step_size", "mini_batch_fraction", "reg_param", "convergence_tol",
                "decay_factor", "half_life"):
        if key in section:
            value = section[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise spec.fail(f"spark.{key}", f"expected a number of at least 0, got {value!r}")
            setattr(p, key, float(value))
    for key, least in (("num_iterations", 1), ("k", 1), ("seed", 0)):
        if key in section:
            value = section[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise spec.fail(f"spark.{key}", f"expected a whole number of at least {least}, "
                                f"got {value!r}")
            setattr(p, key, int(value))
    if not 0 < p.mini_batch_fraction <= 1:
        raise spec.fail("spark.mini_batch_fraction", "expected a fraction in (0, 1]")
    if p.half_life is not None and p.half_life <= 0:
        raise spec.fail("spark.half_life", "expected a positive number of batches or points")
    if "decay_factor" in section and "half_life" in section:
        raise spec.fail("spark.half_life", "give decay_factor or half_life, not both")
    unit = section.get("time_unit", "batches")
    if unit not in TIME_UNITS:
        raise spec.fail("spark.time_unit", f"expected batches or points, got {unit!r}")
    p.time_unit = unit
    if "initial_weights" in section:
        p.initial_weights = _numbers(spec, section["initial_weights"], "spark.initial_weights")
    if "centers" in section:
        value = section["centers"]
        if not isinstance(value, list) or not value:
            raise spec.fail("spark.centers", "expected a list of centres, each a list of numbers")
        p.centers = [_numbers(spec, c, "spark.centers") for c in value]
        p.k = len(p.centers)
    return p


def _numbers(spec: OnlineSpec, value: Any, key: str) -> list[float]:
    if not isinstance(value, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise spec.fail(key, f"expected a list of numbers, got {value!r}")
    return [float(v) for v in value]


class _Learner:
    """What ``foreachBatch`` runs on the driver for each micro-batch: predict, learn, save."""

    def __init__(self, spec: OnlineSpec, registry: Registry, params: Params, state: State,
                 folder: Path, result: Result) -> None:
        from modelport.train.online.checkpoint import Checkpointer

        self.spec, self.registry, self.params, self.state = spec, registry, params, state
        self.folder, self.result = folder, result
        self.algorithm = state.algorithm
        self.checkpointer = Checkpointer(spec, registry)
        self.window: deque = deque()
        self.window_rows = 0
        self.checkpointed_at = time.monotonic()
        self.failure: BaseException | None = None

    def __call__(self, frame: DataFrame, batch_id: int) -> None:
        try:
            self.batch(frame, batch_id)
        except BaseException as exc:
            self.failure = exc
            raise

    def batch(self, frame: DataFrame, batch_id: int) -> None:
        st = self.state
        if batch_id <= st.last_batch:
            log.info("batch %d was learnt before the restart: skipped", batch_id)
            return
        units, n_bad = self.rows(frame)
        learned = 0
        for X, y in units:
            n = len(X)
            terms = self.predict_terms(X, y)
            self.learn(X, y)
            self.remember(np.arange(st.seq, st.seq + n), X, y, terms)
            st.seq += n
            st.units += 1
            learned += n
        st.rejected += n_bad
        st.batches += 1
        st.last_batch = batch_id
        _write_atomic(self.folder / STATE_FILE, st.dumps())  # before Spark commits the batch
        self.result.events += learned + n_bad
        self.result.learned += learned
        self.result.rejected += n_bad
        due = st.seq - st.checkpoint_seq >= self.spec.every_events or (
            self.spec.every_seconds is not None
            and time.monotonic() - self.checkpointed_at >= self.spec.every_seconds)
        if due and st.seq > st.checkpoint_seq:
            self.checkpoint()

    def rows(self, frame: DataFrame) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
        """The batch's features and labels as numbers, in update units: one per file of a
        folder (in Spark's order of files: modification time, then name), else the whole
        batch. Events with a missing or unreadable value (or, for logistic regression, a
        label other than 0 or 1) are counted out."""
        from pyspark.sql import functions as F

        from modelport.io.spark import CORRUPT, FILE, MTIME

        columns = [F.col(c).try_cast("double").alias(c) for c in self.state.features]
        if self.spec.target and self.algorithm != "kmeans":
            columns.append(F.col(self.spec.target).try_cast("double").alias("_y"))
        by_file = FILE in frame.columns
        if by_file:
            columns += [F.col(MTIME), F.col(FILE)]
        columns.append(F.col(CORRUPT).isNotNull().alias("_corrupt"))
        table = frame.select(*columns).toArrow()
        n = table.num_rows

        def numbers(name: str) -> np.ndarray:
            return table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)

        X = np.column_stack([numbers(c) for c in self.state.features]) if n else \
            np.empty((0, len(self.state.features)))
        y = numbers("_y") if "_y" in table.column_names else np.zeros(n)
        corrupt = table.column("_corrupt").to_numpy(zero_copy_only=False).astype(bool)
        ok = np.isfinite(X).all(axis=1) & np.isfinite(y) & ~corrupt
        if self.algorithm == "logistic":
            ok &= (y == 0) | (y == 1)
        n_bad = int((~ok).sum())
        if not by_file:
            return ([(X[ok], y[ok])] if ok.any() else []), n_bad
        mtimes = table.column(MTIME).to_numpy(zero_copy_only=False)
        files = np.asarray(table.column(FILE).to_pylist(), dtype=object)
        units = []
        # a stable sort keeps each file's rows in the order Spark read them
        keys = sorted({(int(m), str(f)) for m, f in zip(mtimes.tolist(), files.tolist(),
                                                         strict=True)})
        for m, f in keys:
            mine = ok & (mtimes == m) & (files == f)
            if mine.any():
                units.append((X[mine], y[mine]))
        return units, n_bad

    def predict_terms(self, X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        from modelport.train.online.evaluate import terms
        from modelport.train.online.learners import Prediction

        st, n = self.state, len(X)
        if self.algorithm == "kmeans":
            centers = np.asarray(st.centers)
            d2 = ((X[:, None, :] - centers[None]) ** 2).sum(axis=2)
            prediction = Prediction(label=d2.argmin(axis=1), value=d2.min(axis=1))
            return terms("clustering", y, prediction, None, n)
        score = X @ np.asarray(st.weights)
        if self.algorithm == "linear":
            return terms("regression", y, Prediction(value=score), None, n)
        p1 = _sigmoid(score)
        prediction = Prediction(label=(p1 > 0.5).astype(np.int64),
                                proba=np.column_stack([1.0 - p1, p1]))
        return terms("classification", y.astype(np.int64), prediction, [0, 1], n)

    def learn(self, X: np.ndarray, y: np.ndarray) -> None:
        st, p = self.state, self.params
        if self.algorithm == "kmeans":
            centers, counts = kmeans_update(st.centers, st.counts, X, decay_factor=p.discount,
                                            time_unit=p.time_unit)
            st.centers, st.counts = centers.tolist(), counts.tolist()
            return
        st.weights = sgd_update(
            st.weights, X, y, logistic=self.algorithm == "logistic", step_size=p.step_size,
            num_iterations=p.num_iterations, mini_batch_fraction=p.mini_batch_fraction,
            reg_param=p.reg_param, convergence_tol=p.convergence_tol,
            seed=(p.seed, st.units)).tolist()

    def remember(self, seq: np.ndarray, X: np.ndarray, y: np.ndarray,
                 terms: dict[str, np.ndarray]) -> None:
        self.window.append((seq, X, y, terms))
        self.window_rows += len(seq)
        while self.window_rows - len(self.window[0][0]) >= self.spec.window:
            self.window_rows -= len(self.window.popleft()[0])

    def metrics(self) -> dict[str, float]:
        from modelport.train.online.evaluate import summarise

        if not self.window:
            return {}
        names = {"accuracy": "correct", "log_loss": "log_loss", "mae": "abs_error",
                 "rmse": "sq_error", "inertia": "inertia"}
        joined = {k: np.concatenate([w[3][k] for w in self.window]) for k in self.window[0][3]}
        values = {names[m]: joined[names[m]] for m in self.spec.metrics if names[m] in joined}
        return summarise([m for m in self.spec.metrics if names[m] in values], values)

    def checkpoint(self) -> None:
        """Register what has been learnt as a version under the checkpoint alias, through
        the promotion gate."""
        import pandas as pd

        from modelport.train.online.checkpoint import Payload, formats_for

        st, spec = self.state, self.spec
        if not self.window:
            return
        seq = np.concatenate([w[0] for w in self.window])
        X = np.concatenate([w[1] for w in self.window])
        y = np.concatenate([w[2] for w in self.window])
        frame = pd.DataFrame(X, columns=st.features)
        cand = {k: np.concatenate([w[3][k] for w in self.window]) for k in self.window[0][3]}
        if self.algorithm == "logistic":
            y = y.astype(np.int64)
        model = estimator(st, frame)
        params = {"estimator": spec.estimator, "engine": "spark", **asdict(self.params)}
        payload = Payload(
            state=st.dumps(), model=model, sample=frame.tail(1000), metrics=self.metrics(),
            params=params, position={"batch": st.last_batch, "checkpoint": str(self.folder)},
            seq=st.seq, counts={"learned": st.seq, "rejected": st.rejected,
                                "batches": st.batches},
            window=(seq, frame, y, cand), classes=[0, 1] if self.algorithm == "logistic"
            else None, formats=formats_for(spec, True), run=st.run,
            fingerprint=st.fingerprint, parent=st.parent)
        written = self.checkpointer.write(payload)
        st.parent = written.version
        st.checkpoint_seq = st.seq
        self.checkpointed_at = time.monotonic()
        _write_atomic(self.folder / STATE_FILE, st.dumps())
        self.result.checkpoints.append(written.version)
        if written.promoted:
            self.result.promoted.append(written.version)


def estimator(state: State, frame: pd.DataFrame) -> BaseEstimator:
    """A scikit-learn estimator holding ``state``'s weights or centres, fitted in form
    (feature names and all) so that every format and export takes it."""
    import warnings

    if state.algorithm == "kmeans":
        import pandas as pd
        from sklearn.cluster import KMeans

        centers = np.asarray(state.centers)
        at = pd.DataFrame(centers, columns=state.features)
        model = KMeans(n_clusters=len(centers), init=centers, n_init=1, max_iter=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(at)
        model.cluster_centers_ = centers.copy()
        return model
    w = np.asarray(state.weights, dtype=np.float64)
    if state.algorithm == "linear":
        from sklearn.linear_model import SGDRegressor

        model = SGDRegressor(fit_intercept=False, max_iter=1, tol=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(frame.head(2), np.zeros(min(len(frame), 2)))
        model.coef_ = w.copy()
        model.intercept_ = np.zeros(1)
        return model
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(fit_intercept=False)
    model.classes_ = np.array([0, 1])
    model.coef_ = w.reshape(1, -1).copy()
    model.intercept_ = np.zeros(1)
    model.n_features_in_ = len(w)
    model.feature_names_in_ = np.asarray(state.features, dtype=object)
    model.n_iter_ = np.array([1], dtype=np.int32)
    return model


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _features(spark: SparkSession, spec: OnlineSpec, source: Endpoint) -> list[str]:
    """The spec's features, else every field of the files already there but the target and
    the id."""
    if spec.features:
        return list(spec.features)
    if source.kind == "folder":
        try:
            reader = spark.read
            inferred = (reader.parquet(source.location) if source.format == "parquet" else
                        reader.option("header", True).csv(source.location)
                        if source.format == "csv" else reader.json(source.location)).columns
        except Exception:  # noqa: BLE001 - no files yet
            inferred = []
        found = [c for c in inferred if c not in (spec.target, spec.id, "_corrupt_record")]
        if found:
            return found
    raise spec.fail("features", "name the fields to learn from (the source has no files yet "
                    "to take them from), e.g. features: [x1, x2]")


def learn_spark(spec: OnlineSpec, *, follow: bool = False, fresh: bool = False,
                registry: Registry | None = None, master: str | None = None) -> Result:
    """Learn from ``spec``'s source on Spark Structured Streaming until what it holds now is
    learnt (with ``follow``: until SIGTERM or Ctrl-C), resuming from the state in
    ``spark.checkpoint`` unless ``fresh``; return a
    :class:`~modelport.train.online.loop.Result`."""
    from modelport.io.spark import parse_source, read_stream, session, stop_on_signals
    from modelport.registry import Registry
    from modelport.train.online.checkpoint import latest
    from modelport.train.online.loop import Result

    require("pyspark", "spark", "--engine spark")
    started = time.perf_counter()
    registry = registry or Registry()
    algorithm = ALGORITHMS[spec.task]
    wanted = _ESTIMATORS[algorithm]
    if spec.estimator.rsplit(".", 1)[-1] != wanted:
        raise spec.fail("learner.estimator", f"--engine spark learns {spec.task} with MLlib's "
                        f"streaming {algorithm} algorithm; name it with "
                        f"{'sklearn.cluster' if algorithm == 'kmeans' else 'sklearn.linear_model'}"
                        f".{wanted} (its parameters go under spark:)")
    params = params_of(spec)
    src = spec.source
    if src.kind == "folder":
        url = src.url + (f"?max_files_per_trigger={int(spec.spark['max_files_per_trigger'])}"
                         if spec.spark.get("max_files_per_trigger") else "")
    elif src.kind == "broker" and src.url.lower().startswith("kafka://"):
        url = src.url
    else:
        raise spec.fail("source", "--engine spark reads a folder of JSON, CSV or Parquet files "
                        "(new files are learnt as they arrive) or kafka://HOST:9092?topic=NAME")
    source = parse_source(url)
    checkpoint = spec.spark.get("checkpoint")
    if not checkpoint:
        raise spec.fail("spark.checkpoint", "name the folder Spark keeps its offsets and the "
                        "learner its weights in, e.g. spark: {checkpoint: churn.checkpoint}")
    folder = Path(str(checkpoint)).expanduser()
    if not folder.is_absolute():
        folder = Path(src.url).parent / folder if src.kind == "folder" else folder.absolute()
    if fresh and folder.exists():
        import shutil

        shutil.rmtree(folder)
    spark = session(master or spec.spark.get("master"), app=f"modelport learn {spec.name}",
                    kafka=source.kind == "kafka")
    fingerprint = hashlib.sha256((spec.learning_fingerprint() + json.dumps(
        spec.spark, sort_keys=True, default=str)).encode()).hexdigest()[:16]
    state = _resume(folder, registry, spec, fingerprint, fresh, latest)
    if state is None:
        features = _features(spark, spec, source)
        state = State(algorithm, features, run=uuid.uuid4().hex[:12], fingerprint=fingerprint)
        d = len(features)
        if algorithm == "kmeans":
            if params.centers is not None:
                if any(len(c) != d for c in params.centers):
                    raise spec.fail("spark.centers", f"each centre needs {d} numbers, one per "
                                    "feature")
                state.centers = params.centers
            else:
                state.centers = np.random.default_rng(params.seed).standard_normal(
                    (params.k, d)).tolist()
            state.counts = [0.0] * len(state.centers)
        else:
            w = params.initial_weights or [0.0] * d
            if len(w) != d:
                raise spec.fail("spark.initial_weights", f"expected {d} numbers, one per "
                                f"feature ({', '.join(features)})")
            state.weights = w
        folder.mkdir(parents=True, exist_ok=True)
    result = Result(name=spec.name, resumed_from=state.parent)
    names = state.features + ([spec.target] if spec.target and algorithm != "kmeans" else [])
    frame = read_stream(spark, source, names, names, [], None, files=source.kind == "folder")
    learner = _Learner(spec, registry, params, state, folder, result)
    writer = frame.writeStream.foreachBatch(learner).option(
        "checkpointLocation", str(folder / "offsets"))
    if not follow:
        writer = writer.trigger(availableNow=True)
    started = time.perf_counter()  # events/s: from the start of the query to its end
    query = writer.start()
    stop = stop_on_signals(query)
    try:
        query.awaitTermination()
    except Exception:  # noqa: BLE001 - Spark's own exception classes, via Py4J
        if isinstance(learner.failure, UserError):
            raise learner.failure from None
        raise
    finally:
        stop()
    if state.seq > state.checkpoint_seq:
        learner.checkpoint()
    result.seconds = time.perf_counter() - started
    result.events_per_s = result.learned / result.seconds if result.seconds > 0 else 0.0
    result.prequential = learner.metrics()
    result.position = {"batch": state.last_batch}
    return result


def _resume(folder: Path, registry: Registry, spec: OnlineSpec, fingerprint: str, fresh: bool,
            latest: Callable[[Registry, str], tuple[Version, bytes] | None]) -> State | None:
    """The state to go on from: the one in the checkpoint folder, kept in step with Spark's
    offsets. A folder that is gone while the registry holds a checkpoint of this learner
    is an error: Spark would read the source again from its start."""
    path = folder / STATE_FILE
    if path.is_file():
        state = State.loads(path.read_bytes())
        if state.fingerprint != fingerprint:
            raise UserError(f"{spec.label}: the checkpoint in {folder} was made by another "
                            "spec (source, fields, learner or spark: parameters differ): run "
                            "with --fresh to learn from the start, or name another "
                            "spark.checkpoint")
        log.info("resuming after batch %d (%d events learnt)", state.last_batch, state.seq)
        return state
    if not fresh:
        found = latest(registry, spec.name)
        if found is not None and (found[0].lineage.get("online") or {}).get(
                "fingerprint") == fingerprint and not (folder / "offsets").exists():
            raise UserError(f"{spec.label}: the registry holds checkpoints of this learner "
                            f"but its Spark checkpoint folder {folder} is gone, so Spark would "
                            "read the source from its start: run with --fresh to learn "
                            "from the start")
    return None
