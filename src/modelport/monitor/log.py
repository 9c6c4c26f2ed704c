"""The prediction log: a sampled record of what a model was asked and what it answered.

``--log URL`` on ``modelport serve``, ``stream``, ``trigger run`` and ``predict`` writes one
row per scored row to a SQL table named by a SQLAlchemy URL and ``#table``
(``sqlite:///logs.db#predictions``, ``postgresql://127.0.0.1/test#predictions``; without
``#table`` the table is ``predictions``). A row holds the time (UTC), model, version, role
(``champion``, ``canary``, ``shadow``, ``batch``...), the source (``http``, ``stream``,
``trigger``, ``batch``), the entity ``id`` feedback is joined on, the request or message
id, the inputs as JSON, the predicted ``label`` and ``score`` (probability of the second
class of two, the value of a regression, the probability of the predicted class
otherwise), ``outputs`` as JSON when those two columns cannot hold them (the probabilities
of more than two classes), the latency, an ``error`` for requests that failed, and the
sampling rate the row was kept at. The table and its index are created on first use.

The serving path only appends a record to an in-memory buffer (no lock, no wake-up); a
background thread takes what was buffered every ``flush_seconds`` and writes it in one
transaction, resting as long as it takes to use at most ``cpu_budget`` of a core. When the
buffer holds ``capacity`` rows, new ones are dropped and counted
(:attr:`PredictionLogger.dropped`, the ``modelport_prediction_log_dropped`` metric and the
``<table>_drops`` table), so a slow or unreachable database or more traffic than the budget
allows costs predictions in the log, never latency or errors in the service. ``sample``
keeps that share of requests (HTTP) or rows (batch, streams, triggers), chosen at random.
"""

from __future__ import annotations

import collections
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import UserError

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy import Engine, Table
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.pool import ConnectionPoolEntry

log = logging.getLogger("modelport.monitor")

DEFAULT_TABLE = "predictions"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,50}$")
#: rows written in one transaction at most
WRITE_BATCH = 5000
#: the share of one core the log thread of a serving process may use, on average
CPU_BUDGET = 0.05


# -- naming and opening ------------------------------------------------------------------

def parse_url(url: str) -> tuple[str, str]:
    """``sqlite:///logs.db#predictions`` -> (database URL, table name)."""
    if not url or "://" not in url:
        raise UserError(f"--log {url!r} is not a database URL: use a SQLAlchemy URL with the "
                        "table after '#', e.g. sqlite:///logs.db#predictions or "
                        "postgresql://127.0.0.1/test#predictions")
    db, _, table = url.partition("#")
    table = table or DEFAULT_TABLE
    if not _NAME.match(table):
        raise UserError(f"--log {_redact(url)}: {table!r} is not a table name modelport "
                        "creates; use letters, digits and '_' (at most 51)")
    scheme = db.split("://", 1)[0].split("+")[0].lower()
    if scheme not in ("sqlite", "postgresql", "postgres", "mysql", "mariadb"):
        raise UserError(f"--log {_redact(url)}: {scheme}:// is not a database for the "
                        "prediction log; use sqlite:/// or postgresql://")
    return db, table


def _redact(text: str) -> str:
    from modelport.io.tables import redact

    return redact(text)


class LogTables:
    """The SQLAlchemy tables of one log: predictions, feedback and drop counts."""

    def __init__(self, name: str) -> None:
        from sqlalchemy import (
            BigInteger,
            Column,
            DateTime,
            Float,
            Index,
            Integer,
            MetaData,
            String,
            Table,
            Text,
        )

        self.metadata = MetaData()
        key = BigInteger().with_variant(Integer, "sqlite")
        self.predictions = Table(
            name, self.metadata,
            Column("seq", key, primary_key=True, autoincrement=True),
            Column("at", DateTime(timezone=True), nullable=False),
            Column("model", String(128), nullable=False),
            Column("version", Integer),
            Column("role", String(16)),
            Column("source", String(16)),
            Column("id", String(255)),
            Column("request_id", String(255)),
            Column("inputs", Text),
            Column("outputs", Text),
            Column("label", String(255)),
            Column("score", Float(53)),
            Column("latency_ms", Float(53)),
            Column("error", Text),
            Column("sample_rate", Float(53)),
            # the row was scored with a value outside what training saw (field: kind; ...)
            Column("warnings", Text),
            # the one index monitoring reads by; every index costs each insert
            Index(f"ix_{name}_model_at", "model", "at"),
        )
        self.feedback = Table(
            f"{name}_feedback", self.metadata,
            Column("model", String(128), primary_key=True),
            Column("id", String(255), primary_key=True),
            Column("label", String(255)),
            Column("value", Float(53)),
            Column("at", DateTime(timezone=True), nullable=False),
        )
        self.drops = Table(
            f"{name}_drops", self.metadata,
            Column("seq", key, primary_key=True, autoincrement=True),
            Column("at", DateTime(timezone=True), nullable=False),
            Column("model", String(128), nullable=False),
            Column("dropped", Integer, nullable=False),
            Column("reason", String(64)),
        )


def open_log(url: str, *, create: bool = True) -> tuple[Engine, LogTables]:
    """(engine, :class:`LogTables`) for a log URL; the tables are created when ``create``.

    A URL that cannot be parsed, a missing driver or an unreachable database raise a
    :class:`UserError` naming the URL.
    """
    from sqlalchemy import event
    from sqlalchemy.exc import SQLAlchemyError

    from modelport.io.sinks import lookup_engine

    db, table = parse_url(url)
    engine = lookup_engine(db, create=create)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            # WAL lets `modelport monitor` read while servers write; several server
            # processes take turns for the write lock instead of failing
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    tables = LogTables(table)
    try:
        if create:
            _create(engine, tables)
        else:
            with engine.connect():
                pass
    except SQLAlchemyError as exc:
        engine.dispose()
        first = str(getattr(exc, "orig", exc)).strip().splitlines()
        raise UserError(f"cannot open the prediction log {_redact(url)}: "
                        f"{first[0] if first else type(exc).__name__}") from None
    return engine, tables


def _add_warnings(engine: Engine, table: str) -> None:
    """Give a log table made before rows carried warnings its ``warnings`` column."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    if any(c["name"] == "warnings" for c in inspect(engine).get_columns(table)):
        return
    quote = engine.dialect.identifier_preparer.quote
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"ALTER TABLE {quote(table)} ADD COLUMN warnings TEXT")
    except SQLAlchemyError:
        # another process added it first
        if not any(c["name"] == "warnings" for c in inspect(engine).get_columns(table)):
            raise


def check_options(url: str, sample: float = 1.0) -> None:
    """Fail early on a bad ``--log``/``--log-sample``: parse, connect, create the tables."""
    _check_sample(sample)
    engine, _ = open_log(url)
    engine.dispose()


def _check_sample(sample: float) -> None:
    if not 0.0 < float(sample) <= 1.0:
        raise UserError(f"--log-sample {sample}: give the share of predictions to log, "
                        "more than 0 and at most 1 (e.g. 0.1)")


def _create(engine: Engine, tables: LogTables) -> None:
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(3):
        try:
            tables.metadata.create_all(engine, checkfirst=True)
            _add_warnings(engine, tables.predictions.name)
            return
        except SQLAlchemyError:
            # several server workers creating the tables at once: one wins, the others
            # find them on the next look
            present = set(inspect(engine).get_table_names())
            if present.issuperset(t.name for t in tables.metadata.sorted_tables):
                return
            if attempt == 2:
                raise
            time.sleep(0.2 * (attempt + 1))


# -- encoding ----------------------------------------------------------------------------

def _json_encoder() -> Callable[[Any], str]:
    try:
        import orjson
    except ImportError:
        import json

        def standard(obj: Any) -> str:
            return json.dumps(_finite(obj), default=_plain)

        return standard
    import json

    option = orjson.OPT_SERIALIZE_NUMPY

    def dumps(obj: Any) -> str:
        try:
            return orjson.dumps(obj, option=option, default=_plain).decode()
        except orjson.JSONEncodeError:
            # text orjson refuses (a lone surrogate, an integer beyond 64 bits): the
            # standard library escapes it instead of dropping the row
            return json.dumps(_finite(obj), default=_plain)

    return dumps


def _plain(value: object) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _finite(obj: Any) -> Any:
    """NaN and infinities as null (JSON has no NaN), for the encoder without orjson."""
    if isinstance(obj, float | np.floating):
        return None if not math.isfinite(obj) else float(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


#: the columns a row is written with, in this order
COLUMNS = ("at", "model", "version", "role", "source", "id", "request_id", "inputs",
           "outputs", "label", "score", "latency_ms", "error", "sample_rate", "warnings")


def _concat(parts: list[Any]) -> list[Any]:
    """Python values of several columns (NumPy arrays or sequences) laid end to end."""
    if len(parts) == 1:
        p = parts[0]
        return p.tolist() if isinstance(p, np.ndarray) else list(p)
    try:
        return np.concatenate(parts).tolist()
    except (ValueError, TypeError):
        out: list = []
        for p in parts:
            out.extend(p.tolist() if isinstance(p, np.ndarray) else p)
        return out


def _rows(record: dict[str, Any]) -> int:
    n = record.get("rows")
    if n is None:
        n = _length(record.get("inputs"), record.get("outputs"), record.get("ids"),
                    record.get("errors"))
    return int(n)


def encode(records: list[dict[str, Any]], dumps: Callable[[Any], str],
           timestamp: Callable[[list[Any]], list[Any]],
           on_error: Callable[[dict[str, Any]], Any] | None = None) -> list[tuple[Any, ...]]:
    """The table rows (tuples in :data:`COLUMNS` order) of buffered records; a record that
    cannot be encoded is handed to ``on_error`` (or raises without one)."""
    try:
        stamps = timestamp([r["at"] for r in records])
    except Exception:  # noqa: BLE001 - one bad time: stamp each record alone
        stamps = [None] * len(records)
    rows: list[tuple] = []
    for record, stamp in zip(records, stamps, strict=True):
        try:
            if stamp is None:
                stamp = timestamp([record["at"]])[0]
            rows.extend(_encode(record, stamp, dumps))
        except Exception:
            if on_error is None:
                raise
            on_error(record)
    return rows


def _encode_one(record: dict[str, Any], stamp: Any,
                dumps: Callable[[Any], str]) -> tuple[Any, ...]:
    """One row: the web service's common case, with no column lists to build (the hottest
    path of the log thread, hence written out)."""
    get = record.get
    inputs, outputs = get("inputs"), get("outputs")
    outs = {k: v[0] for k, v in outputs.items()} if outputs else {}
    score = None
    p = outs.get("proba")
    if p is not None:
        if len(p) == 2:
            score = float(p[1])
        elif len(p):
            score = float(max(p))
    else:
        v = outs.get("value", outs.get("score"))
        if v is not None:
            score = float(v)
    if score is not None and score - score != 0.0:  # NaN or infinite: no score
        score = None
    label = outs.get("label", outs.get("cluster"))
    many = get("request_ids")
    rid = many[0] if many is not None else get("request_id")
    if rid is not None:
        rid = _text(rid, 255)
    many = get("ids")
    key = many[0] if many is not None else rid
    many = get("errors")
    error = many[0] if many is not None else get("error")
    many = get("latencies")
    latency = many[0] if many is not None else get("latency_ms")
    many = get("warnings")
    warned = many[0] if many else None
    version = get("version")
    return (stamp, record["model"], None if version is None else int(version), get("role"),
            get("source"), _text(key, 255), rid,
            dumps({k: v[0] for k, v in inputs.items()}) if inputs else None,
            dumps(outs) if _beyond_columns(outs) else None,
            None if label is None else _label(label), score,
            None if latency is None else float(latency),
            _text(error, 2000), get("sample_rate"), _text(warned, 2000))


def _encode(record: dict[str, Any], stamp: Any,
            dumps: Callable[[Any], str]) -> list[tuple[Any, ...]]:
    n = _rows(record)
    if n == 1:
        return [_encode_one(record, stamp, dumps)]
    inputs = record.get("inputs") or {}
    outputs = record.get("outputs") or {}
    outs: dict[str, list] = {}
    scores: list | None = None
    names = list(inputs)
    columns = [_concat([inputs[k]]) for k in names]
    in_json = [dumps(dict(zip(names, values, strict=False))) for values in zip(*columns, strict=False)] \
        if names else [None] * n
    for k, v in outputs.items():
        if k == "proba":
            p = np.asarray(v, dtype=np.float64)
            if p.ndim == 2 and p.shape[1]:
                scores = _finite_list(p[:, 1] if p.shape[1] == 2 else p.max(axis=1))
            outs[k] = p.tolist()
        else:
            outs[k] = _concat([v])
    if scores is None:
        for k in ("value", "score"):
            if k in outs:
                scores = _finite_list(np.asarray(
                    [np.nan if v is None else v for v in outs[k]], dtype=np.float64))
                break
    keys = list(outs)
    out_json = [dumps(dict(zip(keys, values, strict=False))) for values in zip(*outs.values(), strict=False)] \
        if _beyond_columns(outs, first=False) else repeat(None, n)
    labels = outputs.get("label", outputs.get("cluster"))

    rid = record.get("request_id")
    rid = _text(rid, 255)
    rids = record.get("request_ids")
    rids = [rid] * n if rids is None else [_text(x, 255) for x in _concat([rids])]
    ids = record.get("ids")
    if ids is None:
        ids = [rid] if n == 1 else [None if rid is None else f"{rid}/{j}" for j in range(n)]
    else:
        ids = [_text(x, 255) for x in _concat([ids])]
    errors = record.get("errors")
    if errors is not None:
        errors = [_text(e, 2000) for e in _concat([errors])]
    else:
        e = record.get("error")
        errors = [_text(e, 2000)] * n
    warned = record.get("warnings")
    warned = repeat(None, n) if not warned else [_text(w, 2000) for w in _concat([warned])]
    v, lat = record.get("version"), record.get("latency_ms")
    latencies = record.get("latencies")
    latencies = repeat(None if lat is None else float(lat), n) if latencies is None else \
        [None if x is None else float(x) for x in _concat([latencies])]
    return list(zip(
        repeat(stamp, n), repeat(record["model"], n), repeat(None if v is None else int(v), n),
        repeat(record.get("role"), n), repeat(record.get("source"), n), ids, rids, in_json,
        out_json, repeat(None, n) if labels is None else _labels(labels),
        repeat(None, n) if scores is None else scores, latencies, errors,
        repeat(record.get("sample_rate"), n), warned, strict=False))


def _labels(values: Any) -> list[str | None]:
    """Label texts of a column at once where NumPy can (integers, strings)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iuU":
        return [_text(s, 255) for s in arr.astype(str).tolist()]
    return [_label(v) for v in arr.tolist()]


#: outputs the ``label`` and ``score`` columns hold (with the probabilities of two classes)
_COLUMNED = frozenset({"label", "value", "score", "cluster"})


def _beyond_columns(outs: dict[str, Any], first: bool = True) -> bool:
    """Whether outputs hold more than the label and score columns do: the probabilities
    of more than two classes, or outputs of other names. Only then is the ``outputs`` JSON
    written (for one row, or with ``first=False`` for columns of rows)."""
    for k, v in outs.items():
        if k in _COLUMNED:
            continue
        if k != "proba":
            return True
        row = v if first else (v[0] if len(v) else ())
        if len(row) != 2:
            return True
    return False


def _finite_list(values: np.ndarray) -> list[float | None]:
    """Floats with None where a value is NaN or infinite (a score is never stored as NaN)."""
    ok = np.isfinite(values)
    if ok.all():
        return values.tolist()
    return [float(v) if good else None for v, good in zip(values.tolist(), ok, strict=True)]


def _text(value: object, limit: int) -> str | None:
    """``value`` as text any database can hold, at most ``limit`` characters: NUL (which
    PostgreSQL refuses) and lone surrogates (which no UTF-8 driver can send) become
    U+FFFD."""
    if value is None:
        return None
    text = value if type(value) is str else str(value)
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text[:limit]


def _label(v: object) -> str | None:
    if type(v) is str:
        return _text(v, 255)
    if v is None or (isinstance(v, float) and v != v):
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return _text(v, 255)


# -- the writer --------------------------------------------------------------------------

class PredictionLogger:
    """Buffers prediction records and writes them to the log table from a background thread.

    :meth:`put` takes the record the web service's prediction-log hook takes
    (``model``, ``version``, ``role``, ``inputs``, ``outputs``, ``request_id``,
    ``latency_ms``) plus, optionally, ``ids`` (one per row), ``error``, ``source`` and
    ``at``; :meth:`log` takes a batch of rows as keyword arguments and samples row by row.
    Neither ever blocks or raises. At most ``capacity`` rows wait to be written; beyond,
    rows are dropped and ``on_drop(rows)`` is called (the web service counts them in its
    metrics). A row the log table refuses is dropped alone, the others of its batch written,
    and ``on_refuse(rows)`` called; a database that is away keeps the rows for a retry.
    Text a database cannot hold (NUL characters, lone surrogates) is written with U+FFFD in
    its place. The writing thread uses at most ``cpu_budget`` of one core on average (None:
    no limit, for batch jobs).
    """

    #: the web service also hands over requests it refused (with their ``error``)
    logs_errors = True

    def __init__(self, url: str, *, sample: float = 1.0, source: str | None = None,
                 capacity: int = 100_000, flush_seconds: float = 0.5,
                 cpu_budget: float | None = CPU_BUDGET,
                 on_drop: Callable[[int], Any] | None = None,
                 on_refuse: Callable[[int], Any] | None = None) -> None:
        _check_sample(sample)
        self.cpu_budget = cpu_budget
        self.url = url
        self.sample = float(sample)
        self.source = source
        self.capacity = int(capacity)
        self.flush_seconds = float(flush_seconds)
        self.on_drop = on_drop
        self.on_refuse = on_refuse
        self.engine, self.tables = open_log(url)
        self.dropped = 0
        self.written = 0
        #: CPU seconds the writing thread has used (encoding and writing)
        self.cpu_seconds = 0.0
        self._drops: dict[tuple[str, str], int] = {}
        self._buffer: collections.deque = collections.deque()
        # rows queued, and rows written or given up: each counter has one writer (the
        # serving thread, the log thread), so their difference bounds what is held in
        # memory, the batch being written included, without a lock
        self._rows_in = 0
        self._rows_out = 0
        self._drop_lock = threading.Lock()
        self._retry: list[tuple] = []  # encoded rows a failed write left
        self._stop = threading.Event()
        self._flushed = threading.Condition()
        self._dumps = _json_encoder()
        self._insert, self._timestamp = _insert_sql(self.engine, self.tables.predictions)
        self._thread = threading.Thread(target=self._drain, name="modelport-prediction-log",
                                        daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return (f"PredictionLogger({_redact(self.url)!r}, sample={self.sample}, "
                f"written={self.written}, dropped={self.dropped})")

    # -- the serving side (cheap, never blocks, never raises) ---------------------------

    def put(self, record: dict[str, Any]) -> None:
        """Queue one record (a whole request), kept with probability ``sample``."""
        if self.sample < 1.0 and random.random() >= self.sample:
            return
        try:
            n = record.get("rows")
            if n is None:
                inputs = record.get("inputs")
                n = record["rows"] = len(next(iter(inputs.values()))) if inputs else 1
            if self._rows_in - self._rows_out + n > self.capacity:
                self._count_drop(record.get("model"), "buffer full", n)
                return
            if "at" not in record:
                record["at"] = time.time()
            self._rows_in += n
            self._buffer.append(record)
        except Exception:  # noqa: BLE001 - logging must never break scoring
            log.exception("could not queue a prediction record for the log")

    def choose(self, n: int) -> np.ndarray | None:
        """The positions of the rows of an ``n``-row batch to keep (None: all of them), for
        callers that select rows before building their inputs; pass ``sampled=True`` to
        :meth:`log` then."""
        if self.sample >= 1.0:
            return None
        return np.flatnonzero(np.random.random(n) < self.sample)

    def log(self, model: str, version: int | None, inputs: dict[str, Any] | None,
            outputs: dict[str, Any] | None, *, ids: Sequence | None = None,
            request_id: str | None = None, request_ids: Sequence | None = None,
            role: str | None = None, latency_ms: float | Sequence | None = None,
            error: str | None = None, errors: Sequence[str | None] | None = None,
            warnings: Sequence[str | None] | None = None,
            at: float | datetime | None = None, sampled: bool = False) -> None:
        """Log a batch of scored rows, keeping each with probability ``sample``.

        ``inputs`` and ``outputs`` are columns (name -> sequence, proba as rows);
        ``ids``, ``request_ids``, ``errors`` and ``latency_ms`` may give one value per row
        (``error``, ``request_id`` and a number for ``latency_ms`` hold for all);
        ``warnings`` gives each row's flags as text (``field: kind; ...``) or None. ``at`` is
        a UNIX time or a datetime (default: now), for loading predictions made earlier.
        ``sampled`` says the rows were already chosen with :meth:`choose`.
        """
        try:
            n = _length(inputs, outputs, ids, errors)
            keep = None if sampled else self.choose(n)
            if keep is not None and not keep.size:
                return
            record: dict[str, Any] = {
                "model": model, "version": version, "role": role, "request_id": request_id,
                "error": error, "rows": n, "inputs": inputs, "outputs": outputs, "ids": ids,
                "at": time.time() if at is None else at,
            }
            per_row = {"request_ids": request_ids, "errors": errors, "warnings": warnings}
            if latency_ms is not None and not isinstance(latency_ms, int | float):
                per_row["latencies"] = latency_ms
            else:
                record["latency_ms"] = latency_ms
            record.update({k: v for k, v in per_row.items() if v is not None})
            if keep is not None and keep.size < n:
                record = _take(record, keep)
            rows = record["rows"]
            if self._rows_in - self._rows_out + rows > self.capacity:
                self._count_drop(model, "buffer full", rows)
                return
            self._rows_in += rows
            self._buffer.append(record)
        except Exception:  # noqa: BLE001 - logging must never break scoring
            log.exception("could not queue %s predictions for the log", model)

    def _count_drop(self, model: object, reason: str, rows: int = 1) -> None:
        with self._drop_lock:
            self.dropped += rows
            key = (str(model), reason)
            self._drops[key] = self._drops.get(key, 0) + rows
        if self.on_drop is not None:
            try:
                self.on_drop(rows)
            except Exception:  # noqa: BLE001 - a metrics failure is not the caller's
                pass

    # -- the writing side ---------------------------------------------------------------

    def _drain(self) -> None:
        interval = self.flush_seconds
        while True:
            stopping = self._stop.wait(interval)
            used = time.thread_time()
            ok = self._write_all(everything=stopping)
            used = time.thread_time() - used
            self.cpu_seconds += used
            interval = self.flush_seconds if ok else min(max(interval * 2, 0.5), 5.0)
            if self.cpu_budget:
                # rest long enough that this thread's share of a core stays in budget;
                # what arrives meanwhile waits in the buffer, or is dropped when it is full
                interval = max(interval, used / self.cpu_budget - used)
            with self._flushed:
                self._flushed.notify_all()
            if stopping:
                return

    def _write_all(self, everything: bool = False) -> bool:
        """Write what was buffered when called (all of it, new arrivals included, with
        ``everything``); False when the database refused (kept for a retry)."""
        budget = None if everything else len(self._buffer)
        while True:
            rows, self._retry = self._retry, []
            records = []
            taken = 0
            while self._buffer and taken < WRITE_BATCH and (budget is None or budget > 0):
                record = self._buffer.popleft()
                records.append(record)
                taken += record.get("rows") or 1
                if budget is not None:
                    budget -= 1
            if records:
                for record in records:
                    record.setdefault("source", self.source)
                    record.setdefault("sample_rate", self.sample)
                rows.extend(encode(records, self._dumps, self._timestamp, self._unencodable))
            if not rows:
                return self._write_drops()
            try:
                written = self._insert_rows(rows)
            except Exception as exc:  # noqa: BLE001 - the database may be away for a while
                log.warning("could not write %d predictions to the log %s (%s); will retry",
                            len(rows), _redact(self.url), str(exc).splitlines()[0][:200])
                self._retry = rows[:self.capacity]
                for row in rows[self.capacity:]:
                    self._count_drop(row[1], "write failed")
                self._rows_out += max(len(rows) - self.capacity, 0)
                return False
            self.written += written
            self._rows_out += len(rows)
            if not self._buffer or budget == 0:
                return self._write_drops()

    def _insert_rows(self, rows: list[tuple]) -> int:
        """Insert ``rows``; return how many the table took. A table that refuses some rows
        (a constraint, a trigger, text its database cannot hold) has them found by
        splitting the batch: those are dropped and counted (reason ``refused by the log
        table``), the others written. A failure of the database itself is raised, for the
        whole batch to be retried later."""
        from modelport.scoring.isolation import isolate, reason

        def insert(positions: np.ndarray) -> None:
            part = rows if len(positions) == len(rows) else [rows[i] for i in positions]
            with self.engine.begin() as conn:
                conn.exec_driver_sql(self._insert, part)

        _, refused = isolate(insert, len(rows))
        for i, exc in refused.items():
            log.warning("the prediction log %s refused a row of %s (id %r): %s",
                        _redact(self.url), rows[i][1], rows[i][5], reason(exc, 200))
            self._count_drop(rows[i][1], "refused by the log table")
            if self.on_refuse is not None:
                try:
                    self.on_refuse(1)
                except Exception:  # noqa: BLE001 - a metrics failure is not the caller's
                    pass
        return len(rows) - len(refused)

    def _unencodable(self, record: dict[str, Any]) -> None:
        # a malformed record is dropped alone; the others in its batch are written
        log.warning("could not encode a prediction record of %s for the log; dropped it",
                    record.get("model"), exc_info=True)
        rows = record.get("rows") or 1
        self._count_drop(record.get("model"), "encoding failed", rows)
        self._rows_out += rows

    def _write_drops(self) -> bool:
        if not self._drops:
            return True
        drops, self._drops = self._drops, {}
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as conn:
                conn.execute(self.tables.drops.insert(), [
                    {"at": now, "model": m, "dropped": n, "reason": r}
                    for (m, r), n in drops.items()])
        except Exception:  # noqa: BLE001 - counted again next time
            for k, n in drops.items():
                self._drops[k] = self._drops.get(k, 0) + n
            return False
        total = sum(drops.values())
        log.warning("prediction log %s: dropped %d record(s) (%s)", _redact(self.url), total,
                    ", ".join(sorted({r for _, r in drops})))
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written (or ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        while (self._buffer or self._retry) and time.monotonic() < deadline:
            with self._flushed:
                self._flushed.wait(min(self.flush_seconds * 2, 0.5))
        with self._flushed:  # one more cycle covers a batch being written right now
            self._flushed.wait(min(self.flush_seconds * 2, max(deadline - time.monotonic(), 0)))
        return not self._buffer and not self._retry

    def close(self, timeout: float = 10.0) -> None:
        """Write what is buffered (for up to ``timeout`` seconds), then stop the thread."""
        self._stop.set()
        self._thread.join(timeout)
        left = len(self._buffer) + len(self._retry)
        if left:
            log.warning("prediction log %s: %d record(s) not written at shutdown",
                        _redact(self.url), left)
        self.engine.dispose()


def _insert_sql(engine: Engine, table: Table) -> tuple[str, Callable[[Any], Any]]:
    """The driver-level INSERT of one row and the function making its timestamp parameter.

    Rows go to the driver's ``executemany`` as tuples: SQLAlchemy's per-row parameter
    processing would cost more than encoding the row.
    """
    style = engine.dialect.paramstyle
    mark = "?" if style == "qmark" else "%s"
    quote = engine.dialect.identifier_preparer.quote
    sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in COLUMNS)}) "
           f"VALUES ({', '.join([mark] * len(COLUMNS))})")
    if engine.dialect.name == "sqlite":
        return sql, _sqlite_times
    return sql, lambda times: [_utc(t) for t in times]


def _sqlite_times(times: list[Any]) -> list[str]:
    """UNIX times or datetimes as the text SQLAlchemy's SQLite DateTime reads back (UTC)."""
    if all(type(t) is float for t in times):
        micros = (np.asarray(times, dtype=np.float64) * 1e6).astype("datetime64[us]")
        return [s.replace("T", " ") for s in np.datetime_as_string(micros, unit="us").tolist()]
    return [_utc(t).strftime("%Y-%m-%d %H:%M:%S.%f") for t in times]


def _utc(at: datetime | float) -> datetime:
    if isinstance(at, datetime):
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return datetime.fromtimestamp(float(at), UTC)


def _length(inputs: dict[str, Any] | None, outputs: dict[str, Any] | None,
            ids: Sequence[Any] | None, errors: Sequence[Any] | None) -> int:
    for part in (inputs, outputs):
        if part:
            return len(next(iter(part.values())))
    for seq in (ids, errors):
        if seq is not None:
            return len(seq)
    return 1


def _take(record: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    def take(values: Any) -> Any:
        if isinstance(values, np.ndarray):
            return values[keep]
        return [values[i] for i in keep]

    out = dict(record)
    out["rows"] = int(keep.size)
    for key in ("inputs", "outputs"):
        if record.get(key):
            out[key] = {k: take(v) for k, v in record[key].items()}
    for key in ("ids", "errors", "request_ids", "latencies", "warnings"):
        if record.get(key) is not None:
            out[key] = take(record[key])
    return out


# -- reading -----------------------------------------------------------------------------

def read_predictions(url: str, model: str, *, versions: Sequence[int] | None = None,
                     since: datetime | None = None, until: datetime | None = None,
                     roles: Sequence[str] | None = None,
                     exclude_roles: Sequence[str] = ("shadow",)) -> pd.DataFrame:
    """Logged rows of ``model`` as a DataFrame, oldest first.

    Columns: ``at`` (UTC), ``version``, ``role``, ``source``, ``id``, ``request_id``,
    ``label``, ``score``, ``latency_ms``, ``error``, ``sample_rate``, ``warnings`` and the parsed
    ``inputs`` and ``outputs`` (dicts). Shadow answers are left out unless asked for.
    """
    import pandas as pd
    from sqlalchemy import null, select

    engine, tables = open_log(url, create=False)
    t = tables.predictions
    try:
        from sqlalchemy import inspect

        if t.name not in inspect(engine).get_table_names():
            raise UserError(f"no prediction log at {_redact(url)}: the table {t.name!r} does "
                            "not exist (start serving with --log URL first)")
        present = {c["name"] for c in inspect(engine).get_columns(t.name)}
        warned = t.c.warnings if "warnings" in present else null().label("warnings")
        q = select(t.c.at, t.c.version, t.c.role, t.c.source, t.c.id, t.c.request_id,
                   t.c.label, t.c.score, t.c.latency_ms, t.c.error, t.c.sample_rate, warned,
                   t.c.inputs, t.c.outputs).where(t.c.model == model)
        if versions:
            q = q.where(t.c.version.in_(list(versions)))
        if since is not None:
            q = q.where(t.c.at >= since)
        if until is not None:
            q = q.where(t.c.at < until)
        if roles:
            q = q.where(t.c.role.in_(list(roles)))
        elif exclude_roles:
            q = q.where((t.c.role.is_(None)) | (t.c.role.not_in(list(exclude_roles))))
        with engine.connect() as conn:
            rows = conn.execute(q.order_by(t.c.at, t.c.seq)).all()
    finally:
        engine.dispose()
    loads = _json_decoder()
    columns = ["at", "version", "role", "source", "id", "request_id", "label", "score",
               "latency_ms", "error", "sample_rate", "warnings"]
    frame = pd.DataFrame.from_records([r[:12] for r in rows], columns=columns)
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    frame["inputs"] = [loads(r[12]) if r[12] else {} for r in rows]
    frame["outputs"] = [loads(r[13]) if r[13] else {} for r in rows]
    for name in ("score", "latency_ms", "sample_rate"):
        frame[name] = pd.to_numeric(frame[name], errors="coerce")
    return frame


def read_drops(url: str, model: str, since: datetime | None = None,
               until: datetime | None = None) -> int:
    """How many records of ``model`` the loggers writing to ``url`` dropped in the period."""
    from sqlalchemy import func, inspect, select

    engine, tables = open_log(url, create=False)
    t = tables.drops
    try:
        if t.name not in inspect(engine).get_table_names():
            return 0
        q = select(func.coalesce(func.sum(t.c.dropped), 0)).where(t.c.model == model)
        if since is not None:
            q = q.where(t.c.at >= since)
        if until is not None:
            q = q.where(t.c.at < until)
        with engine.connect() as conn:
            return int(conn.execute(q).scalar() or 0)
    finally:
        engine.dispose()


def _json_decoder() -> Callable[[str | bytes], Any]:
    try:
        import orjson

        return orjson.loads
    except ImportError:
        import json

        return json.loads
