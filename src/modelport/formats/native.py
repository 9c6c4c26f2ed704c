"""A Predictor over a fitted scikit-learn-compatible estimator held in memory.

The joblib and skops formats both load into this; it is also the reference the parity
check compares every conversion with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import ConversionError, UserError
from modelport.predictor import Predictor
from modelport.signature import Signature

if TYPE_CHECKING:
    import pandas as pd

    from modelport.compile.explain import Background, Rows
    from modelport.compile.ir import ModelIR


class NativePredictor(Predictor):
    """Scores with the estimator's own ``predict`` / ``predict_proba``."""

    format = "native"

    def __init__(self, model: Any, signature: Signature, format: str = "native") -> None:
        super().__init__(signature)
        self.model = model
        self.format = format
        # Estimators fitted on a DataFrame select columns by name; those fitted on an
        # array take the columns in signature order.
        self._by_name = hasattr(model, "feature_names_in_")
        self._proba = signature.task == "classification" and hasattr(model, "predict_proba")
        self._ir: ModelIR | None = None

    def _gives_proba(self) -> bool:
        return self._proba

    def _features(self, frame: pd.DataFrame) -> pd.DataFrame | np.ndarray:
        if self._by_name:
            return frame
        if self.signature.categorical:
            return frame.to_numpy(dtype=object)
        return frame.to_numpy(dtype=np.float64)

    def _run(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        return self.score_coerced(frame)

    def score_coerced(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """The estimator's outputs for ``frame``, already coerced to the signature, with no
        row checks: the reference every conversion and compiled form is proven against."""
        X = self._features(frame)
        task = self.signature.task
        if task == "classification":
            if self._proba:
                proba = np.asarray(self.model.predict_proba(X), dtype=np.float64)
                return {"label": self._labels_from_proba(proba), "proba": proba}
            return {"label": np.asarray(self.model.predict(X))}
        if task == "regression":
            return {"value": np.asarray(self.model.predict(X), dtype=np.float64).reshape(-1)}
        return {"cluster": np.asarray(self.model.predict(X), dtype=np.int64).reshape(-1)}


    def _contributions(self, frame: Rows, background: Background | None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Contributions from the model's intermediate form, read on first use; on every
        call the score they add up to is checked against the estimator's on the rows
        explained (to the compiled format's 1e-9, 1e-6 for float32 models), so an
        explanation never describes a different model."""
        from modelport.compile import to_ir
        from modelport.compile.explain import contributions
        from modelport.compile.numpy_eval import outputs
        from modelport.parity import compare

        try:
            if self._ir is None:
                self._ir = to_ir(self.model, self.signature)
            tolerance = 1e-9 if self._ir.precision == "float64" else 1e-6
            base, contrib = contributions(self._ir, frame, background)
            if isinstance(frame, dict):  # the estimator reads a frame
                import pandas as pd

                frame = pd.DataFrame(frame, columns=self.signature.names)
            raw = base + (contrib.sum(axis=1) if contrib.ndim == 3
                          else contrib.sum(axis=1)[:, None])
            assert self._ir.output is not None  # set by every front end
            result = compare(self.score_coerced(frame), outputs(self._ir.output, raw),
                             self.task, tolerance)
            if not result["passed"]:
                raise ConversionError(f"its intermediate form differs from the estimator on "
                                      f"these rows: {result['reason']}")
            return base, contrib
        except ConversionError as exc:
            raise UserError(f"model {self.describe()} cannot be explained: {exc}") from exc


def infer_task(model: Any) -> str:
    """``classification``, ``regression`` or ``clustering`` for a fitted estimator."""
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(model):
        return "classification"
    if is_regressor(model):
        return "regression"
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    if hasattr(final, "cluster_centers_") or hasattr(final, "labels_"):
        return "clustering"
    if hasattr(final, "predict_proba"):
        return "classification"
    return "regression"


def classes_of(model: Any) -> list | None:
    classes = getattr(model, "classes_", None)
    if classes is None:
        return None
    return [c.item() if isinstance(c, np.generic) else c for c in list(classes)]
