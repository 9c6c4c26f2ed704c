"""MariaDB / MySQL: row-level enqueue triggers, a polling worker, SKIP LOCKED claims.

MariaDB has no statement-level triggers and no NOTIFY: each inserted or changed row adds
its key to the queue table and the worker polls it. Claims use ``FOR UPDATE SKIP LOCKED``
(MariaDB 10.6+, MySQL 8) so several workers share the queue, and the worker reads at READ
COMMITTED so a claimed key always sees the row change that enqueued it. The update
trigger compares the feature columns (``<=>``, NULL-safe), so writing the score back
enqueues nothing. Names are quoted with backticks and text literals written so that they
read the same under every ``sql_mode`` (see :mod:`modelport.quoting.sql`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelport.errors import UserError, require
from modelport.serve.trigger.db import ClaimConflict, Database, masked
from modelport.serve.trigger.spec import SCORE_TYPES, Installation

if TYPE_CHECKING:
    import numpy as np
    from pymysql.connections import Connection
    from sqlalchemy.engine import URL

    from modelport.compile.ir import ModelIR

_TYPES = {"text": "TEXT", "int": "BIGINT", "float": "DOUBLE", "time": "DATETIME(6)"}


class MariaDB(Database):
    dialect = "mysql"
    now_sql = "UTC_TIMESTAMP(6)"

    def _open(self, url: URL) -> Connection:
        pymysql = require("pymysql", "mysql", "MariaDB/MySQL triggers")
        if not url.database:
            raise UserError(f"{masked(url)} names no database: add it after the "
                            "port, e.g. mysql://root@127.0.0.1:3306/test")
        conn = pymysql.connect(host=url.host or "127.0.0.1", port=url.port or 3306,
                               user=url.username or "root", password=url.password or "",
                               database=url.database, autocommit=False, charset="utf8mb4")
        cur = conn.cursor()
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        cur.execute("SET time_zone = '+00:00'")
        cur.execute("SELECT VERSION()")
        version = cur.fetchone()[0]
        cur.close()
        self.skip_locked = _has_skip_locked(version)
        return conn

    def begin(self) -> None:
        self.conn.begin()

    def columns(self, table: str) -> dict[str, str]:
        rows = self.execute(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (table,))
        return dict(rows)

    def score_type(self, kind: str) -> str:
        return _TYPES[kind]

    def script(self, statements: list[str]) -> None:
        # DDL commits implicitly in MariaDB: run in order and stop at the first failure
        for stmt in statements:
            self.execute(stmt)
        self.commit()

    def worker_ddl(self, inst: Installation, queue: bool = True) -> list[str]:
        q, t, key = self.q, self.q(inst.table), self.q(inst.key)
        table = q(inst.queue)
        create = [f"CREATE TABLE {table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                  f"k {inst.key_type} NOT NULL, enqueued_at DATETIME(6) NOT NULL "
                  "DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB"] if queue else []
        if "insert" in inst.events:
            create.append(f"CREATE TRIGGER {q(inst.name('ins'))} AFTER INSERT ON {t} FOR EACH "
                          f"ROW INSERT INTO {table} (k) VALUES (NEW.{key})")
        if "update" in inst.events:
            same = " AND ".join(f"NEW.{q(c)} <=> OLD.{q(c)}" for c in inst.columns.values())
            create.append(f"CREATE TRIGGER {q(inst.name('upd'))} AFTER UPDATE ON {t} FOR EACH "
                          f"ROW IF NOT ({same}) THEN INSERT INTO {table} (k) VALUES "
                          f"(NEW.{key}); END IF")
        return create

    def sql_ddl(self, inst: Installation, model_ir: ModelIR,
                means: np.ndarray | None = None) -> list[str]:
        from modelport.compile import sql

        q, t = self.q, self.q(inst.table)
        score_fn = q(inst.name("model_function"))
        args = ", ".join(f"NEW.{q(c)}" for c in inst.columns.values())
        reasons = "".join(f"NEW.{q(c)} = {e}, "
                          for c, e in self.sql_reasons(inst, model_ir, means, "NEW."))
        assert inst.version is not None  # set by install()
        assign = (f"SET NEW.{q(inst.output)} = {score_fn}({args}), {reasons}"
                  f"NEW.{q(inst.out('version'))} = {int(inst.version)}, "
                  f"NEW.{q(inst.out('scored_at'))} = UTC_TIMESTAMP(6)")
        create = [sql.create_function(model_ir, "mysql", inst.model_base),
                  *self.reason_functions(inst, model_ir, means)]
        if "insert" in inst.events:
            trig = q(inst.name("sql_ins"))
            create += [f"DROP TRIGGER IF EXISTS {trig}",
                       f"CREATE TRIGGER {trig} BEFORE INSERT ON {t} FOR EACH ROW {assign}"]
        if "update" in inst.events:
            trig = q(inst.name("sql_upd"))
            same = " AND ".join(f"NEW.{q(c)} <=> OLD.{q(c)}" for c in inst.columns.values())
            create += [f"DROP TRIGGER IF EXISTS {trig}",
                       f"CREATE TRIGGER {trig} BEFORE UPDATE ON {t} FOR EACH ROW "
                       f"IF NOT ({same}) THEN {assign}; END IF"]
        return create

    def drops(self, inst: Installation, queue: bool = True) -> list[str]:
        q, names = self.q, inst.objects
        if inst.mode == "sql":
            return [f"DROP TRIGGER IF EXISTS {q(names['sql_ins'])}",
                    f"DROP TRIGGER IF EXISTS {q(names['sql_upd'])}",
                    f"DROP FUNCTION IF EXISTS {q(names['model_function'])}",
                    *self.reason_drops(inst)]
        return [f"DROP TRIGGER IF EXISTS {q(names['ins'])}",
                f"DROP TRIGGER IF EXISTS {q(names['upd'])}"] + (
            [f"DROP TABLE IF EXISTS {q(inst.queue)}"] if queue else [])

    def write_scores(self, inst: Installation, keys: list, scores: list, statuses: list,
                     version: int) -> None:
        q = self.qp  # the statement carries parameters
        kind = SCORE_TYPES[inst.score_kind]
        cast = {"float": "CAST({} AS DOUBLE)", "int": "CAST({} AS SIGNED)"}.get(kind, "{}")
        # one UPDATE joined to the batch as a derived table: a round trip per batch, not per row
        first = f"SELECT %s AS k, {cast.format('%s')} AS s, %s AS st"
        rows = " UNION ALL ".join([first] + ["SELECT %s, " + cast.format("%s") + ", %s"]
                                  * (len(keys) - 1))
        params = [v for triple in zip(keys, scores, statuses, strict=True) for v in triple]
        self.execute(
            f"UPDATE {q(inst.table)} t JOIN ({rows}) u ON t.{q(inst.key)} = u.k "
            f"SET t.{q(inst.output)} = u.s, t.{q(inst.out('version'))} = %s, "
            f"t.{q(inst.out('scored_at'))} = UTC_TIMESTAMP(6), t.{q(inst.out('status'))} = u.st, "
            f"t.{q(inst.out('count'))} = t.{q(inst.out('count'))} + 1", [*params, version])

    def delete_claimed(self, inst: Installation, ids: list) -> None:
        # MariaDB's SKIP LOCKED can hand two workers the same entries under concurrency;
        # the DELETE locks them for real, so a worker that removes fewer than it read
        # backs off and lets the other one score them
        cur = self.conn.cursor()
        try:
            removed = cur.execute(f"DELETE FROM {self.q(inst.queue)} WHERE id IN "
                                  f"({self.params(len(ids))})", ids)
        finally:
            cur.close()
        if removed != len(ids):
            raise ClaimConflict(f"{len(ids) - removed} queue entries were claimed twice")


def _has_skip_locked(version: str) -> bool:
    """MariaDB 10.6+ and MySQL 8.0+ can skip locked rows."""
    parts = version.split("-")[0].split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return False
    if "mariadb" in version.lower():
        return (major, minor) >= (10, 6)
    return major >= 8
