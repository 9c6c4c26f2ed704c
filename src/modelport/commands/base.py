"""What every command module uses: the registry, ``--json`` output, Rich tables, logging to
stderr, and the options several commands share (so their flags and help read the same).

Nothing heavy is imported here: the registry and Rich load when a command asks for them.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from modelport.registry import Registry

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
LogOpt = Annotated[str | None, typer.Option(
    "--log", help="log predictions for modelport monitor to this SQL table: SQLAlchemy URL "
    "with the table after '#', e.g. sqlite:///logs.db#predictions")]
LogSampleOpt = Annotated[float, typer.Option(
    "--log-sample", help="share of predictions to log, more than 0 and at most 1")]


def open_registry() -> Registry:
    """The registry that ``MODELPORT_HOME`` / ``MODELPORT_REGISTRY`` name."""
    from modelport.registry import Registry

    return Registry()


def print_json(data: Any) -> None:
    """Write ``data`` to standard output as indented JSON: what ``--json`` prints."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def rich_console() -> Console:
    """A Rich console for the tables a command prints (Rich is imported only then)."""
    from rich.console import Console

    return Console()


def log_to_stderr() -> None:
    """Send INFO log lines to stderr as ``modelport: ...``, for long-running commands
    (workers, schedulers, learners) whose progress is their log."""
    import logging

    logging.basicConfig(level=logging.INFO, format="modelport: %(message)s")
