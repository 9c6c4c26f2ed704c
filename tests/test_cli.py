"""The command line: light start-up, JSON for scripts, one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import modelport

import zoo

HEAVY = ("sklearn", "onnxruntime", "pyspark", "redis", "nats", "aio_pika", "pika", "paho",
         "confluent_kafka", "lightgbm", "xgboost", "pandas", "skl2onnx", "pypmml")


def run(*args: str, check_rc: int | None = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "modelport", *args], capture_output=True,
                          text=True, env=os.environ.copy(), timeout=120)
    if check_rc is not None:
        assert proc.returncode == check_rc, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def test_help_imports_no_heavy_library_and_is_fast():
    code = (
        "import sys, time; t = time.perf_counter(); sys.argv = ['modelport', '--help']\n"
        "from modelport.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY', heavy, 'SECONDS', time.perf_counter() - t)\n"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    wall = time.perf_counter() - start
    line = [x for x in out.stdout.splitlines() if x.startswith("HEAVY")][0]
    assert "HEAVY []" in line, line
    assert "models" in out.stdout and "quickstart" in out.stdout
    assert wall < 3.0  # interpreter start included; the import budget itself is below


@pytest.fixture
def registered():
    model, sample = zoo.build("pipeline")
    v1 = modelport.log_model(model, "churn", sample=sample, formats=["joblib"],
                             metrics={"roc_auc": 0.81})
    v2 = modelport.log_model(model, "churn", sample=sample, formats=["joblib", "skops"],
                             metrics={"roc_auc": 0.83}, parent=v1.version)
    return v1, v2


def test_models_list_and_show_json(registered):
    listed = json.loads(run("models", "list", "--json").stdout)
    assert listed[0]["name"] == "churn" and listed[0]["versions"] == 2
    run("models", "alias", "churn", "2", "production", "--reason", "better auc")
    shown = json.loads(run("models", "show", "churn@production", "--json").stdout)
    assert shown["version"] == 2 and shown["aliases"] == ["production"]
    assert shown["metrics"] == {"roc_auc": 0.83}
    assert {c["name"] for c in shown["signature"]["inputs"]} >= {"tenure", "plan"}
    assert shown["formats"]["skops"]["parity"]["max_abs_diff"] == 0.0
    assert shown["formats"]["skops"]["parity"]["label_flips"] == 0
    assert shown["parent_version"] == 1
    model = json.loads(run("models", "show", "churn", "--json").stdout)
    assert [v["version"] for v in model["versions"]] == [1, 2]
    assert model["alias_history"][0]["reason"] == "better auc"


def test_alias_rollback_and_delete(registered):
    run("models", "alias", "churn", "1", "production")
    run("models", "alias", "churn", "2", "production")
    out = json.loads(run("models", "rollback", "churn@production", "--json").stdout)
    assert out["version"] == 1
    refused = run("models", "delete", "churn/1", check_rc=2)
    assert "production" in refused.stderr and "--force" in refused.stderr
    run("models", "delete", "churn/2")
    assert json.loads(run("models", "list", "--json").stdout)[0]["versions"] == 1


@pytest.mark.parametrize("args, needle", [
    (("models", "show", "nope"), "no model named 'nope'"),
    (("models", "show", "churn/9"), "no version 9"),
    (("models", "show", "churn@gold"), "no alias 'gold'"),
    (("models", "show", "churn/x"), "bad version"),
    (("models", "alias", "churn", "9", "production"), "no version 9"),
    (("models", "rollback", "churn@production"), "no alias"),
    (("models", "delete", "churn"), "--yes"),
    (("import", "missing.onnx", "--name", "m"), "missing.onnx"),
])
def test_user_errors_print_one_line_and_exit_2(registered, args, needle):
    proc = run(*args, check_rc=2)
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_quickstart_leaves_churn_at_production(tmp_path):
    proc = run("quickstart", "--rows", "2000", "--dir", str(tmp_path / "qs"))
    assert "churn probability" in proc.stdout
    shown = json.loads(run("models", "show", "churn@production", "--json").stdout)
    assert shown["version"] == 1 and shown["metrics"]["roc_auc"] > 0.7
    assert shown["formats"]["joblib"]["status"] == "accepted"
    assert (tmp_path / "qs" / "customers.parquet").exists()


@pytest.mark.parametrize("fmt, suffix, module, extra", [
    ("onnx", ".onnx", "onnxruntime", "onnx"),
    ("pmml", ".pmml", "pypmml", "pmml"),
])
def test_import_registers_a_file_made_elsewhere(tmp_path, fmt, suffix, module, extra):
    from conftest import need_module

    need_module(module, extra)
    model, sample = zoo.build("logreg")
    source = modelport.log_model(model, "made-elsewhere", sample=sample, formats=[fmt])
    path = tmp_path / f"model{suffix}"
    path.write_bytes(modelport.Registry().read_artefact(source, fmt))
    sample_path = tmp_path / "sample.parquet"
    sample.to_parquet(sample_path)
    out = json.loads(run("import", str(path), "--name", "imported", "--sample",
                         str(sample_path), "--alias", "production", "--json").stdout)
    assert out["native_format"] == fmt and out["aliases"] == ["production"]
    imported = modelport.load("imported@production")
    expected = model.predict_proba(sample)
    assert abs(imported.predict_proba(sample) - expected).max() < 1e-4
