"""``modelport predict`` and ``lookup``: score a file or table in bounded memory, and read
back the scores a batch job stored for one entity."""

from __future__ import annotations

from typing import Annotated

import typer

from modelport.commands.base import LogOpt, LogSampleOpt, print_json


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
    from modelport.serve.batch import predict_settings
    from modelport.serve.batch_settings import BatchSettings

    settings = BatchSettings(
        model=model, input=input, output=output, id=id, workers=workers,
        chunk_rows=chunk_rows, resume=resume, on_error=on_error, engine=engine, format=format,
        rejects=rejects, warnings=warnings, strict=strict, out_of_range=out_of_range,
        unseen_categories=unseen_categories, log_url=log, log_sample=log_sample,
        explain=explain)
    typer.echo(predict_settings(settings).summary())


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
