"""Specs import classes only from the allowed modules, checked before anything is imported:
a spec naming ``subprocess.Popen`` (or any module outside the list) is refused with one line
and exit code 2 by every command that reads a spec, and no command runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelport.errors import UserError
from modelport.train.spec import ALLOWED_MODULES_ENV, import_class, load_spec, module_allowed


def _popen(canary: Path) -> dict:
    """What a hostile spec's estimator section holds: a command that leaves ``canary``."""
    return {"estimator": "subprocess.Popen",
            "params": {"args": f"touch {canary}", "shell": True}}


def _batch_spec(tmp_path: Path, canary: Path) -> Path:
    spec = tmp_path / "hostile.yaml"
    spec.write_text(yaml.safe_dump({"name": "churn", "data": {"source": "customers.csv",
                                                              "target": "churned"},
                                    "model": _popen(canary)}))
    return spec


def _online_spec(tmp_path: Path, learner: dict, **more) -> Path:
    (tmp_path / "events.jsonl").write_text('{"x": 1, "y": 0}\n')
    spec = tmp_path / "hostile-online.yaml"
    spec.write_text(yaml.safe_dump({"name": "churn-online", "source": "events.jsonl",
                                    "target": "y", "learner": learner, **more}))
    return spec


def _modelport(tmp_path: Path, *args: str, env: dict | None = None
               ) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != ALLOWED_MODULES_ENV}
    environ.update(MODELPORT_HOME=str(tmp_path / "home"), **(env or {}))
    return subprocess.run([sys.executable, "-m", "modelport", *args], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, env=environ)


def _assert_refused(done: subprocess.CompletedProcess, canary: Path, field: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"{field}: 'subprocess.Popen' is not in a module specs may import from" in lines[0]
    assert ALLOWED_MODULES_ENV in lines[0] and "Traceback" not in lines[0]
    assert not canary.exists(), "the spec's command ran"


@pytest.mark.parametrize("command", [["train"], ["retrain"],
                                     ["airflow-dag", "--cron", "0 3 * * *"]])
def test_popen_spec_is_refused_before_it_runs_by_batch_commands(tmp_path, command):
    canary = tmp_path / "canary"
    spec = _batch_spec(tmp_path, canary)
    _assert_refused(_modelport(tmp_path, command[0], str(spec), *command[1:]), canary,
                    "model.estimator")


def test_popen_spec_is_refused_before_it_runs_by_learn(tmp_path):
    canary = tmp_path / "canary"
    spec = _online_spec(tmp_path, _popen(canary))
    _assert_refused(_modelport(tmp_path, "learn", str(spec)), canary, "learner.estimator")


def test_online_pipeline_steps_and_drift_detectors_are_checked_too(tmp_path):
    pytest.importorskip("river")
    canary = tmp_path / "canary"
    steps = _online_spec(tmp_path, {"estimator": "river.linear_model.LogisticRegression",
                                    "pipeline": [_popen(canary)]})
    with pytest.raises(UserError, match="learner.pipeline: 'subprocess.Popen' is not in"):
        from modelport.train.online.spec import load_spec as load_online

        load_online(steps)
    detector = _online_spec(tmp_path, {"estimator": "sklearn.linear_model.SGDClassifier"},
                            drift={"detector": "subprocess.Popen",
                                   "params": {"args": f"touch {canary}", "shell": True}})
    with pytest.raises(UserError, match="drift.detector: 'subprocess.Popen' is not in"):
        load_online(detector)
    assert not canary.exists()


def _module_that_leaves(tmp_path: Path, canary: Path) -> Path:
    """A module outside the list that leaves ``canary`` when it is imported."""
    folder = tmp_path / "site"
    (folder / "mycompany").mkdir(parents=True)
    (folder / "mycompany" / "__init__.py").write_text("")
    (folder / "mycompany" / "models.py").write_text(
        f"from pathlib import Path\nPath({str(canary)!r}).touch()\n"
        "from sklearn.linear_model import LogisticRegression\n\n\n"
        "class Churn(LogisticRegression):\n    pass\n")
    return folder


def test_a_module_outside_the_list_is_not_even_imported(tmp_path, monkeypatch):
    canary = tmp_path / "imported"
    monkeypatch.syspath_prepend(str(_module_that_leaves(tmp_path, canary)))
    monkeypatch.delenv(ALLOWED_MODULES_ENV, raising=False)
    spec = {"name": "churn", "data": {"source": "x.csv", "target": "y"},
            "model": {"estimator": "mycompany.models.Churn"}}
    with pytest.raises(UserError, match=f"trust mycompany.models .* {ALLOWED_MODULES_ENV}"):
        load_spec(spec)
    assert not canary.exists()


def test_the_environment_allows_more_modules_by_prefix(tmp_path, monkeypatch):
    canary = tmp_path / "imported"
    monkeypatch.syspath_prepend(str(_module_that_leaves(tmp_path, canary)))
    monkeypatch.setenv(ALLOWED_MODULES_ENV, " mycompany , other.pkg")
    spec = load_spec({"name": "churn", "data": {"source": "x.csv", "target": "y"},
                      "model": {"estimator": "mycompany.models.Churn"}})
    assert spec.estimator_class().__name__ == "Churn" and canary.exists()
    assert module_allowed("other.pkg.deep") and not module_allowed("other.pkgs")
    monkeypatch.setenv(ALLOWED_MODULES_ENV, "mycompany.models; rm -rf /")
    with pytest.raises(UserError, match=f"{ALLOWED_MODULES_ENV}: .* is not a module name"):
        load_spec({"name": "churn", "data": {"source": "x.csv", "target": "y"}})


def test_a_spec_cannot_widen_the_list_itself():
    spec = {"name": "churn", "data": {"source": "x.csv", "target": "y"},
            "allow_modules": ["subprocess"], "model": {"estimator": "subprocess.Popen"}}
    with pytest.raises(UserError, match="allow_modules: unknown key"):
        load_spec(spec)


@pytest.mark.parametrize(("dotted", "message"), [
    ("sklearnx.linear_model.LogisticRegression", "is not in a module specs may import from"),
    ("os.system", "is not in a module specs may import from"),
    ("builtins.eval", "is not in a module specs may import from"),
    ("sklearn.linear_model..LogisticRegression", "is not a full import path"),
    ("LogisticRegression", "is not a full import path"),
    ("modelport.train.spec.Path", "is pathlib.Path, outside the modules"),
    ("modelport.train.spec.import_class", "has no class 'import_class'"),
    ("sklearn.linear_model.LogisticRegresion", "did you mean sklearn.linear_model."
                                               "LogisticRegression"),
])
def test_import_class_refuses_what_is_not_an_allowed_class(monkeypatch, dotted, message):
    monkeypatch.delenv(ALLOWED_MODULES_ENV, raising=False)
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        import_class(dotted, "spec.yaml")


def test_allowed_estimators_and_automl_families_still_import(monkeypatch):
    monkeypatch.delenv(ALLOWED_MODULES_ENV, raising=False)
    from modelport.train.automl.space import FAMILIES

    assert import_class("sklearn.linear_model.LogisticRegression", "s").__name__ == \
        "LogisticRegression"
    assert FAMILIES["hgb"].cls("classification").__name__ == "HistGradientBoostingClassifier"
