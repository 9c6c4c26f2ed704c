"""Incremental preprocessing: running statistics equal the whole-data ones whatever the
batches; categories take columns as they appear; the exported scikit-learn transformer
computes exactly what the online one does and converts to ONNX and the compiled form."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelport.train.online.preprocess import HashingEncoder, Preprocessor
from modelport.train.online.schema import Features


def batches(n: int = 3000, seed: int = 0):
    rng = np.random.default_rng(seed)
    num = rng.normal(loc=[5.0, -3.0, 100.0], scale=[1.0, 10.0, 0.1], size=(n, 3))
    num[rng.random((n, 3)) < 0.1] = np.nan
    plans = np.array(["basic", "pro", "team", "edu", None], dtype=object)
    plan = plans[rng.integers(0, 5, n)]
    region = np.array([f"r{i}" for i in rng.integers(0, 8, n)], dtype=object)
    return num, [plan, region]


@pytest.mark.parametrize("sizes", [[3000], [1, 2, 997, 2000], [7] * 428 + [4]])
def test_running_statistics_are_the_whole_data_statistics(sizes):
    num, cat = batches()
    prep = Preprocessor(["a", "b", "c"], ["plan", "region"])
    start = 0
    for size in sizes:
        prep.update(num[start:start + size], [c[start:start + size] for c in cat])
        start += size
    assert np.allclose(prep.mean, np.nanmean(num, axis=0), rtol=1e-12, atol=1e-12)
    assert np.allclose(prep.scale, np.nanstd(num, axis=0), rtol=1e-10)
    assert prep.count.tolist() == (~np.isnan(num)).sum(0).tolist()


@pytest.mark.parametrize("numeric", ["scale", "impute"])
def test_a_batch_learnt_in_steps_is_transformed_as_if_each_step_were_a_batch(numeric):
    num, cat = batches(300, seed=2)
    stepped = Preprocessor(["a", "b", "c"], ["plan", "region"], numeric, max_categories=3)
    one_by_one = Preprocessor(["a", "b", "c"], ["plan", "region"], numeric, max_categories=3)
    ends = [1, 2, 5, 50, 120, 300]
    X, shift, scale = stepped.learn(num, cat, ends)
    start = 0
    for j, end in enumerate(ends):
        part = slice(start, end)
        one_by_one.update(num[part], [c[part] for c in cat])
        expected = one_by_one.transform(num[part], [c[part] for c in cat])
        assert np.allclose((X[part] - shift[j]) / scale[j], expected, rtol=1e-12, atol=1e-12)
        start = end
    assert np.allclose(stepped.mean, one_by_one.mean, rtol=1e-12, atol=1e-12)
    assert np.allclose(stepped.m2, one_by_one.m2, rtol=1e-12)
    assert stepped.count.tolist() == one_by_one.count.tolist()
    assert stepped.vocab == one_by_one.vocab


def test_categories_take_columns_in_order_of_appearance_up_to_the_limit():
    prep = Preprocessor([], ["plan"], max_categories=3)
    prep.update(np.empty((4, 0)), [np.array([None, "b", "a", "b"], dtype=object)])
    prep.update(np.empty((3, 0)), [np.array(["c", "d", "a"], dtype=object)])
    assert prep.vocab[0] == {"b": 0, "a": 1, "c": 2}  # d came when the columns were taken
    Z = prep.transform(np.empty((4, 0)), [np.array(["a", "d", None, "c"], dtype=object)])
    assert Z.tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 1]]


def test_hashing_gives_each_value_one_stable_bucket():
    prep = Preprocessor([], ["plan", "region"], categorical_mode="hash", hash_buckets=16)
    values = [np.array(["x", "y", None, "x"], dtype=object),
              np.array(["x", "x", "x", "x"], dtype=object)]
    Z = prep.transform(np.empty((4, 0)), values)
    assert Z.shape == (4, 32) and Z[:, :16].sum(1).tolist() == [1, 1, 0, 1]
    assert (Z[0] == Z[3]).all()
    # the same value in another field lands in that field's own columns
    assert Z[:, 16:].sum(1).tolist() == [1, 1, 1, 1]
    frame = pd.DataFrame({"plan": values[0], "region": values[1]})
    assert np.array_equal(HashingEncoder(16).fit(frame).transform(frame), Z)


@pytest.mark.parametrize("numeric", ["scale", "impute"])
def test_the_exported_transformer_computes_what_the_online_one_does(numeric):
    num, cat = batches()
    prep = Preprocessor(["a", "b", "c"], ["plan", "region"], numeric_mode=numeric,
                        max_categories=6)
    prep.update(num[:2000], [c[:2000] for c in cat])
    fresh = num[2000:].copy()
    plan = cat[0][2000:].copy()
    plan[:5] = "never-seen"
    features = Features(fresh, [plan, cat[1][2000:]])
    frame = pd.DataFrame({"a": fresh[:, 0], "b": fresh[:, 1], "c": fresh[:, 2],
                          "plan": plan, "region": cat[1][2000:]})
    exported = prep.export().transform(frame)
    assert np.array_equal(exported, prep.transform(features.num, features.cat))


def test_a_checkpointed_pipeline_converts_to_onnx_and_compiled_with_parity():
    from conftest import need_module

    need_module("onnxruntime", "onnx")
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import Pipeline

    from modelport.register import log_model

    num, cat = batches(seed=3)
    y = (np.nan_to_num(num[:, 0]) > 5).astype(int)
    prep = Preprocessor(["a", "b", "c"], ["plan", "region"], max_categories=10)
    prep.update(num, cat)
    est = SGDClassifier(loss="log_loss", learning_rate="constant", eta0=0.01, alpha=0.0)
    est.partial_fit(prep.transform(num, cat), y, classes=[0, 1])
    model = Pipeline([("preprocess", prep.export()), ("model", est)])
    sample = pd.DataFrame({"a": num[:300, 0], "b": num[:300, 1], "c": num[:300, 2],
                           "plan": cat[0][:300], "region": cat[1][:300]})
    v = log_model(model, "prep", sample=sample, formats=("joblib", "onnx", "compiled"))
    assert set(v.accepted_formats()) == {"joblib", "onnx", "compiled"}, \
        {a.format: a.reason for a in v.artefacts}
