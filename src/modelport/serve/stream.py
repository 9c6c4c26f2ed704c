"""Score event streams: read a micro-batch from a broker, score it in one vectorised
predictor call, publish the outputs, and only then acknowledge the inputs.

Delivery is at-least-once: a worker killed anywhere in that cycle leaves its unacknowledged
messages to the broker, which delivers them again. Every output carries the input's
message id and the model version, so a consumer can drop the duplicates a crash may
cause. The cycle is pipelined: while a batch's outputs are being published and its inputs
acknowledged, the next batches are read and scored. Work in flight is bounded by
``inflight`` batches being settled plus the one being read, and the broker is asked to
deliver no more than that ahead of the acks; acknowledgements go out in the order the
batches were read, and never for a batch whose outputs (or an earlier batch's) failed.
Messages that are not JSON (or msgpack), or lack or mistype a field the model needs, go to
the dead-letter destination with their payload and the reason, and the stream keeps
flowing. SIGTERM or SIGINT finishes the batches in hand (publish and ack) and stops. Every
``poll_seconds`` the worker asks the registry which version the model URI names now and,
when it moved, loads the new version beside the old one and swaps it in between batches.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import gc
import hashlib
import logging
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.errors import UserError

log = logging.getLogger("modelport.stream")

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_SIZES = (1, 8, 32, 64, 128, 256, 512, 1024, 2048, 4096)


@dataclass
class Stats:
    """What the worker did so far; exported as Prometheus metrics when asked."""

    consumed: int = 0
    scored: int = 0
    dead_lettered: int = 0
    batches: int = 0
    reloads: int = 0
    lag: int | None = None
    batch_sizes: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"consumed": self.consumed, "scored": self.scored,
                "dead_lettered": self.dead_lettered, "batches": self.batches,
                "reloads": self.reloads, "lag": self.lag}


class _Prometheus:
    """Counters and histograms in their own registry, served on ``port``."""

    def __init__(self, port: int, model: str) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            start_http_server,
        )

        r = self.registry = CollectorRegistry()
        self.consumed = Counter("modelport_stream_consumed", "Messages read", registry=r)
        self.scored = Counter("modelport_stream_scored", "Messages scored and published",
                              ["version"], registry=r)
        self.dead = Counter("modelport_stream_dead_lettered",
                            "Messages sent to the dead-letter destination", registry=r)
        self.lag = Gauge("modelport_stream_lag", "Messages waiting in the source", registry=r)
        self.batch = Histogram("modelport_stream_batch_messages", "Messages per batch",
                               buckets=_SIZES, registry=r)
        self.latency = Histogram("modelport_stream_latency_seconds",
                                 "Time from receipt to acknowledgement", buckets=_LATENCY,
                                 registry=r)
        self.reloads = Counter("modelport_stream_reloads", "Hot reloads", registry=r)
        self.log_dropped = Counter("modelport_prediction_log_dropped",
                                   "Prediction-log rows dropped because the log lagged",
                                   registry=r)
        start_http_server(port, addr="127.0.0.1", registry=r)


class _Model:
    """One loaded version: the predictor plus what encoding its outputs needs."""

    def __init__(self, registry, uri, version_number: int, fmt: str | None) -> None:
        from modelport.serve.http.models import _warm_up, serving_format
        from modelport.uri import ModelURI

        version = registry.get(ModelURI(uri.name, version_number))
        self.version = version.version
        self.name = uri.name
        self.predictor = registry.load(version, format=serving_format(version, fmt))
        _warm_up(self.predictor)
        sig = self.predictor.signature
        self.signature = sig
        self.names = sig.names
        self.task = sig.task
        self.classes = [c.item() if isinstance(c, np.generic) else c
                        for c in (sig.classes or [])]


def decode(payload: bytes, fmt: str):
    """One event from its wire form (``json`` via orjson, or ``msgpack``)."""
    if fmt == "msgpack":
        import msgpack

        return msgpack.unpackb(payload, raw=False)
    import orjson

    return orjson.loads(payload)


def encode(obj: dict, fmt: str) -> bytes:
    if fmt == "msgpack":
        import msgpack

        return msgpack.packb(obj, use_bin_type=True)
    import orjson

    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def _message_id(msg, event) -> str:
    """The broker's stable id, else the event's ``id`` field, else a hash of the payload."""
    if msg.id is not None:
        return msg.id
    if isinstance(event, dict) and event.get("id") is not None:
        return str(event["id"])
    return hashlib.sha1(msg.payload).hexdigest()[:20]


def _dead_record(msg, mid: str, reason: str, fmt: str) -> tuple[str, bytes]:
    try:
        payload: Any = msg.payload.decode()
        key = "payload"
    except UnicodeDecodeError:
        payload, key = base64.b64encode(msg.payload).decode(), "payload_base64"
    return f"{mid}@dead", encode({"id": mid, "reason": reason, key: payload}, fmt)


def score_batch(model: _Model, messages: list, fmt: str, enrich=None, plog=None,
                store=None):
    """Score ``messages``: returns (outputs, dead letters), each a list of (key, payload).

    The whole batch goes through one predictor call; a batch holding a bad event is split
    so that only the bad events are dead-lettered. ``plog`` (a
    :class:`~modelport.monitor.log.PredictionLogger`) records the scored events and the
    dead letters' reasons; ``store`` (a :class:`LookupStore`) upserts the new scores.
    """
    outputs, dead = _score_batch(model, messages, fmt, enrich, plog, store)
    if plog is not None and dead:
        reasons = [decode(payload, fmt) for _, payload in dead]
        ids = [r.get("id") for r in reasons]
        plog.log(model.name, model.version, None, None, ids=ids, request_ids=ids,
                errors=[r.get("reason") for r in reasons])
    return outputs, dead


def _score_batch(model: _Model, messages: list, fmt: str, enrich, plog, store=None):
    good, events, ids, dead = [], [], [], []
    for msg in messages:
        try:
            event = decode(msg.payload, fmt)
        except Exception as exc:
            dead.append(_dead_record(msg, _message_id(msg, None),
                                     f"not {fmt}: {str(exc)[:200]}", fmt))
            continue
        mid = _message_id(msg, event)
        if not isinstance(event, dict):
            dead.append(_dead_record(msg, mid, f"not a {fmt} object", fmt))
            continue
        good.append(msg)
        events.append(event)
        ids.append(mid)
    if enrich is not None and events:
        events = enrich.merge(events)
    if not events:
        return [], dead
    try:
        cols = model.signature.columns(events)
    except UserError:
        keep = []
        for i, event in enumerate(events):
            try:
                model.signature.columns([event])
                keep.append(i)
            except UserError as exc:
                dead.append(_dead_record(good[i], ids[i], str(exc), fmt))
        events = [events[i] for i in keep]
        ids = [ids[i] for i in keep]
        good = [good[i] for i in keep]
        if not events:
            return [], dead
        cols = model.signature.columns(events)
    outputs = model.predictor.run(cols)
    if store is not None:
        store.write(model, events, outputs)
    if plog is not None:
        now = time.time()
        plog.log(model.name, model.version, cols, outputs, request_ids=ids,
                ids=[e.get("id", i) for e, i in zip(events, ids, strict=True)],
                latency_ms=[(now - m.received) * 1000 for m in good])
    return _encode_outputs(model, ids, events, outputs, fmt), dead


def _encode_outputs(model: _Model, ids, events, outputs, fmt) -> list[tuple[str, bytes]]:
    base = {"model": model.name, "version": model.version}
    columns = {k: np.asarray(v).tolist() for k, v in outputs.items()}
    records = []
    for i, mid in enumerate(ids):
        row = {"id": mid, **base}
        key = events[i].get("id")
        if key is not None:
            row["key"] = key
        for k, values in columns.items():
            row[k] = values[i]
        records.append((f"{mid}@{model.version}", encode(row, fmt)))
    return records


class Enrich:
    """Merges each event over its entity's stored features from a SQL table.

    ``URL#table?key=column``: rows are looked up by the event's ``key`` field (default
    ``id``) in one query per batch; the event's own fields win.
    """

    def __init__(self, spec: str) -> None:
        from urllib.parse import parse_qs

        url, _, rest = spec.partition("#")
        table, _, query = rest.partition("?")
        if not url or not table:
            raise UserError(f"--enrich {spec!r}: use a SQLAlchemy URL with the table after '#', "
                            "e.g. sqlite:///app.db#customers?key=customer_id")
        self.key = parse_qs(query).get("key", ["id"])[-1]
        import sqlalchemy as sa

        self.engine = sa.create_engine(url)
        self.table = sa.Table(table, sa.MetaData(), autoload_with=self.engine)
        if self.key not in self.table.c:
            raise UserError(f"--enrich: table {table!r} has no column {self.key!r}; "
                            "name the key column with ?key=COLUMN")

    def merge(self, events: list[dict]) -> list[dict]:
        import sqlalchemy as sa

        keys = {e.get(self.key) for e in events if e.get(self.key) is not None}
        if not keys:
            return events
        col = self.table.c[self.key]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(self.table).where(col.in_(list(keys)))).mappings()
            stored = {r[self.key]: dict(r) for r in rows}
        return [{**stored.get(e.get(self.key), {}), **e} for e in events]


class LookupStore:
    """Upserts each scored event's new score into the batch job's lookup table.

    ``URL#table``: one row per entity, keyed by the event's ``key`` field (the ``--enrich``
    key, else ``id``), with the same columns ``modelport predict`` writes (the scores,
    ``model``, ``model_version``, ``scored_at``), so ``modelport lookup`` and the web
    service's ``/lookup`` read the score of the latest event. Events without the key are
    scored and published but not stored. The upsert is committed before the batch is
    acknowledged: a redelivered event writes the same row again.
    """

    def __init__(self, spec: str, key: str) -> None:
        from modelport.io.tables import redact

        url, _, table = spec.partition("#")
        if not url or not table or "?" in table:
            raise UserError(f"--lookup-store {redact(spec)!r}: use a SQLAlchemy URL with the "
                            "table after '#', e.g. sqlite:///scores.db#churn_scores")
        self.url, self.table, self.key = url, table, key
        self._sink = None

    def write(self, model: _Model, events: list[dict], outputs: dict) -> None:
        import pyarrow as pa

        from modelport.io.sinks import SqlSink
        from modelport.serve.batch import output_schema, output_table

        rows = [i for i, e in enumerate(events) if e.get(self.key) is not None]
        if not rows:
            return
        ids = pa.array([events[i].get(self.key) for i in rows])
        signature = model.predictor.signature
        schema = output_schema(signature, ids.type, self.key)
        picked = {k: np.asarray(v)[rows] for k, v in outputs.items()}
        table = output_table(signature, picked, ids, self.key, schema)
        if self._sink is None:
            self._sink = SqlSink(self.url, self.table, self.key, model.name, model.version,
                                 "stream")
            self._sink.start(schema, resume=True)
        self._sink.upsert(table, version=model.version)

    def close(self) -> None:
        if self._sink is not None:
            self._sink.finish()


def stop_on_signals(stop: asyncio.Event | None = None) -> asyncio.Event:
    """``stop`` (a new event if None), set by SIGTERM or SIGINT so a running loop drains
    and exits cleanly; outside the main thread signals stay as they are."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    return stop


async def run(uri: str, source_url: str, sink_url: str, *, dead_letter_url: str | None = None,
              group: str = "modelport", batch: int = 500, max_wait_ms: float = 20.0,
              fmt: str = "json", enrich: str | None = None, poll_seconds: float = 2.0,
              metrics_port: int | None = None, registry=None,
              stop: asyncio.Event | None = None, log_url: str | None = None,
              log_sample: float = 1.0, lookup_store: str | None = None,
              inflight: int = 3) -> Stats:
    """Run one stream worker until SIGTERM/SIGINT (or ``stop``); return what it did.

    Reads up to ``batch`` messages (waiting at most ``max_wait_ms`` for them to gather),
    scores them in one call, publishes outputs and dead letters, then acknowledges.
    ``log_url`` (a SQLAlchemy URL with ``#table``) keeps a ``log_sample`` share of the scored
    events in a prediction log for ``modelport monitor``. ``lookup_store`` (``URL#table``)
    upserts each event's new score into a lookup table (see :class:`LookupStore`).
    """
    from modelport.io import brokers
    from modelport.registry import Registry
    from modelport.serve.http.models import current_version
    from modelport.uri import ModelURI

    if fmt not in ("json", "msgpack"):
        raise UserError(f"--format {fmt!r}: use json or msgpack")
    if batch < 1:
        raise UserError("--batch must be at least 1")
    if inflight < 1:
        raise UserError("--inflight must be at least 1")
    # URL errors first; the source lets the batches in flight plus one being read go unacked
    source = brokers.open_source(source_url, group=group, batch=batch,
                                 window=(inflight + 1) * batch)
    inflight = min(inflight, getattr(source, "max_inflight", inflight))
    sink = brokers.open_sink(sink_url)
    dead = brokers.open_sink(dead_letter_url, "--dead-letter") if dead_letter_url else None
    registry = registry or Registry()
    muri = ModelURI.parse(uri)
    model = _Model(registry, muri, current_version(registry, muri), None)
    enricher = Enrich(enrich) if enrich else None
    store = (LookupStore(lookup_store, enricher.key if enricher else "id")
             if lookup_store else None)
    prom = _Prometheus(metrics_port, muri.name) if metrics_port else None
    plog = None
    if log_url:
        from modelport.monitor.log import PredictionLogger

        plog = PredictionLogger(log_url, sample=log_sample, source="stream",
                                on_drop=prom.log_dropped.inc if prom else None)
    stats = Stats()
    stop = stop_on_signals(stop)
    for part in (source, sink, dead):
        if part is not None:
            await part.connect()
    atomic = getattr(source, "shares_server", lambda s: False)
    together = atomic(sink) and (dead is None or atomic(dead))
    # what start-up built (libraries, the model) lives as long as the worker: keep it out of
    # the collector's full passes, which otherwise stall a batch for tens of milliseconds
    gc.collect()
    gc.freeze()
    log.info("streaming %s version %s from %s to %s", muri, model.version, source_url, sink_url)
    next_poll = time.monotonic() + poll_seconds
    next_lag = 0.0
    reloading: asyncio.Task | None = None
    wait_s = max_wait_ms / 1000
    # a batch is published and acknowledged while the next ones are read and scored; at
    # most ``inflight`` batches are between their scoring and their ack at once, and their
    # acks go out in the order the batches were read (each settle waits for the one before)
    settling: collections.deque[asyncio.Task] = collections.deque()

    async def settle(before: asyncio.Task | None, current: _Model, msgs, outputs, bad):
        if together:
            parts = [(sink, outputs)] + ([(dead, bad)] if dead is not None else [])
            await source.publish_and_ack(parts, msgs)  # atomic: needs no order
        else:
            await sink.publish(outputs)
            if dead is not None:
                await dead.publish(bad)
            if before is not None:
                await before  # an earlier batch that failed is never acknowledged past
            await source.ack(msgs)
        done = time.time()
        stats.consumed += len(msgs)
        stats.scored += len(outputs)
        stats.dead_lettered += len(bad)
        stats.batches += 1
        if prom is not None:
            prom.consumed.inc(len(msgs))
            prom.scored.labels(str(current.version)).inc(len(outputs))
            prom.dead.inc(len(bad))
            prom.batch.observe(len(msgs))
            prom.latency.observe(done - msgs[0].received)

    try:
        while not stop.is_set():
            while settling and settling[0].done():
                settling.popleft().result()  # a failed publish or ack stops the worker
            if len(settling) >= inflight:
                await asyncio.wait([settling[0]])
                continue
            msgs = await source.read(batch, wait_s)
            if msgs:
                # what keeps arriving while the batch is young joins it: a trickle
                # gathers into a batch worth one model call. Only what is at hand is
                # asked for (a wait of 0): a server may time a short wait out late
                while len(msgs) < batch and time.time() - msgs[0].received < wait_s:
                    more = await source.read(batch - len(msgs), 0)
                    if not more:
                        break
                    msgs.extend(more)
                current = model
                outputs, bad = score_batch(current, msgs, fmt, enricher, plog, store)
                if bad and dead is None:
                    log.warning("dropping %d bad message(s) (no --dead-letter): %s",
                                len(bad), bad[0][1][:200])
                before = settling[-1] if settling else None
                settling.append(asyncio.create_task(
                    settle(before, current, msgs, outputs, bad)))
            now = time.monotonic()
            if poll_seconds > 0 and now >= next_poll and reloading is None:
                next_poll = now + poll_seconds
                target = current_version(registry, muri)
                if target != model.version:
                    reloading = asyncio.create_task(
                        asyncio.to_thread(_Model, registry, muri, target, None))
            if reloading is not None and reloading.done():
                try:
                    model = reloading.result()  # swapped between batches, never inside one
                    stats.reloads += 1
                    if prom is not None:
                        prom.reloads.inc()
                    log.info("now scoring with %s version %s", muri.name, model.version)
                except Exception as exc:
                    log.error("could not load the new version; still on %s: %s",
                              model.version, exc)
                reloading = None
            if prom is not None and now >= next_lag and hasattr(source, "lag"):
                next_lag = now + 5
                try:
                    stats.lag = await source.lag()
                    if stats.lag is not None:
                        prom.lag.set(stats.lag)
                except Exception:  # lag is informative only
                    pass
        while settling:  # SIGTERM: what was scored is published and acknowledged
            await asyncio.wait([settling[0]])
            settling.popleft().result()
    finally:
        gc.unfreeze()
        if settling:  # stopped by an error: let the batches in flight end either way
            await asyncio.gather(*settling, return_exceptions=True)
        for part in (source, sink, dead):
            if part is not None:
                try:
                    await part.close()
                except Exception as exc:
                    log.warning("closing %s: %s", type(part).__module__, exc)
        if plog is not None:
            await asyncio.to_thread(plog.close)
        if store is not None:
            store.close()
    return stats


def serve(uri: str, source_url: str, sink_url: str, **options) -> Stats:
    """Blocking :func:`run`, for the command line."""
    return asyncio.run(run(uri, source_url, sink_url, **options))
