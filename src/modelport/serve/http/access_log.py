"""Request ids and structured access logs, as an ASGI middleware.

Each request gets an id (the client's ``x-request-id`` if it sent one, else a fresh one),
echoed in the ``x-request-id`` response header and passed to the app in
``scope["state"]["request_id"]``. One JSON line per request goes to the
``modelport.access`` logger: time, method, path, status, milliseconds, request id, and the
model and version that answered. Lines are handed to the logger in bundles at most
``FLUSH_SECONDS`` apart: one logging call per request would cost more than scoring a row.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import os
import time
from typing import TYPE_CHECKING

from modelport.serve.http.routing import dumps

if TYPE_CHECKING:
    from modelport.serve.http.routing import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("modelport.access")
FLUSH_SECONDS = 0.1


class AccessLog:
    """Adds the request id and logs one line per request (when ``enabled``)."""

    def __init__(self, app: ASGIApp, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled
        self._prefix = os.urandom(4).hex()
        self._count = itertools.count(1)
        self._lines: list[bytes] = []
        atexit.register(self.flush)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id: bytes | None = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                request_id = value[:128]
                break
        if request_id is None:
            request_id = f"{self._prefix}-{next(self._count)}".encode()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id.decode("latin-1")
        start = time.perf_counter()
        status = [0]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = list(message.get("headers", [])) + [
                    (b"x-request-id", request_id)]
            await send(message)

        await self.app(scope, receive, send_with_id)
        if self.enabled and log.isEnabledFor(logging.INFO):
            self._lines.append(dumps({
                "ts": round(time.time(), 3), "method": scope["method"], "path": scope["path"],
                "status": status[0], "ms": round((time.perf_counter() - start) * 1000, 3),
                "request_id": state["request_id"], "model": state.get("model"),
                "version": state.get("version"),
            }))
            if len(self._lines) == 1:
                asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Hand the buffered lines to the logger."""
        lines, self._lines = self._lines, []
        if lines:
            log.info(b"\n".join(lines).decode())
