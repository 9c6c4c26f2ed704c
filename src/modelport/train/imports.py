"""The classes a spec may name: the allow-list of modules and the one checked import.

``model.estimator``, an online learner, its pipeline steps and drift detectors are imported
by name, so a spec could name any class Python can import (``subprocess.Popen`` with
``params: {args: ..., shell: true}`` runs a command when the spec is checked). A spec
imports only from :data:`ALLOWED_MODULES` and from the module prefixes listed in the
environment variable ``MODELPORT_ALLOWED_MODULES``, checked before anything is imported;
the class itself must be defined inside one of them. Training specs, online specs and
AutoML families all import through :func:`import_class`, which imports nothing of theirs.
"""

from __future__ import annotations

import difflib
import importlib
import os

from modelport.errors import UserError

_EXTRAS = {"lightgbm": "gbm", "xgboost": "gbm"}
#: the packages a spec may import classes from unless the environment adds more
ALLOWED_MODULES = ("sklearn", "lightgbm", "xgboost", "river", "modelport")
#: the environment variable that adds module prefixes to :data:`ALLOWED_MODULES`
ALLOWED_MODULES_ENV = "MODELPORT_ALLOWED_MODULES"


def allowed_modules() -> tuple[str, ...]:
    """The module prefixes a spec may import classes from: :data:`ALLOWED_MODULES` and those
    listed in ``MODELPORT_ALLOWED_MODULES`` (comma-separated). A prefix covers the module of
    that name and the modules inside it (``mycompany.models`` covers
    ``mycompany.models.churn``, not ``mycompany.modelsx``)."""
    extra = []
    for item in os.environ.get(ALLOWED_MODULES_ENV, "").split(","):
        item = item.strip()
        if not item:
            continue
        if not all(part.isidentifier() for part in item.split(".")):
            raise UserError(f"{ALLOWED_MODULES_ENV}: {item!r} is not a module name; list "
                            "dotted module prefixes separated by commas, e.g. "
                            "mycompany.models,mycompany.features")
        extra.append(item)
    return (*ALLOWED_MODULES, *dict.fromkeys(extra))


def module_allowed(module: str, allowed: tuple[str, ...] | None = None) -> bool:
    """Whether classes of ``module`` may be imported by a spec (see :func:`allowed_modules`)."""
    prefixes = allowed_modules() if allowed is None else allowed
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def import_class(dotted: str, label: str, key: str = "model.estimator") -> type:
    """The class ``dotted`` (``module.Class``) names, for the spec ``label``'s field ``key``.

    The module is checked against :func:`allowed_modules` before anything is imported, and
    the class must be defined inside an allowed module too (a name an allowed module merely
    imports from elsewhere is refused). Every mistake raises a
    :class:`~modelport.errors.UserError` naming the field and the fix.
    """
    example = "e.g. sklearn.ensemble.HistGradientBoostingClassifier"
    text = str(dotted)
    module_name, _, class_name = text.rpartition(".")
    if not module_name or not all(part.isidentifier() for part in text.split(".")):
        raise UserError(f"{label}: {key}: {text!r} is not a full import path; write "
                        f"module.Class, {example}")
    allowed = allowed_modules()
    if not module_allowed(module_name, allowed):
        raise UserError(f"{label}: {key}: {text!r} is not in a module specs may import from "
                        f"({', '.join(allowed)}); name a class from one of them, or, if "
                        f"you trust {module_name} to run with your permissions, add it to "
                        f"{ALLOWED_MODULES_ENV} (comma-separated module prefixes)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        top = module_name.split(".")[0]
        hint = (f"pip install 'modelport[{_EXTRAS[top]}]'" if top in _EXTRAS
                else f"check the path ({example})")
        raise UserError(f"{label}: {key}: cannot import {module_name!r} ({exc}); "
                        f"{hint}") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        close = difflib.get_close_matches(class_name, [n for n in dir(module) if n[:1].isupper()],
                                          n=1)
        hint = f"did you mean {module_name}.{close[0]}?" if close else f"check the name ({example})"
        raise UserError(f"{label}: {key}: {module_name!r} has no class {class_name!r}; {hint}")
    if not module_allowed(cls.__module__, allowed):
        raise UserError(f"{label}: {key}: {text!r} is {cls.__module__}.{cls.__qualname__}, "
                        f"outside the modules specs may import from ({', '.join(allowed)}); "
                        f"name a class defined in one of them, or add {cls.__module__} to "
                        f"{ALLOWED_MODULES_ENV} if you trust it")
    return cls
