"""Compiled artefacts: the model's intermediate form as JSON, scored by a prepared NumPy runtime.

The artefact is :meth:`~modelport.compile.ModelIR.to_dict` as JSON: plain numbers and lists,
nothing executable, readable by any later version. Loading prepares it once
(:class:`modelport.compile.fast.Prepared`) and scores columns straight from the signature's
checked arrays, so a single row never builds a DataFrame. Conversion first proves the form
equal to the native model on the sample; a model with a piece the compiler does not know is
refused naming that piece.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import ConversionError, UserError
from modelport.predictor import Predictor
from modelport.signature import Signature

if TYPE_CHECKING:
    import pandas as pd

    from modelport.compile.explain import Background, Rows

NAME = "compiled"
EXTRA = None
TOLERANCE = 1e-9


def available() -> bool:
    return True


def convert(model: Any, signature: Signature, sample: Any) -> bytes:
    """The compiled form of fitted ``model`` as JSON bytes.

    Raises :class:`ConversionError` when a step has no compiler, or when the form differs
    from the native model on ``sample`` by more than the form's own precision allows.
    """
    from modelport.compile import ModelIR, evaluate, to_ir
    from modelport.formats.native import NativePredictor
    from modelport.parity import compare

    model_ir = to_ir(model, signature)
    if model_ir.precision != "float64":
        raise ConversionError(
            f"{type(model).__name__} computes in {model_ir.precision}; the compiled runtime is "
            "exact for float64 models only"
        )
    frame = signature.coerce(sample)
    if len(frame):
        reference = NativePredictor(model, signature).score_coerced(frame)
        result = compare(reference, evaluate(model_ir, frame), signature.task, TOLERANCE)
        if not result["passed"]:
            raise ConversionError(
                f"the compiled form of {type(model).__name__} differs from the native model "
                f"on the sample: {result['reason']}"
            )
    # the stored form is the one read back, so prove the trip through JSON too
    data = json.dumps(model_ir.to_dict(), allow_nan=True).encode("utf-8")
    ModelIR.from_dict(json.loads(data))
    return data


def load(data: bytes, signature: Signature) -> CompiledPredictor:
    """A Predictor scoring the compiled form in ``data``."""
    return CompiledPredictor(data, signature)


class CompiledPredictor(Predictor):
    """Scores a compiled form with its prepared NumPy runtime."""

    format = NAME
    scores_one_row = True

    def __init__(self, data: bytes, signature: Signature) -> None:
        from modelport.compile import ModelIR
        from modelport.compile.fast import Prepared

        super().__init__(signature)
        model_ir = ModelIR.from_dict(json.loads(data))
        # score in the signature the version was registered with
        model_ir.signature = signature
        self._prepared = Prepared(model_ir)
        assert model_ir.output is not None  # set by every front end
        self._proba = model_ir.output.gives_proba
        self._ir = model_ir

    def _gives_proba(self) -> bool:
        return self._proba

    def prepare_batch(self) -> bool:
        """Get ready for a long job: walk the trees in compiled C when that can be done
        here (see :mod:`modelport.compile.ctrees`). True if it changed the runtime."""
        return self._prepared.compile_trees()

    def wants_compiled_trees(self, min_nodes: int) -> bool:
        """Whether this is a tree ensemble of at least ``min_nodes`` nodes whose trees are
        not compiled yet (see :meth:`prepare_batch`)."""
        from modelport.compile import ir

        node = self._ir.model
        if not isinstance(node, ir.TreeEnsemble) or self._prepared.trees_compiled:
            return False
        return sum(len(t.feature) for t in node.trees) >= min_nodes

    def _run_columns(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._prepared.run(cols)

    def _run_one(self, row: dict) -> dict[str, np.ndarray]:
        return self._prepared.run_one(row)

    # the runtime encodes each distinct word of a dictionary-encoded column once
    _run_batch = _run_columns

    def _run(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        return self._prepared.run({c: frame[c].to_numpy() for c in frame.columns})

    def _contributions(self, frame: Rows, background: Background | None
                       ) -> tuple[np.ndarray, np.ndarray]:
        from modelport.compile.explain import contributions

        try:
            return contributions(self._ir, frame, background)
        except ConversionError as exc:
            raise UserError(f"model {self.describe()} cannot be explained: {exc}") from exc
