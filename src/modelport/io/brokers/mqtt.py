"""MQTT (v5): QoS 1 subscription in a persistent session, acknowledged by hand after the
outputs were published at QoS 1 and their PUBACKs came back.

The client id is the group name and the session outlives the connection (clean start off,
session expiry ``session_expiry`` seconds, URL option, default one day), so messages that
arrive while the worker is down wait in the broker, and messages delivered but never
PUBACKed are sent again when it reconnects. The worker asks for at most ``receive_max``
unacknowledged messages at once (URL option, default the worker's window and at least
2000; MQTT packet ids are 16-bit, so the window must stay far below 65,535).

Mosquitto keeps at most ``max_queued_messages`` (1000 by default) QoS 1 messages per
session beyond the in-flight window and silently drops the rest: a subscriber that falls
behind, or is down while a burst arrives, loses messages unless the broker is configured
with a larger (or 0, unlimited) ``max_queued_messages``. Nothing on the client side can
recover those; run Mosquitto with that setting raised when scoring bursts.

MQTT carries no message id that survives a redelivery; the worker uses the event's own
``id`` field when it has one.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid

from modelport.errors import require
from modelport.io.brokers import BrokerURL, Message, gather


def _client(u: BrokerURL, client_id: str, receive_max: int):
    mqtt = require("paho.mqtt.client", "brokers", "MQTT")
    props = require("paho.mqtt.properties", "brokers", "MQTT")
    packettypes = require("paho.mqtt.packettypes", "brokers", "MQTT")
    from urllib.parse import urlsplit

    parts = urlsplit(u.url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    if parts.username:
        client.username_pw_set(parts.username, parts.password)
    client.max_inflight_messages_set(receive_max)
    client.max_queued_messages_set(0)
    connect_props = props.Properties(packettypes.PacketTypes.CONNECT)
    connect_props.SessionExpiryInterval = int(u.option("session_expiry", "86400"))
    connect_props.ReceiveMaximum = receive_max
    return client, parts.hostname or "127.0.0.1", parts.port or 1883, connect_props


class _Handoff:
    """Items from paho's network thread to a callback on the event loop, in bulk: the loop
    is woken once for whatever arrived since it last ran, not once per item (a wake-up
    costs more than the item)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver) -> None:
        self.loop, self.deliver = loop, deliver
        self.items: collections.deque = collections.deque()
        self.woken = False

    def put(self, item) -> None:  # network thread
        self.items.append(item)  # before the flag is read: a drain in progress sees it
        if not self.woken:
            self.woken = True
            self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:  # event loop
        self.woken = False
        items = self.items
        while items:
            self.deliver(items.popleft())


class _Pending:
    """One published batch: done when the last of its PUBACKs came back."""

    __slots__ = ("left", "done")

    def __init__(self, left: int, done: asyncio.Future) -> None:
        self.left, self.done = left, done


class _Connection:
    """A paho client on its network thread, bridged into the worker's event loop."""

    def __init__(self, u: BrokerURL, client_id: str, receive_max: int) -> None:
        self.client, self.host, self.port, self.props = _client(u, client_id, receive_max)
        self.loop = asyncio.get_running_loop()
        self.connected = asyncio.Event()
        self.pending: dict[int, _Pending] = {}
        self.acked = _Handoff(self.loop, self._acked)
        self.client.on_connect = self._on_connect
        self.client.on_publish = lambda client, userdata, mid, reason, props: \
            self.acked.put(mid)

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        self.loop.call_soon_threadsafe(self.connected.set)

    def _acked(self, mid: int) -> None:
        batch = self.pending.pop(mid, None)
        if batch is not None:
            batch.left -= 1
            if batch.left == 0 and not batch.done.done():
                batch.done.set_result(None)

    async def start(self, clean_start: bool) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=clean_start,
                                  properties=self.props)
        self.client.loop_start()
        await asyncio.wait_for(self.connected.wait(), timeout=15)

    async def publish(self, topic: str, payloads: list[bytes]) -> None:
        if not payloads:
            return
        batch = _Pending(len(payloads), self.loop.create_future())
        # PUBACKs are settled on this loop (through the handoff), so every mid is registered
        # here before any of them can be looked up
        for payload in payloads:
            self.pending[self.client.publish(topic, payload, qos=1).mid] = batch
        await batch.done

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Source:
    """A QoS 1 subscription in a persistent session named after the group."""

    def __init__(self, url: BrokerURL, *, group: str, batch: int,
                 window: int | None = None) -> None:
        self.url = url
        self.topic = url.destination
        self.group = group
        self.receive_max = int(url.option("receive_max",
                                          str(max(2000, window or 2 * batch))))
        self.conn: _Connection | None = None
        self._inbox: asyncio.Queue = asyncio.Queue()

    async def connect(self) -> None:
        self.conn = _Connection(self.url, self.group, self.receive_max)
        self.conn.client.manual_ack_set(True)
        loop = self.conn.loop
        incoming = _Handoff(loop, self._inbox.put_nowait)
        self.conn.client.on_message = lambda c, u, msg: incoming.put(msg)
        subscribed = asyncio.Event()
        self.conn.client.on_subscribe = \
            lambda *a: loop.call_soon_threadsafe(subscribed.set)
        await self.conn.start(clean_start=False)
        self.conn.client.subscribe(self.topic, qos=1)
        await asyncio.wait_for(subscribed.wait(), timeout=15)

    async def read(self, n: int, wait_s: float) -> list[Message]:
        got = await gather(self._inbox, n, wait_s)
        now = time.time()
        return [Message(id=None, payload=m.payload, token=m.mid, received=now) for m in got]

    async def ack(self, messages: list[Message]) -> None:
        for m in messages:
            self.conn.client.ack(m.token, 1)

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.stop()


class Sink:
    """Publishes outputs at QoS 1 and waits for every PUBACK."""

    def __init__(self, url: BrokerURL) -> None:
        self.url = url
        self.topic = url.destination
        self.conn: _Connection | None = None

    async def connect(self) -> None:
        self.conn = _Connection(self.url, f"modelport-sink-{uuid.uuid4().hex[:12]}",
                                int(self.url.option("receive_max", "2000")))
        await self.conn.start(clean_start=True)

    async def publish(self, records: list[tuple[str, bytes]]) -> None:
        if records:
            await self.conn.publish(self.topic, [payload for _, payload in records])

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.stop()
