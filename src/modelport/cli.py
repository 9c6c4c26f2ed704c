"""The ``modelport`` command line: a thin layer over the Python API.

User errors print one line on stderr and exit with code 2. Nothing heavy is imported until
a command runs, so ``modelport --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Take a trained machine-learning model into production, from one registry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List, inspect, alias, roll back and delete registered models.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
LogOpt = Annotated[str | None, typer.Option(
    "--log", help="log predictions for modelport monitor to this SQL table: SQLAlchemy URL "
    "with the table after '#', e.g. sqlite:///logs.db#predictions")]
LogSampleOpt = Annotated[float, typer.Option(
    "--log-sample", help="share of predictions to log, more than 0 and at most 1")]


def _registry():
    from modelport.registry import Registry

    return Registry()


def print_json(data) -> None:
    """Write ``data`` to standard output as indented JSON: what ``--json`` prints."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def rich_console():
    """A Rich console for the tables a command prints (Rich is imported only then)."""
    from rich.console import Console

    return Console()


# -- models ------------------------------------------------------------------------------

@models_app.command("list")
def models_list(as_json: JsonOpt = False) -> None:
    """List registered models with their latest version and aliases."""
    rows = _registry().list_models()
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no models registered yet (try: modelport quickstart)")
        return
    from rich.table import Table

    table = Table("model", "versions", "latest", "aliases", "created")
    for r in rows:
        aliases = ", ".join(f"@{a}={v}" for a, v in sorted(r["aliases"].items()))
        table.add_row(r["name"], str(r["versions"]), str(r["latest_version"] or "-"), aliases,
                      (r["created_at"] or "")[:19])
    rich_console().print(table)


@models_app.command("show")
def models_show(uri: Annotated[str, typer.Argument(help="churn, churn/3 or churn@production")],
                as_json: JsonOpt = False) -> None:
    """Show a model (its versions and alias history) or one version (signature, metrics,
    each format's parity figures)."""
    from modelport.uri import ModelURI

    reg = _registry()
    u = ModelURI.parse(uri)
    if u.version is None and u.alias is None:
        versions = reg.versions(u.name)
        data = {
            "name": u.name,
            "aliases": reg.aliases(u.name),
            "versions": [v.to_dict() for v in versions],
            "alias_history": reg.alias_history(u.name),
            "events": reg.events(u.name),
        }
        if as_json:
            print_json(data)
            return
        _show_model(data)
        return
    from modelport.scoring.choice import describe

    version = reg.get(u)
    data = version.to_dict()
    # what the surfaces will score with: the scoring core's own choice, not a guess
    data["serving"] = describe(version)
    data["serving_format"] = data["serving"]["row"]["format"]
    if as_json:
        print_json(data)
        return
    _show_version(data)


def _show_model(data: dict) -> None:
    from rich.table import Table

    console = rich_console()
    aliases = ", ".join(f"@{a} -> {v}" for a, v in sorted(data["aliases"].items())) or "none"
    console.print(f"[bold]{data['name']}[/]  aliases: {aliases}")
    table = Table("version", "created", "task", "metrics", "formats", "aliases")
    for v in data["versions"]:
        metrics = ", ".join(f"{k}={_num(x)}" for k, x in v["metrics"].items())
        fmts = ", ".join(f for f, a in v["formats"].items() if a["status"] == "accepted")
        table.add_row(str(v["version"]), v["created_at"][:19], v["task"], metrics, fmts,
                      ", ".join(v["aliases"]))
    console.print(table)
    if data["alias_history"]:
        hist = Table("alias", "action", "from", "to", "at", "by", "reason", title="alias history")
        for e in data["alias_history"]:
            hist.add_row(e["alias"], e["action"], str(e["from_version"] or "-"),
                         str(e["to_version"] or "-"), (e["at"] or "")[:19], e["by"] or "",
                         e["reason"] or "")
        console.print(hist)


def _show_version(v: dict) -> None:
    from rich.table import Table

    console = rich_console()
    aliases = " ".join(f"@{a}" for a in v["aliases"])
    console.print(f"[bold]{v['uri']}[/] {aliases}  task={v['task']}  created {v['created_at'][:19]}"
                  f" by {v['created_by']}")
    if v["metrics"]:
        console.print("metrics: " + ", ".join(f"{k}={_num(x)}" for k, x in v["metrics"].items()))
    sig = v["signature"]
    inputs = Table("input", "kind", "dtype", "nullable", "range / categories", title="signature")
    for c in sig["inputs"]:
        if c["kind"] == "categorical":
            cats = c.get("categories") or []
            detail = ", ".join(cats[:6]) + (f" (+{len(cats) - 6})" if len(cats) > 6 else "")
        else:
            detail = f"{_num(c.get('min'))} .. {_num(c.get('max'))}"
        inputs.add_row(c["name"], c["kind"], c["dtype"], "yes" if c.get("nullable") else "no",
                       detail)
    console.print(inputs)
    if sig.get("classes") is not None:
        console.print(f"classes: {sig['classes']}")
    fmts = Table("format", "status", "max abs diff", "label flips", "rows", "size",
                 "1-row µs", "reason", title="formats (parity on the registered sample)")
    for name, a in v["formats"].items():
        p = a.get("parity") or {}
        fmts.add_row(name, a["status"], _num(p.get("max_abs_diff")),
                     str(p.get("label_flips", "-")), str(p.get("rows", "-")),
                     str(a.get("size") or "-"), _num(p.get("single_row_us")),
                     (a.get("reason") or "")[:80])
    console.print(fmts)
    for purpose, surfaces in (("row", "HTTP, streams, triggers"), ("batch", "batch jobs")):
        chosen = (v.get("serving") or {}).get(purpose)
        if chosen:
            console.print(f"scores with ({surfaces}): {chosen['format'] or 'nothing'}: "
                          f"{chosen['why']}")
    lineage = {k: v["lineage"].get(k) for k in ("estimator", "source", "rows") if k in v["lineage"]}
    console.print(f"data fingerprint: {v['data_fingerprint']}  parent: {v['parent_version']}"
                  + (f"  lineage: {lineage}" if lineage else ""))


def _num(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


@models_app.command("alias")
def models_alias(
    name: str,
    version: Annotated[int, typer.Argument(help="the version the alias should point to")],
    alias: str,
    reason: Annotated[str | None, typer.Option(help="why (kept in the alias history)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Point NAME@ALIAS at VERSION."""
    v = _registry().set_alias(name, version, alias, reason=reason)
    if as_json:
        print_json({"name": name, "alias": alias, "version": v.version})
    else:
        typer.echo(f"{name}@{alias} -> {v.version}")


@models_app.command("rollback")
def models_rollback(
    target: Annotated[str, typer.Argument(help="NAME@ALIAS (or NAME, with ALIAS after it)")],
    alias: Annotated[str | None, typer.Argument()] = None,
    reason: Annotated[str | None, typer.Option(help="why (kept in the alias history)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Move an alias back to the version it pointed to before."""
    from modelport.errors import UserError

    name = target
    if "@" in target:
        name, alias = target.split("@", 1)
    if not alias:
        raise UserError("say which alias to roll back: modelport models rollback churn@production")
    v = _registry().rollback(name, alias, reason=reason)
    if as_json:
        print_json({"name": name, "alias": alias, "version": v.version})
    else:
        typer.echo(f"{name}@{alias} rolled back -> {v.version}")


@models_app.command("delete")
def models_delete(
    uri: Annotated[str, typer.Argument(help="NAME/VERSION, or NAME for the whole model")],
    force: Annotated[bool, typer.Option("--force", help="also remove aliases that point to it")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="confirm deleting a whole model")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete one version, or a whole model with --yes."""
    from modelport.errors import UserError
    from modelport.uri import ModelURI

    u = ModelURI.parse(uri)
    if u.alias is not None:
        raise UserError(f"delete takes NAME/VERSION or NAME, not an alias ({uri})")
    if u.version is None and not yes:
        raise UserError(f"deleting every version of {u.name!r} needs --yes")
    deleted = _registry().delete(u.name, u.version, force=force)
    if as_json:
        print_json({"name": u.name, "deleted_versions": deleted})
    else:
        typer.echo(f"deleted {u.name} version(s) {', '.join(map(str, deleted)) or '-'}")


# -- registering and training ------------------------------------------------------------

@app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(
        help="a .onnx, .pmml, H2O MOJO .zip or H2O POJO .java file, or a folder holding a "
             ".onnx file and its external data")],
    name: Annotated[str, typer.Option("--name", help="the model's registry name")],
    format: Annotated[str | None, typer.Option(
        help="onnx, pmml, mojo or pojo (default: from extension)")] = None,
    sample: Annotated[str | None, typer.Option(
        help="the model's training rows (file or URL): the signature's ranges and "
             "vocabularies come from all of them")] = None,
    alias: Annotated[str | None, typer.Option(help="point this alias at the new version")] = None,
    task: Annotated[str | None, typer.Option(
        help="classification, regression or clustering, when the file does not say (an ONNX "
             "graph whose only output is probabilities)")] = None,
    classes: Annotated[str | None, typer.Option(
        help="an ONNX classifier's classes in output column order, comma-separated "
             "(0,1,2 or no,yes; default: the graph's, else 0..k-1)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a model made elsewhere (ONNX, PMML, H2O MOJO or POJO) so it serves like any
    other."""
    import warnings

    from modelport.register import import_model

    frame = None
    if sample:
        from modelport.io.tables import read_table

        frame = read_table(sample)
    labels = None
    if classes is not None:
        labels = [c.strip() for c in classes.split(",") if c.strip()]
        if all(c.lstrip("-").isdigit() for c in labels):
            labels = [int(c) for c in labels]
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always", UserWarning)
        v = import_model(file, name, format, sample=frame, alias=alias, task=task,
                         classes=labels)
    for note in dict.fromkeys(str(n.message) for n in notes):
        typer.echo(f"modelport: note: {note}", err=True)
    if as_json:
        print_json(v.to_dict())
    else:
        typer.echo(f"registered {v.uri} ({', '.join(v.accepted_formats())}) from {file}")


@app.command("train")
def train_cmd(
    spec: Annotated[Path, typer.Argument(help="training spec (YAML)")],
    alias: Annotated[str | None, typer.Option(help="point this alias at the new version")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a model from a spec, register it with metrics and lineage, print a report."""
    from modelport.train.oneoff import train

    result = train(spec, alias=alias)
    if as_json:
        print_json({"version": result.version.to_dict(), "metrics": result.metrics,
                     "seconds": result.seconds})
    else:
        typer.echo(result.report)


@app.command("quickstart")
def quickstart_cmd(
    rows: Annotated[int, typer.Option(help="customers to generate")] = 20000,
    folder: Annotated[Path, typer.Option("--dir", help="where to write the example data")] = Path(
        "modelport-quickstart"),
) -> None:
    """Generate churn data, train and register a model, alias it production, score customers."""
    from modelport.quickstart import run

    run(rows=rows, folder=folder, echo=typer.echo)


# -- batch scoring and lookups -----------------------------------------------------------

@app.command("predict")
def predict_cmd(
    model: Annotated[str, typer.Argument(help="churn, churn/3 or churn@production")],
    input: Annotated[str, typer.Option(
        "--input", help="file (.parquet/.csv/.jsonl), Parquet folder, or SQL URL with "
        "#table or #SELECT ...")],
    output: Annotated[str, typer.Option(
        "--output", help="file (.parquet/.csv/.jsonl) or SQL URL with #table (a lookup table "
        "upserted by --id)")],
    id: Annotated[str | None, typer.Option("--id", help="id column, kept in the output")] = None,
    workers: Annotated[int | None, typer.Option(
        help="worker processes (default: one per core; 1 scores in this process)")] = None,
    chunk_rows: Annotated[int, typer.Option("--chunk-rows", help="rows per chunk")] = 50_000,
    resume: Annotated[bool, typer.Option(
        "--resume", help="continue an interrupted run from its last committed chunk")] = False,
    on_error: Annotated[str, typer.Option(
        "--on-error", help="fail: stop at the first bad row; reject: write bad rows to a "
        "rejects file and go on")] = "fail",
    engine: Annotated[str, typer.Option(help="local or spark")] = "local",
    format: Annotated[str | None, typer.Option(
        "--format", help="force a runtime (onnx, joblib...; default: the fastest accepted)")
    ] = None,
    rejects: Annotated[str | None, typer.Option(
        "--rejects", help="rejects file (default: beside the output, NAME.rejects.jsonl)")
    ] = None,
    warnings: Annotated[str | None, typer.Option(
        "--warnings", help="file listing rows scored with a value outside what training saw "
        "(default: beside the output, NAME.warnings.jsonl; made only when there are some)")
    ] = None,
    strict: Annotated[bool, typer.Option(
        "--strict/--no-strict", help="refuse values outside what training saw (numbers out of "
        "range, unseen categories) instead of scoring them with a warning")] = False,
    out_of_range: Annotated[str | None, typer.Option(
        "--out-of-range", help="flag (score with a warning; default) or reject a number "
        "outside the training range")] = None,
    unseen_categories: Annotated[str | None, typer.Option(
        "--unseen-categories", help="flag (score with a warning; default) or reject a "
        "category unseen in training")] = None,
    log: LogOpt = None,
    log_sample: LogSampleOpt = 1.0,
    explain: Annotated[str | None, typer.Option(
        "--explain", help="add each row's N largest reasons: reason_1..N (the input column) "
        "and contribution_1..N columns")] = None,
) -> None:
    """Score a file or table in bounded memory, in parallel, resumable."""
    from modelport.serve.batch import predict

    result = predict(model, input, output, id=id, workers=workers, chunk_rows=chunk_rows,
                     resume=resume, on_error=on_error, engine=engine, format=format,
                     rejects=rejects, warnings=warnings, strict=strict,
                     out_of_range=out_of_range, unseen_categories=unseen_categories,
                     log_url=log, log_sample=log_sample, explain=explain)
    typer.echo(result.summary())


@app.command("lookup")
def lookup_cmd(
    model: Annotated[str, typer.Argument(help="churn (or churn/3 to require that version)")],
    id: Annotated[str, typer.Argument(help="the entity's id")],
    store: Annotated[str | None, typer.Option(
        "--store", help="SQL URL with the lookup table after '#' (default: "
        "$MODELPORT_LOOKUP_STORE)")] = None,
) -> None:
    """Print the stored scores of one entity, as JSON."""
    from modelport.errors import NotFound
    from modelport.serve.lookup import lookup

    row = lookup(model, id, store=store)
    if row is None:
        raise NotFound(f"no scores for id {id!r} of {model} in the lookup store; score it "
                       "first with modelport predict")
    print_json(row)


# -- web service -------------------------------------------------------------------------

@app.command("serve")
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
    from modelport.registry import Registry
    from modelport.serve.http.auth import read_token
    from modelport.serve.http.server import run

    if not body_timeout > 0:
        from modelport.errors import UserError

        raise UserError(f"--body-timeout must be a number of seconds above 0, not {body_timeout:g}")
    reg = Registry()
    for uri in [*uris, *(c.rpartition(":")[0] or c for c in canary or []), *(shadow or [])]:
        reg.get(uri)  # an unknown model fails here, once, not in every worker
    if token_file is not None:
        read_token(token_file)
    from modelport.scoring.checks import InputPolicy

    InputPolicy.of(strict, unseen_categories, out_of_range)  # a bad spelling fails here, once
    if log:
        from modelport.monitor.log import check_options

        check_options(log, log_sample)  # a bad URL fails here, once, not in every worker
    typer.echo(f"modelport: serving {', '.join(uris)} on http://{host}:{port} "
               f"({workers} worker(s))", err=True)
    run(list(uris), host=host, port=port, workers=workers, max_batch_size=max_batch_size,
        max_latency_ms=max_latency_ms, token_file=str(token_file) if token_file else None,
        canary=canary or [], shadow=shadow or [], poll_seconds=poll_seconds,
        max_body_bytes=max_body_bytes, unseen_categories=unseen_categories,
        out_of_range=out_of_range, strict=strict, format=format, prediction_log=prediction_log,
        lookup_store=lookup_store, feature_table=feature_table, access_log=access_log,
        log_url=log, log_sample=log_sample, body_timeout_s=body_timeout,
        **({"ui": True} if ui else {}))


@app.command("stream")
def stream_cmd(
    uri: Annotated[str, typer.Argument(help="model to score with: churn, churn/3, churn@production")],
    source: Annotated[str, typer.Option(help="broker URL to read events from, e.g. "
                                        "redis://127.0.0.1:6379/0?stream=events")],
    sink: Annotated[str, typer.Option(help="broker URL to publish scores to")],
    dead_letter: Annotated[str | None, typer.Option(
        help="broker URL for events that cannot be scored (payload and reason)")] = None,
    group: Annotated[str, typer.Option(help="consumer group: workers in one group share a stream")]
    = "modelport",
    batch: Annotated[int, typer.Option(help="most messages scored in one model call")] = 500,
    max_wait_ms: Annotated[float, typer.Option(
        help="longest a message waits for others to fill its batch")] = 20.0,
    inflight: Annotated[int, typer.Option(
        help="batches being published and acknowledged while the next is read and scored")]
    = 3,
    enrich: Annotated[str | None, typer.Option(
        help="SQL table of stored features merged under each event: URL#table?key=COLUMN")] = None,
    lookup_store: Annotated[str | None, typer.Option(
        help="lookup table (URL#table) to upsert each event's new score into, keyed by the "
             "--enrich key (else the event's id)")] = None,
    format: Annotated[str, typer.Option(help="wire format of events and scores: json or msgpack")]
    = "json",
    poll_seconds: Annotated[float, typer.Option(
        help="how often to look for alias moves and new versions (0: never)")] = 2.0,
    metrics_port: Annotated[int | None, typer.Option(
        help="serve Prometheus metrics on 127.0.0.1:PORT")] = None,
    strict: Annotated[bool, typer.Option(
        help="dead-letter an event with an unseen category or a number outside the training "
             "range (default: score it and list it in the output's warnings)")] = False,
    unseen_categories: Annotated[str | None, typer.Option(
        help="flag (score and warn; 'warn' is the same) or reject (dead-letter)")] = None,
    out_of_range: Annotated[str | None, typer.Option(
        help="flag (score and warn; 'warn' is the same) or reject (dead-letter)")] = None,
    log: LogOpt = None,
    log_sample: LogSampleOpt = 1.0,
    engine: Annotated[str, typer.Option(
        help="broker (score events from a broker here) or spark (a Spark Structured "
             "Streaming query: --source a folder, kafka:// or rate://; --sink a folder, "
             "URL#table or kafka://)")] = "broker",
    checkpoint: Annotated[Path | None, typer.Option(
        help="--engine spark: folder for Spark's offsets; a restart goes on from it, each "
             "row scored once into a folder or table")] = None,
    master: Annotated[str | None, typer.Option(
        help="--engine spark: Spark master, e.g. local[2], spark://host:7077, yarn")] = None,
    id: Annotated[str | None, typer.Option(
        help="--engine spark: id column, which keys a lookup table (default: id)")] = None,
    available_now: Annotated[bool, typer.Option(
        "--available-now", help="--engine spark: score what the source holds now, then "
        "stop")] = False,
    explain: Annotated[str | None, typer.Option(
        "--explain", help="add each output's N largest reasons (base and reasons: column, "
        "value, contribution)")] = None,
) -> None:
    """Score a stream of events from Redis Streams, NATS JetStream, RabbitMQ, MQTT or Kafka,
    at least once, acknowledging each event only after its score is published; or, with
    --engine spark, as a Spark Structured Streaming query."""
    import logging

    from modelport.scoring.checks import InputPolicy
    from modelport.serve.stream import serve

    policy = InputPolicy.of(strict, unseen_categories, out_of_range)
    logging.basicConfig(level=logging.INFO, format="modelport: %(message)s")
    if engine not in ("broker", "spark"):
        from modelport.errors import UserError

        raise UserError(f"--engine {engine!r} is not known: use broker or spark")
    if engine == "spark":
        from modelport.serve.spark_stream import stream_spark

        if explain is not None:
            from modelport.errors import UserError

            raise UserError("--explain is not available with --engine spark; stream with "
                            "--engine broker to get reasons")

        done = stream_spark(uri, source, sink, checkpoint=checkpoint, dead_letter=dead_letter,
                            master=master, id=id, policy=policy, poll_seconds=poll_seconds,
                            available_now=available_now, registry=_registry())
        typer.echo(f"modelport: stopped; {json.dumps(done.as_dict())}", err=True)
        return
    stats = serve(uri, source, sink, dead_letter_url=dead_letter, group=group, batch=batch,
                  max_wait_ms=max_wait_ms, fmt=format, enrich=enrich, poll_seconds=poll_seconds,
                  metrics_port=metrics_port, log_url=log, log_sample=log_sample,
                  lookup_store=lookup_store, inflight=inflight, policy=policy,
                  explain=explain)
    typer.echo(f"modelport: stopped; {json.dumps(stats.as_dict())}", err=True)


@app.command("export")
def export_cmd(
    uri: Annotated[str, typer.Argument(help="model to export: churn, churn/3, churn@production")],
    format: Annotated[str, typer.Option(
        help="sql, pmml, python, javascript, c, java, go, onnx, compiled, or bundle (every "
             "in-app target with its signature, parity report and README)")],
    out: Annotated[Path, typer.Option(help="folder to write the artefact and its README into")],
    dialect: Annotated[str, typer.Option(help="SQL dialect: postgresql, mysql or sqlite")]
    = "postgresql",
    check_url: Annotated[str | None, typer.Option(
        help="also run the SQL on the sample in this PostgreSQL or MariaDB/MySQL database "
             "of the dialect (postgresql://user@host/db, mysql://root@host:3306/db); "
             "nothing is left in it")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a model as a self-contained artefact (SQL, PMML, source code, ONNX, an in-app
    bundle) with a usage note, after checking it against the native model on the registered
    sample."""
    from modelport.compile import export

    files = export(uri, format, out, dialect=dialect, check_url=check_url,
                   registry=_registry())
    if as_json:
        print_json({"uri": uri, "format": format, "files": [str(f) for f in files]})
    else:
        for f in files:
            typer.echo(str(f))


# -- trigger -----------------------------------------------------------------------------

trigger_app = typer.Typer(help="Score rows of a database table automatically when they are "
                          "inserted or updated (PostgreSQL, MariaDB/MySQL, SQLite).",
                          no_args_is_help=True)
app.add_typer(trigger_app, name="trigger")
DbOpt = Annotated[str, typer.Option("--db", help="database URL: postgresql://user@host/db, "
                                    "mysql://root@host:3306/db or sqlite:///app.db")]


@trigger_app.command("install")
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
        help="worker (a queue drained by 'modelport trigger run') or sql (the model "
             "compiled to SQL, run by the database itself)")] = "worker",
    upgrade: Annotated[bool, typer.Option(
        help="re-install over an existing installation (e.g. after an alias moved)")] = False,
    backfill: Annotated[bool, typer.Option(help="also score rows that have no score yet")]
    = True,
    as_json: JsonOpt = False,
) -> None:
    """Install scoring on a table: a queue and enqueue triggers (worker mode), or the model
    compiled to SQL in a function and trigger (SQL mode, checked against the native model
    on the registered sample first)."""
    from dataclasses import asdict

    from modelport.serve.trigger import install

    inst = install(uri, db, table=table, key=key, output=output_column, on=on,
                   columns=columns, mode=mode, upgrade=upgrade, backfill=backfill,
                   registry=_registry())
    if as_json:
        print_json({k: v for k, v in asdict(inst).items() if k != "drops"})
        return
    typer.echo(f"installed {inst.model} (version {inst.version}) on {table} in {inst.mode} "
               f"mode: scores in {', '.join([inst.output] + [c for c in inst.added_columns if c != inst.output])}")
    if inst.mode == "worker":
        from modelport.io.tables import redact

        # the password stays out of terminals and logs: the reader supplies it again
        typer.echo(f"start a worker: modelport trigger run --db '{redact(db)}'")


@trigger_app.command("run")
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
    import logging

    from modelport.scoring.checks import InputPolicy
    from modelport.serve.trigger import run

    policy = InputPolicy.of(strict, unseen_categories, out_of_range)
    logging.basicConfig(level=logging.INFO, format="modelport: %(message)s")
    stats = run(db, tables=table or None, batch=batch, poll_ms=poll_ms,
                reload_seconds=reload_seconds, once=once, registry=_registry(), log_url=log,
                log_sample=log_sample, policy=policy, metrics_port=metrics_port)
    typer.echo(f"modelport: stopped; {json.dumps(stats.as_dict())}", err=True)


@trigger_app.command("status")
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


@trigger_app.command("uninstall")
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


def _register_command_modules() -> None:
    import importlib

    from modelport.commands import MODULES

    for module in MODULES:
        importlib.import_module(f"modelport.commands.{module}")


_register_command_modules()


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
