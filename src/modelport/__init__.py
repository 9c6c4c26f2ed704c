"""modelport: take a trained machine-learning model into production.

The notebook API::

    import modelport
    v = modelport.log_model(model, "churn", sample=X_train, metrics={"auc": 0.86})
    modelport.set_alias("churn", v.version, "production")
    predictor = modelport.load("churn@production")
    predictor.predict_proba(customers)

``sample=`` is the whole training set: the signature's ranges and vocabularies and the
monitoring reference come from every row; a bounded sub-sample is stored for the parity
proofs. Heavy libraries are imported only when a function that needs them is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from pathlib import Path

    from modelport.predictor import Predictor
    from modelport.registry import Registry, Version

__all__ = ["Registry", "import_model", "load", "log_model", "lookup", "set_alias",
           "__version__"]


def log_model(model: Any, name: str, sample: Any = None, **kwargs: Any) -> Version:
    """Register a fitted model; see :func:`modelport.register.log_model`."""
    from modelport.register import log_model as _log_model

    return _log_model(model, name, sample, **kwargs)


def import_model(path: str | Path, name: str, format: str | None = None, **kwargs: Any) -> Version:
    """Register an ONNX or PMML file; see :func:`modelport.register.import_model`."""
    from modelport.register import import_model as _import_model

    return _import_model(path, name, format, **kwargs)


def load(uri: str, format: str | None = None, *, strict: bool = False) -> Predictor:
    """A Predictor for ``churn``, ``churn/3`` or ``churn@production``.

    ``format`` picks the artefact: the native model by default (exact), ``"fastest"`` for
    the one the serving surfaces use (:func:`modelport.scoring.choice.choose`), or a format
    name. A number outside the training range or an unseen category is scored with an
    :class:`~modelport.kernel.InputWarning`; ``strict=True`` refuses it instead.
    """
    from modelport.registry import Registry

    registry = Registry()
    if format == "fastest":
        from modelport.scoring.choice import choose

        version = registry.get(uri)
        predictor = registry.load(version, format=choose(version, "row").format)
    else:
        predictor = registry.load(uri, format=format)
    if strict:
        from modelport.scoring.checks import InputPolicy

        predictor.policy = InputPolicy.of(strict=True)
    return predictor


def set_alias(name: str, version: int, alias: str, reason: str | None = None) -> Version:
    """Point ``name@alias`` at ``version`` (the move is kept in the alias history)."""
    from modelport.registry import Registry

    return Registry().set_alias(name, version, alias, reason=reason)


def lookup(model: str, id: Any, store: str | None = None) -> dict[str, Any] | None:
    """The stored scores of ``id`` in a lookup table; see :func:`modelport.serve.lookup.lookup`."""
    from modelport.serve.lookup import lookup as _lookup

    return _lookup(model, id, store=store)


def __getattr__(attr: str) -> type[Registry]:
    if attr == "Registry":
        from modelport.registry import Registry

        return Registry
    raise AttributeError(f"module 'modelport' has no attribute {attr!r}")
