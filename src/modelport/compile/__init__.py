"""The model compiler: a fitted model as a small typed intermediate form, and backends over it.

:func:`to_ir` reads a fitted scikit-learn pipeline (or LightGBM / XGBoost model) into a
:class:`ModelIR` that is JSON-serialisable (:meth:`ModelIR.to_dict` /
:meth:`ModelIR.from_dict`); :func:`evaluate` runs it in NumPy to prove it equals the native
model; :func:`export` writes a registered model as any backend. One module per part:

- :mod:`~modelport.compile.ir`: the intermediate form (inputs, steps, one model node, output);
- readers: :mod:`~modelport.compile.from_sklearn` (scikit-learn, LightGBM, XGBoost),
  :mod:`~modelport.compile.from_pmml` (PMML made elsewhere) and
  :mod:`~modelport.compile.from_mojo` (H2O MOJOs: GBM, DRF, GLM);
- :mod:`~modelport.compile.numpy_eval`: the readable float64 evaluation, the proof that the
  form computes what the native model does;
- :mod:`~modelport.compile.fast`: the form prepared for the ``compiled`` format, run by the
  kernel (:mod:`modelport.kernel`); :mod:`~modelport.compile.ctrees`: tree
  ensembles compiled to machine code with the system C compiler for batch jobs;
- backends: :mod:`~modelport.compile.sql` (PostgreSQL, MariaDB/MySQL, SQLite),
  :mod:`~modelport.compile.pmml` (PMML 4.4) and :mod:`~modelport.compile.codegen`
  (Python, JavaScript, C, Java, Go);
- :mod:`~modelport.compile.explain`: exact per-column contributions (TreeSHAP, linear)
  read from the form, behind ``Predictor.explain``;
- :mod:`~modelport.compile.proof`: the form checked against the native model on the
  registered sample, generated Python run in a separate interpreter, SQL evaluated in a
  database;
- :mod:`~modelport.compile.exporter` (``modelport export``) and
  :mod:`~modelport.compile.bundle` (the in-app bundle, ``--format bundle``).

Untrusted names reach generated code, SQL and XML only through :mod:`modelport.quoting`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modelport.compile.from_sklearn import to_ir
from modelport.compile.ir import ModelIR
from modelport.compile.numpy_eval import evaluate

if TYPE_CHECKING:
    from modelport.registry import Registry


def export(uri: str, format: str, out: str | Path, *, dialect: str = "postgresql",
           check_url: str | None = None, registry: Registry | None = None,
           explain: int | str | None = None) -> list[Path]:
    """Write a registered model as SQL, PMML, source code, ONNX or compiled JSON (see
    :func:`modelport.compile.exporter.export`)."""
    from modelport.compile.exporter import export as _export

    return _export(uri, format, out, dialect=dialect, check_url=check_url, registry=registry,
                   explain=explain)


__all__ = ["ModelIR", "evaluate", "export", "to_ir"]
