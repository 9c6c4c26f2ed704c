"""Exactly-once learning across a real crash: a `modelport learn` process is killed with
SIGKILL after its first checkpoints, restarted, and ends with the very weights (and event
counts) of a run that was never interrupted, reading a replayed file and Redis Streams. The
file holds bad events too: every one of them is in the rejects file after the crash (at
least once: those after the last checkpoint may be written twice)."""

from __future__ import annotations

import os
import pickle
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import orjson
import pytest
import yaml

from modelport.registry import Registry
from modelport.train.online import learn
from modelport.train.online.checkpoint import latest

from conftest import need_module, port_open, unavailable

MODELPORT = str(Path(sys.executable).with_name("modelport"))
EVENTS = int(os.environ.get("MODELPORT_LEARN_CRASH_EVENTS", "24000"))


def events(n: int) -> list[dict]:
    from modelport.datasets import churn

    frame = churn.generate(n, seed=11)
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
            for r in frame.to_dict("records")]


def spec(name: str, source, every: int = 10**9, **extra) -> dict:
    """Checkpoints every ``every`` events (and at the end): how often does not change what
    is learnt, since a checkpoint ends a batch the uninterrupted run ends too."""
    return {"name": name, "source": source, "target": "churned", "id": "customer_id",
            "learner": {"estimator": "sklearn.linear_model.SGDClassifier",
                        "params": {"loss": "log_loss"}},
            "batch": {"size": 500, "max_wait_ms": 60_000},
            "checkpoint": {"every_events": every, "formats": ["joblib"]}, "promotion": False,
            **extra}


def final_state(name: str):
    version, blob = latest(Registry(), name)
    return version, pickle.loads(blob)


def weights(state) -> np.ndarray:
    learner = state.learner
    return np.concatenate([learner.estimator.coef_.ravel(), learner.estimator.intercept_,
                           learner.prep.mean, learner.prep.m2, learner.prep.count])


def checkpointed(name: str) -> int:
    """Events the newest checkpoint covers (0 before the first)."""
    try:
        found = latest(Registry(), name)
    except Exception:  # noqa: BLE001 - the registry may not exist yet
        return 0
    return found[0].lineage["online"]["seq"] if found else 0


def kill_after_checkpoints(path: Path, name: str, total: int) -> int:
    """Start `modelport learn`, SIGKILL it a moment after its first checkpoints, and return
    how many events the checkpoints then covered."""
    proc = subprocess.Popen([MODELPORT, "learn", str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        deadline = time.time() + 120
        while checkpointed(name) < 4000 and time.time() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"the learner ended before it was killed: "
                                     f"{proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.02)
        time.sleep(random.uniform(0.0, 0.3))
        assert proc.poll() is None, "the learner finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    covered = checkpointed(name)
    assert 0 < covered < total, covered
    return covered


def check_exactly_once(name: str, reference: str, covered: int, total: int, result,
                       bad: int = 0) -> None:
    assert result.resumed_from is not None
    assert result.events == total - covered  # nothing skipped, nothing read twice
    _, state = final_state(name)
    _, expected = final_state(reference)
    assert state.counts["learned"] == expected.counts["learned"] == total - bad
    assert state.counts["rejected"] == expected.counts["rejected"] == bad
    assert state.counts["events"] == total
    assert np.array_equal(weights(state), weights(expected))
    assert state.window.values() == expected.window.values()


def test_a_replayed_file_learns_every_event_once_across_a_kill(tmp_path):
    rows = events(EVENTS)
    for i in range(700, EVENTS, 1000):  # text where a number belongs: rejected
        rows[i] = {**rows[i], "tenure_months": "unknown"}
    bad = len(range(700, EVENTS, 1000))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    whole, crashed = tmp_path / "whole.rejects.jsonl", tmp_path / "crashed.rejects.jsonl"
    reference = learn(spec("whole", str(path), rejects=str(whole)))
    assert (reference.learned, reference.rejected) == (EVENTS - bad, bad)
    # replayed at a pace, so that the kill finds it mid-stream
    paced = spec("crashed", {"url": str(path), "rate": 6000}, every=2000,
                 rejects=str(crashed))
    spec_path = tmp_path / "crashed.yaml"
    spec_path.write_text(yaml.safe_dump(paced))
    covered = kill_after_checkpoints(spec_path, "crashed", EVENTS)
    # the same spec, at full speed
    result = learn(spec("crashed", str(path), rejects=str(crashed)))
    check_exactly_once("crashed", "whole", covered, EVENTS, result, bad)
    expected = [orjson.loads(x) for x in whole.read_bytes().splitlines()]
    found = [orjson.loads(x) for x in crashed.read_bytes().splitlines() if x.strip()]
    assert len(expected) == bad
    assert {r["seq"]: r["event"] for r in found} == {r["seq"]: r["event"] for r in expected}


@pytest.fixture
def redis_stream():
    redis = need_module("redis", "brokers")
    if not port_open("127.0.0.1", 6379):
        unavailable("Redis is not running on 127.0.0.1:6379")
    r = redis.Redis()
    key = f"learn_{uuid.uuid4().hex[:8]}"
    yield r, key, f"redis://127.0.0.1:6379/0?stream={key}"
    r.delete(key)


def test_redis_streams_learn_every_event_once_across_a_kill(tmp_path, redis_stream):
    r, key, url = redis_stream
    rows = events(EVENTS)
    pipe = r.pipeline(transaction=False)
    for row in rows:
        pipe.xadd(key, {"data": orjson.dumps(row)})
    pipe.execute()
    reference = learn(spec("whole", url))
    assert reference.learned == EVENTS
    spec_path = tmp_path / "crashed.yaml"
    paced = spec("crashed", {"url": url, "rate": 6000}, every=2000)
    spec_path.write_text(yaml.safe_dump(paced))
    covered = kill_after_checkpoints(spec_path, "crashed", EVENTS)
    result = learn(spec("crashed", url))  # the same spec, at full speed
    check_exactly_once("crashed", "whole", covered, EVENTS, result)
    assert r.xlen(key) == EVENTS  # the learner reads from a position; it removes nothing
