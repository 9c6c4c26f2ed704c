"""The shape the import contracts (pyproject.toml, run by lint-imports in CI) cannot state:
no module reaches into another package's private names, and nothing outside the registry
touches its tables."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _imports():
    """(file, line, importing package, imported module, name) for every ``from modelport...
    import name`` in the package."""
    for path in sorted((SRC / "modelport").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        package = parts[1] if len(parts) > 2 else parts[-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("modelport"):
                for alias in node.names:
                    yield path, node.lineno, package, node.module, alias.name


def test_no_module_imports_a_private_name_from_another_package():
    crossing = [f"{p.relative_to(SRC)}:{line} imports {mod}.{name}"
                for p, line, package, mod, name in _imports()
                if name.startswith("_") and not name.startswith("__")
                and (mod.split(".") + [""])[1] != package]
    assert crossing == []


def test_only_the_registry_reads_its_schema():
    outside = [f"{p.relative_to(SRC)}:{line}" for p, line, package, mod, name in _imports()
               if package != "registry"
               and (mod.startswith("modelport.registry.schema")
                    or (mod == "modelport.registry" and name == "schema"))]
    assert outside == []


def test_every_command_function_is_registered_on_the_command_line():
    """``cli.COMMANDS`` lists the commands explicitly: a public function in a command module
    that neither it nor a group's Typer registers would be a command nobody can run."""
    import importlib
    import inspect

    import typer

    from modelport import cli

    registered = set()
    for _, command in cli.COMMANDS:
        callbacks = ([c.callback for c in command.registered_commands]
                     if isinstance(command, typer.Typer) else [command])
        registered |= {f"{f.__module__}.{f.__name__}" for f in callbacks}
    defined = set()
    for path in sorted((SRC / "modelport" / "commands").glob("*.py")):
        if path.stem in ("__init__", "base"):  # the package, and what the modules share
            continue
        module = importlib.import_module(f"modelport.commands.{path.stem}")
        defined |= {f"{module.__name__}.{name}" for name, f in vars(module).items()
                    if inspect.isfunction(f) and f.__module__ == module.__name__
                    and not name.startswith("_")}
    assert defined - registered == set()
    assert registered - defined == set()
