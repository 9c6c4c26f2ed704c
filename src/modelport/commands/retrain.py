"""``modelport retrain``, ``schedule ...``, ``scheduler run`` and ``airflow-dag``: retrain
on fresh data and promote only a better challenger, on a schedule or from Airflow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelport.commands.base import JsonOpt, log_to_stderr, print_json, rich_console

schedule_app = typer.Typer(help="Run retrain specs and monitoring checks on cron schedules "
                           "kept in the registry database.", no_args_is_help=True)
scheduler_app = typer.Typer(help="The embedded scheduler that runs the schedules.",
                            no_args_is_help=True)


def retrain_cmd(
    spec: Annotated[Path, typer.Argument(help="the training spec (with automl and promotion "
                                         "sections)")],
    engine: Annotated[str | None, typer.Option(
        help="AutoML engine: flaml, optuna or tpot (overrides automl.engine)")] = None,
    budget: Annotated[float | None, typer.Option(
        help="AutoML time budget in seconds (overrides automl.time_budget_s)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Retrain on fresh data and promote the challenger only if it beats the champion on the
    same hold-out rows. Exit code: 0 promoted, 3 kept, 1 failed (2 for a mistake in the spec
    or the data)."""
    from modelport.train.retrain import exit_code, retrain, summary_line

    log_to_stderr()
    result = retrain(spec, engine=engine, time_budget_s=budget)
    if as_json:
        print_json(result)
    else:
        typer.echo(summary_line(result))
    raise typer.Exit(exit_code(result))


@schedule_app.command("add")
def schedule_add(
    name: Annotated[str, typer.Argument(help="the schedule's name")],
    cron: Annotated[str, typer.Option(help="when, in UTC: '0 3 * * *', @daily, or six fields "
                                      "with seconds first ('*/30 * * * * *')")],
    spec: Annotated[Path | None, typer.Option(help="a retrain spec to run")] = None,
    check: Annotated[Path | None, typer.Option(help="a monitoring rules file to check")] = None,
    missed: Annotated[str, typer.Option(
        help="missed runs: skip, once (run the latest once) or all")] = "once",
    grace: Annotated[float, typer.Option(
        help="seconds a run may start late before it counts as missed")] = 60.0,
    timeout: Annotated[float, typer.Option(help="seconds before a run is killed")] = 3600.0,
    replace: Annotated[bool, typer.Option(help="overwrite a schedule of the same name")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Schedule a retrain spec (--spec) or a monitoring check (--check)."""
    from modelport.train import schedule

    s = schedule.add(name, spec=spec, check=check, cron=cron, missed=missed, grace_s=grace,
                     timeout_s=timeout, replace=replace)
    if as_json:
        print_json(s.to_dict())
        return
    typer.echo(f"scheduled {s.name}: {s.kind} {s.path} on '{s.cron}' (UTC); next run "
               f"{s.next_run_at.isoformat(timespec='seconds')}; start a scheduler with "
               "'modelport scheduler run'")


@schedule_app.command("list")
def schedule_list(as_json: JsonOpt = False) -> None:
    """List schedules with their next run and last run."""
    from modelport.train import schedule

    rows = schedule.list_schedules()
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no schedules (add one with: modelport schedule add NAME --spec SPEC.yaml "
                   "--cron '0 3 * * *')")
        return
    from rich.table import Table

    table = Table("name", "kind", "cron", "missed", "next run (UTC)", "last run", "file")
    for r in rows:
        last = r["last_run"]
        table.add_row(r["name"], r["kind"], r["cron"], r["missed"], r["next_run_at"][:19],
                      f"{last['status']} {(last['due_at'] or '')[:19]}" if last else "-",
                      r["path"])
    rich_console().print(table)


@schedule_app.command("remove")
def schedule_remove(name: Annotated[str, typer.Argument(help="the schedule to delete")]) -> None:
    """Delete a schedule; its run history is kept."""
    from modelport.train import schedule

    schedule.remove(name)
    typer.echo(f"removed schedule {name}")


@schedule_app.command("history")
def schedule_history(
    name: Annotated[str | None, typer.Argument(help="one schedule (default: all)")] = None,
    limit: Annotated[int, typer.Option(help="most runs shown, newest first")] = 20,
    log: Annotated[bool, typer.Option("--log", help="include each run's output")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show past runs: when each was due, who ran it, how it ended, its result and log."""
    from modelport.train import schedule

    runs = schedule.history(name, limit=limit, with_log=log)
    if as_json:
        print_json(runs)
        return
    if not runs:
        typer.echo("no runs yet")
        return
    from rich.table import Table

    table = Table("run", "schedule", "due (UTC)", "status", "exit", "result", "by")
    for r in runs:
        result = r["result"] or {}
        what = result.get("decision") or result.get("error") or result.get("reason") or ""
        table.add_row(str(r["id"]), r["schedule"], (r["due_at"] or "")[:19], r["status"],
                      "" if r["exit_code"] is None else str(r["exit_code"]), str(what)[:60],
                      r["owner"] or "")
    rich_console().print(table)
    if log:
        for r in runs:
            typer.echo(f"--- run {r['id']} ({r['schedule']}, due {r['due_at']}) ---")
            typer.echo(r.get("log") or "")


@scheduler_app.command("run")
def scheduler_run(
    max_jobs: Annotated[int, typer.Option(help="jobs this scheduler runs at once")] = 1,
    poll: Annotated[float, typer.Option(help="seconds between looks for due jobs")] = 1.0,
    duration: Annotated[float | None, typer.Option(
        "--for", help="stop after this many seconds, letting running jobs finish")] = None,
    once: Annotated[bool, typer.Option(help="run what is due now, then exit")] = False,
    lease: Annotated[float, typer.Option(
        help="seconds a running job stays this scheduler's without renewal; after that "
             "another scheduler marks it lost")] = 30.0,
) -> None:
    """Run due schedules until stopped. Several schedulers may share a registry: each due
    run is executed by exactly one of them."""
    import json

    from modelport.train.schedule import Scheduler

    log_to_stderr()
    stats = Scheduler(max_jobs=max_jobs, poll_s=poll, lease_s=lease).run(duration_s=duration,
                                                                        once=once)
    typer.echo(f"modelport: scheduler stopped; {json.dumps(stats)}", err=True)


def airflow_dag_cmd(
    spec: Annotated[Path, typer.Argument(help="the retrain spec the DAG runs")],
    cron: Annotated[str, typer.Option(help="the DAG's schedule, e.g. '0 3 * * *' or @daily")],
    dag_id: Annotated[str | None, typer.Option(help="default: NAME_retrain")] = None,
    command: Annotated[str | None, typer.Option(
        help="how the Airflow worker runs modelport (default: this Python with -m modelport)")
    ] = None,
    env: Annotated[list[str] | None, typer.Option(
        help="NAME=VALUE set for the task (repeatable); MODELPORT_* variables set here are "
             "passed on by default")] = None,
    no_env: Annotated[bool, typer.Option(
        "--no-env", help="do not pass this shell's MODELPORT_* variables to the task")] = False,
    timeout: Annotated[float, typer.Option(help="seconds before Airflow stops the task")]
    = 3600.0,
) -> None:
    """Print an Airflow DAG (standard BashOperator) that runs 'modelport retrain SPEC' on a
    schedule; redirect it into your dags folder."""
    from modelport.train.airflow import dag_source

    typer.echo(dag_source(spec, cron=cron, dag_id=dag_id, command=command, env=env or [],
                          inherit_env=not no_env, timeout_s=timeout), nl=False)
