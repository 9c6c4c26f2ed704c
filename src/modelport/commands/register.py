"""``modelport import``, ``train`` and ``quickstart``: the commands that put a new version
in the registry, from a file made elsewhere, a training spec, or generated churn data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from modelport.commands.base import JsonOpt, print_json


def import_cmd(
    file: Annotated[Path, typer.Argument(
        help="a .onnx, .pmml, H2O MOJO .zip or H2O POJO .java file, or a folder holding a "
             ".onnx file and its external data")],
    name: Annotated[str, typer.Option("--name", help="the model's registry name")],
    format: Annotated[str | None, typer.Option(
        help="onnx, pmml, mojo or pojo (default: from extension)")] = None,
    sample: Annotated[str | None, typer.Option(
        help="the model's training rows (file or URL): the signature's ranges and "
             "vocabularies come from all of them")] = None,
    alias: Annotated[str | None, typer.Option(help="point this alias at the new version")] = None,
    task: Annotated[str | None, typer.Option(
        help="classification, regression or clustering, when the file does not say (an ONNX "
             "graph whose only output is probabilities)")] = None,
    classes: Annotated[str | None, typer.Option(
        help="an ONNX classifier's classes in output column order, comma-separated "
             "(0,1,2 or no,yes; default: the graph's, else 0..k-1)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a model made elsewhere (ONNX, PMML, H2O MOJO or POJO) so it serves like any
    other."""
    import warnings

    from modelport.register import import_model

    frame = None
    if sample:
        from modelport.io.tables import read_table

        frame = read_table(sample)
    labels: list[Any] | None = None
    if classes is not None:
        labels = [c.strip() for c in classes.split(",") if c.strip()]
        if all(c.lstrip("-").isdigit() for c in labels):
            labels = [int(c) for c in labels]
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always", UserWarning)
        v = import_model(file, name, format, sample=frame, alias=alias, task=task,
                         classes=labels)
    for note in dict.fromkeys(str(n.message) for n in notes):
        typer.echo(f"modelport: note: {note}", err=True)
    if as_json:
        print_json(v.to_dict())
    else:
        typer.echo(f"registered {v.uri} ({', '.join(v.accepted_formats())}) from {file}")


def train_cmd(
    spec: Annotated[Path, typer.Argument(help="training spec (YAML)")],
    alias: Annotated[str | None, typer.Option(help="point this alias at the new version")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a model from a spec, register it with metrics and lineage, print a report."""
    from modelport.train.oneoff import train

    result = train(spec, alias=alias)
    if as_json:
        print_json({"version": result.version.to_dict(), "metrics": result.metrics,
                     "seconds": result.seconds})
    else:
        typer.echo(result.report)


def quickstart_cmd(
    rows: Annotated[int, typer.Option(help="customers to generate")] = 20000,
    folder: Annotated[Path, typer.Option("--dir", help="where to write the example data")] = Path(
        "modelport-quickstart"),
) -> None:
    """Generate churn data, train and register a model, alias it production, score customers."""
    from modelport.quickstart import run

    run(rows=rows, folder=folder, echo=typer.echo)
