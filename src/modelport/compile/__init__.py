"""The model compiler: a fitted model as a small typed intermediate form, and backends over it.

:func:`to_ir` reads a fitted scikit-learn pipeline (or LightGBM / XGBoost model) into a
:class:`ModelIR` that is JSON-serialisable (:meth:`ModelIR.to_dict` /
:meth:`ModelIR.from_dict`); :func:`evaluate` runs it in NumPy to prove it equals the native
model; backends write it out: :mod:`~modelport.compile.fast` (the prepared NumPy runtime of
the ``compiled`` format), :mod:`~modelport.compile.sql`, :mod:`~modelport.compile.pmml` and
:mod:`~modelport.compile.codegen` (Python, JavaScript, C, Java, Go); :func:`export` writes a
registered model as any of them.
"""

from __future__ import annotations

from modelport.compile.from_sklearn import to_ir
from modelport.compile.ir import ModelIR
from modelport.compile.numpy_eval import evaluate


def export(uri: str, format: str, out, *, dialect: str = "postgresql",
           check_url: str | None = None, registry=None):
    """Write a registered model as SQL, PMML, source code, ONNX or compiled JSON (see
    :func:`modelport.compile.exporter.export`)."""
    from modelport.compile.exporter import export as _export

    return _export(uri, format, out, dialect=dialect, check_url=check_url, registry=registry)


__all__ = ["ModelIR", "evaluate", "export", "to_ir"]
