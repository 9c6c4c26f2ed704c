"""Learning from NATS JetStream (read from a stored sequence), RabbitMQ and MQTT (messages
acknowledged once a checkpoint covers them): a second run learns only what is new; events
a checkpoint already covers are recognised when a broker delivers them again."""

from __future__ import annotations

import asyncio
import time
import uuid

import numpy as np
import orjson
import pytest

from modelport.registry import Registry
from modelport.train.online.loop import Learning, State, run
from modelport.train.online.sources import Batch
from modelport.train.online.spec import load_spec

from conftest import need_module, port_open, unavailable

pytestmark = pytest.mark.services

BROKERS = {
    "nats": ("nats://127.0.0.1:4222?subject={name}", 4222, "nats"),
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672/?queue={name}", 5672, "aio_pika"),
    "mqtt": ("mqtt://127.0.0.1:1883?topic={name}", 1883, "paho.mqtt"),
}


def events(start: int, n: int) -> list[dict]:
    rng = np.random.default_rng(start)
    X = rng.normal(size=(n, 2))
    return [{"id": start + i, "a": float(a), "b": float(b), "y": int(a + b > 0)}
            for i, (a, b) in enumerate(X)]


async def publish(url: str, rows: list[dict]) -> None:
    from modelport.io import brokers

    sink = brokers.open_sink(url)
    await sink.connect()
    try:
        await sink.publish([(f"e{r['id']}-{uuid.uuid4().hex[:6]}", orjson.dumps(r))
                            for r in rows])
    finally:
        await sink.close()


@pytest.mark.parametrize("broker", list(BROKERS))
def test_a_second_run_learns_only_the_new_events(broker):
    template, port, module = BROKERS[broker]
    need_module(module, "brokers")
    if not port_open("127.0.0.1", port):
        unavailable(f"{broker} is not running on 127.0.0.1:{port}")
    name = f"learn_{uuid.uuid4().hex[:8]}"
    url = template.format(name=name)
    spec = load_spec({"name": "brk", "source": {"url": url, "group": name}, "target": "y",
                      "features": ["a", "b"], "classes": [0, 1],
                      "learner": {"estimator": "sklearn.linear_model.SGDClassifier"},
                      "batch": {"size": 100, "max_wait_ms": 20},
                      "checkpoint": {"every_events": 250, "formats": ["joblib"]},
                      "promotion": False})

    async def round_(rows: list[dict]):
        if broker == "mqtt":
            # an MQTT session only holds messages published once it subscribed
            task = asyncio.create_task(run(spec))
            await asyncio.sleep(1.5)
            await publish(url, rows)
            return await task
        await publish(url, rows)
        return await run(spec)

    first = asyncio.run(round_(events(0, 600)))
    second = asyncio.run(round_(events(600, 400)))
    assert (first.learned, second.learned) == (600, 400)
    assert second.resumed_from == first.checkpoints[-1] and second.duplicates == 0
    final = Registry().get("brk@online-latest").lineage["online"]
    assert final["counts"]["learned"] == 1000
    if broker == "nats":
        assert final["position"] == {"after": 1000}


def test_messages_a_checkpoint_covers_are_not_learnt_again_when_delivered_again(tmp_path):
    """RabbitMQ and MQTT cannot be read from a position: a checkpoint records the ids of
    the messages it covers that may not have been acknowledged yet, and a learner restored
    from it drops (and acknowledges) those when the broker hands them out again."""
    spec = load_spec({"name": "dup", "source": "amqp://guest:guest@127.0.0.1/?queue=q",
                      "target": "y", "features": ["a", "b"], "classes": [0, 1],
                      "learner": {"estimator": "sklearn.linear_model.SGDClassifier"}})

    class Msg:
        def __init__(self, i):
            self.id = f"m{i}"

    rows = events(0, 10)
    messages = [Msg(i) for i in range(10)]
    learning = Learning(spec, State(spec), Registry())
    learning.state.covered = {"m0", "m1", "m2"}
    again = learning.process(Batch(10, None, rows=rows, messages=messages,
                                   ids=[m.id for m in messages]))
    assert [m.id for m in again] == ["m0", "m1", "m2"]
    assert learning.state.counts["duplicates"] == 3
    assert learning.state.counts["learned"] == 7


def test_without_follow_a_positioned_stream_ends_where_it_ended_at_the_start():
    redis = need_module("redis", "brokers")
    if not port_open("127.0.0.1", 6379):
        unavailable("Redis is not running on 127.0.0.1:6379")
    r = redis.Redis()
    key = f"learn_{uuid.uuid4().hex[:8]}"
    url = f"redis://127.0.0.1:6379/0?stream={key}"
    for row in events(0, 500):
        r.xadd(key, {"data": orjson.dumps(row)})
    spec = load_spec({"name": "ends", "source": url, "target": "y", "features": ["a", "b"],
                      "learner": {"estimator": "sklearn.linear_model.SGDClassifier"},
                      "batch": {"size": 64}, "checkpoint": {"formats": ["joblib"]},
                      "promotion": False})

    async def scenario():
        task = asyncio.create_task(run(spec))
        for row in events(500, 300):  # arrive while it learns: left for the next run
            r.xadd(key, {"data": orjson.dumps(row)})
            await asyncio.sleep(0)
        return await task

    try:
        started = time.time()
        first = asyncio.run(scenario())
        second = asyncio.run(run(spec))
    finally:
        r.delete(key)
    assert time.time() - started < 60
    assert first.learned + second.learned == 800 and first.learned >= 500
