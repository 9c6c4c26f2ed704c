"""Online learning specs: the minimal shape loads with its defaults; every mistake is one
line naming the key; unknown keys are refused; the command exits with code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from modelport.errors import UserError
from modelport.train.online.spec import load_spec

from conftest import need_module

MINIMAL = {
    "name": "churn-online",
    "task": "classification",
    "source": "data/events.jsonl",
    "target": "churned",
    "features": ["tenure", "plan"],
    "learner": {"estimator": "sklearn.linear_model.SGDClassifier",
                "params": {"loss": "log_loss"}},
    "batch": {"size": 256, "max_wait_ms": 50},
    "checkpoint": {"every_events": 50000},
}


def spec(**changes) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in MINIMAL.items()}
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[key] = value
    return out


def test_the_minimal_shape_loads_with_stream_defaults(tmp_path):
    s = load_spec(spec(), base=tmp_path)
    assert s.source.kind == "file" and s.source.url == str(tmp_path / "data" / "events.jsonl")
    assert (s.batch_size, s.max_wait_ms, s.every_events) == (256, 50.0, 50000)
    assert s.checkpoint_alias == "online-latest" and s.promotion_alias == "production"
    assert s.metrics == ["accuracy", "log_loss"] and s.promotion_metric == "accuracy"
    assert (s.numeric, s.categorical) == ("scale", "onehot")
    from modelport.train.online.learners import effective_params

    assert effective_params(s) == {"learning_rate": "constant", "eta0": 0.01, "alpha": 0.0,
                                   "shuffle": False, "loss": "log_loss"}


@pytest.mark.parametrize("dotted, name", [
    ("colour", "colour"), ("batch.wait_ms", "batch.wait_ms"),
    ("checkpoint.every", "checkpoint.every"), ("learner.estimater", "learner.estimater"),
    ("promotion.treshold", "promotion.treshold"), ("source.speed", "source.speed"),
])
def test_an_unknown_key_is_refused_naming_it(tmp_path, dotted, name):
    raw = spec(**{dotted: 1}) if not dotted.startswith("source.") else \
        spec(source={"url": "events.jsonl", "speed": 1})
    with pytest.raises(UserError) as err:
        load_spec(raw, base=tmp_path)
    message = str(err.value)
    assert f"{name}: unknown key" in message and "\n" not in message


@pytest.mark.parametrize("changes, fragment", [
    ({"target": None}, "target: missing"),
    ({"learner.estimator": "sklearn.ensemble.RandomForestClassifier"},
     "cannot learn incrementally (it has no partial_fit)"),
    ({"learner.estimator": "sklearn.linear_model.SGDRegressor"}, "is a regressor but the task"),
    ({"learner.estimator": "sklearn.linear_model.SGDClasifier"}, "did you mean"),
    ({"learner.params": {"no_such": 1}}, "learner.params: sklearn.linear_model.SGDClassifier "
                                         "does not accept"),
    ({"learner.params": {"loss": "hinge"}, "evaluation": {"metrics": ["log_loss"]}},
     "log_loss needs class probabilities"),
    ({"batch.size": 0}, "batch.size: expected a whole number of at least 1"),
    ({"checkpoint.formats": ["pmml"]}, "pmml starts a Java runtime"),
    ({"source": "events.xlsx"}, "cannot replay events.xlsx"),
    ({"source": "sqlite:///app.db"}, "names no table"),
    ({"source": "redis://127.0.0.1:6379/0"}, "?stream=NAME"),
    ({"label_delay": {"max_events": 10}}, "label_delay: needs id"),
    ({"preprocess": {"numeric": "log"}}, "preprocess.numeric: unknown mode 'log'"),
    ({"drift": {"detector": "ADWN"}}, "River has no detector 'ADWN'"),
    ({"drift": {"action": "panic"}}, "drift.action: unknown action 'panic'"),
    ({"promotion": {"alias": "online-latest"}}, "is the checkpoint alias"),
    ({"task": "regression", "learner.estimator": "sklearn.linear_model.SGDRegressor",
      "learner.params": {}, "drift": {"detector": "DDM"}}, "watches right/wrong answers"),
])
def test_each_mistake_is_one_line_naming_the_key(tmp_path, changes, fragment):
    if "drift" in changes:
        need_module("river", "online")
    with pytest.raises(UserError) as err:
        load_spec(spec(**changes), base=tmp_path)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_river_learners_take_a_river_pipeline_and_no_modelport_preprocessing(tmp_path):
    need_module("river", "online")
    river = spec(**{"learner": {"estimator": "river.linear_model.LogisticRegression",
                                "pipeline": ["river.preprocessing.StandardScaler"]}})
    s = load_spec(river, base=tmp_path)
    assert s.river and s.numeric == "none"
    with pytest.raises(UserError, match="River learners preprocess inside their own pipeline"):
        load_spec({**river, "preprocess": {"numeric": "scale"}}, base=tmp_path)
    with pytest.raises(UserError, match="learner.pipeline: is for River learners"):
        load_spec(spec(**{"learner.pipeline": ["x.Y"]}), base=tmp_path)
    with pytest.raises(UserError, match="is not a River classifier"):
        load_spec(spec(**{"learner": {"estimator": "river.linear_model.LinearRegression"}}),
                  base=tmp_path)


def test_source_forms(tmp_path):
    s = load_spec(spec(source={"url": "events.csv", "rate": 500}), base=tmp_path)
    assert (s.source.kind, s.source.rate) == ("file", 500.0)
    s = load_spec(spec(source="postgresql://127.0.0.1/test#events?key=event_id"), base=tmp_path)
    assert (s.source.kind, s.source.url, s.source.key) == \
        ("sql", "postgresql://127.0.0.1/test#events", "event_id")
    s = load_spec(spec(source={"url": "nats://127.0.0.1:4222?subject=ev", "format": "msgpack"}),
                  base=tmp_path)
    assert (s.source.kind, s.source.format) == ("broker", "msgpack")
    with pytest.raises(UserError, match="source.key: a broker delivers in its own order"):
        load_spec(spec(source={"url": "redis://127.0.0.1?stream=e", "key": "k"}), base=tmp_path)
    s = load_spec(spec(source={"url": "redis://127.0.0.1?stream=e", "rate": 5}), base=tmp_path)
    assert s.source.rate == 5.0


def test_the_command_refuses_an_unknown_key_with_exit_code_2(tmp_path):
    path = tmp_path / "online.yaml"
    path.write_text(yaml.safe_dump(spec(**{"checkpoint.every_event": 5})))
    proc = subprocess.run([sys.executable, "-m", "modelport", "learn", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "online.yaml: checkpoint.every_event: unknown key; did you mean 'every_events'?" \
        in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_every_section_left_out_takes_its_documented_default(tmp_path):
    s = load_spec({"name": "churn-online", "source": "events.jsonl", "target": "churned",
                   "learner": {"estimator": "sklearn.linear_model.SGDClassifier",
                               "params": {"loss": "log_loss"}}},
                  base=tmp_path)
    assert (s.task, s.features, s.id, s.label_delay, s.classes, s.pipeline) == \
        ("classification", None, None, None, None, [])
    assert (s.source.rate, s.source.key, s.source.format, s.source.poll_ms) == \
        (None, None, "json", 200.0)
    assert (s.numeric, s.categorical, s.max_categories, s.hash_buckets) == \
        ("scale", "onehot", 50, 32)
    assert (s.batch_size, s.max_wait_ms, s.every_events, s.every_seconds) == \
        (256, 50.0, 50000, 600.0)
    assert (s.checkpoint_alias, s.formats) == ("online-latest", None)
    assert (s.promotion_alias, s.promotion_metric, s.promotion_threshold,
            s.promotion_min_events) == ("production", "accuracy", 0.01, 1000)
    assert (s.window, s.metrics) == (10_000, ["accuracy", "log_loss"])
    assert (s.drift_detector, s.drift_params, s.drift_action, s.drift_min_events,
            s.drift_max_events) == (None, {}, "alert", 1000, 50_000)
    assert (s.description, s.rejects, s.spark) == (None, None, {})
    assert isinstance(s.max_wait_ms, float) and isinstance(s.promotion_threshold, float)


def test_sections_written_as_true_false_or_null(tmp_path):
    s = load_spec(spec(id="customer_id", label_delay=True, promotion=False, drift=False),
                  base=tmp_path)
    assert (s.label_delay, s.promotion_alias, s.drift_detector) == (100_000, None, None)
    s = load_spec(spec(promotion=None, **{"checkpoint.every_seconds": None}), base=tmp_path)
    assert (s.promotion_alias, s.every_seconds) == ("production", None)
    s = load_spec(spec(preprocess="none"), base=tmp_path)
    assert (s.numeric, s.categorical) == ("none", "none")


@pytest.mark.parametrize("changes, message", [
    ({"batch.max_wait_ms": "50"},
     "batch.max_wait_ms: expected a number of at least 0, got '50'"),
    ({"batch.size": True}, "batch.size: expected a whole number of at least 1, got True"),
    ({"source": {"url": "events.jsonl", "rate": "fast"}},
     "source.rate: expected events per second (a positive number), got 'fast'"),
    ({"source": {"rate": 5}}, "source.url: missing; give a file (.jsonl, .csv, .parquet)"),
    ({"label_delay": {"max_events": 2.5}},
     "label_delay.max_events: expected a whole number of at least 1, got 2.5"),
    ({"preprocess": {"hash_buckets": 1}},
     "preprocess.hash_buckets: expected a whole number of at least 2, got 1"),
    ({"checkpoint.alias": 5}, "checkpoint.alias: expected an alias name, e.g. production; got 5"),
    ({"checkpoint.alias": "on line"}, "checkpoint.alias: bad alias 'on line'"),
    ({"checkpoint.every_seconds": 0}, "checkpoint.every_seconds: expected a number of at least "
                                      "0.001 (or null: no timed checkpoints), got 0"),
    ({"promotion": {"threshold": "1%"}},
     "promotion.threshold: expected a number of at least 0, got '1%'"),
    ({"evaluation": {"window": 5}}, "evaluation.window: expected a whole number of at least 10"),
    ({"drift": {"min_events": 500, "max_events": 100}},
     "drift.max_events: expected a whole number of at least drift.min_events (500), got 100"),
    ({"learner.params": ["log_loss"]},
     "learner.params: expected a mapping of parameter: value, got ['log_loss']"),
    ({"learner.estimator": 5}, "learner.estimator: expected a dotted class path"),
    ({"learner": "sgd"}, "learner: expected a mapping of estimator, params, pipeline, got 'sgd'"),
    ({"promotion": 1}, "promotion: expected false (promote nothing) or a mapping of alias, "
                       "metric, threshold, min_events; got 1"),
    ({"features": ["tenure", "tenure"]}, "features: lists 'tenure' twice; list each once"),
    ({"classes": [0, "0"]}, "classes: lists a label twice"),
    ({"name": True}, "name: expected a model name, e.g. churn-online; got True"),
    ({"task": "classify"}, "task: unknown task 'classify'; use one of classification"),
])
def test_a_wrong_value_names_its_full_key_path_and_the_fix(tmp_path, changes, message):
    with pytest.raises(UserError) as err:
        load_spec(spec(**changes), base=tmp_path)
    assert str(err.value).startswith(f"spec: {message}")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("changes, where, close", [
    ({"targt": "churned"}, "targt", "target"),
    ({"promotion.treshold": 0.1}, "promotion.treshold", "threshold"),
    ({"source": {"url": "events.jsonl", "rat": 5}}, "source.rat", "rate"),
    ({"label_delay": {"max_event": 5}, "id": "customer_id"}, "label_delay.max_event",
     "max_events"),
    ({"drift": {"detecter": "ADWIN"}}, "drift.detecter", "detector"),
    ({"preprocess": {"numerc": "scale"}}, "preprocess.numerc", "numeric"),
    ({"spark": {"step": 0.1}}, "spark.step", "step_size"),
])
def test_an_unknown_key_suggests_the_closest_known_one(tmp_path, changes, where, close):
    with pytest.raises(UserError) as err:
        load_spec(spec(**changes), base=tmp_path)
    assert f"spec: {where}: unknown key; did you mean {close!r}? known keys here: " \
        in str(err.value)
