"""What every spec file shares: sections declared as typed models, read with errors that
name the key and the fix.

A spec's shape (which sections, which keys, which types, which ranges) is declared once as
pydantic models built on :class:`Section`; :func:`read` checks a raw mapping against one and
turns the first problem into a :class:`~modelport.errors.UserError` in the form every spec
message has: ``FILE: key.path: what is wrong; the fix``. A model says how to fix each of its
keys in ``hints`` (a key -> function of the given value -> text); a key the model does not
declare is answered with the closest known key and the list of known ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from modelport.errors import UserError

#: text for a key that is missing, keyed by nothing but the key (a model's hints override)
MISSING = "missing"


class Section(BaseModel):
    """A spec section: unknown keys are refused, and types are taken as written (``"3"`` is
    not a number, ``true`` is not 1)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    #: how to fix each key: key -> (value -> message); ``None`` when the key is missing
    hints: ClassVar[Mapping[str, Callable[[Any], str]]] = {}


def did_you_mean(value: Any, choices) -> str:
    """``"did you mean 'x'? "`` for the closest of ``choices``, or nothing."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def keys(model: type[Section]) -> tuple[str, ...]:
    """The keys a section accepts, in the order it declares them."""
    return tuple(model.model_fields)


def read(model: type[Section], raw: Mapping[str, Any], label: str, prefix: str = ""):
    """``raw`` checked against ``model``; the first problem as a UserError naming its key."""
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise _user_error(model, raw, exc.errors(include_url=False)[0], label,
                          prefix) from None


def _user_error(model: type[Section], raw: Mapping[str, Any], error: Any, label: str,
                prefix: str) -> UserError:
    # walk the error's location through the nested sections to the key it is about; union
    # branches and list positions in the location are not keys
    owner: type[Section] = model
    value: Any = raw
    path = [prefix] if prefix else []
    loc = list(error["loc"])
    while loc:
        key = loc.pop(0)
        if not isinstance(key, str):
            break
        if key not in owner.model_fields:
            if error["type"] == "extra_forbidden":
                path.append(key)
                where = ".".join(path)
                return UserError(f"{label}: {where}: unknown key; {did_you_mean(key, keys(owner))}"
                                 f"known keys here: {', '.join(keys(owner))}")
            break  # a union branch's tag (str, dict...): the value is the field's
        path.append(key)
        value = value.get(key) if isinstance(value, Mapping) else None
        hint = owner.hints.get(key)
        inner = _section_of(owner, key)
        if inner is not None and isinstance(value, Mapping) and loc:
            owner = inner
            continue
        where = ".".join(path)
        if inner is not None and not isinstance(value, Mapping) and error["type"] != "missing":
            return UserError(f"{label}: {where}: expected a mapping of "
                             f"{', '.join(keys(inner))}, got {value!r}")
        if error["type"] == "missing":
            text = hint(None) if hint is not None else MISSING
        elif error["type"] in ("value_error", "assertion_error") and error.get("ctx"):
            text = str(error["ctx"].get("error", error["msg"]))
        else:
            text = hint(value) if hint is not None else f"{error['msg']}, got {value!r}"
        return UserError(f"{label}: {where}: {text}")
    where = ".".join(path) or "spec"
    return UserError(f"{label}: {where}: {error['msg']}")


def _section_of(model: type[Section], key: str) -> type[Section] | None:
    """The section model a key of ``model`` holds, if it holds one."""
    import types
    import typing

    annotation = model.model_fields[key].annotation
    candidates = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        candidates = list(typing.get_args(annotation))
    for c in candidates:
        if isinstance(c, type) and issubclass(c, Section):
            return c
    return None
