"""Model URIs: ``churn`` (latest version), ``churn/3`` (a version), ``churn@production`` (an alias)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelport.errors import UserError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
ALIAS_RE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,63}")


@dataclass(frozen=True)
class ModelURI:
    """A parsed model URI; at most one of ``version`` and ``alias`` is set."""

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelURI:
        text = text.strip()
        for prefix in ("models:/", "modelport:/"):
            if text.startswith(prefix):
                text = text[len(prefix):].lstrip("/")
        name, version, alias = text, None, None
        if "@" in text:
            name, alias = text.split("@", 1)
            if not ALIAS_RE.fullmatch(alias):
                raise UserError(
                    f"bad alias in model URI {text!r}: use letters, digits, '_' or '-' "
                    "(e.g. churn@production)"
                )
        elif "/" in text:
            name, v = text.split("/", 1)
            if not v.isdigit() or int(v) < 1:
                raise UserError(
                    f"bad version in model URI {text!r}: a version is a positive number "
                    "(e.g. churn/3)"
                )
            version = int(v)
        check_name(name, text)
        return cls(name, version, alias)

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}/{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def check_name(name: str, context: str | None = None) -> str:
    """Return ``name`` if it is a valid model name, else raise a :class:`UserError`."""
    if not NAME_RE.fullmatch(name or ""):
        where = f" in {context!r}" if context and context != name else ""
        raise UserError(
            f"bad model name {name!r}{where}: use letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_alias(alias: str) -> str:
    if not ALIAS_RE.fullmatch(alias or ""):
        raise UserError(
            f"bad alias {alias!r}: use letters, digits, '_' or '-', starting with a letter"
        )
    return alias
