"""Reading and writing whole tables named by a path or a URL.

A source is one of:

- a file: ``customers.csv`` (also ``.csv.gz``), ``customers.parquet``, ``events.jsonl``
  (or ``.ndjson``), or a folder of Parquet files;
- a SQL table: a SQLAlchemy URL with the table after ``#``, such as
  ``sqlite:///app.db#customers`` or ``postgresql://127.0.0.1/test#customers``
  (``postgresql://`` means the psycopg 3 driver; ``#schema.table`` names a schema);
- a SQL query: ``{"url": "postgresql://127.0.0.1/test", "query": "SELECT ..."}``.

Every mistake a user can make (a missing file, an unknown extension, a missing table or
column, a malformed URL) raises a :class:`~modelport.errors.UserError` that names the
source and says how to fix it. Passwords in URLs are never repeated in messages.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import UserError
from modelport.io.urls import URL_SCHEME, first_line, redact, scrubbed

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Engine

__all__ = ["URL_SCHEME", "connect", "describe", "file_kind", "first_line", "read_table",
           "redact", "scrubbed", "write_table"]

FILE_KINDS = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle",
                "duckdb")
_STREAM_SCHEMES = ("redis", "nats", "amqp", "amqps", "mqtt", "mqtts", "kafka")

Source = str | Path | Mapping[str, Any]


def read_table(source: Source, columns: Sequence[str] | None = None, *,
               base: str | Path | None = None) -> pd.DataFrame:
    """Read a whole table from a file, a folder of Parquet files or a SQL table or query.

    ``columns`` keeps only those columns, in that order (a missing one is an error naming
    it). A relative file path, or the file of a relative ``sqlite:///`` URL, is taken from
    ``base`` when given (a spec file's folder), else from the working directory.
    """
    if isinstance(source, Mapping):
        return _read_query(source, columns)
    text = str(source)
    match = URL_SCHEME.match(text)
    if match and match["scheme"].lower() != "file":
        return _read_sql_table(text, match["scheme"].lower(), columns, base)
    if match:
        text = text[len("file://"):]
    return _read_file(_resolve(Path(text), base), columns)


def write_table(frame: pd.DataFrame, dest: str | Path) -> Path:
    """Write ``frame`` to a ``.csv``, ``.parquet`` or ``.jsonl`` file, atomically.

    The table is written to a temporary file in the destination folder and renamed into
    place, so a reader never sees half a file. Missing folders are created.
    """
    text = str(dest)
    if URL_SCHEME.match(text) and not text.startswith("file://"):
        raise UserError(
            f"cannot write a table to {redact(text)}: write_table writes files; give a path "
            f"ending in {', '.join(sorted(FILE_KINDS))}"
        )
    path = Path(text.removeprefix("file://"))
    kind = file_kind(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if kind == "parquet":
            frame.to_parquet(tmp, index=False)
        elif kind == "csv":
            frame.to_csv(tmp, index=False, compression="gzip" if text.endswith(".gz") else None)
        else:
            frame.to_json(tmp, orient="records", lines=True, date_format="iso")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def describe(source: Source) -> str:
    """A short, password-free name for ``source``, for messages and lineage."""
    if isinstance(source, Mapping):
        query = " ".join(str(source.get("query", "")).split())
        return f"{redact(str(source.get('url', '')))} query {query[:80]!r}"
    return redact(str(source))


# -- files ---------------------------------------------------------------------------------

def _resolve(path: Path, base: str | Path | None) -> Path:
    path = path.expanduser()
    if base is not None and not path.is_absolute():
        path = Path(base) / path
    return path


def file_kind(path: Path) -> str:
    """``csv``, ``parquet`` or ``jsonl`` for a file name; a UserError for any other."""
    name = path.name.lower()
    for suffix in sorted(FILE_KINDS, key=len, reverse=True):
        if name.endswith(suffix):
            return FILE_KINDS[suffix]
    raise UserError(
        f"cannot tell the format of {path}: use a file ending in "
        f"{', '.join(sorted(FILE_KINDS))}, a folder of .parquet files, or a SQL URL with "
        "the table after '#' (e.g. sqlite:///app.db#customers)"
    )


def _read_file(path: Path, columns: Sequence[str] | None) -> pd.DataFrame:
    import pandas as pd

    if path.is_dir():
        parts = sorted(path.rglob("*.parquet"))
        if not parts:
            raise UserError(
                f"the folder {path} holds no .parquet files: point at a file, or at a folder "
                "of Parquet files"
            )
        return _read_parquet(path, columns)
    if not path.exists():
        raise UserError(f"cannot read {path.absolute()}: no such file or folder; check the path")
    kind = file_kind(path)
    if kind == "parquet":
        return _read_parquet(path, columns)
    try:
        if kind == "csv":
            frame = pd.read_csv(path)
        else:
            frame = pd.read_json(path, lines=True, orient="records")
    except pd.errors.EmptyDataError:
        raise UserError(f"cannot read {path}: the file is empty") from None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path} as {kind}: {first_line(exc)}; check the file "
                        "is well-formed") from None
    return _select(frame, columns, str(path))


def _read_parquet(path: Path, columns: Sequence[str] | None) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.dataset as ds

    try:
        dataset = ds.dataset(path, format="parquet")
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"cannot read {path} as Parquet: {first_line(exc)}; check it is a "
                        "Parquet file (or a folder of them)") from None
    if columns is not None:
        _check_columns(list(columns), dataset.schema.names, str(path))
    try:
        table = dataset.to_table(columns=list(columns) if columns is not None else None)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"cannot read {path} as Parquet: {first_line(exc)}") from None
    return table.to_pandas()


# -- SQL -----------------------------------------------------------------------------------

def connect(url: str, base: str | Path | None) -> Engine:
    """A SQLAlchemy engine on the existing database at ``url`` (a relative SQLite file
    taken from ``base``): :func:`modelport.io.urls.engine`."""
    from modelport.io.urls import engine

    return engine(url, base=base, sqlite="exists")


def _read_sql_table(text: str, scheme: str, columns: Sequence[str] | None,
                    base: str | Path | None) -> pd.DataFrame:
    import pandas as pd
    from sqlalchemy import column, inspect, select, table
    from sqlalchemy.exc import SQLAlchemyError

    if scheme in _STREAM_SCHEMES:
        raise UserError(
            f"{redact(text)} is a message stream, not a table: read a file or a SQL table "
            "here (e.g. sqlite:///app.db#customers)"
        )
    if scheme.split("+")[0] not in _SQL_SCHEMES:
        raise UserError(
            f"cannot read {redact(text)}: {scheme}:// is not a table source; use a file path "
            "or a SQL URL with the table after '#' (e.g. postgresql://127.0.0.1/test#customers)"
        )
    url, _, name = text.partition("#")
    if not name:
        raise UserError(
            f"{redact(text)} names no table: add it after '#', e.g. {redact(url)}#customers, "
            "or pass {url, query} to read a query"
        )
    schema, _, table_name = name.rpartition(".")
    engine = connect(url, base)
    where = redact(text)
    try:
        with engine.connect() as conn:
            names = inspect(conn).get_table_names(schema=schema or None)
            views = inspect(conn).get_view_names(schema=schema or None)
            if table_name not in names and table_name not in views:
                known = ", ".join(sorted(names)[:20]) or "none"
                raise UserError(
                    f"no table {name!r} in {redact(url)} (tables there: {known}); "
                    "check the name after '#'"
                )
            have = [c["name"] for c in inspect(conn).get_columns(table_name, schema=schema or None)]
            wanted = list(columns) if columns is not None else have
            _check_columns(wanted, have, where)
            query: Any = select(*[column(c) for c in wanted]).select_from(
                table(table_name, schema=schema or None))
            frame = pd.read_sql(query, conn)
    except (SQLAlchemyError, pd.errors.DatabaseError) as exc:
        raise UserError(f"cannot read {where}: {first_line(exc)}") from None
    finally:
        engine.dispose()
    return frame


def _read_query(source: Mapping[str, Any], columns: Sequence[str] | None) -> pd.DataFrame:
    import pandas as pd
    from sqlalchemy import text as sql_text
    from sqlalchemy.exc import SQLAlchemyError

    url, query = source.get("url"), source.get("query")
    unknown = set(source) - {"url", "query"}
    if not url or not query or unknown:
        raise UserError(
            f"a query source is {{url, query}}, got keys {sorted(source)}: e.g. "
            "{url: 'postgresql://127.0.0.1/test', query: 'SELECT * FROM customers'}"
        )
    where = describe(source)
    engine = connect(str(url), None)
    try:
        with engine.connect() as conn:
            frame = pd.read_sql(sql_text(str(query)), conn)
    except (SQLAlchemyError, pd.errors.DatabaseError) as exc:
        raise UserError(f"the query failed on {where}: {first_line(exc)}; check the SQL") from None
    finally:
        engine.dispose()
    return _select(frame, columns, where)


# -- columns -------------------------------------------------------------------------------

def _check_columns(wanted: list[str], have: list[str], where: str) -> None:
    missing = [c for c in wanted if c not in have]
    if missing:
        raise UserError(
            f"{where} has no column(s) {', '.join(map(repr, missing))}; "
            f"its columns are: {', '.join(have)}"
        )


def _select(frame: pd.DataFrame, columns: Sequence[str] | None, where: str) -> pd.DataFrame:
    if columns is None:
        return frame
    _check_columns(list(columns), [str(c) for c in frame.columns], where)
    return frame[list(columns)]
