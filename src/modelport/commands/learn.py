"""``modelport learn``: online learning from a stream, with checkpoints in the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelport.commands.base import JsonOpt, log_to_stderr, print_json


def learn_cmd(
    spec: Annotated[Path, typer.Argument(help="online learning spec (YAML)")],
    as_json: JsonOpt = False,
    follow: Annotated[bool, typer.Option(
        "--follow", help="keep waiting for new events at the end of a file, table or stream "
        "(stop with SIGTERM or Ctrl-C)")] = False,
    fresh: Annotated[bool, typer.Option(
        "--fresh", help="ignore the model's checkpoints and learn from the start of the "
        "source")] = False,
    metrics_port: Annotated[int | None, typer.Option(
        help="serve Prometheus metrics on 127.0.0.1:PORT")] = None,
    engine: Annotated[str, typer.Option(
        help="local, or spark: learn on a Spark Structured Streaming query with MLlib's "
             "streaming algorithms (parameters under spark: in the spec)")] = "local",
) -> None:
    """Learn online from a stream of events, with checkpoints in the registry.

    Reads a file, a SQL table or a broker stream, predicts each event and then learns it,
    registers checkpoints, promotes those that score no worse than the serving version, and
    resumes from the last checkpoint after a crash.
    """
    from modelport.errors import UserError
    from modelport.train.online import learn
    from modelport.train.online.spec import load_spec

    log_to_stderr()
    if engine not in ("local", "spark"):
        raise UserError(f"--engine {engine!r} is not known: use local or spark")
    checked = load_spec(spec)
    if engine == "spark":
        from modelport.train.online.spark import learn_spark

        result = learn_spark(checked, follow=follow, fresh=fresh)
    elif checked.source.kind == "folder":
        raise UserError(f"{spec}: source: {checked.source.url} is a folder, which "
                        "--engine spark reads as a stream of files; add --engine spark, or "
                        "name one file")
    else:
        result = learn(spec, follow=follow, fresh=fresh, metrics_port=metrics_port)
    if as_json:
        print_json(result.as_dict())
        return
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in result.prequential.items()) or "-"
    typer.echo(f"learnt {result.learned} of {result.events} events "
               f"({result.events_per_s:,.0f} events/s); prequential {metrics}")
    if result.rejected or result.unlabelled or result.duplicates or result.expired:
        typer.echo(f"skipped: {result.rejected} unreadable or bad, {result.unlabelled} "
                   f"without label, {result.duplicates} delivered again, {result.expired} "
                   "labels never came")
    if result.checkpoints:
        typer.echo(f"checkpoints: {', '.join(f'{result.name}/{v}' for v in result.checkpoints)}"
                   + (f"; promoted: {', '.join(map(str, result.promoted))}"
                      if result.promoted else ""))
