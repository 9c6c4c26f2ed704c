"""The registry under real concurrency and real crashes, on SQLite and PostgreSQL.

Every writer here is a separate Python process registering through ``modelport.log_model``;
crashes are real ``SIGKILL``s delivered while the process sits at a fault point inside
registration (``MODELPORT_FAULT``), so nothing is simulated but the timing.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from modelport.registry import Registry

WRITERS = 8

# The writers: one script imports the libraries once, then forks one process per seed (so
# the test does not pay the import eight times). Each process fits a model of its own, says
# it is ready, waits for the start signal so that all register at the same moment, then
# registers one version of "churn" over its own database connections. With a single seed
# the script registers in its own process, which is the one a crash test kills.
WRITER = textwrap.dedent("""
    import os, sys, time, traceback
    from pathlib import Path

    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import modelport
    import modelport.register  # imported before the barrier so the writers overlap
    import modelport.registry

    def register(seed, gate):
        rng = np.random.default_rng(seed)
        X = pd.DataFrame({"tenure": rng.integers(0, 72, 80).astype(float),
                          "charges": np.round(rng.uniform(15, 120, 80), 2)})
        y = ((X["tenure"] < 30) ^ (np.arange(80) % 7 == 0)).astype(int)
        model = LogisticRegression(C=0.05 * (seed + 1), max_iter=500).fit(X, y)
        (gate / f"ready-{seed}").touch()
        while not (gate / "go").exists():
            time.sleep(0.005)
        v = modelport.log_model(model, "churn", sample=X, formats=["joblib"],
                                tags={"writer": str(seed)})
        # one write(2) under PIPE_BUF: the forked writers share the pipe, and print()
        # may hand the line over in pieces that interleave with a sibling's
        os.write(1, f"{seed} {v.version} {os.getpid()}\\n".encode())

    gate, seeds = Path(sys.argv[1]), [int(s) for s in sys.argv[2:]]
    if len(seeds) == 1:
        register(seeds[0], gate)
        sys.exit(0)
    children = []
    for seed in seeds:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                register(seed, gate)
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        children.append(pid)
    sys.exit(max(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0 for pid in children))
""")


def _model(seed: int) -> tuple[LogisticRegression, pd.DataFrame]:
    """The model and sample writer ``seed`` fits (the same code as in WRITER)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"tenure": rng.integers(0, 72, 80).astype(float),
                      "charges": np.round(rng.uniform(15, 120, 80), 2)})
    y = ((X["tenure"] < 30) ^ (np.arange(80) % 7 == 0)).astype(int)
    return LogisticRegression(C=0.05 * (seed + 1), max_iter=500).fit(X, y), X


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, monkeypatch) -> str:
    """Run the test once on the default SQLite registry and once on PostgreSQL."""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        monkeypatch.setenv("MODELPORT_REGISTRY", url)
    return request.param


def _env(**extra: str) -> dict[str, str]:
    # one BLAS/OpenMP thread: the writers fork after numpy is loaded
    return dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", **extra)


def _spawn(tmp_path: Path, gate: Path, seeds: list[int], **env: str) -> subprocess.Popen:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return subprocess.Popen([sys.executable, str(script), str(gate), *map(str, seeds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(**env))


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def test_eight_processes_registering_one_model_at_once_get_versions_one_to_eight(
        backend, tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    proc = _spawn(tmp_path, gate, list(range(WRITERS)))
    try:
        _wait_for(lambda: len(list(gate.glob("ready-*"))) == WRITERS or proc.poll() is not None,
                  120, "the writers to start")
        (gate / "go").touch()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    # each writer prints "seed version pid"; anything else a library printed is not counted
    rows = [line.split() for line in out.splitlines()
            if len(line.split()) == 3 and all(f.isdigit() for f in line.split())]
    assert len({pid for _, _, pid in rows}) == WRITERS, out  # eight processes, not one
    got = {int(seed): int(number) for seed, number, _ in rows}
    assert sorted(got) == list(range(WRITERS)), out
    assert sorted(got.values()) == list(range(1, WRITERS + 1)), out

    reg = Registry()
    assert reg.engine.dialect.name == backend
    assert [v.version for v in reg.versions("churn")] == list(range(1, WRITERS + 1))
    for seed, number in got.items():
        version = reg.get(f"churn/{number}")
        assert version.tags == {"writer": str(seed)}
        model, X = _model(seed)
        loaded = reg.load(version)
        np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


class _Stderr:
    """The lines a child process writes on stderr, readable with a timeout."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(proc.stderr,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put("")

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {text!r} on stderr within {timeout:.0f} s: {''.join(self.seen)}")
            if line == "":
                pytest.fail(f"process ended before {text!r}: {''.join(self.seen)}")
            self.seen.append(line)
            if text in line:
                return


def _register_within(timeout: float, seed: int):
    """Register writer ``seed``'s model from this process, failing if it takes too long
    (a lock left behind by a killed writer would make it wait forever)."""
    import modelport

    model, X = _model(seed)
    result: dict = {}

    def run() -> None:
        try:
            result["version"] = modelport.log_model(model, "churn", sample=X, formats=["joblib"])
        except BaseException as exc:  # reported in the test's own thread
            result["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        pytest.fail(f"registration still waiting after {timeout:.0f} s: a lock was left behind")
    if "error" in result:
        raise result["error"]
    return result["version"]


@pytest.mark.parametrize("point", ["register:before-commit", "register:stored"])
def test_a_writer_killed_mid_registration_leaves_no_version_and_no_lock(
        backend, point, tmp_path):
    import modelport

    first, X1 = _model(100)
    modelport.log_model(first, "churn", sample=X1, formats=["joblib"])

    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "go").touch()
    proc = _spawn(tmp_path, gate, [101], MODELPORT_FAULT=point)
    try:
        _Stderr(proc).wait_for(f"fault point {point} reached", timeout=60)
        # while the writer is stopped at the fault point nobody sees its version
        assert [v.version for v in Registry().versions("churn")] == [1]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    reg = Registry()
    assert [v.version for v in reg.versions("churn")] == [1]
    assert reg.get("churn").version == 1

    version = _register_within(30, seed=102)
    assert version.version == 2
    model, X = _model(102)
    np.testing.assert_array_equal(reg.load("churn/2").predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(reg.load("churn/1").predict_proba(X1),
                                  first.predict_proba(X1))
