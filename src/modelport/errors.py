"""Errors modelport raises.

A :class:`UserError` is one the user caused and can fix: the command line prints its
message on one line and exits with code 2, never a traceback.
"""

from __future__ import annotations

from types import ModuleType


class ModelportError(Exception):
    """Base class of every error modelport raises on purpose."""


class UserError(ModelportError):
    """Bad input: the message names the input and says how to fix it."""


class NotFound(UserError):
    """An unknown model, version, alias or file."""


class MissingExtra(UserError):
    """An optional dependency is not installed."""

    def __init__(self, extra: str, module: str, what: str | None = None) -> None:
        self.extra = extra
        self.module = module
        needed = f" for {what}" if what else ""
        super().__init__(
            f"the Python package '{module}' is needed{needed} but is not installed: "
            f"pip install 'modelport[{extra}]'"
        )


class ArtefactTampered(UserError):
    """An artefact's bytes no longer match the sha256 the registry recorded."""


class ConversionError(ModelportError):
    """A format cannot represent a model (or one of its steps)."""


def require(module: str, extra: str, what: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtra` naming the pip extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(extra, module.split(".")[0], what) from exc
