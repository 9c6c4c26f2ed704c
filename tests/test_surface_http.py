"""The web service passes the hostile-row battery, as a real ``modelport serve`` process.

Each row is one request, all sent at once so that the micro-batcher scores them together:
a hostile row must cost its own request only (a 422 with the reason), every other request
must get the scores the model gives its row alone, and the server must keep serving. The
prediction log is a PostgreSQL table that refuses one row.
"""

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

import pytest

from conftest import need_module
from zoo import build, data

need_module("uvicorn", "http")
httpx = need_module("httpx", "dev")
MODELPORT = str(Path(sys.executable).with_name("modelport"))
TRIP = 33.5  # a tenure inside the training range that no training row holds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def good_rows(n: int = 12) -> list[dict]:
    mixed = data()[0]
    out = []
    for i, rec in enumerate(mixed.iloc[300:300 + n].to_dict("records")):
        row = {k: (None if isinstance(v, float) and math.isnan(v) else v)
               for k, v in rec.items()}
        out.append({"id": f"r{i}", **row})
    return out


class HttpSurface:
    """One served model: each row a request (its id as ``x-request-id``), sent together."""

    def __init__(self, url: str, model: str, proc: subprocess.Popen, log_url: str | None,
                 capabilities: frozenset[str]) -> None:
        self.url, self.model, self.proc, self.log_url = url, model, proc, log_url
        self.name = f"http ({model})"
        self.capabilities = capabilities

    def score(self, rows: list[dict]):
        from modelport.testing import SurfaceResult

        async def one(client, row):
            body = json.dumps({k: v for k, v in row.items() if k != "id"})
            return row["id"], await client.post(
                f"{self.url}/predict/{self.model}", content=body,
                headers={"content-type": "application/json", "x-request-id": str(row["id"])})

        async def all_at_once():
            async with httpx.AsyncClient(timeout=30) as client:
                return await asyncio.gather(*(one(client, r) for r in rows))

        result = SurfaceResult()
        for rid, response in asyncio.run(all_at_once()):
            assert response.status_code < 500, f"{rid!r}: {response.status_code} {response.text}"
            if response.status_code == 200:
                pred = response.json()["predictions"][0]
                result.scored[rid] = {"label": str(pred["label"]),
                                      "proba": [pred["proba"][k] for k in sorted(pred["proba"])]}
            else:
                # 400: the body is not what the protocol allows; 422: a row the model
                # cannot score
                assert response.status_code in (400, 422), response.text
                result.rejected[rid] = response.json()["error"]
        if self.log_url is not None:
            result.logged = self._logged({str(r["id"]) for r in rows})
        return result

    def _logged(self, wanted: set[str]) -> set[str]:
        """The request ids the prediction log holds, once the log has caught up."""
        import sqlalchemy as sa

        url, _, table = self.log_url.partition("#")
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        try:
            deadline = time.time() + 20
            while True:
                with engine.connect() as conn:
                    found = {r[0] for r in conn.execute(sa.text(
                        f'SELECT request_id FROM "{table}" WHERE model = :m'),
                        {"m": self.model})}
                if wanted - {"refused-by-log"} <= found or time.time() > deadline:
                    return found
                time.sleep(0.2)
        finally:
            engine.dispose()

    def alive(self) -> bool:
        return (self.proc.poll() is None
                and httpx.get(f"{self.url}/v2/health/ready", timeout=5).status_code == 200)


@pytest.fixture
def refusing_log(postgres_url):
    """A prediction-log table in PostgreSQL that refuses the row of REFUSED_BY_LOG."""
    import sqlalchemy as sa

    from modelport.monitor.log import open_log
    from modelport.testing import REFUSED_BY_LOG

    url = f"{postgres_url}#predictions"
    engine, _ = open_log(url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE predictions ADD CONSTRAINT refuse_one CHECK "
                             f"(request_id IS DISTINCT FROM '{REFUSED_BY_LOG}')"))
    engine.dispose()
    return url


def test_the_web_service_passes_the_hostile_row_battery(refusing_log):
    import modelport
    from modelport.registry import Registry
    from modelport.scoring import choice
    from modelport.testing import (
        Tripwire,
        check_surface,
        predictor_reference,
        surface_tolerance,
    )

    model, sample = build("pipeline")
    assert not (sample["tenure"] == TRIP).any()
    modelport.log_model(model, "churn", sample=sample, formats=["joblib", "onnx"],
                        alias="production")
    modelport.log_model(Tripwire(model, "tenure", TRIP), "trip", sample=sample,
                        formats=["joblib"], alias="production")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([MODELPORT, "serve", "churn@production", "trip@production",
                             "--port", str(port), "--no-access-log", "--log", refusing_log],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=os.environ.copy())
    try:
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()
            try:
                if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, "the server did not become ready in 60 s"
            time.sleep(0.2)
        reg = Registry()
        good = good_rows()
        ran = {}
        for name, caps, trip in (
                ("churn", {"records", "refuses surrogates", "log"}, None),
                ("trip", {"records", "unicode", "tripwire"}, ("tenure", TRIP))):
            version = reg.get(f"{name}@production")
            predictor, _ = choice.load(reg, version, "row")
            surface = HttpSurface(url, name, proc, refusing_log if name == "churn" else None,
                                  frozenset(caps))
            ran[name] = check_surface(surface, predictor.signature, good,
                                      predictor_reference(predictor), trip=trip,
                                      tolerance=surface_tolerance(predictor))
        assert "a value the model raises on" in ran["trip"]
        assert "a row the prediction-log table refuses" in ran["churn"]
        assert len(ran["churn"]) >= 10
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
