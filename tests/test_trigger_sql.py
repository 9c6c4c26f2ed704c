"""SQL-mode trigger scoring: the churn logistic and gradient-boosting pipelines compiled to
SQL score rows inside PostgreSQL, MariaDB and SQLite exactly as the native model does; a
model the compiler cannot represent is refused with the reason; ``--upgrade`` installs the
version an alias moved to. Also: SQLite in-process scoring with ``attach`` and the
``modelport trigger`` command line."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

import modelport
from modelport.errors import UserError
from modelport.registry import Registry
from modelport.serve import trigger
from modelport.serve.trigger.db import connect
from test_trigger_worker import (  # noqa: F401 - db_url is a fixture
    CATEGORICAL,
    NUMERIC,
    _objects,
    create_customers,
    db_url,
    insert,
)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """churn (logistic pipeline, churn@production), churn_gb (gradient boosting), data."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    from modelport.datasets import churn as dataset
    from modelport.train.preprocess import build_pipeline

    home = tmp_path_factory.mktemp("trigger-sql")
    registry = Registry(f"sqlite:///{home / 'registry.db'}", str(home / "artefacts"))
    data = dataset.generate(3000, seed=9)
    X = data.drop(columns=["customer_id", "churned"])
    logistic = build_pipeline(LogisticRegression(max_iter=300), X, NUMERIC, CATEGORICAL)
    logistic.fit(X, data["churned"])
    boosted = build_pipeline(HistGradientBoostingClassifier(max_iter=60, random_state=0), X,
                             NUMERIC, CATEGORICAL).fit(X, data["churned"])
    modelport.log_model(logistic, "churn", sample=X.head(300), formats=["joblib"],
                        alias="production", registry=registry)
    modelport.log_model(boosted, "churn_gb", sample=X.head(300), formats=["joblib"],
                        registry=registry)
    env = {"MODELPORT_REGISTRY": f"sqlite:///{home / 'registry.db'}",
           "MODELPORT_ARTIFACTS": str(home / "artefacts")}
    return registry, data, {"churn": logistic, "churn_gb": boosted}, env


def _scores(url: str) -> dict:
    with connect(url) as db:
        rows = db.execute("SELECT customer_id, churn, churn_version FROM customers")
        db.commit()
    return {int(r[0]): (r[1], r[2]) for r in rows}


@pytest.mark.parametrize("name", ["churn", "churn_gb"])
def test_sql_mode_scores_inserts_and_updates_exactly_as_the_native_model(db_url, models,  # noqa: F811
                                                                        name):
    registry, data, fitted, _ = models
    create_customers(db_url)
    rows = data.head(400)
    insert(db_url, rows.head(100))  # scored by the install's backfill
    trigger.install(name, db_url, table="customers", key="customer_id", output="churn",
                    mode="sql", registry=registry)
    insert(db_url, rows.iloc[100:])
    with connect(db_url) as db:
        db.begin()
        db.execute("UPDATE customers SET support_calls = 7, plan = NULL "
                   "WHERE customer_id <= 100020")
        db.commit()
    changed = rows.copy()
    changed.loc[changed.customer_id <= 100020, ["support_calls", "plan"]] = [7, np.nan]
    want = fitted[name].predict_proba(changed.drop(columns=["customer_id", "churned"]))[:, 1]
    got = _scores(db_url)
    values = np.array([got[int(k)][0] for k in changed.customer_id], dtype=float)
    assert np.max(np.abs(values - want)) <= 1e-9
    assert {v[1] for v in got.values()} == {1}
    assert trigger.status(db_url)[0]["scored"] == 400


def _reasons(url: str, k: int) -> dict:
    cols = ", ".join(f"churn_reason_{j}, churn_contribution_{j}" for j in range(1, k + 1))
    with connect(url) as db:
        rows = db.execute(f"SELECT customer_id, {cols} FROM customers")
        db.commit()
    return {int(r[0]): ([r[1 + 2 * j] for j in range(k)],
                        np.array([r[2 + 2 * j] for j in range(k)], dtype=float))
            for r in rows}


def test_sql_mode_writes_each_rows_reasons_as_modelport_explains_it(db_url, models):  # noqa: F811
    registry, data, _, _ = models
    create_customers(db_url)
    rows = data.iloc[1000:1300]  # not the rows the model was trained on
    insert(db_url, rows.head(100))  # explained by the install's backfill
    inst = trigger.install("churn", db_url, table="customers", key="customer_id",
                           output="churn", mode="sql", explain=3, registry=registry)
    assert [c for c, _ in inst.reason_columns()] == [
        "churn_reason_1", "churn_contribution_1", "churn_reason_2", "churn_contribution_2",
        "churn_reason_3", "churn_contribution_3"]
    insert(db_url, rows.iloc[100:])
    with connect(db_url) as db:
        db.begin()
        db.execute(f"UPDATE customers SET support_calls = 9, contract = NULL "
                   f"WHERE customer_id <= {int(rows.customer_id.iloc[20])}")
        db.commit()
    changed = rows.copy()
    changed.loc[changed.customer_id <= rows.customer_id.iloc[20],
                ["support_calls", "contract"]] = [9, np.nan]
    explainer = registry.load("churn", format="joblib")
    table = explainer.explain(changed.drop(columns=["customer_id", "churned"]), top=3)
    got = _reasons(db_url, 3)
    ids = changed.customer_id.tolist()
    for row, part in table.groupby("row", sort=True):
        part = part.sort_values("rank")
        columns, contributions = got[int(ids[row])]
        assert columns == part["column"].tolist(), f"customer {ids[row]}"
        np.testing.assert_allclose(contributions, part["contribution"], rtol=0, atol=1e-9)
    trigger.uninstall(db_url, "customers")
    with connect(db_url) as db:
        assert not any("reason" in c or "contribution" in c for c in db.columns("customers"))
        # the reason functions went with the installation
        if db.dialect == "postgresql":
            assert not db.execute("SELECT proname FROM pg_proc WHERE proname LIKE "
                                  "'modelport_%%'")
        elif db.dialect == "mysql":
            assert not db.execute("SELECT ROUTINE_NAME FROM information_schema.ROUTINES "
                                  "WHERE ROUTINE_SCHEMA = DATABASE()")
        db.commit()


def test_sql_mode_reasons_are_refused_for_trees_and_in_worker_mode(tmp_path, models):
    registry, _, _, _ = models
    url = f"sqlite:///{tmp_path / 'app.db'}"
    create_customers(url)
    before = _objects(url)
    with pytest.raises(UserError, match=r"churn_gb/1 cannot write reasons in SQL mode: "
                                        r"reasons are written in SQL for linear models"):
        trigger.install("churn_gb", url, table="customers", key="customer_id",
                        output="churn", mode="sql", explain=2, registry=registry)
    with pytest.raises(UserError, match="--explain writes reasons in SQL and native modes"):
        trigger.install("churn", url, table="customers", key="customer_id", output="churn",
                        explain=2, registry=registry)
    with pytest.raises(UserError, match="--explain must be a whole number of reasons from 1 "
                                        "to 10"):
        trigger.install("churn", url, table="customers", key="customer_id", output="churn",
                        mode="sql", explain=11, registry=registry)
    assert _objects(url) == before


def test_a_model_sql_cannot_represent_is_refused_with_the_reason(tmp_path, models):
    from sklearn.neighbors import KNeighborsClassifier

    registry, data, _, _ = models
    X = data[NUMERIC].fillna(0.0)
    modelport.log_model(KNeighborsClassifier().fit(X, data["churned"]), "knn",
                        sample=X.head(100), formats=["joblib"], registry=registry)
    url = f"sqlite:///{tmp_path / 'app.db'}"
    create_customers(url)
    before = _objects(url)
    with pytest.raises(UserError, match=r"knn/1 cannot be compiled: .*KNeighbors"):
        trigger.install("knn", url, table="customers", key="customer_id", output="churn",
                        mode="sql", registry=registry)
    assert _objects(url) == before


def test_upgrade_installs_the_version_the_alias_moved_to(tmp_path, models):
    from sklearn.linear_model import LogisticRegression

    from modelport.train.preprocess import build_pipeline

    registry, data, fitted, _ = models
    url = f"sqlite:///{tmp_path / 'app.db'}"
    create_customers(url)
    trigger.install("churn@production", url, table="customers", key="customer_id",
                    output="churn", mode="sql", registry=registry)
    insert(url, data.head(10))
    X = data.drop(columns=["customer_id", "churned"])
    stronger = build_pipeline(LogisticRegression(C=0.01, max_iter=300), X, NUMERIC,
                              CATEGORICAL).fit(X, data["churned"])
    v2 = modelport.log_model(stronger, "churn", sample=X.head(300), formats=["joblib"],
                             registry=registry)
    registry.set_alias("churn", v2.version, "production")
    try:
        inst = trigger.install("churn@production", url, table="customers", key="customer_id",
                               output="churn", mode="sql", upgrade=True, registry=registry)
    finally:
        registry.set_alias("churn", 1, "production")
    assert inst.version == v2.version
    insert(url, data.iloc[10:20])
    got = _scores(url)
    assert [got[int(k)][1] for k in data.customer_id.head(20)] == [1] * 10 + [v2.version] * 10
    want = stronger.predict_proba(X.iloc[10:20])[:, 1]
    assert np.max(np.abs(np.array([got[int(k)][0] for k in data.customer_id.iloc[10:20]])
                         - want)) <= 1e-9
    trigger.uninstall(url)
    with connect(url) as db:
        assert not [n for t, n in _objects(url) if t == "trigger"]
        assert "churn" not in db.columns("customers")


def test_attach_scores_an_apps_inserts_and_leaves_other_connections_working(tmp_path,
                                                                            models):
    registry, data, fitted, _ = models
    path = tmp_path / "app.db"
    create_customers(f"sqlite:///{path}")
    app = sqlite3.connect(path)
    trigger.attach(app, "churn/1", table="customers", key="customer_id", output_column="churn",
                   registry=registry)
    rows = data.head(30)
    cols = ["customer_id", *NUMERIC, *CATEGORICAL]
    values = [tuple(None if (isinstance(v, float) and v != v) else
                    (int(v) if isinstance(v, np.integer) else v) for v in r)
              for r in rows[cols].itertuples(index=False)]
    app.executemany(f"INSERT INTO customers ({', '.join(cols)}) VALUES "
                    f"({', '.join('?' * len(cols))})", values[:20])
    app.commit()
    other = sqlite3.connect(path)  # never registered the function: its inserts must work
    other.executemany(f"INSERT INTO customers ({', '.join(cols)}) VALUES "
                      f"({', '.join('?' * len(cols))})", values[20:])
    other.commit()
    got = dict(other.execute("SELECT customer_id, churn FROM customers"))
    want = fitted["churn"].predict_proba(rows.drop(columns=["customer_id", "churned"]))[:, 1]
    ids = rows.customer_id.tolist()
    assert np.max(np.abs(np.array([got[i] for i in ids[:20]]) - want[:20])) < 1e-5
    assert all(got[i] is None for i in ids[20:])
    # text in a numeric column (SQLite keeps it) is rejected by the checks: NULL, and the
    # application's insert goes through
    app.execute("INSERT INTO customers (customer_id, tenure_months) VALUES (9, 'forty')")
    app.commit()
    assert app.execute("SELECT churn FROM customers WHERE customer_id = 9").fetchall() == [
        (None,)]
    app.close()
    other.close()


def test_command_line_installs_runs_reports_and_uninstalls(tmp_path, models):
    registry, data, _, env = models
    url = f"sqlite:///{tmp_path / 'app.db'}"
    create_customers(url)
    insert(url, data.head(25))
    run_env = {**__import__("os").environ, **env}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "modelport", "trigger", *args],
                              env=run_env, capture_output=True, text=True, timeout=120)

    done = cli("install", "churn@production", "--db", url, "--table", "customers",
               "--key", "customer_id", "--output-column", "churn", "--on", "insert,update")
    assert done.returncode == 0, done.stderr
    assert "modelport trigger run" in done.stdout
    done = cli("run", "--db", url, "--once")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr.split("stopped; ", 1)[1])["scored"] == 25
    done = cli("status", "--db", url, "--json")
    status = json.loads(done.stdout)[0]
    assert (status["scored"], status["queued"], status["errors"]) == (25, 0, 0)
    insert(url, data.iloc[25:30].assign(plan="platinum"))  # a plan training never saw
    bad = cli("run", "--db", url, "--once", "--out-of-range", "sometimes")
    assert bad.returncode == 2 and "--out-of-range 'sometimes'" in bad.stderr
    assert "Traceback" not in bad.stderr
    done = cli("run", "--db", url, "--once", "--strict", "--out-of-range", "warn")
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stderr.split("stopped; ", 1)[1])
    assert (stats["scored"], stats["errors"]) == (0, 5)
    status = json.loads(cli("status", "--db", url, "--json").stdout)[0]
    assert (status["scored"], status["queued"], status["errors"]) == (25, 0, 5)
    bad = cli("install", "churn", "--db", url, "--table", "customers", "--key",
              "customer_id", "--output-column", "churn", "--mode", "magic")
    assert bad.returncode == 2 and "unknown trigger mode 'magic'" in bad.stderr
    done = cli("uninstall", "--db", url)
    assert done.returncode == 0 and "customers" in done.stdout
    assert json.loads(cli("status", "--db", url, "--json").stdout) == []
