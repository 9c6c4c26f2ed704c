"""PMML written by modelport scores like the native model in an independent evaluator (pypmml)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from modelport.errors import ConversionError
from modelport.formats import pmml
from modelport.formats.native import NativePredictor
from modelport.parity import compare
from modelport.signature import Signature
from test_compile_ir import FAMILIES, fitted, with_unseen_rows

import zoo
from conftest import need_module, unavailable

pytestmark = [
    pytest.mark.filterwarnings("ignore:Found unknown categories"),
    pytest.mark.filterwarnings("ignore:categorical_feature keyword has been found"),
]


@pytest.fixture(autouse=True)
def _pmml_runtime():
    need_module("pypmml", "pmml")
    if not pmml.available():
        unavailable("java is not on PATH (pypmml runs PMML in a JVM)")


@pytest.mark.parametrize("family", FAMILIES)
def test_pmml_scores_like_the_native_model(family):
    model, sig, X = fitted(family)
    data = pmml.convert(model, sig, X)
    predictor = pmml.load(data, sig)
    sample = with_unseen_rows(X)
    reference = NativePredictor(model, sig).run(sample)
    result = compare(reference, predictor.run(sample), sig.task, pmml.TOLERANCE)
    assert result["passed"], result
    assert result["label_flips"] == 0
    assert predictor.has_proba == ("proba" in reference)


@pytest.mark.parametrize("family", ["logistic_multinomial", "sgd_hinge", "gaussian_nb",
                                    "gradient_boosting_multiclass"])
def test_outlying_rows_keep_probabilities_finite_and_labels_native(family):
    model, sig, X = fitted(family)
    far = X.head(4).copy()
    far["tenure"] = [1e6, -1e6, 3e5, -3e5]  # scores far beyond where exp() overflows
    predictor = pmml.load(pmml.convert(model, sig, X), sig)
    out = predictor.run(far)
    reference = NativePredictor(model, sig).run(far)
    if "proba" in reference:
        assert np.isfinite(out["proba"]).all()
    result = compare(reference, out, sig.task, pmml.TOLERANCE)
    assert result["passed"], result


@pytest.mark.parametrize("family", zoo.NAMES)
def test_pmml_scores_every_zoo_model_like_the_native_model(family):
    if family in ("lightgbm", "xgboost"):
        need_module(family, "gbm")
    model, sample = zoo.build(family)
    from modelport.formats.native import classes_of, infer_task

    sig = Signature.infer(sample, infer_task(model), classes_of(model))
    predictor = pmml.load(pmml.convert(model, sig, sample), sig)
    result = compare(NativePredictor(model, sig).run(sample), predictor.run(sample), sig.task,
                     pmml.TOLERANCE)
    assert result["passed"], result


@pytest.mark.parametrize("family", ["logistic_binary_strings", "gradient_boosting_multiclass"])
def test_inspect_reads_back_the_signature_the_pmml_was_written_with(family):
    model, sig, X = fitted(family)
    read = pmml.inspect(pmml.convert(model, sig, X))
    assert read.task == "classification"
    assert read.classes == sig.classes
    assert read.names == sig.names
    assert [c.kind for c in read.inputs] == [c.kind for c in sig.inputs]
    plan = next(c for c in read.inputs if c.name == "plan")
    assert plan.categories == ["basic", "premium", "standard"]


def test_inspect_reads_task_of_regression_and_clustering_files():
    for family, task in (("ridge", "regression"), ("kmeans", "clustering")):
        model, sig, X = fitted(family)
        read = pmml.inspect(pmml.convert(model, sig, X))
        assert read.task == task
        assert read.classes is None
        assert read.names == sig.names


FOREIGN = textwrap.dedent("""\
    <?xml version="1.0" encoding="UTF-8"?>
    <PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4">
      <Header/>
      <DataDictionary numberOfFields="4">
        <DataField name="age" optype="continuous" dataType="double"/>
        <DataField name="colour" optype="categorical" dataType="string">
          <Value value="red"/><Value value="blue"/>
        </DataField>
        <DataField name="n" optype="continuous" dataType="integer"/>
        <DataField name="y" optype="categorical" dataType="integer">
          <Value value="0"/><Value value="1"/>
        </DataField>
      </DataDictionary>
      <RegressionModel functionName="classification" normalizationMethod="logit">
        <MiningSchema>
          <MiningField name="y" usageType="target"/>
          <MiningField name="age"/>
          <MiningField name="colour"/>
          <MiningField name="n"/>
        </MiningSchema>
        <RegressionTable intercept="-1.5" targetCategory="1">
          <NumericPredictor name="age" coefficient="0.05"/>
          <NumericPredictor name="n" coefficient="0.25"/>
          <CategoricalPredictor name="colour" value="red" coefficient="0.5"/>
        </RegressionTable>
        <RegressionTable intercept="0" targetCategory="0"/>
      </RegressionModel>
    </PMML>
    """).encode()


def test_pmml_made_elsewhere_is_inspected_and_scored():
    sig = pmml.inspect(FOREIGN)
    assert sig.names == ["age", "colour", "n"]
    assert [c.kind for c in sig.inputs] == ["numeric", "categorical", "numeric"]
    assert sig.inputs[1].categories == ["red", "blue"]
    assert sig.classes == [0, 1]
    predictor = pmml.load(FOREIGN, sig)
    out = predictor.run({"age": [40.0, 20.0], "colour": ["red", "blue"], "n": [2, 0]})
    margin = np.array([-1.5 + 0.05 * 40 + 0.25 * 2 + 0.5, -1.5 + 0.05 * 20])
    p1 = 1 / (1 + np.exp(-margin))
    np.testing.assert_allclose(out["proba"], np.column_stack([1 - p1, p1]), atol=1e-12)
    assert out["label"].tolist() == [1, 0]


FOREIGN_TREE = textwrap.dedent("""\
    <PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4">
      <Header/>
      <DataDictionary numberOfFields="2">
        <DataField name="x" optype="continuous" dataType="double"/>
        <DataField name="y" optype="categorical" dataType="string"/>
      </DataDictionary>
      <TreeModel functionName="classification" missingValueStrategy="none">
        <MiningSchema>
          <MiningField name="x"/>
          <MiningField name="y" usageType="target"/>
        </MiningSchema>
        <Output>
          <OutputField name="p_no" feature="probability" value="no" dataType="double"/>
          <OutputField name="p_yes" feature="probability" value="yes" dataType="double"/>
          <OutputField name="y_hat" feature="predictedValue" dataType="string"/>
        </Output>
        <Node score="no">
          <True/>
          <Node score="yes">
            <SimplePredicate field="x" operator="greaterThan" value="1.5"/>
            <ScoreDistribution value="no" recordCount="1"/>
            <ScoreDistribution value="yes" recordCount="3"/>
          </Node>
          <Node score="no">
            <True/>
            <ScoreDistribution value="no" recordCount="4"/>
            <ScoreDistribution value="yes" recordCount="1"/>
          </Node>
        </Node>
      </TreeModel>
    </PMML>
    """).encode()


def test_foreign_files_are_scored_by_their_read_form_and_own_files_by_pypmml():
    foreign = pmml.load(FOREIGN, pmml.inspect(FOREIGN))
    assert foreign.runtime == "compiled"
    model, sig, X = fitted("logistic_binary_strings")
    own = pmml.load(pmml.convert(model, sig, X), sig)
    assert own.runtime == "pypmml"
    assert "modelport" in own.reader_refusal


def test_an_extension_in_the_mining_schema_is_not_a_field():
    text = FOREIGN.decode().replace(
        "<MiningSchema>", '<MiningSchema><Extension name="X-FeatureImportances" value="1"/>')
    sig = pmml.inspect(text.encode())
    assert sig.names == ["age", "colour", "n"]
    assert pmml.load(text.encode(), sig).predict({"age": 40.0, "colour": "red", "n": 2}) == [1]


def test_classes_of_a_foreign_file_come_from_its_output_when_the_target_lists_none():
    sig = pmml.inspect(FOREIGN_TREE)
    assert sig.classes == ["no", "yes"]
    assert sig.names == ["x"]
    out = pmml.load(FOREIGN_TREE, sig).run({"x": [2.0, 1.0]})
    assert out["label"].tolist() == ["yes", "no"]


def test_inspect_refuses_a_file_that_is_not_pmml():
    from modelport.errors import UserError

    with pytest.raises(UserError, match="not valid PMML"):
        pmml.inspect(b"this is not xml")


def test_unsupported_step_stops_conversion_naming_it():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    _, numeric, y, _ = zoo.data(n=100)
    model = make_pipeline(FunctionTransformer(np.log1p), LogisticRegression()).fit(numeric, y)
    sig = Signature.infer(numeric, "classification", [0, 1])
    with pytest.raises(ConversionError, match=r"FunctionTransformer at steps\[0\]"):
        pmml.convert(model, sig, numeric)


def test_predictors_share_one_java_gateway():
    from pypmml.base import PMMLContext

    model, sig, X = fitted("ridge")
    data = pmml.convert(model, sig, X)
    pmml.load(data, sig)
    gateway = PMMLContext._gateway
    pmml.load(data, sig)
    assert gateway is not None and PMMLContext._gateway is gateway


def test_java_process_ends_with_the_python_process():
    script = textwrap.dedent("""
        import os
        from modelport.formats import pmml
        from modelport.signature import Signature
        from test_format_pmml import FOREIGN
        pmml.load(FOREIGN, pmml.inspect(FOREIGN)).run({"age": [1.0], "colour": ["red"], "n": [1]})
        me = str(os.getpid())
        children = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                stat = open(f"/proc/{pid}/stat").read()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == me:
                children.append(pid)
        print(" ".join(children))
    """)
    tests = os.path.dirname(__file__)
    # a file made elsewhere is scored by its read form, with no JVM: force pypmml here
    env = {**os.environ, "PYTHONPATH": tests + os.pathsep + os.environ.get("PYTHONPATH", ""),
           pmml.RUNTIME_ENV: "pypmml"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120, check=True)
    children = done.stdout.split()
    assert children, "the gateway should have started a java process"
    for pid in children:
        for _ in range(50):
            if not os.path.exists(f"/proc/{pid}") or _is_zombie(pid):
                break
            import time

            time.sleep(0.1)
        else:
            pytest.fail(f"java process {pid} outlived its Python process")


def _is_zombie(pid: str) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
