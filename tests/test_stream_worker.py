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
            r.xadd(names[0], {"data": orjson.dumps({"id": i, "a": 1, "b": 2})})
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
