"""Reading whole tables by path or URL: files, Parquet folders, SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine

from modelport.datasets import churn
from modelport.errors import UserError
from modelport.io import read_table, write_table


@pytest.fixture(scope="module")
def customers():
    return churn.generate(300, seed=2)


def assert_same_table(read, written):
    assert list(read.columns) == list(written.columns)
    assert len(read) == len(written)
    for name in written.columns:
        if written[name].dtype.kind in "if":
            np.testing.assert_allclose(read[name].to_numpy(dtype=float),
                                       written[name].to_numpy(dtype=float), equal_nan=True)
        else:
            assert read[name].isna().tolist() == written[name].isna().tolist()
            assert read[name].dropna().tolist() == written[name].dropna().tolist()


def sqlite_db(path: Path, frame, table: str = "customers") -> Path:
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        frame.to_sql(table, conn, index=False)
    engine.dispose()
    return path


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "t.parquet", "t.jsonl", "t.ndjson"])
def test_a_written_file_reads_back_the_same(tmp_path, customers, name):
    path = write_table(customers, tmp_path / "out" / name)
    assert path.is_file()
    assert_same_table(read_table(path), customers)


def test_writing_replaces_a_file_whole_and_leaves_no_temporary_files(tmp_path, customers):
    dest = tmp_path / "t.parquet"
    write_table(customers, dest)
    bad = pd.DataFrame({"x": [1, "a", 2.5]})  # mixed types: Parquet refuses the column
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's own error, whatever it is
        write_table(bad, dest)
    assert_same_table(read_table(dest), customers)
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]
    write_table(customers.head(5), dest)
    assert len(read_table(dest)) == 5


def test_a_folder_of_parquet_files_reads_as_one_table(tmp_path, customers):
    write_table(customers.iloc[:100], tmp_path / "parts" / "part-0.parquet")
    write_table(customers.iloc[100:], tmp_path / "parts" / "part-1.parquet")
    frame = read_table(tmp_path / "parts")
    assert sorted(frame["customer_id"]) == sorted(customers["customer_id"])


def test_columns_are_selected_in_the_order_asked(tmp_path, customers):
    for name in ("t.csv", "t.parquet", "t.jsonl"):
        path = write_table(customers, tmp_path / name)
        frame = read_table(path, columns=["plan", "customer_id"])
        assert list(frame.columns) == ["plan", "customer_id"]
        assert frame["customer_id"].tolist() == customers["customer_id"].tolist()


@pytest.mark.parametrize("name", ["t.csv", "t.parquet", "t.jsonl"])
def test_a_missing_column_names_the_column_and_the_source(tmp_path, customers, name):
    path = write_table(customers, tmp_path / name)
    with pytest.raises(UserError, match=r"no column\(s\) 'tenure'.*tenure_months") as err:
        read_table(path, columns=["tenure", "plan"])
    assert name in str(err.value)


def test_a_relative_path_is_taken_from_the_base_folder(tmp_path, customers):
    write_table(customers, tmp_path / "data" / "c.parquet")
    assert len(read_table("data/c.parquet", base=tmp_path)) == len(customers)


def test_file_mistakes_name_the_source_and_the_fix(tmp_path, customers):
    with pytest.raises(UserError, match=r"nope\.parquet: no such file"):
        read_table(tmp_path / "nope.parquet")
    (tmp_path / "t.xlsx").write_bytes(b"PK")
    with pytest.raises(UserError, match=r"cannot tell the format of .*t\.xlsx.*\.parquet"):
        read_table(tmp_path / "t.xlsx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no .parquet files"):
        read_table(tmp_path / "empty")
    (tmp_path / "blank.csv").write_text("")
    with pytest.raises(UserError, match="blank.csv: the file is empty"):
        read_table(tmp_path / "blank.csv")
    (tmp_path / "fake.parquet").write_text("not parquet")
    with pytest.raises(UserError, match="fake.parquet as Parquet"):
        read_table(tmp_path / "fake.parquet")
    with pytest.raises(UserError, match="writes files"):
        write_table(customers, "sqlite:///x.db#t")


def test_a_sqlite_table_reads_by_url(tmp_path, customers):
    db = sqlite_db(tmp_path / "app.db", customers)
    assert_same_table(read_table(f"sqlite:///{db}#customers"), customers)
    frame = read_table("sqlite:///app.db#customers", columns=["customer_id", "churned"],
                       base=tmp_path)
    assert list(frame.columns) == ["customer_id", "churned"]
    assert frame["churned"].sum() == customers["churned"].sum()


def test_a_sql_query_reads_by_url_and_query(tmp_path, customers):
    db = sqlite_db(tmp_path / "app.db", customers)
    frame = read_table({"url": f"sqlite:///{db}",
                        "query": "SELECT customer_id, plan FROM customers WHERE churned = 1"})
    assert len(frame) == customers["churned"].sum()
    with pytest.raises(UserError, match="the query failed on sqlite.*check the SQL"):
        read_table({"url": f"sqlite:///{db}", "query": "SELECT nope FROM customers"})
    with pytest.raises(UserError, match=r"\{url, query\}"):
        read_table({"url": f"sqlite:///{db}"})


def test_sql_mistakes_name_the_source_and_the_fix(tmp_path, customers):
    db = sqlite_db(tmp_path / "app.db", customers)
    with pytest.raises(UserError, match=r"no table 'clients'.*tables there: customers"):
        read_table(f"sqlite:///{db}#clients")
    with pytest.raises(UserError, match=r"no column\(s\) 'tenure'"):
        read_table(f"sqlite:///{db}#customers", columns=["tenure"])
    with pytest.raises(UserError, match="names no table: add it after '#'"):
        read_table(f"sqlite:///{db}")
    missing = tmp_path / "missing.db"
    with pytest.raises(UserError, match="no SQLite database at"):
        read_table(f"sqlite:///{missing}#customers")
    assert not missing.exists()  # a typo must not leave an empty database behind
    with pytest.raises(UserError, match="cannot parse the database URL"):
        read_table("postgresql://user@host:port/db#customers")
    with pytest.raises(UserError, match="not a table source"):
        read_table("ftp://host/file#customers")
    with pytest.raises(UserError, match="is a message stream, not a table"):
        read_table("redis://127.0.0.1:6379/0?stream=events")


def test_a_database_password_never_appears_in_an_error():
    with pytest.raises(UserError) as err:
        read_table("postgresql://app:s3cret@127.0.0.1:1/test#customers")
    assert "s3cret" not in str(err.value)
    assert "app:***@127.0.0.1:1" in str(err.value)


def test_a_postgresql_table_reads_by_plain_url(postgres_url, customers):
    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        customers.to_sql("customers", conn, index=False)
    engine.dispose()
    assert_same_table(read_table(f"{postgres_url}#customers"), customers)
    frame = read_table(f"{postgres_url}#public.customers", columns=["customer_id", "age"])
    assert frame["age"].isna().sum() == customers["age"].isna().sum()
    query = read_table({"url": postgres_url,
                        "query": "SELECT plan, count(*) AS n FROM customers GROUP BY plan"})
    assert query["n"].sum() == len(customers)
    with pytest.raises(UserError, match=r"no table 'clients'.*customers"):
        read_table(f"{postgres_url}#clients")
