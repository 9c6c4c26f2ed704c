"""What every spec file shares: sections declared as typed models, read with errors that
name the key and the fix.

A spec's shape (which sections, which keys, which types, which ranges) is declared once as
pydantic models built on :class:`Section`; :func:`read` checks a raw mapping against one and
turns the first problem into a :class:`~modelport.errors.UserError` in the form every spec
message has: ``FILE: key.path: what is wrong; the fix``. A model says how to fix each of its
keys in ``hints`` (a key -> function of the given value -> text); a key the model does not
declare is answered with the closest known key and the list of known ones.

The field types and sections more than one spec has (a model name, a task, columns, an
alias, formats, metrics; the estimator and promotion keys) are declared here once, so the
training and the online learning specs accept and refuse the same values in the same words.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from modelport.errors import UserError
from modelport.signature import TASKS

#: text for a key that is missing, keyed by nothing but the key (a model's hints override)
MISSING = "missing"


class Section(BaseModel):
    """A spec section: unknown keys are refused, and types are taken as written (``"3"`` is
    not a number, ``true`` is not 1)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    #: how to fix each key: key -> (value -> message); ``None`` when the key is missing
    hints: ClassVar[Mapping[str, Callable[[Any], str]]] = {}



SectionT = TypeVar("SectionT", bound=Section)

def did_you_mean(value: Any, choices: Iterable[Any]) -> str:
    """``"did you mean 'x'? "`` for the closest of ``choices``, or nothing."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def keys(model: type[Section]) -> tuple[str, ...]:
    """The keys a section accepts, in the order it declares them."""
    return tuple(model.model_fields)


def whole(least: int) -> Callable[[Any], str]:
    """The hint of a key that takes a whole number of at least ``least``."""
    return lambda value: f"expected a whole number of at least {least}, got {value!r}"


def number(least: float) -> Callable[[Any], str]:
    """The hint of a key that takes a number (whole or not) of at least ``least``."""
    return lambda value: f"expected a number of at least {least:g}, got {value!r}"


# Field types both specs use. Each checks its own value and says what is wrong in words a
# spec's author can act on; what depends on another key (metrics on the task) stays with
# the spec that reads it.

#: a name that is not empty: a column, an event field, a class path
Name = Annotated[str, Field(min_length=1)]
#: a column or event field: a name, or a number as YAML reads ``2024``
Column = Name | int


def _each_once(names: list[str]) -> list[str]:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"lists {name!r} twice; list each once")
        seen.add(name)
    return names


#: the columns (fields) a model learns from: at least one, each named once
Features = Annotated[list[Name], Field(min_length=1), AfterValidator(_each_once)]


def _model_name(value: str | int) -> str:
    from modelport.uri import check_name

    try:
        return check_name(str(value))
    except UserError as exc:
        raise ValueError(str(exc)) from None


#: the name versions are registered under (a number such as ``2024`` is read as its text)
ModelName = Annotated[Name | int, AfterValidator(_model_name)]


def _task(value: Any) -> Any:
    if not isinstance(value, str) or value not in TASKS:
        raise ValueError(f"unknown task {value!r}; use one of {', '.join(TASKS)}")
    return value


#: what is learnt: one of :data:`~modelport.signature.TASKS`
Task = Annotated[str, BeforeValidator(_task)]


def _alias(value: Any) -> Any:
    from modelport.uri import check_alias

    if not isinstance(value, str):
        raise ValueError(f"expected an alias name, e.g. production; got {value!r}")
    try:
        return check_alias(value)
    except UserError as exc:
        raise ValueError(str(exc)) from None


#: a registry alias a spec moves (``production``, ``online-latest``...)
Alias = Annotated[str, BeforeValidator(_alias)]


def _formats(value: Any) -> Any:
    from modelport.formats import FORMATS

    listed = [value] if isinstance(value, str) else value
    if not isinstance(listed, list) or not listed \
            or any(not isinstance(f, str) or f not in FORMATS for f in listed):
        raise ValueError(f"expected a list of formats from {', '.join(FORMATS)}, e.g. "
                         f"[joblib, onnx]; got {value!r}")
    return listed


#: the formats a model is converted to: a list of :data:`~modelport.formats.FORMATS`
#: names, or one name alone
Formats = Annotated[list[str], BeforeValidator(_formats)]


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


#: metric names: a list of at least one, or one name alone (which ones a task has is
#: checked by the spec, which knows the task)
Metrics = Annotated[list[Name], BeforeValidator(_listed), Field(min_length=1)]


class EstimatorKeys(Section):
    """The keys of every section that names an estimator: its dotted class path and the
    parameters it is made with."""

    estimator: str | None = None
    params: dict[Any, Any] | None = None
    hints = {"estimator": lambda v: f"expected a dotted class path, got {v!r}",
             "params": lambda v: f"expected a mapping of parameter: value, got {v!r} "
             "(e.g. params: {max_iter: 200})"}


class PromotionKeys(Section):
    """The keys of every promotion section: the alias a better model earns (``null``: none,
    where a spec can promote nothing), and the metric that says which is better."""

    alias: Alias | None = "production"
    metric: str | None = None
    hints = {"metric": lambda v: f"unknown metric {v!r}"}


def read(model: type[SectionT], raw: Mapping[str, Any], label: str,
         prefix: str = "") -> SectionT:
    """``raw`` checked against ``model``; the first problem as a UserError naming its key."""
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise _user_error(model, raw, _first(exc.errors(include_url=False)), label,
                          prefix) from None


def _first(errors: list[Any]) -> Any:
    """The error to report: among those about the first key pydantic complains of, the one
    that reaches deepest. A key that takes a name or a section fails once per branch; the
    branch the value was meant for (a mapping: the section) is the one that got furthest."""
    key = errors[0]["loc"][:1]
    return max((e for e in errors if e["loc"][:1] == key), key=lambda e: len(e["loc"]))


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
        given = isinstance(value, Mapping) and key in value
        value = value.get(key) if isinstance(value, Mapping) else None
        hint = owner.hints.get(key)
        inner = _section_of(owner, key)
        if inner is not None and loc and (isinstance(value, Mapping) or not given):
            # a section left out is checked as an empty one: its own keys are missing
            owner, value = inner, value if isinstance(value, Mapping) else {}
            if loc[0] == inner.__name__:  # the section's branch of a union
                loc.pop(0)
            continue
        where = ".".join(path)
        if inner is not None and not isinstance(value, Mapping) and error["type"] != "missing":
            text = hint(value) if hint is not None else (
                f"expected a mapping of {', '.join(keys(inner))}, got {value!r}")
            return UserError(f"{label}: {where}: {text}")
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
    annotation = model.model_fields[key].annotation
    candidates = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        candidates = list(typing.get_args(annotation))
    for c in candidates:
        if isinstance(c, type) and issubclass(c, Section):
            return c
    return None
