"""Batch scoring: a file or table in, scores out, in bounded memory, in parallel, resumable.

The job is ``Source -> scoring core -> Sink``: :mod:`modelport.io.chunks` reads the input in
chunks of ``chunk_rows`` rows, worker processes (each holding one Predictor, loaded once)
check and score them through :mod:`modelport.scoring`, and :mod:`modelport.io.sinks`
commits each chunk in input order. A Parquet input scored into a file is cut at its row
groups instead, and each worker reads its own pieces and stages its own part of the
output. At most two chunks per worker are in flight, so memory depends on the chunk size
and the worker count, never on the size of the input.

The runtime is the one :func:`~modelport.scoring.choice.choose` picks for ``batch`` (the
best measured throughput, else compiled, then ONNX, then joblib; ``format=`` forces one).
Input columns go from Arrow to NumPy without pandas
(:func:`~modelport.scoring.checks.arrow_columns`); categorical columns stay
dictionary-encoded, so each distinct string becomes a Python object once per chunk rather
than once per row, and the checks of ranges and categories run on whole columns.

Outputs, by task: classification gives ``label`` and one ``proba_<class>`` column per
class (a binary classifier also gets ``score``, the probability of the second class, the
positive one in scikit-learn's order); regression gives ``value``; clustering ``cluster``.
The id column (``id=``) comes first; without one the rows keep the input order. With
``explain=k`` each row also gets its ``k`` largest reasons (:mod:`modelport.scoring.reasons`):
``reason_1..k`` (the input column) and ``contribution_1..k`` (its contribution to the raw
score), in the output file and the lookup table alike.

Every row comes out once: scored into the output, or rejected. A row that cannot be scored
(a missing field, a value of the wrong type, a row the model raises on, a score that is not
finite, a missing id for a lookup table, a row the lookup table refuses) stops the job with
``on_error="fail"``, naming the row; with ``on_error="reject"`` it goes to a rejects file
(JSON lines: the row, its number ``_row``, the ``_reason`` and its ``_code``) and the other
rows are scored as they would be alone. A row scored although a value lies outside what
training saw (a number out of range, an unseen category) is listed in a warnings file
(``_row``, the id, ``_warnings``); ``strict`` refuses such rows instead. A score is never
written as NaN.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from modelport.errors import UserError
from modelport.scoring.checks import FLAG, InputPolicy, Reject, check
from modelport.serve.batch_settings import ON_ERROR as ON_ERROR
from modelport.serve.batch_settings import BatchSettings

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np
    import pyarrow as pa
    from rich.progress import Progress
    from threadpoolctl import threadpool_limits

    from modelport.io.chunks import ChunkSource, ParquetSource, Piece
    from modelport.io.sinks import FileSink
    from modelport.monitor.log import PredictionLogger
    from modelport.predictor import Predictor
    from modelport.registry import Registry, Version
    from modelport.scoring.checks import Checked
    from modelport.scoring.isolation import Outcome
    from modelport.signature import Signature

#: environment that keeps every worker to one thread, and idle OpenMP threads asleep
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "OMP_WAIT_POLICY": "PASSIVE"}
_FIX = "fix the row, or use --on-error reject to set rows that cannot be scored aside"
#: what loads a worker's model: format, artefact, signature, name, version, explaining
_WorkerInit = tuple[str, bytes, dict, str, int, tuple | None]
#: a task for a worker: ``(index, item, (function, *args))``
_Task = tuple[int, Any, tuple[Any, ...]]
#: ``(field, kind, message)`` per value outside what training saw, by row
_Warned = dict[int, list[tuple[str, str, str]]]


@dataclass
class BatchResult:
    """What a batch job did: rows scored, rejected and scored with warnings, and where each
    went."""

    rows: int
    rejects: int
    seconds: float
    output: str
    rejects_output: str | None
    chunks: int
    skipped_chunks: int
    model: str
    format: str
    workers: int
    warnings: int = 0
    warnings_output: str | None = None

    def summary(self) -> str:
        """One line: rows, rejects, warnings, time and where each went."""
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        resumed = f", resumed after {self.skipped_chunks} chunk(s)" if self.skipped_chunks else ""
        line = (f"scored {self.rows:,} rows, {self.rejects:,} rejected, {self.warnings:,} with "
                f"warnings, in {self.seconds:.1f} s ({rate:,.0f} rows/s{resumed}) with "
                f"{self.model} ({self.format}, {self.workers} "
                f"worker{'s' if self.workers != 1 else ''}) -> {self.output}")
        if self.rejects_output:
            line += f"; rejects -> {self.rejects_output}"
        if self.warnings_output:
            line += f"; warnings -> {self.warnings_output}"
        return line


def predict(model: str, input: Any, output: str | Path, *, id: str | None = None,
            workers: int | None = None, chunk_rows: int = 50_000, resume: bool = False,
            on_error: str = "fail", engine: str = "local", format: str | None = None,
            rejects: str | Path | None = None, warnings: str | Path | None = None,
            strict: bool = False, out_of_range: str | None = None,
            unseen_categories: str | None = None, progress: bool | None = None,
            registry: Registry | None = None, log_url: str | None = None, log_sample: float = 1.0,
            explain: int | str | None = None) -> BatchResult:
    """Score ``input`` with ``model`` (``churn``, ``churn/3``, ``churn@production``) into ``output``.

    ``input`` is a file, a folder of Parquet files, a SQL URL with the table (or a query)
    after ``#``, or ``{"url": ..., "query": ...}``; ``output`` a ``.parquet``, ``.csv`` or
    ``.jsonl`` file, or a SQL URL with the lookup table after ``#`` (needs ``id``), which
    changes once, when the job succeeds. ``workers`` processes (default: one per core; 0
    or 1 scores in this process) score chunks of ``chunk_rows`` rows. ``on_error`` is
    ``fail`` (the first row that cannot be scored stops the job, naming it) or ``reject``
    (such rows go to ``rejects``, default beside the output). Rows scored with a value
    outside what training saw are listed in ``warnings`` (default beside the output);
    ``strict``, or ``out_of_range`` / ``unseen_categories`` set to ``reject``, refuses
    them instead (``flag``, or the older ``warn``, scores them). ``resume`` skips the
    chunks an interrupted run of the same job committed. ``progress`` shows a progress bar
    (default: when stderr is a terminal). ``log_url`` (a SQLAlchemy URL with ``#table``)
    keeps a ``log_sample`` share of the scored rows, by ``id``, in a prediction log for
    ``modelport monitor``. ``explain`` (a number of reasons) adds ``reason_1..k`` and
    ``contribution_1..k`` columns, read from the version's compiled or native artefact
    whatever runtime scores. Returns a :class:`BatchResult`; :meth:`BatchResult.summary` is
    the line the command line prints.
    """
    settings = BatchSettings(
        model, input, output, id=id, workers=workers, chunk_rows=chunk_rows, resume=resume,
        on_error=on_error, engine=engine, format=format, rejects=rejects, warnings=warnings,
        strict=strict, out_of_range=out_of_range, unseen_categories=unseen_categories,
        log_url=log_url, log_sample=log_sample, explain=explain)
    return predict_settings(settings, registry=registry, progress=progress)


def predict_settings(settings: BatchSettings, *, registry: Registry | None = None,
                     progress: bool | None = None) -> BatchResult:
    """Score what ``settings`` say (see
    :class:`~modelport.serve.batch_settings.BatchSettings`) and return a
    :class:`BatchResult`: :func:`predict`, given its options as one object. ``progress``
    shows a progress bar (default: when stderr is a terminal)."""
    from modelport.registry import Registry
    from modelport.scoring.choice import choose

    policy = settings.policy
    registry = registry or Registry()
    version = registry.get(settings.model)
    fmt = choose(version, "batch", settings.format).format
    data = registry.read_artefact(version, fmt)
    explain = settings.explain
    explaining = _explaining(registry, version, fmt, explain) if explain is not None else None
    if settings.engine == "spark":
        if explaining:
            raise UserError("--explain is not available with --engine spark; score with the "
                            "local engine to get reasons")
        if settings.log_url:
            raise UserError("--log is not available with --engine spark; score with the "
                            "local engine to log predictions")
        if settings.resume:
            raise UserError("--resume is not available with --engine spark, which writes its "
                            "output whole or not at all: run the job again without it")
        from modelport.serve.spark import predict_spark

        return predict_spark(version, fmt, data, settings.input, settings.output,
                             id=settings.id, on_error=settings.on_error, policy=policy,
                             rejects=settings.rejects, warnings=settings.warnings)
    started = time.perf_counter()
    workers = settings.workers
    n_workers = (os.cpu_count() or 1) if workers is None else max(int(workers), 0)
    if workers is None and _small_file(settings.input):
        n_workers = 1  # one chunk at most: starting workers would cost more than scoring it
    init: _WorkerInit = (fmt, data, version.signature, version.name, version.version, explaining)
    # the workers start before this process runs any thread of its own (the prediction
    # log's writer, Arrow's pools), so that they can be forked from it
    pool = _start_pool(n_workers, init) if n_workers > 1 else None
    plog = None
    try:
        plog = _prediction_log(settings.log_url, settings.log_sample)
        return _run_job(version, fmt, settings.input, settings.output, pool, init, started,
                        id=settings.id, n_workers=n_workers, chunk_rows=settings.chunk_rows,
                        resume=settings.resume, on_error=settings.on_error, policy=policy,
                        rejects=settings.rejects, warnings=settings.warnings,
                        progress=progress, plog=plog)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if plog is not None:
            plog.close(timeout=120)


def _prediction_log(log_url: str | None, sample: float) -> PredictionLogger | None:
    """The prediction log the job keeps a ``sample`` share of its rows in, or None."""
    if not log_url:
        return None
    from modelport.monitor.log import PredictionLogger

    # a job is no service to protect: its log may use the CPU and memory it needs
    return PredictionLogger(log_url, sample=sample, source="batch", cpu_budget=None,
                            capacity=1_000_000)


# -- the local engine ----------------------------------------------------------------------

def _run_job(version: Version, fmt: str, input: Any, output: str | Path,
             pool: ProcessPoolExecutor | None, init: _WorkerInit, started: float, *,
             id: str | None, n_workers: int, chunk_rows: int, resume: bool, on_error: str,
             policy: InputPolicy, rejects: str | Path | None, warnings: str | Path | None,
             progress: bool | None, plog: PredictionLogger | None = None) -> BatchResult:
    """Score ``input`` into ``output`` with the local engine: check the input before anything
    is written, open the outputs, score every chunk (in ``pool``, or here without one) and
    commit it in input order, then make the outputs whole. A failure leaves the committed
    chunks staged for ``resume``."""
    from modelport.io.chunks import ParquetSource
    from modelport.signature import Signature

    signature = Signature.from_dict(version.signature)
    source = _open_input(input, signature, id, chunk_rows)
    explaining = init[5]
    if is_table(output) and not explaining:
        refuse_stale_reasons(output, "modelport predict")
    job = _checked_job(source, signature, output, id, policy, on_error, chunk_rows, explaining)
    # Parquet into a file: each worker reads its own row groups and writes its own part,
    # so nothing but a few numbers passes through this process
    direct = isinstance(source, ParquetSource) and plog is None and not is_table(output)
    cut = ("pieces" if direct else "chunks") + (f"+explain{job.reasons}" if job.reasons else "")
    sinks = _Sinks(output, _job_key(version, fmt, input, id, chunk_rows, on_error, policy,
                                    output, cut), version, id, rejects, warnings, on_error)
    skip = sinks.start(job.schema, resume)
    total = source.total_rows()
    bar = _Progress(total, cast("ParquetSource", source).rows_before(skip) if direct
                    else skip * chunk_rows, progress)
    commits = _Commits(job, sinks, bar, plog, version)
    commit: Callable[[int, Any, Any], None]
    if direct:
        tasks, commit = (_piece_tasks(cast("ParquetSource", source), skip, sinks, job),
                         commits.piece)
    else:
        tasks, commit = _chunk_tasks(source, skip, job), commits.chunk

    try:
        if pool is None:
            _run_here(init, tasks, commit)
        else:
            _run_pool(pool, tasks, n_workers, commit)
    except BaseException:
        sinks.abandon()
        raise
    finally:
        bar.close()
        source.close()

    location, rejects_output, warnings_output = sinks.finish(commits.rejects or skip,
                                                             commits.warnings or skip)
    return BatchResult(
        rows=commits.rows, rejects=commits.rejects, seconds=time.perf_counter() - started,
        output=location, rejects_output=rejects_output, chunks=commits.chunks,
        skipped_chunks=skip, model=version.uri, format=fmt, workers=max(n_workers, 1),
        warnings=commits.warnings, warnings_output=warnings_output)


def _open_input(input: Any, signature: Signature, id: str | None,
                chunk_rows: int) -> ChunkSource:
    """The input as a chunk source of the columns the job reads (the model's and the id),
    refused with the columns it lacks."""
    from modelport.io.chunks import open_source

    names = signature.names
    wanted = names + ([id] if id and id not in names else [])
    # CSV numbers are read as text and parsed by the checks, so that a bad one is its
    # row's fault, named with the row, rather than the whole file's
    source = open_source(input, chunk_rows, wanted, order_by=id, numbers=signature.numeric,
                         text_columns=signature.numeric + signature.categorical,
                         dictionaries=signature.categorical)
    source.check_columns(wanted)
    return source


@dataclass
class _Job:
    """What every chunk of one job is scored and committed with, settled from the input's
    first rows before anything is written."""

    signature: Any
    #: the Arrow schema of the scores
    schema: Any
    #: the input's name, for messages
    where: str
    id: str | None
    id_type: Any
    #: a lookup table: every row needs an id
    keyed: bool
    on_error: str
    policy: InputPolicy
    chunk_rows: int
    #: reasons per row (``explain``), 0 for none
    reasons: int


def _checked_job(source: ChunkSource, signature: Signature, output: str | Path, id: str | None,
                 policy: InputPolicy, on_error: str, chunk_rows: int,
                 explaining: tuple | None) -> _Job:
    """The job's settings, once the first rows have passed the signature check: a missing
    column or a column of the wrong type fails here, and with ``on_error="fail"`` a bad row
    too, with no output touched."""
    keyed = bool(id) and is_table(output)
    first = source.head(signature.numeric)
    id_type = _id_type(first, id)
    _check_head(first, signature, policy, on_error, source.name, id, id_type, keyed)
    k = explaining[0] if explaining else 0
    return _Job(signature=signature, schema=output_schema(signature, id_type, id, explain=k),
                where=source.name, id=id, id_type=id_type, keyed=keyed, on_error=on_error,
                policy=policy, chunk_rows=chunk_rows, reasons=k)


class _Sinks:
    """The job's outputs: the scores, the rejects (with ``on_error="reject"``) and the
    warnings, started, committed, abandoned and finished together."""

    def __init__(self, output: str | Path, job: str, version: Version, id: str | None,
                 rejects: str | Path | None, warnings: str | Path | None,
                 on_error: str) -> None:
        from modelport.io.sinks import FileSink, open_sink

        self.scores = open_sink(output, job, id_column=id, model=version.name,
                                version=version.version)
        rejects_path = _side_path(rejects, output, "rejects", "--rejects")
        warnings_path = _side_path(warnings, output, "warnings", "--warnings")
        self.rejects = FileSink(rejects_path, job) if on_error == "reject" else None
        self.warnings = FileSink(warnings_path, job)
        self.sides = [s for s in (self.rejects, self.warnings) if s is not None]

    def start(self, schema: pa.Schema, resume: bool) -> int:
        """Prepare every output; return the number of chunks a resumed job skips."""
        skip = self.scores.start(schema, resume)
        for side in self.sides:
            side.start(None, resume and skip > 0)
        return skip

    def committed(self, index: int) -> None:
        """Every chunk up to ``index`` is in every output."""
        self.scores.committed(index)
        for side in self.sides:
            side.committed(index)

    def abandon(self) -> None:
        """The job failed: make nothing visible, keep what is staged for ``resume``."""
        self.scores.abandon()
        for side in self.sides:
            side.abandon()

    def finish(self, rejected: int, warned: int) -> tuple[str, str | None, str | None]:
        """Make the outputs whole: where the scores, the rejects and the warnings are (a side
        file only when it has rows: ``rejected`` or ``warned``)."""
        location = self.scores.finish()
        return (location, _finish_side(self.rejects, rejected),
                _finish_side(self.warnings, warned))


class _Commits:
    """Commits scored work in input order: a chunk's rejects and warnings, then its scores,
    into the sinks; its rows to the prediction log; the counts and the progress bar."""

    def __init__(self, job: _Job, sinks: _Sinks, bar: _Progress, plog: PredictionLogger | None,
                 version: Version) -> None:
        self.job, self.sinks, self.bar, self.plog, self.version = job, sinks, bar, plog, version
        self.rows = self.rejects = self.warnings = self.chunks = 0

    def chunk(self, index: int, chunk: pa.Table, scored: tuple[Outcome, _Warned]) -> None:
        """Commit a chunk read here and scored (``(outcome, warnings)``) in a worker."""
        outcome, warned = scored
        ids = self._ids(chunk, outcome, warned)
        self._write(index, chunk, outcome, warned, ids)
        if self.plog is not None:
            _log_chunk(self.plog, self.version, self.job.signature, chunk, outcome, self.job.id,
                       warned)
        self._count(index, chunk.num_rows, outcome.scored, len(outcome.rejects), len(warned))

    def piece(self, index: int, piece: Piece, outcome: tuple[int, int, int, int]) -> None:
        """Commit a Parquet piece a worker read, scored and staged itself: only its counts
        (rows read, scored, rejected, with warnings) come back."""
        rows, scored, rejected, warned = outcome
        self._count(index, rows, scored, rejected, warned)

    def _ids(self, chunk: pa.Table, outcome: Outcome, warned: _Warned) -> pa.Array | None:
        """The chunk's ids, with the rows whose id is unusable taken out as rejects."""
        job = self.job
        if not job.id:
            return None
        ids, bad = id_column(chunk.column(job.id), job.id_type, job.id, required=job.keyed)
        reject_later(outcome, warned, bad)
        return ids

    def _write(self, index: int, chunk: pa.Table, outcome: Outcome, warned: _Warned,
               ids: pa.Array | None) -> None:
        """Stage the chunk's rejects and warnings, then commit its scores; rows the lookup
        table refuses become rejects, and the chunk is written again without them."""
        from modelport.io.sinks import Refused
        from modelport.scoring.isolation import reason

        job, sinks = self.job, self.sinks
        first_row = index * job.chunk_rows
        while True:
            if job.on_error == "fail" and outcome.rejects:
                raise _failure(job.where, first_row, outcome.rejects)
            # the rejects and warnings of a chunk are staged before its scores commit
            if sinks.rejects is not None:
                sinks.rejects.write(index, rejects_table(chunk, outcome.rejects, first_row))
            sinks.warnings.write(index, warnings_records(ids, warned, first_row, job.id))
            table = output_table(job.signature, outcome.outputs, scored_ids(ids, outcome),
                                 job.id, job.schema)
            try:
                sinks.scores.write(index, table)
                return
            except Refused as refused:
                reject_later(outcome, warned, {
                    int(outcome.positions[i]): Reject(
                        job.id, "lookup_store",
                        f"the lookup table cannot hold this row ({reason(exc)})")
                    for i, exc in refused.rows.items()})

    def _count(self, index: int, rows: int, scored: int, rejected: int, warned: int) -> None:
        """Count a committed chunk, advance the bar, and let the sinks join it."""
        self.rows += scored
        self.rejects += rejected
        self.warnings += warned
        self.chunks += 1
        self.bar.advance(rows)
        self.sinks.committed(index)


def _piece_tasks(source: ParquetSource, skip: int, sinks: _Sinks, job: _Job) -> Iterator[_Task]:
    """The pieces of a Parquet ``source`` from number ``skip`` on, as tasks: a worker reads,
    scores and stages each into the part files of ``sinks`` (file outputs)."""
    rejects = sinks.rejects
    scores = cast("FileSink", sinks.scores)  # pieces go to file outputs
    return ((p.index, p, (_score_piece, p, str(scores.part_path(p.index)),
                          str(rejects.part_path(p.index)) if rejects else None,
                          str(sinks.warnings.part_path(p.index)), scores.kind,
                          job.policy, job.on_error, job.where, job.id, job.id_type, job.schema))
            for p in source.pieces(skip))


def _chunk_tasks(source: ChunkSource, skip: int, job: _Job) -> Iterator[_Task]:
    """The input's chunks from number ``skip`` on, as tasks: a worker checks and scores
    the model's columns of each."""
    names = job.signature.names
    return ((index, chunk, (_score_chunk, chunk.select(names), job.policy,
                            index * job.chunk_rows, job.where, job.on_error))
            for index, chunk in enumerate(source.chunks(skip), start=skip))


def _check_head(first: pa.Table | None, signature: Signature, policy: InputPolicy,
                on_error: str, where: str, id: str | None, id_type: pa.DataType | None,
                keyed: bool) -> None:
    """The first rows against the signature: a column of the wrong type is a UserError, and
    with ``on_error="fail"`` so is the first row that cannot be scored."""
    if first is None:
        return
    try:
        checked = check(first, signature, policy, unknown="ignore")
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    if on_error != "fail":
        return
    from modelport.io.chunks import reader_rejects

    rejects = {i: Reject(*why) for i, why in reader_rejects(first).items()}
    for i, why in checked.rejects.items():
        rejects.setdefault(i, why)
    if id:
        for i, why in id_column(first.column(id), id_type, id, required=keyed)[1].items():
            rejects.setdefault(i, why)
    if rejects:
        raise _failure(where, 0, rejects)


def _id_type(first: pa.Table | None, id: str | None) -> pa.DataType | None:
    """The type of the id column in the output: the first rows' (text when they hold no
    id at all)."""
    import pyarrow as pa

    if not id:
        return None
    if first is None:
        return pa.string()
    t = first.schema.field(id).type
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.string() if pa.types.is_null(t) else t


def _finish_side(side: FileSink | None, needed: int) -> str | None:
    """Make a rejects or warnings file whole, when it has rows; else leave none."""
    if side is None:
        return None
    if not needed:
        side.discard()
        return None
    location = side.finish()
    path = Path(location)
    if path.is_file() and path.stat().st_size == 0:
        path.unlink()  # a resumed job whose rows all scored cleanly
        return None
    return location


def _log_chunk(plog: PredictionLogger, version: Version, signature: Signature, chunk: pa.Table,
               outcome: Outcome, id: str | None, warned: _Warned) -> None:
    """Hand a committed chunk's sampled rows (and its rejects, as errors) to the log, each
    scored row with its flags (``field: kind; ...``)."""
    import numpy as np
    import pyarrow as pa

    from modelport.predictor import Coded
    from modelport.scoring.checks import arrow_columns

    keep = plog.choose(outcome.scored)
    if keep is None or keep.size:
        positions = outcome.positions if keep is None else outcome.positions[keep]
        rows = chunk.take(pa.array(positions, type=pa.int64()))
        outs = outcome.outputs if keep is None else {k: np.asarray(v)[keep]
                                                      for k, v in outcome.outputs.items()}
        # the values as the model took them: numbers parsed, categories decoded
        cols, _ = arrow_columns(rows, signature)
        inputs = {k: v.decode() if isinstance(v, Coded) else v for k, v in cols.items()}
        flags = [warned.get(int(p)) for p in positions.tolist()] if warned else None
        plog.log(version.name, version.version, inputs, outs, role="batch", sampled=True,
                 ids=rows.column(id).to_pylist() if id else None,
                 warnings=None if flags is None else [
                     "; ".join(f"{f}: {k.replace('_', ' ')}" for f, k, _ in row) if row else None
                     for row in flags])
    if outcome.rejects:
        bad = sorted(outcome.rejects)
        rejected = chunk.take(pa.array(bad, type=pa.int64()))
        plog.log(version.name, version.version, None, None, role="batch",
                 ids=rejected.column(id).to_pylist() if id else [None] * len(bad),
                 errors=[outcome.rejects[i].message for i in bad])


#: an input file smaller than this is scored in this process unless --workers says otherwise
SMALL_INPUT_BYTES = 256 * 1024


def _small_file(input: Any) -> bool:
    """Whether ``input`` is one local file of under :data:`SMALL_INPUT_BYTES`."""
    if not isinstance(input, str | Path) or "://" in str(input):
        return False
    try:
        path = Path(input)
        return path.is_file() and path.stat().st_size < SMALL_INPUT_BYTES
    except (OSError, ValueError):
        return False


def _start_pool(n_workers: int, init: _WorkerInit) -> ProcessPoolExecutor:
    """Worker processes, each holding the model loaded once and limited to one thread.

    Where the platform forks (Linux), the model is loaded here first and the workers are
    forked with it: they start in milliseconds and share its memory, instead of each
    starting an interpreter and importing NumPy, Arrow and the runtime again. Elsewhere,
    or with ``MODELPORT_BATCH_START=spawn`` (for a host process whose own threads must not
    be forked), they are spawned and load the model themselves while the input is checked.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    saved = {k: os.environ.get(k) for k in _ONE_THREAD}
    os.environ.update(_ONE_THREAD)  # inherited by the workers before numpy loads there
    try:
        methods = multiprocessing.get_all_start_methods()
        method = os.environ.get("MODELPORT_BATCH_START") or ("fork" if "fork" in methods
                                                            else "spawn")
        if method not in ("fork", "spawn") or method not in methods:
            raise UserError(f"MODELPORT_BATCH_START={method!r}: use fork or spawn"
                            f"{'' if 'fork' in methods else ' (this platform has no fork)'}")
        if method == "fork":
            import pyarrow.ipc  # noqa: F401  what every worker reads and writes with,
            import pyarrow.parquet  # noqa: F401  imported once here for all of them

            _init_worker(*init, limit_threads=False)
            pool = ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("fork"),
                                       initializer=_limit_threads)
        else:
            pool = ProcessPoolExecutor(n_workers,
                                       mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker, initargs=init)
        for _ in range(n_workers):
            pool.submit(_ready)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return pool


def _ready() -> None:
    """A no-op task: submitting one starts a worker."""


def _run_here(init: _WorkerInit, tasks: Iterable[_Task],
              commit: Callable[[int, Any, Any], None]) -> None:
    """Run ``(index, item, (function, *args))`` tasks in this process, one after the other,
    committing each as it is done: the job without workers."""
    _init_worker(*init)
    for index, item, (fn, *args) in tasks:
        commit(index, item, fn(*args))


def _run_pool(pool: ProcessPoolExecutor, tasks: Iterable[_Task], n_workers: int,
              commit: Callable[[int, Any, Any], None]) -> None:
    """Run ``(index, item, (function, *args))`` tasks in the workers, at most two per worker
    in flight, and commit their outcomes in order."""
    pending: deque = deque()
    try:
        for index, item, (fn, *args) in tasks:
            pending.append((index, item, pool.submit(fn, *args)))
            while len(pending) >= 2 * n_workers:
                i, c, f = pending.popleft()
                commit(i, c, f.result())
        while pending:
            i, c, f = pending.popleft()
            commit(i, c, f.result())
    finally:
        for f in pending:
            f[2].cancel()


# -- in each worker ------------------------------------------------------------------------

_PREDICTOR: Predictor | None = None
#: what _PREDICTOR was loaded from: (format, the artefact's sha256, MODELPORT_TREES)
_PREDICTOR_KEY: tuple[str, str, str | None] | None = None
#: (k, the predictor giving reasons, or None when _PREDICTOR does)
_EXPLAIN: tuple[int, Predictor | None] | None = None
_LIMITS: threadpool_limits | None = None


def _init_worker(fmt: str, data: bytes, signature: dict, name: str, version: int,
                 explaining: tuple | None = None, *, limit_threads: bool = True) -> None:
    """Load the Predictor once per process; in a worker, limit it to one thread.
    ``explaining`` is ``(k, format, artefact, background rows)`` when reasons are asked
    for: the predictor that gives them is loaded too."""
    global _PREDICTOR, _PREDICTOR_KEY, _EXPLAIN
    from modelport import formats
    from modelport.signature import Signature

    if limit_threads:
        _limit_threads()
    if explaining:
        k, efmt, edata, background = explaining
        if efmt == fmt and edata == data:
            _EXPLAIN = (k, None)  # the scoring predictor explains
        else:
            explainer = formats.get(efmt).load(edata, Signature.from_dict(signature))
            explainer.model_name, explainer.model_version = name, version
            explainer.background = background
            _EXPLAIN = (k, explainer)
    else:
        _EXPLAIN = None
    # the bytes, not the name: two registries may both hold a churn/1; and the tree
    # runtime asked for (MODELPORT_TREES), which loading decides
    key = (fmt, hashlib.sha256(data).hexdigest(), os.environ.get("MODELPORT_TREES"))
    if _PREDICTOR is not None and _PREDICTOR_KEY == key:
        if explaining and _EXPLAIN is not None and _EXPLAIN[1] is None:
            _PREDICTOR.background = explaining[3]
        return
    predictor = formats.get(fmt).load(data, Signature.from_dict(signature))
    predictor.prepare_batch()  # e.g. trees compiled to machine code, once per machine
    predictor.model_name, predictor.model_version = name, version
    if explaining:
        predictor.background = explaining[3]
    _PREDICTOR, _PREDICTOR_KEY = predictor, key


def refuse_stale_reasons(output: str | Path, command: str) -> None:
    """Refuse to update a lookup table that holds reasons without writing reasons: its
    rows would keep the reasons of scores they no longer hold."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from modelport.io.sinks import lookup_engine
    from modelport.io.tables import redact

    url, _, name = str(output).partition("#")
    schema, _, table = name.rpartition(".")
    try:
        engine = lookup_engine(url)
    except UserError:
        return  # no database yet (a new SQLite file): no table holds reasons
    try:
        found = inspect(engine)
        if not found.has_table(table, schema=schema or None):
            return
        held = [c["name"] for c in found.get_columns(table, schema=schema or None)
                if c["name"].startswith("reason_")]
    except SQLAlchemyError:
        return  # the sink reports what is wrong with the table
    finally:
        engine.dispose()
    if held:
        raise UserError(f"the lookup table {redact(str(output))} holds reasons "
                        f"({', '.join(sorted(held))}): {command} without --explain would "
                        f"leave them beside new scores; add --explain {len(held)}, or write "
                        "to a new table")


def _explaining(registry: Registry, version: Version, fmt: str, explain: int | str) -> tuple:
    """``(k, format, artefact, background rows)`` for ``--explain``: the number checked, the
    artefact that explains (the scoring one when it can), proven able to explain here
    before any output is written."""
    from modelport import formats
    from modelport.scoring import reasons
    from modelport.signature import Signature

    signature = Signature.from_dict(version.signature)
    k = reasons.count(explain, signature, "--explain")
    efmt = reasons.explaining_format(version, fmt)
    if efmt is None:
        raise UserError(
            f"--explain: {version.uri} cannot be explained: reasons are read from an "
            f"intermediate form, and the version has no {', '.join(reasons.EXPLAINING_FORMATS)}"
            f" artefact (it has: {', '.join(version.accepted_formats())}); score without "
            "--explain")
    data = registry.read_artefact(version, efmt)  # read once: proven here, shipped to workers
    predictor = formats.get(efmt).load(data, signature)
    predictor.model_name, predictor.model_version = version.name, version.version
    background = registry.sample(version) if version.sample_sha256 else None
    predictor.background = background
    try:
        reasons.warm_up(predictor)
    except UserError as exc:
        raise UserError(f"--explain: {exc}; score without --explain") from None
    return k, efmt, data, background


def _limit_threads() -> None:
    """One thread per worker for BLAS and OpenMP: the workers are the parallelism."""
    global _LIMITS
    if os.environ.get("OMP_NUM_THREADS") == "1" and _LIMITS is None:
        from threadpoolctl import threadpool_limits

        _LIMITS = threadpool_limits(limits=1)


def _score_chunk(table: pa.Table, policy: InputPolicy, first_row: int, where: str,
                 on_error: str) -> tuple[Outcome, _Warned]:
    """Score one chunk in a worker: see :func:`score_chunk`."""
    assert _PREDICTOR is not None  # loaded by _init_worker
    return score_chunk(_PREDICTOR, table, policy, first_row=first_row, where=where,
                       on_error=on_error, explain=_explain_args())


def _explain_args() -> tuple | None:
    """``(k, predictor)`` of this worker's reasons, or None."""
    if not _EXPLAIN:
        return None
    k, explainer = _EXPLAIN
    return k, explainer if explainer is not None else _PREDICTOR


def _score_piece(piece: Piece, part: str, rejects_part: str | None, warnings_part: str, kind: str,
                 policy: InputPolicy, on_error: str, where: str, id: str | None,
                 id_type: pa.DataType | None, schema: pa.Schema) -> tuple[int, int, int, int]:
    """Read, score and stage one Parquet piece: (rows read, scored, rejected, with warnings).

    The rejects and warnings parts are renamed into place before the scores' part, so a
    piece whose scores are staged always has them staged too.
    """

    from modelport.io.sinks import PartWriter

    assert _PREDICTOR is not None  # loaded by _init_worker
    signature = _PREDICTOR.signature
    rows = scored = rejected = warned = 0
    with PartWriter(Path(part), kind) as out:
        with (PartWriter(Path(rejects_part), "jsonl") if rejects_part else _NoPart()) as bad_out, \
                PartWriter(Path(warnings_part), "jsonl") as warn_out:
            for table in piece.tables():
                first = piece.first_row + rows
                outcome, warnings = score_chunk(_PREDICTOR, table, policy, first_row=first,
                                                where=where, on_error=on_error,
                                                explain=_explain_args())
                ids = None
                if id:
                    ids, bad = id_column(table.column(id), id_type, id, required=False)
                    reject_later(outcome, warnings, bad)
                    if on_error == "fail" and outcome.rejects:
                        raise _failure(where, first, outcome.rejects)
                if outcome.rejects:  # a piece without any stages an empty part
                    bad_out.write(rejects_table(table, outcome.rejects, first))
                if warnings:
                    warn_out.write(warnings_records(ids, warnings, first, id))
                out.write(output_table(signature, outcome.outputs, scored_ids(ids, outcome), id,
                                       schema))
                rows += table.num_rows
                scored += outcome.scored
                rejected += len(outcome.rejects)
                warned += len(warnings)
        if not rows:
            out.write(schema.empty_table())
    return rows, scored, rejected, warned


class _NoPart:
    """Where rejects go when they are not kept."""

    def write(self, table: pa.Table) -> None:
        pass

    def __enter__(self) -> _NoPart:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


# -- the scoring core, for one chunk -------------------------------------------------------

def score_chunk(predictor: Predictor, table: pa.Table, policy: InputPolicy = FLAG, *,
                first_row: int = 0, where: str = "input", on_error: str = "reject",
                explain: tuple[int, Predictor] | None = None) -> tuple[Outcome, _Warned]:
    """Check and score one Arrow table with ``predictor``: the
    :class:`~modelport.scoring.isolation.Outcome` (the outputs of the rows scored, a
    :class:`Reject` per row that was not) and the warnings of each row scored with a value
    outside what training saw (``{position: [message, ...]}``).

    The table holds the model's columns (others, such as an id, are passed over); the rows
    its reader found unusable (:func:`~modelport.io.chunks.reader_rejects`) are rejected
    with the reader's reason. With ``on_error="fail"`` the first row that cannot be scored
    is a :class:`UserError` naming it (``first_row`` numbers the table's rows in the input,
    ``where`` names the input). ``explain`` (``(k, predictor)``) adds the scored rows'
    ``reason_1..k`` and ``contribution_1..k`` to the outputs.
    """
    from modelport.io.chunks import reader_rejects
    from modelport.scoring.isolation import score

    checked = check(table, predictor.signature, policy, unknown="ignore")
    for i, why in reader_rejects(table).items():
        checked.rejects[i] = Reject(*why)
    if on_error == "fail" and checked.rejects:
        raise _failure(where, first_row, checked.rejects)
    outcome = score(predictor.run_checked, checked, predictor.empty_outputs)
    if on_error == "fail" and outcome.rejects:
        raise _failure(where, first_row, outcome.rejects)
    if explain is not None:
        from modelport.scoring import reasons

        k, explainer = explain
        if outcome.scored:
            every = outcome.scored == checked.rows
            cols = {c: v if every else v[outcome.positions]
                    for c, v in checked.columns.items()}
            outcome.outputs.update(reasons.top(explainer, cols, k).table())
        else:
            outcome.outputs.update(reasons.empty_table(k))
    warnings = warning_messages(checked, outcome.flags, predictor.signature) \
        if outcome.flags else {}
    outcome.flags = {}  # said in the warnings: no need to carry them back from a worker
    return outcome, warnings


def warning_messages(checked: Checked, flagged: dict, signature: Signature) -> _Warned:
    """One ``(field, kind, message)`` per value outside what training saw, for each row of
    ``flagged`` (the positions of the scored rows that have flags); the message names the
    field and the row's value."""
    import numpy as np

    from modelport.kernel import Coded, shown

    bounds = {c.name: (c.min, c.max) for c in signature.inputs if c.kind == "numeric"}
    out: dict[int, list[tuple[str, str, str]]] = {}
    for flag in checked.flags:  # in the order of the signature's fields
        rows = [i for i in flag.rows.tolist() if i in flagged]
        if not rows:
            continue
        column = checked.columns[flag.field]
        values = column[rows]
        if flag.kind == "out_of_range":
            lo, hi = bounds[flag.field]
            texts = [f"field {flag.field!r} value {v:g} is outside the range seen in training "
                     f"[{lo:g}, {hi:g}]" for v in np.asarray(values, dtype=np.float64).tolist()]
        else:
            words = values.decode() if isinstance(values, Coded) else values
            texts = [f"field {flag.field!r} value {shown(w)} is a category unseen in training"
                     for w in words.tolist()]
        for i, text in zip(rows, texts, strict=True):
            out.setdefault(i, []).append((flag.field, flag.kind, text))
    return out


def reject_later(outcome: Outcome, warnings: dict[int, list], rejects: dict[int, Reject]) -> None:
    """Take rows out of a scored chunk's ``outcome`` (and ``warnings``) that a step after
    scoring failed on: an id, the lookup table."""
    if not rejects:
        return
    by_reason: dict[int, tuple[Reject, list[int]]] = {}
    for i, why in rejects.items():
        by_reason.setdefault(id(why), (why, []))[1].append(i)
        warnings.pop(i, None)
    for why, rows in by_reason.values():
        outcome.reject(rows, why)


def id_column(values: pa.Array | pa.ChunkedArray, id_type: pa.DataType | None, name: str,
              required: bool) -> tuple[pa.Array, dict[int, Reject]]:
    """The ids of a chunk as ``id_type`` (the output's id type), and a :class:`Reject` for
    each row whose id is unusable: one that is not of that type, or, when ``required`` (a
    lookup table keeps one row per id), a missing one (null or NaN)."""
    import numpy as np
    import pyarrow as pa

    from modelport.kernel import shown
    from modelport.scoring.checks import float64

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    bad: dict[int, Reject] = {}
    if id_type is not None and values.type != id_type:
        try:
            values = values.cast(id_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            kept: list[Any] = []
            for i, v in enumerate(values.to_pylist()):
                try:
                    kept.append(pa.array([v]).cast(id_type)[0].as_py())
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                    kept.append(None)
                    bad[i] = Reject(name, "wrong_type",
                                    f"the id {shown(v)} is not of the id column's type "
                                    f"({id_type}, from the first rows): give every row an id "
                                    "of one type")
            values = pa.array(kept, type=id_type)
    if required:
        missing: np.ndarray | None
        if pa.types.is_null(values.type):
            missing = np.ones(len(values), dtype=bool)
        elif pa.types.is_floating(values.type):
            missing = np.isnan(float64(values))
        elif values.null_count:
            bits = np.unpackbits(np.frombuffer(values.buffers()[0], dtype=np.uint8),
                                 bitorder="little")[values.offset:values.offset + len(values)]
            missing = bits == 0
        else:
            missing = None
        if missing is not None and missing.any():
            why = Reject(name, "missing_id", f"the id {name!r} is missing: a lookup table keeps "
                                             "one row per id; give the row an id")
            for i in np.flatnonzero(missing).tolist():
                bad.setdefault(i, why)
    return values, bad


def _failure(where: str, first_row: int, rejects: dict[int, Reject]) -> UserError:
    """The error of ``on_error="fail"``: the first row that cannot be scored, and why."""
    row = min(rejects)
    return UserError(f"{where} row {first_row + row + 1:,}: {rejects[row].message}; {_FIX}")


# -- Arrow in, Arrow out -------------------------------------------------------------------

def output_schema(signature: Signature, id_type: pa.DataType | None = None, id: str | None = None,
                  explain: int = 0) -> pa.Schema:
    """The Arrow schema of the scores: the id column, then the outputs of the task, then
    ``reason_i`` and ``contribution_i`` for ``i`` up to ``explain``."""
    import pyarrow as pa

    fields = [pa.field(id, id_type)] if id and id_type is not None else []
    if signature.task == "classification":
        fields.append(pa.field("label", _label_type(signature.classes)))
        if signature.classes is not None and any(
                o.get("name") == "proba" for o in signature.outputs):
            if len(signature.classes) == 2:
                fields.append(pa.field("score", pa.float64()))
            fields += [pa.field(proba_column(c), pa.float64()) for c in signature.classes]
    elif signature.task == "regression":
        fields.append(pa.field("value", pa.float64()))
    else:
        fields.append(pa.field("cluster", pa.int64()))
    for i in range(1, explain + 1):
        fields += [pa.field(f"reason_{i}", pa.string()),
                   pa.field(f"contribution_{i}", pa.float64())]
    return pa.schema(fields)


def proba_column(cls: Any) -> str:
    """The name of the probability column of class ``cls``: ``proba_<class>``."""
    return f"proba_{cls}"


def _label_type(classes: list | None) -> pa.DataType:
    import pyarrow as pa

    if not classes:
        return pa.int64()
    if all(isinstance(c, bool) for c in classes):
        return pa.bool_()
    if all(isinstance(c, int) for c in classes):
        return pa.int64()
    if all(isinstance(c, int | float) for c in classes):
        return pa.float64()
    return pa.string()


def output_table(signature: Signature, outputs: dict, id_values: pa.Array | None, id: str | None,
                 schema: pa.Schema) -> pa.Table:
    """The scores of one chunk as an Arrow table with ``schema``."""
    import numpy as np
    import pyarrow as pa

    arrays: dict[str, Any] = {}
    if id and id_values is not None:
        arrays[id] = id_values
    if signature.task == "classification":
        arrays["label"] = np.asarray(outputs["label"])
        if "score" in schema.names or any(n.startswith("proba_") for n in schema.names):
            assert signature.classes is not None  # the schema holds their probabilities
            proba = outputs.get("proba")
            if proba is None:
                proba = np.full((len(outputs["label"]), len(signature.classes)), np.nan)
            if "score" in schema.names:
                arrays["score"] = np.ascontiguousarray(proba[:, 1], dtype=np.float64)
            for j, c in enumerate(signature.classes):
                arrays[proba_column(c)] = np.ascontiguousarray(proba[:, j], dtype=np.float64)
    elif signature.task == "regression":
        arrays["value"] = np.asarray(outputs["value"], dtype=np.float64)
    else:
        arrays["cluster"] = np.asarray(outputs["cluster"], dtype=np.int64)
    for f in schema:
        if f.name.startswith(("reason_", "contribution_")):
            arrays[f.name] = np.asarray(outputs[f.name])
    return pa.Table.from_arrays([_typed(arrays[f.name], f.type) for f in schema], schema=schema)


def _typed(values: Any, type: pa.DataType) -> pa.Array:
    """``values`` (Arrow, or NumPy) as an Arrow array of ``type``.

    NumPy arrays of the output types are wrapped from their buffers: ``pa.array`` imports
    pandas, which would cost a worker a second the first time it writes scores.
    """
    import numpy as np
    import pyarrow as pa

    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values if values.type == type else values.cast(type)
    n = len(values)
    if type == pa.float64() or type == pa.int64():
        dtype = np.float64 if type == pa.float64() else np.int64
        if values.dtype.kind in "fiub":
            data = np.ascontiguousarray(values, dtype=dtype)
            return pa.Array.from_buffers(type, n, [None, pa.py_buffer(data)])
    elif type == pa.bool_() and values.dtype.kind == "b":
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(type, n, [None, pa.py_buffer(bits)])
    elif type == pa.string() and all(isinstance(v, str) for v in values.tolist()):
        words = [v.encode() for v in values.tolist()]
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum([len(w) for w in words], out=offsets[1:])
        return pa.Array.from_buffers(type, n, [None, pa.py_buffer(offsets),
                                               pa.py_buffer(b"".join(words))])
    values = pa.array(values.tolist() if values.dtype == object else values)
    return values if values.type == type else values.cast(type)


def rejects_table(chunk: pa.Table, rejects: dict[int, Reject], first_row: int) -> pa.Table:
    """The rejected rows of ``chunk`` with their row number ``_row`` (from 1), the
    ``_reason`` and its ``_code``."""
    import pyarrow as pa

    positions = sorted(rejects)
    table = chunk.take(pa.array(positions, type=pa.int64())).replace_schema_metadata(None)
    table = table.append_column("_row", pa.array([first_row + p + 1 for p in positions],
                                                 type=pa.int64()))
    table = table.append_column("_reason", pa.array([rejects[p].message for p in positions],
                                                    type=pa.string()))
    return table.append_column("_code", pa.array([rejects[p].code for p in positions],
                                                  type=pa.string()))


def warnings_records(ids: pa.Array | None, warnings: _Warned, first_row: int,
                     id: str | None) -> list[dict]:
    """The rows scored with warnings, as records for a JSON-lines file: their number
    ``_row`` (from 1), the id, and ``_warnings``, one message per value outside what
    training saw. Plain records, not an Arrow table: building one from Python values loads
    pandas, which would cost every worker a second on the first chunk with a warning."""
    out = []
    for p in sorted(warnings):
        record: dict = {"_row": first_row + p + 1}
        if id and ids is not None:
            record[id] = ids[p].as_py()
        record["_warnings"] = [m for _, _, m in warnings[p]]
        out.append(record)
    return out


def scored_ids(ids: pa.Array | None, outcome: Outcome) -> pa.Array | None:
    """The ids of the rows ``outcome`` scored: all of ``ids`` when every row was scored
    (nothing to compute), else the ones at its positions."""
    if ids is None or outcome.scored == len(ids):
        return ids
    import numpy as np
    import pyarrow as pa

    positions = np.ascontiguousarray(outcome.positions, dtype=np.int64)
    return ids.take(pa.Array.from_buffers(pa.int64(), len(positions),
                                          [None, pa.py_buffer(positions)]))


def is_table(output: str | Path) -> bool:
    """Whether ``output`` names a SQL table (a lookup table) rather than a file."""
    from modelport.io.tables import URL_SCHEME

    text = str(output)
    return bool(URL_SCHEME.match(text)) and not text.startswith("file://")


def default_rejects_path(output: str | Path) -> Path:
    """Beside a file output (``scores.rejects.jsonl``); in the working folder for a table."""
    return _beside(output, "rejects")


def default_warnings_path(output: str | Path) -> Path:
    """Beside a file output (``scores.warnings.jsonl``); in the working folder for a table."""
    return _beside(output, "warnings")


def _beside(output: str | Path, what: str) -> Path:
    text = str(output)
    if is_table(output):
        table = text.partition("#")[2] or "scores"
        return Path(f"{table}.{what}.jsonl")
    path = Path(text.removeprefix("file://"))
    name = path.name
    for suffix in (".csv.gz", ".parquet", ".csv", ".jsonl", ".ndjson", ".pq"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(f"{name}.{what}.jsonl")


def _side_path(given: str | Path | None, output: str | Path, what: str, option: str) -> Path:
    path = Path(given) if given else _beside(output, what)
    if not path.name.endswith(".jsonl"):
        raise UserError(f"{option} {path}: the {what} file is JSON lines; give a path ending "
                        "in .jsonl")
    return path


def _job_key(version: Version, fmt: str, input: Any, id: str | None, chunk_rows: int,
             on_error: str, policy: InputPolicy, output: str | Path, cut: str) -> str:
    """What makes two runs the same job (resume skips only chunks of the same job)."""
    from modelport.io.tables import describe

    stamp = None
    text = str(input) if not isinstance(input, dict) else ""
    if text and Path(text).exists():
        st = Path(text).stat()
        stamp = [st.st_size, st.st_mtime_ns] if Path(text).is_file() else None
    key = json.dumps([version.name, version.version, fmt, describe(input), stamp, id,
                      chunk_rows, on_error, policy.unseen_categories, policy.out_of_range,
                      str(output), cut], default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:32]


# -- progress ------------------------------------------------------------------------------

class _Progress:
    """A rich progress bar on a terminal; otherwise a plain line every half minute."""

    def __init__(self, total: int | None, done: int, show: bool | None) -> None:
        self.total, self.done = total, done
        self.tty = sys.stderr.isatty() if show is None else show
        self.started = self.last = time.monotonic()
        self._bar: Progress | None = None
        if self.tty:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("scoring"), BarColumn(), MofNCompleteColumn(),
                TextColumn("rows {task.fields[rate]}"), TimeElapsedColumn(),
                TimeRemainingColumn(), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("rows", total=total, completed=done, rate="")

    def advance(self, rows: int) -> None:
        self.done += rows
        now = time.monotonic()
        if self._bar is not None:
            rate = f"{self.done / max(now - self.started, 1e-9):,.0f}/s"
            self._bar.update(self._task, completed=self.done, rate=rate)
        elif now - self.last >= 30:
            self.last = now
            of = f" of {self.total:,}" if self.total else ""
            sys.stderr.write(f"modelport: scored {self.done:,}{of} rows so far\n")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
