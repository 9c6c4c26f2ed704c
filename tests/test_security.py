"""Artefact signatures: with ``MODELPORT_SIGNING_KEY`` set, a registry database that someone
else can write cannot make modelport load bytes the key holder never registered.

The attack each test closes: the joblib format unpickles, after checking the blob's sha256
against the database; whoever writes the database can store a pickle of their own and point
a version's row at its hash. Without a key that pickle runs (shown once below); with a key,
the row's signature no longer matches and the load is refused before anything is fetched.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sqlalchemy import select, update

import modelport
from modelport.errors import UserError
from modelport.registry import (
    ALLOW_UNSIGNED_ENV,
    SIGNING_KEY_ENV,
    Registry,
    SignatureRefused,
    artefact_signature,
)
from modelport.registry import schema as S

KEY = "k" * 16 + "0123456789abcdef0123"
OTHER_KEY = "o" * 40


@cache
def _fitted() -> tuple[LogisticRegression, pd.DataFrame]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"tenure": rng.uniform(0, 72, 80), "charges": rng.uniform(15, 120, 80)})
    y = (X["tenure"] < 30).astype(int)
    return LogisticRegression(max_iter=500).fit(X, y), X


def _register(name: str = "churn"):
    model, X = _fitted()
    return modelport.log_model(model, name, sample=X.copy(), formats=["joblib"])


class _Canary:
    """Unpickling this leaves a file: what a malicious artefact would do instead."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def _repoint(reg: Registry, name: str, version: int, canary: Path) -> str:
    """What someone who can write the registry database does: store a pickle of their own
    and record its hash as the version's joblib artefact. Returns the new hash."""
    evil = reg.store.put(pickle.dumps(_Canary(canary)))
    with S.write_txn(reg.engine) as conn:
        conn.execute(update(S.artefacts).where(
            S.artefacts.c.model == name, S.artefacts.c.version == version,
            S.artefacts.c.format == "joblib").values(sha256=evil))
    return evil


def _signature_of(reg: Registry, name: str, version: int) -> str | None:
    with reg.engine.connect() as conn:
        return conn.execute(select(S.artefacts.c.signature).where(
            S.artefacts.c.model == name, S.artefacts.c.version == version,
            S.artefacts.c.format == "joblib")).scalar()


def test_without_a_key_a_writable_database_redirects_a_load(tmp_path, monkeypatch):
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    version = _register()
    reg = Registry()
    assert _signature_of(reg, "churn", version.version) is None
    canary = tmp_path / "ran"
    _repoint(reg, "churn", version.version, canary)
    with pytest.raises(Exception):  # noqa: B017 - the pickle ran; what it returns is no model
        reg.load("churn/1", format="joblib").predict(_fitted()[1])
    assert canary.exists(), "the attack these tests guard against no longer works"


def test_a_signed_version_loads_and_says_it_is_signed(monkeypatch):
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    version = _register()
    reg = Registry()
    expected = artefact_signature(KEY.encode(), "churn", version.version, "joblib",
                                  version.artefact("joblib").sha256)
    assert _signature_of(reg, "churn", version.version) == expected
    assert reg.get("churn/1").to_dict()["formats"]["joblib"]["signed"] is True
    model, X = _fitted()
    np.testing.assert_array_equal(reg.load("churn/1", format="joblib").predict_proba(X),
                                  model.predict_proba(X))


def test_a_repointed_hash_is_refused_before_anything_is_unpickled(tmp_path, monkeypatch):
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    _register()
    reg = Registry()
    canary = tmp_path / "ran"
    _repoint(reg, "churn", 1, canary)
    with pytest.raises(SignatureRefused) as caught:
        reg.load("churn/1", format="joblib")
    message = str(caught.value)
    assert "\n" not in message
    assert "the joblib artefact of churn/1" in message and "does not carry a valid" in message
    assert "Register the model again" in message
    assert not canary.exists()


def test_a_signature_copied_from_another_row_or_removed_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    _register()
    _register()
    _register("fraud")
    reg = Registry()
    canary = tmp_path / "ran"
    # the attacker's blob, signed where it could be: under another version or model
    evil = _repoint(reg, "churn", 1, canary)
    for name, version in (("churn", 2), ("fraud", 1)):
        with S.write_txn(reg.engine) as conn:
            conn.execute(update(S.artefacts).where(
                S.artefacts.c.model == "churn", S.artefacts.c.version == 1,
                S.artefacts.c.format == "joblib").values(
                sha256=evil, signature=_signature_of(reg, name, version)))
        with pytest.raises(SignatureRefused, match="does not carry a valid signature"):
            reg.load("churn/1", format="joblib")
    with S.write_txn(reg.engine) as conn:
        conn.execute(update(S.artefacts).where(
            S.artefacts.c.model == "churn", S.artefacts.c.version == 1).values(signature=None))
    with pytest.raises(SignatureRefused, match=f"has no signature .* {ALLOW_UNSIGNED_ENV}=1"):
        reg.load("churn/1", format="joblib")
    # letting unsigned versions load is letting this one load: the operator's choice
    monkeypatch.setenv(ALLOW_UNSIGNED_ENV, "1")
    with pytest.raises(Exception):  # noqa: B017 - the pickle ran
        reg.load("churn/1", format="joblib").predict(_fitted()[1])
    assert canary.exists()


def test_another_key_refuses_and_a_short_key_is_a_mistake(monkeypatch):
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    _register()
    monkeypatch.setenv(SIGNING_KEY_ENV, OTHER_KEY)
    with pytest.raises(SignatureRefused, match="signed with another key"):
        Registry().load("churn/1", format="joblib")
    monkeypatch.setenv(SIGNING_KEY_ENV, "short")
    with pytest.raises(UserError, match=f"{SIGNING_KEY_ENV} holds 5 characters; .* at least 32"):
        Registry()


def test_versions_from_before_the_key_are_refused_until_signed(monkeypatch):
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    _register()
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    reg = Registry()
    with pytest.raises(SignatureRefused, match="has no signature"):
        reg.load("churn/1", format="joblib")
    assert reg.sign_unsigned() == 1 and reg.sign_unsigned() == 0
    assert reg.load("churn/1", format="joblib").model_version == 1


def test_a_registry_made_before_signatures_gains_the_column_and_keeps_loading(monkeypatch):
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    _register()
    db = Path(os.environ["MODELPORT_HOME"]) / "registry.db"
    with sqlite3.connect(db) as conn:  # as an earlier release created it
        conn.execute("ALTER TABLE mp_artefacts DROP COLUMN signature")
    with sqlite3.connect(db) as conn:
        assert "signature" not in {r[1] for r in conn.execute("PRAGMA table_info(mp_artefacts)")}
    assert Registry().load("churn/1", format="joblib").model_version == 1
    with sqlite3.connect(db) as conn:
        assert "signature" in {r[1] for r in conn.execute("PRAGMA table_info(mp_artefacts)")}
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    assert _register().version == 2
    assert Registry().load("churn/2", format="joblib").model_version == 2


def test_the_command_line_refuses_a_tampered_version_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    _register()
    canary = tmp_path / "ran"
    _repoint(Registry(), "churn", 1, canary)
    _fitted()[1].to_csv(tmp_path / "rows.csv", index=False)
    done = subprocess.run(
        [sys.executable, "-m", "modelport", "predict", "churn/1", "--format", "joblib",
         "--input", str(tmp_path / "rows.csv"), "--output", str(tmp_path / "out.csv")],
        capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "the joblib artefact of churn/1" in lines[0], lines
    assert not canary.exists()


def test_an_online_learner_state_is_signed_and_checked_before_it_is_unpickled(
        tmp_path, monkeypatch):
    from modelport.train.online import learn

    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    rng = np.random.default_rng(1)
    events = pd.DataFrame({"a": rng.normal(size=600), "b": rng.normal(size=600)})
    events["y"] = (events["a"] > 0).astype(int)
    events.to_parquet(tmp_path / "events.parquet", index=False)
    spec = {"name": "ol", "source": str(tmp_path / "events.parquet"), "target": "y",
            "learner": {"estimator": "sklearn.linear_model.SGDClassifier"},
            "checkpoint": {"every_events": 10**9, "formats": ["joblib"]}, "promotion": False}
    learn(spec)
    reg = Registry()
    info = reg.get("ol@online-latest").lineage["online"]
    assert info["state_signature"].startswith("hmac-sha256:")

    canary = tmp_path / "ran"
    evil = reg.store.put(pickle.dumps(_Canary(canary)))
    with S.write_txn(reg.engine) as conn:
        row = conn.execute(select(S.versions.c.id, S.versions.c.lineage).where(
            S.versions.c.model == "ol")).one()
        lineage = dict(row.lineage)
        lineage["online"] = {**lineage["online"], "state_sha256": evil}
        conn.execute(update(S.versions).where(S.versions.c.id == row.id)
                     .values(lineage=lineage))
    with pytest.raises(SignatureRefused, match="the online-state of ol .* does not carry"):
        learn(spec)
    assert not canary.exists()
