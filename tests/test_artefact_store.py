"""Artefact stores: content-addressed blobs in a local folder or S3-compatible storage,
verified on every read so that a changed artefact is refused, not unpickled.

The S3 tests run against moto's server mode, a real S3-compatible HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import signal
import socket
import subprocess
import sys
import time
import uuid
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import modelport
from modelport.errors import ArtefactTampered, NotFound, UserError
from modelport.registry import Registry
from modelport.registry.store import LocalStore, S3Store, open_store

from conftest import port_open, unavailable


@cache
def _fitted(seed: int) -> tuple[LogisticRegression, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"tenure": rng.integers(0, 72, 60).astype(float),
                      "charges": np.round(rng.uniform(15, 120, 60), 2)})
    y = ((X["tenure"] < 30) ^ (np.arange(60) % 7 == 0)).astype(int)
    return LogisticRegression(C=0.05 * (seed + 1), max_iter=500).fit(X, y), X


def _register(seed: int = 0, name: str = "churn"):
    model, X = _fitted(seed)
    return modelport.log_model(model, name, sample=X.copy(), formats=["joblib"]), model, X


# -- the local folder --------------------------------------------------------------------


def test_a_local_blob_is_named_by_its_sha256_and_written_whole(tmp_path):
    store = LocalStore(tmp_path / "blobs")
    data = b"model bytes" * 1000
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.path(digest) == tmp_path / "blobs" / digest[:2] / digest
    assert store.put(data) == digest
    assert store.get(digest) == data and store.exists(digest)
    # no temporary file is left beside the blob
    assert [p.name for p in store.path(digest).parent.iterdir()] == [digest]
    store.delete(digest)
    assert not store.exists(digest)


def test_a_missing_local_blob_is_not_found_naming_the_store(tmp_path):
    store = LocalStore(tmp_path / "blobs")
    with pytest.raises(NotFound, match="is missing from .*check MODELPORT_ARTIFACTS"):
        store.get(hashlib.sha256(b"never stored").hexdigest())


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_changed_local_artefact_is_refused_on_load():
    version, model, X = _register()
    reg = Registry()
    blob = reg.store.path(version.artefact("joblib").sha256)
    _flip_a_byte(blob)
    with pytest.raises(ArtefactTampered, match="changed after registration; refusing to load") \
            as caught:
        reg.load("churn/1")
    assert isinstance(caught.value, UserError)
    assert str(blob) in str(caught.value)


def test_a_changed_sample_is_refused():
    version, _, _ = _register()
    reg = Registry()
    _flip_a_byte(reg.store.path(version.sample_sha256))
    with pytest.raises(ArtefactTampered):
        reg.sample(version)


def test_registering_the_same_model_again_repairs_a_changed_local_artefact():
    version, model, X = _register()
    reg = Registry()
    _flip_a_byte(reg.store.path(version.artefact("joblib").sha256))
    again, _, _ = _register()  # the same model, so the same bytes
    assert again.artefact("joblib").sha256 == version.artefact("joblib").sha256
    for uri in ("churn/1", "churn/2"):
        np.testing.assert_array_equal(reg.load(uri).predict_proba(X), model.predict_proba(X))


def test_a_deleted_local_artefact_is_not_found():
    version, _, _ = _register()
    reg = Registry()
    reg.store.path(version.artefact("joblib").sha256).unlink()
    with pytest.raises(NotFound, match="is missing from"):
        reg.load("churn/1")


# -- S3-compatible storage ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # on Linux the server gets SIGKILL if the test process itself dies before teardown
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on a free local port, stopped after this module's tests."""
    server = Path(sys.executable).parent / "moto_server"
    if not server.exists():
        unavailable("moto_server is not installed (pip install 'moto[server]')")
    port = _free_port()
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            if proc.poll() is not None:
                pytest.fail(f"moto_server exited: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("moto_server did not listen within 30 s")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """A fresh bucket; MODELPORT_ARTIFACTS points into it. Returns (client, bucket, prefix)."""
    import boto3

    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("MODELPORT_S3_ENDPOINT_URL", s3_endpoint)
    bucket = f"models-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=bucket)
    monkeypatch.setenv("MODELPORT_ARTIFACTS", f"s3://{bucket}/team/artefacts")
    return client, bucket, "team/artefacts"


def test_a_version_registered_to_s3_loads_from_s3(s3, modelport_home):
    client, bucket, prefix = s3
    version, model, X = _register()
    reg = Registry()
    assert isinstance(reg.store, S3Store)
    digest = version.artefact("joblib").sha256
    key = f"{prefix}/{digest[:2]}/{digest}"
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == digest
    assert not (modelport_home / "artefacts").exists()  # nothing went to the local folder
    np.testing.assert_array_equal(reg.load("churn/1").predict_proba(X), model.predict_proba(X))
    pd.testing.assert_frame_equal(reg.sample("churn/1"), X)


def test_a_changed_s3_artefact_is_refused_on_load(s3):
    client, bucket, prefix = s3
    version, _, _ = _register()
    digest = version.artefact("joblib").sha256
    key = f"{prefix}/{digest[:2]}/{digest}"
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=body[:-1] + bytes([body[-1] ^ 0xFF]))
    with pytest.raises(ArtefactTampered, match=f"s3://{bucket}/{key} does not match"):
        Registry().load("churn/1")


def test_registering_the_same_model_again_repairs_a_changed_s3_artefact(s3):
    client, bucket, prefix = s3
    version, model, X = _register()
    digest = version.artefact("joblib").sha256
    client.put_object(Bucket=bucket, Key=f"{prefix}/{digest[:2]}/{digest}", Body=b"not a model")
    _register()
    for uri in ("churn/1", "churn/2"):
        np.testing.assert_array_equal(Registry().load(uri).predict_proba(X),
                                      model.predict_proba(X))


def test_a_missing_s3_artefact_is_not_found(s3):
    client, bucket, prefix = s3
    version, _, _ = _register()
    digest = version.artefact("joblib").sha256
    client.delete_object(Bucket=bucket, Key=f"{prefix}/{digest[:2]}/{digest}")
    with pytest.raises(NotFound, match=f"is missing from s3://{bucket}/{prefix}"):
        Registry().load("churn/1")


def test_a_bucket_that_does_not_exist_is_a_user_error(s3, monkeypatch):
    monkeypatch.setenv("MODELPORT_ARTIFACTS", "s3://no-such-bucket/artefacts")
    with pytest.raises(UserError, match="s3://no-such-bucket.*MODELPORT_ARTIFACTS"):
        _register()
    store = open_store("s3://no-such-bucket/artefacts")
    with pytest.raises(UserError, match="s3://no-such-bucket.*MODELPORT_ARTIFACTS"):
        store.get(hashlib.sha256(b"x").hexdigest())


def test_an_unreachable_s3_endpoint_is_a_user_error(s3, monkeypatch):
    monkeypatch.setenv("MODELPORT_S3_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(UserError, match="MODELPORT_S3_ENDPOINT_URL"):
        _register()
