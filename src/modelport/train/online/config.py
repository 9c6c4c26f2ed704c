"""What a checked online learning spec holds: :class:`OnlineSpec` and its :class:`SourceSpec`.

:func:`modelport.train.online.spec.load_spec` reads and checks a spec into them; the
learners, drift detectors and schema read them without importing the checks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from modelport.errors import UserError


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
