"""The Airflow DAG that ``modelport airflow-dag`` writes loads in Airflow's own DagBag with
no import errors, and the command its task runs retrains and exits with the decision.

Airflow lives in a virtual environment of its own, built once and cached under
``~/.cache/modelport/venvs`` (``$MODELPORT_VENV_CACHE``, see ``conftest.cached_venv``),
keyed by the Python and the requirements, so only the first run pays for the install.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from modelport.datasets import churn
from modelport.io import write_table

from conftest import cached_venv

AIRFLOW = "apache-airflow==3.3.2"


LOAD = """
import json, sys
try:  # Airflow 3.1+
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags.get(sys.argv[2])  # as parsed; get_dag would ask the metadata database
task = dag.get_task("retrain") if dag else None
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dag_ids),
    "task_type": type(task).__name__ if task else None,
    "bash_command": getattr(task, "bash_command", None),
    "env": getattr(task, "env", None),
    "skip_on_exit_code": sorted(getattr(task, "skip_on_exit_code", None) or []),
    "schedule": str(getattr(dag, "schedule", None)),
    "catchup": getattr(dag, "catchup", None),
}))
"""


def test_dag_loads_in_airflow_and_its_task_retrains(tmp_path):
    from typer.testing import CliRunner

    from modelport.cli import app

    python = cached_venv("airflow", [AIRFLOW])
    data = write_table(churn.generate(400, seed=9), tmp_path / "fresh.parquet")
    spec = tmp_path / "churn.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "churn", "data": {"source": str(data), "target": "churned", "id": "customer_id"},
        "model": {"params": {"max_iter": 20}}, "formats": ["joblib"]}))
    written = CliRunner().invoke(app, ["airflow-dag", str(spec), "--cron", "0 3 * * *",
                                       "--env", "OMP_NUM_THREADS=1"])
    assert written.exit_code == 0, written.output
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "churn_retrain.py").write_text(written.stdout)

    home = tmp_path / "airflow-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(dags))
    loaded = subprocess.run([str(python), "-c", LOAD, str(dags), "churn_retrain"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    found = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert found["errors"] == {}
    assert found["dags"] == ["churn_retrain"]
    assert found["task_type"] == "BashOperator"
    assert found["skip_on_exit_code"] == [3]
    assert "0 3 * * *" in found["schedule"] and found["catchup"] is False
    assert found["env"]["MODELPORT_HOME"] == os.environ["MODELPORT_HOME"]
    assert found["env"]["OMP_NUM_THREADS"] == "1"

    # what the Airflow worker would run, with the task's environment
    ran = subprocess.run(["bash", "-c", found["bash_command"]], capture_output=True,
                         text=True, timeout=300, env={**os.environ, **found["env"]})
    assert ran.returncode == 0, ran.stderr[-2000:]
    result = json.loads(ran.stdout)
    assert result["decision"] == "promoted" and result["challenger"]["version"] == 1


def test_dag_writer_refuses_what_airflow_cannot_run(tmp_path):
    from modelport.errors import UserError
    from modelport.train.airflow import dag_source

    spec = tmp_path / "churn.yaml"
    spec.write_text(yaml.safe_dump({"name": "churn", "data": {"source": "x.csv",
                                                              "target": "churned"}}))
    with pytest.raises(UserError, match="no seconds field"):
        dag_source(spec, cron="*/5 * * * * *")
    with pytest.raises(UserError, match="bad --env"):
        dag_source(spec, cron="@daily", env=["NOEQUALS"])
    with pytest.raises(UserError, match="bad --dag-id"):
        dag_source(spec, cron="@daily", dag_id="no spaces allowed")
    source = dag_source(spec, cron="@daily", inherit_env=False)
    compile(source, "churn_retrain.py", "exec")
    assert "dag_id='churn_retrain'" in source and "env={}" in source
