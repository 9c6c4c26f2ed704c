"""Score event streams: read a micro-batch from a broker, score it through the scoring core,
publish the outputs and the dead letters, and only then acknowledge the inputs.

A batch goes: decode each message -> merge the stored features of its entity
(``--enrich``) -> check every event against the signature
(:func:`modelport.scoring.checks.check`) -> score the events that passed in one model call
(:func:`modelport.scoring.isolation.score`) -> upsert the new scores (``--lookup-store``)
-> publish outputs and dead letters -> acknowledge. A step that fails because of some
events (a key no row can have, a value the model raises on, a score the lookup table
refuses) is split by :func:`~modelport.scoring.isolation.isolate` until they are found:
each goes to the dead-letter destination with its reason and every other event is scored
as if alone, so no event stops the worker. A value outside what training saw is scored and
flagged in the output's ``warnings`` (or refused under ``--strict``). A failure not tied
to events (a database or a broker that is down) is retried with back-off while the batch
stays unacknowledged.

Delivery is at-least-once: a worker killed anywhere in that cycle leaves its unacknowledged
messages to the broker, which delivers them again. Every output carries the input's
message id and the model version, so a consumer can drop the duplicates a crash may
cause. The cycle is pipelined: while a batch's outputs are being published and its inputs
acknowledged, the next batches are read and scored. Work in flight is bounded by
``inflight`` batches being settled plus the one being read, and the broker is asked to
deliver no more than that ahead of the acks; acknowledgements go out in the order the
batches were read, and never for a batch whose outputs (or an earlier batch's) failed.
SIGTERM or SIGINT finishes the batches in hand (publish and ack) and stops. The model URI
is followed by the scoring core's :class:`~modelport.scoring.following.Follower`: a new
version loads in the background and is swapped in between batches. With ``explain=k`` every
output also carries ``base`` and its ``k`` largest ``reasons`` (as the web service gives
them, see :mod:`modelport.scoring.reasons`), and the lookup store ``reason_1..k`` and
``contribution_1..k``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gc
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import UserError
from modelport.io.events import decode, encode, encoder, fast_json, stop_on_signals
from modelport.scoring import choice, reasons
from modelport.scoring.checks import (
    FLAG,
    Flag,
    InputPolicy,
    Reject,
    as_event,
    check,
    shown,
    warning_text,
)
from modelport.scoring.following import Follower
from modelport.scoring.isolation import Outcome, is_transient, isolate, reason, score
from modelport.serve._stream_brokers import BACKOFF_S as BACKOFF_S  # named here too: the worker's
from modelport.serve._stream_brokers import BROKER_PATIENCE_S as BROKER_PATIENCE_S
from modelport.serve._stream_brokers import Backoff, Brokers, Lag, Reader, Settling
from modelport.serve.lookup import key_value
from modelport.serve.stream_settings import StreamSettings
from modelport.uri import ModelURI

if TYPE_CHECKING:
    from sqlalchemy import Column, RowMapping

    from modelport.io.brokers import Message
    from modelport.io.sinks import SqlSink
    from modelport.monitor.log import PredictionLogger
    from modelport.registry import Registry, Version
    from modelport.scoring.checks import Checked
    from modelport.scoring.metrics import StreamMetrics
    from modelport.signature import Signature

log = logging.getLogger("modelport.stream")


@dataclass
class Stats:
    """What the worker did so far; printed when it stops."""

    consumed: int = 0
    scored: int = 0
    dead_lettered: int = 0
    flagged: int = 0
    batches: int = 0
    reloads: int = 0
    retries: int = 0
    lag: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"consumed": self.consumed, "scored": self.scored,
                "dead_lettered": self.dead_lettered, "flagged": self.flagged,
                "batches": self.batches, "reloads": self.reloads, "retries": self.retries,
                "lag": self.lag}


# -- the model ---------------------------------------------------------------------------

@dataclass
class Scorer(reasons.Explains):
    """One loaded version: the predictor of the artefact the scoring core chose, warmed up."""

    name: str
    version: int
    format: str
    predictor: Any
    why: str = ""
    #: gives the predictor that explains this version (:func:`modelport.scoring.reasons.
    #: explaining`): the scoring one, or the version's compiled or native artefact
    find_explainer: Any = None
    _explainer: Any = None

    @property
    def signature(self) -> Signature:
        return self.predictor.signature


def follow(uri: str | ModelURI, registry: Registry, *, poll_seconds: float = 2.0,
           forced: str | None = None,
           on_reload: Callable[[Follower, str], None] | None = None) -> Follower[Scorer]:
    """A follower of ``uri`` whose versions load as :class:`Scorer` s (the artefact that
    scores a row fastest, or ``forced``); the first version loads now."""
    muri = uri if isinstance(uri, ModelURI) else ModelURI.parse(str(uri))

    def load(version: Version) -> Scorer:
        predictor, chosen = choice.load(registry, version, "row", forced)
        return Scorer(muri.name, version.version, chosen.format, predictor, chosen.why,
                      find_explainer=functools.partial(reasons.explaining, predictor,
                                                       registry, version))

    return Follower(muri, registry, load, poll_seconds=poll_seconds, on_reload=on_reload)


# -- the wire ----------------------------------------------------------------------------

def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _text(value: Any) -> str:
    """``value`` as text every wire format can carry (lone surrogates become U+FFFD)."""
    text = value if type(value) is str else str(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text


#: the whole numbers orjson and msgpack write as numbers
_INT64_MIN, _UINT64_MAX = -2**63, 2**64 - 1


def _plain_id(value: Any) -> Any:
    """An event's own ``id`` as an output can carry it: numbers and booleans as they are,
    anything else (text beyond UTF-8, an integer beyond 64 bits, a list) as text."""
    if type(value) is str:
        return _text(value)
    if type(value) in (bool, float) or (type(value) is int and
                                        _INT64_MIN <= value <= _UINT64_MAX):
        return value
    return _text(value)


def _message_id(msg: Message, event: Any) -> str:
    """The broker's stable id, else the event's ``id`` field, else a hash of the payload."""
    if msg.id is not None:
        return msg.id
    if isinstance(event, dict) and not _missing(event.get("id")):
        return _text(event["id"])
    return hashlib.sha1(msg.payload).hexdigest()[:20]


def _wire_key(mid: str, suffix: str | int) -> str:
    """The key an output is published under (NATS ``Nats-Msg-Id``, AMQP ``message_id``,
    Kafka key): ``<message id>@<suffix>``, hashed when the message id is long or holds
    characters a header cannot (an AMQP message id is at most 255 bytes)."""
    key = f"{mid}@{suffix}"
    if len(key) <= 200 and key.isascii() and key.isprintable():
        return key
    return hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest() + f"@{suffix}"


def _dead_record(msg: Message, mid: str, why: Reject, fmt: str) -> tuple[str, bytes]:
    record: dict[str, Any] = {"id": mid, "reason": why.message, "reason_code": why.code}
    if why.field is not None:
        record["field"] = _text(why.field)
    try:
        record["payload"] = msg.payload.decode()
    except UnicodeDecodeError:
        record["payload_base64"] = base64.b64encode(msg.payload).decode()
    return _wire_key(mid, "dead"), encode(record, fmt)


# -- keys of stored rows -----------------------------------------------------------------

def _whole(column: Column[Any] | None) -> bool:
    """Whether a table column holds whole numbers (False for None)."""
    try:
        return column is not None and column.type.python_type is int
    except NotImplementedError:
        return False


def _key(column: Column[Any], value: Any, option: str) -> Any:
    """``value`` in the type of the key ``column`` of a table, or a ValueError naming the
    value and the fix when no row of the table can have it (text for a column of whole
    numbers, a list, a number beyond 64 bits)."""
    name, sent = column.name, value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{option} key {name!r} must be one value (text or a whole number), "
                         f"got a {type(value).__name__}: send the entity's key alone")
    if isinstance(value, float) and _whole(column):
        if not value.is_integer():
            raise ValueError(f"{option} key {name!r} is {shown(sent)}, but the key column "
                             "holds whole numbers: send a whole number")
        value = int(value)
    try:
        found = key_value(column, value)
    except UserError:
        raise ValueError(f"{option} key {name!r} is {shown(sent)}, but the key column "
                         "holds whole numbers: send a whole number") from None
    if found is None:
        raise ValueError(f"{option} key {name!r} is {shown(sent)}, beyond what the key "
                         "column holds (64-bit whole numbers): send the entity's key")
    return found


class Enrich:
    """Merges each event over its entity's stored features from a SQL table.

    ``URL#table?key=column``: rows are looked up by the event's ``key`` field (default
    ``id``) in one query per batch; the event's own fields win. A key is first put in the
    key column's type (``"42"`` for a column of whole numbers is 42); an event whose key
    cannot be (``"abc"`` or a list there, a number beyond 64 bits), or whose lookup the
    database refuses, is rejected with the code ``enrich``. A database that is away raises,
    for the worker to try the batch again.
    """

    def __init__(self, spec: str) -> None:
        from urllib.parse import parse_qs

        from modelport.io.sinks import lookup_engine
        from modelport.io.tables import redact

        url, _, rest = spec.partition("#")
        table, _, query = rest.partition("?")
        if not url or not table:
            raise UserError(f"--enrich {redact(spec)!r}: use a SQLAlchemy URL with the table "
                            "after '#', e.g. sqlite:///app.db#customers?key=customer_id")
        self.key = parse_qs(query).get("key", ["id"])[-1]
        import sqlalchemy as sa

        self.engine = lookup_engine(url)
        try:
            self.table = sa.Table(table, sa.MetaData(), autoload_with=self.engine)
        except sa.exc.NoSuchTableError:
            raise UserError(f"--enrich: no table {table!r} in {redact(url)}: name the table "
                            "of stored features after '#'") from None
        except sa.exc.SQLAlchemyError as exc:
            first = str(getattr(exc, "orig", exc)).strip().splitlines()
            raise UserError(f"--enrich: cannot read {redact(url)}#{table}: "
                            f"{first[0] if first else type(exc).__name__}") from None
        if self.key not in self.table.c:
            raise UserError(f"--enrich: table {table!r} has no column {self.key!r}; "
                            "name the key column with ?key=COLUMN")
        self.column = self.table.c[self.key]

    def merge(self, events: list[dict]) -> tuple[list[dict], dict[int, Reject]]:
        """``events`` merged over their stored rows, and the events rejected, by position."""
        import sqlalchemy as sa

        keys: list = [None] * len(events)
        bad: dict[int, Reject] = {}
        for i, e in enumerate(events):
            value = e.get(self.key)
            if _missing(value):
                continue
            try:
                keys[i] = _key(self.column, value, "--enrich")
            except ValueError as exc:
                bad[i] = Reject(self.key, "enrich", str(exc))
        distinct = list(dict.fromkeys(k for k in keys if k is not None))
        if not distinct:
            return events, bad
        col = self.column

        def query(positions: np.ndarray) -> Sequence[RowMapping]:
            wanted = [distinct[p] for p in positions.tolist()]
            with self.engine.connect() as conn:
                return conn.execute(sa.select(self.table).where(col.in_(wanted))).mappings().all()

        done, failed = isolate(query, len(distinct))
        stored = {r[self.key]: r for _, rows in done for r in rows}
        refused = {distinct[p]: exc for p, exc in failed.items()}
        merged = []
        for i, e in enumerate(events):
            k = keys[i]
            if k is not None and k in refused:
                bad[i] = Reject(self.key, "enrich", f"the stored features of {self.key}="
                                f"{shown(k)} could not be read ({reason(refused[k], 300)})")
            row = stored.get(k) if k is not None else None
            merged.append({**row, **e} if row is not None else e)
        return merged, bad


class LookupStore:
    """Upserts each scored event's new score into the batch job's lookup table.

    ``URL#table``: one row per entity, keyed by the event's ``key`` field (the ``--enrich``
    key, else ``id``), with the same columns ``modelport predict`` writes (the scores,
    ``model``, ``model_version``, ``scored_at``), so ``modelport lookup`` and the web
    service's ``/lookup`` read the score of the latest event (of several events of one
    entity in a batch, the last). A new table's key column takes the type of the
    ``--enrich`` key column, else text. Each key is put in the key column's type; an event
    whose key cannot be, or whose row the table refuses, is rejected with the code
    ``lookup_store``. Events without the key are scored and published but not stored. The
    upsert is committed before the batch is acknowledged: a redelivered event writes the
    same row again.
    """

    def __init__(self, spec: str, key: str, explain: int = 0) -> None:
        from modelport.io.tables import redact

        url, _, table = spec.partition("#")
        if not url or not table or "?" in table:
            raise UserError(f"--lookup-store {redact(spec)!r}: use a SQLAlchemy URL with the "
                            "table after '#', e.g. sqlite:///scores.db#churn_scores")
        self.url, self.table, self.key = url, table, key
        self.explain = explain  # reason_1..k and contribution_1..k columns
        self._sink: SqlSink | None = None
        self.column: Column[Any] | None = None
        self.location = redact(spec)

    def start(self, scorer: Scorer, key_column: Column[Any] | None = None) -> None:
        """Create the table if needed (its key typed like ``key_column``, else text) and
        learn the type of its key column."""
        import pyarrow as pa
        import sqlalchemy as sa

        from modelport.io.sinks import SqlSink
        from modelport.serve.batch import output_schema

        sink = SqlSink(self.url, self.table, self.key, scorer.name, scorer.version, "stream")
        where: dict[str, Any] = {"schema": sink.schema_name or None}

        def key_of_table() -> Column[Any]:
            table = sa.Table(sink.table_name, sa.MetaData(**where), autoload_with=sink.engine)
            return table.c[self.key]

        if not self.explain:
            from modelport.serve.batch import refuse_stale_reasons

            refuse_stale_reasons(f"{self.url}#{self.table}", "modelport stream")
        try:
            if sa.inspect(sink.engine).has_table(sink.table_name, **where):
                key_column = key_of_table()
        except (sa.exc.SQLAlchemyError, KeyError) as exc:
            raise UserError(f"--lookup-store {self.location}: cannot read the table's key "
                            f"column {self.key!r}: {reason(exc, 300)}") from None
        self._id_type = pa.int64() if _whole(key_column) else pa.string()
        sink.start(output_schema(scorer.signature, self._id_type, self.key, self.explain),
                   resume=True)
        try:
            self.column = key_of_table()
        except sa.exc.SQLAlchemyError as exc:
            raise UserError(f"--lookup-store {self.location}: cannot read the table: "
                            f"{reason(exc, 300)}") from None
        self._sink = sink

    def write(self, scorer: Scorer, events: list[dict], outcome: Outcome) -> None:
        """Upsert the scores of the scored ``events`` that have a key; take the events whose
        score cannot be stored out of ``outcome``, with their reason."""
        import pyarrow as pa

        from modelport.serve.batch import output_schema, output_table

        holders: dict[Any, list[int]] = {}  # key -> the events (batch positions) holding it
        for p in outcome.positions.tolist():
            value = events[p].get(self.key)
            if _missing(value):
                continue
            assert self.column is not None  # set by start
            try:
                k = _key(self.column, value, "--lookup-store")
            except ValueError as exc:
                outcome.reject([p], Reject(self.key, "lookup_store", str(exc)))
                continue
            holders.setdefault(k, []).append(p)
        if not holders:
            return
        # one row per key, from its last event; positions in the outputs are read after the
        # rejects above took rows out
        at = {p: j for j, p in enumerate(outcome.positions.tolist())}
        entries = [(k, at[held[-1]]) for k, held in holders.items()]
        signature = scorer.signature
        schema = output_schema(signature, self._id_type, self.key, self.explain)

        def upsert(positions: np.ndarray) -> None:
            part = [entries[i] for i in positions.tolist()]
            rows = np.asarray([j for _, j in part], dtype=np.int64)
            ids = pa.array([k for k, _ in part], type=self._id_type)
            picked = {name: np.asarray(v)[rows] for name, v in outcome.outputs.items()}
            assert self._sink is not None  # set by start
            self._sink.upsert(output_table(signature, picked, ids, self.key, schema),
                              version=scorer.version)

        _, failed = isolate(upsert, len(entries))
        for i, error in failed.items():
            k = entries[i][0]
            outcome.reject(holders[k], Reject(
                self.key, "lookup_store", f"the score could not be stored in "
                f"{self.location} under {self.key}={shown(k)} ({reason(error, 300)})"))

    def close(self) -> None:
        if self._sink is not None:
            self._sink.finish()


# -- one batch ---------------------------------------------------------------------------

@dataclass
class Steps:
    """What the worker does to every batch besides scoring it: the wire format, the input
    policy, and the optional enrichment, lookup store and prediction log."""

    fmt: str = "json"
    policy: InputPolicy = FLAG
    enrich: Enrich | None = None
    store: LookupStore | None = None
    plog: Any = None
    #: how many reasons each output carries (0: none)
    explain: int = 0


@dataclass
class Scored:
    """A scored batch: outputs and dead letters as ``(key, payload)`` pairs to publish, the
    reasons of the rejected events and the flags of the scored ones (for the metrics)."""

    version: int
    outputs: list[tuple[str, bytes]] = field(default_factory=list)
    dead: list[tuple[str, bytes]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    flags: list[list[Flag]] = field(default_factory=list)
    seconds: float = 0.0


def score_batch(scorer: Scorer, messages: list[Message], steps: Steps | None = None) -> Scored:
    """Score ``messages`` through the scoring core: one check call and one model call for
    a clean batch; every event that cannot be scored becomes a dead letter with its reason.

    Raises only for a failure not tied to events (a database that is away), for the caller
    to try the whole batch again.
    """
    start = time.perf_counter()
    steps = steps or Steps()
    fmt = steps.fmt
    n = len(messages)
    mids: list[str] = [""] * n
    rejects: dict[int, Reject] = {}  # by message position
    events: list[dict] = []
    at: list[int] = []  # the message position of each event
    # the common case (orjson) without a call per message: decode() reads the rest
    fast = fast_json() if fmt == "json" else None
    for i, msg in enumerate(messages):
        try:
            try:
                event = fast(msg.payload) if fast is not None else decode(msg.payload, fmt)
            except ValueError:
                if fast is None:
                    raise
                event = decode(msg.payload, fmt)
        except Exception as exc:  # noqa: BLE001 - any decoder failure is this message's
            mids[i] = _message_id(msg, None)
            rejects[i] = Reject(None, f"not_{fmt}", f"not {fmt}: {_text(str(exc))[:200]}")
            continue
        if event.__class__ is not dict:
            mids[i] = _message_id(msg, event)
            rejects[i] = Reject(None, "not_a_record", f"not a {fmt} object of fields, but a "
                                                      f"{type(event).__name__}")
            continue
        mids[i] = msg.id if msg.id is not None else _message_id(msg, event)
        events.append(event)
        at.append(i)
    if steps.enrich is not None and events:
        events, bad = steps.enrich.merge(events)
        if bad:
            for j, why in bad.items():
                rejects[at[j]] = why
            keep = [j for j in range(len(events)) if j not in bad]
            events, at = [events[j] for j in keep], [at[j] for j in keep]
    scored = Scored(scorer.version)
    checked = outcome = None
    if events:
        checked = check(events, scorer.signature, steps.policy, unknown="ignore")
        outcome = score(scorer.predictor.run_checked, checked, scorer.predictor.empty_outputs)
        if steps.explain and outcome.scored:
            _explain(scorer, checked, outcome, steps.explain)
        if steps.store is not None and outcome.scored:
            steps.store.write(scorer, events, outcome)
        for p, why in outcome.rejects.items():
            rejects[at[p]] = as_event(why, p)
    if steps.plog is not None:
        _log(steps.plog, scorer, messages, mids, events, at, checked, outcome, rejects)
    if outcome is not None and outcome.scored:
        assert checked is not None  # checked before scored
        scored.outputs = _outputs(scorer, events, at, mids, outcome, checked, fmt)
        scored.flags = list(outcome.flags.values())
    for i in sorted(rejects):
        scored.dead.append(_dead_record(messages[i], mids[i], rejects[i], fmt))
    scored.rejects = list(rejects.values())
    scored.seconds = time.perf_counter() - start
    return scored


def _explain(scorer: Scorer, checked: Checked, outcome: Outcome, k: int) -> None:
    """Add the scored events' reasons to ``outcome``'s outputs: the columns a lookup table
    holds and, under :data:`REASONS`, each output's ``base`` and ``reasons`` (rows the
    later steps reject are taken out with their scores)."""
    positions = outcome.positions
    cols = checked.columns if len(positions) == checked.rows else \
        {c: v[positions] for c, v in checked.columns.items()}
    why = reasons.top(scorer.explainer(), cols, k)
    records = np.empty(len(positions), dtype=object)
    records[:] = why.records()
    outcome.outputs.update(why.table())
    outcome.outputs[REASONS] = records


#: the output key holding each scored event's reasons, as its output carries them
REASONS = "_reasons"


def _scores(outputs: dict) -> dict:
    """The model's outputs without the reasons :func:`_explain` added."""
    return {k: v for k, v in outputs.items()
            if k != REASONS and not k.startswith(("reason_", "contribution_"))}


def _outputs(scorer: Scorer, events: list[dict], at: list[int], mids: list[str],
             outcome: Outcome, checked: Checked, fmt: str) -> list[tuple[str, bytes]]:
    base = {"model": scorer.name, "version": scorer.version}
    columns = {k: np.asarray(v).tolist() for k, v in _scores(outcome.outputs).items()}
    explained = outcome.outputs.get(REASONS)
    flags = outcome.flags
    warnings = _Warnings(scorer.signature, checked) if flags else None
    suffix = f"@{scorer.version}"
    dumps = encoder(fmt)
    records = []
    for j, p in enumerate(outcome.positions.tolist()):
        mid = mids[at[p]]
        row = {"id": mid, **base}
        key = events[p].get("id")
        if key is not None:
            # ids are mostly plain text or whole numbers: only others need a look
            kind = key.__class__
            if (kind is str and key.isascii()) or (kind is int and _INT64_MIN <= key <= _UINT64_MAX):
                row["key"] = key
            elif not _missing(key):
                row["key"] = _plain_id(key)
        for k, values in columns.items():
            row[k] = values[j]
        if explained is not None:
            row.update(explained[j])
        if warnings is not None and p in flags:
            row["warnings"] = warnings(flags[p], p)
        wire = mid + suffix
        if not (len(wire) <= 200 and wire.isascii() and wire.isprintable()):
            wire = _wire_key(mid, scorer.version)
        records.append((wire, dumps(row)))
    return records


class _Warnings:
    """The ``warnings`` of flagged outputs, each message naming the event's own value (a
    flag's own message names only the first); what does not depend on the value is worked
    out once per flag."""

    def __init__(self, signature: Signature, checked: Checked) -> None:
        self.columns = {c.name: c for c in signature.inputs}
        self.checked = checked
        self.parts: dict[int, tuple] = {}

    def __call__(self, flags: list[Flag], p: int) -> list[dict[str, str]]:
        out = []
        for f in flags:
            parts = self.parts.get(id(f))
            if parts is None:
                parts = self.parts[id(f)] = self._parts(f)
            field, kind, head, tail, show = parts
            message = f.message if show is None else \
                head + show(self.checked.columns[f.field][p]) + tail
            out.append({"field": field, "kind": kind, "message": message})
        return out

    def _parts(self, f: Flag) -> tuple:
        column = self.columns.get(f.field)
        head = f"{f.field!r} value "
        if f.kind == "out_of_range" and column is not None and column.min is not None:
            tail = f" is outside the range seen in training [{column.min:g}, {column.max:g}]"
            return _text(f.field), f.kind, head, tail, lambda v: format(v, "g")
        if f.kind == "unseen_category":
            return _text(f.field), f.kind, head, " is a category unseen in training", shown
        return _text(f.field), f.kind, "", "", None


def _log(plog: PredictionLogger, scorer: Scorer, messages: list[Message], mids: list[str],
         events: list[dict], at: list[int], checked: Checked | None, outcome: Outcome | None,
         rejects: dict[int, Reject]) -> None:
    """The scored events and the reasons of the rejected ones into the prediction log."""
    if outcome is not None and outcome.scored:
        assert checked is not None  # checked before scored
        positions = outcome.positions
        cols = checked.columns if len(positions) == checked.rows else \
            {k: v[positions] for k, v in checked.columns.items()}
        now = time.time()
        scored = positions.tolist()
        ids = []
        for p in scored:
            key = events[p].get("id")
            ids.append(mids[at[p]] if _missing(key) else key)
        flags = outcome.flags
        plog.log(scorer.name, scorer.version, cols, _scores(outcome.outputs),
                 request_ids=[mids[at[p]] for p in scored], ids=ids,
                 latency_ms=[(now - messages[at[p]].received) * 1000 for p in scored],
                 warnings=[warning_text(flags.get(p, [])) or None for p in scored]
                 if flags else None)
    if rejects:
        rows = sorted(rejects)
        plog.log(scorer.name, scorer.version, None, None, ids=[mids[i] for i in rows],
                 request_ids=[mids[i] for i in rows],
                 errors=[rejects[i].message for i in rows])


def _score_alone(scorer: Scorer, messages: list[Message], steps: Steps) -> Scored:
    """Score ``messages`` one at a time, after a batch failed in a way no step isolated:
    what fails alone is dead-lettered with the error (code ``internal``), the rest scored."""
    out = Scored(scorer.version)
    for msg in messages:
        try:
            one = score_batch(scorer, [msg], steps)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.exception("could not score message %s", msg.id)
            why = Reject(None, "internal", f"the worker could not score this event "
                                           f"({reason(exc, 300)})")
            one = Scored(scorer.version, dead=[_dead_record(msg, _message_id(msg, None), why,
                                                            steps.fmt)], rejects=[why])
        out.outputs += one.outputs
        out.dead += one.dead
        out.rejects += one.rejects
        out.flags += one.flags
        out.seconds += one.seconds
    return out


# -- the worker --------------------------------------------------------------------------

async def run(uri: str, source_url: str, sink_url: str, *, dead_letter_url: str | None = None,
              group: str = "modelport", batch: int = 500, max_wait_ms: float = 20.0,
              fmt: str = "json", enrich: str | None = None, poll_seconds: float = 2.0,
              metrics_port: int | None = None, registry: Registry | None = None,
              stop: asyncio.Event | None = None, log_url: str | None = None,
              log_sample: float = 1.0, lookup_store: str | None = None,
              inflight: int = 3, policy: InputPolicy = FLAG,
              explain: int | str | None = None) -> Stats:
    """Run one stream worker until SIGTERM/SIGINT (or ``stop``); return what it did.

    :func:`run_settings` with the :class:`~modelport.serve.stream_settings.StreamSettings`
    of these arguments, which say what each one means.
    """
    settings = StreamSettings(
        uri, source_url, sink_url, dead_letter_url=dead_letter_url, group=group, batch=batch,
        max_wait_ms=max_wait_ms, fmt=fmt, enrich=enrich, poll_seconds=poll_seconds,
        metrics_port=metrics_port, log_url=log_url, log_sample=log_sample,
        lookup_store=lookup_store, inflight=inflight, policy=policy, explain=explain)
    return await run_settings(settings, registry=registry, stop=stop)


async def run_settings(settings: StreamSettings, *, registry: Registry | None = None,
                       stop: asyncio.Event | None = None) -> Stats:
    """Run one stream worker as ``settings`` say until SIGTERM/SIGINT (or ``stop``); return
    what it did.

    Reads up to ``batch`` messages (waiting at most ``max_wait_ms`` for them to gather),
    scores them in one call, publishes outputs and dead letters, then acknowledges.
    ``policy`` says whether an unseen category or a number outside the training range is
    scored and flagged (the default) or rejected. ``log_url`` (a SQLAlchemy URL with
    ``#table``) keeps a ``log_sample`` share of the scored events in a prediction log for
    ``modelport monitor``. ``lookup_store`` (``URL#table``) upserts each event's new score
    into a lookup table (see :class:`LookupStore`). ``explain`` (a number of reasons)
    adds each event's largest reasons to its output and to the lookup table; a version
    that cannot explain stops the worker before it reads anything.
    """
    from modelport.registry import Registry

    wire = Brokers.open(settings.source_url, settings.sink_url, settings.dead_letter_url,
                        group=settings.group, batch=settings.batch, inflight=settings.inflight)
    registry = registry or Registry()
    metrics = _metrics(settings.metrics_port)
    stats = Stats()
    follower = follow(settings.uri, registry, poll_seconds=settings.poll_seconds,
                      on_reload=_reload_counter(stats, metrics))
    steps = _steps(follower.current, fmt=settings.fmt, policy=settings.policy,
                   explain=settings.explain, enrich=settings.enrich,
                   lookup_store=settings.lookup_store, log_url=settings.log_url,
                   log_sample=settings.log_sample, metrics=metrics)
    _serve_metrics(metrics, settings.metrics_port, follower)
    stop = stop_on_signals(stop)
    await wire.connect()
    _freeze_startup_objects()
    log.info("streaming %s version %s (%s) from %s to %s", follower.uri, follower.version,
             follower.current.format, settings.source_url, settings.sink_url)
    reader = Reader(wire.source, settings.batch, settings.max_wait_ms / 1000, stats, stop)
    settling = Settling(wire, wire.offers.inflight(settings.inflight), stats, metrics,
                        follower.name, stop)
    lag = Lag(wire.measured(), stats, metrics)
    try:
        while not stop.is_set():
            if await settling.wait_for_room():
                continue
            msgs = await reader.read()
            if msgs is None:
                continue  # the source failed and the pause after it is over
            if msgs:
                scored = await _score(follower, msgs, steps, stats, stop)
                if scored is None:
                    break  # stopped while a database was away: the batch stays unacknowledged
                if scored.dead and wire.dead is None:
                    log.warning("dropping %d bad message(s) (no --dead-letter): %s",
                                len(scored.dead), scored.dead[0][1][:200])
                settling.add(msgs, scored)
            follower.tick()
            await lag.sample()
        await settling.drain()  # SIGTERM: what was scored is published and acknowledged
    finally:
        gc.unfreeze()
        await settling.abandon()
        await wire.close()
        await _close_steps(steps)
    return stats


async def _score(follower: Follower[Scorer], msgs: list[Message], steps: Steps, stats: Stats,
                 stop: asyncio.Event) -> Scored | None:
    """The batch scored by the version served now; after a failure not tied to events (a
    database that is away) the whole batch again, after a pause, until it works or the
    worker is told to stop (None)."""
    backoff = Backoff("scoring a batch", stats)
    while True:
        scorer = follower.current
        try:
            try:
                scored = score_batch(scorer, msgs, steps)
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.exception("scoring a batch of %d failed; scoring its messages one by one",
                              len(msgs))
                scored = _score_alone(scorer, msgs, steps)
            backoff.ok()
            return scored
        except Exception as exc:
            if await backoff.wait(exc, stop):
                return None


# -- setting the worker up ---------------------------------------------------------------

def _metrics(port: int | None) -> StreamMetrics | None:
    """The worker's metrics when they are served (``port``), else None; the metrics
    library is imported only then."""
    if not port:
        return None
    from modelport.scoring.metrics import StreamMetrics

    return StreamMetrics()


def _serve_metrics(metrics: StreamMetrics | None, port: int | None,
                   follower: Follower[Scorer]) -> None:
    """Answer ``/metrics`` on ``port``, saying which version serves."""
    if metrics is None or not port:
        return
    metrics.set_serving(follower.name, "champion", follower.version)
    metrics.serve(port)


def _reload_counter(stats: Stats, metrics: StreamMetrics | None
                    ) -> Callable[[Follower, str], None]:
    """The follower's ``on_reload``: counts each version loaded, and tells the metrics how
    each attempt to load one went."""
    def reloaded(follower: Follower, outcome: str) -> None:
        if outcome == "loaded":
            stats.reloads += 1
        if metrics is not None:
            metrics.follower_hook("champion")(follower, outcome)
            if outcome == "loaded":
                metrics.stream_reloads.inc()

    return reloaded


def _steps(scorer: Scorer, *, fmt: str, policy: InputPolicy, explain: int | str | None,
           enrich: str | None, lookup_store: str | None, log_url: str | None,
           log_sample: float, metrics: StreamMetrics | None) -> Steps:
    """What the worker does to every batch besides scoring it, each optional step built
    (and its tables read) now, so that a wrong option stops the worker before it reads."""
    steps = Steps(fmt=fmt, policy=policy)
    if explain is not None:
        steps.explain = _explaining(scorer, explain)
    steps.enrich = Enrich(enrich) if enrich else None
    if lookup_store:
        steps.store = LookupStore(lookup_store, steps.enrich.key if steps.enrich else "id",
                                  steps.explain)
        steps.store.start(scorer, steps.enrich.column if steps.enrich is not None else None)
    if log_url:
        steps.plog = _prediction_log(log_url, log_sample, metrics)
    return steps


def _explaining(scorer: Scorer, explain: int | str) -> int:
    """How many reasons each output carries; a version that cannot explain is refused."""
    k = reasons.count(explain, scorer.signature, "--explain")
    try:
        scorer.explainer()
    except UserError as exc:
        raise UserError(f"--explain: {exc}; stream without --explain") from None
    return k


def _prediction_log(url: str, sample: float, metrics: StreamMetrics | None) -> Any:
    """The prediction log keeping a ``sample`` share of the scored events; the metrics
    count the records it drops or its database refuses."""
    from modelport.monitor.log import PredictionLogger

    return PredictionLogger(url, sample=sample, source="stream",
                            on_drop=metrics.log_dropped.inc if metrics else None,
                            on_refuse=metrics.log_refused.inc if metrics else None)


def _freeze_startup_objects() -> None:
    """Keep what start-up built (libraries, the model), which lives as long as the worker,
    out of the collector's full passes, which otherwise stall a batch for tens of
    milliseconds."""
    gc.collect()
    gc.freeze()


async def _close_steps(steps: Steps) -> None:
    """Close the prediction log (off the event loop: it writes what it holds) and the
    lookup store."""
    if steps.plog is not None:
        await asyncio.to_thread(steps.plog.close)
    if steps.store is not None:
        steps.store.close()


def serve(uri: str, source_url: str, sink_url: str, **options: Any) -> Stats:
    """Blocking :func:`run`."""
    return asyncio.run(run(uri, source_url, sink_url, **options))


def serve_settings(settings: StreamSettings, registry: Registry | None = None) -> Stats:
    """Blocking :func:`run_settings`, for the command line."""
    return asyncio.run(run_settings(settings, registry=registry))
