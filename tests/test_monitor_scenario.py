"""Monitoring end to end, on churn traffic whose distribution shifts halfway.

A logistic-regression churn model is trained from a spec on undrifted customers and
aliased ``production``. Two days of traffic are scored by ``modelport predict --log``: the
first like the training data, the second generated with ``drift=2`` (newer customers,
higher prices, more support calls, more monthly contracts; region does not move). Labels
arrive later through ``modelport feedback``. ``modelport monitor`` must then flag the
shifted features on the second day and not region, nor anything on the first day, and
see the ROC AUC drop; the alert rules fire (exit code 3) and their ``on_alert`` retrains
from the spec on fresh data, which promotes a better model. The HTML report is rendered
by headless Chromium.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from conftest import unavailable

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROWS = int(os.environ.get("MODELPORT_MONITOR_ROWS", "2000"))
SHIFTED = ["tenure_months", "monthly_charges", "total_charges", "support_calls", "contract"]
SPEC = """\
name: churn
task: classification
data:
  source: data/customers.parquet
  target: churned
  id: customer_id
model:
  estimator: sklearn.linear_model.LogisticRegression
  params: {max_iter: 1000}
validation: {test_size: 0.25, seed: 0}
metrics: [roc_auc, accuracy]
formats: [joblib]
promotion: {alias: production, metric: roc_auc}
"""


class World:
    """Paths, dates and the environment of the monitored deployment."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.log = f"sqlite:///{root / 'log.db'}#predictions"
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.day1, self.day2 = today - timedelta(days=1), today
        self.since = self.day1.date().isoformat()
        self.until = (today + timedelta(days=1)).date().isoformat()
        self.env = {**os.environ, "MODELPORT_HOME": str(self.home), "OMP_NUM_THREADS": "1",
                    "OMP_WAIT_POLICY": "PASSIVE"}

    def run(self, *args: str, rc: int = 0) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "modelport", *args], capture_output=True,
                              text=True, env=self.env, cwd=self.root, timeout=300)
        assert proc.returncode == rc, (args, proc.returncode, proc.stdout, proc.stderr[-3000:])
        return proc

    def monitor(self, *args: str, rc: int = 0) -> subprocess.CompletedProcess:
        return self.run("monitor", "churn@production", "--log", self.log, "--since",
                        self.since, "--until", self.until, *args, rc=rc)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from modelport.datasets import churn
    from modelport.registry import Registry
    from modelport.train.oneoff import train

    w = World(tmp_path_factory.mktemp("monitor-scenario"))
    (w.root / "data").mkdir()
    churn.generate(3000, seed=1).to_parquet(w.root / "data" / "customers.parquet")
    (w.root / "churn.yaml").write_text(SPEC)
    registry = Registry(f"sqlite:///{w.home / 'registry.db'}", str(w.home / "artefacts"))
    train(w.root / "churn.yaml", registry=registry, alias="production")

    day1 = churn.generate(ROWS, seed=5)
    day2 = churn.generate(ROWS, seed=6, drift=2.0)
    day2["customer_id"] += ROWS  # other customers than the first day's
    for name, frame in (("day1", day1), ("day2", day2)):
        frame.drop(columns="churned").to_parquet(w.root / f"{name}.parquet")
        w.run("predict", "churn@production", "--input", f"{name}.parquet", "--output",
              f"{name}.scores.parquet", "--id", "customer_id", "--workers", "1",
              "--log", w.log)
    # the two days were scored just now: date each day's log rows to its own day
    with sqlite3.connect(w.root / "log.db") as conn:
        for frame, day in ((day1, w.day1), (day2, w.day2)):
            at = (day + timedelta(hours=12)).strftime("%Y-%m-%d %H:%M:%S.%f")
            ids = [str(i) for i in frame["customer_id"]]
            conn.executemany("UPDATE predictions SET at = ? WHERE id = ?",
                             [(at, i) for i in ids])
    labels = np.concatenate([day1["churned"], day2["churned"]])
    ids = np.concatenate([day1["customer_id"], day2["customer_id"]])
    import pandas as pd

    pd.DataFrame({"customer_id": ids, "churned": labels}).to_csv(w.root / "labels.csv",
                                                                 index=False)
    return w


@pytest.fixture(scope="module")
def report(world):
    out = world.run("feedback", "churn", "--input", "labels.csv", "--id", "customer_id",
                    "--label", "churned", "--log", world.log, "--json")
    world.feedback = json.loads(out.stdout)
    html = world.root / "report.html"
    out = world.monitor("--json", "--html", str(html))
    return json.loads(out.stdout)


def test_predictions_are_logged_with_ids_and_labels_join_by_id(world, report):
    with sqlite3.connect(world.root / "log.db") as conn:
        rows, ids, version = conn.execute(
            "SELECT count(*), count(DISTINCT id), max(version) FROM predictions").fetchone()
        stored = conn.execute("SELECT count(*) FROM predictions_feedback").fetchone()[0]
    assert rows == ids == 2 * ROWS and version == 1
    assert world.feedback["stored"] == stored == 2 * ROWS
    assert report["labelled"] == 2 * ROWS


def test_monitor_flags_the_shifted_features_and_not_the_others(world, report):
    drift = report["drift"]
    assert drift["window"]["start"].startswith(world.day2.date().isoformat())
    assert drift["window"]["rows"] == ROWS
    drifted = set(drift["drifted_features"])
    assert set(SHIFTED) <= drifted, drifted
    assert "region" not in drifted
    region = [t for t in drift["features"] if t["feature"] == "region"]
    assert {t["statistic"] for t in region} == {"psi", "chi2_p"}
    assert all(not t["drifted"] for t in region)
    for t in drift["features"]:  # every entry carries the contract's fields
        assert {"feature", "statistic", "value", "threshold", "drifted"} <= set(t)
    first, second = report["windows"]
    assert first["drifted_features"] == []  # the first day looks like training
    assert set(SHIFTED) <= set(second["drifted_features"])
    assert second["prediction"]["score"]["drifted"] and not first["prediction"]["score"][
        "drifted"]


def test_monitor_sees_the_auc_drop_once_labels_arrive(world, report):
    perf = report["performance"]
    assert perf["window"]["labelled"] == ROWS
    change = perf["change"]["roc_auc"]
    assert change["worse"] and change["drop"] > 0.03, change
    first, second = (w["performance"]["roc_auc"] for w in report["windows"])
    assert first - second > 0.02  # the drop comes with the shift, not from noise
    assert report["changes"].get("available") is not False
    assert any(t.startswith(world.day2.date().isoformat()) for t in report["changes"]["score"])


def test_monitor_shows_what_drives_the_scores_against_training(world, report):
    drivers = report["drivers"]
    assert drivers["available"], drivers
    assert drivers["window"]["start"].startswith(world.day2.date().isoformat())
    columns = {c["column"]: c for c in drivers["columns"]}
    assert set(SHIFTED + ["region"]) <= set(columns)
    currents = [c["current"] for c in drivers["columns"]]
    assert currents == sorted(currents, reverse=True)  # the largest now first
    first, second = report["windows"]
    # the first day looks like training: every column drives the scores about as much
    for name, value in first["drivers"].items():
        ref = drivers["reference"][name]
        assert ref == 0 or 0.75 < value / ref < 1.33, (name, value, ref)
    # more support calls on the second day: for a linear model a contribution grows with
    # the distance from the training mean, so support calls now drive the scores most;
    # region did not move and drives them as in training
    assert drivers["columns"][0]["column"] == "support_calls"
    assert columns["support_calls"]["ratio"] > 1.5
    assert 0.9 < columns["region"]["ratio"] < 1.1
    assert second["drivers"] == {n: c["current"] for n, c in columns.items()}


def test_the_alert_fires_and_its_retrain_promotes_a_better_model(world, report):
    from modelport.datasets import churn
    from modelport.registry import Registry

    rules = world.root / "rules.yaml"
    rules.write_text(
        f"model: churn@production\nlog: {world.log}\nsince: {world.since}\n"
        f"until: {world.until}\nrules:\n  - psi > 0.2\n  - auc drop > 0.03\n"
        "  - error_rate > 0.05\non_alert: retrain churn.yaml\n")
    # the nightly extract now holds the new kind of customers, with their outcomes
    churn.generate(3000, seed=7, drift=2.0).to_parquet(world.root / "data" / "customers.parquet")
    out = world.run("monitor", "--check", str(rules), "--json", rc=3)
    check = json.loads(out.stdout)["check"]
    fired = {a["rule"] for a in check["alerts"]}
    assert fired == {"psi > 0.2", "auc drop > 0.03"}
    result = check["on_alert"]["result"]
    assert check["on_alert"]["action"] == "retrain"
    assert result["decision"] == "promoted", result
    assert result["challenger"]["score"] > result["champion"]["score"]
    registry = Registry(f"sqlite:///{world.home / 'registry.db'}", str(world.home / "artefacts"))
    assert registry.get("churn@production").version == result["challenger"]["version"] == 2
    kinds = [e["kind"] for e in registry.events("churn")]
    assert "alert" in kinds and "retrain" in kinds


def test_check_file_without_the_shifted_day_does_not_fire(world, report, monkeypatch):
    from modelport.monitor.alerts import run_check_file

    monkeypatch.setenv("MODELPORT_HOME", str(world.home))
    rules = world.root / "quiet.yaml"
    rules.write_text(f"model: churn/1\nlog: {world.log}\nsince: {world.since}\n"
                     f"until: {world.day2.date().isoformat()}\nrules: [psi > 0.2, "
                     "drifted_features > 0]\non_alert: retrain churn.yaml\n")
    outcome = run_check_file(rules)
    assert outcome["fired"] is False and outcome["exit_code"] == 0
    assert outcome["on_alert"] is None
    assert [r["fired"] for r in outcome["rules"]] == [False, False]
    assert outcome["report"]["rows"] == ROWS


# -- the HTML report in a browser ----------------------------------------------------------

def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists()
                                       else None)
        if found:
            return found
    unavailable("Chromium is not installed (apt-get install chromium)")


def headless(args: list[str], url: str, tmp: Path) -> subprocess.CompletedProcess:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", f"--user-data-dir={tmp / 'profile'}", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_html_report_renders_in_headless_chromium(world, report):
    page = world.root / "report.html"
    text = page.read_text()
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org", "")
    tmp = Path(tempfile.mkdtemp(prefix="mp-chromium-"))
    try:
        shot, blank = tmp / "report.png", tmp / "blank.png"
        (tmp / "blank.html").write_text("<!doctype html><title>blank</title>")
        for url, png in ((page.as_uri(), shot), ((tmp / "blank.html").as_uri(), blank)):
            proc = headless([f"--screenshot={png}", "--window-size=1200,2000"], url, tmp)
            assert png.is_file(), proc.stderr[-2000:]
        assert png_size(shot.read_bytes()) == (1200, 2000)
        # a page of charts and text compresses far worse than an empty one
        assert shot.stat().st_size > 8 * blank.stat().st_size, (shot.stat().st_size,
                                                                 blank.stat().st_size)
        dom = headless(["--dump-dom"], page.as_uri(), tmp).stdout
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for section in ("drift-over-time", "performance", "distributions", "traffic",
                    "drift-table", "drivers"):
        assert f"id=\"{section}\"" in dom, section
    for feature in (*SHIFTED, "region", "prediction: score"):
        assert feature in dom
    assert dom.count("<svg") >= 10
    assert "badge bad" in dom and "stable" in dom  # drifted and stable features are marked
    assert "#dc2626" in dom  # and drifted ones drawn in red
