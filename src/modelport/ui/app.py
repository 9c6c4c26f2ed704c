"""The console as a plain ASGI app: a few routes, each a page rendered on the server.

Pages read the registry in a worker thread (its calls block), render a template
(:mod:`modelport.ui.templates`) and answer with a Content-Security-Policy that allows no
script at all: everything works with JavaScript off. Writes are POSTed forms that need a
signed-in session and the session's CSRF token (:mod:`modelport.ui.security`); a write
that is not allowed is answered 403 and changes nothing. A mistake in what was asked (an
unknown model, a missing reason) is answered 400 or 404 with a page saying what to fix.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote

from modelport.errors import NotFound, UserError
from modelport.ui import pages
from modelport.ui.security import AUTH_COOKIE, SESSION_COOKIE, Guard

if TYPE_CHECKING:
    from pathlib import Path

    from modelport.registry import Registry
    from modelport.serve.http.routing import ASGIApp, Receive, Scope, Send

log = logging.getLogger("modelport.ui")

MAX_FORM_BYTES = 64 * 1024
_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_VERSION = re.compile(r"^[0-9]{1,9}$")


class Refused(Exception):
    """A request answered with ``status`` and a page saying ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Request:
    """What a handler needs of one HTTP request."""

    def __init__(self, scope: dict, body: bytes, base: str) -> None:
        self.method = scope["method"]
        path = scope.get("path") or "/"
        if base and path.startswith(base):
            path = path[len(base):] or "/"
        self.path = path
        self.query = {k: v[-1] for k, v in parse_qs(
            scope.get("query_string", b"").decode("latin-1")).items()}
        cookies: SimpleCookie = SimpleCookie()
        for key, value in scope.get("headers", []):
            if key == b"cookie":
                try:
                    cookies.load(value.decode("latin-1"))
                except Exception:  # noqa: BLE001 - a malformed cookie counts as none
                    pass
        self.cookies = {k: m.value for k, m in cookies.items()}
        ctype = next((v for k, v in scope.get("headers", []) if k == b"content-type"), b"")
        self.form: dict[str, str] = {}
        if body and ctype.split(b";")[0].strip() == b"application/x-www-form-urlencoded":
            self.form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"),
                                                          keep_blank_values=True).items()}
        client = scope.get("client") or ("?", 0)
        self.client = str(client[0])


class Console:
    """The ``modelport ui`` app over ``registry``; ``token`` (None: read-only) guards the
    writes, and, when ``private``, the pages too (every page but the sign-in page needs a
    signed-in session); ``base`` is the path it is mounted under (``/ui`` inside
    ``modelport serve``)."""

    def __init__(self, registry: Registry, *, token: str | None = None,
                 sources: pages.Sources | None = None, base: str = "",
                 private: bool = False) -> None:
        from modelport.ui.templates import environment

        if private and not token:
            raise UserError("a private console needs a token: give --token-file")
        self.registry = registry
        self.private = private
        self.guard = Guard(token)
        self.sources = sources or pages.Sources()
        self.base = base.rstrip("/")
        self.env = environment()
        self._importance: dict = {}  # a version's reason-code importance, computed once

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body, too_big = b"", False
        if scope["method"] == "POST":
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > MAX_FORM_BYTES:
                    too_big = True
                    break
        request = Request(scope, b"" if too_big else body, self.base)
        session = request.cookies.get(SESSION_COOKIE) or ""
        new_session = not re.fullmatch(r"[A-Za-z0-9_-]{16,64}", session)
        if new_session:
            session = Guard.new_session()
        try:
            if too_big:
                raise Refused(413, f"a form of more than {MAX_FORM_BYTES} bytes")
            status, headers, html = await asyncio.to_thread(self._handle, request, session)
        except Exception as exc:  # noqa: BLE001 - a page says what went wrong
            status, headers, html = self._failed(exc, request, session)
        if new_session:
            headers.append(("set-cookie", self._cookie(SESSION_COOKIE, session)))
        raw = html.encode("utf-8")
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(raw)).encode()),
            (b"content-security-policy", _CSP.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
            (b"cache-control", b"no-store"),
            *[(k.encode(), v.encode("latin-1")) for k, v in headers]]})
        await send({"type": "http.response.body", "body": raw})

    def _cookie(self, name: str, value: str, max_age: int | None = None) -> str:
        text = f"{name}={value}; Path={self.base or '/'}; HttpOnly; SameSite=Strict"
        if max_age is not None:
            text += f"; Max-Age={max_age}"
        return text

    def _failed(self, exc: Exception, request: Request,
                session: str) -> tuple[int, list[tuple[str, str]], str]:
        if isinstance(exc, Refused):
            status, message = exc.status, str(exc)
        elif isinstance(exc, NotFound):
            status, message = 404, str(exc)
        elif isinstance(exc, UserError):
            status, message = 400, str(exc)
        else:
            log.exception("console page %s %s failed", request.method, request.path)
            status, message = 500, f"the page failed: {type(exc).__name__}"
        heading = {403: "Not allowed", 404: "Not found"}.get(status, "Cannot do that")
        return status, [], self._render("error", request, session, title=heading,
                                        heading=heading, error=message)

    # -- routes -------------------------------------------------------------------------------

    def _handle(self, request: Request, session: str) -> tuple[int, list[tuple[str, str]], str]:
        parts = [unquote(p) for p in request.path.strip("/").split("/") if p]
        if request.method not in ("GET", "HEAD", "POST"):
            raise Refused(405, f"{request.method} is not answered here")
        if request.method == "POST":
            return self._post(parts, request, session)
        if self.private and parts != ["login"] and not self.guard.signed_in(
                session, request.cookies.get(AUTH_COOKIE, "")):
            return self._redirect("/login")  # nothing is shown before the token is given
        page = self._get(parts, request, session)
        return 200, [], page

    def _get(self, parts: list[str], request: Request, session: str) -> str:
        reg, q = self.registry, request.query
        if not parts:
            found = pages.models(reg, q.get("q", ""), q.get("tag", ""))
            return self._render("models", request, session, title="Models", models=found,
                                q=q.get("q", ""), tag=q.get("tag", ""))
        if parts == ["serving"]:
            return self._render("serving", request, session, title="Serving",
                                rows=pages.processes(reg, self.sources),
                                stale=self.sources.stale_seconds)
        if parts == ["schedules"]:
            return self._render("schedules", request, session, title="Schedules",
                                schedules=pages.schedules(reg))
        if parts == ["login"]:
            return self._render("login", request, session, title="Sign in")
        if len(parts) == 2 and parts[0] == "models":
            window = q.get("window") or None
            if window is not None:
                _window(window)
            model = pages.model_page(reg, self.sources, parts[1], window)
            if model["monitor"] and model["monitor"].get("charts"):
                from markupsafe import Markup

                # drawn by modelport.monitor.svg, which escapes every label it writes
                model["monitor"]["charts"] = {k: (title, Markup(svg)) for k, (title, svg)
                                              in model["monitor"]["charts"].items()}
            return self._render("model", request, session, title=parts[1], m=model)
        if len(parts) == 3 and parts[0] == "models" and parts[2] == "compare":
            a, b = _version(q.get("a", ""), "a"), _version(q.get("b", ""), "b")
            return self._render("compare", request, session, title=f"{parts[1]} {a} vs {b}",
                                c=pages.compare(reg, parts[1], a, b))
        if len(parts) == 3 and parts[0] == "models":
            number = _version(parts[2], "version")
            return self._render("version", request, session, title=f"{parts[1]}/{number}",
                                v=pages.version_page(reg, parts[1], number,
                                                     self._importance))
        raise Refused(404, f"no page at {request.path}")

    def _post(self, parts: list[str], request: Request, session: str) -> tuple[int, list, str]:
        form, auth = request.form, request.cookies.get(AUTH_COOKIE, "")
        if not self.guard.writable:
            raise Refused(403, "this console is read-only: start it with --token-file to "
                               "change aliases from it")
        if parts == ["login"]:
            if not form.get("csrf") or form.get("csrf") != self.guard.csrf(session):
                raise Refused(403, "the sign-in form expired: open the sign-in page again")
            if not self.guard.check_token(form.get("token", "")):
                raise Refused(403, "wrong token: give the content of the console's "
                                   "--token-file")
            cookie = self._cookie(AUTH_COOKIE, self.guard.signed_in_cookie(session))
            return self._redirect("/", cookie)
        if not self.guard.may_write(session, auth, form.get("csrf", "")):
            raise Refused(403, "not signed in, or the form expired: sign in with the token "
                               "and submit the form from the console's own page")
        if parts == ["logout"]:
            return self._redirect("/", self._cookie(AUTH_COOKIE, "", max_age=0))
        if len(parts) == 3 and parts[0] == "models" and parts[2] in ("promote", "rollback"):
            name = parts[1]
            by = f"console ({request.client})"
            if parts[2] == "promote":
                pages.promote(self.registry, name, form.get("alias", ""),
                              form.get("version", ""), form.get("reason", ""), by)
            else:
                pages.roll_back(self.registry, name, form.get("alias", ""),
                                form.get("reason", ""), by)
            return self._redirect(f"/models/{quote(name, safe='')}")
        raise Refused(404, f"nothing to post to at {request.path}")

    def _redirect(self, path: str, cookie: str | None = None) -> tuple[int, list, str]:
        headers = [("location", self.base + path)]
        if cookie:
            headers.append(("set-cookie", cookie))
        return 303, headers, ""

    def _render(self, name: str, request: Request, session: str, **context: Any) -> str:
        signed_in = self.guard.signed_in(session, request.cookies.get(AUTH_COOKIE, ""))
        return self.env.get_template(name).render(
            base=self.base, writable=self.guard.writable, signed_in=signed_in,
            csrf=self.guard.csrf(session), **context)


def _window(text: str) -> None:
    """A monitoring window from a link: a length up to a year (30 of them are read)."""
    from datetime import timedelta

    from modelport.monitor.analysis import parse_duration

    if not re.fullmatch(r"[0-9]{1,4}[mhdw]", text) or \
            not timedelta(0) < parse_duration(text) <= timedelta(days=366):
        raise UserError(f"window {text!r}: write a length up to a year like 30m, 6h, 1d or 1w")


def _version(text: str, what: str) -> int:
    if not _VERSION.fullmatch(text.strip()) or int(text) < 1:
        raise UserError(f"{what} {text!r}: a version is a positive number (e.g. 3)")
    return int(text)


def create_app(registry: Registry | None = None, *, token: str | None = None,
               token_file: str | None = None, log_url: str | None = None,
               checks: Iterable[str | Path] = (), base: str = "",
               private: bool = False) -> Console:
    """The console over ``registry`` (default: the configured one). ``token_file`` (or
    ``token``) allows promoting and rolling back, and with ``private`` guards every page;
    ``log_url`` is the prediction log its monitoring reads (default ``$MODELPORT_LOG``);
    ``checks`` are alert rules files."""
    import os
    from pathlib import Path

    if registry is None:
        from modelport.registry import Registry

        registry = Registry()
    if token_file and not token:
        from modelport.serve.http.auth import read_token

        token = read_token(token_file)
    sources = pages.Sources(log_url=log_url or os.environ.get("MODELPORT_LOG") or None,
                            checks=[Path(c) for c in checks])
    for path in sources.checks:
        from modelport.monitor.alerts import load_rules_file

        load_rules_file(path)  # a broken rules file fails at start, naming itself
    return Console(registry, token=token, sources=sources, base=base, private=private)


def mount(app: ASGIApp, console: Console, prefix: str = "/ui") -> Mounted:
    """An ASGI app answering ``prefix`` and below with ``console`` and the rest with
    ``app`` (``modelport serve --ui``); attributes of ``app`` stay reachable."""
    return Mounted(app, console, prefix)


class Mounted:
    def __init__(self, app: ASGIApp, console: Console, prefix: str) -> None:
        self.app, self.console, self.prefix = app, console, prefix.rstrip("/")
        self.server = getattr(app, "server", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == self.prefix or path.startswith(self.prefix + "/"):
            if path == self.prefix:
                scope = {**scope, "path": self.prefix + "/"}
            return await self.console(scope, receive, send)
        return await self.app(scope, receive, send)
