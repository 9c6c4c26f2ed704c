"""``modelport serve`` as a real uvicorn server: the Triton client, hot reload under load,
graceful shutdown, and command-line errors."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import cached_venv, need_module
from zoo import build, data

need_module("uvicorn", "http")
httpx = need_module("httpx", "dev")
MODELPORT = str(Path(sys.executable).with_name("modelport"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def register(alias: str = "production", C: float | None = None):
    from sklearn.base import clone

    import modelport

    model, sample = build("pipeline")
    if C is not None:
        mixed, _, y, _ = data()
        model = clone(model).set_params(model__C=C).fit(mixed.iloc[:300], y[:300])
    return modelport.log_model(model, "churn", sample=sample, formats=["joblib", "onnx"],
                               alias=alias)


def row() -> dict:
    rec = data()[0].iloc[0].to_dict()
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}


class Server:
    def __init__(self, *args: str, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [MODELPORT, "serve", *args, "--port", str(self.port), "--workers", str(workers),
             "--no-access-log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(self.proc.stderr.read().decode())
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=1).status_code == 200:
                    # with several workers, wait until each has answered a model route
                    for _ in range(4 * workers):
                        httpx.get(self.url + "/v2/models/churn/ready", timeout=5)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError("server did not become ready in 60 s")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def server():
    started: list[Server] = []

    def start(*args: str, workers: int = 1) -> Server:
        started.append(Server(*args, workers=workers))
        return started[-1]

    yield start
    for s in started:
        s.stop()


def test_triton_client_speaks_v2_to_the_server(server):
    http = need_module("tritonclient.http", "dev")
    import modelport

    register()
    srv = server("churn@production")
    client = http.InferenceServerClient(f"127.0.0.1:{srv.port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("churn")
    meta = client.get_model_metadata("churn")
    assert [i["name"] for i in meta["inputs"]] == list(row())

    # a v2 BYTES tensor cannot hold a missing value: rows with every category given
    frame = data()[0].dropna(subset=["plan", "contract"]).head(5)
    expected = modelport.load("churn@production", format="joblib").predict_proba(frame)
    for binary in (False, True):
        inputs = []
        for name in frame.columns:
            values = frame[name].to_numpy()
            if frame[name].dtype.kind == "f":
                arr = values.astype(np.float64).reshape(-1, 1)
                tensor = http.InferInput(name, list(arr.shape), "FP64")
            else:
                arr = np.array(list(values), dtype=object).reshape(-1, 1)
                tensor = http.InferInput(name, list(arr.shape), "BYTES")
            tensor.set_data_from_numpy(arr, binary_data=binary)
            inputs.append(tensor)
        result = client.infer("churn", inputs, outputs=[http.InferRequestedOutput(
            "proba", binary_data=False)])
        np.testing.assert_allclose(result.as_numpy("proba"), expected, atol=1e-4)


#: MLflow's own scoring client, in an environment of its own (MLflow pins what it likes)
MLFLOW = ["mlflow-skinny==3.17.2", "pandas", "scipy", "requests"]
MLFLOW_CLIENT = """
import json, sys
import pandas as pd
from mlflow.pyfunc.scoring_server.client import ScoringServerClient

client = ScoringServerClient("127.0.0.1", int(sys.argv[1]))
client.wait_server_ready(timeout=30)
frame = pd.read_json(sys.argv[2], orient="records", lines=True)
print(json.dumps(client.invoke(frame).get_predictions(predictions_format="ndarray").tolist()))
"""


def test_mlflow_scoring_client_gets_the_models_labels(server, tmp_path):
    import modelport

    python = cached_venv("mlflow", MLFLOW)
    register()
    srv = server("churn@production")
    frame = data()[0].head(20)
    frame.to_json(tmp_path / "rows.jsonl", orient="records", lines=True)
    proc = subprocess.run([str(python), "-c", MLFLOW_CLIENT, str(srv.port),
                           str(tmp_path / "rows.jsonl")],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    expected = modelport.load("churn@production", format="joblib").predict(frame)
    assert [str(v) for v in got] == [str(v) for v in expected]


def test_alias_move_under_load_fails_no_request_and_switches_within_seconds(
        server, tmp_path, monkeypatch):
    register()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # where the workers' metrics folder goes
    srv = server("churn@production", "--poll-seconds", "0.2", "--unseen-categories", "warn",
                 workers=2)
    v2 = register(alias="staging", C=0.05)
    body = row()
    results: list[tuple[float, int, str]] = []
    moved_at: list[float] = []

    async def worker(client, cap):
        # until 6 s after the move (bounded by a request cap and the overall timeout)
        for _ in range(cap):
            if moved_at and time.monotonic() > moved_at[0] + 6.0:
                return
            r = await client.post("/predict/churn", json=body)
            results.append((time.monotonic(), r.status_code,
                            r.headers.get("modelport-model-version", "")))

    async def mover():
        await asyncio.sleep(1.0)
        from modelport.registry import Registry

        await asyncio.to_thread(Registry().set_alias, "churn", v2.version, "production")
        moved_at.append(time.monotonic())

    async def main():
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(base_url=srv.url, timeout=10, limits=limits) as client:
            await asyncio.gather(mover(), *[worker(client, 3000) for _ in range(16)])

    asyncio.run(asyncio.wait_for(main(), 90))
    assert len(results) > 100
    assert [s for _, s, _ in results if s != 200] == []
    switched = [t for t, _, v in results if v == str(v2.version)]
    assert switched, "the new version never answered"
    assert min(switched) - moved_at[0] < 5.0
    # once both workers switched, the old version no longer answers
    late = [v for t, _, v in results if t > moved_at[0] + 5.0]
    assert late and set(late) == {str(v2.version)}
    assert list(scratch.glob("modelport-metrics-*")), "the workers shared no metrics folder"
    assert srv.stop() == 0  # graceful shutdown
    assert not list(scratch.glob("modelport-metrics-*"))  # removed with the server


def test_serve_names_an_unknown_model_and_exits_2():
    done = subprocess.run([MODELPORT, "serve", "nosuch@production"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "nosuch" in done.stderr and "Traceback" not in done.stderr


def _children(pid: int) -> list[int]:
    """The ids of the processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_every_worker_serves_with_the_options_given_on_the_command_line(
        server, tmp_path, monkeypatch):
    register()
    monkeypatch.delenv("MODELPORT_SERVE_OPTIONS", raising=False)
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    srv = server("churn@production", "--token-file", str(token), "--max-body-bytes", "4000",
                 workers=2)
    bearer = {"authorization": "Bearer s3cret"}
    # each kind of request, and what every worker must answer it with if it got the
    # command line's --token-file and --max-body-bytes
    kinds = {
        # a probe without the token learns only that the server is ready
        "probe": ("GET", "/v2/health/ready", {}, None),
        "predict": ("POST", "/predict/churn", bearer, row()),
        "too big": ("POST", "/predict/churn", bearer, [row()] * 100),
        "no token": ("POST", "/predict/churn", {}, row()),
    }
    seen: dict[str, set[str]] = {kind: set() for kind in kinds}
    answers: list[tuple[str, str, int, dict]] = []

    async def one(client, kind):
        method, path, headers, body = kinds[kind]
        # a fresh connection each time, so the kernel hands it to either worker
        r = await client.request(method, path, headers={**headers, "connection": "close"},
                                 json=body)
        worker = r.headers.get("x-request-id", "").rpartition("-")[0]
        answers.append((kind, worker, r.status_code, dict(r.headers)))
        if kind == "probe":
            assert r.json() == {"ready": True}
        seen[kind].add(worker)

    async def main():
        async with httpx.AsyncClient(base_url=srv.url, timeout=10) as client:
            for _ in range(40):
                if all(len(seen[k]) >= 2 for k in ("probe", "predict", "too big")):
                    return
                await asyncio.gather(*[one(client, kind) for kind in kinds for _ in range(4)])

    asyncio.run(asyncio.wait_for(main(), 90))
    for kind in ("probe", "predict", "too big"):
        assert len(seen[kind]) == 2, (kind, seen[kind])  # both workers answered it
    expected = {"probe": 200, "predict": 200, "too big": 413, "no token": 401}
    assert [a for a in answers if a[2] != expected[a[0]]] == []
    assert all("modelport-model-version" not in h for k, _, _, h in answers if k == "probe")

    # the workers got their settings with the process, not from the environment
    workers = _children(srv.proc.pid)
    assert len(workers) >= 2
    for pid in workers:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert not [e for e in environ if e.startswith(b"MODELPORT_SERVE_OPTIONS=")]
    assert srv.stop() == 0
