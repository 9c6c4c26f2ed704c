"""The smallest HTTP layer that serves models fast: a request, a response, a router.

A plain ASGI application is a coroutine over ``(scope, receive, send)``; this module gives
handlers a :class:`Request` (path parameters, query, headers, a size-limited body), lets them
return a :class:`Response` or raise :class:`HTTPError`, and matches routes by method and a
path pattern with ``{name}`` placeholders. It stays free of any framework so that the
single-row path costs a few microseconds of routing.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson

_JSON = b"application/json"


def loads(data: bytes) -> Any:
    """Parse JSON fast; fall back to the standard library for the ``NaN`` and ``Infinity``
    that Python clients write; a body that is neither is a 400."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        import json

        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise HTTPError(400, f"request body is not valid JSON: {exc}") from None


class HTTPError(Exception):
    """An error answered to the client: a status, a message and, for bad input, the field."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def response(self) -> Response:
        body: dict[str, Any] = {"error": self.message}
        if self.field is not None:
            body["field"] = self.field
        return Response.json(body, self.status)


class BodyTooLarge(HTTPError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is over the limit of {limit} bytes; send fewer "
                              "rows per request or raise --max-body-bytes")


class Request:
    """One HTTP request as a handler sees it."""

    __slots__ = ("scope", "receive", "params", "max_body", "_headers", "_query", "id", "state")

    def __init__(self, scope: dict, receive, params: dict[str, str], max_body: int) -> None:
        self.scope = scope
        self.receive = receive
        self.params = params
        self.max_body = max_body
        self._headers: dict[str, str] | None = None
        self._query: dict[str, str] | None = None
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
        """The whole body; more than ``max_body`` bytes (declared or sent) is a 413."""
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise BodyTooLarge(self.max_body)
        chunks: list[bytes] = []
        size = 0
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
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def json(self) -> Any:
        return loads(await self.body())


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
        return cls(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), status)

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: bytes = b"text/plain") -> Response:
        return cls(text.encode(), status, content_type)

    async def send(self, send) -> None:
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
