"""Untrusted text through every SQL modelport writes, on real PostgreSQL, MariaDB and SQLite.

Category values, class labels, column and table names come from data users receive. Each
finding below once let such text end a quoted string or name and run as SQL, or break a
database; each test reproduces one. Then property tests push generated hostile text (quote
closers, backslashes, dollar-quote tags, comment openers, newlines, NUL, non-ASCII, very
long) through the SQL export (PostgreSQL, MariaDB under three sql_modes, SQLite) and
through every trigger mode on every database (native mode on PostgreSQL): each either works and scores exactly as the
native model, or is refused with one line; a canary table proves no payload ever ran.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import modelport
from modelport.compile import export
from modelport.errors import UserError
from modelport.registry import Registry
from modelport.serve import trigger
from modelport.serve.trigger.db import connect
from test_trigger_worker import _objects, drop_mariadb, mariadb_url

from conftest import PG_DSN, need_module, port_open, unavailable

pytestmark = [pytest.mark.services,
              pytest.mark.filterwarnings("ignore:Found unknown categories")]

NUM = "amount"
#: the statement every payload tries: the canary table must outlive every test
DROP = "DROP TABLE canary"
MYSQL_MODES = ["", "NO_BACKSLASH_ESCAPES", "ANSI_QUOTES,NO_BACKSLASH_ESCAPES"]


# -- databases, each with a canary ---------------------------------------------------------

def _pg_database() -> tuple[str, str]:
    psycopg = need_module("psycopg", "postgres")
    if not port_open("127.0.0.1", 5432):
        unavailable("PostgreSQL is not running on 127.0.0.1:5432")
    name = f"mp_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_DSN.rsplit('/', 1)[0]}/{name}", name


def _drop_pg(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _with_canary(url: str) -> str:
    with connect(url) as db:
        db.execute("CREATE TABLE canary (v INTEGER)")
        db.execute("INSERT INTO canary (v) VALUES (42)")
        db.commit()
    return url


def canary_alive(url: str) -> bool:
    with connect(url) as db:
        try:
            rows = db.execute("SELECT v FROM canary")
        except Exception:  # noqa: BLE001 - a dropped canary is the failure reported
            return False
        finally:
            db.rollback()
    return rows == [(42,)]


@pytest.fixture(scope="module")
def databases(tmp_path_factory):
    """One database of each kind, each with a canary table, for the whole module."""
    pg_url, pg_name = _pg_database()
    my_url, my_name = mariadb_url()
    lite = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'app.db'}"
    urls = {"postgresql": pg_url, "mysql": my_url, "sqlite": lite}
    try:
        for url in urls.values():
            _with_canary(url)
        yield urls
    finally:
        _drop_pg(pg_name)
        drop_mariadb(my_name)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile-registry")


@pytest.fixture(scope="module")
def registry(home):
    return Registry(f"sqlite:///{home / 'registry.db'}", str(home / "artefacts"))


def _quoted(name: str, dialect: str) -> str:
    """The test's own quoting, independent of the code under test, for setting up tables."""
    if dialect == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def _sql_mode(mode: str | None):
    """Every MariaDB connection modelport opens runs under ``mode``."""
    if not mode:
        yield
        return
    from modelport.serve.trigger.mysql import MariaDB

    opened = MariaDB._open

    def _open(self, url):
        conn = opened(self, url)
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = %s", (mode,))
        return conn

    with mock.patch.object(MariaDB, "_open", _open):
        yield


def insert_rows(cur, dialect: str, into: str, rows: list[tuple]) -> None:
    """``INSERT INTO <into> VALUES`` the rows, by parameters: one statement on PostgreSQL
    and MariaDB, whose drivers read every % of it as a placeholder (so a % in a name is
    doubled), executemany on SQLite."""
    if not rows:
        return
    if dialect == "sqlite":
        cur.executemany(f"INSERT INTO {into} VALUES ({', '.join('?' * len(rows[0]))})", rows)
        return
    row = f"({', '.join(['%s'] * len(rows[0]))})"
    cur.execute(f"INSERT INTO {into.replace('%', '%%')} VALUES "
                + ", ".join([row] * len(rows)), [v for r in rows for v in r])


def _pymysql(url: str, mode: str = ""):
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="",
                           database=url.rsplit("/", 1)[1], charset="utf8mb4", autocommit=True)
    with conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = %s", (mode,))
    return conn


# -- models over hostile text --------------------------------------------------------------

_names = itertools.count()


def fitted(categories: list[str], column: str = "plan", labels: list[str] | None = None):
    """A logistic pipeline over a number and one categorical column named ``column``,
    trained on ``categories`` (each moves the score); with ``labels``, a three-class one
    predicting those labels. Returns (model, training frame)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cats = list(dict.fromkeys(["plain", *categories]))
    n = max(6 * len(cats), 36)
    X = pd.DataFrame({NUM: [float(i % 5) for i in range(n)],
                      column: [cats[i % len(cats)] for i in range(n)]})
    if labels:
        y = [labels[(i + i // len(cats)) % len(labels)] for i in range(n)]
    else:
        y = [int((i % len(cats)) % 2 == (i // len(cats)) % 2) for i in range(n)]
    pre = ColumnTransformer([("num", StandardScaler(), [NUM]),
                             ("cat", OneHotEncoder(handle_unknown="ignore"), [column])])
    model = Pipeline([("pre", pre), ("clf", LogisticRegression(C=10.0, max_iter=500))])
    return model.fit(X, y), X


def register(model, X, registry) -> str:
    name = f"hostile{next(_names)}"
    modelport.log_model(model, name, sample=X, formats=["joblib"], registry=registry)
    return name


def native(model, X: pd.DataFrame):
    """The native score of each row: the positive-class probability of a binary
    classifier, else the label."""
    if len(model.classes_) == 2:
        return model.predict_proba(X)[:, 1]
    return model.predict(X)


def assert_same(got, want, what: str) -> None:
    if isinstance(want[0], str):
        assert [str(g) for g in got] == [str(w) for w in want], what
    else:
        diff = np.max(np.abs(np.asarray(got, dtype=float) - np.asarray(want, dtype=float)))
        assert diff <= 1e-9, f"{what}: differs by {diff}"


def one_line(exc: BaseException) -> bool:
    return isinstance(exc, UserError) and "\n" not in str(exc)


# -- the findings, one test each -----------------------------------------------------------

def test_a_crafted_category_cannot_make_the_mysql_function_read_another_table(
        databases, registry, tmp_path):
    """Category literals doubled quotes but left backslashes, which MariaDB's default
    sql_mode reads as escapes: ``!\\`` swallowed the SQL up to the next literal, whose text
    then ran as SQL inside the exported function, here reading another table."""
    url = databases["mysql"]
    payload = ") THEN 1 ELSE (SELECT COUNT(*) FROM secrets) END))), 700), -700))) -- "
    model, X = fitted(["!\\", payload])
    name = register(model, X, registry)
    files = export(name, "sql", tmp_path, dialect="mysql", registry=registry)
    function = next(f for f in files if f.name.endswith(".function.sql")).read_bytes().decode()
    rows = X.drop_duplicates(subset=["plan"])
    for mode in MYSQL_MODES:
        conn = _pymysql(url, mode)
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS secrets (v INT)")
            cur.execute(function)
            cur.execute("SELECT ROUTINE_DEFINITION FROM information_schema.ROUTINES WHERE "
                        "ROUTINE_SCHEMA = DATABASE() AND ROUTINE_NAME = %s", (f"{name}_score",))
            assert "secrets" not in cur.fetchone()[0].replace(payload, "")
            got = []
            for amount, plan in rows.itertuples(index=False):
                cur.execute(f"SELECT `{name}_score`(%s, %s)", (amount, plan))
                got.append(cur.fetchone()[0])
            cur.execute(f"DROP FUNCTION `{name}_score`")
        conn.close()
        assert_same(got, native(model, rows), f"sql_mode {mode!r}")


def test_a_category_ending_in_a_backslash_installs_in_sql_mode_on_mariadb(databases, registry):
    url = databases["mysql"]
    model, X = fitted(["a\\", "b"])
    name = register(model, X, registry)
    with connect(url) as db:
        db.execute("CREATE TABLE backslash (id BIGINT PRIMARY KEY, amount DOUBLE, "
                   "plan VARCHAR(40))")
        db.commit()
    rows = X.drop_duplicates(subset=["plan"]).reset_index(drop=True)
    try:
        trigger.install(name, url, table="backslash", key="id", output="score", mode="sql",
                        registry=registry)
        with connect(url) as db:
            cur = db.conn.cursor()
            cur.executemany("INSERT INTO backslash (id, amount, plan) VALUES (%s, %s, %s)",
                            [(i, a, p) for i, (a, p) in enumerate(rows.itertuples(index=False))])
            db.commit()
            got = [r[0] for r in db.execute("SELECT score FROM backslash ORDER BY id")]
            db.commit()
        assert_same(got, native(model, rows), "SQL mode on MariaDB")
        trigger.uninstall(url, "backslash")
    finally:
        with connect(url) as db:
            db.execute("DROP TABLE backslash")
            db.commit()
    assert canary_alive(url)


@pytest.mark.parametrize("mode", MYSQL_MODES)
def test_a_windows_path_category_exports_a_function_mariadb_accepts(databases, registry,
                                                                    tmp_path, mode):
    url = databases["mysql"]
    model, X = fitted(["C:\\dir\\", "D:\\"])
    name = register(model, X, registry)
    files = export(name, "sql", tmp_path, dialect="mysql", registry=registry)
    function = next(f for f in files if f.name.endswith(".function.sql")).read_bytes().decode()
    rows = X.drop_duplicates(subset=["plan"])
    conn = _pymysql(url, mode)
    with conn.cursor() as cur:
        cur.execute(function)
        got = []
        for amount, plan in rows.itertuples(index=False):
            cur.execute(f"SELECT `{name}_score`(%s, %s)", (amount, plan))
            got.append(cur.fetchone()[0])
        cur.execute(f"DROP FUNCTION `{name}_score`")
    conn.close()
    assert_same(got, native(model, rows), f"sql_mode {mode!r}")


def test_a_dollar_quote_in_a_category_cannot_end_the_postgresql_function_under_psql(
        databases, registry, tmp_path):
    """The function body was quoted ``$modelport$...$modelport$``: a category holding the
    tag ended it early, and ``psql -f`` ran what followed."""
    if not port_open("127.0.0.1", 5432):
        unavailable("PostgreSQL is not running on 127.0.0.1:5432")
    url = databases["postgresql"]
    model, X = fitted([f"x$modelport$; {DROP}; SELECT $modelport$"])
    name = register(model, X, registry)
    files = export(name, "sql", tmp_path, dialect="postgresql",
                                     registry=registry)
    function = next(f for f in files if f.name.endswith(".function.sql"))
    # as a user loads it: psql goes on after an error
    done = subprocess.run(["psql", "-X", "-q", "-d", url, "-f", str(function)],
                          capture_output=True, text=True, timeout=60)
    assert canary_alive(url), done.stderr
    assert done.returncode == 0 and "ERROR" not in done.stderr, done.stderr
    rows = X.drop_duplicates(subset=["plan"])
    with connect(url) as db:
        got = [db.execute(f'SELECT "{name}_score"(%s, %s)', (a, p))[0][0]
               for a, p in rows.itertuples(index=False)]
        db.execute(f'DROP FUNCTION "{name}_score"')
        db.commit()
    assert_same(got, native(model, rows), "psql-loaded function")


def test_the_export_check_in_sqlite_quotes_column_names(registry, tmp_path):
    """The SQLite check wrote ``"name"`` without doubling quotes: a column named with a
    quote failed the export with a raw sqlite3 error."""
    column = 'pl"an'
    model, X = fitted(["basic", "premium"], column=column)
    name = register(model, X, registry)
    files = export(name, "sql", tmp_path, dialect="sqlite", registry=registry)
    expr = next(f for f in files if f.name.endswith(".expr.sql")).read_bytes().decode()
    with sqlite3.connect(":memory:") as memory:
        memory.execute(f'CREATE TABLE t ({NUM} REAL, "pl""an" TEXT)')
        memory.executemany("INSERT INTO t VALUES (?, ?)", list(X.itertuples(index=False)))
        got = [r[0] for r in memory.execute(f"SELECT {expr} FROM t")]
    assert_same(got, native(model, X), "the exported SQLite expression")


def test_a_worker_trigger_on_a_long_non_ascii_table_name_lets_inserts_through(
        databases, registry):
    """pg_notify takes channel names of at most 63 bytes; the name was cut at 60
    characters, so on this table every application INSERT failed after the install."""
    url = databases["postgresql"]
    table = "kundenübersicht_" + "ä" * 23  # 39 characters, 62 bytes
    model, X = fitted(["basic", "premium"])
    name = register(model, X, registry)
    with connect(url) as db:
        db.execute(f'CREATE TABLE "{table}" (id bigint PRIMARY KEY, amount double precision, '
                   "plan text)")
        db.commit()
    trigger.install(name, url, table=table, key="id", output="score", registry=registry)
    rows = X.head(12)
    with connect(url) as db:
        cur = db.conn.cursor()
        cur.executemany(f'INSERT INTO "{table}" (id, amount, plan) VALUES (%s, %s, %s)',
                        [(i, a, p) for i, (a, p) in enumerate(rows.itertuples(index=False))])
        db.commit()
    trigger.run(url, once=True, registry=registry, tables=[table])
    with connect(url) as db:
        got = [r[0] for r in db.execute(f'SELECT score FROM "{table}" ORDER BY id')]
        db.commit()
    assert_same(got, native(model, rows), "the worker")
    trigger.uninstall(url, table)


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def one_database(request, databases):
    return databases[request.param]


def test_uninstall_and_upgrade_never_run_sql_read_from_the_bookkeeping_table(
        one_database, registry):
    """``modelport_triggers`` held the statements that remove an installation, and
    ``uninstall`` / ``--upgrade`` ran them: whoever could write that table ran SQL as the
    installer. Now a row that modelport could not have written is refused, and the
    statements stored by earlier versions are never run."""
    url = one_database
    model, X = fitted(["basic", "premium"])
    name = register(model, X, registry)
    with connect(url) as db:
        db.execute(f"CREATE TABLE tampered (id BIGINT PRIMARY KEY, amount {_real(db)}, "
                   f"plan {_text(db)})")
        db.commit()
    trigger.install(name, url, table="tampered", key="id", output="score", registry=registry)
    with connect(url) as db:
        spec = json.loads(db.execute("SELECT spec FROM modelport_triggers")[0][0])
        db.commit()

    def store(record: dict) -> None:
        with connect(url) as db:
            db.execute(f"UPDATE modelport_triggers SET spec = {db.param}",
                       (json.dumps(record),))
            db.commit()

    # what an earlier version stored: statements, never run now
    legacy = {k: v for k, v in spec.items() if k != "objects"} | {"drops": [DROP]}
    store(legacy)
    try:
        trigger.install(name, url, table="tampered", key="id", output="score", upgrade=True,
                        registry=registry)
    finally:
        assert canary_alive(url)
    store(legacy)
    try:
        assert trigger.uninstall(url, "tampered") == ["tampered"]
    finally:
        assert canary_alive(url)
    # names pointed at something else, SQL in a type, a column install never adds
    trigger.install(name, url, table="tampered", key="id", output="score", registry=registry)
    for change in ({"objects": {**spec["objects"], "queue": "canary"}},
                   {"key_type": f"bigint); {DROP}; --"},
                   {"added_columns": ["amount"]},
                   {"mode": "sql"}):
        store(spec | change)
        for act in (lambda: trigger.uninstall(url, "tampered"),
                    lambda: trigger.install(name, url, table="tampered", key="id",
                                            output="score", upgrade=True, registry=registry),
                    lambda: trigger.status(url)):
            with pytest.raises(UserError, match="modelport_triggers row of table 'tampered'"
                               ) as refused:
                act()
            assert one_line(refused.value)
        assert canary_alive(url)
    store(spec)
    trigger.uninstall(url, "tampered")
    with connect(url) as db:
        assert list(db.columns("tampered")) == ["id", "amount", "plan"]
        db.execute("DROP TABLE tampered")
        db.commit()


def _real(db) -> str:
    return "DOUBLE" if db.dialect == "mysql" else "DOUBLE PRECISION"


def _text(db) -> str:
    return "VARCHAR(255)" if db.dialect == "mysql" else "TEXT"


def test_attach_quotes_table_and_column_names(registry, tmp_path):
    """``attach`` wrote ``"{table}"`` without doubling quotes."""
    column, table, output = 'pl"an', 'cust"omers; --', 'sc"ore'
    model, X = fitted(["basic", "premium"], column=column)
    name = register(model, X, registry)
    path = tmp_path / "app.db"
    app = sqlite3.connect(path)
    app.execute("CREATE TABLE canary (v INTEGER)")
    app.execute("INSERT INTO canary VALUES (42)")
    app.execute(f'CREATE TABLE "cust""omers; --" (id INTEGER PRIMARY KEY, {NUM} REAL, '
                '"pl""an" TEXT)')
    trigger.attach(app, name, table=table, key="id", output_column=output, registry=registry)
    rows = X.head(10)
    app.executemany('INSERT INTO "cust""omers; --" (id, amount, "pl""an") VALUES (?, ?, ?)',
                    [(i, a, p) for i, (a, p) in enumerate(rows.itertuples(index=False))])
    app.commit()
    got = [r[0] for r in app.execute('SELECT "sc""ore" FROM "cust""omers; --" ORDER BY id')]
    assert np.max(np.abs(np.asarray(got) - native(model, rows))) < 1e-6
    assert app.execute("SELECT v FROM canary").fetchall() == [(42,)]
    app.close()


def test_no_trigger_command_prints_the_database_password(databases, registry, home):
    """``trigger install`` printed the database URL, password included, in its hint."""
    url = databases["postgresql"]
    secret = "s3cret-Pa55"
    with_password = url.replace("postgres@", f"postgres:{secret}@", 1)  # trust: not checked
    model, X = fitted(["basic", "premium"])
    name = register(model, X, registry)
    with connect(url) as db:
        db.execute("CREATE TABLE secretive (id bigint PRIMARY KEY, amount double precision, "
                   "plan text)")
        db.commit()
    env = {**os.environ, "MODELPORT_REGISTRY": f"sqlite:///{home / 'registry.db'}",
           "MODELPORT_ARTIFACTS": str(home / "artefacts")}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "modelport", "trigger", *args],
                              env=env, capture_output=True, text=True, timeout=120)

    runs = [cli("install", name, "--db", with_password, "--table", "secretive", "--key", "id",
                "--output-column", "score"),
            cli("status", "--db", with_password),
            cli("status", "--db", with_password, "--json"),
            cli("install", name, "--db", with_password, "--table", "missing", "--key", "id",
                "--output-column", "score"),
            cli("install", name, "--db", with_password.replace(":5432/", ":1/"), "--table",
                "secretive", "--key", "id", "--output-column", "score"),
            cli("run", "--db", with_password, "--once"),
            cli("uninstall", "--db", with_password)]
    assert [r.returncode for r in runs] == [0, 0, 0, 2, 2, 0, 0], [r.stderr for r in runs]
    assert "modelport trigger run" in runs[0].stdout and "***" in runs[0].stdout
    for done in runs:
        assert secret not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr


# -- properties: generated hostile text through export and triggers -------------------------

FAMILIES = {
    "quotes": ["'", '"', "`", "''", "'); DROP TABLE canary; --", '"; DROP TABLE canary; --',
               "`; DROP TABLE canary; --"],
    "backslashes": ["\\", "a\\", "C:\\dir\\", "\\'); DROP TABLE canary; -- ", "\\\\"],
    "dollar tags": ["$modelport$", "$modelport1$", "x$modelport", "$$",
                    "$modelport$; DROP TABLE canary; SELECT $modelport$"],
    "comments": ["--", "-- ", "/*", "*/", "#", "/*!50000 DROP TABLE canary*/"],
    "newlines": ["\n", "\r\n", "\r", "\u2028"],
    "NUL": ["\x00", "a\x00b"],
    "non-ASCII": ["é", "日本語", "😀", "\u202e", "Ä" * 32],
    "long": ["x" * 300, "é" * 40, "n" * 70],
}
PIECES = [p for family in FAMILIES.values() for p in family]
piece = st.one_of(st.sampled_from(PIECES), st.text(min_size=1, max_size=3))
hostile = st.one_of(st.sampled_from(PIECES),
                    st.lists(piece, min_size=1, max_size=4).map("".join))


def family_examples(**cycled):
    """One explicit example per family of hostile text (its last and first members),
    run before the generated ones; ``cycled`` gives further arguments in turn."""

    def decorate(test):
        for i, family in enumerate(FAMILIES.values()):
            extra = {k: v[i % len(v)] for k, v in cycled.items()}
            test = example(first=family[-1], second=family[0], **extra)(test)
        return test

    return decorate


def _clean(text: str) -> str:
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _column(text: str, default: str) -> str:
    """Hostile text as a column name pandas can train on (not NUL: no database holds one,
    as the quoting tests show), and not a name the model already uses."""
    text = text.replace("\x00", "")
    return text if text not in ("", NUM, "id", "plain") else default


def _insertable(value: str, dialect: str) -> bool:
    return dialect != "postgresql" or "\x00" not in value


def _export_and_load(dialect, url, registry, tmp_path, model, X, name, reasons=False):
    """Export ``name`` for ``dialect`` with the in-database check, load the function file
    as a user would (psql; MariaDB under each sql_mode) and score the training rows with
    it and with the expression file. Returns each way's scores."""
    out = tmp_path / f"{name}-{dialect}"
    check = url if dialect != "sqlite" else None
    files = export(name, "sql", out, dialect=dialect, check_url=check,
                                     registry=registry)
    if reasons:
        # what exports scores exports its reasons: the names come back exactly (the export
        # proves them on the sample in SQLite and, with check_url, in the database)
        explained = export(name, "sql", tmp_path / f"{name}-{dialect}-reasons",
                           dialect=dialect, check_url=check, registry=registry, explain=2)
        listed = next(f for f in explained if f.name.endswith("_reasons.select.sql"))
        if dialect == "sqlite":
            cols = ", ".join(_quoted(c, dialect) for c in X.columns)
            with sqlite3.connect(":memory:") as memory:
                memory.execute(f"CREATE TABLE t ({cols})")
                insert_rows(memory, "sqlite", "t",
                            [tuple(r) for r in X.itertuples(index=False)])
                # bytes: reading text would turn a "\r\n" inside a name into "\n"
                named = memory.execute(
                    f"SELECT {listed.read_bytes().decode()} FROM t").fetchall()
            want = registry.load(name, format="joblib").explain(X, top=2)
            assert [r[0] for r in named] == want[want["rank"] == 1]["column"].tolist()
            assert {r[2] for r in named} <= set(X.columns)
    expr = next(f for f in files if f.name.endswith(".expr.sql")).read_bytes().decode()
    rows = [tuple(r) for r in X.itertuples(index=False)]
    cols = ", ".join(_quoted(c, dialect) for c in X.columns)
    got = {}
    if dialect == "sqlite":
        with sqlite3.connect(":memory:") as memory:
            memory.execute(f"CREATE TABLE t ({cols})")
            insert_rows(memory, "sqlite", "t", rows)
            got["expression"] = [r[0] for r in memory.execute(f"SELECT {expr} FROM t")]
        return got
    function = next(f for f in files if f.name.endswith(".function.sql"))
    fn = _quoted(f"{name}_score", dialect)
    calls = ", ".join(f"{fn}(%s, %s)" for _ in rows)
    params = [v for r in rows for v in r]
    if dialect == "postgresql":
        done = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f",
                               str(function)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        with connect(url) as db:
            got["function"] = list(db.execute(f"SELECT {calls}", params)[0])
            db.execute(f"CREATE TEMP TABLE t ({cols.replace(',', ' float8,', 1)} text)")
            insert_rows(db.conn.cursor(), "postgresql", "t", rows)
            got["expression"] = [r[0] for r in db.execute(f"SELECT {expr} FROM t")]
            db.execute(f"DROP FUNCTION {fn}")
            db.rollback()
        return got
    for mode in MYSQL_MODES:
        conn = _pymysql(url, mode)
        with conn.cursor() as cur:
            cur.execute(function.read_bytes().decode())
            cur.execute(f"SELECT {calls}", params)
            got[f"function, sql_mode {mode!r}"] = list(cur.fetchone())
            cur.execute(f"CREATE TEMPORARY TABLE t ({cols.replace(',', ' DOUBLE,', 1)} "
                        "LONGTEXT)")
            insert_rows(cur, "mysql", "t", rows)
            cur.execute(f"SELECT {expr} FROM t")
            got[f"expression, sql_mode {mode!r}"] = [r[0] for r in cur.fetchall()]
            cur.execute(f"DROP FUNCTION {fn}")
        conn.close()
    return got


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(first=hostile, second=hostile)
@family_examples()
def test_hostile_categories_labels_and_column_names_through_sql_export(
        databases, registry, tmp_path, first, second):
    first, second = _clean(first), _clean(second)
    column = _column(second, "plan")
    for labels in (None, ["plain", first, second + "!"]):
        model, X = fitted([first, second], column=column, labels=labels)
        try:
            name = register(model, X, registry)
        except UserError as exc:
            assert one_line(exc)
            continue
        want = native(model, X)
        for dialect, url in databases.items():
            try:
                got = _export_and_load(dialect, url, registry, tmp_path, model, X, name,
                                       reasons=labels is None)
            except UserError as exc:
                assert one_line(exc), exc
                continue
            finally:
                assert canary_alive(url), (dialect, first, second)
            for way, values in got.items():
                assert_same(values, want, f"{dialect} {way}")


def _create(url: str, table: str, column: str) -> bool:
    """The scored table, named by hostile text; False when the database cannot hold it."""
    with connect(url) as db:
        d = db.dialect
        text = "VARCHAR(1000)" if d == "mysql" else "TEXT"
        try:
            db.execute(f"DROP TABLE IF EXISTS {_quoted(table, d)}")
            db.execute(f"CREATE TABLE {_quoted(table, d)} (id BIGINT PRIMARY KEY, "
                       f"{NUM} {_real(db)}, {_quoted(column, d)} {text})")
            db.commit()
        except Exception:  # noqa: BLE001 - the database refused the name
            db.rollback()
            return False
        return db.columns(table) != {}


def _through_triggers(url, registry, name, model, X, table, column, output):
    """Install, score, uninstall in each mode: exact scores or a one-line refusal, and
    nothing left behind."""
    made = _create(url, table, column)
    with connect(url) as db:
        d = db.dialect
    before = _objects(url)
    if not made:
        with pytest.raises(UserError) as refused:
            trigger.install(name, url, table=table, key="id", output=output, registry=registry)
        assert one_line(refused.value)
        return
    t, c = _quoted(table, d), _quoted(column, d)
    rows = [(i, a, p) for i, (a, p) in enumerate(X.itertuples(index=False))
            if _insertable(p, d)]
    half = len(rows) // 2
    into = f"{t} (id, {NUM}, {c})"
    # native mode (the model compiled to C) is PostgreSQL's
    for mode in ("worker", "sql", *(("native",) if d == "postgresql" else ())):
        with connect(url) as db:
            db.execute(f"DELETE FROM {t}")
            insert_rows(db.conn.cursor(), d, into, rows[:half])
            db.commit()
        try:
            trigger.install(name, url, table=table, key="id", output=output, mode=mode,
                            registry=registry)
        except UserError as exc:
            assert one_line(exc), exc
            assert _objects(url) == before, mode
            continue
        with connect(url) as db:
            insert_rows(db.conn.cursor(), d, into, rows[half:])
            db.commit()
        if mode == "worker":
            trigger.run(url, once=True, registry=registry, tables=[table])
        with connect(url) as db:
            read = db.execute(f"SELECT {NUM}, {c}, {_quoted(output, d)} FROM {t} ORDER BY id")
            db.commit()
        frame = pd.DataFrame([r[:2] for r in read], columns=[NUM, column])
        assert_same([r[2] for r in read], native(model, frame), f"{d} {mode} mode")
        assert trigger.uninstall(url, table) == [table]
        assert _objects(url) == before, mode
    with connect(url) as db:
        db.execute(f"DROP TABLE {t}")
        db.commit()


@settings(max_examples=15, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(first=hostile, second=hostile, mode=st.sampled_from(MYSQL_MODES))
@family_examples(mode=MYSQL_MODES)
def test_hostile_table_column_and_category_names_through_every_trigger_mode(
        databases, registry, first, second, mode):
    first, second = _clean(first), _clean(second)
    column = _column(first, "plan")
    table = second if second not in ("", "canary") else "scored"
    output = (second + "_score")[-40:]
    model, X = fitted([first, second], column=column)
    try:
        name = register(model, X, registry)
    except UserError as exc:
        assert one_line(exc)
        return
    for url in databases.values():
        with _sql_mode(mode if url.startswith("mysql") else None):
            _through_triggers(url, registry, name, model, X, table, column, output)
        assert canary_alive(url), (url, first, second)
