"""The model compiler: a fitted model as a small typed intermediate form, and backends over it.

:func:`to_ir` reads a fitted scikit-learn pipeline (or LightGBM / XGBoost model) into a
:class:`ModelIR` that is JSON-serialisable (:meth:`ModelIR.to_dict` /
:meth:`ModelIR.from_dict`); :func:`evaluate` runs it in NumPy to prove it equals the native
model; backends such as :mod:`modelport.compile.pmml` write it out.
"""

from __future__ import annotations

from modelport.compile.from_sklearn import to_ir
from modelport.compile.ir import ModelIR
from modelport.compile.numpy_eval import evaluate

__all__ = ["ModelIR", "evaluate", "to_ir"]
