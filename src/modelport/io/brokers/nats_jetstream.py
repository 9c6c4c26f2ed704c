"""NATS JetStream: a durable pull consumer reads, outputs are published to JetStream and
each input is acknowledged only after every output of its batch got its publish ack.

The message id is the stream sequence number, the same on every redelivery. A source or
sink subject that no stream captures yet gets a stream of its own (named after the
subject). Unacknowledged messages come back after ``ack_wait`` seconds (URL option,
default 30), which is how a killed worker's batch is scored again.

Outputs are published with ``Nats-Msg-Id`` set to ``<input id>@<model version>``: the
server then drops a result re-sent after a redelivery within its de-duplication window
(2 minutes by default) and answers with ``duplicate=True``, which counts as written. The
model version is part of the key on purpose: with the input id alone, rescoring the same
event with a newer model after a hot reload would be silently dropped as a duplicate.

:class:`Reader` reads from a stored stream sequence instead (an ephemeral consumer, no
acknowledgements), for consumers that keep their position themselves, such as an online
learner's checkpoints.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING

from modelport.errors import require
from modelport.io.brokers import BrokerURL, Message, Outputs

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext


async def _connect(u: BrokerURL) -> tuple[Client, JetStreamContext]:
    nats = require("nats", "brokers", "NATS JetStream")
    nc = await nats.connect(u.server, max_reconnect_attempts=-1,
                            pending_size=64 * 1024 * 1024)
    return nc, nc.jetstream(timeout=10)


async def _ensure_stream(js: JetStreamContext, subject: str, name: str | None) -> str:
    """The stream capturing ``subject``: the one named, the one found, or a new one."""
    if name:
        return name
    try:
        return await js.find_stream_name_by_subject(subject)
    except Exception:
        pass
    name = re.sub(r"[^A-Za-z0-9_-]", "_", subject).upper() or "EVENTS"
    await js.add_stream(name=name, subjects=[subject])
    return name


async def _fetch(sub: JetStreamContext.PullSubscription, n: int, wait_s: float) -> list[Msg]:
    """Up to ``n`` messages from a pull subscription, waiting at most ``wait_s``."""
    errors = require("nats.errors", "brokers", "NATS JetStream")
    try:
        return await sub.fetch(n, timeout=max(wait_s, 0.001))
    except (TimeoutError, errors.TimeoutError):
        return []


def _stream_sequence(msg: Msg) -> str:
    """The message's stream sequence, read from its ack subject
    (``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...``, nine tokens, or with a
    domain and account hash after ``ACK``, twelve) without building the client's whole
    metadata object, which costs more than the rest of the read."""
    tokens = (msg.reply or "").split(".")
    if len(tokens) == 9 and tokens[1] == "ACK":
        return tokens[5]
    if len(tokens) >= 11 and tokens[1] == "ACK":
        return tokens[7]
    return str(msg.metadata.sequence.stream)


class Source:
    """A durable pull consumer named after the group."""

    def __init__(self, url: BrokerURL, *, group: str, batch: int,
                 window: int | None = None) -> None:
        self.url = url
        self.subject = url.destination
        self.group = group
        self.batch = batch
        self.window = window or 2 * batch
        self.ack_wait = float(url.options.get("ack_wait", "30"))
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.sub: JetStreamContext.PullSubscription | None = None

    async def connect(self) -> None:
        nats_js = require("nats.js.api", "brokers", "NATS JetStream")
        self.nc, self.js = await _connect(self.url)
        self.stream = await _ensure_stream(self.js, self.subject, self.url.option("stream"))
        config = nats_js.ConsumerConfig(
            durable_name=self.group, ack_policy=nats_js.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait, max_ack_pending=max(20_000, 2 * self.window),
            filter_subject=self.subject)
        self.sub = await self.js.pull_subscribe(self.subject, durable=self.group,
                                                stream=self.stream, config=config)

    async def read(self, n: int, wait_s: float) -> list[Message]:
        assert self.sub is not None  # set by connect
        msgs = await _fetch(self.sub, n, wait_s)
        now = time.time()
        return [Message(id=_stream_sequence(m), payload=m.data, token=m, received=now)
                for m in msgs]

    async def ack(self, messages: list[Message]) -> None:
        for m in messages:
            await m.token.ack()
        assert self.nc is not None  # set by connect
        await self.nc.flush()

    async def lag(self) -> int | None:
        assert self.sub is not None  # set by connect
        info = await self.sub.consumer_info()
        if info.num_pending is None:
            raise RuntimeError("JetStream gave no count of pending messages")
        return int(info.num_pending)

    async def close(self) -> None:
        if self.nc is not None:
            # flush, then close: drain() waits on the pull subscription and can hang
            await self.nc.flush()
            await self.nc.close()


class Reader:
    """Reads a subject's stream from a position (a stream sequence) with an ephemeral pull
    consumer that starts after it; the reader keeps its own position, the sequence of the
    last message read, and acknowledges nothing (a learner stores the position in its
    checkpoints and starts from it again)."""

    def __init__(self, url: BrokerURL, position: int | str | None = None) -> None:
        self.url = url
        self.subject = url.destination
        self.position = int(position or 0)
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.sub: JetStreamContext.PullSubscription | None = None

    async def connect(self) -> None:
        nats_js = require("nats.js.api", "brokers", "NATS JetStream")
        self.nc, self.js = await _connect(self.url)
        self.stream = await _ensure_stream(self.js, self.subject, self.url.option("stream"))
        config = nats_js.ConsumerConfig(
            deliver_policy=nats_js.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.position + 1, ack_policy=nats_js.AckPolicy.NONE,
            filter_subject=self.subject, inactive_threshold=300.0)
        self.sub = await self.js.pull_subscribe(self.subject, stream=self.stream,
                                                config=config)

    async def read(self, n: int, wait_s: float) -> list[Message]:
        assert self.sub is not None  # set by connect
        msgs = await _fetch(self.sub, n, wait_s)
        now = time.time()
        out = [Message(id=_stream_sequence(m), payload=m.data, received=now) for m in msgs]
        if out:
            last = out[-1].id
            assert last is not None  # a stream sequence, read above
            self.position = int(last)
        return out

    async def end(self) -> int | None:
        """The sequence of the stream's last message now (None when it holds none)."""
        assert self.js is not None  # set by connect
        info = await self.js.stream_info(self.stream)
        last = int(info.state.last_seq or 0)
        return last or None

    @staticmethod
    def beyond(position: int | str, end: int | str) -> bool:
        return int(position) > int(end)

    def reached(self, end: int | str) -> bool:
        return self.position >= int(end)

    async def close(self) -> None:
        if self.sub is not None:
            try:
                await self.sub.unsubscribe()
            except Exception:  # noqa: BLE001 - the consumer expires by itself anyway
                pass
        if self.nc is not None:
            await self.nc.flush()
            await self.nc.close()


class Sink:
    """Publishes each output to JetStream and waits for all the publish acks.

    Each output goes out as a plain publish whose reply subject is one of the sink's own
    inbox subjects, and one subscription on that inbox counts the acks in: the same
    exchange as the client's asynchronous JetStream publish, without the future,
    semaphore and parsed ack object it makes per message (most of its cost per output).
    An ack carrying an error, or no stream answering, fails the batch.
    """

    def __init__(self, url: BrokerURL) -> None:
        self.url = url
        self.subject = url.destination
        self.timeout = float(url.options.get("ack_timeout", "30"))
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self._waiting: dict[str, Outputs] = {}
        self._seq = 0

    async def connect(self) -> None:
        self.nc, self.js = await _connect(self.url)
        await _ensure_stream(self.js, self.subject, self.url.option("stream"))
        self._prefix = self.nc.new_inbox() + "."
        await self.nc.subscribe(self._prefix + "*", cb=self._acked,
                                pending_msgs_limit=-1, pending_bytes_limit=-1)

    async def _acked(self, msg: Msg) -> None:
        batch = self._waiting.pop(msg.subject[len(self._prefix):], None)
        if batch is None:
            return
        refused = None
        if msg.headers and msg.headers.get("Status") == "503":
            refused = f"no JetStream stream captures {self.subject!r}"
        elif b'"error"' in msg.data:
            refused = "JetStream: " + msg.data.decode(errors="replace")[:300]
        batch.settle(refused)

    async def publish(self, records: list[tuple[str, bytes]]) -> None:
        if not records:
            return
        assert self.nc is not None  # set by connect
        batch = Outputs(len(records))
        tokens = []
        publish, prefix, waiting = self.nc.publish, self._prefix, self._waiting
        for key, payload in records:
            self._seq += 1
            token = str(self._seq)
            tokens.append(token)
            waiting[token] = batch
            await publish(self.subject, payload, reply=prefix + token,
                          headers={"Nats-Msg-Id": key})
        try:
            await asyncio.wait_for(asyncio.shield(batch.done), self.timeout)
        except TimeoutError:
            raise TimeoutError(f"JetStream acked {len(records) - batch.left} of "
                               f"{len(records)} outputs in {self.timeout:g} s") from None
        finally:
            for token in tokens:
                waiting.pop(token, None)

    async def close(self) -> None:
        if self.nc is not None:
            # flush, then close: drain() waits on the pull subscription and can hang
            await self.nc.flush()
            await self.nc.close()
