"""Adaptive micro-batching: concurrent requests for one model share one predictor call.

Requests that arrive while the model is busy (or within one turn of the event loop) are
scored together, up to ``max_batch_size`` rows: under load batches form by themselves, and
an idle server scores each request at once. ``max_latency_ms`` (default 0) lets a request
under load (the previous batch held more than one request) also wait that long for
company; with clients that wait for each answer this mostly adds latency, so it is off. Calls that take under a
millisecond run on the event loop (a thread hop would cost more than the call); slower
ones run in a worker thread so the loop keeps accepting requests. Nothing is ever refused
for being queued: under overload latency grows, requests do not fail.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: a predictor call cheaper than this (seconds, moving average) runs on the event loop
INLINE_BELOW = 0.001

Outputs = dict[str, np.ndarray]


class MicroBatcher:
    """Queues checked columns, scores them in batches with ``run``, hands back each slice."""

    def __init__(self, run: Callable[[dict[str, np.ndarray]], Outputs], *,
                 max_batch_size: int = 64, max_latency_ms: float = 0.0,
                 on_batch: Callable[[int, int, float], None] | None = None) -> None:
        self._run = run
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
        taken, rows = [], 0
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
        if self._cost < INLINE_BELOW:
            self._deliver(batch, *self._score(batch))
            self._next(loop)
            return
        self._busy = True
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="modelport-batch")
        task = loop.run_in_executor(self._executor, self._score, batch)
        task.add_done_callback(lambda t: self._done(loop, batch, t))

    def _done(self, loop, batch, task) -> None:
        self._busy = False
        self._deliver(batch, *task.result())
        self._next(loop)

    def _next(self, loop) -> None:
        if self._pending and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush, loop)

    def _score(self, batch) -> tuple[Outputs | None, BaseException | None]:
        start = time.perf_counter()
        try:
            if len(batch) == 1:
                columns = batch[0][0]
            else:
                columns = {k: np.concatenate([b[0][k] for b in batch]) for k in batch[0][0]}
            out, error = self._run(columns), None
        except Exception as exc:  # delivered to the requests, which decide what it means
            out, error = None, exc
        elapsed = time.perf_counter() - start
        self._cost = elapsed if self._cost == 0 else 0.8 * self._cost + 0.2 * elapsed
        if self._on_batch is not None:
            self._on_batch(len(batch), sum(b[1] for b in batch), elapsed)
        return out, error

    def _deliver(self, batch, out: Outputs | None, error: BaseException | None) -> None:
        if error is not None and len(batch) > 1:
            # one request's rows broke the batch: score each alone so only it fails
            for item in batch:
                self._deliver([item], *self._score([item]))
            return
        start = 0
        for _columns, rows, future in batch:
            if future.done():
                start += rows
                continue
            if error is not None:
                future.set_exception(error)
            elif len(batch) == 1:
                future.set_result(out)
            else:
                future.set_result({k: v[start:start + rows] for k, v in out.items()})
            start += rows

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
