"""The registry's promises: numbered immutable versions, what a version records, movable
aliases with their full history and rollback, deletion, URIs, search, and the database it
opens (SQLite by default, PostgreSQL from a plain URL)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from functools import cache

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression, Ridge

import modelport
from modelport.errors import NotFound, UserError
from modelport.register import fingerprint
from modelport.registry import Registry


@cache
def _fitted(seed: int = 0) -> tuple[LogisticRegression, pd.DataFrame]:
    """A small logistic regression fitted on data of ``seed``, and that data (fitted once
    per seed: the fit costs more than a registration)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"tenure": rng.integers(0, 72, 60).astype(float),
                      "charges": np.round(rng.uniform(15, 120, 60), 2)})
    y = ((X["tenure"] < 30) ^ (np.arange(60) % 7 == 0)).astype(int)
    return LogisticRegression(C=0.05 * (seed + 1), max_iter=500).fit(X, y), X


def _register(name: str = "churn", seed: int = 0, **kwargs):
    """Register the model of ``seed``; return (version, model, sample)."""
    model, X = _fitted(seed)
    kwargs.setdefault("formats", ["joblib"])
    return modelport.log_model(model, name, sample=X.copy(), **kwargs), model, X


# -- versions ----------------------------------------------------------------------------


def test_versions_are_numbered_from_one_and_each_loads_its_own_model():
    registered = [_register(seed=s) for s in range(3)]
    reg = Registry()
    assert [v.version for v, _, _ in registered] == [1, 2, 3]
    assert [v.version for v in reg.versions("churn")] == [1, 2, 3]
    for version, model, X in registered:
        loaded = reg.load(f"churn/{version.version}")
        assert (loaded.model_name, loaded.model_version) == ("churn", version.version)
        np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    # the models really differ, so loading the wrong version could not pass the loop above
    _, first, X = registered[0]
    _, last, _ = registered[2]
    assert not np.allclose(first.predict_proba(X), last.predict_proba(X))


def test_a_deleted_version_number_is_never_given_again():
    for seed in range(2):
        _register(seed=seed)
    reg = Registry()
    assert reg.delete("churn", 2) == [2]
    version, model, X = _register(seed=5)
    assert version.version == 3
    assert [v.version for v in reg.versions("churn")] == [1, 3]
    with pytest.raises(NotFound, match="no version 2"):
        reg.get("churn/2")
    np.testing.assert_array_equal(reg.load("churn").predict_proba(X), model.predict_proba(X))


def test_a_version_records_what_it_was_registered_with(monkeypatch):
    monkeypatch.setenv("MODELPORT_USER", "ana")
    parent, _, _ = _register(seed=1)
    before = datetime.now(UTC)
    version, model, X = _register(
        seed=2, metrics={"auc": np.float64(0.91)}, params={"C": 0.15, "max_iter": 500},
        tags={"team": "retention", "stage": "candidate"}, parent=parent.version,
        description="monthly refresh")
    after = datetime.now(UTC)

    v = Registry().get("churn/2")
    assert v.task == "classification"
    assert v.native_format == "joblib"
    assert [c["name"] for c in v.signature["inputs"]] == ["tenure", "charges"]
    assert v.signature["classes"] == [0, 1]
    assert v.metrics == {"auc": 0.91}
    assert v.params == {"C": 0.15, "max_iter": 500}
    assert v.tags == {"team": "retention", "stage": "candidate"}
    assert v.parent_version == 1
    assert v.description == "monthly refresh"
    assert v.data_fingerprint == fingerprint(X)
    assert v.data_fingerprint != parent.data_fingerprint
    assert v.library_versions["scikit-learn"] == sklearn.__version__
    assert v.library_versions["numpy"] == np.__version__
    assert v.created_by == "ana"
    assert before <= datetime.fromisoformat(v.created_at) <= after
    assert v.lineage == {"estimator": "sklearn.linear_model._logistic.LogisticRegression"}
    joblib_art = v.artefact("joblib")
    assert joblib_art.status == "accepted" and joblib_art.parity["passed"]
    assert len(joblib_art.sha256) == 64 and joblib_art.size > 0
    assert v.to_dict()["formats"]["joblib"]["sha256"] == joblib_art.sha256


def test_params_default_to_the_estimators_own():
    version, model, _ = _register()
    assert version.params["C"] == model.C
    assert version.params["max_iter"] == 500


def test_the_sample_is_stored_with_the_version():
    version, _, X = _register()
    pd.testing.assert_frame_equal(Registry().sample("churn/1"), X)
    pd.testing.assert_frame_equal(Registry().sample(version), X)


def test_a_large_sample_is_cut_to_a_thousand_rows_and_that_is_what_is_stored():
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"tenure": rng.integers(0, 72, 2500).astype(float),
                      "charges": np.round(rng.uniform(15, 120, 2500), 2)})
    model = Ridge().fit(X, X["tenure"] * 2 - X["charges"])
    version = modelport.log_model(model, "ltv", sample=X, formats=["joblib"])
    stored = Registry().sample(version)
    assert len(stored) == 1000
    # the fingerprint, like the signature, covers every row given, not the stored ones
    assert version.data_fingerprint == fingerprint(X)
    # the stored rows are rows of the original sample
    assert stored.merge(X.drop_duplicates(), how="left", indicator=True)["_merge"].eq(
        "both").all()


def test_a_parent_that_does_not_exist_is_refused_without_using_up_a_number():
    with pytest.raises(NotFound, match="parent version churn/7 does not exist"):
        _register(parent=7)
    version, _, _ = _register()
    assert version.version == 1


# -- URIs and lookups --------------------------------------------------------------------


def test_uris_name_the_latest_a_numbered_or_an_aliased_version():
    for seed in range(3):
        _register(seed=seed)
    reg = Registry()
    reg.set_alias("churn", 2, "production")
    assert reg.get("churn").version == 3
    assert reg.get("churn/1").version == 1
    assert reg.get("churn@production").version == 2
    assert reg.get("models:/churn/2").version == 2
    assert reg.get(" churn@production ").aliases == ["production"]
    assert modelport.load("churn@production").model_version == 2


def test_unknown_model_version_or_alias_is_not_found_with_a_helpful_message():
    reg = Registry()
    with pytest.raises(NotFound, match="no model named 'churn' .the registry is empty"):
        reg.get("churn")
    _register()
    reg.set_alias("churn", 1, "staging")
    with pytest.raises(NotFound, match=r"no model named 'churm' \(known: churn\)"):
        reg.get("churm/1")
    with pytest.raises(NotFound, match=r"'churn' has no version 4; list them with "
                                       r"'modelport models show churn'"):
        reg.get("churn/4")
    with pytest.raises(NotFound, match=r"'churn' has no alias 'production' \(known: staging\); "
                                       r"set one with 'modelport models alias churn VERSION "
                                       r"production'"):
        reg.get("churn@production")
    with pytest.raises(NotFound, match="no model named 'churm'"):
        reg.versions("churm")
    with pytest.raises(NotFound, match="no model named 'churm'"):
        reg.load("churm@production")


def test_a_model_whose_versions_were_all_deleted_says_it_has_none():
    _register()
    reg = Registry()
    reg.delete("churn", 1)
    with pytest.raises(NotFound, match="'churn' has no versions yet"):
        reg.get("churn")


@pytest.mark.parametrize("uri, message", [
    ("churn/0", "bad version in model URI 'churn/0'"),
    ("churn/two", "bad version in model URI 'churn/two'"),
    ("churn@9lives", "bad alias in model URI 'churn@9lives'"),
    ("-churn", "bad model name '-churn'"),
])
def test_a_malformed_uri_is_a_user_error_naming_it(uri, message):
    with pytest.raises(UserError, match=message) as caught:
        Registry().get(uri)
    assert not isinstance(caught.value, NotFound)


def test_a_format_the_version_does_not_have_is_not_found_naming_those_it_has():
    _register()
    with pytest.raises(NotFound, match="churn/1 has no onnx artefact; it has: joblib"):
        Registry().load("churn/1", format="onnx")


# -- aliases -----------------------------------------------------------------------------


def test_alias_moves_are_kept_with_from_to_when_who_and_why(monkeypatch):
    for seed in range(3):
        _register(seed=seed)
    reg = Registry()
    monkeypatch.setenv("MODELPORT_USER", "ana")
    t0 = datetime.now(UTC)
    reg.set_alias("churn", 1, "production", reason="first launch")
    moved = reg.set_alias("churn", "3", "production", reason="better auc", by="bo")
    reg.set_alias("churn", 2, "staging")
    t1 = datetime.now(UTC)

    assert moved.version == 3 and moved.aliases == ["production"]
    assert reg.aliases("churn") == {"production": 3, "staging": 2}
    history = reg.alias_history("churn", "production")
    assert [(e["action"], e["from_version"], e["to_version"], e["by"], e["reason"])
            for e in history] == [
        ("set", None, 1, "ana", "first launch"),
        ("set", 1, 3, "bo", "better auc"),
    ]
    assert all(t0 <= datetime.fromisoformat(e["at"]) <= t1 for e in history)
    assert len(reg.alias_history("churn")) == 3


def test_rolling_back_twice_goes_two_promotions_back():
    for seed in range(3):
        _register(seed=seed)
    reg = Registry()
    for number in (1, 2, 3):
        reg.set_alias("churn", number, "production")
    assert reg.rollback("churn", "production", reason="auc dropped").version == 2
    assert reg.rollback("churn", "production", by="bo").version == 1
    with pytest.raises(UserError, match="churn@production has no earlier version to roll back "
                                        "to; see 'modelport models show churn'"):
        reg.rollback("churn", "production")
    assert reg.get("churn@production").version == 1
    history = reg.alias_history("churn", "production")
    assert [(e["action"], e["from_version"], e["to_version"]) for e in history] == [
        ("set", None, 1), ("set", 1, 2), ("set", 2, 3),
        ("rollback", 3, 2), ("rollback", 2, 1),
    ]
    assert history[3]["reason"] == "auc dropped" and history[4]["by"] == "bo"


def test_rollback_after_a_new_promotion_returns_to_the_version_before_it():
    for seed in range(3):
        _register(seed=seed)
    reg = Registry()
    reg.set_alias("churn", 1, "production")
    reg.set_alias("churn", 2, "production")
    reg.rollback("churn", "production")
    reg.set_alias("churn", 3, "production")
    assert reg.rollback("churn", "production").version == 1


def test_setting_an_alias_to_the_version_it_has_does_not_make_rollback_stay_put():
    for seed in range(2):
        _register(seed=seed)
    reg = Registry()
    reg.set_alias("churn", 1, "production")
    reg.set_alias("churn", 2, "production")
    reg.set_alias("churn", 2, "production", reason="re-approved")
    assert reg.rollback("churn", "production").version == 1


def test_rollback_of_a_single_promotion_is_a_user_error():
    _register()
    reg = Registry()
    with pytest.raises(NotFound, match="'churn' has no alias 'production' to roll back"):
        reg.rollback("churn", "production")
    reg.set_alias("churn", 1, "production")
    with pytest.raises(UserError, match="churn@production has no earlier version"):
        reg.rollback("churn", "production")
    with pytest.raises(NotFound, match="no model named 'churm'"):
        reg.rollback("churm", "production")


def test_rollback_to_a_deleted_version_is_refused():
    for seed in range(2):
        _register(seed=seed)
    reg = Registry()
    reg.set_alias("churn", 1, "production")
    reg.set_alias("churn", 2, "production")
    reg.delete("churn", 1)
    with pytest.raises(UserError, match="would roll back to version 1, which was deleted"):
        reg.rollback("churn", "production")
    assert reg.get("churn@production").version == 2


def test_an_alias_to_an_unknown_version_or_model_is_not_found():
    _register()
    reg = Registry()
    with pytest.raises(NotFound, match="'churn' has no version 5"):
        reg.set_alias("churn", 5, "production")
    with pytest.raises(NotFound, match="no model named 'churm'"):
        reg.set_alias("churm", 1, "production")
    assert reg.aliases("churn") == {}
    assert reg.alias_history("churn") == []


@pytest.mark.parametrize("version", ["latest", "1.5", ""])
def test_an_alias_to_a_version_that_is_not_a_number_is_a_user_error(version):
    _register()
    with pytest.raises(UserError, match=f"bad version {version!r}"):
        Registry().set_alias("churn", version, "production")


def test_a_name_or_alias_with_a_trailing_newline_is_refused():
    from modelport.uri import check_alias, check_name

    with pytest.raises(UserError, match="bad model name"):
        check_name("churn\n")
    with pytest.raises(UserError, match="bad alias"):
        check_alias("production\n")


def test_a_bad_alias_name_is_a_user_error():
    _register()
    with pytest.raises(UserError, match="bad alias '1st'"):
        Registry().set_alias("churn", 1, "1st")


def test_deleting_an_alias_is_recorded_and_ends_its_rollback_history():
    for seed in range(2):
        _register(seed=seed)
    reg = Registry()
    reg.set_alias("churn", 1, "production")
    reg.set_alias("churn", 2, "production")
    reg.delete_alias("churn", "production", reason="retired")
    with pytest.raises(NotFound, match="has no alias 'production'"):
        reg.get("churn@production")
    assert reg.alias_history("churn", "production")[-1]["action"] == "delete"
    with pytest.raises(NotFound, match="has no alias 'production'"):
        reg.delete_alias("churn", "production")
    reg.set_alias("churn", 2, "production")
    with pytest.raises(UserError, match="no earlier version"):
        reg.rollback("churn", "production")


# -- deletion ----------------------------------------------------------------------------


def test_delete_refuses_a_version_an_alias_points_to_unless_forced():
    for seed in range(2):
        _register(seed=seed)
    reg = Registry()
    reg.set_alias("churn", 2, "production")
    with pytest.raises(UserError, match=r"refusing to delete: aliases point to it "
                                        r"\(churn@production -> 2\); move them first "
                                        r"or pass --force"):
        reg.delete("churn", 2)
    with pytest.raises(UserError, match="refusing to delete"):
        reg.delete("churn")
    assert [v.version for v in reg.versions("churn")] == [1, 2]

    assert reg.delete("churn", 2, force=True) == [2]
    assert reg.aliases("churn") == {}
    last = reg.alias_history("churn", "production")[-1]
    assert (last["action"], last["from_version"], last["reason"]) == (
        "delete", 2, "version deleted")
    assert [v.version for v in reg.versions("churn")] == [1]


def test_deleting_an_unknown_version_or_model_is_not_found():
    _register()
    reg = Registry()
    with pytest.raises(NotFound, match="'churn' has no version 3"):
        reg.delete("churn", 3)
    with pytest.raises(NotFound, match="no model named 'churm'"):
        reg.delete("churm")


def test_deleting_a_model_removes_it_and_its_history():
    _register()
    _register(name="fraud")
    reg = Registry()
    reg.set_alias("churn", 1, "production")
    assert reg.delete("churn", force=True) == [1]
    assert [m["name"] for m in reg.list_models()] == ["fraud"]
    assert reg.alias_history("churn") == []
    assert _register()[0].version == 1


# -- search and listing ------------------------------------------------------------------


def test_list_models_gives_counts_latest_version_and_aliases():
    reg = Registry()
    assert reg.list_models() == []
    for seed in range(3):
        _register(seed=seed)
    _register(name="fraud")
    reg.set_alias("churn", 2, "production")
    reg.delete("churn", 3)
    listed = {m["name"]: m for m in reg.list_models()}
    assert list(listed) == ["churn", "fraud"]
    assert (listed["churn"]["versions"], listed["churn"]["latest_version"]) == (2, 2)
    assert listed["churn"]["aliases"] == {"production": 2}
    assert (listed["fraud"]["versions"], listed["fraud"]["aliases"]) == (1, {})
    assert datetime.fromisoformat(listed["fraud"]["created_at"]).tzinfo is not None


def test_search_finds_versions_by_name_and_tags():
    _register("churn_eu", seed=0, tags={"team": "retention", "region": "eu"})
    _register("churn_eu", seed=1, tags={"team": "retention", "region": "eu", "stage": "prod"})
    _register("churnXeu", seed=2, tags={"team": "growth"})
    _register("fraud", seed=3, tags={"team": "risk"})
    reg = Registry()

    def found(**kwargs):
        return [v.uri for v in reg.search(**kwargs)]

    assert found(name="churn") == ["churnXeu/1", "churn_eu/1", "churn_eu/2"]
    # '_' is a character of the name, not a wildcard
    assert found(name="churn_") == ["churn_eu/1", "churn_eu/2"]
    assert found(name="CHURN_EU") == ["churn_eu/1", "churn_eu/2"]
    assert found(tags={"team": "retention", "stage": "prod"}) == ["churn_eu/2"]
    assert found(name="fraud", tags={"team": "retention"}) == []
    assert found(tags={"stage": "None"}) == []
    assert found(task="regression") == []
    assert len(found()) == 4


# -- the database ------------------------------------------------------------------------


def test_the_default_registry_is_sqlite_inside_modelport_home(modelport_home):
    reg = Registry()
    assert reg.engine.dialect.name == "sqlite"
    assert reg.engine.url.database == str(modelport_home / "registry.db")
    _register()
    assert (modelport_home / "registry.db").is_file()
    assert any((modelport_home / "artefacts").rglob("*"))


def test_the_registry_opens_on_postgresql_from_a_plain_url(postgres_url, monkeypatch):
    assert postgres_url.startswith("postgresql://")
    monkeypatch.setenv("MODELPORT_REGISTRY", postgres_url)
    reg = Registry()
    assert (reg.engine.dialect.name, reg.engine.dialect.driver) == ("postgresql", "psycopg")
    version, model, X = _register()
    reg.set_alias("churn", version.version, "production", reason="launch")
    loaded = Registry(url=postgres_url.replace("postgresql://", "postgres://", 1)).load(
        "churn@production")
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert datetime.fromisoformat(reg.get("churn").created_at).tzinfo is not None
    _register("churn_eu", registry=reg)
    _register("churnXeu", registry=reg)
    assert [v.uri for v in reg.search(name="CHURN_")] == ["churn_eu/1"]


def test_concurrent_alias_moves_on_postgresql_keep_one_consistent_history(postgres_url):
    reg = Registry(url=postgres_url)
    for seed in range(4):
        _register(seed=seed, registry=reg)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def move(number: int) -> None:
        mover = Registry(url=postgres_url)
        start.wait()
        try:
            mover.set_alias("churn", number, "production")
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=move, args=(1 + i % 4,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    history = reg.alias_history("churn", "production")
    assert len(history) == 8
    # each move starts where the one before it ended
    assert history[0]["from_version"] is None
    for before, after in zip(history, history[1:], strict=False):
        assert after["from_version"] == before["to_version"]
    assert reg.get("churn@production").version == history[-1]["to_version"]


@pytest.mark.parametrize("url, message", [
    ("mysql://127.0.0.1/test", "unsupported registry URL 'mysql://127.0.0.1/test'"),
    ("registry.db", "unsupported registry URL 'registry.db'"),
    ("postgresql://127.0.0.1:1/test", "cannot open the registry database"),
    ("postgresql://127.0.0.1:notaport/test", "bad registry URL"),
    ("postgresql+nosuchdriver://127.0.0.1/test", "bad registry URL"),
    ("sqlite:///{home}/deeper/folder/registry.db", None),
])
def test_a_bad_registry_url_is_a_user_error(url, message, monkeypatch, modelport_home):
    monkeypatch.setenv("MODELPORT_REGISTRY", url.format(home=modelport_home))
    if message is None:  # a SQLite path whose folders do not exist yet is created
        assert Registry().list_models() == []
        return
    with pytest.raises(UserError, match=message) as caught:
        Registry()
    assert "MODELPORT_REGISTRY" in str(caught.value)


def test_a_password_in_a_bad_registry_url_is_not_repeated(monkeypatch):
    monkeypatch.setenv("MODELPORT_REGISTRY", "postgresql://ana:s3cret@127.0.0.1:port/test")
    with pytest.raises(UserError, match="bad registry URL") as caught:
        Registry()
    assert "s3cret" not in str(caught.value) and "ana:***@" in str(caught.value)


def test_a_missing_postgresql_database_is_a_user_error(postgres_url):
    missing = postgres_url.rsplit("/", 1)[0] + "/mp_no_such_database"
    with pytest.raises(UserError, match='database "mp_no_such_database" does not exist'):
        Registry(url=missing)


def test_training_text_that_is_not_unicode_is_refused_naming_the_column():
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    X = pd.DataFrame({"a": np.arange(20.0),
                      "b": pd.Series(["x", "\ud800"] * 10, dtype=object)})
    y = np.arange(20) % 2
    model = make_pipeline(make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["b"]),
                                                  remainder="passthrough"),
                          LogisticRegression()).fit(X, y)
    with pytest.raises(UserError, match="column 'b' holds text that is not Unicode"):
        modelport.log_model(model, "odd", sample=X)
