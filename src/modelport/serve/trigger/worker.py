"""The worker: drain the queues that enqueue triggers fill, score in batches, write back.

One batch, per installed table, is one transaction: claim up to ``batch`` queue entries
(``FOR UPDATE SKIP LOCKED`` where the database has it, so several workers share a queue),
read those rows, score them through the scoring core, write score, model version,
``scored_at`` and status, and delete the claimed entries. A worker killed at any point
leaves either all of that or none of it, so every row is scored exactly once.

The worker only routes what the scoring core gives: a row the checks refuse (text in a
numeric column, an unseen category under ``--strict``...), that the model raises on or
gives no number for, gets a NULL score and ``error: <reason>`` in the status column; a
flagged row (a number outside the training range, an unseen category) is scored, gets
``ok`` and is counted. One bad row costs that row only. A failure not tied to rows (the
connection lost, a lock timeout, a deadlock) rolls the batch back; the worker pauses,
reconnects when it must, and claims afresh, so nothing is lost or scored twice. The queue
is drained at start (a NOTIFY sent while no worker listened is lost), and a
:class:`~modelport.scoring.following.Follower` loads the version the model URI names now
in the background, swapped in between batches.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import UserError
from modelport.scoring import choice
from modelport.scoring.checks import FLAG, InputPolicy, Reject, check, warning_text
from modelport.scoring.following import Follower
from modelport.scoring.isolation import Outcome, is_transient, isolate, reason, score
from modelport.serve.trigger.db import ClaimConflict, Database, connect
from modelport.serve.trigger.settings import WorkerSettings
from modelport.serve.trigger.spec import Installation
from modelport.uri import ModelURI

if TYPE_CHECKING:
    from modelport.monitor.log import PredictionLogger
    from modelport.registry import Registry, Version
    from modelport.scoring.metrics import TriggerMetrics

log = logging.getLogger("modelport.trigger")
#: the first pause after a failure not tied to rows; each further one doubles, up to
_FIRST_PAUSE, _LONGEST_PAUSE = 0.005, 5.0
#: how long ``once`` keeps retrying a database that stays away before it gives up
_ONCE_PATIENCE = 60.0
#: a status column holds at most this much of a reason
_STATUS_CHARS = 1000


@dataclass
class WorkerStats:
    """What a worker did: rows scored (``flagged`` of them with a warning), rows given an
    error status, batches, versions loaded while running, batches retried."""

    scored: int = 0
    errors: int = 0
    flagged: int = 0
    batches: int = 0
    reloads: int = 0
    retries: int = 0
    versions: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"scored": self.scored, "errors": self.errors, "flagged": self.flagged,
                "batches": self.batches, "reloads": self.reloads, "retries": self.retries,
                "versions": self.versions}


@dataclass
class Served:
    """One version ready to score: its predictor, the artefact chosen and why."""

    version: int
    predictor: Any
    format: str
    why: str


def run(db: str, *, tables: list[str] | None = None, batch: int = 2000,
        poll_ms: float = 20.0, reload_seconds: float = 2.0, once: bool = False,
        max_seconds: float | None = None, registry: Registry | None = None,
        log_url: str | None = None, log_sample: float = 1.0, policy: InputPolicy | None = None,
        metrics: TriggerMetrics | None = None, metrics_port: int | None = None,
        stop: threading.Event | None = None) -> WorkerStats:
    """Score queued rows of every worker-mode installation in ``db`` until stopped.

    :func:`run_settings` with the :class:`~modelport.serve.trigger.settings.WorkerSettings`
    of these arguments, which say what each one means; ``registry``, ``metrics`` and
    ``stop`` are handed to :func:`run_settings` as they are.
    """
    settings = WorkerSettings(
        db, tables=tables, batch=batch, poll_ms=poll_ms, reload_seconds=reload_seconds,
        once=once, max_seconds=max_seconds, log_url=log_url, log_sample=log_sample,
        policy=policy, metrics_port=metrics_port)
    return run_settings(settings, registry=registry, metrics=metrics, stop=stop)


def run_settings(settings: WorkerSettings, *, registry: Registry | None = None,
                 metrics: TriggerMetrics | None = None,
                 stop: threading.Event | None = None) -> WorkerStats:
    """Score queued rows of the worker-mode installations ``settings`` name until stopped;
    return what the worker did.

    ``once`` drains the queues and returns, ``max_seconds`` stops after that long, and
    ``stop`` (an Event) between batches once it is set. ``metrics`` (a
    :class:`~modelport.scoring.metrics.TriggerMetrics`) counts under the shared names; when
    none is given and ``metrics_port`` is, one is built and served on
    ``127.0.0.1:metrics_port``. ``registry`` defaults to the configured one. Raises
    :class:`~modelport.errors.UserError` when the database has no worker-mode installation
    to score.
    """
    from modelport.registry import Registry

    registry = registry or Registry()
    if settings.metrics_port is not None and metrics is None:
        metrics = serve_metrics(settings.metrics_port)
    plog = None
    if settings.log_url:
        from modelport.monitor.log import PredictionLogger

        plog = PredictionLogger(
            settings.log_url, sample=settings.log_sample, source="trigger",
            on_drop=metrics.log_dropped.inc if metrics is not None else None,
            on_refuse=metrics.log_refused.inc if metrics is not None else None)
    tables = settings.tables
    try:
        with connect(settings.db) as conn:
            installs = [i for i in conn.installations()
                        if i.mode == "worker" and (tables is None or i.table in tables)]
            if not installs:
                raise UserError("no table in this database is set up for worker scoring: run "
                                "modelport trigger install ... --mode worker first")
            worker = _Worker(conn, installs, registry, batch=settings.batch,
                             policy=settings.policy or FLAG,
                             reload_seconds=settings.reload_seconds, metrics=metrics,
                             plog=plog, stop=stop)
            deadline = (None if settings.max_seconds is None
                        else time.monotonic() + settings.max_seconds)
            return worker.loop(settings.poll_ms / 1000.0, settings.once, deadline)
    finally:
        if plog is not None:
            plog.close()


def serve_metrics(port: int) -> TriggerMetrics:
    """A :class:`~modelport.scoring.metrics.TriggerMetrics` answering ``/metrics`` on
    ``127.0.0.1:port``."""
    from modelport.errors import require

    require("prometheus_client", "http", "--metrics-port")
    from modelport.scoring.metrics import TriggerMetrics

    metrics = TriggerMetrics()
    try:
        metrics.serve(port)
    except OSError as exc:
        raise UserError(f"--metrics-port {port}: cannot listen on 127.0.0.1:{port} "
                        f"({exc.strerror or exc}); choose a free port") from None
    return metrics


class _WriteRefused(Exception):
    """Writing a batch's scores failed on the table itself (a constraint, a trigger): the
    batch is claimed again and written row by row, to find the rows at fault."""


@dataclass
class _Batch:
    """One claimed batch scored: per row (in claim order) the key, the score or None, the
    status, and what the scoring core said."""

    keys: list
    values: list
    statuses: list[str]
    data: dict[str, list]
    outcome: Outcome
    seconds: float


class _Worker:
    """The claim-score-write loop over one connection."""

    def __init__(self, conn: Database, installs: list[Installation], registry: Registry, *,
                 batch: int, policy: InputPolicy, reload_seconds: float,
                 metrics: TriggerMetrics | None, plog: PredictionLogger | None,
                 stop: threading.Event | None) -> None:
        self.conn = conn
        self.installs = installs
        self.batch = batch
        self.policy = policy
        self.metrics = metrics
        self.plog = plog
        self.stop = stop
        self.stats = WorkerStats()
        self.broken = False  # the connection was lost and could not be opened again yet
        self.channels = [i.channel for i in installs]
        hook = metrics.follower_hook("champion") if metrics is not None else None
        self.followers: dict[str, Follower[Served]] = {}
        for inst in installs:
            if inst.model not in self.followers:
                self.followers[inst.model] = Follower(
                    inst.model, registry, functools.partial(_load, registry),
                    poll_seconds=reload_seconds, on_reload=self._reloaded(hook))
        if metrics is not None:
            for f in self.followers.values():
                metrics.set_serving(f.name, "champion", f.version)

    def _reloaded(self, hook: Callable[[Follower, str], None] | None
                  ) -> Callable[[Follower, str], None]:
        def told(follower: Follower, outcome: str) -> None:
            if outcome == "loaded":
                self.stats.reloads += 1
            if hook is not None:
                hook(follower, outcome)
        return told

    # -- the loop --------------------------------------------------------------------------

    def loop(self, wait_seconds: float, once: bool, deadline: float | None) -> WorkerStats:
        self._retrying(lambda careful: self.conn.listen(self.channels), once, deadline)
        while True:
            busy = False
            for inst in self.installs:
                follower = self.followers[inst.model]
                follower.tick()  # a new version loads in the background
                served = follower.current  # and is taken up here, between batches
                # keep going while there is work; one empty claim means wait
                claimed = self._retrying(
                    functools.partial(self._one_batch, inst, served), once, deadline)
                busy = bool(claimed) or busy
            if (once and not busy) or self._stopping(deadline):
                return self.stats
            if not busy:
                self._retrying(lambda careful: self.conn.wait(self.channels, wait_seconds),
                               once, deadline)

    def _stopping(self, deadline: float | None) -> bool:
        return (self.stop is not None and self.stop.is_set()) or (
            deadline is not None and time.monotonic() >= deadline)

    def _retrying(self, step: Callable[[bool], Any], once: bool, deadline: float | None) -> Any:
        """``step(careful)``, again after each failure not tied to rows (a lost connection,
        a lock timeout, a deadlock, a claim another worker won) once the transaction is
        rolled back and a growing pause has passed; again with ``careful`` when writing
        scores failed on the table itself. Gives up (raises) when told to stop, and in
        ``once`` mode after a minute of failures."""
        failing_since: float | None
        pause, failing_since, careful = _FIRST_PAUSE, None, False
        while True:
            try:
                if self.broken:
                    self.conn.reopen()  # raises while the database is still away
                    self.broken = False
                    self.conn.listen(self.channels)
                    log.warning("reconnected to the database")
                return step(careful)
            except _WriteRefused as exc:
                assert exc.__cause__ is not None  # raised from the write's failure
                log.warning("the table refused a batch of scores (%s); writing it row by row",
                            reason(exc.__cause__))
                careful = True
                self._recover()
                continue
            except Exception as exc:
                if not (is_transient(exc) or isinstance(exc, ClaimConflict)):
                    self._recover()
                    raise
                failure = exc
            now = time.monotonic()
            failing_since = failing_since or now
            if self._stopping(deadline) or (once and now - failing_since > _ONCE_PATIENCE):
                raise failure
            self.stats.retries += 1
            if pause >= 0.5:  # lock conflicts between workers clear in milliseconds
                log.warning("the database failed (%s); retrying in %.1f s", reason(failure),
                            pause)
            time.sleep(pause * random.uniform(0.5, 1.0))
            pause = min(pause * 2, _LONGEST_PAUSE)
            self._recover()

    def _recover(self) -> None:
        """Roll back; when the connection was lost, reconnect now or before the next
        attempt."""
        if self.broken:
            return
        try:
            if self.conn.recover():
                log.warning("reconnected to the database")
                self.conn.listen(self.channels)
        except Exception as exc:  # noqa: BLE001 - the next attempt reconnects first
            log.debug("the database is still away: %s", exc)
            self.broken = True

    # -- one batch -------------------------------------------------------------------------

    def _one_batch(self, inst: Installation, served: Served, careful: bool) -> int:
        """Claim, score and write one batch in one transaction; how many entries it took."""
        conn = self.conn
        if not conn.has_work(inst):
            return 0
        conn.begin_scoring()
        claimed, rows = conn.claim(inst, self.batch)
        if not claimed:
            conn.commit()
            return 0
        done = None
        if rows:
            done = self._score(inst, served, rows)
            if careful:
                self._write_row_by_row(inst, served, done)
            else:
                try:
                    conn.write_scores(inst, done.keys, done.values, done.statuses,
                                      served.version)
                except Exception as exc:
                    if is_transient(exc) or isinstance(exc, ClaimConflict):
                        raise
                    raise _WriteRefused() from exc
        conn.commit()
        self._count(inst, served, done)
        return claimed

    def _score(self, inst: Installation, served: Served, rows: list[tuple]) -> _Batch:
        """Rows ``(key, feature...)`` through the scoring core: one check call, one model
        call on a clean batch."""
        predictor = served.predictor
        data = {name: [r[i + 1] for r in rows] for i, name in enumerate(inst.columns)}
        start = time.perf_counter()
        # the columns read are the model's own; other columns of the table are not read
        checked = check(data, predictor.signature, self.policy, unknown="ignore")
        outcome = score(predictor.run_checked, checked, predictor.empty_outputs)
        seconds = time.perf_counter() - start
        scores = column_values(outcome.outputs, inst.score_kind)
        keys = [r[0] for r in rows]
        if not outcome.rejects:
            return _Batch(keys, scores, ["ok"] * len(rows), data, outcome, seconds)
        values: list = [None] * len(rows)
        statuses = [""] * len(rows)
        for at, value in zip(outcome.positions.tolist(), scores, strict=True):
            values[at], statuses[at] = value, "ok"
        for at, why in outcome.rejects.items():
            statuses[at] = status_text(why.message)
        return _Batch(keys, values, statuses, data, outcome, seconds)

    def _write_row_by_row(self, inst: Installation, served: Served, done: _Batch) -> None:
        """Write the batch in parts, each under a savepoint, splitting the parts the table
        refuses down to rows; a refused row gets a NULL score and a status saying why, or,
        when the table refuses even that, keeps what it had."""
        conn = self.conn

        def write(rows: Iterable[int]) -> None:
            conn.savepoint()
            try:
                conn.write_scores(inst, [done.keys[i] for i in rows],
                                  [done.values[i] for i in rows],
                                  [done.statuses[i] for i in rows], served.version)
            except Exception:
                conn.rollback_savepoint()
                raise
            conn.release()

        _, refused = isolate(write, len(done.keys))
        for at, exc in refused.items():
            message = (f"the table refused this row's score ({reason(exc)}): check its "
                       "constraints and triggers on the score columns")
            done.values[at], done.statuses[at] = None, status_text(message)
            done.outcome.reject([at], Reject(None, "write_refused", message))
            try:
                write([at])
            except Exception as again:
                if is_transient(again):
                    raise
                log.error("the table %s refused even an error status for key %r (%s): the "
                          "row keeps its old score", inst.table, done.keys[at], reason(again))

    def _count(self, inst: Installation, served: Served, done: _Batch | None) -> None:
        """After the commit: the worker's figures, the metrics and the prediction log."""
        stats = self.stats
        stats.batches += 1
        stats.versions[inst.table] = served.version
        if self.metrics is not None:
            self.metrics.batches.labels(inst.table).inc()
        if done is None:
            return
        outcome = done.outcome
        stats.scored += outcome.scored
        stats.errors += len(outcome.rejects)
        stats.flagged += len(outcome.flags)
        name = ModelURI.parse(inst.model).name
        if self.metrics is not None:
            self.metrics.count(name, served.version, outcome, seconds=done.seconds)
        if self.plog is not None:
            _log_rows(self.plog, inst, name, served.version, done)


def _load(registry: Registry, version: Version) -> Served:
    predictor, chosen = choice.load(registry, version, "row")
    log.info("scoring with %s (%s: %s)", version.uri, chosen.format, chosen.why)
    return Served(version.version, predictor, chosen.format, chosen.why)


def _log_rows(plog: PredictionLogger, inst: Installation, name: str, version: int,
              done: _Batch) -> None:
    """Hand a committed batch to the prediction log: inputs by model input name as the
    table held them, the score under the name of what it holds, the reason of each row
    given an error status, the flags of each row scored with some."""
    keys, values, statuses, data = done.keys, done.values, done.statuses, done.data
    flags = done.outcome.flags
    warns = [warning_text(flags.get(i, [])) or None for i in range(len(keys))] \
        if flags else None
    keep = plog.choose(len(keys))
    if keep is not None:
        if not keep.size:
            return
        picked = keep.tolist()
        keys, values, statuses = ([x[i] for i in picked] for x in (keys, values, statuses))
        data = {k: [v[i] for i in picked] for k, v in data.items()}
        warns = None if warns is None else [warns[i] for i in picked]
    kind = inst.score_kind
    output = "score" if kind == "probability" else "value" if kind == "value" else \
        "cluster" if kind == "cluster" else "label"
    plog.log(name, version, data, {output: values}, ids=keys,
             errors=[None if s == "ok" else s for s in statuses], warnings=warns,
             sampled=True)


def column_values(outputs: dict[str, np.ndarray], kind: str) -> list:
    """What the score column holds for each scored row, as plain Python values: the
    positive-class probability, the value, the cluster or the label (see
    :data:`~modelport.serve.trigger.spec.SCORE_TYPES`)."""
    if kind == "probability":
        if "proba" not in outputs:
            raise UserError("the model now served gives no probabilities, but the score "
                            "column holds them: re-install with --upgrade")
        return outputs["proba"][:, 1].astype(np.float64).tolist()
    if kind == "value":
        return np.asarray(outputs["value"], dtype=np.float64).tolist()
    if kind == "cluster":
        return np.asarray(outputs["cluster"], dtype=np.int64).tolist()
    labels = outputs["label"]
    if kind == "label_int":
        return np.asarray(labels, dtype=np.int64).tolist()
    if kind == "label_float":
        return np.asarray(labels, dtype=np.float64).tolist()
    return [str(x) for x in labels]


def status_text(message: str) -> str:
    """``error: <message>``, as any database's text column can hold it: no NUL
    characters (PostgreSQL refuses them), no lone surrogates (UTF-8 cannot carry them),
    at most :data:`_STATUS_CHARS` characters."""
    text = ("error: " + message).replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:_STATUS_CHARS]
