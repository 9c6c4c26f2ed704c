"""Reading a table chunk by chunk, in bounded memory, with the same chunk boundaries every time.

A source is named like in :mod:`modelport.io.tables`: a ``.csv`` (or ``.csv.gz``),
``.parquet`` or ``.jsonl`` file, a folder of Parquet files, a SQL table
(``sqlite:///app.db#customers``), or a SQL query, either as ``{"url": ..., "query": ...}`` or
with the query after ``#`` (``postgresql://127.0.0.1/test#SELECT * FROM customers``).

:func:`open_source` gives a :class:`ChunkSource` whose :meth:`~ChunkSource.chunks` yields
Arrow tables of exactly ``chunk_rows`` rows (the last one shorter). Chunk ``i`` always holds
rows ``i * chunk_rows`` up to ``(i + 1) * chunk_rows`` of the input, so a resumed job can skip
the chunks it already committed: Parquet skips whole row groups without reading them, a SQL
table is read in the order of its id column with an offset, other sources read and drop the
rows they skip. Nothing reads a whole file: Parquet goes row group by row group, CSV through
pyarrow's streaming reader, JSONL line by line, SQL through a server-side cursor.

Sources of records (JSONL, SQL) can hold what no Arrow column can: a list or an object
among numbers and strings, a record that lacks a field, text that is not Unicode (a lone
surrogate, which JSON can escape). Such a value is kept as text and the row is named in
the chunk's :func:`reader_rejects`, for the job to reject that row alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import UserError
from modelport.io.tables import URL_SCHEME, connect, describe, file_kind, first_line, redact

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.csv
    from sqlalchemy.sql.expression import Executable

    from modelport.io.tables import Source

#: a ``#fragment`` that starts like this is a query, not a table name
_QUERY = re.compile(r"^\s*(select|with)\s", re.IGNORECASE)
#: CSV bytes pyarrow parses at a time (chunks are cut to size after parsing)
_CSV_BLOCK = 8 << 20


#: rows a Parquet source reads for the signature check before a job starts
_HEAD_ROWS = 2048
#: where a chunk carries the rows its reader found unusable (see :func:`reader_rejects`)
_REJECTS_KEY = b"modelport.rejects"
#: records a JSONL source reads to learn its field names
_NAMES_FROM = 1000


class ChunkSource:
    """A table read chunk by chunk; subclasses know one kind of storage."""

    #: a password-free name for messages
    name: str = ""
    #: whether values arrive as text (CSV, JSON) and numbers may need parsing
    text: bool = False

    def __init__(self, chunk_rows: int, columns: Sequence[str] | None) -> None:
        if chunk_rows < 1:
            raise UserError(f"--chunk-rows must be at least 1, got {chunk_rows}")
        self.chunk_rows = int(chunk_rows)
        self.columns = list(columns) if columns is not None else None

    def column_names(self) -> list[str]:
        """Every column the source has, in its order."""
        raise NotImplementedError

    def total_rows(self) -> int | None:
        """The number of rows when it is cheap to know, else None."""
        return None

    def chunks(self, skip: int = 0) -> Iterator[Any]:
        """Arrow tables of ``chunk_rows`` rows, starting at chunk number ``skip``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source holds between chunks (a SQL source its connections;
        a file source opens its file per read and holds nothing)."""

    def head(self, numbers: Sequence[str] = ()) -> Any | None:
        """The rows a job checks against the model's signature before it writes anything
        (the first chunk; None for an empty source). ``numbers`` are the columns that must
        hold numbers."""
        return next(iter(self.chunks(0)), None)

    def check_columns(self, wanted: Sequence[str]) -> None:
        """Raise a :class:`UserError` naming the columns of ``wanted`` the source lacks."""
        have = self.column_names()
        missing = [c for c in wanted if c not in have]
        if missing:
            raise UserError(
                f"{self.name} has no column(s) {', '.join(map(repr, missing))} that the model "
                f"needs; its columns are: {', '.join(have)}"
            )

    def _cut(self, batches: Iterator[Any], skip_rows: int) -> Iterator[Any]:
        """Re-cut a stream of record batches into tables of exactly ``chunk_rows`` rows."""
        import pyarrow as pa

        pending: list = []
        held = 0
        for batch in _dropping(batches, skip_rows):
            while batch.num_rows:
                take = min(batch.num_rows, self.chunk_rows - held)
                pending.append(batch.slice(0, take))
                held += take
                batch = batch.slice(take)
                if held == self.chunk_rows:
                    yield pa.Table.from_batches(pending).combine_chunks()
                    pending, held = [], 0
        if held:
            yield pa.Table.from_batches(pending).combine_chunks()


def _is_text(t: pa.DataType) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _dropping(batches: Iterator[Any], rows: int) -> Iterator[Any]:
    """``batches`` without their first ``rows`` rows."""
    for batch in batches:
        if rows:
            if batch.num_rows <= rows:
                rows -= batch.num_rows
                continue
            batch = batch.slice(rows)
            rows = 0
        yield batch


def open_source(source: Source, chunk_rows: int = 100_000, columns: Sequence[str] | None = None, *,
                order_by: str | None = None, numbers: Sequence[str] = (),
                text_columns: Sequence[str] = (),
                dictionaries: Sequence[str] = ()) -> ChunkSource:
    """A :class:`ChunkSource` over ``source`` reading only ``columns`` (all when None).

    ``order_by`` names a column that fixes the row order of a SQL table (the id column),
    so chunk boundaries survive a restart. For CSV, ``numbers`` are read as float64 whatever
    the first rows look like (a column of whole numbers may hold a fraction further down),
    and ``text_columns`` as strings (categories such as ``"01"``, or numbers to be parsed
    value by value so that a bad one can be rejected alone). Parquet reads the string
    columns named in ``dictionaries`` dictionary-encoded, as they are stored, so that each
    distinct string is built once per chunk rather than once per row.
    """
    if isinstance(source, Mapping):
        url, query = source.get("url"), source.get("query")
        if not url or not query or set(source) - {"url", "query"}:
            raise UserError(
                f"a query source is {{url, query}}, got keys {sorted(source)}: e.g. "
                "{url: 'postgresql://127.0.0.1/test', query: 'SELECT * FROM customers'}"
            )
        return SqlSource(str(url), None, str(query), chunk_rows, columns, None)
    text = str(source)
    match = URL_SCHEME.match(text)
    if match and match["scheme"].lower() != "file":
        url, _, fragment = text.partition("#")
        if not fragment:
            raise UserError(
                f"{redact(text)} names no table: add it after '#', e.g. {redact(url)}#customers "
                f"(or a query: {redact(url)}#SELECT * FROM customers)"
            )
        if _QUERY.match(fragment):
            return SqlSource(url, None, fragment, chunk_rows, columns, None)
        return SqlSource(url, fragment, None, chunk_rows, columns, order_by)
    path = Path(text.removeprefix("file://")).expanduser()
    if path.is_dir():
        return ParquetSource(path, chunk_rows, columns, dictionaries)
    if not path.exists():
        raise UserError(f"cannot read {path.absolute()}: no such file or folder; check the path")
    kind = file_kind(path)
    if kind == "parquet":
        return ParquetSource(path, chunk_rows, columns, dictionaries)
    if kind == "csv":
        return CsvSource(path, chunk_rows, columns, numbers, text_columns)
    return JsonlSource(path, chunk_rows, columns)


# -- Parquet -------------------------------------------------------------------------------

class ParquetSource(ChunkSource):
    """A Parquet file or a folder of them (read in sorted path order)."""

    def __init__(self, path: Path, chunk_rows: int, columns: Sequence[str] | None,
                 dictionaries: Sequence[str] = ()) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        super().__init__(chunk_rows, columns)
        self.name = str(path)
        files = [path]
        if path.is_dir():
            # hidden and underscore files are writers' temporaries and markers (_SUCCESS...)
            files = [f for f in sorted(path.rglob("*.parquet"))
                     if not any(p.startswith((".", "_")) for p in f.relative_to(path).parts)]
        if not files:
            raise UserError(f"the folder {path} holds no .parquet files: point at a file, or at "
                            "a folder of Parquet files")
        try:
            # pre_buffer would read every selected row group ahead and keep it: memory that
            # grows with the file instead of with the chunk
            self._dictionaries = [_strings_of(f, dictionaries) for f in files]
            self._files = [pq.ParquetFile(f, pre_buffer=False, read_dictionary=d)
                           for f, d in zip(files, self._dictionaries, strict=True)]
        except (pa.ArrowInvalid, OSError) as exc:
            raise UserError(f"cannot read {path} as Parquet: {first_line(exc)}; check it is a "
                            "Parquet file (or a folder of them)") from None
        self._paths = files

    def column_names(self) -> list[str]:
        return list(self._files[0].schema_arrow.names)

    def total_rows(self) -> int:
        return sum(f.metadata.num_rows for f in self._files)

    def chunks(self, skip: int = 0) -> Iterator[Any]:
        return self._cut(self._batches(skip * self.chunk_rows), 0)

    def head(self, numbers: Sequence[str] = ()) -> Any | None:
        """The first rows, at most _HEAD_ROWS: a Parquet column's type is the file's, so they
        show what the first chunk would (reading a whole chunk took tens of ms). A column of
        ``numbers`` stored as text is parsed value by value: then the whole first chunk."""
        import pyarrow as pa

        schema = self._files[0].schema_arrow
        if any(n in schema.names and _is_text(schema.field(n).type) for n in numbers):
            return super().head(numbers)
        batch = next(self._batches(0, min(self.chunk_rows, _HEAD_ROWS)), None)
        return None if batch is None else pa.Table.from_batches([batch])

    def pieces(self, skip: int = 0) -> Iterator[Piece]:
        """The input as :class:`Piece` s of whole row groups, starting at piece ``skip``.

        Consecutive row groups of a file are joined up to ``chunk_rows`` rows; a row group
        larger than that is a piece of its own, read in batches of ``chunk_rows``. The cut
        depends only on the files' row groups and ``chunk_rows``, so a resumed job finds
        the same pieces.
        """
        columns = tuple(self.columns) if self.columns is not None else None
        first = 0
        for index, (path, groups, dictionaries, rows) in enumerate(self._spans()):
            if index >= skip:
                yield Piece(index, str(path), groups, first, rows, columns, dictionaries,
                            self.chunk_rows)
            first += rows

    def _spans(self) -> Iterator[tuple[Path, tuple[int, ...], tuple[str, ...] | None, int]]:
        """(file, row groups, dictionary columns, rows) of every piece, in order."""
        for path, f, read_dictionary in zip(self._paths, self._files, self._dictionaries,
                                            strict=True):
            meta = f.metadata
            dictionaries = tuple(read_dictionary or ()) or None
            groups: list[int] = []
            rows = 0
            for g in range(meta.num_row_groups):
                n = meta.row_group(g).num_rows
                if groups and rows + n > self.chunk_rows:
                    yield path, tuple(groups), dictionaries, rows
                    groups, rows = [], 0
                groups.append(g)
                rows += n
            if groups:
                yield path, tuple(groups), dictionaries, rows

    def rows_before(self, piece_index: int) -> int:
        """How many input rows the pieces before ``piece_index`` hold."""
        for p in self.pieces(piece_index):
            return p.first_row
        return self.total_rows()

    def _batches(self, skip_rows: int, batch_rows: int | None = None) -> Iterator[Any]:
        """Record batches of ``batch_rows`` rows (default: a chunk's, at least 1,024)
        after the first ``skip_rows``, every file in turn."""
        import pyarrow as pa

        for path, f in zip(self._paths, self._files, strict=True):
            meta = f.metadata
            if skip_rows >= meta.num_rows:
                skip_rows -= meta.num_rows
                continue
            groups: list[int] = []
            for g in range(meta.num_row_groups):
                n = meta.row_group(g).num_rows
                if skip_rows >= n and not groups:
                    skip_rows -= n  # a whole row group before the resume point: never read
                    continue
                groups.append(g)
            try:
                size = batch_rows or max(self.chunk_rows, 1024)
                yield from _dropping(f.iter_batches(batch_size=size, row_groups=groups,
                                                    columns=self.columns),
                                     skip_rows)
                skip_rows = 0  # the groups read held more rows than were left to skip
            except (pa.ArrowInvalid, OSError) as exc:
                raise UserError(f"cannot read {path} as Parquet: {first_line(exc)}") from None


@dataclass(frozen=True)
class Piece:
    """Whole row groups of one Parquet file, which a worker process reads by itself.

    Handing a worker the place of its rows rather than the rows spares this process the
    reading and the copy into the worker: the job then reads in every worker at once.
    """

    index: int
    path: str
    row_groups: tuple[int, ...]
    #: the position of the piece's first row in the whole input
    first_row: int
    rows: int
    columns: tuple[str, ...] | None
    dictionaries: tuple[str, ...] | None
    batch_rows: int

    def tables(self) -> Iterator[Any]:
        """The piece's rows as Arrow tables of at most ``batch_rows`` rows."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            f = pq.ParquetFile(self.path, pre_buffer=False,
                               read_dictionary=list(self.dictionaries or ()) or None)
            for batch in f.iter_batches(batch_size=self.batch_rows,
                                        row_groups=list(self.row_groups),
                                        columns=list(self.columns) if self.columns else None,
                                        use_threads=False):
                yield pa.Table.from_batches([batch])
        except (pa.ArrowInvalid, OSError) as exc:
            raise UserError(f"cannot read {self.path} as Parquet: {first_line(exc)}") from None


def _strings_of(path: Path, names: Sequence[str]) -> list[str] | None:
    """Which of ``names`` are string columns of the Parquet file at ``path``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not names:
        return None
    schema = pq.read_schema(path)
    return [n for n in names if n in schema.names
            and (pa.types.is_string(schema.field(n).type)
                 or pa.types.is_large_string(schema.field(n).type))] or None


# -- CSV -----------------------------------------------------------------------------------

class CsvSource(ChunkSource):
    """A CSV file read by pyarrow's streaming reader."""

    text = True

    def __init__(self, path: Path, chunk_rows: int, columns: Sequence[str] | None,
                 numbers: Sequence[str], text_columns: Sequence[str]) -> None:
        super().__init__(chunk_rows, columns)
        self.name = str(path)
        self._path = path
        self._numbers = set(numbers)
        self._text = set(text_columns)
        self._header: list[str] | None = None

    def column_names(self) -> list[str]:
        if self._header is None:
            import pyarrow as pa
            import pyarrow.csv as csv

            try:
                reader = csv.open_csv(self._path, read_options=csv.ReadOptions(
                    block_size=1 << 16))
                self._header = list(reader.schema.names)
                reader.close()
            except (pa.ArrowInvalid, OSError) as exc:
                raise UserError(f"cannot read {self.name} as CSV: {first_line(exc)}; check "
                                "the file is well-formed") from None
        return self._header

    def chunks(self, skip: int = 0) -> Iterator[Any]:
        import pyarrow as pa
        import pyarrow.csv as csv

        names = self.column_names()
        wanted = self.columns if self.columns is not None else names
        convert = csv.ConvertOptions(
            include_columns=wanted,
            column_types={**{c: pa.float64() for c in wanted if c in self._numbers},
                          **{c: pa.string() for c in wanted if c in self._text}},
            strings_can_be_null=True,
        )
        try:
            reader = csv.open_csv(self._path, read_options=csv.ReadOptions(block_size=_CSV_BLOCK),
                                  convert_options=convert)
        except pa.ArrowInvalid as exc:
            raise self._error(exc) from None
        except OSError as exc:
            raise UserError(f"cannot read {self.name} as CSV: {first_line(exc)}") from None
        return self._cut(self._guarded(reader), skip * self.chunk_rows)

    def _guarded(self, reader: pyarrow.csv.CSVStreamingReader) -> Iterator[Any]:
        import pyarrow as pa

        try:
            yield from reader
        except pa.ArrowInvalid as exc:
            raise self._error(exc) from None

    def _error(self, exc: BaseException) -> UserError:
        """pyarrow's message, with the column named rather than numbered."""
        text = first_line(exc)
        names = self.column_names()
        found = re.search(r"CSV column #(\d+)", text)
        if found and int(found[1]) < len(names):
            text = text.replace(found[0], f"column {names[int(found[1])]!r}")
        return UserError(f"cannot read {self.name}: {text}; fix the value, or use "
                         "--on-error reject to set such rows aside")


# -- JSONL ---------------------------------------------------------------------------------

class JsonlSource(ChunkSource):
    """A file of JSON objects, one per line; values of mixed types are kept as text."""

    text = True

    def __init__(self, path: Path, chunk_rows: int, columns: Sequence[str] | None) -> None:
        super().__init__(chunk_rows, columns)
        self.name = str(path)
        self._path = path
        self._names: list[str] | None = None

    def column_names(self) -> list[str]:
        """The fields of the first records, in the order they first appear: one record
        that lacks a field does not hide it."""
        if self._names is None:
            names: dict[str, None] = {}
            for count, (_, record) in enumerate(self._records(0)):
                names.update(dict.fromkeys(record))
                if count + 1 >= _NAMES_FROM:
                    break
            self._names = list(names)
        return self._names

    def _records(self, skip: int) -> Iterator[tuple[int, dict]]:
        with open(self._path, encoding="utf-8") as fh:
            count = 0
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                count += 1
                if count <= skip:
                    continue
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    raise UserError(f"{self.name} line {number} is not JSON ({exc}); each line "
                                    "must hold one JSON object") from None
                if not isinstance(record, dict):
                    raise UserError(f"{self.name} line {number} is not a JSON object; each line "
                                    "must hold one object such as {\"id\": 1, ...}")
                yield number, record

    def chunks(self, skip: int = 0) -> Iterator[Any]:
        names = self.columns if self.columns is not None else self.column_names()
        rows: list[dict] = []
        for _, record in self._records(skip * self.chunk_rows):
            rows.append(record)
            if len(rows) == self.chunk_rows:
                yield _table_from_records(names, rows)
                rows = []
        if rows:
            yield _table_from_records(names, rows)


# -- SQL -----------------------------------------------------------------------------------

class SqlSource(ChunkSource):
    """A SQL table (in id order when an id column is given) or a query, via a server-side cursor."""

    text = False

    def __init__(self, url: str, table: str | None, query: str | None, chunk_rows: int,
                 columns: Sequence[str] | None, order_by: str | None) -> None:
        super().__init__(chunk_rows, columns)
        self._url = url
        self._table = table
        self._query = query
        self._order_by = order_by
        self.name = redact(f"{url}#{table}") if table else describe({"url": url, "query": query})
        self._engine = connect(url, None)
        self._names: list[str] | None = None

    def column_names(self) -> list[str]:
        if self._names is None:
            from sqlalchemy import inspect
            from sqlalchemy.exc import SQLAlchemyError

            try:
                with self._engine.connect() as conn:
                    if self._table:
                        schema, _, name = self._table.rpartition(".")
                        insp = inspect(conn)
                        known = insp.get_table_names(schema=schema or None) + insp.get_view_names(
                            schema=schema or None)
                        if name not in known:
                            raise UserError(
                                f"no table {self._table!r} in {redact(self._url)} (tables there: "
                                f"{', '.join(sorted(known)[:20]) or 'none'}); check the name "
                                "after '#'")
                        self._names = [c["name"] for c in insp.get_columns(
                            name, schema=schema or None)]
                    else:
                        result = conn.execution_options(stream_results=True).execute(
                            self._select())
                        self._names = list(result.keys())
                        result.close()
            except SQLAlchemyError as exc:
                raise UserError(f"cannot read {self.name}: {first_line(exc)}") from None
        return self._names

    def total_rows(self) -> int | None:
        if not self._table:
            return None
        from sqlalchemy import func, select, table

        assert self._table is not None  # a source reads a query or a table
        schema, _, name = self._table.rpartition(".")
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(
                table(name, schema=schema or None))).scalar_one())

    def _select(self, offset: int = 0) -> Executable:
        from sqlalchemy import column, select, table, text

        if self._query is not None:
            return text(self._query)
        assert self._table is not None  # a source reads a query or a table
        schema, _, name = self._table.rpartition(".")
        cols = self.columns if self.columns is not None else self.column_names()
        q: Any = select(*[column(c) for c in cols]).select_from(
            table(name, schema=schema or None))
        if self._order_by:
            q = q.order_by(column(self._order_by))
        if offset:
            q = q.offset(offset)
        return q

    def chunks(self, skip: int = 0) -> Iterator[Any]:
        from sqlalchemy.exc import SQLAlchemyError

        # A table in id order can start at an offset; a query's rows are read and dropped.
        offset = skip * self.chunk_rows if self._table and self._order_by else 0
        drop = skip * self.chunk_rows - offset
        try:
            with self._engine.connect().execution_options(
                    stream_results=True, yield_per=self.chunk_rows) as conn:
                result = conn.execute(self._select(offset=offset))
                keys = list(result.keys())
                wanted = self.columns if self.columns is not None else keys
                index = [keys.index(c) for c in wanted]
                for part in result.partitions(self.chunk_rows):
                    if drop:
                        if len(part) <= drop:
                            drop -= len(part)
                            continue
                        part = part[drop:]
                        drop = 0
                    yield _table_from_rows(wanted, [[r[i] for r in part] for i in index])
        except SQLAlchemyError as exc:
            raise UserError(f"cannot read {self.name}: {first_line(exc)}") from None

    def close(self) -> None:
        self._engine.dispose()


def _table_from_records(names: Sequence[str], records: list[dict[str, Any]]) -> pa.Table:
    """An Arrow table from JSON objects; a record without one of ``names`` is a reader
    reject (a missing value is sent as null)."""
    wanted = set(names)
    rejects: dict[int, tuple[str, str, str]] = {}
    for i, record in enumerate(records):
        if not record.keys() >= wanted:
            absent = next(n for n in names if n not in record)
            rejects[i] = (absent, "missing_field",
                          f"record is missing field {absent!r}; send null for a missing value")
    return _table_from_rows(names, [[r.get(n) for r in records] for n in names], rejects)


def _table_from_rows(names: Sequence[str], columns: Sequence[list[Any]],
                     rejects: dict[int, tuple[str, str, str]] | None = None) -> pa.Table:
    """An Arrow table from Python values. A column Arrow cannot type as it is (mixed types,
    lists or objects, text that is not Unicode) is kept as text; a list or an object in it
    is a reader reject (see :func:`reader_rejects`)."""
    import pyarrow as pa

    rejects = dict(rejects or {})
    arrays = []
    for name, values in zip(names, columns, strict=True):
        try:
            array = pa.array(values)
            if not pa.types.is_nested(array.type):
                arrays.append(array)
                continue
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeEncodeError):
            pass
        arrays.append(pa.array([_as_text(v, name, i, rejects) for i, v in enumerate(values)],
                               type=pa.string()))
    table = pa.Table.from_arrays(arrays, names=list(names))
    if rejects:
        table = table.replace_schema_metadata({_REJECTS_KEY: json.dumps(
            {str(i): list(why) for i, why in sorted(rejects.items())}).encode()})
    return table


def _as_text(value: Any, name: str, row: int,
             rejects: dict[int, tuple[str, str, str]]) -> str | None:
    """One value of a column kept as text: None for a missing one (NaN included)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, dict | list):
        kind = "a list" if isinstance(value, list) else "an object"
        rejects.setdefault(row, (name, "wrong_type",
                                 f"field {name!r} must be a number, a string or null, got "
                                 f"{kind}"))
        return json.dumps(value)  # escapes what is not ASCII: always valid text
    text = value if isinstance(value, str) else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # a lone surrogate (JSON can escape one) is no character: no column, file or model
        # holds it as it is, and spelling it otherwise would score another value
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        shown = text if len(text) <= 40 else text[:40] + "..."
        rejects.setdefault(row, (name, "not_text",
                                 f"field {name!r} holds text that is not Unicode ({shown!r}: "
                                 "a lone surrogate); send UTF-8 text"))
    return text


def reader_rejects(table: pa.Table) -> dict[int, tuple[str, str, str]]:
    """The rows of a chunk its reader found unusable, by position: ``(field, code,
    message)`` for a record that lacks a field, holds a list or an object where a number or
    a string belongs, or text that is not Unicode. Empty for columnar sources (Parquet,
    CSV), which cannot hold them."""
    metadata = table.schema.metadata
    found = metadata.get(_REJECTS_KEY) if metadata else None
    if not found:
        return {}
    return {int(i): tuple(why) for i, why in json.loads(found).items()}
