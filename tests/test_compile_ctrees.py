"""Trees compiled to machine code (batch jobs) score what the NumPy walk and the native
model score, family by family, and are refused rather than used when they would not."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from modelport.compile import ModelIR, ctrees, to_ir
from modelport.compile.fast import Prepared
from modelport.formats.native import NativePredictor
from modelport.kernel import Forest
from modelport.parity import compare
from test_compile_ir import fitted, ir_tolerance, with_unseen_rows

from conftest import unavailable

TREE_FAMILIES = (
    "decision_tree_multiclass", "decision_tree_regressor_nan", "random_forest_nan",
    "random_forest_regressor", "extra_trees", "hgb_binary_nan", "hgb_multiclass",
    "hgb_regressor_nan", "hgb_poisson", "hgb_native_categorical_strings",
    "hgb_categorical_codes", "lightgbm_binary_nan", "lightgbm_categorical",
    "lightgbm_multiclass", "lightgbm_regressor", "gradient_boosting_binary",
    "gradient_boosting_multiclass", "gradient_boosting_regressor",
)  # XGBoost computes in float32, which the compiled runtime does not take

pytestmark = [
    pytest.mark.filterwarnings("ignore:Found unknown categories"),
    pytest.mark.filterwarnings("ignore:categorical_feature keyword has been found"),
]


@pytest.fixture(autouse=True)
def _compiler(tmp_path, monkeypatch):
    """A C compiler, and a cache of libraries of this test's own."""
    if shutil.which("cc") is None:
        unavailable("no C compiler (cc) to build compiled trees with")
    monkeypatch.delenv("MODELPORT_TREES", raising=False)
    monkeypatch.delenv("MODELPORT_NUMPY_TREES", raising=False)
    monkeypatch.setenv("MODELPORT_CACHE", str(tmp_path / "cache"))


def _prepared(family: str):
    model, sig, X = fitted(family)
    frame = sig.coerce(with_unseen_rows(X))
    model_ir = ModelIR.from_dict(json.loads(json.dumps(to_ir(model, sig).to_dict())))
    model_ir.signature = sig
    cols = {c: frame[c].to_numpy() for c in frame.columns}
    return model, sig, frame, model_ir, Prepared(model_ir), cols


@pytest.mark.parametrize("family", TREE_FAMILIES)
def test_compiled_trees_score_what_the_walk_and_the_native_model_score(family, tmp_path):
    model, sig, frame, model_ir, prepared, cols = _prepared(family)
    walked = prepared.run(cols)
    assert prepared.compile_trees()
    assert getattr(prepared._program.model_node.native, "library", None) is not None
    compiled = prepared.run(cols)
    assert walked.keys() == compiled.keys()
    for key, want in walked.items():
        got = compiled[key]
        if np.asarray(want).dtype.kind == "f":
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, err_msg=key)
        else:
            assert (np.asarray(got) == np.asarray(want)).all(), key
    reference = NativePredictor(model, sig)._run(frame)
    result = compare(reference, compiled, sig.task, ir_tolerance(model_ir))
    assert result["passed"], result
    # the library was cached: a second model load compiles nothing
    libs = list((tmp_path / "cache" / "trees").glob("*.so"))
    assert len(libs) == 1
    stamp = libs[0].stat().st_mtime_ns
    again = Prepared(model_ir)
    assert again.compile_trees()
    assert libs[0].stat().st_mtime_ns == stamp


def test_a_library_that_disagrees_with_the_walk_is_not_used():
    *_, model_ir, prepared, cols = _prepared("hgb_binary_nan")
    forest = prepared._program.model_node
    assert ctrees.build(model_ir, lambda X: forest.walk(X) + 1e-6) is None
    assert ctrees.build(model_ir, forest.walk) is not None


def test_without_a_compiler_or_when_turned_off_the_runtime_is_unchanged(monkeypatch, caplog):
    *_, prepared, cols = _prepared("random_forest_nan")
    before = prepared.run(cols)
    native = prepared._program.model_node.native
    monkeypatch.setenv("MODELPORT_TREES", "onnx")
    assert not prepared.compile_trees()
    monkeypatch.setenv("MODELPORT_TREES", "c")
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert not prepared.compile_trees()
    assert prepared._program.model_node.native is native
    np.testing.assert_array_equal(prepared.run(cols)["proba"], before["proba"])


def test_a_compiler_error_keeps_the_other_runtime_with_a_warning(monkeypatch, tmp_path, caplog):
    *_, prepared, cols = _prepared("hgb_binary_nan")
    fake = tmp_path / "cc"
    fake.write_text("#!/bin/sh\necho 'cc: internal error' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    assert not prepared.compile_trees()
    assert "internal error" in caplog.text
    assert not (tmp_path / "cache" / "trees").exists() or not list(
        (tmp_path / "cache" / "trees").glob("*.so"))


def test_probe_rows_reach_both_sides_of_every_split():
    *_, model_ir, prepared, _ = _prepared("hgb_native_categorical_strings")
    node = model_ir.model
    probe = ctrees.probe_rows(node)
    forest = Forest(prepared._program.ir["model"])
    left = np.zeros(len(forest.feature), dtype=bool)
    right = np.zeros(len(forest.feature), dtype=bool)
    for row in probe[:512]:
        go = forest._go_left(row[forest.feature], slice(None))
        left |= go
        right |= ~go
    inner = ~forest.is_leaf
    # nodes no probe row reaches are fine; every split is at least tested both ways
    assert (left & right)[inner].mean() > 0.95


def test_a_forest_too_big_to_compile_quickly_keeps_the_other_runtime(monkeypatch, tmp_path):
    *_, model_ir, prepared, _ = _prepared("random_forest_nan")
    nodes = sum(len(t.feature) for t in model_ir.model.trees)
    monkeypatch.setattr(ctrees, "MAX_NODES", nodes - 1)
    assert not prepared.compile_trees()
    assert not (tmp_path / "cache" / "trees").exists()
    monkeypatch.setattr(ctrees, "MAX_NODES", nodes)
    assert prepared.compile_trees()


def test_a_damaged_library_in_the_cache_is_built_again(tmp_path, monkeypatch):
    *_, prepared, cols = _prepared("hgb_binary_nan")
    before = prepared.run(cols)
    assert prepared.compile_trees()
    (built,) = (tmp_path / "cache" / "trees").glob("*.so")
    # another cache holding a damaged file under the same name (a library this process
    # has loaded is never written over: it is mapped)
    other = tmp_path / "other"
    (other / "trees").mkdir(parents=True)
    damaged = other / "trees" / built.name
    damaged.write_bytes(b"not a shared library")
    monkeypatch.setenv("MODELPORT_CACHE", str(other))
    again = Prepared(prepared.ir)
    assert again.compile_trees()
    assert damaged.read_bytes()[:4] == b"\x7fELF"
    np.testing.assert_allclose(again.run(cols)["proba"], before["proba"], rtol=0, atol=1e-12)


def _numeric_models():
    """LightGBM, histogram gradient boosting and a random forest on numbers with gaps,
    with held-out rows (gaps too), and each model's raw output for them."""
    import lightgbm as lgb
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    from modelport.formats.native import classes_of
    from modelport.signature import Signature

    X, y = make_classification(1600, 6, n_informative=4, random_state=3)
    rng = np.random.default_rng(3)
    X[rng.random(X.shape) < 0.05] = np.nan
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    train, held = slice(0, 1200), slice(1200, None)
    models = {
        "lightgbm": lgb.LGBMClassifier(n_estimators=40, num_leaves=15, verbose=-1),
        "hgb": HistGradientBoostingClassifier(max_iter=30, random_state=0),
        "rf": RandomForestClassifier(n_estimators=12, max_depth=6, random_state=0),
    }
    for name, model in models.items():
        model.fit(frame[train] if name == "lightgbm" else X[train], y[train])
        rows = X[held]
        if name == "lightgbm":
            raw = model.booster_.predict(rows, raw_score=True)[:, None]
        elif name == "hgb":
            raw = model.decision_function(rows)[:, None]
        else:
            raw = model.predict_proba(rows)
        sig = Signature.infer(frame.head(200), "classification", classes_of(model))
        yield name, to_ir(model, sig), rows, raw


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_the_one_row_entry_scores_each_held_out_row_as_the_native_model():
    for name, model_ir, rows, raw in _numeric_models():
        node = model_ir.model
        forest = ctrees.build(model_ir, Forest(Prepared(model_ir)._program.ir["model"]).walk)
        assert forest is not None and forest.one is not None, name
        out = np.empty(node.n_outputs)
        base = np.asarray(node.base, dtype=np.float64)
        batch = forest(rows)
        for i, x in enumerate(rows):
            got = forest.one(x, out)
            assert got is out  # written into the caller's array
            np.testing.assert_array_equal(got, batch[i])  # the batch entry's very sums
            score = (got + base) / (len(node.trees) if node.combine == "mean" else 1)
            want = raw[i, -score.size:]
            np.testing.assert_allclose(score, want, rtol=0, atol=1e-9, err_msg=name)
        # the entry on a row's values (the row-at-a-time path's) gives a new array of the
        # batch entry's very sums
        assert forest.one_values is not None, name
        first = forest.one_values(rows[0].tolist())
        for i, x in enumerate(rows):
            got = forest.one_values(x.tolist())
            np.testing.assert_array_equal(got, batch[i])
        assert not np.shares_memory(first, got)
        np.testing.assert_array_equal(first, batch[0])  # not overwritten by later rows
        # a row of another length is refused, not read past its end
        with pytest.raises(ValueError, match="tree features"):
            forest.one(rows[0][:-1])
        with pytest.raises(ValueError, match="tree features"):
            forest.one_values(rows[0][:-1].tolist())


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_a_compiled_predictor_scores_one_row_through_the_one_row_entry():
    import lightgbm as lgb
    import pandas as pd
    from sklearn.datasets import make_classification

    from modelport.formats import compiled
    from modelport.formats.native import classes_of
    from modelport.signature import Signature

    X, y = make_classification(900, 5, n_informative=3, random_state=7)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)])
    model = lgb.LGBMClassifier(n_estimators=30, num_leaves=15, verbose=-1)
    model.fit(frame[:600], y[:600])
    sig = Signature.infer(frame[:600], "classification", classes_of(model))
    predictor = compiled.load(compiled.convert(model, sig, frame[:200]), sig)
    assert predictor.prepare_batch()
    forest = predictor._prepared._program.model_node
    entry, values_entry, calls = forest.native.one, forest.native.one_values, []

    def counted(x, out=None):
        calls.append(1)
        return entry(x, out)

    def counted_values(values):
        calls.append(2)
        return values_entry(values)

    forest.native.one, forest.native.one_values = counted, counted_values
    held = frame[600:700]
    got = np.concatenate([predictor.predict_proba(held.iloc[i:i + 1])
                          for i in range(len(held))])
    assert calls == [1] * len(held)  # every one-row frame took the compiled entry
    np.testing.assert_allclose(got, model.predict_proba(held), rtol=0, atol=1e-9)
    # a row as a dict takes the entry on values, with the batch call's very outputs
    calls.clear()
    records = held.to_dict("records")
    one = [predictor.run(r) for r in records]
    assert calls == [2] * len(held)
    batch = predictor.run(held)
    np.testing.assert_array_equal(np.concatenate([o["proba"] for o in one]), batch["proba"])
    np.testing.assert_array_equal(np.concatenate([o["label"] for o in one]), batch["label"])


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_a_row_surface_compiles_a_large_ensemble_in_the_background(tmp_path, monkeypatch):
    """A version loaded for row-at-a-time serving scores with the NumPy walk at once, and a
    large tree ensemble is compiled in a background thread and takes over, scoring each
    held-out row as the native model; a small one, or MODELPORT_TREES=numpy, is not."""
    import lightgbm as lgb
    import pandas as pd
    from sklearn.datasets import make_classification

    import modelport
    from modelport.registry import Registry
    from modelport.scoring import choice

    X, y = make_classification(1500, 6, n_informative=4, random_state=3)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    registry = Registry()
    big = lgb.LGBMClassifier(n_estimators=120, num_leaves=15, verbose=-1).fit(frame[:1000],
                                                                              y[:1000])
    small = lgb.LGBMClassifier(n_estimators=3, num_leaves=4, verbose=-1).fit(frame[:1000],
                                                                            y[:1000])
    for name, model in (("big", big), ("small", small)):
        modelport.log_model(model, name, sample=frame[:200], formats=["compiled"],
                            registry=registry)
    held = frame[1000:1100]

    predictor, chosen = choice.load(registry, registry.get("big"), "row")
    assert chosen.format == "compiled"
    before = np.concatenate([predictor.predict_proba(held.iloc[i:i + 1].to_dict("records")[0])
                             for i in range(len(held))])  # served while the build runs
    for _ in range(1200):
        if predictor._prepared.trees_compiled:
            break
        import time

        time.sleep(0.1)
    assert predictor._prepared.trees_compiled, "the compiled trees never took over"
    forest = predictor._prepared._program.model_node
    assert forest.native.one is not None
    after = np.concatenate([predictor.predict_proba(held.iloc[i:i + 1].to_dict("records")[0])
                            for i in range(len(held))])
    want = big.predict_proba(held)
    np.testing.assert_allclose(before, want, rtol=0, atol=1e-9)
    np.testing.assert_allclose(after, want, rtol=0, atol=1e-9)
    # nothing more to build once compiled; a small ensemble is not worth a library
    assert choice.compile_trees_later(predictor) is None
    small_predictor, _ = choice.load(registry, registry.get("small"), "row")
    assert choice.compile_trees_later(small_predictor) is None
    monkeypatch.setenv("MODELPORT_TREES", "numpy")
    fresh = registry.load(registry.get("big"), format="compiled")
    assert choice.compile_trees_later(fresh) is None


def test_processes_building_one_library_at_once_compile_it_once(tmp_path):
    """The build is locked per library: of four processes loading the same source at once,
    one runs the compiler and the others load its library."""
    import subprocess
    import sys

    source = "int mp_answer(void) { return 42; }\n"
    script = (
        "import sys\n"
        "from modelport.compile import ctrees\n"
        "calls = []\n"
        "real = ctrees.subprocess.run\n"
        "def counted(*a, **k):\n"
        "    calls.append(1)\n"
        "    return real(*a, **k)\n"
        "ctrees.subprocess.run = counted\n"
        f"lib = ctrees._load({source!r})\n"
        "assert lib.mp_answer() == 42\n"
        "print(len(calls))\n")
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              text=True) for _ in range(4)]
    compiled = [int(p.communicate(timeout=120)[0].strip()) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(compiled) == 1, compiled
