"""The trigger worker passes the hostile-row battery (:func:`modelport.testing.check_surface`)
on real PostgreSQL, MariaDB and SQLite.

Each database holds a ``customers`` table whose first numeric column (``tenure``) is TEXT,
so that text, a NUL byte or a 400-digit number written by an application reach the worker;
the other numeric columns are DOUBLE. A background worker scores the table with a
:class:`~modelport.testing.Tripwire` model (raising on one value of ``charges``) and logs
to a prediction-log table that refuses :data:`~modelport.testing.REFUSED_BY_LOG`. The
harness inserts each list of rows as an application would, waits until every row has a
status, and reads back by key: ``ok`` rows are scored, ``error: ...`` rows rejected with
that reason.

What the tables cannot hold decides which cases apply: a database row has every column
(no ``records``) and a non-NULL primary key (no ``ids``); its columns are typed and flat,
so a list or an object is written as its JSON text (``flat``); no UTF-8 database stores a
lone surrogate (no ``unicode``); PostgreSQL text never holds a NUL character, so the two
NUL cases cannot reach a worker there (``unreachable``). One case of the trigger surface's
own is added: a row whose score the table's CHECK constraint refuses.
"""

from __future__ import annotations

import json
import math
import threading
import time

import pytest

import modelport
from modelport.registry import Registry
from modelport.scoring.metrics import TriggerMetrics
from modelport.serve import trigger
from modelport.serve.trigger.db import connect
from modelport.testing import (
    REFUSED_BY_LOG,
    Hostile,
    SurfaceResult,
    Tripwire,
    check_surface,
    predictor_reference,
)
from test_trigger_worker import db_url  # noqa: F401 - db_url is a fixture

from conftest import need_module
from zoo import build, data

NUMERIC = ["tenure", "charges", "calls", "usage"]
CATEGORICAL = ["plan", "contract"]
TRIP = ("charges", 66.66)
#: the key of the row the scored table's CHECK constraint refuses a score for
SCORE_REFUSED = "h-score-refused"
NUL_CASES = frozenset({"a NUL byte in a numeric field", "a NUL byte in a category"})


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A registry holding the Tripwire-wrapped pipeline as churn@production (joblib only),
    and that artefact loaded, as the reference."""
    home = tmp_path_factory.mktemp("surface-trigger")
    registry = Registry(f"sqlite:///{home / 'registry.db'}", str(home / "artefacts"))
    model, sample = build("pipeline")
    modelport.log_model(Tripwire(model, *TRIP), "churn", sample=sample, formats=["joblib"],
                        alias="production", registry=registry)
    return registry, registry.load("churn@production", format="joblib")


def good_rows(n: int = 10) -> list[dict]:
    rows = []
    for i, rec in enumerate(data()[0].head(n).to_dict("records")):
        row = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in rec.items()}
        assert row["charges"] != TRIP[1]
        rows.append({"id": f"g{i}", **row})
    return rows


class TriggerSurface:
    """A table in a real database scored by a worker running in a background thread."""

    def __init__(self, url: str, log_url: str, registry) -> None:
        self.url = url
        self.log_url = log_url
        self.db = connect(url)
        self.name = f"trigger worker on {self.db.dialect}"
        self.capabilities = frozenset({"tripwire", "log", "flat"})
        self.unreachable = NUL_CASES if self.db.dialect == "postgresql" else frozenset()
        self._create_tables()
        trigger.install("churn@production", url, table="customers", key="id",
                        output="churn", registry=registry)
        self.metrics = TriggerMetrics()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, args=(registry,), daemon=True)
        self.thread.start()

    def _create_tables(self) -> None:
        db = self.db
        mysql = db.dialect == "mysql"
        key = "VARCHAR(64)" if mysql else "TEXT"
        text = "VARCHAR(64)" if mysql else "TEXT"
        real = "DOUBLE" if mysql else "DOUBLE PRECISION"
        q = db.q  # usage is a reserved word in MariaDB
        db.execute(
            f"CREATE TABLE customers (id {key} PRIMARY KEY, tenure TEXT, "
            + ", ".join(f"{q(c)} {real}" for c in NUMERIC[1:]) + ", "
            + ", ".join(f"{q(c)} {text}" for c in CATEGORICAL)
            + f", churn {real}, CONSTRAINT score_refused CHECK "
            f"(churn IS NULL OR id <> '{SCORE_REFUSED}'))")
        db.commit()
        from modelport.monitor.log import open_log

        engine, tables = open_log(self.log_url)
        refuse = f"id <> '{REFUSED_BY_LOG}'"
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":  # SQLite cannot add a constraint later
                conn.exec_driver_sql(
                    f"CREATE TRIGGER refuses BEFORE INSERT ON {tables.predictions.name} "
                    f"WHEN NOT (NEW.{refuse}) BEGIN SELECT RAISE(ABORT, 'refused'); END")
            else:
                conn.exec_driver_sql(f"ALTER TABLE {tables.predictions.name} ADD CONSTRAINT "
                                     f"refuses CHECK ({refuse})")
        self.log_engine, self.log_table = engine, tables.predictions.name

    def _work(self, registry) -> None:
        try:
            trigger.run(self.url, registry=registry, poll_ms=10, reload_seconds=0,
                        log_url=self.log_url, metrics=self.metrics, stop=self.stop)
        except BaseException as exc:  # noqa: BLE001 - alive() reports it
            self.error = exc

    def score(self, rows: list[dict]) -> SurfaceResult:
        ids = {str(r["id"]): r["id"] for r in rows}
        assert len(ids) == len(rows), "ids must be distinct as text: they are the table's key"
        db = self.db
        names = ["id", *NUMERIC, *CATEGORICAL]
        with self.log_engine.connect() as conn:
            mark = conn.exec_driver_sql(f"SELECT MAX(seq) FROM {self.log_table}").scalar() or 0
        db.begin()
        db.execute("DELETE FROM customers")
        cur = db.conn.cursor()
        cur.executemany(f"INSERT INTO customers ({', '.join(map(db.q, names))}) VALUES "
                        f"({db.params(len(names))})",
                        [[stored(r.get(n), n) for n in names] for r in rows])
        cur.close()
        db.commit()
        deadline = time.monotonic() + 60
        while True:
            left = db.execute("SELECT COUNT(*) FROM customers WHERE churn_status IS NULL")[0][0]
            db.commit()
            if not left:
                break
            assert self.alive(), f"{self.name} stopped: {self.error!r}"
            assert time.monotonic() < deadline, f"{left} rows still unscored after a minute"
            time.sleep(0.01)
        result = SurfaceResult()
        for key, value, status, count in db.execute(
                "SELECT id, churn, churn_status, churn_count FROM customers"):
            assert count == 1, f"row {key!r} was scored {count} times"
            if status == "ok":
                result.scored[ids[key]] = {"score": value}
            else:
                assert status.startswith("error: ") and value is None, (key, value, status)
                result.rejected[ids[key]] = status
        db.commit()
        result.logged = self._logged(ids, mark)
        return result

    def _logged(self, ids: dict, mark: int) -> set:
        """The ids the log holds from this list, once every row but the refused one is in."""
        want = set(ids) - {REFUSED_BY_LOG}
        deadline = time.monotonic() + 30
        while True:
            with self.log_engine.connect() as conn:
                got = {r[0] for r in conn.exec_driver_sql(
                    f"SELECT id FROM {self.log_table} WHERE seq > {int(mark)}")}
            if want <= got or time.monotonic() > deadline:
                return {ids[k] for k in got if k in ids}
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.thread.is_alive() and self.error is None

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        self.db.close()
        self.log_engine.dispose()


def stored(value, column: str):
    """What an application writes into the column for ``value``: numbers as they are into
    DOUBLE columns and as their exact text into the TEXT one, a list or an object as its
    JSON text."""
    if value is None or (column != "tenure" and isinstance(value, str | float)):
        return value
    if isinstance(value, list | dict):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def test_the_trigger_worker_passes_the_hostile_row_battery(db_url, served, tmp_path):  # noqa: F811
    need_module("prometheus_client", "http")
    registry, predictor = served
    log_url = (f"sqlite:///{tmp_path / 'log.db'}#predictions" if db_url.startswith("sqlite")
               else f"{db_url}#predictions")
    surface = TriggerSurface(db_url, log_url, registry)
    full = predictor_reference(predictor)

    def reference(rows):
        # the score column holds the probability of the second class
        return {k: {"score": v["proba"][1]} for k, v in full(rows).items()}

    good = good_rows()
    base = {k: v for k, v in good[0].items() if k != "id"}
    refused = Hostile("a row whose score the table refuses", {"id": SCORE_REFUSED, **base},
                      "reject")
    try:
        ran = check_surface(surface, predictor.signature, good, reference, trip=TRIP,
                            extra=[refused])
    finally:
        surface.close()
    assert surface.error is None, surface.error
    expected = {"a list in a numeric field", "an object in a numeric field",
                "text in a numeric field", "a 400-digit integer", "an id of another type",
                "a value the model raises on", "a row the prediction-log table refuses",
                refused.name} | (set() if db_url.startswith("postgresql") else NUL_CASES)
    assert set(ran) == expected

    # every rejected row counted by its reason, every flagged one as a warning
    sample = surface.metrics.registry.get_sample_value
    labels = {"surface": "trigger", "model": "churn"}
    for reason in ("wrong_type", "model_error", "write_refused"):
        assert sample("modelport_rejected_rows_total", {**labels, "reason": reason}) > 0, reason
    scored = sample("modelport_scored_rows_total", {**labels, "version": "1"})
    assert scored >= len(good) * (len(ran) + 1)  # each case's list, then all at once
    if not db_url.startswith("postgresql"):
        assert sample("modelport_warnings_total", {**labels, "field": "plan",
                                                   "kind": "unseen_category"}) > 0
    assert sample("modelport_prediction_log_refused_total", {}) > 0
