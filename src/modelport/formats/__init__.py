"""Model formats, one module each, named in :data:`FORMATS`.

- :mod:`~modelport.formats.joblib`: the native estimator pickled, loaded only after its
  sha256 matches the registry's;
- :mod:`~modelport.formats.skops`: the native estimator without pickle, types checked
  against modelport's allow-list;
- :mod:`~modelport.formats.onnx`: a graph run by onnxruntime, converted with skl2onnx, or
  imported;
- :mod:`~modelport.formats.compiled`: the model compiler's intermediate form as JSON, run
  by the kernel's NumPy runtime;
- :mod:`~modelport.formats.pmml`: PMML written by the compiler and scored by pypmml, or
  imported and read into the compiled form;
- :mod:`~modelport.formats.mojo` and :mod:`~modelport.formats.pojo`: H2O models, read
  into the compiled form (MOJO GBM, DRF, GLM) or scored by h2o-genmodel.

Beside them, modules that are not formats of their own:
:mod:`~modelport.formats.native` (the Predictor over a fitted estimator in memory, which
joblib and skops load into and the parity check compares with),
:mod:`~modelport.formats.h2o_jvm` (the JVM and h2o-genmodel scorer MOJOs and POJOs share)
and :mod:`~modelport.formats.pytorch` (a PyTorch module registered as the ONNX graph
``torch.onnx.export`` makes of it).

A format module has:

- ``NAME``: the format's name, its key in :data:`FORMATS`;
- ``EXTRA``: the pip extra that brings its dependencies (``None`` if built in);
- ``TOLERANCE``: the largest difference from the native model accepted by the parity check;
- ``available() -> bool``: whether its dependencies are installed;
- ``convert(model, signature, sample) -> bytes``: the artefact for a fitted native model,
  raising :class:`~modelport.errors.ConversionError` naming the step it cannot represent;
- ``load(data, signature) -> Predictor``.

Formats that can be imported from a file made elsewhere (``onnx``, ``pmml``, ``mojo``,
``pojo``) also have ``inspect(data) -> Signature`` (ONNX's also takes ``task=`` and
``classes=`` for a graph that does not say them; a POJO's takes ``source=``, the file, to
find the genmodel jar beside it); one whose file can be read into other formats (``pmml``,
``mojo``) or says why not (``pojo``) also has ``derived_artefacts``, which
:func:`modelport.register.import_model` calls. No format knows a surface; surfaces only
see Predictors.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from modelport.errors import UserError

FORMATS = {
    "joblib": "modelport.formats.joblib",
    "skops": "modelport.formats.skops",
    "onnx": "modelport.formats.onnx",
    "compiled": "modelport.formats.compiled",
    "pmml": "modelport.formats.pmml",
    "mojo": "modelport.formats.mojo",
    "pojo": "modelport.formats.pojo",
}

#: the formats a scikit-learn-compatible model is converted to at registration, in load order
DEFAULT_FORMATS = ("joblib", "skops", "onnx", "compiled", "pmml")


def get(name: str) -> ModuleType:
    """The module of format ``name``."""
    try:
        path = FORMATS[name]
    except KeyError:
        raise UserError(
            f"unknown model format {name!r}: use one of {', '.join(FORMATS)}"
        ) from None
    return importlib.import_module(path)


def available(name: str) -> bool:
    try:
        return bool(get(name).available())
    except ImportError:
        return False
