"""RabbitMQ (AMQP 0-9-1): a durable queue consumed with manual acks and a prefetch window,
outputs published persistently to a durable queue with publisher confirms.

A delivery is acknowledged (``multiple=True`` up to the last delivery tag of the batch)
only after the broker confirmed every output of the batch; a worker that dies before
that leaves its unacknowledged deliveries to be redelivered to the next consumer. The
prefetch (URL option ``prefetch``, default the worker's window: the batches being settled
plus the one being read) bounds what sits in a worker.

The message id is the AMQP ``message_id`` property when the producer set one (AMQP has no
id of its own that survives a redelivery).

The adapter speaks through aiormq, the AMQP client aio-pika is built on: aio-pika's robust
objects cost about twice its CPU per message, and a stream worker settles whole batches
itself.
"""

from __future__ import annotations

import asyncio
import time

from modelport.errors import require
from modelport.io.brokers import BrokerURL, Message, gather


async def _connect(u: BrokerURL):
    aiormq = require("aiormq", "brokers", "RabbitMQ")
    conn = await aiormq.connect(u.server)
    channel = await conn.channel(publisher_confirms=True)
    return conn, channel


class Source:
    """Consumes one durable queue."""

    def __init__(self, url: BrokerURL, *, group: str, batch: int,
                 window: int | None = None) -> None:
        self.url = url
        self.queue_name = url.destination
        self.prefetch = int(url.option("prefetch", str(max(window or 2 * batch, 100))))
        self.conn = self.channel = None
        self._inbox: asyncio.Queue = asyncio.Queue()

    async def connect(self) -> None:
        self.conn, self.channel = await _connect(self.url)
        await self.channel.basic_qos(prefetch_count=self.prefetch)
        await self.channel.queue_declare(self.queue_name, durable=True)

        async def deliver(message) -> None:
            self._inbox.put_nowait(message)

        await self.channel.basic_consume(self.queue_name, deliver, no_ack=False)

    async def read(self, n: int, wait_s: float) -> list[Message]:
        got = await gather(self._inbox, n, wait_s)
        now = time.time()
        return [Message(id=m.header.properties.message_id, payload=m.body,
                        token=m.delivery.delivery_tag, received=now) for m in got]

    async def ack(self, messages: list[Message]) -> None:
        if messages:
            await self.channel.basic_ack(max(m.token for m in messages), multiple=True)

    async def lag(self) -> int | None:
        declared = await self.channel.queue_declare(self.queue_name, passive=True)
        return int(declared.message_count)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


class Sink:
    """Publishes persistent messages to a durable queue, waiting for the confirms."""

    def __init__(self, url: BrokerURL) -> None:
        self.url = url
        self.queue_name = url.destination
        self.conn = self.channel = None

    async def connect(self) -> None:
        self.conn, self.channel = await _connect(self.url)
        await self.channel.queue_declare(self.queue_name, durable=True)

    async def publish(self, records: list[tuple[str, bytes]]) -> None:
        if not records:
            return
        aiormq = require("aiormq", "brokers", "RabbitMQ")
        properties = aiormq.spec.Basic.Properties
        # each publish returns once its confirm arrived; a nack raises, so the batch is
        # not acknowledged and comes back. wait=False: a publish does not hold the
        # channel's lock until its frame is on the socket (the confirm still comes after),
        # so a batch's publishes do not queue on that lock one behind the other
        await asyncio.gather(*[
            self.channel.basic_publish(payload, routing_key=self.queue_name, wait=False,
                                       properties=properties(delivery_mode=2, message_id=key))
            for key, payload in records])

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
