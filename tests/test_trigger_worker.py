"""Worker-mode trigger scoring on real PostgreSQL, MariaDB and SQLite: rows inserted or
updated are scored once by the worker (never again for its own writes), rows written while
no worker runs are scored when one starts, workers share a queue, bad rows get an error
status, a killed worker loses and repeats nothing, and uninstall leaves the database as it
was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest

import modelport
from modelport.errors import UserError
from modelport.registry import Registry
from modelport.serve import trigger
from modelport.serve.trigger.db import connect

from conftest import need_module, port_open, unavailable

NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls",
           "data_usage_gb", "age"]
CATEGORICAL = ["plan", "contract", "payment_method", "region"]
COLUMNS = ["customer_id", *NUMERIC, *CATEGORICAL]
MARIADB = "mysql://root@127.0.0.1:3306"
#: rows in each crash test's bulk insert (100k for the full check)
CRASH_ROWS = int(os.environ.get("MODELPORT_TRIGGER_ROWS", "20000"))


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    """A registered churn logistic pipeline (joblib + onnx) as churn@production, with data."""
    from sklearn.linear_model import LogisticRegression

    from modelport.datasets import churn as dataset
    from modelport.train.preprocess import build_pipeline

    home = tmp_path_factory.mktemp("trigger")
    registry = Registry(f"sqlite:///{home / 'registry.db'}", str(home / "artefacts"))
    data = dataset.generate(3000, seed=5)
    X = data.drop(columns=["customer_id", "churned"])
    model = build_pipeline(LogisticRegression(max_iter=300), X, NUMERIC, CATEGORICAL)
    model.fit(X, data["churned"])
    modelport.log_model(model, "churn", sample=X.head(300), formats=["joblib", "onnx"],
                        alias="production", registry=registry)
    env = {"MODELPORT_REGISTRY": f"sqlite:///{home / 'registry.db'}",
           "MODELPORT_ARTIFACTS": str(home / "artefacts")}
    return registry, data, model, env


def mariadb_url():
    need_module("pymysql", "mysql")
    if not port_open("127.0.0.1", 3306):
        unavailable("MariaDB is not running on 127.0.0.1:3306")
    import pymysql

    name = f"mp_test_{uuid.uuid4().hex[:12]}"
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    conn.close()
    return f"{MARIADB}/{name}", name


def drop_mariadb(name: str) -> None:
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def db_url(request, tmp_path):
    """A fresh empty database of each kind, dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'app.db'}"
    elif request.param == "postgresql":
        yield request.getfixturevalue("postgres_url")
    else:
        url, name = mariadb_url()
        yield url
        drop_mariadb(name)


def create_customers(url: str, table: str = "customers") -> None:
    with connect(url) as db:
        text = "VARCHAR(32)" if db.dialect == "mysql" else "TEXT"
        real = "DOUBLE" if db.dialect == "mysql" else "DOUBLE PRECISION"
        cols = ", ".join([f"{c} {real}" for c in NUMERIC] + [f"{c} {text}" for c in CATEGORICAL])
        db.execute(f"CREATE TABLE {table} (customer_id BIGINT PRIMARY KEY, {cols}, "
                   f"note {text})")
        db.commit()


def insert(url_or_db, frame, table: str = "customers", chunk: int = 2000) -> None:
    """Insert rows in committed chunks, as a loading job does."""
    db = connect(url_or_db) if isinstance(url_or_db, str) else url_or_db
    rows = [tuple(None if (isinstance(v, float) and v != v) else
                  (int(v) if isinstance(v, np.integer) else v) for v in r)
            for r in frame[COLUMNS].itertuples(index=False)]
    sql = f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({db.params(len(COLUMNS))})"
    try:
        for i in range(0, len(rows), chunk):
            db.begin()
            cur = db.conn.cursor()
            cur.executemany(sql, rows[i:i + chunk])
            cur.close()
            db.commit()
    finally:
        if isinstance(url_or_db, str):
            db.close()


def scores(url: str, table: str = "customers") -> dict:
    with connect(url) as db:
        rows = db.execute(f"SELECT customer_id, churn, churn_count, churn_status, "
                          f"churn_version FROM {table}")
        db.commit()
    return {int(r[0]): r[1:] for r in rows}


def expected(model, frame) -> np.ndarray:
    return model.predict_proba(frame.drop(columns=["customer_id", "churned"]))[:, 1]


def install(url, churn, **kw):
    return trigger.install("churn@production", url, table="customers", key="customer_id",
                           output="churn", registry=churn[0], **kw)


def test_worker_scores_inserts_and_updates_but_not_its_own_writes(db_url, churn):
    registry, data, model, _ = churn
    create_customers(db_url)
    install(db_url, churn)
    insert(db_url, data.head(300))
    stats = trigger.run(db_url, once=True, registry=registry)
    assert stats.scored == 300 and stats.errors == 0
    got = scores(db_url)
    values = np.array([got[int(k)][0] for k in data.customer_id.head(300)], dtype=float)
    assert np.max(np.abs(values - expected(model, data.head(300)))) < 1e-5
    assert {v[1] for v in got.values()} == {1} and {v[2] for v in got.values()} == {"ok"}
    # the worker's own writes queued nothing: a second pass has no work
    assert trigger.run(db_url, once=True, registry=registry).scored == 0
    with connect(db_url) as db:
        db.begin()
        db.execute("UPDATE customers SET support_calls = 9 WHERE customer_id <= 100010")
        db.execute("UPDATE customers SET note = 'called' WHERE customer_id > 100010")
        db.commit()
    stats = trigger.run(db_url, once=True, registry=registry)
    assert stats.scored == 10  # a change to a non-feature column is not re-scored
    got = scores(db_url)
    changed = data.head(10).assign(support_calls=9.0)
    ids = data.customer_id.head(11).tolist()
    assert np.allclose([got[i][0] for i in ids[:10]], expected(model, changed), atol=1e-5)
    assert [got[i][1] for i in ids] == [2] * 10 + [1]


def test_rows_written_while_no_worker_runs_are_scored_when_it_starts(db_url, churn):
    registry, data, _, _ = churn
    create_customers(db_url)
    insert(db_url, data.head(50))  # before install: the backfill queues them
    install(db_url, churn)
    insert(db_url, data.iloc[50:400])
    assert trigger.status(db_url)[0]["queued"] == 400
    assert trigger.run(db_url, once=True, registry=registry).scored == 400
    got = scores(db_url)
    assert len(got) == 400 and all(v[0] is not None and v[1] == 1 for v in got.values())
    assert trigger.status(db_url)[0]["queued"] == 0


def test_bad_rows_get_an_error_status_and_do_not_block_the_queue(db_url, churn, tmp_path):
    registry, data, _, _ = churn
    from sklearn.linear_model import LogisticRegression

    X = data[NUMERIC].fillna(0.0)
    # no imputer: a NULL feature cannot be scored
    plain = LogisticRegression(max_iter=500).fit(X, data["churned"])
    modelport.log_model(plain, "plain", sample=X.head(200), formats=["joblib"],
                        registry=registry)
    create_customers(db_url)
    trigger.install("plain", db_url, table="customers", key="customer_id", output="churn",
                    registry=registry)
    rows = data.head(100).copy()
    rows[NUMERIC] = rows[NUMERIC].fillna(0.0)
    rows.loc[rows.index[[3, 40]], "age"] = np.nan
    insert(db_url, rows)
    stats = trigger.run(db_url, once=True, registry=registry)
    assert (stats.scored, stats.errors) == (98, 2)
    got = scores(db_url)
    bad = {k for k, v in got.items() if v[2] != "ok"}
    assert bad == {int(rows.customer_id.iloc[3]), int(rows.customer_id.iloc[40])}
    assert all(got[k][0] is None and "age" in got[k][2] for k in bad)
    assert all(v[0] is not None for k, v in got.items() if k not in bad)
    assert trigger.status(db_url)[0]["queued"] == 0


def test_uninstall_removes_what_install_created_and_nothing_else(db_url, churn):
    registry, data, _, _ = churn
    create_customers(db_url)
    create_customers(db_url, "other")
    with connect(db_url) as db:
        before_cols = db.columns("customers")
        db.commit()
    before = _objects(db_url)
    install(db_url, churn)
    assert _objects(db_url) != before
    insert(db_url, data.head(20))
    trigger.run(db_url, once=True, registry=registry)
    assert trigger.uninstall(db_url) == ["customers"]
    assert _objects(db_url) == before
    with connect(db_url) as db:
        assert db.columns("customers") == before_cols
        assert db.execute("SELECT COUNT(*) FROM customers")[0][0] == 20
        db.commit()
    insert(db_url, data.iloc[20:30])  # inserts still work with nothing installed
    with pytest.raises(UserError, match="no trigger scoring installed"):
        trigger.uninstall(db_url, "customers")


def _objects(url: str) -> set:
    """Every table, trigger and routine in the database."""
    with connect(url) as db:
        if db.dialect == "sqlite":
            rows = db.execute("SELECT type, name FROM sqlite_master")
        elif db.dialect == "postgresql":
            rows = db.execute(
                "SELECT 'table', tablename FROM pg_tables WHERE schemaname = 'public' UNION ALL "
                "SELECT 'trigger', tgname FROM pg_trigger WHERE NOT tgisinternal UNION ALL "
                "SELECT 'function', proname FROM pg_proc p JOIN pg_namespace n ON "
                "n.oid = p.pronamespace WHERE nspname = 'public'")
        else:
            rows = db.execute(
                "SELECT 'table', TABLE_NAME FROM information_schema.TABLES WHERE "
                "TABLE_SCHEMA = DATABASE() UNION ALL SELECT 'trigger', TRIGGER_NAME FROM "
                "information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() UNION ALL "
                "SELECT 'routine', ROUTINE_NAME FROM information_schema.ROUTINES WHERE "
                "ROUTINE_SCHEMA = DATABASE()")
        db.commit()
    return {tuple(r) for r in rows}


def test_two_workers_share_one_queue_without_scoring_a_row_twice(db_url, churn):
    registry, data, _, _ = churn
    create_customers(db_url)
    install(db_url, churn)
    insert(db_url, data.head(3000))
    results = []

    def work():
        results.append(trigger.run(db_url, once=True, batch=100, registry=registry))

    workers = [threading.Thread(target=work) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert sum(r.scored for r in results) == 3000
    got = scores(db_url)
    assert len(got) == 3000 and {v[1] for v in got.values()} == {1}


def test_worker_follows_the_alias_to_a_new_version(db_url, churn):
    registry, data, model, _ = churn
    create_customers(db_url)
    install(db_url, churn)
    insert(db_url, data.head(10))
    trigger.run(db_url, once=True, registry=registry)
    v2 = modelport.log_model(model, "churn", sample=data.drop(columns=["customer_id",
                                                                        "churned"]).head(100),
                             formats=["joblib"], registry=registry)
    registry.set_alias("churn", v2.version, "production")
    insert(db_url, data.iloc[10:20])
    stats = trigger.run(db_url, once=True, reload_seconds=0.0, registry=registry)
    got = scores(db_url)
    assert stats.scored == 10
    assert sorted({v[3] for v in got.values()}) == [1, v2.version]
    registry.set_alias("churn", 1, "production")


def test_flagged_rows_are_scored_and_counted_and_strict_gives_them_an_error_status(
        tmp_path, churn):
    need_module("prometheus_client", "http")
    from modelport.scoring.checks import InputPolicy
    from modelport.scoring.metrics import TriggerMetrics

    registry, data, model, _ = churn
    url = f"sqlite:///{tmp_path / 'app.db'}"
    create_customers(url)
    install(url, churn)
    rows = data.head(40).copy()
    odd = rows.index[[2, 5, 22, 25]]
    rows.loc[odd[[0, 2]], "plan"] = "platinum"  # a plan training never saw
    rows.loc[odd[[1, 3]], "tenure_months"] = 5000.0  # far outside the training range
    insert(url, rows.head(20))
    metrics = TriggerMetrics()
    log = f"sqlite:///{tmp_path / 'log.db'}#predictions"
    stats = trigger.run(url, once=True, registry=registry, metrics=metrics, log_url=log)
    assert (stats.scored, stats.errors, stats.flagged) == (20, 0, 2)
    from modelport.monitor.log import read_predictions

    logged = read_predictions(log, "churn").set_index("id")["warnings"]
    assert logged[str(rows.customer_id[odd[0]])] == "plan: unseen category"
    assert logged[str(rows.customer_id[odd[1]])] == "tenure_months: out of range"
    assert logged.isna().sum() == 18
    got = scores(url)
    assert {v[2] for v in got.values()} == {"ok"}
    assert np.allclose([got[int(k)][0] for k in rows.customer_id.head(20)],
                       expected(model, rows.head(20)), atol=1e-5)
    warned = metrics.registry.get_sample_value
    labels = {"surface": "trigger", "model": "churn"}
    assert warned("modelport_warnings_total",
                  {**labels, "field": "plan", "kind": "unseen_category"}) == 1
    assert warned("modelport_warnings_total",
                  {**labels, "field": "tenure_months", "kind": "out_of_range"}) == 1

    insert(url, rows.iloc[20:])
    stats = trigger.run(url, once=True, registry=registry, policy=InputPolicy.of(strict=True))
    assert (stats.scored, stats.errors) == (18, 2)
    got = scores(url)
    plan, tenure = (got[int(rows.customer_id[i])] for i in odd[2:])
    assert plan[0] is None and plan[2].startswith("error: field 'plan' value 'platinum'")
    assert tenure[0] is None and "'tenure_months' value 5000" in tenure[2]
    assert "strict" in plan[2] and "strict" in tenure[2]


def _transient(dialect: str) -> Exception:
    """A driver's own error for a failure that is no row's fault."""
    if dialect == "sqlite":
        import sqlite3

        return sqlite3.OperationalError("database is locked")
    if dialect == "postgresql":
        import psycopg

        return psycopg.errors.DeadlockDetected("deadlock detected")
    import pymysql

    return pymysql.err.OperationalError(1205, "Lock wait timeout exceeded; try restarting "
                                              "transaction")


def test_a_failure_not_tied_to_rows_rolls_the_batch_back_and_is_retried(db_url, churn,
                                                                       monkeypatch):
    registry, data, _, _ = churn
    create_customers(db_url)
    install(db_url, churn)
    insert(db_url, data.head(500))
    with connect(db_url) as db:
        cls, dialect = type(db), db.dialect
    real = cls.write_scores
    failures = [_transient(dialect) for _ in range(3)]

    def flaky(self, *args):
        real(self, *args)  # the scores are written, then the transaction fails
        if failures:
            raise failures.pop()

    monkeypatch.setattr(cls, "write_scores", flaky)
    stats = trigger.run(db_url, once=True, batch=200, registry=registry)
    assert (stats.scored, stats.errors, stats.retries) == (500, 0, 3)
    got = scores(db_url)
    assert len(got) == 500 and {(v[1], v[2]) for v in got.values()} == {(1, "ok")}
    assert trigger.status(db_url)[0]["queued"] == 0


class _Background:
    """A worker in a thread, stopped by :meth:`close`; ``error`` holds what ended it."""

    def __init__(self, url: str, registry, **kwargs) -> None:
        self.stop = threading.Event()
        self.stats = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, args=(url, registry, kwargs),
                                       daemon=True)
        self.thread.start()

    def _work(self, url, registry, kwargs) -> None:
        try:
            self.stats = trigger.run(url, registry=registry, stop=self.stop, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            self.error = exc

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert self.error is None, self.error


def _wait_count(url: str, n: int, worker: _Background, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    with connect(url) as db:
        while True:
            done = db.execute("SELECT COUNT(churn_status) FROM customers")[0][0]
            db.commit()
            if done >= n:
                return
            assert worker.error is None, worker.error
            assert time.monotonic() < deadline, f"{done} of {n} rows scored in time"
            time.sleep(0.02)


@pytest.mark.services
def test_a_worker_whose_connection_is_killed_reconnects_and_scores_every_row_once(
        server_url, churn):
    registry, data, _, _ = churn
    create_customers(server_url)
    install(server_url, churn)
    worker = _Background(server_url, registry, poll_ms=10, reload_seconds=0)
    try:
        insert(server_url, data.head(100))
        _wait_count(server_url, 100, worker)
        with connect(server_url) as db:
            if db.dialect == "postgresql":
                killed = db.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                    "current_database() AND pid <> pg_backend_pid()")
            else:
                killed = db.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE "
                                    "DB = DATABASE() AND ID <> CONNECTION_ID()")
                for (session,) in killed:
                    db.execute(f"KILL CONNECTION {int(session)}")
            db.commit()
        assert killed, "the worker's session was not found"
        insert(server_url, data.iloc[100:400])
        _wait_count(server_url, 400, worker)
    finally:
        worker.close()
    assert worker.stats.scored == 400 and worker.stats.retries >= 1
    got = scores(server_url)
    assert len(got) == 400 and {(v[1], v[2]) for v in got.values()} == {(1, "ok")}


@pytest.mark.services
def test_a_lock_timeout_is_retried_until_the_lock_is_released(postgres_url, churn):
    registry, data, _, _ = churn
    name = postgres_url.rsplit("/", 1)[1]
    with connect(postgres_url) as db:
        db.conn.autocommit = True
        db.execute(f'ALTER DATABASE "{name}" SET lock_timeout = \'100ms\'')
    create_customers(postgres_url)
    install(postgres_url, churn)
    insert(postgres_url, data.head(50))
    first = int(data.customer_id.iloc[0])
    with connect(postgres_url) as holder:
        # an application transaction holding one row: the worker's write times out
        holder.execute(f"SELECT 1 FROM customers WHERE customer_id = {first} FOR UPDATE")
        worker = _Background(postgres_url, registry, once=True)
        time.sleep(1.0)
        assert worker.thread.is_alive() and scores(postgres_url)[first][2] is None
        holder.rollback()
    worker.thread.join(60)
    assert worker.error is None, worker.error
    assert worker.stats.scored == 50 and worker.stats.retries >= 1
    assert {(v[1], v[2]) for v in scores(postgres_url).values()} == {(1, "ok")}


def test_the_worker_serves_the_shared_metric_names(tmp_path, churn):
    need_module("prometheus_client", "http")
    import socket
    import urllib.request

    from modelport.serve.trigger.worker import serve_metrics

    registry, data, _, _ = churn
    url = f"sqlite:///{tmp_path / 'app.db'}"
    create_customers(url)
    install(url, churn)
    insert(url, data.head(19))
    with connect(url) as db:  # SQLite keeps text written into a REAL column
        db.execute("INSERT INTO customers (customer_id, tenure_months) VALUES (7, 'forty')")
        db.commit()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    worker = _Background(url, registry, poll_ms=10, metrics_port=port)
    try:
        _wait_count(url, 20, worker)
        time.sleep(0.1)  # the counters move right after the commit
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    finally:
        worker.close()
    from prometheus_client.parser import text_string_to_metric_families

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text.decode())
               for s in family.samples}
    labels = {"surface": "trigger", "model": "churn"}

    def value(name: str, **more) -> float | None:
        return samples.get((name, tuple(sorted({**labels, **more}.items()))))

    assert value("modelport_scored_rows_total", version="1") == 19
    assert value("modelport_rejected_rows_total", reason="wrong_type") == 1
    assert value("modelport_serving_version", role="champion") == 1
    assert value("modelport_scoring_seconds_count") >= 1
    assert samples[("modelport_trigger_batches_total", (("table", "customers"),))] >= 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with pytest.raises(UserError, match=f"--metrics-port {taken}.*free port"):
            serve_metrics(taken)


def test_install_names_what_is_wrong(tmp_path, churn):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    with pytest.raises(UserError, match="no table 'customers'"):
        install(url, churn)
    with connect(url) as db:
        db.execute("CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, tenure_months REAL)")
        db.commit()
    with pytest.raises(UserError, match="lacks the model input column"):
        install(url, churn)
    create_customers(url, "people")
    trigger.install("churn", url, table="people", key="customer_id", output="churn",
                    registry=churn[0])
    with pytest.raises(UserError, match="already scored.*--upgrade"):
        trigger.install("churn", url, table="people", key="customer_id", output="churn",
                        registry=churn[0])
    upgraded = trigger.install("churn", url, table="people", key="customer_id",
                               output="churn", upgrade=True, registry=churn[0])
    assert upgraded.added_columns[0] == "churn"
    with pytest.raises(UserError, match="overwrite the column"):
        trigger.install("churn", url, table="people", key="customer_id", output="age",
                        upgrade=True, registry=churn[0])


# -- crash: kill -9 the worker process during a bulk insert --------------------------------

@pytest.fixture(params=["postgresql", "mariadb"])
def server_url(request):
    if request.param == "postgresql":
        yield request.getfixturevalue("postgres_url")
    else:
        url, name = mariadb_url()
        yield url
        drop_mariadb(name)


def _worker(url: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "modelport", "trigger", "run", "--db", url, "--poll-ms", "10"],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.services
@pytest.mark.slow
def test_worker_killed_during_bulk_insert_loses_and_repeats_nothing(server_url, churn):
    registry, data, _, env = churn
    from modelport.datasets import churn as dataset

    create_customers(server_url)
    install(server_url, churn)
    first = dataset.generate(CRASH_ROWS, seed=7)
    more = dataset.generate(CRASH_ROWS // 4, seed=8)
    more["customer_id"] += CRASH_ROWS
    worker = _worker(server_url, env)
    deadline = time.monotonic() + 120
    insert(server_url, first.head(200))
    _wait_scored(server_url, worker, 1, deadline)  # the worker is up
    loader = threading.Thread(target=insert, args=(server_url, first.iloc[200:]),
                              kwargs={"chunk": 1000})
    loader.start()
    done = _wait_scored(server_url, worker, CRASH_ROWS // 10, deadline)
    assert loader.is_alive() and 0 < done < CRASH_ROWS, "the kill must land mid-load"
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    loader.join()
    insert(server_url, more)  # written while no worker runs: only the queue knows
    worker = _worker(server_url, env)
    total = CRASH_ROWS + len(more)
    try:
        _wait_scored(server_url, worker, total, deadline + 120)
    finally:
        worker.terminate()
        worker.wait(30)
    with connect(server_url) as db:
        counts = dict(db.execute("SELECT churn_count, COUNT(*) FROM customers "
                                 "GROUP BY churn_count"))
        nulls = db.execute("SELECT COUNT(*) FROM customers WHERE churn IS NULL")[0][0]
        queued = db.execute("SELECT COUNT(*) FROM modelport_queue_customers")[0][0]
        db.commit()
    assert (counts, nulls, queued) == ({1: total}, 0, 0)


def _wait_scored(url: str, worker: subprocess.Popen, n: int, deadline: float) -> int:
    """Wait until at least ``n`` rows have a score; return how many have."""
    with connect(url) as db:
        while time.monotonic() < deadline:
            done = db.execute("SELECT COUNT(churn) FROM customers")[0][0]
            db.commit()
            if done >= n:
                return done
            assert worker.poll() is None, worker.stderr.read().decode()
            time.sleep(0.02)
    raise AssertionError(f"fewer than {n} rows scored in time")
