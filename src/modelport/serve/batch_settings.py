"""Everything ``modelport predict`` is told, in one object.

The command builds one :class:`BatchSettings` from its options and hands it whole to
:func:`modelport.serve.batch.predict_settings`; :func:`~modelport.serve.batch.predict`, the
Python API, builds the same object from its arguments. An unknown ``on_error``, engine or
input policy is refused when the settings are built, before the registry is opened. The
settings hold plain values only (text, numbers, paths, a query's ``{url, query}``), so
they pickle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.errors import UserError
from modelport.scoring.checks import InputPolicy

#: what a row that cannot be scored does: stop the job, or go to the rejects file
ON_ERROR = ("fail", "reject")


@dataclass(frozen=True)
class BatchSettings:
    """The model to score with, what to score, where the scores go, and how.

    ``model`` names the model (``churn``, ``churn/3``, ``churn@production``). ``input`` is
    a file, a folder of Parquet files, a SQL URL with the table (or a query) after ``#``,
    or ``{"url": ..., "query": ...}``; ``output`` a ``.parquet``, ``.csv`` or ``.jsonl``
    file, or a SQL URL with the lookup table after ``#`` (needs ``id``, the id column).
    ``workers`` processes (None: one per core) score chunks of ``chunk_rows`` rows;
    ``resume`` skips the chunks an interrupted run of the same job committed. ``on_error``
    is ``fail`` or ``reject`` (rows set aside in ``rejects``); rows scored with a value
    outside what training saw are listed in ``warnings``, or refused under ``strict``,
    ``out_of_range`` or ``unseen_categories`` (see :attr:`policy`). ``engine`` is
    ``local`` or ``spark``; ``format`` forces a runtime. ``log_url`` keeps a
    ``log_sample`` share of the scored rows in a prediction log, and ``explain`` (a number
    of reasons) adds ``reason_1..k`` and ``contribution_1..k`` columns. Raises
    :class:`~modelport.errors.UserError` naming the option for an unknown ``on_error``,
    engine or input policy.
    """

    model: str
    input: str | Path | Mapping[str, Any]
    output: str | Path
    id: str | None = None
    workers: int | None = None
    chunk_rows: int = 50_000
    resume: bool = False
    on_error: str = "fail"
    engine: str = "local"
    format: str | None = None
    rejects: str | Path | None = None
    warnings: str | Path | None = None
    strict: bool = False
    out_of_range: str | None = None
    unseen_categories: str | None = None
    log_url: str | None = None
    log_sample: float = 1.0
    explain: int | str | None = None

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise UserError(f"--on-error {self.on_error!r} is not known: use fail or reject")
        if self.engine not in ("local", "spark"):
            raise UserError(f"--engine {self.engine!r} is not known: use local or spark")
        _ = self.policy  # a misspelt rule fails here, naming its option

    @property
    def policy(self) -> InputPolicy:
        """What an unseen category and a number outside the training range do to their row:
        ``strict`` rejects both, ``out_of_range`` and ``unseen_categories`` set one each."""
        return InputPolicy.of(self.strict, self.unseen_categories, self.out_of_range)

