"""The ``modelport`` command line: a thin layer over the Python API.

User errors print one line on stderr and exit with code 2. Nothing heavy is imported until
a command runs, so ``modelport --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Take a trained machine-learning model into production, from one registry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List, inspect, alias, roll back and delete registered models.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _registry():
    from modelport.registry import Registry

    return Registry()


def _print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _console():
    from rich.console import Console

    return Console()


# -- models ------------------------------------------------------------------------------

@models_app.command("list")
def models_list(as_json: JsonOpt = False) -> None:
    """List registered models with their latest version and aliases."""
    rows = _registry().list_models()
    if as_json:
        _print_json(rows)
        return
    if not rows:
        typer.echo("no models registered yet (try: modelport quickstart)")
        return
    from rich.table import Table

    table = Table("model", "versions", "latest", "aliases", "created")
    for r in rows:
        aliases = ", ".join(f"@{a}={v}" for a, v in sorted(r["aliases"].items()))
        table.add_row(r["name"], str(r["versions"]), str(r["latest_version"] or "-"), aliases,
                      (r["created_at"] or "")[:19])
    _console().print(table)


@models_app.command("show")
def models_show(uri: Annotated[str, typer.Argument(help="churn, churn/3 or churn@production")],
                as_json: JsonOpt = False) -> None:
    """Show a model (its versions and alias history) or one version (signature, metrics,
    each format's parity figures)."""
    from modelport.uri import ModelURI

    reg = _registry()
    u = ModelURI.parse(uri)
    if u.version is None and u.alias is None:
        versions = reg.versions(u.name)
        data = {
            "name": u.name,
            "aliases": reg.aliases(u.name),
            "versions": [v.to_dict() for v in versions],
            "alias_history": reg.alias_history(u.name),
            "events": reg.events(u.name),
        }
        if as_json:
            _print_json(data)
            return
        _show_model(data)
        return
    version = reg.get(u)
    if as_json:
        _print_json(version.to_dict())
        return
    _show_version(version.to_dict())


def _show_model(data: dict) -> None:
    from rich.table import Table

    console = _console()
    aliases = ", ".join(f"@{a} -> {v}" for a, v in sorted(data["aliases"].items())) or "none"
    console.print(f"[bold]{data['name']}[/]  aliases: {aliases}")
    table = Table("version", "created", "task", "metrics", "formats", "aliases")
    for v in data["versions"]:
        metrics = ", ".join(f"{k}={_num(x)}" for k, x in v["metrics"].items())
        fmts = ", ".join(f for f, a in v["formats"].items() if a["status"] == "accepted")
        table.add_row(str(v["version"]), v["created_at"][:19], v["task"], metrics, fmts,
                      ", ".join(v["aliases"]))
    console.print(table)
    if data["alias_history"]:
        hist = Table("alias", "action", "from", "to", "at", "by", "reason", title="alias history")
        for e in data["alias_history"]:
            hist.add_row(e["alias"], e["action"], str(e["from_version"] or "-"),
                         str(e["to_version"] or "-"), (e["at"] or "")[:19], e["by"] or "",
                         e["reason"] or "")
        console.print(hist)


def _show_version(v: dict) -> None:
    from rich.table import Table

    console = _console()
    aliases = " ".join(f"@{a}" for a in v["aliases"])
    console.print(f"[bold]{v['uri']}[/] {aliases}  task={v['task']}  created {v['created_at'][:19]}"
                  f" by {v['created_by']}")
    if v["metrics"]:
        console.print("metrics: " + ", ".join(f"{k}={_num(x)}" for k, x in v["metrics"].items()))
    sig = v["signature"]
    inputs = Table("input", "kind", "dtype", "nullable", "range / categories", title="signature")
    for c in sig["inputs"]:
        if c["kind"] == "categorical":
            cats = c.get("categories") or []
            detail = ", ".join(cats[:6]) + (f" (+{len(cats) - 6})" if len(cats) > 6 else "")
        else:
            detail = f"{_num(c.get('min'))} .. {_num(c.get('max'))}"
        inputs.add_row(c["name"], c["kind"], c["dtype"], "yes" if c.get("nullable") else "no",
                       detail)
    console.print(inputs)
    if sig.get("classes") is not None:
        console.print(f"classes: {sig['classes']}")
    fmts = Table("format", "status", "max abs diff", "label flips", "rows", "size", "reason",
                 title="formats (parity on the registered sample)")
    for name, a in v["formats"].items():
        p = a.get("parity") or {}
        fmts.add_row(name, a["status"], _num(p.get("max_abs_diff")),
                     str(p.get("label_flips", "-")), str(p.get("rows", "-")),
                     str(a.get("size") or "-"), (a.get("reason") or "")[:80])
    console.print(fmts)
    lineage = {k: v["lineage"].get(k) for k in ("estimator", "source", "rows") if k in v["lineage"]}
    console.print(f"data fingerprint: {v['data_fingerprint']}  parent: {v['parent_version']}"
                  + (f"  lineage: {lineage}" if lineage else ""))


def _num(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


@models_app.command("alias")
def models_alias(
    name: str,
    version: Annotated[int, typer.Argument(help="the version the alias should point to")],
    alias: str,
    reason: Annotated[str | None, typer.Option(help="why (kept in the alias history)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Point NAME@ALIAS at VERSION."""
    v = _registry().set_alias(name, version, alias, reason=reason)
    if as_json:
        _print_json({"name": name, "alias": alias, "version": v.version})
    else:
        typer.echo(f"{name}@{alias} -> {v.version}")


@models_app.command("rollback")
def models_rollback(
    target: Annotated[str, typer.Argument(help="NAME@ALIAS (or NAME, with ALIAS after it)")],
    alias: Annotated[str | None, typer.Argument()] = None,
    reason: Annotated[str | None, typer.Option(help="why (kept in the alias history)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Move an alias back to the version it pointed to before."""
    from modelport.errors import UserError

    name = target
    if "@" in target:
        name, alias = target.split("@", 1)
    if not alias:
        raise UserError("say which alias to roll back: modelport models rollback churn@production")
    v = _registry().rollback(name, alias, reason=reason)
    if as_json:
        _print_json({"name": name, "alias": alias, "version": v.version})
    else:
        typer.echo(f"{name}@{alias} rolled back -> {v.version}")


@models_app.command("delete")
def models_delete(
    uri: Annotated[str, typer.Argument(help="NAME/VERSION, or NAME for the whole model")],
    force: Annotated[bool, typer.Option("--force", help="also remove aliases that point to it")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="confirm deleting a whole model")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete one version, or a whole model with --yes."""
    from modelport.errors import UserError
    from modelport.uri import ModelURI

    u = ModelURI.parse(uri)
    if u.alias is not None:
        raise UserError(f"delete takes NAME/VERSION or NAME, not an alias ({uri})")
    if u.version is None and not yes:
        raise UserError(f"deleting every version of {u.name!r} needs --yes")
    deleted = _registry().delete(u.name, u.version, force=force)
    if as_json:
        _print_json({"name": u.name, "deleted_versions": deleted})
    else:
        typer.echo(f"deleted {u.name} version(s) {', '.join(map(str, deleted)) or '-'}")


# -- registering and training ------------------------------------------------------------

@app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(help="a .onnx or .pmml file")],
    name: Annotated[str, typer.Option("--name", help="the model's registry name")],
    format: Annotated[str | None, typer.Option(help="onnx or pmml (default: from extension)")] = None,
    sample: Annotated[str | None, typer.Option(help="rows to record as sample (file or URL)")] = None,
    alias: Annotated[str | None, typer.Option(help="point this alias at the new version")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a model made elsewhere (ONNX or PMML) so it serves like any other."""
    from modelport.register import import_model

    frame = None
    if sample:
        from modelport.io.tables import read_table

        frame = read_table(sample)
    v = import_model(file, name, format, sample=frame, alias=alias)
    if as_json:
        _print_json(v.to_dict())
    else:
        typer.echo(f"registered {v.uri} ({', '.join(v.accepted_formats())}) from {file}")


@app.command("train")
def train_cmd(
    spec: Annotated[Path, typer.Argument(help="training spec (YAML)")],
    alias: Annotated[str | None, typer.Option(help="point this alias at the new version")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a model from a spec, register it with metrics and lineage, print a report."""
    from modelport.train.oneoff import train

    result = train(spec, alias=alias)
    if as_json:
        _print_json({"version": result.version.to_dict(), "metrics": result.metrics,
                     "seconds": result.seconds})
    else:
        typer.echo(result.report)


@app.command("quickstart")
def quickstart_cmd(
    rows: Annotated[int, typer.Option(help="customers to generate")] = 20000,
    folder: Annotated[Path, typer.Option("--dir", help="where to write the example data")] = Path(
        "modelport-quickstart"),
) -> None:
    """Generate churn data, train and register a model, alias it production, score customers."""
    from modelport.quickstart import run

    run(rows=rows, folder=folder, echo=typer.echo)


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    from modelport.errors import UserError

    # OpenMP threads that spin while waiting slow tree training many times over on
    # machines with few cores; waiting passively costs nothing measurable.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        app()
    except UserError as exc:
        typer.echo(f"modelport: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("modelport: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
