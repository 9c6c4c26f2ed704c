"""Batch scoring passes the surface conformance battery (``modelport.testing.check_surface``)
on every kind of input and output: a hostile row goes to the rejects file with its reason,
or is scored exactly as the model scores it alone; every good row is scored exactly as
without it; every row comes out once.

Each ``score`` is one real job (``modelport.serve.batch.predict``, ``on_error="reject"``,
``--id``) over an input file the harness writes, in chunks of a few rows so that the
hostile row and the good ones fall in different chunks; scores are read back by id and
rejects by their row number ``_row``. The model is a one-hot + logistic churn pipeline in
a :class:`~modelport.testing.Tripwire`, registered as joblib only, so the job serves the
artefact that raises on the tripwire's value.

A format carries what it can: a JSONL record may lack a field and hold any text (a lone
surrogate is a JSON escape); CSV, Parquet and Spark's JSON reader hold typed or text
columns, so a list is its text there (``flat``). A Parquet column holds one type: a column
with a hostile value in it is written as text, and ids as text.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import modelport
from modelport.errors import UserError
from modelport.registry import Registry
from modelport.serve.batch import predict
from modelport.testing import (
    REFUSED_BY_LOG,
    SurfaceResult,
    Tripwire,
    check_surface,
    predictor_reference,
    surface_tolerance,
)

from conftest import need_module, unavailable

NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls",
           "data_usage_gb", "age"]
CATEGORICAL = ["plan", "contract", "payment_method", "region"]
TRIP = ("monthly_charges", 777.0)
CHUNK = 5


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    """A registry holding the tripwire-wrapped pipeline, its joblib reference and good rows."""
    from sklearn.linear_model import LogisticRegression

    from modelport.datasets import churn as dataset
    from modelport.train.preprocess import build_pipeline

    home = tmp_path_factory.mktemp("surface-batch")
    registry = Registry(f"sqlite:///{home / 'registry.db'}", str(home / "artefacts"))
    data = dataset.generate(2000, seed=21)
    X = data.drop(columns=["customer_id", "churned"])
    model = build_pipeline(LogisticRegression(max_iter=300), X, NUMERIC, CATEGORICAL)
    model.fit(X, data["churned"])
    version = modelport.log_model(Tripwire(model, *TRIP), "churn", sample=X,
                                  formats=["joblib"], registry=registry)
    predictor = registry.load("churn", format="joblib")
    good = []
    for i, record in enumerate(X.sample(24, random_state=3).to_dict("records")):
        row = {"id": f"r{i}"}
        for k, v in record.items():
            v = v.item() if isinstance(v, np.generic) else v
            row[k] = None if isinstance(v, float) and math.isnan(v) else v
        good.append(row)
    return registry, version, predictor, good, home


class BatchSurface:
    """One batch job per ``score``: ``kind`` input in, ``output`` out."""

    def __init__(self, name: str, capabilities: set[str], churn, folder: Path, *, kind: str,
                 output: str, workers: int = 1, engine: str = "local",
                 log_url: str | None = None, clear_log=None) -> None:
        self.name, self.capabilities = name, frozenset(capabilities)
        self.registry, version, _, _, _ = churn
        self.classes = version.signature["outputs"][0].get("classes") or [0, 1]
        self.folder, self.kind, self.output = folder, kind, output
        self.workers, self.engine = workers, engine
        self.log_url, self.clear_log = log_url, clear_log
        self.good = churn[3][0]
        self.jobs = 0

    def score(self, rows: list[dict[str, Any]]) -> SurfaceResult:
        self.jobs += 1
        work = self.folder / f"job{self.jobs}"
        work.mkdir()
        src = work / f"in.{self.kind}"
        WRITERS[self.kind](rows, src)
        # a lookup table per job: each holds what one job wrote
        output = f"{self.output}_{self.jobs}" if "://" in self.output \
            else str(work / self.output)
        if self.clear_log is not None:
            self.clear_log()
        result = predict("churn", str(src), output, id="id", workers=self.workers,
                         chunk_rows=CHUNK, on_error="reject", engine=self.engine,
                         registry=self.registry, log_url=self.log_url,
                         rejects=work / "rejects.jsonl", warnings=work / "warnings.jsonl")
        by_text = {_text(r["id"]): r["id"] for r in rows if _text(r["id"]) is not None}
        out = SurfaceResult()
        for row in read_scores(output):
            out.scored[by_text[_text(row["id"])]] = {
                "label": str(row["label"]),
                "proba": [row[f"proba_{c}"] for c in self.classes]}
        rejects = work / "rejects.jsonl"
        for line in rejects.read_text().splitlines() if rejects.exists() else []:
            record = json.loads(line)
            assert record["_code"] and record["_reason"], record
            original = rows[record["_row"] - 1]
            if _text(original["id"]) is not None:
                assert _text(record["id"]) == _text(original["id"]), (record, original)
            out.rejected[original["id"]] = f"{record['_code']}: {record['_reason']}"
        assert result.rows == len(out.scored) and result.rejects == len(out.rejected), result
        if self.log_url is not None:
            out.logged = {by_text.get(i, i) for i in read_logged(self.log_url)}
            # the log table did refuse its row, and that cost nothing but the log row
            assert REFUSED_BY_LOG not in out.logged
        return out

    def alive(self) -> bool:
        """A batch surface serves job by job: the next job scores a good row (on Spark, whose
        jobs take seconds each, the session is still up for the next case's job)."""
        if self.engine == "spark":
            from modelport.serve.spark import _session

            return not _session().sparkContext._jsc.sc().isStopped()
        saved, self.log_url, self.clear_log = (self.log_url, self.clear_log), None, None
        try:
            return len(self.score([self.good]).scored) == 1
        finally:
            self.log_url, self.clear_log = saved


def _text(value) -> str | None:
    """An id as text (how it is read back), None when it is missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


# -- writing the input as each format can carry it -----------------------------------------

def write_jsonl(rows: list[dict], path: Path) -> None:
    with open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps({k: None if isinstance(v, float) and math.isnan(v) else v
                                 for k, v in row.items()}) + "\n")


def _cell(value) -> str | None:
    """A value as text in a flat column: lists and objects as JSON, numbers exactly."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, list | dict):
        return json.dumps(value)
    return repr(value) if isinstance(value, float) else str(value)


def write_csv(rows: list[dict], path: Path) -> None:
    names = list(rows[0])
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(names)
        for row in rows:
            out.writerow(["" if _cell(row.get(n)) is None else _cell(row.get(n)) for n in names])


def write_parquet(rows: list[dict], path: Path) -> None:
    """One type per column: numbers where every value is one, else text."""
    columns = {}
    for name in rows[0]:
        values = [r.get(name) for r in rows]
        numbers = name != "id" and all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool)
                          and abs(v) < 1e300) for v in values)
        columns[name] = pa.array([None if v is None or (isinstance(v, float) and math.isnan(v))
                                  else float(v) for v in values], type=pa.float64()) \
            if numbers else pa.array([_cell(v) for v in values], type=pa.string())
    pq.write_table(pa.table(columns), path, row_group_size=CHUNK)


WRITERS = {"jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet}


# -- reading what came out -----------------------------------------------------------------

def read_scores(output: str) -> list[dict]:
    if "://" in output:
        from sqlalchemy import text

        from modelport.io.sinks import lookup_engine

        url, _, table = output.partition("#")
        engine = lookup_engine(url)
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {table}"))]
        engine.dispose()
        return rows
    path = Path(output)
    if path.suffix == ".csv":
        import pyarrow.csv as pcsv

        return pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
            column_types={"id": pa.string(), "label": pa.string()})).to_pylist()
    if path.is_dir():  # Spark writes a folder of parts
        return pq.read_table(path).to_pylist()
    return pq.read_table(path).to_pylist()


def read_logged(url: str) -> set[str]:
    from sqlalchemy import text

    from modelport.monitor.log import open_log

    engine, tables = open_log(url)
    with engine.connect() as conn:
        ids = {r[0] for r in conn.execute(text(
            f"SELECT id FROM {tables.predictions.name} WHERE error IS NULL"))}
    engine.dispose()
    return ids


def refusing_log(postgres_url: str) -> tuple[str, Any]:
    """A prediction-log table in PostgreSQL that refuses the row whose id is
    :data:`REFUSED_BY_LOG`, and a function that empties it."""
    from sqlalchemy import text

    from modelport.monitor.log import open_log

    url = f"{postgres_url}#predictions"
    engine, tables = open_log(url)
    with engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {tables.predictions.name} ADD CONSTRAINT refuse_one "
                          f"CHECK (id IS DISTINCT FROM '{REFUSED_BY_LOG}')"))

    def clear() -> None:
        with engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {tables.predictions.name}"))

    return url, clear


def run_battery(surface: BatchSurface, churn) -> list[str]:
    _, version, predictor, good, _ = churn
    from modelport.signature import Signature

    return check_surface(surface, Signature.from_dict(version.signature), good,
                         predictor_reference(predictor), trip=TRIP,
                         tolerance=surface_tolerance(predictor))


# -- the battery, input by output ----------------------------------------------------------

def test_jsonl_into_parquet(churn, tmp_path):
    # a lone surrogate in a JSON string is refused with its reason: no file, column or
    # model holds it as it is
    surface = BatchSurface("batch jsonl -> parquet",
                           {"records", "refuses surrogates", "tripwire"}, churn, tmp_path,
                           kind="jsonl", output="scores.parquet")
    ran = run_battery(surface, churn)
    assert "a field missing" in ran and "a lone surrogate in a category, refused" in ran
    assert "a list in a categorical field" in ran


def test_csv_into_csv_in_two_workers(churn, tmp_path):
    surface = BatchSurface("batch csv -> csv", {"flat", "tripwire"}, churn, tmp_path,
                           kind="csv", output="scores.csv", workers=2)
    ran = run_battery(surface, churn)
    assert "a 400-digit integer" in ran and "a list in a categorical field" not in ran


def test_parquet_into_parquet_by_row_groups(churn, tmp_path):
    # Parquet into a file is the job whose workers read their own row groups
    surface = BatchSurface("batch parquet -> parquet", {"flat", "tripwire"}, churn, tmp_path,
                           kind="parquet", output="scores.parquet", workers=2)
    run_battery(surface, churn)


def test_parquet_into_a_sqlite_lookup_table(churn, tmp_path):
    surface = BatchSurface("batch parquet -> sqlite", {"flat", "ids", "tripwire"}, churn,
                           tmp_path, kind="parquet",
                           output=f"sqlite:///{tmp_path / 'scores.db'}#churn_scores")
    ran = run_battery(surface, churn)
    assert "a missing id" in ran


def test_parquet_into_a_postgres_lookup_table_with_a_refusing_log(churn, tmp_path,
                                                                   postgres_url):
    log_url, clear = refusing_log(postgres_url)
    surface = BatchSurface("batch parquet -> postgresql", {"flat", "ids", "tripwire", "log"},
                           churn, tmp_path, kind="parquet",
                           output=f"{postgres_url}#churn_scores", workers=2,
                           log_url=log_url, clear_log=clear)
    ran = run_battery(surface, churn)
    assert "a missing id" in ran and "a row the prediction-log table refuses" in ran


def test_jsonl_into_parquet_on_spark(churn, tmp_path, monkeypatch):
    need_module("pyspark", "spark")
    if shutil.which("java") is None:
        unavailable("Spark needs Java (a JDK 17 on the PATH)")
    monkeypatch.setenv("MODELPORT_SPARK_MASTER", "local[1]")
    # Spark's JSON reader gives a field absent from a record as null, a list among text as
    # its text, and a lone surrogate as "?", before modelport sees the row: neither
    # "records" nor either surrogate case applies
    surface = BatchSurface("batch jsonl -> parquet on spark", {"flat", "tripwire"}, churn,
                           tmp_path, kind="jsonl", output="scores.parquet", engine="spark")
    run_battery(surface, churn)


# -- a lookup table is never left half-written ---------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """A database URL for lookup tables: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'scores.db'}"
    return request.getfixturevalue("postgres_url")


def _dump(url: str, table: str) -> list[tuple] | None:
    """Every row of ``table``, in id order; None when there is no such table."""
    from sqlalchemy import inspect, text

    from modelport.io.sinks import lookup_engine

    engine = lookup_engine(url)
    try:
        if not inspect(engine).has_table(table):
            return None
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(
                f"SELECT * FROM {table} ORDER BY customer_id"))]
    finally:
        engine.dispose()


def test_a_missing_id_in_a_later_chunk_leaves_the_lookup_table_as_it_was(churn, tmp_path,
                                                                          database):
    """24,000 customers in chunks of 2,000; the id of row 22,501 is NaN. Under --on-error
    fail the job stops naming that row, and the lookup table holds exactly what it held
    before (a table that did not exist is not made); under reject every other row is
    written and that one is in the rejects file."""
    from modelport.datasets import churn as dataset

    registry = churn[0]
    customers = dataset.generate(24_000, seed=8).drop(columns=["churned"])
    customers["customer_id"] = customers["customer_id"].astype("float64")
    src = tmp_path / "customers.parquet"
    customers.head(3000).to_parquet(src, index=False)
    sides = {"rejects": tmp_path / "rejects.jsonl", "warnings": tmp_path / "warnings.jsonl"}
    store = f"{database}#churn_scores"
    # what an earlier night's job left
    predict("churn", src, store, id="customer_id", chunk_rows=2000, workers=1,
            registry=registry, **sides)
    before = _dump(database, "churn_scores")
    assert len(before) == 3000

    customers.loc[22_500, "customer_id"] = float("nan")
    customers.to_parquet(src, index=False)
    for table in ("churn_scores", "fresh_scores"):
        with pytest.raises(UserError, match=r"row 22,501: the id 'customer_id' is missing.*"
                                            r"--on-error reject"):
            predict("churn", src, f"{database}#{table}", id="customer_id", chunk_rows=2000,
                    workers=2, registry=registry, **sides)
    assert _dump(database, "churn_scores") == before
    assert _dump(database, "fresh_scores") is None

    result = predict("churn", src, store, id="customer_id", chunk_rows=2000, workers=2,
                     on_error="reject", registry=registry, **sides)
    assert (result.rows, result.rejects) == (23_999, 1)
    after = _dump(database, "churn_scores")
    expected = customers["customer_id"].drop(index=22_500)
    assert [r[0] for r in after] == sorted(expected)
    [rejected] = [json.loads(line) for line in sides["rejects"].read_text().splitlines()]
    assert (rejected["_row"], rejected["_code"]) == (22_501, "missing_id")
