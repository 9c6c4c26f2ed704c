"""Who may change things in the console: the token, the session and the CSRF token.

Reading needs nothing. Every write (promote, roll back) needs two things:

- a signed-in session: the browser posted the token of ``--token-file`` to ``/login`` once,
  and holds a cookie that is the HMAC of its session id under a key derived from the token
  (so several workers agree, and changing the token signs everyone out);
- the form's CSRF token, the HMAC of the same session id for another purpose, which only a
  page the console rendered for that session carries (a page of another site can make the
  browser send the cookies, but cannot read the token to put in its form).

Without a token file nothing can be changed: every write is refused with 403. Tokens are
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SESSION_COOKIE = "modelport_ui_session"
AUTH_COOKIE = "modelport_ui_auth"


class Guard:
    """Sessions and CSRF tokens for one console; ``token`` None makes it read-only."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self._key = (hashlib.sha256(b"modelport-ui\0" + token.encode("utf-8")).digest()
                     if token else None)

    @property
    def writable(self) -> bool:
        return self._key is not None

    @staticmethod
    def new_session() -> str:
        return secrets.token_urlsafe(24)

    def _mac(self, purpose: str, session: str) -> str:
        assert self._key is not None
        return hmac.new(self._key, f"{purpose}\0{session}".encode(), hashlib.sha256).hexdigest()

    def csrf(self, session: str) -> str:
        """The CSRF token forms of ``session`` carry ('' for a read-only console)."""
        return self._mac("csrf", session) if self._key and session else ""

    def signed_in_cookie(self, session: str) -> str:
        return self._mac("auth", session)

    def check_token(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(
            given.strip().encode("utf-8"), self.token.encode("utf-8"))

    def signed_in(self, session: str, auth: str) -> bool:
        return bool(self._key and session and auth) and hmac.compare_digest(
            auth.encode(), self.signed_in_cookie(session).encode())

    def may_write(self, session: str, auth: str, csrf: str) -> bool:
        """Whether a POST from ``session`` with cookie ``auth`` and form field ``csrf`` may
        change something."""
        return self.signed_in(session, auth) and bool(csrf) and hmac.compare_digest(
            csrf.encode(), self.csrf(session).encode())
