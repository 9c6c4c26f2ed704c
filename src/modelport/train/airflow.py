"""Airflow DAGs that run ``modelport retrain`` on a schedule.

:func:`dag_source` writes a DAG file of one standard ``BashOperator`` task, importable by
Airflow 2.6+ and 3: it runs ``modelport retrain SPEC --json``, so the task log holds the
decision and both scores. Exit code 3 (the champion was kept) marks the task *skipped*,
so tasks placed after it (re-scoring a table with the new model, say) run only when a
challenger was promoted; any other non-zero code fails it.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

from modelport.errors import UserError

#: environment passed on to the task by default: where the registry and artefacts are
PASSED_ENV = ("MODELPORT_HOME", "MODELPORT_REGISTRY", "MODELPORT_ARTIFACTS",
              "MODELPORT_S3_ENDPOINT_URL", "MODELPORT_USER")

_TEMPLATE = '''"""Retrain {name} with modelport on {cron!r} (UTC).

Written by `modelport airflow-dag`. The task runs `modelport retrain` on {spec_name}: exit
code 0 means a challenger was promoted to @{alias}, 3 that the champion was kept (the task
is then marked skipped), anything else a failure. The decision and both scores are in the
task log (JSON) and in the registry: `modelport models show {name} --json`.
"""

from datetime import datetime, timedelta

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
try:
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:
    from airflow.operators.bash import BashOperator

with DAG(
    dag_id={dag_id!r},
    schedule={cron!r},
    start_date=datetime({start.year}, {start.month}, {start.day}),
    catchup=False,
    max_active_runs=1,
    tags=["modelport", "retrain"],
    doc_md=__doc__,
) as dag:
    retrain = BashOperator(
        task_id="retrain",
        bash_command={command!r},
        env={env!r},
        append_env=True,
        skip_on_exit_code=3,
        execution_timeout=timedelta(seconds={timeout_s!r}),
    )
'''


def dag_source(spec: str | Path, *, cron: str, dag_id: str | None = None,
               command: str | None = None, env: list[str] | tuple[str, ...] = (),
               inherit_env: bool = True, timeout_s: float = 3600.0) -> str:
    """The Python source of a DAG that retrains ``spec`` on ``cron``.

    ``command`` is how the Airflow worker starts modelport (default: the Python running
    now, ``-m modelport``); ``env`` adds ``NAME=VALUE`` pairs to the task's environment,
    on top of this shell's ``MODELPORT_*`` settings unless ``inherit_env`` is false. The
    spec is checked now and referred to by absolute path.
    """
    from modelport.train.schedule import check_cron
    from modelport.train.spec import load_spec

    path = Path(spec).absolute()
    loaded = load_spec(path)
    cron = check_cron(cron)
    if len(cron.split()) == 6:
        raise UserError(f"Airflow schedules have no seconds field: give five fields, not "
                        f"{cron!r}")
    dag_id = dag_id or f"{loaded.name}_retrain"
    if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,250}", dag_id):
        raise UserError(f"bad --dag-id {dag_id!r}: use letters, digits, '_', '-' and '.'")
    if timeout_s <= 0:
        raise UserError("--timeout must be a positive number of seconds")
    variables = {k: os.environ[k] for k in PASSED_ENV if inherit_env and os.environ.get(k)}
    for pair in env:
        key, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise UserError(f"bad --env {pair!r}: write NAME=VALUE")
        variables[key] = value
    runner = command or f"{shlex.quote(sys.executable)} -m modelport"
    bash = f"{runner} retrain {shlex.quote(str(path))} --json"
    return _TEMPLATE.format(
        name=loaded.name, cron=cron, spec_name=path.name, alias=loaded.promotion.alias,
        dag_id=dag_id, start=datetime.now(UTC), command=bash, env=variables,
        timeout_s=float(timeout_s))
