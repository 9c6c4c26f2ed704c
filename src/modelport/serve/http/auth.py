"""Bearer-token authentication as an ASGI middleware.

Every route but the liveness and readiness probes needs ``Authorization: Bearer <token>``;
the token is compared in constant time (:func:`hmac.compare_digest`) so its bytes cannot be
guessed from response times. The probes answer without the token, but such a request is
marked ``scope["state"]["authenticated"] = False`` and the app then tells it only that it
is live or ready: no model names, versions or paths. The token is read from a file, never
from the command line, where other users of the machine could see it.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import TYPE_CHECKING

from modelport.errors import UserError

if TYPE_CHECKING:
    from modelport.serve.http.routing import ASGIApp, Receive, Scope, Send

#: probes an orchestrator calls without credentials
OPEN_PATHS = frozenset({"/ping", "/health", "/v2/health/live", "/v2/health/ready"})
_BODY = b'{"error":"missing or wrong bearer token; send Authorization: Bearer <token>"}'


def read_token(path: str | Path) -> str:
    """The token in ``path`` (surrounding whitespace dropped); an empty file is an error."""
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise UserError(f"cannot read --token-file {path}: {exc.strerror}") from None
    if not token:
        raise UserError(f"--token-file {path} is empty; put the bearer token in it")
    return token


def unauthenticated(scope: dict) -> bool:
    """Whether :class:`BearerAuth` let this request in without the token (a probe on one
    of :data:`OPEN_PATHS`): the answer then says live or ready and nothing else."""
    return scope.get("state", {}).get("authenticated") is False


class BearerAuth:
    """Answers 401 unless the request carries the bearer token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = b""
        for key, value in scope["headers"]:
            if key.lower() == b"authorization":
                given = value
                break
        if hmac.compare_digest(given, self._expected):
            return await self.app(scope, receive, send)
        if scope["path"] in OPEN_PATHS:
            scope.setdefault("state", {})["authenticated"] = False
            return await self.app(scope, receive, send)
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
            (b"content-length", str(len(_BODY)).encode())]})
        await send({"type": "http.response.body", "body": _BODY})
