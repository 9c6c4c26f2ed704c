"""The hostile-row battery (:func:`modelport.testing.check_surface`) through a real
``modelport stream`` worker, on every broker.

One worker per broker runs for the whole battery, with everything a stream can do turned
on: ``--enrich`` from a PostgreSQL table whose key column holds whole numbers, a
``--lookup-store`` in PostgreSQL, a ``--log`` to a PostgreSQL table that refuses the row
whose id is :data:`~modelport.testing.REFUSED_BY_LOG`, a dead-letter destination, and a
:class:`~modelport.testing.Tripwire` model that raises on one value. Each case's rows are
produced as JSON (the standard library's where orjson cannot write them: an integer beyond
64 bits, a lone surrogate), and the outputs and dead letters are mapped back to the rows by
message id (the broker's, or for MQTT, which has none, the event's ``id``).

The stream has the capabilities ``records`` (an event may lack a field), ``unicode``
(JSON carries any text, escaped), ``tripwire`` and ``log``, but not ``ids``: an event
without an ``id`` is scored and published under its message id, so a missing id is no
bad event here. Kafka runs only when ``MODELPORT_KAFKA_URL`` (``kafka://HOST:9092``) points
at a broker and is skipped, saying so, when it is unset.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from modelport.testing import (
    REFUSED_BY_LOG,
    Hostile,
    SurfaceResult,
    Tripwire,
    check_surface,
    predictor_reference,
)

from conftest import need_module, port_open, unavailable

pytestmark = [pytest.mark.services,
              # the reference scores the odd rows alone, which warns about their values
              pytest.mark.filterwarnings("ignore::modelport.kernel.InputWarning")]

#: what the model raises on (no training value has three decimals)
TRIP = ("spend", 13.375)
#: every wait of the harness ends by then, in seconds
WAIT_S = 30.0
NUL_ID = "nul\x00id"


# -- the model, the database ---------------------------------------------------------------

def register_model():
    """A churn pipeline wrapped in a Tripwire, served from its joblib artefact."""
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from modelport.register import log_model

    rng = np.random.default_rng(7)
    X = pd.DataFrame({"tenure": rng.integers(0, 72, 400).astype(float),
                      "spend": rng.normal(50, 20, 400).round(2),
                      "plan": rng.choice(["basic", "plus", "pro"], 400)})
    y = ((X.tenure < 20) ^ (X.plan == "pro")).astype(int)
    pipe = make_pipeline(make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["plan"]), remainder="passthrough"),
        LogisticRegression(max_iter=500)).fit(X, y)
    log_model(Tripwire(pipe, *TRIP), "churn", sample=X, formats=["joblib"])
    from modelport.registry import Registry

    return Registry().load("churn", format="joblib")


def good_rows() -> list[dict]:
    plans = ["basic", "plus", "pro"]
    return [{"id": f"r{i}", "customer_id": i + 1, "tenure": float(3 + 5 * i),
             "spend": round(30 + 3.1 * i, 2), "plan": plans[i % 3]} for i in range(12)]


def enrich_cases(base: dict) -> list[Hostile]:
    """Hostile keys for ``--enrich`` on a column of whole numbers, and an id PostgreSQL
    cannot hold as it is."""
    def row(id, **changes):
        return {"id": id, **base, **changes}

    return [
        Hostile("a text key for an integer key column", row("k-text", customer_id="abc"),
                "reject"),
        Hostile("a list as the key", row("k-list", customer_id=[1, 2]), "reject"),
        Hostile("a key beyond 64 bits",
                row("k-big", customer_id=99999999999999999999999), "reject"),
        Hostile("a key of digits in text", row("k-digits", customer_id="3"), "score"),
        Hostile("a key no stored row has", row("k-unknown", customer_id=424242), "score"),
        Hostile("a NUL byte in the id", row(NUL_ID), "score"),
    ]


def prepare_database(url: str) -> None:
    """The stored features (``customers``) and a prediction log that refuses one id."""
    import sqlalchemy as sa

    from modelport.monitor.log import LogTables

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        tables = LogTables("predictions")
        tables.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(sa.text(
                "ALTER TABLE predictions ADD CONSTRAINT refuses_one_id "
                f"CHECK (id IS DISTINCT FROM '{REFUSED_BY_LOG}')"))
            conn.execute(sa.text("CREATE TABLE customers (customer_id bigint PRIMARY KEY, "
                                 "tenure double precision, segment text)"))
            conn.execute(sa.text("INSERT INTO customers SELECT g, g * 2.0, 'retail' "
                                 "FROM generate_series(1, 12) AS g"))
    finally:
        engine.dispose()


def payload(row: dict) -> bytes:
    """A row as a producer would send it: JSON, null for a missing value; escaped by the
    standard library where orjson cannot write it (integers beyond 64 bits, lone
    surrogates)."""
    row = {k: None if isinstance(v, float) and v != v else v for k, v in row.items()}
    try:
        return orjson.dumps(row)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(row).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- one small adapter per broker: produce, and collect what came out ----------------------

class RedisBroker:
    def __init__(self) -> None:
        redis = need_module("redis", "brokers")
        if not port_open("127.0.0.1", 6379):
            unavailable("Redis is not running on 127.0.0.1:6379")
        self.r = redis.Redis()
        t = uuid.uuid4().hex[:8]
        self.names = [f"hin_{t}", f"hout_{t}", f"hdead_{t}"]
        self.source, self.sink, self.dead = (f"redis://127.0.0.1:6379/0?stream={n}"
                                             for n in self.names)
        self.seen = {n: "0-0" for n in self.names[1:]}

    def produce(self, payloads: list[bytes], tags: list[str]) -> list[str]:
        pipe = self.r.pipeline(transaction=False)
        for p in payloads:
            pipe.xadd(self.names[0], {"data": p})
        return [i.decode() for i in pipe.execute()]

    def drain(self) -> tuple[list[bytes], list[bytes]]:
        got = []
        for name in self.names[1:]:
            reply = self.r.xread({name: self.seen[name]}, count=10_000)
            entries = reply[0][1] if reply else []
            if entries:
                self.seen[name] = entries[-1][0]
            got.append([fields[b"data"] for _, fields in entries])
        return got[0], got[1]

    def close(self) -> None:
        self.r.delete(*self.names)


class NatsBroker:
    def __init__(self) -> None:
        self.nats = need_module("nats", "brokers")
        if not port_open("127.0.0.1", 4222):
            unavailable("NATS is not running on 127.0.0.1:4222")
        t = uuid.uuid4().hex[:8]
        self.subjects = [f"hin_{t}", f"hout_{t}", f"hdead_{t}"]
        self.source, self.sink, self.dead = (f"nats://127.0.0.1:4222?subject={s}"
                                             for s in self.subjects)
        self.got: dict[str, list[bytes]] = {s: [] for s in self.subjects[1:]}
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self._call(self._connect())

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT_S)

    async def _connect(self) -> None:
        self.nc = await self.nats.connect("nats://127.0.0.1:4222")
        self.js = self.nc.jetstream(timeout=10)
        for s in self.subjects:
            await self.js.add_stream(name=s.upper(), subjects=[s])
        for s in self.subjects[1:]:
            async def collect(msg, s=s):
                self.got[s].append(msg.data)
            await self.nc.subscribe(s, cb=collect)

    def produce(self, payloads: list[bytes], tags: list[str]) -> list[str]:
        async def go():
            return [str((await self.js.publish(self.subjects[0], p)).seq) for p in payloads]
        return self._call(go())

    def drain(self) -> tuple[list[bytes], list[bytes]]:
        async def go():
            await self.nc.flush()
            out = [self.got[s] for s in self.subjects[1:]]
            for s in self.subjects[1:]:
                self.got[s] = []
            return out
        return tuple(self._call(go()))

    def close(self) -> None:
        async def go():
            for s in self.subjects:
                await self.js.delete_stream(s.upper())
            await self.nc.close()
        try:
            self._call(go())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)


class RabbitBroker:
    def __init__(self) -> None:
        self.pika = need_module("pika", "brokers")
        if not port_open("127.0.0.1", 5672):
            unavailable("RabbitMQ is not running on 127.0.0.1:5672")
        t = uuid.uuid4().hex[:8]
        self.queues = [f"hin_{t}", f"hout_{t}", f"hdead_{t}"]
        url = "amqp://guest:guest@127.0.0.1:5672/"
        self.source, self.sink, self.dead = (f"{url}?queue={q}" for q in self.queues)
        self.conn = self.pika.BlockingConnection(self.pika.URLParameters(url))
        self.ch = self.conn.channel()
        for q in self.queues:
            self.ch.queue_declare(q, durable=True)

    def produce(self, payloads: list[bytes], tags: list[str]) -> list[str]:
        for p, tag in zip(payloads, tags, strict=True):
            self.ch.basic_publish("", self.queues[0], p, self.pika.BasicProperties(
                delivery_mode=2, message_id=tag))
        return list(tags)

    def drain(self) -> tuple[list[bytes], list[bytes]]:
        got = []
        for q in self.queues[1:]:
            bodies = []
            while True:
                method, _, body = self.ch.basic_get(q, auto_ack=True)
                if method is None:
                    break
                bodies.append(body)
            got.append(bodies)
        return got[0], got[1]

    def close(self) -> None:
        for q in self.queues:
            self.ch.queue_delete(q)
        self.conn.close()


class MqttBroker:
    """The Mosquitto on 1883; MQTT carries no message id, so the worker names each event
    by its own ``id`` and so does this harness."""

    def __init__(self) -> None:
        self.mqtt = need_module("paho.mqtt.client", "brokers")
        if not port_open("127.0.0.1", 1883):
            unavailable("Mosquitto is not running on 127.0.0.1:1883")
        t = uuid.uuid4().hex[:8]
        self.topics = [f"hin_{t}", f"hout_{t}", f"hdead_{t}"]
        base = "mqtt://127.0.0.1:1883?topic="
        # the worker's session outlives it on the broker: a minute is enough here
        self.source = base + self.topics[0] + "&session_expiry=60"
        self.sink, self.dead = base + self.topics[1], base + self.topics[2]
        self.got: dict[str, list[bytes]] = {t: [] for t in self.topics[1:]}
        self.lock = threading.Lock()
        ready = threading.Event()
        c = self.client = self.mqtt.Client(self.mqtt.CallbackAPIVersion.VERSION2,
                                           client_id=f"harness-{t}")

        def on_message(client, userdata, msg):
            with self.lock:
                self.got[msg.topic].append(msg.payload)

        c.on_message = on_message
        c.on_subscribe = lambda *a: ready.set()
        c.on_connect = lambda client, *a: client.subscribe([(self.topics[1], 1),
                                                            (self.topics[2], 1)])
        c.connect("127.0.0.1", 1883)
        c.loop_start()
        assert ready.wait(10), "the harness could not subscribe to Mosquitto"

    def produce(self, payloads: list[bytes], tags: list[str]) -> list[None]:
        infos = [self.client.publish(self.topics[0], p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(WAIT_S)
        return [None] * len(payloads)

    def drain(self) -> tuple[list[bytes], list[bytes]]:
        with self.lock:
            out = [self.got[t] for t in self.topics[1:]]
            self.got = {t: [] for t in self.topics[1:]}
        return out[0], out[1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class KafkaBroker:
    def __init__(self) -> None:
        url = os.environ.get("MODELPORT_KAFKA_URL")
        if not url:
            pytest.skip("no Kafka broker installs on this machine; set MODELPORT_KAFKA_URL="
                        "kafka://HOST:9092 to run the battery against one")
        self.ck = need_module("confluent_kafka", "brokers")
        self.bootstrap = url.split("://", 1)[-1].split("?")[0].rstrip("/")
        t = uuid.uuid4().hex[:8]
        self.topics = [f"hin_{t}", f"hout_{t}", f"hdead_{t}"]
        base = f"kafka://{self.bootstrap}?topic="
        self.source, self.sink, self.dead = (base + x for x in self.topics)
        from confluent_kafka.admin import AdminClient, NewTopic

        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for f in self.admin.create_topics([NewTopic(x, 1, 1) for x in self.topics]).values():
            f.result(WAIT_S)
        self.producer = self.ck.Producer({"bootstrap.servers": self.bootstrap})
        self.consumer = self.ck.Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": f"harness-{t}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self.consumer.subscribe(self.topics[1:])

    def produce(self, payloads: list[bytes], tags: list[str]) -> list[str]:
        ids: dict[int, str] = {}

        def delivered(err, msg, i):
            assert err is None, err
            ids[i] = f"{msg.topic()}/{msg.partition()}/{msg.offset()}"

        for i, p in enumerate(payloads):
            self.producer.produce(self.topics[0], p,
                                  on_delivery=lambda err, msg, i=i: delivered(err, msg, i))
        self.producer.flush(WAIT_S)
        return [ids[i] for i in range(len(payloads))]

    def drain(self) -> tuple[list[bytes], list[bytes]]:
        got: dict[str, list[bytes]] = {t: [] for t in self.topics[1:]}
        for m in self.consumer.consume(10_000, 0.2):
            if m.error() is None:
                got[m.topic()].append(m.value())
        return got[self.topics[1]], got[self.topics[2]]

    def close(self) -> None:
        self.consumer.close()
        self.admin.delete_topics(self.topics)


BROKERS = {"redis": RedisBroker, "nats": NatsBroker, "rabbitmq": RabbitBroker,
           "mqtt": MqttBroker, "kafka": KafkaBroker}


# -- the surface -------------------------------------------------------------------------

def as_logged(text: str) -> str:
    """Text as the prediction log stores it: NUL, which PostgreSQL refuses, as U+FFFD."""
    return text.replace("\x00", "\ufffd")


class StreamSurface:
    """One ``modelport stream`` worker fed one case at a time; every wait has a deadline."""

    capabilities = frozenset({"records", "unicode", "tripwire", "log"})

    def __init__(self, name: str, broker, database: str, log_path: Path,
                 metrics_port: int) -> None:
        self.name = f"stream on {name}"
        self.broker = broker
        self.database = database
        self.log_path = log_path
        self.calls = 0
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelport", "stream", "churn",
             "--source", broker.source, "--sink", broker.sink, "--dead-letter", broker.dead,
             "--group", f"surface-{uuid.uuid4().hex[:8]}", "--batch", "64",
             "--max-wait-ms", "10", "--poll-seconds", "0",
             "--enrich", f"{database}#customers?key=customer_id",
             "--lookup-store", f"{database}#churn_scores",
             "--log", f"{database}#predictions", "--metrics-port", str(metrics_port)],
            stdout=subprocess.DEVNULL, stderr=log_path.open("w"))
        deadline = time.monotonic() + 60
        while "streaming" not in log_path.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"the worker did not start:\n{self.tail()}")
            time.sleep(0.05)
        import psycopg

        self.db = psycopg.connect(database, autocommit=True)

    def tail(self) -> str:
        return self.log_path.read_text()[-3000:]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def score(self, rows: list[dict]) -> SurfaceResult:
        self.calls += 1
        tags = [f"c{self.calls}-{i}" for i in range(len(rows))]
        sent = datetime.now(UTC)
        mids = self.broker.produce([payload(r) for r in rows], tags)
        row_of = {mid if mid is not None else str(r["id"]): r for r, mid in
                  zip(rows, mids, strict=True)}
        assert len(row_of) == len(rows), "two rows share a message id"
        result = SurfaceResult()
        came = collections.Counter()
        deadline = time.monotonic() + WAIT_S
        while len(came) < len(row_of):
            assert self.alive(), f"{self.name}: the worker exited:\n{self.tail()}"
            assert time.monotonic() < deadline, (
                f"{self.name}: {len(row_of) - len(came)} of {len(rows)} rows never came out: "
                f"{[r['id'] for m, r in row_of.items() if m not in came][:5]}\n{self.tail()}")
            outputs, dead = self.broker.drain()
            for record in map(orjson.loads, outputs):
                row = self._row(record, row_of, came)
                if "key" in record or row["id"] is not None:
                    assert record.get("key") == row["id"], (record, row["id"])
                result.scored[row["id"]] = {k: v for k, v in record.items() if k not in (
                    "id", "model", "version", "key", "warnings")}
            for record in map(orjson.loads, dead):
                row = self._row(record, row_of, came)
                assert record["reason_code"], record
                result.rejected[row["id"]] = f"{record['reason_code']}: {record['reason']}"
            time.sleep(0.01)
        result.logged = self._logged(row_of, result, sent)
        return result

    def _row(self, record: dict, row_of: dict, came: collections.Counter) -> dict:
        mid = record["id"]
        assert mid in row_of, f"{self.name}: an output of no row of this case: {record}"
        came[mid] += 1
        assert came[mid] == 1, f"{self.name}: {mid!r} came out twice: {record}"
        return row_of[mid]

    def _logged(self, row_of: dict, result: SurfaceResult, sent: datetime) -> set:
        """The ids the prediction log holds for this case's messages (logged since they
        were sent: MQTT's message ids are the rows' own, the same in every case), once every
        scored row but the one the table refuses is in."""
        by_request = {as_logged(m): r for m, r in row_of.items()}
        want = {as_logged(m) for m, r in row_of.items()
                if r["id"] in result.scored and r["id"] != REFUSED_BY_LOG}
        deadline = time.monotonic() + WAIT_S
        while True:
            found = self.db.execute("SELECT id, request_id FROM predictions WHERE "
                                    "request_id = ANY(%s) AND error IS NULL AND at >= %s",
                                    [list(by_request), sent]).fetchall()
            if want <= {request for _, request in found}:
                return {i for i, _ in found}
            assert time.monotonic() < deadline, (
                f"{self.name}: the log lacks {sorted(want - {r for _, r in found})[:5]}")
            time.sleep(0.1)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        assert code == 0, self.tail()
        self.db.close()
        return self.tail()


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def metric(text: str, name: str, **labels) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"{name}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


@pytest.mark.parametrize("broker", list(BROKERS))
def test_the_stream_worker_passes_the_hostile_row_battery(broker, postgres_url, tmp_path):
    need_module("prometheus_client", "http")
    b = BROKERS[broker]()
    surface = None
    try:
        predictor = register_model()
        prepare_database(postgres_url)
        port = free_port()
        surface = StreamSurface(broker, b, postgres_url, tmp_path / "worker.log", port)
        good = good_rows()
        signature = predictor.signature
        base = {k: v for k, v in good[0].items() if k != "id"}
        ran = check_surface(surface, signature, good, predictor_reference(predictor),
                            trip=TRIP, extra=enrich_cases(base))
        assert len(ran) == 18 and "a missing id" not in ran
        assert "a value the model raises on" in ran and "a key beyond 64 bits" in ran

        # the log holds the NUL id with U+FFFD, and never the row its table refuses
        logged = {i for (i,) in surface.db.execute("SELECT DISTINCT id FROM predictions")}
        assert as_logged(NUL_ID) in logged and REFUSED_BY_LOG not in logged
        # the lookup table holds the latest score of each customer the stream scored
        stored = dict(surface.db.execute(
            "SELECT customer_id, model_version FROM churn_scores").fetchall())
        assert set(stored) == {*range(1, 13), 424242} and set(stored.values()) == {1}

        deadline = time.monotonic() + WAIT_S
        while True:
            text = scrape(port)
            refused = metric(text, "modelport_prediction_log_refused_total")
            drops = surface.db.execute("SELECT coalesce(sum(dropped), 0) FROM "
                                       "predictions_drops WHERE reason = "
                                       "'refused by the log table'").fetchone()[0]
            if (refused >= 2 and drops >= 2) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert refused >= 2 and drops >= 2  # its case, and all cases at once
        for reason in ("wrong_type", "missing_field", "model_error", "enrich"):
            assert metric(text, "modelport_rejected_rows_total", surface="stream",
                          reason=reason) > 0, reason
        assert metric(text, "modelport_warnings_total", kind="unseen_category") > 0
        assert metric(text, "modelport_scored_rows_total", version="1") > 12 * len(ran)
        assert surface.alive()
        printed = surface.stop()
        assert '"dead_lettered"' in printed and "Traceback" not in printed
        surface = None
    finally:
        if surface is not None and surface.alive():
            surface.proc.kill()
            surface.proc.wait()
        b.close()
