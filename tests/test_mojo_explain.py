"""Reason codes of H2O GBM and DRF MOJOs are H2O's own TreeSHAP contributions.

H2O writes beside each tree of a MOJO an auxiliary entry (``trees/t<class>_<group>_aux.bin``)
holding, for every split, the training weight that went each way; the reader keeps it as
the tree's node covers, which path-dependent TreeSHAP needs. The reference is h2o-genmodel
itself: ``EasyPredictModelWrapper`` with contributions enabled (``predictContributions``),
run by ``fixtures/mojo/Contributions.java`` over the scoring sample (customers the models
never saw, with missing values and unseen levels) and probe rows on both sides of every
split point. Its contributions are per H2O feature, which for these models is one per input
column (a categorical column is one feature), then ``BiasTerm``.

h2o-genmodel computes TreeSHAP in float32 and adds the trees' contributions in float32;
measured over these rows its columns differ from modelport's by at most 4.4 float32 epsilons
(2**-24) of the row's size (``|bias| + sum |contribution|``; 3.0e-5 absolute for the
regression GBM, whose scores are near 60, 8.9e-7 for the binomial GBM), and its own
contributions miss its own raw score by up to 5.5 epsilons. The tolerance is 16 epsilons of
the row's size.

Two things h2o-genmodel does are not followed, and the comparison undoes them:

- a forest's root record counts every training row while the splits below it count the rows
  the tree was grown on (in-bag), so H2O's weights do not add up and its ``BiasTerm`` is not
  the model's expected score (about 0.62 of it for the regression forest); modelport takes
  each split's weight to be its children's, and the reference runs on a copy of the MOJO
  whose records add up the same way (a copy in which a GBM's records are unchanged);
- a binomial forest's contributions are those of the first class's probability, negated,
  with ``1 / (used features + 1)`` added to every one that is not zero, so that they add up
  to the second class's; modelport explains the second class's probability with the 1 in
  its base.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.compile.explain import contributions
from modelport.compile.from_mojo import read_mojo, to_ir
from modelport.compile.numpy_eval import feature_matrix, raw_scores
from modelport.errors import ConversionError
from modelport.formats import h2o_jvm, mojo
from modelport.registry import Registry
from modelport.scoring.reasons import explaining
from test_mojo import FIXTURES, JAR, data, need_java, sample

from conftest import unavailable

#: tree models H2O explains (it refuses multinomial models)
EXPLAINED = ("gbm_binomial", "gbm_regression", "gbm_poisson", "drf_binomial", "drf_regression")
MULTINOMIAL = ("gbm_multinomial", "drf_multinomial")
TRAIN_ROWS = 1500  # make_fixtures.py
EPS32 = 2.0 ** -24
TOL = 16 * EPS32
MODELPORT = str(Path(sys.executable).with_name("modelport"))
# an auxiliary record: node id, reserved, weight left/right, prediction left/right, squared
# error left/right, left and right child ids (h2o-genmodel's SharedTreeMojoModel.AuxInfo)
AUX = struct.Struct("<iiffffffii")


@pytest.fixture(scope="session")
def h2o(tmp_path_factory):
    """``reference(blob, frame, signature)``: h2o-genmodel's contributions for ``frame``
    (coerced rows) from MOJO ``blob`` with its records made to add up, as a (rows,
    features + 1) array."""
    need_java()
    javac = shutil.which("javac")
    if javac is None:
        unavailable("javac is not on PATH: H2O's contributions are read by a small Java "
                    "program compiled against h2o-genmodel (apt-get install openjdk-17-jdk-headless)")
    classes = tmp_path_factory.mktemp("contributions")
    done = subprocess.run([javac, "-cp", str(JAR), "-d", str(classes),
                           str(FIXTURES / "Contributions.java")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    def reference(blob: bytes, frame, signature) -> np.ndarray:
        work = tmp_path_factory.mktemp("model")
        (work / "model.zip").write_bytes(added_up(blob))
        h2o_jvm.write_csv(work / "rows.csv", frame, signature)
        done = subprocess.run(
            ["java", "-cp", f"{JAR}:{classes}", "Contributions", str(work / "model.zip"),
             str(work / "rows.csv"), str(work / "out.csv")],
            capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        out = pd.read_csv(work / "out.csv")
        assert list(out.columns) == [*signature.names, "BiasTerm"]
        return out.to_numpy(dtype=np.float64)

    return reference


def added_up(blob: bytes) -> bytes:
    """The MOJO with each split's weights made its children's totals."""
    src = zipfile.ZipFile(io.BytesIO(blob))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            entry = src.read(name)
            dst.writestr(name, _added_up(entry) if name.endswith("_aux.bin") else entry)
    return out.getvalue()


def _added_up(aux: bytes) -> bytes:
    records = {r[0]: list(r) for r in AUX.iter_unpack(aux)}

    def total(nid: int) -> float:
        r = records[nid]
        for side, child in ((2, r[8]), (3, r[9])):
            if child in records:
                r[side] = total(child)
        return r[2] + r[3]

    if records:
        total(0)
    return b"".join(AUX.pack(*r) for r in records.values())


def used_features(name: str) -> int:
    """How many features H2O counts as used: those of non-zero variable importance."""
    details = json.loads(zipfile.ZipFile(FIXTURES / f"{name}.zip")
                         .read("experimental/modelDetails.json"))
    importances = details["output"]["variable_importances"]["data"][1]
    return sum(1 for v in importances if v != 0)


def as_modelport(name: str, ref: np.ndarray) -> np.ndarray:
    """H2O's contributions and bias in modelport's terms (see the module docstring)."""
    if name != "drf_binomial":
        return ref
    share = float(np.float32(1.0) / np.float32(used_features(name) + 1))
    out = np.where(ref != 0, ref - share, 0.0)
    out[:, -1] += 1.0
    return out


def ours(model_ir, frame) -> tuple[float, np.ndarray, np.ndarray]:
    """(base, contributions, raw score) of the raw score modelport explains."""
    base, contrib = contributions(model_ir, frame)
    raw = raw_scores(model_ir.model, feature_matrix(model_ir, frame))
    if contrib.ndim == 3:  # a forest's two class probabilities: the second's
        return base[1], contrib[:, :, 1], raw[:, 1]
    return base[0], contrib, raw[:, 0]


def assert_close_to_h2o(base, contrib, want: np.ndarray, what: str) -> float:
    """Columns and base within TOL of the row's size; returns the largest difference."""
    size = np.abs(want).sum(axis=1)
    diff = np.abs(np.column_stack([contrib, np.full(len(contrib), base)]) - want)
    worst = (diff.max(axis=1) / size).max()
    assert worst <= TOL, f"{what}: {worst / EPS32:.2f} float32 epsilons of the row's size"
    return float(diff.max())


def rows_of(name: str):
    sig = mojo.inspect(data(name))
    model_ir = to_ir(data(name), sig)
    frame = sig.coerce(mojo.proof_rows(sig, model_ir, sample()))
    return sig, model_ir, frame


# --- the covers --------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXPLAINED + MULTINOMIAL)
def test_every_tree_gets_covers_that_add_up_from_its_aux_entry(name):
    trees = to_ir(data(name)).model.trees
    for tree in trees:
        cover = tree.cover
        assert cover is not None and len(cover) == len(tree.feature)
        for i, f in enumerate(tree.feature):
            if f >= 0:
                assert cover[i] == cover[tree.left[i]] + cover[tree.right[i]]
                assert cover[tree.left[i]] > 0 and cover[tree.right[i]] > 0
    if name == "gbm_binomial":
        # root, its left child (H2O's node 1), that one's left child (node 3): the weights
        # their parents' records give them, 1500 = 726 + 774 and 726 = 430 + 296
        assert trees[0].cover[:3] == [1500.0, 726.0, 430.0]
    roots = {tree.cover[0] for tree in trees}
    if name.startswith("gbm"):
        assert roots == {TRAIN_ROWS}  # every row reaches every tree's root
    else:
        assert max(roots) < TRAIN_ROWS  # the in-bag rows of each tree


def test_forest_root_records_count_every_row_and_gbm_records_add_up():
    for name in ("drf_binomial", "drf_regression", "gbm_binomial", "gbm_regression"):
        files = read_mojo(data(name)).files
        aux = {n: b for n, b in files.items() if n.endswith("_aux.bin")}
        assert len(aux) == sum(1 for n in files if n.endswith(".bin")) // 2
        for entry in aux.values():
            root = next(r for r in AUX.iter_unpack(entry) if r[0] == 0)
            assert root[2] + root[3] == TRAIN_ROWS
            if name.startswith("gbm"):
                assert _added_up(entry) == entry, name
            else:
                assert _added_up(entry) != entry, name


# --- against h2o-genmodel ----------------------------------------------------------------


@pytest.mark.parametrize("name", EXPLAINED)
def test_contributions_are_h2o_genmodels(name, h2o):
    sig, model_ir, frame = rows_of(name)
    base, contrib, raw = ours(model_ir, frame)
    assert contrib.shape == (len(frame), len(sig.names))
    want = as_modelport(name, h2o(data(name), frame, sig))
    biggest = assert_close_to_h2o(base, contrib, want, name)
    print(f"{name}: largest difference from h2o-genmodel {biggest:.3g}")
    # base plus the contributions is the raw score, to rounding
    np.testing.assert_allclose(base + contrib.sum(axis=1), raw, rtol=1e-12, atol=1e-12)
    # every column a tree splits on explains some row, and no other column does
    source = {step.name: step.source for step in model_ir.steps}
    node = model_ir.model
    split_on = {source.get(node.features[f], node.features[f])
                for tree in node.trees for f in tree.feature if f >= 0}
    moved = {c for c, m in zip(sig.names, (contrib != 0).any(axis=0), strict=True) if m}
    assert moved == split_on


@pytest.mark.parametrize("name", MULTINOMIAL)
def test_multinomial_contributions_add_up_to_each_class_score(name):
    # h2o-genmodel refuses contributions of multinomial models: only the sums are checked
    sig, model_ir, frame = rows_of(name)
    base, contrib = contributions(model_ir, frame)
    raw = raw_scores(model_ir.model, feature_matrix(model_ir, frame))
    assert contrib.shape == (len(frame), len(sig.names), len(sig.classes))
    np.testing.assert_allclose(base + contrib.sum(axis=1), raw, rtol=1e-12, atol=1e-12)


def test_a_tree_of_one_leaf_adds_its_value_to_the_base(h2o):
    # a GBM whose fourth tree is made a single leaf, with no record (it has no split)
    parts = zipfile.ZipFile(io.BytesIO(data("gbm_regression")))
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w") as z:
        for n in parts.namelist():
            entry = parts.read(n)
            if n == "trees/t00_003.bin":
                entry = bytes([0]) + struct.pack("<Hf", 0xFFFF, 1.25)
            elif n == "trees/t00_003_aux.bin":
                entry = b""
            z.writestr(n, entry)
    sig = mojo.inspect(blob.getvalue())
    model_ir = to_ir(blob.getvalue(), sig)
    assert model_ir.model.trees[3].cover == [0.0]
    frame = sig.coerce(sample())
    base, contrib, raw = ours(model_ir, frame)
    np.testing.assert_allclose(base + contrib.sum(axis=1), raw, rtol=1e-12)
    # h2o-genmodel gives a tree without weight an expected value of 0, so its BiasTerm
    # lacks the leaf's value (and its contributions miss its own score by as much)
    want = h2o(blob.getvalue(), frame, sig)
    want[:, -1] += 1.25
    assert_close_to_h2o(base, contrib, want, "one leaf")


# --- MOJOs without the entries ------------------------------------------------------------


def _without(blob: bytes, drop) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(blob))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            entry = drop(name, src.read(name))
            if entry is not None:
                dst.writestr(name, entry)
    return out.getvalue()


@pytest.mark.parametrize("name", ["gbm_binomial", "drf_regression"])
def test_a_mojo_without_aux_entries_reads_as_before_and_refuses_reasons(name):
    old = _without(data(name), lambda n, b: None if n.endswith("_aux.bin") else b)
    sig = mojo.inspect(old)
    model_ir, with_covers = to_ir(old, sig), to_ir(data(name), sig)
    assert all(tree.cover is None for tree in model_ir.model.trees)
    stored = with_covers.to_dict()
    for tree in stored["model"]["trees"]:
        del tree["cover"]
    assert model_ir.to_dict() == stored
    with pytest.raises(ConversionError, match="tree 0 of the ensemble has no node covers"):
        contributions(model_ir, sig.coerce(sample()))


def test_an_aux_entry_that_is_not_the_trees_leaves_it_without_covers():
    def damage(n: str, b: bytes):
        if n == "trees/t00_002_aux.bin":
            return b[:-1]  # not whole records
        if n == "trees/t00_005_aux.bin":
            return AUX.pack(7, 0, 1, 1, 0, 0, 0, 0, 8, 9)  # no record for the root
        return b
    damaged = _without(data("gbm_binomial"), damage)
    sig = mojo.inspect(damaged)
    model_ir, whole = to_ir(damaged, sig), to_ir(data("gbm_binomial"), sig)
    missing = [t for t, tree in enumerate(model_ir.model.trees) if tree.cover is None]
    assert missing == [2, 5]
    frame = sig.coerce(sample())
    # it scores as before
    assert np.array_equal(raw_scores(model_ir.model, feature_matrix(model_ir, frame)),
                          raw_scores(whole.model, feature_matrix(whole, frame)))
    with pytest.raises(ConversionError, match="tree 2 of the ensemble has no node covers"):
        contributions(model_ir, frame)


# --- a registered import explains -----------------------------------------------------------


@pytest.mark.parametrize("name", ["gbm_binomial", "drf_binomial"])
def test_a_registered_import_explains_with_h2os_contributions(name, h2o, tmp_path):
    shutil.copyfile(FIXTURES / f"{name}.zip", tmp_path / f"{name}.zip")
    shutil.copyfile(JAR, tmp_path / mojo.GENMODEL_JAR)
    done = subprocess.run([MODELPORT, "import", str(tmp_path / f"{name}.zip"), "--name",
                           "churn", "--format", "mojo", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    version = Registry().get("churn")
    # the version's explaining predictor, as every serving surface finds it
    predictor = explaining(modelport.load("churn"), Registry(), version)
    sig = predictor.signature
    rows = sample().drop(columns=["churned"])
    frame = sig.coerce(rows)
    reasons = predictor.explain(rows, top=len(sig.names))
    if "output" in reasons.columns:  # a forest's two probabilities: the second's
        reasons = reasons[reasons["output"] == sig.classes[1]]
    table = reasons.pivot(index="row", columns="column", values="contribution")[sig.names]
    base = reasons.groupby("row")["base"].first().to_numpy()
    assert np.all(base == base[0])
    want = as_modelport(name, h2o(data(name), frame, sig))
    assert_close_to_h2o(base[0], table.to_numpy(), want, f"{name} import")
