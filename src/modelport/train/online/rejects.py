"""The learner's reject channel: every event it reads and does not learn, with the reason.

An event is rejected when it cannot be decoded (``not_json``, ``not_msgpack``,
``not_a_record``), when the scoring core's row checker refuses it (``missing_field``,
``wrong_type``), when a field it is learnt from holds text that is not Unicode
(``not_text``: a lone surrogate, which JSON can escape), when its label is not one of the
classes (``unknown_class``) or when it holds a number the learner cannot learn
(``not_learnable``: an infinite number, or a missing one when ``preprocess.numeric`` is
``none``). Each is counted by that code and, when
the spec names ``rejects:``, written there: a JSONL file (one record a line) or a broker
(the adapters the stream worker writes its dead letters with). A record::

    {"model": "churn-online", "seq": 1234, "reason_code": "wrong_type", "field": "tenure",
     "reason": "field 'tenure' must be numeric, got 'forty'; send a number or null",
     "event": {"customer_id": 7, "tenure": "forty", "plan": "basic", "churned": 1}}

with ``payload`` (the raw text, or ``payload_base64``) instead of ``event`` for an event that
could not be decoded. ``seq`` is the number the learner gave the event, the same when a
restart reads it again (a broker record's id is ``MODEL:SEQ@reject``, which NATS uses to drop
a repeat). A batch's rejects are written before any checkpoint covers the batch, and a file
is synced to disk before the checkpoint is taken, so a crash never loses one; a restart may
write those after the last checkpoint again (at least once, like the stream's dead letters).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from modelport.errors import UserError
from modelport.scoring.checks import Reject

if TYPE_CHECKING:
    from modelport.train.online.spec import OnlineSpec

log = logging.getLogger("modelport.learn")
#: how long a broker holding the rejects may stay away before the learner gives up
_PATIENCE_S = 60.0


def record(model: str, seq: int, why: Reject, event: dict | None = None,
           payload: bytes | None = None) -> dict[str, Any]:
    """The record of one rejected event: the model, the event's number, the reason's code,
    field and message, and the event (or its raw payload when it could not be decoded)."""
    out: dict[str, Any] = {"model": model, "seq": int(seq), "reason_code": why.code}
    if why.field is not None:
        out["field"] = str(why.field)
    out["reason"] = why.message
    if event is not None:
        out["event"] = plain(event)
    elif payload is not None:
        try:
            out["payload"] = bytes(payload).decode("utf-8")
        except UnicodeDecodeError:
            out["payload_base64"] = base64.b64encode(payload).decode()
    return out


def plain(value: Any) -> Any:
    """``value`` as JSON can hold it: NumPy scalars as Python ones, a missing number as
    null, an infinite one as its text, bytes as text, dates in ISO form, anything else as
    its text."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float | np.floating):
        v = float(value)
        return v if math.isfinite(v) else None if v != v else str(v)
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def encode(rec: dict[str, Any], fmt: str = "json") -> bytes:
    """A record as bytes. JSON keeps what orjson refuses (an integer beyond 64 bits, a lone
    surrogate) exactly, escaped by the standard library; msgpack, which cannot, writes
    those as text."""
    if fmt == "msgpack":
        import msgpack

        try:
            return msgpack.packb(rec, use_bin_type=True)
        except (OverflowError, UnicodeEncodeError):
            return msgpack.packb(_texts(rec), use_bin_type=True)
    import orjson

    try:
        return orjson.dumps(rec)
    except TypeError:  # orjson's encode error
        return json.dumps(rec, ensure_ascii=True, allow_nan=False).encode()


def _texts(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _texts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_texts(v) for v in value]
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**64:
        return str(value)
    return value


class FileRejects:
    """Rejects appended to a JSONL file, flushed with every batch and synced to disk before
    a checkpoint."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.fh: BinaryIO | None = None

    async def connect(self) -> None:
        try:
            self.fh = open(self.path, "ab")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise UserError(f"rejects: cannot write {self.path}: {exc.strerror}; name a file "
                            "the learner may write") from None
        if self.fh.tell():
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":  # a line cut short by a crash stays a line of its own
                    self.fh.write(b"\n")

    async def write(self, records: list[dict]) -> None:
        assert self.fh is not None  # opened by connect
        self.fh.write(b"".join(encode(r) + b"\n" for r in records))
        self.fh.flush()

    async def sync(self) -> None:
        if self.fh is not None:
            await asyncio.to_thread(os.fsync, self.fh.fileno())

    async def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


class BrokerRejects:
    """Rejects published to a broker; a publish returns once the broker holds them. A
    broker that is away is tried again for up to a minute before the learner stops (its
    checkpoint not taken, so nothing is lost)."""

    def __init__(self, url: str, fmt: str) -> None:
        from modelport.io import brokers
        from modelport.io.tables import redact

        self.sink = brokers.open_sink(url, "rejects:")
        self.fmt = fmt
        self.name = redact(url)

    async def connect(self) -> None:
        await self.sink.connect()

    async def write(self, records: list[dict]) -> None:
        from modelport.scoring.isolation import is_transient, reason

        pairs = [(f"{r['model']}:{r['seq']}@reject", encode(r, self.fmt)) for r in records]
        delay, since = 0.2, time.monotonic()
        while True:
            try:
                await self.sink.publish(pairs)
                return
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() - since > _PATIENCE_S:
                    raise
                log.warning("writing rejects to %s failed (%s); trying again in %.1f s",
                            self.name, reason(exc, 300), delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 5.0)

    async def sync(self) -> None:
        pass

    async def close(self) -> None:
        await self.sink.close()


def open_rejects(spec: OnlineSpec) -> FileRejects | BrokerRejects | None:
    """The reject channel the spec names (not connected yet), or None."""
    if spec.rejects is None:
        return None
    if "://" in spec.rejects:
        return BrokerRejects(spec.rejects, spec.source.format)
    return FileRejects(spec.rejects)
