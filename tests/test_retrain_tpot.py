"""The TPOT engine really searches, keeps its deadline and hands back a plain pipeline.

TPOT 1.1 needs the ``xgboost`` distribution, which clashes with modelport's
``xgboost-cpu``, so it runs in a virtual environment of its own (cached like Airflow's,
see ``conftest.cached_venv``) with the same scikit-learn, NumPy and pandas as this
one, so that the model it registers loads here.
"""

from __future__ import annotations

import json
import os
import subprocess
from importlib.metadata import version

import yaml

from modelport.datasets import churn
from modelport.io import write_table
from modelport.registry import Registry

from conftest import cached_venv

BUDGET_S = 30


def tpot_requirements() -> list[str]:
    same = [f"{name}=={version(name)}" for name in ("scikit-learn", "numpy", "pandas",
                                                     "pyarrow", "skops", "joblib")]
    return ["tpot==1.1.0", *same, "sqlalchemy>=2.0", "typer>=0.12", "rich>=13", "pyyaml>=6",
            "croniter>=2"]


def test_tpot_engine_retrains_within_its_budget(tmp_path):
    python = cached_venv("tpot", tpot_requirements())
    shim = tmp_path / "shim"
    shim.mkdir()
    import modelport

    (shim / "modelport").symlink_to(os.path.dirname(modelport.__file__))
    data = write_table(churn.generate(2000, seed=11), tmp_path / "fresh.parquet")
    spec = tmp_path / "churn.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "churn", "data": {"source": str(data), "target": "churned", "id": "customer_id"},
        "formats": ["joblib"],
        "automl": {"engine": "tpot", "time_budget_s": BUDGET_S,
                   "estimators": ["hgb", "lr", "rf", "extra_tree"]},
        "promotion": {"metric": "roc_auc"}}))
    env = {**os.environ, "PYTHONPATH": str(shim), "OMP_NUM_THREADS": "1"}
    ran = subprocess.run([str(python), "-m", "modelport", "retrain", str(spec), "--json"],
                         capture_output=True, text=True, env=env, timeout=BUDGET_S * 6)
    assert ran.returncode == 0, ran.stderr[-3000:]
    result = json.loads(ran.stdout)
    assert result["decision"] == "promoted"
    search = result["search"]
    assert search["engine"] == "tpot"
    # the default gradient boosting, and what TPOT found before it was stopped
    assert len(search["leaderboard"]) == 2, search
    assert search["seconds"] <= BUDGET_S * 1.1, search
    assert 0.6 < result["challenger"]["score"] <= 1.0

    # the winner is plain scikit-learn: it loads and scores in this environment
    predictor = Registry().load("churn@production")
    proba = predictor.predict_proba(churn.generate(50, seed=12).drop(columns=["churned"]))
    assert proba.shape == (50, 2)
