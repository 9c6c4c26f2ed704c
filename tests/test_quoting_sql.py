"""The SQL quoting layer: every literal reads back as exactly its text in PostgreSQL, in
MariaDB under every sql_mode (default, NO_BACKSLASH_ESCAPES, ANSI_QUOTES, ANSI) and in
SQLite; every identifier names exactly its column; dollar quotes never close early; names
modelport derives fit 63 bytes and are the same for the same input; what a database cannot
hold is refused with one line naming it."""

from __future__ import annotations

import sqlite3
import uuid

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from modelport.errors import UserError
from modelport.quoting.sql import (
    NAME_BYTES,
    derived_name,
    dollar_quoted,
    fit,
    identifier,
    is_derived_name,
    literal,
)

from conftest import PG_DSN, need_module, port_open, unavailable

#: one of each family of text that breaks naive quoting
FAMILIES = {
    "quotes": ["'", '"', "`", "''", "\\'", "'); DROP TABLE canary; --"],
    "backslashes": ["\\", "a\\", "C:\\dir\\", "\\\\'", "\\x41\\n"],
    "dollar tags": ["$modelport$", "x$modelport", "$modelport1$$modelport$", "$$"],
    "comments": ["--", "/*", "*/", "#", "/*!50000 x*/"],
    "newlines": ["\n", "\r\n", "\r", "\u2028", "\t"],
    "non-ASCII": ["é", "日本語", "😀", "\u202e", "e\u0301", "\x85"],
    "long": ["x" * 300, "é" * 70],
}
PIECES = [p for family in FAMILIES.values() for p in family]
hostile = st.one_of(
    st.sampled_from(PIECES),
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=4)), min_size=1,
             max_size=5).map("".join))
MODES = ["", "NO_BACKSLASH_ESCAPES", "ANSI_QUOTES", "ANSI,NO_BACKSLASH_ESCAPES"]
SETTINGS = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _text(value: str) -> str:
    return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


@pytest.fixture(scope="module")
def pg():
    psycopg = need_module("psycopg", "postgres")
    if not port_open("127.0.0.1", 5432):
        unavailable("PostgreSQL is not running on 127.0.0.1:5432")
    conn = psycopg.connect(PG_DSN, autocommit=True)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def mariadb():
    pymysql = need_module("pymysql", "mysql")
    if not port_open("127.0.0.1", 3306):
        unavailable("MariaDB is not running on 127.0.0.1:3306")
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="",
                           database="test", charset="utf8mb4", autocommit=True)
    yield conn
    conn.close()


def _mysql_select(conn, mode: str, expression: str):
    with conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = %s", (mode,))
        cur.execute(f"SELECT {expression}")
        return cur.fetchone()[0]


@SETTINGS
@given(value=hostile)
@example(value="a\x00b")
@example(value="standard_conforming_strings \\' off")
def test_a_literal_reads_back_as_its_text_in_every_database_and_mode(pg, mariadb, value):
    value = _text(value)
    if "\x00" in value:
        with pytest.raises(UserError, match="NUL") as refused:
            literal(value, "postgresql", "category")
        assert "\n" not in str(refused.value)
    else:
        assert pg.execute(f"SELECT {literal(value, 'postgresql')}").fetchone()[0] == value
        # E'...' reads the same with the old backslash-escaping default
        pg.execute("SET standard_conforming_strings = off")
        try:
            assert pg.execute(f"SELECT {literal(value, 'postgresql')}").fetchone()[0] == value
        finally:
            pg.execute("SET standard_conforming_strings = on")
    for mode in MODES:
        got = _mysql_select(mariadb, mode, literal(value, "mysql"))
        assert (got.decode("utf-8") if isinstance(got, bytes) else got) == value, mode
    with sqlite3.connect(":memory:") as memory:
        assert memory.execute(f"SELECT {literal(value, 'sqlite')}").fetchone()[0] == value


@SETTINGS
@given(name=hostile)
@example(name='we"ird`name')
def test_an_identifier_names_exactly_its_column_or_is_refused(pg, mariadb, name):
    name = _text(name)
    for dialect in ("postgresql", "mysql", "sqlite"):
        try:
            quoted = identifier(name, dialect, "column name")
        except UserError as exc:
            assert "\n" not in str(exc) and "column name" in str(exc)
            continue
        sql = f"SELECT 1 AS {quoted}"
        if dialect == "postgresql":
            got = pg.execute(sql).description[0].name
        elif dialect == "mysql":
            # MariaDB trims the leading spaces of an alias, never of a column's name
            with mariadb.cursor() as cur:
                for mode in MODES:
                    cur.execute("SET SESSION sql_mode = %s", (mode,))
                    cur.execute(f"CREATE TEMPORARY TABLE mp_quoting ({quoted} INT)")
                    try:
                        cur.execute(f"SELECT {quoted} FROM mp_quoting")
                        assert cur.description[0][0] == name, mode
                    finally:
                        cur.execute("DROP TEMPORARY TABLE mp_quoting")
            continue
        else:
            with sqlite3.connect(":memory:") as memory:
                got = memory.execute(sql).description[0][0]
        assert got == name, dialect


def test_what_a_database_cannot_hold_is_refused_with_one_line():
    cases = [("a\x00b", "postgresql"), ("a\x00b", "mysql"), ("a\x00b", "sqlite"),
             ("é" * 32, "postgresql"), ("x" * 65, "mysql"), ("😀", "mysql"),
             ("trailing ", "mysql"), ("", "sqlite"), ("\ud800", "postgresql")]
    for name, dialect in cases:
        with pytest.raises(UserError, match="--table") as refused:
            identifier(name, dialect, "--table")
        assert "\n" not in str(refused.value)
    assert identifier("é" * 31, "postgresql") == '"' + "é" * 31 + '"'  # 62 bytes
    assert identifier("x" * 64, "mysql") == "`" + "x" * 64 + "`"
    with pytest.raises(UserError, match="lone surrogate"):
        literal("a\udc80", "mysql")
    assert literal("a\x00b", "sqlite") == "CAST(X'610062' AS TEXT)"
    assert literal("a\r\nb", "sqlite") == "CAST(X'610D0A62' AS TEXT)"
    assert literal("a\x00b", "mysql") == "_utf8mb4 X'610062'"


def test_a_dollar_quote_takes_a_tag_its_body_does_not_hold(pg):
    for body in ["plain", "x $modelport$ y", "ends in $modelport", "$modelport$$modelport1$",
                 "$modelport2$ and $modelport$ and $modelport1$"]:
        quoted = dollar_quoted(body)
        tag = quoted[:quoted.index("$", 1) + 1]
        assert quoted.endswith(tag) and tag not in body + "$"
        assert pg.execute(f"SELECT {quoted}").fetchone()[0] == body


def test_derived_names_fit_63_bytes_are_stable_and_distinct():
    names = ["customers", "Customers", "kunden-übersicht", "ä" * 40, "x" * 100, "x" * 101,
             'a"; DROP TABLE canary; --', "a-b", "a_b"]
    derived = [derived_name("modelport_queue", n) for n in names]
    assert derived[0] == "modelport_queue_customers"  # plain names keep their old form
    assert len(set(derived)) == len(derived)
    assert all(is_derived_name(d) and len(d.encode()) <= NAME_BYTES for d in derived)
    assert derived == [derived_name("modelport_queue", n) for n in names]
    assert not is_derived_name("customers") and not is_derived_name('modelport_"x"')
    for stem in ["churn", "é" * 40, "x" * 80]:
        name = fit(stem, "_scored_at")
        assert len(name.encode()) <= NAME_BYTES and name.endswith("_scored_at")
        assert name == fit(stem, "_scored_at") != fit(stem, "_status")
    assert fit("churn", "_version") == "churn_version"


@pytest.mark.parametrize("mode", MODES)
def test_derived_and_fitted_names_are_kept_whole_by_the_databases(pg, mariadb, mode):
    stem = "übersicht_" + "ä" * 40
    for name in (fit(stem, "_scored_at"), derived_name("modelport", stem)):
        assert pg.execute(f"SELECT 1 AS {identifier(name, 'postgresql')}"
                          ).description[0].name == name
        table = identifier(f"{name[:40]}_{uuid.uuid4().hex[:8]}", "mysql")
        with mariadb.cursor() as cur:
            cur.execute("SET SESSION sql_mode = %s", (mode,))
            cur.execute(f"CREATE TEMPORARY TABLE {table} ({identifier(name, 'mysql')} INT)")
            cur.execute(f"SELECT {identifier(name, 'mysql')} FROM {table}")
            assert cur.description[0][0] == name
            cur.execute(f"DROP TEMPORARY TABLE {table}")
