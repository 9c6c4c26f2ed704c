"""Message brokers as sources and sinks of events, one small adapter per broker.

Every adapter speaks the same contract, so the stream worker never knows which broker it
talks to and one delivery test (``tests/test_stream_delivery.py``) proves them all. A
broker module (named in :data:`SCHEMES`) has a ``Source`` and a ``Sink``, which
:func:`open_source` and :func:`open_sink` build unconnected from a parsed
:class:`BrokerURL`:

- ``Source(url, *, group, batch, window)`` reads as consumer group ``group``, asking the
  broker for no more than ``window`` unacknowledged messages;
- ``await x.connect()`` (sources and sinks) opens the connection;
- ``await source.read(n, wait_s)`` returns up to ``n`` :class:`Message` objects, waiting at
  most ``wait_s`` seconds for the first one (``wait_s=0``: only what is at hand, after at
  most a millisecond);
- ``await sink.publish(records)`` writes ``(message_id, payload)`` pairs and returns only
  once the broker holds them (a stream append, a JetStream ack, a publisher confirm, a
  PUBACK, a produce report);
- ``await source.ack(messages)`` settles messages only after their outputs were published,
  which is what makes delivery at-least-once: a worker killed before it acks leaves the
  messages to be delivered again;
- ``await x.close()``.

The contract is written as :class:`BrokerSource` and :class:`BrokerSink` (``typing.Protocol``). A
source may also offer optional capabilities, each its own protocol, which a loop reads once
with :func:`capabilities`: :class:`Measured` (``await lag()``: messages waiting, or None),
:class:`Bounded` (``max_inflight``, the most batches the worker may hold between scoring and
ack at once; Kafka: 1) and, when its sinks may live on the same server, :class:`Atomic`
(``shares_server(sink) -> bool`` with ``await publish_and_ack(outputs, messages)``, which
publishes ``outputs``, a list of ``(sink, records)`` pairs: the outputs and the dead
letters, and acknowledges ``messages`` in one atomic step; Redis Streams). The modules whose streams keep positions (Redis
Streams, NATS JetStream) also have a ``Reader(url, position)`` for the online learner,
which reads from a stored position and acknowledges nothing.

Brokers are named by URL: ``redis://127.0.0.1:6379/0?stream=events``,
``nats://127.0.0.1:4222?subject=events``, ``amqp://guest:guest@127.0.0.1:5672/?queue=events``,
``mqtt://127.0.0.1:1883?topic=events``, ``kafka://host:9092?topic=events``. Each client
library is imported only when its broker is used (the ``brokers`` extra).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import parse_qs, urlsplit

from modelport.errors import UserError

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")

#: URL scheme -> (module, the query parameter naming the destination)
SCHEMES = {
    "redis": ("redis_streams", "stream"),
    "rediss": ("redis_streams", "stream"),
    "nats": ("nats_jetstream", "subject"),
    "amqp": ("rabbitmq", "queue"),
    "amqps": ("rabbitmq", "queue"),
    "mqtt": ("mqtt", "topic"),
    "kafka": ("kafka", "topic"),
}


@dataclass
class Message:
    """One delivered message: its broker id (stable across redeliveries where the broker has
    one, else None), its raw payload, and what the adapter needs to ack it."""

    id: str | None
    payload: bytes | bytearray
    token: Any = None
    received: float = 0.0


@dataclass
class BrokerURL:
    """A parsed broker URL: the scheme, the server part, the destination and the options."""

    url: str
    scheme: str
    destination: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def server(self) -> str:
        """The URL without its query: which server (and database or vhost) it names."""
        return self.url.split("?", 1)[0]

    def option(self, name: str, default: str | None = None) -> str | None:
        return self.options.get(name, default)


class BrokerSource(Protocol):
    """What every broker source does (see the module docstring for the semantics)."""

    async def connect(self) -> None: ...

    async def read(self, n: int, wait_s: float) -> list[Message]: ...

    async def ack(self, messages: Sequence[Message]) -> None: ...

    async def close(self) -> None: ...


class BrokerSink(Protocol):
    """What every broker sink does: ``publish`` returns once the broker holds the records."""

    async def connect(self) -> None: ...

    async def publish(self, records: Sequence[tuple[str | None, bytes]]) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class Measured(Protocol):
    """A source that can say how many messages wait for it."""

    async def lag(self) -> int | None: ...


@runtime_checkable
class Bounded(Protocol):
    """A source that settles only so many batches at once."""

    max_inflight: int


@runtime_checkable
class Atomic(Protocol):
    """A source that can publish outputs and acknowledge inputs in one step, when the sinks
    are on its server."""

    def shares_server(self, sink: Any) -> bool: ...

    async def publish_and_ack(self, outputs: list, messages: Sequence[Message]) -> None: ...


@dataclass(frozen=True)
class Capabilities:
    """What a source offers beyond the contract, read once when a loop opens it."""

    lag: bool = False
    max_inflight: int | None = None
    atomic: bool = False

    def inflight(self, wanted: int) -> int:
        """At most ``wanted`` batches in flight, fewer when the source bounds them."""
        return wanted if self.max_inflight is None else min(wanted, self.max_inflight)


def capabilities(source: Any) -> Capabilities:
    """The optional capabilities ``source`` declares (:class:`Measured`, :class:`Bounded`,
    :class:`Atomic`)."""
    return Capabilities(lag=isinstance(source, Measured),
                        max_inflight=source.max_inflight if isinstance(source, Bounded) else None,
                        atomic=isinstance(source, Atomic))


def parse(url: str, what: str = "--source") -> BrokerURL:
    """Parse a broker URL, or raise a UserError naming the flag and the accepted forms."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UserError(
            f"{what} {url!r} is not a broker URL; use one of redis://HOST:6379/0?stream=NAME, "
            "nats://HOST:4222?subject=NAME, amqp://USER:PASS@HOST:5672/?queue=NAME, "
            "mqtt://HOST:1883?topic=NAME, kafka://HOST:9092?topic=NAME")
    key = SCHEMES[scheme][1]
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    destination = options.pop(key, None)
    if not destination:
        raise UserError(f"{what} {url!r} names no {key}: add ?{key}=NAME to the URL")
    return BrokerURL(url=url, scheme=scheme, destination=destination, options=options)


async def gather(inbox: asyncio.Queue[T], n: int, wait_s: float) -> list[T]:
    """Up to ``n`` items from an asyncio queue: wait up to ``wait_s`` for the first, then
    keep collecting for up to ``wait_s`` more, since push-style clients deliver one
    message per callback."""
    import asyncio
    import time

    try:
        first = await asyncio.wait_for(inbox.get(), timeout=max(wait_s, 0.001))
    except TimeoutError:
        return []
    got = [first]
    deadline = time.monotonic() + wait_s
    while len(got) < n:
        if not inbox.empty():
            got.append(inbox.get_nowait())
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            got.append(await asyncio.wait_for(inbox.get(), timeout=left))
        except TimeoutError:
            break
    return got


class Outputs:
    """The outputs of one publish call, settled one broker acknowledgement (publisher
    confirm, PUBACK, JetStream ack) at a time: ``done`` resolves when the last is in, and
    fails, so the batch's inputs are not acknowledged, if the broker refused any."""

    __slots__ = ("left", "done", "refused", "reason")

    def __init__(self, n: int) -> None:
        import asyncio

        self.left, self.refused = n, 0
        self.reason: str | None = None
        self.done = asyncio.get_running_loop().create_future()

    def settle(self, refused: str | None = None) -> None:
        """One output acknowledged, or refused for ``refused`` (the broker's reason)."""
        self.left -= 1
        if refused is not None:
            self.refused += 1
            self.reason = self.reason or refused
        if self.left == 0 and not self.done.done():
            if self.refused:
                self.done.set_exception(RuntimeError(
                    f"the broker refused {self.refused} output(s): {self.reason}; the batch "
                    "is not acknowledged and will be delivered again"))
            else:
                self.done.set_result(None)


def _module(scheme: str) -> ModuleType:
    return importlib.import_module(f"modelport.io.brokers.{SCHEMES[scheme][0]}")


def open_source(url: str, *, group: str, batch: int, window: int | None = None) -> BrokerSource:
    """The source adapter for ``url``, reading as consumer group ``group`` (not connected).

    ``window`` is the most messages the worker holds unacknowledged at once (default two
    batches); brokers that push messages (RabbitMQ's prefetch, MQTT's receive maximum,
    JetStream's max ack pending) are asked to deliver no more than that ahead of the acks.
    """
    u = parse(url, "--source")
    return _module(u.scheme).Source(u, group=group, batch=batch, window=window or 2 * batch)


def open_sink(url: str, what: str = "--sink") -> BrokerSink:
    """The sink adapter for ``url`` (not connected)."""
    u = parse(url, what)
    return _module(u.scheme).Sink(u)
