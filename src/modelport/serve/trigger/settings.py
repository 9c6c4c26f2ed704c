"""Everything ``modelport trigger run`` is told, in one object.

The command builds one :class:`WorkerSettings` from its options and hands it whole to
:func:`modelport.serve.trigger.worker.run_settings`; :func:`~modelport.serve.trigger.run`,
the Python API, builds the same object from its keywords. The settings hold plain values
only, so they pickle; what is live (the registry, a
:class:`~modelport.scoring.metrics.TriggerMetrics`, a stop event) is handed to
``run_settings`` beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modelport.scoring.checks import InputPolicy


@dataclass(frozen=True)
class WorkerSettings:
    """The database whose queues a worker drains, and how.

    ``db`` is the database URL (``postgresql://...``, ``mysql://...``, ``sqlite:///...``);
    its worker-mode installations are scored, or only those on ``tables`` (a list of
    names is kept as a tuple). A batch claims, scores and writes at most ``batch`` rows in
    one transaction. PostgreSQL wakes the worker by NOTIFY; MariaDB and SQLite are polled
    every ``poll_ms`` milliseconds while idle. ``reload_seconds`` is how often each model
    URI is resolved again, a new version being swapped in between batches. ``once`` drains
    the queues and returns; ``max_seconds`` stops after that long. ``policy`` says what a
    number outside the training range or an unseen category does to its row (None: scored
    and flagged). ``log_url`` (a SQLAlchemy URL with ``#table``) keeps a ``log_sample``
    share of the scored rows, keyed by the table's key, in a prediction log for
    ``modelport monitor``; ``metrics_port`` serves Prometheus metrics on
    ``127.0.0.1:metrics_port``.
    """

    db: str
    tables: Sequence[str] | None = None
    batch: int = 2000
    poll_ms: float = 20.0
    reload_seconds: float = 2.0
    once: bool = False
    max_seconds: float | None = None
    log_url: str | None = None
    log_sample: float = 1.0
    policy: InputPolicy | None = None
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        if self.tables is not None:
            # one name, not its characters; a tuple, so the settings cannot change
            names = (self.tables,) if isinstance(self.tables, str) else tuple(self.tables)
            object.__setattr__(self, "tables", names)
