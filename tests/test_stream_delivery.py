"""The one delivery test every broker adapter passes: nothing lost across a crash.

A real ``modelport stream`` worker scores N events (``MODELPORT_DELIVERY_MESSAGES``,
default 10,000; the full check is 200,000), is killed with SIGKILL once about a third of
the outputs are out, and is restarted; it must then produce at least one output for every
input, with the duplicates counted and printed, send the malformed events to the
dead-letter destination, and stop cleanly on SIGTERM.

Redis, NATS JetStream, RabbitMQ and MQTT run against the servers on 127.0.0.1 (MQTT
against a Mosquitto this test starts on a free port with ``max_queued_messages 0``, since
the default drops QoS 1 messages beyond 1,000 queued for a session while its worker is
down). No Kafka broker can be installed on this machine, so the Kafka case runs only when
``MODELPORT_KAFKA_URL`` (``kafka://HOST:9092``) points at one and is skipped, saying so,
when it is unset.
"""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import need_module, port_open, unavailable

N = int(os.environ.get("MODELPORT_DELIVERY_MESSAGES", "10000"))
MALFORMED = [b"not json at all", b'{"id": "bad-1", "x0": "abc", "x1": 1, "x2": 1, "x3": 1}',
             b'{"id": "bad-2", "x0": 1.0}']
DEADLINE_S = float(os.environ.get("MODELPORT_DELIVERY_TIMEOUT", str(90 + N / 100)))
QUIET_S = 5.0  # no new output for this long: every redelivery is through


def event(i: int) -> bytes:
    import orjson

    return orjson.dumps({"id": i, "x0": (i % 13) / 3, "x1": 0.5, "x2": i % 3, "x3": -1.25})


def register_model() -> None:
    from sklearn.linear_model import LogisticRegression

    from modelport.register import log_model

    rng = np.random.default_rng(0)
    X = pd.DataFrame({f"x{i}": rng.normal(size=400).round(2) for i in range(4)})
    y = (X.x0 + X.x1 > 0).astype(int)
    log_model(LogisticRegression().fit(X, y), "events", sample=X, formats=["onnx"],
              alias="production")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- one small harness per broker: produce, count outputs, read outputs and dead letters --

class RedisHarness:
    def __init__(self) -> None:
        self.redis = need_module("redis", "brokers")
        if not port_open("127.0.0.1", 6379):
            unavailable("Redis is not running on 127.0.0.1:6379")
        self.r = self.redis.Redis()
        t = uuid.uuid4().hex[:8]
        self.names = [f"in_{t}", f"out_{t}", f"dead_{t}"]
        base = "redis://127.0.0.1:6379/0?stream="
        self.source = base + self.names[0] + "&claim_idle_ms=1000"
        self.sink, self.dead = base + self.names[1], base + self.names[2]

    def produce(self, payloads) -> None:
        pipe = self.r.pipeline(transaction=False)
        for i, p in enumerate(payloads):
            pipe.xadd(self.names[0], {"data": p})
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()

    def count(self, which: int = 1) -> int:
        return self.r.xlen(self.names[which])

    def read(self, which: int) -> list[bytes]:
        return [f[b"data"] for _, f in self.r.xrange(self.names[which])]

    def close(self) -> None:
        self.r.delete(*self.names)


class NatsHarness:
    def __init__(self) -> None:
        self.nats = need_module("nats", "brokers")
        if not port_open("127.0.0.1", 4222):
            unavailable("NATS is not running on 127.0.0.1:4222")
        t = uuid.uuid4().hex[:8]
        self.subjects = [f"in_{t}", f"out_{t}", f"dead_{t}"]
        base = "nats://127.0.0.1:4222?subject="
        self.source = base + self.subjects[0] + "&ack_wait=3"
        self.sink, self.dead = base + self.subjects[1], base + self.subjects[2]
        asyncio.run(self._setup())

    async def _js(self):
        nc = await self.nats.connect("nats://127.0.0.1:4222")
        return nc, nc.jetstream(timeout=30)

    async def _setup(self) -> None:
        nc, js = await self._js()
        for s in self.subjects:
            await js.add_stream(name=s.upper(), subjects=[s])
        await nc.close()

    def produce(self, payloads) -> None:
        async def go():
            nc, js = await self._js()
            payloads_ = list(payloads)
            for i in range(0, len(payloads_), 2000):
                await asyncio.gather(*[js.publish(self.subjects[0], p)
                                       for p in payloads_[i:i + 2000]])
            await nc.close()
        asyncio.run(go())

    def count(self, which: int = 1) -> int:
        async def go():
            nc, js = await self._js()
            info = await js.stream_info(self.subjects[which].upper())
            await nc.close()
            return info.state.messages
        return asyncio.run(go())

    def read(self, which: int) -> list[bytes]:
        async def go():
            nc, js = await self._js()
            from nats.js.api import AckPolicy, ConsumerConfig

            # no acks: an explicit-ack reader would stop at max_ack_pending (1000)
            sub = await js.pull_subscribe(self.subjects[which], stream=self.subjects[which].upper(),
                                          config=ConsumerConfig(ack_policy=AckPolicy.NONE))
            out = []
            while True:
                try:
                    msgs = await sub.fetch(5000, timeout=1)
                except Exception:
                    break
                out.extend(m.data for m in msgs)
            await nc.close()
            return out
        return asyncio.run(go())

    def close(self) -> None:
        async def go():
            nc, js = await self._js()
            for s in self.subjects:
                await js.delete_stream(s.upper())
            await nc.close()
        asyncio.run(go())


class RabbitHarness:
    def __init__(self) -> None:
        self.pika = need_module("aio_pika", "brokers")
        if not port_open("127.0.0.1", 5672):
            unavailable("RabbitMQ is not running on 127.0.0.1:5672")
        t = uuid.uuid4().hex[:8]
        self.queues = [f"in_{t}", f"out_{t}", f"dead_{t}"]
        base = "amqp://guest:guest@127.0.0.1:5672/?queue="
        self.source, self.sink, self.dead = (base + q for q in self.queues)
        self.url = "amqp://guest:guest@127.0.0.1:5672/"
        self._run(self._declare())

    def _run(self, coro):
        return asyncio.run(coro)

    async def _declare(self):
        conn = await self.pika.connect(self.url)
        ch = await conn.channel()
        for q in self.queues:
            await ch.declare_queue(q, durable=True)
        await conn.close()

    def produce(self, payloads) -> None:
        # persistent messages through a blocking pika channel, then one queue.declare round
        # trip: the channel is ordered, so every publish before it reached the queue (an
        # awaited confirm per message cost the producer more CPU than the worker it races)
        pika = need_module("pika", "brokers")
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            ch = conn.channel()
            for i, p in enumerate(payloads):
                ch.basic_publish("", self.queues[0], p,
                                 pika.BasicProperties(delivery_mode=2, message_id=f"m{i}"))
            ch.queue_declare(self.queues[0], durable=True, passive=True)
        finally:
            conn.close()

    def count(self, which: int = 1) -> int:
        async def go():
            conn = await self.pika.connect(self.url)
            ch = await conn.channel()
            q = await ch.declare_queue(self.queues[which], passive=True)
            await conn.close()
            return q.declaration_result.message_count
        return self._run(go())

    def read(self, which: int) -> list[bytes]:
        # one consumer drains the queue (a basic.get per message took minutes at 200,000)
        pika = need_module("pika", "brokers")
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            ch = conn.channel()
            queue = self.queues[which]
            expected = ch.queue_declare(queue, durable=True, passive=True).method.message_count
            out = []
            for method, _, body in ch.consume(queue, auto_ack=True, inactivity_timeout=5):
                if method is None:
                    break
                out.append(body)
                if len(out) >= expected:
                    break
            ch.cancel()
            return out
        finally:
            conn.close()

    def close(self) -> None:
        async def go():
            conn = await self.pika.connect(self.url)
            ch = await conn.channel()
            for q in self.queues:
                await ch.queue_delete(q)
            await conn.close()
        self._run(go())


class MqttHarness:
    """A private Mosquitto whose sessions queue without limit, and a collecting subscriber."""

    def __init__(self) -> None:
        self.mqtt = need_module("paho.mqtt.client", "brokers")
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(exe):
            unavailable("mosquitto is not installed (apt-get install mosquitto)")
        self.exe = exe
        self.dir = Path(tempfile.mkdtemp(prefix="mp-mqtt-"))
        self.port = free_port()
        (self.dir / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            "persistence false\nmax_queued_messages 0\nmax_inflight_messages 0\n")
        self._start_broker()
        t = uuid.uuid4().hex[:8]
        self.topics = [f"in_{t}", f"out_{t}", f"dead_{t}"]
        base = f"mqtt://127.0.0.1:{self.port}?topic="
        self.source, self.sink, self.dead = (base + x for x in self.topics)
        self.got: dict[str, list[bytes]] = {self.topics[1]: [], self.topics[2]: []}
        self.lock = threading.Lock()
        ready = threading.Event()
        c = self.collector = self.mqtt.Client(self.mqtt.CallbackAPIVersion.VERSION2,
                                              client_id=f"collect-{t}")

        def on_message(client, userdata, msg):
            with self.lock:
                self.got[msg.topic].append(msg.payload)

        c.on_message = on_message
        c.on_subscribe = lambda *a: ready.set()
        # subscribed on every connect: a restarted broker (persistence off) forgets sessions
        c.on_connect = lambda client, *a: client.subscribe([(self.topics[1], 1),
                                                            (self.topics[2], 1)])
        c.connect("127.0.0.1", self.port)
        c.loop_start()
        assert ready.wait(10)

    def _start_broker(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.dir / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if port_open("127.0.0.1", self.port):
                break
            time.sleep(0.05)

    def restart_broker(self) -> None:
        """Kill Mosquitto and start it again on the same port, with no sessions kept."""
        self.proc.kill()
        self.proc.wait(10)
        self._start_broker()

    def produce(self, payloads) -> None:
        p = self.mqtt.Client(self.mqtt.CallbackAPIVersion.VERSION2, client_id="produce")
        p.max_inflight_messages_set(1000)
        p.connect("127.0.0.1", self.port)
        p.loop_start()
        payloads = list(payloads)
        # in chunks: paho refuses to queue once its 16-bit packet ids would wrap
        for i in range(0, len(payloads), 10_000):
            infos = [p.publish(self.topics[0], x, qos=1) for x in payloads[i:i + 10_000]]
            for info in infos:
                info.wait_for_publish(60)
        p.disconnect()
        p.loop_stop()

    def count(self, which: int = 1) -> int:
        with self.lock:
            return len(self.got[self.topics[which]])

    def read(self, which: int) -> list[bytes]:
        with self.lock:
            return list(self.got[self.topics[which]])

    def close(self) -> None:
        self.collector.disconnect()
        self.collector.loop_stop()
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class KafkaHarness:
    def __init__(self) -> None:
        url = os.environ.get("MODELPORT_KAFKA_URL")
        if not url:
            pytest.skip("no Kafka broker installs on this machine; set MODELPORT_KAFKA_URL="
                        "kafka://HOST:9092 to run the delivery test against one")
        self.ck = need_module("confluent_kafka", "brokers")
        self.bootstrap = url.split("://", 1)[-1].split("?")[0].rstrip("/")
        t = uuid.uuid4().hex[:8]
        self.topics = [f"in_{t}", f"out_{t}", f"dead_{t}"]
        base = f"kafka://{self.bootstrap}?topic="
        self.source, self.sink, self.dead = (base + x for x in self.topics)
        from confluent_kafka.admin import AdminClient, NewTopic

        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for f in self.admin.create_topics([NewTopic(x, 2, 1) for x in self.topics]).values():
            f.result(30)

    def produce(self, payloads) -> None:
        p = self.ck.Producer({"bootstrap.servers": self.bootstrap})
        for x in payloads:
            while True:
                try:
                    p.produce(self.topics[0], x)
                    break
                except BufferError:
                    p.poll(0.1)
        p.flush(60)

    def _consume(self, topic: str, idle_s: float = 3.0) -> list[bytes]:
        c = self.ck.Consumer({"bootstrap.servers": self.bootstrap,
                              "group.id": f"read-{uuid.uuid4().hex}",
                              "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([topic])
        out, last = [], time.time()
        while time.time() - last < idle_s:
            for m in c.consume(5000, 0.5):
                if m.error() is None:
                    out.append(m.value())
                    last = time.time()
        c.close()
        return out

    def count(self, which: int = 1) -> int:
        return len(self._consume(self.topics[which], 1.0))

    def read(self, which: int) -> list[bytes]:
        return self._consume(self.topics[which])

    def close(self) -> None:
        self.admin.delete_topics(self.topics)


HARNESSES = {"redis": RedisHarness, "nats": NatsHarness, "rabbitmq": RabbitHarness,
             "mqtt": MqttHarness, "kafka": KafkaHarness}


def start_worker(h, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "modelport", "stream", "events@production",
           "--source", h.source, "--sink", h.sink, "--dead-letter", h.dead,
           "--group", "scorers", "--batch", "500", "--max-wait-ms", "10"]
    started = log.read_text().count("streaming") if log.exists() else 0
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("a"))
    deadline = time.time() + 60
    while log.read_text().count("streaming") <= started:
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"the worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    return proc


@pytest.mark.services
@pytest.mark.slow
@pytest.mark.parametrize("broker", list(HARNESSES))
def test_every_event_scored_at_least_once_across_a_kill(broker, tmp_path, capsys):
    import orjson

    h = HARNESSES[broker]()
    worker = None
    try:
        register_model()
        log = tmp_path / "worker.log"
        worker = start_worker(h, log)  # first, so an MQTT session exists before the burst
        payloads = [event(i) for i in range(N)]
        payloads[N // 2:N // 2] = MALFORMED
        producer = threading.Thread(target=h.produce, args=(payloads,))
        producer.start()
        deadline = time.time() + DEADLINE_S
        while h.count() < N // 3 and time.time() < deadline and worker.poll() is None:
            time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)  # mid-stream: batches in flight, acks outstanding
        worker.wait()
        producer.join(DEADLINE_S)
        worker = start_worker(h, log)
        # a batch killed between its outputs and its ack is redelivered later, dead letters
        # included: wait for both books, not only the outputs. Duplicates count too, so N
        # outputs can be out while the tail is still queued: wait until the outputs stop
        # growing for longer than any redelivery delay (NATS ack_wait 3 s, Redis claim 1 s)
        last, quiet_since = -1, time.time()
        while time.time() < deadline:
            done = h.count()
            if done != last:
                last, quiet_since = done, time.time()
            elif (done >= N and h.count(2) >= len(MALFORMED)
                  and time.time() - quiet_since >= QUIET_S):
                break
            time.sleep(0.5)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log.read_text()[-3000:]

        outputs = [orjson.loads(p) for p in h.read(1)]
        seen = collections.Counter(o["key"] for o in outputs)
        missing = [i for i in range(N) if seen[i] == 0]
        duplicates = sum(c - 1 for c in seen.values())
        dead = [orjson.loads(p) for p in h.read(2)]
        with capsys.disabled():
            print(f"\n[{broker}] {N} events: {len(outputs)} outputs, {len(missing)} lost, "
                  f"{duplicates} duplicated, {len(dead)} dead-lettered")
        assert not missing, f"{len(missing)} events never scored, e.g. {missing[:5]}"
        assert all(o["version"] == 1 and o["model"] == "events" for o in outputs[:100])
        assert len({o["id"] for o in outputs}) >= N
        reasons = " | ".join(d["reason"] for d in dead)
        assert len(dead) >= len(MALFORMED), reasons
        assert "not json" in reasons and "must be numeric" in reasons and "missing" in reasons
        assert {d.get("payload") for d in dead} >= {m.decode() for m in MALFORMED}
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        h.close()


@pytest.mark.services
def test_the_mqtt_worker_reconnects_and_subscribes_again_after_the_broker_restarts(tmp_path):
    """Mosquitto is killed and restarted (with no persistence, so it forgets the worker's
    session); the worker connects again, subscribes again, and goes on scoring."""
    import orjson

    h = MqttHarness()
    worker = None
    try:
        register_model()
        log = tmp_path / "worker.log"
        worker = start_worker(h, log)
        h.produce([event(i) for i in range(100)])
        deadline = time.time() + 60
        while h.count() < 100 and time.time() < deadline:
            time.sleep(0.05)
        assert h.count() >= 100, log.read_text()[-2000:]
        h.restart_broker()
        # probes until one is scored: only then is the worker subscribed again
        probe, scored = 10_000, False
        while not scored and time.time() < deadline and worker.poll() is None:
            h.produce([event(probe)])
            time.sleep(0.5)
            scored = any(orjson.loads(p)["key"] >= 10_000 for p in h.read(1))
            probe += 1
        assert scored, log.read_text()[-2000:]
        h.produce([event(i) for i in range(100, 200)])
        keys: set = set()
        while not set(range(200)) <= keys and time.time() < deadline:
            time.sleep(0.1)
            keys = {orjson.loads(p)["key"] for p in h.read(1)}
        assert set(range(200)) <= keys, f"missing {sorted(set(range(200)) - keys)[:10]}"
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log.read_text()[-3000:]
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        h.close()
