"""Reason codes of tree models read from PMML, weighed by the node counts the files carry.

The reader keeps a PMML tree's ``recordCount`` as the form's node covers when every Node
has one and the counts add up (``modelport.compile.from_pmml``). Every corpus case whose
model reads into a tree ensemble with covers (found by reading the files) is explained on
the corpus's own rows: the contributions add up to the form's raw score, the raw score
through the output transform is what JPMML-Evaluator gives (the corpus's expected outputs),
and each column's contribution is shap's path-dependent TreeSHAP run on the same tables;
imported through the registry, the version explains the same way. Trees written here cover
what the corpus does not: multi-way splits and missing-value tests the reader turns into
binary splits, class scores, segmentations, and counts that are missing, do not add up, or
would be shared between copies of a node, which leave a tree without covers so its reason
codes are refused, with the reason. The corpus is read where it lies (``SOURCES.md``).
"""

from __future__ import annotations

import csv
import functools
import gzip
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.compile import ModelIR, ir
from modelport.compile.explain import contributions
from modelport.compile.from_pmml import read_pmml, to_ir
from modelport.compile.numpy_eval import feature_matrix, outputs, raw_scores
from modelport.errors import ConversionError
from modelport.formats import pmml
from modelport.registry import Registry
from modelport.scoring.reasons import explaining

from conftest import need_module, unavailable

CORPUS = Path(os.environ.get("MODELPORT_CORPUS")
              or Path(__file__).resolve().parents[2] / "shared" / "corpus") / "pmml"
#: corpus cases whose trees must get covers: JPMML-R's rpart tree counts every node and
#: stops at a node on a missing value; losing it fails here
MUST_EXPLAIN = {"R-rpart-reg-pima"}
#: corpus cases whose trees read but must stay without covers: JPMML-SkLearn 1.9 counts
#: leaves only (and writes class proportions there), gradient boosting counts nothing,
#: KNIME's tree counts every node but gives no answer for a category no child lists
MUST_REFUSE = {"DecisionTreeIrisNA", "DecisionTreeAuditNA", "GradientBoostingVisit",
               "KNIME-audit-tree"}
#: the contributions' sum against the raw score, and the outputs against JPMML's
EXACT = 1e-9
#: against shap, as tests/test_explain.py
TOLERANCE = 1e-6
NO_COVERS = r"tree \d+ of the ensemble has no node covers"


# --- the corpus ------------------------------------------------------------------------------


def _cases() -> dict[str, dict]:
    index = CORPUS / "cases.tsv"
    if not index.is_file():
        return {}
    with index.open(newline="") as f:
        return {row["# id"]: row for row in csv.DictReader(f, delimiter="\t")}


CASES = _cases()


@functools.cache
def _document(case: str) -> bytes:
    return gzip.decompress((CORPUS / CASES[case]["model"]).read_bytes())


@functools.cache
def _form(case: str) -> ModelIR | None:
    """The read form of a corpus case's file, None when the reader does not read it."""
    data = _document(case)
    try:
        return to_ir(data, pmml.inspect(data))
    except ConversionError:
        return None


def _tree_cases() -> list[str]:
    """Corpus cases whose model reads into a tree ensemble."""
    return [c for c in CASES if b"<TreeModel" in _document(c)
            and isinstance(getattr(_form(c), "model", None), ir.TreeEnsemble)]


def _covered(form: ModelIR) -> bool:
    return all(t.cover is not None for t in form.model.trees)


def _params(cases: list[str]) -> list:
    if not CASES:
        # test data that lives outside the project: its absence is no fault of the code
        return [pytest.param(None, id="no-corpus", marks=pytest.mark.skip(
            reason=f"no PMML corpus at {CORPUS}; set MODELPORT_CORPUS to the folder holding "
                   "pmml/cases.tsv to run it"))]
    return cases


EXPLAINED = [c for c in _tree_cases() if _covered(_form(c))] if CASES else []


def _rows(case: str) -> pd.DataFrame:
    """A case's input rows, categories read as written (as tests/test_pmml_corpus.py)."""
    categorical = pmml.inspect(_document(case)).categorical
    return pd.read_csv(CORPUS / CASES[case]["input"], na_values=["N/A", "NA"],
                       dtype={c: str for c in categorical})


# --- shared checks ---------------------------------------------------------------------------


def _columns(form: ModelIR) -> np.ndarray:
    """(features, input columns): 1 where a model feature was made from the column,
    following each step's source (what the contributions are summed back over)."""
    source = {s.name: s.source for s in form.steps}
    names = list(form.signature.names)
    mapping = np.zeros((len(form.model.features), len(names)))
    for j, f in enumerate(form.model.features):
        while f in source:
            f = source[f]
        mapping[j, names.index(f)] = 1.0
    return mapping


def _explain(form: ModelIR, frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(base, contributions (rows, columns, outputs), raw scores)``, after checking that
    the contributions add up to the raw score on every row."""
    base, contrib = contributions(form, frame)
    if contrib.ndim == 2:
        contrib = contrib[:, :, None]
    raw = raw_scores(form.model, feature_matrix(form, frame))
    assert np.isfinite(raw).all() and np.isfinite(contrib).all()
    total = base + contrib.sum(axis=1)
    assert np.abs(total - raw).max() <= EXACT * max(1.0, np.abs(raw).max())
    return base, contrib, raw


def _shap_tables(node: ir.TreeEnsemble) -> dict:
    """The ensemble as shap's custom tree model: the same splits, leaf values and covers."""
    scale = 1.0 / len(node.trees) if node.combine == "mean" else 1.0
    trees = []
    for tree in node.trees:
        feature = np.asarray(tree.feature)
        leaf = feature < 0
        n = len(feature)
        thresholds = np.zeros(n)
        for i in np.nonzero(~leaf)[0]:
            op, t = node.split(tree.threshold[i])
            # shap sends ``x <= t`` left: ``x < t`` is ``x <=`` the double below t
            thresholds[i] = t if op == "<=" else np.nextafter(t, -np.inf)
        values = np.zeros((n, node.n_outputs))
        width = len(tree.value[0])
        values[:, tree.output:tree.output + width] = np.asarray(tree.value) * scale
        left, right = np.asarray(tree.left), np.asarray(tree.right)
        cover = np.asarray(tree.cover, dtype=np.float64)
        # a leaf no training record reached (where a row with a missing value stops) has a
        # share of 0, which the contributions take exactly; shap refuses a weight of 0
        # (its unwinding divides by it), so it gets one a billionth of the root's, which
        # moves shap's values by about as much
        cover = np.where(cover > 0.0, cover, 1e-9 * cover[0])
        trees.append({
            "children_left": np.where(leaf, -1, left),
            "children_right": np.where(leaf, -1, right),
            "children_default": np.where(leaf, -1, np.where(tree.missing_left, left, right)),
            "features": np.where(leaf, -2, feature),
            "thresholds": thresholds,
            "values": values,
            "node_sample_weight": cover,
        })
    return {"trees": trees}


def _check_shap(form: ModelIR, frame) -> None:
    shap = need_module("shap", "dev")
    base, contrib, _ = _explain(form, frame)
    node = form.model
    reference = shap.TreeExplainer(_shap_tables(node), feature_perturbation="tree_path_dependent")
    X = feature_matrix(form, frame)
    phi = reference.shap_values(X)
    phi = np.stack(phi, axis=-1) if isinstance(phi, list) else np.asarray(phi)
    if phi.ndim == 2:
        phi = phi[:, :, None]
    by_column = np.einsum("rfo,fc->rco", phi, _columns(form))
    assert np.abs(contrib - by_column).max() <= TOLERANCE
    expected = np.ravel(reference.expected_value) + np.asarray(node.base)
    assert np.abs(base - expected).max() <= TOLERANCE


def _categorical_splits(node: ir.TreeEnsemble) -> bool:
    return any(c is not None for t in node.trees for c in (t.categories or ()))


def _without_counts(data: bytes) -> bytes:
    """The document with every Node's recordCount taken off (ScoreDistribution counts,
    which give class probabilities, stay)."""
    return re.sub(rb'(<Node\b[^>]*?)\s+recordCount="[^"]*"', rb"\1", data)


def _same_form_but_covers(data: bytes) -> None:
    """Counts change nothing but the covers: the form read without them is the same."""
    signature = pmml.inspect(data)
    with_counts = to_ir(data, signature).to_dict()
    for tree in with_counts["model"]["trees"]:
        tree.pop("cover", None)
    assert with_counts == to_ir(_without_counts(data), signature).to_dict()


# --- corpus files ----------------------------------------------------------------------------


def test_the_corpus_trees_that_count_their_nodes_get_covers():
    if not CASES:
        pytest.skip(f"no PMML corpus at {CORPUS}")
    assert MUST_EXPLAIN <= set(EXPLAINED), EXPLAINED
    for case in EXPLAINED:
        # covers only where every Node of every TreeModel in the file has a count
        models = list(read_pmml(_document(case)).iter("TreeModel"))
        assert all(n.get("recordCount") is not None for m in models for n in m.iter("Node"))


@pytest.mark.parametrize("case", _params(EXPLAINED))
def test_contributions_add_up_to_the_score_jpmml_gives(case):
    form = _form(case)
    frame = form.signature.coerce(_rows(case))
    base, contrib, raw = _explain(form, frame)
    got = outputs(form.output, base + contrib.sum(axis=1))
    expected = pd.read_csv(CORPUS / CASES[case]["expected"], na_values=["N/A", "NA"])
    assert len(expected) == len(frame)
    if form.signature.task == "regression":
        want = expected["value"].to_numpy(dtype=np.float64)
        have = got["value"]
    else:
        probs = [c for c in expected.columns if c.startswith("p:")]
        order = [pmml._class_position(c[2:], form.signature.classes) for c in probs]
        want = expected[probs].to_numpy(dtype=np.float64)
        have = got["proba"][:, order]
    # a tree with covers always answers (a leaf without an answer would leave none)
    assert not np.isnan(want).any()
    assert (np.abs(want - have) <= EXACT * np.maximum(1.0, np.abs(want))).all()


@pytest.mark.parametrize("case", _params(EXPLAINED))
def test_contributions_equal_shap_on_the_same_tables(case):
    form = _form(case)
    if _categorical_splits(form.model):
        # shap's custom trees split numbers only: a split on a set of categories (a KNIME
        # or R tree over a factor) has no form there
        pytest.skip(f"{case} splits on category sets, which shap's custom trees cannot")
    _check_shap(form, form.signature.coerce(_rows(case)))


@pytest.mark.parametrize("case", _params(EXPLAINED))
def test_covers_are_the_files_counts(case):
    """The leaves weigh what the file's leaves count, the roots what its roots do."""
    form = _form(case)
    models = list(read_pmml(_document(case)).iter("TreeModel"))
    counted = sorted(float(n.get("recordCount")) for m in models for n in m.iter("Node")
                     if n.find("Node") is None and float(n.get("recordCount")) > 0)
    leaves = sorted(c for t in form.model.trees
                    for c, f in zip(t.cover, t.feature, strict=True) if f < 0 and c > 0)
    assert leaves == counted
    roots = sum(float(m.find("Node").get("recordCount")) for m in models)
    assert abs(sum(t.cover[0] for t in form.model.trees) - roots) <= 1e-6 * roots
    _same_form_but_covers(_document(case))


def test_corpus_trees_without_usable_counts_are_refused_with_the_reason():
    if not CASES:
        pytest.skip(f"no PMML corpus at {CORPUS}")
    refused = []
    for case in _tree_cases():
        form = _form(case)
        if _covered(form):
            continue
        with pytest.raises(ConversionError, match=NO_COVERS):
            contributions(form, form.signature.coerce(_rows(case).head(5)))
        refused.append(case)
    assert MUST_REFUSE <= set(refused), refused
    for case in _tree_cases():
        models = read_pmml(_document(case)).iter("TreeModel")
        if any(n.get("recordCount") is None for m in models for n in m.iter("Node")):
            assert case in refused, case


@pytest.mark.parametrize("case", _params(EXPLAINED))
def test_a_registered_import_explains_through_its_compiled_artefact(case, tmp_path):
    need_module("pypmml", "pmml")
    if not pmml.available():
        unavailable("java is not on PATH (pypmml runs PMML in a JVM)")
    path = tmp_path / f"{case}.pmml"
    path.write_bytes(_document(case))
    rows = _rows(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        version = modelport.import_model(path, "corpus", sample=rows)
    # the version's explaining predictor, as every serving surface finds it
    predictor = explaining(modelport.load(version.uri), Registry(), version)
    sig = predictor.signature
    reasons = predictor.explain(rows, top=len(sig.names))
    form = _form(case)
    base, contrib, _ = _explain(form, sig.coerce(rows))
    k = contrib.shape[2] - 1  # the only raw score, or the last class's
    if "output" in reasons.columns:
        reasons = reasons[reasons["output"] == sig.classes[k]]
    table = reasons.pivot(index="row", columns="column", values="contribution")[sig.names]
    assert np.abs(table.to_numpy() - contrib[:, :, k]).max() <= EXACT
    assert np.abs(reasons["base"].to_numpy() - base[k]).max() <= EXACT


# --- trees written here ----------------------------------------------------------------------


def _document_of(model: str, target: str = "y", classes: tuple = ()) -> bytes:
    values = "".join(f'<Value value="{c}"/>' for c in classes)
    target_field = (f'<DataField name="{target}" optype="categorical" dataType="string">'
                    f'{values}</DataField>' if classes else
                    f'<DataField name="{target}" optype="continuous" dataType="double"/>')
    return f"""<?xml version="1.0"?>
<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4">
  <Header/>
  <DataDictionary>
    <DataField name="x" optype="continuous" dataType="double"/>
    <DataField name="z" optype="continuous" dataType="double"/>
    <DataField name="w" optype="continuous" dataType="double"/>
    {target_field}
  </DataDictionary>
  {model}
</PMML>""".encode()


def _schema(target: str = "y") -> str:
    return (f'<MiningSchema><MiningField name="x"/><MiningField name="z"/>'
            f'<MiningField name="{target}" usageType="target"/></MiningSchema>')


#: a regression tree the reader restructures: three-way splits on x and on z become chains
#: of binary splits, and a missing value (which stops at the node: lastPrediction) a split
#: of its own
REGRESSION = f"""
<TreeModel functionName="regression" missingValueStrategy="lastPrediction"
           noTrueChildStrategy="returnLastPrediction">
  {_schema()}
  <Node score="2" recordCount="100"><True/>
    <Node score="1" recordCount="30"><SimplePredicate field="x" operator="lessThan" value="1"/>
      <Node score="0.5" recordCount="12">
        <SimplePredicate field="z" operator="lessOrEqual" value="0"/></Node>
      <Node score="1.5" recordCount="18">
        <SimplePredicate field="z" operator="greaterThan" value="0"/></Node>
    </Node>
    <Node score="3" recordCount="45"><SimplePredicate field="x" operator="lessThan" value="2"/>
    </Node>
    <Node score="4" recordCount="25"><True/>
      <Node score="3.5" recordCount="5">
        <SimplePredicate field="z" operator="lessThan" value="-1"/></Node>
      <Node score="4.5" recordCount="15">
        <SimplePredicate field="z" operator="lessThan" value="1"/></Node>
      <Node score="6" recordCount="5"><True/></Node>
    </Node>
  </Node>
</TreeModel>"""


def _classifier(model_name: str = "", counts: bool = True) -> str:
    """A three-class tree: a three-way split on x, a missing value going to each node's
    first child (defaultChild), probabilities from ScoreDistribution counts."""
    def node(ident, count, predicate, dist, children="", default=None):
        counted = f' recordCount="{count}"' if counts else ""
        default = f' defaultChild="{default}"' if default else ""
        scores = "".join(f'<ScoreDistribution value="{c}" recordCount="{n}"/>'
                         for c, n in zip("abc", dist, strict=True))
        return f'<Node id="{ident}"{counted}{default}>{predicate}{scores}{children}</Node>'

    x_le = '<SimplePredicate field="x" operator="lessOrEqual" value="{}"/>'.format
    z_le = '<SimplePredicate field="z" operator="lessOrEqual" value="{}"/>'.format
    z_gt = '<SimplePredicate field="z" operator="greaterThan" value="{}"/>'.format
    first = node(1, 40, x_le(0), (30, 6, 4),
                 node(11, 25, z_le(0.5), (22, 2, 1)) + node(12, 15, z_gt(0.5), (8, 4, 3)),
                 default=11)
    second = node(2, 35, x_le(1.5), (5, 20, 10))
    third = node(3, 15, "<True/>", (1, 4, 10),
                 node(31, 9, z_le(-0.5), (1, 1, 7)) + node(32, 6, z_gt(-0.5), (0, 3, 3)),
                 default=31)
    return f"""
<TreeModel modelName="{model_name}" functionName="classification"
           missingValueStrategy="defaultChild" noTrueChildStrategy="returnLastPrediction">
  {_schema("k")}
  {node(0, 90, "<True/>", (36, 30, 24), first + second + third, default=1)}
</TreeModel>"""


def _segments(counted: tuple[bool, ...]) -> str:
    segments = "".join(f'<Segment id="{i}"><True/>{_classifier(f"t{i}", c)}</Segment>'
                       for i, c in enumerate(counted))
    return f"""
<MiningModel functionName="classification">
  {_schema("k")}
  <Segmentation multipleModelMethod="average">{segments}</Segmentation>
</MiningModel>"""


def _select_first(predicate: str) -> str:
    """Two trees: the first for rows where ``predicate`` (on w, which no tree splits on)
    holds, the second for the others."""
    return f"""
<MiningModel functionName="classification">
  <MiningSchema><MiningField name="x"/><MiningField name="z"/><MiningField name="w"/>
    <MiningField name="k" usageType="target"/></MiningSchema>
  <Segmentation multipleModelMethod="selectFirst">
    <Segment id="1">{predicate}{_classifier("t0")}</Segment>
    <Segment id="2"><True/>{_classifier("t1")}</Segment>
  </Segmentation>
</MiningModel>"""


def _unseen(n: int = 300) -> pd.DataFrame:
    """Rows around every split point, about one value in seven missing."""
    rng = np.random.default_rng(11)
    frame = pd.DataFrame({"x": rng.uniform(-1.0, 3.0, n), "z": rng.uniform(-2.0, 2.0, n),
                          "w": rng.uniform(0.0, 1.0, n)})
    frame.loc[:20, "x"] = [-0.5, 0.0, 1.0, 1.5, 2.0, 2.5] * 3 + [0.0, 1.0, 2.0]
    frame.loc[:20, "z"] = [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0] * 3
    return frame.mask(rng.random(frame.shape) < 1 / 7)


WRITTEN = {"regression": _document_of(REGRESSION),
           "classification": _document_of(_classifier(), "k", tuple("abc")),
           "average of two trees": _document_of(_segments((True, True)), "k", tuple("abc")),
           "first segment that holds": _document_of(_select_first(
               '<SimplePredicate field="w" operator="lessOrEqual" value="0.5"/>'), "k",
               tuple("abc"))}


@pytest.mark.parametrize("name", list(WRITTEN))
def test_a_written_tree_explains_as_shap_does(name):
    data = WRITTEN[name]
    form = to_ir(data, pmml.inspect(data))
    assert _covered(form)
    for tree in form.model.trees:
        split = np.asarray(tree.feature) >= 0
        cover = np.asarray(tree.cover)
        # every split weighs what its two sides do
        assert (cover[split] == cover[np.asarray(tree.left)[split]]
                + cover[np.asarray(tree.right)[split]]).all()
    _check_shap(form, form.signature.coerce(_unseen()))
    _same_form_but_covers(data)


def test_made_up_splits_weigh_the_nodes_they_stand_for():
    form = to_ir(WRITTEN["regression"], pmml.inspect(WRITTEN["regression"]))
    tree = form.model.trees[0]
    split = np.asarray(tree.feature) >= 0
    cover = np.asarray(tree.cover)
    assert cover[0] == 100.0
    # the three-way splits' second links (45 + 25 under the root, 15 + 5 under the third
    # node) and the missing-value splits (the node's children, no record stopping at it)
    assert {70.0, 20.0, 100.0, 30.0, 25.0} <= set(cover[split])
    # leaves: the counted nodes, and nothing where a row stops at a node
    assert sorted(cover[~split][cover[~split] > 0]) == [5.0, 5.0, 12.0, 15.0, 18.0, 45.0]


#: changes to the written trees that leave them without covers, and why
UNUSABLE = {
    # one record fewer in a child than its parent counts
    "a count that does not add up": ("regression",
                                     lambda d: d.replace(b'"45"', b'"44"', 1)),
    "an internal node without a count": ("regression",
                                         lambda d: d.replace(b' recordCount="25"', b"", 1)),
    "a count that is not a number": ("regression",
                                     lambda d: d.replace(b'"12"', b'"twelve"', 1)),
    "a negative count": ("regression",
                         lambda d: d.replace(b'"12"', b'"-12"', 1).replace(b'"18"', b'"42"', 1)),
    # x < 1 or z < -1.5: the first child is built twice (x below 1, and x not below 1 with
    # z below -1.5), and its 30 records are shared between the copies in proportions the
    # file does not give
    "a node built twice": ("regression", lambda d: d.replace(
        b'<SimplePredicate field="x" operator="lessThan" value="1"/>',
        b'<CompoundPredicate booleanOperator="or">'
        b'<SimplePredicate field="x" operator="lessThan" value="1"/>'
        b'<SimplePredicate field="z" operator="lessThan" value="-1.5"/></CompoundPredicate>',
        1)),
    # rows with x in [2, 2.5) get no answer: a leaf without a value, which a cover-weighted
    # average over the leaves cannot take
    "a leaf with no answer": ("regression", lambda d: d.replace(
        b'returnLastPrediction', b'returnNullPrediction').replace(
        b'<Node score="4" recordCount="25"><True/>',
        b'<Node score="4" recordCount="25">'
        b'<SimplePredicate field="x" operator="greaterOrEqual" value="2.5"/>')),
    # w at most 0.1 and w above 0.5 both fall to the second segment: its tree is built
    # twice, and its 90 records would be shared between the copies
    "a segment built twice": ("first segment that holds", lambda d: d.replace(
        b'<SimplePredicate field="w" operator="lessOrEqual" value="0.5"/>',
        b'<CompoundPredicate booleanOperator="and">'
        b'<SimplePredicate field="w" operator="lessOrEqual" value="0.5"/>'
        b'<SimplePredicate field="w" operator="greaterThan" value="0.1"/></CompoundPredicate>')),
    # a missing x goes to the second child, which present values also reach: two copies
    "a default child after the first": ("classification", lambda d: d.replace(
        b'<Node id="0" recordCount="90" defaultChild="1">',
        b'<Node id="0" recordCount="90" defaultChild="2">')),
}


@pytest.mark.parametrize("name", list(UNUSABLE))
def test_counts_that_cannot_weigh_the_tree_leave_it_without_covers(name):
    base, change = UNUSABLE[name]
    data = change(WRITTEN[base])
    assert data != WRITTEN[base]
    form = to_ir(data, pmml.inspect(data))
    assert all(t.cover is None for t in form.model.trees)
    with pytest.raises(ConversionError, match=NO_COVERS):
        contributions(form, form.signature.coerce(_unseen().head(5)))


def test_counts_rounded_as_written_still_add_up():
    # the children add up to the parent within one part in a million: a writer printing
    # weighted counts to seven significant digits
    data = WRITTEN["regression"].replace(b'"30"', b'"29.99999"', 1).replace(
        b'"12"', b'"11.99999"', 1).replace(b'"45"', b'"45.00001"', 1)
    form = to_ir(data, pmml.inspect(data))
    assert _covered(form)
    _check_shap(form, form.signature.coerce(_unseen()))


def test_a_segment_without_counts_is_the_tree_refused():
    data = _document_of(_segments((True, False)), "k", tuple("abc"))
    form = to_ir(data, pmml.inspect(data))
    assert [t.cover is not None for t in form.model.trees] == [True, False]
    with pytest.raises(ConversionError, match="tree 1 of the ensemble has no node covers"):
        contributions(form, form.signature.coerce(_unseen().head(5)))
