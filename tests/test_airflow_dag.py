"""The Airflow DAG that ``modelport airflow-dag`` writes loads in Airflow's own DagBag with
no import errors, and the command its task runs retrains and exits with the decision.

Airflow lives in a virtual environment of its own, built once and cached under
``~/.cache/modelport/venvs`` (``$MODELPORT_VENV_CACHE``, see ``conftest.cached_venv``),
keyed by the Python and the requirements, so only the first run pays for the install.
"""

from __future__ import annotations

import ast
import json
import os
import shlex
import subprocess
from pathlib import Path

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


def rendered(value):  # what the worker runs: Airflow renders templated fields first
    return task.render_template(value, {}, dag.get_template_env()) if task else None


print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dag_ids),
    "task_type": type(task).__name__ if task else None,
    "bash_command": getattr(task, "bash_command", None),
    "env": getattr(task, "env", None),
    "skip_on_exit_code": sorted(getattr(task, "skip_on_exit_code", None) or []),
    "schedule": str(getattr(dag, "schedule", None)),
    "catchup": getattr(dag, "catchup", None),
    "rendered_command": rendered(getattr(task, "bash_command", None)),
    "rendered_env": rendered(getattr(task, "env", None)),
}))
"""


def test_dag_loads_in_airflow_and_its_task_retrains(tmp_path):
    from typer.testing import CliRunner

    from modelport.cli import app

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

    found = _load_in_airflow(dags, "churn_retrain")
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


def _load_in_airflow(dags: Path, dag_id: str, **env: str) -> dict:
    python = cached_venv("airflow", [AIRFLOW])
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    environ.update(AIRFLOW_HOME=str(dags.parent / "airflow-home"),
                   AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__DAGS_FOLDER=str(dags),
                   **env)
    loaded = subprocess.run([str(python), "-c", LOAD, str(dags), dag_id], env=environ,
                            capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    return json.loads(loaded.stdout.strip().splitlines()[-1])


#: a file name that would close the DAG's docstring and run code when Airflow imports it,
#: with a Jinja expression Airflow would render, and a carriage return Jinja would change
HOSTILE_NAME = ('x""";__import__("pathlib").Path(__import__("os").environ["MP_CANARY"])'
                ".touch();\"\"\" '{{ conn.db.password }}'\r\n{% raw %}.yaml")


def test_hostile_spec_file_and_model_names_give_a_dag_that_only_names_them(tmp_path):
    canary = tmp_path / "canary"
    spec = tmp_path / HOSTILE_NAME
    spec.write_text(yaml.safe_dump({"name": "churn", "data": {"source": "x.csv",
                                                               "target": "churned"}}))
    from modelport.train.airflow import dag_source

    source = dag_source(spec, cron="0 3 * * *", dag_id="hostile", inherit_env=False,
                        env=["NOTE=a{{ 7 * 7 }}b\r", "SCRIPT=run.sh"])
    assert source.isascii()
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "hostile.py").write_text(source)
    # the DAG as Python: a docstring, imports, two constants holding the names, the DAG
    body = ast.parse(source).body
    assert [type(node).__name__ for node in body] == [
        "Expr", "ImportFrom", "Try", "Try", "Assign", "Assign", "With"]
    constants = {node.targets[0].id: ast.literal_eval(node.value) for node in body[4:6]}
    assert constants == {"MODEL": "churn", "SPEC": str(spec)}

    found = _load_in_airflow(dags, "hostile", MP_CANARY=str(canary))
    assert found["errors"] == {} and found["dags"] == ["hostile"]
    assert not canary.exists(), "importing the DAG ran code from the spec's file name"
    assert shlex.split(found["rendered_command"])[-3:] == ["retrain", str(spec), "--json"]
    assert found["rendered_env"] == {"NOTE": "a{{ 7 * 7 }}b\r", "SCRIPT": "run.sh"}


def test_jinja_text_renders_back_to_itself():
    from jinja2.sandbox import SandboxedEnvironment

    from modelport.train.airflow import jinja_text

    env = SandboxedEnvironment()  # Airflow's own: no trailing newline kept, CR to LF
    for text in ["{{ 7*7 }}", "{% raw %}", "{#", "a\r\nb\r", "end\n", "x.sh", "y.bash",
                 "}}{{", "{{ '{' }}", "plain"]:
        assert env.from_string(jinja_text(text)).render() == text, text


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
    assert 'dag_id="churn_retrain"' in source and "env={}" in source
