"""Model formats, one module each.

A format module has:

- ``NAME``: the format's name (``joblib``, ``skops``, ``onnx``, ``pmml``);
- ``EXTRA``: the pip extra that brings its dependencies (``None`` if built in);
- ``TOLERANCE``: the largest difference from the native model accepted by the parity check;
- ``available() -> bool``: whether its dependencies are installed;
- ``convert(model, signature, sample) -> bytes``: the artefact for a fitted native model,
  raising :class:`~modelport.errors.ConversionError` naming the step it cannot represent;
- ``load(data, signature) -> Predictor``.

Formats that can be imported from a file made elsewhere (``onnx``, ``pmml``, ``mojo``,
``pojo``) also have ``inspect(data) -> Signature`` (a POJO's takes ``source=``, the file, to
find the genmodel jar beside it); one whose file can be read into other formats (``mojo``)
or says why not (``pojo``) also has ``derived_artefacts``, which :func:`modelport.register.import_model` calls. No
format knows a surface; surfaces only see Predictors.
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
