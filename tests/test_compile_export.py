"""Registration keeps the compiled form and times every runtime; export writes checked artefacts."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import modelport
from modelport.registry import Registry
from modelport.scoring.choice import choose

import zoo


def run_cli(*args: str, rc: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "modelport", *args], capture_output=True,
                          text=True, env=os.environ.copy(), timeout=180)
    assert proc.returncode == rc, (proc.returncode, proc.stdout, proc.stderr)
    return proc


@pytest.fixture
def pipeline_version():
    model, sample = zoo.build("pipeline")
    return model, sample, modelport.log_model(model, "churn", sample=sample,
                                              formats=["joblib", "compiled"])


def test_registration_stores_the_compiled_form_and_its_single_row_latency(pipeline_version):
    model, sample, version = pipeline_version
    art = version.artefact("compiled")
    assert art.status == "accepted", art.reason
    assert art.parity["max_abs_diff"] <= 1e-9
    assert art.parity["single_row_us"] > 0
    assert version.artefact("joblib").parity["single_row_us"] > art.parity["single_row_us"]
    reg = Registry()
    assert choose(reg.get("churn/1"), "row").format == "compiled"
    predictor = reg.load("churn/1", format="compiled")
    np.testing.assert_allclose(predictor.predict_proba(sample), model.predict_proba(sample),
                               rtol=0, atol=1e-9)


def test_serving_format_falls_back_to_a_fixed_order_when_untimed(pipeline_version):
    _, _, version = pipeline_version
    for a in version.artefacts:
        a.parity.pop("single_row_us", None)
    assert choose(version, "row").format == "compiled"  # onnx first, but there is none
    assert choose(version, "batch").format == "compiled"


def test_unsupported_model_is_refused_by_compiled_but_registers():
    from sklearn.neighbors import KNeighborsClassifier

    _, numeric, y, _ = zoo.data(n=100)
    model = KNeighborsClassifier().fit(numeric, y)
    version = modelport.log_model(model, "knn", sample=numeric, formats=["joblib", "compiled"])
    art = version.artefact("compiled")
    assert art.status == "rejected"
    assert "no compiler for KNeighborsClassifier" in art.reason
    assert choose(Registry().get("knn"), "row").format == "joblib"


def test_models_show_names_the_serving_runtime(pipeline_version):
    proc = run_cli("models", "show", "churn/1")
    text = " ".join(proc.stdout.split())
    assert "scores with (HTTP, streams, triggers): compiled: the fastest accepted" in text
    assert "scores with (batch jobs): compiled" in text
    assert "1-row" in proc.stdout


def test_export_python_writes_code_that_scores_like_the_model(pipeline_version, tmp_path):
    model, sample, _ = pipeline_version
    from modelport.compile import export

    files = export("churn/1", "python", tmp_path / "out")
    assert sorted(f.name for f in files) == ["README.md", "churn.py"]
    namespace: dict = {}
    exec((tmp_path / "out" / "churn.py").read_text(), namespace)
    row = {k: (None if v != v else v) for k, v in sample.iloc[3].items()}
    got = namespace["score"](row)
    np.testing.assert_allclose(got, model.predict_proba(sample.iloc[[3]])[0], rtol=0, atol=1e-9)
    assert "score(row)" in (tmp_path / "out" / "README.md").read_text()


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite"])
def test_export_sql_writes_the_expression_and_a_function_where_the_database_has_them(
        pipeline_version, tmp_path, dialect):
    from modelport.compile import export

    out = tmp_path / "out"
    if dialect == "sqlite":
        run_cli("export", "churn", "--format", "sql", "--dialect", dialect, "--out", str(out))
    else:
        export("churn", "sql", out, dialect=dialect)
    names = sorted(p.name for p in out.iterdir())
    expected = ["README.md", "churn_score.expr.sql"]
    if dialect != "sqlite":
        expected.append("churn_score.function.sql")
    assert names == expected
    assert "EXP(" in (out / "churn_score.expr.sql").read_text()


def test_export_of_an_uncompilable_model_is_refused_with_the_reason(tmp_path):
    from sklearn.neighbors import KNeighborsClassifier

    _, numeric, y, _ = zoo.data(n=100)
    modelport.log_model(KNeighborsClassifier().fit(numeric, y), "knn", sample=numeric,
                        formats=["joblib"])
    proc = run_cli("export", "knn", "--format", "java", "--out", str(tmp_path / "x"), rc=2)
    assert "no compiler for KNeighborsClassifier" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_export_of_a_stored_format_that_was_rejected_names_the_reason(pipeline_version, tmp_path):
    from modelport.compile import export
    from modelport.errors import UserError

    with pytest.raises(UserError, match="cannot be exported as onnx"):
        export("churn", "onnx", tmp_path / "out")


def test_export_compiled_copies_the_stored_artefact(pipeline_version, tmp_path):
    from modelport.compile import export

    export("churn", "compiled", tmp_path / "out")
    assert (tmp_path / "out" / "churn.compiled.json").read_bytes() == Registry().read_artefact(
        Registry().get("churn/1"), "compiled")


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_export_sql_of_a_regressor_or_a_label_model_says_what_it_returns(tmp_path, task):
    import sqlite3

    from sklearn.linear_model import LinearRegression
    from sklearn.tree import DecisionTreeClassifier

    _, numeric, y, value = zoo.data()
    train, held = numeric.iloc[:500], numeric.iloc[500:]
    if task == "regression":
        model = LinearRegression().fit(train, value[:500])
        expected, said = model.predict(held), "returns the predicted value"
    else:
        target = np.digitize(value[:500], [30, 90])  # three classes
        model = DecisionTreeClassifier(max_depth=4, random_state=0).fit(train, target)
        expected, said = model.predict(held), "returns the predicted label"
    modelport.log_model(model, "amount", sample=train, formats=["joblib"])
    out = tmp_path / "out"
    run_cli("export", "amount", "--format", "sql", "--dialect", "sqlite", "--out", str(out))
    assert said in " ".join((out / "README.md").read_text().split())
    expr = (out / "amount_score.expr.sql").read_text()
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, tenure REAL, charges REAL, "
                 "calls REAL, usage REAL)")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)",
                     [(i, *map(float, r)) for i, r in enumerate(held.itertuples(index=False))])
    got = [r[0] for r in conn.execute(f"SELECT {expr} FROM t ORDER BY id")]
    if task == "regression":
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    else:
        assert [int(g) for g in got] == [int(e) for e in expected]
