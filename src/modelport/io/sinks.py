"""Where a batch job's scores go, chunk by chunk, so that a crash loses nothing and repeats nothing.

Every sink takes chunks in input order and commits each one on its own:

- :class:`FileSink` (``.parquet``, ``.csv``, ``.jsonl``) writes each chunk as a part file in a
  staging folder beside the output (``.scores.parquet.parts/``), each part written to a
  temporary name and renamed, so a part is either whole or absent. At the end the parts are
  joined into a temporary file that is renamed onto the output: a reader sees no file or
  the whole file, never half of one.
- :class:`SqlSink` fills a lookup table keyed by the id column (one row per entity: the
  scores, the model name and version, and ``scored_at``). A batch job's sink is *staged*:
  each chunk goes into a staging table of the job and is recorded in a progress table, in
  one transaction; :meth:`~SqlSink.finish` moves the staged rows into the lookup table in
  one transaction, so a job that fails half-way leaves the lookup table exactly as it was.
  Without staging (a stream's lookup store) each :meth:`~SqlSink.upsert` goes straight in.
  SQLite, PostgreSQL and MariaDB/MySQL are supported.

:meth:`Sink.start` says how many leading chunks a resumed job may skip: the parts already
renamed into place, or the chunks the progress table holds for the same job.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

from modelport.errors import UserError
from modelport.io.tables import URL_SCHEME, file_kind, first_line, redact

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.ipc
    import pyarrow.parquet as pq
    from numpy import ndarray
    from sqlalchemy import Engine, Select, Table
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.sql.dml import UpdateBase

PROGRESS_TABLE = "modelport_batch_progress"
#: the staging table of a job is this prefix and the start of the job's key
STAGE_PREFIX = "modelport_stage_"
#: seconds to wait before each retry of a chunk the database could not take (it was away
#: or busy); then the job stops, for ``--resume`` to finish it
RETRY_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)
#: staged part per output kind: Parquet outputs stage Arrow IPC parts, written and read back
#: many times faster than Parquet; the one Parquet encoding happens when the parts are joined
_EXT = {"parquet": "arrow", "csv": "csv", "jsonl": "jsonl"}


class Sink:
    """Takes scored chunks in order; each :meth:`write` is committed when it returns."""

    #: where the output is, for messages
    location: str = ""

    def start(self, schema: pa.Schema, resume: bool) -> int:
        """Prepare for writing ``schema``; return the number of chunks already committed."""
        raise NotImplementedError

    def write(self, index: int, table: pa.Table) -> None:
        """Commit chunk number ``index``."""
        raise NotImplementedError

    def committed(self, index: int) -> bool | None:
        """Every chunk up to ``index`` has been written (a sink may start joining them)."""
        return None

    def finish(self) -> str:
        """Make the output whole and visible; return its location."""
        return self.location

    def abandon(self) -> None:
        """The job failed: drop what :meth:`finish` would have made visible."""


class Refused(Exception):
    """Rows of a chunk the table would not take, by position, with the error of each; none
    of the chunk was written. Write the others again without them."""

    def __init__(self, rows: dict[int, BaseException]) -> None:
        super().__init__(f"{len(rows)} row(s) refused")
        self.rows = rows


def open_sink(dest: str | Path, job: str, *, id_column: str | None = None,
              model: str | None = None, version: int | None = None) -> Sink:
    """The sink for ``dest``: a file path or a SQL URL with the table after ``#`` (a
    staged lookup table: see :class:`SqlSink`).

    ``job`` identifies the job (model version, input, chunking): a resumed run only skips
    chunks committed by the same job.
    """
    text = str(dest)
    match = URL_SCHEME.match(text)
    if match and match["scheme"].lower() != "file":
        url, _, table = text.partition("#")
        if not table:
            raise UserError(f"{redact(text)} names no table: add it after '#', e.g. "
                            f"{redact(url)}#churn_scores")
        if not id_column:
            raise UserError(f"writing to the table {redact(text)} upserts one row per id: "
                            "name the id column with --id")
        return SqlSink(url, table, id_column, model or "", version or 0, job, staged=True)
    return FileSink(Path(text.removeprefix("file://")).expanduser(), job)


# -- files ---------------------------------------------------------------------------------

class FileSink(Sink):
    """Per-chunk part files in a staging folder, joined into one file at the end."""

    def __init__(self, path: Path, job: str) -> None:
        self.kind = file_kind(path)
        self.path = path
        self.location = str(path)
        self.job = job
        self.staging = path.parent / f".{path.name}.parts"
        self._schema: pa.Schema | None = None
        #: the output being joined from the parts, and how many parts it holds
        self._out: BinaryIO | None = None
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None
        self._joined = 0
        self._header = True

    def _part(self, index: int) -> Path:
        return self.staging / f"part-{index:06d}.{_EXT[self.kind]}"

    def part_path(self, index: int) -> Path:
        """Where chunk ``index`` is staged: a worker may write it there itself (with a
        :class:`PartWriter`), which commits it as :meth:`write` would."""
        return self._part(index)

    def start(self, schema: pa.Schema, resume: bool) -> int:
        self._schema = schema
        manifest = self.staging / "job.json"
        if resume and manifest.is_file():
            if json.loads(manifest.read_text()).get("job") != self.job:
                raise UserError(
                    f"the unfinished output in {self.staging} was made by a different job "
                    "(another model version, input or chunk size): run again without --resume"
                )
            done = 0
            while self._part(done).is_file():
                done += 1
            return done
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True)
        _atomic_write_bytes(manifest, json.dumps({"job": self.job}).encode())
        return 0

    def write(self, index: int, table: pa.Table) -> None:
        write_part(table, self._part(index), self.kind)

    def committed(self, index: int) -> None:
        """Chunks up to ``index`` are staged: join them into the output while the job goes on,
        so that :meth:`finish` has only the last ones left to join."""
        while self._joined <= index:
            self._join(self._part(self._joined))
            self._joined += 1

    def _open(self) -> BinaryIO:
        """Start the output, inside the staging folder: a resumed job starts it again from
        the parts."""
        import pyarrow.parquet as pq

        self._tmp = self.staging / f"output.{self.kind}.tmp"
        self._out = open(self._tmp, "wb")
        self._header = True
        if self.kind == "parquet":
            assert self._schema is not None  # set by start
            # dictionary encoding only pays for labels; on scores it costs time for nothing
            labels = [n for n in self._schema.names if n == "label"]
            self._writer = pq.ParquetWriter(self._out, self._schema, use_dictionary=labels)
        return self._out

    def _join(self, part: Path) -> None:
        import pyarrow.feather as feather

        out = self._out
        if out is None:
            out = self._open()
        if self.kind == "parquet":
            table = feather.read_table(part, memory_map=True)
            if table.schema != self._schema:
                table = table.cast(self._schema)
            assert self._writer is not None  # opened with the output
            self._writer.write_table(table)
            return
        with open(part, "rb") as fh:
            if self.kind == "csv" and not self._header:
                fh.readline()  # every part has the header; keep the first
            self._header = False
            shutil.copyfileobj(fh, out, 1 << 20)

    def finish(self) -> str:
        try:
            while self._part(self._joined).is_file():
                self.committed(self._joined)
            out = self._out
            if out is None:  # no chunk at all: an empty output
                out = self._open()
                if self.kind == "csv":
                    assert self._schema is not None  # set by start
                    out.write((",".join(f'"{n}"' for n in self._schema.names)
                              + "\n").encode())
            if self._writer is not None:
                self._writer.close()
            out.flush()
            os.fsync(out.fileno())
            out.close()
            assert self._tmp is not None  # set with the output
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abandon()
            raise
        shutil.rmtree(self.staging, ignore_errors=True)
        return self.location

    def abandon(self) -> None:
        """Stop joining after a failure; the staged parts stay for ``--resume``."""
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001  the half-joined output is dropped anyway
                pass
        if self._out is not None:
            self._out.close()
            assert self._tmp is not None  # set with the output
            Path(self._tmp).unlink(missing_ok=True)
        self._out = self._writer = None
        self._joined = 0

    def discard(self) -> None:
        """Drop the staged parts without making an output."""
        self.abandon()
        shutil.rmtree(self.staging, ignore_errors=True)


def write_part(table: pa.Table, path: Path, kind: str) -> None:
    """Write ``table`` to ``path`` as ``kind`` through a temporary file and a rename."""
    with PartWriter(path, kind) as part:
        part.write(table)


class PartWriter:
    """One part file written table by table into a temporary file, renamed into place by
    :meth:`close`: a part is whole or absent. Parquet outputs stage Arrow IPC parts."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path, self.kind = path, kind
        self.tmp = path.with_name(f".{path.name}.tmp")
        self._fh = open(self.tmp, "wb")
        self._writer: pyarrow.ipc.RecordBatchFileWriter | pyarrow.csv.CSVWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self.kind == "parquet":
            import pyarrow.ipc as ipc

            if self._writer is None:
                self._writer = ipc.new_file(self._fh, table.schema)
            self._writer.write_table(table)
        elif self.kind == "csv":
            import pyarrow.csv as csv

            if self._writer is None:
                self._writer = csv.CSVWriter(self._fh, table.schema)
            self._writer.write_table(table)
        else:
            self._fh.write(jsonl_bytes(table))

    def close(self) -> None:
        if self._writer is None and self.kind != "jsonl":
            raise ValueError("a part needs at least one table, even an empty one")
        if self._writer is not None:
            self._writer.close()
        self._fh.close()
        os.replace(self.tmp, self.path)

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self._fh.close()
            self.tmp.unlink(missing_ok=True)


def jsonl_bytes(table: pa.Table | list[dict[str, Any]]) -> bytes:
    """``table`` (an Arrow table, or a list of plain records) as JSON lines (missing values
    as null)."""
    if isinstance(table, list):
        return _records_jsonl(table)
    if not table.num_rows:
        return b""  # no pandas to load for nothing
    frame = table.to_pandas()
    if not len(frame):
        return b""
    text = frame.to_json(orient="records", lines=True, date_format="iso")
    return (text if text.endswith("\n") else text + "\n").encode()


def _records_jsonl(records: list[dict[str, Any]]) -> bytes:
    """Flat records (values: numbers, text, lists of text) as JSON lines, NaN as null; with
    orjson when it is installed (a warnings file may hold tens of thousands of rows), and
    the standard library for what orjson refuses (lone surrogates, integers beyond 64
    bits), which it writes escaped."""
    def plain(r: dict[str, Any]) -> bytes:
        return json.dumps({k: None if type(v) is float and v - v != 0.0 else v
                           for k, v in r.items()}, default=str).encode()

    try:
        import orjson
    except ImportError:
        return b"".join(plain(r) + b"\n" for r in records)
    out = []
    for r in records:
        try:
            out.append(orjson.dumps(r, default=str))
        except TypeError:
            out.append(plain(r))
    return b"".join(line + b"\n" for line in out)


def _atomic_write_bytes(path: Path, data: bytes, rename: bool = True) -> None:
    tmp = path.with_name(f".{path.name}.tmp") if rename else path
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    if rename:
        os.replace(tmp, path)


# -- SQL lookup tables ---------------------------------------------------------------------

class SqlSink(Sink):
    """A lookup table keyed by ``id_column``, filled chunk by chunk.

    ``staged`` (a batch job): each chunk is inserted into the job's staging table
    (:data:`STAGE_PREFIX` and the job key, beside the lookup table) with its row in the
    progress table, in one transaction, and :meth:`finish` moves the staged rows into the
    lookup table (the last row of each id wins) and forgets the job's progress, in one
    transaction: the lookup table changes once, at the end, or not at all. A job that
    stops keeps its staging table for ``--resume``; a new run of the same job replaces it.
    Not staged (a stream's lookup store): :meth:`upsert` writes straight into the table.
    """

    def __init__(self, url: str, table: str, id_column: str, model: str, version: int,
                 job: str, *, staged: bool = False) -> None:
        self.url = url
        self.location = redact(f"{url}#{table}")
        self.schema_name, _, self.table_name = table.rpartition(".")
        self.id_column = id_column
        self.model = model
        self.version = version
        self.job = job
        self.staged = staged
        self.engine = lookup_engine(url, create=True)
        self._table: Table | None = None
        self._progress: Table | None = None
        self._stage: Table | None = None

    def start(self, schema: pa.Schema, resume: bool) -> int:
        from sqlalchemy import delete, inspect, select
        from sqlalchemy.exc import SQLAlchemyError

        try:
            self._table, self._progress = self._ensure_tables(schema)
            if self.staged:
                self._stage = self._stage_table()
            with self.engine.begin() as conn:
                done = set() if not resume else {r[0] for r in conn.execute(
                    select(self._progress.c.chunk).where(self._progress.c.job == self.job))}
                if self._stage is not None and done and not inspect(conn).has_table(
                        self._stage.name, schema=self.schema_name or None):
                    done = set()  # the staged rows are gone: start over
                if not done:
                    conn.execute(delete(self._progress).where(self._progress.c.job == self.job))
            count = 0
            while count in done:
                count += 1
            if self._stage is not None:
                if count == 0:
                    self._stage.drop(self.engine, checkfirst=True)
                    self._stage.create(self.engine)
                else:  # rows of chunks after the resume point, should a crash have left any
                    with self.engine.begin() as conn:
                        conn.execute(delete(self._stage).where(
                            self._stage.c["_seq"] >= count << 32))
        except SQLAlchemyError as exc:
            raise UserError(f"cannot write to {self.location}: {first_line(exc)}") from None
        return count

    def _ensure_tables(self, schema: pa.Schema) -> tuple[Table, Table]:
        """The lookup and progress tables; a lookup table that exists must have the columns
        of these scores. A staged sink leaves a missing lookup table to :meth:`finish`."""
        from sqlalchemy import (
            Column,
            DateTime,
            Integer,
            MetaData,
            String,
            Table,
            inspect,
        )

        meta = MetaData(schema=self.schema_name or None)
        cols = [Column(self.id_column, _sql_type(schema.field(self.id_column).type, key=True),
                       primary_key=True, autoincrement=False)]
        for f in schema:
            if f.name != self.id_column:
                cols.append(Column(f.name, _sql_type(f.type)))
        cols += [Column("model", String(128)), Column("model_version", Integer),
                 Column("scored_at", DateTime(timezone=True))]
        table = Table(self.table_name, meta, *cols)
        progress = Table(
            PROGRESS_TABLE, meta,
            Column("job", String(64), primary_key=True),
            Column("chunk", Integer, primary_key=True, autoincrement=False),
            Column("rows", Integer),
            Column("committed_at", DateTime(timezone=True)),
        )
        insp = inspect(self.engine)
        if insp.has_table(self.table_name, schema=self.schema_name or None):
            have = {c["name"] for c in insp.get_columns(self.table_name,
                                                         schema=self.schema_name or None)}
            missing = [c.name for c in cols if c.name not in have]
            if missing:
                raise UserError(
                    f"the table {self.location} exists without column(s) {', '.join(missing)} "
                    "that these scores need (another model's lookup table?): write to a new "
                    "table, or drop this one"
                )
        progress.create(self.engine, checkfirst=True)
        if not self.staged:
            table.create(self.engine, checkfirst=True)
        return table, progress

    def _stage_table(self) -> Table:
        """The job's staging table: the lookup table's columns with the types the lookup
        table has (so a value it cannot hold is refused with its chunk, not at the end),
        and ``_seq``, each row's place in the input (chunk number, then position)."""
        from sqlalchemy import BigInteger, Column, MetaData, Table, inspect

        assert self._table is not None  # set by start
        types = {c.name: c.type for c in self._table.columns}
        insp = inspect(self.engine)
        if insp.has_table(self.table_name, schema=self.schema_name or None):
            for c in insp.get_columns(self.table_name, schema=self.schema_name or None):
                if c["name"] in types:
                    types[c["name"]] = c["type"]
        cols = [Column(name, t, nullable=name != self.id_column) for name, t in types.items()]
        return Table(STAGE_PREFIX + self.job[:24], MetaData(schema=self.schema_name or None),
                     Column("_seq", BigInteger, primary_key=True, autoincrement=False), *cols)

    def write(self, index: int, table: pa.Table) -> None:
        """Commit chunk ``index`` (staged) with its progress row. A chunk the database could
        not take (away or busy) is tried again after :data:`RETRY_SECONDS`; rows it refuses
        (a value its columns cannot hold) raise :class:`Refused`, nothing written."""
        if not self.staged:
            self.upsert(table, progress={"job": self.job, "chunk": index})
            return
        from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

        from modelport.scoring.isolation import is_transient, isolate

        rows = self._rows(table)
        for i, row in enumerate(rows):
            row["_seq"] = (index << 32) | i
        progress = {"job": self.job, "chunk": index, "rows": len(rows)}
        for wait in (*RETRY_SECONDS, None):
            try:
                self._commit(rows, progress)
                return
            except SQLAlchemyError as exc:
                if isinstance(exc, DataError | IntegrityError):
                    break
                if wait is None or not is_transient(exc):
                    raise self._failed(exc) from None
                time.sleep(wait)

        def probe(positions: ndarray) -> None:
            assert self._stage is not None  # a staged sink's, set by start
            with self.engine.connect() as conn:
                with conn.begin() as tx:
                    conn.execute(self._stage.insert(), [rows[i] for i in positions])
                    tx.rollback()

        try:
            # only values can be refused row by row; anything else is the table's problem
            _, refused = isolate(probe, len(rows), transient=lambda exc: not isinstance(
                exc, DataError | IntegrityError))
        except SQLAlchemyError as exc:
            raise self._failed(exc) from None
        if refused:
            raise Refused(refused)
        try:  # no row is refused alone: whatever failed has passed
            self._commit(rows, progress)
        except SQLAlchemyError as exc:
            raise self._failed(exc) from None

    def _rows(self, table: pa.Table) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        rows = table.to_pylist()
        for row in rows:
            row["model"] = self.model
            row["model_version"] = self.version
            row["scored_at"] = now
        return rows

    def _commit(self, rows: list[dict[str, Any]], progress: dict[str, Any]) -> None:
        assert self._stage is not None and self._progress is not None  # set by start
        with self.engine.begin() as conn:
            if rows:
                conn.execute(self._stage.insert(), rows)
            conn.execute(self._progress.insert(), [{**progress,
                                                    "committed_at": datetime.now(UTC)}])

    def _failed(self, exc: BaseException) -> UserError:
        return UserError(f"cannot write to {self.location}: {first_line(exc)}; when it is "
                         "fixed, run the job again with --resume to finish it")

    def committed(self, chunk: int) -> bool:
        """Whether this job's chunk ``chunk`` (a batch id) is already committed: the
        progress row :meth:`upsert` writes in the same transaction as its scores is there.
        :meth:`start` first."""
        from sqlalchemy import select

        assert self._progress is not None  # set by start
        with self.engine.connect() as conn:
            return conn.execute(select(self._progress.c.chunk).where(
                (self._progress.c.job == self.job) & (self._progress.c.chunk == chunk))
            ).first() is not None

    def upsert(self, table: pa.Table, *, version: int | None = None,
               progress: dict[str, Any] | None = None) -> None:
        """Upsert the scores in ``table`` (scored by ``version``, default the sink's) into the
        lookup table in one transaction, with the ``progress`` row when given. :meth:`start`
        first."""
        from sqlalchemy.exc import SQLAlchemyError

        now = datetime.now(UTC)
        rows = table.to_pylist()
        for row in rows:
            row["model"] = self.model
            row["model_version"] = self.version if version is None else version
            row["scored_at"] = now
        try:
            with self.engine.begin() as conn:
                if rows:
                    conn.execute(self._upsert(), rows)
                if progress is not None:
                    assert self._progress is not None  # set by start
                    conn.execute(self._progress.insert(), [{
                        **progress, "rows": len(rows), "committed_at": now}])
        except SQLAlchemyError as exc:
            raise UserError(f"cannot write to {self.location}: {first_line(exc)}") from None

    def _upsert(self, rows_from: Select | None = None) -> UpdateBase:
        """The upsert into the lookup table, of parameters or of the select ``rows_from``."""
        assert self._table is not None  # set by start
        dialect = self.engine.dialect.name
        names = [c.name for c in self._table.columns]
        updated = [n for n in names if n != self.id_column]
        if dialect in ("postgresql", "sqlite"):
            stmt: postgresql.Insert | sqlite.Insert
            if dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as postgresql_insert

                stmt = postgresql_insert(self._table)
            else:
                from sqlalchemy.dialects.sqlite import insert as sqlite_insert

                stmt = sqlite_insert(self._table)
            if rows_from is not None:
                stmt = stmt.from_select(names, rows_from)
            return stmt.on_conflict_do_update(
                index_elements=[self.id_column],
                set_={c: stmt.excluded[c] for c in updated})
        if dialect in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import insert

            mysql_stmt = insert(self._table)
            if rows_from is not None:
                mysql_stmt = mysql_stmt.from_select(names, rows_from)
            return mysql_stmt.on_duplicate_key_update(
                {c: mysql_stmt.inserted[c] for c in updated})
        raise UserError(f"cannot upsert into {self.location}: {dialect} is not supported; use "
                        "SQLite, PostgreSQL or MariaDB/MySQL")

    def finish(self) -> str:
        """Staged: move the job's rows into the lookup table (created if missing) and forget
        its progress, in one transaction; then drop the staging table."""
        if self._stage is not None:
            self._move()
        self.engine.dispose()
        return self.location

    def _move(self) -> None:
        from sqlalchemy import delete, func, select
        from sqlalchemy.exc import SQLAlchemyError

        stage, key = self._stage, self.id_column
        assert stage is not None and self._table is not None and self._progress is not None
        names = [c.name for c in self._table.columns]
        latest = select(func.max(stage.c["_seq"])).group_by(stage.c[key])
        rows = select(*[stage.c[n] for n in names]).where(stage.c["_seq"].in_(latest))
        try:
            self._table.create(self.engine, checkfirst=True)
            with self.engine.begin() as conn:
                if self.engine.dialect.name in ("mysql", "mariadb"):
                    # MySQL names the inserted row differently in INSERT ... SELECT: replace
                    # the rows instead, in the same transaction
                    conn.execute(delete(self._table).where(
                        self._table.c[key].in_(select(stage.c[key]))))
                    conn.execute(self._table.insert().from_select(names, rows))
                else:
                    conn.execute(self._upsert(rows))
                conn.execute(delete(self._progress).where(self._progress.c.job == self.job))
        except SQLAlchemyError as exc:
            raise UserError(f"cannot move the scores into {self.location}: {first_line(exc)}; "
                            "the table is as it was before the job: fix it and run the job "
                            "again with --resume") from None
        try:
            # after the commit, since MySQL commits on DDL; a staging table a crash leaves
            # here is replaced by the next run of the job
            stage.drop(self.engine, checkfirst=True)
        except SQLAlchemyError:
            pass

    def abandon(self) -> None:
        """The job stopped: the lookup table is untouched; the staged chunks stay for
        ``--resume``."""
        self.engine.dispose()


def lookup_engine(url: str, create: bool = False) -> Engine:
    """A SQLAlchemy engine for a lookup-table database (:func:`modelport.io.urls.engine`).

    A SQLite file is created when ``create`` (a job writing its first scores), and must
    exist otherwise.
    """
    from modelport.io.urls import engine

    return engine(url, sqlite="create" if create else "exists")


def _sql_type(arrow_type: pa.DataType, key: bool = False) -> Any:
    import pyarrow as pa
    from sqlalchemy import BigInteger, Boolean, Float, String, Text
    from sqlalchemy.dialects import mysql

    if pa.types.is_integer(arrow_type):
        return BigInteger()
    if pa.types.is_floating(arrow_type):
        # MySQL's FLOAT is single precision; scores need double
        return Float(53).with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")
    if pa.types.is_boolean(arrow_type):
        return Boolean()
    # keys and labels: a bounded string indexes everywhere (MySQL cannot index TEXT)
    return String(255) if key else Text().with_variant(String(255), "mysql", "mariadb")
