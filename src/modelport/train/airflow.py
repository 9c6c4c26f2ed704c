"""Airflow DAGs that run ``modelport retrain`` on a schedule.

:func:`dag_source` writes a DAG file of one standard ``BashOperator`` task, importable by
Airflow 2.6+ and 3: it runs ``modelport retrain SPEC --json``, so the task log holds the
decision and both scores. Exit code 3 (the champion was kept) marks the task *skipped*,
so tasks placed after it (re-scoring a table with the new model, say) run only when a
challenger was promoted; any other non-zero code fails it.

The DAG is Python that Airflow imports, and the spec's file name, the model name and the
``--env`` values are text from users: each reaches the file only as a string literal made
by :func:`modelport.quoting.code.python_literal` (the docstring shows the model name in
:func:`~modelport.quoting.code.comment_text` form), so a spec whose name closes a
docstring and holds code is a file name and nothing else. Airflow also renders
``bash_command`` and ``env`` as Jinja templates when the task runs; :func:`jinja_text`
writes them so that rendering gives back the text, and ``{{ conn.db.password }}`` in a
file name stays those characters.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

from modelport.errors import UserError
from modelport.quoting.code import comment_text, docstring, python_literal

#: environment passed on to the task by default: where the registry and artefacts are, and
#: which modules specs may import from (the signing key is a secret: give it to the worker
#: through Airflow's own secrets, never through the DAG file)
PASSED_ENV = ("MODELPORT_HOME", "MODELPORT_REGISTRY", "MODELPORT_ARTIFACTS",
              "MODELPORT_S3_ENDPOINT_URL", "MODELPORT_USER", "MODELPORT_ALLOWED_MODULES")
#: file endings Airflow's BashOperator reads as the name of a template file to load
_TEMPLATE_EXT = (".sh", ".bash")

_DOC = """Retrain the model {name} with modelport on a schedule (UTC).

Written by `modelport airflow-dag`. The task runs `modelport retrain` on the spec in SPEC:
exit code 0 means a challenger was promoted to @{alias}, 3 that the champion was kept (the
task is then marked skipped), anything else a failure. The decision and both scores are in
the task log (JSON) and in the registry: `modelport models show {name} --json`.
"""

_TEMPLATE = '''{doc}

from datetime import datetime, timedelta

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
try:
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:
    from airflow.operators.bash import BashOperator

MODEL = {model}
SPEC = {spec}

with DAG(
    dag_id={dag_id},
    schedule={cron},
    start_date=datetime({start.year}, {start.month}, {start.day}),
    catchup=False,
    max_active_runs=1,
    tags=["modelport", "retrain"],
    doc_md=__doc__,
) as dag:
    retrain = BashOperator(
        task_id="retrain",
        bash_command={command},
        env={env},
        append_env=True,
        skip_on_exit_code=3,
        execution_timeout=timedelta(seconds={timeout_s!r}),
    )
'''


def jinja_text(text: str) -> str:
    """``text`` written so that Airflow's Jinja rendering gives it back exactly.

    Every ``{`` becomes the expression ``{{ '{' }}``, so no ``{{``, ``{%`` or ``{#`` can
    open; a carriage return, which Jinja turns into a newline, becomes ``{{ '\\r' }}``;
    text ending in a newline (Jinja drops the last one) or in ``.sh``/``.bash`` (which
    Airflow would load as a template file) gets an empty expression after it.
    """
    out = text.replace("{", "{{ '{' }}").replace("\r", "{{ '\\r' }}")
    if out.endswith(("\n", *_TEMPLATE_EXT)):
        out += "{{ '' }}"
    return out


def _literal(text: str) -> str:
    """A Python literal of ``text`` for a field Airflow renders with Jinja."""
    return python_literal(jinja_text(text))


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
    doc = docstring(_DOC.format(name=comment_text(loaded.name),
                                alias=comment_text(loaded.promotion.alias)))
    env_literal = "{" + ", ".join(f"{python_literal(k)}: {_literal(v)}"
                                  for k, v in variables.items()) + "}"
    return _TEMPLATE.format(
        doc=doc, model=python_literal(loaded.name), spec=python_literal(str(path)),
        dag_id=python_literal(dag_id), cron=python_literal(cron), start=datetime.now(UTC),
        command=_literal(bash), env=env_literal, timeout_s=float(timeout_s))
