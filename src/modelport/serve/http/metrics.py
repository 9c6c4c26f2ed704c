"""Prometheus metrics of one server: requests, latency, batch sizes, errors, reloads.

Each app has its own collector registry (no global state, so tests can build many apps).
Under several worker processes, ``PROMETHEUS_MULTIPROC_DIR`` (which ``modelport serve``
sets) makes every worker write its samples to shared files and ``/metrics`` add them up.
Labels are the model name, the version and the role (``champion``, ``canary``, ``shadow``).
"""

from __future__ import annotations

import os

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """The counters and histograms the server updates, and their text exposition."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("modelport_requests", "Prediction requests answered",
                                ["model", "version", "role", "protocol", "status"], registry=r)
        self.latency = Histogram("modelport_request_seconds", "Prediction request latency",
                                 ["model", "version", "role"], buckets=_LATENCY, registry=r)
        self.rows = Counter("modelport_rows", "Rows scored", ["model", "version", "role"],
                            registry=r)
        self.errors = Counter("modelport_errors", "Prediction requests that failed, by status",
                              ["model", "status"], registry=r)
        self.batch_size = Histogram("modelport_batch_requests",
                                    "Requests scored together in one predictor call",
                                    ["model", "version"], buckets=_SIZES, registry=r)
        self.batch_rows = Histogram("modelport_batch_rows", "Rows in one predictor call",
                                    ["model", "version"], buckets=_SIZES, registry=r)
        self.batch_seconds = Histogram("modelport_batch_seconds", "Predictor call time",
                                       ["model", "version"], buckets=_LATENCY, registry=r)
        self.reloads = Counter("modelport_reloads", "Hot reloads, by outcome",
                               ["model", "outcome"], registry=r)
        self.serving = Gauge("modelport_serving_version", "Version served, by role",
                             ["model", "role"], registry=r, multiprocess_mode="max")
        self.log_dropped = Counter("modelport_prediction_log_dropped",
                                   "Prediction-log records dropped because the hook lagged",
                                   registry=r)
        self._children: dict[tuple, tuple] = {}

    def observe(self, model: str, version: str, role: str, protocol: str, status: int,
                rows: int, seconds: float) -> None:
        """Count one answered prediction request."""
        key = (model, version, role, protocol, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(model, version, role, protocol, str(status)),
                        self.latency.labels(model, version, role),
                        self.rows.labels(model, version, role))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if rows:
            children[2].inc(rows)

    def batch(self, labels: tuple[str, str], requests: int, rows: int, seconds: float) -> None:
        children = self._children.get(labels)
        if children is None:
            children = (self.batch_size.labels(*labels), self.batch_rows.labels(*labels),
                        self.batch_seconds.labels(*labels))
            self._children[labels] = children
        children[0].observe(requests)
        children[1].observe(rows)
        children[2].observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The text to answer ``/metrics`` with, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined)
            return generate_latest(combined), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
