"""Reading the latest stored score of one entity from a lookup table.

A batch job writing to a SQL URL (``modelport predict churn@production --input ...
--output postgresql://127.0.0.1/test#churn_scores --id customer_id``) keeps one row per id
with the scores, the model name and version and ``scored_at``. :func:`lookup` reads that
row back: what customer service sees when a customer calls, and what the web service
answers on its lookup route.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from modelport.errors import UserError

if TYPE_CHECKING:
    from sqlalchemy import Column

#: the lookup store used when none is given
STORE_ENV = "MODELPORT_LOOKUP_STORE"


def lookup(model: str, id: Any, store: str | None = None) -> dict[str, Any] | None:
    """The stored scores of entity ``id`` for ``model``, or None when it has none.

    ``model`` is a model name (``churn``), a version (``churn/3``: the row must come from
    that version) or ``churn@production`` (the alias only names the model here: the row
    holds whatever version last scored the entity). ``store`` is a SQL URL with the table
    after ``#``, e.g. ``sqlite:///scores.db#churn_scores`` (default: the
    ``MODELPORT_LOOKUP_STORE`` environment variable). Returns the row as a dict: the id,
    ``label``, ``score`` and ``proba_<class>`` (classifiers), ``value`` (regressors) or
    ``cluster``, with ``model``, ``model_version`` and ``scored_at`` (ISO 8601).
    """
    from sqlalchemy import MetaData, Table, select
    from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError

    from modelport.io.sinks import lookup_engine
    from modelport.io.tables import first_line, redact
    from modelport.uri import ModelURI

    store = store or os.environ.get(STORE_ENV)
    if not store:
        raise UserError(f"no lookup store given: pass store='sqlite:///scores.db#churn_scores' "
                        f"(--store on the command line) or set {STORE_ENV}")
    uri = ModelURI.parse(model)
    url, _, name = str(store).partition("#")
    if not name:
        raise UserError(f"{redact(str(store))} names no table: add it after '#', e.g. "
                        f"{redact(url)}#churn_scores")
    schema, _, table_name = name.rpartition(".")
    engine = lookup_engine(url)
    try:
        table = Table(table_name, MetaData(), autoload_with=engine, schema=schema or None)
        key = next(iter(table.primary_key.columns), None)
        if key is None or "model" not in table.c:
            raise UserError(f"{redact(str(store))} is not a lookup table written by modelport "
                            "predict (no id key or model column)")
        value = key_value(key, id)
        if value is None:  # no row can hold it: asking the database would only fail
            return None
        query = select(table).where(key == value).where(table.c.model == uri.name)
        if uri.version is not None:
            query = query.where(table.c.model_version == uri.version)
        with engine.connect() as conn:
            try:
                row = conn.execute(query).mappings().first()
            except OverflowError:  # a driver refusing a number its column type cannot hold
                return None
    except NoSuchTableError:
        raise UserError(f"no table {name!r} in {redact(url)}: score into it first with "
                        f"modelport predict ... --output '{redact(str(store))}' --id ID") from None
    except SQLAlchemyError as exc:
        raise UserError(f"cannot read {redact(str(store))}: {first_line(exc)}") from None
    finally:
        engine.dispose()
    if row is None:
        return None
    return {k: _plain(v) for k, v in row.items()}


#: the widest whole numbers a SQL integer key holds (BIGINT); drivers refuse larger ones
_KEY_RANGE = range(-2**63, 2**63)
_WHOLE = re.compile(r"[+-]?[0-9]+")


def key_value(column: Column[Any], value: Any) -> Any:
    """``value`` (often a string from a command line or URL) in the type of the key
    ``column``, or None when no row can hold it: a whole number beyond 64 bits for an
    integer key, which database drivers refuse to send rather than match nothing. Text
    that is not a whole number for an integer key is a :class:`UserError`.
    """
    python_type = None
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        pass
    if python_type is int and isinstance(value, str):
        text = value.strip()
        # int() also takes digits of other scripts and underscores; an id is ASCII digits
        if _WHOLE.fullmatch(text) is None:
            raise UserError(f"the id {value[:40]!r} is not a whole number, but the table's "
                            f"{column.name!r} column holds numbers")
        if len(text.lstrip("+-").lstrip("0")) > 25:  # far beyond 64 bits; spares int()
            return None
        value = int(text)
    if python_type is int and isinstance(value, int) and value not in _KEY_RANGE:
        return None
    if python_type is str and not isinstance(value, str):
        return str(value)
    return value


def _plain(value: Any) -> Any:
    from datetime import UTC, datetime
    from decimal import Decimal

    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:  # SQLite keeps no zone; scored_at is written in UTC
            value = value.replace(tzinfo=UTC)
        return value.isoformat()
    return value
