"""Database URLs, read once: which database, which driver, which SQLite file, and how to
speak of a URL without its password.

Every surface that opens a data database (tables read for training and scoring, lookup
tables written by batch jobs and streams, trigger connections, ``export --check-url``, the
prediction log) takes its URL through :func:`database_url`, so a URL means the same
everywhere: ``postgresql://`` and ``postgres://`` are psycopg 3, ``mysql://`` and
``mariadb://`` are PyMySQL, an explicit ``+driver`` is kept, and a SQLite URL must name a
file. Messages name a URL only through :func:`redact`, and quote a driver's message only
through :func:`scrubbed`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import UserError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine

#: a URL's scheme (``sqlite://``, ``postgresql+psycopg://``...): what tells a URL from a path
URL_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")

#: the driver modelport uses for a database named without one
DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg",
           "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}
#: the dialect a scheme's database speaks, as SQL exports name it
DIALECTS = {"postgresql": "postgresql", "postgres": "postgresql", "mysql": "mysql",
            "mariadb": "mysql", "sqlite": "sqlite"}

#: how a database URL is written, for messages
EXAMPLES = ("postgresql://user@host:5432/db, mysql://user@host:3306/db or "
            "sqlite:///path/to/app.db")


def redact(text: str) -> str:
    """``text`` with the password of a URL replaced by ``***``."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.\-]*://[^/:@#?]*:)[^@/#?]*@", r"\1***@", text)


def scrubbed(text: str, password: str | None) -> str:
    """``text`` (a driver's message, which may quote the URL it was given) with
    ``password`` (a parsed URL's, or None) replaced by ``***``."""
    return text.replace(str(password), "***") if password else text


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none), for errors
    that quote a driver's."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def dialect(url: str) -> str | None:
    """``postgresql``, ``mysql`` or ``sqlite`` for a URL of one of those databases (with or
    without a driver), None for anything else. Reads only the scheme: no driver needed."""
    match = URL_SCHEME.match(url)
    if match is None:
        return None
    return DIALECTS.get(match["scheme"].split("+", 1)[0].lower())


def database_url(url: str, *, base: str | Path | None = None, sqlite: str = "any",
                 hint: str = "#table") -> URL:
    """The SQLAlchemy URL for ``url`` with modelport's driver for its database.

    ``sqlite`` says what a SQLite URL's file must be: ``"exists"`` (reading: a mistyped
    path would otherwise open a new, empty database), ``"create"`` (writing: its folder is
    made) or ``"any"``. A relative SQLite path is taken from ``base`` when given. ``hint``
    ends the example in the message for a SQLite URL naming no file. A URL that cannot be
    parsed, or a SQLite URL naming no file, is a UserError saying how to write it.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise UserError(f"cannot parse the database URL {redact(url)!r}: write it like "
                        f"{EXAMPLES}") from None
    if parsed.drivername in DRIVERS:
        parsed = parsed.set(drivername=DRIVERS[parsed.drivername])
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise UserError(f"{redact(url)!r} names no database file: write "
                            f"sqlite:///path/to/app.db{hint}")
        path = Path(database).expanduser()
        if base is not None and not path.is_absolute():
            path = Path(base) / path
        if sqlite == "exists" and not path.is_file():
            raise UserError(f"no SQLite database at {path.absolute()} (from {redact(url)!r}); "
                            "check the path after sqlite:///")
        if sqlite == "create":
            path.parent.mkdir(parents=True, exist_ok=True)
        parsed = parsed.set(database=str(path))
    return parsed


def engine(url: str, **options: Any) -> Engine:
    """A SQLAlchemy engine for ``url`` (read by :func:`database_url` with ``options``); a
    driver that is not installed is a UserError naming the extra to install."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import NoSuchModuleError

    parsed = database_url(url, **options)
    try:
        return create_engine(parsed)
    except NoSuchModuleError:
        raise UserError(f"unknown database kind {parsed.drivername!r} in {redact(url)}: use "
                        "sqlite:///, postgresql://, mysql:// or another SQLAlchemy URL") from None
    except ImportError as exc:
        extra = "postgres" if "psycopg" in str(exc) else "mysql" if "mysql" in str(exc) else None
        install = f" (pip install 'modelport[{extra}]')" if extra else ""
        raise UserError(f"the database driver for {redact(url)} is not installed: "
                        f"{first_line(exc)}{install}") from None
