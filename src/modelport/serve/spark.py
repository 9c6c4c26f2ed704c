"""The batch job on Apache Spark: the same scores, rejects and warnings as the local engine,
on a cluster.

Spark reads the input, ``mapInArrow`` hands each executor Arrow batches, and each Python
worker loads the Predictor once from the artefact bytes, which travel as a broadcast
variable (executors need no registry connection). Every batch is checked and scored by
the same :func:`~modelport.serve.batch.score_chunk` as the local engine, through the
scoring core, so the columns, the numbers, the rejects and the warnings are the same.

Each input row comes back as one row: its scores, or its reason for being rejected (with
its values), and its warnings. The driver keeps them (memory, then disk), writes the
scores as Spark writes files (a folder of part files under a temporary name, renamed into
place when done) and the rejects and warnings as one JSON-lines file each, which it
streams from the executors; ``_row`` numbers the rows in the order Spark read them (for a
folder of files, Spark's order of the files).

The master is ``local[*]`` unless ``MODELPORT_SPARK_MASTER`` (or ``spark.master`` in the
usual Spark configuration) names another, such as ``spark://host:7077`` or ``yarn``.
Inputs: Parquet (file or folder), CSV, JSONL. The model's columns of CSV and JSONL are read
as text and parsed by the checks, as the local engine parses them, so a value that is not a
number is its row's fault. Outputs: Parquet, CSV or JSONL.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import UserError, require
from modelport.scoring.checks import InputPolicy

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark import Broadcast
    from pyspark.sql import DataFrame, DataFrameReader, SparkSession

    from modelport.registry import Version
    from modelport.serve.batch import BatchResult

#: loaded Predictors per Python worker, by artefact identity (a worker runs many tasks)
_LOADED: dict[tuple, Any] = {}
#: a row's place in the input, as ``monotonically_increasing_id`` gives it: the partition
#: number above this many bits, the position in the partition below
_PART_BITS = 33
#: what each input row becomes, beside the scores
_STATUS = ("_mid", "_code", "_reason", "_warnings")
#: input columns travel beside the scores under this prefix (a rejected row keeps them)
_IN = "_in_"


def predict_spark(version: Version, fmt: str, data: bytes, input: Any, output: str | Path, *,
                  id: str | None, on_error: str = "fail", policy: InputPolicy | None = None,
                  rejects: str | Path | None = None,
                  warnings: str | Path | None = None) -> BatchResult:
    """Score ``input`` into ``output`` on Spark; return a
    :class:`~modelport.serve.batch.BatchResult`. ``on_error``, ``policy``, ``rejects`` and
    ``warnings`` mean what they mean for :func:`~modelport.serve.batch.predict`; with
    ``on_error="fail"`` nothing is written when a row cannot be scored."""
    import pyarrow as pa

    from modelport.io.tables import URL_SCHEME, file_kind
    from modelport.serve.batch import BatchResult, _side_path, is_table, output_schema
    from modelport.signature import Signature

    require("pyspark", "spark", "--engine spark")
    policy = policy or InputPolicy()
    text = str(input)
    if isinstance(input, dict) or (URL_SCHEME.match(text) and not text.startswith("file://")):
        raise UserError("--engine spark reads files (Parquet, CSV, JSONL); for a SQL table use "
                        "the local engine or export the table to Parquet first")
    if is_table(output):
        raise UserError("--engine spark writes files (Parquet, CSV, JSONL); for a lookup table "
                        "use the local engine")
    started = time.perf_counter()
    src = Path(text.removeprefix("file://")).expanduser()
    if not src.exists():
        raise UserError(f"cannot read {src.absolute()}: no such file or folder; check the path")
    in_kind = "parquet" if src.is_dir() else file_kind(src)
    dest = Path(str(output).removeprefix("file://")).expanduser()
    out_kind = file_kind(dest)
    rejects_path = _side_path(rejects, output, "rejects", "--rejects")
    warnings_path = _side_path(warnings, output, "warnings", "--warnings")

    signature = Signature.from_dict(version.signature)
    spark = _session()
    names = signature.names
    frame = _read(spark, src, in_kind, names)
    wanted = names + ([id] if id and id not in names else [])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise UserError(f"{src} has no column(s) {', '.join(map(repr, missing))} that the "
                        f"model needs; its columns are: {', '.join(frame.columns)}")
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_type

    frame = frame.select(*[F.col(c) for c in wanted],
                         F.monotonically_increasing_id().alias("_mid"))
    in_schema = pa.schema([pa.field(c, to_arrow_type(frame.schema[c].dataType))
                           for c in wanted])
    id_type = in_schema.field(id).type if id else None
    if id_type is not None and pa.types.is_null(id_type):
        id_type = pa.string()
    schema = output_schema(signature, id_type, id)
    status = pa.schema([*schema, *[pa.field(_IN + c, in_schema.field(c).type)
                                   for c in wanted if c != id],
                        pa.field("_mid", pa.int64()), pa.field("_code", pa.string()),
                        pa.field("_reason", pa.string()), pa.field("_warnings", pa.string())])
    blob = spark.sparkContext.broadcast(data)
    key = (fmt, hashlib.sha256(data).hexdigest())  # the bytes: names repeat across registries
    scorer = _scorer(blob, key, fmt, version.signature, policy, id, id_type, schema, status,
                     wanted)
    rows = frame.mapInArrow(scorer, schema=from_arrow_schema(status)) \
        .persist(StorageLevel.MEMORY_AND_DISK)
    try:
        scored = rows.where(F.col("_code").isNull())
        refused = rows.where(F.col("_code").isNotNull())
        flagged = scored.where(F.col("_warnings").isNotNull())
        total, n_rejects, n_warnings = _counted(rows, src)
        offsets = _offsets(rows) if n_rejects or n_warnings else {}
        if on_error == "fail" and n_rejects:
            first = refused.orderBy("_mid").first()
            assert first is not None  # n_rejects rows were refused
            raise UserError(f"{src} row {_row(first['_mid'], offsets):,}: {first['_reason']}; "
                            "fix the row, or use --on-error reject to set rows that cannot be "
                            "scored aside")
        tmp = dest.with_name(f".{dest.name}.spark-tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        writer = scored.select(*schema.names).write.mode("overwrite")
        if out_kind == "parquet":
            writer.parquet(str(tmp))
        elif out_kind == "csv":
            writer.option("header", True).csv(str(tmp))
        else:
            writer.json(str(tmp))
        n_scored = total - n_rejects
        rejects_output = _side(refused, rejects_path, offsets, [
            *[(_IN + c if c != id else c, c) for c in wanted], ("_row", "_row"),
            ("_reason", "_reason"), ("_code", "_code")]) if n_rejects else None
        warnings_output = _side(flagged, warnings_path, offsets, [
            ("_row", "_row"), *([(id, id)] if id else []), ("_warnings", "_warnings")]) \
            if n_warnings else None
        _replace(tmp, dest)
    finally:
        rows.unpersist()
        blob.unpersist()
    return BatchResult(rows=n_scored, rejects=n_rejects, seconds=time.perf_counter() - started,
                       output=str(dest), rejects_output=rejects_output, chunks=0,
                       skipped_chunks=0, model=version.uri, format=fmt,
                       workers=spark.sparkContext.defaultParallelism, warnings=n_warnings,
                       warnings_output=warnings_output)


def _session() -> SparkSession:
    # executors must run this interpreter, the one with modelport and the model's libraries
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("modelport predict")
    master = os.environ.get("MODELPORT_SPARK_MASTER")
    if master:
        builder = builder.master(master)
    elif not os.environ.get("SPARK_HOME") and not os.environ.get("MASTER"):
        builder = builder.master("local[*]")
    return (builder.config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.ui.enabled", "false")
            .getOrCreate())


def _read(spark: SparkSession, src: Path, kind: str, names: list[str]) -> DataFrame:
    """The input as Spark reads it. CSV and JSON are read with the types Spark infers,
    except the model's columns, read as text as the local engine reads them, so that the
    checks parse each value and a bad one rejects its row (an id keeps its type). A line of
    JSONL that is no JSON object stops the job, as it does locally."""
    from pyspark.sql.types import StringType, StructField, StructType

    if kind == "parquet":
        return spark.read.parquet(str(src))

    def reader() -> DataFrameReader:
        if kind == "csv":
            return spark.read.option("header", True).option("escape", '"')
        return spark.read.option("mode", "FAILFAST")

    try:
        if kind == "csv":
            inferred = reader().option("inferSchema", True).csv(str(src)).schema
        else:
            inferred = reader().json(str(src)).schema
        schema = StructType([StructField(f.name, StringType() if f.name in names
                                         else f.dataType, True) for f in inferred.fields])
        typed = reader().schema(schema)
        return typed.csv(str(src)) if kind == "csv" else typed.json(str(src))
    except Exception as exc:  # noqa: BLE001 - Spark's own exception classes, via Py4J
        raise _user_error(exc, src) from None


def _user_error(exc: BaseException, src: Path) -> BaseException:
    """The UserError a Spark failure stands for (a malformed JSON line, a UserError raised
    in an executor, such as a column of the wrong type), else ``exc`` itself."""
    text = str(exc)
    if "Malformed" in text:
        return UserError(f"{src} holds a line that is not a JSON object; each line must hold "
                         "one object such as {\"id\": 1, ...}")
    found = re.search(r"modelport\.errors\.UserError: (.+)", text)
    if found:
        return UserError(f"{src}: {found[1].strip()}")
    return exc


def _counted(rows: DataFrame, src: Path) -> tuple[int, int, int]:
    """The rows, the rejected ones and those with warnings, in one pass: the first action,
    which reads the input and scores it."""
    from pyspark.sql import functions as F

    try:
        found = rows.agg(F.count(F.lit(1)), F.count("_code"), F.count("_warnings")).first()
    except Exception as exc:  # noqa: BLE001 - Spark's own exception classes, via Py4J
        raise _user_error(exc, src) from None
    assert found is not None  # an aggregate gives one row
    return int(found[0]), int(found[1]), int(found[2])


def _offsets(rows: DataFrame) -> dict[int, int]:
    """The number of input rows before each partition, from the rows each one gave."""
    from pyspark.sql import functions as F

    counts = sorted((r[0], r[1]) for r in rows.groupBy(
        F.shiftright("_mid", _PART_BITS).alias("p")).count().collect())
    offsets: dict[int, int]
    offsets, seen = {}, 0
    for partition, n in counts:
        offsets[partition] = seen
        seen += n
    return offsets


def _row(mid: int, offsets: dict[int, int]) -> int:
    """A row's number in the input (from 1) from its ``monotonically_increasing_id``."""
    return offsets.get(mid >> _PART_BITS, 0) + (mid & ((1 << _PART_BITS) - 1)) + 1


def _side(frame: DataFrame, path: Path, offsets: dict[int, int],
          columns: list[tuple[str, str]]) -> str:
    """Stream the rows of ``frame`` (rejects or warnings, in input order) into the JSON-lines
    file ``path``, written to a temporary name and renamed into place."""
    import pyarrow as pa

    from modelport.io.sinks import jsonl_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        batch: list[dict] = []
        for r in frame.orderBy("_mid").toLocalIterator():
            record = r.asDict()
            record["_row"] = _row(record["_mid"], offsets)
            if record.get("_warnings") is not None:
                record["_warnings"] = json.loads(record["_warnings"])
            batch.append({name: record[column] for column, name in columns})
            if len(batch) >= 10_000:
                fh.write(jsonl_bytes(pa.Table.from_pylist(batch)))
                batch = []
        if batch:
            fh.write(jsonl_bytes(pa.Table.from_pylist(batch)))
    os.replace(tmp, path)
    return str(path)


def _scorer(blob: Broadcast[bytes], key: tuple[str, str], fmt: str, signature_dict: dict,
            policy: InputPolicy, id: str | None, id_type: pa.DataType | None, schema: pa.Schema,
            status: pa.Schema, wanted: list[str]
            ) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function ``mapInArrow`` runs on each partition (pickled to the executors)."""

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import numpy as np
        import pyarrow as pa

        from modelport import formats
        from modelport.serve.batch import (
            id_column,
            output_table,
            reject_later,
            score_chunk,
            scored_ids,
        )
        from modelport.signature import Signature

        predictor = _LOADED.get(key)
        if predictor is None:
            predictor = formats.get(fmt).load(blob.value, Signature.from_dict(signature_dict))
            predictor.prepare_batch()  # trees in C where the executor has a compiler
            _LOADED[key] = predictor
        for batch in batches:
            table = pa.Table.from_batches([batch])
            n = table.num_rows
            outcome, warnings = score_chunk(predictor, table, policy)
            ids = None
            if id:
                ids, bad = id_column(table.column(id), id_type, id, required=False)
                reject_later(outcome, warnings, bad)
            scores = output_table(predictor.signature, outcome.outputs,
                                  scored_ids(ids, outcome), id, schema)
            mids = table.column("_mid")
            refused = sorted(outcome.rejects)
            at = pa.array(refused, type=pa.int64())
            columns: dict[str, Any] = {}
            for f in schema:
                part = scores.column(f.name)
                if f.name == id:
                    assert ids is not None  # read above: the job has an id
                    rest = ids.take(at)
                else:
                    rest = pa.nulls(len(refused), f.type)
                columns[f.name] = pa.concat_arrays([part.combine_chunks(), rest]) \
                    if len(refused) else part.combine_chunks()
            for c in wanted:
                if c != id:
                    columns[_IN + c] = pa.concat_arrays([
                        pa.nulls(outcome.scored, status.field(_IN + c).type),
                        table.column(c).take(at).combine_chunks()])
            order = np.concatenate([outcome.positions, np.asarray(refused, dtype=np.int64)])
            columns["_mid"] = mids.take(pa.array(order, type=pa.int64())).combine_chunks()
            for name, values in (("_code", [outcome.rejects[i].code for i in refused]),
                                 ("_reason", [outcome.rejects[i].message for i in refused])):
                columns[name] = pa.concat_arrays([pa.nulls(outcome.scored, pa.string()),
                                                  pa.array(values, type=pa.string())])
            # a clean batch builds no Python object per row
            columns["_warnings"] = pa.nulls(n, pa.string()) if not warnings else pa.array(
                [json.dumps([m for _, _, m in warnings[i]]) if i in warnings else None
                 for i in outcome.positions.tolist()] + [None] * len(refused),
                type=pa.string())
            yield from pa.Table.from_pydict(columns, schema=status).to_batches()

    return score


def _replace(tmp: Path, dest: Path) -> None:
    """Move the finished folder ``tmp`` onto ``dest``, replacing what was there."""
    old = dest.with_name(f".{dest.name}.old")
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    elif old.exists():
        old.unlink()
