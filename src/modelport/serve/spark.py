"""The batch job on Apache Spark: the same scores as the local engine, on a cluster.

Spark reads the input, ``mapInPandas`` hands each executor Arrow batches, and each Python
worker loads the Predictor once from the artefact bytes, which travel as a broadcast
variable (executors need no registry connection). Scoring goes through the same
:func:`~modelport.serve.batch.score_table` and :func:`~modelport.serve.batch.output_table`
as the local engine, so the columns and the numbers are the same.

The master is ``local[*]`` unless ``MODELPORT_SPARK_MASTER`` (or ``spark.master`` in the
usual Spark configuration) names another, such as ``spark://host:7077`` or ``yarn``.
Inputs: Parquet (file or folder), CSV, JSONL. Outputs: Parquet, CSV or JSONL, written by
Spark as a folder of part files under a temporary name and renamed into place when done.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from modelport.errors import UserError, require

#: loaded Predictors per Python worker, by artefact identity (a worker runs many tasks)
_LOADED: dict[tuple, Any] = {}


def predict_spark(version, fmt: str, data: bytes, input: Any, output, *, id: str | None,
                  on_error: str = "fail"):
    """Score ``input`` into ``output`` on Spark; return a :class:`BatchResult`."""
    from modelport.io.tables import _URL, _kind
    from modelport.serve.batch import BatchResult, output_schema
    from modelport.signature import Signature

    require("pyspark", "spark", "--engine spark")
    if on_error != "fail":
        raise UserError("--engine spark supports --on-error fail only; use the local engine "
                        "to set bad rows aside in a rejects file")
    text = str(input)
    if isinstance(input, dict) or (_URL.match(text) and not text.startswith("file://")):
        raise UserError("--engine spark reads files (Parquet, CSV, JSONL); for a SQL table use "
                        "the local engine or export the table to Parquet first")
    out_text = str(output)
    if _URL.match(out_text) and not out_text.startswith("file://"):
        raise UserError("--engine spark writes files (Parquet, CSV, JSONL); for a lookup table "
                        "use the local engine")
    started = time.perf_counter()
    src = Path(text.removeprefix("file://")).expanduser()
    if not src.exists():
        raise UserError(f"cannot read {src.absolute()}: no such file or folder; check the path")
    in_kind = "parquet" if src.is_dir() else _kind(src)
    dest = Path(out_text.removeprefix("file://")).expanduser()
    out_kind = _kind(dest)

    signature = Signature.from_dict(version.signature)
    spark = _session()
    reader = spark.read
    if in_kind == "parquet":
        frame = reader.parquet(str(src))
    elif in_kind == "csv":
        frame = reader.option("header", True).option("inferSchema", True).csv(str(src))
    else:
        frame = reader.json(str(src))
    wanted = signature.names + ([id] if id and id not in signature.names else [])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise UserError(f"{src} has no column(s) {', '.join(map(repr, missing))} that the "
                        f"model needs; its columns are: {', '.join(frame.columns)}")
    from pyspark.sql import functions as F

    cols = []
    for col in signature.inputs:
        kind = "double" if col.kind == "numeric" else "string"
        cols.append(F.col(col.name).cast(kind).alias(col.name))
    if id and id not in signature.names:
        cols.append(F.col(id))
    frame = frame.select(*cols)

    import pyarrow as pa
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_type

    id_type = to_arrow_type(frame.schema[id].dataType) if id else None
    schema = output_schema(signature, id_type if id else pa.string(), id)
    blob = spark.sparkContext.broadcast(data)
    key = (fmt, hashlib.sha256(data).hexdigest())  # the bytes: names repeat across registries
    scorer = _scorer(blob, key, fmt, version.signature, id, schema, str(src))
    scores = frame.mapInPandas(scorer, schema=from_arrow_schema(schema))

    tmp = dest.with_name(f".{dest.name}.spark-tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    writer = scores.write.mode("overwrite")
    if out_kind == "parquet":
        writer.parquet(str(tmp))
    elif out_kind == "csv":
        writer.option("header", True).csv(str(tmp))
    else:
        writer.json(str(tmp))
    rows = spark.read.parquet(str(tmp)).count() if out_kind == "parquet" else scores.count()
    blob.unpersist()
    _replace(tmp, dest)
    return BatchResult(rows=rows, rejects=0, seconds=time.perf_counter() - started,
                       output=str(dest), rejects_output=None, chunks=0, skipped_chunks=0,
                       model=version.uri, format=fmt,
                       workers=spark.sparkContext.defaultParallelism)


def _session():
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


def _scorer(blob, key, fmt, signature_dict, id, schema, where):
    """The function ``mapInPandas`` runs on each partition (pickled to the executors)."""

    def score(batches):
        import pyarrow as pa

        from modelport import formats
        from modelport.serve.batch import output_table, score_table
        from modelport.signature import Signature

        predictor = _LOADED.get(key)
        if predictor is None:
            predictor = formats.get(fmt).load(blob.value, Signature.from_dict(signature_dict))
            predictor.prepare_batch()  # trees in C where the executor has a compiler
            _LOADED[key] = predictor
        for pdf in batches:
            table = pa.Table.from_pandas(pdf, preserve_index=False)
            outputs, _ = score_table(predictor, table, "fail", 0, where)
            yield output_table(predictor.signature, outputs,
                               table.column(id) if id else None, id, schema).to_pandas()

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
