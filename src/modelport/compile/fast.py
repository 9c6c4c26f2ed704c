"""A ModelIR prepared once for fast scoring: the NumPy runtime behind the ``compiled`` format.

:func:`modelport.compile.evaluate` is the readable proof; the prepared runtime is the same
arithmetic laid out for speed, and it lives in the kernel, :mod:`modelport.kernel` (one
file that needs only NumPy, so applications can vendor it and score exported models exactly
as the ``compiled`` format does). Everything that does not depend on the rows is done when the
model is loaded: categorical inputs get one vocabulary each, so every one-hot column and
ordinal code becomes a table lookup on integer codes; all trees of an ensemble become one
set of flat node arrays walked for every row and every tree at once. A single row costs a
few dozen small NumPy operations and never touches pandas.
"""

from __future__ import annotations

import numpy as np

from modelport.compile import ir
from modelport.kernel import Program


class Prepared:
    """``model_ir`` with every lookup table and tree array built; call :meth:`run`."""

    def __init__(self, model_ir: ir.ModelIR) -> None:
        self.ir = model_ir
        # batches walk trees in onnxruntime's float64 tree operator when it is installed
        self._program = Program(_form(model_ir), native_trees=True)
        #: whether the trees are walked in compiled C (:meth:`compile_trees`)
        self.trees_compiled = False

    def encode(self, name: str, values: np.ndarray) -> np.ndarray:
        """Integer codes of categorical input ``name`` (0 missing, m + 1 unknown)."""
        return self._program.encode(name, values)

    def compile_trees(self) -> bool:
        """Walk the trees of batches in compiled C from now on (see
        :mod:`modelport.compile.ctrees`); False, changing nothing, when that cannot be done
        here (not a tree model, no C compiler, ``MODELPORT_TREES`` says otherwise)."""
        from modelport.compile import ctrees
        from modelport.kernel import Forest

        forest = self._program.model_node
        if not isinstance(forest, Forest):
            return False
        if self.trees_compiled:
            return False
        compiled = ctrees.build(self.ir, forest.walk)
        if compiled is None:
            return False
        forest.native = compiled
        self.trees_compiled = True
        return True

    def run(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs, as :func:`~modelport.compile.evaluate` gives them, for checked columns."""
        return self._program.run(cols)

    def run_one(self, row: dict) -> dict[str, np.ndarray]:
        """Outputs for one checked row of plain scalars (see
        :meth:`modelport.kernel.Inputs.one`), without building columns."""
        return self._program.run_one(row)


def _form(model_ir: ir.ModelIR) -> dict:
    """``model_ir.to_dict()`` without its deep copy: the runtime only reads the form, and
    copying every node of a large forest would double the time a model takes to load."""
    node = model_ir.model
    model = {**vars(node), "kind": node.kind}
    if isinstance(node, ir.TreeEnsemble):
        model["trees"] = [vars(t) for t in node.trees]
    return {
        "signature": model_ir.signature.to_dict(),
        "steps": [{**vars(s), "op": s.op} for s in model_ir.steps],
        "model": model,
        "output": vars(model_ir.output),
        "precision": model_ir.precision,
    }
