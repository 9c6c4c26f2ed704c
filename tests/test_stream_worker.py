"""The stream worker against a real Redis: hot reload when the alias moves, a clean stop
on SIGTERM that leaves nothing unacknowledged, Prometheus metrics, and enrichment from a
SQL table of stored features."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import numpy as np
import orjson
import pandas as pd
import pytest

from conftest import need_module, port_open, unavailable

pytestmark = pytest.mark.services


@pytest.fixture
def redis_streams():
    redis = need_module("redis", "brokers")
    if not port_open("127.0.0.1", 6379):
        unavailable("Redis is not running on 127.0.0.1:6379")
    r = redis.Redis()
    t = uuid.uuid4().hex[:8]
    names = [f"in_{t}", f"out_{t}", f"dead_{t}"]
    yield r, names, [f"redis://127.0.0.1:6379/0?stream={n}" for n in names]
    r.delete(*names)


def register(alias_to: str | None = "production", flip: bool = False) -> int:
    from sklearn.linear_model import LogisticRegression

    from modelport.register import log_model

    rng = np.random.default_rng(2)
    X = pd.DataFrame({"a": rng.normal(size=200).round(2), "b": rng.normal(size=200).round(2)})
    y = ((X.a > 0) ^ flip).astype(int)
    return log_model(LogisticRegression().fit(X, y), "ev", sample=X, formats=["onnx"],
                     alias=alias_to).version


def outputs(r, stream):
    return [orjson.loads(f[b"data"]) for _, f in r.xrange(stream)]


def test_the_worker_swaps_in_the_new_version_when_the_alias_moves(redis_streams):
    from modelport.registry import Registry
    from modelport.serve.stream import run

    r, names, urls = redis_streams
    register()
    v2 = register(alias_to=None, flip=True)

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(run("ev@production", urls[0], urls[1], poll_seconds=0.2,
                                       batch=50, stop=stop))
        r.xadd(names[0], {"data": orjson.dumps({"id": 1, "a": 1.0, "b": 0})})
        while r.xlen(names[1]) < 1:
            await asyncio.sleep(0.05)
        Registry().set_alias("ev", v2, "production")
        deadline = time.time() + 30
        i = 2
        while time.time() < deadline and not any(o["version"] == v2
                                                 for o in outputs(r, names[1])):
            r.xadd(names[0], {"data": orjson.dumps({"id": i, "a": 1.0, "b": 0})})
            i += 1
            await asyncio.sleep(0.1)
        stop.set()
        return await task

    stats = asyncio.run(scenario())
    got = outputs(r, names[1])
    assert got[0]["version"] == 1 and got[-1]["version"] == v2
    # the flipped model answers the opposite for the same event
    assert got[0]["label"] != got[-1]["label"]
    assert stats.reloads == 1


def test_sigterm_finishes_the_batch_in_hand_and_leaves_nothing_pending(redis_streams):
    r, names, urls = redis_streams
    register()
    pipe = r.pipeline(transaction=False)
    for i in range(30_000):
        pipe.xadd(names[0], {"data": orjson.dumps({"id": i, "a": i % 5, "b": 1})})
    pipe.execute()
    proc = subprocess.Popen([sys.executable, "-m", "modelport", "stream", "ev@production",
                             "--source", urls[0], "--sink", urls[1], "--group", "g",
                             "--batch", "200"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while r.xlen(names[1]) < 2_000 and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    scored = r.xlen(names[1])
    assert 2_000 <= scored < 30_000, "stopped mid-stream"
    assert r.xpending(names[0], "g")["pending"] == 0  # every scored entry was acknowledged
    assert f'"scored": {scored}' in err


@pytest.mark.parametrize("db", [0, 1], ids=["script-with-ack", "separate-ack"])
def test_a_batch_whose_outputs_fail_is_never_acknowledged_nor_any_after_it(redis_streams, db):
    """Batches are settled while the next ones are scored: when publishing fails (the sink
    key holds a string, so Redis refuses the XADD), the worker stops with the error and no
    batch read so far is acknowledged, whether the ack rides in the append script (sink on
    the source's server) or follows it (sink in another database)."""
    import redis as redis_module

    from modelport.serve.stream import run

    r, names, urls = redis_streams
    register()
    other = redis_module.Redis(db=db)
    other.set(names[1], "not a stream")
    pipe = r.pipeline(transaction=False)
    for i in range(2_000):
        pipe.xadd(names[0], {"data": orjson.dumps({"id": i, "a": i % 5, "b": 1})})
    pipe.execute()
    sink = f"redis://127.0.0.1:6379/{db}?stream={names[1]}"
    try:
        with pytest.raises(redis_module.ResponseError, match="WRONGTYPE"):
            asyncio.run(run("ev@production", urls[0], sink, group="g", batch=100,
                            inflight=3, poll_seconds=0))
        pending = r.xpending(names[0], "g")["pending"]
        assert pending >= 100  # the failed batch and any read after it stay pending
        groups = {g["name"]: g for g in r.xinfo_groups(names[0])}
        assert groups[b"g"]["entries-read"] == pending  # nothing read was acknowledged
    finally:
        other.delete(names[1])


def test_the_command_rejects_an_inflight_below_one_with_exit_code_2(redis_streams):
    r, names, urls = redis_streams
    proc = subprocess.run([sys.executable, "-m", "modelport", "stream", "ev", "--source",
                           urls[0], "--sink", urls[1], "--inflight", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--inflight must be at least 1" in proc.stderr and "Traceback" not in proc.stderr


def test_metrics_count_consumed_scored_and_dead_lettered(redis_streams):
    need_module("prometheus_client", "http")
    from modelport.serve.stream import run

    r, names, urls = redis_streams
    register()
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(run("ev", urls[0], urls[1], dead_letter_url=urls[2],
                                       metrics_port=port, stop=stop))
        for i in range(10):
            # two of them outside the training range: scored, and counted as warnings
            a = 40 if i in (3, 7) else 1
            r.xadd(names[0], {"data": orjson.dumps({"id": i, "a": a, "b": 2})})
        r.xadd(names[0], {"data": b"{broken"})
        while r.xlen(names[1]) < 10 or r.xlen(names[2]) < 1:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)
        text = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode())
        stop.set()
        await task
        return text

    text = asyncio.run(scenario())
    assert "modelport_stream_consumed_total 11.0" in text
    assert 'modelport_stream_scored_total{version="1"} 10.0' in text
    assert "modelport_stream_dead_lettered_total 1.0" in text
    assert "modelport_stream_batch_messages_bucket" in text
    # the names every surface shares
    assert ('modelport_scored_rows_total{model="ev",surface="stream",version="1"} 10.0'
            in text)
    assert ('modelport_rejected_rows_total{model="ev",reason="not_json",surface="stream"} 1.0'
            in text)
    assert ('modelport_warnings_total{field="a",kind="out_of_range",model="ev",'
            'surface="stream"} 2.0' in text)
    assert 'modelport_serving_version{model="ev",role="champion",surface="stream"} 1.0' in text


def feature_table(tmp_path) -> str:
    """A SQLite database of stored customer features (``customers``); its URL."""
    import sqlalchemy as sa

    db = f"sqlite:///{tmp_path / 'features.db'}"
    pd.DataFrame({"customer_id": [1, 2], "a": [3.0, -3.0], "b": [0.0, 0.0]}).to_sql(
        "customers", sa.create_engine(db), index=False)
    return db


def test_enrich_merges_the_event_over_the_stored_features(redis_streams, tmp_path):
    from modelport.serve.stream import run

    r, names, urls = redis_streams
    register()
    db = feature_table(tmp_path)

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(run("ev", urls[0], urls[1], dead_letter_url=urls[2],
                                       enrich=f"{db}#customers?key=customer_id", stop=stop))
        # customer 1 sends only b; customer 2 overrides its stored a
        r.xadd(names[0], {"data": orjson.dumps({"id": "e1", "customer_id": 1, "b": 1.0})})
        r.xadd(names[0], {"data": orjson.dumps({"id": "e2", "customer_id": 2, "a": 3.0})})
        while r.xlen(names[1]) < 2:
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(scenario())
    from modelport.registry import Registry

    model = Registry().load("ev")
    expected = model.run([{"a": 3.0, "b": 1.0}, {"a": 3.0, "b": 0.0}])["label"].tolist()
    assert [o["label"] for o in outputs(r, names[1])] == expected
    assert r.xlen(names[2]) == 0


def test_enriched_scores_are_upserted_into_the_lookup_table(redis_streams, tmp_path):
    import sqlalchemy as sa

    from modelport.registry import Registry
    from modelport.serve.lookup import lookup
    from modelport.serve.stream import run

    r, names, urls = redis_streams
    version = register()
    db = feature_table(tmp_path)
    store = f"sqlite:///{tmp_path / 'scores.db'}#churn_scores"

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(run("ev", urls[0], urls[1], dead_letter_url=urls[2],
                                       enrich=f"{db}#customers?key=customer_id",
                                       lookup_store=store, stop=stop))
        # customer 1 changes twice: the table keeps the score of the last event
        deadline = time.monotonic() + 60
        for event in ({"id": "e1", "customer_id": 1, "a": -3.0}, {"id": "e2", "customer_id": 2},
                      {"id": "e3", "customer_id": 1, "a": 2.5},
                      {"id": "e4", "a": 1.0, "b": 1.0}):
            r.xadd(names[0], {"data": orjson.dumps(event)})
            while r.xlen(names[1]) < int(event["id"][1:]):
                assert time.monotonic() < deadline and r.xlen(names[2]) == 0
                await asyncio.sleep(0.02)
        stop.set()
        await task

    asyncio.run(scenario())
    model = Registry().load("ev")
    expected = model.run([{"a": 2.5, "b": 0.0}, {"a": -3.0, "b": 0.0}])
    one, two = lookup("ev", 1, store=store), lookup("ev", 2, store=store)
    assert one["proba_1"] == pytest.approx(expected["proba"][0, 1], abs=1e-6)
    assert two["proba_1"] == pytest.approx(expected["proba"][1, 1], abs=1e-6)
    assert one["model_version"] == version and one["label"] == expected["label"][0]
    with sa.create_engine(store.partition("#")[0]).connect() as conn:
        # one row per customer; the event without a customer_id is published, not stored
        assert conn.execute(sa.text("SELECT count(*) FROM churn_scores")).scalar_one() == 2


def test_a_redis_sink_with_maxlen_trims_its_stream_as_it_appends(redis_streams):
    """``maxlen`` on a Redis sink URL rides in the append script as XADD MAXLEN ~."""
    from modelport.io import brokers

    r, names, urls = redis_streams

    async def scenario():
        sink = brokers.open_sink(urls[1] + "&maxlen=100")
        await sink.connect()
        try:
            for i in range(10):
                await sink.publish([(f"k{j}", b'{"n": %d}' % j)
                                    for j in range(i * 500, i * 500 + 500)])
        finally:
            await sink.close()

    asyncio.run(scenario())
    kept = r.xlen(names[1])
    assert 100 <= kept < 1_000  # approximate trimming keeps whole nodes, never all 5,000
    last = r.xrevrange(names[1], count=1)[0][1][b"data"]
    assert last == b'{"n": 4999}'


def test_mqtt_joins_queued_publishes_and_pubacks_but_keeps_other_packets_apart():
    mqtt = need_module("paho.mqtt.client", "brokers")
    from modelport.io.brokers.mqtt import _join_packets

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    # queued as paho queues packets (no socket is open: nothing is written)
    publish = int(mqtt.PUBLISH)
    client._packet_queue(publish | 2, b"\x32publish-1", 1, 1)
    client._send_puback(7)
    client._packet_queue(publish | 2, b"\x32publish-2", 2, 1)
    client._packet_queue(publish, b"\x30publish-0", 0, 0)  # on_publish runs once written
    client._send_puback(8)
    client._send_disconnect()  # paho closes the socket once written
    before = [bytes(p["packet"]) for p in client._out_packet]
    assert len(before) == 6

    _join_packets(client)
    after = list(client._out_packet)
    assert [bytes(p["packet"]) for p in after] == [b"".join(before[:3]), *before[3:]]
    assert after[0]["to_process"] == len(after[0]["packet"]) and after[0]["pos"] == 0
    assert after[0]["command"] & 0xF0 == mqtt.PUBACK
    assert after[1]["qos"] == 0 and after[3]["command"] & 0xF0 == mqtt.DISCONNECT
    _join_packets(client)  # nothing left to join
    assert list(client._out_packet) == after


def test_an_event_onnxruntime_raised_on_is_dead_lettered_and_nothing_stays_pending(
        redis_streams):
    """A list in a numeric field once passed the stream's check and made onnxruntime raise:
    the worker exited and, restarted, read the same batch and exited again. Now the event
    is dead-lettered, the others scored, every entry acknowledged, and the worker goes on."""
    from modelport.serve.stream import run

    r, names, urls = redis_streams
    register()

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(run("ev", urls[0], urls[1], dead_letter_url=urls[2],
                                       group="g", stop=stop, poll_seconds=0))
        for i in range(20):
            a = [1, 2] if i == 7 else 0.1 * i
            r.xadd(names[0], {"data": orjson.dumps({"id": i, "a": a, "b": 0.5})})
        deadline = time.monotonic() + 30
        while r.xlen(names[1]) < 19 or r.xlen(names[2]) < 1:
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.05)
        r.xadd(names[0], {"data": orjson.dumps({"id": 20, "a": 0.3, "b": 0.5})})
        while r.xlen(names[1]) < 20:
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.05)
        stop.set()
        return await task

    stats = asyncio.run(scenario())
    assert stats.scored == 20 and stats.dead_lettered == 1
    (letter,) = outputs(r, names[2])
    assert letter["reason_code"] == "wrong_type" and "got a list" in letter["reason"]
    assert sorted(o["key"] for o in outputs(r, names[1])) == [i for i in range(21) if i != 7]
    assert r.xpending(names[0], "g")["pending"] == 0


class Proxy:
    """A TCP proxy to PostgreSQL that can be cut and restored: a database that goes away
    (every connection through it closed, new ones dropped at once) and comes back."""

    def __init__(self, port: int = 5432) -> None:
        import socket
        import threading

        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.live: list = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            server = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.live += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        import socket

        self.up = False
        with self.lock:
            for s in self.live:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.live = []

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


def customers_table(url: str, key_type: str = "bigint") -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE customers (customer_id {key_type} PRIMARY KEY, "
                             "a double precision, b double precision)"))
        conn.execute(sa.text("INSERT INTO customers VALUES (1, 2.0, 0.0), (2, -2.0, 0.0)"))
    engine.dispose()


def test_a_database_that_goes_away_holds_the_batch_unacknowledged_until_it_is_back(
        redis_streams, postgres_url):
    """With --enrich and --lookup-store on a PostgreSQL that goes away, the worker backs off
    and tries the batch again: nothing is published or acknowledged meanwhile, nothing is
    dead-lettered, and once the database is back every event is scored exactly once."""
    import sqlalchemy as sa

    from modelport.serve.stream import run

    r, names, urls = redis_streams
    register()
    customers_table(postgres_url)
    proxy = Proxy()
    db = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")

    def send(ids):
        for i in ids:
            r.xadd(names[0], {"data": orjson.dumps({"id": i, "customer_id": 1 + i % 2,
                                                    "b": 0.1 * i})})

    async def wait_for(n: int, task) -> None:
        deadline = time.monotonic() + 30
        while r.xlen(names[1]) < n:
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.05)

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(run(
            "ev", urls[0], urls[1], dead_letter_url=urls[2], group="g", stop=stop,
            poll_seconds=0, enrich=f"{db}#customers?key=customer_id",
            lookup_store=f"{db}#scores"))
        send(range(5))
        await wait_for(5, task)
        proxy.cut()
        send(range(5, 10))
        await asyncio.sleep(2.0)
        held = r.xlen(names[1]), r.xpending(names[0], "g")["pending"]
        proxy.restore()
        await wait_for(10, task)
        stop.set()
        return held, await task

    try:
        (published, pending), stats = asyncio.run(scenario())
    finally:
        proxy.close()
    assert published == 5 and pending == 5  # read, held, not acknowledged
    assert stats.retries >= 2 and stats.scored == 10 and stats.dead_lettered == 0
    assert r.xlen(names[1]) == 10 and r.xlen(names[2]) == 0
    assert r.xpending(names[0], "g")["pending"] == 0
    assert sorted(o["key"] for o in outputs(r, names[1])) == list(range(10))
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT customer_id, model_version FROM scores")).all())
    engine.dispose()
    assert stored == {1: 1, 2: 1}


def scored_by_key(scored) -> tuple[dict, dict]:
    outs = {orjson.loads(p)["key"]: orjson.loads(p) for _, p in scored.outputs}
    dead = {orjson.loads(orjson.loads(p)["payload"])["id"]: orjson.loads(p)
            for _, p in scored.dead}
    return outs, dead


def test_enrich_keys_take_the_key_columns_type_or_reject_their_event_alone(postgres_url):
    """PostgreSQL compares a text key with a bigint column by raising (``operator does not
    exist: bigint = character varying``), which stopped the worker; so did a list key and
    one beyond 64 bits. Now a key is put in the column's type, and one that cannot be
    rejects its event with the code ``enrich``."""
    from modelport.io.brokers import Message
    from modelport.registry import Registry
    from modelport.serve.stream import Enrich, Steps, follow, score_batch

    register()
    customers_table(postgres_url)
    scorer = follow("ev", Registry(), poll_seconds=0).current
    steps = Steps(enrich=Enrich(f"{postgres_url}#customers?key=customer_id"))
    keys = {"e1": 1, "e2": "2", "e3": "abc", "e4": [1, 2], "e5": 99999999999999999999999,
            "e6": 2.0, "e7": 1.5, "e8": True, "e9": 777}
    payloads = [orjson.dumps({"id": k, "customer_id": v, "b": 0.5}) if k != "e5" else
                b'{"id": "e5", "customer_id": 99999999999999999999999, "b": 0.5}'
                for k, v in keys.items()]
    scored = score_batch(scorer, [Message(f"m{i}", p) for i, p in enumerate(payloads)], steps)
    outs, dead = scored_by_key(scored)
    assert set(outs) == {"e1", "e2", "e6"}
    model = Registry().load("ev")
    expected = model.run([{"a": 2.0, "b": 0.5}, {"a": -2.0, "b": 0.5}])["proba"][:, 1]
    assert [outs[k]["proba"][1] for k in ("e1", "e2", "e6")] == pytest.approx(
        [expected[0], expected[1], expected[1]], abs=1e-6)
    assert {k: d["reason_code"] for k, d in dead.items()} == {
        "e3": "enrich", "e4": "enrich", "e5": "enrich", "e7": "enrich", "e8": "enrich",
        "e9": "missing_field"}  # 777 has no stored row, and the event no 'a'
    assert "'abc', but the key column holds whole numbers" in dead["e3"]["reason"]
    assert "must be one value" in dead["e4"]["reason"]
    assert "beyond what the key column holds" in dead["e5"]["reason"]
    assert all(d["field"] == "customer_id" for k, d in dead.items() if k != "e9")


def test_a_text_key_the_database_refuses_costs_its_event_only(postgres_url):
    """A NUL in a key for a text column: PostgreSQL refuses the query, which is split until
    that key is found; the other events are enriched and scored."""
    from modelport.io.brokers import Message
    from modelport.registry import Registry
    from modelport.serve.stream import Enrich, Steps, follow, score_batch

    register()
    customers_table(postgres_url, "text")
    scorer = follow("ev", Registry(), poll_seconds=0).current
    steps = Steps(enrich=Enrich(f"{postgres_url}#customers?key=customer_id"))
    events = [{"id": f"e{i}", "customer_id": key, "b": 0.5}
              for i, key in enumerate(["1", 2, "x\x00y", "1", 1])]
    scored = score_batch(scorer, [Message(f"m{i}", orjson.dumps(e))
                                  for i, e in enumerate(events)], steps)
    outs, dead = scored_by_key(scored)
    assert set(outs) == {"e0", "e1", "e3", "e4"} and set(dead) == {"e2"}
    assert dead["e2"]["reason_code"] == "enrich"
    assert "could not be read" in dead["e2"]["reason"]


def test_lookup_store_ids_of_mixed_types_are_stored_in_the_key_columns_type(postgres_url):
    """Ids of mixed types once made one Arrow array fail and stopped the worker. Now each
    id is put in the key column's type (an existing table's, else text); an id that cannot
    be, or that the table refuses, rejects its event with the code ``lookup_store``."""
    import pyarrow as pa

    from modelport.io.brokers import Message
    from modelport.io.sinks import SqlSink
    from modelport.registry import Registry
    from modelport.serve.batch import output_schema
    from modelport.serve.lookup import lookup
    from modelport.serve.stream import LookupStore, Steps, follow, score_batch

    register()
    scorer = follow("ev", Registry(), poll_seconds=0).current
    # a table a batch job made with whole-number ids
    SqlSink(postgres_url, "numbered", "id", "ev", 1, "job").start(
        output_schema(scorer.signature, pa.int64(), "id"), resume=True)
    ids = [1, "2", "abc", [1, 2], 3.0, "4", 5]
    payloads = [orjson.dumps({"id": i, "a": 0.1, "b": 0.2}) for i in ids]
    payloads.append(b'{"id": 99999999999999999999999, "a": 0.1, "b": 0.2}')

    def run_through(table: str):
        store = LookupStore(f"{postgres_url}#{table}", "id")
        store.start(scorer)
        try:
            return score_batch(scorer, [Message(f"m{i}", p) for i, p in enumerate(payloads)],
                               Steps(store=store))
        finally:
            store.close()

    scored = run_through("numbered")
    keys = [orjson.loads(p)["key"] for _, p in scored.outputs]
    assert keys == [1, "2", 3.0, "4", 5]
    dead = [orjson.loads(p) for _, p in scored.dead]
    assert [d["id"] for d in dead] == ["m2", "m3", "m7"]
    assert {d["reason_code"] for d in dead} == {"lookup_store"}
    store = f"{postgres_url}#numbered"
    assert [lookup("ev", k, store=store)["model_version"] for k in (1, 2, 3, 4, 5)] == [1] * 5

    # a new table keys by text: every id but the list is stored, as its text
    payloads[:] = [orjson.dumps({"id": i, "a": 0.1, "b": 0.2})
                   for i in [7, "seven", [1, 2], "nul\x00", "x" * 300, 8]]
    scored = run_through("texted")
    assert [orjson.loads(p)["key"] for _, p in scored.outputs] == [7, "seven", 8]
    dead = {orjson.loads(p)["id"]: orjson.loads(p) for _, p in scored.dead}
    assert set(dead) == {"m2", "m3", "m4"}
    assert "could not be stored" in dead["m3"]["reason"]  # PostgreSQL refuses the NUL
    assert lookup("ev", 7, store=f"{postgres_url}#texted")["model_version"] == 1
    assert lookup("ev", "seven", store=f"{postgres_url}#texted") is not None


def test_a_failure_no_step_isolates_costs_only_the_events_that_fail_alone(redis_streams,
                                                                          monkeypatch):
    """A defect of the worker that fails a whole batch on one event does not stop it: the
    batch is scored one event at a time and the event that fails alone is dead-lettered
    (code ``internal``)."""
    import modelport.serve.stream as stream

    r, names, urls = redis_streams
    register()
    real = stream._outputs

    def broken(scorer, events, *args):
        if any(e.get("id") == 3 for e in events):
            raise RuntimeError("a defect")
        return real(scorer, events, *args)

    monkeypatch.setattr(stream, "_outputs", broken)

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(stream.run("ev", urls[0], urls[1], dead_letter_url=urls[2],
                                              group="g", stop=stop, poll_seconds=0))
        pipe = r.pipeline()
        for i in range(8):
            pipe.xadd(names[0], {"data": orjson.dumps({"id": i, "a": 0.1, "b": 0.2})})
        pipe.execute()
        deadline = time.monotonic() + 30
        while r.xlen(names[1]) < 7 or r.xlen(names[2]) < 1:
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.05)
        stop.set()
        return await task

    stats = asyncio.run(scenario())
    assert stats.scored == 7 and stats.dead_lettered == 1
    (letter,) = outputs(r, names[2])
    assert letter["reason_code"] == "internal" and "a defect" in letter["reason"]
    assert r.xpending(names[0], "g")["pending"] == 0


def test_the_command_takes_strict_and_one_rule_back_in_the_older_spelling(redis_streams):
    """``--strict --out-of-range warn``: a number outside the training range is scored with
    a warning, an unseen category is dead-lettered."""
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from modelport.register import log_model

    r, names, urls = redis_streams
    X = pd.DataFrame({"a": np.linspace(-1, 1, 60), "plan": ["basic", "pro"] * 30})
    pipe = make_pipeline(make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["plan"]), remainder="passthrough"),
        LogisticRegression()).fit(X, (X.a > 0).astype(int))
    log_model(pipe, "plans", sample=X, formats=["joblib"])
    for event in ({"id": "far", "a": 9.0, "plan": "pro"},
                  {"id": "new-plan", "a": 0.5, "plan": "enterprise"}):
        r.xadd(names[0], {"data": orjson.dumps(event)})
    proc = subprocess.Popen([sys.executable, "-m", "modelport", "stream", "plans",
                             "--source", urls[0], "--sink", urls[1], "--dead-letter", urls[2],
                             "--strict", "--out-of-range", "warn"],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while (r.xlen(names[1]) < 1 or r.xlen(names[2]) < 1) and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    (scored,) = outputs(r, names[1])
    assert scored["key"] == "far" and scored["warnings"][0]["kind"] == "out_of_range"
    (letter,) = outputs(r, names[2])
    assert letter["reason_code"] == "unseen_category" and "enterprise" in letter["reason"]
