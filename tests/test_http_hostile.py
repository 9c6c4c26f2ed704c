"""The web service under hostile input: every malformed body, header, id or stalled upload
gets a 4xx that names the problem, never a 5xx or a hang, and the server keeps answering.

Each case drives the real app (httpx's ASGI transport, or raw ASGI messages where httpx
would not send the bytes) over a real registry holding a one-hot + logistic pipeline, then
checks that a good request still scores.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import need_module
from zoo import build, data

need_module("orjson", "http")
need_module("prometheus_client", "http")
httpx = need_module("httpx", "dev")

from modelport.registry import Registry  # noqa: E402
from modelport.serve.http import create_app  # noqa: E402
from modelport.serve.http.routing import HTTPError, Response  # noqa: E402

NAMES = ["tenure", "charges", "calls", "usage", "plan", "contract"]
TEXT = {"plan", "contract"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    import modelport

    home = tmp_path_factory.mktemp("http-hostile")
    reg = Registry(f"sqlite:///{home / 'registry.db'}", str(home / "artefacts"))
    model, sample = build("pipeline")
    modelport.log_model(model, "churn", sample=sample, formats=["joblib", "onnx"],
                        alias="production", registry=reg)
    return reg


@pytest.fixture(scope="module")
def app(registry):
    return create_app(["churn@production"], registry=registry, poll_seconds=0,
                      access_log=False)


def rows(n: int = 1) -> list[dict]:
    out = []
    for rec in data()[0].head(n).to_dict("records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in rec.items()})
    return out


def call(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def raw_call(app, method: str, path: str, headers: list[tuple[bytes, bytes]],
             chunks: list[bytes], stall: bool = False) -> tuple[int, dict, bytes]:
    """(status, headers, body) for ASGI messages sent as given: ``chunks`` of the body,
    then, with ``stall``, nothing more (a client that went quiet mid-body)."""
    sent: list[dict] = []

    async def go():
        queue = [{"type": "http.request", "body": c, "more_body": stall or i < len(chunks) - 1}
                 for i, c in enumerate(chunks)]

        async def receive():
            if queue:
                return queue.pop(0)
            await asyncio.sleep(3600)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "query_string": b"",
                 "headers": headers, "raw_path": path.encode()}
        await asyncio.wait_for(app(scope, receive, send), 30)

    asyncio.run(go())
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


def assert_still_serving(app) -> None:
    """A good row still scores and the probes still answer."""
    r = call(app, "POST", "/predict/churn", json=rows(1)[0])
    assert r.status_code == 200, r.text
    assert call(app, "GET", "/ping").status_code == 200


def v2_column(name: str, values: list, **extra) -> dict:
    return {"name": name, "shape": [len(values)],
            "datatype": "BYTES" if name in TEXT else "FP64", "data": values, **extra}


def v2_request(n: int = 1, **extra) -> dict:
    records = rows(n)
    return {"parameters": {"content_type": "pd"},
            "inputs": [v2_column(c, [r[c] for r in records]) for c in NAMES], **extra}


# -- JSON the parsers refuse -------------------------------------------------------------

def test_json_nested_over_1000_levels_is_a_400(app):
    body = b'{"tenure": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    r = call(app, "POST", "/predict/churn", content=body,
             headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert "nested deeper" in r.json()["error"]
    assert_still_serving(app)


def test_a_400_digit_integer_is_a_422_naming_where_it_is(app):
    record = json.dumps({**rows(1)[0], "tenure": "N"}).replace('"N"', "1" + "0" * 399)
    r = call(app, "POST", "/predict/churn", content=record.encode(),
             headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "tenure" and "400 digits" in r.json()["error"]
    nested = b'{"inputs": [{"name": "tenure", "shape": [1], "datatype": "FP64", "data": [-' \
             + b"9" * 400 + b"]}]}"
    r = call(app, "POST", "/v2/models/churn/infer", content=nested)
    assert r.status_code == 422, r.text
    assert "inputs[0].data[0]" in r.json()["error"]
    assert_still_serving(app)


@pytest.mark.parametrize("where", ["key", "value"])
def test_a_lone_surrogate_is_a_400_and_answers_encode(app, where):
    record = {**rows(1)[0]}
    body = json.dumps(record).replace('"plan"', '"pl\\ud800an"' if where == "key" else
                                      '"plan": "\\udfff", "x"', 1).encode()
    r = call(app, "POST", "/predict/churn", content=body,
             headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert "lone surrogate" in error
    assert ("pl\\ud800an" if where == "key" else "plan") in error  # where it is
    # raw surrogate bytes (CESU-8) are not UTF-8 at all
    r = call(app, "POST", "/predict/churn", content=b'{"plan": "\xed\xa0\x80"}')
    assert r.status_code == 400 and "not UTF-8" in r.json()["error"]
    assert_still_serving(app)


def test_answers_never_fail_to_encode_client_text():
    r = HTTPError(422, "unknown column '\ud800'", "\ud800x").response()
    assert json.loads(r.body) == {"error": "unknown column '\ufffd'", "field": "\ufffdx"}
    nested: list = []
    for _ in range(400):
        nested = [nested]
    body = Response.json({"big": 10**30, 3: "\udfff", "deep": nested, "obj": object()}).body
    decoded = json.loads(body)
    assert decoded["big"] == str(10**30) and decoded["3"] == "\ufffd"


# -- bodies and headers each protocol refuses ---------------------------------------------

def test_a_csv_field_over_128_kib_is_a_400(app):
    body = ",".join(NAMES) + "\n" + "1,2,3,4," + "x" * (200 * 1024) + ",monthly\n"
    r = call(app, "POST", "/invocations", content=body.encode(),
             headers={"content-type": "text/csv"})
    assert r.status_code == 400, r.text
    assert "CSV" in r.json()["error"] and "line" in r.json()["error"]
    assert_still_serving(app)


@pytest.mark.parametrize("value", ["²", "-1", "1e3", "٣", "abc", "", "99999999999"])
def test_an_odd_inference_header_content_length_is_a_400(app, value):
    # servers decode header bytes as Latin-1: b"\xb2" arrives as "²"
    raw = value.encode("latin-1") if value.isascii() or value == "²" else value.encode()
    r = call(app, "POST", "/v2/models/churn/infer", content=json.dumps(v2_request()).encode(),
             headers={"inference-header-content-length": raw})
    assert r.status_code == 400, r.text
    assert "Inference-Header-Content-Length" in r.json()["error"]
    assert_still_serving(app)


@pytest.mark.parametrize("value", [b"\xb2", b"\xc2\xb2", b"-5", b"12abc", b"0x10"])
def test_an_odd_content_length_is_a_400(app, value):
    status, _, body = raw_call(app, "POST", "/predict/churn",
                               [(b"content-length", value),
                                (b"content-type", b"application/json")],
                               [json.dumps(rows(1)[0]).encode()])
    assert status == 400, body
    assert b"Content-Length" in body
    assert_still_serving(app)


def triton(blob: bytes) -> tuple[bytes, dict]:
    """An infer request whose ``plan`` input is the binary BYTES tensor ``blob``."""
    request = v2_request()
    for item in request["inputs"]:
        if item["name"] == "plan":
            item.pop("data")
            item["parameters"] = {"binary_data_size": len(blob)}
    head = json.dumps(request).encode()
    return head + blob, {"inference-header-content-length": str(len(head))}


@pytest.mark.parametrize("blob", [b"\x01\x00", struct.pack("<I", 50) + b"basic",
                                  struct.pack("<I", 5) + b"basic" + b"\x00"])
def test_a_short_or_overrunning_triton_bytes_blob_is_a_400(app, blob):
    body, headers = triton(blob)
    r = call(app, "POST", "/v2/models/churn/infer", content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "plan"
    good, headers = triton(struct.pack("<I", 5) + b"basic")
    assert call(app, "POST", "/v2/models/churn/infer", content=good,
                headers=headers).status_code == 200
    assert_still_serving(app)


@pytest.mark.parametrize("outputs", [[{"name": []}], [{"name": {"a": 1}}], "proba", [3]])
def test_v2_outputs_that_are_not_names_are_a_400(app, outputs):
    r = call(app, "POST", "/v2/models/churn/infer", json=v2_request(outputs=outputs))
    assert r.status_code == 400, r.text
    assert "outputs" in r.json()["error"]
    assert_still_serving(app)


BAD_V2 = {
    "parameters not an object": (v2_request(parameters=[1]), 400),
    "input parameters not an object": (
        {"inputs": [v2_column("tenure", [1], parameters="x")]}, 400),
    "binary_data_size true": ({"inputs": [v2_column("tenure", [1],
                                                    parameters={"binary_data_size": True})]}, 400),
    "binary_data_size negative": ({"inputs": [v2_column("tenure", [1], parameters={
        "binary_data_size": -1})]}, 400),
    "binary_data_size text": ({"inputs": [v2_column("tenure", [1], parameters={
        "binary_data_size": "3"})]}, 400),
    "huge shape": ({"inputs": [{**v2_column("tenure", [1]), "shape": [10**18]}]}, 422),
    "fractional shape": ({"inputs": [{**v2_column("tenure", [1]), "shape": [1.5]}]}, 422),
    "boolean shape": ({"inputs": [{**v2_column("tenure", [1]), "shape": [True]}]}, 422),
    "shape as text": ({"inputs": [{**v2_column("tenure", [1]), "shape": "1"}]}, 422),
    "datatype a list": ({"inputs": [{**v2_column("tenure", [1]), "datatype": []}]}, 422),
    "text in an FP64 input": (v2_request() | {"inputs": [
        {**i, "data": ["soon"]} if i["name"] == "tenure" else i
        for i in v2_request()["inputs"]]}, 422),
    "tensor of the wrong width": ({"inputs": [{"name": "x", "shape": [1, 2],
                                               "datatype": "FP64", "data": [1, 2]}]}, 422),
    "tensor with too few values": ({"inputs": [{"name": "x", "shape": [2, 6],
                                                "datatype": "FP64", "data": [1] * 6}]}, 422),
    "id an object": (v2_request(id={"a": 1}), 400),
    "inputs empty": ({"inputs": []}, 400),
    "inputs an object": ({"inputs": {"tenure": [1]}}, 400),
    "input without a name": ({"inputs": [{"shape": [1], "data": [1]}]}, 400),
    "input named twice": ({"inputs": [v2_column("tenure", [1]), v2_column("tenure", [2])]},
                          400),
    "body a list": ([v2_column("tenure", [1])], 400),
    "data a dict": ({"inputs": [{**v2_column("tenure", [1]), "data": {"a": 1}}]}, 422),
}


@pytest.mark.parametrize("case", list(BAD_V2))
def test_hostile_v2_requests_are_4xx(app, case):
    body, status = BAD_V2[case]
    r = call(app, "POST", "/v2/models/churn/infer", json=body)
    assert r.status_code == status, r.text
    assert_still_serving(app)


def split(data, columns=NAMES) -> dict:
    return {"dataframe_split": {"columns": columns, "data": data}}


BAD_MLFLOW = {
    "a list": ([], 400),
    "a number": (5, 400),
    "null": (None, 400),
    "split data not a list": (split({"a": 1}), 400),
    "split columns not names": (split([[1] * 6], columns=[1, 2, 3, 4, 5, 6]), 400),
    "split row too short": (split([[1, 2]]), 422),
    "split row an object": (split([{"tenure": 1}]), 422),
    "split rows of mixed width": (split([[1] * 6, [1] * 7]), 422),
    "split without rows": (split([]), 422),
    "records not a list": ({"dataframe_records": {"tenure": 1}}, 400),
    "records of numbers": ({"dataframe_records": [1, 2]}, 422),
    "instances a number": ({"instances": 5}, 422),
    "instances text": ({"instances": "abc"}, 422),
    "instances of nulls": ({"instances": [None, None]}, 422),
    "inputs holding an object": ({"inputs": {**rows(1)[0], "plan": {"a": 1}}}, 422),
    "params not an object": ({"instances": rows(1), "params": "x"}, 400),
    "two keys": ({"instances": rows(1), "inputs": rows(1)}, 400),
}


@pytest.mark.parametrize("case", list(BAD_MLFLOW))
def test_hostile_mlflow_requests_are_4xx(app, case):
    body, status = BAD_MLFLOW[case]
    r = call(app, "POST", "/invocations", json=body)
    assert r.status_code == status, r.text
    assert_still_serving(app)


BAD_BODIES = {
    "json text": ("/predict/churn", b'"x"', 422),
    "json number": ("/predict/churn", b"5", 422),
    "json null": ("/predict/churn", b"null", 422),
    "no rows": ("/predict/churn", b"[]", 422),
    "records of numbers": ("/predict/churn", b"[1, 2]", 422),
    "records a number": ("/predict/churn", b'{"records": 5}', 422),
    "not json": ("/predict/churn", b"{nope", 400),
    "empty body": ("/predict/churn", b"", 400),
    "not utf-8": ("/predict/churn", b'{"plan": "\xff\xfe"}', 400),
    "utf-16": ("/predict/churn", '{"tenure": 1}'.encode("utf-16"), 400),
    "kserve instances an object": ("/v1/models/churn:predict", b'{"instances": {}}', 400),
    "kserve instances of text": ("/v1/models/churn:predict", b'{"instances": ["a"]}', 422),
    "kserve rows too short": ("/v1/models/churn:predict", b'{"instances": [[1]]}', 422),
    "kserve a list": ("/v1/models/churn:predict", b"[]", 400),
    "csv not utf-8": ("/invocations", b"tenure\n\xff\n", 400),
    "csv header only": ("/invocations", b"tenure,plan\n", 422),
    "csv ragged": ("/invocations", b"tenure,plan\n1,basic,extra\n", 422),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_hostile_bodies_are_4xx(app, case):
    path, body, status = BAD_BODIES[case]
    csv = case.startswith("csv")
    r = call(app, "POST", path, content=body,
             headers={"content-type": "text/csv" if csv else "application/json"})
    assert r.status_code == status, r.text
    assert_still_serving(app)


@pytest.mark.parametrize("path, status", [
    ("/invocations?model=%ff%00", 404),  # names no served model
    ("/invocations?model=a&model=b", 404),
    ("/predict/churn?%zz=%%&&==&model=", 200),  # a query the route does not read
    ("/predict/%ff%00", 404),
])
def test_odd_query_strings_and_paths_are_answered(app, path, status):
    r = call(app, "POST", path, json={"instances": rows(1)} if "invocations" in path
             else rows(1))
    assert r.status_code == status, r.text
    assert_still_serving(app)


# -- ids the lookup tables cannot hold -----------------------------------------------------

@pytest.fixture(scope="module")
def lookup_app(registry, tmp_path_factory):
    import sqlalchemy as sa

    db = tmp_path_factory.mktemp("lookup") / "scores.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    meta = sa.MetaData()
    scores = sa.Table("churn_scores", meta,
                      sa.Column("customer_id", sa.Integer, primary_key=True),
                      sa.Column("model", sa.String), sa.Column("model_version", sa.Integer),
                      sa.Column("label", sa.Integer), sa.Column("score", sa.Float))
    customers = sa.Table("customers", meta,
                         sa.Column("customer_id", sa.Integer, primary_key=True),
                         *[sa.Column(n, sa.String if n in TEXT else sa.Float) for n in NAMES])
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(scores.insert().values(customer_id=42, model="churn", model_version=1,
                                            label=1, score=0.75))
        conn.execute(customers.insert().values(customer_id=42, **rows(1)[0]))
    engine.dispose()
    return create_app(["churn@production"], registry=registry, poll_seconds=0,
                      access_log=False, lookup_store=f"sqlite:///{db}#churn_scores",
                      feature_table=f"sqlite:///{db}#customers")


@pytest.mark.parametrize("refresh", ["", "?refresh=true"])
@pytest.mark.parametrize("entity, status", [("99999999999999999999999", 404),
                                            ("-9223372036854775809", 404),
                                            ("9" * 5000, 404), ("forty-two", 422),
                                            ("４２", 422), ("%ff%fe", 422)])
def test_an_id_the_key_column_cannot_hold_is_a_4xx(lookup_app, refresh, entity, status):
    r = call(lookup_app, "GET", f"/lookup/churn/{entity}{refresh}")
    assert r.status_code == status, r.text
    if status == 404:
        expected = "no entity" if refresh else "no stored score"
        assert expected in r.json()["error"]
    assert call(lookup_app, "GET", f"/lookup/churn/42{refresh}").status_code == 200
    assert_still_serving(lookup_app)


# -- large and stalled bodies --------------------------------------------------------------

def test_a_large_body_is_decoded_off_the_event_loop(app, monkeypatch):
    """While a large body is being decoded, the loop answers /ping: the decode is held
    until the ping has been answered, which could never happen if it ran on the loop."""
    from modelport.serve.http import protocol_json

    real = protocol_json.decode_body
    started, pinged = threading.Event(), threading.Event()
    order: list[str] = []

    def held(body, names):
        started.set()
        pinged.wait(10)
        order.append("decoded")
        return real(body, names)

    monkeypatch.setattr(protocol_json, "decode_body", held)
    big = rows(1) * 2000  # ~300 KB

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            scoring = asyncio.ensure_future(client.post("/predict/churn", json=big))
            assert await asyncio.to_thread(started.wait, 10)
            ping = await client.get("/ping")
            order.append("ping")
            pinged.set()
            return ping, await scoring

    ping, scored = asyncio.run(go())
    assert ping.status_code == 200
    assert scored.status_code == 200, scored.text
    assert order == ["ping", "decoded"]
    assert len(scored.json()["predictions"]) == 2000
    assert_still_serving(app)


def test_an_incomplete_body_is_a_408_after_the_body_timeout(registry):
    quick = create_app(["churn@production"], registry=registry, poll_seconds=0,
                       access_log=False, body_timeout_s=0.2)
    start = time.perf_counter()
    status, headers, body = raw_call(quick, "POST", "/predict/churn",
                                     [(b"content-length", b"1000"),
                                      (b"content-type", b"application/json")],
                                     [b'{"tenure":'], stall=True)
    assert status == 408, body
    assert headers["connection"] == "close"
    assert b"--body-timeout" in body
    assert time.perf_counter() - start < 10
    assert_still_serving(quick)


def test_body_timeout_must_be_positive(registry):
    from modelport.errors import UserError

    with pytest.raises(UserError, match="--body-timeout"):
        create_app(["churn@production"], registry=registry, poll_seconds=0, body_timeout_s=0)


def test_a_stalled_upload_over_a_real_socket_gets_408(registry):
    uvicorn = need_module("uvicorn", "http")
    quick = create_app(["churn@production"], registry=registry, poll_seconds=0,
                       access_log=False, body_timeout_s=0.5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(quick, host="127.0.0.1", port=port,
                                           lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 20
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"POST /predict/churn HTTP/1.1\r\nHost: test\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                         b'{"tenure":')
            answer = conn.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        r = httpx.post(f"http://127.0.0.1:{port}/predict/churn", json=rows(1)[0], timeout=10)
        assert r.status_code == 200, r.text
        assert httpx.get(f"http://127.0.0.1:{port}/ping", timeout=10).status_code == 200
    finally:
        server.should_exit = True
        thread.join(15)


# -- what a caller without the token learns ----------------------------------------------

def test_unauthenticated_probes_say_only_live_or_ready(registry, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    guarded = create_app(["churn@production"], registry=registry, poll_seconds=0,
                         access_log=False, token_file=str(token))
    for headers in ({}, {"authorization": "Bearer wrong"}):
        for path in ("/ping", "/health"):
            r = call(guarded, "GET", path, headers=headers)
            assert (r.status_code, r.text) == (200, "\n")
            assert "modelport-model-version" not in r.headers
        live = call(guarded, "GET", "/v2/health/live", headers=headers)
        ready = call(guarded, "GET", "/v2/health/ready", headers=headers)
        assert live.json() == {"live": True} and ready.json() == {"ready": True}
        assert "modelport-model-version" not in {*live.headers, *ready.headers}
        assert "churn" not in ready.text
        wrong_method = call(guarded, "POST", "/ping", headers=headers)
        assert wrong_method.status_code == 405
        assert "modelport-model-version" not in wrong_method.headers
        assert call(guarded, "GET", "/models", headers=headers).status_code == 401
    ok = {"authorization": "Bearer s3cret"}
    full = call(guarded, "GET", "/v2/health/ready", headers=ok)
    assert full.json()["models"][0]["name"] == "churn"
    assert full.headers["modelport-model-version"] == "1"
    assert call(guarded, "GET", "/ping", headers=ok).headers["modelport-model-version"] == "1"
    r = call(guarded, "POST", "/predict/churn", json=rows(1)[0], headers=ok)
    assert r.status_code == 200


def test_serve_refuses_a_body_timeout_of_zero_with_exit_2():
    modelport = str(Path(sys.executable).with_name("modelport"))
    done = subprocess.run([modelport, "serve", "churn", "--body-timeout", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "--body-timeout" in done.stderr and "Traceback" not in done.stderr
