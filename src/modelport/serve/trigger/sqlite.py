"""SQLite: pure-SQL enqueue triggers and a polling worker that claims under the write lock.

The enqueue triggers are plain SQL: a trigger that called an application-defined function
would make every insert from another connection (the sqlite3 shell, a migration, another
process) fail with "no such function". SQLite has one writer at a time, so a worker that
opens its batch with ``BEGIN IMMEDIATE`` holds the queue alone until it commits: several
workers never claim the same entry.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from modelport.serve.trigger.db import Database
from modelport.serve.trigger.spec import Installation

if TYPE_CHECKING:
    import numpy as np
    from sqlalchemy.engine import URL

    from modelport.compile.ir import ModelIR

_TYPES = {"text": "TEXT", "int": "INTEGER", "float": "REAL", "time": "TEXT"}
_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


class SQLite(Database):
    dialect = "sqlite"
    param = "?"
    now_sql = _NOW

    def _open(self, url: URL) -> sqlite3.Connection:
        assert url.database is not None  # normalise_url refuses a SQLite URL without a file
        conn = sqlite3.connect(url.database, isolation_level=None, timeout=30.0,
                               check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 30000")
        # in the default rollback journal a worker's polling reads hold the application's
        # commits back (each retry sleeps longer); in WAL mode readers never block the
        # writer. The mode is a property of the database file and stays set.
        conn.execute("PRAGMA journal_mode = WAL")
        return conn

    def commit(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def columns(self, table: str) -> dict[str, str]:
        return {r[1]: r[2] for r in self.execute(f"PRAGMA table_info({self.q(table)})")}

    def score_type(self, kind: str) -> str:
        return _TYPES[kind]

    def drop_column(self, table: str, column: str) -> str:
        return f"ALTER TABLE {self.q(table)} DROP COLUMN {self.q(column)}"

    def worker_ddl(self, inst: Installation, queue: bool = True) -> list[str]:
        q, t, key = self.q, self.q(inst.table), self.q(inst.key)
        table = q(inst.queue)
        create = [f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, "
                  f"k {inst.key_type} NOT NULL, enqueued_at TEXT NOT NULL DEFAULT "
                  f"({_NOW}))"] if queue else []
        if "insert" in inst.events:
            create.append(f"CREATE TRIGGER {q(inst.name('ins'))} AFTER INSERT ON {t} BEGIN "
                          f"INSERT INTO {table} (k) VALUES (NEW.{key}); END")
        if "update" in inst.events:
            feats = list(inst.columns.values())
            same = " AND ".join(f"NEW.{q(c)} IS OLD.{q(c)}" for c in feats)
            create.append(f"CREATE TRIGGER {q(inst.name('upd'))} AFTER UPDATE OF "
                          f"{', '.join(q(c) for c in feats)} ON {t} WHEN NOT ({same}) BEGIN "
                          f"INSERT INTO {table} (k) VALUES (NEW.{key}); END")
        return create

    def sql_ddl(self, inst: Installation, model_ir: ModelIR,
                means: np.ndarray | None = None) -> list[str]:
        from modelport.compile import sql

        q, t, key = self.q, self.q(inst.table), self.q(inst.key)
        # SQLite has no stored functions: the expression is written into the trigger body
        expr = sql.to_sql_subquery(_renamed(model_ir, inst.columns), "sqlite", prefix="NEW.")
        feats = list(inst.columns.values())
        reasons = "".join(f"{q(c)} = {e}, "
                          for c, e in self.sql_reasons(inst, model_ir, means, "NEW."))
        assert inst.version is not None  # set by install()
        assign = (f"UPDATE {t} SET {q(inst.output)} = {expr}, {reasons}"
                  f"{q(inst.out('version'))} = {int(inst.version)}, "
                  f"{q(inst.out('scored_at'))} = {_NOW} WHERE {key} = NEW.{key};")
        create = []
        if "insert" in inst.events:
            trig = q(inst.name("sql_ins"))
            create += [f"DROP TRIGGER IF EXISTS {trig}",
                       f"CREATE TRIGGER {trig} AFTER INSERT ON {t} BEGIN {assign} END"]
        if "update" in inst.events:
            trig = q(inst.name("sql_upd"))
            same = " AND ".join(f"NEW.{q(c)} IS OLD.{q(c)}" for c in feats)
            create += [f"DROP TRIGGER IF EXISTS {trig}",
                       f"CREATE TRIGGER {trig} AFTER UPDATE OF {', '.join(q(c) for c in feats)} "
                       f"ON {t} WHEN NOT ({same}) BEGIN {assign} END"]
        return create

    def drops(self, inst: Installation, queue: bool = True) -> list[str]:
        q, names = self.q, inst.objects
        if inst.mode == "sql":
            return [f"DROP TRIGGER IF EXISTS {q(names['sql_ins'])}",
                    f"DROP TRIGGER IF EXISTS {q(names['sql_upd'])}"]
        return [f"DROP TRIGGER IF EXISTS {q(names['ins'])}",
                f"DROP TRIGGER IF EXISTS {q(names['upd'])}"] + (
            [f"DROP TABLE IF EXISTS {q(inst.queue)}"] if queue else [])

    def reason_functions(self, inst: Installation, model_ir: ModelIR,
                         means: np.ndarray | None) -> list[str]:
        return []  # no stored functions: the reason expressions are written in place

    def reason_drops(self, inst: Installation) -> list[str]:
        return []

    def sql_reasons(self, inst: Installation, model_ir: ModelIR, means: np.ndarray | None,
                    prefix: str = "") -> list[tuple[str, str]]:
        from modelport.compile import sql

        if not inst.explain:
            return []
        assert means is not None  # install measures them when it writes reasons
        listed = sql.reasons(_renamed(model_ir, inst.columns), "sqlite", inst.explain, means,
                             prefix=prefix)
        return [(inst.out(name), e) for name, e in listed]

    def sql_score(self, inst: Installation, model_ir: ModelIR) -> str:
        from modelport.compile import sql

        # no stored functions in SQLite: the expression itself
        return sql.to_sql_subquery(_renamed(model_ir, inst.columns), "sqlite")

    def begin_scoring(self) -> None:
        self.execute("BEGIN IMMEDIATE")

    def claim_sql(self, inst: Installation) -> str:
        return f"SELECT id, k FROM {self.q(inst.queue)} ORDER BY id LIMIT ?"

    def write_scores(self, inst: Installation, keys: list, scores: list, statuses: list,
                     version: int) -> None:
        q = self.q
        cur = self.conn.cursor()
        cur.executemany(
            f"UPDATE {q(inst.table)} SET {q(inst.output)} = ?, {q(inst.out('version'))} = ?, "
            f"{q(inst.out('scored_at'))} = {_NOW}, {q(inst.out('status'))} = ?, "
            f"{q(inst.out('count'))} = {q(inst.out('count'))} + 1 WHERE {q(inst.key)} = ?",
            [(s, version, st, k) for k, s, st in zip(keys, scores, statuses, strict=True)])
        cur.close()


def _renamed(model_ir: ModelIR, columns: dict[str, str]) -> ModelIR:
    """The IR, if the table names its columns as the model's inputs (the expression
    inlined in a trigger reads them by those names)."""
    from modelport.errors import UserError

    differ = [k for k, v in columns.items() if k != v]
    if differ:
        raise UserError("SQL mode on SQLite needs table columns named as the model's inputs "
                        f"({', '.join(differ)} differ): rename them or use --mode worker")
    return model_ir
