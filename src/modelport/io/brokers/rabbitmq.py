"""RabbitMQ (AMQP 0-9-1): a durable queue consumed with manual acks and a prefetch window,
outputs published persistently to a durable queue with publisher confirms.

A delivery is acknowledged (``multiple=True`` up to the last delivery tag of the batch)
only after the broker confirmed every output of the batch; a worker that dies before
that leaves its unacknowledged deliveries to be redelivered to the next consumer. The
prefetch (URL option ``prefetch``, default twice the batch) bounds what sits in a worker.

The message id is the AMQP ``message_id`` property when the producer set one (AMQP has no
id of its own that survives a redelivery).
"""

from __future__ import annotations

import asyncio
import time

from modelport.errors import require
from modelport.io.brokers import BrokerURL, Message, gather


async def _connect(u: BrokerURL):
    aio_pika = require("aio_pika", "brokers", "RabbitMQ")
    conn = await aio_pika.connect(u.server)
    channel = await conn.channel(publisher_confirms=True)
    return conn, channel


class Source:
    """Consumes one durable queue."""

    def __init__(self, url: BrokerURL, *, group: str, batch: int) -> None:
        self.url = url
        self.queue_name = url.destination
        self.prefetch = int(url.option("prefetch", str(max(2 * batch, 100))))
        self.conn = self.channel = self.queue = None
        self._inbox: asyncio.Queue = asyncio.Queue()

    async def connect(self) -> None:
        self.conn, self.channel = await _connect(self.url)
        await self.channel.set_qos(prefetch_count=self.prefetch)
        self.queue = await self.channel.declare_queue(self.queue_name, durable=True)
        await self.queue.consume(self._inbox.put, no_ack=False)

    async def read(self, n: int, wait_s: float) -> list[Message]:
        got = await gather(self._inbox, n, wait_s)
        now = time.time()
        return [Message(id=m.message_id, payload=m.body, token=m, received=now) for m in got]

    async def ack(self, messages: list[Message]) -> None:
        if messages:
            last = max(messages, key=lambda m: m.token.delivery_tag)
            await last.token.ack(multiple=True)

    async def lag(self) -> int | None:
        declared = await self.channel.declare_queue(self.queue_name, passive=True)
        return int(declared.declaration_result.message_count)

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
        await self.channel.declare_queue(self.queue_name, durable=True)

    async def publish(self, records: list[tuple[str, bytes]]) -> None:
        if not records:
            return
        aio_pika = require("aio_pika", "brokers", "RabbitMQ")
        exchange = self.channel.default_exchange
        persistent = aio_pika.DeliveryMode.PERSISTENT
        await asyncio.gather(*[
            exchange.publish(aio_pika.Message(payload, delivery_mode=persistent, message_id=key),
                             routing_key=self.queue_name)
            for key, payload in records])

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
