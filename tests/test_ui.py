"""The operations console (``modelport ui``), driven in a real Chromium: list and search
models, open a version, compare two, promote and roll back with a reason while a real
``modelport serve`` follows the alias (its heartbeat moves to the new version), a drifting
model's page leads with the drifting column, writes without the token or the form's CSRF
token are refused, and every page works with JavaScript off.

Screenshots of each page go to a folder under ``tmp_path`` and, with
``MODELPORT_UI_SCREENSHOTS=DIR``, to ``DIR`` too (how ``docs/ui/*.png`` are made).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.registry import Registry, heartbeats

from conftest import need_module, unavailable

MODELPORT = str(Path(sys.executable).with_name("modelport"))
CHROMIUM = os.environ.get("MODELPORT_CHROMIUM", "/usr/bin/chromium")
TOKEN = "console-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frame(n: int = 400, seed: int = 0, plans=("basic", "pro", "max")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"calls": rng.poisson(2, n).astype(float),
                         "plan": rng.choice(list(plans), n),
                         "tenure": rng.exponential(20, n).round(1)})


def fit(X: pd.DataFrame):
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    return make_pipeline(make_column_transformer((OneHotEncoder(), ["plan"]),
                                                 remainder="passthrough"),
                         LogisticRegression(max_iter=500)).fit(X, (X.tenure < 15).astype(int))


def drifting_log(url: str) -> None:
    """Model ``drifty`` with a prediction log: yesterday like training, today with tenure
    shrunk (the drift is in the last column of the signature)."""
    from modelport.monitor.log import PredictionLogger

    X = frame(1000, seed=1)
    version = modelport.log_model(fit(X), "drifty", sample=X, formats=["joblib"],
                                  alias="production")
    predictor = Registry().load(version)
    plog = PredictionLogger(url, flush_seconds=0.05)
    now = datetime.now(UTC)
    for at, rows in ((now - timedelta(days=1), X), (now - timedelta(minutes=5),
                                                    X.assign(tenure=X.tenure * 0.4))):
        plog.log("drifty", version.version, {c: rows[c].to_numpy() for c in rows},
                 predictor.run(rows), latency_ms=2.0, at=at)
    plog.close()


class Process:
    """A ``modelport`` command on 127.0.0.1, stopped with SIGTERM (SIGKILL if stuck)."""

    def __init__(self, args: list[str], ready: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([MODELPORT, *args], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env)
        import httpx

        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(self.proc.stderr.read().decode())
            try:
                if httpx.get(ready, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"{args[0]} did not answer {ready} within 60 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def browser():
    sync_api = need_module("playwright.sync_api", "dev")
    if not Path(CHROMIUM).exists():
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                  args=["--no-sandbox"])
        except Exception as exc:  # noqa: BLE001 - a browser that cannot start here
            unavailable(f"Chromium at {CHROMIUM} does not start: {exc}")
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path):
    """``shoot(page_or_locator, name)``: a PNG under tmp_path (and $MODELPORT_UI_SCREENSHOTS)."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    extra = os.environ.get("MODELPORT_UI_SCREENSHOTS")

    def shoot(target, name: str) -> Path:
        path = folder / f"{name}.png"
        target.screenshot(path=str(path))
        assert path.stat().st_size > 1000
        if extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(extra) / path.name)
        return path

    shoot.folder = folder
    return shoot


def served_version(registry: Registry, pid: int, timeout: float = 20.0, want=None):
    """The version the heartbeat of process ``pid`` reports, waiting for ``want``."""
    deadline = time.time() + timeout
    seen = None
    while time.time() < deadline:
        rows = [r for r in heartbeats.list(registry, "churn") if r["pid"] == pid]
        seen = rows[0]["version"] if rows else None
        if seen is not None and (want is None or seen == want):
            return seen
        time.sleep(0.2)
    return seen


def test_console_lists_compares_promotes_and_rolls_back_in_a_browser(browser, shots,
                                                                    tmp_path):
    registry = Registry()
    X = frame()
    modelport.log_model(fit(X), "churn", sample=X, formats=["joblib"],
                        metrics={"roc_auc": 0.90}, alias="production",
                        tags={"team": "growth"})
    X2 = frame(seed=2, plans=("basic", "pro", "max", "ultra"))
    modelport.log_model(fit(X2), "churn", sample=X2, formats=["joblib"],
                        metrics={"roc_auc": 0.93}, tags={"team": "risk"})
    log_url = f"sqlite:///{tmp_path / 'log.db'}#predictions"
    drifting_log(log_url)
    rules = tmp_path / "drifty.yaml"
    rules.write_text(f"model: drifty@production\nlog: {log_url}\nrules: [psi > 0.2, "
                     "rows < 10]\n")
    from modelport.train.schedule import add

    add("drifty-check", check=rules, cron="0 6 * * *", registry=registry)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")

    env = {**os.environ, "MODELPORT_HEARTBEAT_SECONDS": "0.5"}
    serve_port, ui_port = free_port(), free_port()
    server = Process(["serve", "churn@production", "--port", str(serve_port),
                      "--poll-seconds", "0.5", "--no-access-log", "--ui"],
                     f"http://127.0.0.1:{serve_port}/v2/health/ready", env)
    ui = Process(["ui", "--port", str(ui_port), "--token-file", str(token_file), "--log",
                  log_url, "--check", str(rules)], f"http://127.0.0.1:{ui_port}/", env)
    base = f"http://127.0.0.1:{ui_port}"
    try:
        assert served_version(registry, server.proc.pid) == 1
        # the console inside modelport serve: under /ui, read-only without a token file
        import httpx

        mounted = httpx.get(f"http://127.0.0.1:{serve_port}/ui/models/churn", timeout=10)
        assert mounted.status_code == 200 and "read-only console" in mounted.text
        assert 'href="/ui/models/churn/1"' in mounted.text
        # traffic, one row refused: the heartbeat carries the counts by reason
        rows = X.head(3).to_dict("records")
        scored = httpx.post(f"http://127.0.0.1:{serve_port}/predict/churn", json=rows)
        refused = httpx.post(f"http://127.0.0.1:{serve_port}/predict/churn",
                             json=[{**rows[0], "tenure": "long"}])
        assert (scored.status_code, refused.status_code) == (200, 422)
        deadline, stats = time.time() + 20, {}
        while time.time() < deadline and not (stats.get("scored") == 3 and stats.get("rejected")):
            beat = [r for r in heartbeats.list(registry) if r["pid"] == server.proc.pid]
            stats = beat[0]["stats"] if beat else {}
            time.sleep(0.2)
        assert stats["scored"] == 3 and sum(stats["rejected"].values()) == 1
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        page = context.new_page()

        # the list, searched by name and by tag
        page.goto(base + "/")
        assert page.locator("#models td a", has_text="churn").count() == 1
        assert page.locator("#models td a", has_text="drifty").count() == 1
        shots(page, "models")
        page.fill("input[name=tag]", "team=risk")
        page.click("#search button")
        assert page.locator("#models tr").count() == 2  # the header and churn
        assert page.locator("#models").inner_text().count("drifty") == 0

        # a model, a version, two compared
        page.click("#models td a >> text=churn")
        assert page.url == base + "/models/churn"
        assert "@production" in page.locator("#aliases").inner_text()
        page.click("#versions a >> text=2")
        signature = page.locator("#signature").inner_text()
        assert "ultra" in signature and "tenure" in signature
        assert "joblib" in page.locator("#serving").inner_text()
        assert "tenure" in page.locator("#importance").inner_text()
        shots(page, "version")
        page.goto(base + "/models/churn")
        page.select_option("#compare select[name=a]", "1")
        page.select_option("#compare select[name=b]", "2")
        page.click("#compare button")
        changes = page.locator("#changes").inner_text()
        assert "new categories" in changes and "ultra" in changes
        assert "0.93" in page.locator("#compare-metrics").inner_text()
        shots(page, "compare")

        # without signing in nothing changes: the form is not even offered, a POST is 403
        page.goto(base + "/models/churn")
        assert page.locator("#promote").count() == 0
        refused = context.request.post(base + "/models/churn/promote", form={
            "alias": "production", "version": "2", "reason": "sneaky", "csrf": "x"},
            max_redirects=0)
        assert refused.status == 403
        assert registry.aliases("churn")["production"] == 1

        # a wrong token does not sign in; the right one does
        page.goto(base + "/login")
        page.fill("input[name=token]", "not-the-token")
        page.click("#login button")
        assert "wrong token" in page.locator("#error").inner_text()
        page.goto(base + "/login")
        page.fill("input[name=token]", TOKEN)
        page.click("#login button")
        assert "signed in" in page.locator("header").inner_text()

        # signed in, a forged form (no CSRF token of this session) is still refused
        forged = context.request.post(base + "/models/churn/promote", form={
            "alias": "production", "version": "2", "reason": "forged"}, max_redirects=0)
        assert forged.status == 403
        assert registry.aliases("churn")["production"] == 1

        # promote with a reason: the history says so and the live server follows
        page.goto(base + "/models/churn")
        page.fill("#promote input[name=alias]", "production")
        page.select_option("#promote select[name=version]", "2")
        page.fill("#promote input[name=reason]", "AUC 0.93 against 0.90 on the holdout")
        page.click("#promote button")
        assert registry.aliases("churn")["production"] == 2
        first = page.locator("#history tr").nth(1).inner_text()
        assert "AUC 0.93 against 0.90 on the holdout" in first and "set" in first
        assert served_version(registry, server.proc.pid, want=2) == 2
        page.goto(base + "/serving")
        row = page.locator("table.processes tr", has_text=str(server.proc.pid))
        assert row.locator("td.version").inner_text().strip() == "2"
        assert "current" in row.inner_text()
        assert next(iter(stats["rejected"])) in row.inner_text()
        shots(page, "serving")
        page.goto(base + "/models/churn")
        shots(page, "model")

        # roll back, with JavaScript off: plain forms work the same
        nojs = browser.new_context(java_script_enabled=False,
                                   viewport={"width": 1280, "height": 860})
        plain = nojs.new_page()
        for path, marker in (("/", "#models"), ("/models/churn", "#history"),
                             ("/models/churn/1", "#signature"),
                             ("/models/churn/compare?a=1&b=2", "#changes"),
                             ("/serving", "table.processes"), ("/schedules", "h2"),
                             ("/models/drifty", "#drift")):
            answer = plain.goto(base + path)
            assert answer.status == 200, path
            assert plain.locator(marker).count() >= 1, path
        plain.goto(base + "/login")
        plain.fill("input[name=token]", TOKEN)
        plain.click("#login button")
        plain.goto(base + "/models/churn")
        plain.locator("#rollback input[name=reason]").fill("latency regression")
        plain.click("#rollback button")
        assert registry.aliases("churn")["production"] == 1
        history = registry.alias_history("churn", "production")
        assert history[-1]["action"] == "rollback" and \
            history[-1]["reason"] == "latency regression"
        assert "latency regression" in plain.locator("#history tr").nth(1).inner_text()
        assert served_version(registry, server.proc.pid, want=1) == 1

        # a drifting model leads with the drifting column; its rules show their state
        page.goto(base + "/models/drifty")
        assert page.locator("#drifting").inner_text().startswith(
            "Drifting in the current window: tenure")
        first_column = page.locator("#drift td.column").first.inner_text().strip()
        assert first_column == "tenure"  # the last column of the signature
        assert page.locator("#drift td.column").count() == 3
        fired = page.locator("#rules tr", has_text="psi > 0.2").inner_text()
        assert "fired" in fired
        assert "ok" in page.locator("#rules tr", has_text="rows < 10").inner_text()
        assert page.locator("#chart-drift svg").count() == 1
        shots(page.locator("#monitoring"), "drift")
        page.goto(base + "/schedules")
        assert "drifty-check" in page.locator("main").inner_text()
        assert "0 6 * * *" in page.locator("main").inner_text()
        shots(page, "schedules")
        context.close()
        nojs.close()
    finally:
        ui.stop()
        server.stop()
    assert len(list(shots.folder.glob("*.png"))) == 7
    # stopped cleanly, the server took its heartbeat away
    assert [r for r in heartbeats.list(registry) if r["pid"] == server.proc.pid] == []


def test_writes_are_refused_without_a_token_file(tmp_path):
    need_module("jinja2", "http")
    httpx = need_module("httpx", "dev")
    import asyncio

    from modelport.ui import create_app

    X = frame()
    modelport.log_model(fit(X), "churn", sample=X, formats=["joblib"], alias="production")
    modelport.log_model(fit(X), "churn", sample=X, formats=["joblib"])
    app = create_app()  # no token: read-only

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            page = await client.get("/models/churn")
            post = await client.post("/models/churn/promote", data={
                "alias": "production", "version": "2", "reason": "r", "csrf": ""})
            login = await client.post("/login", data={"token": "", "csrf": ""})
            return page, post, login

    page, post, login = asyncio.run(go())
    assert page.status_code == 200 and "read-only" in page.text
    assert 'id="promote"' not in page.text
    assert post.status_code == 403 and login.status_code == 403
    assert Registry().aliases("churn")["production"] == 1
    assert page.headers["content-security-policy"].startswith("default-src 'none'")


HOSTILE_GETS = ["/models/%00", "/models/a/b/c/d", "/models/churn/abc", "/models/churn/0",
                "/models/churn/compare?a=x&b=1", "/models/churn/compare",
                "/models/churn?window=zz", "/models/churn?window=9999w",
                "/models/churn/compare?a=1&b=99", "/?q=%00%25_&tag=a%3D%00b", "/?tag==",
                "/%ff%fe", "/models/" + "a" * 5000, "/models/churn/99999999999"]
HOSTILE_POSTS = [{"alias": "bad alias!", "version": "1"}, {"alias": "production"},
                 {"alias": "production", "version": "99"}, {"alias": "", "version": "1"},
                 {"alias": "production", "version": "1", "reason": " \x00 "},
                 {"alias": "production", "version": "-1"}, {}]


def test_hostile_requests_get_a_page_saying_what_to_fix_never_a_5xx(tmp_path):
    need_module("jinja2", "http")
    httpx = need_module("httpx", "dev")
    import asyncio
    import re

    from modelport.ui import create_app

    X = frame()
    modelport.log_model(fit(X), "churn", sample=X, formats=["joblib"], alias="production")
    token = tmp_path / "token"
    token.write_text(TOKEN)
    app = create_app(token_file=str(token), log_url=f"sqlite:///{tmp_path / 'l.db'}#p")

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            got = [(p, (await client.get(p)).status_code) for p in HOSTILE_GETS]
            page = await client.get("/login")
            csrf = re.search(r'name="csrf"\s+value="([^"]+)"', page.text).group(1)
            await client.post("/login", data={"token": TOKEN, "csrf": csrf})
            for form in HOSTILE_POSTS:
                answer = await client.post("/models/churn/promote",
                                           data={"reason": "why", **form, "csrf": csrf})
                got.append((str(form), answer.status_code))
            answer = await client.post("/models/churn/promote", content=b"x" * 100_000,
                                       headers={"content-type":
                                                "application/x-www-form-urlencoded"})
            got.append(("a huge form", answer.status_code))
            return got

    got = asyncio.run(go())
    assert [(what, status) for what, status in got if status >= 500] == []
    writes = got[len(HOSTILE_GETS):]
    assert [(what, status) for what, status in writes if not 400 <= status < 500] == []
    assert Registry().aliases("churn") == {"production": 1}
    assert [e["reason"] for e in Registry().alias_history("churn")] == [
        "registered with alias"]


def test_hostile_names_and_reasons_are_escaped(tmp_path):
    need_module("jinja2", "http")
    from modelport.ui.templates import environment

    html = environment().get_template("models").render(
        base="", models=[{"name": "<script>alert(1)</script>", "versions": 1, "latest": 1,
                          "aliases": {}, "task": "x", "tags": {"k": "<b>v</b>"}}],
        q="\"><img src=x>", tag="")
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "<b>v</b>" not in html and '"><img' not in html
    assert "/models/%3Cscript%3Ealert%281%29%3C%2Fscript%3E" in html


def test_an_old_registry_gets_the_heartbeat_table_and_a_broken_one_never_stops_a_surface(
        tmp_path):
    import sqlalchemy as sa

    from modelport.scoring.following import Follower, Heartbeat

    url = f"sqlite:///{tmp_path / 'old.db'}"
    reg = Registry(url, str(tmp_path / "artefacts"))
    X = frame()
    modelport.log_model(fit(X), "churn", sample=X, formats=["joblib"], alias="production",
                        registry=reg)
    with reg.engine.begin() as conn:  # as a registry made before heartbeats existed
        conn.execute(sa.text("DROP TABLE mp_heartbeats"))
    reg = Registry(url, str(tmp_path / "artefacts"))
    follower = Follower("churn@production", reg, lambda v: v.version, poll_seconds=0,
                        heartbeat=Heartbeat(reg, "churn@production", surface="serve",
                                            seconds=5))
    follower.heartbeat.wait(10)  # the first beat, written when the follower starts
    rows = heartbeats.list(reg)
    assert [(r["uri"], r["version"], r["surface"], r["pid"]) for r in rows] == [
        ("churn@production", 1, "serve", os.getpid())]
    # throttled: a second tick within the interval writes nothing
    seen = rows[0]["seen_at"]
    follower.heartbeat.tick(1)
    follower.heartbeat.wait(10)
    assert heartbeats.list(reg)[0]["seen_at"] == seen
    # the registry gone: the beat reports failure, the follower keeps serving
    reg.engine.dispose()
    with reg.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE mp_heartbeats"))
    assert follower.heartbeat.beat(1) is False
    assert follower.poll() is False and follower.current == 1


def test_the_online_learner_reports_its_heartbeat(tmp_path, monkeypatch):
    from modelport.datasets import churn
    from modelport.train.online import learn

    monkeypatch.setenv("MODELPORT_HEARTBEAT_SECONDS", "0.01")
    churn.generate(3000, seed=3).to_parquet(tmp_path / "e.parquet", index=False)
    result = learn({"name": "ol", "source": str(tmp_path / "e.parquet"), "target": "churned",
                    "id": "customer_id", "batch": {"size": 200}, "promotion": False,
                    "learner": {"estimator": "sklearn.linear_model.SGDClassifier",
                                "params": {"loss": "log_loss"}},
                    "checkpoint": {"every_events": 1000, "formats": ["joblib"]}})
    assert result.learned == 3000
    deadline, rows = time.time() + 10, []
    while time.time() < deadline:
        rows = heartbeats.list(Registry(), "ol")
        if rows and rows[0]["stats"].get("scored", 0) > 0:
            break
        time.sleep(0.1)
    assert [(r["surface"], r["uri"], r["pid"]) for r in rows] == [("learn", "ol", os.getpid())]
    assert 0 < rows[0]["stats"]["scored"] <= 3000
    assert rows[0]["version"] in (None, *result.checkpoints)


@pytest.mark.services
def test_heartbeats_on_a_postgresql_registry(postgres_url, tmp_path):
    reg = Registry(postgres_url, str(tmp_path / "artefacts"))
    started = datetime.now(UTC)
    for version, scored in ((3, 5), (4, 9)):
        heartbeats.beat(reg, surface="stream", uri="churn@production", model="churn",
                        version=version, started_at=started, stats={"scored": scored},
                        host="node-a", pid=41)
    heartbeats.beat(reg, surface="serve", uri="fraud", model="fraud", version=1,
                    started_at=started, host="node-b", pid=7)
    rows = heartbeats.list(reg, "churn")
    assert [(r["host"], r["pid"], r["version"], r["stats"]) for r in rows] == [
        ("node-a", 41, 4, {"scored": 9})]
    assert heartbeats.forget(reg, host="node-a", pid=41) == 1
    assert [r["model"] for r in heartbeats.list(reg)] == ["fraud"]
    reg.engine.dispose()


def test_a_private_console_shows_nothing_before_the_token(tmp_path):
    need_module("jinja2", "http")
    httpx = need_module("httpx", "dev")
    import asyncio
    import re

    from modelport.errors import UserError
    from modelport.ui import create_app

    X = frame()
    modelport.log_model(fit(X), "churn", sample=X, formats=["joblib"], alias="production")
    with pytest.raises(UserError, match="needs a token"):
        create_app(private=True)
    app = create_app(token=TOKEN, private=True)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            before = [await client.get(p) for p in ("/", "/models/churn", "/models/churn/1",
                                                    "/serving", "/schedules")]
            login = await client.get("/login")
            csrf = re.search(r'name="csrf"\s+value="([^"]+)"', login.text).group(1)
            wrong = await client.post("/login", data={"token": "nope", "csrf": csrf})
            still = await client.get("/models/churn")
            await client.post("/login", data={"token": TOKEN, "csrf": csrf})
            after = await client.get("/models/churn")
            return before, login, wrong, still, after

    before, login, wrong, still, after = asyncio.run(go())
    assert [r.status_code for r in before] == [303] * 5
    assert all(r.headers["location"] == "/login" for r in before)
    assert all("churn" not in r.text for r in before)
    assert login.status_code == 200 and wrong.status_code == 403
    assert still.status_code == 303
    assert after.status_code == 200 and "production" in after.text
