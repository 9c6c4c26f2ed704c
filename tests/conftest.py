"""Shared test fixtures: an isolated MODELPORT_HOME per test, real services, optional extras.

On a laptop a test that needs a service or an optional extra skips with the reason; with
``MODELPORT_REQUIRE_SERVICES=1`` (set by ``.ci/run``) a missing one is a failure instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

# before any OpenMP library loads: spinning threads stall tree models on two cores
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import socket
import uuid

import pytest

REQUIRE = os.environ.get("MODELPORT_REQUIRE_SERVICES") == "1"

# property tests search afresh on every local run; in CI they draw the same examples each
# time, so a run's verdict is about the change, not the draw (a failure found locally is
# pinned with @example)
try:
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", derandomize=True, database=None)
    if REQUIRE:
        _hypothesis_settings.load_profile("ci")
except ImportError:  # hypothesis is a dev dependency
    pass
PG_DSN = os.environ.get("MODELPORT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def unavailable(reason: str):
    """Skip the test, or fail it when services are required."""
    if REQUIRE:
        pytest.fail(f"required for CI but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def need_module(module: str, extra: str):
    """Import an optional dependency or skip/fail naming the pip extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        unavailable(f"{module} is not installed (pip install 'modelport[{extra}]')")


#: where test-only virtual environments (Airflow, TPOT, a NumPy-only app) are kept
VENV_CACHE = Path(os.environ.get("MODELPORT_VENV_CACHE",
                                 Path.home() / ".cache" / "modelport" / "venvs"))


def cached_venv(name: str, requirements: list[str], *, pip_args: tuple[str, ...] = (),
                check: Callable[[Path], bool] | None = None, timeout: float = 1200) -> Path:
    """The Python of a virtual environment holding ``requirements``, built on first use
    under :data:`VENV_CACHE` (one builder at a time; keyed by the Python and the
    requirements) and reused afterwards while ``check(python)`` still holds. A build that
    fails or takes over ``timeout`` seconds skips the test (fails it in CI)."""
    key = hashlib.sha256("\n".join([sys.version, *requirements]).encode()).hexdigest()[:12]
    folder = VENV_CACHE / f"{name}-{key}"
    python = folder / "bin" / "python"
    VENV_CACHE.mkdir(parents=True, exist_ok=True)
    with open(VENV_CACHE / f"{name}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / ".complete").exists() and (check is None or check(python)):
            return python
        shutil.rmtree(folder, ignore_errors=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True,
                           capture_output=True, timeout=120)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-input",
                            "--disable-pip-version-check", *pip_args, *requirements],
                           check=True, capture_output=True, text=True, timeout=timeout)
        except subprocess.CalledProcessError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            tail = (exc.stderr or "").strip().splitlines()[-3:]
            unavailable(f"cannot build the {name} environment: {' / '.join(tail)}")
        except subprocess.TimeoutExpired:
            shutil.rmtree(folder, ignore_errors=True)
            unavailable(f"building the {name} environment took over {timeout:.0f} s")
        if check is not None and not check(python):
            shutil.rmtree(folder, ignore_errors=True)
            unavailable(f"the {name} environment does not hold what it should")
        (folder / ".complete").write_text("\n".join(requirements) + "\n")
    return python


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def modelport_home(tmp_path, monkeypatch):
    """Every test gets its own registry and artefact store."""
    home = tmp_path / "mp-home"
    monkeypatch.setenv("MODELPORT_HOME", str(home))
    monkeypatch.delenv("MODELPORT_REGISTRY", raising=False)
    monkeypatch.delenv("MODELPORT_ARTIFACTS", raising=False)
    monkeypatch.delenv("MODELPORT_FAULT", raising=False)
    return home


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database on 127.0.0.1:5432, dropped afterwards."""
    psycopg = need_module("psycopg", "postgres")
    if not port_open("127.0.0.1", 5432):
        unavailable("PostgreSQL is not running on 127.0.0.1:5432")
    name = f"mp_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_DSN.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
