"""A promoted checkpoint reaches `modelport serve` within seconds, with every request
answered while the server swaps versions, and the stream scorer follows the alias too."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import orjson
import pytest

from modelport.registry import Registry
from modelport.train.online import learn
from test_http_server import MODELPORT, free_port

from conftest import need_module, port_open, unavailable

httpx = need_module("httpx", "dev")


def customers(n: int, seed: int, drift: float = 0.0) -> list[dict]:
    from modelport.datasets import churn

    frame = churn.generate(n, seed=seed, drift=drift)
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
            for r in frame.to_dict("records")]


def append(path: Path, rows: list[dict]) -> None:
    with open(path, "ab") as fh:
        fh.writelines(orjson.dumps(r) + b"\n" for r in rows)


def spec(path: Path) -> dict:
    return {"name": "churn-online", "source": str(path), "target": "churned",
            "id": "customer_id",
            "learner": {"estimator": "sklearn.linear_model.SGDClassifier",
                        "params": {"loss": "log_loss"}},
            "batch": {"size": 256}, "checkpoint": {"every_events": 10**9},
            "promotion": {"threshold": 1.0}}  # any checkpoint may serve: this is about swaps


def test_a_promoted_checkpoint_is_served_within_seconds_without_failed_requests(tmp_path):
    path = tmp_path / "events.jsonl"
    append(path, customers(1500, seed=1))
    first = learn(spec(path))
    assert Registry().aliases("churn-online")["production"] == first.checkpoints[-1]
    port = free_port()
    server = subprocess.Popen(
        [MODELPORT, "serve", "churn-online@production", "--port", str(port),
         "--poll-seconds", "0.5", "--no-access-log", "--unseen-categories", "warn",
         "--out-of-range", "warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}/predict/churn-online"
    probe = {k: v for k, v in customers(1, seed=99)[0].items()
             if k not in ("customer_id", "churned")}
    answers: list[tuple[float, int, int | None]] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    r = client.post(url, json=probe)
                    version = r.json().get("version") if r.status_code == 200 else None
                    answers.append((time.time(), r.status_code, version))
                except httpx.HTTPError as exc:
                    answers.append((time.time(), 0, repr(exc)))
                time.sleep(0.005)

    try:
        deadline = time.time() + 60
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, "server did not start"
            time.sleep(0.2)
        workers = [threading.Thread(target=hammer) for _ in range(2)]
        for w in workers:
            w.start()
        time.sleep(1.0)
        append(path, customers(1500, seed=2, drift=0.8))
        second = learn(spec(path))  # resumes, learns the new events, promotes
        promoted_at = time.time()
        new = second.checkpoints[-1]
        assert second.promoted == [new] and new != first.checkpoints[-1]
        while not any(v == new for _, _, v in answers) and time.time() < promoted_at + 30:
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        stop.set()
        for w in workers:
            w.join(10)
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    failed = [a for a in answers if a[1] != 200]
    assert not failed, failed[:5]
    served = [t for t, _, v in answers if v == new]
    assert served, "the promoted checkpoint was never served"
    assert served[0] - promoted_at < 5.0  # the server polls every 0.5 s
    before = {v for t, _, v in answers if t < promoted_at}
    assert before == {first.checkpoints[-1]} and len(answers) > 50


def test_the_stream_scorer_follows_the_checkpoint_alias(tmp_path):
    redis = need_module("redis", "brokers")
    if not port_open("127.0.0.1", 6379):
        unavailable("Redis is not running on 127.0.0.1:6379")
    import uuid

    from modelport.serve.stream import run

    path = tmp_path / "events.jsonl"
    append(path, customers(800, seed=3))
    first = learn(spec(path))
    r = redis.Redis()
    names = [f"in_{uuid.uuid4().hex[:8]}", f"out_{uuid.uuid4().hex[:8]}"]
    urls = [f"redis://127.0.0.1:6379/0?stream={n}" for n in names]
    event = {k: v for k, v in customers(1, seed=98)[0].items() if k != "churned"}

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(run("churn-online@online-latest", urls[0], urls[1],
                                       poll_seconds=0.2, stop=stop))
        r.xadd(names[0], {"data": orjson.dumps(event)})
        append(path, customers(800, seed=4))
        second = await asyncio.to_thread(learn, spec(path))
        deadline = time.time() + 30
        while time.time() < deadline:
            r.xadd(names[0], {"data": orjson.dumps(event)})
            await asyncio.sleep(0.1)
            versions = {orjson.loads(f[b"data"])["version"] for _, f in r.xrange(names[1])}
            if second.checkpoints[-1] in versions:
                break
        stop.set()
        await task
        return second, versions

    try:
        second, versions = asyncio.run(scenario())
    finally:
        r.delete(*names)
    assert versions >= {first.checkpoints[-1], second.checkpoints[-1]}


@pytest.fixture(autouse=True)
def _one_openmp_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
