"""ONNX graphs made by other tools import and score exactly as their producers meant.

The corpus (``shared/corpus/onnx/`` beside the checkout, or ``$MODELPORT_CORPUS/onnx``)
holds graphs written by skl2onnx, onnxmltools, PyTorch's exporter and the sklearn-onnx
documentation, with inputs and the outputs their producers give (see its ``SOURCES.md``).
Each graph is imported with only what a user would tell ``modelport import`` from the
expected outputs' columns (``label`` and ``p:<class>`` make a classifier with those
classes, ``value`` a regressor, ``cluster`` a clustering), scored through the registry, and
compared with the expected outputs to the case's tolerance (relative on regression values,
no changed label). The corpus is test data read where it lies, never copied here.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.parity import compare

from conftest import need_module

CORPUS = Path(os.environ.get("MODELPORT_CORPUS")
              or Path(__file__).resolve().parents[2] / "shared" / "corpus") / "onnx"


def _cases() -> list:
    index = CORPUS / "cases.tsv"
    if not index.is_file():
        # test data that lives outside the project, like a Kafka broker: its absence is no
        # fault of the code under test
        return [pytest.param(None, id="no-corpus", marks=pytest.mark.skip(
            reason=f"no ONNX corpus at {CORPUS}; set MODELPORT_CORPUS to the folder holding "
                   "onnx/cases.tsv to run it"))]
    with index.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [pytest.param(row, id=row["# id"]) for row in rows]


@pytest.fixture(autouse=True)
def onnx_extra():
    need_module("onnxruntime", "onnx")
    need_module("onnx", "onnx")


def _options(expected: pd.DataFrame) -> dict:
    """What the user tells the import, read from the expected outputs' columns."""
    if "label" in expected.columns:
        names = [c[2:] for c in expected.columns if c.startswith("p:")]
        # as the command line reads --classes: integers when every class is one
        classes = [int(c) for c in names] if all(c.lstrip("-").isdigit() for c in names) \
            else names
        return {"task": "classification", "classes": classes or None}
    if "value" in expected.columns:
        return {"task": "regression"}
    return {"task": "clustering"}


def _reference(expected: pd.DataFrame, task: str) -> dict[str, np.ndarray]:
    if task == "classification":
        probs = [c for c in expected.columns if c.startswith("p:")]
        out = {"label": expected["label"].to_numpy()}
        if probs:
            out["proba"] = expected[probs].to_numpy(dtype=np.float64)
        return out
    if task == "regression":
        return {"value": expected["value"].to_numpy(dtype=np.float64)}
    return {"cluster": expected["cluster"].to_numpy(dtype=np.int64)}


@pytest.mark.parametrize("case", _cases())
def test_corpus_graph_imports_and_scores_as_its_producer_meant(case):
    expected = pd.read_csv(CORPUS / "expected" / case["expected"])
    rows = pd.read_csv(CORPUS / "data" / case["input"])
    options = _options(expected)
    # external data files, when the exporter wrote any, lie beside the graph
    version = modelport.import_model(CORPUS / "models" / case["model"], "corpus", **options)
    assert version.native_format == "onnx"

    predictor = modelport.load(version.uri)
    # a graph fed one [n, k] matrix names no columns: its inputs are the file's, in order
    fed = rows if set(predictor.signature.names) <= set(rows.columns) else rows.to_numpy()
    got = predictor.run(fed)
    task = options["task"]
    assert predictor.task == task
    reference = _reference(expected, task)
    if "proba" in reference:
        assert "proba" in got, "the graph's probabilities were not read"
    parity = compare(reference, got, task, float(case["tolerance"]))
    assert parity["passed"], (case["# id"], parity)
    assert parity["rows"] == len(rows) == len(expected)


def test_corpus_graphs_with_external_data_are_stored_self_contained():
    """A graph whose weights lie in a data file beside it is stored with them folded in, so
    the registry's copy needs no side file (onnxruntime refuses external data for a model
    given as bytes)."""
    if not (CORPUS / "cases.tsv").is_file():
        pytest.skip(f"no ONNX corpus at {CORPUS}; set MODELPORT_CORPUS to run it")
    onnx = need_module("onnx", "onnx")
    split = [m for m in sorted((CORPUS / "models").glob("*.onnx"))
             if any(m.parent.glob(m.name + ".*"))]
    if not split:
        pytest.skip(f"no graph in {CORPUS / 'models'} keeps its weights in a data file")
    registry = modelport.Registry()
    for model in split:
        version = modelport.import_model(model, "split")
        proto = onnx.load_from_string(registry.read_artefact(version, "onnx"))
        assert proto.graph.initializer
        assert all(t.data_location == onnx.TensorProto.DEFAULT and not t.external_data
                   for t in proto.graph.initializer), model.name
