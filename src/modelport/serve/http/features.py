"""Reading one entity's current features from a feature table, for ``/lookup?refresh=true``.

The feature table is a SQL URL with the table after ``#``
(``postgresql://127.0.0.1/test#customers``); the entity is found by the table's primary key
(``customer_id INTEGER PRIMARY KEY``). Only the model's input columns are read, so the
row can go straight to the signature check. Engines are kept per URL: a refresh is one
indexed query, not a new connection pool.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from modelport.errors import NotFound, UserError

if TYPE_CHECKING:
    from sqlalchemy import Engine, Table

_engines: dict[str, Any] = {}
_lock = threading.Lock()


def _table(url: str) -> tuple[Engine, Table]:
    from sqlalchemy import MetaData, Table

    from modelport.io.sinks import lookup_engine

    base, _, name = url.partition("#")
    if not name:
        raise UserError(f"--feature-table {base} names no table: add it after '#', e.g. "
                        f"{base}#customers")
    with _lock:
        if url not in _engines:
            engine = lookup_engine(base)
            schema, _, table = name.rpartition(".")
            _engines[url] = (engine, Table(table, MetaData(), autoload_with=engine,
                                           schema=schema or None))
        return _engines[url]


def read_features(url: str, entity: str, columns: list[str]) -> dict[str, list]:
    """The current values of ``columns`` for ``entity``, as one-row columns; NotFound when
    the table has no such entity (an id beyond what its key column can hold included), a
    UserError when the id cannot be one (text for a numeric key)."""
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from modelport.serve.lookup import key_value

    try:
        engine, table = _table(url)
        key = next(iter(table.primary_key.columns), None)
        if key is None:
            raise UserError(f"feature table {url.partition('#')[2]} has no primary key to "
                            "find an entity by")
        value = key_value(key, entity)
        row = None
        if value is not None:  # None: no row can hold that id (see key_value)
            present = [table.c[c] for c in columns if c in table.c]
            with engine.connect() as conn:
                try:
                    row = conn.execute(select(*present).where(key == value)).mappings().first()
                except OverflowError:  # a driver refusing a number its column cannot hold
                    row = None
    except SQLAlchemyError as exc:
        raise UserError(f"cannot read the feature table: {str(exc).splitlines()[0]}") from None
    if row is None:
        raise NotFound(f"no entity {entity!r} in the feature table")
    return {str(k): [v] for k, v in row.items()}
