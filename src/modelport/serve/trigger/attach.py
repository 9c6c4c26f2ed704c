"""SQLite in-process: an application's own inserts scored synchronously, inside its statement.

:func:`attach` registers the model as an application-defined function on one connection and
creates a TEMP trigger that calls it. Both live only on that connection: other connections
(the sqlite3 shell, migrations, other processes) never see a trigger calling a function
they lack, so their inserts keep working — they are simply not scored by this one.
"""

from __future__ import annotations

import math
import sqlite3

from modelport.errors import UserError
from modelport.serve.trigger.spec import EVENTS, object_name


def attach(connection: sqlite3.Connection, uri: str, *, table: str, key: str,
           output_column: str, columns: dict[str, str] | None = None,
           on: tuple[str, ...] = EVENTS, registry=None) -> None:
    """Score rows that ``connection`` inserts into (or updates in) ``table`` with ``uri``.

    The score (positive-class probability of a binary classifier, else the value, cluster
    or label) is written into ``output_column``, added to the table when missing, in the
    same statement as the insert. ``columns`` maps model inputs to table columns where
    the names differ. A row the model cannot score gets NULL.
    """
    from modelport.registry import Registry
    from modelport.serve.trigger.install import _fastest, _worker_kind
    from modelport.serve.trigger.spec import Installation
    from modelport.serve.trigger.worker import _scores
    from modelport.signature import Signature

    registry = registry or Registry()
    version = registry.get(uri)
    signature = Signature.from_dict(version.signature)
    mapping = {n: n for n in signature.names} | dict(columns or {})
    have = [r[1] for r in connection.execute(f'PRAGMA table_info("{table}")')]
    if not have:
        raise UserError(f"no table {table!r} on this SQLite connection")
    missing = [c for c in [key, *mapping.values()] if c not in have]
    if missing:
        raise UserError(f"table {table!r} lacks column(s) {', '.join(missing)}: add them or "
                        "map model inputs with columns={'input': 'column'}")
    kind = _worker_kind(registry, version, signature)
    inst = Installation(table=table, key=key, output=output_column, model=uri, mode="worker",
                        columns=mapping, score_kind=kind)
    predictor = registry.load(version, format=_fastest(version))
    names = list(mapping)

    def score(*values):
        try:
            v = _scores(predictor, inst, {n: [x] for n, x in zip(names, values, strict=True)})[0]
        except Exception:  # noqa: BLE001 - an unscorable row gets NULL, the insert goes on
            return None
        return None if isinstance(v, float) and not math.isfinite(v) else v

    fn = object_name("modelport_score", table)
    connection.create_function(fn, len(names), score, deterministic=True)
    if output_column not in have:
        sql_type = "TEXT" if kind == "label" else "REAL"
        connection.execute(f'ALTER TABLE "{table}" ADD COLUMN "{output_column}" {sql_type}')
    args = ", ".join(f'NEW."{c}"' for c in mapping.values())
    body = (f'UPDATE "{table}" SET "{output_column}" = {fn}({args}) '
            f'WHERE "{key}" = NEW."{key}";')
    for event in on:
        trig = object_name(f"modelport_attach_{event}", table)
        connection.execute(f'DROP TRIGGER IF EXISTS temp."{trig}"')
        when = "INSERT" if event == "insert" else (
            "UPDATE OF " + ", ".join(f'"{c}"' for c in mapping.values()))
        connection.execute(f'CREATE TEMP TRIGGER "{trig}" AFTER {when} ON main."{table}" '
                           f"BEGIN {body} END")
