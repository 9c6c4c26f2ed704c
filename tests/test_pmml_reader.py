"""PMML files read into the compiled form score exactly as JPMML-Evaluator scores them.

``tests/fixtures/pmml/`` holds small hand-written files after the DMG's examples: tree
missing-value strategies, segmentation methods, regression links, transformations,
clustering, naive Bayes and scorecards (read); a neural network, a support vector
machine and a logit-link general regression (scored by pypmml); nearest neighbours, a
rule set, a Discretize transformation with a default bin and an ordinal general regression
(refused). Each is scored on rows built from its own split points (each
point and the doubles and float32 values beside it), categories and missing values, by
JPMML-Evaluator (the reference evaluator, run here in a child process: its Java library is
AGPL-3.0, a test-only dependency) and by modelport: the reader's form must equal the
reference to 1e-9, and so must the file imported through the registry, which must get an
accepted ``compiled`` artefact. Files the form cannot express are scored by pypmml instead,
unless pypmml is known to get their construct wrong (then the import is refused, naming
it, and the test shows pypmml does differ from the reference); a file whose own
ModelVerification records no evaluator reproduces is refused.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.compile import evaluate
from modelport.compile.from_pmml import read_pmml, to_ir, top_model
from modelport.errors import ConversionError, UserError
from modelport.formats import pmml
from rowwise import score_rows

from conftest import need_module, unavailable

FIXTURES = Path(__file__).parent / "fixtures" / "pmml"
#: files the form cannot express and pypmml scores right, with the element the reason names
UNREAD = {"general_regression_logit.pmml":
          "the form has no GeneralRegressionModel linkFunction 'logit'",
          "neural_network.pmml": "the form has no NeuralNetwork",
          "support_vector_machine.pmml": "the form has no SupportVectorMachineModel"}
#: files the form cannot express and pypmml scores wrongly: refused, naming the element the
#: reader lacks and the construct pypmml mishandles
REFUSED = {"general_regression_ordinal.pmml": (
               "the form has no GeneralRegressionModel modelType 'ordinalMultinomial'",
               "GeneralRegressionModel classifier: pypmml answers a row whose predictor"),
           "discretize.pmml": ("the form has no Discretize",
                               "Discretize with defaultValue or mapMissingTo: pypmml leaves"),
           "nearest_neighbors.pmml": ("the form has no NearestNeighborModel",
                                      "NearestNeighborModel: pypmml gives no answer"),
           "rule_set.pmml": ("the form has no RuleSetModel",
                             'RuleSetModel over a dataType="integer" field: pypmml reads a missing')}
READ = sorted(p.name for p in FIXTURES.glob("*.pmml")
              if p.name not in {*UNREAD, *REFUSED, "verification_wrong.pmml"})
ROWS = 400
TOLERANCE = 1e-9

pytestmark = [pytest.mark.filterwarnings("ignore::modelport.kernel.InputWarning")]


@pytest.fixture(autouse=True)
def _runtimes():
    need_module("pypmml", "pmml")
    if not pmml.available():
        unavailable("java is not on PATH (pypmml and JPMML-Evaluator run PMML in a JVM)")


# --- rows and the reference ------------------------------------------------------------------


def _rows(name: str) -> pd.DataFrame:
    """Rows for a file: every split point and LinearNorm point of each number with the
    doubles and float32 values beside it, uniform numbers around them, every category of
    each categorical field, and missing values (about one cell in eight)."""
    data = (FIXTURES / name).read_bytes()
    root = read_pmml(data)
    signature = pmml.inspect(data)
    rng = np.random.default_rng(sum(map(ord, name)))
    points: dict[str, set] = {}
    for el in root.iter():
        field = el.get("field")
        for attr in ("value", "orig"):
            text = el.get(attr) if el.tag in ("SimplePredicate", "LinearNorm") else None
            if el.tag == "LinearNorm":
                field = _parent_field(root, el)
            if text is not None and field is not None:
                try:
                    points.setdefault(field, set()).add(float(text))
                except ValueError:
                    pass
    for dis in root.iter("Discretize"):  # each bin's margins
        for interval in dis.iter("Interval"):
            for attr in ("leftMargin", "rightMargin"):
                if interval.get(attr) is not None:
                    points.setdefault(dis.get("field"), set()).add(float(interval.get(attr)))
    columns = {}
    for col in signature.inputs:
        if col.kind == "categorical":
            values = list(col.categories or []) or _categories_named(root, col.name)
            column = [values[i] for i in rng.integers(0, len(values), ROWS)]
        else:
            near = set()
            for t in points.get(col.name, {0.0}):
                f = float(np.float32(t))
                near |= {t, float(np.nextafter(t, -np.inf)), float(np.nextafter(t, np.inf)), f,
                         float(np.nextafter(np.float32(t), np.float32(-np.inf))),
                         float(np.nextafter(np.float32(t), np.float32(np.inf)))}
            near = sorted(near)
            lo, hi = min(near) - 2.0, max(near) + 2.0
            column = [near[rng.integers(len(near))] if rng.random() < 0.5
                      else float(rng.uniform(lo, hi)) for _ in range(ROWS)]
        for i in np.nonzero(rng.random(ROWS) < 0.125)[0]:
            column[i] = None
        columns[col.name] = column
    return pd.DataFrame(columns)


def _parent_field(root, norm) -> str | None:
    for el in root.iter("NormContinuous"):
        if norm in list(el):
            return el.get("field")
    return None


def _categories_named(root, name: str) -> list[str]:
    values = []
    for el in root.iter():
        if el.get("field") == name and el.tag == "SimplePredicate" and el.get("value"):
            values.append(el.get("value"))
    return sorted(set(values)) or ["a"]


_JPMML = r"""
import json, math, sys
import pandas as pd
from jpmml_evaluator import make_evaluator
out = {}
for key, spec in json.load(sys.stdin).items():
    frame = pd.DataFrame(spec["rows"], columns=spec["columns"])
    try:
        result = make_evaluator(spec["pmml"]).evaluateAll(frame)
    except Exception as exc:
        out[key] = {"error": str(exc)}
        continue
    out[key] = {c: [None if isinstance(v, float) and math.isnan(v) else
                    (v if v is None or isinstance(v, (int, float, str)) else str(v))
                    for v in result[c].tolist()] for c in result.columns}
json.dump(out, sys.stdout)
"""


@pytest.fixture(scope="module")
def reference() -> dict:
    """JPMML-Evaluator's results for every fixture on its rows, by file name."""
    need_module("jpmml_evaluator", "dev")
    specs = {}
    for name in [*READ, *UNREAD, *REFUSED]:
        rows = _rows(name)
        text = (FIXTURES / name).read_text()
        signature = pmml.inspect(text.encode())
        specs[name] = {"pmml": _with_probabilities(text, signature),
                       "columns": list(rows.columns),
                       "rows": rows.astype(object).where(rows.notna(), None).values.tolist()}
    done = subprocess.run([sys.executable, "-c", _JPMML], input=json.dumps(specs),
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"JPMML-Evaluator failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def _with_probabilities(text: str, signature) -> str:
    """The document with an Output of class probabilities when it has none, so the
    reference reports them (the file itself is scored as it is)."""
    if signature.task != "classification" or "<Output" in text:
        return text
    tags = "|".join(("TreeModel", "MiningModel", "RegressionModel", "NaiveBayesModel",
                     "GeneralRegressionModel"))
    match = re.search(rf"<({tags})[^>]*>\s*<MiningSchema>.*?</MiningSchema>", text, re.S)
    fields = "".join(f'<OutputField name="p({c})" feature="probability" value="{c}"/>'
                     for c in signature.classes)
    return text[:match.end()] + f"<Output>{fields}</Output>" + text[match.end():]


def _expected(name: str, result: dict, signature) -> dict[str, np.ndarray]:
    """The reference's results as modelport outputs (NaN, or None labels, for no answer)."""
    assert "error" not in result, result.get("error")
    text = (FIXTURES / name).read_text()
    root = read_pmml(_with_probabilities(text, signature).encode())
    model = top_model(root)
    outputs = {o.get("name"): o for o in root.iter("OutputField")}
    target = next((mf.get("name") for mf in model.iter("MiningField")
                   if mf.get("usageType") in ("target", "predicted")), None)
    task = signature.task
    if task == "classification":
        proba = np.full((ROWS, len(signature.classes)), np.nan)
        for column, values in result.items():
            of = outputs.get(column)
            if of is not None and of.get("feature") == "probability":
                k = pmml._class_position(of.get("value"), signature.classes)
                proba[:, k] = [np.nan if v is None else float(v) for v in values]
        return {"proba": proba, "label": np.array(result[target], dtype=object),
                "classes": list(signature.classes)}
    if task == "regression":
        return {"value": np.array([np.nan if v is None else float(v) for v in result[target]])}
    column = next(c for c in result if c in outputs)
    ids = pmml.cluster_ids(root)
    return {"cluster": np.array([-1 if v is None else ids[str(v)] for v in result[column]])}


def _assert_same(expected: dict, got: dict, task: str, refused: np.ndarray | None = None):
    """Equal to ``TOLERANCE`` (relative for values); no answer where the reference has none."""
    refused = np.zeros(ROWS, dtype=bool) if refused is None else refused
    if task == "classification":
        want, have = expected["proba"], np.asarray(got["proba"], dtype=np.float64)
        none = np.isnan(want).any(axis=1)
        answered = ~none & ~refused
        np.testing.assert_allclose(have[answered], want[answered], rtol=0, atol=TOLERANCE)
        assert np.isnan(have[none & ~refused]).all(), "answers rows the reference does not"
        # the label is the likeliest class, as for every modelport model (a node's score
        # that names another class, or a tied vote, is not the label here)
        likeliest = np.asarray(expected["classes"], dtype=object)[np.argmax(want[answered], 1)]
        assert [str(v) for v in got["label"][answered]] == [str(v) for v in likeliest]
    elif task == "regression":
        want, have = expected["value"], np.asarray(got["value"], dtype=np.float64)
        none = np.isnan(want)
        answered = ~none & ~refused
        scale = np.maximum(1.0, np.abs(np.nan_to_num(want)))
        assert (np.abs(have - want)[answered] / scale[answered] <= TOLERANCE).all(), \
            np.abs(have - want)[answered].max()
        assert np.isnan(have[none & ~refused]).all(), "answers rows the reference does not"
    else:
        want = expected["cluster"]
        answered = (want >= 0) & ~refused
        np.testing.assert_array_equal(np.asarray(got["cluster"])[answered], want[answered])
    # a refused row is one the reference gives no answer for
    assert not (refused & _answered(expected, task)).any()


def _answered(expected: dict, task: str) -> np.ndarray:
    if task == "classification":
        return ~np.isnan(expected["proba"]).any(axis=1)
    if task == "regression":
        return ~np.isnan(expected["value"])
    return expected["cluster"] >= 0


# --- the reader ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", READ)
def test_the_form_scores_like_jpmml_evaluator(name, reference):
    data = (FIXTURES / name).read_bytes()
    signature = pmml.inspect(data)
    model_ir = to_ir(data, signature)
    rows = _rows(name)
    expected = _expected(name, reference[name], signature)
    got = evaluate(model_ir, signature.coerce(rows))
    _assert_same(expected, got, signature.task)
    # the form is plain JSON and reads back the same
    again = type(model_ir).from_dict(json.loads(json.dumps(model_ir.to_dict())))
    _assert_same(expected, evaluate(again, signature.coerce(rows)), signature.task)


@pytest.mark.parametrize("name", READ)
def test_an_imported_file_gets_a_compiled_artefact_scoring_like_jpmml(name, reference):
    rows = _rows(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        version = modelport.import_model(FIXTURES / name, "fixture", sample=rows)
    compiled = version.artefact("compiled")
    assert compiled.status == "accepted", compiled.reason
    assert compiled.parity["derived_from"] == "pmml"
    assert version.artefact("pmml").parity["runtime"] == "compiled"
    predictor = modelport.load(version.uri)
    assert predictor.runtime == "compiled"
    signature = predictor.signature
    expected = _expected(name, reference[name], signature)
    got, refused = score_rows(predictor, rows)
    _assert_same(expected, got, signature.task, refused)
    got, refused = score_rows(modelport.load(version.uri, format="compiled"), rows)
    _assert_same(expected, got, signature.task, refused)


@pytest.mark.parametrize("name", sorted(UNREAD))
def test_a_file_the_form_cannot_express_is_scored_by_pypmml(name, reference):
    rows = _rows(name)
    with pytest.raises(ConversionError, match=UNREAD[name]):
        to_ir((FIXTURES / name).read_bytes(), pmml.inspect((FIXTURES / name).read_bytes()))
    version = modelport.import_model(FIXTURES / name, "fixture", sample=rows)
    compiled = version.artefact("compiled")
    assert compiled.status == "rejected" and UNREAD[name] in compiled.reason
    assert version.artefact("pmml").parity["reader"].startswith(UNREAD[name])
    predictor = modelport.load(version.uri)
    assert predictor.runtime == "pypmml"
    expected = _expected(name, reference[name], predictor.signature)
    got, refused = score_rows(predictor, rows)
    task = predictor.signature.task
    if task == "classification" and "proba" not in got:
        # a model with no probabilities in its Output: its labels, never a neighbour's id
        # (on complete rows: pypmml gives no answer where a value is missing)
        answered = ~refused & rows.notna().all(axis=1).to_numpy()
        assert [str(v) for v in got["label"][answered]] == \
            [str(v) for v in expected["label"][answered]]
        assert set(map(str, got["label"][answered])) <= set(map(str, predictor.classes))
    else:
        _assert_same(expected, got, task, refused)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_file_pypmml_would_score_wrongly_is_refused_naming_the_element(name, reference):
    data = (FIXTURES / name).read_bytes()
    signature = pmml.inspect(data)
    unread, mistake = REFUSED[name]
    with pytest.raises(ConversionError, match=unread):
        to_ir(data, signature)
    rows = _rows(name)
    with pytest.raises(UserError) as info:
        modelport.import_model(FIXTURES / name, "refused", sample=rows)
    message = str(info.value)
    assert "\n" not in message and name in message
    assert f"reader: {unread}" in message and mistake in message
    with pytest.raises(UserError):
        modelport.load("refused")
    # the refusal is deserved: pypmml's answers differ from the reference on these rows
    expected = _expected(name, reference[name], signature)
    got = pmml.PmmlPredictor(data, signature, runtime="pypmml").run(rows)
    if signature.task == "regression":
        want, have = expected["value"], np.asarray(got["value"], dtype=np.float64)
        same = np.isclose(want, have, rtol=0, atol=TOLERANCE) | (np.isnan(want) & np.isnan(have))
        assert not same.all()
    else:
        assert [str(v) for v in got["label"]] != [str(v) for v in expected["label"]]


def test_a_file_with_its_own_records_is_proven_against_them():
    version = modelport.import_model(FIXTURES / "verified_regression.pmml", "verified")
    compiled = version.artefact("compiled")
    assert compiled.status == "accepted"
    assert compiled.parity["reference"] == "ModelVerification"
    assert compiled.parity["rows"] == 4 and compiled.parity["label_flips"] == 0
    assert compiled.parity["max_abs_diff"] < 1e-8
    assert version.artefact("pmml").parity["verification"]["rows"] == 4


def test_a_file_whose_own_records_no_evaluator_reproduces_is_refused():
    with pytest.raises(UserError) as info:
        modelport.import_model(FIXTURES / "verification_wrong.pmml", "wrong")
    message = str(info.value)
    assert "\n" not in message
    assert "verification_wrong.pmml" in message and "ModelVerification" in message
    assert "value differs on 2 of 2 records" in message
    with pytest.raises(UserError):
        modelport.load("wrong")


def test_a_file_the_form_reads_scores_without_pypmml_at_load(monkeypatch):
    """The read form is the runtime: a Java-free load when modelport can read the file."""
    data = (FIXTURES / "mining_model_chain_logit.pmml").read_bytes()
    signature = pmml.inspect(data)
    monkeypatch.setattr(pmml, "_start_gateway", _no_java)
    predictor = pmml.load(data, signature)
    assert predictor.runtime == "compiled"
    out = predictor.run({"age": [25.0, 50.0], "plan": ["basic", "premium"]})
    assert out["proba"].shape == (2, 2) and list(out["label"]) == [0, 0]


def _no_java():
    raise AssertionError("pypmml was started")


def test_the_runtime_can_be_forced_to_pypmml(monkeypatch):
    data = (FIXTURES / "mining_model_chain_logit.pmml").read_bytes()
    signature = pmml.inspect(data)
    monkeypatch.setenv(pmml.RUNTIME_ENV, "pypmml")
    predictor = pmml.load(data, signature)
    assert predictor.runtime == "pypmml"
    # the chain's probabilities are its last model's: found, and the label is a class
    rows = {"age": [25.0, 50.0], "plan": ["basic", "premium"]}
    assert predictor.has_proba
    monkeypatch.delenv(pmml.RUNTIME_ENV)
    np.testing.assert_allclose(predictor.predict_proba(rows),
                               pmml.load(data, signature).predict_proba(rows), atol=1e-12)
    assert list(predictor.predict(rows)) == [0, 0]


def test_an_unknown_runtime_is_refused_naming_the_choices(monkeypatch):
    data = (FIXTURES / "clustering.pmml").read_bytes()
    monkeypatch.setenv(pmml.RUNTIME_ENV, "fastest")
    with pytest.raises(UserError, match="auto, compiled or pypmml"):
        pmml.load(data, pmml.inspect(data))


def test_classes_written_as_doubles_or_only_in_the_model_keep_their_probabilities():
    float_tree = (FIXTURES / "tree_float_fields.pmml").read_bytes()
    assert pmml.inspect(float_tree).classes == [0, 1, 2]
    in_model = (FIXTURES / "tree_classes_in_model.pmml").read_bytes()
    signature = pmml.inspect(in_model)
    assert signature.classes == ["A", "B", "C"]
    for runtime in ("compiled", "pypmml"):
        predictor = pmml.PmmlPredictor(in_model, signature, runtime=runtime)
        assert predictor.has_proba, runtime
        np.testing.assert_allclose(predictor.predict_proba({"x": [-1.0]}), [[0.8, 0.2, 0.0]])


@pytest.mark.parametrize("fixture", ["regression_softmax.pmml", "tree_classes_in_model.pmml"])
def test_a_classifier_that_names_no_classes_is_not_read(fixture):
    """Without classes the form cannot say what its columns are: every reader refuses it
    with the reason (so the file goes to another evaluator), none crashes."""
    import dataclasses

    data = (FIXTURES / fixture).read_bytes()
    signature = dataclasses.replace(pmml.inspect(data), classes=None)
    with pytest.raises(ConversionError, match="a classifier that names no classes"):
        to_ir(data, signature)


def test_no_answer_where_pmml_gives_none():
    """A RegressionModel gives no answer for a missing number (NaN here, as the reference
    gives null); a missing category matches no predictor and adds nothing."""
    data = (FIXTURES / "regression_softmax.pmml").read_bytes()
    predictor = pmml.load(data, pmml.inspect(data))
    assert predictor.runtime == "compiled"
    assert np.isnan(predictor.run({"age": [None], "work": [3.0], "sex": ["1"]})["proba"]).all()
    assert not np.isnan(predictor.run({"age": [30.0], "work": [3.0], "sex": [None]})
                        ["proba"]).any()


def test_a_distance_over_a_field_that_may_be_missing_is_not_read():
    """Evaluators leave a missing value out of a cluster distance; the form's centroids do
    not, so a ClusteringModel is read only when its inputs are replaced where missing."""
    text = (FIXTURES / "clustering.pmml").read_text().replace(' missingValueReplacement="14.8"',
                                                              "")
    data = text.encode()
    with pytest.raises(ConversionError, match="ClusteringModel over a field that may be "
                                              "missing"):
        to_ir(data, pmml.inspect(data))


def test_pmml_evaluator_stays_out_of_the_default_install():
    """JPMML-Evaluator (AGPL-3.0) is a test dependency: never in the pmml extra."""
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    pmml_extra = re.search(r"^pmml = \[(.*?)\]", text, re.M).group(1)
    assert "jpmml" not in pmml_extra
    dev = re.search(r"^dev = \[(.*?)^\]", text, re.M | re.S).group(1)
    assert "jpmml-evaluator" in dev
    sources = (Path(__file__).parents[1] / "src").rglob("*.py")
    assert not any("import jpmml_evaluator" in p.read_text() for p in sources)


# --- exports of what was read ------------------------------------------------------------------


_RUN_PYTHON = r"""
import importlib.util, json, math, sys
spec = importlib.util.spec_from_file_location("exported", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
out = []
for row in json.load(sys.stdin):
    score = module.score(row)
    out.append(None if isinstance(score, float) and math.isnan(score) else score)
json.dump(out, sys.stdout)
"""


@pytest.mark.parametrize("name", READ)
def test_a_file_read_into_the_form_exports_sql_and_python_that_score_like_jpmml(
        name, reference, postgres_url, tmp_path):
    """What was read gets the exports modelport's own models get, each proven at export
    (SQLite always, PostgreSQL too with --check-url), and each scores the fixture's rows as
    the reference does, rows it gives no answer for included."""
    import sqlite3

    from modelport.compile import export
    from modelport.compile.sql import result_kind

    rows = _rows(name)
    # PostgreSQL refuses a float8 product that underflows ("value out of range"), which a
    # subnormal input such as 5e-324 times a coefficient does (docs/compile.md): those rows
    # are scored in SQLite and Python, not in PostgreSQL
    tiny = rows.apply(lambda c: c.map(lambda v: isinstance(v, float) and 0 < abs(v) < 1e-300))
    expected = _expected(name, reference[name], pmml.inspect((FIXTURES / name).read_bytes()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        version = modelport.import_model(FIXTURES / name, "fixture", sample=rows[~tiny.any(axis=1)])
    signature = modelport.load(version.uri).signature
    export(version.uri, "sql", tmp_path / "pg", dialect="postgresql", check_url=postgres_url)
    assert "(run in SQLite and in PostgreSQL" in (tmp_path / "pg" / "README.md").read_text()
    export(version.uri, "sql", tmp_path / "sqlite", dialect="sqlite")
    export(version.uri, "python", tmp_path / "py")

    from modelport.compile.proof import proven_ir
    from modelport.registry import Registry

    kind = result_kind(proven_ir(Registry(), version)[0])
    expr = (tmp_path / "sqlite" / "fixture_score.expr.sql").read_text()
    conn = sqlite3.connect(":memory:")
    q = [f'"{c}"' for c in rows.columns]  # plain fixture names
    conn.execute(f"CREATE TABLE t (row_id INTEGER PRIMARY KEY, {', '.join(q)})")
    records = rows.astype(object).where(rows.notna(), None).values.tolist()
    conn.executemany(f"INSERT INTO t VALUES (?, {', '.join('?' * len(q))})",
                     [(i, *r) for i, r in enumerate(records)])
    got_sql = [r[0] for r in conn.execute(f"SELECT {expr} FROM t ORDER BY row_id")]
    python = next((tmp_path / "py").glob("*.py"))
    done = subprocess.run([sys.executable, "-I", "-c", _RUN_PYTHON, str(python)],
                          input=json.dumps([dict(zip(rows.columns, r, strict=True))
                                            for r in records]),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got_py = json.loads(done.stdout)
    task = signature.task
    if kind == "probability":
        want = expected["proba"][:, -1]
        for got in (got_sql, [None if p is None else p[-1] for p in got_py]):
            have = np.array([np.nan if g is None else g for g in got], dtype=np.float64)
            assert np.array_equal(np.isnan(have), np.isnan(want))
            np.testing.assert_allclose(have[~np.isnan(want)], want[~np.isnan(want)],
                                       rtol=0, atol=TOLERANCE)
    elif kind == "value":
        _assert_same(expected, {"value": np.array([np.nan if g is None else g
                                                   for g in got_sql], dtype=np.float64)}, task)
        _assert_same(expected, {"value": np.array([np.nan if g is None else g
                                                   for g in got_py], dtype=np.float64)}, task)
    else:
        answered = _answered(expected, task)
        if kind == "cluster":
            want = expected["cluster"]
        else:  # the likeliest class, as modelport labels every classifier
            want = np.asarray(expected["classes"], dtype=object)[
                np.argmax(np.nan_to_num(expected["proba"], nan=-1.0), axis=1)]
        assert [str(g) for g in np.asarray(got_sql, dtype=object)[answered]] == \
            [str(w) for w in np.asarray(want, dtype=object)[answered]]
