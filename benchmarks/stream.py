"""Stream scoring: `modelport stream` against a naive one-message-at-a-time consumer.

For each broker (Redis Streams, NATS JetStream, RabbitMQ, MQTT; Kafka when
MODELPORT_KAFKA_URL is set is not covered here) both consumers score the same logistic
regression (10 numeric features, ONNX artefact) as separate processes:

1. throughput: N events wait in the broker when the consumer starts; msgs/s is counted from
   the first output to the N-th (start-up excluded)
   (the backlog is loaded while the consumer is stopped);
2. latency: events are then sent at half that rate for a few seconds, each stamped when
   sent; end-to-end p50/p99 run from the send to the output's arrival at a subscriber.

The naive consumer reads one message, predicts on one row (same ONNX predictor, same
adapters), publishes, acks. modelport runs with `--batch 500 --max-wait-ms 1` and its
default `--inflight 3`. Producer, collector and consumer share the machine's cores, so the
harness uses the cheapest path each broker offers (a Lua script appending a chunk to
Redis, core NATS publishes into the stream's subject, pika callbacks for AMQP) and keeps
its own garbage collector off while it stamps arrivals.

    .venv/bin/python benchmarks/stream.py [--brokers redis,nats,rabbitmq,mqtt] [-n 50000]

Needs the `brokers` and `onnx` extras (pip install -e '.[brokers,onnx]'), the brokers on
127.0.0.1 and, for MQTT, the mosquitto binary (a private one is started with unlimited
queues, since the default drops QoS 1 messages beyond 1,000 queued).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

FEATURES = [f"f{i}" for i in range(10)]
# modelport's --max-wait-ms here: a batch gathers for at most 1 ms, since batches already
# fill by themselves while earlier ones are being published (the command's default, 20 ms,
# favours full batches on a trickle over latency)
MAX_WAIT_MS = 1
# run as a script, this folder comes first on sys.path and its http.py would shadow the
# standard library's http package (which paho-mqtt imports)
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]


def register(home: str) -> None:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from modelport.register import log_model

    os.environ["MODELPORT_HOME"] = home
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(2000, 10)).round(2), columns=FEATURES)
    y = (X.sum(axis=1) > 0).astype(int)
    log_model(LogisticRegression().fit(X, y), "bench", sample=X, formats=["onnx"],
              alias="production")


def payload(i: int) -> bytes:
    import orjson

    rnd = (i * 2654435761) % 1000 / 500 - 1
    return orjson.dumps({"id": i, **{f: round(rnd + k / 10, 2) for k, f in enumerate(FEATURES)},
                         "ts": time.time()})


# -- the naive consumer, run as its own process ------------------------------------------

async def naive(source_url: str, sink_url: str) -> None:
    import orjson

    from modelport.io import brokers
    from modelport.registry import Registry

    reg = Registry()
    predictor = reg.load("bench@production", format="onnx")
    source = brokers.open_source(source_url, group="naive", batch=1)
    sink = brokers.open_sink(sink_url)
    await source.connect()
    await sink.connect()
    print("streaming (naive)", file=sys.stderr, flush=True)
    while True:
        for msg in await source.read(1, 0.05):
            event = orjson.loads(msg.payload)
            out = predictor.run({f: event[f] for f in FEATURES})
            mid = msg.id or str(event["id"])
            body = orjson.dumps({"id": mid, "key": event["id"], "version": 1,
                                 "label": int(out["label"][0]),
                                 "proba": out["proba"][0].tolist()})
            await sink.publish([(f"{mid}@1", body)])
            await source.ack([msg])


# -- brokers: produce and collect -------------------------------------------------------

class Redis:
    def __init__(self, t: str) -> None:
        self.inp, self.out = f"bin_{t}", f"bout_{t}"
        self.source = f"redis://127.0.0.1:6379/0?stream={self.inp}"
        self.sink = f"redis://127.0.0.1:6379/0?stream={self.out}"

    async def start(self, seen: dict) -> None:
        import redis.asyncio as aioredis

        self.r = aioredis.Redis()
        # one script call appends a whole chunk: the producer shares the cores with the
        # consumer it measures, and one XADD command per event would cost it more than that
        self.append = self.r.register_script(
            "for i = 1, #ARGV do redis.call('XADD', KEYS[1], '*', 'data', ARGV[i]) end")
        self.task = asyncio.create_task(self._collect(seen))

    async def _collect(self, seen: dict) -> None:
        import orjson

        r, last = self.r, "0-0"
        while True:
            reply = await r.xread({self.out: last}, count=5000, block=100)
            now = time.time()
            for _, entries in reply or []:
                for eid, f in entries:
                    last = eid
                    seen.setdefault(orjson.loads(f[b"data"])["key"], now)

    async def produce(self, payloads: list[bytes]) -> None:
        for i in range(0, len(payloads), 5000):
            await self.append(keys=[self.inp], args=payloads[i:i + 5000])

    async def close(self) -> None:
        self.task.cancel()
        await self.r.delete(self.inp, self.out)
        await self.r.aclose()


class Nats:
    def __init__(self, t: str) -> None:
        self.inp, self.out = f"bin_{t}", f"bout_{t}"
        self.source = f"nats://127.0.0.1:4222?subject={self.inp}"
        self.sink = f"nats://127.0.0.1:4222?subject={self.out}"

    async def start(self, seen: dict) -> None:
        import nats
        import orjson

        self.sent = 0
        self.nc = await nats.connect("nats://127.0.0.1:4222", pending_size=256 * 2**20)
        self.js = self.nc.jetstream(timeout=30)
        for s in (self.inp, self.out):
            await self.js.add_stream(name=s.upper(), subjects=[s])

        async def on_msg(msg):
            seen.setdefault(orjson.loads(msg.data)["key"], time.time())

        await self.nc.subscribe(self.out, cb=on_msg, pending_msgs_limit=10**7,
                                pending_bytes_limit=2**30)

    async def produce(self, payloads: list[bytes]) -> None:
        # core publishes into the stream's subject, then one flush: a JetStream publish
        # waiting for its ack costs the harness more per event than the consumer it measures
        for p in payloads:
            await self.nc.publish(self.inp, p)
        await self.nc.flush()
        while (await self.js.stream_info(self.inp.upper())).state.last_seq < self.sent + len(
                payloads):
            await asyncio.sleep(0.005)  # stored, not only sent: the throughput run needs it
        self.sent += len(payloads)

    async def close(self) -> None:
        for s in (self.inp, self.out):
            await self.js.delete_stream(s.upper())
        await self.nc.close()


class Rabbit:
    """Producer and collector on pika's asyncio connection, the cheapest AMQP client per
    message here: the harness shares the cores with the consumer it measures."""

    URL = "amqp://guest:guest@127.0.0.1:5672/"

    def __init__(self, t: str) -> None:
        self.inp, self.out = f"bin_{t}", f"bout_{t}"
        self.source, self.sink = self.URL + "?queue=" + self.inp, self.URL + "?queue=" + self.out
        self.sent = 0

    async def _call(self, start):
        done = asyncio.get_running_loop().create_future()
        start(lambda *a: done.done() or done.set_result(a[0] if a else None))
        return await done

    async def start(self, seen: dict) -> None:
        import orjson
        import pika
        from pika.adapters.asyncio_connection import AsyncioConnection

        loop = asyncio.get_running_loop()
        opened = loop.create_future()
        self.closed = loop.create_future()
        self.conn = AsyncioConnection(
            pika.URLParameters(self.URL), on_open_callback=opened.set_result,
            on_open_error_callback=lambda c, e: opened.set_exception(ConnectionError(e)),
            on_close_callback=lambda c, r: self.closed.done() or self.closed.set_result(r),
            custom_ioloop=loop)
        await opened
        self.ch = await self._call(lambda cb: self.conn.channel(on_open_callback=cb))
        for q in (self.inp, self.out):
            await self._call(lambda cb, q=q: self.ch.queue_declare(q, durable=True, callback=cb))
        self.props = pika.BasicProperties

        def on_msg(ch, method, properties, body):
            seen.setdefault(orjson.loads(body)["key"], time.time())

        self.ch.basic_consume(self.out, on_msg, auto_ack=True)

    async def produce(self, payloads: list[bytes]) -> None:
        for i, p in enumerate(payloads):
            self.sent += 1
            self.ch.basic_publish("", self.inp, p,
                                  self.props(delivery_mode=2, message_id=str(self.sent)))
            if i % 2000 == 1999:
                await asyncio.sleep(0)  # let the connection write what is buffered
        # a queue declare round trip: every publish before it has reached the broker
        await self._call(lambda cb: self.ch.queue_declare(self.inp, durable=True, callback=cb))

    async def close(self) -> None:
        for q in (self.inp, self.out):
            await self._call(lambda cb, q=q: self.ch.queue_delete(q, callback=cb))
        self.conn.close()
        await self.closed


class Mqtt:
    def __init__(self, t: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mp-bench-mqtt-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        conf = self.dir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                        "persistence false\nmax_queued_messages 0\nmax_inflight_messages 0\n")
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        self.inp, self.out = f"bin_{t}", f"bout_{t}"
        base = f"mqtt://127.0.0.1:{self.port}?topic="
        self.source, self.sink = base + self.inp, base + self.out

    async def start(self, seen: dict) -> None:
        import paho.mqtt.client as mqtt

        self.subscribed = asyncio.Event()
        self.task = asyncio.create_task(self._collect(seen))
        await asyncio.wait_for(self.subscribed.wait(), 10)
        p = self.p = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        # no cap on unacknowledged publishes: with one, paho walks all of them per PUBACK
        p.max_inflight_messages_set(0)
        p.connect("127.0.0.1", self.port)
        p.loop_start()

    async def _collect(self, seen: dict) -> None:
        """A bare MQTT 3.1.1 subscriber on asyncio streams: it reads the outputs in large
        chunks and PUBACKs each chunk in one write. A paho subscriber (a thread, a callback
        and a write per message) topped out near 7,000 messages/s on this machine, below
        the worker it was timing."""
        import orjson

        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        client_id = f"bench-collect-{uuid.uuid4().hex[:8]}".encode()
        # CONNECT: protocol MQTT level 4, clean session, no keep-alive
        body = b"\x00\x04MQTT\x04\x02\x00\x00" + len(client_id).to_bytes(2, "big") + client_id
        writer.write(b"\x10" + _remaining(len(body)) + body)
        topic = self.out.encode()
        body = b"\x00\x01" + len(topic).to_bytes(2, "big") + topic + b"\x01"  # QoS 1
        writer.write(b"\x82" + _remaining(len(body)) + body)
        buf = b""
        while True:
            chunk = await reader.read(1 << 18)
            if not chunk:
                return
            buf += chunk
            now, acks, pos, end = time.time(), [], 0, len(buf)
            while end - pos >= 2:
                length, shift, i = 0, 0, pos + 1
                while i < end:
                    byte = buf[i]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    i += 1
                    if byte < 0x80:
                        break
                else:
                    break
                if i + length > end:
                    break
                head, packet, pos = buf[pos], buf[i:i + length], i + length
                if head & 0xF0 == 0x30:  # PUBLISH
                    at = 2 + int.from_bytes(packet[:2], "big")
                    if head & 0x06:
                        acks.append(b"\x40\x02" + packet[at:at + 2])
                        at += 2
                    seen.setdefault(orjson.loads(packet[at:])["key"], now)
                elif head & 0xF0 == 0x90:  # SUBACK
                    self.subscribed.set()
            buf = buf[pos:]
            if acks:
                writer.write(b"".join(acks))

    async def produce(self, payloads: list[bytes]) -> None:
        infos = [self.p.publish(self.inp, x, qos=1) for x in payloads]
        await asyncio.to_thread(lambda: [i.wait_for_publish(60) for i in infos])

    async def close(self) -> None:
        self.task.cancel()
        self.p.disconnect()
        self.p.loop_stop()
        self.proc.terminate()
        shutil.rmtree(self.dir, ignore_errors=True)


def _remaining(n: int) -> bytes:
    """MQTT's variable-length encoding of a packet's remaining length."""
    out = bytearray()
    while True:
        n, byte = n >> 7, n & 0x7F
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


BROKERS = {"redis": Redis, "nats": Nats, "rabbitmq": Rabbit, "mqtt": Mqtt}


def start_consumer(kind: str, b, log: Path, batch: int) -> subprocess.Popen:
    if kind == "modelport":
        cmd = [sys.executable, "-m", "modelport", "stream", "bench@production", "--source",
               b.source, "--sink", b.sink, "--batch", str(batch), "--max-wait-ms", str(MAX_WAIT_MS),
               "--group", "bench", "--poll-seconds", "0"]
    else:
        cmd = [sys.executable, __file__, "--naive", b.source, b.sink]
    started = log.read_text().count("streaming") if log.exists() else 0
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("a"))
    deadline = time.time() + 60
    while log.read_text().count("streaming") <= started:
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"{kind} consumer did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)
    return proc


async def measure(broker: str, kind: str, n: int, batch: int, seconds: float,
                  latency_rate: float | None = None) -> dict:
    # the harness stamps arrivals: its own garbage collector must not stall it (gen-2
    # passes over the libraries it imported take tens of ms); enabled again after the run
    gc.collect()
    gc.disable()
    t = uuid.uuid4().hex[:8]
    b = BROKERS[broker](t)
    seen: dict = {}
    await b.start(seen)
    log = Path(tempfile.mkdtemp()) / "consumer.log"
    # a first start creates the group, durable consumer, queue or MQTT session; the backlog
    # is then loaded while no consumer runs, so the producer's speed does not cap the rate
    proc = start_consumer(kind, b, log, batch)
    proc.terminate()
    proc.wait(30)
    await b.produce([payload(i) for i in range(n)])
    proc = start_consumer(kind, b, log, batch)
    try:
        deadline = time.time() + 600
        while len(seen) < n and time.time() < deadline and proc.poll() is None:
            await asyncio.sleep(0.05)
        times = sorted(seen.values())
        rate = (len(times) - 1) / max(times[-1] - times[0], 1e-9) if len(times) > 1 else 0.0
        # latency at half the measured maximum rate, paced in 2 ms slices (larger
        # slices arrive as bursts of several times the rate)
        target = latency_rate or rate / 2
        sent: dict[int, float] = {}
        start, i = time.time(), n
        while time.time() - start < seconds:
            due = int((time.time() - start) * target) + n
            chunk = []
            while i < due:
                sent[i] = time.time()
                chunk.append(payload(i))
                i += 1
            if chunk:
                await b.produce(chunk)
            await asyncio.sleep(0.002)
        deadline = time.time() + 30
        while any(k not in seen for k in sent) and time.time() < deadline:
            await asyncio.sleep(0.05)
        lat = np.array([seen[k] - s for k, s in sent.items() if k in seen]) * 1000
        return {"rate": rate, "done": len(times), "p50": float(np.percentile(lat, 50)) if
                len(lat) else float("nan"), "p99": float(np.percentile(lat, 99)) if len(lat)
                else float("nan"), "lost": sum(k not in seen for k in sent)}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        await b.close()
        gc.enable()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", default="redis,nats,rabbitmq,mqtt")
    ap.add_argument("-n", type=int, default=50_000, help="events for modelport's throughput")
    ap.add_argument("--naive-n", type=int, default=3_000, help="events for the naive consumer")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=5.0, help="length of the latency run")
    ap.add_argument("--latency-rate", type=float,
                    help="events/s of modelport's latency run (default: half its maximum)")
    ap.add_argument("--naive", nargs=2, metavar=("SOURCE", "SINK"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.naive:
        asyncio.run(naive(*args.naive))
        return
    home = os.environ.get("MODELPORT_HOME") or tempfile.mkdtemp(prefix="mp-bench-")
    register(home)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"modelport n={args.n} batch={args.batch}, naive n={args.naive_n}", flush=True)
    rows = []
    for broker in args.brokers.split(","):
        mp = asyncio.run(measure(broker, "modelport", args.n, args.batch, args.seconds,
                                 args.latency_rate))
        nv = asyncio.run(measure(broker, "naive", args.naive_n, 1, args.seconds))
        rows.append((broker, mp, nv))
        print(f"  {broker}: modelport {mp['rate']:,.0f} msg/s, naive {nv['rate']:,.0f} msg/s",
              flush=True)
    head = (f"{'broker':<9} {'modelport msg/s':>15} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'naive msg/s':>11} {'p50 ms':>7} {'p99 ms':>7} {'ratio':>6}")
    print("\n" + head + "\n" + "-" * len(head))
    for broker, mp, nv in rows:
        ratio = mp["rate"] / nv["rate"] if nv["rate"] else float("nan")
        print(f"{broker:<9} {mp['rate']:>15,.0f} {mp['p50']:>7.1f} {mp['p99']:>7.1f} "
              f"{nv['rate']:>11,.0f} {nv['p50']:>7.1f} {nv['p99']:>7.1f} {ratio:>5.1f}x")
    print("(p50/p99: end to end, from send to the output at a subscriber, at half each "
          "consumer's own maximum rate)")


if __name__ == "__main__":
    main()
