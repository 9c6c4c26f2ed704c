"""Counting: one set of Prometheus metrics, with the same names on every surface.

Every surface that scores (``serve``, ``stream``, ``trigger run``, ``learn``) counts what
the scoring core gave it under the same names, labelled by ``surface``:

- ``modelport_scored_rows_total{surface,model,version}``: rows scored;
- ``modelport_rejected_rows_total{surface,model,reason}``: rows sent to the surface's
  reject channel, by the reason's code (``wrong_type``, ``missing_field``,
  ``model_error``, ``not_finite``, ``enrich``, ``lookup_store``...);
- ``modelport_warnings_total{surface,model,field,kind}``: rows scored with a flag
  (``out_of_range``, ``unseen_category``), by field;
- ``modelport_scoring_seconds{surface,model}``: time of one scoring call (a batch);
- ``modelport_serving_version{surface,model,role}``: the version served now;
- ``modelport_reloads_total{surface,model,outcome}``: new versions loaded or failed;
- ``modelport_prediction_log_dropped_total`` and ``modelport_prediction_log_refused_total``:
  prediction-log records dropped because the log lagged, or refused by its table.

Each surface adds its own (requests and batch sizes for HTTP, consumption and lag for
streams, learning progress for the learner), defined here too so that one module holds
every name. Each instance has its own collector registry: no global state, so tests can
build many.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from prometheus_client.metrics import MetricWrapperBase

    from modelport.kernel import Flag, Reject
    from modelport.scoring.following import Follower
    from modelport.scoring.isolation import Outcome

_M = TypeVar("_M", bound="MetricWrapperBase")

LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


#: the Metrics of this process, for the heartbeat a Follower writes to the registry
LIVE: weakref.WeakSet[Metrics] = weakref.WeakSet()


class Metrics:
    """The metrics every surface shares; ``surface`` labels them."""

    def __init__(self, surface: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.surface = surface
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.scored_rows = Counter("modelport_scored_rows", "Rows scored",
                                   ["surface", "model", "version"], registry=r)
        self.rejected_rows = Counter("modelport_rejected_rows",
                                     "Rows sent to the reject channel, by reason",
                                     ["surface", "model", "reason"], registry=r)
        self.warnings = Counter("modelport_warnings",
                                "Rows scored with a flag (out of range, unseen category)",
                                ["surface", "model", "field", "kind"], registry=r)
        self.scoring_seconds = Histogram("modelport_scoring_seconds",
                                         "Time of one scoring call", ["surface", "model"],
                                         buckets=LATENCY, registry=r)
        self.serving = Gauge("modelport_serving_version", "Version served, by role",
                             ["surface", "model", "role"], registry=r, multiprocess_mode="max")
        self.reloads = Counter("modelport_reloads", "New versions loaded, by outcome",
                               ["surface", "model", "outcome"], registry=r)
        self.log_dropped = Counter("modelport_prediction_log_dropped",
                                   "Prediction-log records dropped because the log lagged",
                                   registry=r)
        self.log_refused = Counter("modelport_prediction_log_refused",
                                   "Prediction-log records its table refused", registry=r)
        self._children: dict[tuple, Any] = {}
        LIVE.add(self)  # the registry heartbeat (scoring.following) reads the counts

    # -- what the scoring core gave ----------------------------------------------------------

    def count(self, model: str, version: int | str, outcome: Outcome | None = None, *,
              scored: int = 0, rejects: Iterable[Reject] = (), flags: Iterable[list[Flag]] = (),
              seconds: float | None = None) -> None:
        """Count one scoring call: an :class:`~modelport.scoring.isolation.Outcome`, or the
        rows scored, the :class:`Reject` s and the per-row :class:`Flag` lists given apart."""
        if outcome is not None:
            scored = outcome.scored
            rejects = outcome.rejects.values()
            flags = outcome.flags.values()
        if scored:
            self._child(self.scored_rows, model, str(version)).inc(scored)
        self.rejected(model, rejects)
        for row in flags:
            for f in row:
                self._child(self.warnings, model, f.field, f.kind).inc()
        if seconds is not None:
            self._child(self.scoring_seconds, model).observe(seconds)

    def rejected(self, model: str, rejects: Iterable[Reject]) -> None:
        """Count rejected rows by the code of their reason."""
        for why in rejects:
            code = getattr(why, "code", None) or str(why)
            self._child(self.rejected_rows, model, code).inc()

    def set_serving(self, model: str, role: str, version: int) -> None:
        self._child(self.serving, model, role).set(int(version))

    def reload(self, model: str, outcome: str) -> None:
        self._child(self.reloads, model, outcome).inc()

    def follower_hook(self, role: str = "champion") -> Callable[[Follower[Any], str], None]:
        """An ``on_reload`` for a :class:`~modelport.scoring.following.Follower`."""
        def hook(follower: Follower[Any], outcome: str) -> None:
            self.reload(follower.name, outcome)
            self.set_serving(follower.name, role, follower.version)
        return hook

    def _child(self, metric: _M, *labels: str) -> _M:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(self.surface, *labels)
        return child

    # -- exposition --------------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The text to answer ``/metrics`` with, and its content type. Under several worker
        processes, ``PROMETHEUS_MULTIPROC_DIR`` makes every worker write its samples to
        shared files, and this adds them up."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined)
            return generate_latest(combined), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def serve(self, port: int) -> None:
        """Answer ``/metrics`` on ``127.0.0.1:port`` from a thread of its own."""
        from prometheus_client import start_http_server

        start_http_server(port, addr="127.0.0.1", registry=self.registry)


class HttpMetrics(Metrics):
    """The web service's own: requests by protocol and status, their latency, rows, errors,
    and the micro-batches requests were scored in. Labels: model, version and role
    (``champion``, ``canary``, ``shadow``)."""

    def __init__(self) -> None:
        super().__init__("http")
        from prometheus_client import Counter, Histogram

        r = self.registry
        self.requests = Counter("modelport_requests", "Prediction requests answered",
                                ["model", "version", "role", "protocol", "status"], registry=r)
        self.latency = Histogram("modelport_request_seconds", "Prediction request latency",
                                 ["model", "version", "role"], buckets=LATENCY, registry=r)
        self.rows = Counter("modelport_rows", "Rows scored", ["model", "version", "role"],
                            registry=r)
        self.errors = Counter("modelport_errors", "Prediction requests that failed, by status",
                              ["model", "status"], registry=r)
        self.batch_size = Histogram("modelport_batch_requests",
                                    "Requests scored together in one predictor call",
                                    ["model", "version"], buckets=SIZES, registry=r)
        self.batch_rows = Histogram("modelport_batch_rows", "Rows in one predictor call",
                                    ["model", "version"], buckets=SIZES, registry=r)
        self.batch_seconds = Histogram("modelport_batch_seconds", "Predictor call time",
                                       ["model", "version"], buckets=LATENCY, registry=r)
        self._http: dict[tuple, tuple] = {}

    def observe(self, model: str, version: str, role: str, protocol: str, status: int,
                rows: int, seconds: float) -> None:
        """Count one answered prediction request."""
        key = (model, version, role, protocol, status)
        children = self._http.get(key)
        if children is None:
            children = (self.requests.labels(model, version, role, protocol, str(status)),
                        self.latency.labels(model, version, role),
                        self.rows.labels(model, version, role),
                        self.scored_rows.labels(self.surface, model, version))
            self._http[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if rows:
            children[2].inc(rows)
            children[3].inc(rows)

    def batch(self, labels: tuple[str, str], requests: int, rows: int, seconds: float) -> None:
        """Count one micro-batch: how many requests and rows it held, how long it took."""
        children = self._http.get(labels)
        if children is None:
            children = (self.batch_size.labels(*labels), self.batch_rows.labels(*labels),
                        self.batch_seconds.labels(*labels),
                        self.scoring_seconds.labels(self.surface, labels[0]))
            self._http[labels] = children
        children[0].observe(requests)
        children[1].observe(rows)
        children[2].observe(seconds)
        children[3].observe(seconds)


class StreamMetrics(Metrics):
    """A stream worker's own: messages read, published and dead-lettered, batch sizes, the
    time from receipt to acknowledgement, the backlog."""

    def __init__(self) -> None:
        super().__init__("stream")
        from prometheus_client import Counter, Gauge, Histogram

        r = self.registry
        self.consumed = Counter("modelport_stream_consumed", "Messages read", registry=r)
        self.scored = Counter("modelport_stream_scored", "Messages scored and published",
                              ["version"], registry=r)
        self.dead = Counter("modelport_stream_dead_lettered",
                            "Messages sent to the dead-letter destination", registry=r)
        self.lag = Gauge("modelport_stream_lag", "Messages waiting in the source", registry=r)
        self.batch = Histogram("modelport_stream_batch_messages", "Messages per batch",
                               buckets=SIZES, registry=r)
        self.latency = Histogram("modelport_stream_latency_seconds",
                                 "Time from receipt to acknowledgement", buckets=LATENCY,
                                 registry=r)
        self.stream_reloads = Counter("modelport_stream_reloads", "Hot reloads", registry=r)


class TriggerMetrics(Metrics):
    """A trigger worker's own: batches claimed from the queue tables."""

    def __init__(self) -> None:
        super().__init__("trigger")
        from prometheus_client import Counter

        self.batches = Counter("modelport_trigger_batches", "Queue batches scored and written",
                               ["table"], registry=self.registry)


class LearnMetrics(Metrics):
    """A learner's own: events read, learnt and rejected, the windowed metric, checkpoints,
    promotions, drifts, labels waiting and the stream position."""

    def __init__(self, model: str) -> None:
        super().__init__("learn")
        from prometheus_client import Counter, Gauge

        r = self.registry
        self.events = Counter("modelport_learn_events", "Events read", ["model"], registry=r)
        self.learned = Counter("modelport_learn_learned", "Events learnt", ["model"], registry=r)
        self.learn_rejected = Counter("modelport_learn_rejected",
                                      "Events that could not be learnt", ["model"], registry=r)
        self.prequential = Gauge("modelport_learn_prequential",
                                 "Prequential metric over the evaluation window",
                                 ["model", "metric"], registry=r)
        self.checkpoints = Counter("modelport_learn_checkpoints", "Checkpoints registered",
                                   ["model"], registry=r)
        self.version = Gauge("modelport_learn_checkpoint_version", "Latest checkpoint version",
                             ["model"], registry=r)
        self.promotions = Counter("modelport_learn_promotions", "Checkpoints promoted",
                                  ["model"], registry=r)
        self.drifts = Counter("modelport_learn_drifts", "Drifts detected", ["model", "action"],
                              registry=r)
        self.pending = Gauge("modelport_learn_pending_labels",
                             "Predicted events waiting for their label", ["model"], registry=r)
        self.seq = Gauge("modelport_learn_position_events",
                         "Events numbered so far, across restarts", ["model"], registry=r)
        self.model = model
        self._seen: dict[str, int] = {}

    def update(self, counts: dict[str, int], metrics: dict[str, float], pending: int,
               seq: int, reasons: dict[str, int] | None = None) -> None:
        """Bring the counters up to ``counts`` (totals of this run) and set the gauges;
        ``reasons`` are the run's rejected events by reason code."""
        for name, counter in (("events", self.events), ("learned", self.learned),
                              ("rejected", self.learn_rejected)):
            now = counts.get(name, 0)
            step = now - self._seen.get(name, 0)
            if step > 0:
                counter.labels(self.model).inc(step)
            self._seen[name] = now
        for code, now in (reasons or {}).items():
            step = now - self._seen.get(f"reason:{code}", 0)
            if step > 0:
                self._child(self.rejected_rows, self.model, code).inc(step)
            self._seen[f"reason:{code}"] = now
        for metric, value in metrics.items():
            self.prequential.labels(self.model, metric).set(value)
        self.pending.labels(self.model).set(pending)
        self.seq.labels(self.model).set(seq)

    def checkpoint(self, version: int, promoted: bool) -> None:
        self.checkpoints.labels(self.model).inc()
        self.version.labels(self.model).set(version)
        self.set_serving(self.model, "checkpoint", version)
        if promoted:
            self.promotions.labels(self.model).inc()

    def drift(self, action: str) -> None:
        self.drifts.labels(self.model, action).inc()
