"""SQL identifiers, string literals and object names for PostgreSQL, MariaDB/MySQL and SQLite.

Column names, categories, class labels and table names come from data and files users
receive; modelport writes them into the SQL it generates (exported models, trigger DDL,
the worker's statements) only through this module, so none of them can end a quoted
string or name, open a comment or reach past its place:

- **identifiers** are always quoted (``"..."`` on PostgreSQL and SQLite, backticks on
  MariaDB/MySQL, which mean a name under every ``sql_mode``, ``ANSI_QUOTES`` included),
  the quote character doubled. A name the database could not hold is refused with a
  :class:`~modelport.errors.UserError`: a NUL character (no database takes one), one
  over PostgreSQL's 63 bytes (it would be cut silently, and two names could become one) or
  MySQL's 64 characters, a character beyond the Basic Multilingual Plane or trailing white
  space on MySQL.
- **string literals** mean the same text whatever the session's settings. PostgreSQL: a
  plain ``'...'`` only when the text holds no backslash or control character, else an
  ``E'...'`` literal with those escaped, read alike with ``standard_conforming_strings``
  on or off; NUL is refused (PostgreSQL text cannot hold it). MariaDB/MySQL: a plain
  ``'...'`` only for printable ASCII without a backslash, else the UTF-8 bytes in hex
  (``_utf8mb4 X'...'``), so neither ``NO_BACKSLASH_ESCAPES`` nor the connection's
  character set changes what is read. SQLite: ``'...'``, and text holding a control
  character as ``CAST(X'...' AS TEXT)`` (Python's sqlite3 refuses a statement holding NUL).
  No literal holds a raw line break, so a tool that rewrites line ends cannot change one.
- **dollar quoting** (PostgreSQL function bodies) takes a tag that occurs nowhere in the
  body, so no text inside can end it.
- **names modelport makes** from a user's name (a queue table, a trigger, a NOTIFY
  channel, a score column's companions) fit PostgreSQL's 63-byte limit, hence MySQL's
  64 characters, by a deterministic hashed suffix: the same user name always gives the
  same object name.
"""

from __future__ import annotations

import functools
import hashlib
import re

from modelport.errors import UserError

DIALECTS = ("postgresql", "mysql", "sqlite")
#: the longest name PostgreSQL keeps (NAMEDATALEN - 1); longer ones are cut without error
NAME_BYTES = 63
#: the longest identifier MariaDB/MySQL accepts, in characters
MYSQL_NAME_CHARS = 64

#: text a PostgreSQL ``'...'`` literal carries unchanged under any setting
_PG_PLAIN = re.compile(r"[^\\\x00-\x1f\x7f]*\Z")
#: text a MySQL ``'...'`` literal carries unchanged under any sql_mode and character set
_MYSQL_PLAIN = re.compile(r"[\x20-\x5b\x5d-\x7e]*\Z")
#: text a SQLite ``'...'`` literal carries as it is: no control characters
_SQLITE_PLAIN = re.compile(r"[^\x00-\x1f\x7f]*\Z")
#: a name modelport makes that needs neither hashing nor care: lower-case ASCII
_PLAIN_NAME = re.compile(r"[a-z0-9_]+\Z")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _shown(value: str) -> str:
    return repr(value) if len(value) <= 60 else repr(value[:57]) + "..."


def _dialect(dialect: str) -> str:
    if dialect not in DIALECTS:
        raise UserError(f"unknown SQL dialect {dialect!r}: use one of {', '.join(DIALECTS)}")
    return dialect


def _encodable(value: str, what: str) -> None:
    bad = _SURROGATE.search(value)
    if bad is not None:
        raise UserError(f"{what} {_shown(value)} holds a lone surrogate "
                        f"(U+{ord(bad.group()):04X}) at position {bad.start()}, which UTF-8 "
                        "cannot carry: fix the text in the data")


@functools.lru_cache(maxsize=8192)
def identifier(name: str, dialect: str, what: str = "name") -> str:
    """``name`` as a quoted identifier of ``dialect``, or a :class:`UserError` naming
    ``what`` (e.g. ``column name``) when that database could not hold it: empty, a NUL
    character, a lone surrogate; over 63 bytes on PostgreSQL; over 64 characters, a
    character beyond U+FFFF or trailing white space on MariaDB/MySQL."""
    name = str(name)
    _dialect(dialect)
    if not name:
        raise UserError(f"{what} is empty: SQL names need at least one character")
    if "\x00" in name:
        raise UserError(f"{what} {_shown(name)} holds a NUL character, which no database "
                        "name can: rename it")
    _encodable(name, what)
    if dialect == "mysql":
        if len(name) > MYSQL_NAME_CHARS:
            raise UserError(f"{what} {_shown(name)} is {len(name)} characters long; MariaDB "
                            f"and MySQL names hold at most {MYSQL_NAME_CHARS}: shorten it")
        wide = next((c for c in name if ord(c) > 0xFFFF), None)
        if wide is not None:
            raise UserError(f"{what} {_shown(name)} holds U+{ord(wide):X}, beyond what "
                            "MariaDB and MySQL names can hold (U+FFFF): rename it")
        if name[-1] in " \t\n\r\x0b\x0c":
            raise UserError(f"{what} {_shown(name)} ends with white space, which MariaDB and "
                            "MySQL names cannot: rename it")
        return "`" + name.replace("`", "``") + "`"
    if dialect == "postgresql":
        size = len(name.encode("utf-8"))
        if size > NAME_BYTES:
            raise UserError(f"{what} {_shown(name)} is {size} bytes long; PostgreSQL names "
                            f"hold at most {NAME_BYTES} bytes (longer ones are cut): "
                            "shorten it")
    return '"' + name.replace('"', '""') + '"'


def literal(value: str, dialect: str, what: str = "text") -> str:
    """``value`` as a string literal of ``dialect`` that reads back as exactly ``value``
    under any session setting (``standard_conforming_strings``, ``sql_mode``, the
    connection's character set), with no raw control character in it. A
    :class:`UserError` names ``what`` (e.g. ``category``) when the text holds a lone
    surrogate, or a NUL character on PostgreSQL."""
    value = str(value)
    _dialect(dialect)
    _encodable(value, what)
    if dialect == "postgresql":
        if "\x00" in value:
            raise UserError(f"{what} {_shown(value)} holds a NUL character, which PostgreSQL "
                            "text cannot hold: remove it from the data, or use another "
                            "database")
        if _PG_PLAIN.match(value):
            return "'" + value.replace("'", "''") + "'"
        return "E'" + "".join(_pg_escape(c) for c in value) + "'"
    if dialect == "mysql":
        if _MYSQL_PLAIN.match(value):
            return "'" + value.replace("'", "''") + "'"
        return "_utf8mb4 X'" + value.encode("utf-8").hex().upper() + "'"
    if _SQLITE_PLAIN.match(value):
        return "'" + value.replace("'", "''") + "'"
    return "CAST(X'" + value.encode("utf-8").hex().upper() + "' AS TEXT)"


def _pg_escape(c: str) -> str:
    if c == "\\":
        return "\\\\"
    if c == "'":
        return "''"
    if c < " " or c == "\x7f":
        return f"\\u{ord(c):04X}"  # exactly four digits: the next character cannot join them
    return c


def dollar_quoted(body: str, tag: str = "modelport") -> str:
    """``body`` between PostgreSQL dollar quotes whose tag occurs nowhere in it (``tag``,
    else ``tag`` with a number), so nothing inside can close the quote early."""
    chosen, n = tag, 0
    # a body ending in "$tag" would join the closing "$tag$" too
    while f"${chosen}$" in body + "$":
        n += 1
        chosen = f"{tag}{n}"
    return f"${chosen}${body}${chosen}$"


def fit(stem: str, suffix: str = "") -> str:
    """``stem + suffix`` when it fits in :data:`NAME_BYTES` bytes, else ``stem`` cut at a
    character boundary, an underscore, eight hex digits of the SHA-256 of the whole name,
    and ``suffix`` (short ASCII, e.g. ``_status``): a name every supported database keeps
    whole, the same for the same input, distinct for distinct inputs."""
    name = stem + suffix
    raw = name.encode("utf-8", "surrogatepass")
    if len(raw) <= NAME_BYTES:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:8]
    room = NAME_BYTES - len(suffix.encode("utf-8")) - len(digest) - 1
    head = stem.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore")
    return f"{head}_{digest}{suffix}"


def derived_name(prefix: str, name: str) -> str:
    """The name of an object modelport makes for the user's ``name`` (a table): ``prefix_name``
    when that is lower-case ASCII letters, digits and underscores within
    :data:`NAME_BYTES`, else ``prefix_`` with ``name`` so reduced and cut, an underscore and
    eight hex digits of its SHA-256. The result needs no quoting anywhere, fits every
    database's limit (a PostgreSQL NOTIFY channel included) and does not depend on how a
    database folds case."""
    plain = f"{prefix}_{name}"
    if _PLAIN_NAME.match(plain) and len(plain) <= NAME_BYTES:
        return plain
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    safe = re.sub(r"[^a-z0-9_]", "_", name.lower())
    room = NAME_BYTES - len(prefix) - len(digest) - 2
    return f"{prefix}_{safe[:room]}_{digest}"


def is_derived_name(name: object) -> bool:
    """Whether ``name`` has the form :func:`derived_name` gives for the ``modelport``
    prefixes: how names read back from a database are checked before they are used."""
    return (isinstance(name, str) and name.startswith("modelport_")
            and _PLAIN_NAME.match(name) is not None and len(name) <= NAME_BYTES)
