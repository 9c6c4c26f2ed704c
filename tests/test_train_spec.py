"""Training from a spec: a real run registers a version; every spec mistake names its field."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from modelport.datasets import churn
from modelport.errors import UserError
from modelport.io import read_table, write_table
from modelport.register import fingerprint
from modelport.registry import Registry
from modelport.train import load_spec, train

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "churn"
ROWS = 3_000


@pytest.fixture(autouse=True)
def one_openmp_thread():
    """OpenMP threads busy-wait for each other; on a loaded two-core machine that turns a
    one-second HistGradientBoosting fit into thirty."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("churn-data")
    return write_table(churn.generate(ROWS, seed=5), folder / "customers.parquet")


def churn_spec(data_file: Path, **changes) -> dict:
    spec = {
        "name": "churn",
        "task": "classification",
        "data": {"source": str(data_file), "target": "churned", "id": "customer_id"},
        "model": {"estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
                  "params": {"max_iter": 40, "random_state": 0}, "preprocess": "auto"},
        "validation": {"test_size": 0.25, "seed": 1},
        "metrics": ["roc_auc", "accuracy", "f1", "log_loss", "precision", "recall"],
        "formats": ["joblib"],
    }
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = spec
        for p in parents:
            node = node[p]
        if value is DELETE:
            node.pop(key, None)
        else:
            node[key] = value
    return spec


DELETE = object()


def write_spec(folder: Path, spec: dict, name: str = "churn.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_a_spec_run_registers_a_version_with_metrics_and_lineage(tmp_path, data_file):
    spec_path = write_spec(tmp_path, churn_spec(data_file))
    result = train(spec_path, alias="production")

    version = result.version
    assert version.uri == "churn/1" and "production" in version.aliases
    assert set(result.metrics) == {"roc_auc", "accuracy", "f1", "log_loss", "precision",
                                   "recall"}
    assert 0.75 < result.metrics["roc_auc"] < 0.95
    assert version.metrics == pytest.approx(result.metrics)
    assert result.rows_train == 2_250 and result.rows_test == 750
    assert version.tags == {"spec": "churn.yaml"}
    assert version.params == {"max_iter": 40, "random_state": 0}
    assert version.lineage["estimator"] == "sklearn.ensemble.HistGradientBoostingClassifier"
    assert version.lineage["spec"]["name"] == "churn"
    assert version.lineage["rows"] == {"read": ROWS, "dropped": 0, "train": 2_250, "test": 750}
    assert version.lineage["source"] == str(data_file)
    assert "customer_id" not in version.lineage["features"]
    assert "customer_id" not in [c["name"] for c in version.signature["inputs"]]
    frame = read_table(data_file)
    used = frame[["customer_id", *version.lineage["features"], "churned"]]
    assert version.data_fingerprint == fingerprint(used)
    assert "churn/1 registered (alias production)" in result.report
    assert f"roc_auc {result.metrics['roc_auc']:.4f}" in result.report
    assert "accepted: joblib" in result.report

    # the registered pipeline is the fitted one, and scores what the spec was trained on
    predictor = Registry().load("churn@production")
    rows = frame.drop(columns=["customer_id", "churned"]).head(50)
    np.testing.assert_allclose(predictor.predict_proba(rows), result.model.predict_proba(rows))


def test_the_same_spec_on_the_same_data_gives_the_same_metrics(tmp_path, data_file):
    spec = churn_spec(data_file, metrics=["roc_auc"])
    first, second = train(spec), train(spec)
    assert second.version.version == first.version.version + 1
    assert first.metrics == second.metrics
    assert first.version.data_fingerprint == second.version.data_fingerprint


def test_relative_sources_are_taken_from_the_spec_folder(tmp_path, data_file):
    write_table(read_table(data_file).head(800), tmp_path / "data" / "customers.csv")
    spec_path = write_spec(tmp_path, churn_spec(
        data_file, **{"data.source": "data/customers.csv",
                      "data.features": ["tenure_months", "contract", "support_calls"]}))
    result = train(spec_path)
    assert result.rows_train + result.rows_test == 800
    assert [c["name"] for c in result.version.signature["inputs"]] == [
        "tenure_months", "contract", "support_calls"]


def test_a_sqlite_source_and_rows_without_a_target_are_dropped_and_counted(tmp_path, data_file):
    from sqlalchemy import create_engine

    frame = read_table(data_file).head(1_000).astype({"churned": "float64"})
    frame.loc[:9, "churned"] = np.nan
    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    with engine.begin() as conn:
        frame.to_sql("customers", conn, index=False)
    engine.dispose()
    spec = churn_spec(data_file, **{"data.source": "sqlite:///app.db#customers"})
    result = train(write_spec(tmp_path, spec))
    assert result.version.lineage["rows"]["dropped"] == 10
    assert result.rows_train + result.rows_test == 990
    assert "10 dropped: no churned" in result.report


def test_regression_multiclass_and_clustering_specs_train(tmp_path, data_file):
    regression = train(churn_spec(data_file, task="regression", metrics=["rmse", "mae", "r2"],
                                  **{"data.target": "monthly_charges",
                                     "model.estimator": "sklearn.linear_model.Ridge",
                                     "model.params": {"alpha": 1.0}}))
    assert regression.version.task == "regression"
    assert regression.metrics["r2"] > 0.8  # charges follow plan and usage closely
    assert regression.metrics["mae"] < regression.metrics["rmse"]

    multiclass = train(churn_spec(data_file, name="plan", metrics=["roc_auc", "f1"],
                                  **{"data.target": "plan",
                                     "model.estimator": "sklearn.linear_model.LogisticRegression",
                                     "model.params": {"max_iter": 500}}))
    assert multiclass.version.signature["classes"] == sorted(churn.PLANS)
    assert 0.7 < multiclass.metrics["roc_auc"] <= 1.0

    clustering = train(churn_spec(data_file, name="segments", task="clustering",
                                  metrics=["silhouette"],
                                  **{"data.target": DELETE,
                                     "data.features": ["tenure_months", "monthly_charges",
                                                       "plan"],
                                     "model.estimator": "sklearn.cluster.MiniBatchKMeans",
                                     "model.params": {"n_clusters": 4, "random_state": 0,
                                                      "n_init": 3}}))
    assert clustering.version.task == "clustering"
    assert -1 <= clustering.metrics["silhouette"] <= 1


MISTAKES = [
    ({"task": "classify"}, "task", "use one of classification"),
    ({"name": DELETE}, "name", "missing"),
    ({"name": "churn model!"}, "name", "bad model name"),
    ({"metric": ["roc_auc"]}, "metric", "did you mean 'metrics'"),
    ({"data.target": "churn"}, "data.target", "'churn' is not in the data"),
    ({"data.target": DELETE}, "data.target", "missing"),
    ({"data.id": "cust_id"}, "data.id", "'cust_id' is not in the data"),
    ({"data.features": ["tenure", "plan"]}, "data.features", "'tenure' are not in the data"),
    ({"data.features": ["churned", "plan"]}, "data.features", "lists the target"),
    ({"data.features": ["customer_id", "plan"]}, "data.features", "never a feature"),
    ({"data.source": DELETE}, "data.source", "missing"),
    ({"model.estimator": "sklearn.ensemble.GradientBoostingClassifer"}, "model.estimator",
     "did you mean sklearn.ensemble.GradientBoostingClassifier"),
    ({"model.estimator": "sklearn.nosuchlib.Model"}, "model.estimator",
     "cannot import 'sklearn.nosuchlib'"),
    ({"model.estimator": "HistGradientBoostingClassifier"}, "model.estimator",
     "not a full import path"),
    ({"model.estimator": "sklearn.linear_model.Ridge"}, "model.estimator",
     "is a regressor but the task is classification"),
    ({"model.params": [200]}, "model.params", "expected a mapping"),
    ({"model.params": {"max_iters": 200}}, "model.params", "does not accept"),
    ({"model.params": {"max_iter": -3}}, "model.params", "max_iter"),
    ({"model.preprocess": "scale"}, "model.preprocess", "use auto"),
    ({"metrics": ["auc"]}, "metrics", "unknown metric 'auc'"),
    ({"metrics": ["rmse"]}, "metrics", "unknown metric 'rmse' for classification"),
    ({"model.estimator": "sklearn.svm.LinearSVC", "model.params": {}}, "metrics",
     "roc_auc, log_loss need class probabilities"),
    ({"validation.test_size": 1.5}, "validation.test_size", "between 0 and 1"),
    ({"validation.test_size": 0}, "validation.test_size", "between 0 and 1"),
    ({"validation.seed": "x"}, "validation.seed", "whole number"),
    ({"formats": ["tflite"]}, "formats", "expected a list of formats"),
    ({"task": "clustering", "metrics": ["silhouette"]}, "data.target",
     "clustering learns without a target"),
    ({"task": "regression", "metrics": ["rmse"], "data.target": "plan",
      "model.estimator": "sklearn.linear_model.Ridge", "model.params": {}}, "data.target",
     "not numeric"),
]


@pytest.mark.parametrize(("changes", "field", "fix"), MISTAKES,
                         ids=[f"{m[1]}-{i}" for i, m in enumerate(MISTAKES)])
def test_each_spec_mistake_names_its_field(tmp_path, data_file, changes, field, fix):
    spec_path = write_spec(tmp_path, churn_spec(data_file, **changes))
    with pytest.raises(UserError) as err:
        train(spec_path)
    message = str(err.value)
    assert message.startswith(f"churn.yaml: {field}: "), message
    assert fix in message
    assert Registry().list_models() == []


def test_a_missing_data_file_names_the_file(tmp_path, data_file):
    spec_path = write_spec(tmp_path, churn_spec(data_file, **{"data.source": "data/none.csv"}))
    with pytest.raises(UserError, match=re.escape(str(tmp_path / "data" / "none.csv"))):
        train(spec_path)


def test_a_spec_that_is_not_yaml_or_not_a_mapping_says_so(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: churn\ndata: [unclosed\n")
    with pytest.raises(UserError, match="bad.yaml: not valid YAML at line"):
        load_spec(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- name\n")
    with pytest.raises(UserError, match="a spec is a mapping"):
        load_spec(tmp_path / "list.yaml")
    with pytest.raises(UserError, match="no such file"):
        load_spec(tmp_path / "none.yaml")


def test_the_example_spec_trains_on_the_example_data(tmp_path):
    subprocess.run([sys.executable, str(EXAMPLE / "make_data.py"), "--rows", "2000",
                    "--out", str(tmp_path / "data" / "customers.parquet")],
                   check=True, capture_output=True)
    raw = yaml.safe_load((EXAMPLE / "churn.yaml").read_text())
    raw["model"]["params"]["max_iter"] = 30
    raw["formats"] = ["joblib"]
    spec = load_spec(raw, base=tmp_path)
    assert spec.features and "customer_id" not in spec.features
    result = train(spec)
    assert result.version.uri == "churn/1"
    assert result.metrics["roc_auc"] > 0.75


def test_the_notebook_example_runs_from_data_to_production(tmp_path):
    env = {**os.environ, "MODELPORT_HOME": str(tmp_path / "home"),
           "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(EXAMPLE / "notebook.py"), "--rows", "2000"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "registered churn/1" in out
    assert re.search(r"customer \d+: churn probability 0\.\d{3}", out)
    # the call centre's lookup: the stored score and its three largest reasons
    calls = re.search(r"customer \d+ calls: churn probability 0\.\d{3}; reasons \(log-odds\): "
                      r"(\w+) \([+-]\d+\.\d\d\), (\w+) \([+-]\d+\.\d\d\), "
                      r"(\w+) \([+-]\d+\.\d\d\)", out)
    assert calls, out[-2000:]
    assert len(set(calls.groups())) == 3  # three different input columns
    assert "'production': 1" in out
    assert (tmp_path / "home" / "registry.db").is_file()


SECTION_MISTAKES = [
    ({"data": "customers.csv"}, "data", "expected a mapping of source, target"),
    ({"data": None}, "data", "missing; add a data: section"),
    ({"data.windw": {}}, "data.windw", "did you mean 'window'?"),
    ({"data.window": {"column": "updated_at"}}, "data.window.days", "positive number of days"),
    ({"data.window": {"column": "updated_at", "days": 0}}, "data.window.days", "got 0"),
    ({"data.window": {"days": 9}}, "data.window.column", "name the timestamp column"),
    ({"data.source": {"url": "sqlite:///app.db"}}, "data.source", "exactly two keys"),
    ({"data.source": 5}, "data.source", "expected a path, a URL or {url, query}, got 5"),
    ({"data.target": True}, "data.target", "expected a column name, got True"),
    ({"data.features": []}, "data.features", "non-empty list of column names"),
    ({"data.features": ["plan", ""]}, "data.features", "non-empty list of column names"),
    ({"model": "hgb"}, "model", "expected a mapping of estimator, params, preprocess"),
    ({"validation.seed": True}, "validation.seed", "whole number, got True"),
    ({"validation.test_size": "0.2"}, "validation.test_size", "got '0.2'"),
    ({"automl": {"time_budget_s": "10"}}, "automl.time_budget_s", "positive number of seconds"),
    ({"automl": {"feature_selection": "yes"}}, "automl.feature_selection", "true or false"),
    ({"automl": {"estimators": ["rf", "xgb"]}}, "automl.estimators", "unknown family 'xgb'"),
    ({"automl": {"engine": "flam"}}, "automl.engine", "did you mean 'flaml'?"),
    ({"promotion": {"holdout": 1}}, "promotion.holdout", "between 0 and 1"),
    ({"promotion": {"min_improvement": -0.1}}, "promotion.min_improvement", ">= 0"),
    ({"promotion": {"metrc": "f1"}}, "promotion.metrc", "did you mean 'metric'?"),
    ({"promotion": {"alias": "prod ction"}}, "promotion.alias", "bad alias"),
]


@pytest.mark.parametrize(("changes", "field", "fix"), SECTION_MISTAKES,
                         ids=[f"{m[1]}-{i}" for i, m in enumerate(SECTION_MISTAKES)])
def test_each_section_mistake_names_its_key_before_any_data_is_read(tmp_path, changes, field,
                                                                     fix):
    # the data file does not exist: the spec is refused before anything is read
    spec_path = write_spec(tmp_path, churn_spec(tmp_path / "none.parquet", **changes))
    with pytest.raises(UserError) as err:
        load_spec(spec_path)
    message = str(err.value)
    assert message.startswith(f"churn.yaml: {field}: "), message
    assert fix in message


def test_sections_left_empty_take_their_defaults(tmp_path):
    spec = load_spec(churn_spec(tmp_path / "none.parquet", automl=None, promotion=None,
                                validation=None, **{"model.params": None}))
    assert spec.automl is not None and spec.automl.engine == "flaml"
    assert spec.automl.metric == spec.promotion.metric == "roc_auc"
    assert (spec.promotion.alias, spec.promotion.holdout) == ("production", 0.2)
    assert (spec.test_size, spec.seed, spec.params) == (0.2, 42, {})
