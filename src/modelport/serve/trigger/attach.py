"""SQLite in-process: an application's own inserts scored synchronously, inside its statement.

:func:`attach` registers the model as an application-defined function on one connection and
creates a TEMP trigger that calls it. Both live only on that connection: other connections
(the sqlite3 shell, migrations, other processes) never see a trigger calling a function
they lack, so their inserts keep working — they are simply not scored by this one. Table
and column names are quoted by :mod:`modelport.quoting.sql`; the function and triggers are
named after the table by :func:`~modelport.quoting.sql.derived_name`.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING, Any

from modelport.errors import UserError
from modelport.quoting.sql import derived_name, identifier
from modelport.scoring import choice
from modelport.scoring.checks import FLAG, InputPolicy, check
from modelport.scoring.isolation import score
from modelport.serve.trigger.spec import EVENTS

if TYPE_CHECKING:
    from modelport.registry import Registry

log = logging.getLogger("modelport.trigger")


def attach(connection: sqlite3.Connection, uri: str, *, table: str, key: str,
           output_column: str, columns: dict[str, str] | None = None,
           on: tuple[str, ...] = EVENTS, registry: Registry | None = None,
           policy: InputPolicy | None = None) -> None:
    """Score rows that ``connection`` inserts into (or updates in) ``table`` with ``uri``.

    The score (positive-class probability of a binary classifier, else the value, cluster
    or label) is written into ``output_column``, added to the table when missing, in the
    same statement as the insert. ``columns`` maps model inputs to table columns where
    the names differ. Rows are checked and scored by the scoring core, as a worker does:
    a row it rejects (a value of the wrong type, one the model raises on) gets NULL, and
    ``policy`` says whether a number outside the training range or an unseen category is
    scored (the default) or gets NULL too.
    """
    from modelport.registry import Registry
    from modelport.serve.trigger.install import score_kind
    from modelport.serve.trigger.worker import column_values

    registry = registry or Registry()
    version = registry.get(uri)
    predictor, _ = choice.load(registry, version, "row")
    signature = predictor.signature
    mapping = {n: n for n in signature.names} | dict(columns or {})

    def q(name: str, what: str = "column name") -> str:
        return identifier(name, "sqlite", what)

    t = q(table, "table name")
    have = [r[1] for r in connection.execute(f"PRAGMA main.table_info({t})")]
    if not have:
        raise UserError(f"no table {table!r} on this SQLite connection")
    missing = [c for c in [key, *mapping.values()] if c not in have]
    if missing:
        raise UserError(f"table {table!r} lacks column(s) {', '.join(missing)}: add them or "
                        "map model inputs with columns={'input': 'column'}")
    kind = score_kind(signature, predictor)
    names = list(mapping)
    rules = policy or FLAG

    def score_one(*values: Any) -> Any:
        try:
            checked = check(dict(zip(names, values, strict=True)), signature, rules,
                            unknown="ignore")
            outcome = score(predictor.run_checked, checked, predictor.empty_outputs)
            return column_values(outcome.outputs, kind)[0] if outcome.scored else None
        except Exception:  # noqa: BLE001 - an exception here would fail the app's insert
            log.exception("could not score a row inserted into %s", table)
            return None

    out, k = q(output_column, "output_column"), q(key, "key")
    fn = derived_name("modelport_score", table)
    connection.create_function(fn, len(names), score_one, deterministic=True)
    if output_column not in have:
        sql_type = "TEXT" if kind == "label" else "REAL"
        connection.execute(f"ALTER TABLE main.{t} ADD COLUMN {out} {sql_type}")
    args = ", ".join(f"NEW.{q(c)}" for c in mapping.values())
    body = f"UPDATE {t} SET {out} = {q(fn)}({args}) WHERE {k} = NEW.{k};"
    for event in on:
        if event not in EVENTS:
            raise UserError(f"on= takes {' and '.join(EVENTS)}; got {event!r}")
        trig = q(derived_name(f"modelport_attach_{event}", table))
        connection.execute(f"DROP TRIGGER IF EXISTS temp.{trig}")
        when = "INSERT" if event == "insert" else (
            "UPDATE OF " + ", ".join(q(c) for c in mapping.values()))
        connection.execute(f"CREATE TEMP TRIGGER {trig} AFTER {when} ON main.{t} "
                           f"BEGIN {body} END")
