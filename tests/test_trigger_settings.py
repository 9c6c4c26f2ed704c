"""``modelport trigger run`` hands one settings object to the Python API: the settings hold
what :func:`~modelport.serve.trigger.run` takes besides its live objects (registry,
metrics, stop event), with the same defaults, pickle and cannot change; the command builds
one from its options; ``run`` and ``run_settings`` drain a queue the same way."""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest
from typer.testing import CliRunner

from modelport.errors import UserError
from modelport.registry import Registry
from modelport.scoring.checks import InputPolicy
from modelport.serve import trigger
from modelport.serve.trigger import WorkerSettings, WorkerStats, run, run_settings
from test_settings_objects import _command, _keywords
from test_trigger_worker import (
    churn,  # noqa: F401 - churn is a fixture
    create_customers,
    insert,
    scores,
)

#: what ``run`` takes that is live, not a plain value: handed to ``run_settings`` beside
#: the settings
LIVE = frozenset({"registry", "metrics", "stop"})
NO_WORKER = ("no table in this database is set up for worker scoring: run modelport "
             "trigger install ... --mode worker first")


def test_worker_settings_hold_what_run_takes_with_the_same_defaults():
    assert _keywords(WorkerSettings) == _keywords(run, LIVE)


def test_run_settings_takes_the_settings_and_the_live_objects_run_takes():
    assert set(_keywords(run_settings)) == {"settings"} | LIVE
    assert {k: v for k, v in _keywords(run).items() if k in LIVE} == \
           {k: v for k, v in _keywords(run_settings).items() if k in LIVE}


def test_worker_settings_pickle_and_cannot_change():
    settings = WorkerSettings("postgresql://app@db/shop", tables=["customers", "orders"],
                              batch=500, once=True, max_seconds=30.0,
                              log_url="sqlite:///log.db#log", log_sample=0.1,
                              policy=InputPolicy.of(strict=True), metrics_port=9100)
    assert pickle.loads(pickle.dumps(settings)) == settings
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.batch = 1  # type: ignore[misc]


def test_worker_settings_keep_the_tables_as_a_tuple_of_names():
    assert WorkerSettings("sqlite:///a.db", tables=["a", "b"]).tables == ("a", "b")
    assert WorkerSettings("sqlite:///a.db", tables="customers").tables == ("customers",)
    assert WorkerSettings("sqlite:///a.db").tables is None
    # the same settings whether the names came as a list or a tuple
    assert WorkerSettings("sqlite:///a.db", tables=["a"]) == \
           WorkerSettings("sqlite:///a.db", tables=("a",))


def test_run_settings_refuses_a_database_with_no_worker_installation_as_run_does(tmp_path):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    create_customers(url)
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}", str(tmp_path / "artefacts"))
    with pytest.raises(UserError) as by_settings:
        run_settings(WorkerSettings(url, once=True), registry=registry)
    with pytest.raises(UserError) as by_keywords:
        run(url, once=True, registry=registry)
    assert str(by_settings.value) == str(by_keywords.value) == NO_WORKER


def _fake_run_settings(monkeypatch) -> list:
    """Patch ``run_settings`` where the command finds it; the settings and registry it is
    given are appended to the list returned."""
    given: list = []

    def run_settings(settings, *, registry=None, metrics=None, stop=None):
        given.append((settings, registry, metrics, stop))
        return WorkerStats(scored=7, batches=1)

    monkeypatch.setattr(trigger, "run_settings", run_settings)
    return given


def test_the_trigger_run_command_hands_its_options_over_as_one_settings_object(monkeypatch):
    from modelport.cli import app

    given = _fake_run_settings(monkeypatch)
    result = CliRunner().invoke(app, [
        "trigger", "run", "--db", "sqlite:///app.db", "--table", "customers", "--table",
        "orders", "--batch", "100", "--poll-ms", "5", "--reload-seconds", "0.5", "--once",
        "--strict", "--out-of-range", "flag", "--metrics-port", "9100", "--log",
        "sqlite:///log.db#log", "--log-sample", "0.25"])
    assert result.exit_code == 0, result.output
    assert [g[0] for g in given] == [WorkerSettings(
        "sqlite:///app.db", tables=("customers", "orders"), batch=100, poll_ms=5.0,
        reload_seconds=0.5, once=True, log_url="sqlite:///log.db#log", log_sample=0.25,
        policy=InputPolicy("reject", "flag"), metrics_port=9100)]
    _, registry, metrics, stop = given[0]
    assert isinstance(registry, Registry) and metrics is None and stop is None
    stats = json.loads(result.stderr.split("stopped; ", 1)[1])
    assert (stats["scored"], stats["batches"]) == (7, 1)


def test_the_trigger_run_command_without_options_gives_the_api_defaults(monkeypatch):
    from modelport.cli import app

    given = _fake_run_settings(monkeypatch)
    result = CliRunner().invoke(app, ["trigger", "run", "--db", "sqlite:///app.db"])
    assert result.exit_code == 0, result.output
    # no --table: every worker-mode installation (None, not an empty list)
    assert [g[0] for g in given] == [WorkerSettings("sqlite:///app.db",
                                                    policy=InputPolicy.of())]


def test_the_trigger_run_command_refuses_a_misspelt_policy_before_the_worker_starts(
        monkeypatch):
    from modelport.cli import app

    given = _fake_run_settings(monkeypatch)
    result = CliRunner().invoke(app, ["trigger", "run", "--db", "sqlite:///app.db",
                                      "--unseen-categories", "drop"])
    assert isinstance(result.exception, UserError)
    assert str(result.exception).startswith("--unseen-categories 'drop' is not known: use")
    assert given == []


def test_the_trigger_run_command_refuses_a_bad_option_in_one_line_with_exit_code_2(tmp_path):
    proc = _command("trigger", "run", "--db", f"sqlite:///{tmp_path / 'app.db'}", "--once",
                    "--out-of-range", "sometimes")
    assert proc.returncode == 2, proc.stderr
    assert "--out-of-range 'sometimes'" in proc.stderr and "Traceback" not in proc.stderr


def test_run_settings_drains_a_queue_as_run_does(tmp_path, churn):  # noqa: F811
    registry, data, _, _ = churn
    urls = [f"sqlite:///{tmp_path / name}" for name in ("by-keywords.db", "by-settings.db")]
    rows = data.head(300).copy()
    rows.loc[rows.index[:5], "plan"] = "platinum"  # a plan training never saw
    for url in urls:
        create_customers(url)
        trigger.install("churn@production", url, table="customers", key="customer_id",
                        output="churn", registry=registry)
        insert(url, rows)
    strict = InputPolicy.of(strict=True)
    by_keywords = run(urls[0], once=True, batch=120, policy=strict, registry=registry)
    by_settings = run_settings(WorkerSettings(urls[1], once=True, batch=120, policy=strict),
                               registry=registry)
    assert by_settings.as_dict() == by_keywords.as_dict()
    assert (by_settings.scored, by_settings.errors, by_settings.batches) == (295, 5, 3)
    assert scores(urls[1]) == scores(urls[0])
    # the queue is drained: a second pass finds nothing to score
    again = run_settings(WorkerSettings(urls[1], once=True), registry=registry)
    assert (again.scored, again.errors, again.batches) == (0, 0, 0)
