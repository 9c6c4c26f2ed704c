"""Heartbeats: which processes serve which model, and which version they serve now.

Every process that follows a model URI (``serve``, ``stream``, ``trigger run``, ``learn``)
calls :func:`beat` every few seconds (the scoring core's
:class:`~modelport.scoring.following.Heartbeat` throttles it). One row per process and URI
(``host``, ``pid``, ``surface``, ``uri``) in ``mp_heartbeats`` holds the version served,
when the process started and was last seen, and its figures (``stats``: rows per second,
rejects and warnings by reason). :func:`list` reads them back for the console, which flags
a process serving an older version than its alias names, or one not seen for a while.

A process that stops cleanly removes its rows with :func:`forget`; one that is killed
leaves its row behind, shown as not seen since its last beat.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, update

from modelport.registry import schema as S

if TYPE_CHECKING:
    from modelport.registry import Registry

#: a process not seen for this many seconds is shown as stale
STALE_SECONDS = 60.0


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite gives UTC back naive
        value = value.replace(tzinfo=UTC)
    return value


def beat(registry: Registry, *, surface: str, uri: str, model: str, version: int | None,
         started_at: datetime, stats: Mapping[str, Any] | None = None,
         host: str | None = None, pid: int | None = None) -> None:
    """Record that this process (``host``/``pid``, default: this one) serves ``uri`` with
    ``version`` now, with its figures ``stats``; creates the row on the first beat."""
    host = host or socket.gethostname()
    pid = os.getpid() if pid is None else pid
    t = S.heartbeats
    key = (t.c.host == host, t.c.pid == pid, t.c.surface == surface, t.c.uri == uri)
    values = {"model": model, "version": version, "seen_at": _now(),
              "stats": dict(stats or {})}
    with S.write_txn(registry.engine) as conn:
        done = conn.execute(update(t).where(*key).values(**values)).rowcount
        if not done:
            conn.execute(insert(t).values(host=host, pid=pid, surface=surface, uri=uri,
                                          started_at=started_at, **values))


def forget(registry: Registry, *, host: str | None = None, pid: int | None = None) -> int:
    """Remove the rows of one process (default: this one), when it stops cleanly."""
    t = S.heartbeats
    host = host or socket.gethostname()
    pid = os.getpid() if pid is None else pid
    with S.write_txn(registry.engine) as conn:
        return conn.execute(delete(t).where(t.c.host == host, t.c.pid == pid)).rowcount


def list(registry: Registry, model: str | None = None) -> Any:
    """Every heartbeat row (of ``model``, or all), most recently seen first, each a dict
    with ``host``, ``pid``, ``surface``, ``uri``, ``model``, ``version``, ``started_at``,
    ``seen_at`` (ISO times), ``seen_seconds_ago`` and ``stats``."""
    t = S.heartbeats
    q = select(t).order_by(t.c.seen_at.desc(), t.c.id)
    if model is not None:
        q = q.where(t.c.model == model)
    with registry.engine.connect() as conn:
        rows = conn.execute(q).mappings().all()
    now = _now()
    out = []
    for r in rows:
        seen, started = _aware(r["seen_at"]), _aware(r["started_at"])
        out.append({
            "host": r["host"], "pid": r["pid"], "surface": r["surface"], "uri": r["uri"],
            "model": r["model"], "version": r["version"],
            "started_at": started.isoformat() if started else None,
            "seen_at": seen.isoformat() if seen else None,
            "seen_seconds_ago": round((now - seen).total_seconds(), 1) if seen else None,
            "stats": r["stats"] or {},
        })
    return out
