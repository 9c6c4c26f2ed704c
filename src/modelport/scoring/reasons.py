"""Reason codes on every surface: how many a request may ask for, which predictor gives
them, and the one shape HTTP, batch files, lookups and streams carry them in.

A surface asks for ``k`` reasons (``"explain": 3`` in a request, ``--explain 3`` on the
command line); :func:`count` checks the number. :func:`explaining` finds the predictor of
a version that can explain (the serving one when its format holds an intermediate form,
else the version's compiled or native artefact), and :func:`top` gives, per row, the ``k``
input columns that moved the row's raw score most (see :mod:`modelport.compile.explain`):

- one raw score (a regressor, a binary classifier's log-odds of its second class): those
  contributions;
- two raw scores of a two-class model (forests give class probabilities): the second
  class's, as for the log-odds;
- more (multiclass): the contributions to the predicted class's raw score, named in
  ``output``.

Each row's ``base`` is the score every row starts from; ``base`` plus all contributions is
the row's raw score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.compile.explain import count as count  # surfaces check a request here
from modelport.compile.explain import explained, ranked
from modelport.errors import UserError
from modelport.kernel import Coded

if TYPE_CHECKING:
    from modelport.predictor import Predictor
    from modelport.registry import Registry, Version

#: the formats that hold an intermediate form to read contributions from, best first
EXPLAINING_FORMATS = ("compiled", "joblib", "skops")


def explaining_format(version: Version, serving: str | None = None) -> str | None:
    """The artefact of ``version`` reasons are read from: ``serving`` (the format that
    scores) when it holds an intermediate form, else the first accepted in
    :data:`EXPLAINING_FORMATS`; None when the version has none."""
    if serving in EXPLAINING_FORMATS:
        return serving
    accepted = version.accepted_formats()
    return next((f for f in EXPLAINING_FORMATS if f in accepted), None)


def explaining(predictor: Predictor, registry: Registry | None = None,
               version: Version | None = None) -> Predictor:
    """A predictor of the same version that can explain: ``predictor`` itself when its
    format can, else the version's artefact :func:`explaining_format` names, loaded from
    ``registry``. A :class:`UserError` when there is none."""
    if predictor.explains:
        return predictor
    if registry is not None and version is not None:
        fmt = explaining_format(version)
        if fmt is not None:
            return registry.load(version, format=fmt)
    raise UserError(
        f"model {predictor.describe()} cannot be explained: reasons are read from an "
        f"intermediate form, which its {predictor.format or 'loaded'} artefact does not "
        f"hold and the version has no {', '.join(EXPLAINING_FORMATS)} artefact to read "
        "it from"
    )


class Explains:
    """What a surface's loaded version does to give reasons: it holds ``predictor``, may
    hold ``find_explainer`` (a function giving the version's explaining predictor, e.g.
    :func:`explaining` with the registry) and keeps the one found in ``_explainer``."""

    predictor: Any
    find_explainer: Any
    _explainer: Any

    def explainer(self) -> Predictor:
        """The predictor giving this version's reasons, found on first use and kept; a
        :class:`UserError` when the version cannot explain."""
        if self._explainer is None:
            found = (self.find_explainer() if self.find_explainer is not None
                     else explaining(self.predictor))
            warm_up(found)
            self._explainer = found
        return self._explainer


def warm_up(predictor: Predictor) -> None:
    """Build ``predictor``'s explanation tables now (one made-up row explained), so the
    first real request pays only for its rows; a model that cannot explain raises here."""
    row: dict[str, np.ndarray] = {}
    for col in predictor.signature.inputs:
        if col.kind == "numeric":
            row[col.name] = np.array([col.min if col.min is not None else 0.0])
        else:
            row[col.name] = np.array([col.categories[0] if col.categories else np.nan],
                                     dtype=object)
    predictor.contributions_checked(row)


@dataclass
class Reasons:
    """The top ``k`` reasons of ``n`` rows: arrays of shape (n,) and (n, k)."""

    base: np.ndarray
    columns: np.ndarray
    values: np.ndarray
    contributions: np.ndarray
    #: the class each row's reasons explain, when the model has several raw scores
    output: np.ndarray | None = None

    def records(self) -> list[dict[str, Any]]:
        """Per row ``{"base", "reasons": [{"column", "value", "contribution"}], "output"?}``
        with plain JSON values (a missing input value is null)."""
        base = self.base.tolist()
        contributions = self.contributions.tolist()
        outputs = self.output.tolist() if self.output is not None else None
        out = []
        for i, cols in enumerate(self.columns.tolist()):
            row: dict[str, Any] = {"base": base[i], "reasons": [
                {"column": c, "value": _plain(v), "contribution": x}
                for c, v, x in zip(cols, self.values[i], contributions[i], strict=True)]}
            if outputs is not None:
                row["output"] = outputs[i]
            out.append(row)
        return out

    def table(self) -> dict[str, np.ndarray]:
        """The columns a batch output and the lookup table carry: ``reason_1..k`` (input
        column names) and ``contribution_1..k``."""
        out: dict[str, np.ndarray] = {}
        for j in range(self.columns.shape[1]):
            out[f"reason_{j + 1}"] = self.columns[:, j]
            out[f"contribution_{j + 1}"] = self.contributions[:, j]
        return out


def empty_table(k: int) -> dict[str, np.ndarray]:
    """:meth:`Reasons.table` of no rows."""
    out: dict[str, np.ndarray] = {}
    for j in range(1, k + 1):
        out[f"reason_{j}"] = np.zeros(0, dtype=object)
        out[f"contribution_{j}"] = np.zeros(0)
    return out


def top(predictor: Predictor, cols: dict[str, Any], k: int) -> Reasons:
    """The ``k`` reasons of each row of ``cols`` (columns the scoring core checked) from
    ``predictor`` (one that :func:`explaining` gave)."""
    base, contrib = predictor.contributions_checked(cols)
    names = np.asarray(predictor.signature.names, dtype=object)
    n = contrib.shape[0]
    n_out = contrib.shape[2] if contrib.ndim == 3 else 1
    base, contrib, pick = explained(base, contrib)
    output: np.ndarray | None = None
    if pick is not None:
        classes = predictor.classes
        labels = np.asarray(classes if classes is not None and len(classes) == n_out
                            else range(n_out), dtype=object)
        output = labels[pick]
    order = ranked(contrib, k)
    rows = np.arange(n)[:, None]
    values = np.empty((n, k), dtype=object)
    signature = predictor.signature.names
    if n * k <= 64:  # a request's few rows: no pass over every column
        for i, picked in enumerate(order.tolist()):
            for r, j in enumerate(picked):
                column = cols[signature[j]]
                values[i, r] = column[i:i + 1].decode()[0] if isinstance(column, Coded) \
                    else column[i]
    else:
        for j, name in enumerate(signature):
            hit = order == j
            if hit.any():
                column = cols[name]
                column = column.decode() if isinstance(column, Coded) else column
                values[hit] = np.asarray(column, dtype=object)[np.nonzero(hit)[0]]
    return Reasons(base, names[order], values, contrib[rows, order], output)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
