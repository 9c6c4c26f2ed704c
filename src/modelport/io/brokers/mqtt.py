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

The sink's unacknowledged QoS 1 publishes are bounded by the worker's window (the batches
in flight), not by the Receive Maximum a broker announces: Mosquitto announces 20 by
default and accepts more at QoS 1 (the delivery test keeps 2,000 outstanding against it).
A broker that enforces it for QoS 1 needs ``--batch`` and ``--inflight`` within it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

from modelport.errors import require
from modelport.io.brokers import BrokerURL, Message, Outputs, gather

if TYPE_CHECKING:
    from paho.mqtt.client import (
        Client,
        ConnectFlags,
        DisconnectFlags,
        MQTTMessage,
        SocketLike,
    )
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode


def _client(u: BrokerURL, client_id: str,
            receive_max: int) -> tuple[Client, str, int, Properties]:
    mqtt = require("paho.mqtt.client", "brokers", "MQTT")
    props = require("paho.mqtt.properties", "brokers", "MQTT")
    packettypes = require("paho.mqtt.packettypes", "brokers", "MQTT")
    from urllib.parse import urlsplit

    parts = urlsplit(u.url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    if parts.username:
        client.username_pw_set(parts.username, parts.password)
    # no cap of paho's own on unacknowledged publishes: the worker's window bounds them,
    # and paho walks every outstanding message on each PUBACK when a cap is set
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    connect_props = props.Properties(packettypes.PacketTypes.CONNECT)
    connect_props.SessionExpiryInterval = int(u.options.get("session_expiry", "86400"))
    connect_props.ReceiveMaximum = receive_max
    return client, parts.hostname or "127.0.0.1", parts.port or 1883, connect_props


#: MQTT control packet types (the high nibble of a packet's first byte)
_PUBLISH, _PUBACK = 0x30, 0x40


def _join_packets(client: Client) -> None:
    """Join runs of unsent QoS 1 PUBLISH and PUBACK packets in ``client``'s out queue."""
    queue = getattr(client, "_out_packet", None)
    if queue is None or len(queue) < 2:
        return
    joined: list = []
    run: list = []

    def flush() -> None:
        if len(run) > 1:
            data = b"".join(p["packet"] for p in run)
            # written as a PUBACK: paho does nothing after writing one
            joined.append({"command": _PUBACK, "mid": 0, "qos": 0, "pos": 0,
                           "to_process": len(data), "packet": data, "info": None})
        else:
            joined.extend(run)
        run.clear()

    for p in queue:
        try:
            kind = p["command"] & 0xF0
            plain = p["pos"] == 0 and (kind == _PUBACK or (kind == _PUBLISH and p["qos"] > 0))
        except (KeyError, TypeError):
            return  # not the queue this was written for: leave it alone
        if plain:
            run.append(p)
        else:
            flush()
            joined.append(p)
    flush()
    if len(joined) < len(queue):
        queue.clear()
        queue.extend(joined)


class _Connection:
    """A paho client driven by the worker's event loop: its socket is watched by the loop
    (paho's external-loop callbacks), so every callback (messages, PUBACKs) runs on the
    loop itself. paho's own network thread would wake through a socket pair for every
    publish and hand every message across threads, which cost more than the message.

    When the broker drops the connection, it is opened again (the persistent session
    resumes, and paho sends the unacknowledged publishes again) until :meth:`stop`.
    """

    def __init__(self, u: BrokerURL, client_id: str, receive_max: int) -> None:
        self.client, self.host, self.port, self.props = _client(u, client_id, receive_max)
        self.loop = asyncio.get_running_loop()
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.pending: dict[int, Outputs] = {}
        self.stopping = False
        self._misc: asyncio.Task | None = None
        self._reconnecting: asyncio.Task | None = None
        c = self.client
        c.on_connect = lambda *a: self.connected.set()
        c.on_disconnect = self._on_disconnect
        c.on_publish = lambda client, userdata, mid, reason, props: self._acked(mid)
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = \
            lambda client, userdata, sock: self.loop.add_writer(sock, self._write)
        c.on_socket_unregister_write = self._on_unregister_write

    def _on_unregister_write(self, client: Client, userdata: Any, sock: SocketLike) -> None:
        self.loop.remove_writer(sock)

    def _write(self) -> None:
        """paho's ``loop_write``, after joining the queued packets into few buffers.

        paho writes each queued packet with a ``send`` of its own: a batch of 500 outputs
        and the PUBACKs of its 500 inputs took 1,000 system calls, a sixth of the worker's
        time. Runs of packets that need nothing once written (QoS 1 publishes, whose
        completion is their PUBACK, and PUBACKs) become one packet first. This reads
        paho's queue, which it does not publish; if it is not there as expected the
        packets are left as they are.
        """
        _join_packets(self.client)
        self.client.loop_write()

    def _on_socket_open(self, client: Client, userdata: Any, sock: SocketLike) -> None:
        self.loop.add_reader(sock, client.loop_read)
        if self._misc is None or self._misc.done():
            self._misc = self.loop.create_task(self._keepalive())

    def _on_socket_close(self, client: Client, userdata: Any, sock: SocketLike) -> None:
        self.loop.remove_reader(sock)
        self.loop.remove_writer(sock)

    async def _keepalive(self) -> None:
        """paho's periodic duties (pings, timeouts), once a second."""
        while not self.stopping:
            self.client.loop_misc()
            await asyncio.sleep(1)

    def _on_disconnect(self, client: Client, userdata: Any, flags: DisconnectFlags,
                       reason: ReasonCode, properties: Properties | None) -> None:
        self.connected.clear()
        self.disconnected.set()
        if not self.stopping and (self._reconnecting is None or self._reconnecting.done()):
            self._reconnecting = self.loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.1
        while not self.stopping and not self.connected.is_set():
            await asyncio.sleep(delay)
            try:
                self.client.reconnect()
                await asyncio.wait_for(self.connected.wait(), timeout=15)
            except (OSError, TimeoutError):
                delay = min(delay * 2, 5.0)

    def _acked(self, mid: int) -> None:
        batch = self.pending.pop(mid, None)
        if batch is not None:
            batch.settle()

    async def start(self, clean_start: bool) -> None:
        # a blocking TCP connect on the loop: only at start-up, and to a broker nearby
        self.client.connect(self.host, self.port, keepalive=30, clean_start=clean_start,
                            properties=self.props)
        await asyncio.wait_for(self.connected.wait(), timeout=15)

    async def publish(self, topic: str, payloads: list[bytes]) -> None:
        if not payloads:
            return
        batch = Outputs(len(payloads))
        # PUBACKs are read on this loop, so every mid is registered before any can arrive
        for payload in payloads:
            self.pending[self.client.publish(topic, payload, qos=1).mid] = batch
        await batch.done

    async def stop(self) -> None:
        """Disconnect cleanly: the packets queued before it (the last PUBACKs) go out
        first, then DISCONNECT, and paho closes the socket once that is written."""
        self.stopping = True
        for task in (self._misc, self._reconnecting):
            if task is not None:
                task.cancel()
        if self.connected.is_set():
            self.disconnected.clear()
            self.client.disconnect()
            try:
                await asyncio.wait_for(self.disconnected.wait(), timeout=5)
            except TimeoutError:
                pass  # the broker keeps the session; anything unacknowledged comes back


class Source:
    """A QoS 1 subscription in a persistent session named after the group."""

    def __init__(self, url: BrokerURL, *, group: str, batch: int,
                 window: int | None = None) -> None:
        self.url = url
        self.topic = url.destination
        self.group = group
        self.receive_max = int(url.options.get("receive_max",
                                               str(max(2000, window or 2 * batch))))
        self.conn: _Connection | None = None
        self._inbox: asyncio.Queue[MQTTMessage] = asyncio.Queue()

    async def connect(self) -> None:
        self.conn = _Connection(self.url, self.group, self.receive_max)
        self.conn.client.manual_ack_set(True)
        inbox, conn = self._inbox, self.conn
        conn.client.on_message = lambda c, u, msg: inbox.put_nowait(msg)
        subscribed = asyncio.Event()
        conn.client.on_subscribe = lambda *a: subscribed.set()

        def on_connect(client: Client, userdata: Any, flags: ConnectFlags, reason: ReasonCode,
                       properties: Properties | None) -> None:
            conn.connected.set()
            if subscribed.is_set() and not flags.session_present:
                client.subscribe(self.topic, qos=1)  # a broker that lost the session

        conn.client.on_connect = on_connect
        await self.conn.start(clean_start=False)
        self.conn.client.subscribe(self.topic, qos=1)
        await asyncio.wait_for(subscribed.wait(), timeout=15)

    async def read(self, n: int, wait_s: float) -> list[Message]:
        got = await gather(self._inbox, n, wait_s)
        now = time.time()
        return [Message(id=None, payload=m.payload, token=m.mid, received=now) for m in got]

    async def ack(self, messages: list[Message]) -> None:
        if not messages:
            return
        assert self.conn is not None  # set by connect
        for m in messages:
            self.conn.client.ack(m.token, 1)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.stop()


class Sink:
    """Publishes outputs at QoS 1 and waits for every PUBACK."""

    def __init__(self, url: BrokerURL) -> None:
        self.url = url
        self.topic = url.destination
        self.conn: _Connection | None = None

    async def connect(self) -> None:
        self.conn = _Connection(self.url, f"modelport-sink-{uuid.uuid4().hex[:12]}",
                                int(self.url.options.get("receive_max", "2000")))
        await self.conn.start(clean_start=True)

    async def publish(self, records: list[tuple[str, bytes]]) -> None:
        if records:
            assert self.conn is not None  # set by connect
            await self.conn.publish(self.topic, [payload for _, payload in records])

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.stop()
