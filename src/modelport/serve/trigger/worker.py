"""The worker: drain the queues that enqueue triggers fill, score in batches, write back.

One loop iteration, per installed table, is one transaction: claim up to ``batch`` queue
entries (``FOR UPDATE SKIP LOCKED`` where the database has it, so several workers share a
queue), read those rows, score them in one vectorised model call, write score, model
version and ``scored_at``, and delete the claimed entries. A worker killed at any point
leaves either all of that or none of it, so every row is scored exactly once. The queue is
drained at start (a NOTIFY sent while no worker listened is lost), rows the model cannot
score get an error status instead of blocking the queue, and the model URI is re-resolved
every few seconds so the worker follows an alias.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.errors import UserError
from modelport.serve.trigger.db import Database, connect
from modelport.serve.trigger.spec import SCORE_TYPES, Installation

log = logging.getLogger("modelport.trigger")
#: a batch that keeps losing lock conflicts is retried this often before the worker stops
_ATTEMPTS = 50


@dataclass
class WorkerStats:
    """What a worker did: rows scored, rows given an error status, batches, reloads."""

    scored: int = 0
    errors: int = 0
    batches: int = 0
    reloads: int = 0
    versions: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"scored": self.scored, "errors": self.errors, "batches": self.batches,
                "reloads": self.reloads, "versions": self.versions}


class _Model:
    """The predictor for one installation, re-loaded when its URI resolves elsewhere."""

    def __init__(self, registry, uri: str) -> None:
        self.registry = registry
        self.uri = uri
        self.version: int | None = None
        self.predictor = None
        self.checked = 0.0

    def refresh(self, poll_seconds: float) -> bool:
        """Load the version the URI names now; True when it changed."""
        now = time.monotonic()
        if self.predictor is not None and (poll_seconds <= 0 or now - self.checked < poll_seconds):
            return False
        self.checked = now
        try:
            version = self.registry.get(self.uri)
        except Exception as exc:  # noqa: BLE001 - keep scoring with the loaded model
            if self.predictor is None:
                raise
            log.warning("cannot resolve %s (%s); still scoring with version %s",
                        self.uri, exc, self.version)
            return False
        if version.version == self.version:
            return False
        from modelport.serve.trigger.install import _fastest

        predictor = self.registry.load(version, format=_fastest(version))
        changed = self.version is not None
        self.predictor, self.version = predictor, version.version
        log.info("scoring with %s (%s)", version.uri, predictor.format)
        return changed


def run(db: str, *, tables: list[str] | None = None, batch: int = 2000,
        poll_ms: float = 20.0, reload_seconds: float = 2.0, once: bool = False,
        max_seconds: float | None = None, registry=None, log_url: str | None = None,
        log_sample: float = 1.0) -> WorkerStats:
    """Score queued rows of every worker-mode installation in ``db`` until stopped.

    ``tables`` limits the worker to some installations. PostgreSQL wakes the worker by
    NOTIFY; MariaDB and SQLite are polled every ``poll_ms`` milliseconds while idle.
    ``once`` drains the queues and returns; ``max_seconds`` stops after that long.
    ``log_url`` (a SQLAlchemy URL with ``#table``) keeps a ``log_sample`` share of the
    scored rows, keyed by the table's key, in a prediction log for ``modelport monitor``.
    """
    from modelport.registry import Registry

    registry = registry or Registry()
    plog = None
    if log_url:
        from modelport.monitor.log import PredictionLogger

        plog = PredictionLogger(log_url, sample=log_sample, source="trigger")
    try:
        return _run(db, tables, batch, poll_ms, reload_seconds, once, max_seconds, registry,
                    plog)
    finally:
        if plog is not None:
            plog.close()


def _run(db, tables, batch, poll_ms, reload_seconds, once, max_seconds, registry,
         plog) -> WorkerStats:
    stats = WorkerStats()
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    with connect(db) as conn:
        installs = [i for i in conn.installations()
                    if i.mode == "worker" and (tables is None or i.table in tables)]
        if not installs:
            raise UserError("no table in this database is set up for worker scoring: run "
                            "modelport trigger install ... --mode worker first")
        models = {i.table: _Model(registry, i.model) for i in installs}
        conn.listen([i.channel for i in installs])
        while True:
            busy = False
            for inst in installs:
                model = models[inst.table]
                if model.refresh(reload_seconds):
                    stats.reloads += 1
                # keep going while there is work; one empty claim means wait
                busy = _drain_once(conn, inst, model, batch, stats, plog) > 0 or busy
            if once and not busy:
                return stats
            if deadline is not None and time.monotonic() >= deadline:
                return stats
            if not busy:
                conn.wait([i.channel for i in installs], poll_ms / 1000.0)


def _drain_once(conn: Database, inst: Installation, model: _Model, batch: int,
                stats: WorkerStats, plog=None) -> int:
    """Claim, score and write one batch in one transaction; return how many were claimed."""
    if not conn.has_work(inst):
        return 0
    for attempt in range(_ATTEMPTS):
        try:
            conn.begin_scoring()
            claimed, rows = conn.claim(inst, batch)
            if not claimed:
                conn.commit()
                return 0
            if rows:
                keys_out, scores, statuses = score_rows(model.predictor, inst, rows)
                conn.write_scores(inst, keys_out, scores, statuses, model.version)
                bad = sum(s != "ok" for s in statuses)
                stats.errors += bad
                stats.scored += len(rows) - bad
            conn.commit()
            stats.batches += 1
            stats.versions[inst.table] = model.version
            if plog is not None and rows:
                _log_rows(plog, inst, model, rows, keys_out, scores, statuses)
            return claimed
        except Exception as exc:
            conn.rollback()
            if not conn.retryable(exc) or attempt == _ATTEMPTS - 1:
                raise
            # lock conflicts between workers: back off a little, then claim afresh
            time.sleep(0.005 * (attempt + 1))
    return 0


def _log_rows(plog, inst: Installation, model: _Model, rows, keys, scores, statuses) -> None:
    """Hand a committed batch to the prediction log: inputs by model input name, the score
    under the name of what it holds, an error for rows given an error status."""
    keep = plog.choose(len(rows))
    if keep is not None:
        if not keep.size:
            return
        rows = [rows[i] for i in keep]
        keys, scores, statuses = ([x[i] for i in keep] for x in (keys, scores, statuses))
    names = list(inst.columns)
    inputs = {n: [r[i + 1] for r in rows] for i, n in enumerate(names)}
    kind = inst.score_kind
    output = "score" if kind == "probability" else "value" if kind == "value" else \
        "cluster" if kind == "cluster" else "label"
    from modelport.uri import ModelURI

    plog.log(ModelURI.parse(inst.model).name, model.version, inputs,
             {output: scores}, ids=keys, errors=[None if s == "ok" else s for s in statuses],
             sampled=True)


def score_rows(predictor, inst: Installation, rows: list[tuple]) -> tuple[list, list, list]:
    """Score fetched rows ``(key, feature...)``: (keys, scores, statuses).

    The batch goes through the model in one call; if that call fails, each row is scored
    alone so one bad row costs only itself. A row whose score is not a number (a missing
    value the model cannot impute) gets the score NULL and a status naming the columns.
    """
    keys = [r[0] for r in rows]
    names = list(inst.columns)
    data = {n: [r[i + 1] for r in rows] for i, n in enumerate(names)}
    try:
        values = _scores(predictor, inst, data)
        reasons: list[str | None] = [None] * len(rows)
    except Exception:  # noqa: BLE001 - isolate the rows that broke the batch
        values, reasons = [], []
        for i in range(len(rows)):
            one = {n: [data[n][i]] for n in names}
            try:
                values.append(_scores(predictor, inst, one)[0])
                reasons.append(None)
            except Exception as exc:  # noqa: BLE001 - a bad row gets an error status
                values.append(None)
                reasons.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    scores, statuses = [], []
    numeric = SCORE_TYPES[inst.score_kind] != "text"
    for i, v in enumerate(values):
        failed = reasons[i] is not None or (numeric and (v is None or not math.isfinite(v)))
        gaps = [n for n in names if _missing(data[n][i])] if failed else []
        if gaps:
            reasons[i] = (f"missing value in {', '.join(gaps)}, which the model cannot impute"
                          + (f" ({reasons[i]})" if reasons[i] else ""))
        elif failed and reasons[i] is None:
            reasons[i] = "the model gave no number"
        if reasons[i] is None:
            scores.append(v)
            statuses.append("ok")
        else:
            scores.append(None)
            statuses.append(f"error: {reasons[i]}"[:1000])
    return keys, scores, statuses


def _scores(predictor, inst: Installation, data: dict) -> list:
    out = predictor.run(data)
    kind = inst.score_kind
    if kind == "probability":
        return out["proba"][:, 1].astype(np.float64).tolist()
    if kind == "value":
        return np.asarray(out["value"], dtype=np.float64).tolist()
    if kind == "cluster":
        return np.asarray(out["cluster"], dtype=np.int64).tolist()
    labels = out["label"]
    if kind == "label_int":
        return np.asarray(labels, dtype=np.int64).tolist()
    if kind == "label_float":
        return np.asarray(labels, dtype=np.float64).tolist()
    return [str(x) for x in labels]


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))
