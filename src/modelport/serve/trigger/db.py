"""One open connection to a scored database, and what differs between PostgreSQL, MariaDB and
SQLite.

:func:`connect` reads a SQLAlchemy-style URL (``postgresql://...``, ``mysql://...``,
``mariadb://...``, ``mysql+pymysql://...``, ``sqlite:///app.db``) and returns a
:class:`Database` for its dialect. The driver connection underneath (psycopg, PyMySQL or
sqlite3) is used directly: the worker's claim-score-write loop and PostgreSQL's LISTEN
need the driver, not an ORM. Every name is quoted by :mod:`modelport.quoting.sql`, and no
message repeats the URL's password.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from modelport.errors import UserError
from modelport.io.urls import first_line, redact, scrubbed
from modelport.quoting.sql import identifier
from modelport.serve.trigger.spec import META_TABLE, Installation

if TYPE_CHECKING:
    import numpy as np
    from sqlalchemy.engine import URL

    from modelport.compile.ir import ModelIR
    from modelport.serve.trigger.native import Compiled


def normalise_url(url: str) -> URL:
    """The SQLAlchemy URL with the driver modelport uses for its dialect
    (:func:`modelport.io.urls.database_url`); the driver connection underneath is always
    psycopg or PyMySQL, whatever driver the URL names. A database triggers cannot run in is
    a UserError."""
    from modelport.io.urls import DRIVERS, database_url, dialect

    parsed = database_url(url, hint="")
    kind = dialect(url)
    if kind in ("postgresql", "mysql"):
        return parsed.set(drivername=DRIVERS[kind])
    if kind != "sqlite":
        raise UserError(f"database {redact(url)!r} is not supported for triggers: use "
                        "PostgreSQL (postgresql://), MariaDB/MySQL (mysql://) or SQLite "
                        "(sqlite:///)")
    return parsed


def connect(url: str) -> Database:
    """An open :class:`Database` for ``url``."""
    parsed = normalise_url(url)
    backend = parsed.get_backend_name()
    cls: type[Database]
    if backend == "postgresql":
        from modelport.serve.trigger.postgres import PostgreSQL as cls
    elif backend == "mysql":
        from modelport.serve.trigger.mysql import MariaDB as cls
    else:
        from modelport.serve.trigger.sqlite import SQLite as cls
    try:
        return cls(parsed)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any driver's failure to connect
        raise UserError(f"cannot connect to {masked(parsed)}: "
                        f"{scrubbed(first_line(exc), parsed.password)}; check the URL and that the "
                        "database is running") from None


def masked(url: URL) -> str:
    """A parsed database URL as text with its password hidden, for messages."""
    return url.render_as_string(hide_password=True)


class Database:
    """A driver connection plus the SQL its dialect needs; subclasses fill in the dialect."""

    dialect = ""
    param = "%s"  # the driver's placeholder
    #: whether claiming can skip rows other workers hold (``FOR UPDATE SKIP LOCKED``)
    skip_locked = False
    #: the dialect's current UTC time, as stored in the scored-at column
    now_sql = "now()"

    def __init__(self, url: URL) -> None:
        self.url = url
        self.conn = self._open(url)

    def _open(self, url: URL) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection must not mask its error
            pass

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plain SQL ----------------------------------------------------------------------

    def q(self, name: str) -> str:
        """``name`` quoted as an identifier of this database."""
        return identifier(name, self.dialect)

    def qp(self, name: str) -> str:
        """``name`` quoted for a statement sent with driver parameters: psycopg and PyMySQL
        take every ``%`` in such a statement for the start of a placeholder, so a ``%`` in
        the name is doubled."""
        quoted = self.q(name)
        return quoted if self.param == "?" else quoted.replace("%", "%%")

    def execute(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql, params) if params else cur.execute(sql)
            return list(cur.fetchall()) if cur.description else []
        finally:
            cur.close()

    def params(self, n: int) -> str:
        return ", ".join([self.param] * n)

    def begin(self) -> None:
        self.execute("BEGIN")

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    def script(self, statements: list[str]) -> None:
        """Run DDL statements in one transaction where the dialect allows it."""
        self.begin()
        try:
            for stmt in statements:
                self.execute(stmt)
            self.commit()
        except Exception:
            self.rollback()
            raise

    # -- catalogue ----------------------------------------------------------------------

    def columns(self, table: str) -> dict[str, str]:
        """Column name -> declared type, in table order; empty when there is no such table."""
        raise NotImplementedError

    def score_type(self, kind: str) -> str:
        return {"text": "TEXT", "int": "BIGINT", "float": "DOUBLE PRECISION",
                "time": "TIMESTAMP"}[kind]

    def add_column(self, table: str, column: str, kind: str) -> str:
        default = " NOT NULL DEFAULT 0" if column.endswith("_count") else ""
        return (f"ALTER TABLE {self.q(table)} ADD COLUMN {self.q(column)} "
                f"{self.score_type(kind)}{default}")

    def drop_column(self, table: str, column: str) -> str:
        return f"ALTER TABLE {self.q(table)} DROP COLUMN {self.q(column)}"

    # -- bookkeeping --------------------------------------------------------------------

    def meta_ddl(self) -> str:
        return (f"CREATE TABLE IF NOT EXISTS {self.q(META_TABLE)} (table_name VARCHAR(255) "
                "PRIMARY KEY, spec TEXT NOT NULL)")

    def installations(self) -> list[Installation]:
        """Every installation recorded here, each row checked as it is read."""
        if not self.columns(META_TABLE):
            return []
        rows = self.execute(f"SELECT table_name, spec FROM {self.q(META_TABLE)} "
                            "ORDER BY table_name")
        self.commit()
        return [Installation.from_json(r[1], r[0]) for r in rows]

    def installation(self, table: str) -> Installation | None:
        return next((i for i in self.installations() if i.table == table), None)

    def save(self, inst: Installation) -> list[tuple[str, tuple]]:
        return [(f"DELETE FROM {self.q(META_TABLE)} WHERE table_name = {self.param}",
                 (inst.table,)),
                (f"INSERT INTO {self.q(META_TABLE)} (table_name, spec) VALUES "
                 f"({self.params(2)})", (inst.table, inst.to_json()))]

    # -- worker mode --------------------------------------------------------------------

    def worker_ddl(self, inst: Installation, queue: bool = True) -> list[str]:
        """Statements creating the queue (unless ``queue`` is false) and enqueue triggers."""
        raise NotImplementedError

    def sql_ddl(self, inst: Installation, model_ir: ModelIR,
                means: np.ndarray | None = None) -> list[str]:
        """Statements creating the scoring function and trigger (and, with
        ``inst.explain``, the reason functions; ``means`` are the model's feature means
        its reasons are measured from)."""
        raise NotImplementedError

    def reason_functions(self, inst: Installation, model_ir: ModelIR,
                         means: np.ndarray | None) -> list[str]:
        """Statements creating the reason functions of SQL mode (none without reasons)."""
        from modelport.compile import sql

        if not inst.explain:
            return []
        assert means is not None  # install measures them when it writes reasons
        return sql.create_reason_functions(model_ir, self.dialect, inst.model_base, means)

    def sql_reasons(self, inst: Installation, model_ir: ModelIR, means: np.ndarray | None,
                    prefix: str = "") -> list[tuple[str, str]]:
        """``(column, SQL)`` of each reason column for one row, read with ``prefix``
        (``NEW.`` in a trigger body): calls of the installed reason functions."""
        from modelport.compile import sql

        reason_fn, contribution_fn = (self.q(n) for n in
                                      sql.reason_function_names(inst.model_base))
        args = ", ".join(prefix + self.q(c) for c in inst.columns.values())
        out = []
        for j in range(1, inst.explain + 1):
            out += [(inst.out(f"reason_{j}"), f"{reason_fn}({j}, {args})"),
                    (inst.out(f"contribution_{j}"), f"{contribution_fn}({j}, {args})")]
        return out

    def reason_drops(self, inst: Installation) -> list[str]:
        """Statements removing SQL mode's reason functions, if it made them."""
        from modelport.compile import sql

        return [f"DROP FUNCTION IF EXISTS {self.q(n)}"
                for n in sql.reason_function_names(inst.model_base)]

    def native_ddl(self, inst: Installation, model_ir: ModelIR, means: np.ndarray | None,
                   compiled: Compiled,
                   types: dict[str, str]) -> list[str]:
        """What :meth:`sql_ddl` makes, with the model compiled to a library
        (:class:`~modelport.serve.trigger.native.Compiled`, native mode); ``types`` are the
        table's column types once install has added its columns. Only PostgreSQL has it:
        install refuses native mode elsewhere first
        (:func:`~modelport.serve.trigger.native.require_postgresql`)."""
        raise NotImplementedError

    def drops(self, inst: Installation, queue: bool = True) -> list[str]:
        """Statements removing the objects ``inst`` made (the queue only if ``queue``),
        built from its recorded names: nothing stored is run as SQL."""
        raise NotImplementedError

    def sql_backfill(self, inst: Installation, model_ir: ModelIR,
                     means: np.ndarray | None = None) -> str:
        """An UPDATE scoring, in SQL, the rows that have no score yet."""
        q = self.q
        assert inst.version is not None  # set by install()
        reasons = "".join(f"{q(c)} = {e}, " for c, e in self.sql_reasons(inst, model_ir, means))
        return (f"UPDATE {q(inst.table)} SET {q(inst.output)} = "
                f"{self.sql_score(inst, model_ir)}, {reasons}"
                f"{q(inst.out('version'))} = {int(inst.version)}, "
                f"{q(inst.out('scored_at'))} = {self.now_sql} WHERE {q(inst.output)} IS NULL")

    def sql_score(self, inst: Installation, model_ir: ModelIR) -> str:
        """The SQL that scores one row: a call of the installed scoring function."""
        args = ", ".join(self.q(c) for c in inst.columns.values())
        return f"{self.q(inst.name('model_function'))}({args})"

    def claim_sql(self, inst: Installation) -> str:
        # without SKIP LOCKED, workers wait for each other's claims instead of sharing them
        lock = " FOR UPDATE SKIP LOCKED" if self.skip_locked else " FOR UPDATE"
        return (f"SELECT id, k FROM {self.q(inst.queue)} ORDER BY id LIMIT {self.param}"
                f"{lock}")

    def claim(self, inst: Installation, batch: int) -> tuple[int, list[tuple]]:
        """Take up to ``batch`` queue entries in the open transaction and read their rows.

        Returns (entries taken, rows as ``(key, feature...)``). The entries are deleted at
        once: if the transaction rolls back (a crash, an error) they are back in the queue;
        if it commits, they were scored with it.
        """
        claimed = self.execute(self.claim_sql(inst), (batch,))
        if not claimed:
            return 0, []
        self.delete_claimed(inst, [r[0] for r in claimed])
        return len(claimed), self.read_rows(inst, list(dict.fromkeys(r[1] for r in claimed)))

    def has_work(self, inst: Installation) -> bool:
        """A cheap look at the queue before taking locks: polling an empty queue must not
        get in the way of the application's writes."""
        rows = self.execute(f"SELECT 1 FROM {self.q(inst.queue)} LIMIT 1")
        self.commit()
        return bool(rows)

    def begin_scoring(self) -> None:
        """Start the transaction a batch is claimed, scored and written in."""
        self.begin()

    def read_rows(self, inst: Installation, keys: list) -> list[tuple]:
        q = self.qp
        cols = ", ".join(q(c) for c in inst.columns.values())
        marks = self.params(len(keys))
        return self.execute(f"SELECT {q(inst.key)}, {cols} FROM {q(inst.table)} "
                            f"WHERE {q(inst.key)} IN ({marks})", keys)

    def write_scores(self, inst: Installation, keys: list, scores: list, statuses: list,
                     version: int) -> None:
        raise NotImplementedError

    def delete_claimed(self, inst: Installation, ids: list) -> None:
        self.execute(f"DELETE FROM {self.q(inst.queue)} WHERE id IN "
                     f"({self.params(len(ids))})", ids)

    def queue_length(self, inst: Installation) -> int:
        rows = self.execute(f"SELECT COUNT(*) FROM {self.q(inst.queue)}")
        self.commit()
        return int(rows[0][0])

    def wait(self, channels: list[str], timeout: float) -> None:
        """Sleep until there may be work: a notification (PostgreSQL) or the poll interval."""
        time.sleep(timeout)

    def listen(self, channels: list[str]) -> None:
        """Subscribe to enqueue notifications where the dialect has them."""

    def recover(self) -> bool:
        """After a failure: roll back, and open the connection afresh when it was lost (a
        server restart, a killed session, a network cut); True when it was. Raises while
        the database is still away."""
        try:
            self.rollback()
            self.execute("SELECT 1")
            self.commit()
            return False
        except Exception:  # noqa: BLE001 - whatever broke, a new connection is the cure
            self.reopen()
            return True

    def reopen(self) -> None:
        """Close the connection and open a new one; raises while the database is away."""
        self.close()
        self.conn = self._open(self.url)

    # -- savepoints: one statement that fails rolls back alone ---------------------------

    def savepoint(self) -> None:
        self.execute("SAVEPOINT modelport_part")

    def release(self) -> None:
        self.execute("RELEASE SAVEPOINT modelport_part")

    def rollback_savepoint(self) -> None:
        self.execute("ROLLBACK TO SAVEPOINT modelport_part")


class ClaimConflict(Exception):
    """Another worker holds some of the queue entries just read: the batch is rolled back
    and claimed afresh, as after a lock conflict."""
