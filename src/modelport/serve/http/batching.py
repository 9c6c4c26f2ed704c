"""Adaptive micro-batching: concurrent requests for one model share one predictor call.

Requests that arrive while the model is busy (or within one turn of the event loop) are
scored together, up to ``max_batch_size`` rows: under load batches form by themselves, and
an idle server scores each request at once. ``max_latency_ms`` (default 0) lets a request
under load (the previous batch held more than one request) also wait that long for
company; with clients that wait for each answer this mostly adds latency, so it is off. Calls that take under a
millisecond run on the event loop (a thread hop would cost more than the call); slower
ones run in a worker thread so the loop keeps accepting requests. Nothing is ever refused
for being queued: under overload latency grows, requests do not fail.

A batch is scored through the scoring core (:func:`modelport.scoring.isolation.score`):
rows the model raises on, or gives no number for, are isolated by splitting the batch, and
only the requests holding them fail (with :class:`RowsRejected`); every other request gets
the scores it would have got alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from modelport.kernel import Coded, Reject
from modelport.scoring.checks import Checked
from modelport.scoring.isolation import Outcome, score

#: a predictor call cheaper than this (seconds, moving average) runs on the event loop
INLINE_BELOW = 0.001
#: ... unless it holds more rows than this: one large request after many small ones would
#: otherwise be scored on the loop, holding up every other request meanwhile
INLINE_ROWS = 256

Outputs = dict[str, np.ndarray]


class RowsRejected(Exception):
    """Rows of one request the model could not score: ``rejects`` maps the row's position
    in the request to its :class:`~modelport.scoring.checks.Reject`."""

    def __init__(self, rejects: dict[int, Reject]) -> None:
        row = min(rejects)
        super().__init__(f"row {row}: {rejects[row].message}")
        self.rejects = rejects


class MicroBatcher:
    """Queues checked columns, scores them in batches with ``run`` (a predictor's scoring of
    checked columns), hands back each request's slice."""

    def __init__(self, run: Callable[[dict[str, np.ndarray]], Outputs], *,
                 empty: Callable[[], Outputs] | None = None,
                 max_batch_size: int = 64, max_latency_ms: float = 0.0,
                 on_batch: Callable[[int, int, float], None] | None = None) -> None:
        self._run = run
        self._empty = empty
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_latency = max(0.0, float(max_latency_ms)) / 1000.0
        self._on_batch = on_batch
        self._pending: list[tuple[dict, int, asyncio.Future]] = []
        self._pending_rows = 0
        self._scheduled = False
        self._busy = False
        self._under_load = False
        self._cost = 0.0
        self._executor: ThreadPoolExecutor | None = None

    async def submit(self, columns: dict[str, np.ndarray], rows: int) -> Outputs:
        """Score ``rows`` rows of ``columns`` as part of the next batch."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((columns, rows, future))
        self._pending_rows += rows
        if not self._busy and not self._scheduled:
            self._scheduled = True
            if self._under_load and self.max_latency and self._pending_rows < self.max_batch_size:
                loop.call_later(self.max_latency, self._flush, loop)
            else:
                loop.call_soon(self._flush, loop)
        elif not self._busy and self._pending_rows >= self.max_batch_size:
            loop.call_soon(self._flush, loop)
        return await future

    def _take(self) -> list[tuple[dict, int, asyncio.Future]]:
        taken: list[tuple[dict, int, asyncio.Future]] = []
        rows = 0
        while self._pending and (not taken or rows + self._pending[0][1] <= self.max_batch_size):
            item = self._pending.pop(0)
            if item[2].cancelled():
                self._pending_rows -= item[1]
                continue
            taken.append(item)
            rows += item[1]
            self._pending_rows -= item[1]
        return taken

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        if self._busy or not self._pending:
            return
        batch = self._take()
        if not batch:
            return
        self._under_load = len(batch) > 1 or bool(self._pending)
        if self._cost < INLINE_BELOW and sum(b[1] for b in batch) <= INLINE_ROWS:
            self._deliver(batch, *self._score(batch))
            self._next(loop)
            return
        self._busy = True
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="modelport-batch")
        task = loop.run_in_executor(self._executor, self._score, batch)
        task.add_done_callback(lambda t: self._done(loop, batch, t))

    def _done(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[dict, int, asyncio.Future]],
              task: asyncio.Future[tuple[Outcome | None, BaseException | None]]) -> None:
        self._busy = False
        self._deliver(batch, *task.result())
        self._next(loop)

    def _next(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._pending and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush, loop)

    def _score(self, batch: list[tuple[dict, int, asyncio.Future]]
               ) -> tuple[Outcome | None, BaseException | None]:
        start = time.perf_counter()
        rows = sum(b[1] for b in batch)
        try:
            if len(batch) == 1:
                columns = batch[0][0]
            elif any(v.__class__ is Coded for b in batch for v in b[0].values()):
                columns = {k: _concat([b[0][k] for b in batch]) for k in batch[0][0]}
            else:
                columns = {k: np.concatenate([b[0][k] for b in batch]) for k in batch[0][0]}
            out, error = score(self._run, Checked(columns, rows), self._no_rows), None
        except Exception as exc:  # delivered to the requests, which decide what it means
            out, error = None, exc
        elapsed = time.perf_counter() - start
        self._cost = elapsed if self._cost == 0 else 0.8 * self._cost + 0.2 * elapsed
        if self._on_batch is not None:
            self._on_batch(len(batch), rows, elapsed)
        return out, error

    def _no_rows(self) -> Outputs:
        if self._empty is not None:
            return self._empty()
        raise ValueError("no rows to score")

    def _deliver(self, batch: list[tuple[dict, int, asyncio.Future]], out: Outcome | None,
                 error: BaseException | None) -> None:
        start = 0
        for _columns, rows, future in batch:
            if future.done():
                start += rows
                continue
            if error is not None:
                future.set_exception(error)
                start += rows
                continue
            assert out is not None  # no error: the batch was scored
            if len(batch) == 1 and not out.rejects:
                future.set_result(out.outputs)
            elif not out.rejects:
                future.set_result({k: v[start:start + rows] for k, v in out.outputs.items()})
            else:
                bad = {i - start: why for i, why in out.rejects.items()
                       if start <= i < start + rows}
                if bad:
                    future.set_exception(RowsRejected(bad))
                else:
                    # no row of this request was rejected: its scores lie side by side
                    at = int(np.searchsorted(out.positions, start))
                    future.set_result({k: v[at:at + rows] for k, v in out.outputs.items()})
            start += rows

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


def _concat(parts: list[np.ndarray | Coded]) -> np.ndarray:
    """Columns of several requests as one; dictionary-encoded ones decoded first."""
    return np.concatenate([p.decode() if isinstance(p, Coded) else p for p in parts])
