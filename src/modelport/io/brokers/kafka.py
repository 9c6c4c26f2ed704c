"""Kafka (librdkafka through confluent-kafka): a consumer group with auto-commit off;
offsets are committed synchronously only after every output of the batch was delivered
(the producer flushed and reported no error).

The message id is ``topic/partition/offset``, the same on every redelivery. A worker that
dies before it commits leaves the group to hand its partitions, from the last committed
offset, to another member (or to itself after a restart).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from modelport.errors import require
from modelport.io.brokers import BrokerURL, Message

if TYPE_CHECKING:
    from confluent_kafka import Consumer, KafkaError, Producer
    from confluent_kafka import Message as KafkaMessage


def _bootstrap(u: BrokerURL) -> str:
    return u.server.split("://", 1)[1].rstrip("/")


class Source:
    """One member of a Kafka consumer group.

    The worker settles one batch at a time here (``max_inflight``): a commit and a
    flush would otherwise run in threads beside the next ``consume``, a combination the
    delivery test has not run against a broker.
    """

    max_inflight = 1

    def __init__(self, url: BrokerURL, *, group: str, batch: int,
                 window: int | None = None) -> None:
        self.url = url
        self.topic = url.destination
        self.group = group
        self.consumer: Consumer | None = None

    async def connect(self) -> None:
        ck = require("confluent_kafka", "brokers", "Kafka")
        self.consumer = ck.Consumer({
            "bootstrap.servers": _bootstrap(self.url), "group.id": self.group,
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "enable.partition.eof": False})
        self.consumer.subscribe([self.topic])

    async def read(self, n: int, wait_s: float) -> list[Message]:
        assert self.consumer is not None  # set by connect
        msgs = await asyncio.to_thread(self.consumer.consume, n, max(wait_s, 0.001))
        now = time.time()
        out = []
        for m in msgs:
            if m.error() is not None:
                continue  # partition events and transient errors: librdkafka retries
            out.append(Message(id=f"{m.topic()}/{m.partition()}/{m.offset()}",
                               payload=m.value() or b"", token=m, received=now))
        return out

    async def ack(self, messages: list[Message]) -> None:
        if not messages:
            return
        ck = require("confluent_kafka", "brokers", "Kafka")
        last: dict[tuple[str, int], int] = {}
        for m in messages:
            key = (m.token.topic(), m.token.partition())
            last[key] = max(last.get(key, -1), m.token.offset())
        offsets = [ck.TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        assert self.consumer is not None  # set by connect
        await asyncio.to_thread(self.consumer.commit, offsets=offsets, asynchronous=False)

    async def close(self) -> None:
        if self.consumer is not None:
            await asyncio.to_thread(self.consumer.close)


class Sink:
    """Produces outputs and waits until the broker acknowledged every one."""

    def __init__(self, url: BrokerURL) -> None:
        self.url = url
        self.topic = url.destination
        self.producer: Producer | None = None

    async def connect(self) -> None:
        ck = require("confluent_kafka", "brokers", "Kafka")
        self.producer = ck.Producer({"bootstrap.servers": _bootstrap(self.url),
                                     "acks": "all", "linger.ms": 2,
                                     "enable.idempotence": True})

    async def publish(self, records: list[tuple[str, bytes]]) -> None:
        if not records:
            return
        assert self.producer is not None  # set by connect
        errors: list[KafkaError] = []

        def report(err: KafkaError | None, msg: KafkaMessage) -> None:
            if err is not None:
                errors.append(err)

        for key, payload in records:
            while True:
                try:
                    self.producer.produce(self.topic, payload, key=key, on_delivery=report)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    await asyncio.to_thread(self.producer.poll, 0.1)
        remaining = await asyncio.to_thread(self.producer.flush, 30)
        if remaining or errors:
            raise RuntimeError(f"Kafka did not take {remaining + len(errors)} output(s): "
                               f"{errors[:1] or 'flush timed out'}")

    async def close(self) -> None:
        if self.producer is not None:
            await asyncio.to_thread(self.producer.flush, 10)
