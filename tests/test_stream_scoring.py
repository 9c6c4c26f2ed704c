"""Scoring a micro-batch of events: one model call, outputs tagged with id and version,
bad events split off to the dead letters with their payload and the reason."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from modelport.errors import UserError
from modelport.io import brokers
from modelport.io.brokers import Message
from modelport.registry import Registry
from modelport.serve.stream import _Model, score_batch
from modelport.uri import ModelURI


@pytest.fixture
def model():
    from sklearn.linear_model import LogisticRegression

    from modelport.register import log_model

    rng = np.random.default_rng(1)
    X = pd.DataFrame({"tenure": rng.normal(size=300).round(2),
                      "plan": rng.choice(["basic", "pro"], 300)})
    X["spend"] = rng.normal(size=300).round(2)
    y = (X.tenure + X.spend > 0).astype(int)
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    pipe = make_pipeline(make_column_transformer((OneHotEncoder(), ["plan"]),
                                                 remainder="passthrough"),
                         LogisticRegression())
    log_model(pipe.fit(X, y), "churn", sample=X, formats=["onnx"], alias="production")
    reg = Registry()
    return _Model(reg, ModelURI.parse("churn@production"), 1, None)


def msg(i, body: bytes, mid: str | None = None) -> Message:
    return Message(id=mid if mid is not None else f"m{i}", payload=body)


def test_outputs_carry_the_input_id_the_event_key_and_the_model_version(model):
    events = [{"id": f"c{i}", "tenure": i / 10, "plan": "pro", "spend": -0.5} for i in range(20)]
    outputs, dead = score_batch(model, [msg(i, orjson.dumps(e)) for i, e in enumerate(events)],
                                "json")
    assert dead == []
    rows = [orjson.loads(p) for _, p in outputs]
    assert [r["id"] for r in rows] == [f"m{i}" for i in range(20)]
    assert [r["key"] for r in rows] == [f"c{i}" for i in range(20)]
    assert {r["version"] for r in rows} == {1} and {r["model"] for r in rows} == {"churn"}
    expected = model.predictor.run(events)
    assert [r["label"] for r in rows] == expected["label"].tolist()
    assert np.allclose([r["proba"] for r in rows], expected["proba"])
    assert [k for k, _ in outputs] == [f"m{i}@1" for i in range(20)]


def test_bad_events_go_to_the_dead_letters_with_payload_and_reason(model):
    good = {"id": 1, "tenure": 1.0, "plan": "basic", "spend": 2.0}
    batch = [msg(0, orjson.dumps(good)), msg(1, b"\xff\xfe not json"),
             msg(2, b'{"tenure": "long", "plan": "pro", "spend": 1}'),
             msg(3, b'{"tenure": 1.0}'), msg(4, b"[1, 2]"), msg(5, orjson.dumps(good))]
    outputs, dead = score_batch(model, batch, "json")
    assert [orjson.loads(p)["id"] for _, p in outputs] == ["m0", "m5"]
    letters = {orjson.loads(p)["id"]: orjson.loads(p) for _, p in dead}
    assert set(letters) == {"m1", "m2", "m3", "m4"}
    assert letters["m1"]["reason"].startswith("not json") and "payload_base64" in letters["m1"]
    assert "'tenure' must be numeric" in letters["m2"]["reason"]
    assert letters["m2"]["payload"] == '{"tenure": "long", "plan": "pro", "spend": 1}'
    assert "missing column(s) 'plan', 'spend'" in letters["m3"]["reason"]
    assert "not a json object" in letters["m4"]["reason"]


def test_msgpack_events_score_like_json(model):
    import msgpack

    e = {"id": 7, "tenure": 0.3, "plan": "pro", "spend": 0.1}
    out_j, _ = score_batch(model, [msg(0, orjson.dumps(e))], "json")
    out_m, _ = score_batch(model, [msg(0, msgpack.packb(e))], "msgpack")
    assert orjson.loads(out_j[0][1]) == msgpack.unpackb(out_m[0][1])


def test_without_a_broker_id_the_event_id_names_the_message(model):
    e = {"id": "cust-9", "tenure": 0.3, "plan": "pro", "spend": 0.1}
    outputs, _ = score_batch(model, [Message(id=None, payload=orjson.dumps(e))], "json")
    assert orjson.loads(outputs[0][1])["id"] == "cust-9"


@pytest.mark.parametrize("url, hint", [
    ("http://127.0.0.1/events", "not a broker URL"),
    ("redis://127.0.0.1:6379/0", "?stream=NAME"),
    ("nats://127.0.0.1:4222", "?subject=NAME"),
    ("amqp://guest:guest@127.0.0.1:5672/", "?queue=NAME"),
    ("mqtt://127.0.0.1:1883?queue=x", "?topic=NAME"),
    ("kafka://127.0.0.1:9092", "?topic=NAME"),
])
def test_a_broker_url_without_its_destination_is_a_user_error_naming_the_fix(url, hint):
    with pytest.raises(UserError, match=hint.replace("?", r"\?")):
        brokers.parse(url, "--source")


def test_the_command_rejects_a_non_broker_url_with_exit_code_2():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "modelport", "stream", "churn", "--source",
                           "http://127.0.0.1/events", "--sink", "redis://127.0.0.1?stream=s"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--source 'http://127.0.0.1/events' is not a broker URL" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_event_missing_fields_is_dead_lettered_even_among_good_ones(model):
    good = {"id": 1, "tenure": 1.0, "plan": "basic", "spend": 2.0}
    batch = [msg(0, orjson.dumps(good)), msg(1, b'{"id": 2, "tenure": 1.0}'),
             msg(2, orjson.dumps(good))]
    outputs, dead = score_batch(model, batch, "json")
    assert [orjson.loads(p)["id"] for _, p in outputs] == ["m0", "m2"]
    (letter,) = [orjson.loads(p) for _, p in dead]
    assert letter["id"] == "m1" and "missing column(s) 'plan', 'spend'" in letter["reason"]


@pytest.mark.parametrize("reply", [
    "$JS.ACK.ORDERS.worker.1.4821.17.1733155200000000000.12",
    "$JS.ACK._.ACC123.ORDERS.worker.3.4821.17.1733155200000000000.0.a1b2c3",
    "$JS.ACK.hub.ACC123.ORDERS.worker.1.99.1.1733155200000000000.5",
])
def test_the_jetstream_id_read_from_the_ack_subject_is_the_clients_stream_sequence(reply):
    from conftest import need_module

    msg_module = need_module("nats.aio.msg", "brokers")
    from modelport.io.brokers.nats_jetstream import _stream_sequence

    msg = msg_module.Msg(_client=None, subject="events", reply=reply, data=b"{}")
    assert _stream_sequence(msg) == str(msg.metadata.sequence.stream)


def test_rabbitmq_confirms_settle_each_batch_once_whether_single_multiple_or_nacked():
    """The sink's confirm bookkeeping: RabbitMQ confirms delivery tags one by one or as
    ranges (multiple=True); a batch is done when its last output is confirmed and fails if
    any of its outputs was nacked."""
    import asyncio

    from conftest import need_module

    pika = need_module("pika", "brokers")
    from modelport.io.brokers import Outputs
    from modelport.io.brokers.rabbitmq import Sink

    def frame(kind, tag, multiple):
        return pika.frame.Method(1, kind(delivery_tag=tag, multiple=multiple))

    async def scenario():
        sink = Sink(brokers.parse("amqp://guest:guest@127.0.0.1:5672/?queue=q", "--sink"))
        batches = [Outputs(3) for _ in range(3)]
        for b in batches:
            for _ in range(3):
                sink._tag += 1
                sink._waiting[sink._tag] = b
        sink._on_confirm(frame(pika.spec.Basic.Ack, 2, False))  # out of order, single
        sink._on_confirm(frame(pika.spec.Basic.Ack, 1, False))
        assert not batches[0].done.done() and sink._low == 3
        sink._on_confirm(frame(pika.spec.Basic.Ack, 4, True))  # tags 3 and 4
        assert batches[0].done.done() and batches[0].done.exception() is None
        sink._on_confirm(frame(pika.spec.Basic.Nack, 5, False))
        sink._on_confirm(frame(pika.spec.Basic.Ack, 9, True))
        with pytest.raises(RuntimeError, match="refused 1 output"):
            batches[1].done.result()
        assert batches[2].done.result() is None
        assert not sink._waiting and sink._low == 10

    asyncio.run(scenario())


@pytest.mark.services
def test_jetstream_outputs_nobody_stores_fail_the_batch_and_stored_ones_pass():
    """The NATS sink counts publish acks on its own inbox: outputs JetStream stored pass;
    when no stream captures the subject any more, the batch fails with the reason instead
    of being acknowledged."""
    import asyncio
    import uuid

    from conftest import need_module, port_open, unavailable

    need_module("nats", "brokers")
    if not port_open("127.0.0.1", 4222):
        unavailable("NATS is not running on 127.0.0.1:4222")
    subject = f"out_{uuid.uuid4().hex[:8]}"

    async def scenario():
        sink = brokers.open_sink(f"nats://127.0.0.1:4222?subject={subject}&ack_timeout=10")
        await sink.connect()
        try:
            await sink.publish([(f"k{i}@1", b'{"n": %d}' % i) for i in range(1200)])
            info = await sink.js.stream_info(subject.upper())
            assert info.state.messages == 1200
            await sink.js.delete_stream(subject.upper())
            with pytest.raises(RuntimeError, match="no JetStream stream captures"):
                await sink.publish([("k-late@1", b"{}")])
            assert not sink._waiting
        finally:
            await sink.close()

    asyncio.run(scenario())


@pytest.mark.services
def test_a_rabbitmq_queue_declared_otherwise_fails_the_connect_instead_of_hanging():
    """The queue exists as a transient queue: RabbitMQ refuses the worker's durable
    declare by closing the channel, and connect raises with the broker's reason."""
    import asyncio
    import uuid

    from conftest import need_module, port_open, unavailable

    pika = need_module("pika", "brokers")
    if not port_open("127.0.0.1", 5672):
        unavailable("RabbitMQ is not running on 127.0.0.1:5672")
    url = "amqp://guest:guest@127.0.0.1:5672/"
    queue = f"transient_{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.URLParameters(url))
    conn.channel().queue_declare(queue, durable=False)

    async def scenario():
        source = brokers.open_source(f"{url}?queue={queue}", group="g", batch=10)
        try:
            with pytest.raises(ConnectionError, match="PRECONDITION_FAILED|inequivalent"):
                await asyncio.wait_for(source.connect(), timeout=20)
        finally:
            await source.close()

    try:
        asyncio.run(scenario())
    finally:
        conn.channel().queue_delete(queue)
        conn.close()


@pytest.mark.services
def test_a_rabbitmq_batch_leaves_in_one_buffer_and_every_output_arrives_in_order():
    """The batch's publish frames are joined before the loop writes them; RabbitMQ gets
    every output, in order, intact."""
    import asyncio
    import uuid

    from conftest import need_module, port_open, unavailable

    pika = need_module("pika", "brokers")
    if not port_open("127.0.0.1", 5672):
        unavailable("RabbitMQ is not running on 127.0.0.1:5672")
    url = "amqp://guest:guest@127.0.0.1:5672/"
    queue = f"joined_{uuid.uuid4().hex[:8]}"
    payloads = [orjson.dumps({"n": i, "pad": "x" * (i % 300)}) for i in range(1500)]

    async def scenario():
        sink = brokers.open_sink(f"{url}?queue={queue}")
        await sink.connect()
        try:
            link = sink.link
            original = link.coalesce
            sizes = []

            def coalesce():
                original()
                sizes.append(len(link.conn._transport._tx_buffers))

            link.coalesce = coalesce
            await asyncio.wait_for(
                sink.publish([(str(i), p) for i, p in enumerate(payloads)]), timeout=30)
            assert sizes == [1]  # 4,500 frames, one buffer
        finally:
            await sink.close()

    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        asyncio.run(scenario())
        channel = conn.channel()
        got = []
        for _ in range(len(payloads)):
            method, props, body = channel.basic_get(queue, auto_ack=True)
            got.append((props.message_id, body))
        assert got == [(str(i), p) for i, p in enumerate(payloads)]
        assert channel.basic_get(queue)[0] is None
    finally:
        conn.channel().queue_delete(queue)
        conn.close()


@pytest.mark.services
def test_a_redis_read_with_no_wait_asks_without_block_and_a_wait_asks_with_one():
    """Redis ends an empty BLOCK on its own clock (10 ticks a second by default), so a
    1 ms wait could hold a batch already in hand for 100 ms: a read with wait 0 must send
    XREADGROUP without BLOCK. Checked on the commands the server itself saw (MONITOR)."""
    import asyncio
    import uuid

    from conftest import need_module, port_open, unavailable

    need_module("redis", "brokers")
    if not port_open("127.0.0.1", 6379):
        unavailable("Redis is not running on 127.0.0.1:6379")
    import redis

    stream = f"blk_{uuid.uuid4().hex[:8]}"
    url = f"redis://127.0.0.1:6379/0?stream={stream}"
    watcher = redis.Redis(socket_timeout=10)

    async def reads():
        source = brokers.open_source(url, group="g", batch=10)
        await source.connect()
        try:
            source._next_claim = float("inf")  # only the reads, no XAUTOCLAIM between
            assert await source.read(10, 0) == []
            assert await source.read(10, 0.02) == []
            await source.redis.xadd(stream, {"data": b"{}"})
            got = await source.read(10, 0)
            assert [m.payload for m in got] == [b"{}"]
        finally:
            await source.redis.delete(stream)
            await source.close()

    try:
        with watcher.monitor() as monitor:
            asyncio.run(reads())
            seen = []
            while len(seen) < 3:
                command = monitor.next_command()["command"]
                if command.upper().startswith("XREADGROUP") and stream in command:
                    seen.append(command.upper())
    finally:
        watcher.close()
    assert "BLOCK" not in seen[0] and "BLOCK 20" in seen[1] and "BLOCK" not in seen[2]
