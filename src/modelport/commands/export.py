"""``modelport export``: a model as a self-contained artefact for another application."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelport.commands.base import JsonOpt, open_registry, print_json


def export_cmd(
    uri: Annotated[str, typer.Argument(help="model to export: churn, churn/3, churn@production")],
    format: Annotated[str, typer.Option(
        help="sql, pmml, python, javascript, c, java, go, onnx, compiled, or bundle (every "
             "in-app target with its signature, parity report and README)")],
    out: Annotated[Path, typer.Option(help="folder to write the artefact and its README into")],
    dialect: Annotated[str, typer.Option(help="SQL dialect: postgresql, mysql or sqlite")]
    = "postgresql",
    check_url: Annotated[str | None, typer.Option(
        help="also run the SQL on the sample in this PostgreSQL or MariaDB/MySQL database "
             "of the dialect (postgresql://user@host/db, mysql://root@host:3306/db); "
             "nothing is left in it")] = None,
    explain: Annotated[str | None, typer.Option(
        "--explain", help="add each row's N largest reasons: for --format sql (linear "
                          "models) reason_1..N and contribution_1..N expressions and reason "
                          "functions; for c and javascript (tree ensembles) explain and "
                          "reasons functions", metavar="N")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a model as a self-contained artefact (SQL, PMML, source code, ONNX, an in-app
    bundle) with a usage note, after checking it against the native model on the registered
    sample."""
    from modelport.compile import export

    files = export(uri, format, out, dialect=dialect, check_url=check_url,
                   registry=open_registry(), explain=explain)
    if as_json:
        print_json({"uri": uri, "format": format, "files": [str(f) for f in files]})
    else:
        for f in files:
            typer.echo(str(f))
