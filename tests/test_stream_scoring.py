"""Scoring a micro-batch of events through the scoring core: one check call and one model
call, outputs tagged with id and version, flagged values scored with warnings, and every
event that cannot be scored split off to the dead letters with its payload, reason and
reason code, the others scored as if alone."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from modelport.errors import UserError
from modelport.io import brokers
from modelport.io.brokers import Message
from modelport.registry import Registry
from modelport.scoring.checks import InputPolicy
from modelport.serve.stream import Steps, follow, score_batch


def churn_frame():
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"tenure": rng.normal(size=300).round(2),
                      "plan": rng.choice(["basic", "pro"], 300)})
    X["spend"] = rng.normal(size=300).round(2)
    return X, (X.tenure + X.spend > 0).astype(int)


def churn_pipeline():
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    X, y = churn_frame()
    return make_pipeline(make_column_transformer((OneHotEncoder(handle_unknown="ignore"),
                                                  ["plan"]), remainder="passthrough"),
                         LogisticRegression()).fit(X, y)


@pytest.fixture
def model():
    from modelport.register import log_model

    X, _ = churn_frame()
    log_model(churn_pipeline(), "churn", sample=X, formats=["onnx"], alias="production")
    scorer = follow("churn@production", Registry(), poll_seconds=0).current
    assert scorer.format == "onnx"
    return scorer


def msg(i, body: bytes, mid: str | None = None) -> Message:
    return Message(id=mid if mid is not None else f"m{i}", payload=body)


def letters(scored) -> dict:
    return {orjson.loads(p)["id"]: orjson.loads(p) for _, p in scored.dead}


def test_outputs_carry_the_input_id_the_event_key_and_the_model_version(model):
    events = [{"id": f"c{i}", "tenure": i / 10, "plan": "pro", "spend": -0.5} for i in range(20)]
    scored = score_batch(model, [msg(i, orjson.dumps(e)) for i, e in enumerate(events)])
    assert scored.dead == [] and scored.flags == []
    rows = [orjson.loads(p) for _, p in scored.outputs]
    assert [r["id"] for r in rows] == [f"m{i}" for i in range(20)]
    assert [r["key"] for r in rows] == [f"c{i}" for i in range(20)]
    assert {r["version"] for r in rows} == {1} and {r["model"] for r in rows} == {"churn"}
    assert not any("warnings" in r for r in rows)
    expected = model.predictor.run(events)
    assert [r["label"] for r in rows] == expected["label"].tolist()
    assert np.allclose([r["proba"] for r in rows], expected["proba"])
    assert [k for k, _ in scored.outputs] == [f"m{i}@1" for i in range(20)]


def test_a_clean_batch_takes_one_check_call_and_one_model_call(model, monkeypatch):
    import modelport.serve.stream as stream

    calls = {"check": 0, "model": 0}
    real_check, real_run = stream.check, model.predictor.run_checked

    def counted_check(*args, **kwargs):
        calls["check"] += 1
        return real_check(*args, **kwargs)

    def counted_run(cols):
        calls["model"] += 1
        return real_run(cols)

    monkeypatch.setattr(stream, "check", counted_check)
    monkeypatch.setattr(model.predictor, "run_checked", counted_run)
    events = [{"id": i, "tenure": 0.1, "plan": "pro", "spend": 0.2} for i in range(500)]
    scored = score_batch(model, [msg(i, orjson.dumps(e)) for i, e in enumerate(events)])
    assert len(scored.outputs) == 500 and calls == {"check": 1, "model": 1}


def test_bad_events_go_to_the_dead_letters_with_payload_reason_and_code(model):
    good = {"id": 1, "tenure": 1.0, "plan": "basic", "spend": 2.0}
    batch = [msg(0, orjson.dumps(good)), msg(1, b"\xff\xfe not json"),
             msg(2, b'{"tenure": "long", "plan": "pro", "spend": 1}'),
             msg(3, b'{"tenure": 1.0}'), msg(4, b"[1, 2]"), msg(5, orjson.dumps(good))]
    scored = score_batch(model, batch)
    assert [orjson.loads(p)["id"] for _, p in scored.outputs] == ["m0", "m5"]
    dead = letters(scored)
    assert set(dead) == {"m1", "m2", "m3", "m4"}
    assert dead["m1"]["reason"].startswith("not json") and "payload_base64" in dead["m1"]
    assert dead["m1"]["reason_code"] == "not_json"
    assert "'tenure' must be numeric" in dead["m2"]["reason"]
    assert dead["m2"]["reason_code"] == "wrong_type" and dead["m2"]["field"] == "tenure"
    assert dead["m2"]["payload"] == '{"tenure": "long", "plan": "pro", "spend": 1}'
    assert dead["m3"]["reason"] == ("the event is missing field 'plan'; send null for a "
                                    "missing value")
    assert dead["m3"]["reason_code"] == "missing_field"
    assert "not a json object" in dead["m4"]["reason"]
    assert dead["m4"]["reason_code"] == "not_a_record"
    assert [k for k, _ in scored.dead] == ["m1@dead", "m2@dead", "m3@dead", "m4@dead"]


def test_a_list_in_a_numeric_field_is_dead_lettered_and_the_rest_scored_as_alone(model):
    """A list once passed the stream's own check and made onnxruntime raise: the worker
    exited, and read the same batch again on restart."""
    events = [{"id": i, "tenure": i / 7, "plan": "pro", "spend": 0.3} for i in range(9)]
    payloads = [orjson.dumps(e) for e in events]
    payloads[4] = orjson.dumps({"id": 4, "tenure": [1, 2], "plan": "pro", "spend": 0.3})
    scored = score_batch(model, [msg(i, p) for i, p in enumerate(payloads)])
    (letter,) = letters(scored).values()
    assert letter["id"] == "m4" and letter["reason_code"] == "wrong_type"
    assert "'tenure' must be a number or null, got a list" in letter["reason"]
    rows = [orjson.loads(p) for _, p in scored.outputs]
    kept = [e for e in events if e["id"] != 4]
    assert [r["key"] for r in rows] == [e["id"] for e in kept]
    for r, e in zip(rows, kept, strict=True):
        alone = model.predictor.run(e)
        assert r["proba"] == pytest.approx(alone["proba"][0].tolist(), abs=1e-6)  # float32


def test_a_value_outside_training_is_scored_with_warnings_or_dead_lettered_when_strict(model):
    events = [{"id": "a", "tenure": 0.5, "plan": "pro", "spend": 0.1},
              {"id": "b", "tenure": 40.0, "plan": "enterprise", "spend": 0.1},
              {"id": "c", "tenure": -25.0, "plan": "basic", "spend": 0.1}]
    batch = [msg(i, orjson.dumps(e)) for i, e in enumerate(events)]
    scored = score_batch(model, batch)
    assert scored.dead == []
    rows = {r["key"]: r for r in (orjson.loads(p) for _, p in scored.outputs)}
    assert "warnings" not in rows["a"]
    assert rows["b"]["warnings"] == [
        {"field": "tenure", "kind": "out_of_range",
         "message": rows["b"]["warnings"][0]["message"]},
        {"field": "plan", "kind": "unseen_category",
         "message": "'plan' value 'enterprise' is a category unseen in training"}]
    assert rows["b"]["warnings"][0]["message"].startswith("'tenure' value 40 is outside the "
                                                          "range seen in training [")
    # each event's warning names its own value
    assert rows["c"]["warnings"][0]["message"].startswith("'tenure' value -25 is outside")
    assert len(scored.flags) == 2

    strict = score_batch(model, batch, Steps(policy=InputPolicy.of(strict=True)))
    assert [orjson.loads(p)["key"] for _, p in strict.outputs] == ["a"]
    dead = letters(strict)
    assert dead["m1"]["reason_code"] == "out_of_range" and "strict" in dead["m1"]["reason"]
    only_words = score_batch(model, batch, Steps(policy=InputPolicy.of(
        unseen_categories="reject")))
    assert [orjson.loads(p)["key"] for _, p in only_words.outputs] == ["a", "c"]
    assert letters(only_words)["m1"]["reason_code"] == "unseen_category"


def test_json_orjson_refuses_is_read_so_the_checks_and_the_model_decide(model):
    """An integer beyond 64 bits and an escaped lone surrogate are JSON, which orjson does
    not read: the standard library reads them, and the row checks and the model decide
    (neither runtime here takes a lone surrogate). NaN is not JSON and stays refused."""
    good = orjson.dumps({"id": 0, "tenure": 0.5, "plan": "pro", "spend": 0})
    big = b'{"id": 1, "tenure": 1' + b"0" * 400 + b', "plan": "pro", "spend": 0}'
    lone = b'{"id": 2, "tenure": 0.5, "plan": "\\ud800", "spend": 0}'
    nan = b'{"id": 3, "tenure": NaN, "plan": "pro", "spend": 0}'
    scored = score_batch(model, [msg(0, good), msg(1, big), msg(2, lone), msg(3, nan)])
    dead = letters(scored)
    assert dead["m1"]["reason_code"] == "wrong_type" and "too large" in dead["m1"]["reason"]
    assert dead["m2"]["reason_code"] == "model_error" and "surrogate" in dead["m2"]["reason"]
    assert dead["m3"]["reason_code"] == "not_json"
    assert [orjson.loads(p)["key"] for _, p in scored.outputs] == [0]


def test_a_model_raising_on_one_value_costs_that_event_only():
    from modelport.register import log_model
    from modelport.testing import Tripwire

    X, _ = churn_frame()
    log_model(Tripwire(churn_pipeline(), "spend", 0.255), "trip", sample=X,
              formats=["joblib"])
    scorer = follow("trip", Registry(), poll_seconds=0).current
    events = [{"id": i, "tenure": 0.1 * i, "plan": "pro", "spend": 0.255 if i == 6 else 0.5}
              for i in range(10)]
    scored = score_batch(scorer, [msg(i, orjson.dumps(e)) for i, e in enumerate(events)])
    (letter,) = letters(scored).values()
    assert letter["id"] == "m6" and letter["reason_code"] == "model_error"
    assert "trips the wire" in letter["reason"]
    assert [orjson.loads(p)["key"] for _, p in scored.outputs] == [0, 1, 2, 3, 4, 5, 7, 8, 9]


def test_msgpack_events_score_like_json(model):
    import msgpack

    e = {"id": 7, "tenure": 0.3, "plan": "pro", "spend": 0.1}
    out_j = score_batch(model, [msg(0, orjson.dumps(e))]).outputs
    out_m = score_batch(model, [msg(0, msgpack.packb(e))], Steps(fmt="msgpack")).outputs
    assert orjson.loads(out_j[0][1]) == msgpack.unpackb(out_m[0][1])


def test_without_a_broker_id_the_event_id_names_the_message(model):
    e = {"id": "cust-9", "tenure": 0.3, "plan": "pro", "spend": 0.1}
    outputs = score_batch(model, [Message(id=None, payload=orjson.dumps(e))]).outputs
    assert orjson.loads(outputs[0][1])["id"] == "cust-9"


def test_an_id_no_header_can_carry_is_published_under_a_hash_but_kept_in_the_output(model):
    e = {"id": "line\nbreak\x00" + "x" * 300, "tenure": 0.3, "plan": "pro", "spend": 0.1}
    (key, payload), = score_batch(model, [Message(id=None, payload=orjson.dumps(e))]).outputs
    assert len(key) < 60 and key.isprintable() and key.endswith("@1")
    assert orjson.loads(payload)["id"] == e["id"] == orjson.loads(payload)["key"]


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
    scored = score_batch(model, batch)
    assert [orjson.loads(p)["id"] for _, p in scored.outputs] == ["m0", "m2"]
    (letter,) = letters(scored).values()
    assert letter["id"] == "m1" and "missing field 'plan'" in letter["reason"]


@pytest.mark.parametrize("option, value", [("--out-of-range", "ignore"),
                                           ("--unseen-categories", "maybe")])
def test_the_command_refuses_an_unknown_input_policy_with_exit_code_2(option, value):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "modelport", "stream", "churn", "--source",
                           "redis://127.0.0.1?stream=a", "--sink", "redis://127.0.0.1?stream=b",
                           option, value], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"{option} {value!r} is not known: use flag or reject" in proc.stderr
    assert "Traceback" not in proc.stderr


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
