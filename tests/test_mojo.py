"""H2O MOJOs read into the compiled form score exactly as h2o-genmodel, H2O's own scorer.

The fixtures (``tests/fixtures/mojo``, made by its ``make_fixtures.py`` with h2o 3.46.0.11)
are GBM, DRF and GLM models for a binomial, a multinomial and a regression target, plus a
Poisson GBM, trained on churn data with categorical columns (one of 45 levels, so trees
split on bitsets wider than 32) and missing values; the scoring sample adds missing values,
unseen levels and all-missing rows. Every model is scored by modelport and by
``hex.genmodel.tools.PredictCsv`` from the committed ``h2o-genmodel.jar`` on the sample plus
rows built from the model's own split points and compared to 1e-9; the backends written from
the read form (SQL, generated Python, PMML) agree with it; import proves the reading against
genmodel and refuses one that differs; a MOJO the reader cannot read (deep learning) is
scored by h2o-genmodel in a long-lived JVM.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.compile import codegen, evaluate, sql
from modelport.compile.from_mojo import read_mojo, to_ir
from modelport.errors import UserError
from modelport.formats import mojo
from modelport.predictor import Predictor
from modelport.registry import Registry
from modelport.testing import check_predictor

from conftest import need_module, unavailable

FIXTURES = Path(__file__).parent / "fixtures" / "mojo"
JAR = FIXTURES / "h2o-genmodel.jar"
READ = ("gbm_binomial", "drf_binomial", "glm_binomial", "gbm_multinomial", "drf_multinomial",
        "glm_multinomial", "gbm_regression", "drf_regression", "glm_regression", "gbm_poisson")
UNREAD = "deeplearning_binomial"
TOL = 1e-9


def need_java() -> None:
    if shutil.which("java") is None:
        unavailable("java is not on PATH: h2o-genmodel, the reference scorer, runs in Java "
                    "(apt-get install openjdk-17-jre-headless)")
    if not JAR.is_file():
        unavailable(f"{JAR} is missing: regenerate the fixtures (make_fixtures.py)")


def data(name: str) -> bytes:
    return (FIXTURES / f"{name}.zip").read_bytes()


def sample() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "sample.csv")


@cache
def case(name: str):
    """(signature, IR, rows: sample + probe rows, h2o-genmodel's outputs on them)."""
    need_java()
    sig = mojo.inspect(data(name))
    model_ir = to_ir(data(name), sig)
    rows = mojo.proof_rows(sig, model_ir, sample())
    return sig, model_ir, rows, mojo.genmodel_outputs(data(name), rows, sig, JAR)


def scores(out: dict) -> np.ndarray:
    return out["proba"] if "proba" in out else out["value"].reshape(-1, 1)


def assert_exact(got: np.ndarray, want: np.ndarray, what: str) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert not np.isnan(want).any() and not np.isnan(got).any(), what
    diff = np.abs(got - want) / np.maximum(1.0, np.abs(want))
    assert diff.max() <= TOL, f"{what}: differs by {diff.max():.3g}"


class GenmodelReference(Predictor):
    """h2o-genmodel's PredictCsv as a Predictor: the reference of the conformance suite."""

    format = "h2o-genmodel"

    def __init__(self, name: str) -> None:
        super().__init__(mojo.inspect(data(name)))
        self.name = name

    def _run(self, frame) -> dict:
        out = mojo.genmodel_outputs(data(self.name), frame, self.signature, JAR)
        if "proba" in out:  # modelport's label: the likeliest class
            out["label"] = np.asarray(self.classes)[np.argmax(out["proba"], axis=1)]
        return out


# --- the fixtures are what they claim -------------------------------------------------------


def test_fixtures_hold_categorical_columns_missing_values_and_unseen_levels():
    frame = sample()
    assert frame[["plan", "contract", "payment_method", "region", "city"]].isna().any().all()
    assert frame[["total_charges", "data_usage_gb", "age"]].isna().any().all()
    assert (frame.drop(columns=["churned"]).isna().all(axis=1)).sum() >= 3
    trained = set(read_mojo(data("gbm_binomial")).domains[10])
    assert "city-unseen" in set(frame["city"]) and "city-unseen" not in trained
    for name in (*READ, UNREAD):
        m = read_mojo(data(name))
        assert m.info["h2o_version"] == "3.46.0.11"
        for levels in m.domains.values():
            assert "nan" not in levels, f"{name}: a missing value became a level"
    # the 45-level city column (index 10) makes trees write bitsets of 45 bits with an
    # offset, not the inline 32-bit form: node type & 12 == 12, column, NA, offset, length
    city_split = re.compile(rb"[\x00-\xff]\x0a\x00[\x00-\x05]\x00\x00\x2d\x00\x00\x00")
    assert any(m.group(0)[0] & 12 == 12
               for n, blob in read_mojo(data("gbm_binomial")).files.items() if n.endswith(".bin")
               for m in city_split.finditer(blob))


def test_signature_is_read_from_the_mojo():
    sig = mojo.inspect(data("gbm_binomial"))
    assert sig.task == "classification" and sig.classes == [0, 1]
    assert sig.names == ["tenure_months", "monthly_charges", "total_charges", "support_calls",
                         "data_usage_gb", "age", "plan", "contract", "payment_method", "region",
                         "city"]
    kinds = {c.name: c for c in sig.inputs}
    assert kinds["age"].kind == "numeric" and kinds["age"].nullable
    assert kinds["plan"].categories == ["basic", "premium", "standard", "unlimited"]
    assert len(kinds["city"].categories) == 45
    glm = mojo.inspect(data("glm_binomial"))  # GLM puts its categorical columns first
    assert glm.names[:5] == ["city", "region", "plan", "payment_method", "contract"]
    multi = mojo.inspect(data("drf_multinomial"))
    assert multi.classes == ["basic", "premium", "standard", "unlimited"]
    assert "plan" not in multi.names
    assert mojo.inspect(data("glm_regression")).task == "regression"


# --- the reading is exact -----------------------------------------------------------------


@pytest.mark.parametrize("name", READ)
def test_read_mojo_scores_exactly_as_h2o_genmodel(name):
    sig, model_ir, rows, ref = case(name)
    predictor = mojo.load(data(name), sig)
    assert predictor.runtime == "compiled"
    got = predictor.run(rows)
    assert_exact(scores(got), scores(ref), f"{name} compiled runtime")
    assert_exact(scores(evaluate(model_ir, rows)), scores(ref), f"{name} NumPy evaluator")
    if sig.task == "classification":
        m = read_mojo(data(name))
        if m.category == "Multinomial":
            assert [str(v) for v in got["label"]] == [str(v) for v in ref["label"]]
        else:
            # H2O labels a binomial row with the threshold that maximised F1 in training;
            # modelport's label is the likelier class, and the threshold is recorded
            threshold = m.info["default_threshold"]
            h2o_labels = np.where(got["proba"][:, 1] >= threshold, sig.classes[1], sig.classes[0])
            assert [str(v) for v in h2o_labels] == [str(v) for v in ref["label"]]
            assert list(got["label"]) == list(np.asarray(sig.classes)[got["proba"].argmax(1)])


@pytest.mark.parametrize("name", ["gbm_binomial", "drf_multinomial", "glm_binomial"])
def test_mojo_predictor_passes_the_predictor_conformance_suite(name):
    need_java()
    predictor = mojo.load(data(name), mojo.inspect(data(name)))
    check_predictor(predictor, GenmodelReference(name), sample().drop(columns=["churned"]), TOL)


def test_probe_rows_cover_split_points_from_both_sides():
    sig, model_ir, rows, _ = case("gbm_binomial")
    points = mojo._split_points(model_ir)
    assert points["tenure_months"], "the GBM splits on tenure"
    t = points["tenure_months"][0]
    values = set(rows["tenure_months"].dropna())
    assert t in values and float(np.nextafter(t, -np.inf)) in values
    assert rows["city"].isna().any() and (rows["city"] == "modelport-unseen-level").any()


# --- every backend written from the read form --------------------------------------------------


def _sqlite(model_ir, frame) -> list:
    conn = sqlite3.connect(":memory:")
    sig = model_ir.signature
    cols = ", ".join(f'"{c.name}" {"REAL" if c.kind == "numeric" else "TEXT"}'
                     for c in sig.inputs)
    conn.execute(f"CREATE TABLE t (row_id INTEGER PRIMARY KEY, {cols})")
    conn.executemany(f"INSERT INTO t VALUES ({', '.join('?' * (len(sig.names) + 1))})",
                     [(i, *[None if (v is None or v != v) else v for v in r])
                      for i, r in enumerate(frame.itertuples(index=False))])
    got = [r[0] for r in conn.execute(f"SELECT {sql.to_sql(model_ir, 'sqlite')} FROM t "
                                      "ORDER BY row_id")]
    conn.close()
    return got


@pytest.mark.parametrize("name", READ)
def test_sql_and_generated_python_from_a_mojo_match_h2o_genmodel(name):
    sig, model_ir, rows, ref = case(name)
    frame = sig.coerce(rows)
    got = _sqlite(model_ir, frame)
    kind = sql.result_kind(model_ir)
    if kind == "probability":
        assert_exact(got, ref["proba"][:, 1], f"{name} SQLite")
    elif kind == "value":
        assert_exact(got, ref["value"], f"{name} SQLite")
    else:  # multiclass: the likeliest class
        want = np.asarray(sig.classes)[np.argmax(ref["proba"], axis=1)]
        assert [str(v) for v in got] == [str(v) for v in want]
    ns: dict = {}
    exec(compile(codegen.generate(model_ir, "python", name), name, "exec"), ns)  # noqa: S102
    records = [{k: (None if v != v else v) for k, v in r.items()}
               for r in frame.to_dict("records")]
    generated = np.asarray([ns["score"](r) for r in records], dtype=np.float64)
    assert_exact(generated.reshape(scores(ref).shape), scores(ref), f"{name} generated Python")


def test_generated_c_from_mojos_matches_h2o_genmodel(tmp_path):
    """C, the most distant target: a forest whose class votes are normalised and a GBM."""
    if shutil.which("gcc") is None:
        unavailable("gcc is not installed")
    names = ("drf_multinomial", "gbm_binomial")
    calls = []
    for name in names:
        sig, model_ir, rows, ref = case(name)
        (tmp_path / f"{name}.c").write_text(codegen.generate(model_ir, "c", name))
        width = scores(ref).shape[1]
        for r in sig.coerce(rows).to_dict("records"):
            nums = ", ".join("NAN" if r[c] != r[c] else repr(float(r[c])) for c in sig.numeric)
            cats = ", ".join(json.dumps(r[c]) if isinstance(r[c], str) else "NULL"
                             for c in sig.categorical)
            calls.append(f"{{ double n[] = {{{nums}}}; const char *c[] = {{{cats}}}; "
                         f"double o[{width}]; {name}_score(n, c, o); for (int k = 0; k < {width};"
                         f" k++) printf(\"%.17g \", o[k]); printf(\"\\n\"); }}")
    protos = "".join(f"void {n}_score(const double *, const char *const *, double *);\n"
                     for n in names)
    (tmp_path / "main.c").write_text("#include <math.h>\n#include <stddef.h>\n#include <stdio.h>\n"
                                     f"{protos}int main(void) {{\n" + "\n".join(calls)
                                     + "\nreturn 0; }\n")
    subprocess.run(["gcc", "-std=c99", "-O0", "-o", "scores", "main.c",
                    *[f"{n}.c" for n in names], "-lm"], cwd=tmp_path, check=True, timeout=300)
    out = subprocess.run(["./scores"], cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    start = 0
    for name in names:
        ref = scores(case(name)[3])
        got = np.array([[float(v) for v in line.split()] for line in out[start:start + len(ref)]])
        start += len(ref)
        assert_exact(got, ref, f"{name} generated C")


# one per output transform: logistic, forest probabilities, normalised votes, softmax of a
# linear model, exp link, averaged regression trees
@pytest.mark.parametrize("name", ["gbm_binomial", "drf_binomial", "drf_multinomial",
                                  "glm_multinomial", "gbm_poisson", "drf_regression"])
def test_pmml_from_a_mojo_matches_h2o_genmodel(name):
    need_module("pypmml", "pmml")
    from modelport.compile.pmml import to_pmml
    from modelport.formats import pmml

    if not pmml.available():
        unavailable("PMML scoring needs Java")
    sig, model_ir, rows, ref = case(name)
    got = pmml.load(to_pmml(model_ir).encode("utf-8"), sig).run(rows)
    assert_exact(scores(got), scores(ref), f"{name} PMML (pypmml)")


# --- import ------------------------------------------------------------------------------------


def _beside_jar(tmp_path: Path, name: str) -> Path:
    """The MOJO with h2o-genmodel.jar beside it, as download_mojo(get_genmodel_jar=True) leaves them."""
    shutil.copyfile(FIXTURES / f"{name}.zip", tmp_path / f"{name}.zip")
    shutil.copyfile(JAR, tmp_path / mojo.GENMODEL_JAR)
    return tmp_path / f"{name}.zip"


def test_import_proves_the_reading_against_genmodel_and_derives_formats(tmp_path, monkeypatch):
    need_java()
    need_module("pypmml", "pmml")
    monkeypatch.delenv(mojo.GENMODEL_ENV, raising=False)
    rows = sample().head(120)
    v = modelport.import_model(_beside_jar(tmp_path, "gbm_multinomial"), "plans", sample=rows,
                               alias="production")
    assert v.native_format == "mojo"
    assert v.accepted_formats() == ["compiled", "mojo", "pmml"]
    figures = v.artefact("mojo").parity
    assert figures["runtime"] == "compiled" and figures["reference"] == "h2o-genmodel"
    assert figures["rows"] == len(rows) + mojo.PROBE_ROWS
    assert figures["max_abs_diff"] <= TOL and figures["label_flips"] == 0
    assert v.artefact("compiled").parity["reference"] == "h2o-genmodel"
    assert all(v.artefact(f).parity["single_row_us"] > 0 for f in v.accepted_formats())
    assert v.params["h2o_algo"] == "gbm" and v.params["h2o_n_trees"] == 25
    assert v.lineage["imported_from"] == "gbm_multinomial.zip"
    reg = Registry()
    assert len(reg.sample(v)) == len(rows)
    ref = GenmodelReference("gbm_multinomial").run(rows)
    for fmt in ("mojo", "compiled", "fastest"):
        out = modelport.load("plans@production", format=fmt if fmt != "mojo" else None).run(rows)
        assert_exact(out["proba"], ref["proba"], fmt)


def test_binomial_import_records_h2os_threshold(tmp_path, monkeypatch):
    need_java()
    monkeypatch.delenv(mojo.GENMODEL_ENV, raising=False)
    v = modelport.import_model(_beside_jar(tmp_path, "drf_binomial"), "churn",
                               sample=sample().head(50), formats=["compiled"])
    threshold = read_mojo(data("drf_binomial")).info["default_threshold"]
    assert v.params["h2o_default_threshold"] == threshold
    assert v.accepted_formats() == ["compiled", "mojo"]


def test_import_without_a_genmodel_jar_records_that_nothing_was_compared(tmp_path,
                                                                          monkeypatch):
    monkeypatch.delenv(mojo.GENMODEL_ENV, raising=False)
    path = tmp_path / "model.zip"
    shutil.copyfile(FIXTURES / "glm_regression.zip", path)
    v = modelport.import_model(path, "charges", formats=["compiled"])
    assert v.artefact("mojo").parity["reference"] is None
    assert "max_abs_diff" not in v.artefact("mojo").parity
    assert v.sample_sha256 is None
    assert modelport.load("charges").runtime == "compiled"


def test_a_reading_that_differs_from_genmodel_is_refused_and_nothing_registered(
        tmp_path, monkeypatch):
    need_java()
    from modelport.compile import from_mojo

    monkeypatch.delenv(mojo.GENMODEL_ENV, raising=False)
    real = from_mojo._f32
    # a reader that rounds its leaves differently from H2O (one part in 1e6)
    monkeypatch.setattr(from_mojo, "_f32", lambda blob, pos: real(blob, pos) * (1 + 1e-6))
    with pytest.raises(UserError, match=r"differs from h2o-genmodel .* nothing was registered"):
        modelport.import_model(_beside_jar(tmp_path, "gbm_regression"), "charges",
                               formats=["compiled"])
    assert Registry().list_models() == []


def _zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


def test_files_that_are_not_mojos_are_refused_with_the_reason(tmp_path):
    cases = {
        "notes.zip": (b"not a zip at all", "not a zip archive"),
        "other.zip": (_zip({"readme.txt": "hello"}), "has no model.ini"),
        "auto.zip": (_zip({"model.ini": "[info]\nalgo = deeplearning\ncategory = AutoEncoder\n"
                                        "n_features = 1\nn_columns = 1\n[columns]\nx\n"}),
                     "category 'AutoEncoder'"),
    }
    for fname, (blob, message) in cases.items():
        (tmp_path / fname).write_bytes(blob)
        with pytest.raises(UserError, match=message):
            modelport.import_model(tmp_path / fname, "m")
    done = subprocess.run([sys.executable, "-m", "modelport", "import", str(tmp_path / "other.zip"),
                           "--name", "m"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "model.ini" in done.stderr


def test_a_sample_without_a_model_column_is_refused_naming_it(tmp_path):
    with pytest.raises(UserError, match=r"sample lacks column\(s\) 'city'"):
        modelport.import_model(FIXTURES / "gbm_binomial.zip", "m",
                               sample=sample().drop(columns=["city"]), formats=["compiled"])
    assert Registry().list_models() == []


def test_model_ini_values_and_escaped_levels_are_read_as_h2o_writes_them():
    from modelport.compile import from_mojo

    assert from_mojo._value("[0.5, 1.0E-4, NaN]")[1] == 1e-4
    assert math.isnan(from_mojo._value("[0.5, 1.0E-4, NaN]")[2])
    assert from_mojo._value("null") is None and from_mojo._value("true") is True
    assert from_mojo._value("-Infinity") == -math.inf and from_mojo._value("12") == 12
    assert from_mojo._value("bernoulli") == "bernoulli"
    assert from_mojo._unescape("two\\nlines \\\\ back") == "two\nlines \\ back"
    assert from_mojo._typed_classes(["0", "1"]) == [0, 1]
    assert from_mojo._typed_classes(["01", "1"]) == ["01", "1"]


# --- a MOJO the reader cannot read: h2o-genmodel in a long-lived JVM ----------------------------

_JVM_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from modelport.formats import mojo
from modelport.testing import check_predictor
from test_mojo import GenmodelReference, data, sample, JAR

out = {}
frame = sample()
for name, runtime in (("deeplearning_binomial", None), ("gbm_binomial", "jvm"),
                      ("glm_multinomial", "jvm"), ("gbm_regression", "jvm")):
    sig = mojo.inspect(data(name))
    p = mojo.MojoPredictor(data(name), sig, runtime=runtime)
    got = p.run(frame)
    ref = mojo.genmodel_outputs(data(name), frame, sig, JAR)
    key = "proba" if "proba" in got else "value"
    out[name] = {"runtime": p.runtime, "reader": p.reader_refusal,
                 "diff": float(np.max(np.abs(got[key] - ref[key])))}
    if runtime is None:
        check_predictor(p, GenmodelReference(name), frame.drop(columns=["churned"]), 1e-9)
print(json.dumps(out))
"""


def test_a_mojo_the_reader_cannot_read_is_scored_by_h2o_genmodel_in_process(tmp_path,
                                                                            monkeypatch):
    need_java()
    need_module("jpype", "mojo")
    env = {**os.environ, mojo.GENMODEL_ENV: str(JAR)}
    # its own process: a JVM, once started, stays for the life of the process
    done = subprocess.run([sys.executable, "-c", _JVM_SCRIPT, str(Path(__file__).parent)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["deeplearning_binomial"]["runtime"] == "h2o-genmodel"
    assert "Deep Learning" in out["deeplearning_binomial"]["reader"]
    for name, figures in out.items():
        assert figures["diff"] <= TOL, (name, figures)
        assert figures["runtime"] == "h2o-genmodel"


def test_importing_an_unreadable_mojo_needs_the_genmodel_jar(tmp_path, monkeypatch):
    monkeypatch.delenv(mojo.GENMODEL_ENV, raising=False)
    path = tmp_path / "dl.zip"
    shutil.copyfile(FIXTURES / f"{UNREAD}.zip", path)
    with pytest.raises(UserError, match=mojo.GENMODEL_ENV):
        modelport.import_model(path, "dl")
    assert Registry().list_models() == []
