"""One reading of database URLs (modelport.io.urls) under every surface that opens one."""

from __future__ import annotations

import sqlite3

import pytest

from modelport.errors import UserError
from modelport.io import urls
from modelport.io.sinks import lookup_engine
from modelport.io.tables import connect
from modelport.serve.trigger.db import normalise_url


@pytest.mark.parametrize("url, driver", [
    ("postgresql://u@127.0.0.1/test", "postgresql+psycopg"),
    ("postgres://u@127.0.0.1/test", "postgresql+psycopg"),
    ("mysql://root@127.0.0.1/test", "mysql+pymysql"),
    ("mariadb://root@127.0.0.1/test", "mariadb+pymysql"),
    ("postgresql+psycopg://u@127.0.0.1/test", "postgresql+psycopg"),
    ("mysql+pymysql://root@127.0.0.1/test", "mysql+pymysql"),
])
def test_a_database_named_without_a_driver_gets_modelports_driver(url, driver):
    assert urls.database_url(url).drivername == driver
    # the trigger worker speaks the driver itself: its URL always names psycopg or PyMySQL
    assert normalise_url(url).drivername.split("+")[1] in ("psycopg", "pymysql")


@pytest.mark.parametrize("url, dialect", [
    ("postgresql://h/db", "postgresql"), ("postgres://h/db", "postgresql"),
    ("postgresql+psycopg2://h/db", "postgresql"), ("mysql://h/db", "mysql"),
    ("mariadb+pymysql://h/db", "mysql"), ("sqlite:///a.db", "sqlite"),
    ("mssql://h/db", None), ("customers.csv", None), ("redis://127.0.0.1:6379/0", None),
])
def test_dialect_reads_only_the_scheme(url, dialect):
    assert urls.dialect(url) == dialect


def test_every_reader_of_a_url_hides_its_password(tmp_path):
    secret = "s3cr3t-pw"
    bad = f"postgresql://user:{secret}@[::1/oops"
    for open_ in (lambda u: connect(u, None), lookup_engine, normalise_url, urls.database_url):
        with pytest.raises(UserError) as info:
            open_(bad)
        assert secret not in str(info.value)
        assert "cannot parse the database URL" in str(info.value)
    assert urls.redact(f"postgresql://user:{secret}@host/db") == "postgresql://user:***@host/db"
    assert urls.scrubbed(f"auth failed for {secret}", secret) == "auth failed for ***"


def test_sqlite_files_are_read_only_where_they_exist_and_made_where_written(tmp_path):
    missing = tmp_path / "nested" / "scores.db"
    url = f"sqlite:///{missing}"
    with pytest.raises(UserError, match="no SQLite database at"):
        connect(url, None)
    with pytest.raises(UserError, match="no SQLite database at"):
        lookup_engine(url)
    assert not missing.parent.exists()  # reading made nothing
    engine = lookup_engine(url, create=True)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    engine.dispose()
    assert sqlite3.connect(missing).execute("SELECT count(*) FROM t").fetchone() == (0,)
    # a relative path is taken from the base folder when one is given
    engine = connect("sqlite:///scores.db", missing.parent)
    assert engine.url.database == str(missing)
    engine.dispose()
    for nothing in ("sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=memory"):
        with pytest.raises(UserError, match="names no database file"):
            urls.database_url(nothing)


def test_a_database_triggers_cannot_use_is_refused_by_name():
    with pytest.raises(UserError, match="not supported for triggers"):
        normalise_url("mssql://sa@127.0.0.1/db")
