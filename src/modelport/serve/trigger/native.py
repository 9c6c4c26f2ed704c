"""Native mode: the model compiled to C and loaded into PostgreSQL as a function.

SQL mode's trigger calls a model function written in SQL; native mode builds the same
function (same name, parameters and result) from the model's generated C
(:mod:`modelport.compile.pgfunction`), so the database scores each row at compiled speed
inside the insert. Before anything is installed the library is built against the server's
own headers, written where the server reads libraries, and proven in that database: the
function, created under a scratch name, scores the registered sample and must match the
native model (1e-9; labels and clusters exactly), as SQL mode's function must.

What it trusts: PostgreSQL runs a C function inside the server process with the server's
rights, so only a superuser may create one. The code is modelport's generated C, every
name and category in it written through the one quoting layer
(:mod:`modelport.quoting.code`); nothing of the model's data is compiled in any other way.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelport.errors import ConversionError, UserError

if TYPE_CHECKING:
    from modelport.compile.ir import ModelIR
    from modelport.compile.proof import Proof
    from modelport.serve.trigger.db import Database

#: where Debian puts each major version's pg_config (postgresql-server-dev-<major>)
_DEBIAN_PG_CONFIG = "/usr/lib/postgresql/{major}/bin/pg_config"


@dataclass(frozen=True)
class Server:
    """Where a PostgreSQL server's headers and libraries are, by its ``pg_config``."""

    version: str  # server_version_num, e.g. 150020
    include_dir: Path
    library_dir: Path


@dataclass(frozen=True)
class Compiled:
    """A model built and proven as a library the server loads."""

    library: Path
    #: the statement creating the model function (SQL mode's name, parameters and result)
    function: str

    def trigger_function(self, name: str) -> str:
        """The statement creating the library's row trigger function as ``name``."""
        from modelport.compile.pgfunction import create_trigger_function

        return create_trigger_function(name, self.library)


def prepare(db: Database, model_ir: ModelIR, proof: Proof | None, uri: str, base: str) -> Compiled:
    """Build, place and prove the model's C function for the PostgreSQL connection ``db``,
    to be created as ``<base>_score`` (see :func:`modelport.compile.sql.function_name`).
    Anything in the way is a :class:`UserError` saying what and the fix."""
    from modelport.compile import ctrees, pgfunction
    from modelport.compile.proof import check_sql

    require_postgresql(db)
    _superuser(db)
    server = locate(db)
    try:
        files = pgfunction.sources(model_ir)
    except ConversionError as exc:
        raise UserError(f"{uri} cannot be installed in native mode: {exc}; use --mode "
                        "worker") from None
    folder = server.library_dir / "modelport"
    library = folder / pgfunction.library_name(files, server.include_dir, server.version)
    try:
        ctrees.build_library(files, [*pgfunction.FLAGS, "-I", str(server.include_dir)],
                             library)
    except PermissionError:
        raise UserError(f"cannot write the model's library into {folder}, where the server "
                        "reads libraries: run install as a user who may write there (e.g. "
                        "root), or use --mode sql") from None
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        said = " ".join(str(exc).split())[-400:]
        raise UserError(f"{uri} could not be compiled for PostgreSQL: {said}; "
                        "use --mode sql or --mode worker") from None
    _readable_by_server(db, library)
    try:
        check_sql(db.conn, "postgresql", model_ir, proof, ("native",),
                  native=lambda name: pgfunction.create_function(model_ir, name, library))
    except ConversionError as exc:
        raise UserError(f"{uri} cannot be installed in native mode: {exc}; use --mode "
                        "sql or worker") from None
    return Compiled(library, pgfunction.create_function(model_ir, base, library))


def require_postgresql(db: Database) -> None:
    """A :class:`UserError` unless ``db`` is PostgreSQL, the one database with native mode."""
    if db.dialect != "postgresql":
        raise UserError("native mode compiles the model into a PostgreSQL function; MariaDB, "
                        "MySQL and SQLite have none here: use --mode sql or --mode worker")


def locate(db: Database) -> Server:
    """The headers and library folder of the server behind ``db``, from the ``pg_config``
    of its major version: ``$PG_CONFIG``, then Debian's
    ``/usr/lib/postgresql/<major>/bin/pg_config``, then ``pg_config`` on the path."""
    number = str(db.execute("SHOW server_version_num")[0][0])
    major = int(number) // 10000
    db.conn.rollback()
    candidates = [os.environ.get("PG_CONFIG"), _DEBIAN_PG_CONFIG.format(major=major),
                  shutil.which("pg_config")]
    seen = []
    for path in candidates:
        if not path or not Path(path).is_file() or path in seen:
            continue
        seen.append(path)
        try:
            said = {flag: subprocess.run([path, flag], capture_output=True, text=True,
                                         timeout=30, check=True).stdout.strip()
                    for flag in ("--version", "--includedir-server", "--pkglibdir")}
        except (OSError, subprocess.SubprocessError):
            continue
        found = re.search(r"(\d+)", said["--version"])
        include = Path(said["--includedir-server"])
        if found and int(found.group(1)) == major and (include / "postgres.h").is_file():
            return Server(number, include, Path(said["--pkglibdir"]))
    raise UserError(f"native mode builds against PostgreSQL {major}'s server headers, which "
                    f"are not installed here: install postgresql-server-dev-{major} (Debian) "
                    "or point PG_CONFIG at that version's pg_config; or use --mode sql")


def _superuser(db: Database) -> None:
    rows = db.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    db.conn.rollback()
    if not (rows and rows[0][0]):
        raise UserError("native mode creates a C function, which PostgreSQL lets only a "
                        "superuser do (it runs inside the server): connect as a superuser "
                        "(e.g. postgres), or use --mode sql, which needs no such rights")


def _readable_by_server(db: Database, library: Path) -> None:
    """A :class:`UserError` unless the server sees ``library`` as written here: a server on
    another host has its own disk."""
    try:
        rows = db.execute("SELECT (pg_stat_file(%s)).size", (str(library),))
        seen = int(rows[0][0])
    except Exception:  # noqa: BLE001 - the driver's error says the server cannot see it
        seen = -1
    finally:
        db.conn.rollback()
    if seen != library.stat().st_size:
        raise UserError(f"the database server cannot read {library}, which native mode built "
                        "here: install from the database's own host (the server loads the "
                        "library from its disk), or use --mode sql")
