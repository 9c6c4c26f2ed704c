"""Crash safety: a real ``modelport predict`` killed with SIGKILL mid-run, then run again with
``--resume``, leaves exactly the output of a run that was never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from modelport.registry import Registry

NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls",
           "data_usage_gb", "age"]
CATEGORICAL = ["plan", "contract", "payment_method", "region"]
ROWS, CHUNK = 40_000, 250


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A registered churn model, customers to score and the environment to run the CLI in."""
    from sklearn.linear_model import LogisticRegression

    import modelport
    from modelport.datasets import churn
    from modelport.train.preprocess import build_pipeline

    home = tmp_path_factory.mktemp("batch-resume")
    registry = Registry(f"sqlite:///{home / 'registry.db'}", str(home / "artefacts"))
    data = churn.generate(ROWS, seed=7)
    X = data.drop(columns=["customer_id", "churned"])
    model = build_pipeline(LogisticRegression(max_iter=300), X, NUMERIC, CATEGORICAL)
    model.fit(X.head(3000), data["churned"].head(3000))
    modelport.log_model(model, "churn", sample=X.head(300), formats=["joblib", "onnx"],
                        registry=registry)
    src = home / "customers.parquet"
    # a Parquet input is cut at its row groups: one piece (and one staged part) per group
    data.drop(columns=["churned"]).to_parquet(src, index=False, row_group_size=CHUNK)
    env = {**os.environ, "MODELPORT_HOME": str(home), "MODELPORT_REGISTRY": registry.url,
           "MODELPORT_ARTIFACTS": str(home / "artefacts")}
    return src, env


def _cmd(src: Path, output: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "modelport", "predict", "churn", "--input", str(src),
            "--output", output, "--id", "customer_id", "--chunk-rows", str(CHUNK),
            "--workers", "2", *extra]


def _kill_when(cmd: list[str], env: dict, ready, timeout: float = 60.0) -> None:
    """Start the job in its own process group and SIGKILL the group once ``ready()``."""
    # in the job's home: a lookup-table job writes its warnings file in the working folder
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, cwd=env["MODELPORT_HOME"])
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"the job ended before it was killed: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "the job never got going"
            time.sleep(0.005)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _run(cmd: list[str], env: dict) -> str:
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120,
                         cwd=env["MODELPORT_HOME"])
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_killed_file_job_resumes_to_the_same_file(job, tmp_path):
    src, env = job
    out = tmp_path / "scores.parquet"
    staging = tmp_path / ".scores.parquet.parts"
    _kill_when(_cmd(src, str(out)), env,
               lambda: staging.is_dir() and len(list(staging.glob("part-*"))) >= 8)
    assert not out.exists()  # the output appears whole or not at all
    committed = len(list(staging.glob("part-*")))
    assert 8 <= committed < ROWS // CHUNK
    stdout = _run(_cmd(src, str(out), "--resume"), env)
    assert "resumed after" in stdout
    clean = tmp_path / "clean.parquet"
    _run(_cmd(src, str(clean)), env)
    resumed, expected = pd.read_parquet(out), pd.read_parquet(clean)
    assert len(resumed) == ROWS and resumed["customer_id"].is_unique
    pd.testing.assert_frame_equal(resumed, expected)
    assert not staging.exists()


def test_killed_postgres_job_resumes_to_the_same_table(job, postgres_url):
    from sqlalchemy import create_engine, text

    src, env = job
    url = postgres_url.replace("postgresql://", "postgresql+psycopg://")
    engine = create_engine(url)

    def committed_chunks() -> int:
        with engine.connect() as conn:
            try:
                return conn.execute(text(
                    "SELECT count(*) FROM modelport_batch_progress")).scalar_one()
            except Exception:
                return 0

    _kill_when(_cmd(src, f"{postgres_url}#scores"), env, lambda: committed_chunks() >= 8)
    time.sleep(0.2)
    done = committed_chunks()
    with engine.connect() as conn:
        stages = conn.execute(text(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_name LIKE 'modelport_stage_%'")).scalars().all()
        staged = conn.execute(text(f"SELECT count(*) FROM {stages[0]}")).scalar_one()
        lookup = conn.execute(text("SELECT to_regclass('scores')")).scalar_one()
    # every committed chunk is whole: rows and progress were staged in one transaction,
    # and the lookup table is only made when the job ends
    assert len(stages) == 1 and staged == done * CHUNK and done < ROWS // CHUNK
    assert lookup is None
    stdout = _run(_cmd(src, f"{postgres_url}#scores", "--resume"), env)
    assert f"resumed after {done} chunk(s)" in stdout
    _run(_cmd(src, f"{postgres_url}#clean"), env)
    columns = "customer_id, label, score, proba_0, proba_1, model, model_version"
    resumed = pd.read_sql(f"SELECT {columns} FROM scores ORDER BY customer_id", engine)
    clean = pd.read_sql(f"SELECT {columns} FROM clean ORDER BY customer_id", engine)
    with engine.connect() as conn:  # a finished job leaves no staging table, no progress
        assert conn.execute(text(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_name LIKE 'modelport_stage_%'")).scalar_one() == 0
        assert committed_chunks() == 0
    engine.dispose()
    assert len(resumed) == ROWS and resumed["customer_id"].is_unique
    pd.testing.assert_frame_equal(resumed, clean)
