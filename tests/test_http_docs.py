"""``/docs`` works on a machine with no internet access: a page of its own that loads nothing
from anywhere else, renders each served model's routes, inputs and an example request from
``/openapi.json`` in headless Chromium, and shows column names and categories as text."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from conftest import need_module, unavailable

need_module("orjson", "http")
need_module("prometheus_client", "http")
uvicorn = need_module("uvicorn", "http")

from modelport.serve.http.openapi import DOCS_HTML  # noqa: E402

HOSTILE_COLUMN = "<img src=x onerror=\"document.title='pwned'\">"
HOSTILE_CATEGORY = "</script><script>document.title='pwned'</script>"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


def test_the_page_loads_nothing_from_anywhere_else():
    assert "http://" not in DOCS_HTML and "https://" not in DOCS_HTML
    assert "//cdn" not in DOCS_HTML and "@import" not in DOCS_HTML
    tags = _tags(DOCS_HTML)
    for tag, attrs in tags:
        assert "src" not in attrs and "href" not in attrs, (tag, attrs)
    assert [t for t, _ in tags].count("script") == 1
    policy = next(a["content"] for t, a in tags if a.get("http-equiv") ==
                  "Content-Security-Policy")
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A real server on a free port, serving a model whose column names and categories
    hold markup."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    import modelport
    from modelport.registry import Registry
    from modelport.serve.http import create_app

    home = tmp_path_factory.mktemp("docs-registry")
    registry = Registry(f"sqlite:///{home / 'registry.db'}", str(home / "artefacts"))
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"tenure": rng.uniform(0, 72, 120),
                      HOSTILE_COLUMN: rng.choice(["basic", HOSTILE_CATEGORY], 120)})
    y = (X["tenure"] < 30).astype(int)
    model = Pipeline([("prep", ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore"), [HOSTILE_COLUMN])],
        remainder="passthrough")), ("model", LogisticRegression(max_iter=500))]).fit(X, y)
    modelport.log_model(model, "churn", sample=X, formats=["joblib"], registry=registry)
    modelport.log_model(model, "fraud", sample=X, formats=["joblib"], registry=registry)
    app = create_app(["churn", "fraud"], registry=registry, poll_seconds=0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _dom(url: str) -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        unavailable("chromium is not installed (apt-get install chromium)")
    done = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--virtual-time-budget=10000", "--dump-dom", url],
        capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_page_renders_each_model_with_its_inputs_and_an_example(served):
    dom = _dom(f"{served}/docs")
    assert "Could not read openapi.json: " not in dom.split("<script>")[0]
    headings = re.findall(r"<h2>(.*?)</h2>", dom)
    assert headings == ["churn", "fraud", "Other routes"]
    for name in ("churn", "fraud"):
        assert f"<code>/predict/{name}</code>" in dom
        assert f"<code>/v2/models/{name}/infer</code>" in dom
    assert "curl -X POST '" + served + "/predict/churn'" in dom
    assert "number, " in dom and "one of 2 categories" in dom
    # markup from the data is text: escaped in the DOM, never an element or a script
    assert "&lt;img src=x onerror=" in dom and "&lt;/script&gt;&lt;script&gt;" in dom
    tags = _tags(dom)
    assert not [t for t, _ in tags if t == "img"]
    assert [t for t, _ in tags].count("script") == 1
    assert "<title>modelport API</title>" in dom
