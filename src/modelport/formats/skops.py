"""skops artefacts: scikit-learn models stored without pickle, loaded safely.

Loading refuses any type that is not on modelport's own allow-list, kept here per
estimator family. The list is never read from the artefact: a file that asks for a type
outside it is refused, whatever it claims to be.
"""

from __future__ import annotations

from typing import Any

from modelport.errors import ConversionError, UserError
from modelport.formats.native import NativePredictor
from modelport.signature import Signature

NAME = "skops"
EXTRA = None
TOLERANCE = 0.0

#: types skops does not trust by default that modelport trusts, by estimator family
ALLOWED_BY_FAMILY: dict[str, frozenset[str]] = {
    "numpy": frozenset({"numpy.dtype"}),
    "python": frozenset({"collections.OrderedDict", "collections.defaultdict"}),
    "sklearn trees and forests": frozenset({"sklearn.tree._tree.Tree"}),
    "sklearn histogram gradient boosting": frozenset({
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    }),
    "sklearn gradient boosting": frozenset({
        "sklearn.ensemble._gb_losses.BinomialDeviance",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.HalfSquaredError",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.link.Interval",
    }),
    "lightgbm": frozenset({
        "lightgbm.basic.Booster", "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.sklearn.LGBMRegressor", "lightgbm.sklearn.LGBMRanker",
    }),
    "xgboost": frozenset({
        "xgboost.core.Booster", "xgboost.sklearn.XGBClassifier", "xgboost.sklearn.XGBRegressor",
        "xgboost.sklearn.XGBRFClassifier", "xgboost.sklearn.XGBRFRegressor",
    }),
}
ALLOWED: frozenset[str] = frozenset().union(*ALLOWED_BY_FAMILY.values())


def available() -> bool:
    try:
        import skops.io  # noqa: F401
    except ImportError:
        return False
    return True


def convert(model: Any, signature: Signature, sample: Any) -> bytes:
    import skops.io as sio

    data = sio.dumps(model)
    outside = sorted(set(sio.get_untrusted_types(data=data)) - ALLOWED)
    if outside:
        raise ConversionError(
            f"skops: types outside modelport's allow-list: {', '.join(outside)}"
        )
    return data


def load(data: bytes, signature: Signature) -> NativePredictor:
    import skops.io as sio

    wanted = set(sio.get_untrusted_types(data=data))
    outside = sorted(wanted - ALLOWED)
    if outside:
        raise UserError(
            f"refusing to load a skops artefact that needs types outside modelport's "
            f"allow-list: {', '.join(outside)}; register the model again with a trusted copy"
        )
    return NativePredictor(sio.loads(data, trusted=sorted(wanted)), signature, format=NAME)
