"""The in-app examples run for real and score like the registered model.

Each example in ``examples/inapp/`` is built with its own toolchain and fed the registered
sample of both churn models (``test_inapp.churn_bundles``): the browser page in headless
Chromium (the exported JavaScript module, and the ONNX graph in onnxruntime-web from npm),
the Java program with javac and java, the C program with gcc. Float64 targets must agree
with the native model to 1e-9; onnxruntime-web computes in the graph's precision, so it is
held to the ONNX format's tolerance and to onnxruntime's own numbers. The Python example
runs in ``test_inapp.py``, in a fresh virtual environment.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import urllib.parse
from html import unescape
from pathlib import Path

import numpy as np
import pytest

from test_inapp import EXAMPLES, VENV_CACHE, churn_bundles, example_module

from conftest import need_module, unavailable

MODELS = ("logistic", "hgb")
CHROMIUM = os.environ.get("MODELPORT_CHROMIUM", "chromium")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    return churn_bundles(tmp_path_factory)


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (apt-get install {package})")
    return path


def customers_tsv(rows: list[dict], folder: Path) -> Path:
    example_module("export").write_customers(rows, folder / "customers")
    return folder / "customers.tsv"


def floats(text: str) -> np.ndarray:
    return np.array([[float(v) for v in line.split("\t")] for line in text.splitlines()])


# --- JVM -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_java_program_scores_like_the_model(bundles, name, tmp_path):
    javac, java = tool("javac", "openjdk-17-jdk-headless"), tool("java", "openjdk-17-jre-headless")
    b = bundles[name]
    build = tmp_path / "build"
    proc = subprocess.run([javac, "-d", str(build), str(b.folder / "Churn.java"),
                           str(EXAMPLES / "java" / "ScoreChurn.java")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with open(customers_tsv(b.rows, tmp_path)) as stdin:
        proc = subprocess.run([java, "-cp", str(build), "ScoreChurn"], stdin=stdin,
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(floats(proc.stdout), b.proba, rtol=0, atol=1e-9)
    # one customer from the command line, as a person would run it
    args = [f"{k}={'' if v is None else v}" for k, v in b.rows[0].items()]
    proc = subprocess.run([java, "-cp", str(build), "ScoreChurn", *args], capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.strip() == f"churn probability {b.proba[0, 1]:.3f}", proc.stderr


# --- C ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_c_program_scores_like_the_model(bundles, name, tmp_path):
    gcc = tool("gcc", "gcc")
    b = bundles[name]
    exe = tmp_path / "score_churn"
    proc = subprocess.run([gcc, "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror",
                           "-I", str(b.folder), "-o", str(exe),
                           str(EXAMPLES / "c" / "score_churn.c"), str(b.folder / "churn.c"),
                           "-lm"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with open(customers_tsv(b.rows, tmp_path)) as stdin:
        proc = subprocess.run([str(exe)], stdin=stdin, capture_output=True, text=True,
                              timeout=120)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(floats(proc.stdout), b.proba, rtol=0, atol=1e-9)
    args = [f"{k}={'' if v is None else v}" for k, v in b.rows[0].items()]
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == f"churn probability {b.proba[0, 1]:.3f}", proc.stderr


# --- the browser -----------------------------------------------------------------------------


class _Files(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".js": "text/javascript",
                      ".wasm": "application/wasm", ".json": "application/json"}

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def site(tmp_path):
    """A static web server on 127.0.0.1 over a folder laid out as examples/inapp/ is."""
    root = tmp_path / "site"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_Files, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def onnxruntime_web() -> Path:
    """node_modules holding the onnxruntime-web that examples/inapp/browser-onnx names,
    installed with npm once and kept under the test cache."""
    npm = tool("npm", "npm")
    package = (EXAMPLES / "browser-onnx" / "package.json").read_bytes()
    folder = VENV_CACHE / f"npm-{hashlib.sha256(package).hexdigest()[:12]}"
    ready = folder / "modelport-test-ready"
    if not ready.exists():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "package.json").write_bytes(package)
        try:
            proc = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--ignore-scripts",
                                   "--no-package-lock"], cwd=folder, capture_output=True,
                                  text=True, timeout=420)
        except subprocess.TimeoutExpired:
            unavailable("npm could not install onnxruntime-web within 7 minutes")
        if proc.returncode != 0:
            unavailable(f"npm could not install onnxruntime-web: {proc.stderr.strip()[-300:]}")
        ready.write_text("ok\n")
    return folder / "node_modules"


def open_page(url: str, profile: Path) -> str:
    """The page's DOM once its scripts have run, from headless Chromium."""
    exe = shutil.which(CHROMIUM)
    if exe is None:
        unavailable("chromium is not installed (apt-get install chromium)")
    # its own process group, so a browser that hangs goes with all its helper processes
    proc = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", f"--user-data-dir={profile}",
         "--virtual-time-budget=30000", "--dump-dom", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError("chromium did not finish the page within 180 s") from None
    assert proc.returncode == 0, err[-2000:]
    return out


def lay_out(root: Path, b, page: str) -> str:
    """Copy the example page and the bundle into the served folder; return the page's query."""
    shutil.copytree(EXAMPLES / "browser", root / "browser", dirs_exist_ok=True)
    if page != "browser":
        shutil.copytree(EXAMPLES / page, root / page, dirs_exist_ok=True)
    shutil.copytree(b.folder, root / "bundles" / b.name, dirs_exist_ok=True)
    unseen = {**b.rows[1], "plan": "platinum"}
    (root / "rows.json").write_text(json.dumps([*b.rows, unseen]))
    query = urllib.parse.urlencode({"bundle": f"../bundles/{b.name}/", "rows": "../rows.json",
                                    "customer": json.dumps(b.rows[0])})
    return f"/{page}/index.html?{query}"


def shown(dom: str) -> tuple[np.ndarray, list[str], np.ndarray, str]:
    """(table probabilities, table errors, the form's probabilities, the form's visible text)."""
    assert 'data-state="ready"' in dom, dom[-3000:]
    error = re.search(r'<p id="error" role="alert">(.*?)</p>', dom, re.S).group(1)
    assert error == "", unescape(error)
    table = re.findall(r'<td data-(proba|error)="([^"]*)"', dom)
    proba = np.array([[float(v) for v in value.split()] for kind, value in table
                      if kind == "proba"])
    errors = [unescape(value) for kind, value in table if kind == "error"]
    form = re.search(r'<output id="score"[^>]*data-proba="([^"]*)"[^>]*>([^<]*)</output>', dom)
    return proba, errors, np.array([float(v) for v in form.group(1).split()]), form.group(2)


@pytest.mark.parametrize("name", MODELS)
def test_browser_page_scores_with_the_exported_javascript_module(bundles, name, site, tmp_path):
    b = bundles[name]
    root, base = site
    dom = open_page(base + lay_out(root, b, "browser"), tmp_path / "profile")
    proba, errors, form, text = shown(dom)
    np.testing.assert_allclose(proba, b.proba, rtol=0, atol=1e-9)
    assert errors == ['plan "platinum" is a category unseen in training']
    np.testing.assert_allclose(form, b.proba[0], rtol=0, atol=1e-9)
    assert text == f"{100 * b.proba[0, 1]:.1f} %"
    assert "JavaScript module churn.mjs" in dom


@pytest.mark.parametrize("name", MODELS)
def test_browser_page_scores_with_onnxruntime_web(bundles, name, site, tmp_path):
    from modelport import inapp

    b = bundles[name]
    root, base = site
    page = lay_out(root, b, "browser-onnx")
    (root / "browser-onnx" / "node_modules").symlink_to(onnxruntime_web())
    dom = open_page(base + page, tmp_path / "profile")
    proba, errors, form, text = shown(dom)
    assert "in onnxruntime-web 1." in dom
    np.testing.assert_allclose(proba, b.proba, rtol=0, atol=1e-4)
    assert errors == ['plan "platinum" is a category unseen in training']
    assert text == f"{100 * form[1]:.1f} %"
    np.testing.assert_allclose(form, b.proba[0], rtol=0, atol=1e-4)
    # the same graph in onnxruntime for Python gives the same numbers
    need_module("onnxruntime", "onnx")
    np.testing.assert_allclose(proba, inapp.load(b.folder, format="onnx").predict_proba(b.rows),
                               rtol=0, atol=1e-6)
