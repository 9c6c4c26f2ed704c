"""Where a learner's events come from, and where in them it stands.

Every source reads batches of events and says, with each batch, the position after it:

- a **file** replayed as a stream (``.jsonl``, ``.csv``: a byte offset; ``.parquet``: a row
  number), followed as it grows (``--follow``, JSONL and CSV) instead of ending at its end;
- a **SQL table** tailed by an increasing key (the last key learnt);
- **Redis Streams** and **NATS JetStream**, read from a position outside any consumer group
  (the last entry id, the last stream sequence);
- **RabbitMQ**, **MQTT** and **Kafka**, which cannot be read from a position: their
  messages are acknowledged only once a checkpoint covers them, and a checkpoint records
  the ids of the messages it covers that may still be unacknowledged, so that the ones a
  crash makes the broker deliver again are recognised and not learnt twice.

Any source can be read at no more than ``rate`` events a second (:class:`Paced`). A
checkpoint stores the position; a restarted learner opens its source there. Without
``--follow`` a source ends where it ended when learning started (the end of the file, the
last key, entry or sequence then); RabbitMQ, MQTT and Kafka end once no event came for a
few seconds.
"""

from __future__ import annotations

import asyncio
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import UserError
from modelport.scoring.checks import Reject
from modelport.train.online.spec import SourceSpec

#: bytes read from a file at a time
_BLOCK = 1 << 20
#: rows of a Parquet file converted to NumPy at a time
_PARQUET_ROWS = 65_536
#: how long an acknowledged-delivery broker must stay silent to count as drained
_IDLE_END_S = 2.0


@dataclass
class Batch:
    """Events read at once: as rows (dicts) or as columns, with the position after them.

    ``unreadable`` holds each event that could not be decoded, as the :class:`Reject`
    saying why and its raw bytes (those go to the reject channel, are covered by the
    position, and are not learnt). ``not_text`` names, by position, the fields of events
    whose text is not Unicode (a lone surrogate: JSON can escape one). ``messages`` and
    ``ids`` are the broker messages to acknowledge once a checkpoint covers them, and their
    ids.
    """

    n: int = 0
    position: Any = None
    rows: list[dict] | None = None
    columns: dict[str, Any] | None = None
    unreadable: list[tuple[Reject, bytes]] = field(default_factory=list)
    messages: list | None = None
    ids: list | None = None
    not_text: dict[int, list[str]] = field(default_factory=dict)

    def column(self, name: str):
        if self.columns is not None:
            return self.columns.get(name)
        return [r.get(name) for r in self.rows] if self.rows else None

    def has(self, name: str) -> bool:
        """Whether columnar events carry the field ``name`` (rows: always, event by event)."""
        return self.columns is None or name in self.columns

    def event(self, i: int) -> dict[str, Any]:
        """Event ``i`` as a dict of its fields."""
        if self.columns is not None:
            return {k: v[i] for k, v in self.columns.items()}
        return self.rows[i]

    def sample(self) -> dict[str, Any]:
        """Every field of the batch with its values, for working out a schema."""
        if self.columns is not None:
            return self.columns
        names: dict[str, None] = {}
        for r in self.rows or []:
            names.update(dict.fromkeys(r))
        return {name: self.column(name) for name in names}

    def take(self, index) -> Batch:
        """The events at ``index`` (rows or columns), keeping the position."""
        index = np.asarray(index)
        if self.columns is not None:
            cols = {k: (v[index] if isinstance(v, np.ndarray) else [v[i] for i in index])
                    for k, v in self.columns.items()}
            return Batch(len(index), self.position, columns=cols)
        odd = {j: self.not_text[i] for j, i in enumerate(index.tolist()) if i in self.not_text}
        return Batch(len(index), self.position, rows=[self.rows[i] for i in index],
                     not_text=odd)


def open_source(spec, follow: bool = False):
    """The source a spec names (not opened yet), paced when the spec gives a rate."""
    source = _open(spec, follow)
    return Paced(source, spec.source.rate) if spec.source.rate else source


def _open(spec, follow: bool):
    src: SourceSpec = spec.source
    if src.kind == "file":
        path = Path(src.url)
        name = path.name.lower()
        if name.endswith((".parquet", ".pq")):
            if follow:
                raise UserError(f"{spec.label}: source: a Parquet file cannot be followed as it "
                                "grows; replay it without --follow, or write events to .jsonl")
            return ParquetFile(path)
        if name.endswith(".csv"):
            return CsvFile(path, follow, src.poll_ms)
        return JsonlFile(path, follow, src.poll_ms)
    if src.kind == "sql":
        return SqlTable(src, follow)
    from modelport.io import brokers

    url = brokers.parse(src.url, "source")
    if url.scheme in ("redis", "rediss", "nats"):
        return PositionedBroker(src, url, follow)
    return AcknowledgedBroker(src, url, follow, spec)


class Paced:
    """Any source, read at no more than ``rate`` events a second (a replay at the pace of
    the original stream, a learner that must leave room to others). With a ``max_wait_ms``
    long enough for a batch to come due, batches stay full."""

    def __init__(self, source, rate: float) -> None:
        self.source = source
        self.pacer = _Pacer(rate)

    def __getattr__(self, name: str):
        return getattr(self.source, name)

    async def open(self, position) -> None:
        await self.source.open(position)

    async def read(self, n: int, wait_s: float) -> Batch | None:
        n = await self.pacer.allow(n, wait_s)
        if n == 0:
            return Batch(0, None)
        return await self.source.read(n, wait_s)

    async def acknowledge(self, messages: list) -> None:
        await self.source.acknowledge(messages)

    async def close(self) -> None:
        await self.source.close()


class _Pacer:
    """Releases events at ``rate`` a second from the first read on (a source may give
    fewer than released; the pace is an upper bound)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.start: float | None = None
        self.released = 0

    async def allow(self, n: int, wait_s: float) -> int:
        """How many events may go now: up to ``n``, waiting at most ``wait_s`` to gather
        them (and until at least one is due)."""
        if not self.rate:
            return n
        now = time.monotonic()
        if self.start is None:
            self.start = now
        deadline = now + wait_s
        while True:
            due = int((time.monotonic() - self.start) * self.rate) - self.released
            if due >= n or (due > 0 and time.monotonic() >= deadline):
                break
            if time.monotonic() >= deadline and due <= 0:
                await asyncio.sleep(max(1.0 / self.rate, 0.001))
                continue
            missing = n - max(due, 0)
            await asyncio.sleep(max(0.0005, min(missing / self.rate,
                                                deadline - time.monotonic())))
        take = min(n, due)
        self.released += take
        return take


# -- files -------------------------------------------------------------------------------

class _Lines:
    """Complete lines of a (possibly growing) file, each with the byte offset after it."""

    def __init__(self, path: Path, offset: int) -> None:
        self.fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.fh.seek(offset)
        self.offset = offset  # after the last line handed out
        self.read_to = offset  # how far the file was read
        self.partial = b""  # bytes read after the last line break
        self.lines: list[bytes] = []
        self.ends: list[int] = []
        self.cursor = 0

    def take(self, n: int) -> tuple[list[bytes], int]:
        """Up to ``n`` non-empty complete lines and the offset after the last line read."""
        out: list[bytes] = []
        while len(out) < n:
            if self.cursor >= len(self.lines):
                if not self._fill():
                    break
                continue
            stop = min(len(self.lines), self.cursor + (n - len(out)))
            out.extend(line for line in self.lines[self.cursor:stop] if line.strip())
            self.offset = self.ends[stop - 1]
            self.cursor = stop
        return out, self.offset

    def _fill(self) -> bool:
        data = self.fh.read(_BLOCK)
        if not data:
            return False
        at = self.read_to - len(self.partial)
        self.read_to += len(data)
        pieces = (self.partial + data).split(b"\n")
        self.partial = pieces.pop()
        ends = []
        for piece in pieces:
            at += len(piece) + 1
            ends.append(at)
        self.lines, self.ends, self.cursor = pieces, ends, 0
        return True

    def close(self) -> None:
        self.fh.close()


class _FileSource:
    exactly_once = True
    broker = False

    def __init__(self, path: Path, follow: bool = False, poll_ms: float = 200.0) -> None:
        if not path.is_file():
            raise UserError(f"cannot read {path}: no such file; check source in the spec")
        self.path = path
        self.name = str(path)
        self.follow = follow
        self.poll_s = poll_ms / 1000

    async def close(self) -> None:
        pass

    async def acknowledge(self, messages: list) -> None:
        pass


def _json_loads():
    """orjson's parser when installed (several times faster), else the standard one."""
    try:
        import orjson

        return orjson.loads
    except ImportError:
        import json

        return json.loads


def undecodable(fmt: str, detail: str) -> Reject:
    """Why an event could not be decoded, coded as the stream worker codes it."""
    return Reject(None, f"not_{fmt}", f"not {fmt}: {detail[:200]}")


def fields_not_text(event: dict) -> list[str]:
    """The fields of an event whose text is not Unicode (a lone surrogate). Only JSON that
    escapes one (which orjson refuses) can hold it, so only such events are looked at."""
    out = []
    for k, v in event.items():
        if isinstance(v, str) and not v.isascii():
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                out.append(str(k))
    return out


def not_a_record(fmt: str, event) -> Reject:
    """Why a decoded event is not an event: it is not an object of fields."""
    return Reject(None, "not_a_record",
                  f"not a {fmt} object of fields, but a {type(event).__name__}")


class JsonlFile(_FileSource):
    """One JSON object per line; the position is the byte offset after the last line.

    A line orjson refuses although it is JSON (an integer beyond 64 bits, an escaped lone
    surrogate) is read as the stream worker reads it, so that the checks say what is wrong
    with the event rather than the parser."""

    async def open(self, position) -> None:
        self.lines = _Lines(self.path, int((position or {}).get("offset", 0)))

    async def read(self, n: int, wait_s: float) -> Batch | None:
        lines, offset = self.lines.take(n)
        if not lines:
            if self.follow:
                await asyncio.sleep(min(self.poll_s, max(wait_s, 0.001)))
                return Batch(0, {"offset": offset})
            return None
        loads = _json_loads()
        rows, bad, odd = [], [], {}
        for line in lines:
            try:
                row = loads(line)
            except ValueError:  # both parsers' decode errors are ValueErrors
                from modelport.io.events import decode

                try:
                    row = decode(line, "json")
                except ValueError as exc:
                    bad.append((undecodable("json", str(exc)), line))
                    continue
                if isinstance(row, dict) and (found := fields_not_text(row)):
                    odd[len(rows)] = found
            if isinstance(row, dict):
                rows.append(row)
            else:
                bad.append((not_a_record("json", row), line))
        return Batch(len(rows), {"offset": offset}, rows=rows, unreadable=bad, not_text=odd)

    async def close(self) -> None:
        if getattr(self, "lines", None) is not None:
            self.lines.close()


class CsvFile(_FileSource):
    """A CSV file with a header line and one event per line (no line breaks inside
    quoted values); the position is the byte offset after the last line learnt."""

    async def open(self, position) -> None:
        with open(self.path, "rb") as fh:
            header = fh.readline()
        if not header.strip():
            raise UserError(f"{self.path} has no header line naming its columns")
        self.header = header.rstrip(b"\r\n")
        self.types: dict | None = None
        offset = int((position or {}).get("offset", 0)) or len(header)
        self.lines = _Lines(self.path, offset)

    async def read(self, n: int, wait_s: float) -> Batch | None:
        lines, offset = self.lines.take(n)
        if not lines:
            if self.follow:
                await asyncio.sleep(min(self.poll_s, max(wait_s, 0.001)))
                return Batch(0, {"offset": offset})
            return None
        return Batch(len(lines), {"offset": offset}, columns=self._parse(lines))

    def _parse(self, lines: list[bytes]) -> dict[str, Any]:
        import pyarrow as pa
        from pyarrow import csv

        text = self.header + b"\n" + b"\n".join(line.rstrip(b"\r") for line in lines) + b"\n"
        convert = csv.ConvertOptions(column_types=self.types or {}, strings_can_be_null=True)
        try:
            table = csv.read_csv(io.BytesIO(text), convert_options=convert)
        except pa.ArrowInvalid as exc:
            raise UserError(f"cannot read {self.path} near byte {self.lines.offset}: "
                            f"{str(exc).splitlines()[0]}") from None
        if self.types is None:
            # text stays text in later blocks (a category such as "01" is not a number)
            self.types = {f.name: pa.string() for f in table.schema
                          if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)}
        return {name: table.column(name).to_numpy(zero_copy_only=False)
                for name in table.column_names}


class ParquetFile(_FileSource):
    """A Parquet file read row group by row group; the position is the row number."""

    async def open(self, position) -> None:
        import pyarrow.parquet as pq

        self.file = pq.ParquetFile(self.path)
        self.row = int((position or {}).get("row", 0))
        self.block: dict[str, np.ndarray] | None = None
        self.block_start = self.block_rows = 0
        self._batches = self._iterate(self.row)

    def _iterate(self, skip: int):
        meta = self.file.metadata
        first, start = 0, 0
        while first < meta.num_row_groups and start + meta.row_group(first).num_rows <= skip:
            start += meta.row_group(first).num_rows
            first += 1
        groups = list(range(first, meta.num_row_groups))
        if not groups:
            return
        for batch in self.file.iter_batches(batch_size=_PARQUET_ROWS, row_groups=groups):
            yield start, batch
            start += batch.num_rows

    def _fill(self) -> bool:
        for start, batch in self._batches:
            if start + batch.num_rows <= self.row:
                continue
            self.block = {name: batch.column(i).to_numpy(zero_copy_only=False)
                          for i, name in enumerate(batch.schema.names)}
            self.block_start, self.block_rows = start, batch.num_rows
            return True
        return False

    async def read(self, n: int, wait_s: float) -> Batch | None:
        if self.block is None or self.row >= self.block_start + self.block_rows:
            if not self._fill():
                return None
        lo = self.row - self.block_start
        hi = min(lo + n, self.block_rows)
        cols = {k: v[lo:hi] for k, v in self.block.items()}
        self.row += hi - lo
        return Batch(hi - lo, {"row": self.row}, columns=cols)


# -- SQL ---------------------------------------------------------------------------------

class SqlTable:
    """A table tailed by an increasing key: rows with a key above the last one learnt, in
    key order. Keys must become visible in increasing order (an identity or sequence
    column filled by one writer, or a timestamp written at commit time): a row committed
    later with a smaller key than one already learnt is never read."""

    exactly_once = True
    broker = False

    def __init__(self, src: SourceSpec, follow: bool) -> None:
        self.src = src
        self.follow = follow
        self.name = src.describe()
        self.poll_s = src.poll_ms / 1000

    async def open(self, position) -> None:
        await asyncio.to_thread(self._open, position)

    def _open(self, position) -> None:
        import sqlalchemy as sa

        from modelport.io.tables import connect

        url, _, table = self.src.url.partition("#")
        self.engine = connect(url, self.src.base)
        schema, _, name = table.rpartition(".")
        try:
            self.table = sa.Table(name, sa.MetaData(), schema=schema or None,
                                  autoload_with=self.engine)
        except sa.exc.NoSuchTableError:
            raise UserError(f"source: {self.name} has no table {table!r}; create it or fix "
                            "the name after '#'") from None
        key = self.src.key
        if key is None:
            pk = list(self.table.primary_key.columns)
            if len(pk) != 1:
                raise UserError(f"source: name the increasing key of {table!r}, e.g. "
                                f"{self.name}?key=event_id (it has no single-column primary key)")
            key = pk[0].name
        if key not in self.table.c:
            raise UserError(f"source: {table!r} has no column {key!r}; name its increasing key "
                            "with ?key=COLUMN")
        self.key = self.table.c[key]
        self.last = self._from_json((position or {}).get("key"))
        self.end = None
        if not self.follow:
            with self.engine.connect() as conn:
                self.end = conn.execute(sa.select(sa.func.max(self.key))).scalar()

    def _from_json(self, value):
        if value is None:
            return None
        try:
            kind = self.key.type.python_type
        except NotImplementedError:
            return value
        import datetime as dt

        if kind in (dt.datetime, dt.date) and isinstance(value, str):
            return kind.fromisoformat(value)
        return value

    @staticmethod
    def _to_json(value):
        if hasattr(value, "isoformat"):
            return value.isoformat()
        if isinstance(value, int | float | str) or value is None:
            return value
        return str(value)

    def _fetch(self, n: int) -> list[dict]:
        import sqlalchemy as sa

        q = sa.select(self.table).order_by(self.key).limit(n)
        if self.last is not None:
            q = q.where(self.key > self.last)
        if self.end is not None:
            q = q.where(self.key <= self.end)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    async def read(self, n: int, wait_s: float) -> Batch | None:
        rows = await asyncio.to_thread(self._fetch, n)
        if rows:
            self.last = rows[-1][self.key.name]
            return Batch(len(rows), {"key": self._to_json(self.last)}, rows=rows)
        if not self.follow:
            return None
        await asyncio.sleep(min(self.poll_s, max(wait_s, 0.001)))
        return Batch(0, {"key": self._to_json(self.last)})

    async def acknowledge(self, messages: list) -> None:
        pass

    async def close(self) -> None:
        if getattr(self, "engine", None) is not None:
            self.engine.dispose()


# -- brokers -----------------------------------------------------------------------------

def _decode(messages: list, fmt: str) -> tuple[list[dict], list[tuple[Reject, bytes]],
                                                list[int], dict[int, list[str]]]:
    """Events decoded from message payloads, the others with the reason they could not be,
    the index of each decoded event's message, and the fields of events holding text that
    is not Unicode, by position."""
    from modelport.io.events import decode

    rows, bad, index, odd = [], [], [], {}
    for i, m in enumerate(messages):
        try:
            event = decode(m.payload, fmt)
        except Exception as exc:  # noqa: BLE001 - any undecodable payload is one bad event
            bad.append((undecodable(fmt, str(exc)), bytes(m.payload)))
            continue
        if not isinstance(event, dict):
            bad.append((not_a_record(fmt, event), bytes(m.payload)))
            continue
        # only a \u escape in JSON spells a lone surrogate (msgpack text is UTF-8)
        if fmt == "json" and b"\\u" in m.payload and (found := fields_not_text(event)):
            odd[len(rows)] = found
        rows.append(event)
        index.append(i)
    return rows, bad, index, odd


class PositionedBroker:
    """Redis Streams or NATS JetStream read from the position a checkpoint stored."""

    exactly_once = True
    broker = True

    def __init__(self, src: SourceSpec, url, follow: bool) -> None:
        self.src = src
        self.url = url
        self.follow = follow
        self.name = src.describe()
        module = "redis_streams" if url.scheme.startswith("redis") else "nats_jetstream"
        import importlib

        self.module = importlib.import_module(f"modelport.io.brokers.{module}")

    async def open(self, position) -> None:
        self.reader = self.module.Reader(self.url, (position or {}).get("after"))
        await self.reader.connect()
        self.end = None if self.follow else await self.reader.end()

    def _done(self) -> bool:
        if self.follow:
            return False
        return self.end is None or self.reader.reached(self.end)

    async def read(self, n: int, wait_s: float) -> Batch | None:
        if self._done():
            return None
        messages = await self.reader.read(n, wait_s)
        if messages and not self.follow and self.reader.beyond(messages[-1].id, self.end):
            # without --follow, events added after the start are left for the next run
            messages = [m for m in messages if not self.reader.beyond(m.id, self.end)]
            if messages:
                self.reader.position = type(self.reader.position)(messages[-1].id)
        if not messages:
            return None if self._done() else Batch(0, {"after": self.reader.position})
        rows, bad, _, odd = _decode(messages, self.src.format)
        return Batch(len(rows), {"after": self.reader.position}, rows=rows,
                     unreadable=bad, not_text=odd)

    async def acknowledge(self, messages: list) -> None:
        pass

    async def close(self) -> None:
        if getattr(self, "reader", None) is not None:
            await self.reader.close()


class AcknowledgedBroker:
    """RabbitMQ, MQTT or Kafka: messages stay unacknowledged until a checkpoint covers them.

    The broker bounds how many messages may wait unacknowledged (RabbitMQ's prefetch, the
    MQTT receive maximum): ``window`` is that bound, and the learner checkpoints before
    reaching it. Unless the URL sets it, the window is sized to the checkpoint interval.
    """

    exactly_once = False
    broker = True

    def __init__(self, src: SourceSpec, url, follow: bool, spec) -> None:
        self.src = src
        self.follow = follow
        self.name = src.describe()
        wanted = spec.every_events + 2 * spec.batch_size
        option = {"amqp": "prefetch", "amqps": "prefetch", "mqtt": "receive_max"}.get(url.scheme)
        self.window: int | None = None
        text = src.url
        if option is not None:
            limit = 65_000 if option == "prefetch" else 20_000
            given = url.option(option)
            self.window = int(given) if given else min(wanted, limit)
            if not given:
                text += ("&" if "?" in text else "?") + f"{option}={self.window}"
        from modelport.io import brokers

        self.source = brokers.open_source(text, group=src.group or "modelport-learn",
                                          batch=spec.batch_size)
        self.last_event = time.monotonic()

    async def open(self, position) -> None:
        await self.source.connect()
        self.last_event = time.monotonic()

    async def read(self, n: int, wait_s: float) -> Batch | None:
        messages = await self.source.read(n, max(wait_s, 0.001))
        now = time.monotonic()
        if not messages:
            if not self.follow and now - self.last_event > _IDLE_END_S:
                return None
            return Batch(0, None)
        self.last_event = now
        rows, bad, index, odd = _decode(messages, self.src.format)
        # MQTT messages carry no id: such events cannot be recognised when delivered again
        return Batch(len(rows), None, rows=rows, unreadable=bad, messages=messages,
                     ids=[messages[i].id for i in index], not_text=odd)

    async def acknowledge(self, messages: list) -> None:
        if messages:
            await self.source.ack(messages)

    async def close(self) -> None:
        await self.source.close()
