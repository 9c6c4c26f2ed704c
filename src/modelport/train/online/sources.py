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
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from modelport.errors import UserError
from modelport.scoring.checks import Reject
from modelport.train.online.spec import SourceSpec

if TYPE_CHECKING:
    import pyarrow as pa

    from modelport.io.brokers import BrokerURL
    from modelport.train.online.spec import OnlineSpec

#: bytes read from a file at a time
_BLOCK = 1 << 20
#: the Arrow types a JSONL block's columns may have to be taken as columns (null: a field
#: holding only null in the block)
_ARROW_PLAIN = frozenset({"int64", "double", "bool", "string", "null"})
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
    ids. ``raw`` holds the line of each event of columns read from JSON, for :meth:`event`
    to give an event as it was written.
    """

    n: int = 0
    position: Any = None
    rows: list[dict] | None = None
    columns: dict[str, Any] | None = None
    unreadable: list[tuple[Reject, bytes]] = field(default_factory=list)
    messages: list | None = None
    ids: list | None = None
    not_text: dict[int, list[str]] = field(default_factory=dict)
    raw: Any = None

    def column(self, name: str) -> Any:
        if self.columns is not None:
            return self.columns.get(name)
        return [r.get(name) for r in self.rows] if self.rows else None

    def has(self, name: str) -> bool:
        """Whether columnar events carry the field ``name`` (rows: always, event by event)."""
        return self.columns is None or name in self.columns

    def event(self, i: int) -> dict[str, Any]:
        """Event ``i`` as a dict of its fields."""
        if self.raw is not None:
            from modelport.io.events import decode

            return decode(self.raw[i], "json")
        if self.columns is not None:
            return {k: v[i] for k, v in self.columns.items()}
        assert self.rows is not None  # a batch holds rows or columns
        return self.rows[i]

    def sample(self) -> dict[str, Any]:
        """Every field of the batch with its values, for working out a schema."""
        if self.columns is not None:
            return self.columns
        names: dict[str, None] = {}
        for r in self.rows or []:
            names.update(dict.fromkeys(r))
        return {name: self.column(name) for name in names}

    def take(self, index: Sequence[int] | np.ndarray) -> Batch:
        """The events at ``index`` (rows or columns), keeping the position."""
        index = np.asarray(index)
        if self.columns is not None:
            cols = {k: (v[index] if isinstance(v, np.ndarray) else [v[i] for i in index])
                    for k, v in self.columns.items()}
            raw = None if self.raw is None else [self.raw[i] for i in index.tolist()]
            return Batch(len(index), self.position, columns=cols, raw=raw)
        odd = {j: self.not_text[i] for j, i in enumerate(index.tolist()) if i in self.not_text}
        assert self.rows is not None  # a batch holds rows or columns
        return Batch(len(index), self.position, rows=[self.rows[i] for i in index],
                     not_text=odd)


class Source(Protocol):
    """What the learning loop asks of every source: ``open`` at a saved position, ``read``
    up to ``n`` events (waiting at most ``wait_s``; None when a replay has ended),
    ``acknowledge`` the messages a checkpoint covers, ``close``. ``window`` is how many
    events the source lets wait unacknowledged (a broker's prefetch or receive maximum),
    None where nothing bounds it: the loop checkpoints before reaching it."""

    window: int | None

    async def open(self, position: Any) -> None: ...

    async def read(self, n: int, wait_s: float) -> Batch | None: ...

    async def acknowledge(self, messages: list) -> None: ...

    async def close(self) -> None: ...


def open_source(spec: OnlineSpec, follow: bool = False) -> Source:
    """The source a spec names (not opened yet), paced when the spec gives a rate."""
    source = _open(spec, follow)
    return Paced(source, spec.source.rate) if spec.source.rate else source


def _open(spec: OnlineSpec, follow: bool) -> Source:
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

    def __init__(self, source: Source, rate: float) -> None:
        self.source = source
        self.pacer = _Pacer(rate)
        self.window = source.window

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)

    async def open(self, position: Any) -> None:
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

class _Blocks:
    """Whole lines of a (possibly growing) file, a block at a time: what was read up to
    the last line break, with the offset the block starts at. What follows the last line
    break waits for the rest of its line (a line being written while the file is
    followed)."""

    def __init__(self, path: Path, offset: int) -> None:
        self.fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.fh.seek(offset)
        self.read_to = offset
        self.partial = b""

    def next(self) -> tuple[bytes, int] | None:
        """The next block of whole lines and its offset; None while no more line is whole."""
        while True:
            data = self.fh.read(_BLOCK)
            if not data:
                return None
            self.read_to += len(data)
            if self.partial:
                data = self.partial + data
            cut = data.rfind(b"\n") + 1
            self.partial = data[cut:]
            if cut:
                return data[:cut], self.read_to - len(data)

    def close(self) -> None:
        self.fh.close()


class _LinesPart:
    """A block whose lines are decoded one at a time (blank lines are no events)."""

    def __init__(self, block: bytes, ends: np.ndarray) -> None:
        self.lines = block.split(b"\n")
        self.lines.pop()  # a block ends with a line break
        self.ends = ends
        self.cursor = 0

    @property
    def done(self) -> bool:
        return self.cursor >= len(self.lines)

    def take(self, k: int) -> tuple[list[bytes], int]:
        """Up to ``k`` non-blank lines and the offset after the last line taken."""
        out: list[bytes] = []
        lines = self.lines
        while len(out) < k and self.cursor < len(lines):
            stop = min(len(lines), self.cursor + (k - len(out)))
            out.extend(line for line in lines[self.cursor:stop] if line.strip())
            self.cursor = stop
        return out, int(self.ends[self.cursor - 1])


class _ColumnsPart:
    """A block Arrow read as columns, one event a line."""

    def __init__(self, columns: dict[str, Any], block: bytes, starts: np.ndarray,
                 breaks: np.ndarray, at: int) -> None:
        self.columns = columns
        self.block, self.starts, self.breaks, self.at = block, starts, breaks, at
        self.cursor = 0

    @property
    def done(self) -> bool:
        return self.cursor >= len(self.breaks)

    def take(self, k: int) -> tuple[int, int, int]:
        """The range of the next ``k`` events (at most), and the offset after them."""
        lo = self.cursor
        self.cursor = hi = min(lo + k, len(self.breaks))
        return lo, hi, self.at + int(self.breaks[hi - 1]) + 1

    def line(self, i: int) -> bytes:
        return self.block[self.starts[i]:self.breaks[i]]

    def slice(self, lo: int, hi: int) -> dict[str, Any]:
        return {k: v[lo:hi] for k, v in self.columns.items()}


class _RawLines:
    """The lines of the events of a columnar batch, cut out of their blocks when asked
    for (an event wanted as it was written: rejected, or lacking a field)."""

    def __init__(self, parts: list[tuple[_ColumnsPart, int, int]]) -> None:
        self.parts = parts

    def __len__(self) -> int:
        return sum(hi - lo for _, lo, hi in self.parts)

    def __getitem__(self, i: int) -> bytes:
        for part, lo, hi in self.parts:
            if i < hi - lo:
                return part.line(lo + i)
            i -= hi - lo
        raise IndexError(i)

    def lines(self) -> list[bytes]:
        return [part.line(i) for part, lo, hi in self.parts for i in range(lo, hi)]


def _absent(name: str, block: bytes) -> bool:
    """Whether no line of a block can hold the field ``name``: its name is nowhere in it,
    and no escape in it could spell the name otherwise."""
    return b"\\" not in block and f'"{name}"'.encode() not in block


def _joined(slices: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The columns of consecutive blocks as one batch's, or None when the blocks hold
    other fields. A field whose type changed between them is given as its values."""
    first = slices[0]
    if len(slices) == 1:
        return first
    if any(s.keys() != first.keys() for s in slices[1:]):
        return None
    out: dict[str, np.ndarray | list] = {}
    for name in first:
        parts = [s[name] for s in slices]
        if all(isinstance(p, np.ndarray) and p.dtype == parts[0].dtype for p in parts):
            out[name] = np.concatenate(parts)
        else:
            out[name] = [v for p in parts for v in (p.tolist() if isinstance(p, np.ndarray)
                                                    else p)]
    return out


class _FileSource:
    exactly_once = True
    broker = False
    window: int | None = None  # a file holds nothing unacknowledged
    #: parse blocks with Arrow (False: a line or a batch at a time, the reference for it)
    arrow = True

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


def _json_loads() -> Callable[[bytes], Any]:
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


def not_a_record(fmt: str, event: Any) -> Reject:
    """Why a decoded event is not an event: it is not an object of fields."""
    return Reject(None, "not_a_record",
                  f"not a {fmt} object of fields, but a {type(event).__name__}")


class _BlockFile(_FileSource):
    """A file of one event a line, read a block of whole lines at a time: as columns when
    :meth:`_columns` can read the block so (the next block is read and parsed on a thread
    while this one is learnt: Arrow lets go of the interpreter while it parses), else a
    batch's lines at a time by :meth:`_decoded`. Batches are cut by the count of events
    whatever the blocks, so they are the batches of a line-at-a-time reading."""

    #: a columnar batch keeps its lines, for :meth:`Batch.event` to decode an event from
    raw_events = False

    def _start(self, offset: int) -> None:
        self.offset = offset
        self.blocks = _Blocks(self.path, offset)
        self.part: _LinesPart | _ColumnsPart | None = None
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="modelport-read")
        self.ahead: Future | None = None

    async def read(self, n: int, wait_s: float) -> Batch | None:
        parts: list = []
        got = 0
        while got < n:
            part = await self._part()
            if part is None:
                break
            if isinstance(part, _ColumnsPart):
                lo, hi, self.offset = part.take(n - got)
                parts.append((part, lo, hi))
                got += hi - lo
            else:
                lines, self.offset = part.take(n - got)
                parts.append(lines)
                got += len(lines)
        if not got:
            if self.follow:
                await asyncio.sleep(min(self.poll_s, max(wait_s, 0.001)))
                return Batch(0, {"offset": self.offset})
            return None
        position = {"offset": self.offset}
        if all(isinstance(p, tuple) for p in parts):
            columns = _joined([part.slice(lo, hi) for part, lo, hi in parts])
            if columns is not None:
                return Batch(got, position, columns=columns,
                             raw=_RawLines(parts) if self.raw_events else None)
        lines = [line for p in parts
                 for line in (_RawLines([p]).lines() if isinstance(p, tuple) else p)]
        return self._decoded(lines, position)

    async def _part(self) -> _LinesPart | _ColumnsPart | None:
        """The block events are taken from (the next one once it is used up)."""
        if self.part is not None and not self.part.done:
            return self.part
        if self.ahead is not None:
            self.part, self.ahead = await asyncio.wrap_future(self.ahead), None
        else:
            self.part = self._load()
        if self.part is not None:
            self.ahead = self.pool.submit(self._load)
        return self.part

    def _load(self) -> _LinesPart | _ColumnsPart | None:
        """The next block: as columns when :meth:`_columns` reads it, else as lines."""
        found = self.blocks.next()
        if found is None:
            return None
        block, at = found
        breaks = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
        starts = np.empty(len(breaks), dtype=np.int64)
        starts[0] = 0
        starts[1:] = breaks[:-1] + 1
        try:
            columns = self._columns(block, starts, breaks) if self.arrow else None
        except Exception:  # noqa: BLE001 - whatever Arrow refuses is read a line at a time
            columns = None
        if columns is None:
            return _LinesPart(block, at + breaks + 1)
        return _ColumnsPart(columns, block, starts, breaks, at)

    def _columns(self, block: bytes, starts: np.ndarray, breaks: np.ndarray) -> dict | None:
        raise NotImplementedError

    def _decoded(self, lines: list[bytes], position: dict) -> Batch:
        raise NotImplementedError

    async def close(self) -> None:
        if getattr(self, "blocks", None) is not None:
            self.pool.shutdown(wait=True)
            self.blocks.close()


class JsonlFile(_BlockFile):
    """One JSON object per line; the position is the byte offset after the last line.

    Lines are read a block at a time (the whole lines of a megabyte) and parsed by Arrow
    into columns. A block Arrow refuses, or whose columns could say other than its lines
    do (a blank line or one that is no object, NaN or Infinity, which are not JSON, an
    integer beyond 64 bits, a field some lines lack), is read a line at a time instead:
    one bad line costs its block's speed, never what is learnt. A line orjson refuses
    although it is JSON (an integer beyond 64 bits, an escaped lone surrogate) is read as
    the stream worker reads it, so that the checks say what is wrong with the event rather
    than the parser."""

    raw_events = True

    async def open(self, position: dict[str, Any] | None) -> None:
        #: fields whose text Arrow took for dates: read as text from then on
        self.text: dict[str, None] = {}
        self._start(int((position or {}).get("offset", 0)))

    def _decoded(self, lines: list[bytes], position: dict) -> Batch:
        """Events decoded a line at a time; the undecodable ones with their reason."""
        loads = _json_loads()
        rows: list[dict] = []
        bad, odd = [], {}
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
        return Batch(len(rows), position, rows=rows, unreadable=bad, not_text=odd)

    def _columns(self, block: bytes, starts: np.ndarray, breaks: np.ndarray) -> dict | None:
        if not (np.frombuffer(block, np.uint8)[starts] == 0x7B).all():
            return None  # a blank line, or one that is no object ("{")
        return self._arrow(block, starts, breaks)

    def _parse(self, block: bytes) -> pa.Table:
        import pyarrow as pa
        from pyarrow import json as pj

        schema = pa.schema([(name, pa.string()) for name in self.text]) if self.text else None
        return pj.read_json(pa.py_buffer(block),
                            read_options=pj.ReadOptions(use_threads=False,
                                                        block_size=len(block) + 1),
                            parse_options=pj.ParseOptions(explicit_schema=schema,
                                                          unexpected_field_behavior="infer"))

    def _arrow(self, block: bytes, starts: np.ndarray, breaks: np.ndarray) -> dict | None:
        """The columns of a block exactly as its lines decoded one at a time would give
        them, or None when Arrow's reading could differ from that.

        Column by column: numbers (finite, and integers within 64 bits), booleans and text
        as arrays; a field holding null as the values, None where null. Null is also what
        Arrow gives for a field a line lacks: a block with nulls is taken only when every
        line holding one has every field."""
        import pyarrow as pa

        loads = _json_loads()
        table = self._parse(block)
        dates = [f.name for f in table.schema if pa.types.is_temporal(f.type)]
        if dates:  # text Arrow took for dates (JSON has none): read it again as text
            self.text.update(dict.fromkeys(dates))
            table = self._parse(block)
        n = len(breaks)
        if table.num_rows != n or table.num_columns == 0:
            return None  # two objects on a line, or only empty ones
        first = loads(block[:breaks[0]])
        order = list(first) + [c for c in table.column_names if c not in first]
        columns: dict[str, Any] = {}
        nulls = None
        for name in order:
            col = table.column(name)
            kind = col.type
            if str(kind) not in _ARROW_PLAIN:
                return None  # an object or a list: read as the lines give it
            values = col.to_numpy(zero_copy_only=False)
            if kind == pa.float64():
                seen = (col.drop_null() if col.null_count else col).to_numpy()
                if not np.isfinite(seen).all() or (np.abs(seen) >= 2.0 ** 63).any():
                    return None  # NaN or Infinity (not JSON), or an integer beyond 64 bits
            if col.null_count:
                if col.null_count == n and name in self.text and _absent(name, block):
                    continue  # a field read as text that no line of this block holds
                missing = col.is_null().to_numpy(zero_copy_only=False)
                nulls = missing if nulls is None else nulls | missing
                values = col.to_pylist()
            columns[name] = values
        if nulls is not None:
            width = len(columns)
            for i in np.flatnonzero(nulls).tolist():
                if len(loads(block[starts[i]:breaks[i]])) != width:
                    return None  # a line lacks a field: Arrow cannot say which
        return columns


class CsvFile(_BlockFile):
    """A CSV file with a header line and one event per line (no line breaks inside
    quoted values); the position is the byte offset after the last line learnt.

    A block is parsed by Arrow as one CSV; one it refuses (a line with another count of
    fields, a blank line) is parsed a batch at a time, and a batch Arrow refuses a line
    at a time, the lines it still refuses going to the rejects (``not_csv``). Text stays
    text after the first block (a category such as "01" is not a number)."""

    async def open(self, position: dict[str, Any] | None) -> None:
        with open(self.path, "rb") as fh:
            header = fh.readline()
        if not header.strip():
            raise UserError(f"{self.path} has no header line naming its columns")
        self.header = header.rstrip(b"\r\n")
        self.types: dict | None = None
        self._start(int((position or {}).get("offset", 0)) or len(header))

    def _columns(self, block: bytes, starts: np.ndarray, breaks: np.ndarray) -> dict | None:
        if b"," not in self.header:
            return None  # one column: a blank line would be a value
        table = self._table(self.header + b"\n" + block)
        return None if table.num_rows != len(breaks) else self._arrays(table)

    def _decoded(self, lines: list[bytes], position: dict) -> Batch:
        import pyarrow as pa

        try:
            return Batch(len(lines), position, columns=self._parse(lines))
        except pa.ArrowInvalid:
            pass
        good, bad = [], []
        for line in lines:
            try:
                self._table(self.header + b"\n" + line.rstrip(b"\r") + b"\n")
            except pa.ArrowInvalid as exc:
                bad.append((undecodable("csv", str(exc).splitlines()[0]), line))
            else:
                good.append(line)
        if not good:
            return Batch(0, position, unreadable=bad)
        return Batch(len(good), position, columns=self._parse(good), unreadable=bad)

    def _parse(self, lines: list[bytes]) -> dict[str, Any]:
        text = self.header + b"\n" + b"\n".join(line.rstrip(b"\r") for line in lines) + b"\n"
        return self._arrays(self._table(text))

    def _table(self, text: bytes) -> pa.Table:
        import pyarrow as pa
        from pyarrow import csv

        return csv.read_csv(pa.py_buffer(text),
                            read_options=csv.ReadOptions(use_threads=False,
                                                         block_size=len(text) + 1),
                            convert_options=csv.ConvertOptions(column_types=self.types or {},
                                                               strings_can_be_null=True))

    def _arrays(self, table: pa.Table) -> dict[str, Any]:
        import pyarrow as pa

        if self.types is None:
            self.types = {f.name: pa.string() for f in table.schema
                          if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)}
        return {name: table.column(name).to_numpy(zero_copy_only=False)
                for name in table.column_names}


class ParquetFile(_FileSource):
    """A Parquet file read row group by row group; the position is the row number."""

    async def open(self, position: dict[str, Any] | None) -> None:
        import pyarrow.parquet as pq

        self.file = pq.ParquetFile(self.path)
        self.row = int((position or {}).get("row", 0))
        self.block: dict[str, np.ndarray] | None = None
        self.block_start = self.block_rows = 0
        self._batches = self._iterate(self.row)

    def _iterate(self, skip: int) -> Iterator[tuple[int, pa.RecordBatch]]:
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
        assert self.block is not None  # filled above
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
    window: int | None = None  # the key, not the table, holds what is unacknowledged

    def __init__(self, src: SourceSpec, follow: bool) -> None:
        self.src = src
        self.follow = follow
        self.name = src.describe()
        self.poll_s = src.poll_ms / 1000

    async def open(self, position: dict[str, Any] | None) -> None:
        await asyncio.to_thread(self._open, position)

    def _open(self, position: dict[str, Any] | None) -> None:
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

    def _from_json(self, value: Any) -> Any:
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
    def _to_json(value: Any) -> Any:
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

    rows: list[dict] = []
    bad, index, odd = [], [], {}
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
    window: int | None = None  # the position, not the broker, holds what is unacknowledged
    broker = True

    def __init__(self, src: SourceSpec, url: BrokerURL, follow: bool) -> None:
        self.src = src
        self.url = url
        self.follow = follow
        self.name = src.describe()
        module = "redis_streams" if url.scheme.startswith("redis") else "nats_jetstream"
        import importlib

        self.module = importlib.import_module(f"modelport.io.brokers.{module}")

    async def open(self, position: dict[str, Any] | None) -> None:
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

    def __init__(self, src: SourceSpec, url: BrokerURL, follow: bool,
                 spec: OnlineSpec) -> None:
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

    async def open(self, position: dict[str, Any] | None) -> None:
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
