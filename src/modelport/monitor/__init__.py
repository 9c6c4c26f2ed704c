"""Monitoring: what every serving mode scored, the ground truth that arrives later, and
what changed since training.

- :mod:`~modelport.monitor.log` writes a sampled log of predictions to a SQL table, from a
  bounded in-memory buffer drained by a background thread, so the serving path never
  waits for the database and never fails because of it (what does not fit is dropped and
  counted);
- :mod:`~modelport.monitor.feedback` joins ground-truth labels to logged predictions by id;
- :mod:`~modelport.monitor.reference` holds the statistics of each version's training
  sample (histograms, quantiles, category frequencies, prediction distribution);
- :mod:`~modelport.monitor.drift` compares logged traffic with them (PSI,
  Kolmogorov-Smirnov, chi-square) and finds change points in the score and error streams
  (River detectors);
- :mod:`~modelport.monitor.performance` scores the predictions against their labels;
- :mod:`~modelport.monitor.analysis` puts it together per time window,
  :mod:`~modelport.monitor.report` shows it (terminal, JSON, HTML) and
  :mod:`~modelport.monitor.alerts` checks rules and can start a retraining.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["analyse", "run_check_file"]


def analyse(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See :func:`modelport.monitor.analysis.analyse`."""
    from modelport.monitor.analysis import analyse as run

    return run(*args, **kwargs)


def run_check_file(path: str | Path) -> dict[str, Any]:
    """See :func:`modelport.monitor.alerts.run_check_file`."""
    from modelport.monitor.alerts import run_check_file as run

    return run(path)
