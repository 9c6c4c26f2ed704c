"""``modelport trigger``: score rows of a database table when they are inserted or updated,
by a worker draining a trigger-filled queue or by the model compiled to SQL."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from modelport.commands.base import (
    JsonOpt,
    LogOpt,
    LogSampleOpt,
    log_to_stderr,
    open_registry,
    print_json,
    rich_console,
)

app = typer.Typer(help="Score rows of a database table automatically when they are "
                  "inserted or updated (PostgreSQL, MariaDB/MySQL, SQLite).",
                  no_args_is_help=True)
DbOpt = Annotated[str, typer.Option("--db", help="database URL: postgresql://user@host/db, "
                                    "mysql://root@host:3306/db or sqlite:///app.db")]


@app.command("install")
def trigger_install(
    uri: Annotated[str, typer.Argument(help="model to score with: churn, churn/3, churn@production")],
    db: DbOpt,
    table: Annotated[str, typer.Option(help="the table whose rows are scored")],
    key: Annotated[str, typer.Option(help="the table's unique key column")],
    output_column: Annotated[str, typer.Option(
        help="score column (added if missing), with <name>_version and <name>_scored_at")],
    on: Annotated[str, typer.Option(help="events that score a row: insert, update or both")]
    = "insert,update",
    columns: Annotated[list[str] | None, typer.Option(
        help="map a model input to a differently named column: input=column (repeatable)")]
    = None,
    mode: Annotated[str, typer.Option(
        help="worker (a queue drained by 'modelport trigger run'), sql (the model "
             "compiled to SQL, run by the database itself) or native (PostgreSQL: the "
             "model compiled to C, loaded as a function; needs a superuser and the "
             "server's headers)")] = "worker",
    upgrade: Annotated[bool, typer.Option(
        help="re-install over an existing installation (e.g. after an alias moved)")] = False,
    backfill: Annotated[bool, typer.Option(help="also score rows that have no score yet")]
    = True,
    explain: Annotated[str | None, typer.Option(
        "--explain", help="SQL and native modes, linear models: also write each row's N largest reasons "
                          "in <output>_reason_1..N (the input column) and "
                          "<output>_contribution_1..N", metavar="N")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Install scoring on a table: a queue and enqueue triggers (worker mode), or the model
    compiled to SQL (SQL mode) or to C (native mode, PostgreSQL) in a function and trigger,
    checked against the native model on the registered sample first."""
    from dataclasses import asdict

    from modelport.serve.trigger import install

    # install parses the comma-separated --on text itself, though it is typed for a list
    inst = install(uri, db, table=table, key=key, output=output_column,
                   on=on,  # type: ignore[arg-type]
                   columns=columns, mode=mode, upgrade=upgrade, backfill=backfill,
                   explain=explain, registry=open_registry())
    if as_json:
        print_json({k: v for k, v in asdict(inst).items() if k != "drops"})
        return
    typer.echo(f"installed {inst.model} (version {inst.version}) on {table} in {inst.mode} "
               f"mode: scores in {', '.join([inst.output] + [c for c in inst.added_columns if c != inst.output])}")
    if inst.mode == "worker":
        from modelport.io.tables import redact

        # the password stays out of terminals and logs: the reader supplies it again
        typer.echo(f"start a worker: modelport trigger run --db '{redact(db)}'")


@app.command("run")
def trigger_run(
    db: DbOpt,
    table: Annotated[list[str] | None, typer.Option(
        help="only these tables (repeatable; default: every worker-mode installation)")] = None,
    batch: Annotated[int, typer.Option(help="most rows claimed and scored in one transaction")]
    = 2000,
    poll_ms: Annotated[float, typer.Option(
        help="how often an idle worker looks at the queue (MariaDB, SQLite; PostgreSQL "
             "is woken by NOTIFY)")] = 20.0,
    reload_seconds: Annotated[float, typer.Option(
        help="how often to check whether the model URI points at a new version")] = 2.0,
    once: Annotated[bool, typer.Option(help="drain the queues, then exit")] = False,
    strict: Annotated[bool, typer.Option(
        help="give an unseen category or a number outside the training range an error "
             "status (default: score it, status ok, counted as a warning)")] = False,
    unseen_categories: Annotated[str | None, typer.Option(
        help="flag (score and count; 'warn' is the same) or reject (error status)")] = None,
    out_of_range: Annotated[str | None, typer.Option(
        help="flag (score and count; 'warn' is the same) or reject (error status)")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        help="serve Prometheus metrics on 127.0.0.1:PORT")] = None,
    log: LogOpt = None,
    log_sample: LogSampleOpt = 1.0,
) -> None:
    """Run a worker: score queued rows in batches, writing each batch's scores and removing
    its queue entries in one transaction. Several workers may share one database."""
    from modelport.scoring.checks import InputPolicy
    from modelport.serve.trigger import WorkerSettings, run_settings

    settings = WorkerSettings(
        db, tables=table or None, batch=batch, poll_ms=poll_ms, reload_seconds=reload_seconds,
        once=once, log_url=log, log_sample=log_sample,
        policy=InputPolicy.of(strict, unseen_categories, out_of_range),
        metrics_port=metrics_port)
    log_to_stderr()
    stats = run_settings(settings, registry=open_registry())
    typer.echo(f"modelport: stopped; {json.dumps(stats.as_dict())}", err=True)


@app.command("status")
def trigger_status(db: DbOpt, as_json: JsonOpt = False) -> None:
    """Show each table scored in the database: model, mode, rows scored, queued, errors."""
    from modelport.serve.trigger import status

    rows = status(db)
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no trigger scoring installed in this database")
        return
    from rich.table import Table

    out = Table("table", "model", "mode", "version", "rows", "scored", "queued", "errors")
    for r in rows:
        out.add_row(r["table"], r["model"], r["mode"], str(r["version"]), str(r["rows"]),
                    str(r["scored"]), str(r.get("queued", "-")), str(r.get("errors", "-")))
    rich_console().print(out)


@app.command("uninstall")
def trigger_uninstall(
    db: DbOpt,
    table: Annotated[str | None, typer.Option(help="the table to stop scoring (default: all)")]
    = None,
    keep_scores: Annotated[bool, typer.Option(
        help="keep the score columns that install added, with their values")] = False,
) -> None:
    """Remove what install created (triggers, functions, queue, added columns) and nothing
    else."""
    from modelport.serve.trigger import uninstall

    for name in uninstall(db, table, keep_scores=keep_scores):
        typer.echo(f"uninstalled trigger scoring from {name}")
