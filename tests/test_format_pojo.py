"""H2O POJOs import, score as H2O scores them, and serve like any other model.

The fixtures (``tests/fixtures/pojo``, made by its ``make_fixtures.py`` with h2o 3.46.0.11)
are POJOs of GBM (binomial, multinomial, regression), DRF, GLM, deep learning and k-means
models, and a GBM whose column names, levels and model id are hostile, each with two sets of
H2O's own predictions on rows not used in training (missing values, unseen levels,
all-missing rows): the cluster's (``model.predict``) and those of H2O's ``PredictCsv``
running the compiled POJO (hexadecimal, exact). Every POJO is imported and compiled with
``javac``; GBM, DRF and GLM POJOs are read into the compiled runtime (no JVM) and must equal
H2O's scores to 1e-9, on the stored rows and on probe rows against the compiled class; the
others are scored by h2o-genmodel in this process's one JVM, bit for bit. Then it serves over HTTP, in a batch job and from a Redis stream; a missing JDK
or jar, and a POJO that does not compile, are one line and exit code 2; and neither a class
declaration nor a name can steer the compile step or an export.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.errors import UserError
from modelport.formats import h2o_jvm, pojo
from modelport.registry import Registry
from modelport.signature import Signature

from conftest import need_module, port_open, unavailable

FIXTURES = Path(__file__).parent / "fixtures" / "pojo"
JAR = Path(__file__).parent / "fixtures" / "mojo" / "h2o-genmodel.jar"
SCORING_ROWS = Path(__file__).parent / "fixtures" / "mojo" / "sample.csv"
MODELS = ("gbm_binomial", "gbm_multinomial", "gbm_regression", "drf_binomial", "glm_binomial",
          "deeplearning_binomial", "kmeans_clustering", "hostile")
ALGOS = {"gbm": "gbm", "drf": "drf", "glm": "glm", "deeplearning": "deeplearning",
         "kmeans": "kmeans", "hostile": "gbm"}
MODELPORT = [sys.executable, "-m", "modelport"]
#: the POJOs read into the compiled runtime; the others run in the JVM
READ = ("gbm_binomial", "gbm_multinomial", "gbm_regression", "drf_binomial", "glm_binomial",
        "hostile")
TOL = 1e-9


def need_jdk() -> None:
    for tool in ("java", "javac"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not on PATH: H2O POJOs compile and run in a JDK "
                        "(apt-get install openjdk-17-jdk-headless)")
    if not JAR.is_file():
        unavailable(f"{JAR} is missing: regenerate the MOJO fixtures (make_fixtures.py)")
    need_module("jpype", "mojo")


def rows(name: str) -> pd.DataFrame:
    """The rows H2O scored for fixture ``name``: none of them used in training."""
    if name == "hostile":
        return pd.read_csv(FIXTURES / "hostile.csv", keep_default_na=False, na_values=[""])
    return pd.read_csv(SCORING_ROWS).drop(columns=["churned"])


def beside_jar(folder: Path, name: str, file_name: str | None = None) -> Path:
    """The POJO with h2o-genmodel.jar beside it, as download_pojo(get_genmodel_jar=True)
    leaves them."""
    path = folder / (file_name or f"{name}.java")
    shutil.copyfile(FIXTURES / f"{name}.java", path)
    shutil.copyfile(JAR, folder / h2o_jvm.GENMODEL_JAR)
    return path


def h2o_outputs(name: str, which: str, signature: Signature) -> dict[str, np.ndarray]:
    """H2O's predictions for fixture ``name``: ``h2o`` (the cluster's) or ``pojo``
    (PredictCsv over the compiled POJO)."""
    with open(FIXTURES / f"{name}.{which}.csv", newline="") as fh:
        table = list(csv.reader(fh))
    return h2o_jvm.read_predictions(table[0], table[1:], signature)


def scores(out: dict) -> np.ndarray:
    key = next(k for k in ("proba", "value", "cluster") if k in out)
    values = np.asarray(out[key], dtype=np.float64)
    return values.reshape(len(values), -1)


def unseen_rows(signature: Signature, frame: pd.DataFrame) -> np.ndarray:
    unseen = np.zeros(len(frame), dtype=bool)
    for col in (c for c in signature.inputs if c.kind == "categorical"):
        known = set(col.categories or [])
        unseen |= frame[col.name].map(lambda v, known=known: isinstance(v, str) and v not in known)
    return unseen


class genmodel_env:
    """MODELPORT_H2O_GENMODEL_JAR names the fixtures' jar while inside."""

    def __enter__(self):
        self.before = os.environ.get(h2o_jvm.GENMODEL_ENV)
        os.environ[h2o_jvm.GENMODEL_ENV] = str(JAR)

    def __exit__(self, *exc):
        if self.before is None:
            del os.environ[h2o_jvm.GENMODEL_ENV]
        else:
            os.environ[h2o_jvm.GENMODEL_ENV] = self.before


@cache
def imported(name: str) -> tuple[Signature, dict[str, np.ndarray]]:
    """Fixture ``name`` compiled and scored by modelport on its rows, once per test run."""
    need_jdk()
    data = (FIXTURES / f"{name}.java").read_bytes()
    with genmodel_env():
        signature = pojo.inspect(data)
        return signature, pojo.PojoPredictor(data, signature, runtime="jvm").run(rows(name))


# --- every fixture imports, and scores exactly as H2O --------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_each_pojo_imports_and_scores_as_h2o_does(name, tmp_path):
    need_jdk()
    frame = rows(name)
    v = modelport.import_model(beside_jar(tmp_path, name), name.replace("_", "-"),
                               sample=frame.head(60))
    read = name in READ
    assert v.native_format == "pojo"
    assert sorted(v.accepted_formats()) == (["compiled", "pojo"] if read else ["pojo"])
    assert v.lineage["sha256"] == __import__("hashlib").sha256(
        (FIXTURES / f"{name}.java").read_bytes()).hexdigest()
    assert Registry().read_artefact(v, "pojo") == (FIXTURES / f"{name}.java").read_bytes()
    figures = v.artefact("pojo").parity
    assert figures["runtime"] == ("compiled" if read else "h2o-genmodel")
    if read:  # proven against the compiled class on the sample and the probe rows
        assert figures["rows"] == 60 + 256 and figures["max_abs_diff"] <= TOL
        assert v.artefact("compiled").parity["derived_from"] == "pojo"
    else:
        assert "reader" in figures and v.artefact("compiled").status == "rejected"
    assert v.params["h2o_algo"] == ALGOS[name.split("_")[0]]
    # the columns the class reports are those H2O was given, in order
    signature = Signature.from_dict(v.signature)
    assert set(signature.names) <= set(frame.columns)
    predictor = modelport.load(v.uri)
    assert predictor.runtime == ("compiled" if read else "h2o-genmodel")
    got = predictor.run(frame)
    exact = h2o_outputs(name, "pojo", signature)
    cluster = h2o_outputs(name, "h2o", signature)
    if read:
        assert np.abs(scores(got) - scores(exact)).max() <= TOL, "differs from PredictCsv"
        assert np.abs(scores(got) - scores(cluster)).max() <= TOL, "differs from the cluster"
        return
    assert np.array_equal(scores(got), scores(exact)), "differs from PredictCsv over the POJO"
    same = (scores(got) == scores(cluster)).all(axis=1)
    if signature.task == "clustering":
        # the cluster itself assigns a few rows with unseen levels otherwise than its POJO
        # (which counts an unseen level as missing, as PredictCsv does); every other row is H2O's
        assert unseen_rows(signature, frame)[~same].all() and same.mean() > 0.95
    else:
        assert same.all(), f"differs from the H2O cluster's predictions on {(~same).sum()} rows"
    if signature.task == "classification":
        likeliest = np.asarray(signature.classes)[np.argmax(scores(cluster), axis=1)]
        assert [str(c) for c in got["label"]] == [str(c) for c in likeliest]


@pytest.mark.parametrize("name", READ)
def test_the_read_form_equals_the_compiled_class_on_probe_rows(name):
    """Every split point and the double below it, every level, missing values and an
    unseen level: the read form and h2o-genmodel running the class agree to 1e-9."""
    from modelport.compile.from_pojo import to_ir
    from modelport.formats.mojo import _split_points, proof_rows

    sig, _ = imported(name)
    data = (FIXTURES / f"{name}.java").read_bytes()
    model_ir = to_ir(data.decode(), sig)
    probes = proof_rows(sig, model_ir, None)
    if name.startswith(("gbm", "drf")):
        points = _split_points(model_ir)
        assert points, "the trees split on numbers"
        column, values = next(iter(points.items()))
        assert values[0] in set(probes[column]) and \
            float(np.nextafter(values[0], -np.inf)) in set(probes[column])
    with genmodel_env():
        jvm = pojo.PojoPredictor(data, sig, runtime="jvm")
    ours = pojo.PojoPredictor(data, sig, runtime="compiled")
    assert (jvm.runtime, ours.runtime) == ("h2o-genmodel", "compiled")
    want, got = jvm.run(probes), ours.run(probes)
    assert np.abs(scores(got) - scores(want)).max() <= TOL
    if sig.task == "classification":
        assert np.argmax(scores(got), axis=1).tolist() == np.argmax(scores(want), axis=1).tolist()


def test_code_the_reader_does_not_recognise_is_refused_naming_it():
    """Strict: a shape H2O does not write for GBM, DRF or GLM is not read (the JVM scores it)."""
    from modelport.compile.from_pojo import to_ir
    from modelport.errors import ConversionError

    sig, _ = imported("gbm_regression")
    text = (FIXTURES / "gbm_regression.java").read_text()
    assert to_ir(text, sig).model.kind == "tree_ensemble"
    cases = {
        "ends in code": text.replace("preds[0] = preds[0];", "preds[0] = Math.exp(preds[0]);"),
        "split of the POJO's trees has a shape": text.replace("] < ", "] <= ", 1),
        "leaf of the POJO's trees": re.sub(r"(\n\s*)(-?[0-9.]+f) :", r"\1Math.abs(\2) :",
                                           text, count=1),
        "declares 9 features": text.replace("nfeatures() { return 10; }",
                                            "nfeatures() { return 9; }"),
    }
    for needle, changed in cases.items():
        assert changed != text, needle
        with pytest.raises(ConversionError, match=re.escape(needle)):
            to_ir(changed, sig)
    for name in ("deeplearning_binomial", "kmeans_clustering"):
        with pytest.raises(ConversionError):
            to_ir((FIXTURES / f"{name}.java").read_text(), imported(name)[0])


def test_the_signature_is_the_one_the_class_reports():
    sig, _ = imported("gbm_multinomial")
    assert sig.task == "classification"
    assert sig.classes == ["basic", "premium", "standard", "unlimited"]
    assert "plan" not in sig.names
    kinds = {c.name: c for c in sig.inputs}
    assert kinds["tenure_months"].kind == "numeric"
    assert len(kinds["city"].categories) == 45 and kinds["region"].kind == "categorical"
    glm, _ = imported("glm_binomial")
    assert glm.classes == [0, 1] and glm.names[0] == "city"  # GLM puts categories first
    assert imported("gbm_regression")[0].task == "regression"
    assert imported("kmeans_clustering")[0].task == "clustering"


def test_hostile_names_and_levels_survive_exactly_as_h2o_wrote_them():
    sig, got = imported("hostile")
    header = next(csv.reader(open(FIXTURES / "hostile.csv", newline="")))
    assert sig.names == header  # quotes, comment openers, a tab, a """ payload, a backslash
    levels = {c.name: c.categories for c in sig.inputs if c.kind == "categorical"}
    assert set(levels[header[3]]) == set(rows("hostile")[header[3]])
    assert np.array_equal(scores(got), scores(h2o_outputs("hostile", "h2o", sig)))


# --- serving: HTTP, batch, stream ----------------------------------------------------------


def test_http_serves_the_hostile_pojo_with_h2os_scores(tmp_path):
    need_jdk()
    httpx = need_module("httpx", "dev")
    need_module("orjson", "http")
    from modelport.serve.http import create_app

    frame = rows("hostile")
    modelport.import_model(beside_jar(tmp_path, "hostile"), "evil", sample=frame,
                           alias="production")
    app = create_app(["evil@production"], poll_seconds=0)
    records = [{k: (None if v != v else v) for k, v in r.items()}
               for r in frame.head(30).to_dict(orient="records")]

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/predict/evil", json=records)

    reply = asyncio.run(go())
    assert reply.status_code == 200, reply.text
    sig, _ = imported("hostile")
    want = h2o_outputs("hostile", "h2o", sig)["proba"][:30]
    got = np.array([[p["proba"][c] for c in sig.classes] for p in reply.json()["predictions"]])
    assert np.array_equal(got, want)


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*MODELPORT, *args], capture_output=True, text=True, timeout=300,
                          env=env)


def test_cli_import_show_and_batch_predict(tmp_path, modelport_home):
    need_jdk()
    path = beside_jar(tmp_path, "gbm_multinomial", "GBM_model_1.java")
    frame = rows("gbm_multinomial")
    frame.to_csv(tmp_path / "customers.csv", index_label="customer_id")
    done = cli("import", str(path), "--name", "plans", "--sample", str(tmp_path / "customers.csv"),
               "--alias", "production", "--json")
    assert done.returncode == 0, done.stderr
    version = json.loads(done.stdout)
    assert version["native_format"] == "pojo"
    assert version["formats"]["compiled"]["status"] == "accepted"
    shown = cli("models", "show", "plans@production", "--json")
    assert shown.returncode == 0, shown.stderr
    shown = json.loads(shown.stdout)
    assert shown["serving"]["batch"]["format"] == "compiled"
    assert shown["formats"]["pojo"]["parity"]["runtime"] == "compiled"
    # deep learning and k-means stay on the JVM, and show says why
    for name, why in (("deeplearning_binomial", "calls no tree forests"),
                      ("kmeans_clustering", "no reader for Clustering POJOs")):
        done = cli("import", str(beside_jar(tmp_path, name)), "--name", name.split("_")[0],
                   "--json")
        assert done.returncode == 0, done.stderr
        shown = json.loads(cli("models", "show", json.loads(done.stdout)["uri"],
                               "--json").stdout)
        assert shown["formats"]["pojo"]["parity"]["runtime"] == "h2o-genmodel"
        assert shown["formats"]["compiled"]["status"] == "rejected"
        assert why in shown["formats"]["compiled"]["reason"]
        assert shown["serving"]["row"]["format"] == "pojo"
    # served by h2o-genmodel: the jar is named, as for MOJOs on the JVM runtime
    env = {**os.environ, h2o_jvm.GENMODEL_ENV: str(JAR)}
    out = tmp_path / "scores.parquet"
    done = cli("predict", "plans@production", "--input", str(tmp_path / "customers.csv"),
               "--output", str(out), "--id", "customer_id", "--workers", "1", env=env)
    assert done.returncode == 0, done.stderr
    got = pd.read_parquet(out).sort_values("customer_id")
    sig, _ = imported("gbm_multinomial")
    want = h2o_outputs("gbm_multinomial", "h2o", sig)
    assert np.abs(got[[f"proba_{c}" for c in sig.classes]].to_numpy() - want["proba"]).max() \
        <= TOL
    assert list(got["label"]) == list(want["label"])


@pytest.mark.services
def test_a_redis_stream_is_scored_with_h2os_scores(tmp_path):
    need_jdk()
    redis = need_module("redis", "brokers")
    orjson = need_module("orjson", "brokers")
    if not port_open("127.0.0.1", 6379):
        unavailable("Redis is not running on 127.0.0.1:6379")
    from modelport.serve.stream import run

    frame = rows("deeplearning_binomial")
    modelport.import_model(beside_jar(tmp_path, "deeplearning_binomial"), "dl",
                           sample=frame, alias="production")
    r = redis.Redis()
    t = uuid.uuid4().hex[:8]
    names = [f"pojo_in_{t}", f"pojo_out_{t}"]
    urls = [f"redis://127.0.0.1:6379/0?stream={n}" for n in names]
    n = 80
    for i, rec in enumerate(frame.head(n).to_dict(orient="records")):
        event = {"id": i, **{k: (None if v != v else v) for k, v in rec.items()}}
        r.xadd(names[0], {"data": orjson.dumps(event)})

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(run("dl@production", urls[0], urls[1], poll_seconds=60,
                                       batch=32, stop=stop))
        deadline = time.time() + 60
        while r.xlen(names[1]) < n and time.time() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        return await task

    try:
        asyncio.run(scenario())
        outputs = {o["key"]: o for o in (orjson.loads(f[b"data"])
                                        for _, f in r.xrange(names[1]))}
    finally:
        r.delete(*names)
    assert sorted(outputs) == list(range(n))
    sig, _ = imported("deeplearning_binomial")
    want = h2o_outputs("deeplearning_binomial", "h2o", sig)["proba"][:n]
    got = np.array([[outputs[i]["proba"][k] for k in range(2)] for i in range(n)])
    assert np.array_equal(got, want)


# --- what is missing, or does not compile: one line, exit code 2 ----------------------------


def test_missing_jar_missing_jdk_and_a_pojo_that_does_not_compile_are_one_line_exit_2(
        tmp_path):
    need_jdk()
    env = {k: v for k, v in os.environ.items() if k != h2o_jvm.GENMODEL_ENV}
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copyfile(FIXTURES / "glm_binomial.java", alone / "glm.java")
    no_jdk = tmp_path / "no-jdk"
    no_jdk.mkdir()
    cases = [
        (["import", str(alone / "glm.java"), "--name", "m"], env, "h2o-genmodel.jar"),
        (["import", str(beside_jar(tmp_path, "glm_binomial")), "--name", "m"],
         {**env, "PATH": str(no_jdk)}, "javac"),
        (["import", str(beside_jar(tmp_path, "broken_names")), "--name", "m"], env,
         "does not compile"),
        (["import", str(beside_jar(tmp_path, "glm_binomial", "glm.txt")), "--name", "m"], env,
         "--format onnx, pmml, mojo or pojo"),
    ]
    for args, case_env, needle in cases:
        done = cli(*args, env=case_env)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert needle in done.stderr, done.stderr
    assert Registry().list_models() == []
    # --format pojo takes any file name
    done = cli("import", str(tmp_path / "glm.txt"), "--name", "m", "--format", "pojo", env=env)
    assert done.returncode == 0, done.stderr


# --- nothing untrusted reaches the compile step or an export as code ----------------------------


def test_the_class_compiled_is_the_one_java_sees_declared():
    real = (FIXTURES / "gbm_binomial.java").read_text()
    cls = pojo.declared_class(real)[1]
    decoys = ('// public class Decoy extends GenModel\n'
              '/* public class Decoy2 */\n'
              'class Holder { String s = "public class Decoy3 {"; char c = \'"\'; '
              'String t = """\n public class Decoy4 \n"""; }\n')
    assert pojo.declared_class(decoys + real) == (None, cls)
    # a unicode escape is decoded before Java lexes: here it closes the comment, so the
    # class after it is declared, and a class inside an escaped string is not
    escaped = "/* \\u002a/ public class Early extends GenModel {} /* */\n"
    assert pojo.declared_class(escaped + real)[1] == "Early"
    assert pojo.declared_class('class H { String s = "\\\\u0022 public class Nope {"; }\n'
                               '/* \\\\u002a/ public class Nope2 */\n' + real)[1] == cls
    for source in ("public class Évil extends GenModel {}",
                   "public class a\\u002e\\u002e extends GenModel {}",
                   "class NotPublic {}"):
        with pytest.raises(UserError):
            pojo.declared_class(source)


def test_a_hostile_file_name_and_decoy_declarations_steer_nothing(tmp_path):
    need_jdk()
    source = ("// public class Decoy extends GenModel\n/* \"; touch pwned; \" */\n"
              + (FIXTURES / "glm_binomial.java").read_text())
    evil = tmp_path / 'x"; touch pwned; echo ".java'
    evil.write_text(source)
    shutil.copyfile(JAR, tmp_path / h2o_jvm.GENMODEL_JAR)
    v = modelport.import_model(evil, "glm")
    assert v.params["h2o_class"] == pojo.declared_class(source)[1] != "Decoy"
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_exports_of_a_hostile_pojo_quote_its_names_and_score_as_h2o_does(tmp_path):
    """The hostile GBM is read, so it exports: its names (quotes, comment openers, a tab, a
    triple-quote payload) reach SQL and code only through modelport.quoting, and what is
    written scores as H2O does; a POJO that is not read still refuses in one line."""
    need_jdk()
    import sqlite3

    from modelport.compile import codegen, sql
    from modelport.compile.exporter import export

    v = modelport.import_model(beside_jar(tmp_path, "hostile"), "evil")
    sig, _ = imported("hostile")
    want = h2o_outputs("hostile", "h2o", sig)["proba"][:, 1]
    frame = sig.coerce(rows("hostile"))
    from modelport.compile.ir import ModelIR

    model_ir = ModelIR.from_dict(json.loads(Registry().read_artefact(v, "compiled")))
    conn = sqlite3.connect(":memory:")
    cols = ", ".join(f'"{c.name.replace(chr(34), chr(34) * 2)}" '
                     f'{"REAL" if c.kind == "numeric" else "TEXT"}' for c in sig.inputs)
    conn.execute(f"CREATE TABLE t (row_id INTEGER PRIMARY KEY, {cols})")
    conn.executemany(f"INSERT INTO t VALUES ({', '.join('?' * (len(sig.names) + 1))})",
                     [(i, *[None if (x is None or x != x) else x for x in r])
                      for i, r in enumerate(frame.itertuples(index=False))])
    got = [r[0] for r in conn.execute(f"SELECT {sql.to_sql(model_ir, 'sqlite')} FROM t "
                                      "ORDER BY row_id")]
    assert np.abs(np.asarray(got, dtype=np.float64) - want).max() <= TOL
    ns: dict = {}
    exec(compile(codegen.generate(model_ir, "python", "evil"), "evil", "exec"), ns)  # noqa: S102
    records = [{k: (None if x != x else x) for k, x in r.items()}
               for r in frame.to_dict("records")]
    generated = np.asarray([ns["score"](r) for r in records], dtype=np.float64)
    assert np.abs(generated.reshape(len(want), -1)[:, -1] - want).max() <= TOL
    assert "import os" not in ns and not (tmp_path / "pwned").exists()
    for fmt in ("sql", "python", "javascript", "java", "c", "go"):
        written = export("evil", fmt, tmp_path / fmt)
        assert written and all(f.is_file() for f in written), fmt
    # a POJO that is not read has no intermediate form: exports refuse in one line
    modelport.import_model(beside_jar(tmp_path, "deeplearning_binomial"), "dl")
    with pytest.raises(UserError) as refused:
        export("dl", "python", tmp_path / "out")
    assert "\n" not in str(refused.value) and not (tmp_path / "out").exists()
    done = cli("export", "dl", "--format", "java", "--out", str(tmp_path / "out"))
    assert done.returncode == 2, done.stdout
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "out").exists()
