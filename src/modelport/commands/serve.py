"""``modelport serve``: registered models behind HTTP, under uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelport.commands.base import LogOpt, LogSampleOpt


def serve_cmd(
    uris: Annotated[list[str], typer.Argument(help="models to serve: churn, churn/3, churn@production")],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
    max_batch_size: Annotated[int, typer.Option(help="most rows scored in one call")] = 64,
    max_latency_ms: Annotated[float, typer.Option(
        help="longest a request may wait for others to join its batch, under load "
             "(0: never wait; batches still form while the model is busy)")] = 0.0,
    token_file: Annotated[Path | None, typer.Option(help="file holding the bearer token")] = None,
    canary: Annotated[list[str] | None, typer.Option(
        help="NAME@ALIAS:PERCENT: send that share of NAME's requests to another version")] = None,
    shadow: Annotated[list[str] | None, typer.Option(
        help="NAME@ALIAS: mirror NAME's requests to another version and only log its answers")] = None,
    poll_seconds: Annotated[float, typer.Option(
        help="how often to look for alias moves and new versions (0: never)")] = 2.0,
    max_body_bytes: Annotated[int, typer.Option(help="larger request bodies get 413")] = 10 * 2**20,
    body_timeout: Annotated[float, typer.Option(
        help="seconds a request body may take to arrive in full; slower ones get 408")] = 30.0,
    strict: Annotated[bool, typer.Option(
        help="answer 422 for an unseen category or a number outside the training range "
             "(default: score it and flag it in the modelport-warnings header)")] = False,
    unseen_categories: Annotated[str | None, typer.Option(
        help="flag (score and warn; 'warn' is the same) or reject (422)")] = None,
    out_of_range: Annotated[str | None, typer.Option(
        help="flag (score and warn; 'warn' is the same) or reject (422)")] = None,
    format: Annotated[str | None, typer.Option(
        help="artefact to serve (default: the accepted one that scored a row fastest at "
             "registration; see 'modelport models show')")] = None,
    prediction_log: Annotated[str | None, typer.Option(
        help="module:function called with every prediction, off the request path")] = None,
    lookup_store: Annotated[str | None, typer.Option(help="where batch scores are stored")] = None,
    feature_table: Annotated[str | None, typer.Option(
        help="table of current features, for /lookup?refresh=true")] = None,
    access_log: Annotated[bool, typer.Option(help="one JSON line per request")] = True,
    log: LogOpt = None,
    log_sample: LogSampleOpt = 1.0,
    ui: Annotated[bool, typer.Option(
        "--ui", help="also serve the operations console under /ui (writes need "
        "--token-file)")] = False,
) -> None:
    """Serve models over HTTP: Open Inference Protocol v2, MLflow, KServe v1 and JSON."""
    from modelport.serve.http.server import run
    from modelport.serve.http.settings import ServeSettings

    settings = ServeSettings(
        uris=tuple(uris), host=host, port=port, workers=workers, ui=ui,
        max_batch_size=max_batch_size, max_latency_ms=max_latency_ms,
        token_file=str(token_file) if token_file else None, canary=tuple(canary or ()),
        shadow=tuple(shadow or ()), poll_seconds=poll_seconds, max_body_bytes=max_body_bytes,
        body_timeout_s=body_timeout, strict=strict, unseen_categories=unseen_categories,
        out_of_range=out_of_range, format=format, prediction_log=prediction_log,
        lookup_store=lookup_store, feature_table=feature_table, access_log=access_log,
        log_url=log, log_sample=log_sample)
    settings.check()  # a mistake fails here, once, not in every worker
    typer.echo(f"modelport: serving {', '.join(uris)} on http://{host}:{port} "
               f"({workers} worker(s))", err=True)
    run(settings)
