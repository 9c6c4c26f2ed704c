"""``modelport stream``: score events from a broker (or a Spark Structured Streaming query)
and publish the scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from modelport.commands.base import LogOpt, LogSampleOpt, log_to_stderr, open_registry


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
    from modelport.errors import UserError
    from modelport.scoring.checks import InputPolicy
    from modelport.serve.stream import serve_settings
    from modelport.serve.stream_settings import StreamSettings

    policy = InputPolicy.of(strict, unseen_categories, out_of_range)
    log_to_stderr()
    if engine not in ("broker", "spark"):
        raise UserError(f"--engine {engine!r} is not known: use broker or spark")
    if engine == "spark":
        from modelport.serve.spark_stream import stream_spark

        if explain is not None:
            raise UserError("--explain is not available with --engine spark; stream with "
                            "--engine broker to get reasons")

        done = stream_spark(uri, source, sink, checkpoint=checkpoint, dead_letter=dead_letter,
                            master=master, id=id, policy=policy, poll_seconds=poll_seconds,
                            available_now=available_now, registry=open_registry())
        typer.echo(f"modelport: stopped; {json.dumps(done.as_dict())}", err=True)
        return
    settings = StreamSettings(
        uri=uri, source_url=source, sink_url=sink, dead_letter_url=dead_letter, group=group,
        batch=batch, max_wait_ms=max_wait_ms, fmt=format, enrich=enrich,
        poll_seconds=poll_seconds, metrics_port=metrics_port, log_url=log,
        log_sample=log_sample, lookup_store=lookup_store, inflight=inflight, policy=policy,
        explain=explain)
    stats = serve_settings(settings)
    typer.echo(f"modelport: stopped; {json.dumps(stats.as_dict())}", err=True)
