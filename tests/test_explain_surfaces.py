"""The same rows give the same reasons on every surface: Python, HTTP, batch, lookup, stream.

Two registered models, each explained through an artefact that is not the one serving
rows: a one-hot + logistic pipeline (joblib and ONNX, measured from its registered sample)
and a random forest (compiled and ONNX, two raw scores: the second class is explained).
``Predictor.explain`` is the reference; the web service (plain JSON, OIP v2, MLflow), a
``modelport predict --explain`` job into a Parquet file and a PostgreSQL lookup table (read
back by ``modelport lookup`` and ``/lookup``), and a stream worker on Redis must all name
the same columns with the same contributions.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.registry import Registry

from conftest import need_module, port_open, unavailable
from zoo import build, data

MODELPORT = str(Path(sys.executable).with_name("modelport"))
TOP = 3
IDS = list(range(100_000, 100_040))


@pytest.fixture(params=["pipeline", "random_forest"])
def served(request, modelport_home):
    """(registry, model name, the rows with a customer_id, the reference reasons)."""
    name = request.param
    model, sample = build(name)
    formats = ["joblib", "onnx"] if name == "pipeline" else ["compiled", "onnx"]
    registry = Registry()
    modelport.log_model(model, "churn", sample=sample, formats=formats, alias="production",
                        registry=registry)
    mixed = data(len(IDS), seed=5)[0][list(sample.columns)]
    rows = mixed.copy()
    rows.insert(0, "customer_id", IDS)
    explainer = registry.load("churn@production", format=formats[0])
    table = explainer.explain(mixed, top=TOP)
    if "output" in table:  # two raw scores: the second class's reasons
        table = table[table["output"] == explainer.classes[1]]
    return registry, name, rows, reference(table)


def reference(table: pd.DataFrame) -> list[tuple[list[str], np.ndarray]]:
    """Per row: (columns, contributions), largest first."""
    out = []
    for _, part in table.groupby("row", sort=True):
        part = part.sort_values("rank")
        out.append((part["column"].tolist(), part["contribution"].to_numpy()))
    return out


def assert_same(got: list[tuple[list[str], np.ndarray]], expected) -> None:
    assert len(got) == len(expected)
    for i, ((cols, contrib), (want_cols, want)) in enumerate(zip(got, expected, strict=True)):
        assert cols == want_cols, f"row {i}: {cols} != {want_cols}"
        np.testing.assert_allclose(contrib, want, rtol=0, atol=1e-9, err_msg=f"row {i}")


def records(rows: pd.DataFrame) -> list[dict]:
    out = []
    for rec in rows.drop(columns="customer_id").to_dict("records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in rec.items()})
    return out


def from_records(items: list[dict]) -> list[tuple[list[str], np.ndarray]]:
    return [([r["column"] for r in item["reasons"]],
             np.array([r["contribution"] for r in item["reasons"]])) for item in items]


def from_columns(frame) -> list[tuple[list[str], np.ndarray]]:
    return [([row[f"reason_{j}"] for j in range(1, TOP + 1)],
             np.array([row[f"contribution_{j}"] for j in range(1, TOP + 1)]))
            for row in frame]


# -- HTTP ------------------------------------------------------------------------------------

def call(app, method: str, path: str, **kwargs):
    httpx = need_module("httpx", "dev")

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def test_http_json_v2_and_mlflow_give_the_python_reasons(served):
    need_module("orjson", "http")
    from modelport.serve.http import create_app

    registry, _, rows, expected = served
    app = create_app(["churn@production"], registry=registry, poll_seconds=0)
    body = records(rows)
    r = call(app, "POST", f"/predict/churn?explain={TOP}", json=body)
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert_same(from_records(preds), expected)
    # the values are the row's own, and base + every contribution is the raw score
    assert [p["reasons"][0]["value"] for p in preds] == [
        body[i][expected[i][0][0]] for i in range(len(body))]

    r = call(app, "POST", "/invocations?model=churn",
             json={"dataframe_records": body, "params": {"explain": TOP}})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == len(body)
    assert_same(from_records(r.json()["reasons"]), expected)

    names = list(body[0])
    inputs = [{"name": n, "shape": [len(body)],
               "datatype": "BYTES" if isinstance(body[0][n], str) else "FP64",
               "data": [b[n] for b in body]} for n in names]
    r = call(app, "POST", "/v2/models/churn/infer",
             json={"inputs": inputs, "parameters": {"explain": TOP}})
    assert r.status_code == 200, r.text
    out = {o["name"]: o["data"] for o in r.json()["outputs"]}
    got = [([out[f"reason_{j}"][i] for j in range(1, TOP + 1)],
            np.array([out[f"contribution_{j}"][i] for j in range(1, TOP + 1)]))
           for i in range(len(body))]
    assert_same(got, expected)


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5", "7", "9" * 400])
def test_a_bad_explain_value_is_a_400_naming_it(served, value):
    from modelport.serve.http import create_app

    registry, _, rows, _ = served
    app = create_app(["churn@production"], registry=registry, poll_seconds=0)
    r = call(app, "POST", f"/predict/churn?explain={value}", json=records(rows.head(1)))
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "explain"
    assert "whole number of reasons from 1 to" in r.json()["error"]


@pytest.mark.parametrize("value", [0, -1, "x", True, 2.5, [3], 10**30])
def test_a_bad_explain_parameter_is_a_4xx_in_v2_and_mlflow(served, value):
    from modelport.serve.http import create_app

    registry, _, rows, _ = served
    app = create_app(["churn@production"], registry=registry, poll_seconds=0)
    r = call(app, "POST", "/invocations?model=churn",
             json={"dataframe_records": records(rows.head(1)), "params": {"explain": value}})
    assert r.status_code == 400 and r.json()["field"] == "explain", r.text
    one = records(rows.head(1))[0]
    inputs = [{"name": n, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "FP64",
               "data": [v]} for n, v in one.items()]
    r = call(app, "POST", "/v2/models/churn/infer",
             json={"inputs": inputs, "parameters": {"explain": value}})
    assert r.status_code == 400 and r.json()["field"] == "explain", r.text


def test_a_number_too_large_for_any_float_is_a_422():
    from modelport.serve.http.routing import HTTPError, loads

    with pytest.raises(HTTPError) as caught:
        loads(b'{"params": {"explain": ' + b"9" * 400 + b"}}")
    assert caught.value.status == 422


def test_hostile_rows_with_explain_take_the_reject_path(served):
    from modelport.serve.http import create_app

    registry, _, rows, _ = served
    app = create_app(["churn@production"], registry=registry, poll_seconds=0)
    bad = records(rows.head(2))
    bad[1]["tenure"] = "twelve"
    r = call(app, "POST", "/predict/churn?explain=2", json=bad)
    assert r.status_code == 422
    assert "tenure" in r.json()["error"]


def test_a_model_that_cannot_explain_answers_422_with_the_reason(modelport_home):
    from modelport.serve.http import create_app

    model, sample = build("gaussian_nb")
    registry = Registry()
    modelport.log_model(model, "nb", sample=sample, formats=["joblib", "onnx"],
                        registry=registry)
    app = create_app(["nb"], registry=registry, poll_seconds=0)
    row = {k: float(v) for k, v in sample.iloc[0].items()}
    r = call(app, "POST", "/predict/nb?explain=2", json=row)
    assert r.status_code == 422
    assert "gaussian_nb" in r.json()["error"]
    assert call(app, "POST", "/predict/nb", json=row).status_code == 200


# -- batch file and lookup table ----------------------------------------------------------

def test_batch_file_and_lookup_table_give_the_python_reasons(served, tmp_path, postgres_url,
                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)  # a lookup-table job writes its warnings file here
    registry, _, rows, expected = served
    src = tmp_path / "customers.parquet"
    rows.to_parquet(src, index=False)
    out = tmp_path / "scores.parquet"
    done = subprocess.run(
        [MODELPORT, "predict", "churn@production", "--input", str(src), "--output", str(out),
         "--id", "customer_id", "--workers", "2", "--chunk-rows", "15", "--explain", str(TOP)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    scored = pd.read_parquet(out).sort_values("customer_id")
    assert scored["customer_id"].tolist() == IDS
    assert_same(from_columns(scored.to_dict("records")), expected)

    from modelport.serve.batch import predict

    store = f"{postgres_url}#churn_scores"
    predict("churn@production", src, store, id="customer_id", workers=1, chunk_rows=25,
            registry=registry, explain=TOP)
    done = subprocess.run([MODELPORT, "lookup", "churn", "100007", "--store", store],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert_same(from_columns([json.loads(done.stdout)]), expected[7:8])

    import sqlalchemy as sa

    from modelport.serve.http import create_app

    features = f"sqlite:///{tmp_path / 'features.db'}"
    engine = sa.create_engine(features)
    meta = sa.MetaData()  # the feature table is read by its primary key
    customers = sa.Table(
        "customers", meta, sa.Column("customer_id", sa.Integer, primary_key=True),
        *[sa.Column(c, sa.Float if pd.api.types.is_numeric_dtype(rows[c]) else sa.String)
          for c in rows.columns[1:]])
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(customers.insert(), [{"customer_id": i, **rec}
                                          for i, rec in zip(IDS, records(rows), strict=True)])
    engine.dispose()
    app = create_app(["churn@production"], registry=registry, poll_seconds=0,
                     lookup_store=store, feature_table=f"{features}#customers")
    found = [call(app, "GET", f"/lookup/churn/{i}").json() for i in IDS]
    assert_same(from_columns(found), expected)
    fresh = call(app, "GET", f"/lookup/churn/{IDS[7]}?refresh=true&explain={TOP}")
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["refreshed"] is True
    assert_same(from_records([fresh.json()]), expected[7:8])

    # new scores without reasons would sit beside the old reasons: refused up front
    from modelport.errors import UserError

    with pytest.raises(UserError, match="--explain 3"):
        predict("churn@production", src, store, id="customer_id", workers=1,
                registry=registry)
    assert_same(from_columns([call(app, "GET", "/lookup/churn/100007").json()]),
                expected[7:8])


def test_a_bad_explain_on_the_command_line_is_one_line_and_exit_2(served, tmp_path):
    _, _, rows, _ = served
    src = tmp_path / "customers.parquet"
    rows.to_parquet(src, index=False)
    for value in ("0", "three"):
        done = subprocess.run(
            [MODELPORT, "predict", "churn@production", "--input", str(src), "--output",
             str(tmp_path / "out.parquet"), "--workers", "1", "--explain", value],
            capture_output=True, text=True, timeout=120)
        assert done.returncode == 2
        assert "--explain must be a whole number of reasons" in done.stderr
        assert "Traceback" not in done.stderr
        assert not (tmp_path / "out.parquet").exists()


def test_a_multiclass_model_explains_the_predicted_class():
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier

    from modelport.formats.native import NativePredictor
    from modelport.scoring import reasons
    from modelport.signature import Signature

    X, y = make_classification(n_samples=400, n_features=5, n_informative=4, n_redundant=0,
                               n_classes=3, random_state=0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)])
    model = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(frame, y)
    predictor = NativePredictor(model, Signature.infer(frame, "classification", [0, 1, 2]))
    rows = frame.head(30)
    why = reasons.top(predictor, predictor.signature.columns(rows), 2)
    labels = predictor.predict(rows)
    assert why.output.tolist() == labels.tolist()
    table = predictor.explain(rows, top=2)
    picked = table[table["output"] == table["row"].map(dict(enumerate(labels)))]
    assert_same([(c, np.asarray(x)) for c, x in zip(
        why.columns.tolist(), why.contributions.tolist(), strict=True)], reference(picked))
    assert [r["output"] for r in why.records()] == labels.tolist()


# -- a stream on Redis ----------------------------------------------------------------------

def test_a_redis_stream_gives_the_python_reasons(served):
    redis = need_module("redis", "brokers")
    if not port_open("127.0.0.1", 6379):
        unavailable("Redis is not running on 127.0.0.1:6379")
    from modelport.serve.stream import run

    registry, _, rows, expected = served
    t = uuid.uuid4().hex[:8]
    names = [f"explain_in_{t}", f"explain_out_{t}"]
    base = "redis://127.0.0.1:6379/0?stream="
    body = records(rows)
    client = redis.Redis()
    try:
        for i, rec in enumerate(body):
            client.xadd(names[0], {"data": json.dumps({"id": IDS[i], **rec})})

        async def go():
            stop = asyncio.Event()
            worker = asyncio.create_task(run(
                "churn@production", base + names[0], base + names[1], registry=registry,
                stop=stop, poll_seconds=0, explain=TOP, batch=16))
            for _ in range(600):
                if client.xlen(names[1]) >= len(body) or worker.done():
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await worker

        asyncio.run(go())
        outputs = [json.loads(f[b"data"]) for _, f in client.xrange(names[1])]
    finally:
        client.delete(*names)
    by_key = {o["key"]: o for o in outputs}
    assert sorted(by_key) == IDS
    assert_same(from_records([by_key[i] for i in IDS]), expected)


# -- SQL: the export and trigger SQL mode (linear) ------------------------------------------

@pytest.mark.parametrize("served", ["pipeline"], indirect=True)
def test_sql_export_and_trigger_sql_mode_give_the_python_reasons(served, tmp_path,
                                                                 postgres_url):
    import sqlite3

    from modelport.compile import export
    from modelport.serve import trigger
    from modelport.serve.trigger.db import connect

    registry, _, rows, expected = served
    names = list(rows.columns[1:])
    numeric = [c for c in names if pd.api.types.is_numeric_dtype(rows[c])]

    def typed(real: str, text: str) -> str:
        return ", ".join(f"{c} {real if c in numeric else text}" for c in names)

    values = [(i, *rec.values()) for i, rec in zip(IDS, records(rows), strict=True)]
    marks = ", ".join(["?"] * (len(names) + 1))

    # the select list of reasons, exported for SQLite, over a table of the rows
    files = export("churn@production", "sql", tmp_path / "sqlite", dialect="sqlite",
                   registry=registry, explain=TOP)
    listed = next(f for f in files if f.name == "churn_reasons.select.sql").read_text()
    with sqlite3.connect(":memory:") as memory:
        memory.execute(f"CREATE TABLE customers (customer_id INTEGER, {typed('REAL', 'TEXT')})")
        memory.executemany(f"INSERT INTO customers VALUES ({marks})", values)
        got = memory.execute(f"SELECT {listed} FROM customers ORDER BY customer_id").fetchall()
    assert_same(from_columns([dict(zip(_reason_columns(), r, strict=True)) for r in got]),
                expected)

    # the reason functions, exported for PostgreSQL (checked there), loaded as a user would
    files = export("churn@production", "sql", tmp_path / "pg", dialect="postgresql",
                   registry=registry, explain=TOP, check_url=postgres_url)
    functions = next(f for f in files if f.name == "churn_reasons.function.sql").read_text()
    args = ", ".join(names)
    calls = ", ".join(f"churn_reason({j}, {args}), churn_contribution({j}, {args})"
                      for j in range(1, TOP + 1))
    with connect(postgres_url) as db:
        db.execute(f"CREATE TABLE customers (customer_id BIGINT PRIMARY KEY, "
                   f"{typed('double precision', 'text')})")
        cur = db.conn.cursor()
        cur.execute(functions)
        cur.executemany(f"INSERT INTO customers VALUES ({marks.replace('?', '%s')})", values)
        got = db.execute(f"SELECT {calls} FROM customers ORDER BY customer_id")
        db.commit()
    assert_same(from_columns([dict(zip(_reason_columns(), r, strict=True)) for r in got]),
                expected)

    # trigger SQL mode: the database writes them beside the score on insert
    with connect(postgres_url) as db:
        db.execute("DELETE FROM customers")
        db.commit()
    trigger.install("churn@production", postgres_url, table="customers", key="customer_id",
                    output="churn", mode="sql", explain=TOP, registry=registry)
    with connect(postgres_url) as db:
        cur = db.conn.cursor()
        cur.executemany(f"INSERT INTO customers (customer_id, {args}) VALUES "
                        f"({marks.replace('?', '%s')})", values)
        stored = ", ".join(f"churn_reason_{j}, churn_contribution_{j}"
                           for j in range(1, TOP + 1))
        got = db.execute(f"SELECT {stored} FROM customers ORDER BY customer_id")
        db.commit()
    assert_same(from_columns([dict(zip(_reason_columns(), r, strict=True)) for r in got]),
                expected)


def _reason_columns() -> list[str]:
    return [f"{what}_{j}" for j in range(1, TOP + 1) for what in ("reason", "contribution")]


# -- generated C and JavaScript (trees) -----------------------------------------------------

_C_MAIN = r"""
#include <math.h>
#include <stdio.h>
%(source)s
static const double NUM[][%(n_num)d] = {%(num)s};
static const char *const CAT[][%(n_cat)d] = {%(cat)s};
int main(void) {
    for (int i = 0; i < %(rows)d; i++) {
        int column[%(k)d]; double contribution[%(k)d];
        churn_reasons(NUM[i], CAT[i], %(k)d, column, contribution);
        for (int j = 0; j < %(k)d; j++)
            printf("%%s\t%%.17g%%s", churn_inputs[column[j]], contribution[j],
                   j + 1 < %(k)d ? "\t" : "\n");
    }
    return 0;
}
"""


@pytest.mark.parametrize("served", ["random_forest"], indirect=True)
def test_generated_c_and_javascript_give_the_python_reasons(served, tmp_path):
    import shutil

    from modelport.compile import export
    from modelport.signature import Signature

    for tool in ("gcc", "node"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed")
    registry, _, rows, expected = served
    signature = Signature.from_dict(registry.get("churn@production").signature)
    body = records(rows)

    # C: the rows as arrays in signature order (NAN and NULL for missing values)
    c_file = next(f for f in export("churn@production", "c", tmp_path / "c",
                                    registry=registry, explain=TOP) if f.suffix == ".c")

    def number(v) -> str:
        return "NAN" if v is None else repr(float(v))

    def text(v) -> str:
        return "NULL" if v is None else json.dumps(v)  # plain ASCII categories here

    num = ", ".join("{" + ", ".join(number(r[c]) for c in signature.numeric) + "}"
                    for r in body)
    cat = ", ".join("{" + ", ".join(text(r[c]) for c in signature.categorical) + "}"
                    for r in body)
    main = tmp_path / "c" / "main.c"
    main.write_text(_C_MAIN % {"source": f'#include "{c_file.name}"', "num": num, "cat": cat,
                               "n_num": len(signature.numeric),
                               "n_cat": len(signature.categorical), "rows": len(body),
                               "k": TOP})
    subprocess.run(["gcc", "-O2", "-o", "reasons", "main.c", "-lm"], cwd=tmp_path / "c",
                   check=True, timeout=300)
    out = subprocess.run(["./reasons"], cwd=tmp_path / "c", capture_output=True, text=True,
                         timeout=60, check=True).stdout
    got = []
    for line in out.splitlines():
        cells = line.split("\t")
        got.append((cells[0::2], np.array([float(x) for x in cells[1::2]])))
    assert_same(got, expected)

    # JavaScript: reasons(row, k) on the same rows, in node
    js_file = next(f for f in export("churn@production", "javascript", tmp_path / "js",
                                     registry=registry, explain=TOP) if f.suffix == ".mjs")
    (tmp_path / "js" / "rows.json").write_text(json.dumps(body))
    driver = tmp_path / "js" / "driver.mjs"
    driver.write_text(
        'import { readFileSync } from "node:fs";\n'
        f'import {{ reasons }} from "./{js_file.name}";\n'
        'const rows = JSON.parse(readFileSync("rows.json", "utf8"));\n'
        f'console.log(JSON.stringify(rows.map((r) => reasons(r, {TOP}))));\n')
    out = subprocess.run(["node", driver.name], cwd=tmp_path / "js", capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert_same(from_records([{"reasons": r} for r in json.loads(out)]), expected)


@pytest.mark.parametrize("served", ["pipeline"], indirect=True)
def test_export_and_trigger_install_take_explain_on_the_command_line(served, tmp_path):
    import sqlite3

    _, _, rows, expected = served

    def cli(*args):
        return subprocess.run([MODELPORT, *args], capture_output=True, text=True, timeout=300,
                              cwd=tmp_path)

    done = cli("export", "churn@production", "--format", "sql", "--dialect", "sqlite",
               "--explain", str(TOP), "--out", str(tmp_path / "sql"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "sql" / "churn_reasons.select.sql").exists()
    assert "## Reasons" in (tmp_path / "sql" / "README.md").read_text()
    for args, says in [
            (("--format", "sql", "--explain", "three"), "--explain must be a whole number"),
            (("--format", "sql", "--explain", "0"), "from 1 to"),
            (("--format", "java", "--explain", "2"), "--explain is written for --format sql"),
            (("--format", "c", "--explain", "2"), "cannot be exported as c: a linear "
                                                 "model's reasons are exported as SQL")]:
        done = cli("export", "churn@production", *args, "--out", str(tmp_path / "bad"))
        assert done.returncode == 2, (args, done.stderr)
        assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "bad").exists()

    db = tmp_path / "app.db"
    names = list(rows.columns[1:])
    with sqlite3.connect(db) as conn:
        conn.execute(f"CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, "
                     f"{', '.join(names)})")
        conn.executemany(f"INSERT INTO customers VALUES ({', '.join('?' * (len(names) + 1))})",
                         [(i, *r.values()) for i, r in zip(IDS, records(rows), strict=True)])
    done = cli("trigger", "install", "churn@production", "--db", f"sqlite:///{db}", "--table",
               "customers", "--key", "customer_id", "--output-column", "churn", "--mode", "sql",
               "--explain", str(TOP))
    assert done.returncode == 0, done.stderr
    assert "churn_reason_1" in done.stdout
    with sqlite3.connect(db) as conn:
        got = conn.execute("SELECT " + ", ".join(
            f"churn_reason_{j}, churn_contribution_{j}" for j in range(1, TOP + 1))
            + " FROM customers ORDER BY customer_id").fetchall()
    assert_same(from_columns([dict(zip(_reason_columns(), r, strict=True)) for r in got]),
                expected)
