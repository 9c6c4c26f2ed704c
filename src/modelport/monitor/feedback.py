"""Ground truth that arrives later: labels joined to logged predictions by id.

``modelport feedback churn --input labels.csv --id customer_id --label churned --log URL``
reads the id and label columns from a file, a SQL table (``URL#table``) or a message
stream (a broker URL; each event a JSON object with those fields) and upserts them into
``<table>_feedback`` beside the prediction log, one row per model and id: a label sent
again replaces the old one. ``modelport monitor`` joins every logged prediction whose
``id`` matches (the id column of ``predict --id``, the key of a database trigger, the
``id`` field of a stream event, or the ``x-request-id`` a web client sent).

A stream is read as consumer group ``modelport-feedback`` and each batch acknowledged
after it is stored; the command stops once the stream has been quiet for
``idle_seconds``, or runs until interrupted with ``follow``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from modelport.errors import UserError
from modelport.monitor.log import _label, _redact, open_log

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy import Engine, Table
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.sql.dml import UpdateBase

    from modelport.monitor.log import LogTables

log = logging.getLogger("modelport.monitor")
STREAM_SCHEMES = ("redis", "rediss", "nats", "amqp", "amqps", "mqtt", "kafka")


@dataclass
class FeedbackResult:
    """What a feedback run stored."""

    rows: int
    skipped: int
    source: str
    seconds: float

    def summary(self) -> str:
        skipped = f", {self.skipped:,} without id or label skipped" if self.skipped else ""
        return (f"stored {self.rows:,} label(s) from {self.source}{skipped} in "
                f"{self.seconds:.1f} s")


def record(log_url: str, model: str, ids: Sequence[Any], labels: Sequence[Any],
           at: datetime | None = None, *, engine: Engine | None = None,
           tables: LogTables | None = None) -> tuple[int, int]:
    """Upsert ``labels`` for ``ids`` of ``model``; return (ids stored, rows skipped for
    want of an id or a label). An id given twice keeps its last label."""
    own = engine is None
    if own:
        engine, tables = open_log(log_url)
    assert engine is not None and tables is not None  # opened above, or given together
    now = at or datetime.now(UTC)
    rows = []
    skipped = 0
    for i, y in zip(ids, labels, strict=True):
        key = None if i is None or (isinstance(i, float) and i != i) else _label(i)
        text = _label(y)
        if key is None or text is None:
            skipped += 1
            continue
        rows.append({"model": model, "id": key, "label": text, "value": _number(y), "at": now})
    latest = {r["id"]: r for r in rows}  # one upsert per key and statement: the last wins
    try:
        if latest:
            with engine.begin() as conn:
                conn.execute(_upsert(engine, tables.feedback), list(latest.values()))
    finally:
        if own:
            engine.dispose()
    return len(latest), skipped


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if x == x else None


def _upsert(engine: Engine, table: Table) -> UpdateBase:
    name = engine.dialect.name
    stmt: sqlite.Insert | postgresql.Insert
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)
    elif name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        stmt = postgresql_insert(table)
    elif name in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert

        mysql_stmt = insert(table)
        return mysql_stmt.on_duplicate_key_update(label=mysql_stmt.inserted.label,
                                                  value=mysql_stmt.inserted.value,
                                                  at=mysql_stmt.inserted.at)
    else:
        raise UserError(f"feedback cannot be stored in {name}: use SQLite or PostgreSQL")
    return stmt.on_conflict_do_update(
        index_elements=["model", "id"],
        set_={"label": stmt.excluded.label, "value": stmt.excluded.value,
              "at": stmt.excluded.at})


def ingest(model: str, source: str, *, log_url: str, id: str, label: str,
           follow: bool = False, idle_seconds: float = 5.0, batch: int = 500,
           group: str = "modelport-feedback") -> FeedbackResult:
    """Read labels from ``source`` (file, SQL ``URL#table``, or broker URL) and store them."""
    started = time.perf_counter()
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    if scheme in STREAM_SCHEMES:
        import asyncio

        stored, skipped = asyncio.run(_from_stream(model, source, log_url, id, label, follow,
                                                   idle_seconds, batch, group))
    else:
        from modelport.io.tables import read_table

        frame = read_table(source, columns=[id, label])
        stored, skipped = record(log_url, model, frame[id].tolist(), frame[label].tolist())
    return FeedbackResult(stored, skipped, _redact(source), time.perf_counter() - started)


async def _from_stream(model: str, source: str, log_url: str, id: str, label: str,
                       follow: bool, idle_seconds: float, batch: int,
                       group: str) -> tuple[int, int]:
    import asyncio
    import signal

    from modelport.io import brokers
    from modelport.io.events import decode

    engine, tables = open_log(log_url)
    stream = brokers.open_source(source, group=group, batch=batch)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    stored = skipped = 0
    await stream.connect()
    quiet_since = time.monotonic()
    try:
        while not stop.is_set():
            msgs = await stream.read(batch, 0.2)
            if not msgs:
                if not follow and time.monotonic() - quiet_since >= idle_seconds:
                    break
                continue
            quiet_since = time.monotonic()
            ids, labels = [], []
            for msg in msgs:
                try:
                    event = decode(msg.payload, "json")
                except Exception:  # noqa: BLE001 - a bad event is skipped, not fatal
                    event = None
                if not isinstance(event, dict):
                    skipped += 1
                    continue
                ids.append(event.get(id))
                labels.append(event.get(label))
            n, bad = record(log_url, model, ids, labels, engine=engine, tables=tables)
            stored += n
            skipped += bad
            await stream.ack(msgs)  # only after the labels are stored
    finally:
        await stream.close()
        engine.dispose()
    return stored, skipped


def read_feedback(log_url: str, model: str) -> pd.DataFrame:
    """The stored labels of ``model`` as a DataFrame: ``id``, ``label``, ``value``, ``at``."""
    import pandas as pd
    from sqlalchemy import inspect, select

    engine, tables = open_log(log_url, create=False)
    t = tables.feedback
    try:
        if t.name not in inspect(engine).get_table_names():
            return pd.DataFrame({"id": [], "label": [], "value": [], "at": []})
        with engine.connect() as conn:
            rows = conn.execute(select(t.c.id, t.c.label, t.c.value, t.c.at)
                                .where(t.c.model == model)).all()
    finally:
        engine.dispose()
    return pd.DataFrame.from_records(rows, columns=["id", "label", "value", "at"])
