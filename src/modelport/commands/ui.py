"""``modelport ui``: the operations console in the browser."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def ui_cmd(
    port: Annotated[int, typer.Option(help="port to listen on")] = 8090,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    token_file: Annotated[Path | None, typer.Option(
        help="file holding the token that allows promoting and rolling back (without it "
             "the console is read-only)")] = None,
    log: Annotated[str | None, typer.Option(
        "--log", help="the prediction log monitoring reads: SQLAlchemy URL with the table "
        "after '#' (default: $MODELPORT_LOG)")] = None,
    check: Annotated[list[Path] | None, typer.Option(
        "--check", help="an alert rules file (YAML) whose rules are shown with their state "
        "(repeatable; the files of scheduled checks are read too)")] = None,
    window: Annotated[str, typer.Option(
        help="monitoring windows: 30m, 6h, 1d, 1w")] = "1d",
    private: Annotated[bool, typer.Option(
        "--private", help="show nothing until the token of --token-file is given (default: "
        "pages are open to read, changes need the token)")] = False,
) -> None:
    """The operations console in the browser: models, versions, promote and roll back,
    live serving processes, monitoring and schedules."""
    from modelport.errors import UserError, require
    from modelport.monitor.analysis import parse_duration
    from modelport.ui import create_app

    uvicorn = require("uvicorn", "http", "the console")
    if not 0 < port < 65536:
        raise UserError(f"--port {port}: give a port between 1 and 65535")
    parse_duration(window, "--window")
    console = create_app(token_file=str(token_file) if token_file else None, log_url=log,
                         checks=check or [], private=private)
    console.sources.window = window
    mode = "promote and roll back with the token" if console.guard.writable else "read-only"
    if private:
        mode += "; every page behind the token"
    typer.echo(f"modelport: console on http://{host}:{port}/ ({mode})", err=True)
    uvicorn.run(console, host=host, port=port, access_log=False, log_level="warning",
                lifespan="on")
