"""The stream worker's side of its brokers: opening and connecting them, reading batches,
settling scored batches (publish the outputs and dead letters, then acknowledge the inputs,
in the order the batches were read), the backlog, and the pauses after failures not tied to
events.

Each part is one thing :func:`modelport.serve.stream.run` holds while it loops; optional
broker features are asked of the source through what
:func:`modelport.io.brokers.capabilities` found it offers.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from modelport.scoring.isolation import is_transient, reason

if TYPE_CHECKING:
    from modelport.io.brokers import (
        Atomic,
        BrokerSink,
        BrokerSource,
        Capabilities,
        Measured,
        Message,
    )
    from modelport.scoring.metrics import StreamMetrics
    from modelport.serve.stream import Scored, Stats

# the worker's log, whichever of its modules writes
log = logging.getLogger("modelport.stream")

#: the first and the longest pause between two tries of a step that failed for a reason
#: not tied to events (a database or a broker that is away)
BACKOFF_S = (0.1, 5.0)
#: how long a broker may keep failing before the worker stops with the error (for its
#: supervisor to start it afresh: a lost RabbitMQ channel does not come back by itself)
BROKER_PATIENCE_S = 120.0


# -- retrying what is not tied to events -------------------------------------------------

class Backoff:
    """Pauses between tries of a step that failed for a reason not tied to events, doubling
    from ``BACKOFF_S[0]`` to ``BACKOFF_S[1]``; after ``patience`` seconds of failures in a
    row (None: never) the failure is raised."""

    def __init__(self, what: str, stats: Stats, patience: float | None = None) -> None:
        self.what, self.stats, self.patience = what, stats, patience
        self.delay = BACKOFF_S[0]
        self.since: float | None = None

    def ok(self) -> None:
        if self.since is not None:
            log.info("%s works again", self.what)
            self.since, self.delay = None, BACKOFF_S[0]

    async def wait(self, exc: BaseException, stop: asyncio.Event) -> bool:
        """Pause after ``exc``; True if ``stop`` was set meanwhile. A failure tied to the
        input, or one that outlasted the patience, is raised."""
        if not is_transient(exc):
            raise exc
        now = time.monotonic()
        self.since = self.since or now
        if self.patience is not None and now - self.since > self.patience:
            raise exc
        self.stats.retries += 1
        log.warning("%s failed (%s); trying again in %.1f s", self.what, reason(exc, 300),
                    self.delay)
        try:
            await asyncio.wait_for(stop.wait(), self.delay)
            return True
        except TimeoutError:
            return False
        finally:
            self.delay = min(self.delay * 2, BACKOFF_S[1])


async def retried(what: str, call: Callable[[], Awaitable[object]], stats: Stats,
                  stop: asyncio.Event) -> None:
    """``await call()`` until it works, pausing after failures not tied to events; gives up
    (raising) after :data:`BROKER_PATIENCE_S` or once the worker is told to stop."""
    backoff = Backoff(what, stats, BROKER_PATIENCE_S)
    while True:
        try:
            await call()
            backoff.ok()
            return
        except Exception as exc:
            if await backoff.wait(exc, stop) or stop.is_set():
                raise


# -- the brokers -------------------------------------------------------------------------

@dataclass
class Brokers:
    """The brokers the worker talks to: the source, the sink of the outputs, the optional
    sink of the dead letters, and what the source offers beyond the contract (read once
    with :func:`modelport.io.brokers.capabilities`)."""

    source: BrokerSource
    sink: BrokerSink
    dead: BrokerSink | None
    offers: Capabilities
    #: the source, when it publishes to every sink and acknowledges in one atomic step
    #: (known once connected)
    together: Atomic | None = None

    @classmethod
    def open(cls, source_url: str, sink_url: str, dead_letter_url: str | None, *, group: str,
             batch: int, inflight: int) -> Brokers:
        """The brokers the URLs name, not yet connected, so that a wrong URL is the first
        error; the source lets the batches in flight plus the one being read go unacked."""
        from modelport.io import brokers

        source = brokers.open_source(source_url, group=group, batch=batch,
                                     window=(inflight + 1) * batch)
        offers = brokers.capabilities(source)
        sink = brokers.open_sink(sink_url)
        dead = brokers.open_sink(dead_letter_url, "--dead-letter") if dead_letter_url else None
        return cls(source, sink, dead, offers)

    def parts(self) -> list[BrokerSource | BrokerSink]:
        return [part for part in (self.source, self.sink, self.dead) if part is not None]

    async def connect(self) -> None:
        """Connect the source and the sinks, and learn whether they settle in one step."""
        for part in self.parts():
            await part.connect()
        self.together = self._atomic()

    def _atomic(self) -> Atomic | None:
        """The source as :class:`~modelport.io.brokers.Atomic`, when it offers that and
        shares its server with every sink."""
        if not self.offers.atomic:
            return None
        source = cast("Atomic", self.source)  # capabilities() found it Atomic
        if source.shares_server(self.sink) and (
                self.dead is None or source.shares_server(self.dead)):
            return source
        return None

    def measured(self) -> Measured | None:
        """The source as :class:`~modelport.io.brokers.Measured`, when it can say its lag."""
        return cast("Measured", self.source) if self.offers.lag else None

    async def close(self) -> None:
        """Close the source and the sinks; a failure to close is only logged."""
        for part in self.parts():
            try:
                await part.close()
            except Exception as exc:  # noqa: BLE001 - closing is best effort
                log.warning("closing %s: %s", type(part).__module__, exc)


# -- the loop's parts --------------------------------------------------------------------

class Reader:
    """Reads the next batch from the source: up to ``batch`` messages, gathered for at most
    ``wait_s`` after the first arrived; a failure not tied to events is paused after and,
    once it lasted :data:`BROKER_PATIENCE_S`, raised."""

    def __init__(self, source: BrokerSource, batch: int, wait_s: float, stats: Stats,
                 stop: asyncio.Event) -> None:
        self.source, self.batch, self.wait_s, self.stop = source, batch, wait_s, stop
        self.backoff = Backoff("reading from the source", stats, BROKER_PATIENCE_S)

    async def read(self) -> list[Message] | None:
        """The next batch (empty when nothing came), or None after a failure and its pause."""
        try:
            msgs = await self._gather()
            self.backoff.ok()
            return msgs
        except Exception as exc:
            await self.backoff.wait(exc, self.stop)
            return None

    async def _gather(self) -> list[Message]:
        source, batch, wait_s = self.source, self.batch, self.wait_s
        msgs = await source.read(batch, wait_s)
        # what keeps arriving while the batch is young joins it: a trickle gathers into a
        # batch worth one model call. Only what is at hand is asked for (a wait of 0): a
        # server may time a short wait out late
        while msgs and len(msgs) < batch and time.time() - msgs[0].received < wait_s:
            more = await source.read(batch - len(msgs), 0)
            if not more:
                break
            msgs.extend(more)
        return msgs


class Settling:
    """The scored batches being published and acknowledged while the next ones are read
    and scored: at most ``limit`` at once, acknowledged in the order they were read (each
    waits for the one before), so never past a batch whose outputs failed."""

    def __init__(self, wire: Brokers, limit: int, stats: Stats,
                 metrics: StreamMetrics | None, name: str, stop: asyncio.Event) -> None:
        self.wire, self.limit, self.stop = wire, limit, stop
        self.stats, self.metrics, self.name = stats, metrics, name
        self.tasks: collections.deque[asyncio.Task] = collections.deque()

    async def wait_for_room(self) -> bool:
        """Raise the failure of a batch that could not be settled; when ``limit`` batches
        are in flight, wait for the oldest to end and say so (True)."""
        tasks = self.tasks
        while tasks and tasks[0].done():
            tasks.popleft().result()  # a publish or ack that could not be done
        if len(tasks) < self.limit:
            return False
        await asyncio.wait([tasks[0]])
        return True

    def add(self, msgs: list[Message], scored: Scored) -> None:
        """Start settling a scored batch, behind the batches already in flight."""
        before = self.tasks[-1] if self.tasks else None
        self.tasks.append(asyncio.create_task(self._settle(before, msgs, scored)))

    async def drain(self) -> None:
        """Settle every batch in flight, raising the first failure."""
        while self.tasks:
            await asyncio.wait([self.tasks[0]])
            self.tasks.popleft().result()

    async def abandon(self) -> None:
        """Let the batches still in flight (the worker stopped by an error) end either way."""
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _settle(self, before: asyncio.Task | None, msgs: list[Message],
                      scored: Scored) -> None:
        await self._deliver(before, msgs, scored)
        done = time.time()
        count(self.stats, msgs, scored)
        if self.metrics is not None:
            observe(self.metrics, self.name, msgs, scored, done)

    async def _deliver(self, before: asyncio.Task | None, msgs: list[Message],
                       scored: Scored) -> None:
        """Publish the outputs and the dead letters, then acknowledge the inputs once the
        batch before is settled; in one atomic step where the source can."""
        wire, stats, stop = self.wire, self.stats, self.stop
        together, sink, dead = wire.together, wire.sink, wire.dead
        if together is not None:
            parts = [(sink, scored.outputs)] + ([(dead, scored.dead)] if dead is not None
                                                else [])
            # atomic: needs no order
            await retried("publishing and acknowledging",
                          lambda: together.publish_and_ack(parts, msgs), stats, stop)
            return
        await retried("publishing the outputs", lambda: sink.publish(scored.outputs),
                      stats, stop)
        if dead is not None:
            await retried("publishing the dead letters", lambda: dead.publish(scored.dead),
                          stats, stop)
        if before is not None:
            await before  # an earlier batch that failed is never acknowledged past
        await retried("acknowledging", lambda: wire.source.ack(msgs), stats, stop)


def count(stats: Stats, msgs: list[Message], scored: Scored) -> None:
    """Add a settled batch to what the worker did."""
    stats.consumed += len(msgs)
    stats.scored += len(scored.outputs)
    stats.dead_lettered += len(scored.dead)
    stats.flagged += len(scored.flags)
    stats.batches += 1


def observe(metrics: StreamMetrics, name: str, msgs: list[Message], scored: Scored,
            done: float) -> None:
    """Add a settled batch, acknowledged at ``done``, to the metrics."""
    metrics.consumed.inc(len(msgs))
    metrics.scored.labels(str(scored.version)).inc(len(scored.outputs))
    metrics.dead.inc(len(scored.dead))
    metrics.batch.observe(len(msgs))
    metrics.latency.observe(done - msgs[0].received)
    metrics.count(name, scored.version, scored=len(scored.outputs), rejects=scored.rejects,
                  flags=scored.flags, seconds=scored.seconds)


class Lag:
    """Samples how many messages wait for the source, at most every 5 s, into the stats
    and the metrics: asked only of a source that can say (``Measured``) and only when
    metrics are served."""

    def __init__(self, source: Measured | None, stats: Stats,
                 metrics: StreamMetrics | None) -> None:
        self.source, self.stats, self.metrics = source, stats, metrics
        self.due = 0.0

    async def sample(self) -> None:
        if self.metrics is None or self.source is None:
            return
        now = time.monotonic()
        if now < self.due:
            return
        self.due = now + 5
        try:
            self.stats.lag = await self.source.lag()
            if self.stats.lag is not None:
                self.metrics.lag.set(self.stats.lag)
        except Exception:  # noqa: BLE001 - lag is informative only
            pass
