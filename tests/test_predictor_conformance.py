"""Every format passes one Predictor conformance suite over every model family."""

from __future__ import annotations

import pytest

import modelport
from modelport import formats
from modelport.formats.native import NativePredictor
from modelport.signature import Signature
from modelport.testing import check_predictor

import zoo
from conftest import need_module

EXTRA_MODULES = {"onnx": ("onnxruntime", "onnx"), "pmml": ("pypmml", "pmml")}
FAMILY_MODULES = {"lightgbm": ("lightgbm", "gbm"), "xgboost": ("xgboost", "gbm")}


@pytest.mark.parametrize("family", zoo.NAMES)
@pytest.mark.parametrize("fmt", ["joblib", "skops", "onnx", "pmml", "compiled"])
def test_format_passes_conformance(fmt, family):
    if fmt in EXTRA_MODULES:
        need_module(*EXTRA_MODULES[fmt])
    if family in FAMILY_MODULES:
        need_module(*FAMILY_MODULES[family])
    model, sample = zoo.build(family)
    version = modelport.log_model(model, f"conf-{family}", sample=sample,
                                  formats=list(dict.fromkeys(["joblib", fmt])))
    art = version.artefact(fmt)
    if fmt == "compiled" and family == "xgboost":
        # XGBoost computes in float32: a float64 runtime cannot reproduce it exactly
        assert art.status == "rejected" and "float32" in art.reason, art.reason
        return
    assert art.status == "accepted", f"{fmt} rejected {family}: {art.reason}"
    assert art.parity["rows"] == len(sample)

    predictor = modelport.load(version.uri, format=fmt)
    assert predictor.format == fmt
    assert (predictor.model_name, predictor.model_version) == (f"conf-{family}", version.version)
    reference = NativePredictor(model, Signature.from_dict(version.signature))
    check_predictor(predictor, reference, sample, formats.get(fmt).TOLERANCE)
