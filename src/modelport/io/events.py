"""Events on the wire: one JSON or msgpack object per message, for every loop over a broker.

Stream scoring, online learning and feedback all read events; :func:`decode` and
:func:`encoder` are the one place their wire formats are read and written.
:func:`stop_on_signals` is how such a loop learns it should drain and stop.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from functools import partial
from typing import Any, NoReturn

FORMATS = ("json", "msgpack")


def decode(payload: bytes | bytearray, fmt: str) -> Any:
    """One event from its wire form (``json`` via orjson, or ``msgpack``).

    JSON that orjson refuses although it is JSON (an integer beyond 64 bits, an escaped
    lone surrogate) is read by the standard library instead, so that the row checks say
    what is wrong with the event rather than the decoder; NaN and Infinity, which are not
    JSON, stay refused.
    """
    if fmt == "msgpack":
        import msgpack

        return msgpack.unpackb(payload, raw=False)
    import orjson

    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        import json

        try:
            return json.loads(bytes(payload).decode("utf-8"), parse_constant=_not_json)
        except (ValueError, RecursionError):
            raise exc from None


def fast_json() -> Callable[[bytes | bytearray], Any]:
    """orjson's own ``loads``, for a loop that tries it on every message first and calls
    :func:`decode` only for what it refuses."""
    import orjson

    return orjson.loads


def _not_json(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def encoder(fmt: str) -> Callable[[Any], bytes]:
    """The function writing one output or dead letter in wire format ``fmt``."""
    if fmt == "msgpack":
        import msgpack

        return partial(msgpack.packb, use_bin_type=True)
    import orjson

    return partial(orjson.dumps, option=orjson.OPT_SERIALIZE_NUMPY)


def encode(obj: Any, fmt: str) -> bytes:
    """One output or dead letter in its wire form."""
    return encoder(fmt)(obj)


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
