"""Native-mode trigger scoring: the churn pipelines compiled to C and loaded into the real
PostgreSQL as a function score inserted and updated rows exactly as the native model does,
on rows the model was not trained on; a multiclass label model returns the native labels;
two models' libraries live side by side in one server process; what native mode needs
(PostgreSQL, a superuser, the server's headers, a model the compiler can write) is said
plainly when it is missing, and nothing is left behind."""

from __future__ import annotations

import subprocess
import sys
import uuid

import numpy as np
import pytest

import modelport
from modelport.errors import UserError
from modelport.registry import Registry
from modelport.serve import trigger
from modelport.serve.trigger.db import connect
from test_trigger_worker import CATEGORICAL, NUMERIC, _objects, create_customers, insert

from conftest import unavailable


@pytest.fixture(autouse=True)
def server_headers(postgres_url):
    """Native mode builds against the server's headers (postgresql-server-dev-<major>)."""
    from modelport.serve.trigger import native
    from modelport.serve.trigger.db import connect

    with connect(postgres_url) as db:
        try:
            native.locate(db)
        except UserError as exc:
            unavailable(str(exc))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """churn (logistic), churn_gb (boosted trees), churn_rf (forest), plan (a 3-class
    label model), trained on the first 3,000 rows; ``data`` holds 600 more rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    from modelport.datasets import churn as dataset
    from modelport.train.preprocess import build_pipeline

    home = tmp_path_factory.mktemp("trigger-native")
    registry = Registry(f"sqlite:///{home / 'registry.db'}", str(home / "artefacts"))
    everything = dataset.generate(3600, seed=11)
    train, data = everything.iloc[:3000], everything.iloc[3000:].reset_index(drop=True)
    X = train.drop(columns=["customer_id", "churned"])
    fitted = {
        "churn": build_pipeline(LogisticRegression(max_iter=300), X, NUMERIC, CATEGORICAL),
        "churn_gb": build_pipeline(HistGradientBoostingClassifier(max_iter=80, random_state=0),
                                   X, NUMERIC, CATEGORICAL),
        "churn_rf": build_pipeline(RandomForestClassifier(n_estimators=30, max_depth=8,
                                                          random_state=0),
                                   X, NUMERIC, CATEGORICAL),
    }
    for name, model in fitted.items():
        model.fit(X, train["churned"])
        modelport.log_model(model, name, sample=X.head(300), formats=["joblib"],
                            registry=registry)
    # a label model: which plan a customer is on, from the other columns
    plan_inputs = [c for c in X.columns if c != "plan"]
    rows = train.dropna(subset=["plan"])
    plan = build_pipeline(LogisticRegression(max_iter=500), rows[plan_inputs],
                          [c for c in NUMERIC if c in plan_inputs],
                          [c for c in CATEGORICAL if c in plan_inputs])
    plan.fit(rows[plan_inputs], rows["plan"])
    modelport.log_model(plan, "plan", sample=rows[plan_inputs].head(300), formats=["joblib"],
                        registry=registry)
    fitted["plan"] = plan
    env = {"MODELPORT_REGISTRY": f"sqlite:///{home / 'registry.db'}",
           "MODELPORT_ARTIFACTS": str(home / "artefacts")}
    return registry, data, fitted, env


def _column(url: str, column: str) -> dict:
    with connect(url) as db:
        rows = db.execute(f"SELECT customer_id, {column} FROM customers")
        db.commit()
    return {int(r[0]): r[1] for r in rows}


@pytest.mark.parametrize("name", ["churn_gb", "churn_rf", "churn"])
def test_native_mode_scores_inserts_and_updates_exactly_as_the_native_model(postgres_url,
                                                                           models, name):
    registry, data, fitted, _ = models
    create_customers(postgres_url)
    rows = data.head(400)
    insert(postgres_url, rows.head(100))  # scored by the install's backfill
    inst = trigger.install(name, postgres_url, table="customers", key="customer_id",
                           output="churn", mode="native", registry=registry)
    assert inst.mode == "native"
    insert(postgres_url, rows.iloc[100:])
    with connect(postgres_url) as db:
        db.begin()
        db.execute("UPDATE customers SET support_calls = 7, plan = NULL "
                   "WHERE customer_id <= %s", (int(rows.customer_id.iloc[20]),))
        # text on either side of the length the C trigger copies without allocating
        for k, value in LONG_TEXT.items():
            db.execute("UPDATE customers SET region = %s WHERE customer_id = %s",
                       (value, int(rows.customer_id.iloc[k])))
        db.commit()
    # the model function and the row trigger are the compiled ones
    assert _language(postgres_url, inst.name("model_function")) == "c"
    assert _language(postgres_url, inst.name("score")) == "c"
    changed = rows.copy()
    changed.loc[changed.customer_id <= rows.customer_id.iloc[20],
                ["support_calls", "plan"]] = [7, np.nan]
    for k, value in LONG_TEXT.items():
        changed.loc[changed.customer_id == rows.customer_id.iloc[k], "region"] = value
    want = fitted[name].predict_proba(changed.drop(columns=["customer_id", "churned"]))[:, 1]
    got = _column(postgres_url, "churn")
    values = np.array([got[int(k)] for k in changed.customer_id], dtype=float)
    assert np.max(np.abs(values - want)) <= 1e-9
    assert set(_column(postgres_url, "churn_version").values()) == {1}
    assert trigger.status(postgres_url)[0]["mode"] == "native"
    assert trigger.status(postgres_url)[0]["scored"] == 400


#: row position -> a region: 63, 64 and 200 characters long (the last a known region with
#: more after it), and a known one
LONG_TEXT = {30: "e" * 63, 31: "e" * 64, 32: "east" + "t" * 196, 33: "east"}


def _language(url: str, function: str) -> str:
    with connect(url) as db:
        got = db.execute("SELECT l.lanname FROM pg_proc p JOIN pg_language l ON "
                         "l.oid = p.prolang WHERE p.proname = %s", (function,))
        db.commit()
    return got[0][0]


@pytest.mark.parametrize("types", [
    # the C trigger reads these as the function's parameters receive them
    {"tenure_months": "integer", "support_calls": "smallint", "age": "bigint",
     "monthly_charges": "numeric(10,2)", "data_usage_gb": "real",
     "total_charges": "double precision", "plan": "varchar(40)"},
    # a type it does not read (char(n), which a cast to text trims) keeps PL/pgSQL
    {"plan": "char(12)", "tenure_months": "integer"},
])
def test_column_types_score_as_the_database_casts_them(postgres_url, models, types):
    """The C trigger's reading of each column type is checked against what the SQL
    function gives for the same stored row (the database's own casts), and where it
    cannot read a type the PL/pgSQL trigger is installed instead."""
    registry, data, _, _ = models
    cols = ", ".join(f"{c} {types.get(c, 'text' if c in CATEGORICAL else 'double precision')}"
                     for c in [*NUMERIC, *CATEGORICAL])
    with connect(postgres_url) as db:
        db.begin()
        db.execute(f"CREATE TABLE customers (customer_id bigint PRIMARY KEY, {cols})")
        db.commit()
    inst = trigger.install("churn_gb", postgres_url, table="customers", key="customer_id",
                           output="churn", mode="native", registry=registry)
    rows = data.head(300).copy()
    rows["data_usage_gb"] = rows["data_usage_gb"] * 1.1  # not exact in real
    insert(postgres_url, rows)
    fn = inst.name("model_function")
    args = ", ".join(inst.columns.values())
    with connect(postgres_url) as db:
        got = db.execute(f"SELECT churn, {fn}({args}) FROM customers ORDER BY customer_id")
        db.commit()
    assert len(got) == 300
    assert all(a == b or (a is None and b is None) for a, b in got)
    direct = all(t in ("integer", "smallint", "bigint", "real", "double precision")
                 or t.startswith(("numeric", "varchar")) for t in types.values())
    assert _language(postgres_url, inst.name("score")) == ("c" if direct else "plpgsql")


def test_reasons_keep_the_plpgsql_trigger_beside_the_compiled_score(postgres_url, models):
    registry, data, fitted, _ = models
    create_customers(postgres_url)
    inst = trigger.install("churn", postgres_url, table="customers", key="customer_id",
                           output="churn", mode="native", explain=2, registry=registry)
    insert(postgres_url, data.head(50))
    assert _language(postgres_url, inst.name("model_function")) == "c"
    assert _language(postgres_url, inst.name("score")) == "plpgsql"
    got = _column(postgres_url, "churn")
    want = fitted["churn"].predict_proba(data.head(50).drop(
        columns=["customer_id", "churned"]))[:, 1]
    values = np.array([got[int(k)] for k in data.head(50).customer_id], dtype=float)
    assert np.max(np.abs(values - want)) <= 1e-9
    reasons = _column(postgres_url, "churn_reason_1")
    assert all(reasons[int(k)] in NUMERIC + CATEGORICAL for k in data.head(50).customer_id)


def test_a_label_model_returns_the_native_labels(postgres_url, models):
    registry, data, fitted, _ = models
    plan = fitted["plan"]
    inputs = list(plan.feature_names_in_)
    with connect(postgres_url) as db:
        db.begin()
        cols = ", ".join(f"{c} {'text' if c in CATEGORICAL else 'double precision'}"
                         for c in inputs)
        db.execute(f"CREATE TABLE customers (customer_id bigint PRIMARY KEY, {cols})")
        db.commit()
    rows = data[["customer_id", *inputs]].head(300)
    with connect(postgres_url) as db:
        db.begin()
        marks = ", ".join(["%s"] * (len(inputs) + 1))
        for r in rows.itertuples(index=False):
            db.execute(f"INSERT INTO customers VALUES ({marks})",
                       [None if (isinstance(v, float) and v != v) else
                        (v.item() if hasattr(v, "item") else v) for v in r])
        db.commit()
    trigger.install("plan", postgres_url, table="customers", key="customer_id",
                    output="plan_guess", mode="native", registry=registry)
    got = _column(postgres_url, "plan_guess")
    want = plan.predict(rows[inputs])
    assert [got[int(k)] for k in rows.customer_id] == [str(v) for v in want]


def test_two_models_live_side_by_side_in_one_server_process(postgres_url, models):
    """Each library keeps its model's symbols to itself: one session calling both models'
    functions gets each model's own scores."""
    registry, data, fitted, _ = models
    for table in ("a", "b"):
        create_customers(postgres_url, table)
    trigger.install("churn_gb", postgres_url, table="a", key="customer_id", output="churn",
                    mode="native", registry=registry)
    trigger.install("churn_rf", postgres_url, table="b", key="customer_id", output="churn",
                    mode="native", registry=registry)
    rows = data.head(50)
    with connect(postgres_url) as db:  # one connection, so one server process, scores both
        db.begin()
        for table in ("a", "b"):
            cols = ", ".join(["customer_id", *NUMERIC, *CATEGORICAL])
            marks = ", ".join(["%s"] * (1 + len(NUMERIC) + len(CATEGORICAL)))
            for r in rows[["customer_id", *NUMERIC, *CATEGORICAL]].itertuples(index=False):
                db.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})",
                           [None if (isinstance(v, float) and v != v) else
                            (v.item() if hasattr(v, "item") else v) for v in r])
        got = {t: dict(db.execute(f"SELECT customer_id, churn FROM {t}")) for t in ("a", "b")}
        db.commit()
    X = rows.drop(columns=["customer_id", "churned"])
    for table, name in (("a", "churn_gb"), ("b", "churn_rf")):
        want = fitted[name].predict_proba(X)[:, 1]
        values = np.array([got[table][int(k)] for k in rows.customer_id], dtype=float)
        assert np.max(np.abs(values - want)) <= 1e-9, table


def test_upgrade_between_sql_and_native_and_uninstall_leave_nothing(postgres_url, models):
    registry, data, _, _ = models
    create_customers(postgres_url)
    before = _objects(postgres_url)
    insert(postgres_url, data.head(30))
    trigger.install("churn_gb", postgres_url, table="customers", key="customer_id",
                    output="churn", mode="sql", registry=registry)
    sql_scores = _column(postgres_url, "churn")
    trigger.install("churn_gb", postgres_url, table="customers", key="customer_id",
                    output="churn", mode="native", upgrade=True, registry=registry)
    with connect(postgres_url) as db:
        db.begin()
        db.execute("UPDATE customers SET churn = NULL")
        db.execute("UPDATE customers SET support_calls = support_calls")  # no feature change
        db.commit()
    insert(postgres_url, data.iloc[30:40])
    native = _column(postgres_url, "churn")
    assert all(native[k] is not None for k in range(int(data.customer_id.iloc[30]),
                                                    int(data.customer_id.iloc[40])))
    trigger.uninstall(postgres_url, "customers")
    assert _objects(postgres_url) == before
    assert sql_scores  # both modes scored the table


def test_what_native_mode_needs_is_said_plainly(tmp_path, postgres_url, models):
    registry, _, _, _ = models
    url = f"sqlite:///{tmp_path / 'app.db'}"
    create_customers(url)
    with pytest.raises(UserError, match="native mode compiles the model into a PostgreSQL "
                                        "function"):
        trigger.install("churn", url, table="customers", key="customer_id",
                        output="churn", mode="native", registry=registry)
    # a role that is not a superuser
    role = f"mp_plain_{uuid.uuid4().hex[:8]}"
    create_customers(postgres_url)
    before = _objects(postgres_url)
    with connect(postgres_url) as db:
        db.begin()
        db.execute(f'CREATE ROLE "{role}" LOGIN')
        db.execute(f'GRANT ALL ON SCHEMA public TO "{role}"')
        db.execute(f'GRANT ALL ON customers TO "{role}"')
        db.commit()
    try:
        plain = _as_role(postgres_url, role)
        with pytest.raises(UserError, match="lets only a superuser"):
            trigger.install("churn_gb", plain, table="customers", key="customer_id",
                            output="churn", mode="native", registry=registry)
    finally:
        with connect(postgres_url) as db:
            db.begin()
            db.execute(f'REVOKE ALL ON customers FROM "{role}"')
            db.execute(f'REVOKE ALL ON SCHEMA public FROM "{role}"')
            db.execute(f'DROP ROLE "{role}"')
            db.commit()
    assert _objects(postgres_url) == before


def test_missing_server_headers_are_named_with_the_fix(postgres_url, models, monkeypatch,
                                                       tmp_path):
    """With no pg_config of the server's version to be found, install names the package."""
    registry, _, _, _ = models
    create_customers(postgres_url)
    fake = tmp_path / "pg_config"
    fake.write_text("#!/bin/sh\necho 'PostgreSQL 9.6.1'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PG_CONFIG", str(fake))
    monkeypatch.setenv("PATH", str(tmp_path))
    from modelport.serve.trigger import native

    with connect(postgres_url) as db:
        version = int(db.execute("SHOW server_version_num")[0][0]) // 10000
        db.commit()
    debian = f"/usr/lib/postgresql/{version}/bin/pg_config"
    monkeypatch.setattr(native, "_DEBIAN_PG_CONFIG", str(tmp_path / "none" / "{major}"))
    with pytest.raises(UserError, match=f"install postgresql-server-dev-{version}"):
        trigger.install("churn_gb", postgres_url, table="customers", key="customer_id",
                        output="churn", mode="native", registry=registry)
    assert debian  # the real one is where Debian puts it, and is not consulted here


def test_the_command_line_installs_native_mode(postgres_url, models, tmp_path):
    import os

    _, data, fitted, env = models
    create_customers(postgres_url)
    insert(postgres_url, data.head(40))

    done = subprocess.run(
        [sys.executable, "-m", "modelport", "trigger", "install", "churn_gb", "--db",
         postgres_url, "--table", "customers", "--key", "customer_id", "--output-column", "churn",
         "--mode", "native"],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "native mode" in done.stdout
    got = _column(postgres_url, "churn")
    want = fitted["churn_gb"].predict_proba(data.head(40).drop(
        columns=["customer_id", "churned"]))[:, 1]
    values = np.array([got[int(k)] for k in data.head(40).customer_id], dtype=float)
    assert np.max(np.abs(values - want)) <= 1e-9


def _as_role(url: str, role: str) -> str:
    """``url`` with its user replaced by ``role`` (trust authentication on 127.0.0.1)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(username=role, password=None).render_as_string(
        hide_password=False)
