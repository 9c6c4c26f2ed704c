"""Prometheus metrics of a learner, served on ``127.0.0.1:PORT`` (``--metrics-port``).

``modelport_learn_events`` (read), ``modelport_learn_learned``, ``modelport_learn_rejected``,
``modelport_learn_prequential{metric}`` (the windowed metric, also stored with every
checkpoint), ``modelport_learn_checkpoints`` and ``modelport_learn_checkpoint_version``,
``modelport_learn_promotions``, ``modelport_learn_drifts{action}``,
``modelport_learn_pending_labels`` and ``modelport_learn_position_events`` (events numbered
so far, across restarts). Each learner has its own collector registry.
"""

from __future__ import annotations


class Prometheus:
    def __init__(self, port: int, model: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

        r = self.registry = CollectorRegistry()
        self.events = Counter("modelport_learn_events", "Events read", ["model"], registry=r)
        self.learned = Counter("modelport_learn_learned", "Events learnt", ["model"], registry=r)
        self.rejected = Counter("modelport_learn_rejected", "Events that could not be learnt",
                                ["model"], registry=r)
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
        start_http_server(port, addr="127.0.0.1", registry=r)

    def update(self, counts: dict[str, int], metrics: dict[str, float], pending: int,
               seq: int) -> None:
        """Bring the counters up to ``counts`` (totals of this run) and set the gauges."""
        for name, counter in (("events", self.events), ("learned", self.learned),
                              ("rejected", self.rejected)):
            now = counts.get(name, 0)
            step = now - self._seen.get(name, 0)
            if step > 0:
                counter.labels(self.model).inc(step)
            self._seen[name] = now
        for metric, value in metrics.items():
            self.prequential.labels(self.model, metric).set(value)
        self.pending.labels(self.model).set(pending)
        self.seq.labels(self.model).set(seq)

    def checkpoint(self, version: int, promoted: bool) -> None:
        self.checkpoints.labels(self.model).inc()
        self.version.labels(self.model).set(version)
        if promoted:
            self.promotions.labels(self.model).inc()

    def drift(self, action: str) -> None:
        self.drifts.labels(self.model, action).inc()
