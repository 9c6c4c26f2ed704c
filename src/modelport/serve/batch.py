"""Batch scoring: a file or table in, scores out, in bounded memory, in parallel, resumable.

The job is ``Source -> Predictor -> Sink``: :mod:`modelport.io.chunks` reads the input in
chunks of ``chunk_rows`` rows, worker processes (each holding one Predictor, loaded once)
score them, and :mod:`modelport.io.sinks` commits each chunk in input order. A Parquet
input scored into a file is cut at its row groups instead, and each worker reads its own
pieces and stages its own part of the output. At most two chunks per worker are in
flight, so memory depends on the chunk size and the worker count, never on the size of
the input.

The runtime is the version's fastest kind of artefact that passed the parity check at
registration: compiled, else ONNX, else joblib (``format=`` forces one). Input columns go
from Arrow to NumPy without pandas; categorical columns stay dictionary-encoded, so each
distinct string becomes a Python object once per chunk rather than once per row.

Outputs, by task: classification gives ``label`` and one ``proba_<class>`` column per
class (a binary classifier also gets ``score``, the probability of the second class, the
positive one in scikit-learn's order); regression gives ``value``; clustering ``cluster``.
The id column (``id=``) comes first; without one the rows keep the input order.

A row that cannot be scored (a value that is not a number in a numeric column, a model
error, a score that is not finite) stops the job with ``on_error="fail"``; with
``on_error="reject"`` it goes to a rejects file (JSON lines: the row, its number ``_row``
and the ``_reason``) and the job goes on. A score is never written as NaN.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.errors import UserError
from modelport.io.tables import _URL as _URL_OUTPUT

#: runtimes in the order a batch job prefers them (fastest first); only accepted ones count
PREFERRED_FORMATS = ("compiled", "onnx", "joblib")
ON_ERROR = ("fail", "reject")
#: environment that keeps every worker to one thread, and idle OpenMP threads asleep
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "OMP_WAIT_POLICY": "PASSIVE"}


@dataclass
class BatchResult:
    """What a batch job did."""

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

    def summary(self) -> str:
        """One line: rows, rejects, time and where the output is."""
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        resumed = f", resumed after {self.skipped_chunks} chunk(s)" if self.skipped_chunks else ""
        line = (f"scored {self.rows:,} rows, {self.rejects:,} rejected, in {self.seconds:.1f} s "
                f"({rate:,.0f} rows/s{resumed}) with {self.model} ({self.format}, "
                f"{self.workers} worker{'s' if self.workers != 1 else ''}) -> {self.output}")
        if self.rejects_output:
            line += f"; rejects -> {self.rejects_output}"
        return line


def predict(model: str, input: Any, output: str | Path, *, id: str | None = None,
            workers: int | None = None, chunk_rows: int = 50_000, resume: bool = False,
            on_error: str = "fail", engine: str = "local", format: str | None = None,
            rejects: str | Path | None = None, progress: bool | None = None,
            registry=None, log_url: str | None = None, log_sample: float = 1.0) -> BatchResult:
    """Score ``input`` with ``model`` (``churn``, ``churn/3``, ``churn@production``) into ``output``.

    ``input`` is a file, a folder of Parquet files, a SQL URL with the table (or a query)
    after ``#``, or ``{"url": ..., "query": ...}``; ``output`` a ``.parquet``, ``.csv`` or
    ``.jsonl`` file, or a SQL URL with the lookup table after ``#`` (needs ``id``).
    ``workers`` processes (default: one per core; 0 or 1 scores in this process) score
    chunks of ``chunk_rows`` rows. ``resume`` skips the chunks an interrupted run of the
    same job committed. ``progress`` shows a progress bar (default: when stderr is a
    terminal). ``log_url`` (a SQLAlchemy URL with ``#table``) keeps a ``log_sample`` share
    of the scored rows, by ``id``, in a prediction log for ``modelport monitor``. Returns a
    :class:`BatchResult`; :meth:`BatchResult.summary` is the line the command line prints.
    """
    from modelport.registry import Registry

    if on_error not in ON_ERROR:
        raise UserError(f"--on-error {on_error!r} is not known: use fail or reject")
    if engine not in ("local", "spark"):
        raise UserError(f"--engine {engine!r} is not known: use local or spark")
    registry = registry or Registry()
    version = registry.get(model)
    fmt = choose_format(version, format)
    data = registry.read_artefact(version, fmt)
    if engine == "spark":
        if log_url:
            raise UserError("--log is not available with --engine spark; score with the "
                            "local engine to log predictions")
        from modelport.serve.spark import predict_spark

        return predict_spark(version, fmt, data, input, output, id=id, on_error=on_error)
    started = time.perf_counter()
    n_workers = (os.cpu_count() or 1) if workers is None else max(int(workers), 0)
    init = (fmt, data, version.signature, version.name, version.version)
    # the workers start before this process runs any thread of its own (the prediction
    # log's writer, Arrow's pools), so that they can be forked from it
    pool = _start_pool(n_workers, init) if n_workers > 1 else None
    plog = None
    try:
        if log_url:
            from modelport.monitor.log import PredictionLogger

            # a job is no service to protect: its log may use the CPU and memory it needs
            plog = PredictionLogger(log_url, sample=log_sample, source="batch",
                                    cpu_budget=None, capacity=1_000_000)
        return _run_job(version, fmt, input, output, pool, init, started, id=id,
                        n_workers=n_workers, chunk_rows=chunk_rows, resume=resume,
                        on_error=on_error, rejects=rejects, progress=progress, plog=plog)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if plog is not None:
            plog.close(timeout=120)


def choose_format(version, format: str | None = None) -> str:
    """The runtime for a batch job: ``format`` if given and accepted, else the fastest accepted."""
    accepted = version.accepted_formats()
    if format:
        if format not in accepted:
            raise UserError(
                f"{version.uri} has no accepted {format} artefact; it has: "
                f"{', '.join(accepted) or 'none'} (use --format with one of them)"
            )
        return format
    for fmt in PREFERRED_FORMATS:
        if fmt in accepted:
            return fmt
    if accepted:
        return accepted[0]
    raise UserError(f"{version.uri} has no accepted artefact to score with")


# -- the local engine ----------------------------------------------------------------------

def _run_job(version, fmt, input, output, pool, init, started, *, id, n_workers, chunk_rows,
             resume, on_error, rejects, progress, plog=None) -> BatchResult:
    from modelport.io.chunks import open_source
    from modelport.io.sinks import FileSink, open_sink
    from modelport.signature import Signature

    signature = Signature.from_dict(version.signature)
    names = signature.names
    wanted = names + ([id] if id and id not in names else [])
    source = open_source(
        input, chunk_rows, wanted, order_by=id,
        numbers=signature.numeric if on_error == "fail" else (),
        text_columns=signature.numeric + signature.categorical if on_error == "reject"
        else signature.categorical, dictionaries=signature.categorical)
    source.check_columns(wanted)

    # Check the signature on the first rows before anything is written: a missing column
    # or a value of the wrong type fails here, with no output touched.
    first = source.head(signature.numeric)
    if first is not None:
        to_columns(first, signature, on_error, 0, source.name)
    id_type = None
    if id:
        import pyarrow as pa

        id_type = first.schema.field(id).type if first is not None else pa.string()
    out_schema = output_schema(signature, id_type, id)
    del first

    from modelport.io.chunks import ParquetSource

    # Parquet into a file: each worker reads its own row groups and writes its own part,
    # so nothing but a few numbers passes through this process
    direct = (isinstance(source, ParquetSource) and plog is None
              and not _URL_OUTPUT.match(str(output)))
    job = _job_key(version, fmt, input, id, chunk_rows, on_error, output,
                   "pieces" if direct else "chunks")
    sink = open_sink(output, job, id_column=id, model=version.name, version=version.version)
    rejects_path = Path(rejects) if rejects else default_rejects_path(output)
    if not rejects_path.name.endswith(".jsonl"):
        raise UserError(f"--rejects {rejects_path}: the rejects file is JSON lines; give a "
                        "path ending in .jsonl")
    reject_sink = FileSink(rejects_path, job) if on_error == "reject" else None
    skip = sink.start(out_schema, resume)
    if reject_sink is not None:
        reject_sink.start(None, resume and skip > 0)

    total = source.total_rows()
    counts = {"rows": 0, "rejects": 0, "chunks": 0}
    bar = _Progress(total, source.rows_before(skip) if direct else skip * chunk_rows, progress)

    def commit(index: int, chunk, outcome) -> None:
        outputs, bad = outcome
        if reject_sink is not None:
            reject_sink.write(index, rejects_table(chunk, bad, index * chunk_rows))
        good = _keep(chunk, bad)
        table = output_table(signature, outputs, good.column(id) if id else None, id, out_schema)
        sink.write(index, table)
        if plog is not None:
            _log_chunk(plog, version, names, good, outputs, id, chunk, bad)
        counts["rows"] += table.num_rows
        counts["rejects"] += len(bad)
        counts["chunks"] += 1
        bar.advance(chunk.num_rows)
        joined(index)

    def committed(index: int, piece, outcome) -> None:
        rows, scored, rejected = outcome
        counts["rows"] += scored
        counts["rejects"] += rejected
        counts["chunks"] += 1
        bar.advance(rows)
        joined(index)

    def joined(index: int) -> None:
        sink.committed(index)
        if reject_sink is not None:
            reject_sink.committed(index)

    if direct:
        tasks = ((p.index, p, (_score_piece, p, str(sink.part_path(p.index)),
                               str(reject_sink.part_path(p.index)) if reject_sink else None,
                               sink.kind, on_error, source.name, id, out_schema))
                 for p in source.pieces(skip))
        done = committed
    else:
        tasks = ((index, chunk, (_score_chunk, chunk.select(names), on_error,
                                 index * chunk_rows, source.name))
                 for index, chunk in enumerate(source.chunks(skip), start=skip))
        done = commit
    try:
        if pool is None:
            _init_worker(*init)
            for index, item, (fn, *args) in tasks:
                done(index, item, fn(*args))
        else:
            _run_pool(pool, tasks, n_workers, done)
    except BaseException:
        sink.abandon()
        if reject_sink is not None:
            reject_sink.abandon()
        raise
    finally:
        bar.close()
        if hasattr(source, "close"):
            source.close()
    location = sink.finish()
    rejects_output = None
    if reject_sink is not None:
        if counts["rejects"] or skip:
            rejects_output = reject_sink.finish()
        else:
            reject_sink.discard()
    return BatchResult(
        rows=counts["rows"], rejects=counts["rejects"], seconds=time.perf_counter() - started,
        output=location, rejects_output=rejects_output, chunks=counts["chunks"],
        skipped_chunks=skip, model=version.uri, format=fmt, workers=max(n_workers, 1))


def _log_chunk(plog, version, names, good, outputs, id, chunk, bad) -> None:
    """Hand a committed chunk's sampled rows (and its rejects, as errors) to the log."""
    import numpy as np
    import pyarrow as pa

    keep = plog.choose(good.num_rows)
    if keep is None or keep.size:
        rows = good if keep is None else good.take(pa.array(keep, type=pa.int64()))
        outs = outputs if keep is None else {k: np.asarray(v)[keep] for k, v in outputs.items()}
        inputs = {n: _plain(rows.column(n)).to_numpy(zero_copy_only=False) for n in names}
        plog.log(version.name, version.version, inputs, outs, role="batch", sampled=True,
                 ids=rows.column(id).to_pylist() if id else None)
    if bad:
        rejected = chunk.take(pa.array([p for p, _ in bad], type=pa.int64()))
        plog.log(version.name, version.version, None, None, role="batch",
                 ids=rejected.column(id).to_pylist() if id else [None] * len(bad),
                 errors=[reason for _, reason in bad])


def _plain(column):
    """A column with its dictionary decoded: NumPy conversion of a dictionary-encoded
    chunked array turns its nulls into one of the words."""
    import pyarrow as pa

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return column.dictionary_decode() if pa.types.is_dictionary(column.type) else column


def _start_pool(n_workers: int, init: tuple):
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


def _run_pool(pool, tasks, n_workers, commit) -> None:
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

_PREDICTOR = None
_LIMITS = None


def _init_worker(fmt: str, data: bytes, signature: dict, name: str, version: int, *,
                 limit_threads: bool = True) -> None:
    """Load the Predictor once per process; in a worker, limit it to one thread."""
    global _PREDICTOR
    from modelport import formats
    from modelport.signature import Signature

    if limit_threads:
        _limit_threads()
    # the bytes, not the name: two registries may both hold a churn/1; and the tree
    # runtime asked for (MODELPORT_TREES), which loading decides
    key = (fmt, hashlib.sha256(data).hexdigest(), os.environ.get("MODELPORT_TREES"))
    if _PREDICTOR is not None and getattr(_PREDICTOR, "_batch_key", None) == key:
        return
    predictor = formats.get(fmt).load(data, Signature.from_dict(signature))
    predictor.prepare_batch()  # e.g. trees compiled to machine code, once per machine
    predictor.model_name, predictor.model_version = name, version
    predictor._batch_key = key
    _PREDICTOR = predictor


def _limit_threads() -> None:
    """One thread per worker for BLAS and OpenMP: the workers are the parallelism."""
    global _LIMITS
    if os.environ.get("OMP_NUM_THREADS") == "1" and _LIMITS is None:
        from threadpoolctl import threadpool_limits

        _LIMITS = threadpool_limits(limits=1)


def _score_chunk(table, on_error: str, first_row: int, where: str):
    """Score one chunk: (outputs of the good rows, [(position, reason)] of the bad ones)."""
    return score_table(_PREDICTOR, table, on_error, first_row, where)


def _score_piece(piece, part: str, rejects_part: str | None, kind: str, on_error: str,
                 where: str, id: str | None, schema) -> tuple[int, int, int]:
    """Read, score and stage one Parquet piece: (rows read, rows scored, rows rejected).

    The rejects part is renamed into place before the scores' part, so a piece whose
    scores are staged always has its rejects staged too.
    """
    from modelport.io.sinks import PartWriter

    signature = _PREDICTOR.signature
    names = signature.names
    rows = scored = rejected = 0
    with PartWriter(Path(part), kind) as out:
        with (PartWriter(Path(rejects_part), "jsonl") if rejects_part
              else _NoPart()) as bad_out:
            for table in piece.tables():
                first = piece.first_row + rows
                outputs, bad = score_table(_PREDICTOR, table.select(names), on_error, first,
                                           where)
                if bad:  # a piece without rejects stages an empty rejects part
                    bad_out.write(rejects_table(table, bad, first))
                good = _keep(table, bad)
                out.write(output_table(signature, outputs, good.column(id) if id else None, id,
                                       schema))
                rows += table.num_rows
                scored += good.num_rows
                rejected += len(bad)
        if not rows:
            out.write(schema.empty_table())
    return rows, scored, rejected


class _NoPart:
    """Where rejects go when they are not kept."""

    def write(self, table) -> None:
        pass

    def __enter__(self) -> _NoPart:
        return self

    def __exit__(self, *exc) -> None:
        pass


def score_table(predictor, table, on_error: str = "fail", first_row: int = 0,
                where: str = "input"):
    """Score an Arrow table with ``predictor``; return (outputs, bad rows).

    ``outputs`` are the Predictor's outputs for the rows that could be scored, in order;
    bad rows are ``(position in table, reason)``. With ``on_error="fail"`` a bad row
    raises a :class:`UserError` naming the row instead.
    """
    import numpy as np

    cols, bad = to_columns(table, predictor.signature, on_error, first_row, where)
    n = table.num_rows
    if bad:
        keep = np.ones(n, dtype=bool)
        keep[[p for p, _ in bad]] = False
        cols = {k: v[keep] for k, v in cols.items()}
        positions = np.flatnonzero(keep)
    else:
        positions = None
    outputs, more = _run(predictor, cols, on_error, first_row, where, positions)
    if more:
        bad = sorted(bad + more)
    return outputs, bad


def _run(predictor, cols, on_error, first_row, where, positions):
    """Run the model; a chunk that fails is retried row by row to find the bad rows."""
    import numpy as np

    n = len(next(iter(cols.values()))) if cols else 0
    if n == 0:
        return predictor._empty(), []
    pos = positions if positions is not None else np.arange(n)
    try:
        outputs = predictor._run_batch(cols)
    except Exception as exc:
        if on_error == "fail":
            raise UserError(
                f"{where}: scoring rows {first_row + int(pos[0]) + 1:,} to "
                f"{first_row + int(pos[-1]) + 1:,} failed ({type(exc).__name__}: {exc}); "
                "use --on-error reject to set rows that cannot be scored aside") from None
        return _run_row_by_row(predictor, cols, pos)
    bad_rows = _not_finite(outputs)
    if not bad_rows.size:
        return outputs, []
    if on_error == "fail":
        row = first_row + int(pos[bad_rows[0]]) + 1
        raise UserError(f"{where} row {row:,}: the model gave a score that is not a number "
                        "(NaN or infinite); use --on-error reject to set such rows aside")
    keep = np.ones(n, dtype=bool)
    keep[bad_rows] = False
    reason = "the model gave a score that is not a number (NaN or infinite)"
    return ({k: v[keep] for k, v in outputs.items()},
            [(int(pos[i]), reason) for i in bad_rows])


def _run_row_by_row(predictor, cols, pos):
    import numpy as np

    parts, bad = [], []
    for i in range(len(pos)):
        row = {k: v[i:i + 1] for k, v in cols.items()}
        try:
            out = predictor._run_batch(row)
        except Exception as exc:
            bad.append((int(pos[i]), f"{type(exc).__name__}: {exc}"))
            continue
        if _not_finite(out).size:
            bad.append((int(pos[i]), "the model gave a score that is not a number (NaN or "
                                     "infinite)"))
            continue
        parts.append(out)
    if not parts:
        return predictor._empty(), bad
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, bad


def _not_finite(outputs) -> Any:
    import numpy as np

    bad = np.zeros(0, dtype=np.int64)
    for key in ("proba", "value"):
        if key in outputs:
            values = np.asarray(outputs[key], dtype=np.float64)
            rows = ~np.isfinite(values)
            if rows.ndim == 2:
                rows = rows.any(axis=1)
            bad = np.union1d(bad, np.flatnonzero(rows))
    return bad


# -- Arrow in, Arrow out -------------------------------------------------------------------

def to_columns(table, signature, on_error: str = "fail", first_row: int = 0,
               where: str = "input"):
    """The signature's columns of an Arrow table as NumPy arrays, and the rows that are bad.

    Numbers become float64 (missing: NaN), as :meth:`Signature.columns` makes them but
    column at a time from Arrow; string categories become :class:`~modelport.predictor.Coded`
    columns (each distinct word once, and integer codes). A value that is
    not a number in a numeric column is a bad row: with ``on_error="fail"`` a
    :class:`UserError` naming the row, the column and the value.
    """
    import pyarrow as pa

    cols: dict[str, Any] = {}
    bad: dict[int, str] = {}
    for col in signature.inputs:
        values = table.column(col.name)
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if col.kind == "numeric":
            cols[col.name] = _numbers(values, col.name, bad, on_error, first_row, where)
        else:
            cols[col.name] = _categories(values, signature)
    return cols, sorted(bad.items())


def _numbers(values, name, bad, on_error, first_row, where):
    import numpy as np
    import pyarrow as pa

    t = values.type
    if pa.types.is_dictionary(t):
        values = values.dictionary_decode()
        t = values.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return _float64(values)
    import pyarrow.compute as pc

    if pa.types.is_boolean(t) or pa.types.is_decimal(t) or pa.types.is_null(t):
        return pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise UserError(f"{where}: column {name!r} must be numeric, but it holds {t} values; "
                        "convert it to numbers")
    stripped = pc.utf8_trim_whitespace(values)
    stripped = pc.if_else(pc.equal(stripped, ""), pa.scalar(None, stripped.type), stripped)
    try:
        return pc.cast(stripped, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(stripped.to_pylist()):
        if v is None:
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except ValueError:
            out[i] = np.nan
            if on_error == "fail":
                raise UserError(
                    f"{where} row {first_row + i + 1:,}: column {name!r} must be numeric, got "
                    f"{v!r}; fix the value, or use --on-error reject to set such rows aside"
                ) from None
            bad.setdefault(i, f"column {name!r} must be numeric, got {v!r}")
    return out


def _float64(values):
    """An Arrow array of numbers as float64, NaN where null, read from its buffers.

    Arrow's own conversion of an array with nulls goes through pandas, and its compute
    functions take half a second to load on their first call: a worker needs neither.
    """
    import numpy as np

    name = str(values.type)
    dtype = np.dtype({"halffloat": "float16", "float": "float32", "double": "float64"}.get(
        name, name))
    out = np.frombuffer(values.buffers()[1], dtype=dtype,
                        count=len(values) + values.offset)[values.offset:].astype(np.float64)
    if values.null_count:
        bits = np.unpackbits(np.frombuffer(values.buffers()[0], dtype=np.uint8),
                             bitorder="little")[values.offset:values.offset + len(values)]
        out[bits == 0] = np.nan
    return out


def _categories(values, signature):
    """A :class:`~modelport.predictor.Coded` column: each distinct string once, and codes.

    Dictionary-encoded Arrow columns (Parquet's own encoding of strings) are taken as they
    are; plain strings are encoded first. A predictor then looks each word up once.
    """
    import numpy as np
    import pyarrow as pa

    from modelport.predictor import Coded
    from modelport.signature import _strings

    t = values.type
    if pa.types.is_dictionary(t):
        encoded = values
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        encoded = values.dictionary_encode()
    else:
        # numbers as categories follow the signature's own rule (2.0 -> "2")
        return _strings(values.to_numpy(zero_copy_only=False))
    # the words are few: a list of them, since Arrow's own conversion goes through pandas
    words = _strings(np.array(encoded.dictionary.to_pylist() + [None], dtype=object)[:-1])
    codes = _float64(encoded.indices)
    return Coded(words, np.where(np.isnan(codes), -1, codes).astype(np.int64)
                 if encoded.null_count else codes.astype(np.int64))


def output_schema(signature, id_type=None, id: str | None = None):
    """The Arrow schema of the scores: the id column, then the outputs of the task."""
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
    return pa.schema(fields)


def proba_column(cls) -> str:
    """The name of the probability column of class ``cls``: ``proba_<class>``."""
    return f"proba_{cls}"


def _label_type(classes):
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


def output_table(signature, outputs: dict, id_values, id: str | None, schema):
    """The scores of one chunk as an Arrow table with ``schema``."""
    import numpy as np
    import pyarrow as pa

    arrays = {}
    if id and id_values is not None:
        arrays[id] = id_values
    if signature.task == "classification":
        arrays["label"] = np.asarray(outputs["label"])
        if "score" in schema.names or any(n.startswith("proba_") for n in schema.names):
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
    return pa.Table.from_arrays([_typed(arrays[f.name], f.type) for f in schema], schema=schema)


def _typed(values, type):
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


def rejects_table(chunk, bad: Sequence[tuple[int, str]], first_row: int):
    """The rejected rows of ``chunk`` with their row number ``_row`` (from 1) and ``_reason``."""
    import pyarrow as pa

    positions = [p for p, _ in bad]
    table = chunk.take(pa.array(positions, type=pa.int64()))
    table = table.append_column("_row", pa.array([first_row + p + 1 for p in positions],
                                                 type=pa.int64()))
    return table.append_column("_reason", pa.array([r for _, r in bad], type=pa.string()))


def _keep(chunk, bad):
    import numpy as np

    if not bad:
        return chunk
    keep = np.ones(chunk.num_rows, dtype=bool)
    keep[[p for p, _ in bad]] = False
    return chunk.filter(keep)


def default_rejects_path(output) -> Path:
    """Beside a file output (``scores.rejects.jsonl``); in the working folder for a table."""
    from modelport.io.tables import _URL

    text = str(output)
    if _URL.match(text) and not text.startswith("file://"):
        table = text.partition("#")[2] or "scores"
        return Path(f"{table}.rejects.jsonl")
    path = Path(text.removeprefix("file://"))
    name = path.name
    for suffix in (".csv.gz", ".parquet", ".csv", ".jsonl", ".ndjson", ".pq"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(f"{name}.rejects.jsonl")


def _job_key(version, fmt, input, id, chunk_rows, on_error, output, cut: str) -> str:
    """What makes two runs the same job (resume skips only chunks of the same job)."""
    from modelport.io.tables import describe

    stamp = None
    text = str(input) if not isinstance(input, dict) else ""
    if text and Path(text).exists():
        st = Path(text).stat()
        stamp = [st.st_size, st.st_mtime_ns] if Path(text).is_file() else None
    key = json.dumps([version.name, version.version, fmt, describe(input), stamp, id,
                      chunk_rows, on_error, str(output), cut], default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:32]


# -- progress ------------------------------------------------------------------------------

class _Progress:
    """A rich progress bar on a terminal; otherwise a plain line every half minute."""

    def __init__(self, total: int | None, done: int, show: bool | None) -> None:
        self.total, self.done = total, done
        self.tty = sys.stderr.isatty() if show is None else show
        self.started = self.last = time.monotonic()
        self._bar = None
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
