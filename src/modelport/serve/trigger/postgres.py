"""PostgreSQL: statement-level enqueue triggers over transition tables, NOTIFY, SKIP LOCKED.

A statement-level trigger sees every row a bulk insert wrote in one transition table and
enqueues them with one ``INSERT ... SELECT``; a row-level trigger would run once per row and
costs the insert path far more. The trigger NOTIFYs once per statement so a listening worker
wakes at once. The worker marks its own transaction (``SET LOCAL modelport.scoring``) so
writing scores back never enqueues the row again. Trigger function bodies are dollar-quoted
with a tag that occurs nowhere in them, so no table or column name can end one; the NOTIFY
channel is a name modelport derives (ASCII, at most 63 bytes, which is what ``pg_notify``
takes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelport.errors import require
from modelport.quoting.sql import dollar_quoted, literal
from modelport.serve.trigger.db import Database
from modelport.serve.trigger.spec import IN_DATABASE, SCORE_TYPES, Installation

if TYPE_CHECKING:
    import numpy as np
    import psycopg
    from sqlalchemy.engine import URL

    from modelport.compile.ir import ModelIR
    from modelport.serve.trigger.native import Compiled

_TYPES = {"text": "text", "int": "bigint", "float": "double precision",
          "time": "timestamptz"}


class PostgreSQL(Database):
    dialect = "postgresql"
    skip_locked = True

    def _open(self, url: URL) -> psycopg.Connection[Any]:
        psycopg = require("psycopg", "postgres", "PostgreSQL triggers")
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return psycopg.connect(conninfo)

    def begin(self) -> None:
        pass  # psycopg opens a transaction on the first statement

    def columns(self, table: str) -> dict[str, str]:
        rows = self.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid WHERE c.relname = %s "
            "AND pg_table_is_visible(c.oid) AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum", (table,))
        return dict(rows)

    def score_type(self, kind: str) -> str:
        return _TYPES[kind]

    def worker_ddl(self, inst: Installation, queue: bool = True) -> list[str]:
        q, t, key = self.q, self.q(inst.table), self.q(inst.key)
        table = q(inst.queue)
        skip = "IF current_setting('modelport.scoring', true) = 'on' THEN RETURN NULL; END IF;"
        notify = (f"IF FOUND THEN PERFORM pg_notify({literal(inst.channel, 'postgresql')}, "
                  "''); END IF;")
        create = [f"CREATE TABLE {table} (id bigserial PRIMARY KEY, k {inst.key_type} NOT NULL, "
                  "enqueued_at timestamptz NOT NULL DEFAULT now())"] if queue else []
        if "insert" in inst.events:
            fn, trig = q(inst.name("enqueue_ins")), q(inst.name("ins"))
            body = (f"\nBEGIN\n{skip}\nINSERT INTO {table} (k) SELECT {key} FROM "
                    f"modelport_new;\n{notify}\nRETURN NULL;\nEND\n")
            create += [
                f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS "
                f"{dollar_quoted(body)}",
                f"CREATE TRIGGER {trig} AFTER INSERT ON {t} REFERENCING NEW TABLE AS "
                f"modelport_new FOR EACH STATEMENT EXECUTE FUNCTION {fn}()"]
        if "update" in inst.events:
            fn, trig = q(inst.name("enqueue_upd")), q(inst.name("upd"))
            feats = list(inst.columns.values())
            new = ", ".join(f"n.{q(c)}" for c in feats)
            old = ", ".join(f"o.{q(c)}" for c in feats)
            body = (f"\nBEGIN\n{skip}\nINSERT INTO {table} (k) SELECT n.{key} FROM "
                    f"modelport_new n JOIN modelport_old o ON o.{key} = n.{key} "
                    f"WHERE ROW({new}) IS DISTINCT FROM ROW({old});\n{notify}\n"
                    "RETURN NULL;\nEND\n")
            create += [
                f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS "
                f"{dollar_quoted(body)}",
                f"CREATE TRIGGER {trig} AFTER UPDATE ON {t} REFERENCING NEW TABLE AS "
                f"modelport_new OLD TABLE AS modelport_old FOR EACH STATEMENT "
                f"EXECUTE FUNCTION {fn}()"]
        return create

    def sql_ddl(self, inst: Installation, model_ir: ModelIR,
                means: np.ndarray | None = None) -> list[str]:
        from modelport.compile import sql

        return self._scoring_ddl(inst, model_ir, means,
                                 sql.create_function(model_ir, "postgresql", inst.model_base))

    def native_ddl(self, inst: Installation, model_ir: ModelIR, means: np.ndarray | None,
                   compiled: Compiled,
                   types: dict[str, str]) -> list[str]:
        """The compiled model function and, where the C trigger reads every input column's
        type as the function's parameter receives it (and the written columns have the
        types install gives them), the library's own row trigger: no PL/pgSQL runs per
        row. Otherwise (reasons, other column types) the PL/pgSQL trigger calls it."""
        from modelport.compile.pgfunction import reads_directly, trigger_arguments
        from modelport.serve.trigger.spec import SCORE_TYPES

        kinds = {c.name: c.kind for c in model_ir.signature.inputs}
        # the types the C trigger writes, as format_type names them
        written = {inst.output: self.score_type(SCORE_TYPES[inst.score_kind]),
                   inst.out("version"): "bigint", inst.out("scored_at"): "timestamptz"}
        named = {"timestamptz": "timestamp with time zone"}
        direct = (not inst.explain
                  and all(reads_directly(kinds[name], types.get(col, ""))
                          for name, col in inst.columns.items())
                  and all(named.get(types.get(col, ""), types.get(col)) == named.get(kind, kind)
                          for col, kind in written.items()))
        if not direct:
            return self._scoring_ddl(inst, model_ir, means, compiled.function)
        q, t = self.q, self.q(inst.table)
        fn, trig = inst.name("score"), q(inst.name("sql"))
        args = trigger_arguments(inst.output, inst.out("version"), inst.out("scored_at"),
                                 int(inst.version or 0),
                                 [inst.columns[n] for n in model_ir.signature.names])
        return [compiled.function, compiled.trigger_function(fn),
                f"DROP TRIGGER IF EXISTS {trig} ON {t}",
                f"CREATE TRIGGER {trig} BEFORE {self._events(inst)} ON {t} FOR EACH ROW "
                f"EXECUTE FUNCTION {q(fn)}({args})"]

    def _events(self, inst: Installation) -> str:
        q = self.q
        return " OR ".join(
            ["INSERT"] * ("insert" in inst.events)
            + [f"UPDATE OF {', '.join(q(c) for c in inst.columns.values())}"]
            * ("update" in inst.events))

    def _scoring_ddl(self, inst: Installation, model_ir: ModelIR, means: np.ndarray | None,
                     function: str) -> list[str]:
        """The model function (``function`` creates it), the reason functions, and the
        trigger calling them for each row."""
        q, t = self.q, self.q(inst.table)
        score_fn = q(inst.name("model_function"))
        fn, trig = q(inst.name("score")), q(inst.name("sql"))
        args = ", ".join(f"NEW.{q(c)}" for c in inst.columns.values())
        on = self._events(inst)
        reasons = "".join(f"NEW.{q(c)} := {e};\n"
                          for c, e in self.sql_reasons(inst, model_ir, means, "NEW."))
        assert inst.version is not None  # set by install()
        body = (f"\nBEGIN\nNEW.{q(inst.output)} := {score_fn}({args});\n{reasons}"
                f"NEW.{q(inst.out('version'))} := {int(inst.version)};\n"
                f"NEW.{q(inst.out('scored_at'))} := now();\nRETURN NEW;\nEND\n")
        return [
            function,
            *self.reason_functions(inst, model_ir, means),
            f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS "
            f"{dollar_quoted(body)}",
            f"DROP TRIGGER IF EXISTS {trig} ON {t}",
            f"CREATE TRIGGER {trig} BEFORE {on} ON {t} FOR EACH ROW EXECUTE FUNCTION {fn}()"]

    def drops(self, inst: Installation, queue: bool = True) -> list[str]:
        q, t, names = self.q, self.q(inst.table), inst.objects
        if inst.mode in IN_DATABASE:
            # the scoring function's name is modelport's own: no argument list is needed
            return [f"DROP TRIGGER IF EXISTS {q(names['sql'])} ON {t}",
                    f"DROP FUNCTION IF EXISTS {q(names['score'])}",
                    f"DROP FUNCTION IF EXISTS {q(names['model_function'])}",
                    *self.reason_drops(inst)]
        out = []
        for event in ("ins", "upd"):
            out += [f"DROP TRIGGER IF EXISTS {q(names[event])} ON {t}",
                    f"DROP FUNCTION IF EXISTS {q(names['enqueue_' + event])}"]
        return out + ([f"DROP TABLE IF EXISTS {q(inst.queue)}"] if queue else [])

    def has_work(self, inst: Installation) -> bool:
        return True  # claiming costs one round trip already; NOTIFY says when to look

    def begin_scoring(self) -> None:
        pass  # claim() marks the transaction as the worker's

    def claim(self, inst: Installation, batch: int) -> tuple[int, list[tuple]]:
        # one round trip: mark the transaction (so writing scores enqueues nothing), take
        # the entries no other worker holds, and read their rows
        q = self.q
        cols = ", ".join(f"t.{q(c)}" for c in inst.columns.values())
        cur = self.conn.cursor()
        try:
            cur.execute(
                "SET LOCAL modelport.scoring = 'on'; "
                # = ANY(ARRAY(...)) keeps the delete on the primary key index; IN (...) let
                # the planner hash-join against a scan of the whole (long) queue
                f"WITH c AS (DELETE FROM {q(inst.queue)} WHERE id = ANY(ARRAY(SELECT id FROM "
                f"{q(inst.queue)} ORDER BY id LIMIT {int(batch)} FOR UPDATE SKIP LOCKED)) "
                "RETURNING k), n AS (SELECT count(*) AS n FROM c) "
                f"SELECT n.n, t.{q(inst.key)}, {cols} FROM n LEFT JOIN {q(inst.table)} t "
                f"ON t.{q(inst.key)} IN (SELECT DISTINCT k FROM c)")
            cur.nextset()
            got = cur.fetchall()
        finally:
            cur.close()
        claimed = int(got[0][0]) if got else 0
        return claimed, [r[1:] for r in got if r[1] is not None]

    def write_scores(self, inst: Installation, keys: list, scores: list, statuses: list,
                     version: int) -> None:
        q = self.qp  # the statement carries parameters
        score_type = self.score_type(SCORE_TYPES[inst.score_kind])
        params: list = [version, _array(keys), _array(scores)]
        if all(s == "ok" for s in statuses):
            status, extra = "'ok'", ""
        else:
            status, extra = "u.st", ", %s::text[]"
            params.append(statuses)
        self.execute(
            f"UPDATE {q(inst.table)} AS t SET {q(inst.output)} = u.s, "
            f"{q(inst.out('version'))} = %s, {q(inst.out('scored_at'))} = clock_timestamp(), "
            f"{q(inst.out('status'))} = {status}, "
            f"{q(inst.out('count'))} = t.{q(inst.out('count'))} + 1 "
            f"FROM unnest(%s::{inst.key_type}[], %s::{score_type}[]{extra}) AS "
            f"u(k, s{', st' if extra else ''}) WHERE t.{q(inst.key)} = u.k", params)

    def delete_claimed(self, inst: Installation, ids: list) -> None:
        self.execute(f"DELETE FROM {self.q(inst.queue)} WHERE id = ANY(%s)", (ids,))

    def listen(self, channels: list[str]) -> None:
        self.conn.commit()
        for ch in channels:
            self.execute(f"LISTEN {self.q(ch)}")
        self.conn.commit()

    def wait(self, channels: list[str], timeout: float) -> None:
        # psycopg's notifies() generator returns after the timeout with nothing to yield
        for _ in self.conn.notifies(timeout=timeout, stop_after=1):
            break
        self.conn.commit()



def _array(values: list) -> str | list:
    """Numbers as one array literal (far cheaper to send than a list adapted item by item);
    anything else as a list for the driver to adapt."""
    if all(type(v) is int for v in values):
        return "{" + ",".join(map(str, values)) + "}"
    if all(type(v) is float or v is None for v in values):
        return "{" + ",".join("NULL" if v is None else repr(v) for v in values) + "}"
    return values
