"""The registry's tables and how to open the database that holds them.

SQLite (default) and PostgreSQL. Writes that must not interleave (allocating a version
number, moving an alias) run in :func:`write_txn`: ``BEGIN IMMEDIATE`` on SQLite, a row
lock on PostgreSQL. Tables are created on first use, and a registry made by an earlier
release gets the columns added since (:data:`ADDED_COLUMNS`) the first time it is opened.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Connection, Engine

from modelport.errors import UserError

metadata = MetaData()

models = Table(
    "mp_models", metadata,
    Column("name", String(128), primary_key=True),
    Column("description", Text),
    Column("last_version", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

versions = Table(
    "mp_versions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128)),
    Column("task", String(32), nullable=False),
    Column("native_format", String(32)),
    Column("signature", JSON, nullable=False),
    Column("metrics", JSON),
    Column("params", JSON),
    Column("tags", JSON),
    Column("data_fingerprint", String(64)),
    Column("library_versions", JSON),
    Column("parent_version", Integer),
    Column("sample_sha256", String(64)),
    Column("description", Text),
    Column("lineage", JSON),
    UniqueConstraint("model", "version", name="uq_mp_versions_model_version"),
)

artefacts = Table(
    "mp_artefacts", metadata,
    Column("model", String(128), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("format", String(32), primary_key=True),
    Column("sha256", String(64)),
    Column("size", Integer),
    Column("status", String(16), nullable=False),  # accepted | rejected
    Column("parity", JSON),
    Column("reason", Text),
    # HMAC-SHA256 of (model, version, format, sha256) under MODELPORT_SIGNING_KEY, when set
    Column("signature", String(96)),
)

#: columns added to a table after it was first released: a registry created before gets
#: them on first use (see :func:`add_missing_columns`)
ADDED_COLUMNS = (("mp_artefacts", "signature"),)

aliases = Table(
    "mp_aliases", metadata,
    Column("model", String(128), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

alias_events = Table(
    "mp_alias_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False, index=True),
    Column("alias", String(64), nullable=False),
    Column("action", String(16), nullable=False),  # set | rollback | delete
    Column("from_version", Integer),
    Column("to_version", Integer),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("by", String(128)),
    Column("reason", Text),
)

#: things that happened to a model besides versions and aliases (retraining decisions, ...)
events = Table(
    "mp_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("data", JSON),
)

#: each version's training statistics, the reference monitoring compares traffic with
#: (modelport.monitor.reference); a version registered before this table existed gets
#: its row computed from its stored sample when first monitored
references = Table(
    "mp_references", metadata,
    Column("model", String(128), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("statistics", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

#: scheduled jobs (modelport.train.schedule): a retrain spec or a monitoring check on a cron
schedules = Table(
    "mp_schedules", metadata,
    Column("name", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),  # retrain | check
    Column("path", Text, nullable=False),
    Column("cron", String(128), nullable=False),
    Column("missed", String(8), nullable=False),  # skip | once | all
    Column("grace_s", Float, nullable=False),
    Column("timeout_s", Float, nullable=False),
    Column("next_run_at", DateTime(timezone=True), nullable=False),
    Column("claims", Integer, nullable=False, default=0),  # bumped by every claim
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128)),
)

#: one row per due occurrence of a schedule: who ran it, how it ended, its log
schedule_runs = Table(
    "mp_schedule_runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("schedule", String(128), nullable=False, index=True),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),  # running | succeeded | failed | skipped | lost
    Column("owner", String(128)),
    Column("lease_until", DateTime(timezone=True)),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("exit_code", Integer),
    Column("result", JSON),
    Column("log", Text),
    UniqueConstraint("schedule", "due_at", name="uq_mp_schedule_runs_due"),
)


#: one row per live process serving a model URI (serve, stream, trigger run, learn), written
#: every few seconds by the process itself (modelport.registry.heartbeats); a registry made
#: before this table existed gets it on first use, like every table
heartbeats = Table(
    "mp_heartbeats", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("surface", String(32), nullable=False),
    Column("uri", String(255), nullable=False),
    Column("model", String(128), nullable=False, index=True),
    Column("version", Integer),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
    Column("stats", JSON),  # rates, rejects and warnings by reason, last reload error
    UniqueConstraint("host", "pid", "surface", "uri", name="uq_mp_heartbeats_process"),
)


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def open_engine(url: str) -> Engine:
    """An engine on the registry database, with its tables created if needed."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine = _create(url, connect_args={"timeout": 60})
        _sqlite_transactions(engine)
    elif url.startswith("postgresql"):
        from modelport.errors import require

        require("psycopg", "postgres", "a PostgreSQL registry")
        engine = _create(url, pool_pre_ping=True)
    else:
        raise UserError(
            f"unsupported registry URL {_masked(url)!r}: use sqlite:///PATH or "
            "postgresql://HOST/DB in MODELPORT_REGISTRY"
        )
    try:
        # Only a database that lacks tables takes the write lock: opening a registry to read
        # must not wait behind a registration that holds it.
        with engine.connect() as conn:
            present = set(inspect(conn).get_table_names())
            missing = _missing_columns(conn) if present.issuperset(metadata.tables) else []
        if not present.issuperset(metadata.tables) or missing:
            with write_txn(engine) as conn:
                if engine.dialect.name == "postgresql":
                    # concurrent first use from several processes must not race on CREATE TABLE
                    conn.execute(text("SELECT pg_advisory_xact_lock(7316254)"))
                metadata.create_all(conn)
                add_missing_columns(conn)
    except Exception as exc:
        if isinstance(exc, UserError):
            raise
        from sqlalchemy.exc import OperationalError

        if isinstance(exc, OperationalError):
            raise UserError(
                f"cannot open the registry database {engine.url.render_as_string()}: "
                f"{str(exc.orig).strip().splitlines()[0]} (check MODELPORT_REGISTRY)"
            ) from None
        raise
    return engine


def _missing_columns(conn: Connection) -> list[tuple[str, str]]:
    inspector = inspect(conn)
    have = {t: {c["name"] for c in inspector.get_columns(t)} for t, _ in ADDED_COLUMNS}
    return [(t, c) for t, c in ADDED_COLUMNS if c not in have[t]]


def add_missing_columns(conn: Connection) -> None:
    """Add the :data:`ADDED_COLUMNS` a registry created by an earlier release lacks, inside
    the caller's write transaction (so two processes opening it at once add each once).
    Rows written before get NULL there, which each column's reader takes as "absent"."""
    for table, column in _missing_columns(conn):
        kind = metadata.tables[table].c[column].type.compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))


def _create(url: str, **kwargs: Any) -> Engine:
    # a malformed URL (a port that is no number, an unknown driver) is the user's to fix
    from sqlalchemy.exc import ArgumentError

    try:
        return create_engine(url, **kwargs)
    except (ArgumentError, ValueError, ImportError) as exc:
        raise UserError(
            f"bad registry URL {_masked(url)!r}: {exc} (check MODELPORT_REGISTRY)"
        ) from None


def _masked(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _sqlite_transactions(engine: Engine) -> None:
    # pysqlite's own BEGIN handling is replaced so that write transactions can take the
    # write lock up front (BEGIN IMMEDIATE) and wait for it, instead of failing with
    # "database is locked" when a read lock cannot be upgraded.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("modelport_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def write_txn(engine: Engine) -> Iterator[Any]:
    """A transaction that holds the database's write lock from its first statement."""
    # yields a Connection; typed Any because callers hand its RowMappings on where
    # Mapping[str, Any] or dict is expected (registry.schedules, registry.aliases)
    with engine.connect() as conn:
        conn.execution_options(modelport_write=True)
        with conn.begin():
            yield conn
