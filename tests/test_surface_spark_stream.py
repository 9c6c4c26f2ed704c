"""Stream scoring on Spark Structured Streaming passes the surface conformance battery
(``modelport.testing.check_surface``): a hostile row goes to the dead letters with its
reason, or is scored exactly as the model scores it alone; every good row is scored
exactly as without it; every row comes out once; the query keeps running.

One query per surface (:func:`modelport.serve.spark_stream.stream_spark` with a
checkpoint) runs for the whole battery in a thread of this process, on the module's
local[2] session, as a deployed query runs for days. Each ``score`` writes its rows as a
new file into the source folder (under a hidden name, renamed into place, as the docs
ask), waits until Spark has committed the micro-batch holding them, and reads that
micro-batch back: its scores by id (the folder sink's ``batch=N``, or the lookup table,
emptied before each case) and its dead letters (``CHECKPOINT.dead-letter/rejects/batch=N``
with ``_code`` and ``_reason``, ``malformed/batch=N`` with the raw ``_record``). ``alive``
is the query itself: active, its thread running, no exception. The model is the one-hot
+ logistic churn pipeline in a :class:`~modelport.testing.Tripwire`, registered as joblib
only.

Two legs: JSON lines into a folder of Parquet, and CSV into a SQLite lookup table, whose
header puts the id first, unlike the signature (the query starts on an empty folder, so
each file's columns must be taken by its header, not by position).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

import modelport
from modelport.registry import Registry
from modelport.testing import SurfaceResult, Tripwire, check_surface, predictor_reference
from test_surface_batch import CATEGORICAL, NUMERIC, TRIP, WRITERS, _text

from conftest import need_module, unavailable

# the reference scores the odd rows alone, which warns about their values
pytestmark = pytest.mark.filterwarnings("ignore::modelport.kernel.InputWarning")

#: every wait of the harness ends by then, in seconds (a micro-batch takes a few)
WAIT_S = 90.0


@pytest.fixture(scope="module")
def spark():
    """One local[2] session for the module, as the other Spark streaming tests use."""
    need_module("pyspark", "spark")
    if shutil.which("java") is None:
        unavailable("Spark needs Java (a JDK 17 on the PATH)")
    from modelport.serve.spark_stream import session

    s = session("local[2]", app="modelport tests")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    """A registry holding the tripwire-wrapped pipeline, its joblib reference and good rows
    the model was not trained on."""
    from sklearn.linear_model import LogisticRegression

    from modelport.datasets import churn as dataset
    from modelport.train.preprocess import build_pipeline

    home = tmp_path_factory.mktemp("surface-spark-stream")
    registry = Registry(f"sqlite:///{home / 'registry.db'}", str(home / "artefacts"))
    data = dataset.generate(2000, seed=21)
    X = data.drop(columns=["customer_id", "churned"])
    model = build_pipeline(LogisticRegression(max_iter=300), X, NUMERIC, CATEGORICAL)
    model.fit(X, data["churned"])
    version = modelport.log_model(Tripwire(model, *TRIP), "churn", sample=X,
                                  formats=["joblib"], registry=registry)
    predictor = registry.load("churn", format="joblib")
    fresh = dataset.generate(24, seed=22).drop(columns=["customer_id", "churned"])
    good = []
    for i, record in enumerate(fresh.to_dict("records")):
        row: dict[str, Any] = {"id": f"r{i}"}
        for k, v in record.items():
            v = v.item() if isinstance(v, np.generic) else v
            row[k] = None if isinstance(v, float) and v != v else v
        good.append(row)
    return registry, version, predictor, good


class SparkStreamSurface:
    """One running query, fed one file per ``score``: ``kind`` (``jsonl`` or ``csv``) files
    in, a folder of Parquet or, with ``table``, a SQLite lookup table out."""

    def __init__(self, name: str, capabilities: set[str], spark, churn, folder: Path, *,
                 kind: str, table: bool = False) -> None:
        from modelport.serve.spark_stream import stream_spark

        registry, version, _, _ = churn
        self.name, self.capabilities = name, frozenset(capabilities)
        self.classes = version.signature["outputs"][0].get("classes") or [0, 1]
        self.version, self.kind = version.version, kind
        self.src = folder / "events"
        self.checkpoint = folder / "checkpoint"
        self.dead = folder / "checkpoint.dead-letter"  # the default beside the checkpoint
        self.sink = folder / "scores"
        self.db = sa.create_engine(f"sqlite:///{folder / 'scores.db'}") if table else None
        sink = f"sqlite:///{folder / 'scores.db'}#churn_scores" if table else str(self.sink)
        self.src.mkdir()
        self.calls = 0
        self.read: set[int] = set()  # the micro-batches already read back
        self.totals = {"scored": 0, "rejected": 0}
        self.outcome: list = []

        def run() -> None:
            try:
                self.outcome.append(stream_spark(
                    "churn", f"{self.src}?format={'json' if kind == 'jsonl' else kind}", sink,
                    checkpoint=self.checkpoint, id="id", registry=registry))
            except BaseException as exc:  # noqa: BLE001 - reported by alive() and stop()
                self.outcome.append(exc)

        before = {q.id for q in spark.streams.active}
        self.thread = threading.Thread(target=run, name=f"query {name}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + WAIT_S
        while True:
            started = [q for q in spark.streams.active if q.id not in before]
            if started:
                self.query = started[0]
                break
            assert self.thread.is_alive(), f"the query did not start: {self.outcome}"
            assert time.monotonic() < deadline, "the query did not start in time"
            time.sleep(0.1)

    def alive(self) -> bool:
        """The query still runs and can score: active, in its thread, without an error."""
        return (self.thread.is_alive() and self.query.isActive
                and self.query.exception() is None)

    def score(self, rows: list[dict[str, Any]]) -> SurfaceResult:
        self.calls += 1
        if self.db is not None:
            self._clear()
        name = f"case-{self.calls:03d}.{self.kind}"
        tmp = self.src / f".{name}.tmp"
        WRITERS[self.kind](rows, tmp)
        os.replace(tmp, self.src / name)
        # a dead letter carries the id it came with; at most one row of a case has none
        by_text = {_text(r["id"]): r["id"] for r in rows}
        assert len(by_text) == len(rows), "rows need distinct ids (and one at most none)"
        out = SurfaceResult()
        came: dict[str | None, str] = {}
        deadline = time.monotonic() + WAIT_S
        while len(came) < len(rows):
            assert self.alive(), f"{self.name}: the query stopped: {self.outcome}"
            assert time.monotonic() < deadline, (
                f"{self.name}: {len(rows) - len(came)} of {len(rows)} rows never came out: "
                f"{[by_text[t] for t in by_text if t not in came][:5]}")
            for batch in sorted(self.committed() - self.read):
                self.read.add(batch)
                self._read_batch(batch, by_text, came, out)
            time.sleep(0.05)
        self.totals["scored"] += len(out.scored)
        self.totals["rejected"] += len(out.rejected)
        return out

    def committed(self) -> set[int]:
        """The micro-batches Spark has committed: their scores and dead letters are all
        written (``foreachBatch`` returned)."""
        commits = self.checkpoint / "commits"
        return {int(p.name) for p in commits.iterdir() if p.name.isdigit()} \
            if commits.is_dir() else set()

    def _read_batch(self, batch: int, by_text: dict, came: dict, out: SurfaceResult) -> None:
        def once(id_text, where: str):
            assert id_text in by_text, f"{self.name}: {where} of no row of this case: {id_text!r}"
            assert id_text not in came, (f"{self.name}: {id_text!r} came out twice "
                                         f"({came[id_text]}, {where})")
            came[id_text] = where
            return by_text[id_text]

        for row in self._scores(batch):
            assert row["model_version"] == self.version, row
            out.scored[once(_text(row["id"]), "scored")] = {
                "label": str(row["label"]),
                "proba": [row[f"proba_{c}"] for c in self.classes]}
        for record in _json_lines(self.dead / "rejects" / f"batch={batch}"):
            assert record["_code"] and record["_reason"] and record["_batch"] == batch, record
            out.rejected[once(_text(record.get("id")), "rejected")] = \
                f"{record['_code']}: {record['_reason']}"
        for record in _json_lines(self.dead / "malformed" / f"batch={batch}"):
            out.rejected[once(self._id_of(record["_record"]), "malformed")] = \
                f"{record['_code']}: {record['_reason']}"

    def _scores(self, batch: int) -> list[dict]:
        if self.db is None:
            folder = self.sink / f"batch={batch}"
            return pq.read_table(folder).to_pylist() if folder.is_dir() else []
        # the table holds what this case's micro-batch wrote: it was emptied before
        with self.db.connect() as conn:
            if not sa.inspect(conn).has_table("churn_scores"):
                return []
            return [dict(r._mapping) for r in conn.execute(sa.text(
                "SELECT * FROM churn_scores"))]

    def _id_of(self, record: str) -> str | None:
        """The id of a malformed record, as text: a JSON object's, or a CSV line's first
        field (the writers put the id first)."""
        if self.kind == "jsonl":
            return _text(json.loads(record).get("id"))
        return next(csv.reader([record]))[0] or None

    def _clear(self) -> None:
        with self.db.begin() as conn:
            if sa.inspect(conn).has_table("churn_scores"):
                conn.execute(sa.text("DELETE FROM churn_scores"))

    def stop(self):
        """Stop the query; what :func:`stream_spark` returned."""
        self.query.stop()
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "the query did not stop"
        if self.db is not None:
            self.db.dispose()
        [outcome] = self.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def _json_lines(folder: Path) -> list[dict]:
    return [json.loads(line) for part in sorted(folder.glob("part-*.json"))
            for line in part.read_text(encoding="utf-8").splitlines() if line.strip()]


def run_battery(surface: SparkStreamSurface, churn) -> list[str]:
    """The battery, then one more good row: the query still scores after every case, on
    the same checkpoint; and the query counted what the harness read back."""
    _, version, predictor, good = churn
    try:
        ran = check_surface(surface, predictor.signature, good, predictor_reference(predictor),
                            trip=TRIP)
        after = surface.score([good[0]])
        assert list(after.scored) == [good[0]["id"]] and not after.rejected
    finally:
        done = surface.stop()
    # each case was one micro-batch
    assert done.batches == surface.calls == len(ran) + 2
    assert (done.rows, done.rejects) == (surface.totals["scored"], surface.totals["rejected"])
    assert done.versions == [version.version]
    return ran


# Spark's JSON reader gives a field absent from a record as null, a list among text as its
# text, and a lone surrogate as "?", before modelport sees the row (as for the Spark batch
# job): neither "records" nor either surrogate case applies. A folder sink keys nothing by
# id, so a row without one is no bad row there: not "ids".

def test_jsonl_into_a_parquet_folder(spark, churn, tmp_path):
    surface = SparkStreamSurface("spark stream jsonl -> parquet", {"flat", "tripwire"}, spark,
                                 churn, tmp_path, kind="jsonl")
    ran = run_battery(surface, churn)
    assert "a 400-digit integer" in ran and "a value the model raises on" in ran
    assert "a list in a categorical field" not in ran and "a missing id" not in ran


def test_csv_into_a_lookup_table(spark, churn, tmp_path):
    # CSV holds text: a list is its text ("flat"), and no file holds a lone surrogate. A
    # lookup table keeps one row per id: a row without one is a dead letter ("ids")
    surface = SparkStreamSurface("spark stream csv -> sqlite", {"flat", "ids", "tripwire"},
                                 spark, churn, tmp_path, kind="csv", table=True)
    ran = run_battery(surface, churn)
    assert "a missing id" in ran and "a NUL byte in a category" in ran
