"""The online learner passes the hostile-row battery (:func:`modelport.testing.check_surface`),
reading a JSONL file (rejects to a JSONL file) and a Redis stream (rejects to another stream).

How the battery maps onto a learner. A learner does not answer rows: it learns them and
registers checkpoints. So the harness writes each list of rows as events (each with its
``id``, which the spec names as the id, so it is never a feature) and learns them under a
fresh model name with a spec that lists the features and the classes and names a
``rejects:`` destination. A row whose record is in the rejects is *rejected* (its reason:
the record's code and message); every other row is *scored* with what the final checkpoint,
loaded with joblib, predicts for it. The reference learns the good rows alone under the same
spec and scores the given rows with that checkpoint. "Every good row is scored exactly as
without the hostile one" then means: no hostile row changed what was learnt.

- Good rows, and every row the battery expects rejected, carry a label: a rejected row that
  were learnt all the same would move the weights, and with them every good row's score.
- A row the battery calls legitimate (a NUL byte in a category, an id of another type)
  must be "scored exactly as alone" while every other row
  keeps its score. A learner that learns a row changes its model (that is what learning
  is), so no reference could hold still: such a row is sent without its label, which is how
  a stream asks a learner to predict an event and not learn it. That the same rows are
  learnt when they carry a label is pinned by
  :func:`test_odd_but_legitimate_values_are_learnt`.
- Batches of one event (``batch.size: 1``). Batches are cut by the count of events read,
  rejected ones included, and a batch is learnt in steps that start at its first event, so
  a rejected event in a batch of many moves the ends of the batches after it, and so the
  steps (and the weights) the good events after it are learnt in. With one event a batch
  every step is one event whatever was rejected. That a batch holding bad events learns
  its other events exactly as a batch without them is pinned by
  :func:`test_a_batch_with_bad_events_learns_the_others_as_without_them`.

Capabilities: ``records`` (an event may lack a field: rejected as ``missing_field``) and
``refuses surrogates`` (a JSON event may escape a lone surrogate, which is no character: no
checkpoint could hold it, so its event is rejected as ``not_text``, as a batch job's reader
rejects its row). Not applicable: ``unicode`` (for that reason), ``ids`` (without
``label_delay`` the learner keys nothing by id: an event without one is learnt),
``tripwire`` (it serves no model), ``log`` (it keeps no prediction log) and ``flat`` (JSON
events hold lists as lists). The learner's own cases are added: an infinite number, a label
outside the classes, a label that is a list.
"""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.signature import Column, Signature
from modelport.testing import Hostile, SurfaceResult, check_surface, hostile_rows, plain_outputs
from modelport.train.online import learn

from conftest import need_module, port_open, unavailable
from zoo import data

NUMERIC = ["tenure", "charges", "calls", "usage"]
CATEGORICAL = ["plan", "contract"]
FEATURES = NUMERIC + CATEGORICAL
TARGET = "churned"
SGD = {"estimator": "sklearn.linear_model.SGDClassifier", "params": {"loss": "log_loss"}}
SIGNATURE = Signature([Column(n, "float64", "numeric", nullable=True) for n in NUMERIC]
                      + [Column(n, "object", "categorical", nullable=True) for n in CATEGORICAL],
                      "classification", classes=[0, 1])


def good_rows(n: int = 40) -> list[dict]:
    mixed, _, y, _ = data()
    rows = []
    for i, rec in enumerate(mixed.head(n).to_dict("records")):
        row = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in rec.items()}
        rows.append({"id": f"r{i}", **row, TARGET: int(y[i])})
    return rows


def learner_cases(base: dict) -> list[Hostile]:
    """The learner's own hostile events, beyond the shared battery."""
    return [Hostile("an infinite number", {"id": "h-inf", **base, "tenure": "inf"}, "reject"),
            Hostile("a label outside the classes", {"id": "h-class", **base, TARGET: 7},
                    "reject"),
            Hostile("a label that is a list", {"id": "h-label-list", **base, TARGET: [0, 1]},
                    "reject")]


def spec(name: str, source: str, rejects: str | None, **changes) -> dict:
    out = {"name": name, "source": source, "target": TARGET, "id": "id",
           "features": FEATURES, "classes": [0, 1], "learner": SGD,
           "batch": {"size": 1, "max_wait_ms": 20},
           "checkpoint": {"every_events": 10**9, "formats": ["joblib"]}, "promotion": False}
    if rejects is not None:
        out["rejects"] = rejects
    out.update(changes)
    return out


def line(row: dict) -> bytes:
    # the standard library writes what orjson cannot (a 400-digit integer, a lone surrogate)
    return json.dumps(row).encode() + b"\n"


def predictions(name: str, rows: list[dict]) -> dict:
    """What the newest checkpoint of ``name`` predicts for each row, by id."""
    predictor = modelport.load(name, format="joblib")
    out = predictor.run([{k: r[k] for k in FEATURES} for r in rows])
    return {r["id"]: plain_outputs(out, i) for i, r in enumerate(rows)}


class Learner:
    """The learner under the battery: each list of rows is learnt under a fresh name from a
    source of its own; ``legitimate`` are the ids of the rows sent without their label."""

    capabilities = frozenset({"records", "refuses surrogates"})

    def __init__(self, tmp: Path, legitimate: set) -> None:
        self.tmp = tmp
        self.legitimate = legitimate
        self.runs = 0
        self.name = "learner (jsonl)"

    def events(self, rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != TARGET} if r["id"] in self.legitimate
                else r for r in rows]

    def learn(self, rows: list[dict], name: str):
        """Learn ``rows``; return the result and the rejects' records."""
        source, rejects = self.tmp / f"{name}.jsonl", self.tmp / f"{name}.rejects.jsonl"
        source.write_bytes(b"".join(line(r) for r in rows))
        result = learn(spec(name, str(source), str(rejects)))
        records = [json.loads(x) for x in rejects.read_bytes().splitlines()] \
            if rejects.exists() else []
        return result, records

    def score(self, rows: list[dict]) -> SurfaceResult:
        self.runs += 1
        name = f"battery-{self.runs}"
        result, records = self.learn(self.events(rows), name)
        out = SurfaceResult()
        for rec in records:
            event = rec.get("event") or json.loads(rec["payload"])
            assert event["id"] not in out.rejected, f"{event['id']!r} rejected twice"
            out.rejected[event["id"]] = f"{rec['reason_code']}: {rec['reason']}"
        # every row came out once: learnt, rejected, or read without a label
        assert result.events == len(rows)
        assert result.learned + result.rejected + result.unlabelled == len(rows)
        assert result.rejected == len(records) == sum(result.rejected_by_reason.values())
        kept = [r for r in rows if r["id"] not in out.rejected]
        if kept:
            out.scored = predictions(name, kept)
        return out

    def alive(self) -> bool:
        return True  # each list is a run of its own, which returned


class RedisLearner(Learner):
    """The same, reading a Redis stream and writing the rejects to another."""

    def __init__(self, tmp: Path, legitimate: set, redis) -> None:
        super().__init__(tmp, legitimate)
        self.redis = redis
        self.name = "learner (redis streams)"
        self.keys: list[str] = []

    def learn(self, rows: list[dict], name: str):
        key = f"learn_{uuid.uuid4().hex[:8]}"
        self.keys += [key, f"{key}_rejects"]
        pipe = self.redis.pipeline(transaction=False)
        for r in rows:
            pipe.xadd(key, {"data": line(r)})
        pipe.execute()
        url = f"redis://127.0.0.1:6379/0?stream={key}"
        result = learn(spec(name, url, f"{url}_rejects"))
        records = [json.loads(fields[b"data"])
                   for _, fields in self.redis.xrange(f"{key}_rejects")]
        return result, records


def reference(tmp: Path, good: list[dict]):
    """Learns the good rows alone (once), then scores the given rows with that checkpoint."""
    learnt = []

    def score(rows: list[dict]) -> dict:
        if not learnt:
            source = tmp / "good.jsonl"
            source.write_bytes(b"".join(line(r) for r in good))
            result = learn(spec("reference", str(source), None))
            assert result.learned == len(good) and result.rejected == 0
            learnt.append(True)
        return predictions("reference", rows)
    return score


def battery(good: list[dict]) -> tuple[list[Hostile], set]:
    """The learner's own cases, and the ids of the rows the battery calls legitimate (the
    shared battery is built by check_surface exactly as here)."""
    base = {k: v for k, v in good[0].items() if k != "id"}
    extra = learner_cases(base)
    shared = hostile_rows(SIGNATURE, base, id_example=good[0]["id"])
    return extra, {c.row["id"] for c in [*shared, *extra] if c.expect == "score"}


def test_the_learner_passes_the_hostile_row_battery_from_a_file(tmp_path):
    good = good_rows()
    extra, legitimate = battery(good)
    ran = check_surface(Learner(tmp_path, legitimate), SIGNATURE, good,
                        reference(tmp_path, good), extra=extra)
    assert set(ran) == {
        "a list in a numeric field", "an object in a numeric field", "text in a numeric field",
        "a NUL byte in a numeric field", "a 400-digit integer", "a list in a categorical field",
        "a NUL byte in a category", "a lone surrogate in a category, refused",
        "a field missing",
        "an id of another type", "an infinite number", "a label outside the classes",
        "a label that is a list"}


def test_the_learner_passes_the_hostile_row_battery_from_redis_streams(tmp_path):
    redis = need_module("redis", "brokers")
    if not port_open("127.0.0.1", 6379):
        unavailable("Redis is not running on 127.0.0.1:6379")
    r = redis.Redis()
    good = good_rows(24)
    extra, legitimate = battery(good)
    surface = RedisLearner(tmp_path, legitimate, r)
    try:
        check_surface(surface, SIGNATURE, good, reference(tmp_path, good), extra=extra)
    finally:
        if surface.keys:
            r.delete(*surface.keys)


def test_odd_but_legitimate_values_are_learnt(tmp_path):
    """The rows the battery sends unlabelled are learnt when they carry a label: a NUL byte
    in a category takes a one-hot column of its own, an id of another type is just an id.
    A lone surrogate is no text a checkpoint could hold: its event is rejected, and one in
    a field the learner does not read costs nothing."""
    good = good_rows(20)
    base = {k: v for k, v in good[0].items() if k != "id"}
    odd = [{**base, "id": "nul", "plan": "basic\x00"}, {**base, "id": 424242},
           {**base, "id": "sur", "plan": "\ud800"}, {**base, "id": "note", "note": "\udfff"}]
    source, rejects = tmp_path / "odd.jsonl", tmp_path / "rejects.jsonl"
    source.write_bytes(b"".join(line(r) for r in good[:10] + odd + good[10:]))
    result = learn(spec("odd", str(source), str(rejects)))
    assert (result.learned, result.rejected_by_reason) == (len(good) + 3, {"not_text": 1})
    (rec,) = [json.loads(x) for x in rejects.read_bytes().splitlines()]
    assert rec["event"] == odd[2] and rec["field"] == "plan"
    pipe = modelport.load("odd", format="joblib").model
    plans = pipe.named_steps["preprocess"].named_transformers_["categorical"].categories_[0]
    assert {"basic", "basic\x00"} <= set(plans)


def bad_events(base: dict) -> list[dict]:
    """One event of each kind the learner rejects, each labelled."""
    out = [dict(c.row) for c in hostile_rows(SIGNATURE, base) if c.expect == "reject"
           and c.needs in (None, "records")]
    out += [dict(c.row) for c in learner_cases(base)]
    return out


@pytest.mark.parametrize("kinds", ["one", "every"])
def test_a_batch_with_bad_events_learns_the_others_as_without_them(tmp_path, kinds):
    """The learner's first batch holds 16 events and the next one every other event, with
    the bad ones among them: the good events of that batch are learnt exactly (the same
    weights and scaling, to the bit) as in a batch without the bad ones, and every bad one
    goes to the rejects with its reason."""
    mixed, _, y, _ = data()
    good = []
    for i, rec in enumerate(mixed.head(200).to_dict("records")):
        row = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in rec.items()}
        good.append({"id": f"r{i}", **row, TARGET: int(y[i])})
    base = {k: v for k, v in good[0].items() if k != "id"}
    bad = bad_events(base)[:1] if kinds == "one" else bad_events(base)
    mixed_in = good[:16] + good[16:100] + bad + good[100:]
    (tmp_path / "clean.jsonl").write_bytes(b"".join(line(r) for r in good))
    (tmp_path / "dirty.jsonl").write_bytes(b"".join(line(r) for r in mixed_in))
    rejects = tmp_path / "rejects.jsonl"
    batch = {"size": 1024, "max_wait_ms": 20}
    clean = learn(spec("clean", str(tmp_path / "clean.jsonl"), None, batch=batch))
    dirty = learn(spec("dirty", str(tmp_path / "dirty.jsonl"), str(rejects), batch=batch))
    assert clean.learned == dirty.learned == len(good)
    assert dirty.rejected == len(bad) and dirty.events == len(mixed_in)
    assert dirty.prequential == clean.prequential

    def weights(name: str) -> np.ndarray:
        pipe = modelport.load(name, format="joblib").model
        model, prep = pipe.named_steps["model"], pipe.named_steps["preprocess"]
        scaler = prep.named_transformers_["numeric"].named_steps["scale"]
        return np.concatenate([model.coef_.ravel(), model.intercept_, scaler.mean_,
                               scaler.scale_])

    assert np.array_equal(weights("dirty"), weights("clean"))
    records = [json.loads(x) for x in rejects.read_bytes().splitlines()]
    assert [r["event"]["id"] for r in records] == [b["id"] for b in bad]
    assert all(r["reason"] and r["model"] == "dirty" for r in records)
    codes = {r["event"]["id"]: r["reason_code"] for r in records}
    assert dirty.rejected_by_reason == {c: list(codes.values()).count(c)
                                        for c in set(codes.values())}
    if kinds == "every":
        assert set(codes.values()) == {"wrong_type", "missing_field", "not_learnable",
                                       "unknown_class"}


def test_unreadable_events_go_to_the_rejects_with_their_text(tmp_path):
    good = good_rows(30)
    lines = [line(r) for r in good]
    lines[5:5] = [b"{not json\n", b"[1, 2]\n", b'{"tenure": NaN}\n']
    (tmp_path / "e.jsonl").write_bytes(b"".join(lines))
    rejects = tmp_path / "rejects.jsonl"
    result = learn(spec("unreadable", str(tmp_path / "e.jsonl"), str(rejects)))
    assert (result.learned, result.rejected) == (30, 3)
    assert result.rejected_by_reason == {"not_json": 2, "not_a_record": 1}
    records = [json.loads(x) for x in rejects.read_bytes().splitlines()]
    assert [r["payload"] for r in records] == ["{not json", "[1, 2]", '{"tenure": NaN}']
    assert records[1]["reason"] == "not a json object of fields, but a list"


def test_with_preprocess_none_a_missing_number_is_the_learners_own_reject(tmp_path):
    good = good_rows(30)
    rows = [r for r in good if all(r[k] is not None for k in NUMERIC)]
    rows.insert(10, {**rows[0], "id": "gap", "charges": None})
    (tmp_path / "e.jsonl").write_bytes(b"".join(line(r) for r in rows))
    rejects = tmp_path / "rejects.jsonl"
    result = learn(spec("gaps", str(tmp_path / "e.jsonl"), str(rejects),
                        features=NUMERIC, preprocess={"numeric": "none",
                                                      "categorical": "none"}))
    assert result.rejected_by_reason == {"not_learnable": 1}
    (rec,) = [json.loads(x) for x in rejects.read_bytes().splitlines()]
    assert rec["event"]["id"] == "gap" and rec["field"] == "charges"
    assert "preprocess.numeric" in rec["reason"]


def test_rejects_are_counted_by_reason_in_prometheus(tmp_path):
    from modelport.scoring.metrics import LearnMetrics

    metrics = LearnMetrics("m")
    metrics.update({"events": 5, "learned": 3, "rejected": 2}, {"accuracy": 0.5}, 0, 5,
                   reasons={"wrong_type": 1, "missing_field": 1})
    metrics.update({"events": 9, "learned": 6, "rejected": 3}, {"accuracy": 0.5}, 0, 9,
                   reasons={"wrong_type": 2, "missing_field": 1})
    text = metrics.exposition()[0].decode()
    assert 'modelport_rejected_rows_total{model="m",reason="wrong_type",surface="learn"} 2.0' \
        in text
    assert 'modelport_learn_rejected_total{model="m"} 3.0' in text


@pytest.mark.parametrize("value, message", [
    ("rejects.csv", "name a .jsonl file"),
    ("events.jsonl", "is the source file"),
    ("missing/rejects.jsonl", "its folder does not exist"),
    ("http://example.com/rejects", "unknown destination"),
    ("redis://127.0.0.1:6379/0", "names no stream"),
    (5, "expected a .jsonl file or a broker URL"),
])
def test_a_rejects_destination_that_cannot_work_is_refused(tmp_path, value, message):
    from modelport.errors import UserError
    from modelport.train.online.spec import load_spec

    raw = spec("r", "events.jsonl", value)
    with pytest.raises(UserError, match="rejects") as info:
        load_spec(raw, base=tmp_path)
    assert message in str(info.value)


def test_rejects_survive_a_restart_and_are_written_before_the_checkpoint(tmp_path):
    """Two runs over a file that grows: each run's rejects are in the file, once, and the
    second run starts where the first checkpoint ended."""
    good = good_rows(40)
    base = {k: v for k, v in good[0].items() if k != "id"}
    bad = bad_events(base)[:3]
    source, rejects = tmp_path / "e.jsonl", tmp_path / "rejects.jsonl"
    source.write_bytes(b"".join(line(r) for r in good[:20] + bad[:1]))
    s = spec("grow", str(source), str(rejects), batch={"size": 8, "max_wait_ms": 20})
    first = learn(s)
    with open(source, "ab") as fh:
        fh.write(b"".join(line(r) for r in good[20:] + bad[1:]))
    second = learn(s)
    assert (first.rejected, second.rejected) == (1, 2)
    ids = [json.loads(x)["event"]["id"] for x in rejects.read_bytes().splitlines()]
    assert ids == [b["id"] for b in bad]
    from modelport.registry import Registry
    from modelport.train.online.checkpoint import latest

    assert latest(Registry(), "grow")[0].lineage["online"]["seq"] == len(good) + len(bad)
