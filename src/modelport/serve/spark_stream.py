"""Stream scoring on Spark Structured Streaming: a folder of files, Kafka or Spark's rate
source in; a folder, a lookup table or Kafka out; bad rows to a dead-letter folder.

Each micro-batch is handled on the driver by ``foreachBatch``: the driver looks the model
URI up in the registry (so the query follows an alias at micro-batch boundaries), ships
the accepted artefact's bytes to the executors as a broadcast variable when the version
changes, and ``mapInArrow`` scores Arrow batches on the executors with the same scorer as
the Spark batch job (:mod:`modelport.serve.spark`), through the scoring core. Each input
row becomes its scores or its reason for being rejected.

Exactly-once with ``checkpoint``: Spark records the offsets of a micro-batch before running
it and, after a crash, runs an unfinished micro-batch again with the same batch id and the
same rows. Every write here is idempotent by batch id: a folder sink writes each
micro-batch into its own ``batch=N`` folder (written under a temporary name and renamed, a
rerun replaces it), and a lookup table upserts the batch's scores and records the batch id
in the progress table in one transaction, skipping a batch already recorded. Kafka is at
least once (Kafka cannot take a write and a Spark commit atomically).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import UserError, require
from modelport.io.spark import (
    CORRUPT,
    CORRUPT_REASON,
    Endpoint,
    parse_sink,
    parse_source,
    read_stream,
    session,
    stop_on_signals,
)
from modelport.scoring.checks import InputPolicy
from modelport.scoring.following import Follower

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

    from modelport.io.sinks import SqlSink
    from modelport.registry import Registry, Version

log = logging.getLogger("modelport.stream")


@dataclass
class StreamResult:
    """What a query did before it stopped."""

    batches: int = 0
    rows: int = 0
    rejects: int = 0
    skipped_batches: int = 0
    versions: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "rows": self.rows, "rejects": self.rejects,
                "skipped_batches": self.skipped_batches, "versions": self.versions,
                "seconds": round(self.seconds, 3)}


@dataclass
class _Shipped:
    """A version as the executors score it: its batch artefact, broadcast."""

    version: Any
    fmt: str
    blob: Any
    key: tuple[str, str]


class _Batches:
    """What ``foreachBatch`` runs on the driver for each micro-batch."""

    def __init__(self, spark: SparkSession, registry: Registry, uri: str, sink: Endpoint,
                 dead: Endpoint,
                 policy: InputPolicy, id: str, job: str, poll_seconds: float) -> None:
        self.spark, self.registry, self.uri = spark, registry, uri
        self.sink, self.dead, self.policy, self.id, self.job = sink, dead, policy, id, job
        self.poll_seconds = poll_seconds
        self.result = StreamResult()
        self.follower: Follower[_Shipped] | None = None
        self.table_sink: SqlSink | None = None
        self.failure: BaseException | None = None

    def follow(self) -> None:
        """Follow the URI (:class:`~modelport.scoring.following.Follower`, asked at most every
        ``poll_seconds`` at a micro-batch boundary); a new version's artefact goes to the
        executors before the next micro-batch is scored with it."""
        if self.follower is None:
            self.follower = Follower(self.uri, self.registry, self._ship,
                                     poll_seconds=self.poll_seconds)
        else:
            self.follower.poll_due()

    def _ship(self, version: Version) -> _Shipped:
        """The artefact the scoring core chooses for batches, broadcast to the executors
        (the previous one let go: the micro-batch that used it is done)."""
        from modelport.scoring.choice import choose

        fmt = choose(version, "batch").format
        data = self.registry.read_artefact(version, fmt)
        if self.follower is not None:
            self.follower.current.blob.unpersist()
        shipped = _Shipped(version, fmt, self.spark.sparkContext.broadcast(data),
                           (fmt, hashlib.sha256(data).hexdigest()))
        self.result.versions.append(version.version)
        log.info("scoring with %s (%s)", version.uri, fmt)
        return shipped

    def __call__(self, frame: DataFrame, batch_id: int) -> None:
        try:
            self.run(frame, batch_id)
        except BaseException as exc:
            self.failure = exc
            raise

    def run(self, frame: DataFrame, batch_id: int) -> None:
        import pyarrow as pa
        from pyspark import StorageLevel
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_type

        from modelport.serve.batch import output_schema
        from modelport.serve.spark import _IN, _scorer
        from modelport.signature import Signature

        self.follow()
        assert self.follower is not None
        shipped, id = self.follower.current, self.id
        version = shipped.version
        signature = Signature.from_dict(version.signature)
        names = signature.names
        wanted = names + ([id] if id and id not in names else [])
        frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            why = F.col(CORRUPT_REASON) if CORRUPT_REASON in frame.columns else F.lit(None)
            corrupt = frame.where(F.col(CORRUPT).isNotNull()).select(
                F.col(CORRUPT).alias("_record"),
                F.coalesce(why, F.lit("the record is not an object with the model's fields"))
                .alias("_reason"),
                F.lit("malformed").alias("_code"))
            good = frame.where(F.col(CORRUPT).isNull()).select(
                *wanted, F.monotonically_increasing_id().alias("_mid"))
            in_schema = pa.schema([pa.field(c, to_arrow_type(good.schema[c].dataType))
                                   for c in wanted])
            id_type = in_schema.field(id).type if id else None
            schema = output_schema(signature, id_type, id)
            status = pa.schema([*schema, *[pa.field(_IN + c, in_schema.field(c).type)
                                           for c in wanted if c != id],
                                pa.field("_mid", pa.int64()), pa.field("_code", pa.string()),
                                pa.field("_reason", pa.string()),
                                pa.field("_warnings", pa.string())])
            scorer = _scorer(shipped.blob, shipped.key, shipped.fmt, version.signature,
                             self.policy,
                             id, id_type, schema, status, wanted)
            rows = good.mapInArrow(scorer, schema=from_arrow_schema(status)) \
                .persist(StorageLevel.MEMORY_AND_DISK)
            try:
                keyed = self.sink.kind == "table"
                missing = F.col("_code").isNull() & (F.col(id).isNull() if keyed else F.lit(False))
                scored = rows.where(F.col("_code").isNull() & ~missing).select(
                    *schema.names, F.lit(version.version).alias("model_version"),
                    F.col("_warnings"))
                refused = rows.where(F.col("_code").isNotNull() | missing).select(
                    *[F.col(_IN + c if c != id else c).alias(c) for c in wanted],
                    F.coalesce("_reason", F.lit(
                        f"the id {id!r} is missing: a lookup table keeps one row per id; "
                        "give the row an id")).alias("_reason"),
                    F.coalesce("_code", F.lit("missing_id")).alias("_code"))
                counts = rows.agg(F.count(F.lit(1)), F.count("_code"),
                                  F.count(F.when(missing, 1))).first()
                assert counts is not None  # an aggregate gives one row
                n_bad = int(counts[1]) + int(counts[2])
                n_corrupt = corrupt.count()
                wrote = self.write(scored, batch_id, schema, version)
                if n_bad:
                    self.write_dead(refused, batch_id, "rejects")
                if n_corrupt:
                    self.write_dead(corrupt, batch_id, "malformed")
            finally:
                rows.unpersist()
        finally:
            frame.unpersist()
        self.result.batches += 1
        if wrote:
            self.result.rows += int(counts[0]) - n_bad
            self.result.rejects += n_bad + n_corrupt
        else:
            self.result.skipped_batches += 1
        log.info("batch %d: %d scored, %d dead letters, version %s", batch_id,
                 int(counts[0]) - n_bad, n_bad + n_corrupt, version.version)

    def write(self, scored: DataFrame, batch_id: int, schema: pa.Schema,
              version: Version) -> bool:
        """Write one micro-batch's scores; False when the lookup table already holds it."""
        if self.sink.kind == "folder":
            _write_folder(scored, Path(self.sink.location), batch_id, self.sink.format)
            return True
        if self.sink.kind == "kafka":
            _write_kafka(scored, self.sink, self.id)
            return True
        return self._upsert(scored, batch_id, schema, version)

    def _upsert(self, scored: DataFrame, batch_id: int, schema: pa.Schema,
                version: Version) -> bool:
        from modelport.io.sinks import SqlSink

        if self.table_sink is None:
            url, _, table = self.sink.location.partition("#")
            self.table_sink = SqlSink(url, table, self.id, version.name, version.version,
                                      self.job)
            self.table_sink.start(schema, resume=True)
        sink = self.table_sink
        if sink.committed(batch_id):
            return False  # the batch before the crash committed: nothing to do again
        table = scored.select(*schema.names).toArrow()
        # the progress row and the scores commit in one transaction
        sink.upsert(table.cast(schema), version=version.version,
                    progress={"job": self.job, "chunk": batch_id})
        return True

    def write_dead(self, frame: DataFrame, batch_id: int, what: str) -> None:
        from pyspark.sql import functions as F

        frame = frame.withColumn("_batch", F.lit(batch_id))
        if self.dead.kind == "kafka":
            _write_kafka(frame, self.dead, None)
        else:
            _write_folder(frame, Path(self.dead.location) / what, batch_id, self.dead.format)

    def close(self) -> None:
        if self.follower is not None:
            self.follower.current.blob.unpersist()
            self.follower.heartbeat.stop()
        if self.table_sink is not None:
            self.table_sink.engine.dispose()


def _write_folder(frame: DataFrame, folder: Path, batch_id: int, fmt: str) -> None:
    """One micro-batch as its own ``batch=N`` folder, written under a temporary name and
    renamed into place: a rerun of the batch replaces it, so each batch is there once."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"batch={batch_id}"
    tmp = folder / f".batch={batch_id}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    writer = frame.write.mode("overwrite")
    if fmt == "json":
        writer.json(str(tmp))
    else:
        writer.parquet(str(tmp))
    old = folder / f".batch={batch_id}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _write_kafka(frame: DataFrame, endpoint: Endpoint, id: str | None) -> None:
    from pyspark.sql import functions as F

    key = F.col(id).cast("string") if id else F.lit(None).cast("string")
    (frame.select(key.alias("key"), F.to_json(F.struct(*frame.columns)).alias("value"))
     .write.format("kafka").option("kafka.bootstrap.servers", endpoint.location)
     .option("topic", endpoint.options["topic"]).save())


def stream_spark(uri: str, source: str, sink: str, *, checkpoint: str | Path | None = None,
                 dead_letter: str | None = None, master: str | None = None,
                 id: str | None = None, policy: InputPolicy | None = None,
                 poll_seconds: float = 2.0, available_now: bool = False,
                 trigger_seconds: float = 0.0,
                 registry: Registry | None = None) -> StreamResult:
    """Score the stream ``source`` into ``sink`` with ``uri`` on Spark Structured Streaming
    until stopped (SIGTERM, Ctrl-C), or, with ``available_now``, until what the source
    holds now is scored. ``checkpoint`` (a folder) keeps Spark's offsets: a restarted query
    goes on where the last one stopped, each row scored into a folder or table sink once.
    Rows that cannot be scored go to ``dead_letter`` (default: a folder beside the
    checkpoint) with ``_reason`` and ``_code``. ``id`` names the id column (default
    ``id``), which keys a lookup table."""
    from modelport.registry import Registry
    from modelport.signature import Signature

    require("pyspark", "spark", "--engine spark")
    started = time.perf_counter()
    src = parse_source(source)
    out = parse_sink(sink)
    policy = policy or InputPolicy()
    registry = registry or Registry()
    version = registry.get(uri)
    signature = Signature.from_dict(version.signature)
    id = id or "id"
    if checkpoint is not None:
        ck = Path(checkpoint).expanduser().absolute()
        if ck.exists() and not ck.is_dir():
            raise UserError(f"--checkpoint {ck} is a file; name a folder Spark may keep its "
                            "offsets in")
        default_dead = ck.with_name(ck.name + ".dead-letter")
    else:
        ck = Path(tempfile.mkdtemp(prefix="modelport-stream-"))
        default_dead = (Path(out.location).with_name(Path(out.location).name + ".dead-letter")
                        if out.kind == "folder" else Path.cwd() / "dead-letter")
    dead = parse_sink(dead_letter, "--dead-letter") if dead_letter else \
        Endpoint("folder", str(default_dead), {}, "json")
    if out.kind == "folder" and src.kind == "folder" and Path(out.location) == Path(src.location):
        raise UserError(f"--sink {out.location} is the source folder: the query would read its "
                        "own scores; name another folder")
    job = hashlib.sha256(f"{ck}|{sink}".encode()).hexdigest()[:32]
    kafka = "kafka" in (src.kind, out.kind, dead.kind)
    spark = session(master, kafka=kafka)
    frame = read_stream(spark, src, signature.names, signature.numeric,
                        signature.categorical, id, signature)
    batches = _Batches(spark, registry, uri, out, dead, policy, id, job, poll_seconds)
    batches.follow()  # a model that cannot load fails before the query starts
    writer = frame.writeStream.foreachBatch(batches).option("checkpointLocation", str(ck))
    if available_now:
        writer = writer.trigger(availableNow=True)
    elif trigger_seconds:
        writer = writer.trigger(processingTime=f"{trigger_seconds} seconds")
    query = writer.queryName(f"modelport_{job[:8]}").start()
    stop = stop_on_signals(query)
    try:
        query.awaitTermination()
    except Exception as exc:  # noqa: BLE001 - Spark's own exception classes, via Py4J
        if batches.failure is not None and isinstance(batches.failure, UserError):
            raise batches.failure from None
        from modelport.serve.spark import _user_error

        raise _user_error(exc, Path(src.location)) from None
    finally:
        stop()
        batches.close()
    batches.result.seconds = time.perf_counter() - started
    return batches.result
