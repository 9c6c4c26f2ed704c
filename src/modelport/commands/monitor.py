"""``modelport monitor`` and ``feedback``: a model's drift and performance over time, from
its prediction log and the labels that arrived later."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from modelport.commands.base import JsonOpt, print_json

LOG_ENV = "MODELPORT_LOG"
LogOpt = Annotated[str | None, typer.Option(
    "--log", help="the prediction log: SQLAlchemy URL with the table after '#', e.g. "
    "sqlite:///logs.db#predictions (default: $MODELPORT_LOG)")]


def _log_url(given: str | None, rules: dict | None = None) -> str:
    from modelport.errors import UserError

    url = given or (rules or {}).get("log") or os.environ.get(LOG_ENV)
    if not url:
        raise UserError("say where the prediction log is: --log sqlite:///logs.db#predictions "
                        f"(or set {LOG_ENV})")
    return url


def monitor_cmd(
    model: Annotated[str | None, typer.Argument(
        help="churn, churn/3 or churn@production (default: the model the --check file names)")
    ] = None,
    log: LogOpt = None,
    window: Annotated[str | None, typer.Option(
        help="length of each time window: 30m, 6h, 1d, 1w (default 1d)")] = None,
    since: Annotated[str | None, typer.Option(
        help="start: an ISO date/time (UTC) or a duration back from now, e.g. 7d "
             "(default: 30 windows back)")] = None,
    until: Annotated[str | None, typer.Option(help="end: ISO date/time (default: now)")]
    = None,
    reference: Annotated[str | None, typer.Option(
        help="compare with: training (the version's training statistics) or a VERSION "
             "number of the same model")] = None,
    threshold: Annotated[list[str] | None, typer.Option(
        help="drift threshold STAT=VALUE: psi=0.2, ks=0.1, chi2_p=0.01 (repeatable)")] = None,
    detector: Annotated[str | None, typer.Option(
        help="change-point detector over the score and error streams: adwin (default), "
             "kswin, page-hinkley or none (needs the online extra)")] = None,
    html: Annotated[Path | None, typer.Option(
        "--html", help="also write a self-contained HTML report with charts here")] = None,
    check: Annotated[Path | None, typer.Option(
        "--check", help="rules file (YAML): exit with code 3 when a rule fires, after "
        "running its on_alert")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="with --check: report what fired but do not run on_alert")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Drift, performance, volumes, latency and errors of a model over time, from its
    prediction log and the labels fed back."""
    from modelport.errors import UserError
    from modelport.monitor import alerts, report
    from modelport.monitor.analysis import analyse
    from modelport.monitor.drift import parse_thresholds

    config = alerts.load_rules_file(check) if check is not None else None
    model = model or (config or {}).get("model")
    if not model:
        raise UserError("name the model to monitor (e.g. modelport monitor churn@production "
                        "--log URL) or give a --check file that names it")

    def pick(given: Any, key: str, default: Any) -> Any:
        return given if given is not None else (config or {}).get(key) or default

    thresholds = parse_thresholds((config or {}).get("thresholds"))
    for item in threshold or []:  # the command line wins over the rules file
        key = item.partition("=")[0].strip()
        thresholds[key] = parse_thresholds([item])[key]
    det = pick(detector, "detector", "adwin")
    settings = {
        "model": str(model), "log": _log_url(log, config),
        "window": str(pick(window, "window", "1d")), "since": pick(since, "since", None),
        "until": pick(until, "until", None),
        "reference": str(pick(reference, "reference", "training")),
        "detector": None if str(det).lower() == "none" else str(det),
    }
    outcome = None
    if config is not None:
        config = {**config, **settings, "thresholds": thresholds}
        outcome = alerts.check(config, act=not dry_run)
        data = outcome["report"]
    else:
        data = analyse(settings["model"], settings["log"], window=settings["window"],
                       since=settings["since"], until=settings["until"],
                       reference=settings["reference"], thresholds=thresholds,
                       detector=settings["detector"])
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        tmp = html.with_name(f".{html.name}.tmp")
        tmp.write_text(report.to_html(data, outcome), encoding="utf-8")
        os.replace(tmp, html)
    if as_json:
        sys.stdout.write(report.to_json(data, outcome) + "\n")
    else:
        report.print_terminal(data, outcome=outcome)
        if html is not None:
            typer.echo(f"HTML report: {html}")
    if outcome is not None and outcome["fired"]:
        raise typer.Exit(alerts.ALERT_EXIT_CODE)


def feedback_cmd(
    model: Annotated[str, typer.Argument(help="the model the labels are for: churn")],
    input: Annotated[str, typer.Option(
        "--input", help="labels: a file (.csv/.parquet/.jsonl), a SQL URL with #table, or a "
        "broker URL (JSON events)")],
    id: Annotated[str, typer.Option("--id", help="the column (or event field) holding the id "
                                    "the predictions were logged with")],
    label: Annotated[str, typer.Option("--label", help="the column holding the true label "
                                       "(or value, for a regression)")],
    log: LogOpt = None,
    follow: Annotated[bool, typer.Option(
        help="for a stream: keep reading until interrupted instead of stopping when quiet")]
    = False,
    idle_seconds: Annotated[float, typer.Option(
        help="for a stream: stop after this long without a message")] = 5.0,
    as_json: JsonOpt = False,
) -> None:
    """Store ground-truth labels that arrived later, to be joined to logged predictions by
    id (modelport monitor then scores the model per window)."""
    from modelport.monitor.feedback import ingest
    from modelport.registry import Registry
    from modelport.uri import ModelURI

    name = ModelURI.parse(model).name
    Registry().get(name)  # an unknown model fails here, not after reading the labels
    result = ingest(name, input, log_url=_log_url(log), id=id, label=label, follow=follow,
                    idle_seconds=idle_seconds)
    if as_json:
        print_json({"model": name, "stored": result.rows, "skipped": result.skipped,
                     "source": result.source, "seconds": result.seconds})
    else:
        typer.echo(result.summary())
