"""Redis Streams: a consumer group reads, outputs are appended with XADD, entries are
acknowledged with XACK only after their outputs are written.

A batch's XADDs go to the server as one Lua script call (one command, not one per
output). When the sink (and dead-letter stream) live on the same Redis server as the
source, the XACK runs in that same script, which Redis runs atomically: a worker killed
mid-batch leaves either all of them or none, so a crash yields no duplicate. Entries a
dead consumer read but never acknowledged stay pending in the group; every worker claims
those idle longer than ``claim_idle_ms`` (URL option, default 10000) with XAUTOCLAIM, at
start and then every few seconds, so another worker (or the restarted one) scores them.

The event is the entry's ``data`` field; outputs are written the same way.

:class:`Reader` reads a stream from a stored position instead (XREAD, no group), for
consumers that keep their position themselves, such as an online learner's checkpoints.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from modelport.errors import require
from modelport.io.brokers import BrokerURL, Message

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

FIELD = b"data"
CLAIM_EVERY_S = 2.0

# KEYS: the output streams, then (to acknowledge) the source stream. ARGV: the group, the
# number of output streams, each one's MAXLEN ('' for none) and count of payloads, the
# payloads stream by stream, then the entry ids to XACK.
_APPEND = """
local k = tonumber(ARGV[2])
local a = 3 + 2 * k
for i = 1, k do
  local maxlen, n = ARGV[1 + 2 * i], tonumber(ARGV[2 + 2 * i])
  for j = a, a + n - 1 do
    if maxlen == '' then
      redis.call('XADD', KEYS[i], '*', 'data', ARGV[j])
    else
      redis.call('XADD', KEYS[i], 'MAXLEN', '~', maxlen, '*', 'data', ARGV[j])
    end
  end
  a = a + n
end
if #KEYS > k then
  while a <= #ARGV do
    local last = math.min(a + 999, #ARGV)
    redis.call('XACK', KEYS[k + 1], ARGV[1], unpack(ARGV, a, last))
    a = last + 1
  end
end
return a
"""


async def _append(script: AsyncScript,
                  outputs: Iterable[tuple[Sink, Sequence[tuple[str | None, bytes]]]],
                  ack: tuple[str, str, list[str]] | None = None) -> None:
    """One call of the ``_APPEND`` script: XADD each (sink, records) pair's payloads and,
    when ``ack`` is (stream, group, ids), XACK those ids, all at once."""
    keys: list[str] = []
    counts: list[str | int] = []
    payloads: list[bytes] = []
    for sink, records in outputs:
        if records:
            keys.append(sink.stream)
            counts += ["" if sink.maxlen is None else str(sink.maxlen), len(records)]
            payloads += [payload for _, payload in records]
    ids = ack[2] if ack is not None else []
    if not payloads and not ids:
        return
    args = [ack[1] if ack else "", len(keys), *counts, *payloads, *ids]
    if ack is not None and ids:
        keys.append(ack[0])
    await script(keys=keys, args=args)


def _client(u: BrokerURL) -> Redis:
    aioredis = require("redis.asyncio", "brokers", "Redis Streams")
    return aioredis.from_url(u.server, decode_responses=False)


class Source:
    """Reads a stream as one consumer of a group."""

    def __init__(self, url: BrokerURL, *, group: str, batch: int,
                 window: int | None = None) -> None:
        self.url = url
        self.stream = url.destination
        self.group = group
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        self.claim_idle_ms = int(url.options.get("claim_idle_ms", "10000"))
        self.redis: Redis | None = None
        self._next_claim = 0.0
        self._claim_cursor = b"0-0"

    async def connect(self) -> None:
        self.redis = _client(self.url)
        self.script = self.redis.register_script(_APPEND)
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except Exception as exc:  # BUSYGROUP: the group exists already
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, n: int, wait_s: float) -> list[Message]:
        now = time.monotonic()
        if now >= self._next_claim:
            claimed = await self._claim(n)
            if claimed:
                return claimed
            self._next_claim = now + CLAIM_EVERY_S
        assert self.redis is not None  # set by connect
        reply = await self.redis.xreadgroup(self.group, self.consumer, {self.stream: ">"},
                                            count=n, block=_block(wait_s))
        # a list on this RESP2 connection; redis-py's type also allows RESP3's dict
        return _messages(reply[0][1]) if reply else []  # type: ignore[index, arg-type]

    async def _claim(self, n: int) -> list[Message]:
        """Entries left pending by a consumer idle longer than claim_idle_ms."""
        assert self.redis is not None  # set by connect
        reply = await self.redis.xautoclaim(self.stream, self.group, self.consumer,
                                            self.claim_idle_ms, start_id=self._claim_cursor,
                                            count=n)
        self._claim_cursor = reply[0]
        entries = [e for e in reply[1] if e and e[1] is not None]
        if self._claim_cursor in (b"0-0", "0-0"):
            self._claim_cursor = b"0-0"
        elif entries:
            self._next_claim = 0.0  # more may follow: keep claiming before reading new ones
        return _messages(entries)

    async def ack(self, messages: list[Message]) -> None:
        if messages:
            assert self.redis is not None  # set by connect
            ids: list[str] = []
            for m in messages:
                assert m.id is not None  # the entry id, read by this source
                ids.append(m.id)
            await self.redis.xack(self.stream, self.group, *ids)

    def shares_server(self, sink: object) -> bool:
        return isinstance(sink, Sink) and sink.url.server == self.url.server

    async def publish_and_ack(self, outputs: list[tuple[Sink, list[tuple[str, bytes]]]],
                              messages: list[Message]) -> None:
        """XADD every output and XACK the messages in one atomic script call."""
        ids: list[str] = []
        for m in messages:
            assert m.id is not None  # the entry id, read by this source
            ids.append(m.id)
        await _append(self.script, outputs, (self.stream, self.group, ids))

    async def lag(self) -> int | None:
        assert self.redis is not None  # set by connect
        for g in await self.redis.xinfo_groups(self.stream):
            # redis-py 5+ gives text keys; the bytes lookup stays for other clients
            name = g.get("name") or g.get(b"name")  # type: ignore[call-overload]
            if name in (self.group, self.group.encode()):
                lag = g.get("lag")
                return int(lag) if lag is not None else None
        return None

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


class Reader:
    """Reads a stream from a position with XREAD, outside any consumer group.

    The reader keeps its own position, the id of the last entry read (a learner stores it in
    its checkpoints and starts from it again): nothing is acknowledged, and entries are
    read in order, each once, from any position.
    """

    def __init__(self, url: BrokerURL, position: str | None = None) -> None:
        self.url = url
        self.stream = url.destination
        self.position = position or "0-0"
        self.redis: Redis | None = None

    async def connect(self) -> None:
        self.redis = _client(self.url)

    async def read(self, n: int, wait_s: float) -> list[Message]:
        assert self.redis is not None  # set by connect
        reply = await self.redis.xread({self.stream: self.position}, count=n,
                                       block=_block(wait_s))
        if not reply:
            return []
        # a list on this RESP2 connection; redis-py's type also allows RESP3's dict
        messages = _messages(reply[0][1])  # type: ignore[index, arg-type]
        if messages:
            last = messages[-1].id
            assert last is not None  # an entry id, read above
            self.position = last
        return messages

    async def end(self) -> str | None:
        """The id of the stream's last entry now (None for an empty stream)."""
        assert self.redis is not None  # set by connect
        last = await self.redis.xrevrange(self.stream, count=1)
        if not last:
            return None
        entry = last[0][0]
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    @staticmethod
    def beyond(position: str, end: str) -> bool:
        """Whether entry id ``position`` comes after ``end``."""
        return _order(position) > _order(end)

    def reached(self, end: str) -> bool:
        return _order(self.position) >= _order(end)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


def _block(wait_s: float) -> int | None:
    """XREAD's BLOCK for a wait of ``wait_s``: None (answer at once) for 0.

    A blocked read returns as soon as an entry arrives, but the server ends an empty wait
    on its own clock, 10 ticks a second by default (``hz``): a BLOCK of 1 ms can last
    100 ms. A caller that holds messages already must therefore ask with 0.
    """
    return max(1, int(wait_s * 1000)) if wait_s > 0 else None


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = str(entry_id).partition("-")
    return int(ms), int(seq or 0)


class Sink:
    """Appends outputs to a stream (trimmed to about ``maxlen`` entries when set)."""

    def __init__(self, url: BrokerURL) -> None:
        self.url = url
        self.stream = url.destination
        maxlen = url.option("maxlen")
        self.maxlen = int(maxlen) if maxlen else None
        self.redis: Redis | None = None

    async def connect(self) -> None:
        self.redis = _client(self.url)
        self.script = self.redis.register_script(_APPEND)

    async def publish(self, records: list[tuple[str, bytes]]) -> None:
        if records:
            await _append(self.script, [(self, records)])

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


def _messages(entries: Iterable[tuple[bytes | str, Mapping[bytes | str, bytes]]]) -> list[Message]:
    now = time.time()
    out = []
    for entry_id, fields in entries:
        eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        payload = fields.get(FIELD)
        if payload is None:
            payload = fields.get("data", b"")
        out.append(Message(id=eid, payload=payload, received=now))
    return out
