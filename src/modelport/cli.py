"""The ``modelport`` command line: a thin layer over the Python API.

This module builds the Typer app from the command modules in :mod:`modelport.commands`,
every command and group in one list, in the order ``modelport --help`` shows them. User
errors print one line on stderr and exit with code 2. Nothing heavy is imported until a
command runs, so ``modelport --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import typer

from modelport.commands import (
    batch,
    export,
    learn,
    models,
    monitor,
    register,
    retrain,
    serve,
    stream,
    trigger,
    ui,
)

#: every command (a function) and group (a Typer app of sub-commands), by name; Typer lists
#: the commands before the groups, each in this order
COMMANDS: tuple[tuple[str, Callable[..., Any] | typer.Typer], ...] = (
    ("import", register.import_cmd),
    ("train", register.train_cmd),
    ("quickstart", register.quickstart_cmd),
    ("predict", batch.predict_cmd),
    ("lookup", batch.lookup_cmd),
    ("serve", serve.serve_cmd),
    ("stream", stream.stream_cmd),
    ("export", export.export_cmd),
    ("retrain", retrain.retrain_cmd),
    ("airflow-dag", retrain.airflow_dag_cmd),
    ("learn", learn.learn_cmd),
    ("monitor", monitor.monitor_cmd),
    ("feedback", monitor.feedback_cmd),
    ("ui", ui.ui_cmd),
    ("models", models.app),
    ("trigger", trigger.app),
    ("schedule", retrain.schedule_app),
    ("scheduler", retrain.scheduler_app),
)


def build() -> typer.Typer:
    """The ``modelport`` Typer app with every command of :data:`COMMANDS` registered."""
    built = typer.Typer(
        help="Take a trained machine-learning model into production, from one registry.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for name, command in COMMANDS:
        if isinstance(command, typer.Typer):
            built.add_typer(command, name=name)
        else:
            built.command(name)(command)
    return built


app = build()


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    from modelport.errors import UserError

    # OpenMP threads that spin while waiting slow tree training many times over on
    # machines with few cores; waiting passively costs nothing measurable.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        app()
    except UserError as exc:
        typer.echo(f"modelport: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("modelport: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
