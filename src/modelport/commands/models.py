"""``modelport models``: list, inspect, alias, roll back and delete registered models."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from modelport.commands.base import JsonOpt, open_registry, print_json, rich_console

app = typer.Typer(help="List, inspect, alias, roll back and delete registered models.",
                  no_args_is_help=True)


@app.command("list")
def models_list(as_json: JsonOpt = False) -> None:
    """List registered models with their latest version and aliases."""
    rows = open_registry().list_models()
    if as_json:
        print_json(rows)
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
    rich_console().print(table)


@app.command("show")
def models_show(uri: Annotated[str, typer.Argument(help="churn, churn/3 or churn@production")],
                as_json: JsonOpt = False) -> None:
    """Show a model (its versions and alias history) or one version (signature, metrics,
    each format's parity figures)."""
    from modelport.uri import ModelURI

    reg = open_registry()
    u = ModelURI.parse(uri)
    if u.version is None and u.alias is None:
        versions = reg.versions(u.name)
        data: dict[str, Any] = {
            "name": u.name,
            "aliases": reg.aliases(u.name),
            "versions": [v.to_dict() for v in versions],
            "alias_history": reg.alias_history(u.name),
            "events": reg.events(u.name),
        }
        if as_json:
            print_json(data)
            return
        _show_model(data)
        return
    from modelport.scoring.choice import describe

    version = reg.get(u)
    data = version.to_dict()
    # what the surfaces will score with: the scoring core's own choice, not a guess
    data["serving"] = describe(version)
    data["serving_format"] = data["serving"]["row"]["format"]
    if as_json:
        print_json(data)
        return
    _show_version(data)


def _show_model(data: dict) -> None:
    from rich.table import Table

    console = rich_console()
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

    console = rich_console()
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
    fmts = Table("format", "status", "max abs diff", "label flips", "rows", "size",
                 "1-row µs", "reason", title="formats (parity on the registered sample)")
    for name, a in v["formats"].items():
        p = a.get("parity") or {}
        fmts.add_row(name, a["status"], _num(p.get("max_abs_diff")),
                     str(p.get("label_flips", "-")), str(p.get("rows", "-")),
                     str(a.get("size") or "-"), _num(p.get("single_row_us")),
                     (a.get("reason") or "")[:80])
    console.print(fmts)
    for purpose, surfaces in (("row", "HTTP, streams, triggers"), ("batch", "batch jobs")):
        chosen = (v.get("serving") or {}).get(purpose)
        if chosen:
            console.print(f"scores with ({surfaces}): {chosen['format'] or 'nothing'}: "
                          f"{chosen['why']}")
    lineage = {k: v["lineage"].get(k) for k in ("estimator", "source", "rows") if k in v["lineage"]}
    console.print(f"data fingerprint: {v['data_fingerprint']}  parent: {v['parent_version']}"
                  + (f"  lineage: {lineage}" if lineage else ""))


def _num(x: object) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


@app.command("alias")
def models_alias(
    name: str,
    version: Annotated[int, typer.Argument(help="the version the alias should point to")],
    alias: str,
    reason: Annotated[str | None, typer.Option(help="why (kept in the alias history)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Point NAME@ALIAS at VERSION."""
    v = open_registry().set_alias(name, version, alias, reason=reason)
    if as_json:
        print_json({"name": name, "alias": alias, "version": v.version})
    else:
        typer.echo(f"{name}@{alias} -> {v.version}")


@app.command("rollback")
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
    v = open_registry().rollback(name, alias, reason=reason)
    if as_json:
        print_json({"name": name, "alias": alias, "version": v.version})
    else:
        typer.echo(f"{name}@{alias} rolled back -> {v.version}")


@app.command("delete")
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
    deleted = open_registry().delete(u.name, u.version, force=force)
    if as_json:
        print_json({"name": u.name, "deleted_versions": deleted})
    else:
        typer.echo(f"deleted {u.name} version(s) {', '.join(map(str, deleted)) or '-'}")
