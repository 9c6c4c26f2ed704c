"""Spark Structured Streaming sources and sinks, as URLs: a folder of JSON, CSV or Parquet
files, Kafka, and Spark's rate source (a load generator); and the Spark session streaming
work runs in. Used by stream scoring (:mod:`modelport.serve.spark_stream`) and online
learning (:mod:`modelport.train.online.spark`).

A folder source reads the files already there and then each new one as it appears (write
a file under a name starting with ``.`` and rename it, so Spark never reads half of one);
``DIR?max_files_per_trigger=N`` bounds the files of one micro-batch, and Spark takes files
in the order of their modification times. JSON, CSV and Kafka values are read as text,
so that the checks parse each value and a bad one is its row's fault; a record that is
not an object lands in :data:`CORRUPT`. Each CSV file is read by its own header (see
:func:`csv_rows`), a row that does not fit it landing in :data:`CORRUPT` with the reason
in :data:`CORRUPT_REASON`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from modelport.errors import UserError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.csv
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.streaming import DataStreamReader, StreamingQuery
    from pyspark.sql.types import DataType, StructType

    from modelport.signature import Signature

#: the column Spark fills with a line that is no JSON object or CSV row
CORRUPT = "_corrupt_record"
#: why a CSV row is in :data:`CORRUPT` (a JSON or Kafka source has no such column)
CORRUPT_REASON = "_corrupt_reason"
#: a folder's rows: the file each came from, and that file's modification time
FILE, MTIME = "_file", "_file_mtime"
#: source options read from the query string of a folder or rate URL
_FOLDER_OPTIONS = ("max_files_per_trigger", "format")
_FILE_KINDS = {".json": "json", ".jsonl": "json", ".ndjson": "json", ".csv": "csv",
               ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class Endpoint:
    """A parsed ``--source``, ``--sink`` or ``--dead-letter``: ``kind`` is ``folder``,
    ``table``, ``kafka`` or ``rate``."""

    kind: str
    location: str
    options: dict[str, str] = field(default_factory=dict)
    format: str = "parquet"


def parse_source(url: str) -> Endpoint:
    """A ``--source``: a folder of JSON/CSV/Parquet files (``DIR?max_files_per_trigger=N``),
    ``kafka://HOST:9092?topic=NAME`` or ``rate://?rows_per_second=N``."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "kafka":
        return _kafka(url, "--source")
    if scheme == "rate":
        options = _options(url, ("rows_per_second", "num_partitions"), "--source")
        rate = options.get("rows_per_second", "1000")
        if not rate.isdigit() or int(rate) < 1:
            raise UserError(f"--source {url!r}: rows_per_second must be a whole number of at "
                            "least 1, e.g. rate://?rows_per_second=5000")
        return Endpoint("rate", url, options)
    path, options = _folder(url, "--source", _FOLDER_OPTIONS)
    if not path.is_dir():
        raise UserError(f"--source {path}: no such folder; a Spark stream reads a folder of "
                        "JSON, CSV or Parquet files (new files are scored as they arrive), "
                        "kafka://HOST:9092?topic=NAME or rate://?rows_per_second=N")
    value = options.get("max_files_per_trigger")
    if value is not None and (not value.isdigit() or int(value) < 1):
        raise UserError(f"--source {url!r}: max_files_per_trigger must be a whole number of at "
                        "least 1")
    fmt = options.pop("format", None) or _folder_kind(path)
    if fmt not in ("json", "csv", "parquet"):
        raise UserError(f"--source {url!r}: format {fmt!r} is not known; use json, csv or "
                        "parquet")
    return Endpoint("folder", str(path), options, fmt)


def parse_sink(url: str, what: str = "--sink") -> Endpoint:
    """A ``--sink`` or ``--dead-letter``: a folder (Parquet, or JSON lines when its name
    ends in ``.json``/``.jsonl`` or with ``?format=json``), a SQL URL with the lookup
    table after ``#`` (``--sink`` only), or ``kafka://HOST:9092?topic=NAME``."""
    from modelport.io.tables import URL_SCHEME, redact

    scheme = urlsplit(url).scheme.lower()
    if scheme == "kafka":
        return _kafka(url, what)
    if URL_SCHEME.match(url) and scheme != "file":
        if what != "--sink":
            raise UserError(f"{what} {redact(url)}: dead letters go to a folder or Kafka")
        base, _, table = url.partition("#")
        if not table:
            raise UserError(f"{what} {redact(url)} names no table: add it after '#', e.g. "
                            f"{redact(base)}#churn_scores")
        return Endpoint("table", url)
    path, options = _folder(url, what, ("format",))
    fmt = options.get("format") or ("json" if path.name.lower().endswith(
        (".json", ".jsonl", ".ndjson")) else "parquet")
    if fmt not in ("json", "parquet"):
        raise UserError(f"{what} {url!r}: format {fmt!r} is not known; a folder sink writes "
                        "parquet or json")
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file; a Spark stream writes a folder (one "
                        "batch=N folder per micro-batch): name a folder")
    return Endpoint("folder", str(path), {}, fmt)


def _kafka(url: str, what: str) -> Endpoint:
    from modelport.io import brokers

    parsed = brokers.parse(url, what)
    server = urlsplit(url).netloc
    if not server:
        raise UserError(f"{what} {url!r} names no server: kafka://HOST:9092?topic=NAME")
    return Endpoint("kafka", server, {"topic": parsed.destination, **parsed.options})


def _folder(url: str, what: str, known: tuple[str, ...]) -> tuple[Path, dict[str, str]]:
    text = url.removeprefix("file://")
    if "://" in text:
        raise UserError(f"{what} {url!r} is not known; use a folder, a SQL URL with '#table' "
                        "(--sink), kafka://HOST:9092?topic=NAME or rate://?rows_per_second=N "
                        "(--source)")
    path_text, _, query = text.partition("?")
    options = _options("?" + query, known, what) if query else {}
    return Path(path_text).expanduser().absolute(), options


def _options(url: str, known: tuple[str, ...], what: str) -> dict[str, str]:
    options = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
    for key in options:
        if key not in known:
            raise UserError(f"{what} {url!r}: option {key!r} is not known; known options: "
                            f"{', '.join(known)}")
    return options


def _folder_kind(path: Path) -> str:
    """The kind of the files in a folder, by their suffix (JSON when it holds none yet)."""
    kinds = {_FILE_KINDS[f.suffix.lower()] for f in path.iterdir()
             if f.is_file() and f.suffix.lower() in _FILE_KINDS and not f.name.startswith(".")}
    if len(kinds) > 1:
        raise UserError(f"--source {path} holds files of several kinds ({', '.join(sorted(kinds))})"
                        "; keep one kind per folder, or name it with ?format=json|csv|parquet")
    return kinds.pop() if kinds else "json"


def session(master: str | None = None, app: str = "modelport stream",
            kafka: bool = False) -> SparkSession:
    """A Spark session for streaming: ``master`` (else ``MODELPORT_SPARK_MASTER``, else
    ``local[*]`` outside ``spark-submit``), modest driver memory, two shuffle partitions
    (micro-batches are small), and the Kafka connector when a Kafka URL is used."""
    import logging

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # Py4J's callback server logs every call at INFO, which the command line shows
    logging.getLogger("py4j").setLevel(logging.WARNING)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app)
    master = master or os.environ.get("MODELPORT_SPARK_MASTER")
    if master:
        builder = builder.master(master)
    elif not os.environ.get("SPARK_HOME") and not os.environ.get("MASTER"):
        builder = builder.master("local[*]")
    if kafka:
        import pyspark

        scala = "2.13"
        builder = builder.config("spark.jars.packages",
                                 f"org.apache.spark:spark-sql-kafka-0-10_{scala}:"
                                 f"{pyspark.__version__}")
    return (builder.config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.ui.enabled", "false")
            .config("spark.driver.memory", os.environ.get("MODELPORT_SPARK_DRIVER_MEMORY", "1g"))
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.sql.streaming.forceDeleteTempCheckpointLocation", "true")
            .getOrCreate())


def read_stream(spark: SparkSession, source: Endpoint, names: list[str], numeric: list[str],
                categorical: list[str], id: str | None, signature: Signature | None = None,
                files: bool = False) -> DataFrame:
    """The streaming DataFrame of ``source``: the model's columns (as text for JSON, CSV and
    Kafka, so that the checks parse each value and a bad one rejects its row), the id, and
    :data:`CORRUPT` for a record that is not an object (for CSV, a row that does not fit
    its file, the reason in :data:`CORRUPT_REASON`). With ``files``, a folder's rows
    also carry the file they came from (:data:`FILE`) and its modification time
    (:data:`MTIME`)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    wanted = names + ([id] if id and id not in names else [])
    if source.kind == "rate":
        return _rate(spark, source, signature, id)
    if source.kind == "kafka":
        text = StructType([StructField(c, StringType(), True) for c in wanted])
        raw = (spark.readStream.format("kafka")
               .option("kafka.bootstrap.servers", source.location)
               .option("subscribe", source.options["topic"])
               .option("startingOffsets", source.options.get("starting_offsets", "earliest"))
               .load())
        value = F.col("value").cast("string")
        parsed = F.from_json(value, text, {"mode": "PERMISSIVE"})
        return raw.select(parsed.alias("e"), value.alias("_value")).select(
            *[F.col("e")[c].alias(c) for c in wanted],
            F.when(F.col("e").isNull(), F.col("_value")).alias(CORRUPT))
    path = source.location
    reader = spark.readStream
    if "max_files_per_trigger" in source.options:
        reader = reader.option("maxFilesPerTrigger", int(source.options["max_files_per_trigger"]))
    if source.format == "parquet":
        schema = _parquet_schema(spark, path, wanted, numeric, id)
        return reader.schema(schema).parquet(path).select(
            *wanted, F.lit(None).cast("string").alias(CORRUPT), *_file_columns(files))
    id_field = []
    if id and id not in names:
        id_field = [StructField(id, _id_type(spark, source, id), True)]
    fields = [StructField(c, StringType(), True) for c in names] + id_field
    if source.format == "csv":
        # the files there at start must hold the model's columns (a later one that does
        # not has its rows set aside, see csv_rows)
        header = _csv_header(spark, path)
        if header:
            missing = [c for c in names if c not in header]
            if missing:
                raise UserError(f"--source {path}: the CSV files have no column(s) "
                                f"{', '.join(map(repr, missing))} that the model needs; "
                                f"their columns are: {', '.join(header)}")
        return _csv_stream(reader, path, StructType(fields), id, files)
    schema = StructType(fields + [StructField(CORRUPT, StringType(), True)])
    reader = reader.schema(schema).option("mode", "PERMISSIVE") \
        .option("columnNameOfCorruptRecord", CORRUPT) \
        .option("pathGlobFilter", "*.{json,jsonl,ndjson}")
    return reader.json(path).select(*wanted, CORRUPT, *_file_columns(files))


def _csv_stream(reader: DataStreamReader, path: str, fields: StructType, id: str | None,
                files: bool) -> DataFrame:
    """A folder of CSV files as rows of ``fields``, :data:`CORRUPT` and
    :data:`CORRUPT_REASON`, each file read by its own header.

    Spark's CSV reader lays a schema on a file's columns by position, so a file whose
    columns come in another order than the schema's (that of the files there at start, or
    the signature's in a folder empty at start) would be read into the wrong columns, and
    scored without a word where the types agree. So Spark hands each new file whole to a
    Python worker (its ``binaryFile`` source keeps the file stream's offsets and order),
    which reads it with pyarrow, as the local engine reads CSV (:func:`csv_rows`). A file
    is read in one piece: keep the files of a stream to what one executor holds."""
    import pyarrow as pa
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import to_arrow_type
    from pyspark.sql.types import (
        BinaryType,
        LongType,
        StringType,
        StructField,
        StructType,
        TimestampType,
    )

    binary = StructType([StructField("path", StringType(), False),
                         StructField("modificationTime", TimestampType(), False),
                         StructField("length", LongType(), False),
                         StructField("content", BinaryType(), True)])
    raw = reader.format("binaryFile").schema(binary).option("pathGlobFilter", "*.csv") \
        .load(path)
    out = StructType([*fields, StructField(CORRUPT, StringType(), True),
                      StructField(CORRUPT_REASON, StringType(), True),
                      *([StructField(FILE, StringType(), True),
                         StructField(MTIME, LongType(), True)] if files else [])])
    names = [f.name for f in fields]
    id_type = to_arrow_type(fields[names.index(id)].dataType) if id in names else None
    arrow = pa.schema([pa.field(f.name, to_arrow_type(f.dataType)) for f in out])

    def parse(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for i, content in enumerate(batch.column("content").to_pylist()):
                table = csv_rows(content or b"", names, id, id_type)
                if files:
                    for name in (FILE, MTIME):
                        table = table.append_column(name, pa.repeat(batch.column(name)[i],
                                                                    table.num_rows))
                yield from table.cast(arrow).to_batches()

    return raw.select(F.col("path").alias(FILE),
                      F.unix_micros(F.col("modificationTime")).alias(MTIME),
                      "content").mapInArrow(parse, out)


def csv_rows(data: bytes, names: list[str], id: str | None,
             id_type: pa.DataType | None = None) -> pa.Table:
    """The rows of one CSV file as an Arrow table of ``names`` (as text; the id, when
    ``id`` is one of them, as ``id_type``), :data:`CORRUPT` and :data:`CORRUPT_REASON`,
    the columns taken from the file by the names in its header.

    Values are read as pyarrow reads CSV for the local engine (an empty field, ``NA`` or
    ``null`` is missing). A row the file cannot give as the model's row goes to
    :data:`CORRUPT` as CSV text with its reason: one with more or fewer fields than the
    header, one whose id is not of ``id_type``, and every row of a file without one of the
    model's columns (an id the file lacks is missing in every row, not a fault). A file
    that is no CSV text at all is one such record."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    if not data.strip():
        return _csv_table(names, id, id_type, {}, 0, [])
    unfit: list[tuple[str, str | None]] = []

    def invalid(row: pyarrow.csv.InvalidRow) -> str:
        unfit.append((row.text, f"the row has {row.actual_columns} field(s) where the "
                                f"header has {row.expected_columns}"))
        return "skip"

    try:
        header = pcsv.open_csv(pa.BufferReader(data), parse_options=pcsv.ParseOptions(
            invalid_row_handler=lambda row: "skip")).schema.names
        table = pcsv.read_csv(pa.BufferReader(data),
                              parse_options=pcsv.ParseOptions(invalid_row_handler=invalid),
                              convert_options=pcsv.ConvertOptions(
                                  column_types={c: pa.string() for c in header},
                                  strings_can_be_null=True))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        text = data.decode("utf-8", "replace")
        return _csv_table(names, id, id_type, {}, 0, [(text, "the file cannot be read as CSV "
                                                        f"text: {str(exc).splitlines()[0]}")])
    n = table.num_rows
    at = {c: table.schema.get_field_index(c) for c in names}
    lacking = [c for c in names if c != id and at[c] < 0]
    reasons: list[str | None] = [None] * n
    if lacking:
        why = (f"the file has no column {lacking[0]!r} that the model needs (or has it twice);"
               f" its columns are: {', '.join(header)}")
        reasons = [why] * n
    columns = {c: table.column(at[c]).combine_chunks() if at[c] >= 0
               else pa.nulls(n, pa.string()) for c in names}
    if id in columns and id_type is not None and columns[id].type != id_type:
        ids = columns[id]
        try:
            columns[id] = ids.cast(id_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            kept = []
            for i, v in enumerate(ids.to_pylist()):
                try:
                    kept.append(pa.array([v], pa.string()).cast(id_type)[0].as_py())
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    kept.append(None)
                    reasons[i] = reasons[i] or (f"the id {v!r} is not of the id column's type "
                                                f"({id_type}, from the files there at start)")
            columns[id] = pa.array(kept, id_type)
    bad = np.flatnonzero([r is not None for r in reasons]) if n else np.empty(0, np.int64)
    records: list[tuple[str, str | None]] = []
    if len(bad):
        records = [(t, reasons[i]) for i, t in zip(bad.tolist(), _csv_lines(
            table.take(pa.array(bad, pa.int64()))), strict=True)]
    return _csv_table(names, id, id_type, columns, n, records + unfit, reasons)


def _csv_lines(table: pa.Table) -> list[str]:
    """Each row of a table of text as a line of CSV (a missing value as an empty field)."""
    import csv
    import io

    out = []
    for row in table.to_pylist():
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(
            ["" if v is None else v for v in row.values()])
        out.append(buffer.getvalue())
    return out


def _csv_table(names: list[str], id: str | None, id_type: pa.DataType | None,
               columns: dict[str, pa.Array], n: int, corrupt: list[tuple[str, str | None]],
               reasons: list[str | None] | None = None) -> pa.Table:
    """The rows that fit (``columns``, ``n`` of them, those with a reason dropped) and then
    one row per ``(text, reason)`` of ``corrupt``, as :func:`csv_rows` gives them."""
    import pyarrow as pa

    keep = [i for i in range(n) if reasons is None or reasons[i] is None]
    take = pa.array(keep, pa.int64())
    types = {c: (id_type or pa.string()) if c == id else pa.string() for c in names}
    arrays = {c: pa.concat_arrays([columns[c].take(take).cast(types[c]) if n else
                                   pa.array([], types[c]), pa.nulls(len(corrupt), types[c])])
              for c in names}
    arrays[CORRUPT] = pa.array([None] * len(keep) + [t for t, _ in corrupt], pa.string())
    arrays[CORRUPT_REASON] = pa.array([None] * len(keep) + [r for _, r in corrupt], pa.string())
    return pa.table(arrays)


def _csv_header(spark: SparkSession, path: str) -> list[str]:
    """The columns of the CSV files already in the folder, in their order (none yet: [])."""
    try:
        return spark.read.option("header", True).option("pathGlobFilter", "*.csv") \
            .csv(path).columns
    except Exception:  # noqa: BLE001 - no files yet
        return []


def _file_columns(files: bool) -> list[Column]:
    from pyspark.sql import functions as F

    if not files:
        return []
    return [F.col("_metadata.file_path").alias(FILE),
            F.unix_micros(F.col("_metadata.file_modification_time")).alias(MTIME)]


def _id_type(spark: SparkSession, source: Endpoint, id: str) -> DataType:
    """The id's type as Spark infers it from the files already in the folder (text when
    there are none, or the id is not there)."""
    from pyspark.sql.types import StringType

    try:
        found = spark.read.option("samplingRatio", 1.0)
        inferred = (found.option("header", True).option("inferSchema", True).csv(source.location)
                    if source.format == "csv" else found.json(source.location)).schema
        if id in inferred.fieldNames():
            kind = inferred[id].dataType
            return kind if kind.typeName() in ("long", "integer", "string") else StringType()
    except Exception:  # noqa: BLE001 - an empty folder: Spark cannot infer anything
        pass
    return StringType()


def _parquet_schema(spark: SparkSession, path: str, wanted: list[str], numeric: list[str],
                    id: str | None) -> StructType:
    """The Parquet files' own schema when the folder has some; else the signature's."""
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    try:
        found = spark.read.parquet(path).schema
        if all(c in found.fieldNames() for c in wanted):
            return StructType([found[c] for c in wanted])
    except Exception:  # noqa: BLE001 - no files yet
        pass
    return StructType([StructField(c, DoubleType() if c in numeric else StringType(), True)
                       for c in wanted])


def _rate(spark: SparkSession, source: Endpoint, signature: Signature | None,
          id: str | None) -> DataFrame:
    """Spark's rate source with the model's columns made from each row's number: numbers
    swept across the training range, categories taken in turn (a load generator)."""
    from pyspark.sql import functions as F

    reader = spark.readStream.format("rate").option(
        "rowsPerSecond", int(source.options.get("rows_per_second", "1000")))
    if "num_partitions" in source.options:
        reader = reader.option("numPartitions", int(source.options["num_partitions"]))
    frame = reader.load()
    value = F.col("value")
    columns = []
    assert signature is not None  # a rate source is read for a model, with its signature
    for c in signature.inputs:
        if c.kind == "numeric":
            lo = c.min if c.min is not None else 0.0
            hi = c.max if c.max is not None else 100.0
            columns.append((F.lit(lo) + (value % 997) / 996.0 * F.lit(hi - lo)).alias(c.name))
        else:
            words = c.categories or ["a"]
            columns.append(F.element_at(F.array(*[F.lit(w) for w in words]),
                                        (value % len(words) + 1).cast("int")).alias(c.name))
    if id and id not in signature.names:
        columns.append(value.alias(id))
    return frame.select(*columns, F.lit(None).cast("string").alias(CORRUPT))


def stop_on_signals(query: StreamingQuery) -> Callable[[], None]:
    """Stop ``query`` at SIGTERM or SIGINT (the micro-batch running finishes or is rerun
    after a restart); return what puts the old handlers back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    saved = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        query.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        saved[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in saved.items():
            signal.signal(sig, old)

    return restore

