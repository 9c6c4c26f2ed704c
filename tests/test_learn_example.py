"""The online churn example runs end to end: delayed labels are joined, checkpoints are
promoted while the server runs, and the server's answers change with them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import need_module

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "online" / "run.py"


def test_the_online_example_serves_new_versions_as_the_model_learns(tmp_path):
    need_module("uvicorn", "http")
    need_module("river", "online")  # the example watches for drift
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--customers", "3000", "--stages",
                           "1", "--delay", "300", "--dir", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stages = re.findall(r"production -> (\d+); the server answers (.*)", proc.stdout)
    assert len(stages) == 2
    served = [{int(v) for v in re.findall(r"v(\d+):", answers)} for _, answers in stages]
    # every answer of a stage comes from the version production named then
    assert all(s == {int(p)} for (p, _), s in zip(stages, served, strict=True))
    assert len({int(p) for p, _ in stages}) == 2, proc.stdout  # promoted as it learnt
    probabilities = [re.findall(r": (0\.\d+)", answers) for _, answers in stages]
    assert probabilities[0] != probabilities[-1]
    learnt = re.search(r"followed the stream: ([\d,]+) customers learnt", proc.stdout)
    assert learnt and int(learnt.group(1).replace(",", "")) == 1500
