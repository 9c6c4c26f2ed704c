"""Retraining with a champion/challenger gate on drifting churn data: the alias moves only
when the challenger wins on the fresh hold-out, and every decision with both scores is
kept in the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from modelport.cli import app
from modelport.datasets import churn
from modelport.errors import UserError
from modelport.io import write_table
from modelport.registry import Registry
from modelport.train.retrain import EXIT_CODES, exit_code, retrain, summary_line
from modelport.train.spec import load_spec

from conftest import need_module

WEAK = ["age", "region"]  # two columns that carry little of the churn signal


@pytest.fixture(autouse=True)
def one_openmp_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def write_spec(folder: Path, data: Path, *, features=None, budget=3, engine="flaml",
               estimators=("hgb", "lr"), margin=0.002, name="churn.yaml") -> Path:
    spec = {
        "name": "churn",
        "data": {"source": str(data), "target": "churned", "id": "customer_id"},
        "metrics": ["roc_auc", "accuracy"],
        "formats": ["joblib"],
        "validation": {"seed": 3},
        "automl": {"engine": engine, "time_budget_s": budget, "estimators": list(estimators)},
        "promotion": {"alias": "production", "metric": "roc_auc", "min_improvement": margin,
                      "holdout": 0.25},
    }
    if features:
        spec["data"]["features"] = features
    path = folder / name
    path.write_text(yaml.safe_dump(spec))
    return path


def fresh(folder: Path, name: str, rows: int, seed: int, drift: float) -> Path:
    return write_table(churn.generate(rows, seed=seed, drift=drift), folder / name)


def test_promotes_a_better_challenger_and_keeps_the_champion_otherwise(tmp_path):
    need_module("flaml", "automl")
    # day 1: a champion that sees only two weak columns; nothing to beat yet
    day1 = fresh(tmp_path, "day1.parquet", 1500, seed=1, drift=0.0)
    first = retrain(write_spec(tmp_path, day1, features=WEAK, name="weak1.yaml"))
    assert first["decision"] == "promoted", first
    assert first["champion"]["version"] is None and first["challenger"]["version"] == 1
    assert exit_code(first) == 0

    # day 2: the customers drifted; the full recipe on fresh rows beats the champion
    day2 = fresh(tmp_path, "day2.parquet", 2500, seed=2, drift=0.6)
    second = retrain(write_spec(tmp_path, day2))
    assert second["decision"] == "promoted", second
    champ, chall = second["champion"], second["challenger"]
    assert champ["version"] == 1 and chall["version"] == 2
    assert chall["score"] > champ["score"] + 0.002
    assert second["improvement"] == pytest.approx(chall["score"] - champ["score"], abs=1e-6)
    assert second["search"]["engine"] == "flaml"
    assert second["search"]["best"]["family"] in ("hgb", "lr")

    # day 3: a worse challenger on the same drifted population is registered, not promoted
    day3 = fresh(tmp_path, "day3.parquet", 2500, seed=3, drift=0.6)
    result = CliRunner().invoke(app, ["retrain", str(write_spec(tmp_path, day3, features=WEAK,
                                                                 name="weak3.yaml")), "--json"])
    assert result.exit_code == EXIT_CODES["kept"] == 3, result.output
    third = json.loads(result.stdout[result.stdout.index("{"):])
    assert third["decision"] == "kept"
    assert third["champion"]["version"] == 2 and third["challenger"]["version"] == 3
    assert third["challenger"]["score"] < third["champion"]["score"]

    reg = Registry()
    assert reg.aliases("churn") == {"production": 2}
    v3 = reg.get("churn/3")
    assert v3.parent_version == 2 and v3.lineage["champion"] == 2
    assert v3.lineage["search"]["engine"] == "flaml" and v3.data_fingerprint
    assert v3.metrics["roc_auc"] == pytest.approx(third["challenger"]["score"])

    shown = CliRunner().invoke(app, ["models", "show", "churn", "--json"])
    assert shown.exit_code == 0, shown.output
    events = [e for e in json.loads(shown.stdout)["events"] if e["kind"] == "retrain"]
    assert [e["decision"] for e in events] == ["promoted", "promoted", "kept"]
    for event, run in zip(events, (first, second, third), strict=True):
        assert event["challenger"]["version"] == run["challenger"]["version"]
        assert event["challenger"]["score"] == pytest.approx(run["challenger"]["score"])
        assert event["champion"]["score"] == (None if run["champion"]["score"] is None
                                              else pytest.approx(run["champion"]["score"]))
        assert event["metric"] == "roc_auc" and event["min_improvement"] == 0.002
    assert "kept churn/2 at @production" in summary_line(third)


def test_without_automl_the_specs_own_model_is_refitted(tmp_path):
    data = fresh(tmp_path, "fresh.csv", 800, seed=4, drift=0.2)
    spec = {"name": "plain", "data": {"source": str(data), "target": "churned",
                                      "id": "customer_id"},
            "model": {"params": {"max_iter": 30}}, "formats": ["joblib"]}
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = retrain(path)
    assert result["decision"] == "promoted" and "search" not in result
    assert result["challenger"]["estimator"].endswith("HistGradientBoostingClassifier")
    assert Registry().aliases("plain") == {"production": 1}


def test_a_failure_is_reported_recorded_and_exits_2_for_bad_data(tmp_path):
    data = fresh(tmp_path, "fresh.csv", 300, seed=5, drift=0.0)
    path = write_spec(tmp_path, data)
    data.unlink()  # the fresh data is gone when the job runs
    result = CliRunner().invoke(app, ["retrain", str(path), "--json"])
    assert result.exit_code == 2, result.output
    out = json.loads(result.stdout[result.stdout.index("{"):])
    assert out["decision"] == "failed" and "no such file" in out["error"]["message"]
    assert Registry().events("churn", "retrain")[-1]["decision"] == "failed"


def test_spec_sections_are_checked_with_did_you_mean(tmp_path):
    base = {"name": "churn", "data": {"source": "x.csv", "target": "churned"}}
    cases = {
        "automl.time_budget": ({"automl": {"time_budget": 5}}, "did you mean 'time_budget_s'"),
        "automl.engine": ({"automl": {"engine": "optune"}}, "did you mean 'optuna'"),
        "automl.estimators": ({"automl": {"estimators": ["xgb"]}}, "unknown family 'xgb'"),
        "promotion.min_improvment": ({"promotion": {"min_improvment": 0.1}},
                                     "did you mean 'min_improvement'"),
        "promotion.holdout": ({"promotion": {"holdout": 1.5}}, "between 0 and 1"),
        "promotion.metric": ({"promotion": {"metric": "r2"}}, "unknown metric 'r2'"),
        "data.window.days": ({"data": {**base["data"], "window": {"column": "t", "days": 0}}},
                             "positive number of days"),
    }
    for where, (change, message) in cases.items():
        with pytest.raises(UserError) as info:
            load_spec({**base, **change})
        assert f"spec: {where}: " in str(info.value) and message in str(info.value), where
    spec = load_spec({**base, "automl": {}, "promotion": {"metric": "accuracy"}})
    assert spec.automl.engine == "flaml" and spec.automl.metric == "accuracy"
    assert spec.promotion.alias == "production" and spec.promotion.min_improvement == 0


def test_window_keeps_only_recent_rows(tmp_path):
    import pandas as pd

    frame = churn.generate(900, seed=6)
    now = pd.Timestamp.now(tz="UTC")
    frame["updated_at"] = [now - pd.Timedelta(days=d) for d in range(len(frame))]
    data = write_table(frame, tmp_path / "dated.parquet")
    spec = {"name": "recent", "data": {"source": str(data), "target": "churned",
                                       "id": "customer_id",
                                       "features": ["tenure_months", "contract", "plan"],
                                       "window": {"column": "updated_at", "days": 600}},
            "model": {"params": {"max_iter": 20}}, "formats": ["joblib"]}
    result = retrain(spec)
    assert result["decision"] == "promoted", result
    assert result["data"]["rows_read"] == 900 and result["data"]["rows"] == 600
