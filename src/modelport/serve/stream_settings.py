"""Everything ``modelport stream`` is told, in one object.

The command builds one :class:`StreamSettings` from its options and hands it whole to
:func:`modelport.serve.stream.serve_settings` (or, from async code,
:func:`~modelport.serve.stream.run_settings`). Options no worker can run with are refused
when the settings are built, before any broker or database is opened. The settings hold
plain values only, so they pickle.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelport.errors import UserError
from modelport.scoring.checks import FLAG, InputPolicy


@dataclass(frozen=True)
class StreamSettings:
    """The model to score with, the broker to read from and publish to, and how.

    ``uri`` names the model (``churn``, ``churn/3``, ``churn@production``); ``source_url``,
    ``sink_url`` and ``dead_letter_url`` are broker URLs (events in, scores out, events
    that cannot be scored out). Workers of one ``group`` share a stream. A batch is at most
    ``batch`` messages, waiting at most ``max_wait_ms`` for them to gather, and up to
    ``inflight`` batches are published and acknowledged while the next is scored. ``fmt``
    is the wire format (``json`` or ``msgpack``); ``policy`` says whether an unseen
    category or a number outside the training range is scored and flagged or rejected.
    ``enrich`` (``URL#table?key=COLUMN``) merges stored features under each event,
    ``lookup_store`` (``URL#table``) upserts each new score, ``log_url`` keeps a
    ``log_sample`` share of the scored events in a prediction log, and ``explain`` (a
    number of reasons) adds each output's largest reasons. ``poll_seconds`` is how often
    the URI is resolved again (0: never); ``metrics_port`` serves Prometheus metrics.
    Raises :class:`~modelport.errors.UserError` naming the option for a wire format, a
    batch size or an in-flight count no worker can run with.
    """

    uri: str
    source_url: str
    sink_url: str
    dead_letter_url: str | None = None
    group: str = "modelport"
    batch: int = 500
    max_wait_ms: float = 20.0
    fmt: str = "json"
    enrich: str | None = None
    poll_seconds: float = 2.0
    metrics_port: int | None = None
    log_url: str | None = None
    log_sample: float = 1.0
    lookup_store: str | None = None
    inflight: int = 3
    policy: InputPolicy = FLAG
    explain: int | str | None = None

    def __post_init__(self) -> None:
        if self.fmt not in ("json", "msgpack"):
            raise UserError(f"--format {self.fmt!r}: use json or msgpack")
        if self.batch < 1:
            raise UserError("--batch must be at least 1")
        if self.inflight < 1:
            raise UserError("--inflight must be at least 1")
