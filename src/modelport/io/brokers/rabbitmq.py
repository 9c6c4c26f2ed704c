"""RabbitMQ (AMQP 0-9-1): a durable queue consumed with manual acks and a prefetch window,
outputs published persistently to a durable queue with publisher confirms.

A delivery is acknowledged (``multiple=True`` up to the last delivery tag of the batch)
only after the broker confirmed every output of the batch; a worker that dies before
that leaves its unacknowledged deliveries to be redelivered to the next consumer. The
prefetch (URL option ``prefetch``, default the worker's window: the batches being settled
plus the one being read) bounds what sits in a worker.

The message id is the AMQP ``message_id`` property when the producer set one (AMQP has no
id of its own that survives a redelivery).

The adapter speaks through pika's asyncio connection, on the worker's own event loop.
Publishing and receiving are callbacks that write or parse frames directly, about a sixth
of the CPU per message of an awaitable-per-publish client; the stream worker settles whole
batches itself, so it needs no per-message awaitable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from modelport.errors import UserError, require
from modelport.io.brokers import BrokerURL, Message, Outputs, gather

if TYPE_CHECKING:
    from pika.adapters.asyncio_connection import AsyncioConnection
    from pika.channel import Channel
    from pika.frame import Method
    from pika.spec import Basic, BasicProperties


class _Connection:
    """One pika connection with one channel, driven by the running event loop."""

    def __init__(self, u: BrokerURL) -> None:
        self.url = u
        self.conn: AsyncioConnection | None = None
        self.channel: Channel | None = None
        self.closed: asyncio.Future | None = None
        # called with the reason when the channel closes under us
        self.on_lost: Callable[[BaseException], None] | None = None
        self._calls: set[asyncio.Future] = set()

    async def call(self, start: Callable[[Callable[..., None]], object]) -> Any:
        """Run a pika call that reports through a callback; return what the callback got.
        A channel the broker closes instead (a refused declare, say) fails the call."""
        done = asyncio.get_running_loop().create_future()

        def finish(result: Any = None) -> None:
            if not done.done():
                done.set_result(result)

        self._calls.add(done)
        try:
            start(finish)
            return await done
        finally:
            self._calls.discard(done)

    def _fail_calls(self, reason: BaseException) -> None:
        for done in list(self._calls):
            if not done.done():
                done.set_exception(ConnectionError(f"RabbitMQ closed the channel: {reason}"))

    async def open(self) -> None:
        pika = require("pika", "brokers", "RabbitMQ")
        from pika.adapters.asyncio_connection import AsyncioConnection

        loop = asyncio.get_running_loop()
        opened = loop.create_future()
        self.closed = loop.create_future()

        def open_failed(conn: AsyncioConnection, error: BaseException | str) -> None:
            if not opened.done():
                opened.set_exception(ConnectionError(
                    f"RabbitMQ at {_redact(self.url.server)}: {error!r}"))

        def lost(conn: AsyncioConnection, reason: BaseException) -> None:
            assert self.closed is not None  # set before the connection opens
            if not self.closed.done():
                self.closed.set_result(reason)
            open_failed(conn, reason)
            self._fail_calls(reason)

        try:
            params = pika.URLParameters(self.url.server)
        except Exception as exc:
            raise UserError(f"{_redact(self.url.url)!r} is not an AMQP URL pika can read: "
                            f"{exc}; use amqp://USER:PASS@HOST:5672/VHOST?queue=NAME") from exc
        conn = self.conn = AsyncioConnection(params, on_open_callback=opened.set_result,
                                             on_open_error_callback=open_failed,
                                             on_close_callback=lost, custom_ioloop=loop)
        await opened
        self.channel = await self.call(lambda cb: conn.channel(on_open_callback=cb))
        self.channel.add_on_close_callback(self._channel_closed)

    def _channel_closed(self, channel: Channel, reason: BaseException) -> None:
        self._fail_calls(reason)
        if self.on_lost is not None:
            self.on_lost(reason)

    def coalesce(self) -> None:
        """Join the frames waiting to be written into one buffer, so a batch leaves in a
        few ``send`` calls instead of one per frame (three per published message).

        pika queues each frame as a buffer of its own and writes them one ``send`` each,
        a fifth of the worker's time at 10,000 messages/s. This touches the transport's
        queue, which pika does not publish: if it is not there as expected, nothing is
        changed and the frames go out one by one, as before.
        """
        transport = getattr(self.conn, "_transport", None)
        buffers = getattr(transport, "_tx_buffers", None)
        if buffers is not None and len(buffers) > 1 and all(
                isinstance(b, bytes | bytearray | memoryview) for b in buffers):
            joined = b"".join(buffers)
            buffers.clear()
            buffers.append(joined)

    async def declare(self, queue: str, passive: bool = False) -> Method:
        channel = self.channel
        assert channel is not None  # set by open
        return await self.call(lambda cb: channel.queue_declare(
            queue, passive=passive, durable=True, callback=cb))

    async def close(self) -> None:
        if self.conn is not None and not self.conn.is_closed:
            if not self.conn.is_closing:
                self.conn.close()
            assert self.closed is not None  # set by open
            await asyncio.wait_for(asyncio.shield(self.closed), timeout=10)


def _redact(url: str) -> str:
    from modelport.io.tables import redact

    return redact(url)


class Source:
    """Consumes one durable queue."""

    def __init__(self, url: BrokerURL, *, group: str, batch: int,
                 window: int | None = None) -> None:
        self.url = url
        self.queue_name = url.destination
        self.prefetch = int(url.options.get("prefetch", str(max(window or 2 * batch, 100))))
        self.link = _Connection(url)
        self._inbox: asyncio.Queue[tuple[str | None, bytes, int]] = asyncio.Queue()
        self._lost: BaseException | None = None

    async def connect(self) -> None:
        link = self.link
        await link.open()
        link.on_lost = self._on_lost
        channel = link.channel
        assert channel is not None  # set by open
        await link.call(lambda cb: channel.basic_qos(prefetch_count=self.prefetch,
                                                     callback=cb))
        await link.declare(self.queue_name)
        inbox = self._inbox

        def deliver(channel: Channel, method: Basic.Deliver, properties: BasicProperties,
                    body: bytes) -> None:
            inbox.put_nowait((properties.message_id, body, method.delivery_tag))

        channel.basic_consume(self.queue_name, deliver, auto_ack=False)

    def _on_lost(self, reason: BaseException) -> None:
        self._lost = ConnectionError(f"RabbitMQ closed the channel: {reason}")

    async def read(self, n: int, wait_s: float) -> list[Message]:
        if self._lost is not None:
            raise self._lost
        got = await gather(self._inbox, n, wait_s)
        now = time.time()
        return [Message(id=mid, payload=body, token=tag, received=now)
                for mid, body, tag in got]

    async def ack(self, messages: list[Message]) -> None:
        if self._lost is not None:
            raise self._lost  # a new channel would not know these delivery tags
        if messages:
            assert self.link.channel is not None  # set by connect
            self.link.channel.basic_ack(max(m.token for m in messages), multiple=True)

    async def lag(self) -> int | None:
        declared = await self.link.declare(self.queue_name, passive=True)
        return int(declared.method.message_count)

    async def close(self) -> None:
        await self.link.close()


class Sink:
    """Publishes persistent messages to a durable queue, waiting for the confirms."""

    def __init__(self, url: BrokerURL) -> None:
        self.url = url
        self.queue_name = url.destination
        self.link = _Connection(url)
        self._tag = 0  # the channel's delivery tag of the last publish
        self._low = 1  # every tag below this one is settled
        self._waiting: dict[int, Outputs] = {}

    async def connect(self) -> None:
        link = self.link
        await link.open()
        link.on_lost = self._on_lost
        channel = link.channel
        assert channel is not None  # set by open
        await link.call(lambda cb: channel.confirm_delivery(self._on_confirm, callback=cb))
        await link.declare(self.queue_name)

    def _on_confirm(self, frame: Method) -> None:
        method = frame.method
        refused = "RabbitMQ basic.nack" if method.NAME.endswith("Nack") else None
        tags: Iterable[int]
        if method.multiple:
            tags = range(self._low, method.delivery_tag + 1)
            self._low = max(self._low, method.delivery_tag + 1)
        else:
            tags = (method.delivery_tag,)
        for tag in tags:
            batch = self._waiting.pop(tag, None)
            if batch is not None:
                batch.settle(refused)
        waiting = self._waiting
        while self._low <= self._tag and self._low not in waiting:
            self._low += 1  # single confirms at the front move the settled mark on too

    def _on_lost(self, reason: BaseException) -> None:
        error = ConnectionError(f"RabbitMQ closed the channel before confirming: {reason}")
        for batch in set(self._waiting.values()):
            if not batch.done.done():
                batch.done.set_exception(error)
        self._waiting.clear()

    async def publish(self, records: list[tuple[str, bytes]]) -> None:
        if not records:
            return
        pika = require("pika", "brokers", "RabbitMQ")
        channel = self.link.channel
        if channel is None or not channel.is_open:
            raise ConnectionError("RabbitMQ channel is closed; outputs not published")
        batch = Outputs(len(records))
        properties = pika.BasicProperties
        waiting = self._waiting
        # a nack or a lost channel fails the batch, so its inputs are not acknowledged
        for key, payload in records:
            channel.basic_publish("", self.queue_name, payload,
                                  properties(delivery_mode=2, message_id=key))
            self._tag += 1
            waiting[self._tag] = batch
        self.link.coalesce()
        await batch.done

    async def close(self) -> None:
        await self.link.close()
