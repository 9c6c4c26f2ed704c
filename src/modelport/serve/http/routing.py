"""The smallest HTTP layer that serves models fast: a request, a response, a router.

A plain ASGI application is a coroutine over ``(scope, receive, send)``; this module gives
handlers a :class:`Request` (path parameters, query, headers, a size-limited body), lets them
return a :class:`Response` or raise :class:`HTTPError`, and matches routes by method and a
path pattern with ``{name}`` placeholders. It stays free of any framework so that the
single-row path costs a few microseconds of routing.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import orjson

_JSON = b"application/json"
_DUMPS = orjson.OPT_SERIALIZE_NUMPY
#: bodies larger than this are decoded in a worker thread: a 10 MB JSON body takes seconds
#: to decode, and on the event loop it would hold every other request (``/ping`` included)
OFFLOAD_BYTES = 64 * 1024
#: a Python str holds a surrogate code point only when it came from a lone ``\ud800``
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONG_DIGITS = re.compile(r"[0-9]{309}")
_MAX_DEPTH = 200  # orjson encodes at most 254 levels of nesting
T = TypeVar("T")
#: the ASGI interface: a connection's scope, the messages it receives and sends
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def loads(data: bytes) -> Any:
    """Parse a JSON body: orjson first; the standard library for what Python clients write
    that orjson refuses (``NaN``, ``Infinity``). Whatever neither can use is an
    :class:`HTTPError`, never another exception: text that is not JSON or not UTF-8, nesting
    deeper than the parsers go, a lone surrogate escape such as ``"\\ud800"`` (400), and
    an integer too large for a 64-bit float (422, naming where it is)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPError(400, f"request body is not UTF-8 (byte {exc.start}); JSON bodies "
                             "must be UTF-8 text") from None
    too_large: list[str] = []

    def integer(digits: str) -> Any:
        # 1e400 parses as infinity, but the same number written out in digits would
        # become an int that no float conversion downstream survives
        if len(digits) > 308 and float(digits) in (float("inf"), float("-inf")):
            too_large.append(digits)
            return _TooLarge(digits)
        return int(digits)

    try:
        # the hook costs a Python call per integer: only where a long one is written
        value = json.loads(text, parse_int=integer if _LONG_DIGITS.search(text) else None)
    except RecursionError:
        raise HTTPError(400, "request body is nested deeper than 1,000 levels; send rows as "
                             "flat records, columns or lists of values") from None
    except ValueError:
        raise HTTPError(400, f"request body is not valid JSON: {reason}") from None
    if too_large:
        path, key = _first(value, lambda v: isinstance(v, _TooLarge)) or ("the top level", None)
        raise HTTPError(422, f"the number at {path} has {len(too_large[0].lstrip('-'))} "
                             "digits, more than a 64-bit float holds (about 1.8e308); send a "
                             "smaller number", key)
    if _SURROGATE_ESCAPE.search(text):
        found = _first(value, lambda v: isinstance(v, str) and _SURROGATE.search(v))
        if found is not None:
            raise HTTPError(400, f"the string at {found[0]} holds a lone surrogate escape "
                                 "(such as \\ud800), which is not a character; send the "
                                 "character itself or a complete surrogate pair")
    return value


class _TooLarge:
    """Stands in for an integer no float can hold, until :func:`loads` says where it is."""

    __slots__ = ("digits",)

    def __init__(self, digits: str) -> None:
        self.digits = digits


def _first(data: Any, bad: Callable[[Any], Any]) -> tuple[str, str | None] | None:
    """(path, nearest key) of the first value or key in ``data`` that is ``bad``; walked
    without recursion, so any depth a parser accepts is fine."""
    stack: list[tuple[Any, str, str | None]] = [(data, "", None)]
    while stack:
        value, path, key = stack.pop()
        if isinstance(value, dict):
            children = []
            for k, v in value.items():
                inner = f"{path}.{_printable(k)}" if path else _printable(k)
                if bad(k):
                    return inner, k
                children.append((v, inner, k))
            stack.extend(reversed(children))
        elif isinstance(value, list):
            stack.extend(reversed([(v, f"{path}[{i}]", key) for i, v in enumerate(value)]))
        elif bad(value):
            return path or "the top level", key
    return None


def _printable(text: str) -> str:
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def dumps(data: Any) -> bytes:
    """JSON bytes of ``data`` that never raise on what a client can put in it: text with a
    lone surrogate (replaced by U+FFFD), integers beyond 64 bits (written as strings),
    keys that are not strings, objects orjson does not know (their ``str``), nesting
    beyond orjson's limit (cut off). The fast path is plain orjson."""
    try:
        return orjson.dumps(data, option=_DUMPS)
    except (TypeError, RecursionError):  # orjson.JSONEncodeError is a TypeError
        pass
    return orjson.dumps(_encodable(data), option=_DUMPS | orjson.OPT_NON_STR_KEYS,
                        default=lambda v: _encodable(str(v)))


def _encodable(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if -2**63 <= value < 2**64 else str(value)
    if depth > _MAX_DEPTH:
        return "..."
    if isinstance(value, dict):
        return {_encodable(str(k)): _encodable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(v, depth + 1) for v in value]
    tolist = getattr(value, "tolist", None)  # NumPy arrays (object ones too) and scalars
    if callable(tolist):
        return _encodable(tolist(), depth)
    return value  # dates and the like: orjson writes them, or calls ``default``


class HTTPError(Exception):
    """An error answered to the client: a status, a message and, for bad input, the field."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers: list[tuple[bytes, bytes]] = []

    def response(self) -> Response:
        """The JSON answer: ``{"error": message, "field": field}``; never raises, whatever
        text from the request the message or field holds."""
        body: dict[str, Any] = {"error": self.message}
        if self.field is not None:
            body["field"] = self.field
        response = Response.json(body, self.status)
        response.headers.extend(self.headers)
        return response


class _BodyUnread(HTTPError):
    """An error raised before the whole body was read: the connection is closed after the
    answer, since what the client still sends cannot be told from its next request."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.headers.append((b"connection", b"close"))


class BodyTooLarge(_BodyUnread):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is over the limit of {limit} bytes; send fewer "
                              "rows per request or raise --max-body-bytes")


class BodyTimeout(_BodyUnread):
    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body did not arrive within {seconds:g} s; send "
                              "the whole body at once (and a Content-Length that matches it) "
                              "or raise --body-timeout")


def parse_length(value: str | None) -> int | None:
    """A length header as a number, or None when absent or not plain ASCII digits
    (``str.isdigit`` accepts superscripts such as ``²`` that ``int`` refuses)."""
    if value is None:
        return None
    value = value.strip()
    if not value or not value.isascii() or not value.isdigit():
        return None
    return int(value)


class Request:
    """One HTTP request as a handler sees it."""

    __slots__ = ("scope", "receive", "params", "max_body", "body_timeout", "_headers",
                 "_query", "id", "state", "size")

    def __init__(self, scope: Scope, receive: Receive, params: dict[str, str], max_body: int,
                 body_timeout: float = 30.0) -> None:
        self.scope = scope
        self.receive = receive
        self.params = params
        self.max_body = max_body
        self.body_timeout = body_timeout
        self._headers: dict[str, str] | None = None
        self._query: dict[str, str] | None = None
        #: bytes of the body read so far
        self.size = 0
        self.id = ""
        self.state: dict[str, Any] = {}

    @property
    def method(self) -> str:
        return self.scope["method"]

    @property
    def path(self) -> str:
        return self.scope["path"]

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                             for k, v in self.scope["headers"]}
        return self._headers

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            self._query = dict(parse_qsl(self.scope.get("query_string", b"").decode("latin-1")))
        return self._query

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    async def body(self) -> bytes:
        """The whole body; more than ``max_body`` bytes (declared or sent) is a 413, a body
        not complete within ``body_timeout`` seconds a 408."""
        header = self.headers.get("content-length")
        declared = parse_length(header)
        if header is not None and declared is None:
            raise HTTPError(400, f"Content-Length must be a whole number of bytes, got "
                                 f"{header[:40]!r}")
        if declared is not None and declared > self.max_body:
            raise BodyTooLarge(self.max_body)
        chunks: list[bytes] = []
        size = 0
        # a client that declares 1000 bytes and sends 10 would otherwise hold the request,
        # and its connection, forever. A timer of the loop's own, not asyncio.timeout: this
        # runs for every request, and the context manager cost a few percent of a
        # single-row request's time
        task = asyncio.current_task()
        assert task is not None  # a request is served in a task
        expired = []

        def expire() -> None:
            expired.append(True)
            task.cancel()

        timer = asyncio.get_running_loop().call_later(self.body_timeout, expire)
        try:
            while True:
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    raise HTTPError(499, "client disconnected")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    raise BodyTooLarge(self.max_body)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        except asyncio.CancelledError:
            if not expired:
                raise
            task.uncancel()
            raise BodyTimeout(self.body_timeout) from None
        finally:
            timer.cancel()
        self.size = size
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def parse(self, decode: Callable[[bytes], T]) -> T:
        """``decode(body)`` for the whole body: on the event loop for a small body, in a
        worker thread above :data:`OFFLOAD_BYTES`, so that decoding a large one does not
        hold the other requests (a probe on ``/ping`` among them)."""
        body = await self.body()
        if len(body) <= OFFLOAD_BYTES:
            return decode(body)
        return await asyncio.to_thread(decode, body)

    async def json(self) -> Any:
        """The body parsed as JSON (see :func:`loads`)."""
        return await self.parse(loads)


class Response:
    """Status, body bytes and headers; ``version`` fills the model-version header."""

    __slots__ = ("status", "body", "headers", "version")

    def __init__(self, body: bytes = b"", status: int = 200,
                 content_type: bytes = _JSON, headers: list | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = [(b"content-type", content_type)] + (headers or [])
        self.version: str | None = None

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        """``data`` as a JSON answer (see :func:`dumps`: it never fails on client text)."""
        return cls(dumps(data), status)

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: bytes = b"text/plain") -> Response:
        return cls(text.encode("utf-8", "replace"), status, content_type)

    async def send(self, send: Send) -> None:
        headers = self.headers + [(b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


Handler = Callable[[Request], Awaitable[Response]]
_PARAM = re.compile(r"\{(\w+)\}")


class Router:
    """Routes by method and path pattern; an unknown path is a 404, a wrong method a 405."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern, Handler]] = []
        self._exact: dict[tuple[str, str], Handler] = {}

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        if "{" not in pattern:
            self._exact[(method, pattern)] = handler
            return
        regex = "^" + _PARAM.sub(lambda m: f"(?P<{m.group(1)}>[^/:]+)", pattern) + "$"
        self._routes.append((method, re.compile(regex), handler))

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        handler = self._exact.get((method, path))
        if handler is not None:
            return handler, {}
        allowed = False
        for m, regex, h in self._routes:
            found = regex.match(path)
            if found is not None:
                if m == method:
                    return h, found.groupdict()
                allowed = True
        if allowed or any(p == path for (_, p) in self._exact):
            raise HTTPError(405, f"method {method} is not allowed on {path}")
        raise HTTPError(404, f"no route {path}; see /openapi.json for the routes served")
