"""The Predictor contract: a columnar batch in, a columnar batch out.

Every model format loads into a :class:`Predictor`; every surface (batch, HTTP, streams,
triggers, in-app) scores through one. A format implements :meth:`Predictor._run` over a
DataFrame already checked and coerced to the model's :class:`~modelport.signature.Signature`;
the base class does the rest.

Outputs, by task:

- classification: ``label`` (n,) and, when the model gives probabilities, ``proba`` (n, k)
  with columns in ``signature.classes`` order;
- regression: ``value`` (n,) float64;
- clustering: ``cluster`` (n,) int64.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import UserError
from modelport.kernel import Coded
from modelport.signature import Signature

if TYPE_CHECKING:
    import pandas as pd

    from modelport.compile.explain import Background, Rows
    from modelport.kernel import Inputs
    from modelport.scoring.checks import InputPolicy

__all__ = ["Coded", "Predictor"]

PRIMARY_OUTPUT = {"classification": "label", "regression": "value", "clustering": "cluster"}


class Predictor(ABC):
    """A loaded model that scores batches of rows."""

    #: the format this predictor was loaded from (``joblib``, ``skops``, ``onnx``, ``pmml``...)
    format: str = ""
    #: whether :meth:`_run_one` scores one clean row without building columns
    scores_one_row: bool = False

    def __init__(self, signature: Signature) -> None:
        self.signature = signature
        self.model_name: str | None = None
        self.model_version: int | None = None
        #: what a value outside what training saw does to its row (see
        #: :class:`~modelport.scoring.checks.InputPolicy`); flagged by default
        self.policy: InputPolicy | None = None
        #: the rows :meth:`explain` measures a linear model's contributions from when it is
        #: given none: a function returning them (``Registry.load`` sets the version's
        #: registered sample)
        self.background: Background | None = None

    @property
    def task(self) -> str:
        return self.signature.task

    @property
    def classes(self) -> list | None:
        return self.signature.classes

    @property
    def has_proba(self) -> bool:
        return self.task == "classification" and self.classes is not None and self._gives_proba()

    def _gives_proba(self) -> bool:
        return True

    def prepare_batch(self) -> bool:
        """Get ready for a long job (a runtime may build something faster once); True if
        it changed the runtime. Most predictors have nothing to do."""
        return False

    @abstractmethod
    def _run(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Score a coerced DataFrame; return the outputs named in the module docstring."""

    def run(self, data: Any) -> dict[str, np.ndarray]:
        """Score ``data`` (DataFrame, Arrow table, dict, list of dicts, 2-D array).

        Rows are checked by the scoring core's row checker (fields the model does not take
        are ignored): a row that cannot be scored fails the call with a :class:`UserError`
        naming it; a value outside what training saw emits an
        :class:`~modelport.kernel.InputWarning` (refused under a strict policy).
        """
        if self.scores_one_row and type(data) is dict:
            # one clean row as plain scalars (nothing unusual: no flag, no extra field)
            clean = self._row_checker().one(data)
            if clean is not None:
                return self._run_one(clean)
        import warnings

        from modelport.kernel import InputWarning
        from modelport.scoring.checks import FLAG, check, raise_first

        checked = check(data, self.signature, self.policy or FLAG, unknown="ignore")
        raise_first(checked)
        for flag in checked.flags:
            warnings.warn(flag.message, InputWarning, stacklevel=2)
        if checked.rows == 0:
            return self.empty_outputs()
        return self._run_batch(checked.columns)

    def _row_checker(self) -> Inputs:
        """The scoring core's checker of this predictor's rows under its policy (fields the
        model does not take ignored), found once per policy."""
        policy = self.policy
        found = self.__dict__.get("_checker")
        if found is None or found[0] is not policy:
            from modelport.scoring.checks import FLAG, checker

            found = self.__dict__["_checker"] = (
                policy, checker(self.signature, policy or FLAG, unknown="ignore"))
        return found[1]

    def _run_one(self, row: dict) -> dict[str, np.ndarray]:
        """Outputs for one clean row of plain scalars (:meth:`modelport.kernel.Inputs.one`),
        for a format whose :attr:`scores_one_row` says it has a path that skips building
        columns."""
        raise NotImplementedError

    def wants_compiled_trees(self, min_nodes: int) -> bool:
        """Whether this predictor scores a tree ensemble of at least ``min_nodes`` nodes
        whose trees could still be compiled (:meth:`prepare_batch`); most cannot."""
        return False

    def run_checked(self, cols: dict) -> dict[str, np.ndarray]:
        """Score columns the scoring core already checked (numbers as float64, categories as
        strings or :class:`Coded`), as surfaces do; no checks run again."""
        for values in cols.values():
            if values.__class__ is Coded:
                return self._run_batch(cols)
        return self._run_columns(cols)

    def _run_columns(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Score checked columns; formats that need no DataFrame override this."""
        import pandas as pd

        n = len(next(iter(cols.values())))
        return self._run(pd.DataFrame(cols, index=pd.RangeIndex(n)))

    def _run_batch(self, cols: dict) -> dict[str, np.ndarray]:
        """Score checked columns whose categorical ones may be :class:`Coded` (dictionary
        encoded, as columnar readers give them); formats that score codes override this."""
        return self._run_columns({k: v.decode() if isinstance(v, Coded) else v
                                  for k, v in cols.items()})

    def predict(self, data: Any) -> np.ndarray:
        """Labels, values or cluster ids, one per row."""
        return self.run(data)[PRIMARY_OUTPUT[self.task]]

    def predict_proba(self, data: Any) -> np.ndarray:
        """Class probabilities, one row per input row, columns in ``classes`` order."""
        if not self.has_proba:
            raise UserError(
                f"model {self.describe()} gives no probabilities (task {self.task}); "
                "use predict instead"
            )
        return self.run(data)["proba"]

    def explain(self, rows: Any, top: int = 3, background: Any = None) -> pd.DataFrame:
        """The ``top`` input columns that moved each row's raw score most, as a DataFrame.

        One row per (input row, rank) with ``row``, ``rank``, ``column``, ``value`` (the
        input value), ``contribution`` (in the raw score's space: log-odds for a binary
        classifier, the value for a regressor) and ``base`` (the score every row starts
        from; ``base`` plus all columns' contributions is the row's raw score). A model
        with one raw score per class adds an ``output`` column (the class) and ranks each
        class apart. ``frame.attrs["base"]`` holds the base per output. Linear models are
        measured from the mean of ``background`` (rows), by default :attr:`background`.
        See :mod:`modelport.compile.explain`; a predictor that cannot explain raises a
        :class:`UserError` saying why.
        """
        import pandas as pd

        frame = self.signature.coerce(rows)
        base, contrib = self._contributions(frame, self._background_reader(background))
        if contrib.ndim == 2:
            contrib = contrib[:, :, None]
        n_out = contrib.shape[2]
        labels = (self.classes if n_out > 1 and self.classes is not None
                  and len(self.classes) == n_out else list(range(n_out)))
        names = np.asarray(self.signature.names, dtype=object)
        top = max(0, min(int(top), len(names)))
        parts = []
        for k in range(n_out):
            c = contrib[:, :, k]
            # stable: equal magnitudes keep signature order
            order = np.argsort(-np.abs(c), axis=1, kind="stable")[:, :top]
            rows_idx = np.repeat(np.arange(len(frame)), top)
            cols_idx = order.reshape(-1)
            part = {
                "row": rows_idx,
                "rank": np.tile(np.arange(1, top + 1), len(frame)),
                "column": names[cols_idx],
                "value": [frame.iat[r, j] for r, j in zip(rows_idx, cols_idx, strict=True)],
                "contribution": c[rows_idx, cols_idx],
                "base": np.full(len(rows_idx), base[k]),
            }
            if n_out > 1:
                part = {"row": part.pop("row"), "output": [labels[k]] * len(rows_idx),
                        "position": k, **part}
            parts.append(pd.DataFrame(part))
        out = pd.concat(parts, ignore_index=True)
        if n_out > 1:
            out = (out.sort_values(["row", "position", "rank"], kind="stable")
                   .drop(columns="position").reset_index(drop=True))
        out.attrs["base"] = base
        return out

    @property
    def explains(self) -> bool:
        """True when this predictor's format can give contributions (:meth:`explain`)."""
        return type(self)._contributions is not Predictor._contributions

    def contributions_checked(self, cols: dict) -> tuple[np.ndarray, np.ndarray]:
        """``(base, contrib)`` (see :mod:`modelport.compile.explain`) for columns the scoring
        core already checked, as surfaces hold them; linear models are measured from
        :attr:`background`, read once. A :class:`UserError` says why a model cannot explain.
        """
        columns = {c: cols[c].decode() if isinstance(cols[c], Coded) else cols[c]
                   for c in self.signature.names}
        return self._contributions(columns, self._background_reader(None))

    def _background_reader(self, given: Any) -> Callable[[], pd.DataFrame]:
        """A function giving the coerced background rows: ``given``, or :attr:`background`
        read and coerced once and kept (so its feature means are worked out once)."""
        source = given if given is not None else getattr(self, "background", None)

        def read_background() -> pd.DataFrame:
            if source is None:
                raise UserError(
                    f"model {self.describe()} is linear: its contributions are measured from "
                    "the mean of background rows; pass background= (the training rows or "
                    "the registered sample, Registry.sample)"
                )
            if given is not None:
                return self.signature.coerce(source() if callable(source) else source)
            kept = self.__dict__.get("_background_rows")
            if kept is None or kept[0] is not source:
                rows = self.signature.coerce(source() if callable(source) else source)
                kept = self.__dict__["_background_rows"] = (source, rows)
            return kept[1]

        return read_background

    def _contributions(self, frame: Rows, background: Background | None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """``(base, contrib)`` of :func:`modelport.compile.explain.contributions` for a
        coerced frame or a dict of its columns; formats holding an intermediate form
        override this."""
        raise UserError(
            f"model {self.describe()} cannot be explained: the {self.format or 'loaded'} "
            "format holds no intermediate form to read contributions from; load its "
            "compiled or native (joblib, skops) artefact"
        )

    def describe(self) -> str:
        if self.model_name:
            return f"{self.model_name}/{self.model_version} ({self.format})"
        return self.format or type(self).__name__

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()} task={self.task}>"

    def empty_outputs(self) -> dict[str, np.ndarray]:
        """The outputs for no rows: each output present, with its type and width, and empty
        (what a surface answers for a batch with no row left to score)."""
        out: dict[str, Any] = {}
        if self.task == "classification":
            out["label"] = np.asarray(self.classes or [])[:0]
            if self.has_proba:
                assert self.classes is not None  # has_proba needs classes
                out["proba"] = np.zeros((0, len(self.classes)))
        elif self.task == "regression":
            out["value"] = np.zeros(0)
        else:
            out["cluster"] = np.zeros(0, dtype=np.int64)
        return out

    def _labels_from_proba(self, proba: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes)[np.argmax(proba, axis=1)]
