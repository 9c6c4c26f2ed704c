"""PMML files made by other tools import and score exactly as their producers meant, or are
refused with one line naming what is not supported.

The corpus (``shared/corpus/pmml/`` beside the checkout, or ``$MODELPORT_CORPUS/pmml``)
holds files written by JPMML-SkLearn, JPMML-R, Rattle, the R ``pmml`` package, KNIME and the
DMG's own examples, with inputs and the outputs their producers (or JPMML-Evaluator, the
reference) give (see its ``SOURCES.md``). Each file is imported the way a user would
(``modelport.import_model(file, sample=inputs)``), loaded through the registry and scored on
the inputs; every output must equal the expected one to the case's tolerance (relative on
regression values, no changed label). A row the reference gives no answer for must get none
(NaN, or the row refused with its reason). An import may instead be refused, with one
line naming the file and what modelport does not read (and, for a file pypmml would get
wrong, the construct pypmml mishandles). Whichever runtime scores a file, its read form or
pypmml, a wrong output fails: there is no third outcome. The corpus is test data read where
it lies, never copied here.
"""

from __future__ import annotations

import csv
import gzip
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.errors import UserError
from modelport.formats import pmml
from rowwise import score_rows

from conftest import need_module, unavailable

CORPUS = Path(os.environ.get("MODELPORT_CORPUS")
              or Path(__file__).resolve().parents[2] / "shared" / "corpus") / "pmml"

#: what became of each file: "matched (compiled)", "matched (pypmml)", "refused: ...", or
#: "wrong (runtime): ..." for a file that fails
OUTCOMES: dict[str, str] = {}


def _cases() -> list:
    index = CORPUS / "cases.tsv"
    if not index.is_file():
        # test data that lives outside the project, like a Kafka broker: its absence is no
        # fault of the code under test
        return [pytest.param(None, id="no-corpus", marks=pytest.mark.skip(
            reason=f"no PMML corpus at {CORPUS}; set MODELPORT_CORPUS to the folder holding "
                   "pmml/cases.tsv to run it"))]
    with index.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [pytest.param(row, id=row["# id"]) for row in rows]


@pytest.fixture(autouse=True)
def _pmml_runtime():
    need_module("pypmml", "pmml")
    if not pmml.available():
        unavailable("java is not on PATH (pypmml runs PMML in a JVM)")


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, na_values=["N/A", "NA"], keep_default_na=True)


def _same_label(a, b) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def _mismatches(expected: pd.DataFrame, got: dict, refused: np.ndarray, task: str,
                classes: list | None, tolerance: float) -> list[str]:
    """What differs, one line per kind of difference (empty when everything matches)."""
    problems = []
    n = len(expected)
    if task == "classification":
        probs = [c for c in expected.columns if c.startswith("p:")]
        answered = ~expected["label"].isna().to_numpy()
        if probs:
            answered &= ~expected[probs].isna().any(axis=1).to_numpy()
            if "proba" not in got:
                return ["gives no probabilities"]
            order = [pmml._class_position(c[2:], classes) for c in probs]
            want = expected[probs].to_numpy(dtype=np.float64)
            have = np.asarray(got["proba"], dtype=np.float64)[:, order]
            delta = np.abs(want - have)
            bad = answered & ~refused & (np.nan_to_num(delta, nan=np.inf) > tolerance).any(axis=1)
            if bad.any():
                problems.append(f"probabilities differ on {int(bad.sum())} of {n} rows "
                                f"(up to {np.nanmax(np.where(bad[:, None], delta, 0)):.3g})")
        labels = expected["label"].to_numpy()
        flips = [i for i in range(n) if answered[i] and not refused[i]
                 and not _same_label(labels[i], got["label"][i])]
        if flips:
            problems.append(f"{len(flips)} of {n} labels differ (row {flips[0]}: "
                            f"{got['label'][flips[0]]!r} for {labels[flips[0]]!r})")
        unanswered = ~answered & ~refused
        if probs and unanswered.any():
            extra = unanswered & ~np.isnan(np.asarray(got["proba"], dtype=np.float64)).any(axis=1)
            if extra.any():
                problems.append(f"answers {int(extra.sum())} rows the reference gives none for")
    elif task == "regression":
        want = expected["value"].to_numpy(dtype=np.float64)
        have = np.asarray(got["value"], dtype=np.float64)
        answered = ~np.isnan(want)
        rel = np.abs(want - have) / np.maximum(1.0, np.abs(np.nan_to_num(want)))
        bad = answered & ~refused & (np.nan_to_num(rel, nan=np.inf) > tolerance)
        if bad.any():
            problems.append(f"values differ on {int(bad.sum())} of {n} rows")
        extra = ~answered & ~refused & ~np.isnan(have)
        if extra.any():
            problems.append(f"answers {int(extra.sum())} rows the reference gives none for")
    else:
        want = expected["cluster"].to_numpy(dtype=np.float64)
        answered = ~np.isnan(want)
        bad = answered & ~refused & (want != np.asarray(got["cluster"], dtype=np.float64))
        if bad.any():
            problems.append(f"clusters differ on {int(bad.sum())} of {n} rows")
    if (refused & _answered(expected, task)).any():
        problems.append(f"refuses {int((refused & _answered(expected, task)).sum())} rows the "
                        "reference answers")
    return problems


def _answered(expected: pd.DataFrame, task: str) -> np.ndarray:
    column = {"classification": "label", "regression": "value"}.get(task, "cluster")
    return ~expected[column].isna().to_numpy()


@pytest.mark.parametrize("case", _cases())
def test_corpus_file_scores_as_its_producer_meant_or_is_refused_naming_why(case, tmp_path):
    name = case["# id"]
    model = tmp_path / f"{name}.pmml"
    model.write_bytes(gzip.decompress((CORPUS / case["model"]).read_bytes()))
    # categories are read as written ("FALSE" stays text, "17" stays a category)
    categorical = pmml.inspect(model.read_bytes()).categorical
    rows = pd.read_csv(CORPUS / case["input"], na_values=["N/A", "NA"],
                       dtype={c: str for c in categorical})
    expected = _read(CORPUS / case["expected"])
    assert len(rows) == len(expected)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            version = modelport.import_model(model, "corpus", sample=rows)
    except UserError as exc:
        reason = str(exc)
        OUTCOMES[name] = f"refused: {reason}"
        # one line naming the file, what modelport cannot read and why it gave up on it
        assert "\n" not in reason and model.name in reason, reason
        assert "cannot read" in reason or "reader: " in reason, reason
        return
    predictor = modelport.load(version.uri)
    signature = predictor.signature
    runtime = getattr(predictor, "runtime", None)
    got, refused = score_rows(predictor, rows)
    problems = _mismatches(expected, got, refused, signature.task, signature.classes,
                           float(case["tolerance"]))
    record = version.artefact("pmml").parity
    if problems:
        OUTCOMES[name] = f"wrong ({runtime}): {'; '.join(problems)}; reader: {record.get('reader')}"
    else:
        OUTCOMES[name] = f"matched ({runtime})"
    assert not problems, (name, runtime, problems, record.get("reader"))
    compiled = version.artefact("compiled")
    if runtime == "compiled":
        # the form that scores is the derived artefact, and it is served too
        assert compiled.status == "accepted"
        again, _ = score_rows(modelport.load(version.uri, format="compiled"), rows)
        for key in got:
            np.testing.assert_array_equal(np.asarray(again[key]), np.asarray(got[key]))
    else:
        assert compiled.status == "rejected" and compiled.reason


def test_corpus_outcomes_are_counted():
    """How many files match, through which runtime, how many are refused and why (run with
    ``-s`` to see the list)."""
    if not OUTCOMES:
        pytest.skip("no corpus file was run")
    counts: dict[str, int] = {}
    for outcome in OUTCOMES.values():
        kind = outcome.split(":")[0]
        counts[kind] = counts.get(kind, 0) + 1
    print(f"\nPMML corpus: {len(OUTCOMES)} files: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for name, outcome in sorted(OUTCOMES.items()):
        print(f"  {name}: {outcome}")
